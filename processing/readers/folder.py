"""Your own EEG: a folder of MNE-readable recordings plus a CSV/TSV label table.

Datasheet:
    source: any recordings `mne.io.read_raw` reads (EDF/EDF+, BDF, FIF, BrainVision .vhdr, EEGLAB .set,
        Neuroscan .cnt, GDF), in volts as MNE gives them; non-EEG channels (EOG, ECG, reference,
        stimulus...) are dropped and names normalised to 10-05 spelling.
    channels: each file's EEG channels by the one channel rule (`e2llm.channels_e2llm`: MNE types, bad channels,
        non-EEG names; `channel_map` and `montage` for caps whose labels are not 10-05 names). When the files do not
        share one channel set, `channel_policy` says what to keep ("common", "each", "interpolate"; see
        `e2llm.processing.readers._channel_policy`); without it they are refused, never narrowed in silence.
        `channel_report` lists per file what was used, dropped (with the reason), left out or interpolated.
    rate: each file's own; `e2llm prepare` filters and resamples every trial.
    labels: the values of the table's label column (default ``emotion``); classes are their sorted
        unique values, or `label_names`.
    file tree::

        root/
            labels.csv (or labels.tsv, or any table passed as `label_table`)
            sub-01_run-1.edf ...

    Table columns: ``file`` (path relative to `root`), the label column, and optionally ``subject``,
    ``session``, ``trial`` (integers; default 1, 1 and the row's number within its subject and
    session), ``start`` / ``stop`` (seconds: several trials cut from one recording), ``valence``,
    ``arousal``, ``dominance``. Files in the folder but not in the table are ignored; a table row
    naming a missing file is an error.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from e2llm.processing.dataset_io import RATING_COLUMNS, EEGDatasetReader, Trial
from e2llm.processing.readers._channel_policy import inspect_files, interpolate_missing, resolve_channels
from e2llm.processing.readers._common import require_dir, require_file
from e2llm.processing.recording import UNIT_SCALES, Recording, crop_recording, read_recording

DEFAULT_TABLES = ("labels.csv", "labels.tsv")


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """`(columns, rows)` of a CSV (comma) or TSV (tab, for ``.tsv``/``.txt``) table with a header line."""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
            header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"Cannot read label table {path}: {exc}") from exc
    if not rows:
        raise ValueError(f"label table {path} has no rows")
    return header, rows


def _as_int(value: str, column: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{where}: column {column!r} must be an integer, got {value!r}") from None


def _as_float(value: str, column: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{where}: column {column!r} must be a number, got {value!r}") from None


class FolderReader(EEGDatasetReader):
    """Recordings listed in a label table (see the module docstring).

    Args:
        root: the folder of recordings.
        label_table: the CSV/TSV table (default ``root/labels.csv`` or ``root/labels.tsv``).
        label_column: the table's label column.
        label_names: the classes, in index order (default: the sorted values found).
        channels: EEG channels to keep (10-05 names; default: from the files, see `channel_policy`).
        channel_policy: "common", "each" or "interpolate" when the files' channel sets differ (module docstring).
        channel_map, montage: for the channel rule (`e2llm.channels_e2llm.select_channels`).
        units: what the numbers MNE reads really are ("V", "mV", "uV") when the files' headers are wrong.
        interface: "python" or "cli": the words of the messages.
        name: the dataset name stored in the metadata.
    """

    def __init__(self, root, label_table=None, label_column: str = "emotion", label_names=None, channels=None,
                 channel_policy: str | None = None, channel_map=None, montage=None, units: str | None = None,
                 interface: str = "python", name: str = "folder"):
        self.root = require_dir(root, "Recording")
        self.name = str(name)
        if label_table is None:
            found = [self.root / t for t in DEFAULT_TABLES if (self.root / t).is_file()]
            if not found:
                raise FileNotFoundError(f"No label table in {self.root} (looked for {list(DEFAULT_TABLES)}); "
                                        "pass one with label_table= / --labels")
            label_table = found[0]
        self.table = require_file(label_table, "label table")
        columns, rows = read_table(self.table)
        for column in ("file", label_column):
            if column not in columns:
                raise ValueError(f"{self.table}: no {column!r} column (columns: {columns})")
        self.label_column = label_column
        self.rating_columns = tuple(c for c in RATING_COLUMNS if c in columns)
        self.rows = self._parse_rows(rows)
        values = {r["label"] for r in self.rows}
        numeric = all(v.lstrip("-").isdigit() for v in values)
        values = sorted(values, key=int) if numeric else sorted(values)
        if label_names is None:
            self.label_names = tuple(values)
        else:
            self.label_names = tuple(str(n) for n in label_names)
            unknown = sorted(set(values) - set(self.label_names))
            if unknown:
                raise ValueError(f"{self.table}: labels {unknown} are not in label_names {list(self.label_names)}")
        self.channel_map, self.montage, self.units, self.interface = channel_map, montage, units, interface
        if units is not None and units not in UNIT_SCALES:
            raise ValueError(f"units must be one of {sorted(UNIT_SCALES)}, got {units!r}")
        files = inspect_files(self.items(), channel_map=channel_map, montage=montage, interface=interface)
        self.channel_policy = channel_policy
        self.channel_names, self.channel_report = resolve_channels(files, channel_policy, channels, str(self.table),
                                                                   interface)
        self.partial_channels = channel_policy == "each"
        stated = {info.line_freq for info in files.values()}
        self.line_freq = stated.pop() if len(stated) == 1 else None  # when every file states the same one

    def _parse_rows(self, rows: list[dict]) -> list[dict]:
        parsed, missing, counters, seen = [], [], {}, {}
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            where = f"{self.table}, line {number}"
            if not row["file"] or not row[self.label_column]:
                raise ValueError(f"{where}: empty 'file' or {self.label_column!r}")
            path = Path(row["file"])
            path = path if path.is_absolute() else self.root / path
            if not path.is_file():
                missing.append(row["file"])
                continue
            subject = _as_int(row["subject"], "subject", where) if row.get("subject") else 1
            session = _as_int(row["session"], "session", where) if row.get("session") else 1
            counters[(subject, session)] = counters.get((subject, session), 0) + 1
            trial = _as_int(row["trial"], "trial", where) if row.get("trial") else counters[(subject, session)]
            key = (subject, session, trial)
            if key in seen:
                raise ValueError(f"{where}: (subject, session, trial) = {key} repeats line {seen[key]}")
            seen[key] = number
            start = _as_float(row["start"], "start", where) if row.get("start") else 0.0
            stop = _as_float(row["stop"], "stop", where) if row.get("stop") else None
            if stop is not None and stop <= start:
                raise ValueError(f"{where}: stop ({stop}) must be after start ({start})")
            ratings = {c: _as_float(row[c], c, where) for c in self.rating_columns}
            parsed.append({"path": path, "label": row[self.label_column], "subject": subject, "session": session,
                           "trial": trial, "start": start, "stop": stop, "ratings": ratings, "line": number})
        if missing:
            raise ValueError(f"{self.table} names {len(missing)} file(s) not found under {self.root}: {missing[:10]}")
        return parsed

    def describe(self) -> dict:
        return {**super().describe(), "label_table": str(self.table), "label_column": self.label_column,
                "channel_policy": self.channel_report["policy"], "channel_map": self.channel_map,
                "montage": self.montage, "units": self.units}

    def items(self) -> list[Path]:
        return list(dict.fromkeys(r["path"] for r in self.rows))

    def _recording(self, path: Path) -> Recording:
        """The file's EEG in volts on the dataset's channels (its own subset with channel_policy="each")."""
        recording = read_recording(path, channel_map=self.channel_map, montage=self.montage,
                                   interface=self.interface)
        if self.units is not None:  # the header's unit is wrong: MNE's numbers are really in `units`
            recording.data = recording.data * UNIT_SCALES[self.units]
            recording.provenance["units_override"] = self.units
        if self.channel_policy == "interpolate":
            return interpolate_missing(recording, self.channel_names)
        missing = [n for n in self.channel_names if n not in recording.ch_names]
        if missing and self.channel_policy != "each":
            reasons = {n: recording.provenance["dropped_channels"].get(n, "not in the file") for n in missing}
            option = "--channels each" if self.interface == "cli" else 'channel_policy="each"'
            raise ValueError(f"{path}: channels {reasons} cannot be used, so the dataset's channels "
                             f"{list(self.channel_names)} are not all there; use {option} or \"interpolate\"")
        return recording

    def read_item(self, path: Path) -> Iterator[Trial]:
        recording = self._recording(path)
        for row in (r for r in self.rows if r["path"] == path):
            part = recording
            if row["start"] > 0 or row["stop"] is not None:
                part = crop_recording(recording, row["start"], row["stop"])
            yield Trial(recording=part, emotion=self.label_names.index(row["label"]), subject=row["subject"],
                        session=row["session"], trial=row["trial"], ratings=row["ratings"], preprocessed=False)


__all__ = ["FolderReader", "read_table"]
