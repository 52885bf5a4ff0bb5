"""Feature extractor for E2-LLM: raw multichannel EEG to fixed-rate, filtered, normalised windows."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import TensorType, logging

from .backbones_e2llm import channel_table_ids
from .electrodes import ELECTRODE_NAMES, canonical_channel_name, find_duplicates
from .signal_e2llm import (
    NORMALIZATION_MODES,
    apply_filter,
    count_windows,
    design_filter,
    normalize_windows,
    resample,
    resampled_length,
    sliding_windows,
    window_params,
)
from .streaming_e2llm import iter_windows as _iter_windows

logger = logging.get_logger(__name__)

_UNIT_SCALE = {"V": 1e6, "uV": 1.0, "µV": 1.0, "μV": 1.0}  # to microvolts; micro sign and Greek mu
# Median channel std (µV, after the band-pass when filters are applied) outside which the stated units are
# taken to be wrong. Scalp EEG band-passed to 0.1-70 Hz has channel stds of ~5-100 µV (a few hundred with
# heavy artefacts); volts passed as "uV" give ~1e-5 µV and microvolts passed as "V" give ~1e7 µV, so both
# mistakes sit more than three orders of magnitude outside this range.
DEFAULT_PLAUSIBLE_STD_UV = (0.05, 5000.0)
# Sampling rates accepted for input EEG, in Hz. Below 32 Hz a recording holds no band above delta/theta (and a
# mistyped rate such as 1 Hz for 1 kHz data would make minutes look like hours); above 100 kHz no EEG amplifier
# records, and the polyphase resampling ratio to the model rate cannot be represented.
PLAUSIBLE_SAMPLING_RATE_HZ = (32.0, 100_000.0)
# Largest |sample| in µV accepted after unit conversion: 10 V, beyond any EEG amplifier's range. Larger values are
# not a voltage (wrong units, a corrupt file) and would overflow float32 statistics into NaN.
MAX_ABS_UV = 1e7


@dataclass
class _Block:
    """Recordings that share a sampling rate and channel list: `data` `(n_items, n_channels, n_times)` µV."""

    data: np.ndarray
    sfreq: float
    channel_ids: np.ndarray  # (n_channels,) int64
    flat: np.ndarray  # (n_items, n_channels) bool
    offset: np.ndarray  # (n_items, n_channels) float64 µV: channel means, removed from `data`
    labels: list[str]  # one per item, for messages


@dataclass
class _Group:
    """Rows `(block, row)` of equal rate and shape, and their positions in the input order."""

    rows: list[tuple[_Block, int]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


def _is_mne_like(obj) -> bool:
    return hasattr(obj, "get_data") and hasattr(obj, "info") and hasattr(obj, "ch_names")


def _is_nested(channel_names) -> bool:
    """Whether `channel_names` is one list per item rather than one list of names."""
    return channel_names is not None and len(channel_names) > 0 and not isinstance(channel_names[0], str)


def _check_sampling_rate(value, what: str, plausible: bool = True) -> float:
    if value is None:
        raise ValueError(
            f"sampling_rate is required for {what}: pass the rate in Hz at which the EEG was recorded "
            "(it is never guessed)."
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"sampling_rate must be a number of Hz, got {value!r} ({type(value).__name__})")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"sampling_rate must be a positive number of Hz, got {value}")
    low, high = PLAUSIBLE_SAMPLING_RATE_HZ
    if plausible and not low <= value <= high:
        raise ValueError(
            f"sampling_rate={value} Hz is outside the plausible EEG range {low:g}-{high:g} Hz: pass the rate in Hz at "
            "which the EEG was recorded (not a period in seconds or a rate in kHz)"
        )
    return float(value)


def _check_finite_output(windows: np.ndarray, labels: list[str]) -> None:
    """ValueError when the chain produced NaN/Inf (finite but extreme inputs overflowing float32): never a label
    from such windows. `windows` is `(n_items, n_windows, n_channels, n_times)`."""
    finite = np.isfinite(windows).all(axis=(1, 2, 3))
    if not finite.all():
        bad = [label for label, ok in zip(labels, finite) if not ok]
        raise ValueError(f"{', '.join(bad)}: the processed windows hold NaN/Inf (extreme sample values overflow "
                         "float32); check the units and remove the artefact")


def _total_memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_channel_names(channel_names) -> None:
    """TypeError unless `channel_names` is None, a list of strings, or a list of such lists."""
    if channel_names is None:
        return
    if isinstance(channel_names, (str, bytes)) or not isinstance(channel_names, (Sequence, np.ndarray)):
        raise TypeError(
            f"channel_names must be a list of channel-name strings (or one such list per item), got "
            f"{type(channel_names).__name__}: {channel_names!r:.80}"
        )
    for entry in channel_names:
        if isinstance(entry, str):
            continue
        nested_ok = isinstance(entry, (Sequence, np.ndarray)) and not isinstance(entry, bytes)
        if not nested_ok or not all(isinstance(name, str) for name in entry):
            raise TypeError(
                f"channel_names must hold strings (or lists of strings, one per item); found {entry!r:.60} "
                f"({type(entry).__name__})"
            )


def _check_units(units) -> float:
    if units is None:
        raise ValueError("units is required for array input: 'V' (volts) or 'uV' (microvolts).")
    if units not in _UNIT_SCALE:
        raise ValueError(f"units must be 'V' or 'uV' ('µV'), got {units!r}")
    return _UNIT_SCALE[units]


class E2LLMFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Constructs an E2-LLM feature extractor: multichannel EEG in any montage, rate and units to the model's
    input windows.

    Per recording: check the input, map channel names to the electrode vocabulary (unknown channels are
    dropped with a warning), convert to microvolts, resample to `sampling_rate` (polyphase), band-pass
    `l_freq`-`h_freq` Hz and notch `notch_freqs` with one zero-phase FIR kernel designed by MNE's rules,
    optionally re-reference to the average, cut `window_seconds` windows every `window_stride_seconds`, and
    normalise each window. Channels and windows are processed as arrays; recordings of equal shape are
    processed together. The chain runs in float32 with each channel's mean taken out first (and put back
    after filtering), so DC offsets neither cost precision nor leave resampling artefacts.

    Args:
        feature_size (`int`, *optional*, defaults to 1): kept for `SequenceFeatureExtractor`.
        sampling_rate (`int`, *optional*, defaults to 200): the model's rate in Hz; inputs are resampled to it.
        padding_value (`float`, *optional*, defaults to 0.0): value of padded channels.
        window_seconds (`float`, *optional*, defaults to 4.0): window length.
        window_stride_seconds (`float`, *optional*, defaults to 4.0): step between window starts.
        l_freq (`float`, *optional*, defaults to 0.1): high-pass edge in Hz (None: no high-pass).
        h_freq (`float`, *optional*, defaults to 70.0): low-pass edge in Hz (None: no low-pass).
        notch_freqs (`list[float]`, *optional*, defaults to `[50.0]`): line-noise frequencies to notch out.
        reference (`str`, *optional*): None keeps the recording's reference, "average" re-references.
        normalization (`str`, *optional*, defaults to "window"): "window", "channel" or "none"; see
            `e2llm.signal_e2llm.normalize_windows`.
        electrode_names (`list[str]`, *optional*): the encoder's electrode vocabulary (10-05 spellings);
            defaults to `e2llm.electrodes.ELECTRODE_NAMES`.
        plausible_std_uv (`list[float]`, *optional*, defaults to `[0.05, 5000.0]`): range of the median
            channel standard deviation (µV, measured after filtering) outside which the stated units are
            rejected as wrong.
        output_unit_uv (`float`, *optional*): with `normalization="none"`, microvolts per unit of the output (1000
            gives millivolts, as EEGPT takes); None keeps microvolts. Set from a foundation encoder's contract.
        min_channels (`int`, *optional*, defaults to 1): fewest known channels a recording must have.

    Example:

    >>> import numpy as np
    >>> from e2llm.feature_extraction_e2llm import E2LLMFeatureExtractor
    >>> fe = E2LLMFeatureExtractor()
    >>> eeg = 20 * np.random.default_rng(0).standard_normal((3, 10 * 250))  # 10 s at 250 Hz, µV
    >>> out = fe(eeg, sampling_rate=250, channel_names=["Fz", "Cz", "Pz"], units="uV")
    >>> out["eeg_values"].shape, out["eeg_num_windows"].tolist()
    ((2, 3, 800), [2])
    """

    model_input_names = ["eeg_values", "eeg_channel_ids", "eeg_channel_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 200,
        padding_value: float = 0.0,
        window_seconds: float = 4.0,
        window_stride_seconds: float = 4.0,
        l_freq: float | None = 0.1,
        h_freq: float | None = 70.0,
        notch_freqs: Sequence[float] = (50.0,),
        reference: str | None = None,
        normalization: str = "window",
        electrode_names: Sequence[str] | None = None,
        plausible_std_uv: Sequence[float] = DEFAULT_PLAUSIBLE_STD_UV,
        output_unit_uv: float | None = None,
        min_channels: int = 1,
        **kwargs,
    ):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.window_seconds = float(window_seconds)
        self.window_stride_seconds = float(window_stride_seconds)
        self.l_freq = None if l_freq is None else float(l_freq)
        self.h_freq = None if h_freq is None else float(h_freq)
        self.notch_freqs = [float(f) for f in notch_freqs]
        self.reference = reference
        self.normalization = normalization
        self.electrode_names = list(ELECTRODE_NAMES if electrode_names is None else electrode_names)
        self.plausible_std_uv = [float(v) for v in plausible_std_uv]
        self.output_unit_uv = None if output_unit_uv is None else float(output_unit_uv)
        self.min_channels = int(min_channels)
        if self.output_unit_uv is not None and (self.output_unit_uv <= 0 or normalization != "none"):
            raise ValueError(f"output_unit_uv={output_unit_uv} needs normalization='none' and a positive number of µV")
        if self.min_channels < 1:
            raise ValueError(f"min_channels must be >= 1, got {min_channels}")
        _check_sampling_rate(sampling_rate, "the feature extractor")
        if reference not in (None, "average"):
            raise ValueError(f"reference must be None or 'average', got {reference!r}")
        if normalization not in NORMALIZATION_MODES:
            raise ValueError(f"normalization must be one of {NORMALIZATION_MODES}, got {normalization!r}")
        if len(self.plausible_std_uv) != 2 or not 0 <= self.plausible_std_uv[0] < self.plausible_std_uv[1]:
            raise ValueError(f"plausible_std_uv must be [low, high] with 0 <= low < high, got {plausible_std_uv}")
        window_params(sampling_rate, self.window_seconds, self.window_stride_seconds)
        self._filter_kernel(float(sampling_rate))  # validates the band and notches now, not at the first call

    @property
    def window_samples(self) -> int:
        """Samples per window at the model rate."""
        return window_params(self.sampling_rate, self.window_seconds, self.window_stride_seconds)[0]

    def window_count(self, n_times: int, sampling_rate: float) -> int:
        """Windows that `n_times` samples recorded at `sampling_rate` Hz give (0 when shorter than one)."""
        rate = _check_sampling_rate(sampling_rate, "window_count")
        n_win, stride = window_params(self.sampling_rate, self.window_seconds, self.window_stride_seconds)
        return count_windows(resampled_length(n_times, rate, self.sampling_rate), n_win, stride)

    def _filter_kernel(self, sfreq: float) -> np.ndarray:
        # design_filter caches its kernels, so each input rate is designed once per process.
        return design_filter(sfreq, self.l_freq, self.h_freq, self.notch_freqs)

    def __call__(
        self,
        raw_eeg,
        sampling_rate: float | None = None,
        channel_names: Sequence[str] | Sequence[Sequence[str]] | None = None,
        units: str | None = None,
        return_tensors: str | TensorType | None = None,
        apply_filters: bool = True,
        **kwargs,
    ) -> BatchFeature:
        """
        Turn EEG into model inputs.

        Args:
            raw_eeg: `(n_channels, n_times)` array or tensor, a batch `(batch_size, n_channels, n_times)`, a
                list of 2-D arrays (lengths may differ), or an MNE `Raw` / `Epochs` (or a list of them; each
                epoch is one item). MNE objects carry their own rate, channel names and units (volts).
            sampling_rate: rate of `raw_eeg` in Hz; required for arrays.
            channel_names: one list for all items, or one list per item; required for arrays.
            units: "V" or "uV" ("µV"); required for arrays.
            return_tensors: "pt" or "np"; lists of numpy arrays when None.
            apply_filters: band-pass and notch (True) or only resample, reference, window and normalise.

        Returns:
            `BatchFeature` with `eeg_values` float32 `(total_windows, max_channels, window_samples)`,
            `eeg_channel_ids` int64 and `eeg_channel_mask` int64 `(total_windows, max_channels)` (ids index
            `electrode_names`; id 0 and mask 0 where padded, mask 0 on flat channels), `eeg_num_windows`
            int64 `(n_items,)` and `eeg_window_starts` float32 `(total_windows,)` seconds from each item's start.
        """
        if kwargs:
            logger.warning(f"{type(self).__name__} ignores unknown arguments {sorted(kwargs)}")
        _check_channel_names(channel_names)
        if not isinstance(apply_filters, (bool, np.bool_)):
            raise TypeError(f"apply_filters must be True or False, got {apply_filters!r}")
        blocks = self._to_blocks(raw_eeg, sampling_rate, channel_names, units)
        items: dict[int, tuple] = {}  # input position -> (windows, channel_ids, flat, starts)
        for group in self._group(blocks):
            windows, starts = self._process(group, apply_filters)
            for i, ((block, row), position) in enumerate(zip(group.rows, group.positions)):
                items[position] = (windows[i], block.channel_ids, block.flat[row], starts)
        return self._assemble([items[p] for p in range(len(items))], return_tensors)

    def iter_windows(self, raw_eeg, sampling_rate=None, channel_names=None, units=None, apply_filters: bool = True,
                     windows_per_chunk: int = 64, return_tensors=None):
        """
        `__call__` for one recording of any length in bounded memory: yields a `BatchFeature` per
        `windows_per_chunk` consecutive windows, equal to the matching rows of `__call__` on the whole recording.

        Args:
            raw_eeg: a `(n_channels, n_times)` array or tensor, an MNE `Raw` (loaded or not), or an `EEGFile` from
                `e2llm.recording_file_e2llm.open_recording` (read from disk piece by piece).
            sampling_rate, channel_names, units, apply_filters, return_tensors: as for `__call__`.
            windows_per_chunk: windows per yielded batch (memory grows with it).

        See `e2llm.streaming_e2llm` for how the pieces are cut.
        """
        return _iter_windows(self, raw_eeg, sampling_rate=sampling_rate, channel_names=channel_names, units=units,
                             apply_filters=apply_filters, windows_per_chunk=windows_per_chunk,
                             return_tensors=return_tensors)

    def _to_blocks(self, raw_eeg, sampling_rate, channel_names, units) -> list[_Block]:
        if isinstance(raw_eeg, (list, tuple)):
            if len(raw_eeg) == 0:
                raise ValueError("raw_eeg is an empty list.")
            per_item = _is_nested(channel_names)
            if per_item and len(channel_names) != len(raw_eeg):
                raise ValueError(f"channel_names has {len(channel_names)} lists for {len(raw_eeg)} recordings.")
            return [
                self._block(
                    item, sampling_rate, channel_names[i] if per_item else channel_names, units, f"item {i}",
                    allow_3d=_is_mne_like(item),
                )
                for i, item in enumerate(raw_eeg)
            ]
        if _is_nested(channel_names):
            names = list(channel_names)
            data = self._as_array(raw_eeg, "raw_eeg")
            if data.ndim != 3 or len(names) != data.shape[0]:
                raise ValueError(
                    f"channel_names has {len(names)} lists; one list per item needs a batch of {len(names)}, "
                    f"got shape {data.shape}."
                )
            return [self._block(data[i], sampling_rate, names[i], units, f"item {i}") for i in range(len(names))]
        return [self._block(raw_eeg, sampling_rate, channel_names, units, "raw_eeg", allow_3d=True)]

    @staticmethod
    def _as_array(data, label: str) -> np.ndarray:
        if isinstance(data, torch.Tensor):
            if data.is_complex() or data.dtype == torch.bool:
                raise ValueError(f"{label}: EEG must be a real-valued numeric tensor, got dtype {data.dtype}")
            data = data.detach().cpu().double().numpy()
        if isinstance(data, (str, bytes)) or data is None:
            raise TypeError(f"{label}: EEG must be an array, tensor or MNE object, got {type(data).__name__}")
        try:
            data = np.asarray(data)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"{label}: EEG must be a rectangular (n_channels, n_times) array: {error}") from None
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
            raise ValueError(f"{label}: EEG must be a real-valued numeric array, got dtype {data.dtype}")
        return data

    def _from_mne(self, obj, sampling_rate, channel_names, units, label: str):
        """`(data, sampling_rate, channel_names, units)` of a Raw/Epochs-like object, checked against the
        arguments; channels in `info["bads"]` are left out, as MNE does by default."""
        obj_rate = float(obj.info["sfreq"])
        if sampling_rate is not None and not np.isclose(float(sampling_rate), obj_rate):
            raise ValueError(
                f"{label}: sampling_rate={sampling_rate} contradicts the MNE object's info['sfreq']={obj_rate}."
            )
        if channel_names is not None and [str(n) for n in channel_names] != list(obj.ch_names):
            raise ValueError(f"{label}: channel_names differ from the MNE object's ch_names {obj.ch_names}.")
        if units is not None and units != "V":
            raise ValueError(f"{label}: MNE objects hold volts; got units={units!r}.")
        names, bads = list(obj.ch_names), set(obj.info.get("bads", []) or [])
        n_times = getattr(obj, "n_times", None)
        if n_times is not None:  # a Raw (possibly not loaded): refuse before reading what would not fit
            self._check_memory(1, len(names), int(n_times), _check_sampling_rate(obj_rate, label), label)
        array = self._as_array(obj.get_data(), label)
        if bads:
            logger.warning(f"{label}: leaving out channels marked bad in info['bads']: {sorted(bads)}")
            keep = [i for i, n in enumerate(names) if n not in bads]
            array, names = array[..., keep, :], [names[i] for i in keep]
        return array, obj_rate, names, "V"

    def _block(self, data, sampling_rate, channel_names, units, label: str, allow_3d: bool = False) -> _Block:
        """Check one input (an array or MNE object) and return its known channels in µV."""
        if _is_mne_like(data):
            array, sampling_rate, names, units = self._from_mne(data, sampling_rate, channel_names, units, label)
        else:
            array, names = self._as_array(data, label), channel_names
        if array.ndim not in ((2, 3) if allow_3d else (2,)):
            expected = "(n_channels, n_times)" + (" or (batch_size, n_channels, n_times)" if allow_3d else "")
            raise ValueError(f"{label}: expected {expected}, got an array of shape {array.shape}.")
        if array.size == 0:
            raise ValueError(f"{label}: the EEG array is empty (shape {array.shape}).")
        array = array[None] if array.ndim == 2 else array
        rate = _check_sampling_rate(sampling_rate, "array input")
        scale = _check_units(units)
        if names is None:
            raise ValueError(f"{label}: channel_names is required for array input ({array.shape[-2]} channels).")
        names = [str(n) for n in names]
        self._check_memory(array.shape[0], array.shape[-2], array.shape[-1], rate, label)
        self._check_values(array, names, label)
        self._check_length(array.shape[-1], rate, label)
        ids, known = self._map_channels(names, array.shape[-2], label)
        self._check_peak(float(np.max(np.abs(array))), scale, label)
        if not known.all():
            array = np.compress(known, array, axis=1)  # much faster than boolean indexing of a middle axis
        flat = np.ptp(array, axis=-1) == 0  # (n_items, n_channels)
        if flat.all(axis=-1).any():
            raise ValueError(f"{label}: every channel is flat (constant); there is no signal to use.")
        if flat.any():
            kept = [n for n, k in zip(names, known) if k]
            flat_names = sorted({kept[c] for c in np.nonzero(flat)[1]})
            logger.warning(f"{label}: masking flat (constant) channels {flat_names}")
        # The chain runs in float32 (the output's precision; half the memory traffic of float64). Channel means are
        # taken out first (and put back after filtering), so a large DC offset costs no float32 precision.
        offset = array.mean(axis=-1, dtype=np.float64)  # (n_items, n_channels)
        data_uv = np.subtract(array, offset[..., None], dtype=np.float32)
        if scale != 1.0:
            data_uv *= np.float32(scale)
        n_items = data_uv.shape[0]
        labels = [label] if n_items == 1 else [f"{label}[{i}]" for i in range(n_items)]
        return _Block(data_uv, rate, ids, flat, offset * scale, labels)

    def _map_channels(self, names: list[str], n_channels: int, label: str) -> tuple[np.ndarray, np.ndarray]:
        """`(ids, known)`: electrode ids of `names` (-1 where unknown) and which are known; ValueError for a count
        mismatch, duplicates, or too few known channels."""
        if len(names) != n_channels:
            raise ValueError(f"{label}: {len(names)} channel names for {n_channels} channels in the data.")
        duplicates = find_duplicates(names)
        if duplicates:
            given = {key: [n for n in names if (canonical_channel_name(n) or n.strip().upper()) == key] for key in duplicates}
            listing = "; ".join(f"{key} given as {spellings}" for key, spellings in given.items())
            raise ValueError(
                f"{label}: duplicate channel names (case-insensitive, old 10-20 names as aliases): {listing}"
            )
        ids = channel_table_ids(names, self.electrode_names)
        known = ids >= 0
        if not known.any():
            raise ValueError(f"{label}: none of the channels {names} is a known 10-05 electrode name.")
        if known.sum() < self.min_channels:
            raise ValueError(f"{label}: only {int(known.sum())} of the channels {names} are in the encoder's channel "
                             f"table; it needs at least {self.min_channels} (min_channels).")
        if not known.all():
            unknown = [n for n, k in zip(names, known) if not k]
            # once per set of channels and process: a training run meets the same montage in every batch item
            logger.warning_once(f"dropping channels not in the encoder's electrode vocabulary: {unknown}")
        return ids[known], known

    def _check_memory(self, n_items: int, n_channels: int, n_times: int, rate: float, label: str) -> None:
        """ValueError, before anything is allocated, when processing the input at once would need more memory than
        the machine has (float32 copies of the input, the resampled and filtered signal, and the windows)."""
        total = _total_memory_bytes()
        out = resampled_length(n_times, rate, self.sampling_rate)
        need = 4 * n_items * n_channels * (2 * n_times + 4 * out)
        if total is not None and need > 0.8 * total:
            raise ValueError(
                f"{label}: {n_channels} channels x {n_times} samples at {rate:g} Hz need about {need / 2**30:.1f} GiB "
                f"at once, more than this machine's {total / 2**30:.1f} GiB: use `iter_windows` (bounded memory, "
                "streams files) or pass the recording in parts"
            )

    @staticmethod
    def _check_peak(peak: float, scale: float, label: str) -> None:
        """ValueError when the largest |sample| (`peak`, input units; `scale` µV per unit) is no voltage."""
        if peak * scale <= MAX_ABS_UV:
            return
        hint = ("this looks like microvolts given as volts (pass units='uV')" if scale > 1 and peak <= MAX_ABS_UV
                else "check the units and the file (corrupt samples or a wrong scale)")
        raise ValueError(f"{label}: a sample of {peak * scale:.3g} µV after unit conversion is beyond any EEG "
                         f"amplifier's range ({MAX_ABS_UV:g} µV): {hint}")

    @staticmethod
    def _check_values(array: np.ndarray, names: list[str], label: str) -> None:
        finite = np.isfinite(array)
        if finite.all():
            return
        bad_per_channel = (~finite).sum(axis=(0, -1))  # (n_channels,)
        channels = np.nonzero(bad_per_channel)[0]
        where = ", ".join(
            f"{names[c] if c < len(names) else f'#{c}'!r}: {bad_per_channel[c]}" for c in channels[:10]
        )
        more = f" and {len(channels) - 10} more channels" if len(channels) > 10 else ""
        raise ValueError(
            f"{label}: {int(bad_per_channel.sum())} NaN/Inf values in {len(channels)} channel(s) ({where}{more})."
        )

    def _check_length(self, n_times: int, rate: float, label: str) -> None:
        if self.window_count(n_times, rate) == 0:
            raise ValueError(
                f"{label}: too short for one window: {self.window_seconds} s needed, {n_times / rate:.3f} s given "
                f"({n_times} samples at {rate} Hz)."
            )

    def _group(self, blocks: list[_Block]) -> list[_Group]:
        """Stack the recordings that share rate and shape, so they go through the kernels in one call."""
        groups: dict[tuple, _Group] = {}
        position = 0
        for block in blocks:
            group = groups.setdefault((block.sfreq, block.data.shape[1], block.data.shape[2]), _Group())
            for row in range(block.data.shape[0]):
                group.rows.append((block, row))
                group.positions.append(position)
                position += 1
        return list(groups.values())

    def _process(self, group: _Group, apply_filters: bool) -> tuple[np.ndarray, np.ndarray]:
        """`(n_items, n_windows, n_channels, window_samples)` normalised windows and their starts in seconds."""
        first = group.rows[0][0]
        if all(block is first for block, _ in group.rows):  # one block, rows in order: no copy
            data = first.data
        else:
            data = np.stack([block.data[row] for block, row in group.rows])
        flat = np.stack([block.flat[row] for block, row in group.rows])  # (n_items, n_channels)
        offset = np.stack([block.offset[row] for block, row in group.rows])  # (n_items, n_channels)
        data = resample(data, first.sfreq, self.sampling_rate)
        gain = 1.0  # of the chain at 0 Hz, to put the channel means back
        if apply_filters:
            kernel = self._filter_kernel(float(self.sampling_rate))
            data, gain = apply_filter(data, kernel), float(kernel.sum())
        data += (offset * gain).astype(data.dtype)[..., None]
        self._check_amplitude(data, flat, [block.labels[row] for block, row in group.rows])
        live = ~flat
        if self.reference == "average":
            mean = (data * live[..., None]).sum(axis=1, keepdims=True) / live.sum(axis=1)[:, None, None]
            data = data - mean.astype(data.dtype)
        windows, starts = sliding_windows(data, self.sampling_rate, self.window_seconds, self.window_stride_seconds)
        mask = live[:, None, :]  # broadcast over windows
        windows = normalize_windows(windows, self.normalization, channel_mask=mask)
        windows *= mask[..., None]  # flat channels carry exact zeros
        _check_finite_output(windows, [block.labels[row] for block, row in group.rows])
        if self.output_unit_uv is not None:
            windows /= np.float32(self.output_unit_uv)
        return windows, starts

    def _check_amplitude(self, data: np.ndarray, flat: np.ndarray, labels: list[str]) -> None:
        std = np.where(flat, np.nan, data.std(axis=-1))
        typical = np.nanmedian(std, axis=-1)  # (n_items,)
        low, high = self.plausible_std_uv
        for label, value in zip(labels, typical):
            if value < low:
                raise ValueError(
                    f"{label}: median channel std is {value:.3g} µV, below {low} µV: this looks like volts "
                    "given as microvolts (pass units='V')."
                )
            if value > high:
                raise ValueError(
                    f"{label}: median channel std is {value:.3g} µV, above {high} µV: this looks like "
                    "microvolts given as volts (pass units='uV')."
                )

    def _assemble(self, items: list[tuple], return_tensors) -> BatchFeature:
        windows, channel_ids, flats, starts = zip(*items)
        n_windows = np.array([w.shape[0] for w in windows], dtype=np.int64)
        max_channels = max(w.shape[1] for w in windows)
        total = int(n_windows.sum())
        values = np.full((total, max_channels, self.window_samples), self.padding_value, dtype=np.float32)
        ids = np.zeros((total, max_channels), dtype=np.int64)
        mask = np.zeros((total, max_channels), dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(n_windows)])
        for i, (w, cid, flat) in enumerate(zip(windows, channel_ids, flats)):
            sl, n_ch = slice(offsets[i], offsets[i + 1]), w.shape[1]
            values[sl, :n_ch] = w
            ids[sl, :n_ch] = cid
            mask[sl, :n_ch] = ~flat
        data = {
            "eeg_values": values,
            "eeg_channel_ids": ids,
            "eeg_channel_mask": mask,
            "eeg_num_windows": n_windows,
            "eeg_window_starts": np.concatenate(starts).astype(np.float32),
        }
        return BatchFeature(data, tensor_type=return_tensors)


__all__ = ["E2LLMFeatureExtractor"]
