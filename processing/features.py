"""Spectral EEG features: band power, differential entropy (DE), frontal alpha asymmetry, LDS smoothing.

Everything here is vectorised over windows, bands and channels (float64 throughout); the only
Python loops run over the five bands or over time steps of the LDS smoother.

Two DE definitions live here:

* :func:`differential_entropy` — the Gaussian DE ``0.5 * ln(2 * pi * e * var)`` of the band-limited
  signal. By default the band variance is the Welch band power (the integral of the PSD over the
  band equals the variance of the band-passed signal, Parseval), so no filter edge effects enter a
  short window; ``method="filter"`` band-passes each window instead and takes its variance.
* :func:`psd_de_seed` — the SEED family's own definition, reproduced exactly so features computed
  here match the ``EEG_features`` files shipped with SEED-VII: ``DE = log2(100 * PSD)`` where
  PSD is a mean of squared FFT magnitudes (see its docstring for every quirk).

LDS smoothing (:func:`lds_smooth`) runs a Kalman filter and RTS smoother over consecutive windows:
every smoothed window depends on all windows of the sequence. Apply it to one trial at a time,
never across trials or across a train/test boundary, or it leaks information between them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import signal

from e2llm.electrodes import canonical_channel_name

# Frequency bands in Hz, [low, high): the five bands of the SEED family (gamma stops below 50 Hz line noise).
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 14.0),
    "beta": (14.0, 31.0),
    "gamma": (31.0, 49.0),
}
BAND_NAMES: tuple[str, ...] = tuple(BANDS)

SEED_WINDOW_SECONDS = 4.0
SEED_NFFT = 256
FAA_PAIRS: tuple[tuple[str, str], ...] = (("F4", "F3"), ("F8", "F7"), ("AF4", "AF3"), ("Fp2", "Fp1"))


def _as_windows(windows, sfreq: float, name: str = "windows") -> np.ndarray:
    array = np.asarray(windows, dtype=np.float64)
    if array.ndim < 2:
        raise ValueError(f"{name} must have shape (..., n_channels, n_times), got shape {array.shape}")
    if array.shape[-1] < 2 or array.shape[-2] < 1:
        raise ValueError(f"{name} has no samples or no channels: shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or Inf values")
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"sampling rate must be a positive number of Hz, got {sfreq!r}")
    return array


def _check_bands(bands: Mapping[str, tuple[float, float]], sfreq: float) -> None:
    if not bands:
        raise ValueError("bands is empty")
    for band, (low, high) in bands.items():
        if not 0 <= low < high <= sfreq / 2:
            raise ValueError(
                f"band {band!r} = ({low}, {high}) Hz must satisfy 0 <= low < high <= Nyquist ({sfreq / 2} Hz)"
            )


def band_power(
    windows,
    sfreq: float,
    bands: Mapping[str, tuple[float, float]] = BANDS,
    method: str = "welch",
) -> np.ndarray:
    """Absolute band power (variance of the band-limited signal, in input units squared).

    `windows` is `(..., n_channels, n_times)`; the result is `(..., n_bands, n_channels)` with bands in
    the order of `bands`. ``method="welch"``: Welch PSD with 2-s Hann segments (or the whole window
    if shorter), 50 % overlap, integrated over ``low <= f < high``. ``method="periodogram"``: one
    Hann-tapered periodogram of the whole window, integrated the same way.
    """
    data = _as_windows(windows, sfreq)
    _check_bands(bands, sfreq)
    n_times = data.shape[-1]
    if method == "welch":
        nperseg = int(min(n_times, round(2 * sfreq)))
        freqs, psd = signal.welch(data, fs=sfreq, window="hann", nperseg=nperseg, axis=-1)
    elif method == "periodogram":
        freqs, psd = signal.periodogram(data, fs=sfreq, window="hann", axis=-1)
    else:
        raise ValueError(f"unknown band power method {method!r}; use 'welch' or 'periodogram'")
    df = freqs[1] - freqs[0]
    # (n_freqs, n_bands) indicator matrix: one matmul integrates every band for every channel.
    masks = np.stack([(freqs >= low) & (freqs < high) for low, high in bands.values()], axis=-1)
    empty = [band for band, has in zip(bands, masks.any(axis=0)) if not has]
    if empty:
        raise ValueError(
            f"bands {empty} contain no frequency bin at resolution {df:.3g} Hz (windows of {n_times} samples)"
        )
    power = (psd @ masks.astype(np.float64)) * df  # (..., n_channels, n_bands)
    return np.swapaxes(power, -1, -2)


def differential_entropy(
    windows,
    sfreq: float,
    bands: Mapping[str, tuple[float, float]] = BANDS,
    method: str = "welch",
) -> np.ndarray:
    """Gaussian differential entropy ``0.5 * ln(2 * pi * e * variance)`` per band, in nats.

    `windows` is `(..., n_channels, n_times)`; the result is `(..., n_bands, n_channels)`.
    ``method="welch"`` (default) or ``"periodogram"`` takes the band variance from
    :func:`band_power`; ``method="filter"`` band-passes each window (4th-order zero-phase
    Butterworth) and takes the variance of the filtered window, which suffers edge effects on
    short windows.
    """
    if method == "filter":
        data = _as_windows(windows, sfreq)
        _check_bands(bands, sfreq)
        variance = []
        for low, high in bands.values():
            edges = [max(low, 1e-3 * sfreq), min(high, 0.499 * sfreq)]
            sos = signal.butter(4, edges, btype="bandpass", fs=sfreq, output="sos")
            variance.append(np.var(signal.sosfiltfilt(sos, data, axis=-1), axis=-1))
        variance = np.stack(variance, axis=-2)
    else:
        variance = band_power(windows, sfreq, bands=bands, method=method)
    if np.any(variance <= 0):
        raise ValueError("a band has zero power (flat signal?): differential entropy is undefined")
    return 0.5 * np.log(2 * np.pi * np.e * variance)


def seed_band_bins(
    sfreq: float, bands: Mapping[str, tuple[float, float]] = BANDS, nfft: int = SEED_NFFT
) -> list[tuple[int, int]]:
    """FFT bins ``(first, last)`` (inclusive) that the SEED extractor averages for each band.

    ``first = floor(low / sfreq * nfft) - 1`` and ``last = floor(high / sfreq * nfft) - 1``, within
    the first ``nfft // 2`` bins.
    """
    bins = []
    for band, (low, high) in bands.items():
        first, last = int(low / sfreq * nfft) - 1, int(high / sfreq * nfft) - 1
        if first < 0 or last >= nfft // 2 or last < first:
            raise ValueError(
                f"band {band!r} = ({low}, {high}) Hz maps to FFT bins {first}..{last}, outside 0..{nfft // 2 - 1} "
                f"at {sfreq} Hz with nfft={nfft}"
            )
        bins.append((first, last))
    return bins


def seed_hann(n_times: int) -> np.ndarray:
    """The SEED extractor's Hann window ``0.5 - 0.5 * cos(2 * pi * n / (n_times + 1))``, n = 1..n_times."""
    n = np.arange(1, n_times + 1, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2 * np.pi * n / (n_times + 1))


