"""One internal form for an EEG recording, whatever file or dataset it came from.

`read_recording` reads any file MNE reads (EDF/EDF+, BDF, FIF, BrainVision ``.vhdr``, EEGLAB ``.set``, Neuroscan
``.cnt``, GDF, Nihon Kohden, EGI) through the same path as inference (`e2llm.recording_file_e2llm`): the one channel
rule (`e2llm.channels_e2llm.select_channels`: MNE types, bad channels, non-EEG names, cap layouts placed by position
or refused), the header checks, MNE's warnings kept instead of printed. What was used, left out (with the reason)
and how names were placed is in ``provenance["channels"]``; MNE's warnings in ``provenance["warnings"]``. Samples
stay in volts (``units="V"``). Flat, stuck or clipped samples are judged per window (`e2llm prepare`'s window check,
the pipeline's), not here: a channel dead in one clip is not taken out of the whole recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import mne
import numpy as np

from e2llm.channels_e2llm import ChannelSelection, channel_kind, select_mne_channels
from e2llm.processing.montage import set_montage
from e2llm.recording_file_e2llm import RawFile, read_raw_file, select_file_channels


@dataclass
class Recording:
    """A continuous multichannel EEG recording.

    Attributes:
        data: `(n_channels, n_times)` float64 samples, in `units`.
        sfreq: sampling rate in Hz.
        ch_names: EEG channel names in 10-05 spelling (see `e2llm.electrodes`).
        units: "V" (MNE's convention) or "uV" (the SEED .mat files).
        annotations: `(onset_seconds, duration_seconds, description)` triples.
        provenance: what produced these samples (source file, channels used and dropped with reasons, MNE's
            warnings, preprocessing steps and parameters).
    """

    data: np.ndarray
    sfreq: float
    ch_names: list[str]
    units: str
    annotations: list[tuple[float, float, str]] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)


UNIT_SCALES: dict[str, float] = {"V": 1.0, "mV": 1e-3, "uV": 1e-6}


def _annotations(raw) -> list[tuple[float, float, str]]:
    first_time = float(raw.first_time)
    return [(float(onset) - first_time, float(duration), str(description)) for onset, duration, description in
            zip(raw.annotations.onset, raw.annotations.duration, raw.annotations.description)]


def recording_from_raw(raw, source: str | None = None, channel_map=None, montage=None, interface: str = "python",
                       selection: ChannelSelection | None = None, warnings=()) -> Recording:
    """A `Recording` of the EEG channels of an `mne.io.Raw` (data in volts, annotations kept).

    Args:
        raw: an MNE Raw object (preloaded or not).
        source: what to name in messages and provenance (default: the file MNE read, if any).
        channel_map, montage, interface: for `e2llm.channels_e2llm.select_channels`.
        selection: the channels, already selected (e.g. with a file's header checks); default: selected here from
            the Raw's types, bads and digitised positions.
        warnings: what reading said (kept in ``provenance["warnings"]``).
    """
    filenames = [f for f in getattr(raw, "filenames", ()) if f]
    source = source or (str(filenames[0]) if filenames else "<mne.io.Raw>")
    if selection is None:
        selection = select_mne_channels(raw, channel_map=channel_map, montage=montage, source=source,
                                        interface=interface)
    data = np.asarray(raw.get_data(picks=selection.picks, verbose="error"), dtype=np.float64)
    line_freq = raw.info.get("line_freq")
    provenance = {
        "source": source,
        "reader": "mne",
        "original_channel_names": list(raw.ch_names),
        "channel_picks": list(selection.picks),
        "channels": selection.as_dict(),
        "dropped_channels": dict(selection.dropped),
        "warnings": list(warnings),
        "line_freq": float(line_freq) if line_freq else None,
    }
    return Recording(data=data, sfreq=float(raw.info["sfreq"]), ch_names=list(selection.names), units="V",
                     annotations=_annotations(raw), provenance=provenance)


def read_recording(path: str | Path, preload: bool = True, channel_map=None, montage=None,
                   interface: str = "python", **kwargs) -> Recording:
    """Read an EEG file with MNE into a `Recording` in volts (see the module docstring).

    Args:
        path: EDF/EDF+, BDF, FIF, BrainVision ``.vhdr``, EEGLAB ``.set``, Neuroscan ``.cnt``, GDF...
        preload: load the whole file first; with False only the used channels are read from disk.
        channel_map, montage, interface: for `e2llm.channels_e2llm.select_channels`.
        **kwargs: passed to the MNE reader (e.g. ``data_format`` for ``.cnt``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: MNE cannot read it, it is damaged or its header implausible, a header points outside its
            folder, or no EEG channel left to use (the message names the file and the remedy).
    """
    path = Path(path)
    raw_file = read_raw_file(path, preload=preload, **kwargs)
    return recording_from_file(raw_file, str(path), channel_map=channel_map, montage=montage, interface=interface,
                               mne_version=mne.__version__)


def recording_from_file(raw_file: RawFile, source: str, channel_map=None, montage=None, interface: str = "python",
                        mne_version: str = "") -> Recording:
    """A `Recording` of a file read by `e2llm.recording_file_e2llm.read_raw_file`, its header checks applied."""
    selection = select_file_channels(raw_file, source, channel_map=channel_map, montage=montage, interface=interface)
    recording = recording_from_raw(raw_file.raw, source=source, selection=selection, warnings=raw_file.warnings)
    recording.provenance["format"] = "".join(Path(source).suffixes[-1:]).lower()
    recording.provenance["mne_version"] = mne_version
    ranges = raw_file.header.ranges_uv if raw_file.header is not None else {}
    labels = [raw_file.raw.ch_names[p].strip() for p in recording.provenance["channel_picks"]]
    if ranges and all(label in ranges for label in labels):  # amplifier limits, for saturation checks
        recording.provenance["ranges_uv"] = [list(ranges[label]) for label in labels]
    return recording


def convert_units(recording: Recording, units: str) -> Recording:
    """The same recording with samples in `units` ("V", "mV" or "uV")."""
    for value in (recording.units, units):
        if value not in UNIT_SCALES:
            raise ValueError(f"Unknown units {value!r}; expected one of {sorted(UNIT_SCALES)}")
    if units == recording.units:
        return recording
    factor = UNIT_SCALES[recording.units] / UNIT_SCALES[units]
    return replace(recording, data=recording.data * factor, units=units)


def crop_recording(recording: Recording, start: float, stop: float | None = None) -> Recording:
    """Samples from `start` to `stop` seconds (`stop` excluded; None = the end); annotations shifted and clipped."""
    n_times = recording.data.shape[-1]
    first = int(round(start * recording.sfreq))
    last = n_times if stop is None else int(round(stop * recording.sfreq))
    source = recording.provenance.get("source", "recording")
    if not 0 <= first < last <= n_times:
        duration = n_times / recording.sfreq
        raise ValueError(f"{source}: cannot crop {start}-{stop} s from a recording of {duration:.3f} s")
    offset = first / recording.sfreq
    end = last / recording.sfreq
    annotations = [
        (onset - offset, min(dur, end - onset), desc)  # durations clipped at the new end
        for onset, dur, desc in recording.annotations
        if offset <= onset < end
    ]
    return replace(recording, data=recording.data[:, first:last], annotations=annotations)


def recording_to_raw(recording: Recording, montage: bool = True):
    """An `mne.io.RawArray` (volts, EEG channels, annotations) of `recording`, with the e2llm montage."""
    if recording.units not in UNIT_SCALES:
        raise ValueError(f"Unknown units {recording.units!r}; expected one of {sorted(UNIT_SCALES)}")
    info = mne.create_info(list(recording.ch_names), float(recording.sfreq), ch_types="eeg")
    raw = mne.io.RawArray(recording.data * UNIT_SCALES[recording.units], info, verbose="error")
    if recording.annotations:
        onsets, durations, descriptions = zip(*recording.annotations)
        raw.set_annotations(mne.Annotations(onsets, durations, descriptions))
    if montage:
        set_montage(raw, on_missing="ignore")
    return raw


__all__ = [
    "Recording",
    "UNIT_SCALES",
    "channel_kind",
    "convert_units",
    "crop_recording",
    "read_recording",
    "recording_from_file",
    "recording_from_raw",
    "recording_to_raw",
]
