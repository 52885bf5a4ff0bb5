"""Spectral features: SEED-exact PSD/DE against a loop reimplementation of the dataset's extractor, LDS against
a per-feature Kalman/RTS loop, band power against sine oracles, DE and frontal alpha asymmetry."""

import math

import numpy as np
import pytest

from e2llm.processing.features import (
    BANDS,
    available_pairs,
    band_power,
    differential_entropy,
    frontal_alpha_asymmetry,
    lds_smooth,
    psd_de_seed,
    seed_band_bins,
    seed_features_from_trial,
    window_trial,
)

SFREQ = 200.0


def seed_reference(trial, sfreq=200, window_seconds=4, bands=((1, 4), (4, 8), (8, 14), (14, 31), (31, 49))):
    """The SEED extractor, written out with loops: Hann over the window, fft(x, 256), |X|^2 averaged over
    bins floor(lo/fs*256)-1 .. floor(hi/fs*256)-1, DE = log2(100 * PSD). Returns (windows, bands, channels)."""
    n_channels, n_times = trial.shape
    length = window_seconds * sfreq
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / (length + 1)) for n in range(1, length + 1)])
    n_windows = n_times // length
    psd = np.zeros((n_windows, len(bands), n_channels))
    de = np.zeros_like(psd)
    for w in range(n_windows):
        for c in range(n_channels):
            x = trial[c, w * length : (w + 1) * length] * hann
            magnitude = np.abs(np.fft.fft(x, 256)[:128])
            for b, (low, high) in enumerate(bands):
                first, last = math.floor(low / sfreq * 256), math.floor(high / sfreq * 256)
                energy = sum(magnitude[k] ** 2 for k in range(first - 1, last)) / (last - first + 1)
                psd[w, b, c] = energy
                de[w, b, c] = math.log2(100 * energy)
    return psd, de


def lds_reference(series, q=0.001, r=1.0, p0=0.1):
    """Scalar Kalman filter + RTS smoother for one series, initial mean = the series mean (pykalman's equations)."""
    n = len(series)
    mp, pp, mf, pf = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for t in range(n):
        if t == 0:
            mp[t], pp[t] = np.mean(series), p0
        else:
            mp[t], pp[t] = mf[t - 1], pf[t - 1] + q
        k = pp[t] / (pp[t] + r)
        mf[t] = mp[t] + k * (series[t] - mp[t])
        pf[t] = (1 - k) * pp[t]
    smoothed = np.zeros(n)
    smoothed[-1] = mf[-1]
    for t in range(n - 2, -1, -1):
        j = pf[t] / pp[t + 1]
        smoothed[t] = mf[t] + j * (smoothed[t + 1] - mp[t + 1])
    return smoothed


@pytest.fixture(scope="module")
def trial():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, int(13 * SFREQ))) * 20 + 5  # 3 whole 4-s windows + 1 s left over


def test_seed_mode_matches_the_extractor_loop(trial):
    psd, de = seed_features_from_trial(trial, SFREQ)
    ref_psd, ref_de = seed_reference(trial)
    assert psd.shape == de.shape == (3, 5, 6)
    np.testing.assert_allclose(psd, ref_psd, rtol=1e-12)
    np.testing.assert_allclose(de, ref_de, rtol=1e-12, atol=1e-12)
    # psd_de_seed works on any leading shape and only sees the first 256 samples of each window
    windows = window_trial(trial, SFREQ, 4.0)
    changed = windows.copy()
    changed[..., 300:] = 0.0
    np.testing.assert_array_equal(psd_de_seed(changed, SFREQ)[0], psd)
    stacked = psd_de_seed(np.stack([windows, windows]), SFREQ)[1]
    assert stacked.shape == (2, 3, 5, 6)


def test_seed_band_bins_at_200_hz():
    assert seed_band_bins(200.0) == [(0, 4), (4, 9), (9, 16), (16, 38), (38, 61)]
    with pytest.raises(ValueError, match="maps to FFT bins"):
        seed_band_bins(50.0, {"gamma": (31.0, 49.0)})


