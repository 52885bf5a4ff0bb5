"""Bootstrap intervals over held-out trials, paired comparisons and selective prediction on known cases."""

import numpy as np
import pytest

from e2llm.training.evaluation.statistics import paired_bootstrap, selective_accuracy, trial_bootstrap_ci


def test_one_window_per_trial_matches_the_binomial_interval():
    """60 of 100 independent trials right: the bootstrap interval is the normal one, 0.6 ± 1.96 sqrt(0.24 / 100)."""
    correct = np.r_[np.ones(60), np.zeros(40)]
    result = trial_bootstrap_ci(correct, np.zeros(100, int), np.arange(100), n_boot=4000, seed=1)
    half_width = 1.96 * np.sqrt(0.6 * 0.4 / 100)
    assert result["accuracy"]["value"] == pytest.approx(0.6)
    np.testing.assert_allclose(result["accuracy"]["ci"], [0.6 - half_width, 0.6 + half_width], atol=0.02)


def test_windows_of_one_trial_are_resampled_together():
    """20 trials of 10 identical windows each: the interval is that of 20 samples, not of 200."""
    trial_correct = np.r_[np.ones(12), np.zeros(8)]
    correct, trials = np.repeat(trial_correct, 10), np.repeat(np.arange(20), 10)
    clustered = trial_bootstrap_ci(correct, np.zeros(200, int), trials, seed=0)["accuracy"]["ci"]
    independent = trial_bootstrap_ci(correct, np.zeros(200, int), np.arange(200), seed=0)["accuracy"]["ci"]
    half = 1.96 * np.sqrt(0.6 * 0.4 / 20)
    np.testing.assert_allclose(clustered, [0.6 - half, 0.6 + half], atol=0.04)
    assert clustered[1] - clustered[0] > 2.5 * (independent[1] - independent[0])


def test_perfect_and_balanced_cases():
    keys = np.stack([np.ones(12, int), np.ones(12, int), np.repeat(np.arange(6), 2)], axis=1)
    labels = np.repeat([0, 0, 0, 1, 1, 1], 2)
    perfect = trial_bootstrap_ci(np.ones(12), labels, keys)
    assert perfect["accuracy"]["ci"] == [1.0, 1.0] and perfect["n_trials"] == 6
    # class 0 always right, class 1 never: balanced accuracy is 0.5 in every resample holding both classes
    half = trial_bootstrap_ci(labels == 0, labels, keys)
    assert half["balanced_accuracy"]["value"] == 0.5 and half["accuracy"]["value"] == 0.5


def test_paired_bootstrap():
    trials = np.repeat(np.arange(30), 4)
    a = np.repeat(np.r_[np.ones(25), np.zeros(5)], 4)
    same = paired_bootstrap(a, a, trials)
    assert same["difference"] == 0 and same["ci"] == [0.0, 0.0] and same["p_value"] == 1.0
    b = np.repeat(np.r_[np.ones(10), np.zeros(20)], 4)
    better = paired_bootstrap(a, b, trials, n_boot=2000)
    assert better["difference"] == pytest.approx(0.5) and better["ci"][0] > 0.2 and better["p_value"] <= 0.001
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:-1], trials)


def test_selective_accuracy():
    correct = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
    confidence = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.6, 0.4, 0.05, 0.15])
    result = selective_accuracy(correct, confidence)
    assert result == {"50%": 0.8, "80%": 0.5, "100%": 0.4}


def test_by_subject_the_noise_between_subjects_widens_the_interval():
    """Four subjects of 20 trials: a is better than b by +0.5 on two subjects and -0.3 on the other two. Over trials
    (these subjects again) the mean +0.1 looks sure; resampling the subjects too (other subjects) it does not."""
    subjects = np.repeat(np.arange(4), 20)
    keys = np.stack([subjects, np.zeros(80, int), np.arange(80)], axis=1)
    b = np.zeros(80)
    a = np.where(subjects < 2, 0.5, -0.3) + np.random.default_rng(0).normal(0, 0.05, 80)
    trials = paired_bootstrap(a, b, keys, seed=0)
    subject_wise = paired_bootstrap(a, b, keys, seed=0, by_subject=True)
    assert trials["resampled"] == "trials" and subject_wise["resampled"] == "subjects, then their trials"
    assert trials["difference"] == subject_wise["difference"] and subject_wise["n_subjects"] == 4
    assert trials["ci"][0] > 0 > subject_wise["ci"][0]
    assert subject_wise["ci"][1] - subject_wise["ci"][0] > 3 * (trials["ci"][1] - trials["ci"][0])
    one = paired_bootstrap(a[:20], b[:20], keys[:20], seed=0, by_subject=True)  # one subject: its trials only
    assert one["resampled"] == "trials" and one["n_subjects"] == 1
    assert one["ci"] == paired_bootstrap(a[:20], b[:20], keys[:20], seed=0)["ci"]


def test_two_stage_weights_draw_whole_subjects_then_their_trials():
    from e2llm.training.evaluation.statistics import _two_stage_weights

    trial_subject = np.repeat([7, 9, 11], [3, 5, 2])
    weights = _two_stage_weights(trial_subject, 500, 0)
    assert weights.shape == (500, 10) and (weights.sum(axis=1) > 0).all()
    # each subject's trials are drawn a multiple of its trial count times: whole copies of the subject
    for subject, n in ((7, 3), (9, 5), (11, 2)):
        assert (weights[:, trial_subject == subject].sum(axis=1) % n == 0).all()
    drawn = np.stack([weights[:, trial_subject == s].sum(axis=1) / n for s, n in ((7, 3), (9, 5), (11, 2))], 1)
    assert (drawn.sum(axis=1) == 3).all() and (drawn == 0).any()  # three subjects drawn, some not at all
