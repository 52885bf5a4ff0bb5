"""DEAP: music-video EEG with valence / arousal / dominance / liking self-ratings.

Datasheet:
    source: Koelstra et al. 2012, Queen Mary University of London
        (https://www.eecs.qmul.ac.uk/mmv/datasets/deap/), licence-gated.
    subjects: 32; 40 one-minute music videos each (one session).
    channels: 32 EEG in Geneva order (Fp1 AF3 F3 F7 FC5 FC1 C3 T7 CP5 CP1 P3 P7 PO3 O1 Oz Pz Fp2 AF4 Fz F4
        F8 FC6 FC2 Cz C4 T8 CP6 CP2 P4 P8 PO4 O2), then 8 peripheral channels (dropped here).
    rate: 128 Hz (preprocessed: downsampled, EOG removed, 4-45 Hz band-pass, common average); units µV.
    labels: ratings 1-9 of valence, arousal, dominance, liking; classes "high" when above `label_threshold`
        (default 5) for valence or arousal, or the four valence/arousal quadrants.
    file tree::

        data_preprocessed_python/s01.dat .. s32.dat   Python-2 pickles (latin1):
            data (40 trials, 40 channels, 8064) = 3-s baseline + 60 s at 128 Hz; labels (40, 4)

    The 3-s pre-trial baseline is always cut off; with ``baseline_removal=True`` the mean of its three
    1-s segments is first subtracted from every 1-s segment of the trial (the usual DEAP practice).
    The pickles are read with an allow-list unpickler (numpy arrays and plain containers only), so a crafted
    file cannot run code; anything else in it is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from e2llm.processing.dataset_io import EEGDatasetReader, Trial
from e2llm.processing.readers._common import file_number, require_dir, subject_filter, uv_recording
from e2llm.processing.readers._ratings import (
    check_ratings,
    check_threshold,
    rating_classes,
    rating_label_names,
    subtract_baseline,
)
from e2llm.processing.readers._safe_pickle import UnsafePickleError, safe_load

DEAP_CHANNELS: tuple[str, ...] = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
    "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2",
)
DEAP_SFREQ = 128.0
DEAP_BASELINE_SECONDS = 3
DEAP_SHAPE = (40, 40, 8064)
DEAP_RATING_SCALE = (1.0, 9.0)


class DEAPReader(EEGDatasetReader):
    """DEAP trials (see the module docstring).

    Args:
        root: the DEAP folder (holding ``data_preprocessed_python``).
        target: "valence", "arousal" or "quadrant".
        label_threshold: ratings above it are "high" (default 5 on the 1-9 scale).
        baseline_removal: subtract the 1-s baseline template from the trial.
        subjects: subject numbers (1..32) to read.
    """

    name = "deap"
    channel_names = DEAP_CHANNELS
    rating_columns = ("valence", "arousal", "dominance")

    def __init__(self, root, target: str = "valence", label_threshold: float = 5.0, baseline_removal: bool = False,
                 subjects=None):
        self.root = require_dir(root, "DEAP")
        self.target, self.label_threshold = target, check_threshold(label_threshold, DEAP_RATING_SCALE, "DEAP")
        self.label_names = rating_label_names(target)
        self.baseline_removal = bool(baseline_removal)
        self.subjects = subject_filter(subjects)

    def describe(self) -> dict:
        return {**super().describe(), "target": self.target, "label_threshold": self.label_threshold,
                "baseline_removal": self.baseline_removal}

    def items(self) -> list[Path]:
        directory = require_dir(self.root / "data_preprocessed_python", "DEAP data_preprocessed_python")
        files = sorted(directory.glob("s*.dat"), key=lambda p: file_number(p, r"s(\d+)\.dat", "DEAP (sNN.dat)"))
        files = [p for p in files if self.subjects is None or int(p.stem[1:]) in self.subjects]
        if not files:
            raise FileNotFoundError(f"No DEAP subject files (s01.dat ...) in {directory}")
        return files

    def read_item(self, path: Path) -> Iterator[Trial]:
        try:
            with open(path, "rb") as handle:
                content = safe_load(handle, encoding="latin1")
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
        except Exception as exc:
            raise ValueError(f"Cannot read {path} as a DEAP pickle: {type(exc).__name__}: {exc}") from exc
        if not isinstance(content, dict) or "data" not in content or "labels" not in content:
            raise ValueError(f"{path}: expected a dict with 'data' and 'labels'")
        data, ratings = np.asarray(content["data"], dtype=np.float64), np.asarray(content["labels"], dtype=np.float64)
        if data.shape != DEAP_SHAPE:
            raise ValueError(f"{path}: 'data' has shape {data.shape}, expected {DEAP_SHAPE} (trial, channel, sample)")
        if ratings.shape != (DEAP_SHAPE[0], 4):
            raise ValueError(f"{path}: 'labels' has shape {ratings.shape}, expected (40, 4)")
        if not (np.all(np.isfinite(data)) and np.all(np.isfinite(ratings))):
            raise ValueError(f"{path}: contains NaN or Inf values")
        check_ratings(ratings, DEAP_RATING_SCALE, f"{path}['labels']")
        subject = int(path.stem[1:])
        classes = rating_classes(ratings[:, 0], ratings[:, 1], self.target, self.label_threshold)
        n_base = int(DEAP_BASELINE_SECONDS * DEAP_SFREQ)
        eeg = data[:, : len(DEAP_CHANNELS)]
        for index in range(DEAP_SHAPE[0]):
            trial = eeg[index, :, n_base:]
            if self.baseline_removal:
                trial = subtract_baseline(trial, eeg[index, :, :n_base], DEAP_SFREQ)
            source = f"{path}['data'][{index}]"
            yield Trial(
                recording=uv_recording(np.ascontiguousarray(trial), DEAP_SFREQ, DEAP_CHANNELS, source, reader="deap"),
                emotion=int(classes[index]), subject=subject, session=1, trial=index + 1,
                ratings=dict(zip(self.rating_columns, ratings[index, :3].tolist())), preprocessed=True,
            )


__all__ = ["DEAPReader", "DEAP_CHANNELS"]
