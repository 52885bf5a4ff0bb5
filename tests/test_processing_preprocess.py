"""Preprocessing chain: filters do what they say, resampling, re-referencing, windowing, recorded provenance."""

import json

import numpy as np
import pytest

from e2llm.processing.features import band_power
from e2llm.processing.preprocess import PreprocessingParams, preprocess_recording, window_recording
from e2llm.processing.recording import Recording


def _recording(sfreq=1000.0, seconds=20.0, n_channels=3):
    t = np.arange(int(seconds * sfreq)) / sfreq
    alpha = 20e-6 * np.sin(2 * np.pi * 10 * t)
    line = 10e-6 * np.sin(2 * np.pi * 50 * t)
    drift = 50e-6 * t / seconds
    data = np.stack([alpha + line + drift + 1e-6 * k for k in range(n_channels)])
    return Recording(data, sfreq, ["Fz", "Cz", "Pz"][:n_channels], "V", provenance={"source": "test"})


def test_band_pass_notch_resample_and_provenance():
    params = PreprocessingParams(l_freq=1.0, h_freq=45.0, notch_freqs=(50.0,))
    out = preprocess_recording(_recording(), params)
    assert out.sfreq == 200.0 and out.data.shape == (3, 4000) and out.units == "V"
    middle = out.data[:, 600:-600] * 1e6
    power = band_power(middle, 200.0, {"alpha": (8.0, 12.0), "line": (48.0, 52.0), "slow": (0.0, 0.5)})
    assert power[0].mean() == pytest.approx(200.0, rel=0.05)  # 20 µV sine kept
    assert power[1].mean() < 0.01 and power[2].mean() < 1.0  # line noise and drift removed
    step = out.provenance["steps"][-1]
    assert step["params"] == params.to_dict() and step["order"] == ["resample", "filter"]
    assert step["filter"]["sfreq"] == 200.0 and step["filter"]["n_taps"] > 1  # the feature extractor's chain
    assert step["resample"] == {"orig_sfreq": 1000.0, "sfreq": 200.0, "up": 1, "down": 5, "method": "polyphase"}
    assert out.provenance["source"] == "test"
    json.dumps(out.provenance)  # provenance is JSON-serialisable, to be stored with a dataset


def test_upsampling_filters_after_resampling_and_average_reference():
    params = PreprocessingParams(l_freq=None, h_freq=40.0, notch_freqs=(), reference="average")
    out = preprocess_recording(_recording(sfreq=128.0), params)
    assert out.provenance["steps"][-1]["order"] == ["resample", "filter", "reference"]
    np.testing.assert_allclose(out.data.mean(axis=0), 0.0, atol=1e-18)


def test_no_filter_for_preprocessed_sources():
    rec = _recording(sfreq=200.0)
    out = preprocess_recording(rec, PreprocessingParams(), filter=False)
    np.testing.assert_allclose(out.data, rec.data, rtol=1e-12, atol=0)  # the means come out and back: rounding only
    assert out.provenance["steps"][-1]["filter_applied"] is False and out.provenance["steps"][-1]["order"] == []


def test_windowing():
    params = PreprocessingParams(l_freq=None, notch_freqs=(), window_seconds=2.0, stride_seconds=0.5)
    out = preprocess_recording(_recording(seconds=5.0), params)
    windows, starts = window_recording(out, params)
    assert windows.shape == (7, 3, 400) and windows.dtype == np.float32
    assert starts.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    with pytest.raises(ValueError, match="run preprocess_recording first"):
        window_recording(_recording(), params)


def test_parameters_round_trip_and_validation():
    params = PreprocessingParams(l_freq=0.5, notch_freqs=[50, 60])
    assert PreprocessingParams.from_dict(params.to_dict()) == params
    with pytest.raises(ValueError, match="Unknown preprocessing parameters"):
        PreprocessingParams.from_dict({"lowpass": 3})
    with pytest.raises(ValueError, match="reference"):
        PreprocessingParams(reference="mastoid")
    with pytest.raises(ValueError):
        PreprocessingParams(h_freq=120.0)  # above the 100 Hz Nyquist frequency of the 200 Hz target


def test_bad_recordings_are_refused():
    rec = _recording()
    rec.data[1, 10] = np.nan
    with pytest.raises(ValueError, match=r"test: 1 NaN/Inf values in channel\(s\) \['Cz'\]"):
        preprocess_recording(rec, PreprocessingParams())
    with pytest.raises(ValueError, match="channel names for"):
        preprocess_recording(Recording(np.zeros((2, 100)), 200.0, ["Cz"], "V"), PreprocessingParams())



def test_a_recording_shorter_than_the_kernel_gets_the_fitted_filter_of_the_feature_extractor():
    """2 s against a 7,921-tap band-pass: the chain's short-input filter, recorded, and equal to the extractor's."""
    from e2llm import E2LLMFeatureExtractor

    rng = np.random.default_rng(0)
    rec = Recording(20e-6 * rng.standard_normal((2, 400)), 200.0, ["Cz", "Pz"], "V")
    params = PreprocessingParams(window_seconds=2.0, stride_seconds=2.0)
    out = preprocess_recording(rec, params)
    step = out.provenance["steps"][-1]["filter"]
    assert step["fitted_to_length"] and "sinusoid fit" in step["description"] and step["n_taps"] < 400
    extractor = E2LLMFeatureExtractor(window_seconds=2.0, window_stride_seconds=2.0, normalization="none")
    windows = extractor(rec.data, sampling_rate=200.0, channel_names=rec.ch_names, units="V", return_tensors="np")
    np.testing.assert_allclose(windows["eeg_values"][0], out.data * 1e6, atol=1e-3)
