"""Channel quality (`e2llm.channel_quality_e2llm.unusable_channels`) and the doctests of the channel modules."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from e2llm.channel_quality_e2llm import unusable_channels

SFREQ = 200.0


def _eeg(n_channels=4, seconds=8.0, seed=0):
    """Brown-ish noise plus alpha, ~20 uV: quantised to 0.1 uV like a 16-bit EDF."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SFREQ)) / SFREQ
    data = np.cumsum(rng.normal(0, 2.0, (n_channels, t.size)), axis=1)
    data -= data.mean(axis=1, keepdims=True)
    data += 15 * np.sin(2 * np.pi * 10 * t)
    return np.round(data, 1)


def test_clean_eeg_passes():
    assert unusable_channels(_eeg(), SFREQ) == {}


def test_flat_channel_and_flat_segment():
    data = _eeg()
    data[1] = 3.0
    data[2, 400:700] = data[2, 400]  # 1.5 s stuck
    problems = unusable_channels(data, SFREQ)
    assert problems[1] == "flat (peak-to-peak 0 uV)"
    assert problems[2].startswith("flat (") and problems[2].endswith("uV) for 1.5 s")
    assert set(problems) == {1, 2}


def test_rail_stuck_channel_names_the_amplifier_limit():
    data = _eeg()
    data[0, 200:800] = 3276.7  # an int16 EDF channel stuck at its physical maximum
    rails = np.tile([-3276.8, 3276.7], (4, 1))
    assert unusable_channels(data, SFREQ, rails_uv=rails) == {0: "stuck at the amplifier's limit (3277 uV) for 3 s"}


def test_clipping_at_3000_uv():
    data = _eeg() * 150  # large artefacts, then clipped by an export at +-3000 uV
    data[3] = np.clip(data[3], -3000, 3000)
    share = np.mean(np.abs(data[3]) == 3000)
    assert share > 0.01
    problems = unusable_channels(data, SFREQ)
    assert problems[3].startswith("clipped at +-3000 uV (")


def test_saturation_at_the_header_range():
    data = _eeg()
    data = np.round(data / np.abs(data).max() * 80, 1)
    rails = np.tile([-100.0, 100.0], (4, 1))
    data[1, ::97] = 100.0  # isolated samples at the rail: no evidence (exporters put one sample at each limit)
    for start in range(0, 1600, 100):
        data[0, start:start + 4] = 100.0  # plateaus of 4 samples at the rail: 4 % of samples
    assert unusable_channels(data, SFREQ, rails_uv=rails) == {
        0: "saturated: 4.0% of samples on plateaus at the amplifier's limits (+-100 uV)"}


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"expects \(n_channels, n_times\), got shape \(10,\)"):
        unusable_channels(np.zeros(10), SFREQ)
    with pytest.raises(ValueError, match="sampling rate must be a positive number of Hz, got 0"):
        unusable_channels(np.zeros((1, 10)), 0)


@pytest.mark.parametrize("module_name", ["e2llm.channels_e2llm", "e2llm.channel_quality_e2llm"])
def test_docstring_examples(module_name):
    pytest.importorskip("mne")
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
