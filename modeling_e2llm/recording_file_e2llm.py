"""Reading EEG recording files for inference, the same way everywhere (`pipeline(path)` and `e2llm predict`).

`open_recording(path)` opens any file MNE reads (EDF/BDF, FIF, BrainVision, EEGLAB, CNT, GDF...) without loading
its samples, keeps the EEG channels under their 10-05 names and drops EOG, ECG, EMG, reference, trigger and other
non-EEG channels by name and type. Reading refuses, with one message naming the file, the problem and the fix:
a missing file, a folder, a format MNE cannot read, a file without EEG channels, and damaged files (MNE's
data-integrity warnings, such as an EDF whose record count does not match its size, become errors). The result
is an `EEGFile`, an MNE-like object (``info``, ``ch_names``, ``get_data``) that the feature extractor reads in
one piece or, with `E2LLMFeatureExtractor.iter_windows`, piece by piece in bounded memory.

MNE is imported inside the functions that need it: this module ships with the model (remote code).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from .channels_e2llm import channel_kind
from .electrodes import canonical_channel_name, find_duplicates

# MNE warnings that mean the samples on disk are not what the header promises: reading on would give wrong data.
_INTEGRITY_WARNINGS = re.compile(
    r"does not match the file size|file size|truncat|corrupt|incomplete|unexpected end|premature|"
    r"not match.*(records|samples|header)|(records|samples).*not match|mismatch|could not read|missing data",
    re.IGNORECASE,
)
FORMATS = "EDF/BDF, FIF, BrainVision (.vhdr), EEGLAB (.set), Neuroscan (.cnt), GDF"
_RECORDING_SUFFIXES = {".edf", ".bdf", ".gdf", ".fif", ".fiff", ".gz", ".vhdr", ".ahdr", ".set", ".cnt", ".mff",
                       ".ds", ".nxe", ".lay", ".eeg", ".data", ".sqd", ".con", ".snirf", ".nedf", ".xdf", ".cdt",
                       ".bin", ".e", ".egi", ".raw", ".dat", ".hdr", ".nwb", ".mef"}


def select_eeg_channels(names, types, source: str, on_unknown: str = "keep"):
    """`(indices, canonical_names, dropped, unknown)` of the EEG channels among `names` (MNE `types`).

    `on_unknown`: EEG channels whose name is no 10-05 electrode are kept under their own name ("keep"), dropped
    ("drop") or refused ("raise"). ValueError when no EEG channel is left or two names collide.
    """
    if on_unknown not in ("keep", "drop", "raise"):
        raise ValueError(f"on_unknown must be 'keep', 'drop' or 'raise', got {on_unknown!r}")
    keep, canonical, dropped, unknown = [], [], {}, []
    for index, (name, mne_type) in enumerate(zip(names, types)):
        kind = channel_kind(name, mne_type)
        if kind != "eeg":
            dropped[name] = kind
            continue
        spelled = canonical_channel_name(name)
        if spelled is None:
            unknown.append(name)
            if on_unknown == "drop":
                dropped[name] = "unknown"
                continue
            if on_unknown == "raise":
                raise ValueError(f"{source}: channel {name!r} is not a 10-05 electrode name")
            spelled = str(name).strip()
        keep.append(index)
        canonical.append(spelled)
    if not keep:
        raise ValueError(f"{source}: no EEG channel found among {list(names)}; the file must hold EEG channels")
    duplicates = find_duplicates(canonical)
    if duplicates:
        raise ValueError(f"{source}: channels {duplicates} occur more than once after renaming to 10-05 names")
    return keep, canonical, dropped, unknown


def read_raw_checked(path, preload: bool = False, **kwargs):
    """`mne.io.read_raw(path)` with clear errors: missing file, folder, unreadable format, damaged data (MNE's
    data-integrity warnings are raised as ValueError instead of being read past)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"recording not found: {path}")
    if path.is_dir() and path.suffix.lower() not in (".ds", ".mff"):  # CTF and EGI recordings are folders
        raise ValueError(f"{path} is a folder; pass a recording file ({FORMATS})")
    try:
        import mne
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading recording files needs MNE-Python: pip install mne") from error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            raw = mne.io.read_raw(path, preload=preload, verbose="warning", **kwargs)
        except Exception as error:  # MNE raises many types (even AssertionError) for a bad file
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "the file is not in that format"
            if path.suffix.lower() not in _RECORDING_SUFFIXES:
                reason = f"{path.suffix or 'no suffix'} is not a recording file type"
            raise ValueError(f"cannot read {path} as an EEG recording ({reason}); pass a recording in one of "
                             f"the formats MNE reads: {FORMATS}") from error
    damaged = [str(w.message) for w in caught if _INTEGRITY_WARNINGS.search(str(w.message))]
    if damaged:
        raise ValueError(f"{path} looks damaged or truncated: {damaged[0]} Re-export or re-copy the file; "
                         "e2llm does not read past a data-integrity problem")
    return raw


class EEGFile:
    """The EEG channels of a recording file, read lazily: MNE-like (``info["sfreq"]``, ``ch_names``,
    ``get_data``), in volts.

    Attributes:
        source: the file's path (for messages). ch_names: 10-05 names of the kept channels. n_times: samples.
        dropped: non-EEG channels left out, `{name: kind}`.
    """

    def __init__(self, raw, source: str, on_unknown: str = "keep"):
        self._raw = raw
        self.source = source
        picks, self.ch_names, self.dropped, self.unknown = select_eeg_channels(
            raw.ch_names, raw.get_channel_types(), source, on_unknown
        )
        bads = set(raw.info.get("bads", []) or [])
        kept = [(i, n) for i, n in zip(picks, self.ch_names) if raw.ch_names[i] not in bads]
        if not kept:
            raise ValueError(f"{source}: every EEG channel is marked bad in the file")
        self._picks, self.ch_names = [i for i, _ in kept], [n for _, n in kept]
        self.info = {"sfreq": float(raw.info["sfreq"]), "bads": []}
        self.n_times = int(raw.n_times)

    def get_data(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples `[start, stop)` of the EEG channels, `(n_channels, stop - start)` float64 volts."""
        stop = self.n_times if stop is None else int(stop)
        try:
            return np.asarray(self._raw.get_data(picks=self._picks, start=int(start), stop=stop, verbose="error"),
                              dtype=np.float64)
        except Exception as error:  # a file damaged after its header, e.g. cut short after opening
            raise ValueError(f"{self.source}: cannot read samples {start}-{stop}: {type(error).__name__}: {error}. "
                             "The file looks damaged; re-export or re-copy it") from error

    def __repr__(self) -> str:
        return (f"EEGFile({self.source!r}, {len(self.ch_names)} EEG channels, {self.n_times} samples at "
                f"{self.info['sfreq']} Hz)")


def open_recording(path: str | os.PathLike, on_unknown: str = "keep", **kwargs) -> EEGFile:
    """Open the EEG channels of a recording file without loading its samples (see the module docstring)."""
    return EEGFile(read_raw_checked(path, preload=False, **kwargs), str(path), on_unknown=on_unknown)


__all__ = ["EEGFile", "FORMATS", "channel_kind", "open_recording", "read_raw_checked", "select_eeg_channels"]