def test_lds_matches_a_per_feature_kalman_loop():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((15, 5, 4)).cumsum(axis=0) * 0.3 + 4
    smoothed = lds_smooth(features)
    reference = np.zeros_like(features)
    for b in range(5):
        for c in range(4):
            reference[:, b, c] = lds_reference(features[:, b, c])
    np.testing.assert_allclose(smoothed, reference, rtol=1e-12, atol=1e-12)
    assert smoothed.std(axis=0).mean() < features.std(axis=0).mean()  # it smooths
    np.testing.assert_allclose(lds_smooth(features[:1]), features[:1])
    with pytest.raises(ValueError, match="NaN"):
        lds_smooth(np.full((3, 2), np.nan))


def test_band_power_of_sines():
    t = np.arange(int(8 * SFREQ)) / SFREQ
    x = np.stack([30 * np.sin(2 * np.pi * 10.5 * t), 10 * np.sin(2 * np.pi * 20.5 * t)])
    for method in ("welch", "periodogram"):
        power = band_power(x, SFREQ, method=method)
        assert power.shape == (5, 2)
        alpha, beta = list(BANDS).index("alpha"), list(BANDS).index("beta")
        assert power[alpha, 0] == pytest.approx(450.0, rel=0.02)  # A^2 / 2
        assert power[beta, 1] == pytest.approx(50.0, rel=0.02)
        assert power[beta, 0] < 1.0 and power[alpha, 1] < 1.0
    with pytest.raises(ValueError, match="no frequency bin"):
        band_power(x[:, :20], SFREQ, {"narrow": (11.0, 12.0)})
    with pytest.raises(ValueError, match="Nyquist"):
        band_power(x, SFREQ, {"high": (90.0, 120.0)})
    with pytest.raises(ValueError, match="method"):
        band_power(x, SFREQ, method="multitaper")


def test_differential_entropy_is_gaussian_de_of_band_variance():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, int(20 * SFREQ))) * 10
    de = differential_entropy(x, SFREQ)
    np.testing.assert_allclose(de, 0.5 * np.log(2 * np.pi * np.e * band_power(x, SFREQ)))
    assert de.shape == (3, 5, 4)
    # white noise: band variance proportional to bandwidth, and the filter method agrees on long windows
    filtered = differential_entropy(x, SFREQ, method="filter")
    assert np.abs(filtered - de)[..., 1:, :].mean() < 0.1
    with pytest.raises(ValueError, match="zero power"):
        differential_entropy(np.zeros((2, 400)), SFREQ)
    with pytest.raises(ValueError, match="NaN or Inf"):
        differential_entropy(np.full((2, 400), np.inf), SFREQ)


def test_frontal_alpha_asymmetry_sign_and_pairs():
    names = ["F3", "F4", "Fz", "fp1", "FP2"]
    alpha = np.array([[1.0, 2.0, 5.0, 4.0, 1.0]])
    faa = frontal_alpha_asymmetry(alpha, names)
    assert available_pairs(names) == [("F4", "F3"), ("Fp2", "Fp1")]
    np.testing.assert_allclose(faa, [[np.log(2.0), np.log(0.25)]])
    with pytest.raises(ValueError, match="none of the asymmetry pairs"):
        frontal_alpha_asymmetry(np.ones((1, 2)), ["Cz", "Pz"])
    with pytest.raises(ValueError, match="channel names"):
        frontal_alpha_asymmetry(np.ones((1, 3)), names)


def test_window_trial():
    x = np.arange(2 * 1000, dtype=float).reshape(2, 1000)
    w = window_trial(x, SFREQ, 2.0, 1.0)
    assert w.shape == (4, 2, 400)
    np.testing.assert_array_equal(w[1, 0], x[0, 200:600])
    with pytest.raises(ValueError, match="shorter than one"):
        window_trial(x, SFREQ, 10.0)
    with pytest.raises(ValueError, match="whole number of samples"):
        window_trial(x, SFREQ, 1.0025)
