"""Feature extraction of long recordings in bounded memory: `E2LLMFeatureExtractor.iter_windows`.

A recording of any length (an array, an MNE `Raw` or an `EEGFile` opened lazily from disk) is read twice, piece
by piece, its used channels only: a first pass checks every sample (NaN/Inf, range) and gathers each channel's mean
and flatness; the second pass cuts the model-rate output into chunks of `windows_per_chunk` windows and computes each
from an input piece wide enough for the resampler and the filter (their half-lengths on both sides), padding only
where the piece reaches an end of the recording, exactly as the whole-signal chain (`e2llm.chain_e2llm`) does. The
windows therefore equal those of `E2LLMFeatureExtractor.__call__` on the whole recording (to float32 rounding), while
memory stays at a few chunks' worth of samples whatever the length. A recording shorter than the band-pass kernel
gets the chain's short-input filter, which needs the whole signal: it is short, so it is processed at once and
yielded in chunks.

Differences from `__call__`: one continuous recording per call (no batches or Epochs), and the units plausibility
check (median channel standard deviation) runs on each chunk instead of the whole recording.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from .chain_e2llm import (
    ExtractedItem,
    finish_windows,
    plan_filter,
    rereference,
    window_quality,
)
from .eeg_inputs_e2llm import Source, is_epochs
from .signal_e2llm import (
    count_windows,
    filter_segment,
    resample,
    resample_ratio,
    resampled_length,
    window_params,
)
from .validation_e2llm import (
    check_channel_names,
    check_flag,
    check_length,
    check_peak,
    check_values,
    check_windows_per_chunk,
)

SCAN_SECONDS = 60.0  # samples read per piece in the checking pass


def _scan(source: Source):
    """First pass: `(offset, flat)` per used channel (mean in input units, constant or not), checking values."""
    step = max(1, int(SCAN_SECONDS * source.rate))
    n = len(source.names)
    total, low, high, peak = np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf), 0.0
    for start in range(0, source.n_times, step):
        piece = source.read(start, min(source.n_times, start + step))[0]
        check_values(piece, source.names, f"{source.label} [samples {start}-{start + piece.shape[1]}]")
        total += piece.sum(axis=-1, dtype=np.float64)
        low, high = np.minimum(low, piece.min(axis=-1)), np.maximum(high, piece.max(axis=-1))
        peak = max(peak, float(np.max(np.abs(piece))))
    check_peak(peak, source.scale, source.label)
    flat = high == low
    if flat.all():
        raise ValueError(f"{source.label}: every channel is flat (constant); there is no signal to use.")
    return total / source.n_times, flat


def _whole(extractor, source: Source, settings, apply_filters: bool, windows_per_chunk: int, return_tensors,
           band_power: bool) -> Iterator:
    """A recording shorter than the band-pass kernel: the whole-signal chain, yielded in chunks."""
    (item,) = extractor.extract([extractor.block(source)], settings, apply_filters, band_power)
    for first in range(0, item.windows.shape[0], windows_per_chunk):
        rows = slice(first, first + windows_per_chunk)
        quality = item.quality.rows(rows)
        part = ExtractedItem(item.windows[rows], source, item.flat, item.starts[rows],
                             None if item.band_power is None else item.band_power[rows], item.filter, quality)
        yield extractor.assemble([part], return_tensors, band_power)


def iter_windows(extractor, raw_eeg, sampling_rate=None, channel_names=None, units=None, apply_filters: bool = True,
                 windows_per_chunk: int = 64, return_tensors=None, channel_map=None, montage=None, line_freq=None,
                 return_band_power: bool = False, return_window_statistics: bool = False) -> Iterator:
    """Yield `BatchFeature`s of at most `windows_per_chunk` consecutive windows of one recording (see the module
    docstring); keys and shapes as `E2LLMFeatureExtractor.__call__` with one item, `eeg_window_starts` in seconds
    from the recording's start."""
    check_channel_names(channel_names)
    check_windows_per_chunk(windows_per_chunk)
    check_flag("apply_filters", apply_filters)
    check_flag("return_window_statistics", return_window_statistics)
    if is_epochs(raw_eeg):
        raise ValueError("raw_eeg: iter_windows takes one continuous recording (an array or Raw), not Epochs")
    source = extractor.source(raw_eeg, sampling_rate, channel_names, units, channel_map, montage=montage)
    settings = replace(extractor.chain_settings(line_freq), window_statistics=return_window_statistics)
    model_rate = settings.sampling_rate
    n_out = resampled_length(source.n_times, source.rate, model_rate)
    n_win, stride = window_params(model_rate, settings.window_seconds, settings.stride_seconds)
    n_windows = count_windows(n_out, n_win, stride)
    check_length(n_windows, source.n_times, source.rate, settings.window_seconds, source.label)
    plan = plan_filter(settings, n_out, apply_filters)
    if plan.fitted:  # the short-input filter needs the whole (short) signal
        yield from _whole(extractor, source, settings, apply_filters, windows_per_chunk, return_tensors,
                          return_band_power)
        return
    offset, flat = _scan(source)
    kernel = plan.kernel
    half, gain = (kernel.size - 1) // 2, plan.gain
    up, down = resample_ratio(source.rate, model_rate)
    margin = 10 * max(up, down) // up + 2 * down + 2  # input samples the polyphase filter reaches on each side
    live = ~flat
    for first in range(0, n_windows, windows_per_chunk):
        last = min(n_windows, first + windows_per_chunk)
        out_start, out_stop = first * stride, (last - 1) * stride + n_win
        need_start, need_stop = max(0, out_start - half), min(n_out, out_stop + half)
        if up == down:
            start, stop = need_start, need_stop
        else:
            start = max(0, need_start * down // up - margin)
            start -= start % down  # so the piece's resampled samples fall on the whole signal's sample grid
            stop = min(source.n_times, -(-need_stop * down // up) + margin)
        raw = source.read(start, stop)[0]
        quality = window_quality(raw * source.scale, source.rate, start, last - first, first, settings, source.names,
                                 live, source.rails_uv)  # on the raw samples, before any filter
        data = np.subtract(raw, offset[:, None], dtype=np.float32)
        if source.scale != 1.0:
            data *= np.float32(source.scale)
        data = resample(data, source.rate, model_rate)
        first_out = start * up // down
        data = data[:, need_start - first_out : need_stop - first_out]
        data = filter_segment(data, kernel, need_start, n_out, out_start, out_stop)
        data += (offset * source.scale * gain).astype(data.dtype)[:, None]
        data = rereference(data[None], live[None], settings.reference)
        out = finish_windows(data, flat[None], settings, [f"{source.label} [{out_start / model_rate:g} s]"],
                             return_band_power, n_windows=last - first, usable=quality.usable[None])
        power = None if out.band_power is None else out.band_power[0]
        starts = np.arange(first, last) * (stride / model_rate)
        yield extractor.assemble([ExtractedItem(out.windows[0], source, flat, starts, power, plan.description,
                                                quality)], return_tensors, return_band_power)


__all__ = ["iter_windows"]
