"""Reading EEG recording files for inference, the same way everywhere (`pipeline(path)`, `e2llm predict`, and
`e2llm.processing.recording.read_recording` for `e2llm prepare`).

`open_recording(path)` opens any file MNE reads (EDF/BDF, FIF, BrainVision, EEGLAB, CNT, GDF, Nihon Kohden, EGI...)
without loading its samples and picks its channels with the one channel rule (`e2llm.channels_e2llm`): the file's
channel types, bad channels and digitised positions count; `channel_map` and `montage` name or place the others.
Before MNE opens the file, `e2llm.recording_checks_e2llm` refuses data files a header points at outside its
folder and judges an EDF/BDF header (an impossible header refuses the file; a channel whose scaling is impossible is
left out, with the reason). MNE's warnings are caught, never printed (standard output carries `e2llm predict`'s
JSON lines): data-integrity warnings refuse the file, the others are kept in `EEGFile.warnings`.

The result is an `EEGFile`, an MNE-like object (``info``, ``ch_names``, ``get_data``) that the feature extractor reads
in one piece or, with `E2LLMFeatureExtractor.iter_windows`, piece by piece in bounded memory; its ``selection``
says which channels are used and why the others are not.

MNE is imported inside the functions that need it: this module ships with the model (remote code).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .channels_e2llm import ChannelSelection, channel_kind, select_channels
from .recording_checks_e2llm import EDFHeaderReport, check_referenced_files, edf_header_report

# MNE warnings that mean the samples on disk are not what the header promises: reading on would give wrong data.
_INTEGRITY_WARNINGS = re.compile(
    r"does not match the file size|file size|truncat|corrupt|incomplete|unexpected end|premature|"
    r"not match.*(records|samples|header)|(records|samples).*not match|mismatch|could not read|missing data",
    re.IGNORECASE,
)
FORMATS = "EDF/BDF, FIF, BrainVision (.vhdr), EEGLAB (.set), Neuroscan (.cnt), GDF, Nihon Kohden (.EEG), EGI (.raw, .mff)"
_RECORDING_SUFFIXES = {".edf", ".bdf", ".gdf", ".fif", ".fiff", ".gz", ".vhdr", ".ahdr", ".set", ".cnt", ".mff",
                       ".ds", ".nxe", ".lay", ".eeg", ".data", ".sqd", ".con", ".snirf", ".nedf", ".xdf", ".cdt",
                       ".bin", ".e", ".egi", ".raw", ".dat", ".hdr", ".nwb", ".mef"}


@dataclass
class RawFile:
    """An MNE Raw read by `read_raw_file`, with what reading it said.

    Attributes:
        raw: the `mne.io.Raw`.
        warnings: MNE's warnings while reading (not the integrity ones, which refuse the file) and header notes.
        header: the EDF/BDF header report (None for other formats).
    """

    raw: object
    warnings: list[str] = field(default_factory=list)
    header: EDFHeaderReport | None = None


class _CaptureHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def captured_mne_output():
    """Collect MNE's warnings (Python warnings and its logger) instead of printing them: yields a list that holds
    the messages when the block ends. MNE's logger writes to standard output, which `e2llm predict` keeps for JSON."""
    import mne

    logger = logging.getLogger("mne")
    handler, saved = _CaptureHandler(), logger.handlers[:]
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.handlers = [handler]
        try:
            with mne.utils.use_log_level("warning"):
                yield messages
        finally:
            logger.handlers = saved
            for text in [str(w.message) for w in caught] + handler.messages:
                text = " ".join(text.split())
                if text and text not in messages:
                    messages.append(text)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"recording not found: {path}")
    if path.is_dir() and path.suffix.lower() not in (".ds", ".mff"):  # CTF and EGI recordings are folders
        raise ValueError(f"{path} is a folder; pass a recording file ({FORMATS})")


