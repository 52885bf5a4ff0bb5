"""`iter_windows` (bounded memory, arrays and files read lazily) equals the whole-signal feature extractor."""

import tracemalloc

import mne
import numpy as np
import pytest

from e2llm.feature_extraction_e2llm import E2LLMFeatureExtractor
from e2llm.recording_file_e2llm import open_recording
from e2llm.signal_e2llm import apply_filter, design_filter, filter_segment

NAMES = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "FAKE"]


def _eeg(seconds, rate, seed=0):
    """Synthetic EEG in µV: alpha/beta rhythms, noise, slow drift and a large DC offset per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    n = len(NAMES)
    x = 20 * rng.standard_normal((n, t.size)) + 15 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (n, 1)))
    x += 5 * np.sin(2 * np.pi * 0.05 * t) + rng.uniform(-4e3, 4e3, (n, 1))
    x[3] = 7.0  # a flat channel: masked in both paths
    return x


def _stream(fe, data, **kwargs):
    parts = list(fe.iter_windows(data, return_tensors="np", **kwargs))
    return {key: np.concatenate([p[key] for p in parts]) for key in ("eeg_values", "eeg_channel_ids",
                                                                     "eeg_channel_mask", "eeg_window_starts")}, parts


@pytest.mark.parametrize("rate, settings", [(1000.0, {}), (256.0, {"reference": "average"}),
                                            (200.0, {"normalization": "channel", "window_stride_seconds": 1.5}),
                                            (128.0, {"l_freq": 1.0, "notch_freqs": []})])
def test_streaming_equals_whole_signal(rate, settings):
    fe = E2LLMFeatureExtractor(**settings)
    data = _eeg(200.3, rate)
    whole = fe(data, sampling_rate=rate, channel_names=NAMES, units="uV", return_tensors="np")
    stream, parts = _stream(fe, data, sampling_rate=rate, channel_names=NAMES, units="uV", windows_per_chunk=7)
    assert len(parts) > 3 and all(len(p["eeg_values"]) <= 7 for p in parts)
    np.testing.assert_allclose(stream["eeg_values"], whole["eeg_values"], rtol=0, atol=1e-5)  # ends included
    for key in ("eeg_channel_ids", "eeg_channel_mask", "eeg_window_starts"):
        np.testing.assert_array_equal(stream[key], whole[key])


def test_streaming_from_a_file_read_lazily(tmp_path):
    rate = 500.0
    data = _eeg(120.0, rate, seed=1)[:-1] * 1e-6
    raw = mne.io.RawArray(data, mne.create_info(NAMES[:-1], rate, "eeg"), verbose="error")
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    recording = open_recording(tmp_path / "rec_raw.fif")
    fe = E2LLMFeatureExtractor()
    whole = fe(recording, return_tensors="np")  # MNE-like: the whole file at once
    stream, _ = _stream(fe, recording, windows_per_chunk=5)
    np.testing.assert_allclose(stream["eeg_values"], whole["eeg_values"], rtol=0, atol=1e-5)
    lazy_raw = mne.io.read_raw_fif(tmp_path / "rec_raw.fif", preload=False, verbose="error")
    stream_raw, _ = _stream(fe, lazy_raw, windows_per_chunk=9)
    np.testing.assert_allclose(stream_raw["eeg_values"], whole["eeg_values"], rtol=0, atol=1e-5)


def _peak_bytes(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_memory_does_not_grow_with_length():
    rate, fe = 1000.0, E2LLMFeatureExtractor()
    kwargs = dict(sampling_rate=rate, channel_names=NAMES, units="uV")
    short, long = _eeg(300.0, rate).astype(np.float32), _eeg(900.0, rate).astype(np.float32)  # 5 and 15 min
    streamed = [_peak_bytes(lambda x=x: [None for _ in fe.iter_windows(x, windows_per_chunk=16, **kwargs)])
                for x in (short, long)]
    whole_long = _peak_bytes(lambda: fe(long, **kwargs))
    assert streamed[1] < 1.25 * streamed[0], [p / 2**20 for p in streamed]  # flat in the recording's length
    assert streamed[1] < whole_long / 3, (streamed[1] / 2**20, whole_long / 2**20)


def test_filter_segment_matches_whole_filter():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5000))
    kernel = design_filter(200.0, 1.0, 40.0, (50.0,))
    half = (kernel.size - 1) // 2
    whole = apply_filter(x, kernel)
    for out_start, out_stop in ((0, 700), (1200, 2100), (4300, 5000)):
        seg_start, seg_stop = max(0, out_start - half), min(5000, out_stop + half)
        part = filter_segment(x[:, seg_start:seg_stop], kernel, seg_start, 5000, out_start, out_stop)
        np.testing.assert_allclose(part, whole[:, out_start:out_stop], atol=1e-12)
    with pytest.raises(ValueError, match="does not cover"):
        filter_segment(x[:, 100:200], kernel, 100, 5000, 120, 180)


def test_streaming_refusals():
    fe = E2LLMFeatureExtractor()
    data = _eeg(20.0, 250.0)
    kwargs = dict(sampling_rate=250.0, channel_names=NAMES, units="uV")
    bad = data.copy()
    bad[2, 4000] = np.nan
    cases = [((bad,), kwargs, ValueError, r"1 NaN/Inf values in 1 channel\(s\) \('F3': 1\)"),
             ((data,), {**kwargs, "windows_per_chunk": 0}, ValueError, "windows_per_chunk"),
             ((data[None],), kwargs, ValueError, r"expected \(n_channels, n_times\), got an array of shape \(1, 11, 5000\)"),
             ((data,), {**kwargs, "sampling_rate": 1.0}, ValueError, "plausible EEG range"),
             ((data * 1e6,), kwargs, ValueError, "beyond any EEG amplifier's range")]
    for args, options, kind, message in cases:
        with pytest.raises(kind, match=message):
            next(iter(fe.iter_windows(*args, **options)))
