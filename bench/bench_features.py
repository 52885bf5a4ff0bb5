"""Benchmark: SEED-mode PSD/DE and LDS smoothing against loops written the way the SEED extractor works (prints JSON).

    python bench/bench_features.py                  # 1 h of 62-channel EEG at 200 Hz in 4-s windows
    python bench/bench_features.py --minutes 10     # quicker

PSD+DE: `psd_de_seed` (all windows and channels at once) vs a loop over windows, vectorised over channels, as the
dataset's extractor runs (Hann over the window, ``numpy.fft.fft(x, 256)``, band means of |X|^2, log2(100 PSD)).
LDS: `lds_smooth` (all 310 features at once) vs a Kalman filter + RTS smoother per channel and band, written with
1x1 matrices, `numpy.dot` and `numpy.linalg.pinv` the way pykalman's `KalmanFilter.smooth` runs for each series.
The extrapolation covers a whole SEED-VII feature set: 20 subjects x about 3.9 h of clips each.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from e2llm.processing.features import lds_smooth, psd_de_seed, seed_band_bins, window_trial

SFREQ = 200.0
SEED_VII_HOURS = 20 * 3.9


def psd_de_loop(trial: np.ndarray, sfreq: float = SFREQ) -> tuple[np.ndarray, np.ndarray]:
    """The extractor's loop: one window at a time, all channels of it together."""
    length = int(4 * sfreq)
    hann = np.array([0.5 - 0.5 * np.cos(2 * np.pi * n / (length + 1)) for n in range(1, length + 1)])
    bins = seed_band_bins(sfreq)
    n_windows = trial.shape[1] // length
    psd = np.zeros((n_windows, len(bins), trial.shape[0]))
    for w in range(n_windows):
        spectrum = np.fft.fft(trial[:, w * length : (w + 1) * length] * hann, 256, axis=1)
        magnitude = np.abs(spectrum[:, :128])
        for b, (first, last) in enumerate(bins):
            psd[w, b] = np.sum(magnitude[:, first : last + 1] ** 2, axis=1) / (last - first + 1)
    return psd, np.log2(100 * psd)


def kalman_smooth_series(x: np.ndarray, q=0.001, r=1.0, p0=0.1) -> np.ndarray:
    """One series through pykalman's filter/smoother steps with 1x1 matrices (the per-feature reference)."""
    a, c = np.eye(1), np.eye(1)
    qm, rm = np.eye(1) * q, np.eye(1) * r
    n = len(x)
    mp, pp = np.zeros((n, 1)), np.zeros((n, 1, 1))
    mf, pf = np.zeros((n, 1)), np.zeros((n, 1, 1))
    for t in range(n):
        if t == 0:
            mp[t], pp[t] = np.array([x.mean()]), np.eye(1) * p0
        else:
            mp[t] = np.dot(a, mf[t - 1])
            pp[t] = np.dot(a, np.dot(pf[t - 1], a.T)) + qm
        gain = np.dot(pp[t], np.dot(c.T, np.linalg.pinv(np.dot(c, np.dot(pp[t], c.T)) + rm)))
        mf[t] = mp[t] + np.dot(gain, x[t : t + 1] - np.dot(c, mp[t]))
        pf[t] = pp[t] - np.dot(gain, np.dot(c, pp[t]))
    ms = np.zeros((n, 1))
    ms[-1] = mf[-1]
    for t in range(n - 2, -1, -1):
        gain = np.dot(pf[t], np.dot(a.T, np.linalg.pinv(pp[t + 1])))
        ms[t] = mf[t] + np.dot(gain, ms[t + 1] - mp[t + 1])
    return ms[:, 0]


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--lds-reference-features", type=int, default=310,
                        help="how many of the 310 series the slow LDS reference runs (the time is scaled up)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    trial = 20.0 * rng.standard_normal((62, int(args.minutes * 60 * SFREQ)))
    hours = args.minutes / 60.0

    t_vec, (psd, de) = best_of(lambda: psd_de_seed(window_trial(trial, SFREQ, 4.0), SFREQ), 3)
    t_loop, (psd_ref, de_ref) = best_of(lambda: psd_de_loop(trial), 3)
    de_diff = float(np.max(np.abs(de - de_ref)))
    psd_rel = float(np.max(np.abs(psd - psd_ref) / psd_ref))

    features = de.reshape(len(de), -1)  # (windows, 310)
    t_lds, smoothed = best_of(lambda: lds_smooth(features), 5)
    n_ref = min(args.lds_reference_features, features.shape[1])
    start = time.perf_counter()
    reference = np.stack([kalman_smooth_series(features[:, k]) for k in range(n_ref)], axis=1)
    t_lds_ref = (time.perf_counter() - start) * features.shape[1] / n_ref
    lds_diff = float(np.max(np.abs(smoothed[:, :n_ref] - reference)))

    print(json.dumps({
        "eeg_hours": hours, "windows": int(len(de)), "channels": 62,
        "psd_de_seed_s": round(t_vec, 4), "psd_de_loop_s": round(t_loop, 4),
        "psd_de_speedup": round(t_loop / t_vec, 2), "de_max_abs_diff": de_diff, "psd_max_rel_diff": psd_rel,
        "lds_smooth_s": round(t_lds, 5), "lds_per_feature_reference_s": round(t_lds_ref, 3),
        "lds_reference_features_run": n_ref, "lds_speedup": round(t_lds_ref / t_lds, 1), "lds_max_abs_diff": lds_diff,
        "seed_vii_extrapolated_s": {
            "psd_de_seed": round((t_vec / hours) * SEED_VII_HOURS, 2),
            "psd_de_loop": round((t_loop / hours) * SEED_VII_HOURS, 2),
            "lds_smooth": round((t_lds / hours) * SEED_VII_HOURS, 3),
            "lds_per_feature_reference": round((t_lds_ref / hours) * SEED_VII_HOURS, 1),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
