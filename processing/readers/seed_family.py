"""SEED, SEED-IV and SEED-V: the earlier SJTU emotion datasets (62-channel ESI NeuroScan EEG).

SEED datasheet:
    source: BCMI lab, SJTU (https://bcmi.sjtu.edu.cn/home/seed/), licence-gated.
    subjects: 15, 3 sessions each (on different days), 15 film clips per session (about 4 min).
    channels: the 62 SEED channels; rate 200 Hz (downsampled, 0-75 Hz band-pass); units µV.
    labels: negative (-1), neutral (0), positive (1) -> class indices 0, 1, 2.
    file tree::

        Preprocessed_EEG/{subject}_{YYYYMMDD}.mat   keys {initials}_eeg1..15, each (62, T)
        Preprocessed_EEG/label.mat                  label (1, 15) = [1 0 -1 -1 0 1 -1 0 1 1 0 -1 0 1 -1]
        ExtractedFeatures/{subject}_{YYYYMMDD}.mat  de_LDS1..15, de_movingAve*, psd_*, ... each (62, W, 5), 1-s windows

    A subject's sessions are its three files in date order.

SEED-IV datasheet:
    subjects: 15, 3 sessions x 24 clips (2 min). Channels, rate, units as SEED.
    labels: 0 neutral, 1 sad, 2 fear, 3 happy (here "neutral", "sadness", "fear", "happiness").
    file tree::

        eeg_raw_data/{1,2,3}/{subject}_{YYYYMMDD}.mat        keys {initials}_eeg1..24, each (62, T) at 200 Hz
        eeg_feature_smooth/{1,2,3}/{subject}_{YYYYMMDD}.mat  de_LDS1..24, de_movingAve*, psd_*, (62, W, 5), 4-s windows

SEED-V datasheet:
    subjects: 16, 3 sessions x 15 clips. Raw Neuroscan at 1000 Hz, 66 channels (the 62 + M1, M2, VEO, HEO).
    labels: 0 disgust, 1 fear, 2 sad, 3 neutral, 4 happy (here "disgust", "fear", "sadness", "neutral", "happiness").
    file tree::

        EEG_raw/{subject}_{session}_{YYYYMMDD}.cnt     whole sessions; clip times from the official loader
        EEG_DE_features/{subject}_123.npz              'data', 'label': pickled dicts keyed 0..44
                                                       (session-major), trial arrays (W, 310) channel-major (62 x 5)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.dataset_io import EEGDatasetReader, Trial
from e2llm.processing.readers._common import (
    check_eeg_array,
    check_numbers,
    file_number,
    load_mat,
    numbered_keys,
    open_raw,
    raw_clip,
    require_dir,
    subject_filter,
    uv_recording,
)
from e2llm.processing.readers._safe_pickle import UnsafePickleError, safe_loads, safe_npz_entry

SEED_SFREQ = 200.0
SEED_LABELS: tuple[int, ...] = (1, 0, -1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 0, 1, -1)
SEED_IV_LABELS: dict[int, tuple[int, ...]] = {
    1: (1, 2, 3, 0, 2, 0, 0, 1, 0, 1, 2, 1, 1, 1, 2, 3, 2, 2, 3, 3, 0, 3, 0, 3),
    2: (2, 1, 3, 0, 0, 2, 0, 2, 3, 3, 2, 3, 2, 0, 1, 1, 2, 1, 0, 3, 0, 1, 3, 1),
    3: (1, 2, 2, 1, 3, 3, 3, 1, 1, 2, 1, 0, 2, 3, 3, 0, 2, 3, 0, 0, 2, 0, 1, 0),
}
# SEED-V clip labels and clip start/end seconds per session, as in the dataset's official loading code.
SEED_V_LABELS: dict[int, tuple[int, ...]] = {
    1: (4, 1, 3, 2, 0, 4, 1, 3, 2, 0, 4, 1, 3, 2, 0),
    2: (2, 1, 3, 0, 4, 4, 0, 3, 2, 1, 3, 4, 1, 2, 0),
    3: (2, 1, 3, 0, 4, 4, 0, 3, 2, 1, 3, 4, 1, 2, 0),
}
SEED_V_START_SECONDS: dict[int, tuple[int, ...]] = {
    1: (30, 132, 287, 555, 773, 982, 1271, 1628, 1730, 2025, 2227, 2435, 2667, 2932, 3204),
    2: (30, 299, 548, 646, 836, 1000, 1091, 1392, 1657, 1809, 1966, 2186, 2333, 2490, 2741),
    3: (30, 353, 478, 674, 825, 908, 1200, 1346, 1451, 1711, 2055, 2307, 2457, 2726, 2888),
}
SEED_V_END_SECONDS: dict[int, tuple[int, ...]] = {
    1: (102, 228, 524, 742, 920, 1240, 1568, 1697, 1994, 2166, 2401, 2607, 2901, 3172, 3359),
    2: (267, 488, 614, 773, 967, 1059, 1331, 1622, 1777, 1908, 2153, 2302, 2428, 2709, 2817),
    3: (321, 418, 643, 764, 877, 1147, 1284, 1418, 1679, 1996, 2275, 2425, 2664, 2857, 3066),
}
MAT_NAME_PATTERN = r"(\d+)_(\d{8})\.mat"
SEED_V_RAW_PATTERN = r"(\d+)_(\d)_(\d{8})\.cnt"
FEATURE_KINDS = ("de_LDS", "de_movingAve", "psd_LDS", "psd_movingAve")


def _eeg_keys(content: dict, path: Path, n_trials: int) -> dict[int, str]:
    """`{trial: key}` of the ``{initials}_eeg{n}`` arrays of a SEED/SEED-IV file, all `n_trials` of them."""
    keys = numbered_keys(content, r"[A-Za-z0-9]+_eeg(\d+)")
    check_numbers(keys, range(1, n_trials + 1), str(path), "trials ({initials}_eeg*)")
    return keys


def _read_seed_mat(path: Path, n_trials: int, labels, subject: int, session: int) -> Iterator[Trial]:
    content = load_mat(path)
    keys = _eeg_keys(content, path, n_trials)
    for number in range(1, n_trials + 1):
        source = f"{path}['{keys[number]}']"
        data = check_eeg_array(content[keys[number]], source, len(SEED_CHANNELS))
        yield Trial(recording=uv_recording(data, SEED_SFREQ, SEED_CHANNELS, source, reader="seed-family"),
                    emotion=int(labels[number - 1]), subject=subject, session=session, trial=number,
                    preprocessed=True)


def _features_by_key(path: Path, kind: str, n_trials: int) -> dict[int, np.ndarray]:
    """SEED/SEED-IV feature arrays `(62, W, 5)` of one file as `{trial: (W, 5, 62)}`."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind must be one of {FEATURE_KINDS}, got {kind!r}")
    content = load_mat(path)
    keys = numbered_keys(content, rf"{kind}(\d+)")
    check_numbers(keys, range(1, n_trials + 1), str(path), f"{kind}* arrays")
    out = {}
    for number, key in keys.items():
        array = np.asarray(content[key], dtype=np.float64)
        if array.ndim != 3 or array.shape[0] != len(SEED_CHANNELS) or array.shape[2] != 5:
            raise ValueError(f"{path}['{key}']: expected shape (62, n_windows, 5), got {array.shape}")
        out[number] = np.transpose(array, (1, 2, 0))
    return out