def psd_de_seed(
    windows,
    sfreq: float,
    bands: Mapping[str, tuple[float, float]] = BANDS,
    nfft: int = SEED_NFFT,
) -> tuple[np.ndarray, np.ndarray]:
    """PSD and DE exactly as the SEED family's extractor computes them (SEED-VII ``EEG_features``).

    `windows` is `(..., n_channels, n_times)` (SEED-VII: 4-s windows, `n_times` = 800 at 200 Hz).
    Each window is multiplied by :func:`seed_hann` of its own length, then transformed like
    ``numpy.fft.fft(x, n=nfft)``: only the first `nfft` samples enter (the rest of a longer window
    is ignored; a shorter one is zero-padded). PSD is the mean of ``|X[k]|**2`` over the inclusive
    bins of :func:`seed_band_bins`; ``DE = log2(100 * PSD)``. Returns `(psd, de)`, each
    `(..., n_bands, n_channels)`.
    """
    data = _as_windows(windows, sfreq)
    bins = seed_band_bins(sfreq, bands, nfft)
    n_times = data.shape[-1]
    keep = min(n_times, nfft)
    tapered = data[..., :keep] * seed_hann(n_times)[:keep]
    spectrum = np.fft.rfft(tapered, n=nfft, axis=-1)[..., : nfft // 2]
    magnitude2 = spectrum.real**2 + spectrum.imag**2
    averaging = np.zeros((nfft // 2, len(bins)))
    for index, (first, last) in enumerate(bins):
        averaging[first : last + 1, index] = 1.0 / (last - first + 1)
    psd = np.swapaxes(magnitude2 @ averaging, -1, -2)
    if np.any(psd <= 0):
        raise ValueError("a band has zero power (flat signal?): log2(100 * PSD) is undefined")
    return psd, np.log2(100.0 * psd)


def window_trial(trial, sfreq: float, window_seconds: float, stride_seconds: float | None = None) -> np.ndarray:
    """Cut `(n_channels, n_times)` into `(n_windows, n_channels, window_samples)` (a strided view, no copy).

    Windows start at 0 and advance by `stride_seconds` (default: `window_seconds`, non-overlapping);
    a trailing partial window is dropped.
    """
    data = np.asarray(trial)
    if data.ndim != 2:
        raise ValueError(f"trial must have shape (n_channels, n_times), got shape {data.shape}")
    size = window_seconds * sfreq
    stride = (stride_seconds or window_seconds) * sfreq
    if abs(size - round(size)) > 1e-9 or abs(stride - round(stride)) > 1e-9:
        raise ValueError(f"window {window_seconds} s / stride {stride_seconds} s is not a whole number of samples at {sfreq} Hz")
    size, stride = int(round(size)), int(round(stride))
    if size < 2 or stride < 1:
        raise ValueError(f"window of {size} samples with stride {stride} is too small")
    if data.shape[1] < size:
        raise ValueError(f"trial of {data.shape[1]} samples is shorter than one {window_seconds}-s window ({size} samples)")
    views = np.lib.stride_tricks.sliding_window_view(data, size, axis=1)[:, ::stride]
    return np.swapaxes(views, 0, 1)


def seed_features_from_trial(
    trial, sfreq: float, window_seconds: float = SEED_WINDOW_SECONDS, bands: Mapping[str, tuple[float, float]] = BANDS
) -> tuple[np.ndarray, np.ndarray]:
    """SEED-mode `(psd, de)` of one whole trial `(n_channels, n_times)`: non-overlapping windows, each `(n_windows, n_bands, n_channels)`."""
    return psd_de_seed(window_trial(trial, sfreq, window_seconds), sfreq, bands=bands)


def frontal_alpha_asymmetry(
    alpha_power, channel_names: Sequence[str], pairs: Sequence[tuple[str, str]] = FAA_PAIRS
) -> np.ndarray:
    """``ln(right) - ln(left)`` alpha power for each `(right, left)` pair whose two channels are present.

    `alpha_power` is `(..., n_channels)` (power, not log); returns `(..., n_available_pairs)` with
    pairs in the order given (see :func:`available_pairs`). Positive values mean more right-frontal
    alpha, i.e. relatively greater left-frontal activation (approach motivation).
    """
    power = np.asarray(alpha_power, dtype=np.float64)
    if power.shape[-1] != len(channel_names):
        raise ValueError(f"alpha_power has {power.shape[-1]} channels but {len(channel_names)} channel names were given")
    index = _channel_index(channel_names)
    used = available_pairs(channel_names, pairs)
    if not used:
        raise ValueError(f"none of the asymmetry pairs {list(pairs)} is present in the channels {list(channel_names)}")
    right = power[..., [index[canonical_channel_name(r)] for r, _ in used]]
    left = power[..., [index[canonical_channel_name(left_name)] for _, left_name in used]]
    if np.any(right <= 0) or np.any(left <= 0):
        raise ValueError("alpha power must be positive to take its logarithm")
    return np.log(right) - np.log(left)


def available_pairs(
    channel_names: Sequence[str], pairs: Sequence[tuple[str, str]] = FAA_PAIRS
) -> list[tuple[str, str]]:
    """The `(right, left)` pairs of `pairs` whose both channels are in `channel_names` (case-insensitive)."""
    index = _channel_index(channel_names)
    return [
        (right, left)
        for right, left in pairs
        if canonical_channel_name(right) in index and canonical_channel_name(left) in index
    ]


def _channel_index(channel_names: Sequence[str]) -> dict[str, int]:
    return {canonical_channel_name(name) or name: i for i, name in enumerate(channel_names)}


def lds_smooth(
    features,
    transition_covariance: float = 0.001,
    observation_covariance: float = 1.0,
    initial_state_covariance: float = 0.1,
    initial_state_mean=None,
) -> np.ndarray:
    """Kalman filter + Rauch-Tung-Striebel smoother with a random-walk state, for every feature at once.

    `features` is `(n_windows, ...)` — one trial's windows in time order, e.g. `(n_windows, 5, 62)`;
    each trailing element is an independent scalar series. The model is ``state[t] = state[t-1] +
    w``, ``obs[t] = state[t] + v`` with the given covariances, and the initial mean defaults to
    each feature's mean over the windows. The result equals pykalman's
    ``KalmanFilter(transition_matrices=1, observation_matrices=1, transition_covariance=0.001,
    observation_covariance=1, initial_state_covariance=0.1, initial_state_mean=mean).smooth(x)[0]``
    per feature (the SEED ``de_LDS`` convention). Since the covariances do not depend on the data,
    they are computed once as scalars; only the means are arrays. Apply per trial (see module doc).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"features must have shape (n_windows, ...) with at least one window, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or Inf values")
    q, r, p0 = float(transition_covariance), float(observation_covariance), float(initial_state_covariance)
    if q < 0 or r <= 0 or p0 < 0:
        raise ValueError(f"covariances must be non-negative (observation positive), got Q={q}, R={r}, P0={p0}")
    mean0 = x.mean(axis=0) if initial_state_mean is None else np.broadcast_to(
        np.asarray(initial_state_mean, dtype=np.float64), x.shape[1:]
    )
    n = x.shape[0]
    predicted_mean = np.empty_like(x)
    filtered_mean = np.empty_like(x)
    predicted_cov = np.empty(n)
    filtered_cov = np.empty(n)
    for t in range(n):
        if t == 0:
            predicted_mean[0], predicted_cov[0] = mean0, p0
        else:
            predicted_mean[t], predicted_cov[t] = filtered_mean[t - 1], filtered_cov[t - 1] + q
        gain = predicted_cov[t] / (predicted_cov[t] + r)
        filtered_mean[t] = predicted_mean[t] + gain * (x[t] - predicted_mean[t])
        filtered_cov[t] = predicted_cov[t] - gain * predicted_cov[t]
    smoothed = np.empty_like(x)
    smoothed[-1] = filtered_mean[-1]
    for t in range(n - 2, -1, -1):
        gain = filtered_cov[t] / predicted_cov[t + 1]
        smoothed[t] = filtered_mean[t] + gain * (smoothed[t + 1] - predicted_mean[t + 1])
    return smoothed


__all__ = [
    "BANDS",
    "BAND_NAMES",
    "FAA_PAIRS",
    "SEED_NFFT",
    "SEED_WINDOW_SECONDS",
    "available_pairs",
    "band_power",
    "differential_entropy",
    "frontal_alpha_asymmetry",
    "lds_smooth",
    "psd_de_seed",
    "seed_band_bins",
    "seed_features_from_trial",
    "seed_hann",
    "window_trial",
]
