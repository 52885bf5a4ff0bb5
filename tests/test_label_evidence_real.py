"""The abstention rule on real recordings from other labs (MNE's public test data, `tests/fixtures/real`): EEG as
recorded is never refused, the same EEG drowned in noise or replaced by mains is."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from e2llm.electrodes import canonical_channel_name
from e2llm.label_evidence_e2llm import abstention_reason, window_statistics

mne = pytest.importorskip("mne")
REAL = Path(__file__).parent / "fixtures" / "real"
RECORDINGS = ["nihon_kohden/MB0400FU.EEG", "bdf/multiple_annotation_chans_20s.bdf", "brainvision/test.vhdr",
              "edf/chtypes_edf.edf"]


def _windows(path: Path) -> tuple[np.ndarray, list[str]]:
    """4-s windows `(n, n_channels, 800)` µV at 200 Hz of the recording's 10-05 EEG channels, as recorded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    types = raw.get_channel_types()
    raw.pick([i for i, name in enumerate(raw.ch_names) if canonical_channel_name(name) and types[i] == "eeg"])
    raw.resample(200.0, verbose="error")
    data = raw.get_data() * 1e6
    n = data.shape[1] // 800
    return np.stack([data[:, k * 800 : (k + 1) * 800] for k in range(n)]), list(raw.ch_names)


def _reasons(windows, names, statistics=None):
    stats = window_statistics(windows, 200.0, names)
    return [abstention_reason({k: v[i] for k, v in stats.items()}, statistics) for i in range(len(windows))]


@pytest.mark.parametrize("recording", RECORDINGS)
def test_real_eeg_is_not_refused(recording):
    windows, names = _windows(REAL / recording)
    assert len(windows) >= 1
    # a model trained on narrow synthetic ranges widens nothing here and narrows nothing either
    narrow = {"abstention": {"slope": [-2.2, -1.7], "alpha_ratio": [0.1, 0.9]}}
    assert _reasons(windows, names) == [None] * len(windows)
    assert _reasons(windows, names, narrow) == [None] * len(windows)


def test_real_eeg_replaced_by_noise_or_mains_is_refused():
    windows, names = _windows(REAL / "nihon_kohden/MB0400FU.EEG")
    rng = np.random.default_rng(0)
    noise = 10 * windows.std() * rng.standard_normal(windows.shape)
    assert all(r.startswith("not like the training EEG (spectrum flat like noise") for r in _reasons(noise, names))
    t = np.arange(800) / 200.0
    mains = 50 * np.sin(2 * np.pi * 50 * t) + 0.05 * rng.standard_normal(windows.shape)
    assert _reasons(mains, names) == ["line noise dominates"] * len(windows)
    assert _reasons(np.zeros_like(windows) + 3.0, names) == ["flat signal"] * len(windows)
