"""The one signal chain from EEG in microvolts to model windows, shared by the feature extractor (whole signals),
streaming (`e2llm.streaming_e2llm`, piece by piece) and dataset preparation (`e2llm.processing.preprocess`).

Steps, in this order: resample to the model rate (polyphase), filter (a `FilterPlan`), put the channel means back
(scaled by the filter's gain at 0 Hz), re-reference (optional), cut windows, measure each window's band power
(before normalisation, in µV), normalise each window, zero the flat channels.

The filter is fitted to the input: the standard zero-phase FIR (band-pass `l_freq`-`h_freq` Hz + notch at the line
frequency, MNE's design rules) whenever its kernel fits inside the input at the model rate. A shorter input (with the
default 0.1 Hz high-pass: under 39.6 s) would be dominated by the filter's edges, so it gets the short-input plan
instead: the high-pass left out but for the mean (a 0.1 Hz high-pass barely changes the shape of a few seconds of
signal, and a trend or a faster high-pass would remove slow content that windows cut from long filtered recordings,
the model's training data, keep), the line frequency removed by a least-squares sinusoid fit in place of the notch (no
kernel, so no edges), and the low-pass FIR, whose kernel is short (39 taps at 70 Hz and 200 Hz). Measured on 1/f
noise (`tests/test_feature_extraction_chain.py`), its windows are closer to the same seconds cut from the recording
filtered whole than the 7,921-tap kernel run on the short input is. Each result says which plan it got
(`FilterPlan.description`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .channel_quality_e2llm import unusable_channels
from .eeg_evidence_features import band_power_db
from .label_evidence_e2llm import window_statistics
from .signal_e2llm import apply_filter, design_filter, normalize_windows, resample, sliding_windows
from .validation_e2llm import check_amplitude, check_finite_output


@dataclass(frozen=True)
class ChainSettings:
    """What the chain does: the model rate, the band, the notch, reference, windows, normalisation, the output unit
    (µV per output unit; None keeps µV) and the plausible median channel std (None: no units check)."""

    sampling_rate: float
    l_freq: float | None = 0.1
    h_freq: float | None = 70.0
    notch_freqs: tuple[float, ...] = (50.0,)
    reference: str | None = None
    window_seconds: float = 4.0
    stride_seconds: float = 4.0
    normalization: str = "window"
    output_unit_uv: float | None = None
    plausible_std_uv: tuple[float, float] | None = None
    window_statistics: bool = False  # also measure `e2llm.label_evidence_e2llm.window_statistics` per window

    @classmethod
    def of(cls, extractor) -> ChainSettings:
        """The settings of an `E2LLMFeatureExtractor`."""
        return cls(float(extractor.sampling_rate), extractor.l_freq, extractor.h_freq, tuple(extractor.notch_freqs),
                   extractor.reference, extractor.window_seconds, extractor.window_stride_seconds,
                   extractor.normalization, extractor.output_unit_uv, tuple(extractor.plausible_std_uv))

    def with_line_freq(self, line_freq: float | None) -> ChainSettings:
        """The same chain with the notch at `line_freq` and its harmonics below the low-pass (or Nyquist); unchanged
        for None."""
        if line_freq is None:
            return self
        top = self.h_freq if self.h_freq is not None else self.sampling_rate / 2 - 1.0
        harmonics = tuple(line_freq * k for k in range(1, int(top // line_freq) + 1))
        if not harmonics:
            raise ValueError(f"line_freq={line_freq} Hz lies above the {top:g} Hz low-pass: nothing to notch")
        return ChainSettings(**{**self.__dict__, "notch_freqs": harmonics})


@dataclass(frozen=True)
class FilterPlan:
    """How one input is filtered at the model rate: an FIR `kernel` (odd length), and for short inputs whether the
    mean stays removed (`remove_mean`, in place of the high-pass) and the `line_freqs` removed by sinusoid fit (in
    place of the notch)."""

    kernel: np.ndarray
    description: str
    remove_mean: bool = False
    line_freqs: tuple[float, ...] = field(default=())

    @property
    def fitted(self) -> bool:
        """Whether this is the short-input plan."""
        return self.remove_mean or bool(self.line_freqs)

    @property
    def gain(self) -> float:
        """Gain at 0 Hz: what the channel means taken out before the chain come back scaled by."""
        return 0.0 if self.remove_mean else float(self.kernel.sum())


def plan_filter(settings: ChainSettings, n_out: int, apply_filters: bool = True) -> FilterPlan:
    """The `FilterPlan` for an input of `n_out` samples at the model rate (see the module docstring)."""
    rate = settings.sampling_rate
    if not apply_filters:
        return FilterPlan(np.ones(1), "none (apply_filters=False)")
    standard = design_filter(rate, settings.l_freq, settings.h_freq, settings.notch_freqs)
    if standard.size <= n_out:
        return FilterPlan(standard, _describe(settings, standard.size))
    lowpass = design_filter(rate, None, settings.h_freq, ()) if settings.h_freq is not None else np.ones(1)
    parts = ([f"the {settings.l_freq:g} Hz high-pass left out but for the mean"] if settings.l_freq is not None
             else [])
    parts += [f"low-pass {settings.h_freq:g} Hz (FIR, {lowpass.size} taps)"] if settings.h_freq is not None else []
    if settings.notch_freqs:
        parts.append(f"{'/'.join(f'{f:g}' for f in settings.notch_freqs)} Hz removed by sinusoid fit")
    return FilterPlan(lowpass, f"fitted to a {n_out / rate:g}-s input, shorter than the {standard.size}-tap "
                      f"band-pass: {', '.join(parts)}", remove_mean=settings.l_freq is not None,
                      line_freqs=tuple(settings.notch_freqs))


def _describe(settings: ChainSettings, n_taps: int) -> str:
    low, high = settings.l_freq, settings.h_freq
    parts = ([f"band-pass {low:g}-{high:g} Hz"] if low is not None and high is not None
             else [f"high-pass {low:g} Hz"] if low is not None else [f"low-pass {high:g} Hz"] if high is not None else [])
    if settings.notch_freqs:
        parts.append(f"notch {'/'.join(f'{f:g}' for f in settings.notch_freqs)} Hz")
    return f"{' + '.join(parts)} (FIR, {n_taps} taps)" if parts else "none (no band or notch set)"


def remove_sinusoids(data: np.ndarray, sfreq: float, freqs) -> np.ndarray:
    """`data` `(..., n_times)` minus its least-squares fit by sines and cosines at `freqs` Hz (line noise removed
    without a kernel, so without edge effects)."""
    t = np.arange(data.shape[-1]) / sfreq
    basis = np.concatenate([np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)]) for f in freqs])
    projector = np.linalg.pinv(basis.T).astype(data.dtype)  # (2k, n_times)
    return data - (data @ projector.T) @ basis.astype(data.dtype)


def apply_plan(data: np.ndarray, plan: FilterPlan, sfreq: float) -> np.ndarray:
    """`data` `(..., n_times)` at the model rate filtered by `plan` (whole signal)."""
    if plan.line_freqs:
        data = remove_sinusoids(data, sfreq, plan.line_freqs)
    return apply_filter(data, plan.kernel)


def to_model_rate(data: np.ndarray, rate: float, settings: ChainSettings, plan: FilterPlan, offset: np.ndarray,
                  live: np.ndarray) -> np.ndarray:
    """Resample, filter, put the channel means back and re-reference: `(n_items, n_channels, n_times)` centred
    samples (`offset` `(n_items, n_channels)` taken out) -> the filtered signal at the model rate, same units."""
    data = resample(data, rate, settings.sampling_rate)
    data = apply_plan(data, plan, settings.sampling_rate)
    data += (offset * plan.gain).astype(data.dtype)[..., None]
    return rereference(data, live, settings.reference)


def rereference(data: np.ndarray, live: np.ndarray, reference: str | None) -> np.ndarray:
    """`data` `(n_items, n_channels, n_times)` re-referenced to the mean of its `live` channels (or unchanged)."""
    if reference != "average":
        return data
    mean = (data * live[..., None]).sum(axis=-2, keepdims=True) / live.sum(axis=-1)[..., None, None]
    return data - mean.astype(data.dtype)


MAX_UNUSABLE_SHARE = 0.5  # a window with more of its channels unusable is refused (as `e2llm prepare` does)


@dataclass
class WindowQuality:
    """Per window of one recording: the unusable channels `{name: reason}` found on its raw samples, why it is refused
    (None when it is not), `usable` `(n_windows, n_channels)` bool for the channel mask, and, when the settings ask
    for them, the raw samples' `window_statistics` (one dict of floats per window, for abstention)."""

    problems: list[dict[str, str]]
    refused: list[str | None]
    usable: np.ndarray
    statistics: list[dict[str, float]] | None = None

    def rows(self, rows: slice) -> WindowQuality:
        """The quality of windows `rows`."""
        return WindowQuality(self.problems[rows], self.refused[rows], self.usable[rows],
                             None if self.statistics is None else self.statistics[rows])


