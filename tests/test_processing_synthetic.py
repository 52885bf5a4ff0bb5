"""Synthetic EEG: realistic structure (spectrum, space, artefacts), determinism, and a learnable class signal."""

import numpy as np
import pytest
from scipy import signal

from e2llm.configuration_e2llm import SEED_VII_EMOTIONS
from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.features import (
    band_power,
    differential_entropy,
    frontal_alpha_asymmetry,
    window_trial,
)
from e2llm.processing.splits import split_by_trial
from e2llm.processing.synthetic import (
    SyntheticEEG,
    SyntheticEEGConfig,
    emotion_patterns,
    harder_config,
    seed_vii_clip_labels,
    synthetic_trials,
)

SFREQ = 200.0
CH = list(SEED_CHANNELS)


@pytest.fixture(scope="module")
def generator():
    return SyntheticEEG(seed=0)


@pytest.fixture(scope="module")
def de_table():
    """DE features of 4-s windows of 3 subjects x 80 clips of 12 s (SEED-VII labels), and trial keys."""
    features, labels, keys = [], [], []
    for trial in synthetic_trials(n_subjects=3, trial_seconds=12.0, seed=0):
        windows = window_trial(trial.recording.data, SFREQ, 4.0)
        features.append(differential_entropy(windows, SFREQ).reshape(len(windows), -1))
        labels += [trial.emotion] * len(windows)
        keys += [(trial.subject, trial.session, trial.trial)] * len(windows)
    keys = np.asarray(keys)
    table = {"subject": keys[:, 0], "session": keys[:, 1], "trial": keys[:, 2], "emotion": np.asarray(labels)}
    return np.concatenate(features), table


def test_shape_units_and_determinism(generator):
    x = generator.trial(subject=1, trial=3, emotion=2, n_times=1000)
    assert x.shape == (62, 1000) and x.dtype == np.float64
    assert 5.0 < np.median(x.std(axis=1)) < 60.0  # µV, like scalp EEG
    # same seed -> same data, whatever was generated before; other seed / trial -> other data
    other = SyntheticEEG(seed=0)
    other.trial(subject=2, trial=7, emotion=0, n_times=500)
    np.testing.assert_array_equal(other.trial(subject=1, trial=3, emotion=2, n_times=1000), x)
    assert not np.allclose(SyntheticEEG(seed=1).trial(1, 3, 2, 1000), x)
    assert not np.allclose(generator.trial(1, 4, 2, 1000), x)


def test_spectrum_is_pink_with_alpha_peak(generator):
    x = generator.trial(subject=1, trial=1, emotion=4, n_times=int(60 * SFREQ))
    freqs, psd = signal.welch(x, fs=SFREQ, nperseg=400)
    mean = psd.mean(axis=0)
    fit = (freqs >= 2) & (freqs <= 40) & ((freqs < 6) | (freqs > 14))
    slope = np.polyfit(np.log(freqs[fit]), np.log(mean[fit]), 1)[0]
    assert -3.0 < slope < -1.0  # 1/f^beta background
    peak = freqs[(freqs >= 6) & (freqs <= 14)][np.argmax(mean[(freqs >= 6) & (freqs <= 14)])]
    assert 8.5 <= peak <= 12.0
    posterior, frontal = CH.index("Oz"), CH.index("Fz")
    alpha = (freqs >= 8) & (freqs <= 12)
    assert psd[posterior, alpha].sum() > psd[frontal, alpha].sum()


def test_spatial_correlation_decays_with_distance(generator):
    x = generator.trial(subject=2, trial=5, emotion=4, n_times=int(30 * SFREQ))
    c = np.corrcoef(x)
    assert c[CH.index("C3"), CH.index("C1")] > 0.3
    assert abs(c[CH.index("F7"), CH.index("O2")]) < c[CH.index("C3"), CH.index("C1")] - 0.2


def test_blinks_are_frontal_and_line_noise_only_in_raw_like():
    raw_like = SyntheticEEG(SyntheticEEGConfig(blink_rate_hz=1.0), seed=0).trial(1, 1, 4, int(30 * SFREQ))
    no_blinks = SyntheticEEG(SyntheticEEGConfig(blink_rate_hz=0.0), seed=0).trial(1, 1, 4, int(30 * SFREQ))
    fp1, o1 = CH.index("Fp1"), CH.index("O1")
    blinks = raw_like - no_blinks
    assert np.abs(blinks[fp1]).max() > 50.0  # µV
    assert np.abs(blinks[o1]).max() < 0.1 * np.abs(blinks[fp1]).max()
    freqs, psd = signal.welch(raw_like, fs=SFREQ, nperseg=400)
    at50, near = np.argmin(np.abs(freqs - 50.0)), (np.abs(freqs - 50.0) > 2) & (np.abs(freqs - 50.0) < 6)
    assert psd[:, at50].mean() > 5 * psd[:, near].mean()
    clean = SyntheticEEG(SyntheticEEGConfig(preprocessed=True), seed=0).trial(1, 1, 4, int(30 * SFREQ))
    freqs, psd = signal.welch(clean, fs=SFREQ, nperseg=400)
    assert psd[:, at50].mean() < psd[:, near].mean()
    assert psd[:, freqs > 80].mean() < 0.01 * psd[:, (freqs > 30) & (freqs < 40)].mean()