class SEEDReader(EEGDatasetReader):
    """SEED (3 classes). Sessions are a subject's files in date order. See the module docstring."""

    name = "seed"
    label_names = ("negative", "neutral", "positive")
    channel_names = SEED_CHANNELS
    n_trials = 15

    def __init__(self, root, subjects=None):
        self.root = require_dir(root, "SEED")
        self.subjects = subject_filter(subjects)
        self.eeg_dir = require_dir(self.root / "Preprocessed_EEG", "SEED Preprocessed_EEG")
        label_file = self.eeg_dir / "label.mat"
        if label_file.is_file():
            labels = np.asarray(load_mat(label_file).get("label", np.empty(0))).ravel()
            if labels.shape != (self.n_trials,) or not set(labels.tolist()) <= {-1, 0, 1}:
                raise ValueError(f"{label_file}: 'label' must hold 15 values in {{-1, 0, 1}}, got {labels.tolist()}")
            self.labels, self.label_source = tuple(int(v) for v in labels), str(label_file)
        else:
            self.labels, self.label_source = SEED_LABELS, "built-in"

    def describe(self) -> dict:
        return {**super().describe(), "labels": self.label_source}

    def _files(self, directory: Path) -> list[tuple[Path, int, int]]:
        """`(path, subject, session)` for the subject files of `directory`, sessions by date."""
        files = [p for p in directory.glob("*.mat") if p.name != "label.mat"]
        parsed = sorted((file_number(p, MAT_NAME_PATTERN, "SEED ({subject}_{YYYYMMDD}.mat)"), p) for p in files)
        out, seen = [], {}
        for (subject, _), path in parsed:
            seen[subject] = seen.get(subject, 0) + 1
            if self.subjects is None or subject in self.subjects:
                out.append((path, subject, seen[subject]))
        if not out:
            raise FileNotFoundError(f"No SEED subject files ({{subject}}_{{YYYYMMDD}}.mat) in {directory}")
        return out

    def items(self) -> list[tuple[Path, int, int]]:
        return self._files(self.eeg_dir)

    def read_item(self, item) -> Iterator[Trial]:
        path, subject, session = item
        classes = [v + 1 for v in self.labels]  # -1, 0, 1 -> negative, neutral, positive
        return _read_seed_mat(path, self.n_trials, classes, subject, session)

    def features(self, kind: str = "de_LDS") -> Iterator[dict]:
        """``ExtractedFeatures`` as dicts with ``subject``, ``session``, ``trial``, ``emotion``,
        ``features`` `(n_windows, 5, 62)` (transposed from the files' `(62, W, 5)`)."""
        directory = require_dir(self.root / "ExtractedFeatures", "SEED ExtractedFeatures")
        for path, subject, session in self._files(directory):
            for number, array in sorted(_features_by_key(path, kind, self.n_trials).items()):
                yield {"subject": subject, "session": session, "trial": number,
                       "emotion": self.labels[number - 1] + 1, "features": array}


