"""DREAMER: film-clip EEG and ECG from a consumer headset, with valence / arousal / dominance ratings.

Datasheet:
    source: Katsigiannis & Ramzan 2018 (https://zenodo.org/record/546113), licence-gated.
    subjects: 23; 18 film clips each (one session), with a neutral baseline clip before each.
    channels: 14 EEG (Emotiv EPOC): AF3 F7 F3 FC5 T7 P7 O1 O2 P8 T8 FC6 F4 F8 AF4.
    rate: 128 Hz; raw (not filtered; large DC offset), units µV.
    labels: ratings 1-5 of valence, arousal, dominance; classes "high" when above `label_threshold`
        (default 3) for valence or arousal, or the four valence/arousal quadrants.
    file tree::

        DREAMER.mat   struct DREAMER: Data (1 x 23 struct), EEG_SamplingRate 128, EEG_Electrodes (14),
                      noOfVideoSequences 18; Data{s}.EEG.stimuli / .baseline: 18 x 1 cells of (T, 14);
                      Data{s}.ScoreValence / ScoreArousal / ScoreDominance: (18, 1)

    With scipy: ``m["DREAMER"][0, 0]["Data"][0, s]["EEG"][0, 0]["stimuli"][0, 0][t, 0]`` is `(T, 14)`.
    With ``baseline_removal=True`` the mean of the baseline clip's 1-s segments is subtracted from every
    1-s segment of the stimulus clip.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from e2llm.processing.dataset_io import EEGDatasetReader, Trial
from e2llm.processing.readers._common import (
    check_eeg_array,
    load_mat,
    require_dir,
    require_file,
    subject_filter,
    uv_recording,
)
from e2llm.processing.readers._ratings import (
    check_ratings,
    check_threshold,
    rating_classes,
    rating_label_names,
    subtract_baseline,
)

DREAMER_CHANNELS: tuple[str, ...] = (
    "AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4",
)
DREAMER_SFREQ = 128.0
DREAMER_N_VIDEOS = 18
DREAMER_RATING_SCALE = (1.0, 5.0)


def _field(struct, name: str, where: str):
    """Field `name` of a loadmat struct: a 1x1 structured array (possibly wrapped in 1x1 cells) or a record."""
    value = struct
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.flat[0]
    if isinstance(value, np.void) and value.dtype.names is not None and name in value.dtype.names:
        return value[name]
    if not isinstance(value, np.ndarray) or value.dtype.names is None or name not in value.dtype.names:
        raise ValueError(f"{where}: no field {name!r}")
    return value[name][0, 0] if value.shape == (1, 1) else value[name]


class DREAMERReader(EEGDatasetReader):
    """DREAMER trials from ``DREAMER.mat`` (one work item per subject; see the module docstring).

    Args:
        root: folder holding ``DREAMER.mat``.
        target, label_threshold: classes from the ratings (see `e2llm.processing.readers._ratings`).
        baseline_removal: subtract the baseline clip's 1-s template.
        subjects: subject numbers 1..23.
    """

    name = "dreamer"
    channel_names = DREAMER_CHANNELS
    rating_columns = ("valence", "arousal", "dominance")

    def __init__(self, root, target: str = "valence", label_threshold: float = 3.0, baseline_removal: bool = False,
                 subjects=None):
        self.root = require_dir(root, "DREAMER")
        self.path = require_file(self.root / "DREAMER.mat", "DREAMER.mat")
        self.target, self.label_threshold = target, check_threshold(label_threshold, DREAMER_RATING_SCALE, "DREAMER")
        self.label_names = rating_label_names(target)
        self.baseline_removal = bool(baseline_removal)
        self.subjects = subject_filter(subjects)
        self._data = None

    def describe(self) -> dict:
        return {**super().describe(), "target": self.target, "label_threshold": self.label_threshold,
                "baseline_removal": self.baseline_removal}

    def _load(self):
        if self._data is None:
            content = load_mat(self.path)
            if "DREAMER" not in content:
                raise ValueError(f"{self.path}: no 'DREAMER' struct (keys: {sorted(content)})")
            top = content["DREAMER"]
            where = f"{self.path}: DREAMER"
            sfreq = float(np.asarray(_field(top, "EEG_SamplingRate", where)).ravel()[0])
            if sfreq != DREAMER_SFREQ:
                raise ValueError(f"{where}.EEG_SamplingRate is {sfreq}, expected {DREAMER_SFREQ}")
            electrodes = [str(np.asarray(e).ravel()[0]) for e in np.asarray(_field(top, "EEG_Electrodes", where)).ravel()]
            if tuple(electrodes) != DREAMER_CHANNELS:
                raise ValueError(f"{where}.EEG_Electrodes is {electrodes}, expected {list(DREAMER_CHANNELS)}")
            self._data = np.asarray(_field(top, "Data", where))
        return self._data

    def items(self) -> list[int]:
        n_subjects = self._load().size
        subjects = [s for s in range(1, n_subjects + 1) if self.subjects is None or s in self.subjects]
        if not subjects:
            raise ValueError(f"{self.path}: none of the subjects {sorted(self.subjects or [])} among 1..{n_subjects}")
        return subjects

    def read_item(self, subject: int) -> Iterator[Trial]:
        record = self._load().ravel()[subject - 1]
        where = f"{self.path}: DREAMER.Data{{{subject}}}"
        eeg = _field(record, "EEG", where)
        stimuli = np.asarray(_field(eeg, "stimuli", f"{where}.EEG")).ravel()
        baselines = np.asarray(_field(eeg, "baseline", f"{where}.EEG")).ravel()
        scores = {}
        for column, field in (("valence", "ScoreValence"), ("arousal", "ScoreArousal"), ("dominance", "ScoreDominance")):
            scores[column] = np.asarray(_field(record, field, where), dtype=np.float64).ravel()
        for name, values in (("stimuli", stimuli), ("baseline", baselines), *scores.items()):
            if values.size != DREAMER_N_VIDEOS:
                raise ValueError(f"{where}: {name} has {values.size} entries, expected {DREAMER_N_VIDEOS}")
        for column, values in scores.items():
            check_ratings(values, DREAMER_RATING_SCALE, f"{where} {column} ratings")
        classes = rating_classes(scores["valence"], scores["arousal"], self.target, self.label_threshold)
        for index in range(DREAMER_N_VIDEOS):
            source = f"{where}.EEG.stimuli{{{index + 1}}}"
            data = check_eeg_array(stimuli[index], source, len(DREAMER_CHANNELS), channel_axis=1)
            if self.baseline_removal:
                base = check_eeg_array(baselines[index], f"{where}.EEG.baseline{{{index + 1}}}",
                                       len(DREAMER_CHANNELS), channel_axis=1)
                data = subtract_baseline(data, base, DREAMER_SFREQ)
            yield Trial(
                recording=uv_recording(np.ascontiguousarray(data), DREAMER_SFREQ, DREAMER_CHANNELS, source,
                                       reader="dreamer"),
                emotion=int(classes[index]), subject=subject, session=1, trial=index + 1,
                ratings={k: float(v[index]) for k, v in scores.items()}, preprocessed=False,
            )


__all__ = ["DREAMERReader", "DREAMER_CHANNELS"]
