"""Channels whose samples cannot be EEG: flat, stuck, clipped or saturated.

`unusable_channels(data_uv, sfreq)` looks at the raw samples of a recording or of one window, before any filter
(filtering smears a clipped plateau into something that looks like signal), and returns `{channel index: reason}`.
The caller leaves those channels out (the reason goes into the result's ``dropped``) or refuses the window, and says
so. The checks, per channel:

- non-finite samples;
- flat: peak-to-peak below `FLAT_PTP_UV` (a disconnected or zero-filled channel);
- a flat segment: `FLAT_SEGMENT_SECONDS` or more of identical consecutive samples (a channel stuck at a value, e.g. an
  int16 channel stuck at the rail); said "stuck at the amplifier's limit" when the value is the channel's range
  limit from the file header (`rails_uv`);
- clipped: `CLIP_SHARE` or more of the samples sit at the channel's own maximum or minimum in runs of `CLIP_RUN` or
  more equal samples (an amplifier or an export clipping at, e.g., +-3000 uV: real EEG reaches its extreme once, not
  on plateaus);
- saturated: `RAIL_SHARE` or more of the samples on plateaus of `CLIP_RUN` or more samples at the header's physical
  range limits (`rails_uv`). Isolated samples at the limits are no evidence: exporters (MNE's EDF export among
  them) set each channel's range to its own minimum and maximum, so one sample sits at each limit.

The thresholds were checked on the real fixtures (tests/fixtures/real): none of their EEG channels is flagged.
"""

from __future__ import annotations

import numpy as np

FLAT_PTP_UV = 0.5
FLAT_SEGMENT_SECONDS = 1.0
CLIP_SHARE = 0.01
CLIP_RUN = 3
RAIL_SHARE = 0.001


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(starts, lengths)` of the runs of True in a 1-D boolean array."""
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[::2], edges[1::2] - edges[::2]


def _longest_constant_run(row: np.ndarray) -> tuple[int, float]:
    """`(length in samples, value)` of the longest run of identical consecutive samples of `row`."""
    starts, lengths = _runs(np.diff(row) == 0)
    if len(lengths) == 0:
        return 1, float(row[0])
    k = int(np.argmax(lengths))
    return int(lengths[k]) + 1, float(row[starts[k]])


def _clipped_share(row: np.ndarray) -> float:
    """Share of samples at `row`'s maximum or minimum in runs of at least `CLIP_RUN` equal samples."""
    at_extreme = (row == row.max()) | (row == row.min())
    _, lengths = _runs(at_extreme)
    return float(lengths[lengths >= CLIP_RUN].sum()) / row.size


def _limits_text(low: float, high: float) -> str:
    if np.isclose(-low, high, rtol=0.01):
        return f"+-{high:.4g} uV"
    return f"{low:.4g} / {high:.4g} uV"


def _at_rail(value: float, rails: np.ndarray | None, tolerance: float) -> bool:
    return rails is not None and bool(np.any(np.abs(np.asarray(rails) - value) <= tolerance))


def _channel_problem(row: np.ndarray, sfreq: float, rails: np.ndarray | None) -> str | None:
    if not np.all(np.isfinite(row)):
        return f"{int((~np.isfinite(row)).sum())} NaN/Inf samples"
    low, high = float(row.min()), float(row.max())
    if high - low < FLAT_PTP_UV:
        return f"flat (peak-to-peak {high - low:.2g} uV)"
    tolerance = max(1e-6 * (high - low), 1e-9)
    length, value = _longest_constant_run(row)
    if length >= FLAT_SEGMENT_SECONDS * sfreq:
        where = "stuck at the amplifier's limit" if _at_rail(value, rails, tolerance) else "flat"
        return f"{where} ({value:.4g} uV) for {length / sfreq:.2g} s"
    if rails is not None:
        low_rail, high_rail = float(np.min(rails)), float(np.max(rails))
        _, lengths = _runs((row <= low_rail + tolerance) | (row >= high_rail - tolerance))
        share = float(lengths[lengths >= CLIP_RUN].sum()) / row.size
        if share >= RAIL_SHARE:
            return (f"saturated: {share:.1%} of samples on plateaus at the amplifier's limits "
                    f"({_limits_text(low_rail, high_rail)})")
    share = _clipped_share(row)
    if share >= CLIP_SHARE:
        return f"clipped at {_limits_text(low, high)} ({share:.1%} of samples on plateaus at the extremes)"
    return None


def unusable_channels(data_uv, sfreq: float, rails_uv=None) -> dict[int, str]:
    """`{channel index: reason}` for the channels of `data_uv` that cannot be EEG (see the module docstring).

    Args:
        data_uv: `(n_channels, n_times)` raw (unfiltered) samples in microvolts: a recording or one window.
        sfreq: sampling rate in Hz.
        rails_uv: `(n_channels, 2)` lower and upper limits of each channel's range from the file header (EDF/BDF
            physical minimum and maximum) in microvolts, or None when unknown (NaN rows: unknown for that channel).

    >>> t = np.arange(800) / 200.0
    >>> eeg = np.stack([20 * np.sin(2 * np.pi * 10 * t), np.zeros(800), np.clip(80 * np.sin(2 * np.pi * t), -50, 50)])
    >>> unusable_channels(eeg, 200.0)
    {1: 'flat (peak-to-peak 0 uV)', 2: 'clipped at +-50 uV (57.0% of samples on plateaus at the extremes)'}
    """
    data = np.asarray(data_uv, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"unusable_channels expects (n_channels, n_times), got shape {data.shape}")
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"sampling rate must be a positive number of Hz, got {sfreq!r}")
    rails = None if rails_uv is None else np.asarray(rails_uv, dtype=np.float64).reshape(len(data), 2)
    problems = {}
    for index in _suspects(data, float(sfreq), rails):
        limits = None if rails is None or not np.all(np.isfinite(rails[index])) else rails[index]
        reason = _channel_problem(data[index], float(sfreq), limits)
        if reason is not None:
            problems[int(index)] = reason
    return problems


def _suspects(data: np.ndarray, sfreq: float, rails: np.ndarray | None) -> np.ndarray:
    """Channels that may fail a check (vectorised screen; `_channel_problem` decides): clean EEG costs one pass."""
    if data.shape[1] < 2:
        return np.arange(len(data))
    finite = np.isfinite(data).all(axis=1)
    high, low = data.max(axis=1), data.min(axis=1)
    repeats = (np.diff(data, axis=1) == 0).sum(axis=1)  # a flat segment needs this many equal neighbours
    at_extremes = ((data == high[:, None]) | (data == low[:, None])).sum(axis=1)
    suspect = ~finite | (high - low < FLAT_PTP_UV) | (repeats >= FLAT_SEGMENT_SECONDS * sfreq - 1)
    suspect |= at_extremes >= CLIP_SHARE * data.shape[1]
    if rails is not None:
        margin = 1e-6 * (rails.max(axis=1) - rails.min(axis=1))
        suspect |= (low <= rails.min(axis=1) + margin) | (high >= rails.max(axis=1) - margin)
    return np.flatnonzero(suspect)


__all__ = ["CLIP_RUN", "CLIP_SHARE", "FLAT_PTP_UV", "FLAT_SEGMENT_SECONDS", "RAIL_SHARE", "unusable_channels"]
