"""SEED-VII: seven emotions, 20 subjects, 62-channel EEG (the paper's target dataset).

Datasheet:
    source: BCMI lab, Shanghai Jiao Tong University (https://bcmi.sjtu.edu.cn/home/seed/), licence-gated.
    subjects: 20; 4 sessions x 20 film clips = 80 trials per subject, clips 2-5 min.
    channels: the 62 SEED channels (`e2llm.electrodes.SEED_CHANNELS`); raw files add VEO, HEO, ECG.
    rate: 200 Hz preprocessed (bad channels interpolated, 0.1-70 Hz band-pass, 50 Hz notch); 1000 Hz raw.
    units: microvolts in the ``.mat`` files; volts (MNE) for the raw ``.cnt``.
    labels: happiness, sadness, fear, disgust, neutral, anger, surprise (8 neutral clips, 12 of each
        other); 5 of the 7 emotions per session. Clip k belongs to session (k - 1) // 20 + 1.
    file tree::

        EEG_preprocessed/{1..20}.mat      keys '1'..'80', each (62, T) at 200 Hz
        EEG_features/{1..20}.mat          de_{i}, psd_{i}, de_LDS_{i} (i = 1..80), each (W, 5, 62)
        EEG_raw/{subject}_{YYYYMMDD}_{session}.cnt   Neuroscan, 1000 Hz, start/end annotation per clip
        save_info/{name}_trigger_info.csv            correct triggers of 9_20221111_3 and 14_20221015_1
        emotion_label_and_stimuli_order.xlsx         "Video index" rows, each followed by "Session k"

    official protocol: 4 folds of 5 clips per session (`e2llm.processing.splits.seed_vii_folds`).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from openpyxl import Workbook, load_workbook

from e2llm.configuration_e2llm import SEED_VII_EMOTIONS
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
    require_file,
    subject_filter,
    uv_recording,
)

SEED_VII_SFREQ = 200.0
SEED_VII_N_CLIPS = 80
SEED_VII_CLIPS_PER_SESSION = 20
LABEL_TABLE = "emotion_label_and_stimuli_order.xlsx"

_SESSION_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("happiness", "neutral", "disgust", "sadness", "anger", "anger", "sadness", "disgust", "neutral", "happiness"),
    ("anger", "sadness", "fear", "neutral", "surprise", "surprise", "neutral", "fear", "sadness", "anger"),
    ("happiness", "surprise", "disgust", "fear", "anger", "anger", "fear", "disgust", "surprise", "happiness"),
    ("disgust", "sadness", "fear", "surprise", "happiness", "happiness", "surprise", "fear", "sadness", "disgust"),
)
# Emotion of each video 1..80 (index 0 = video 1): each session plays its 10-clip pattern twice.
SEED_VII_VIDEO_EMOTIONS: tuple[str, ...] = tuple(name for pattern in _SESSION_PATTERNS for name in pattern * 2)
# How the label table (and other sources) spell the emotions.
EMOTION_SYNONYMS: dict[str, str] = {
    "happy": "happiness", "happiness": "happiness", "joy": "happiness",
    "sad": "sadness", "sadness": "sadness",
    "fear": "fear", "afraid": "fear",
    "disgust": "disgust", "disgusted": "disgust",
    "neutral": "neutral",
    "anger": "anger", "angry": "anger",
    "surprise": "surprise", "surprised": "surprise",
}
# Raw files whose in-file triggers are wrong, and the wall-clock time their recording started.
BAD_TRIGGER_FILES: dict[str, str] = {"9_20221111_3": "14:01:27", "14_20221015_1": "14:25:34"}
RAW_NAME_PATTERN = r"(\d+)_(\d{8})_(\d)\.cnt"


def normalise_emotion(name, source: str) -> str:
    """The `SEED_VII_EMOTIONS` spelling of `name` ("Happy" -> "happiness"); ValueError if unknown."""
    key = str(name).strip().lower()
    if key not in EMOTION_SYNONYMS:
        raise ValueError(f"{source}: unknown emotion {name!r}; expected one of {sorted(set(EMOTION_SYNONYMS))}")
    return EMOTION_SYNONYMS[key]


def read_label_table(path: str | Path) -> tuple[str, ...]:
    """The 80 clip emotions from ``emotion_label_and_stimuli_order.xlsx`` (video 1 first).

    The sheet has a "Video index" row (numbers in columns B..U) followed by a "Session k" row
    with the 20 emotion names of those videos, for k = 1..4.
    """
    path = require_file(path, "SEED-VII label table")
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise ValueError(f"Cannot read the SEED-VII label table {path}: {type(exc).__name__}: {exc}") from exc
    try:
        rows = [list(row) for row in workbook.active.iter_rows(values_only=True)]
    finally:
        workbook.close()
    emotions: dict[int, str] = {}
    for previous, row in zip(rows, rows[1:]):
        head = str(row[0] or "").strip().lower()
        if not head.startswith("session"):
            continue
        if not str(previous[0] or "").strip().lower().startswith("video"):
            raise ValueError(f"{path}: row {row[0]!r} does not follow a 'Video index' row")
        videos = [v for v in previous[1:] if v is not None]
        names = [v for v in row[1:] if v is not None]
        if len(videos) != SEED_VII_CLIPS_PER_SESSION or len(names) != SEED_VII_CLIPS_PER_SESSION:
            raise ValueError(f"{path}: {row[0]!r} lists {len(names)} emotions for {len(videos)} videos, "
                             f"expected {SEED_VII_CLIPS_PER_SESSION}")
        for video, name in zip(videos, names):
            emotions[int(video)] = normalise_emotion(name, f"{path} ({row[0]})")
    check_numbers(emotions, range(1, SEED_VII_N_CLIPS + 1), str(path), "videos")
    return tuple(emotions[k] for k in range(1, SEED_VII_N_CLIPS + 1))


def write_label_table(path: str | Path, emotions=SEED_VII_VIDEO_EMOTIONS) -> Path:
    """Write the label table in SEED-VII's layout (emotion names spelled as in the dataset: "Happy", "Sad"...)."""
    spelled = {"happiness": "Happy", "sadness": "Sad"}
    workbook = Workbook()
    sheet = workbook.active
    for session in range(4):
        first = session * SEED_VII_CLIPS_PER_SESSION
        sheet.append(["Video index", *range(first + 1, first + SEED_VII_CLIPS_PER_SESSION + 1)])
        names = emotions[first : first + SEED_VII_CLIPS_PER_SESSION]
        sheet.append([f"Session {session + 1}", *(spelled.get(n, n.capitalize()) for n in names)])
    path = Path(path)
    workbook.save(path)
    return path


