"""The one signal chain: the filter fitted to short inputs, the line frequency, band power from the chain's own
windows, and the channel rule (MNE types, bads, channel_map) with what is dropped reported."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from e2llm import E2LLMFeatureExtractor
from e2llm.chain_e2llm import ChainSettings, plan_filter
from e2llm.eeg_evidence_features import band_power_db
from e2llm.recording_file_e2llm import open_recording
from e2llm.signal_e2llm import apply_filter, design_filter, normalize_windows

SFREQ = 200.0
NAMES = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2"]


def _eeg(seconds: float, seed: int = 0, n: int = len(NAMES), alpha: float = 1.0) -> np.ndarray:
    """µV: 1/f^alpha noise (EEG's background spectrum), a 10 Hz rhythm and 50 Hz line noise."""
    rng = np.random.default_rng(seed)
    n_times = int(seconds * SFREQ)
    spectrum = np.fft.rfft(rng.standard_normal((n, n_times)), axis=-1)
    freqs = np.fft.rfftfreq(n_times, 1 / SFREQ)
    spectrum /= np.maximum(freqs, freqs[1]) ** (alpha / 2)
    noise = np.fft.irfft(spectrum, n_times, axis=-1)
    t = np.arange(n_times) / SFREQ
    return 20 * noise / noise.std() + 8 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (n, 1))) + 5 * np.sin(
        2 * np.pi * 50 * t)


def test_plan_uses_the_band_pass_when_it_fits_and_the_short_filter_otherwise():
    settings = ChainSettings(SFREQ)
    kernel = design_filter(SFREQ, 0.1, 70.0, [50.0])
    assert kernel.size == 7921
    assert not plan_filter(settings, 7921).fitted and plan_filter(settings, 7921).kernel.size == 7921
    short = plan_filter(settings, 800)
    assert short.fitted and short.line_freqs == (50.0,) and short.kernel.size < 100 and short.gain == 0.0
    assert "fitted to a 4-s input" in short.description and "7921-tap" in short.description
    assert plan_filter(settings, 800, apply_filters=False).description.startswith("none")


def test_a_short_input_is_closer_to_training_windows_than_with_the_long_kernel():
    """4 s cut from 2-min recordings filtered whole (what training windows are) against the same 4 s given alone:
    the fitted filter's windows are closer to the whole-signal windows than the 7,921-tap kernel run on the 4 s alone
    (before), and its band power is within 0.5 dB on average."""
    kernel = design_filter(SFREQ, 0.1, 70.0, [50.0])
    fe = E2LLMFeatureExtractor()
    errors = {"fitted": [], "long kernel": []}
    band_error = []
    for seed, alpha in [(0, 1.0), (1, 1.0), (2, 1.5), (3, 2.0)]:
        long = _eeg(120.0, seed=seed, alpha=alpha)
        whole = apply_filter(long - long.mean(-1, keepdims=True), kernel)
        for start in (int(30 * SFREQ), int(70 * SFREQ)):
            target = normalize_windows(whole[None, :, start : start + 800], "window")[0]
            piece = long[:, start : start + 800]
            alone = fe(piece, sampling_rate=SFREQ, channel_names=NAMES, units="uV", return_tensors="np")
            assert "fitted" in alone["eeg_filter"][0]
            with pytest.warns(RuntimeWarning, match="edges dominate"):
                before = apply_filter(piece - piece.mean(-1, keepdims=True), kernel)
            before = normalize_windows(before[None], "window")[0]
            for name, window in (("fitted", alone["eeg_values"][0]), ("long kernel", before)):
                errors[name].append(np.sqrt(((window - target) ** 2).mean() / (target**2).mean()))
            band_error.append(np.abs(band_power_db(alone["eeg_values"], SFREQ) - band_power_db(target[None], SFREQ)))
    fitted, before = np.mean(errors["fitted"]), np.mean(errors["long kernel"])
    assert fitted < 0.8 * before, (fitted, before)
    assert np.mean(band_error) < 0.5


def test_line_frequency_moves_the_notch():
    t = np.arange(int(60 * SFREQ)) / SFREQ
    data = _eeg(60.0, seed=2) + 40 * np.sin(2 * np.pi * 60 * t)
    fe = E2LLMFeatureExtractor(normalization="none")
    kwargs = dict(sampling_rate=SFREQ, channel_names=NAMES, units="uV", return_tensors="np")
    at_50, at_60 = fe(data, **kwargs), fe(data, line_freq=60, **kwargs)
    assert "notch 60 Hz" in at_60["eeg_filter"][0] and "notch 50 Hz" in at_50["eeg_filter"][0]

    def line_power(windows):
        spectrum = np.abs(np.fft.rfft(windows[5:10], axis=-1)) ** 2
        return spectrum[..., 240].mean()  # 60 Hz at 0.25 Hz resolution

    assert line_power(at_60["eeg_values"]) < 1e-3 * line_power(at_50["eeg_values"])
    with pytest.raises(ValueError, match="line_freq must be the mains frequency"):
        fe(data, line_freq=-50, **kwargs)


def test_band_power_comes_from_the_chain_windows_before_normalisation():
    data = _eeg(60.0, seed=3)
    kwargs = dict(sampling_rate=SFREQ, channel_names=NAMES, units="uV", return_tensors="np", return_band_power=True)
    normalised = E2LLMFeatureExtractor()(data, **kwargs)
    raw = E2LLMFeatureExtractor(normalization="none")(data, **kwargs)
    np.testing.assert_allclose(normalised["eeg_band_power"], band_power_db(raw["eeg_values"], SFREQ), atol=1e-3)
    np.testing.assert_array_equal(normalised["eeg_band_power"], raw["eeg_band_power"])
    assert normalised["eeg_band_power"].shape == (15, 5, len(NAMES))


