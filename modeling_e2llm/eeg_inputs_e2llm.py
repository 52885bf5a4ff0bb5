"""EEG inputs of every accepted form as one `Source`: arrays and tensors, MNE `Raw` (loaded or not) and `Epochs`, and
`EEGFile`s opened from disk, with the channels the model uses chosen by one rule.

A `Source` knows its rate, its units, the channels used (`ChannelChoice`: positions in the input, their electrode
rows, 10-05 names, and every dropped channel with its reason) and reads samples `[start, stop)` of the used channels
only, so the feature extractor reads it whole and streaming reads it piece by piece, and nothing is checked on a
channel that is not used (a DC or trigger channel of a file never trips the amplitude checks).

The channel rule: `channel_map` (`{old: new}`) renames first; MNE channel types are respected (a `Raw` with Fp1 typed
`eog` does not use Fp1); channels in `info["bads"]`, non-EEG names (ECG, EOG, trigger...), names that are no 10-05
electrode and electrodes outside the encoder's channel table are dropped, each with its reason in `dropped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backbones_e2llm import channel_table_ids
from .electrodes import canonical_channel_name, find_duplicates
from .recording_file_e2llm import EEGFile, channel_kind
from .validation_e2llm import as_array, check_sampling_rate, check_units

MAPPING_REMEDY = ("pass channel_map={'old': 'new', ...} naming each channel's 10-05 electrode "
                  "(e2llm predict: --channel-map old=new ...)")


def is_mne_like(obj) -> bool:
    return hasattr(obj, "get_data") and hasattr(obj, "info") and hasattr(obj, "ch_names")


def is_epochs(obj) -> bool:
    return is_mne_like(obj) and hasattr(obj, "events")


@dataclass
class ChannelChoice:
    """The channels used: `picks` (positions in the input, input order), `ids` (rows of the encoder's channel table),
    `names` (10-05 spellings), `dropped` (`{input name: reason}`) and how names were resolved (`placement`)."""

    picks: list[int]
    ids: np.ndarray
    names: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    placement: str = "10-05 names"

    def report(self) -> dict:
        """`{"used", "dropped", "placement"}`, as every pipeline result carries it."""
        return {"used": list(self.names), "dropped": dict(self.dropped), "placement": self.placement}


def _mapped(names: list[str], channel_map, label: str) -> list[str]:
    if not channel_map:
        return list(names)
    if not isinstance(channel_map, dict):
        raise TypeError(f"channel_map must be a dict {{old name: 10-05 name}}, got {type(channel_map).__name__}")
    unknown = sorted(set(channel_map) - set(names))
    if unknown:
        raise ValueError(f"{label}: channel_map renames {unknown}, which the input does not have (its channels: "
                         f"{names})")
    bad = {old: new for old, new in channel_map.items() if canonical_channel_name(str(new)) is None}
    if bad:
        raise ValueError(f"{label}: channel_map must map to 10-05 electrode names; {bad} are not")
    return [str(channel_map.get(name, name)) for name in names]


def choose_channels(names, table, types=None, bads=(), channel_map=None, label: str = "the input",
                    min_channels: int = 1) -> ChannelChoice:
    """The `ChannelChoice` of an input with channel `names` (MNE `types`, `bads`) for an encoder whose channel table
    is `table`; ValueError for duplicates or too few usable channels."""
    names = [str(n) for n in names]
    renamed = _mapped(names, channel_map, label)
    types = list(types) if types is not None else [None] * len(names)
    bads = set(bads or ())
    duplicates = find_duplicates([renamed[i] for i in range(len(names)) if names[i] not in bads])
    if duplicates:
        given = {key: [n for n in renamed if (canonical_channel_name(n) or n.strip().upper()) == key]
                 for key in duplicates}
        listing = "; ".join(f"{key} given as {spellings}" for key, spellings in given.items())
        raise ValueError(f"{label}: duplicate channel names (case-insensitive, old 10-20 names as aliases): {listing}")
    rows = channel_table_ids(renamed, table)
    picks, dropped = [], {}
    for i, (name, new, kind, row) in enumerate(zip(names, renamed, types, rows)):
        reason = _drop_reason(name, new, kind, row, bads)
        if reason is None:
            picks.append(i)
        else:
            dropped[name] = reason
    _check_enough(picks, names, dropped, label, min_channels)
    spelled = [canonical_channel_name(renamed[i]) or renamed[i] for i in picks]
    placement = "channel_map" if channel_map else "10-05 names"
    return ChannelChoice(picks, rows[picks], spelled, dropped, placement)


def _drop_reason(name: str, new: str, mne_type, row: int, bads: set) -> str | None:
    if name in bads:
        return "marked bad (info['bads'])"
    if mne_type is not None and mne_type != "eeg":
        return f"MNE type {mne_type}"
    kind = channel_kind(new, "eeg")
    if kind != "eeg" and canonical_channel_name(new) is None:
        return f"name says {kind.upper()}"
    if canonical_channel_name(new) is None:
        return "not a 10-05 name"
    if row < 0:
        return "not in the encoder's channel table"
    return None


def _check_enough(picks: list[int], names: list[str], dropped: dict, label: str, min_channels: int) -> None:
    if not picks:
        reasons = "; ".join(f"{n}: {r}" for n, r in list(dropped.items())[:12])
        raise ValueError(f"{label}: none of the channels {names} is a known 10-05 electrode name the model can use "
                         f"({reasons}); {MAPPING_REMEDY}")
    if len(picks) < min_channels:
        raise ValueError(f"{label}: only {len(picks)} of the channels {names} are in the encoder's channel table; it "
                         f"needs at least {min_channels} (min_channels).")


class Source:
    """One input (an array, a batch, a Raw, an Epochs or an EEGFile) whose used channels are read by `read`."""

    def __init__(self, obj, table, sampling_rate=None, channel_names=None, units=None, channel_map=None,
                 label: str = "raw_eeg", allow_batch: bool = False, min_channels: int = 1):
        self.label = label
        if is_mne_like(obj):
            self._from_mne(obj, sampling_rate, channel_names, units)
        else:
            self._from_array(obj, sampling_rate, channel_names, units, allow_batch)
        self.choice = choose_channels(self.input_names, table, self.types, self.bads, channel_map, label,
                                      min_channels)
        if isinstance(obj, EEGFile) and obj.dropped:  # channels the file reader left out by name and type
            self.choice.dropped = {**{n: f"name or MNE type says {k}" for n, k in obj.dropped.items()},
                                   **self.choice.dropped}

    def _from_array(self, obj, sampling_rate, channel_names, units, allow_batch: bool) -> None:
        array = as_array(obj, self.label)
        if array.ndim not in ((2, 3) if allow_batch else (2,)):
            expected = "(n_channels, n_times)" + (" or (batch_size, n_channels, n_times)" if allow_batch else "")
            raise ValueError(f"{self.label}: expected {expected}, got an array of shape {array.shape}.")
        if array.size == 0:
            raise ValueError(f"{self.label}: the EEG array is empty (shape {array.shape}).")
        self._array = array if array.ndim == 3 else array[None]
        self.rate = check_sampling_rate(sampling_rate, "array input")
        self.scale = check_units(units)
        if channel_names is None:
            raise ValueError(f"{self.label}: channel_names is required for array input ({array.shape[-2]} "
                             "channels).")
        self.input_names = [str(n) for n in channel_names]
        if len(self.input_names) != array.shape[-2]:
            raise ValueError(f"{self.label}: {len(self.input_names)} channel names for {array.shape[-2]} channels in "
                             "the data.")
        self.types, self.bads = None, ()
        self.n_items, self.n_times, self._obj = self._array.shape[0], self._array.shape[-1], None

    def _from_mne(self, obj, sampling_rate, channel_names, units) -> None:
        rate = float(obj.info["sfreq"])
        if sampling_rate is not None and not np.isclose(float(sampling_rate), rate):
            raise ValueError(f"{self.label}: sampling_rate={sampling_rate} contradicts the MNE object's "
                             f"info['sfreq']={rate}.")
        self.input_names = [str(n) for n in obj.ch_names]
        if channel_names is not None and [str(n) for n in channel_names] != self.input_names:
            raise ValueError(f"{self.label}: channel_names differ from the MNE object's ch_names {obj.ch_names}.")
        self.rate = check_sampling_rate(rate, self.label)
        # MNE objects hold volts; `units` overrides that for a recording whose values are stored in another unit
        self.scale = check_units("V" if units is None else units)
        get_types = getattr(obj, "get_channel_types", None)
        self.types = None if isinstance(obj, EEGFile) or get_types is None else list(get_types())
        self.bads = tuple(obj.info.get("bads", []) or [])
        self._obj, self._array = obj, None
        if is_epochs(obj):
            self._array = np.asarray(obj.get_data(), dtype=np.float64)  # (n_epochs, n_channels, n_times), volts
            self.n_items, self.n_times = self._array.shape[0], self._array.shape[-1]
        else:
            self.n_items, self.n_times = 1, int(obj.n_times)

    @property
    def names(self) -> list[str]:
        """10-05 names of the used channels."""
        return self.choice.names

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples `[start, stop)` of the used channels, `(n_items, n_used, stop - start)` in the input's units."""
        stop = self.n_times if stop is None else stop
        picks = self.choice.picks
        if self._array is not None:
            return self._array[:, picks, start:stop]
        if isinstance(self._obj, EEGFile):
            return self._obj.get_data(start, stop)[None, picks]
        return np.asarray(self._obj.get_data(picks=picks, start=start, stop=stop), dtype=np.float64)[None]


__all__ = ["MAPPING_REMEDY", "ChannelChoice", "Source", "choose_channels", "is_epochs", "is_mne_like"]