def _read_error(path: Path, error: Exception) -> ValueError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else "the file is not in that format"
    if path.suffix.lower() not in _RECORDING_SUFFIXES:
        reason = f"{path.suffix or 'no suffix'} is not a recording file type"
    headers = [path.with_suffix(s) for s in (".vhdr", ".ahdr") if path.with_suffix(s).is_file()]
    if path.suffix.lower() == ".eeg" and headers:
        return ValueError(f"{path} is the data part of a BrainVision recording; pass its header {headers[0]}")
    return ValueError(f"cannot read {path} as an EEG recording ({reason}); pass a recording in one of the formats "
                      f"MNE reads: {FORMATS}")


def _edf_header(path: Path) -> EDFHeaderReport | None:
    if path.suffix.lower() not in (".edf", ".bdf"):
        return None
    try:
        report = edf_header_report(path)
    except ValueError as error:
        raise ValueError(f"cannot read {path} as an EEG recording ({error}); pass a recording in one of the "
                         f"formats MNE reads: {FORMATS}") from None
    if report.truncated:
        raise ValueError(f"{path} looks damaged or truncated: {report.truncated} (its size does not match the "
                         "file size the header implies). Re-export or re-copy the file; e2llm does not read past "
                         "a data-integrity problem")
    if report.file_problems:
        raise ValueError(f"{path}: the EDF/BDF header is not plausible: {'; '.join(report.file_problems)}. Fix the "
                         "header (an EDF editor such as EDFbrowser's header editor) or re-export the recording")
    return report


def read_raw_file(path: str | os.PathLike, preload: bool = False, **kwargs) -> RawFile:
    """`mne.io.read_raw(path)` with the checks of the module docstring and clear errors: missing file, folder,
    unreadable format, referenced files outside the folder, implausible EDF/BDF header, damaged data."""
    path = Path(path)
    _check_path(path)
    try:
        import mne
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading recording files needs MNE-Python: pip install mne") from error
    check_referenced_files(path)
    header = _edf_header(path)
    reader = mne.io.read_raw_egi if path.suffix.lower() in (".raw", ".egi") else mne.io.read_raw
    with captured_mne_output() as messages:
        try:
            raw = reader(path, preload=preload, verbose="warning", **kwargs)
        except Exception as error:  # MNE raises many types (even AssertionError) for a bad file
            raise _read_error(path, error) from error
    damaged = [m for m in messages if _INTEGRITY_WARNINGS.search(m)]
    if damaged:
        raise ValueError(f"{path} looks damaged or truncated: {damaged[0]} Re-export or re-copy the file; "
                         "e2llm does not read past a data-integrity problem")
    notes = header.notes if header is not None else []
    return RawFile(raw=raw, warnings=messages + notes, header=header)


def read_raw_checked(path, preload: bool = False, **kwargs):
    """The `mne.io.Raw` of `read_raw_file` (its warnings dropped: use `read_raw_file` to keep them)."""
    return read_raw_file(path, preload=preload, **kwargs).raw


def digitised_positions(raw) -> dict[str, np.ndarray]:
    """`{channel: (3,) metres}` of the EEG channels whose positions the file holds (empty when none)."""
    montage = raw.get_montage()
    if montage is None:
        return {}
    return {name: np.asarray(xyz, dtype=np.float64) for name, xyz in montage.get_positions()["ch_pos"].items()
            if np.all(np.isfinite(xyz))}


def select_file_channels(raw_file: RawFile, source: str, channel_map=None, montage=None,
                         interface: str = "python") -> ChannelSelection:
    """The channel rule on a file: MNE types, bads and digitised positions, then the header's channel problems."""
    raw = raw_file.raw
    selection = select_channels(raw.ch_names, raw.get_channel_types(), raw.info.get("bads", []),
                                positions=digitised_positions(raw), channel_map=channel_map, montage=montage,
                                source=source, interface=interface)
    problems = raw_file.header.channel_problems if raw_file.header is not None else {}
    by_label = {label.strip(): reason for label, reason in problems.items()}
    return selection.without({k: by_label[raw.ch_names[p].strip()] for k, p in enumerate(selection.picks)
                              if raw.ch_names[p].strip() in by_label}, source=source)


