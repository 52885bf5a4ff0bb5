"""Feature extraction of long recordings in bounded memory: `E2LLMFeatureExtractor.iter_windows`.

A recording of any length (an array, an MNE `Raw` or an `EEGFile` opened lazily from disk) is read twice, piece
by piece: a first pass checks every sample (NaN/Inf, range) and gathers each channel's mean and flatness; the
second pass cuts the model-rate output into chunks of `windows_per_chunk` windows and computes each from an input
piece wide enough for the resampler and the filter (their half-lengths on both sides), padding only where the
piece reaches an end of the recording, exactly as the whole-signal chain does. The windows therefore equal those
of `E2LLMFeatureExtractor.__call__` on the whole recording (to float32 rounding), while memory stays at a few
chunks' worth of samples whatever the length.

Differences from `__call__`: one continuous recording per call (no batches or Epochs), and the units
plausibility check (median channel standard deviation) runs on each chunk instead of the whole recording.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .recording_file_e2llm import EEGFile
from .signal_e2llm import (
    count_windows,
    filter_segment,
    normalize_windows,
    resample,
    resample_ratio,
    resampled_length,
    sliding_windows,
    window_params,
)

SCAN_SECONDS = 60.0  # samples read per piece in the checking pass


class _Source:
    """One recording read piece by piece: `read(start, stop)` -> `(n_channels, stop - start)` in its units."""

    def __init__(self, extractor, raw_eeg, sampling_rate, channel_names, units, label: str):
        from .feature_extraction_e2llm import _check_sampling_rate, _check_units, _is_mne_like

        if _is_mne_like(raw_eeg):
            if hasattr(raw_eeg, "events") or not hasattr(raw_eeg, "n_times"):
                raise ValueError(f"{label}: iter_windows takes one continuous recording (an array or Raw), not Epochs")
            rate = float(raw_eeg.info["sfreq"])
            if sampling_rate is not None and not np.isclose(float(sampling_rate), rate):
                raise ValueError(f"{label}: sampling_rate={sampling_rate} contradicts the recording's {rate} Hz.")
            sampling_rate = rate
            if units is not None and units != "V":
                raise ValueError(f"{label}: MNE objects and files hold volts; got units={units!r}.")
            bads = set(raw_eeg.info.get("bads", []) or [])
            picks = [i for i, name in enumerate(raw_eeg.ch_names) if name not in bads]
            self.names = [str(raw_eeg.ch_names[i]) for i in picks]
            if channel_names is not None and [str(n) for n in channel_names] != self.names:
                raise ValueError(f"{label}: channel_names differ from the recording's channels {self.names}.")
            self._raw, self._picks, self.n_times, units = raw_eeg, picks, int(raw_eeg.n_times), "V"
            self.n_channels = len(picks)
        else:
            array = extractor._as_array(raw_eeg, label)
            if array.ndim != 2 or array.size == 0:
                raise ValueError(f"{label}: iter_windows takes one (n_channels, n_times) recording, got shape "
                                 f"{array.shape}.")
            if channel_names is None:
                raise ValueError(f"{label}: channel_names is required for array input ({array.shape[0]} channels).")
            self._array, self.names, self.n_times = array, [str(n) for n in channel_names], array.shape[1]
            self.n_channels = array.shape[0]
        self.rate = _check_sampling_rate(sampling_rate, label)
        self.scale = _check_units(units)

    def read(self, start: int, stop: int) -> np.ndarray:
        if hasattr(self, "_array"):
            return self._array[:, start:stop]
        if isinstance(self._raw, EEGFile):
            return self._raw.get_data(start, stop)
        return self._raw.get_data(picks=self._picks, start=start, stop=stop)


def _scan(source: _Source, known: np.ndarray, extractor, label: str):
    """First pass: `(offset, flat)` per kept channel (mean in input units, constant or not), checking values."""
    step = max(1, int(SCAN_SECONDS * source.rate))
    n_kept = int(known.sum())
    total, low, high, peak = np.zeros(n_kept), np.full(n_kept, np.inf), np.full(n_kept, -np.inf), 0.0
    for start in range(0, source.n_times, step):
        piece = source.read(start, min(source.n_times, start + step))
        extractor._check_values(piece[None], source.names, f"{label} [samples {start}-{start + piece.shape[1]}]")
        piece = np.compress(known, piece, axis=0)
        total += piece.sum(axis=-1, dtype=np.float64)
        low, high = np.minimum(low, piece.min(axis=-1)), np.maximum(high, piece.max(axis=-1))
        peak = max(peak, float(np.max(np.abs(piece))))
    extractor._check_peak(peak, source.scale, label)
    flat = high == low
    if flat.all():
        raise ValueError(f"{label}: every channel is flat (constant); there is no signal to use.")
    return total / source.n_times, flat


def iter_windows(extractor, raw_eeg, sampling_rate=None, channel_names=None, units=None, apply_filters: bool = True,
                 windows_per_chunk: int = 64, return_tensors=None) -> Iterator:
    """Yield `BatchFeature`s of at most `windows_per_chunk` consecutive windows of one recording (see the module
    docstring); keys and shapes as `E2LLMFeatureExtractor.__call__` with one item, `eeg_window_starts` in seconds
    from the recording's start."""
    from .feature_extraction_e2llm import _check_channel_names, _check_finite_output

    label = "raw_eeg"
    _check_channel_names(channel_names)
    if isinstance(windows_per_chunk, bool) or not isinstance(windows_per_chunk, (int, np.integer)) or windows_per_chunk < 1:
        raise ValueError(f"windows_per_chunk must be a positive integer, got {windows_per_chunk!r}")
    if not isinstance(apply_filters, (bool, np.bool_)):
        raise TypeError(f"apply_filters must be True or False, got {apply_filters!r}")
    source = _Source(extractor, raw_eeg, sampling_rate, channel_names, units, label)
    extractor._check_length(source.n_times, source.rate, label)
    ids, known = extractor._map_channels(source.names, source.n_channels, label)
    offset, flat = _scan(source, known, extractor, label)
    model_rate = float(extractor.sampling_rate)
    kernel = extractor._filter_kernel(model_rate) if apply_filters else np.ones(1)
    half, gain = (kernel.size - 1) // 2, float(kernel.sum())
    up, down = resample_ratio(source.rate, model_rate)
    margin = 10 * max(up, down) // up + 2 * down + 2  # input samples the polyphase filter reaches on each side
    n_out = resampled_length(source.n_times, source.rate, model_rate)
    n_win, stride = window_params(model_rate, extractor.window_seconds, extractor.window_stride_seconds)
    n_windows = count_windows(n_out, n_win, stride)
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
        piece = np.compress(known, source.read(start, stop), axis=0)
        data = np.subtract(piece, offset[:, None], dtype=np.float32)
        if source.scale != 1.0:
            data *= np.float32(source.scale)
        data = resample(data, source.rate, model_rate)
        first_out = start * up // down
        data = data[:, need_start - first_out : need_stop - first_out]
        data = filter_segment(data, kernel, need_start, n_out, out_start, out_stop)
        data += (offset * source.scale * gain).astype(data.dtype)[:, None]
        extractor._check_amplitude(data[None], flat[None], [f"{label} [{out_start / model_rate:g} s]"])
        if extractor.reference == "average":
            data = data - ((data * live[:, None]).sum(axis=0, keepdims=True) / live.sum()).astype(data.dtype)
        windows, _ = sliding_windows(data, model_rate, extractor.window_seconds, extractor.window_stride_seconds)
        windows = normalize_windows(windows[: last - first], extractor.normalization, channel_mask=live[None])
        windows *= live[None, :, None]
        if extractor.output_unit_uv is not None:
            windows /= np.float32(extractor.output_unit_uv)
        _check_finite_output(windows[None], [label])
        starts = np.arange(first, last) * (stride / model_rate)
        yield extractor._assemble([(windows, ids, flat, starts)], return_tensors)


__all__ = ["iter_windows"]