class SEEDIVReader(EEGDatasetReader):
    """SEED-IV (4 classes), sessions from the folders 1, 2, 3. See the module docstring."""

    name = "seed-iv"
    label_names = ("neutral", "sadness", "fear", "happiness")
    channel_names = SEED_CHANNELS
    n_trials = 24

    def __init__(self, root, subjects=None):
        self.root = require_dir(root, "SEED-IV")
        self.subjects = subject_filter(subjects)

    def _files(self, folder: str) -> list[tuple[Path, int, int]]:
        base = require_dir(self.root / folder, f"SEED-IV {folder}")
        out = []
        for session in (1, 2, 3):
            directory = require_dir(base / str(session), f"SEED-IV {folder} session")
            for path in sorted(directory.glob("*.mat")):
                subject, _ = file_number(path, MAT_NAME_PATTERN, "SEED-IV ({subject}_{YYYYMMDD}.mat)")
                if self.subjects is None or subject in self.subjects:
                    out.append((path, subject, session))
        if not out:
            raise FileNotFoundError(f"No SEED-IV subject files in {base}/{{1,2,3}}")
        return sorted(out, key=lambda x: (x[1], x[2]))

    def items(self):
        return self._files("eeg_raw_data")

    def read_item(self, item) -> Iterator[Trial]:
        path, subject, session = item
        return _read_seed_mat(path, self.n_trials, SEED_IV_LABELS[session], subject, session)

    def features(self, kind: str = "de_LDS") -> Iterator[dict]:
        """``eeg_feature_smooth`` arrays as dicts (see `SEEDReader.features`), `(n_windows, 5, 62)`."""
        for path, subject, session in self._files("eeg_feature_smooth"):
            for number, array in sorted(_features_by_key(path, kind, self.n_trials).items()):
                yield {"subject": subject, "session": session, "trial": number,
                       "emotion": SEED_IV_LABELS[session][number - 1], "features": array}


