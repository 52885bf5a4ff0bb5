"""Helpers shared by the dataset readers: loading ``.mat`` files and checking arrays with clear messages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from e2llm.processing.recording import Recording, recording_from_raw
from e2llm.recording_file_e2llm import read_raw_file, select_file_channels


def require_dir(path: str | Path, what: str) -> Path:
    """`path` as a Path; FileNotFoundError naming `what` when it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {path}")
    return path


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def load_mat(path: str | Path, variable_names: Iterable[str] | None = None) -> dict:
    """`scipy.io.loadmat` without MATLAB's ``__header__`` entries; ValueError naming the file if unreadable."""
    path = Path(path)
    try:
        content = loadmat(path, variable_names=None if variable_names is None else list(variable_names))
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise ValueError(f"Cannot read {path}: MATLAB v7.3 (HDF5) files are not supported by scipy ({exc})") from exc
    except Exception as exc:  # scipy raises several types for a corrupt or non-MATLAB file
        raise ValueError(f"Cannot read {path} as a MATLAB .mat file: {type(exc).__name__}: {exc}") from exc
    return {key: value for key, value in content.items() if not key.startswith("__")}


def check_eeg_array(array, source: str, n_channels: int, channel_axis: int = 0, min_times: int = 1) -> np.ndarray:
    """A 2-D finite float64 array with `n_channels` along `channel_axis`, returned as `(n_channels, n_times)`."""
    try:
        data = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: expected a numeric array, got {type(array).__name__}") from None
    if data.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D array of {n_channels} channels, got shape {data.shape}")
    if channel_axis == 1:
        data = data.T
    if data.shape[0] != n_channels:
        raise ValueError(f"{source}: expected {n_channels} channels, got shape {data.shape} "
                         f"(channels on axis {channel_axis})")
    if data.shape[1] < min_times:
        raise ValueError(f"{source}: only {data.shape[1]} samples")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{source}: contains NaN or Inf values")
    return data


def uv_recording(data: np.ndarray, sfreq: float, ch_names, source: str, **provenance) -> Recording:
    """A `Recording` in microvolts from a dataset file."""
    return Recording(data=data, sfreq=float(sfreq), ch_names=list(ch_names), units="uV",
                     provenance={"source": source, **provenance})


def open_raw(path: str | Path):
    """The file opened without loading its samples (clips are read one by one), as a
    `e2llm.recording_file_e2llm.RawFile` (``.raw``, MNE's ``.warnings``, the EDF ``.header`` checks); damaged files and
    unreadable formats are refused with a clear ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EEG recording not found: {path}")
    return read_raw_file(path, preload=False)


def raw_clip(raw_file, start: float, stop: float, source: str) -> Recording:
    """The EEG channels of `raw_file` (from `open_raw`) from `start` to `stop` seconds as a `Recording` in volts
    (reads only that part); the channels by the one channel rule, MNE's warnings in the provenance."""
    raw = raw_file.raw
    duration = raw.n_times / raw.info["sfreq"]
    if not 0 <= start < stop <= duration:
        raise ValueError(f"{source}: clip {start}-{stop} s lies outside the {duration:.1f}-s recording")
    selection = select_file_channels(raw_file, source)
    clip = raw.copy().crop(tmin=start, tmax=stop, include_tmax=False)
    recording = recording_from_raw(clip, source=f"{source} [{start:g}-{stop:g} s]", selection=selection,
                                   warnings=raw_file.warnings)
    recording.provenance["clip_seconds"] = [float(start), float(stop)]
    return recording


def numbered_keys(keys: Iterable[str], pattern: str) -> dict[int, str]:
    """`{number: key}` for the keys matching `pattern` (a regex with one group capturing the number)."""
    regex = re.compile(pattern)
    found = {}
    for key in keys:
        match = regex.fullmatch(key)
        if match:
            found[int(match.group(1))] = key
    return found


def check_numbers(found: Iterable[int], expected: Iterable[int], source: str, what: str) -> None:
    """ValueError naming the missing and unexpected numbers when `found` differs from `expected`."""
    found, expected = set(found), set(expected)
    if found != expected:
        missing, extra = sorted(expected - found), sorted(found - expected)
        raise ValueError(f"{source}: {len(found)} {what} where {len(expected)} are expected"
                         + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else ""))


def file_number(path: Path, pattern: str, what: str) -> tuple[int, ...]:
    """The integer groups of `pattern` matched against the file name; ValueError if it does not match."""
    match = re.fullmatch(pattern, path.name)
    if not match:
        raise ValueError(f"{path}: file name does not follow the {what} naming ({pattern})")
    return tuple(int(g) for g in match.groups())


def subject_filter(subjects) -> set[int] | None:
    return None if subjects is None else {int(s) for s in subjects}


__all__ = [
    "check_eeg_array",
    "check_numbers",
    "file_number",
    "load_mat",
    "numbered_keys",
    "open_raw",
    "raw_clip",
    "require_dir",
    "require_file",
    "subject_filter",
    "uv_recording",
]