def test_mne_types_and_bads_are_respected_and_reported_the_same_for_raw_and_file(tmp_path):
    data = _eeg(8.0, seed=4) * 1e-6
    info = mne.create_info(NAMES, SFREQ, ["eog", "eog"] + ["eeg"] * (len(NAMES) - 2))
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.info["bads"] = ["O2"]
    fe = E2LLMFeatureExtractor()
    from_raw = fe(raw, return_tensors="np")
    report = from_raw["eeg_channels"][0]
    assert report["used"] == NAMES[2:-1]
    assert report["dropped"] == {"Fp1": "MNE type eog", "Fp2": "MNE type eog", "O2": "marked bad (info['bads'])"}
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    from_file = fe(open_recording(tmp_path / "rec_raw.fif"), return_tensors="np")
    assert from_file["eeg_channels"][0]["used"] == report["used"]
    assert from_file["eeg_channels"][0]["dropped"] == report["dropped"]  # one rule for objects and files
    np.testing.assert_allclose(from_file["eeg_values"], from_raw["eeg_values"], atol=1e-5)


def test_channel_map_renames_and_a_dropped_dc_channel_never_trips_the_checks():
    """Numbered channels get their electrodes from `channel_map`; a DC channel (a Nihon Kohden file holds several, at
    volts) is dropped before any amplitude check, so the extractor accepts what the pipeline accepts."""
    data = np.concatenate([_eeg(8.0, seed=5, n=4), np.full((1, 1600), 3e8)], axis=0)
    data[-1, ::2] = -3e8  # far beyond any EEG amplifier: it would be refused if it were checked
    names = ["EEG 000", "EEG 001", "EEG 002", "EEG 003", "DC01"]
    mapping = {"EEG 000": "Fz", "EEG 001": "Cz", "EEG 002": "Pz", "EEG 003": "Oz"}
    out = E2LLMFeatureExtractor()(data, sampling_rate=SFREQ, channel_names=names, units="uV", channel_map=mapping,
                                  return_tensors="np")
    assert out["eeg_channels"][0] == {"used": ["Fz", "Cz", "Pz", "Oz"], "dropped": {"DC01": "name says DC channel"},
                                      "placement": "channel_map", "renamed": mapping}
    with pytest.raises(ValueError, match=r"numbered cap layout.*montage=.*channel_map="):
        E2LLMFeatureExtractor()(data[:4], sampling_rate=SFREQ, channel_names=names[:4], units="uV")
    with pytest.raises(ValueError, match="channel_map: new names must be 10-05 electrode names"):
        E2LLMFeatureExtractor()(data, sampling_rate=SFREQ, channel_names=names, units="uV",
                                channel_map={"EEG 000": "Frontal"})


def test_units_remedy_for_a_raw_whose_values_are_microvolts():
    data_uv = _eeg(8.0, seed=6)
    raw = mne.io.RawArray(data_uv, mne.create_info(NAMES, SFREQ, "eeg"), verbose="error")  # µV stored as "volts"
    fe = E2LLMFeatureExtractor()
    with pytest.raises(ValueError, match="this looks like microvolts given as volts"):
        fe(raw)
    fixed = fe(raw, units="uV", return_tensors="np")
    right = fe(data_uv, sampling_rate=SFREQ, channel_names=NAMES, units="uV", return_tensors="np")
    np.testing.assert_allclose(fixed["eeg_values"], right["eeg_values"], atol=1e-6)


def test_settings_take_one_notch_number_and_name_a_nan():
    assert E2LLMFeatureExtractor(notch_freqs=50).notch_freqs == [50.0]
    with pytest.raises(ValueError, match="window_seconds=nan must be a finite number"):
        E2LLMFeatureExtractor(window_seconds=float("nan"))
    with pytest.raises(ValueError, match="l_freq=inf must be a finite number"):
        E2LLMFeatureExtractor(l_freq=float("inf"))


def test_each_window_is_checked_on_its_raw_samples():
    """A channel clipped in one window is masked in that window (reason given); a window where most channels are
    flat is refused; streaming says the same as the whole-signal path."""
    data = _eeg(60.0, seed=7)
    data[2, 800:1600] = np.clip(data[2, 800:1600] * 10, -30, 30)  # F3 clipped in the second window
    data[:7, 4000:4400] = 1.0  # seven of ten channels stuck for 2 s in the sixth window
    fe = E2LLMFeatureExtractor()
    kwargs = dict(sampling_rate=SFREQ, channel_names=NAMES, units="uV", return_tensors="np")
    out = fe(data, **kwargs)
    assert out["eeg_unusable"][1] == {"F3": out["eeg_unusable"][1]["F3"]} and "clipped" in out["eeg_unusable"][1]["F3"]
    assert out["eeg_channel_mask"][1].tolist() == [1, 1, 0, 1, 1, 1, 1, 1, 1, 1]
    assert out["eeg_channel_mask"][0].all() and out["eeg_refused"][1] is None
    assert out["eeg_refused"][5].startswith("7 of its 10 channels unusable (flat")
    assert [r is None for r in out["eeg_refused"]] == [k != 5 for k in range(15)]
    parts = list(fe.iter_windows(data, windows_per_chunk=4, **kwargs))
    assert [p for part in parts for p in part["eeg_unusable"]] == out["eeg_unusable"]
    assert [p for part in parts for p in part["eeg_refused"]] == out["eeg_refused"]
    np.testing.assert_array_equal(np.concatenate([p["eeg_channel_mask"] for p in parts]), out["eeg_channel_mask"])
