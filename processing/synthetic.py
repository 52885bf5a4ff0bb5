"""Synthetic EEG datasets: SEED-VII-like trials of `e2llm.processing.synthetic_eeg`'s generator, and SEED-VII's
exact on-disk layout written from them.

`synthetic_trials` yields SEED-VII-like trials (its per-clip labels and sessions); `write_synthetic_seed_vii` writes
them in SEED-VII's exact on-disk layout (see `e2llm.processing.readers.seed_vii`), so the quickstart and the tests
use the real reader path, with a marker file that makes `e2llm prepare` call the data synthetic. The generator's
names (`SyntheticEEG`, `SyntheticEEGConfig`, `harder_config`, ...) are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from scipy.io import savemat

from e2llm.configuration_e2llm import SEED_VII_EMOTIONS
from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.dataset_io import Trial
from e2llm.processing.features import lds_smooth, seed_features_from_trial
from e2llm.processing.readers.seed_vii import SEED_VII_VIDEO_EMOTIONS, write_label_table
from e2llm.processing.synthetic_eeg import (
    EMOTION_FAA,
    EMOTION_PATTERNS,
    EYES_CLOSED_ALPHA,
    HARDER,
    NON_EMOTION_KINDS,
    PATTERN_AREAS,
    SubjectProfile,
    SyntheticEEG,
    SyntheticEEGConfig,
    emotion_patterns,
    harder_config,
)


def seed_vii_clip_labels(label_names: Sequence[str] = SEED_VII_EMOTIONS) -> np.ndarray:
    """Class index of each SEED-VII clip 1..80 (`(80,)`, index into `label_names`)."""
    return np.array([list(label_names).index(name) for name in SEED_VII_VIDEO_EMOTIONS])


def synthetic_trials(
    n_subjects: int = 2,
    trial_seconds: float = 12.0,
    seed: int = 0,
    config: SyntheticEEGConfig | None = None,
    clips: Sequence[int] | None = None,
    subjects: Sequence[int] | None = None,
) -> Iterator[Trial]:
    """Synthetic SEED-VII-like trials: subjects 1..`n_subjects` (or `subjects`) x 80 clips (or `clips`,
    numbers 1..80) with SEED-VII's per-clip labels and sessions (clips 1-20 session 1, ...), in µV."""
    gen = SyntheticEEG(config, seed=seed)
    if tuple(gen.config.label_names) != tuple(SEED_VII_EMOTIONS):
        raise ValueError("synthetic_trials follows SEED-VII's clip labels; use SyntheticEEG.trial for other label sets")
    n_times = _n_times(trial_seconds, gen.config.sfreq)
    labels = seed_vii_clip_labels()
    clips = range(1, 81) if clips is None else [int(c) for c in clips]
    subjects = range(1, int(n_subjects) + 1) if subjects is None else [int(s) for s in subjects]
    for subject in subjects:
        for clip in clips:
            if not 1 <= clip <= 80:
                raise ValueError(f"SEED-VII clip numbers are 1..80, got {clip}")
            yield Trial(
                recording=gen.recording(subject, clip, int(labels[clip - 1]), n_times),
                emotion=int(labels[clip - 1]),
                subject=subject,
                session=(clip - 1) // 20 + 1,
                trial=clip,
                preprocessed=gen.config.preprocessed,
            )


def _n_times(trial_seconds: float, sfreq: float) -> int:
    n_times = int(round(float(trial_seconds) * sfreq))
    if n_times < 2:
        raise ValueError(f"trial_seconds={trial_seconds} gives fewer than 2 samples at {sfreq} Hz")
    return n_times


SYNTHETIC_MARKER = "e2llm_synthetic.json"  # written beside generated files: `e2llm prepare` then calls them synthetic