def _signal_statistics(windows_uv: list[np.ndarray], rate: float, names: list[str], keep: np.ndarray) -> (
        list[dict[str, float]]):
    """`window_statistics` of raw windows, each on its channels `keep` `(n_windows, n_channels)` (all channels
    when none is kept). One call per window: faster than one call on the stacked windows (cache-sized arrays)."""
    out = []
    for window, mask in zip(windows_uv, keep):
        mask = mask if mask.any() else np.ones_like(mask)
        stats = window_statistics(window[mask], rate, [n for n, k in zip(names, mask) if k])
        out.append({name: float(values[0]) for name, values in stats.items()})
    return out


def window_quality(raw_uv: np.ndarray, rate: float, first_sample: int, n_windows: int, first_window: int,
                   settings: ChainSettings, names: list[str], live: np.ndarray, rails_uv=None) -> WindowQuality:
    """Check each window's raw samples before any filter (`e2llm.channel_quality_e2llm.unusable_channels`: flat,
    stuck, clipped, saturated). `raw_uv` `(n_channels, n)` µV holds input samples from `first_sample`; windows
    `first_window ...` of the recording; `live` `(n_channels,)` the channels not flat over the whole recording.
    With `settings.window_statistics`, each window's statistics are measured on its live channels that are usable
    in it (`e2llm.label_evidence_e2llm.window_statistics`)."""
    length = int(round(settings.window_seconds * rate))
    usable = np.ones((n_windows, len(names)), dtype=bool)
    problems, refused = [], []
    windows = []
    for k in range(n_windows):
        begin = int(round((first_window + k) * settings.stride_seconds * rate)) - first_sample
        window = raw_uv[:, begin : begin + length]
        windows.append(window)
        found = unusable_channels(window, rate, rails_uv) if length > 1 else {}
        found = {c: reason for c, reason in found.items() if live[c]}
        problems.append({names[c]: reason for c, reason in found.items()})
        reasons = "; ".join(sorted({re.sub(r"\s*\([^)]*\)", "", reason) for reason in found.values()}))
        if len(found) > MAX_UNUSABLE_SHARE * live.sum():  # refused: its channels stay as they are (no label is given)
            refused.append(f"{len(found)} of its {int(live.sum())} channels unusable ({reasons})")
        else:
            refused.append(None)
            usable[k, list(found)] = False
    statistics = None
    if settings.window_statistics and length >= rate and n_windows:
        statistics = _signal_statistics(windows, rate, names, live[None] & usable)
    return WindowQuality(problems, refused, usable, statistics)


