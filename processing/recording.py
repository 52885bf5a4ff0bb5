"""One internal form for an EEG recording, whatever file or dataset it came from.

`read_recording` reads any file MNE reads (EDF/EDF+, BDF, FIF, BrainVision ``.vhdr``,
EEGLAB ``.set``, Neuroscan ``.cnt``, GDF), keeps the EEG channels under their 10-05 names
(``FP1`` -> ``Fp1``; SEED's CB1/CB2 kept) and drops EOG, ECG, EMG, reference, stimulus and
other non-EEG channels, recording what it dropped in ``provenance["dropped_channels"]``.
Samples stay in the units MNE gives (volts, ``units="V"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from e2llm.recording_file_e2llm import channel_kind, read_raw_checked, select_eeg_channels


@dataclass
class Recording:
    """A continuous multichannel EEG recording.

    Attributes:
        data: `(n_channels, n_times)` float64 samples, in `units`.
        sfreq: sampling rate in Hz.
        ch_names: EEG channel names in 10-05 spelling (see `e2llm.electrodes`).
        units: "V" (MNE's convention) or "uV" (the SEED .mat files).
        annotations: `(onset_seconds, duration_seconds, description)` triples.
        provenance: what produced these samples (source file, preprocessing steps and parameters).
    """

    data: np.ndarray
    sfreq: float
    ch_names: list[str]
    units: str
    annotations: list[tuple[float, float, str]] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)


UNIT_SCALES: dict[str, float] = {"V": 1.0, "mV": 1e-3, "uV": 1e-6}

# Channel kinds and EEG selection are shared with inference (`e2llm.recording_file_e2llm`): one reading path.
_select_eeg = select_eeg_channels


def recording_from_raw(raw, source: str | None = None, on_unknown: str = "keep") -> Recording:
    """A `Recording` of the EEG channels of an `mne.io.Raw` (data in volts, annotations kept).

    Args:
        raw: an MNE Raw object (preloaded or not).
        source: what to name in messages and provenance (default: the file MNE read, if any).
        on_unknown: EEG channels whose name is no 10-05 electrode are kept under their own name
            ("keep", listed in ``provenance["unknown_channels"]``), dropped ("drop") or refused ("raise").
    """
    filenames = [f for f in getattr(raw, "filenames", ()) if f]
    source = source or (str(filenames[0]) if filenames else "<mne.io.Raw>")
    names = list(raw.ch_names)
    keep, canonical, dropped, unknown = _select_eeg(names, raw.get_channel_types(), source, on_unknown)
    data = np.asarray(raw.get_data(picks=keep), dtype=np.float64)
    first_time = float(raw.first_time)
    annotations = [
        (float(onset) - first_time, float(duration), str(description))
        for onset, duration, description in zip(
            raw.annotations.onset, raw.annotations.duration, raw.annotations.description
        )
    ]
    provenance = {
        "source": source,
        "reader": "mne",
        "original_channel_names": names,
        "dropped_channels": dropped,
    }
    if unknown and on_unknown == "keep":
        provenance["unknown_channels"] = unknown
    return Recording(
        data=data,
        sfreq=float(raw.info["sfreq"]),
        ch_names=canonical,
        units="V",
        annotations=annotations,
        provenance=provenance,
    )


def read_recording(path: str | Path, preload: bool = True, on_unknown: str = "keep", **kwargs) -> Recording:
    """Read an EEG file with `mne.io.read_raw` into a `Recording` in volts.

    Args:
        path: EDF/EDF+, BDF, FIF, BrainVision ``.vhdr``, EEGLAB ``.set``, Neuroscan ``.cnt``, GDF...
        preload: load the whole file first; with False only the EEG channels are read from disk.
        on_unknown: see `recording_from_raw`.
        **kwargs: passed to the MNE reader (e.g. ``data_format`` for ``.cnt``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: MNE cannot read it (the message names the file and MNE's reason), or no EEG
            channel is left.
    """
    import mne

    path = Path(path)
    raw = read_raw_checked(path, preload=preload, **kwargs)  # clear errors; damaged files refused
    recording = recording_from_raw(raw, source=str(path), on_unknown=on_unknown)
    recording.provenance["format"] = "".join(path.suffixes[-1:]).lower()
    recording.provenance["mne_version"] = mne.__version__
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
    import mne

    if recording.units not in UNIT_SCALES:
        raise ValueError(f"Unknown units {recording.units!r}; expected one of {sorted(UNIT_SCALES)}")
    info = mne.create_info(list(recording.ch_names), float(recording.sfreq), ch_types="eeg")
    raw = mne.io.RawArray(recording.data * UNIT_SCALES[recording.units], info, verbose="error")
    if recording.annotations:
        onsets, durations, descriptions = zip(*recording.annotations)
        raw.set_annotations(mne.Annotations(onsets, durations, descriptions))
    if montage:
        from e2llm.processing.montage import set_montage

        set_montage(raw, on_missing="ignore")
    return raw


__all__ = [
    "Recording",
    "UNIT_SCALES",
    "channel_kind",
    "convert_units",
    "crop_recording",
    "read_recording",
    "recording_from_raw",
    "recording_to_raw",
]
