"""Vectorised EEG signal kernels: resampling, MNE-style FIR filtering, windowing, normalisation.

Every function works on the last axis of an array of any leading shape, so all channels (and all
recordings of equal shape) go through one call; there is no Python loop over channels or windows.
The FIR design follows MNE-Python's defaults (``mne.filter.create_filter`` with ``fir_design="firwin"``,
``fir_window="hamming"``, automatic transition bandwidths and filter length, and ``mne.filter.notch_filter``)
so that data prepared here and data prepared with MNE have the same passband; only numpy and scipy are
needed, because this module ships to the Hub with the model.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal

logger = logging.getLogger(__name__)

# MNE's `_length_factors`: filter length = factor / transition bandwidth (seconds), per window.
_LENGTH_FACTORS = {"hann": 3.1, "hamming": 3.3, "blackman": 5.0}
NORMALIZATION_MODES = ("window", "channel", "none")


def _as_float(data) -> np.ndarray:
    """`data` as float32 when it is float32 (half the memory traffic for long recordings), else as float64."""
    data = np.asarray(data)
    return data if data.dtype == np.float32 else data.astype(np.float64, copy=False)


def _check_rate(value, name: str) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number of Hz, got {value!r}") from None
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"{name} must be a positive number of Hz, got {value!r}")
    return rate


def resample_ratio(orig_sfreq: float, target_sfreq: float, max_denominator: int = 1000) -> tuple[int, int]:
    """Smallest `(up, down)` with `orig_sfreq * up / down == target_sfreq` (within `max_denominator`)."""
    orig = _check_rate(orig_sfreq, "orig_sfreq")
    target = _check_rate(target_sfreq, "target_sfreq")
    ratio = Fraction(target / orig).limit_denominator(max_denominator)
    if ratio == 0 or ratio.numerator > 100 * max_denominator:
        raise ValueError(f"cannot resample {orig:g} Hz to {target:g} Hz: the ratio {target / orig:.3g} is outside "
                         f"1/{max_denominator}..{100 * max_denominator}")
    achieved = orig * ratio.numerator / ratio.denominator
    if abs(achieved - target) > 1e-6 * target:
        logger.warning(
            "Resampling %s Hz -> %s Hz is approximated by %d/%d, giving %.6f Hz.",
            orig, target, ratio.numerator, ratio.denominator, achieved,
        )
    return ratio.numerator, ratio.denominator


def resampled_length(n_times: int, orig_sfreq: float, target_sfreq: float) -> int:
    """Number of samples that :func:`resample` returns for `n_times` input samples."""
    up, down = resample_ratio(orig_sfreq, target_sfreq)
    return -(-int(n_times) * up // down)  # ceil, as scipy.signal.resample_poly


def resample(data: np.ndarray, orig_sfreq: float, target_sfreq: float, axis: int = -1) -> np.ndarray:
    """Polyphase resampling of `data` along `axis` (anti-aliasing Kaiser FIR, as MNE's ``method="polyphase"``).

    Returns float32 for float32 input, else float64, with `resampled_length(n_times, ...)` samples on `axis`;
    a copy when the rates are equal.
    """
    up, down = resample_ratio(orig_sfreq, target_sfreq)
    data = _as_float(data)
    if up == down:
        return data.copy()
    # "reflect" padding is MNE's choice for polyphase; it avoids a step at both edges.
    return signal.resample_poly(data, up, down, axis=axis, padtype="reflect")


def _auto_transitions(sfreq: float, l_freq: float | None, h_freq: float | None) -> tuple[float, float]:
    """MNE's automatic transition bandwidths (`l_trans_bandwidth="auto"`, `h_trans_bandwidth="auto"`)."""
    l_trans = min(max(0.25 * l_freq, 2.0), l_freq) if l_freq is not None else np.inf
    h_trans = min(max(0.25 * h_freq, 2.0), sfreq / 2.0 - h_freq) if h_freq is not None else np.inf
    return l_trans, h_trans


def _length_samples(sfreq: float, min_transition: float, window: str) -> int:
    """MNE's `filter_length="auto"`: `factor / min(transition)` seconds, rounded up, made odd."""
    n = max(int(np.ceil(_LENGTH_FACTORS[window] / min_transition * sfreq)), 1)
    return n + (n - 1) % 2


def _firwin_from_gains(n_taps: int, freq: np.ndarray, gain: np.ndarray, sfreq: float, window: str) -> np.ndarray:
    """Linear-phase FIR through piecewise gain points, built from windowed-sinc low-passes like MNE's
    `_firwin_design`: each transition gets its own low-pass whose length matches its bandwidth."""
    nyq = sfreq / 2.0
    kernel = np.zeros(n_taps)
    if gain[-1] == 1:
        kernel[n_taps // 2] = 1.0
    prev_freq, prev_gain = freq[-1], gain[-1]
    for this_freq, this_gain in zip(freq[::-1][1:], gain[::-1][1:]):
        if this_gain != prev_gain:
            transition = (prev_freq - this_freq) / 2.0  # normalised to Nyquist, as MNE
            this_n = int(round(_LENGTH_FACTORS[window] / (transition / nyq)))
            this_n += 1 - this_n % 2
            if this_n > n_taps:
                raise ValueError(
                    f"Filter length {n_taps} is too short for a {transition:.2f} Hz transition band "
                    f"(needs {this_n} samples)."
                )
            lowpass = signal.firwin(this_n, (prev_freq + this_freq) / 2.0, window=window, fs=sfreq)
            offset = (n_taps - this_n) // 2
            kernel[offset : n_taps - offset] += lowpass if this_gain else -lowpass
        prev_freq, prev_gain = this_freq, this_gain
    return kernel


def _bandpass_kernel(sfreq: float, l_freq: float | None, h_freq: float | None, window: str) -> np.ndarray:
    nyq = sfreq / 2.0
    l_trans, h_trans = _auto_transitions(sfreq, l_freq, h_freq)
    if l_freq is None and h_freq is None:
        return np.ones(1)
    freq, gain = [], []
    if l_freq is not None:
        freq += [l_freq - l_trans, l_freq]
        gain += [0, 1]
    else:
        freq += [0.0]
        gain += [1]
    if h_freq is not None:
        freq += [h_freq, h_freq + h_trans]
        gain += [1, 0]
    if freq[-1] != nyq:
        freq.append(nyq)
        gain.append(gain[-1])
    if freq[0] != 0:
        freq.insert(0, 0.0)
        gain.insert(0, gain[0])
    n_taps = _length_samples(sfreq, min(l_trans, h_trans), window)
    return _firwin_from_gains(n_taps, np.array(freq, float), np.array(gain), sfreq, window)


def _notch_kernel(sfreq: float, notch_freqs: np.ndarray, window: str) -> np.ndarray:
    """Band-stop at each of `notch_freqs` as `mne.filter.notch_filter` (FIR defaults): stop band
    `freq ± freq/400`, 0.5 Hz transition on each side."""
    nyq = sfreq / 2.0
    widths = notch_freqs / 200.0
    trans = 0.5  # notch_filter's trans_bandwidth=1, split over both sides
    stop_lo, stop_hi = notch_freqs - widths / 2.0, notch_freqs + widths / 2.0
    pass_lo, pass_hi = stop_lo - trans, stop_hi + trans
    freq = np.r_[pass_lo, stop_lo, stop_hi, pass_hi]
    gain = np.r_[np.ones_like(pass_lo), np.zeros_like(stop_lo), np.zeros_like(stop_hi), np.ones_like(pass_hi)]
    order = np.argsort(freq, kind="stable")
    freq, gain = freq[order], gain[order]
    if np.any(np.abs(np.diff(gain, 2)) > 1):
        raise ValueError(f"Notch frequencies {notch_freqs.tolist()} are too close together to separate.")
    if freq[0] != 0:
        freq, gain = np.r_[0.0, freq], np.r_[1.0, gain]
    if freq[-1] != nyq:
        freq, gain = np.r_[freq, nyq], np.r_[gain, 1.0]
    n_taps = _length_samples(sfreq, trans, window)
    return _firwin_from_gains(n_taps, freq, gain, sfreq, window)


@lru_cache(maxsize=32)
def _design_filter_cached(sfreq, l_freq, h_freq, notch_freqs, window) -> np.ndarray:
    kernel = _bandpass_kernel(sfreq, l_freq, h_freq, window)
    if notch_freqs:
        kernel = np.convolve(kernel, _notch_kernel(sfreq, np.asarray(notch_freqs, float), window))
    kernel.setflags(write=False)
    return kernel


def design_filter(
    sfreq: float,
    l_freq: float | None,
    h_freq: float | None,
    notch_freqs: Sequence[float] = (),
    fir_window: str = "hamming",
) -> np.ndarray:
    """Zero-phase FIR kernel `(n_taps,)` float64 for a band-pass `l_freq`–`h_freq` Hz plus notches.

    The band-pass is designed as ``mne.filter.create_filter(None, sfreq, l_freq, h_freq)`` (firwin, Hamming
    window, transition `min(max(0.25 * f, 2), f)` below and `min(max(0.25 * f, 2), nyquist - f)` above,
    length `3.3 / min(transition) * sfreq` made odd); each notch as ``mne.filter.notch_filter`` with its
    defaults. The kernels are convolved into one, whose response is the product of the two, so one pass
    filters both. `l_freq` or `h_freq` None gives a low- or high-pass. Results are cached (read-only).
    """
    sfreq = _check_rate(sfreq, "sfreq")
    if fir_window not in _LENGTH_FACTORS:
        raise ValueError(f"fir_window must be one of {sorted(_LENGTH_FACTORS)}, got {fir_window!r}")
    nyq = sfreq / 2.0
    l_freq = None if l_freq is None or float(l_freq) == 0 else float(l_freq)
    h_freq = None if h_freq is None else float(h_freq)
    if l_freq is not None and l_freq < 0:
        raise ValueError(f"l_freq must be positive, got {l_freq} Hz")
    if h_freq is not None and not 0 < h_freq < nyq:
        raise ValueError(f"h_freq ({h_freq} Hz) must be between 0 and the Nyquist frequency ({nyq} Hz)")
    if l_freq is not None and h_freq is not None and l_freq >= h_freq:
        raise ValueError(f"l_freq ({l_freq} Hz) must be below h_freq ({h_freq} Hz)")
    notches = tuple(sorted(float(f) for f in notch_freqs))
    for freq in notches:
        if not 0 < freq - freq / 400.0 - 0.5 or freq + freq / 400.0 + 0.5 > nyq:
            raise ValueError(f"Notch at {freq} Hz does not fit between 0 and the Nyquist frequency ({nyq} Hz)")
    return _design_filter_cached(sfreq, l_freq, h_freq, notches, fir_window)


def _pad_reflect_limited(data: np.ndarray, n_pad: int) -> np.ndarray:
    """MNE's `reflect_limited` edge padding of the last axis: odd reflection about the edge samples
    (at most `n_times - 1` samples), zeros beyond."""
    n_times = data.shape[-1]
    n_reflect = min(n_pad, n_times - 1)
    zeros = np.zeros(data.shape[:-1] + (n_pad - n_reflect,), dtype=data.dtype)
    left = 2 * data[..., :1] - data[..., n_reflect:0:-1]
    right = 2 * data[..., -1:] - data[..., -2 : -n_reflect - 2 : -1]
    return np.concatenate([zeros, left, data, right, zeros], axis=-1)


def apply_filter(data: np.ndarray, kernel: np.ndarray, axis: int = -1) -> np.ndarray:
    """Zero-phase FIR filtering of `data` along `axis` with an odd-length linear-phase `kernel`.

    Same result as MNE's overlap-add filter with ``phase="zero"`` and ``pad="reflect_limited"``: the kernel
    is centred (its `(n_taps - 1) / 2` delay removed) and the edges are padded by odd reflection; the
    convolution is one FFT overlap-add over all leading dimensions at once. Returns float32 for float32 input
    (the kernel is applied in float32 too), else float64.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 1 or kernel.size % 2 == 0:
        raise ValueError(f"kernel must be 1-D with an odd number of taps, got shape {kernel.shape}")
    data = np.moveaxis(_as_float(data), axis, -1)
    kernel = kernel.astype(data.dtype, copy=False)
    n_times = data.shape[-1]
    if n_times == 0:
        raise ValueError("Cannot filter an empty signal.")
    if kernel.size == 1:
        return np.moveaxis(data * kernel[0], -1, axis)
    if n_times < kernel.size:
        warnings.warn(
            f"The filter kernel ({kernel.size} taps) is longer than the signal ({n_times} samples); "
            "the edges dominate the result and distortion is likely.",
            RuntimeWarning,
            stacklevel=2,
        )
    half = (kernel.size - 1) // 2
    padded = _pad_reflect_limited(data, half)
    out = signal.oaconvolve(padded, kernel.reshape((1,) * (data.ndim - 1) + (-1,)), mode="valid", axes=-1)
    return np.moveaxis(out, -1, axis)


def filter_segment(segment: np.ndarray, kernel: np.ndarray, seg_start: int, n_total: int, out_start: int,
                   out_stop: int) -> np.ndarray:
    """Samples `[out_start, out_stop)` of `apply_filter(signal, kernel)`, computed from a piece of the signal.

    `segment` `(..., n)` holds samples `[seg_start, seg_start + n)` of a signal of `n_total` samples, and must cover
    `[out_start - half, out_stop + half)` (clipped to the signal; `half = (n_taps - 1) // 2`). Where the piece
    reaches an end of the signal, that end is padded exactly as `apply_filter` pads it, so the result equals the
    whole-signal filter everywhere, ends included (up to floating-point rounding).
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    segment = _as_float(segment)
    kernel = kernel.astype(segment.dtype, copy=False)
    half = (kernel.size - 1) // 2
    seg_stop = seg_start + segment.shape[-1]
    if seg_start > max(0, out_start - half) or seg_stop < min(n_total, out_stop + half):
        raise ValueError(f"segment [{seg_start}, {seg_stop}) does not cover [{out_start}, {out_stop}) +- {half}")
    if kernel.size == 1:
        return segment[..., out_start - seg_start : out_stop - seg_start] * kernel[0]
    n_reflect = min(half, n_total - 1)
    parts, base = [segment], seg_start
    if seg_start == 0:  # the signal's own start: odd reflection, zeros beyond (as _pad_reflect_limited)
        zeros = np.zeros(segment.shape[:-1] + (half - n_reflect,), dtype=segment.dtype)
        parts = [zeros, 2 * segment[..., :1] - segment[..., n_reflect:0:-1], *parts]
        base = -half
    if seg_stop == n_total:
        zeros = np.zeros(segment.shape[:-1] + (half - n_reflect,), dtype=segment.dtype)
        parts += [2 * segment[..., -1:] - segment[..., -2 : -n_reflect - 2 : -1], zeros]
    padded = np.concatenate(parts, axis=-1)
    piece = padded[..., out_start - half - base : out_stop + half - base]
    return signal.oaconvolve(piece, kernel.reshape((1,) * (piece.ndim - 1) + (-1,)), mode="valid", axes=-1)


def window_params(sfreq: float, window_seconds: float, stride_seconds: float) -> tuple[int, int]:
    """`(window_samples, stride_samples)` at `sfreq`; ValueError unless both are at least one sample."""
    sfreq = _check_rate(sfreq, "sfreq")
    n_win = int(round(float(window_seconds) * sfreq))
    stride = int(round(float(stride_seconds) * sfreq))
    if n_win < 1 or stride < 1:
        raise ValueError(
            f"window_seconds={window_seconds} and stride_seconds={stride_seconds} must each be at least "
            f"one sample at {sfreq} Hz"
        )
    return n_win, stride


def count_windows(n_times: int, n_win: int, stride: int) -> int:
    """Number of complete windows of `n_win` samples every `stride` samples in `n_times` samples."""
    return 0 if n_times < n_win else 1 + (n_times - n_win) // stride


def sliding_windows(
    data: np.ndarray, sfreq: float, window_seconds: float, stride_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cut `(..., n_channels, n_times)` into windows.

    Returns `(windows, starts)`: `windows` `(..., n_windows, n_channels, n_win)` (a strided view of `data`,
    read-only; copy before writing) and `starts` `(n_windows,)` float64 seconds from the first sample.
    Incomplete trailing samples are dropped.
    """
    data = np.asarray(data)
    if data.ndim < 2:
        raise ValueError(f"data must be (..., n_channels, n_times), got shape {data.shape}")
    n_win, stride = window_params(sfreq, window_seconds, stride_seconds)
    n_times = data.shape[-1]
    if n_times < n_win:
        raise ValueError(
            f"Signal of {n_times / sfreq:.3f} s ({n_times} samples at {sfreq} Hz) is shorter than one "
            f"window of {window_seconds} s ({n_win} samples)."
        )
    view = np.lib.stride_tricks.sliding_window_view(data, n_win, axis=-1)[..., ::stride, :]
    windows = np.swapaxes(view, -3, -2)  # (..., n_channels, n_windows, n_win) -> (..., n_windows, n_channels, n_win)
    starts = np.arange(windows.shape[-3]) * (stride / float(sfreq))
    return windows, starts


def normalize_windows(
    windows: np.ndarray,
    mode: str = "window",
    channel_mask: np.ndarray | None = None,
    eps: float = 1e-8,
) -> np.ndarray:
    """Normalise `(..., n_channels, n_times)` windows, each on its own.

    - ``"window"``: subtract each channel's mean, then divide the whole window by one scale, the median
      over channels of the channel standard deviations, so amplitude ratios between channels (e.g.
      frontal alpha asymmetry) survive.
    - ``"channel"``: z-score each channel.
    - ``"none"``: return a copy (float32 for float32 input, else float64).

    `channel_mask` (`(..., n_channels)` bool, broadcastable) restricts the median to real channels; masked
    channels are still centred and scaled. A scale at or below `eps` is replaced by 1 (flat data stays flat).
    """
    if mode not in NORMALIZATION_MODES:
        raise ValueError(f"normalization mode must be one of {NORMALIZATION_MODES}, got {mode!r}")
    windows = _as_float(windows)
    if mode == "none":
        return windows.copy()
    centred = windows - windows.mean(axis=-1, keepdims=True)
    std = centred.std(axis=-1)  # (..., n_channels)
    if mode == "channel":
        scale = np.where(std > eps, std, 1.0)[..., None]
        return centred / scale
    if channel_mask is not None:
        mask = np.broadcast_to(np.asarray(channel_mask, dtype=bool), std.shape)
        with warnings.catch_warnings():  # windows without any real channel: all-NaN median, scale 1 below
            warnings.simplefilter("ignore", RuntimeWarning)
            scale = np.nanmedian(np.where(mask, std, np.nan), axis=-1)
        scale = np.where(np.isnan(scale), 1.0, scale)
    else:
        scale = np.median(std, axis=-1)
    scale = np.where(scale > eps, scale, 1.0)[..., None, None]
    return centred / scale


__all__ = [
    "NORMALIZATION_MODES",
    "apply_filter",
    "count_windows",
    "design_filter",
    "filter_segment",
    "normalize_windows",
    "resample",
    "resample_ratio",
    "resampled_length",
    "sliding_windows",
    "window_params",
]
