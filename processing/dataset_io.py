"""The prepared-dataset format: windows of EEG with labels, as a `datasets.Dataset`.

A prepared dataset has one row per window:

| column | type | meaning |
|---|---|---|
| ``eeg`` | `Array2D((n_channels, n_times), float32)` | the window, in microvolts |
| ``emotion`` | `ClassLabel(names=label_names)` | the trial's class |
| ``subject``, ``session``, ``trial`` | int32 | who, which session, which clip (unique within subject+session) |
| ``start`` | float64 | seconds from the start of the trial |
| ``valence``, ``arousal``, ``dominance`` | float32 | self-ratings (DEAP, DREAMER only) |

Its metadata is a JSON dict in ``dataset.info.description`` (it survives ``save_to_disk``,
``load_from_disk``, ``select``, ``filter``, ``map`` and ``train_test_split``) with the keys of
`METADATA_KEYS`; `save_prepared` also writes ``summary.json`` (counts per class, subject and
session, and the metadata) next to the Arrow files.

Readers yield `Trial` objects (one clip each); `trial_windows` is the one path from a trial to
windows (preprocessing chain of `e2llm.processing.preprocess`, microvolts, windowing), and
`windows_to_dataset` writes the windows chunk by chunk into Arrow.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from datasets.arrow_writer import ArrowWriter

from e2llm.processing.metadata import (
    DATASET_UNITS,
    METADATA_KEYS,
    check_metadata,
    dataset_fingerprint,
    dataset_metadata,
)
from e2llm.processing.preprocess import preprocess_recording, window_recording
from e2llm.processing.recording import Recording, convert_units
from e2llm.safe_output import check_output_dir, staged_dir
from e2llm.signal_e2llm import count_windows, window_params

RATING_COLUMNS: tuple[str, ...] = ("valence", "arousal", "dominance")
INDEX_COLUMNS: tuple[str, ...] = ("subject", "session", "trial")
SUMMARY_FILE = "summary.json"


@dataclass
class Trial:
    """One clip of one subject: its recording and its labels.

    Attributes:
        recording: the clip's samples `(n_channels, n_times)`, channels in the reader's order.
        emotion: index of the class in the reader's `label_names`.
        subject, session, trial: identifiers; `trial` is unique within subject and session.
        ratings: self-ratings such as ``{"valence": 7.1, "arousal": 3.0, "dominance": 5.2}``.
        preprocessed: True when the source is already filtered (SEED-family ``.mat`` files): the
            chain then only resamples and re-references as needed, never filters again.
    """

    recording: Recording
    emotion: int
    subject: int
    session: int
    trial: int
    ratings: dict[str, float] = field(default_factory=dict)
    preprocessed: bool = False


class EEGDatasetReader(ABC):
    """Base of the dataset readers: a list of work items (files) and the trials in each.

    Subclasses set `name`, `label_names`, `channel_names` (and `rating_columns`) and implement
    `items()` and `read_item(item)`; iterating the reader yields every `Trial`.
    """

    name: str = ""
    label_names: tuple[str, ...] = ()
    channel_names: tuple[str, ...] = ()
    rating_columns: tuple[str, ...] = ()

    @abstractmethod
    def items(self) -> list:
        """Work items (usually files), in reading order; progress is reported per item."""

    @abstractmethod
    def read_item(self, item) -> Iterator[Trial]:
        """The trials of one work item."""

    def describe(self) -> dict:
        """What was read, for the ``source`` metadata entry."""
        return {"reader": type(self).__name__, "root": str(getattr(self, "root", ""))}

    def __iter__(self) -> Iterator[Trial]:
        for item in self.items():
            yield from self.read_item(item)


def window_features(
    n_channels: int, n_times: int, label_names: Sequence[str], rating_columns: Sequence[str] = ()
):
    """The `datasets.Features` of a prepared dataset."""
    columns = {
        "eeg": datasets.Array2D(shape=(int(n_channels), int(n_times)), dtype="float32"),
        "emotion": datasets.ClassLabel(names=list(label_names)),
        "subject": datasets.Value("int32"),
        "session": datasets.Value("int32"),
        "trial": datasets.Value("int32"),
        "start": datasets.Value("float64"),
    }
    columns.update({name: datasets.Value("float32") for name in rating_columns})
    return datasets.Features(columns)


def _reorder_channels(recording: Recording, channel_names: Sequence[str]) -> Recording:
    if list(recording.ch_names) == list(channel_names):
        return recording
    source = recording.provenance.get("source", "recording")
    missing = [name for name in channel_names if name not in recording.ch_names]
    if missing:
        raise ValueError(f"{source}: channels {missing} are missing (expected {list(channel_names)})")
    order = [recording.ch_names.index(name) for name in channel_names]
    return Recording(
        data=recording.data[order],
        sfreq=recording.sfreq,
        ch_names=list(channel_names),
        units=recording.units,
        annotations=recording.annotations,
        provenance=recording.provenance,
    )


# Median channel standard deviation (µV, before filtering) a trial must have: below, the samples are volts stored
# as microvolts (or the trial is dead); above, microvolts stored as volts. Scalp EEG sits at ~5-100 µV.
PLAUSIBLE_TRIAL_STD_UV = (0.05, 1e5)


def check_trial_signal(trial: Trial) -> None:
    """ValueError naming the trial when its samples are not usable EEG: NaN/Inf, every channel constant (an
    all-zero trial), or a typical amplitude that contradicts the stated units."""
    recording = trial.recording
    where = f"{recording.provenance.get('source', 'recording')} (subject {trial.subject}, session {trial.session}, " \
            f"trial {trial.trial})"
    data = np.asarray(recording.data)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{where}: contains NaN or Inf samples; repair the file or leave the subject out (--subjects)")
    spread = np.ptp(data, axis=-1)
    if np.all(spread == 0):
        raise ValueError(f"{where}: every channel is constant (a flat or all-zero trial); repair the file or leave "
                         "the subject out (--subjects)")
    scale = convert_units(Recording(np.ones((1, 1)), 1.0, ["x"], recording.units), DATASET_UNITS).data[0, 0]
    typical = float(np.median(data[spread > 0].std(axis=-1))) * scale
    low, high = PLAUSIBLE_TRIAL_STD_UV
    if not low <= typical <= high:
        guess = "volts stored as microvolts" if typical < low else "microvolts stored as volts"
        raise ValueError(f"{where}: median channel std is {typical:.3g} µV with units {recording.units!r}, outside "
                         f"{low:g}-{high:g} µV: this looks like {guess}; check the dataset's units (a folder of "
                         "recordings: `e2llm prepare folder ... --units uV` or `--units V` states them)")


def trial_windows(trial: Trial, params, channel_names: Sequence[str], filter: bool = True) -> dict | None:
    """The windows of one trial as a column chunk for `windows_to_dataset` (None if it has none).

    Raw sources go through `preprocess_recording(rec, params, filter=filter)`; already-preprocessed
    ones through the same chain with ``filter=False`` (resampling only where the rate differs).
    The chunk has ``eeg`` `(n_windows, n_channels, n_win)` float32 microvolts, ``start``
    `(n_windows,)` seconds, the trial's identifiers and label, its ratings, and the recording's
    ``provenance`` (not written to the dataset).
    """
    check_trial_signal(trial)
    recording = _reorder_channels(trial.recording, channel_names)
    recording = preprocess_recording(recording, params, filter=filter and not trial.preprocessed)
    recording = convert_units(recording, DATASET_UNITS)
    n_win, stride = window_params(recording.sfreq, params.window_seconds, params.stride_seconds)
    if count_windows(recording.data.shape[-1], n_win, stride) == 0:
        return None
    windows, starts = window_recording(recording, params)
    chunk = {
        "eeg": np.asarray(windows, dtype=np.float32),
        "emotion": int(trial.emotion),
        "subject": int(trial.subject),
        "session": int(trial.session),
        "trial": int(trial.trial),
        "start": np.asarray(starts, dtype=np.float64),
    }
    chunk.update({name: float(value) for name, value in trial.ratings.items()})
    chunk["provenance"] = recording.provenance
    return chunk


def _temporary_directory() -> str:
    path = tempfile.mkdtemp(prefix="e2llm-windows-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def windows_to_dataset(chunks: Iterable[dict | None], metadata: dict, cache_dir: str | Path | None = None):
    """Write window chunks (from `trial_windows`) into an Arrow-backed `datasets.Dataset`.

    Chunks are written one by one, so memory holds one trial at a time. Scalar entries of a chunk
    (``emotion``, ``subject``, ...) apply to all its windows; None chunks are skipped.

    Args:
        chunks: dicts with ``eeg`` `(n_windows, n_channels, n_times)`, ``start`` `(n_windows,)`, and
            ``emotion``, ``subject``, ``session``, ``trial`` (plus the metadata's ``rating_columns``).
        metadata: the dict of `METADATA_KEYS` (plus optional ``rating_columns``), stored as JSON in
            ``info.description``. It is serialised after the last chunk, so the code producing the
            chunks may complete it (e.g. with the preprocessing steps it applied).
        cache_dir: folder for the Arrow file (default: a temporary folder removed at exit).
    """
    check_metadata(metadata, "windows_to_dataset")
    channel_names = list(metadata["channel_names"])
    n_times = int(round(float(metadata["window_seconds"]) * float(metadata["sampling_rate"])))
    rating_columns = list(metadata.get("rating_columns", []))
    n_labels = len(metadata["label_names"])
    features = window_features(len(channel_names), n_times, metadata["label_names"], rating_columns)
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(_temporary_directory())
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"windows-{uuid.uuid4().hex}.arrow"
    writer = ArrowWriter(features=features, path=str(path))
    try:
        for chunk in chunks:
            if chunk is None:
                continue
            eeg = np.asarray(chunk["eeg"], dtype=np.float32)
            expected = (len(channel_names), n_times)
            if eeg.ndim != 3 or eeg.shape[1:] != expected:
                raise ValueError(f"windows of subject {chunk.get('subject')} trial {chunk.get('trial')} have "
                                 f"shape {eeg.shape}, expected (n_windows, {expected[0]}, {expected[1]})")
            n = eeg.shape[0]
            if n == 0:
                continue
            if not 0 <= int(chunk["emotion"]) < n_labels:
                raise ValueError(f"label index {chunk['emotion']} outside 0..{n_labels - 1}")
            batch = {"eeg": eeg, "start": np.broadcast_to(np.asarray(chunk["start"], np.float64), (n,))}
            for name in ("emotion", *INDEX_COLUMNS):
                batch[name] = np.broadcast_to(np.asarray(chunk[name], dtype=np.int64), (n,))
            for name in rating_columns:
                batch[name] = np.broadcast_to(np.asarray(chunk[name], dtype=np.float32), (n,))
            writer.write_batch(batch)
        n_rows, _ = writer.finalize()
    finally:
        writer.close()
    if n_rows == 0:
        path.unlink(missing_ok=True)
        raise ValueError(
            f"No window of {metadata['window_seconds']} s in any trial of {metadata['dataset']!r}: nothing to write"
        )
    info = datasets.DatasetInfo(description=json.dumps(check_metadata(metadata, "windows_to_dataset")), features=features)
    return datasets.Dataset.from_file(str(path), info=info)


def summarize(dataset) -> dict:
    """Counts of windows per class, subject and session, and of trials, with the metadata."""
    metadata = dataset_metadata(dataset)
    columns = dataset.select_columns(["emotion", *INDEX_COLUMNS]).with_format("numpy")[:]
    names = metadata["label_names"]
    emotion = np.asarray(columns["emotion"])
    keys = np.stack([np.asarray(columns[c]) for c in INDEX_COLUMNS], axis=1) if len(emotion) else np.zeros((0, 3))
    trials, trial_index = np.unique(keys, axis=0, return_index=True)
    counts = np.bincount(emotion, minlength=len(names))
    trial_counts = np.bincount(emotion[trial_index], minlength=len(names))
    subjects, subject_counts = np.unique(keys[:, 0], return_counts=True)
    sessions = {f"{int(s)}-{int(k)}": int(c) for (s, k), c in zip(*np.unique(keys[:, :2], axis=0, return_counts=True))}
    return {
        "dataset": metadata["dataset"],
        "n_windows": int(len(emotion)),
        "n_trials": int(len(trials)),
        "n_subjects": int(len(subjects)),
        "windows_per_class": {name: int(c) for name, c in zip(names, counts)},
        "trials_per_class": {name: int(c) for name, c in zip(names, trial_counts)},
        "windows_per_subject": {str(int(s)): int(c) for s, c in zip(subjects, subject_counts)},
        "windows_per_subject_session": sessions,
        "metadata": metadata,
    }


def save_prepared(dataset, output_dir: str | Path, summary: dict | None = None, overwrite: bool = False) -> Path:
    """Save a prepared dataset with ``save_to_disk`` plus ``summary.json`` (counts, metadata and the content
    fingerprint `load_prepared` checks), atomically.

    Everything is written into a hidden temporary folder beside `output_dir`, which is renamed
    into place only when complete, so an interrupted run never leaves a complete-looking folder.

    Args:
        dataset: a dataset from `windows_to_dataset` (or a selection of one).
        output_dir: the folder to create.
        summary: extra entries for ``summary.json`` (merged over `summarize(dataset)`).
        overwrite: replace an existing `output_dir` that e2llm wrote (see `e2llm.safe_output`);
            otherwise an existing non-empty one is an error.
    """
    metadata = dataset_metadata(dataset)
    output_dir = check_output_dir(output_dir, overwrite=overwrite)
    with staged_dir(output_dir, kind="prepared-dataset") as staging:
        dataset.save_to_disk(str(staging))
        content = {**summarize(dataset), **(summary or {})}
        content.update(metadata=metadata, fingerprint=dataset_fingerprint(dataset))
        (staging / SUMMARY_FILE).write_text(json.dumps(content, indent=2, default=str) + "\n")
    return output_dir


def _check_data_files(path: Path) -> None:
    """The Arrow files ``state.json`` names must be files of the folder itself (not another dataset's)."""
    state = path / "state.json"
    try:
        files = [entry["filename"] for entry in json.loads(state.read_text())["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: {state.name} is missing or unreadable ({error}); prepare the dataset again") from None
    outside = [name for name in files if Path(name).name != name or not (path / name).is_file()]
    if outside:
        raise ValueError(f"{path}: {state.name} names data files that are not in the folder ({outside}); a prepared "
                         "folder holds its own data: prepare the dataset again")


def verify_prepared(dataset, summary: dict, path: Path) -> None:
    """ValueError when `dataset` is not what the folder's ``summary.json`` (`summary`) describes: another
    fingerprint (folders written since fingerprints exist) or other counts (older folders)."""
    recorded = summary.get("fingerprint")
    if recorded is not None:
        found = dataset_fingerprint(dataset)
        if found != recorded:
            raise ValueError(f"{path}: its data do not match its {SUMMARY_FILE} (fingerprint {recorded} recorded, "
                             f"{found} found): the Arrow files or state.json were changed or point at another "
                             "dataset. Prepare it again (`e2llm prepare ... --overwrite`)")
        return
    found = summarize(dataset)
    differing = [key for key in ("dataset", "n_windows", "n_trials", "windows_per_class") if key in summary
                 and summary[key] != found[key]]
    if differing:
        raise ValueError(f"{path}: its data do not match its {SUMMARY_FILE} ({', '.join(differing)} differ, e.g. "
                         f"{differing[0]} {summary[differing[0]]!r} recorded, {found[differing[0]]!r} found). "
                         "Prepare it again (`e2llm prepare ... --overwrite`)")


def load_prepared(path: str | Path):
    """Load a folder written by `save_prepared` (or `e2llm prepare`) as a `datasets.Dataset`, checked against its
    ``summary.json`` (`verify_prepared`) before anything uses it.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: the folder is not a prepared e2llm dataset (no ``summary.json``, no saved dataset, no metadata),
            or its data are not the data its summary describes.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"Prepared dataset folder not found: {path}")
    if not (path / SUMMARY_FILE).is_file() or not (path / "dataset_info.json").is_file():
        raise ValueError(
            f"{path} is not a prepared e2llm dataset (expected {SUMMARY_FILE} and the files of "
            "datasets.save_to_disk; create one with `e2llm prepare`)"
        )
    _check_data_files(path)
    try:
        summary = json.loads((path / SUMMARY_FILE).read_text())
    except ValueError as error:
        raise ValueError(f"{path / SUMMARY_FILE} is not valid JSON ({error}); prepare the dataset again") from None
    dataset = datasets.load_from_disk(str(path))
    if isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"{path} holds a DatasetDict, not one prepared dataset")
    try:
        dataset_metadata(dataset)
    except ValueError:  # metadata lost from dataset_info.json: re-attach the copy in summary.json
        if "metadata" not in summary:
            raise ValueError(f"{path}: neither dataset_info.json nor {SUMMARY_FILE} holds e2llm metadata") from None
        dataset.info.description = json.dumps(check_metadata(summary["metadata"], str(path / SUMMARY_FILE)))
    verify_prepared(dataset, summary, path)
    return dataset


__all__ = [
    "DATASET_UNITS",
    "EEGDatasetReader",
    "INDEX_COLUMNS",
    "METADATA_KEYS",
    "RATING_COLUMNS",
    "SUMMARY_FILE",
    "Trial",
    "dataset_metadata",
    "check_trial_signal",
    "load_prepared",
    "save_prepared",
    "summarize",
    "trial_windows",
    "verify_prepared",
    "window_features",
    "windows_to_dataset",
]