def header_ranges_uv(raw_file: RawFile, selection: ChannelSelection) -> np.ndarray | None:
    """`(n_used, 2)` physical limits in uV of the used channels from an EDF/BDF header (None when unknown)."""
    ranges = raw_file.header.ranges_uv if raw_file.header is not None else {}
    labels = [raw_file.raw.ch_names[p].strip() for p in selection.picks]
    if not ranges or any(label not in ranges for label in labels):
        return None
    return np.array([ranges[label] for label in labels], dtype=np.float64)


class EEGFile:
    """The EEG channels of a recording file, read lazily: MNE-like (``info["sfreq"]``, ``ch_names``, ``get_data``),
    in volts.

    Attributes:
        source: the file's path (for messages). ch_names: 10-05 names of the used channels. n_times: samples.
        selection: the `ChannelSelection` (used channels, dropped ones with reasons, placement).
        dropped: `selection.dropped`. warnings: what MNE and the header checks said while reading.
        line_freq: the power-line frequency the file states (Hz), or None when it does not say.
        ranges_uv: `(n_channels, 2)` amplifier limits of the used channels from an EDF/BDF header, or None.
    """

    def __init__(self, raw_file: RawFile, source: str, selection: ChannelSelection):
        self._raw = raw_file.raw
        self.source = source
        self.selection = selection
        self._picks, self.ch_names = list(selection.picks), list(selection.names)
        self.dropped = dict(selection.dropped)
        self.warnings = list(raw_file.warnings)
        line_freq = self._raw.info.get("line_freq")
        self.line_freq = float(line_freq) if line_freq else None
        self.ranges_uv = header_ranges_uv(raw_file, selection)
        self.info = {"sfreq": float(self._raw.info["sfreq"]), "bads": []}
        self.n_times = int(self._raw.n_times)

    def get_data(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples `[start, stop)` of the used channels, `(n_channels, stop - start)` float64 volts."""
        stop = self.n_times if stop is None else int(stop)
        try:
            with captured_mne_output():
                data = self._raw.get_data(picks=self._picks, start=int(start), stop=stop, verbose="error")
        except Exception as error:  # a file damaged after its header, e.g. cut short after opening
            raise ValueError(f"{self.source}: cannot read samples {start}-{stop}: {type(error).__name__}: {error}. "
                             "The file looks damaged; re-export or re-copy it") from error
        return np.asarray(data, dtype=np.float64)

    def __repr__(self) -> str:
        return (f"EEGFile({self.source!r}, {len(self.ch_names)} EEG channels, {self.n_times} samples at "
                f"{self.info['sfreq']} Hz, placement {self.selection.placement!r}, {len(self.dropped)} dropped)")


def open_recording(path: str | os.PathLike, channel_map: dict | None = None, montage=None,
                   interface: str = "python", **kwargs) -> EEGFile:
    """Open the EEG channels of a recording file without loading its samples (see the module docstring).

    Args:
        path: the recording (EDF, BDF, FIF, BrainVision ``.vhdr``, EEGLAB ``.set``, ...).
        channel_map: `{old: 10-05 name or None}`, applied first (`e2llm.channels_e2llm.select_channels`).
        montage: an MNE standard montage name (or `DigMontage`) for caps whose labels are not 10-05 names.
        interface: "python" or "cli": the words remedies use.
        **kwargs: passed to MNE's reader.
    """
    raw_file = read_raw_file(path, preload=False, **kwargs)
    selection = select_file_channels(raw_file, str(path), channel_map=channel_map, montage=montage,
                                     interface=interface)
    return EEGFile(raw_file, str(path), selection)


__all__ = ["EEGFile", "FORMATS", "RawFile", "captured_mne_output", "channel_kind", "digitised_positions",
           "header_ranges_uv", "open_recording", "read_raw_checked", "read_raw_file", "select_file_channels"]
