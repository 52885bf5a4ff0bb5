"""EEG inputs of every accepted form as one `Source`: arrays and tensors, MNE `Raw` (loaded or not) and `Epochs`, and
`EEGFile`s opened from disk, with the channels the model uses chosen by one rule.

A `Source` knows its rate, its units, the channels used (`ChannelChoice`: positions in the input, their electrode
rows, 10-05 names, and every dropped channel with its reason) and reads samples `[start, stop)` of the used channels
only, so the feature extractor reads it whole and streaming reads it piece by piece, and nothing is checked on a
channel that is not used (a DC or trigger channel of a file never trips the amplitude checks).

The channel rule is `e2llm.channels_e2llm.select_channels` (one for arrays, `Raw`, `Epochs` and files): `channel_map`
renames first; MNE channel types, bad channels and digitised positions are respected (a `Raw` with Fp1 typed `eog`
does not use Fp1); caps whose labels are not 10-05 names are placed by `montage` or by position, or refused with the
remedy; non-EEG and unknown channels are dropped with their reason. Electrodes outside the encoder's channel table are
dropped too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from .backbones_e2llm import channel_table_ids
from .channels_e2llm import select_channels
from .recording_file_e2llm import EEGFile, digitised_positions
from .validation_e2llm import as_array, check_sampling_rate, check_units

TABLE_REASON = "not in the encoder's channel table"



def is_mne_like(obj) -> bool:
    return hasattr(obj, "get_data") and hasattr(obj, "info") and hasattr(obj, "ch_names")


def is_epochs(obj) -> bool:
    return is_mne_like(obj) and hasattr(obj, "events")


@dataclass
class ChannelChoice:
    """The channels used: `picks` (positions in the input, input order), `ids` (rows of the encoder's channel table),
    `names` (10-05 spellings), `dropped` (`{input name: reason}`), how names were resolved (`placement`) and the
    labels that changed (`renamed`)."""

    picks: list[int]
    ids: np.ndarray
    names: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    placement: str = "10-05 names"
    renamed: dict[str, str] = field(default_factory=dict)

    def report(self) -> dict:
        """`{"used", "dropped", "placement"}` (+ `"renamed"`), as every pipeline result carries it."""
        out = {"used": list(self.names), "dropped": dict(self.dropped), "placement": self.placement}
        if self.renamed:
            out["renamed"] = dict(self.renamed)
        return out


def choose_channels(names, table, types=None, bads=(), positions=None, channel_map=None, montage=None,
                    label: str = "the input", interface: str = "python", min_channels: int = 1) -> ChannelChoice:
    """The one channel rule (`e2llm.channels_e2llm.select_channels`) for an encoder whose channel table is `table`:
    used electrodes outside the table are dropped too, with that reason. Inputs described by names alone (no
    digitised positions, a montage given by name) are resolved once per process and description."""
    if positions or not (montage is None or isinstance(montage, str)):
        return _choose(names, table, types, bads, positions, channel_map, montage, label, interface, min_channels)
    key = (tuple(map(str, names)), tuple(table), None if types is None else tuple(types), tuple(bads or ()),
           None if not channel_map else tuple(channel_map.items()), montage, label, interface, min_channels)
    try:
        hash(key)
    except TypeError:  # an unhashable channel map value: resolve without the cache
        return _choose(names, table, types, bads, positions, channel_map, montage, label, interface, min_channels)
    choice = _choose_cached(key)
    return replace(choice, picks=list(choice.picks), ids=choice.ids.copy(), names=list(choice.names),
                   dropped=dict(choice.dropped), renamed=dict(choice.renamed))


@lru_cache(maxsize=256)
def _choose_cached(key: tuple) -> ChannelChoice:
    names, table, types, bads, mapping, montage, label, interface, min_channels = key
    return _choose(list(names), list(table), None if types is None else list(types), bads, None,
                   None if mapping is None else dict(mapping), montage, label, interface, min_channels)


def _choose(names, table, types, bads, positions, channel_map, montage, label, interface,
            min_channels) -> ChannelChoice:
    selection = select_channels(names, types, bads, positions=positions, channel_map=channel_map, montage=montage,
                                source=label, interface=interface)
    rows = channel_table_ids(selection.names, table)
    outside = {k: TABLE_REASON for k, row in enumerate(rows) if row < 0}
    if outside:
        selection = selection.without(outside, source=label)
        rows = rows[rows >= 0]
    if len(selection.picks) < min_channels:
        raise ValueError(f"{label}: only {len(selection.picks)} of the channels {list(names)} are in the encoder's "
                         f"channel table; it needs at least {min_channels} (min_channels).")
    return ChannelChoice(list(selection.picks), rows, list(selection.names), dict(selection.dropped),
                         selection.placement, dict(selection.renamed))


class Source:
    """One input (an array, a batch, a Raw, an Epochs or an EEGFile) whose used channels are read by `read`."""

    def __init__(self, obj, table, sampling_rate=None, channel_names=None, units=None, channel_map=None,
                 label: str = "raw_eeg", allow_batch: bool = False, min_channels: int = 1, montage=None,
                 interface: str = "python"):
        self.label = obj.source if isinstance(obj, EEGFile) else label  # a file is named by its path
        self.positions = None
        rails = getattr(obj, "ranges_uv", None) if isinstance(obj, EEGFile) else None  # the header's limits
        if is_mne_like(obj):
            self._from_mne(obj, sampling_rate, channel_names, units)
        else:
            self._from_array(obj, sampling_rate, channel_names, units, allow_batch)
        self.choice = choose_channels(self.input_names, table, self.types, self.bads, self.positions, channel_map,
                                      montage, label, interface, min_channels)
        self.rails_uv = None if rails is None else np.asarray(rails)[self.choice.picks]  # (n_used, 2) µV
        if isinstance(obj, EEGFile):  # the file's reader applied the rule (and its map and montage) already
            self.choice.dropped = {**obj.selection.dropped, **self.choice.dropped}
            self.choice.placement = obj.selection.placement
            self.choice.renamed = {**obj.selection.renamed, **self.choice.renamed}

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
        if not isinstance(obj, EEGFile) and hasattr(obj, "get_montage"):
            self.positions = digitised_positions(obj)
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


__all__ = ["TABLE_REASON", "ChannelChoice", "Source", "choose_channels", "is_epochs", "is_mne_like"]