def read_trigger_info(path: str | Path, recording_start: str, sfreq: float) -> np.ndarray:
    """Trigger times (seconds from the recording start) from a ``save_info/*_trigger_info.csv``.

    Rows are ``event,YYYY-MM-DD HH:MM:SS.ffffff`` without a header; `recording_start` is the
    wall-clock ``HH:MM:SS`` at which the ``.cnt`` recording began. Times are rounded to samples.
    """
    path = require_file(path, "SEED-VII trigger file")
    start = dt.datetime.strptime(recording_start, "%H:%M:%S")
    times = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            try:
                clock = dt.datetime.strptime(row[1].strip().split(" ")[-1], "%H:%M:%S.%f")
            except (IndexError, ValueError):
                raise ValueError(f"{path}, line {number}: expected 'event,YYYY-MM-DD HH:MM:SS.ffffff', got {row}") from None
            times.append(round((clock - start).total_seconds() * sfreq) / sfreq)
    return np.asarray(times, dtype=np.float64)


class SEEDVIIReader(EEGDatasetReader):
    """Read SEED-VII trials (see the module docstring for the layout).

    Args:
        root: the dataset folder.
        source: "preprocessed" (``EEG_preprocessed``, µV at 200 Hz, not filtered again) or "raw"
            (``EEG_raw`` ``.cnt`` files through MNE, volts at 1000 Hz, filtered by `e2llm prepare`).
        subjects: subject numbers to read (default: all files found).
        label_table: path of the label xlsx (default: ``root/emotion_label_and_stimuli_order.xlsx``
            when present, else the built-in `SEED_VII_VIDEO_EMOTIONS`).
    """

    name = "seed-vii"
    label_names = SEED_VII_EMOTIONS
    channel_names = SEED_CHANNELS

    def __init__(self, root, source: str = "preprocessed", subjects=None, label_table=None):
        if source not in ("preprocessed", "raw"):
            raise ValueError(f"SEED-VII source must be 'preprocessed' or 'raw', got {source!r}")
        self.root = require_dir(root, "SEED-VII")
        self.source = source
        self.subjects = subject_filter(subjects)
        table = Path(label_table) if label_table is not None else self.root / LABEL_TABLE
        if label_table is not None or table.is_file():
            self.video_emotions, self.label_source = read_label_table(table), str(table)
        else:
            self.video_emotions, self.label_source = SEED_VII_VIDEO_EMOTIONS, "built-in"

    def describe(self) -> dict:
        out = {**super().describe(), "source": self.source, "labels": self.label_source}
        if self.source == "preprocessed":
            out["source_preprocessing"] = ("SEED-VII official: bad channels interpolated, 0.1-70 Hz band-pass, "
                                           "50 Hz notch, 1000 -> 200 Hz")
        return out

    def emotion_of_clip(self, clip: int) -> int:
        return self.label_names.index(self.video_emotions[clip - 1])

    def _subject_files(self, folder: str, suffix: str) -> list[Path]:
        directory = require_dir(self.root / folder, f"SEED-VII {folder}")
        files = sorted((p for p in directory.glob(f"*{suffix}") if p.stem.isdigit()), key=lambda p: int(p.stem))
        files = [p for p in files if self.subjects is None or int(p.stem) in self.subjects]
        if not files:
            raise FileNotFoundError(f"No SEED-VII subject files ({{subject}}{suffix}) in {directory}"
                                    + (f" for subjects {sorted(self.subjects)}" if self.subjects else ""))
        return files

    def items(self) -> list[Path]:
        if self.source == "preprocessed":
            return self._subject_files("EEG_preprocessed", ".mat")
        directory = require_dir(self.root / "EEG_raw", "SEED-VII EEG_raw")
        files = sorted(directory.glob("*.cnt"), key=lambda p: file_number(p, RAW_NAME_PATTERN, "SEED-VII raw"))
        files = [p for p in files if self.subjects is None or int(p.name.split("_")[0]) in self.subjects]
        if not files:
            raise FileNotFoundError(f"No SEED-VII raw files ({{subject}}_{{YYYYMMDD}}_{{session}}.cnt) in {directory}")
        return files

    def read_item(self, item: Path) -> Iterator[Trial]:
        return self._read_preprocessed(item) if self.source == "preprocessed" else self._read_raw(item)

    def _read_preprocessed(self, path: Path) -> Iterator[Trial]:
        subject = int(path.stem)
        content = load_mat(path)
        clips = numbered_keys(content, r"(\d+)")
        check_numbers(clips, range(1, SEED_VII_N_CLIPS + 1), str(path), "trials")
        for clip in range(1, SEED_VII_N_CLIPS + 1):
            source = f"{path}['{clip}']"
            data = check_eeg_array(content[clips[clip]], source, len(SEED_CHANNELS))
            yield Trial(
                recording=uv_recording(data, SEED_VII_SFREQ, SEED_CHANNELS, source, reader="seed-vii"),
                emotion=self.emotion_of_clip(clip),
                subject=subject,
                session=(clip - 1) // SEED_VII_CLIPS_PER_SESSION + 1,
                trial=clip,
                preprocessed=True,
            )

    def clip_times(self, path: Path, raw) -> np.ndarray:
        """`(20, 2)` start/end seconds of the clips of one raw session file (an `mne.io.Raw`)."""
        name = path.stem
        sfreq = float(raw.info["sfreq"])
        if name in BAD_TRIGGER_FILES:
            csv_path = self.root / "save_info" / f"{name}_trigger_info.csv"
            times = read_trigger_info(csv_path, BAD_TRIGGER_FILES[name], sfreq)
            where = str(csv_path)
        else:
            times = np.sort(np.asarray(raw.annotations.onset, dtype=np.float64) - float(raw.first_time))
            where = f"{path} (annotations)"
        expected = 2 * SEED_VII_CLIPS_PER_SESSION
        if times.size != expected:
            raise ValueError(f"{where}: {times.size} triggers, expected {expected} (start and end of 20 clips)")
        pairs = times.reshape(SEED_VII_CLIPS_PER_SESSION, 2)
        duration = raw.n_times / sfreq
        if np.any(pairs[:, 1] <= pairs[:, 0]) or pairs.min() < 0 or pairs.max() > duration:
            raise ValueError(f"{where}: triggers are not increasing start/end pairs within the {duration:.1f}-s recording")
        return pairs

    def _read_raw(self, path: Path) -> Iterator[Trial]:
        subject, _, session = file_number(path, RAW_NAME_PATTERN, "SEED-VII raw")
        if not 1 <= session <= 4:
            raise ValueError(f"{path}: session {session} outside 1..4")
        raw_file = open_raw(path)
        pairs = self.clip_times(path, raw_file.raw)
        for index, (start, stop) in enumerate(pairs):
            clip = (session - 1) * SEED_VII_CLIPS_PER_SESSION + index + 1
            recording = raw_clip(raw_file, start, stop, str(path))
            missing = [c for c in SEED_CHANNELS if c not in recording.ch_names]
            if missing:
                raise ValueError(f"{path}: SEED channels {missing} are missing")
            yield Trial(recording=recording, emotion=self.emotion_of_clip(clip), subject=subject, session=session,
                        trial=clip, preprocessed=False)

    def features(self, kind: str = "de") -> Iterator[dict]:
        """Published features from ``EEG_features``: dicts with ``subject``, ``session``, ``trial``,
        ``emotion`` and ``features`` `(n_windows, 5, 62)` (window, band, channel).

        `kind` is "de", "psd" or "de_LDS".
        """
        if kind not in ("de", "psd", "de_LDS"):
            raise ValueError(f"SEED-VII feature kind must be 'de', 'psd' or 'de_LDS', got {kind!r}")
        for path in self._subject_files("EEG_features", ".mat"):
            content = load_mat(path)
            clips = numbered_keys(content, rf"{kind}_(\d+)")
            check_numbers(clips, range(1, SEED_VII_N_CLIPS + 1), str(path), f"{kind}_* arrays")
            for clip in range(1, SEED_VII_N_CLIPS + 1):
                array = np.asarray(content[clips[clip]], dtype=np.float64)
                if array.ndim != 3 or array.shape[1:] != (5, len(SEED_CHANNELS)):
                    raise ValueError(f"{path}['{clips[clip]}']: expected shape (n_windows, 5, 62), got {array.shape}")
                yield {"subject": int(path.stem), "session": (clip - 1) // SEED_VII_CLIPS_PER_SESSION + 1,
                       "trial": clip, "emotion": self.emotion_of_clip(clip), "features": array}


__all__ = [
    "BAD_TRIGGER_FILES",
    "EMOTION_SYNONYMS",
    "LABEL_TABLE",
    "SEEDVIIReader",
    "SEED_VII_VIDEO_EMOTIONS",
    "normalise_emotion",
    "read_label_table",
    "read_trigger_info",
    "write_label_table",
]
