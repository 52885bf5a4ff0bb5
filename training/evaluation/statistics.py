"""Uncertainty of evaluation figures: bootstrap over held-out trials, paired comparisons, selective prediction.

Windows of one trial are not independent (they share the clip, the electrode impedances, the subject's state), so
every interval here resamples whole trials: the percentile interval of the statistic over `n_boot` resamples of
the trials with replacement. A window's "correct" value may be fractional: the share of runs (training seeds)
that got it right, so one interval covers the mean over seeds.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95
N_BOOT = 2000


def _trial_table(correct, labels, trials):
    """Per trial: summed correctness `(T,)`, window count `(T,)`, label `(T,)`; and the weight matrix helper."""
    correct = np.asarray(correct, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    _, trial = np.unique(np.asarray(trials).reshape(len(correct), -1), axis=0, return_inverse=True)
    trial = trial.reshape(-1)
    n_trials = int(trial.max()) + 1 if len(trial) else 0
    sums = np.bincount(trial, weights=correct, minlength=n_trials)
    counts = np.bincount(trial, minlength=n_trials).astype(np.float64)
    trial_label = np.zeros(n_trials, dtype=np.int64)
    trial_label[trial] = labels
    return sums, counts, trial_label


def _resample_weights(n_trials: int, n_boot: int, seed: int) -> np.ndarray:
    """`(n_boot, n_trials)` multiplicity of each trial in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(n_trials, size=(n_boot, n_trials))
    offsets = np.arange(n_boot)[:, None] * n_trials
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * n_trials).reshape(n_boot, n_trials)


def _two_stage_weights(trial_subject: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """`(n_boot, n_trials)` multiplicity of each trial when the subjects are resampled with replacement and then each
    drawn subject's trials (a two-stage bootstrap: the noise between subjects and within them). A subject drawn
    ``c`` times contributes ``c`` independent draws of its ``n`` trials: one multinomial of ``c * n`` draws."""
    rng = np.random.default_rng(seed)
    subjects, of_trial = np.unique(np.asarray(trial_subject), return_inverse=True)
    draws = rng.integers(len(subjects), size=(n_boot, len(subjects)))
    offsets = np.arange(n_boot)[:, None] * len(subjects)
    picks = np.bincount((draws + offsets).ravel(), minlength=n_boot * len(subjects)).reshape(n_boot, len(subjects))
    weights = np.zeros((n_boot, len(of_trial)))
    for s in range(len(subjects)):
        members = np.flatnonzero(of_trial.reshape(-1) == s)
        weights[:, members] = rng.multinomial(picks[:, s] * len(members), np.full(len(members), 1 / len(members)))
    return weights


def _balanced(weights, sums, counts, trial_label, n_labels):
    onehot = np.eye(n_labels)[trial_label]  # (T, L)
    hit = weights @ (sums[:, None] * onehot)
    total = weights @ (counts[:, None] * onehot)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(total > 0, hit / np.maximum(total, 1e-12), np.nan)
    return np.nanmean(recall, axis=-1)


def _interval(values: np.ndarray, level: float) -> list[float]:
    lo, hi = np.nanquantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def trial_bootstrap_ci(correct, labels, trials, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """95% intervals of accuracy and balanced accuracy, resampling trials.

    Args:
        correct: `(n_windows,)` 1/0 (or the share of runs right) per window.
        labels: `(n_windows,)` true label indices (balanced accuracy: mean recall over the labels present).
        trials: `(n_windows,)` trial ids or `(n_windows, k)` keys such as `(subject, session, trial)`.

    Returns ``{"accuracy": {"value", "ci"}, "balanced_accuracy": {"value", "ci"}, "n_trials", "n_boot", "level"}``.
    """
    if len(correct) == 0:
        raise ValueError("no windows to bootstrap")
    sums, counts, trial_label = _trial_table(correct, labels, trials)
    n_labels = int(trial_label.max()) + 1
    ones = np.ones((1, len(sums)))
    weights = _resample_weights(len(sums), n_boot, seed)
    accuracy = (weights @ sums) / (weights @ counts)
    balanced = _balanced(weights, sums, counts, trial_label, n_labels)
    return {
        "accuracy": {"value": float(sums.sum() / counts.sum()), "ci": _interval(accuracy, level)},
        "balanced_accuracy": {"value": float(_balanced(ones, sums, counts, trial_label, n_labels)[0]),
                              "ci": _interval(balanced, level)},
        "n_trials": int(len(sums)), "n_boot": int(n_boot), "level": level,
    }


def paired_bootstrap(correct_a, correct_b, trials, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                     by_subject: bool = False) -> dict:
    """Accuracy difference a - b on the same windows: value, 95% interval and two-sided p-value over trials.

    The p-value is twice the smaller share of resampled differences on either side of 0 (at least 1 / n_boot).
    `by_subject` (with `trials` keys whose first column is the subject, and two subjects or more): the subjects are
    resampled, then their trials (`_two_stage_weights`), for a difference meant for other subjects than these.
    """
    a, b = np.asarray(correct_a, np.float64), np.asarray(correct_b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired comparison needs two equal-length (n_windows,) arrays, got {a.shape} and {b.shape}")
    labels = np.zeros(len(a), dtype=np.int64)
    sums_a, counts, _ = _trial_table(a, labels, trials)
    sums_b, _, _ = _trial_table(b, labels, trials)
    keys = np.unique(np.asarray(trials).reshape(len(a), -1), axis=0)  # in `_trial_table`'s order
    n_subjects = len(np.unique(keys[:, 0]))
    two_stage = by_subject and keys.shape[1] > 1 and n_subjects > 1
    weights = (_two_stage_weights(keys[:, 0], n_boot, seed) if two_stage
               else _resample_weights(len(counts), n_boot, seed))
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = (weights @ (sums_a - sums_b)) / (weights @ counts)
    p = 2 * min(np.mean(diff <= 0), np.mean(diff >= 0))
    return {"difference": float((sums_a - sums_b).sum() / counts.sum()), "ci": _interval(diff, level),
            "p_value": float(min(1.0, max(p, 1.0 / n_boot))), "n_trials": int(len(counts)), "n_boot": int(n_boot),
            "n_subjects": int(n_subjects), "resampled": "subjects, then their trials" if two_stage else "trials",
            "test": "paired bootstrap over held-out trials"}


COVERAGES = (0.5, 0.8, 1.0)


def selective_accuracy(correct, confidence, coverages=COVERAGES) -> dict[str, float]:
    """Accuracy on the most confident `coverage` share of windows (ties kept in window order)."""
    correct = np.asarray(correct, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if correct.shape != confidence.shape or len(correct) == 0:
        raise ValueError("correct and confidence must be equal-length, non-empty (n_windows,) arrays")
    order = np.argsort(-confidence, kind="stable")
    result = {}
    for coverage in coverages:
        keep = max(1, int(np.ceil(coverage * len(order))))
        result[f"{int(round(coverage * 100))}%"] = float(correct[order[:keep]].mean())
    return result


__all__ = ["COVERAGES", "LEVEL", "N_BOOT", "paired_bootstrap", "selective_accuracy", "trial_bootstrap_ci"]
