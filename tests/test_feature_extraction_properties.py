"""Property-based test of the feature extractor: whatever it is given, it returns finite windows of the promised
shape or raises a `ValueError` / `TypeError` whose message names the problem; never another exception."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from e2llm.feature_extraction_e2llm import E2LLMFeatureExtractor

FE = E2LLMFeatureExtractor(window_seconds=1.0, window_stride_seconds=1.0)
KNOWN = ["Fp1", "Fp2", "F3", "F4", "Cz", "O1", "O2", "FP1", "cz", "EEG Fz-REF"]
SPECIAL = [0.0, -1.0, 1e-30, 1e30, 1e300, np.nan, np.inf, -np.inf]

rates = st.one_of(st.sampled_from([200, 250.0, 128, 1000, 512.5]), st.floats(allow_nan=True, allow_infinity=True),
                  st.integers(-10, 10**7), st.sampled_from([None, "200", True, [200]]))
units = st.sampled_from(["uV", "µV", "V", "mV", None, 1, "volts"])
flags = st.sampled_from([True, False, "no", None, 0, np.bool_(True)])


@st.composite
def recordings(draw):
    n_channels = draw(st.integers(1, 5))
    n_times = draw(st.integers(0, 1500))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int16, np.int64]))
    seed = draw(st.integers(0, 2**16))
    data = np.random.default_rng(seed).standard_normal((n_channels, n_times)) * draw(st.sampled_from([20, 1e-5, 1e4]))
    if n_times and draw(st.booleans()):  # a special value somewhere
        data[draw(st.integers(0, n_channels - 1)), draw(st.integers(0, n_times - 1))] = draw(st.sampled_from(SPECIAL))
    if dtype in (np.int16, np.int64):
        data = np.nan_to_num(data, nan=0, posinf=0, neginf=0).clip(-3e4, 3e4)
    data = data.astype(dtype)
    shape = draw(st.sampled_from(["array", "tensor", "list", "3d", "1d", "nested"]))
    if shape == "tensor":
        data = torch.from_numpy(np.ascontiguousarray(data))
    elif shape == "list":
        data = [data]
    elif shape == "3d":
        data = data[None]
    elif shape == "1d":
        data = data[0]
    elif shape == "nested":
        data = data.tolist()
    names = draw(st.one_of(
        st.lists(st.sampled_from(KNOWN + ["XYZ", "", " "]), min_size=n_channels, max_size=n_channels),
        st.lists(st.sampled_from(KNOWN), min_size=0, max_size=7),
        st.sampled_from([None, 5, "Fp1", [1, 2], [["Fp1"]], b"Fp1"]),
    ))
    return data, names


VALID = (20 * np.random.default_rng(0).standard_normal((3, 900)), ["Fp1", "Cz", "O2"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(recording=recordings(), rate=rates, unit=units, apply_filters=flags)
@example(recording=VALID, rate=200, unit="uV", apply_filters=True)  # the success branch is always exercised
@example(recording=(VALID[0], 5), rate=200, unit="uV", apply_filters=True)  # was "'int' object is not iterable"
def test_only_clear_value_or_type_errors(recording, rate, unit, apply_filters):
    data, names = recording
    try:
        out = FE(data, sampling_rate=rate, channel_names=names, units=unit, apply_filters=apply_filters,
                 return_tensors="np")
    except (ValueError, TypeError) as error:
        message = str(error)
        assert len(message) > 20, message
        assert "object is not iterable" not in message and "has no len" not in message, message
        return
    except Exception as error:  # pragma: no cover - the property under test
        pytest.fail(f"{type(error).__name__}: {error}")
    values = out["eeg_values"]
    assert values.ndim == 3 and values.shape[-1] == FE.window_samples and len(values) > 0
    assert np.isfinite(values).all()
    assert out["eeg_channel_ids"].shape == values.shape[:2] == out["eeg_channel_mask"].shape
    assert len(out["eeg_window_starts"]) == len(values) == int(out["eeg_num_windows"].sum())
