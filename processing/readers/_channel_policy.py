"""Which channels a dataset of recordings with different montages keeps: never narrowed in silence.

When the files of a folder do not share one channel set (say 64, 88 and 25 channels with 10 in common), keeping
only the common channels throws most of the data away; the user chooses (`channel_policy`):

- ``"common"``: the channels every file has (what each file loses is reported);
- ``"each"``: each file keeps its own channels; the dataset's channels are the union, and a channel a file does not
  have is stored as zeros in its windows, which the feature extractor masks (a constant channel gets mask 0), so the
  encoder sees each file's own subset;
- ``"interpolate"``: the channels a file lacks are interpolated from its own with MNE's spherical splines
  (`mne.io.Raw.interpolate_bads`) onto the union (or the given `channels`), at the 10-05 template positions.

Without a choice, files with different channel sets are refused with the numbers and the three choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np

from e2llm.processing.montage import make_montage
from e2llm.processing.recording import UNIT_SCALES, Recording
from e2llm.recording_file_e2llm import read_raw_file, select_file_channels

CHANNEL_POLICIES = ("common", "each", "interpolate")
MIN_CHANNELS_TO_INTERPOLATE = 4


@dataclass
class FileChannels:
    """The channel rule's verdict on one file (from its header)."""

    used: list[str]
    dropped: dict[str, str]
    placement: str
    warnings: list[str] = field(default_factory=list)
    line_freq: float | None = None

    def as_dict(self) -> dict:
        return {"used": list(self.used), "dropped": dict(self.dropped), "placement": self.placement,
                "warnings": list(self.warnings), "line_freq": self.line_freq}


def inspect_files(paths, channel_map=None, montage=None, interface: str = "python") -> dict[Path, FileChannels]:
    """`{path: FileChannels}` for each recording, reading headers only."""
    found = {}
    for path in paths:
        raw_file = read_raw_file(path, preload=False)
        selection = select_file_channels(raw_file, str(path), channel_map=channel_map, montage=montage,
                                         interface=interface)
        line_freq = raw_file.raw.info.get("line_freq")
        found[path] = FileChannels(list(selection.names), dict(selection.dropped), selection.placement,
                                   list(raw_file.warnings), float(line_freq) if line_freq else None)
    return found


def _choices(interface: str, n_common: int, n_union: int) -> str:
    if interface == "cli":
        option = "--channels {}"
    else:
        option = 'channel_policy="{}"'
    return (f"Choose: {option.format('common')} (keep the {n_common} channels every file has), "
            f"{option.format('each')} (each file keeps its own channels; those it lacks are stored as zeros, which "
            f"the model masks) or {option.format('interpolate')} (channels a file lacks are interpolated from its "
            f"own with MNE's spherical splines onto all {n_union} channels)")


def _union(files: dict[Path, FileChannels]) -> list[str]:
    return list(dict.fromkeys(name for info in files.values() for name in info.used))


def _refusal(files, common, union, where, interface) -> ValueError:
    counts = ", ".join(f"{Path(p).name} {len(info.used)}" for p, info in files.items())
    losses = ", ".join(f"{len(info.used) - len(common)} of {Path(p).name}'s" for p, info in files.items()
                       if len(info.used) > len(common))
    return ValueError(f"{where}: the recordings do not share one channel set ({counts} EEG channels); only "
                      f"{len(common)} are in every file ({', '.join(common) or 'none'}), so keeping the common ones "
                      f"would drop {losses}. " + _choices(interface, len(common), len(union)))


def resolve_channels(files: dict[Path, FileChannels], policy: str | None, channels=None, where: str = "the folder",
                     interface: str = "python") -> tuple[tuple[str, ...], dict]:
    """`(channel_names, report)`: the dataset's channels under `policy` and, per file, what it loses or lacks."""
    if policy is not None and policy not in CHANNEL_POLICIES:
        raise ValueError(f"channel policy must be one of {', '.join(CHANNEL_POLICIES)}, got {policy!r}")
    union = _union(files)
    common = [name for name in next(iter(files.values())).used if all(name in f.used for f in files.values())]
    same = all(set(info.used) == set(union) for info in files.values())
    if channels is not None:
        target = [str(c) for c in channels]
    elif policy in ("each", "interpolate"):
        target = union
    elif policy == "common" or same:
        target = common
    else:
        raise _refusal(files, common, union, where, interface)
    if not target:
        raise ValueError(f"{where}: the recordings share no EEG channel; " + _choices(interface, 0, len(union)))
    per_file = {}
    for path, info in files.items():
        entry = info.as_dict()
        missing = [n for n in target if n not in info.used]
        left_out = [n for n in info.used if n not in target]
        if missing and policy in (None, "common"):
            raise ValueError(f"{path}: lacks the channels {missing}; " + _choices(interface, len(common), len(union)))
        if left_out:
            entry["not_kept"] = left_out
        if missing:
            entry["absent" if policy == "each" else "interpolated"] = missing
        per_file[str(path)] = entry
    label = policy or ("given" if channels is not None else "same")
    return tuple(target), {"policy": label, "channel_names": list(target), "files": per_file}


def interpolate_missing(recording: Recording, target) -> Recording:
    """`recording` on the `target` channels: those it lacks interpolated (spherical splines, 10-05 positions)."""
    target = list(target)
    missing = [n for n in target if n not in recording.ch_names]
    source = recording.provenance.get("source", "recording")
    if not missing:
        return recording
    if len(recording.ch_names) < MIN_CHANNELS_TO_INTERPOLATE:
        raise ValueError(f"{source}: {len(recording.ch_names)} channels are too few to interpolate {len(missing)} "
                         f"more (at least {MIN_CHANNELS_TO_INTERPOLATE} are needed)")
    volts = recording.data * UNIT_SCALES[recording.units]
    data = np.concatenate([volts, np.zeros((len(missing), volts.shape[1]))])
    info = mne.create_info(list(recording.ch_names) + missing, recording.sfreq, "eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_montage(make_montage(raw.ch_names), verbose="error")
    raw.info["bads"] = list(missing)
    raw.interpolate_bads(reset_bads=True, verbose="error")
    out = raw.get_data(picks=target) / UNIT_SCALES[recording.units]
    provenance = {**recording.provenance, "interpolated_channels": missing}
    if "ranges_uv" in provenance:  # amplifier limits are known for the recorded channels only
        known = dict(zip(recording.ch_names, provenance["ranges_uv"]))
        provenance["ranges_uv"] = [known.get(n, [float("nan"), float("nan")]) for n in target]
    return Recording(data=out, sfreq=recording.sfreq, ch_names=target, units=recording.units,
                     annotations=list(recording.annotations), provenance=provenance)


__all__ = ["CHANNEL_POLICIES", "FileChannels", "inspect_files", "interpolate_missing", "resolve_channels"]