def read_synthetic_marker(root) -> dict | None:
    """The generator record `write_synthetic_seed_vii` left in `root`, or None for a folder of recorded data."""
    if root is None or not (Path(root) / SYNTHETIC_MARKER).is_file():
        return None
    try:
        record = json.loads((Path(root) / SYNTHETIC_MARKER).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{Path(root) / SYNTHETIC_MARKER} is damaged ({error}); regenerate the synthetic data") from None
    return record if isinstance(record, dict) else {}


def _check_layout_arguments(n_subjects, dtype, config: SyntheticEEGConfig, features: bool, trial_seconds) -> None:
    if int(n_subjects) < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if config.channel_names != SEED_CHANNELS or config.sfreq != 200.0:
        raise ValueError("SEED-VII files hold the 62 SEED channels at 200 Hz; keep the config's defaults")
    if features and trial_seconds < 4.0:
        raise ValueError(f"EEG_features need clips of at least 4 s, got trial_seconds={trial_seconds}")


def write_synthetic_seed_vii(
    root: str | Path,
    n_subjects: int = 2,
    trial_seconds: float = 12.0,
    seed: int = 0,
    features: bool = False,
    label_table: bool = True,
    dtype: str = "float32",
    config: SyntheticEEGConfig | None = None,
) -> Path:
    """Write synthetic EEG in SEED-VII's on-disk layout under `root` and return `root`.

    Writes ``EEG_preprocessed/{s}.mat`` (keys ``'1'..'80'``, each `(62, n_times)` µV at 200 Hz, as
    SEED-VII's official preprocessing leaves them), optionally ``EEG_features/{s}.mat`` (``de_{i}``,
    ``psd_{i}``, ``de_LDS_{i}``, each `(n_windows, 5, 62)`, computed with the SEED-exact
    `psd_de_seed` and `lds_smooth`; needs `trial_seconds` >= 4) and, with `label_table`, the
    ``emotion_label_and_stimuli_order.xlsx`` table. Two subjects of 12-s clips take about a second.
    `SYNTHETIC_MARKER` records the generator and its arguments, so `e2llm prepare seed-vii` on this folder names
    the data ``synthetic`` (never SEED-VII) in its metadata, reports and cards.
    """
    config = config or SyntheticEEGConfig(preprocessed=True)
    _check_layout_arguments(n_subjects, dtype, config, features, trial_seconds)
    root = Path(root)
    (root / "EEG_preprocessed").mkdir(parents=True, exist_ok=True)
    if features:
        (root / "EEG_features").mkdir(parents=True, exist_ok=True)
    by_subject: dict[int, dict] = {}
    for trial in synthetic_trials(n_subjects, trial_seconds, seed=seed, config=config):
        eeg = by_subject.setdefault(trial.subject, {"eeg": {}, "features": {}})
        stored = trial.recording.data.astype(dtype)
        eeg["eeg"][str(trial.trial)] = stored
        if features:  # from the stored samples, so recomputing them from the files gives the same values
            psd, de = seed_features_from_trial(stored.astype(np.float64), config.sfreq)
            eeg["features"].update({f"de_{trial.trial}": de, f"psd_{trial.trial}": psd,
                                    f"de_LDS_{trial.trial}": lds_smooth(de)})
    for subject, content in by_subject.items():
        savemat(root / "EEG_preprocessed" / f"{subject}.mat", content["eeg"])
        if features:
            savemat(root / "EEG_features" / f"{subject}.mat", content["features"])
    if label_table:
        write_label_table(root / "emotion_label_and_stimuli_order.xlsx")
    record = {"generator": "e2llm.processing.synthetic.write_synthetic_seed_vii", "layout": "seed-vii",
              "seed": int(seed), "n_subjects": int(n_subjects), "trial_seconds": float(trial_seconds),
              "config": generator_knobs(config), "recorded_from_people": False}
    (root / SYNTHETIC_MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return root


def generator_knobs(config: SyntheticEEGConfig) -> dict:
    """The knobs that make a set harder or easier (`HARDER`), as the marker file records them (JSON-ready)."""
    names = ("effect_size", "responsiveness_range", "subject_emotion_sd", "subject_pattern_sd", "trial_pattern_sd",
             "channel_gain_sd")
    return {name: list(v) if isinstance(v := getattr(config, name), tuple) else v for name in names}


__all__ = [
    "EMOTION_FAA",
    "EMOTION_PATTERNS",
    "EYES_CLOSED_ALPHA",
    "HARDER",
    "NON_EMOTION_KINDS",
    "PATTERN_AREAS",
    "SubjectProfile",
    "SyntheticEEG",
    "SyntheticEEGConfig",
    "SYNTHETIC_MARKER",
    "emotion_patterns",
    "generator_knobs",
    "harder_config",
    "read_synthetic_marker",
    "seed_vii_clip_labels",
    "synthetic_trials",
    "write_synthetic_seed_vii",
]
