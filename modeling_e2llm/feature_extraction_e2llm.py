"""Feature extractor for E2-LLM: raw multichannel EEG to fixed-rate, filtered, normalised windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import TensorType, logging

from .chain_e2llm import (
    ChainSettings,
    ExtractedItem,
    finish_windows,
    plan_filter,
    to_model_rate,
    window_quality,
)
from .eeg_inputs_e2llm import Source, is_mne_like
from .electrodes import ELECTRODE_NAMES
from .kwargs_e2llm import E2LLMEEGKwargs
from .signal_e2llm import NORMALIZATION_MODES, count_windows, design_filter, resampled_length, window_params
from .streaming_e2llm import iter_windows as _iter_windows
from .validation_e2llm import (
    DEFAULT_PLAUSIBLE_STD_UV,
    as_array,
    check_channel_names,
    check_flag,
    check_length,
    check_line_freq,
    check_memory,
    check_peak,
    check_sampling_rate,
    check_values,
)

logger = logging.get_logger(__name__)
METADATA_KEYS = ("eeg_num_windows", "eeg_window_starts", "eeg_band_power", "eeg_channels", "eeg_filter",
                 "eeg_unusable", "eeg_refused", "eeg_window_statistics")
_NOT_TENSORS = ["eeg_channels", "eeg_filter", "eeg_unusable", "eeg_refused", "eeg_window_statistics"]


@dataclass
class _Block:
    """Recordings that share a rate and channels: `data` `(n_items, n_channels, n_times)` µV, channel means out."""

    data: np.ndarray
    sfreq: float
    source: Source
    flat: np.ndarray  # (n_items, n_channels) bool
    offset: np.ndarray  # (n_items, n_channels) float64 µV
    labels: list[str] = field(default_factory=list)


@dataclass
class _Group:
    """Rows `(block, row)` of equal rate and shape, and their positions in the input order."""

    rows: list[tuple[_Block, int]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


def _check_settings_numbers(**settings) -> None:
    """ValueError naming a numeric setting that is NaN or infinite."""
    for name, value in settings.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not np.isfinite(value):
            raise ValueError(f"{name}={value} must be a finite number")


def _is_nested(channel_names) -> bool:
    """Whether `channel_names` is one list per item rather than one list of names."""
    return channel_names is not None and len(channel_names) > 0 and not isinstance(channel_names[0], str)


class E2LLMFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Constructs an E2-LLM feature extractor: multichannel EEG in any montage, rate and units to the model's
    input windows.

    Per recording: check the input, choose the channels (`e2llm.eeg_inputs_e2llm`: MNE types and bad channels
    respected, `channel_map` renames, unknown and non-EEG channels dropped with their reason), convert to microvolts,
    then run the one signal chain (`e2llm.chain_e2llm`): resample to `sampling_rate` (polyphase), band-pass
    `l_freq`-`h_freq` Hz and notch the line frequency with one zero-phase FIR kernel designed by MNE's rules (fitted to
    inputs shorter than the kernel), optionally re-reference to the average, cut `window_seconds` windows every
    `window_stride_seconds`, measure each window's band power, and normalise each window. Channels and windows are
    processed as arrays; recordings of equal shape are processed together. The chain runs in float32 with each
    channel's mean taken out first (and put back after filtering), so DC offsets cost no precision.

    Args:
        feature_size (`int`, *optional*, defaults to 1): kept for `SequenceFeatureExtractor`.
        sampling_rate (`int`, *optional*, defaults to 200): the model's rate in Hz; inputs are resampled to it.
        padding_value (`float`, *optional*, defaults to 0.0): value of padded channels.
        window_seconds (`float`, *optional*, defaults to 4.0): window length.
        window_stride_seconds (`float`, *optional*, defaults to 4.0): step between window starts.
        l_freq (`float`, *optional*, defaults to 0.1): high-pass edge in Hz (None: no high-pass).
        h_freq (`float`, *optional*, defaults to 70.0): low-pass edge in Hz (None: no low-pass).
        notch_freqs (`list[float]`, *optional*, defaults to `[50.0]`): line-noise frequencies to notch out
            (a call's `line_freq` replaces them).
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
    valid_kwargs = E2LLMEEGKwargs

    def __init__(self, feature_size: int = 1, sampling_rate: int = 200, padding_value: float = 0.0,
                 window_seconds: float = 4.0, window_stride_seconds: float = 4.0, l_freq: float | None = 0.1,
                 h_freq: float | None = 70.0, notch_freqs: Sequence[float] = (50.0,), reference: str | None = None,
                 normalization: str = "window", electrode_names: Sequence[str] | None = None,
                 plausible_std_uv: Sequence[float] = DEFAULT_PLAUSIBLE_STD_UV, output_unit_uv: float | None = None,
                 min_channels: int = 1, **kwargs):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        _check_settings_numbers(window_seconds=window_seconds, window_stride_seconds=window_stride_seconds,
                                l_freq=l_freq, h_freq=h_freq, sampling_rate=sampling_rate)
        if isinstance(notch_freqs, (int, float)):  # one line frequency given as a number
            notch_freqs = [notch_freqs]
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
        self._check_settings()

    def _check_settings(self) -> None:
        if self.output_unit_uv is not None and (self.output_unit_uv <= 0 or self.normalization != "none"):
            raise ValueError(f"output_unit_uv={self.output_unit_uv} needs normalization='none' and a positive "
                             "number of µV")
        if self.min_channels < 1:
            raise ValueError(f"min_channels must be >= 1, got {self.min_channels}")
        check_sampling_rate(self.sampling_rate, "the feature extractor")
        if self.reference not in (None, "average"):
            raise ValueError(f"reference must be None or 'average', got {self.reference!r}")
        if self.normalization not in NORMALIZATION_MODES:
            raise ValueError(f"normalization must be one of {NORMALIZATION_MODES}, got {self.normalization!r}")
        low_high = self.plausible_std_uv
        if len(low_high) != 2 or not 0 <= low_high[0] < low_high[1]:
            raise ValueError(f"plausible_std_uv must be [low, high] with 0 <= low < high, got {low_high}")
        window_params(self.sampling_rate, self.window_seconds, self.window_stride_seconds)
        # validates the band and notches now, not at the first call
        design_filter(float(self.sampling_rate), self.l_freq, self.h_freq, self.notch_freqs)

    @property
    def window_samples(self) -> int:
        """Samples per window at the model rate."""
        return window_params(self.sampling_rate, self.window_seconds, self.window_stride_seconds)[0]

    def window_count(self, n_times: int, sampling_rate: float) -> int:
        """Windows that `n_times` samples recorded at `sampling_rate` Hz give (0 when shorter than one)."""
        rate = check_sampling_rate(sampling_rate, "window_count")
        n_win, stride = window_params(self.sampling_rate, self.window_seconds, self.window_stride_seconds)
        return count_windows(resampled_length(n_times, rate, self.sampling_rate), n_win, stride)

    def chain_settings(self, line_freq: float | None = None) -> ChainSettings:
        """This extractor's signal chain (`e2llm.chain_e2llm`), with the notch at `line_freq` when given."""
        return ChainSettings.of(self).with_line_freq(check_line_freq(line_freq))

    def __call__(self, raw_eeg, sampling_rate: float | None = None,
                 channel_names: Sequence[str] | Sequence[Sequence[str]] | None = None, units: str | None = None,
                 return_tensors: str | TensorType | None = None, apply_filters: bool = True,
                 channel_map: dict | None = None, montage=None, line_freq: float | None = None,
                 return_band_power: bool = False, return_window_statistics: bool = False,
                 **kwargs) -> BatchFeature:
        """
        Turn EEG into model inputs.

        Args:
            raw_eeg: `(n_channels, n_times)` array or tensor, a batch `(batch_size, n_channels, n_times)`, a
                list of 2-D arrays (lengths may differ), or an MNE `Raw` / `Epochs` (or a list of them; each
                epoch is one item), or an `EEGFile`. MNE objects carry their own rate, channel names, channel types,
                bad channels and units (volts).
            sampling_rate: rate of `raw_eeg` in Hz; required for arrays.
            channel_names: one list for all items, or one list per item; required for arrays.
            units: "V", "mV" or "uV" ("µV"); required for arrays. For an MNE object it overrides volts (a file whose
                values are stored in microvolts).
            return_tensors: "pt" or "np"; lists of numpy arrays when None.
            apply_filters: band-pass and notch (True) or only resample, reference, window and normalise.
            channel_map: `{input name: 10-05 name}` applied before the channels are chosen.
            montage: an MNE standard montage name (e.g. "biosemi64") placing the electrodes of a cap whose labels
                are not 10-05 names by position.
            line_freq: the mains frequency (50 or 60 Hz) to notch, instead of the extractor's `notch_freqs`.
            return_band_power: also return `eeg_band_power`.
            return_window_statistics: also return `eeg_window_statistics`.

        Returns:
            `BatchFeature` with `eeg_values` float32 `(total_windows, max_channels, window_samples)`,
            `eeg_channel_ids` int64 and `eeg_channel_mask` int64 `(total_windows, max_channels)` (ids index
            `electrode_names`; id 0 and mask 0 where padded, mask 0 on flat channels), `eeg_num_windows`
            int64 `(n_items,)`, `eeg_window_starts` float32 `(total_windows,)` seconds from each item's start,
            `eeg_channels` (per item: `{"used", "dropped", "placement"}`), `eeg_filter` (per item: the filter it
            got), `eeg_unusable` (per window: `{channel: reason}` for channels flat, stuck, clipped or saturated in
            that window's raw samples, masked in it) and `eeg_refused` (per window: why it is refused, more than
            half of its channels being unusable, or None); with `return_band_power`, `eeg_band_power` float64
            `(total_windows, n_bands, max_channels)` dB of
            each window before normalisation (NaN where padded); with `return_window_statistics`,
            `eeg_window_statistics` (per window: `e2llm.label_evidence_e2llm.window_statistics` of its raw samples on
            its usable channels, what the pipeline's abstention reads).
        """
        if kwargs:
            logger.warning(f"{type(self).__name__} ignores unknown arguments {sorted(kwargs)}")
        check_channel_names(channel_names)
        check_flag("apply_filters", apply_filters)
        check_flag("return_window_statistics", return_window_statistics)
        settings = replace(self.chain_settings(line_freq), window_statistics=return_window_statistics)
        blocks = self._blocks(raw_eeg, sampling_rate, channel_names, units, channel_map, montage)
        items = self.extract(blocks, settings, apply_filters, return_band_power)
        return self.assemble(items, return_tensors, return_band_power)

    def extract(self, blocks: list[_Block], settings: ChainSettings, apply_filters: bool,
                band_power: bool) -> list[ExtractedItem]:
        """The chain on checked blocks (`block`), recordings of equal shape together: one item per recording."""
        items: dict[int, ExtractedItem] = {}  # input position -> its windows
        for group in self._group(blocks):
            out, plan, quality = self._process(group, settings, apply_filters, band_power)
            for i, ((block, row), position) in enumerate(zip(group.rows, group.positions)):
                power = None if out.band_power is None else out.band_power[i]
                items[position] = ExtractedItem(out.windows[i], block.source, block.flat[row], out.starts, power,
                                                plan.description, quality[i])
        return [items[p] for p in range(len(items))]

    def iter_windows(self, raw_eeg, sampling_rate=None, channel_names=None, units=None, apply_filters: bool = True,
                     windows_per_chunk: int = 64, return_tensors=None, channel_map=None, montage=None,
                     line_freq=None, return_band_power: bool = False, return_window_statistics: bool = False):
        """
        `__call__` for one recording of any length in bounded memory: yields a `BatchFeature` per
        `windows_per_chunk` consecutive windows, equal to the matching rows of `__call__` on the whole recording.

        Args:
            raw_eeg: a `(n_channels, n_times)` array or tensor, an MNE `Raw` (loaded or not), or an `EEGFile` from
                `e2llm.recording_file_e2llm.open_recording` (read from disk piece by piece).
            windows_per_chunk: windows per yielded batch (memory grows with it).
            Other arguments: as for `__call__`.

        See `e2llm.streaming_e2llm` for how the pieces are cut.
        """
        return _iter_windows(self, raw_eeg, sampling_rate=sampling_rate, channel_names=channel_names, units=units,
                             apply_filters=apply_filters, windows_per_chunk=windows_per_chunk,
                             return_tensors=return_tensors, channel_map=channel_map, montage=montage,
                             line_freq=line_freq, return_band_power=return_band_power,
                             return_window_statistics=return_window_statistics)

    def source(self, raw_eeg, sampling_rate=None, channel_names=None, units=None, channel_map=None,
               label: str = "raw_eeg", allow_batch: bool = False, montage=None, interface: str = "python") -> Source:
        """The `Source` of one input, its channels chosen for this extractor's encoder."""
        return Source(raw_eeg, self.electrode_names, sampling_rate, channel_names, units, channel_map, label,
                      allow_batch, self.min_channels, montage, interface)

    def _blocks(self, raw_eeg, sampling_rate, channel_names, units, channel_map, montage) -> list[_Block]:
        if isinstance(raw_eeg, (list, tuple)):
            if len(raw_eeg) == 0:
                raise ValueError("raw_eeg is an empty list.")
            per_item = _is_nested(channel_names)
            if per_item and len(channel_names) != len(raw_eeg):
                raise ValueError(f"channel_names has {len(channel_names)} lists for {len(raw_eeg)} recordings.")
            return [self.block(self.source(item, sampling_rate, channel_names[i] if per_item else channel_names,
                                           units, channel_map, f"item {i}", is_mne_like(item), montage))
                    for i, item in enumerate(raw_eeg)]
        if _is_nested(channel_names):
            data = as_array(raw_eeg, "raw_eeg")
            if data.ndim != 3 or len(channel_names) != data.shape[0]:
                raise ValueError(f"channel_names has {len(channel_names)} lists; one list per item needs a batch of "
                                 f"{len(channel_names)}, got shape {data.shape}.")
            return [self.block(self.source(data[i], sampling_rate, names, units, channel_map, f"item {i}",
                                           montage=montage)) for i, names in enumerate(channel_names)]
        return [self.block(self.source(raw_eeg, sampling_rate, channel_names, units, channel_map, "raw_eeg", True,
                                       montage))]

    def block(self, source: Source) -> _Block:
        """Read and check a whole `Source`: its used channels in µV with their means taken out."""
        label, n_channels = source.label, len(source.names)
        n_out = resampled_length(source.n_times, source.rate, self.sampling_rate)
        check_length(count_windows(n_out, *window_params(self.sampling_rate, self.window_seconds,
                                                         self.window_stride_seconds)),
                     source.n_times, source.rate, self.window_seconds, label)
        check_memory(source.n_items, n_channels, source.n_times, n_out, source.rate, label)
        array = source.read()
        check_values(array, source.names, label)
        check_peak(float(np.max(np.abs(array))), source.scale, label)
        flat = np.ptp(array, axis=-1) == 0  # (n_items, n_channels)
        if flat.all(axis=-1).any():
            raise ValueError(f"{label}: every channel is flat (constant); there is no signal to use.")
        if flat.any():  # once per set of channels and process: prepared data masks channels this way in every batch
            flat_names = sorted({source.names[c] for c in np.nonzero(flat)[1]})
            logger.warning_once(f"masking flat (constant) channels {flat_names}")
        if source.choice.dropped:  # once per set of channels and process: a training run meets it in every batch
            logger.warning_once(f"dropping channels the model cannot use: {source.choice.dropped}")
        offset = array.mean(axis=-1, dtype=np.float64)  # (n_items, n_channels)
        data_uv = np.subtract(array, offset[..., None], dtype=np.float32)
        if source.scale != 1.0:
            data_uv *= np.float32(source.scale)
        labels = [label] if source.n_items == 1 else [f"{label}[{i}]" for i in range(source.n_items)]
        return _Block(data_uv, source.rate, source, flat, offset * source.scale, labels)

    @staticmethod
    def _group(blocks: list[_Block]) -> list[_Group]:
        """Stack the recordings that share rate and shape, so they go through the kernels in one call."""
        groups: dict[tuple, _Group] = {}
        position = 0
        for block in blocks:
            group = groups.setdefault((block.sfreq, *block.data.shape[1:]), _Group())
            for row in range(block.data.shape[0]):
                group.rows.append((block, row))
                group.positions.append(position)
                position += 1
        return list(groups.values())

    def _process(self, group: _Group, settings: ChainSettings, apply_filters: bool, band_power: bool):
        """The chain on the recordings of one group: `(ChainOutput, FilterPlan)`."""
        first = group.rows[0][0]
        if all(block is first for block, _ in group.rows):  # one block, rows in order: no copy
            data, flat, offset = first.data, first.flat, first.offset
        else:
            data = np.stack([block.data[row] for block, row in group.rows])
            flat = np.stack([block.flat[row] for block, row in group.rows])  # (n_items, n_channels)
            offset = np.stack([block.offset[row] for block, row in group.rows])
        labels = [block.labels[row] for block, row in group.rows]
        n_out = resampled_length(data.shape[-1], first.sfreq, self.sampling_rate)
        n_windows = count_windows(n_out, *window_params(self.sampling_rate, self.window_seconds,
                                                        self.window_stride_seconds))
        quality = [window_quality(data[i] + offset[i][:, None], first.sfreq, 0, n_windows, 0, settings,
                                  block.source.names, ~flat[i], block.source.rails_uv)
                   for i, (block, _) in enumerate(group.rows)]  # on the raw samples, before any filter
        plan = plan_filter(settings, n_out, apply_filters)
        data = to_model_rate(data, first.sfreq, settings, plan, offset, ~flat)
        usable = np.stack([q.usable for q in quality])
        return finish_windows(data, flat, settings, labels, band_power, usable=usable), plan, quality

    def assemble(self, items: list[ExtractedItem], return_tensors, band_power: bool = False) -> BatchFeature:
        """One `BatchFeature` of extracted items, channels padded (id 0, mask 0)."""
        n_windows = np.array([item.windows.shape[0] for item in items], dtype=np.int64)
        max_channels = max(item.windows.shape[1] for item in items)
        total = int(n_windows.sum())
        values = np.full((total, max_channels, self.window_samples), self.padding_value, dtype=np.float32)
        ids = np.zeros((total, max_channels), dtype=np.int64)
        mask = np.zeros((total, max_channels), dtype=np.int64)
        power = np.full((total, 5, max_channels), np.nan) if band_power else None
        offsets = np.concatenate([[0], np.cumsum(n_windows)])
        for i, item in enumerate(items):
            rows, n_ch = slice(offsets[i], offsets[i + 1]), item.windows.shape[1]
            values[rows, :n_ch], ids[rows, :n_ch] = item.windows, item.source.choice.ids
            mask[rows, :n_ch] = ~item.flat[None] & item.quality.usable
            if band_power:
                power[rows, :, :n_ch] = item.band_power
        data = {"eeg_values": values, "eeg_channel_ids": ids, "eeg_channel_mask": mask, "eeg_num_windows": n_windows,
                "eeg_window_starts": np.concatenate([item.starts for item in items]).astype(np.float32),
                "eeg_channels": [item.source.choice.report() for item in items],
                "eeg_filter": [item.filter for item in items],
                "eeg_unusable": [p for item in items for p in item.quality.problems],
                "eeg_refused": [r for item in items for r in item.quality.refused]}
        if all(item.quality.statistics is not None for item in items):
            data["eeg_window_statistics"] = [s for item in items for s in item.quality.statistics]
        if band_power:
            data["eeg_band_power"] = power
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=_NOT_TENSORS)


__all__ = ["METADATA_KEYS", "E2LLMFeatureExtractor"]