@dataclass
class ExtractedItem:
    """One recording's windows as the chain gave them, for `E2LLMFeatureExtractor.assemble`."""

    windows: np.ndarray  # (n_windows, n_channels, window_samples)
    source: object  # the `e2llm.eeg_inputs_e2llm.Source`
    flat: np.ndarray  # (n_channels,)
    starts: np.ndarray  # (n_windows,) seconds
    band_power: np.ndarray | None  # (n_windows, n_bands, n_channels) dB
    filter: str
    quality: WindowQuality


@dataclass
class ChainOutput:
    """Windows of `n_items` recordings: `windows` `(n_items, n_windows, n_channels, window_samples)` float32 (model
    input), `starts` `(n_windows,)` seconds, `band_power` `(n_items, n_windows, n_bands, n_channels)` dB of the
    windows before normalisation (None when not asked)."""

    windows: np.ndarray
    starts: np.ndarray
    band_power: np.ndarray | None


def finish_windows(data: np.ndarray, flat: np.ndarray, settings: ChainSettings, labels: list[str],
                   band_power: bool = False, n_windows: int | None = None, usable: np.ndarray | None = None) -> (
        ChainOutput):
    """The chain's last steps on `data` `(n_items, n_channels, n_times)` µV at the model rate, filtered and
    re-referenced: the units check, windows (the first `n_windows`), band power, normalisation, flat channels (and
    those `usable` `(n_items, n_windows, n_channels)` marks unusable in a window) zeroed, the output unit."""
    live = ~flat
    if settings.plausible_std_uv is not None:
        check_amplitude(data, flat, labels, settings.plausible_std_uv)
    windows, starts = sliding_windows(data, settings.sampling_rate, settings.window_seconds, settings.stride_seconds)
    if n_windows is not None:
        windows, starts = windows[:, :n_windows], starts[:n_windows]
    power = None
    if band_power:
        shape = windows.shape
        power = band_power_db(windows.reshape(-1, *shape[2:]), settings.sampling_rate).reshape(*shape[:2], -1, shape[2])
    mask = live[:, None, :] if usable is None else live[:, None, :] & usable  # broadcast over windows
    windows = normalize_windows(windows, settings.normalization, channel_mask=mask)
    windows = (windows * mask[..., None]).astype(np.float32, copy=False)  # flat channels carry exact zeros
    check_finite_output(windows, labels)
    if settings.output_unit_uv is not None:
        windows /= np.float32(settings.output_unit_uv)
    return ChainOutput(windows, starts, power)


__all__ = [
    "MAX_UNUSABLE_SHARE",
    "ChainOutput",
    "ExtractedItem",
    "WindowQuality",
    "window_quality",
    "ChainSettings",
    "FilterPlan",
    "apply_plan",
    "finish_windows",
    "plan_filter",
    "remove_sinusoids",
    "rereference",
    "to_model_rate",
]
