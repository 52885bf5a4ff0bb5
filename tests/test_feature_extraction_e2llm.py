"""E2LLMFeatureExtractor: inputs of every accepted form, the signal chain against MNE, and every bad input."""

from __future__ import annotations

import ast
import inspect
import logging

import mne
import numpy as np
import pytest
import torch

from e2llm import ELECTRODE_NAMES, SEED_CHANNELS, E2LLMFeatureExtractor, chain_e2llm, signal_e2llm
from e2llm.signal_e2llm import apply_filter, design_filter, resample

CHANNELS = ["Fp1", "Fp2", "Cz", "O1"]
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


@pytest.fixture(scope="module")
def fe():
    return E2LLMFeatureExtractor()


def _eeg(n_channels=4, seconds=8.0, sfreq=200.0, seed=0, scale=20.0):
    """Noise with a 10 Hz rhythm, in µV."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sfreq)) / sfreq
    return scale * (rng.standard_normal((n_channels, t.size)) + np.sin(2 * np.pi * 10 * t))


def _raw(data_uv, sfreq, names=CHANNELS):
    return mne.io.RawArray(data_uv * 1e-6, mne.create_info(list(names), sfreq, "eeg"), verbose="ERROR")


# -- accepted inputs -------------------------------------------------------------------------------------------


def test_single_array(fe):
    out = fe(_eeg(seconds=9.0), sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="np")
    assert out["eeg_values"].shape == (2, 4, 800) and out["eeg_values"].dtype == np.float32
    assert out["eeg_num_windows"].tolist() == [2]
    assert out["eeg_window_starts"].tolist() == [0.0, 4.0]
    expected_ids = [ELECTRODE_NAMES.index(n) for n in CHANNELS]
    assert out["eeg_channel_ids"].tolist() == [expected_ids] * 2
    assert out["eeg_channel_mask"].tolist() == [[1] * 4] * 2


def test_return_tensors_pt_and_torch_input(fe):
    eeg = _eeg()
    out = fe(torch.from_numpy(eeg), sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="pt")
    ref = fe(eeg, sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="pt")
    assert isinstance(out["eeg_values"], torch.Tensor) and out["eeg_channel_ids"].dtype == torch.long
    assert torch.equal(out["eeg_values"], ref["eeg_values"])


def test_batch_equals_items_one_by_one(fe):
    batch = np.stack([_eeg(seed=1), _eeg(seed=2)])
    out = fe(batch, sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="np")
    assert out["eeg_num_windows"].tolist() == [2, 2]
    for i in range(2):
        single = fe(batch[i], sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="np")
        np.testing.assert_allclose(out["eeg_values"][2 * i : 2 * i + 2], single["eeg_values"], atol=1e-5)


def test_list_of_different_lengths_rates_and_montages(fe):
    items = [_eeg(seconds=12.0, seed=1), _eeg(n_channels=3, seconds=4.0, sfreq=250.0, seed=2), _eeg(seconds=8.0)]
    names = [CHANNELS, ["cz", "PZ", "T3"], CHANNELS]
    out = fe(items, sampling_rate=200, channel_names=names, units="uV", return_tensors="np")
    assert out["eeg_num_windows"].tolist() == [3, 1, 2]
    assert out["eeg_values"].shape == (6, 4, 800)
    # The 3-channel recording is padded with a masked fourth channel of zeros.
    assert out["eeg_channel_mask"][3].tolist() == [1, 1, 1, 0]
    assert not out["eeg_values"][3, 3].any()
    assert out["eeg_channel_ids"][3, :3].tolist() == [ELECTRODE_NAMES.index(n) for n in ("Cz", "Pz", "T7")]
    single = fe(items[2], sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="np")
    np.testing.assert_allclose(out["eeg_values"][4:], single["eeg_values"], atol=1e-5)
    with pytest.raises(ValueError, match="sampling_rate=.* contradicts"):  # one rate for a list given as arrays
        fe([_raw(items[0], 200.0)], sampling_rate=250, units="V")


def test_mne_raw_epochs_and_bads(fe):
    data = _eeg(seconds=8.0, sfreq=250.0)
    raw = _raw(data, 250.0)
    from_raw = fe(raw, return_tensors="np")
    from_array = fe(data, sampling_rate=250, channel_names=CHANNELS, units="uV", return_tensors="np")
    np.testing.assert_allclose(from_raw["eeg_values"], from_array["eeg_values"], atol=1e-5)
    epochs = mne.make_fixed_length_epochs(raw, duration=4.0, verbose="ERROR")
    assert fe(epochs, return_tensors="np")["eeg_num_windows"].tolist() == [1, 1]
    raw.info["bads"] = ["Fp2"]
    without_bad = fe(raw, return_tensors="np")
    assert without_bad["eeg_values"].shape == (2, 3, 800)
    assert ELECTRODE_NAMES.index("Fp2") not in without_bad["eeg_channel_ids"]


def test_channel_names_are_case_insensitive_and_decorated_names_map(fe):
    eeg = _eeg(n_channels=5)
    plain = fe(eeg, sampling_rate=200, channel_names=["Fp1", "Fp2", "Cz", "T7", "CB1"], units="uV", return_tensors="np")
    messy = fe(eeg, sampling_rate=200, channel_names=["FP1", "fp2", "EEG Cz-REF", "T3", "cb1"], units="uV",
               return_tensors="np")
    assert np.array_equal(plain["eeg_channel_ids"], messy["eeg_channel_ids"])
    np.testing.assert_array_equal(plain["eeg_values"], messy["eeg_values"])


def test_seed_montage_maps_completely(fe):
    out = fe(_eeg(n_channels=62, seconds=4.0), sampling_rate=200, channel_names=list(SEED_CHANNELS), units="uV",
             return_tensors="np")
    assert out["eeg_channel_mask"].sum() == 62
    assert sorted(ELECTRODE_NAMES[i] for i in out["eeg_channel_ids"][0]) == sorted(SEED_CHANNELS)


def test_unknown_channels_dropped_and_flat_channels_masked(fe, caplog):
    eeg = _eeg(n_channels=5)
    eeg[1] = 3.0  # flat
    names = ["Fp1", "Fp2", "ECG-unique-1", "Cz", "O1"]
    with caplog.at_level(logging.WARNING):
        out = fe(eeg, sampling_rate=200, channel_names=names, units="uV", return_tensors="np")
        fe([eeg, eeg], sampling_rate=200, channel_names=names, units="uV", return_tensors="np")
    assert out["eeg_values"].shape == (2, 4, 800)
    assert out["eeg_channel_mask"][0].tolist() == [1, 0, 1, 1]
    assert not out["eeg_values"][:, 1].any()
    assert "Fp2" in caplog.text
    assert caplog.text.count("ECG-unique-1") == 1  # the same montage warns once, not once per item or call


def test_units_volts_and_microvolts_give_the_same_windows(fe):
    eeg = _eeg()
    uv = fe(eeg, sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="np")
    v = fe(eeg * 1e-6, sampling_rate=200, channel_names=CHANNELS, units="V", return_tensors="np")
    mu = fe(eeg, sampling_rate=200, channel_names=CHANNELS, units="µV", return_tensors="np")
    np.testing.assert_allclose(v["eeg_values"], uv["eeg_values"], atol=1e-5)
    np.testing.assert_array_equal(mu["eeg_values"], uv["eeg_values"])


# -- the signal chain ------------------------------------------------------------------------------------------


def test_resampling_to_200_hz_keeps_the_rhythm():
    fe = E2LLMFeatureExtractor(normalization="none", l_freq=None, h_freq=None, notch_freqs=())
    sfreq = 1000.0
    t = np.arange(int(8 * sfreq)) / sfreq
    eeg = 20 * np.sin(2 * np.pi * 7.0 * t)[None].repeat(2, 0)
    out = fe(eeg, sampling_rate=sfreq, channel_names=["Cz", "Pz"], units="uV", return_tensors="np")
    window = out["eeg_values"][0, 0]
    spectrum = np.abs(np.fft.rfft(window))
    assert np.fft.rfftfreq(800, 1 / 200)[spectrum.argmax()] == pytest.approx(7.0, abs=0.25)
    np.testing.assert_allclose(window[100:700], 20 * np.sin(2 * np.pi * 7.0 * np.arange(100, 700) / 200), atol=0.5)


def test_filters_match_mne():
    """Band-pass + notch equal MNE's `filter(0.1, 70)` then `notch_filter(50)`; resampling equals MNE's polyphase."""
    data = _eeg(seconds=60.0, scale=20e-6)
    raw = _raw(data * 1e6, 200.0)
    reference = raw.copy().filter(0.1, 70.0, verbose="ERROR").notch_filter(50.0, verbose="ERROR").get_data()
    ours = apply_filter(data, design_filter(200.0, 0.1, 70.0, [50.0]))
    np.testing.assert_allclose(ours, reference, atol=1e-6 * reference.std())
    fast = _eeg(seconds=10.0, sfreq=1000.0)
    mne_resampled = _raw(fast, 1000.0).resample(200.0, method="polyphase", verbose="ERROR").get_data() * 1e6
    np.testing.assert_allclose(resample(fast, 1000.0, 200.0), mne_resampled, atol=1e-6 * fast.std())


def test_notch_and_band_edges():
    sfreq, seconds = 200.0, 40.0
    t = np.arange(int(seconds * sfreq)) / sfreq
    line = 30 * np.sin(2 * np.pi * 50 * t)
    alpha = 10 * np.sin(2 * np.pi * 10 * t)
    drift = 500 * t / seconds  # slow drift, removed by the 0.1 Hz high-pass
    filtered = apply_filter(np.stack([line, alpha, drift]), design_filter(sfreq, 0.1, 70.0, [50.0]))
    mid = slice(int(10 * sfreq), int(30 * sfreq))
    assert filtered[0, mid].std() < 0.02 * line.std()  # > 34 dB down
    assert filtered[1, mid].std() == pytest.approx(alpha.std(), rel=0.01)
    assert np.ptp(filtered[2, mid]) < 0.1 * np.ptp(drift)


def test_windows_and_stride():
    fe = E2LLMFeatureExtractor(window_seconds=2.0, window_stride_seconds=1.0)
    out = fe(_eeg(seconds=5.0), sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="np")
    assert out["eeg_values"].shape == (4, 4, 400)
    assert out["eeg_window_starts"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert fe.window_count(5 * 500, 500) == 4


@pytest.mark.parametrize("mode", ["window", "channel", "none"])
def test_normalisation(fe, mode):
    fe = E2LLMFeatureExtractor(normalization=mode)
    eeg = _eeg(seconds=8.0)
    eeg[0] *= 4  # a louder channel
    windows = fe(eeg, sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="np")["eeg_values"]
    std = windows.std(-1)
    if mode == "window":
        np.testing.assert_allclose(windows.mean(-1), 0, atol=1e-5)
        np.testing.assert_allclose(np.median(std, -1), 1, rtol=1e-4)
        assert (std[:, 0] > 3 * std[:, 1]).all()  # amplitude ratios between channels survive
    elif mode == "channel":
        np.testing.assert_allclose(std, 1, rtol=1e-4)
    else:
        assert std.mean() > 5  # still microvolts


def test_settings_round_trip(tmp_path):
    fe = E2LLMFeatureExtractor(l_freq=1.0, h_freq=45.0, notch_freqs=[60.0], reference="average", normalization="channel")
    fe.save_pretrained(tmp_path)
    again = E2LLMFeatureExtractor.from_pretrained(tmp_path)
    assert again.to_dict() == fe.to_dict()
    eeg = _eeg()
    kw = {"sampling_rate": 200, "channel_names": CHANNELS, "units": "uV", "return_tensors": "np"}
    np.testing.assert_array_equal(again(eeg, **kw)["eeg_values"], fe(eeg, **kw)["eeg_values"])


def test_signal_kernels_have_no_python_loops():
    """The kernels that touch samples work on whole arrays: no loop statement or comprehension in them."""
    for kernel in (apply_filter, resample, signal_e2llm.sliding_windows, signal_e2llm.normalize_windows,
                   signal_e2llm._pad_reflect_limited):
        tree = ast.parse(inspect.getsource(kernel))
        loops = [n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While, ast.comprehension))]
        assert loops == [], kernel.__name__


def test_recordings_of_equal_shape_go_through_each_kernel_in_one_call(monkeypatch):
    """Channels, windows and same-shape recordings are processed by one call per kernel (no loop around them)."""
    shapes: dict[str, list] = {"resample": [], "apply_filter": [], "normalize_windows": []}
    for name in shapes:
        original = getattr(chain_e2llm, name)

        def spy(data, *args, _name=name, _original=original, **kwargs):
            shapes[_name].append(np.shape(data))
            return _original(data, *args, **kwargs)

        monkeypatch.setattr(chain_e2llm, name, spy)
    fe = E2LLMFeatureExtractor()
    batch = [_eeg(seconds=12.0, sfreq=250.0, seed=i) for i in range(3)]
    out = fe(batch, sampling_rate=250, channel_names=CHANNELS, units="uV", return_tensors="np")
    assert out["eeg_num_windows"].tolist() == [3, 3, 3]
    assert shapes == {
        "resample": [(3, 4, 3000)],
        "apply_filter": [(3, 4, 2400)],
        "normalize_windows": [(3, 3, 4, 800)],
    }


# -- bad inputs ------------------------------------------------------------------------------------------------

GOOD = {"sampling_rate": 200, "channel_names": CHANNELS, "units": "uV"}


def _with_nan():
    eeg = _eeg()
    eeg[2, 10] = np.nan
    eeg[1, 5] = np.inf
    return eeg


BAD_INPUTS = {
    "nan_inf": (lambda: _with_nan(), {}, r"2 NaN/Inf values in 2 channel\(s\) \('Fp2': 1, 'Cz': 1\)"),
    "empty": (lambda: np.zeros((4, 0)), {}, r"empty"),
    "empty_list": (lambda: [], {}, r"empty list"),
    "rank_1": (lambda: np.zeros(1600), {}, r"expected \(n_channels, n_times\).*shape \(1600,\)"),
    "rank_4": (lambda: np.zeros((1, 1, 4, 1600)), {}, r"expected \(n_channels, n_times\).*\(1, 1, 4, 1600\)"),
    "strings": (lambda: np.array([["a"] * 1600] * 4), {}, r"real-valued numeric"),
    "too_short": (lambda: _eeg(seconds=3.0), {}, r"too short for one window: 4.0 s needed, 3.000 s given"),
    "rate_missing": (lambda: _eeg(), {"sampling_rate": None}, r"sampling_rate is required"),
    "rate_zero": (lambda: _eeg(), {"sampling_rate": 0}, r"sampling_rate must be a positive number of Hz, got 0"),
    "rate_negative": (lambda: _eeg(), {"sampling_rate": -200}, r"positive number of Hz, got -200"),
    "rate_string": (lambda: _eeg(), {"sampling_rate": "200"}, r"sampling_rate must be a number of Hz"),
    "rate_vs_raw": (lambda: _raw(_eeg(), 200.0), {"units": None, "channel_names": None, "sampling_rate": 250},
                    r"sampling_rate=250 contradicts the MNE object's info\['sfreq'\]=200.0"),
    "names_vs_raw": (lambda: _raw(_eeg(), 200.0), {"units": None, "sampling_rate": None,
                                                   "channel_names": ["Fp1", "Fp2", "Cz", "O2"]},
                     r"channel_names differ from the MNE object's ch_names"),
    "units_vs_raw": (lambda: _raw(_eeg(), 200.0), {"units": "uV", "sampling_rate": None, "channel_names": None},
                     r"looks like volts given as microvolts \(pass units='V'\)"),
    "units_missing": (lambda: _eeg(), {"units": None}, r"units is required"),
    "units_unknown": (lambda: _eeg(), {"units": "kV"}, r"units must be 'V', 'mV' or 'uV'"),
    "names_missing": (lambda: _eeg(), {"channel_names": None}, r"channel_names is required"),
    "names_count": (lambda: _eeg(), {"channel_names": CHANNELS[:3]}, r"3 channel names for 4 channels"),
    "names_per_item": (lambda: [_eeg(), _eeg()], {"channel_names": [CHANNELS]}, r"1 lists for 2 recordings"),
    "duplicates": (lambda: _eeg(), {"channel_names": ["Fp1", "FP1", "Cz", "O1"]},
                   r"\{'Fp1': \['Fp1', 'FP1'\]\} all resolve to the same 10-05 electrode"),
    "alias_duplicates": (lambda: _eeg(), {"channel_names": ["T3", "T7", "Cz", "O1"]},
                         r"\{'T7': \['T3', 'T7'\]\} all resolve to the same 10-05 electrode"),
    "no_known_electrode": (lambda: _eeg(), {"channel_names": ["ECG", "EOG", "EMG", "STI"]},
                           r"no EEG channel left to use among 4 channels \(ECG: name says ECG.*channel_map"),
    "flat": (lambda: np.full((4, 1600), 7.0), {}, r"every channel is flat"),
    "volts_as_uv": (lambda: _eeg() * 1e-6, {}, r"looks like volts given as microvolts \(pass units='V'\)"),
    "mv_as_uv": (lambda: _eeg() * 1e-3, {}, r"looks like millivolts given as microvolts \(pass units='mV'\), or a "
                                             r"recording without signal"),
    "uv_as_volts": (lambda: _eeg(), {"units": "V"}, r"looks like microvolts given as volts \(pass units='uV'\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_a_named_value_error(fe, case):
    make, overrides, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        fe(make(), **{**GOOD, **overrides})


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="reference must be None or 'average'"):
        E2LLMFeatureExtractor(reference="Cz")
    with pytest.raises(ValueError, match="normalization must be one of"):
        E2LLMFeatureExtractor(normalization="zscore")
    with pytest.raises(ValueError, match=r"h_freq \(120.0 Hz\) must be between 0 and the Nyquist"):
        E2LLMFeatureExtractor(h_freq=120.0)
    with pytest.raises(ValueError, match="sampling_rate must be a positive number"):
        E2LLMFeatureExtractor(sampling_rate=0)


def test_float32_chain_matches_float64_reference_and_ignores_dc_offsets():
    """The extractor works in float32 with channel means taken out first: its windows equal the chain run in float64,
    and a large DC offset (as many amplifiers record) changes nothing - it would leave a Nyquist ripple of the
    polyphase resampler and cost float32 precision if it went through the chain."""
    fe = E2LLMFeatureExtractor()
    eeg = _eeg(seconds=40.0, sfreq=500.0)
    kw = {"sampling_rate": 500, "channel_names": CHANNELS, "units": "uV", "return_tensors": "np"}
    out = fe(eeg, **kw)["eeg_values"]
    centred = eeg - eeg.mean(-1, keepdims=True)
    data = apply_filter(resample(centred, 500.0, 200.0), design_filter(200.0, 0.1, 70.0, [50.0]))
    windows, _ = signal_e2llm.sliding_windows(data, 200.0, 4.0, 4.0)
    reference = signal_e2llm.normalize_windows(windows, "window")
    assert reference.dtype == np.float64 and out.dtype == np.float32
    np.testing.assert_allclose(out, reference, atol=1e-5)
    with_offset = fe(eeg + np.array([[2e4], [-5e3], [1e4], [0.0]]), **kw)["eeg_values"]
    np.testing.assert_allclose(with_offset, out, atol=1e-4)