class SEEDVReader(EEGDatasetReader):
    """SEED-V (5 classes) from the raw ``.cnt`` sessions, cut at the official clip times. See the module docstring."""

    name = "seed-v"
    label_names = ("disgust", "fear", "sadness", "neutral", "happiness")
    channel_names = SEED_CHANNELS
    n_trials = 15

    def __init__(self, root, subjects=None):
        self.root = require_dir(root, "SEED-V")
        self.subjects = subject_filter(subjects)

    def items(self) -> list[tuple[Path, int, int]]:
        directory = require_dir(self.root / "EEG_raw", "SEED-V EEG_raw")
        out = []
        for path in directory.glob("*.cnt"):
            subject, session, _ = file_number(path, SEED_V_RAW_PATTERN, "SEED-V ({subject}_{session}_{YYYYMMDD}.cnt)")
            if session not in SEED_V_LABELS:
                raise ValueError(f"{path}: session {session} outside 1..3")
            if self.subjects is None or subject in self.subjects:
                out.append((path, subject, session))
        if not out:
            raise FileNotFoundError(f"No SEED-V raw files ({{subject}}_{{session}}_{{YYYYMMDD}}.cnt) in {directory}")
        return sorted(out, key=lambda x: (x[1], x[2]))

    def read_item(self, item) -> Iterator[Trial]:
        path, subject, session = item
        raw_file = open_raw(path)
        duration = raw_file.raw.n_times / raw_file.raw.info["sfreq"]
        if SEED_V_END_SECONDS[session][-1] > duration:
            raise ValueError(f"{path}: recording of {duration:.1f} s ends before the last clip "
                             f"({SEED_V_END_SECONDS[session][-1]} s)")
        for number, (start, stop) in enumerate(zip(SEED_V_START_SECONDS[session], SEED_V_END_SECONDS[session]), 1):
            recording = raw_clip(raw_file, float(start), float(stop), str(path))
            missing = [c for c in SEED_CHANNELS if c not in recording.ch_names]
            if missing:
                raise ValueError(f"{path}: SEED channels {missing} are missing")
            yield Trial(recording=recording, emotion=SEED_V_LABELS[session][number - 1], subject=subject,
                        session=session, trial=number, preprocessed=False)

    def features(self) -> Iterator[dict]:
        """``EEG_DE_features`` as dicts (see `SEEDReader.features`), `(n_windows, 5, 62)` from `(W, 310)`."""
        directory = require_dir(self.root / "EEG_DE_features", "SEED-V EEG_DE_features")
        files = sorted(directory.glob("*_123.npz"), key=lambda p: file_number(p, r"(\d+)_123\.npz", "SEED-V DE"))
        for path in files:
            subject = file_number(path, r"(\d+)_123\.npz", "SEED-V DE")[0]
            if self.subjects is not None and subject not in self.subjects:
                continue
            data, labels = (_npz_dict(path, key) for key in ("data", "label"))
            check_numbers(data, range(45), str(path), "trials in 'data'")
            for key in range(45):
                array = np.asarray(data[key], dtype=np.float64)
                if array.ndim != 2 or array.shape[1] != 310:
                    raise ValueError(f"{path}['data'][{key}]: expected shape (n_windows, 310), got {array.shape}")
                label = np.unique(np.asarray(labels[key]).ravel())
                if label.size != 1 or not 0 <= label[0] < len(self.label_names):
                    raise ValueError(f"{path}['label'][{key}]: expected one label in 0..4, got {label.tolist()}")
                yield {"subject": subject, "session": key // 15 + 1, "trial": key % 15 + 1, "emotion": int(label[0]),
                       "features": array.reshape(-1, len(SEED_CHANNELS), 5).transpose(0, 2, 1)}


def _npz_dict(path: Path, key: str) -> dict:
    """A dict stored under `key` of a SEED-V ``.npz`` (pickled bytes, as the dataset ships them, or an object).

    Never runs code from the file: object arrays and pickled bytes go through the allow-list unpickler."""
    try:
        value = safe_npz_entry(path, key)
    except KeyError:
        raise ValueError(f"{path}: no '{key}' entry") from None
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}['{key}']: {exc}") from None
    except Exception as exc:
        raise ValueError(f"Cannot read {path}: {type(exc).__name__}: {exc}") from exc
    value = value.item() if value.dtype == object and value.ndim == 0 else value
    if isinstance(value, (bytes, np.bytes_, np.ndarray)):
        raw = bytes(value) if not isinstance(value, np.ndarray) else value.tobytes()
        try:
            value = safe_loads(raw)
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}['{key}']: {exc}") from None
        except Exception as exc:
            raise ValueError(f"{path}['{key}']: not a pickled dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{path}['{key}']: expected a dict keyed by trial, got {type(value).__name__}")
    return {int(k): v for k, v in value.items()}


__all__ = [
    "SEEDIVReader",
    "SEEDReader",
    "SEEDVReader",
    "SEED_IV_LABELS",
    "SEED_LABELS",
    "SEED_V_END_SECONDS",
    "SEED_V_LABELS",
    "SEED_V_START_SECONDS",
]