def test_emotion_patterns_and_frontal_alpha_asymmetry(generator):
    config = SyntheticEEGConfig()
    patterns = emotion_patterns(config)
    assert patterns.shape == (7, 5, 62)
    assert np.allclose(patterns[SEED_VII_EMOTIONS.index("neutral")], 0.0)
    faa = {}
    for name in ("happiness", "sadness"):
        k = SEED_VII_EMOTIONS.index(name)
        trials = [generator.trial(s, t, k, int(8 * SFREQ)) for s in (1, 2) for t in range(10)]
        alpha = band_power(np.stack(trials), SFREQ, {"alpha": (8.0, 14.0)})[:, 0]
        faa[name] = frontal_alpha_asymmetry(alpha, CH, pairs=(("F8", "F7"), ("F4", "F3"))).mean()
    assert faa["happiness"] > faa["sadness"] + 0.1


def test_windows_of_a_trial_differ(generator):
    x = generator.trial(1, 1, 0, int(40 * SFREQ))
    de = differential_entropy(window_trial(x, SFREQ, 4.0), SFREQ)
    assert de.std(axis=0).mean() > 0.05  # not per-window identical


def test_seed_vii_clip_labels_and_trials():
    labels = seed_vii_clip_labels()
    assert labels.shape == (80,)
    assert np.bincount(labels).tolist() == [12, 12, 12, 12, 8, 12, 12]
    trials = list(synthetic_trials(n_subjects=1, trial_seconds=2.0, clips=[1, 21, 80]))
    assert [(t.session, t.trial, t.emotion) for t in trials] == [(1, 1, labels[0]), (2, 21, labels[20]), (4, 80, labels[79])]
    assert trials[0].recording.units == "uV" and trials[0].recording.ch_names == CH


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="no synthetic pattern"):
        SyntheticEEGConfig(label_names=("happiness", "boredom"))
    with pytest.raises(ValueError, match="effect_size"):
        SyntheticEEGConfig(effect_size=-1.0)
    with pytest.raises(ValueError, match="emotion index"):
        SyntheticEEG(seed=0).trial(1, 1, 7, 100)


def _balanced_accuracy(features, table, labels):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = split_by_trial(table, test_size=0.25, seed=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    model.fit(features[train], labels[train])
    return balanced_accuracy_score(labels[test], model.predict(features[test]))


def test_de_logistic_regression_beats_chance_on_held_out_trials(de_table):
    features, table = de_table
    score = _balanced_accuracy(features, table, table["emotion"])
    assert score > 0.5  # chance is 1/7; measured about 0.67-0.71 over split seeds


def test_de_logistic_regression_is_near_chance_with_shuffled_labels(de_table):
    features, table = de_table
    keys = np.stack([table["subject"], table["session"], table["trial"]], axis=1)
    _, trial_of_row = np.unique(keys, axis=0, return_inverse=True)
    trial_of_row = trial_of_row.reshape(-1)
    per_trial = np.zeros(trial_of_row.max() + 1, dtype=np.int64)
    per_trial[trial_of_row] = table["emotion"]
    shuffled = np.random.default_rng(0).permutation(per_trial)[trial_of_row]  # whole trials keep one label
    score = _balanced_accuracy(features, {**table, "emotion": shuffled}, shuffled)
    assert score < 0.3


def test_harder_knobs_widen_the_differences_between_subjects():
    defaults = SyntheticEEG(SyntheticEEGConfig(), seed=0)
    harder = SyntheticEEG(harder_config(preprocessed=False), seed=0)
    np.testing.assert_array_equal(  # new knobs at their defaults draw exactly as before
        defaults.subject(1).pattern, SyntheticEEG(SyntheticEEGConfig(subject_emotion_sd=0.0), seed=0).subject(1).pattern)
    spread = [np.std([g.subject(s).responsiveness for s in range(1, 40)]) for g in (defaults, harder)]
    assert spread[1] > 2 * spread[0]  # responsiveness drawn from (0.5, 1.5) instead of (0.8, 1.2)
    own = harder.subject(1).emotion_patterns - harder.subject(2).emotion_patterns
    assert np.abs(own).max() > 0.05 and np.abs(defaults.subject(1).emotion_patterns
                                               - defaults.subject(2).emotion_patterns).max() == 0
    assert np.abs(harder._patterns).max() == pytest.approx(0.75 * np.abs(defaults._patterns).max())
    with pytest.raises(ValueError, match="responsiveness_range"):
        SyntheticEEGConfig(responsiveness_range=(1.2, 0.8))


def test_non_emotion_signals(generator):
    n = int(8 * SFREQ)
    flat = generator.non_emotion_trial("flat", 1, 1, n)
    assert flat.shape == (62, n) and flat.std(axis=1).max() < 0.1
    line = generator.non_emotion_trial("line_noise", 1, 1, n)
    freqs, psd = signal.welch(line, SFREQ, nperseg=400)
    assert freqs[np.argmax(psd.mean(0))] == pytest.approx(50.0)
    noise = generator.non_emotion_trial("noise", 1, 1, n)
    _, psd = signal.welch(noise, SFREQ, nperseg=400)
    assert 0.5 < psd.mean(0)[(freqs > 2) & (freqs < 5)].mean() / psd.mean(0)[(freqs > 40) & (freqs < 45)].mean() < 2
    muscle = generator.non_emotion_trial("muscle", 1, 1, n)
    high = band_power(muscle, SFREQ, {"emg": (30.0, 95.0)})[0]
    assert high[CH.index("T7")] > 10 * high[CH.index("Pz")]  # over temporal muscles, not the vertex
    closed = generator.non_emotion_trial("eyes_closed", 1, 1, n)
    eyes_open = generator.trial(1, 1, 0, n, intensity=0.0)
    alpha = [band_power(x, SFREQ, {"alpha": (8.0, 13.0)})[0, CH.index("Oz")] for x in (closed, eyes_open)]
    assert alpha[0] > 3 * alpha[1]
    with pytest.raises(ValueError, match="unknown non-emotion signal"):
        generator.non_emotion_trial("music", 1, 1, n)
