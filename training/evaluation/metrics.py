"""Classification, calibration and reliability metrics for emotion predictions.

Predictions are label strings (or label indices) with ``None`` for an answer that could not be
parsed. An unparseable answer is never mapped to a class: it counts as wrong for accuracy,
balanced accuracy and macro-F1, forms its own "unparseable" column of the confusion matrix and
its own category for Cohen's kappa, and the share of parseable answers is reported as
``parse_rate``. Per-class and averaged scores come from scikit-learn.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from sklearn.metrics import classification_report, cohen_kappa_score, confusion_matrix, f1_score

UNPARSEABLE = "unparseable"


def _to_indices(values, label_names: Sequence[str], what: str) -> np.ndarray:
    """Labels (strings, ints or None) -> int64 indices, -1 for None."""
    index = {name: i for i, name in enumerate(label_names)}
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        if value is None:
            out[i] = -1
        elif isinstance(value, str):
            if value not in index:
                raise ValueError(f"{what}[{i}] = {value!r} is not one of the labels {list(label_names)}")
            out[i] = index[value]
        else:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{what}[{i}] = {value!r}: labels are strings, label indices or None")
            if not 0 <= int(value) < len(label_names):
                raise ValueError(f"{what}[{i}] = {value} is outside 0..{len(label_names) - 1}")
            out[i] = int(value)
    return out


def classification_metrics(y_true, y_pred, label_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro-F1, Cohen's kappa, per-class report, confusion matrix and parse rate.

    Args:
        y_true: true labels (strings or indices), no None.
        y_pred: predicted labels (strings, indices, or None for an unparseable answer), same length.
        label_names: the label set, in id order.

    Returns:
        A JSON-ready dict. ``confusion_matrix`` is `(n_labels, n_labels + 1)`: rows are true labels,
        columns the predicted labels then ``"unparseable"``. Balanced accuracy is the mean recall over
        the labels present in `y_true`.
    """
    label_names = [str(n) for n in label_names]
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} entries but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("no predictions to score (empty y_true)")
    true = _to_indices(y_true, label_names, "y_true")
    if (true < 0).any():
        raise ValueError("y_true contains None: every true label must be known")
    pred = _to_indices(y_pred, label_names, "y_pred")
    n_labels = len(label_names)
    labels = list(range(n_labels))
    cm = confusion_matrix(true, pred, labels=[*labels, -1])[:n_labels]  # (n_labels, n_labels + 1)
    support = cm.sum(axis=1)
    present = support > 0
    recall = np.divide(np.diag(cm[:, :n_labels]), support, out=np.zeros(n_labels), where=present)
    parsed = pred >= 0
    report = classification_report(
        true, pred, labels=labels, target_names=label_names, output_dict=True, zero_division=0
    )
    per_class = {name: {k: float(v) for k, v in report[name].items()} for name in label_names}
    if len(set(true.tolist()) | set(pred.tolist())) > 1:
        kappa = float(cohen_kappa_score(true, pred, labels=[*labels, -1]))
    else:  # one category on both sides: agreement is perfect and chance agreement is 1, kappa undefined
        kappa = float("nan")
    return {
        "n": int(len(true)),
        "accuracy": float(np.mean(pred == true)),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1_score(true, pred, labels=labels, average="macro", zero_division=0)),
        "kappa": kappa,
        "parse_rate": float(parsed.mean()),
        "n_unparseable": int((~parsed).sum()),
        "per_class": per_class,
        "confusion_matrix": {"labels": label_names, "columns": [*label_names, UNPARSEABLE], "matrix": cm.tolist()},
    }


def expected_calibration_error(probs, y_true, n_bins: int = 10) -> float:
    """Top-label expected calibration error of probability scores.

    `probs` is `(n, n_labels)` (rows summing to 1), `y_true` `(n,)` label indices. Confidences (the
    largest probability of each row) are binned into `n_bins` equal-width bins on (0, 1]; ECE is the
    mean over bins of ``|accuracy - mean confidence|`` weighted by the bin's share of rows.
    """
    probs = np.asarray(probs, dtype=np.float64)
    true = np.asarray(y_true)
    if probs.ndim != 2 or len(probs) != len(true):
        raise ValueError(f"probs must be (n, n_labels) with n = len(y_true) = {len(true)}, got {probs.shape}")
    if len(true) == 0:
        raise ValueError("no scores to calibrate (empty y_true)")
    if not np.all(np.isfinite(probs)) or np.any(np.abs(probs.sum(axis=1) - 1) > 1e-3):
        raise ValueError("probs must be finite rows that sum to 1")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == true
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        members = bins == b
        ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def self_consistency(samples: Sequence[Sequence[str | None]]) -> dict:
    """Agreement of N sampled answers per item, as a reliability measure.

    `samples[i]` holds the labels parsed from item i's N sampled answers (None = unparseable). Per
    item, agreement is the share of the N samples that give the most frequent parseable label (0 when
    none parses). Returns the mean agreement, the share of items whose samples all agree on one
    parseable label, and N.
    """
    if len(samples) == 0:
        raise ValueError("self_consistency needs at least one item")
    sizes = {len(s) for s in samples}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"every item needs the same number (>= 1) of samples, got sizes {sorted(sizes)}")
    agreement = []
    for item in samples:
        counts = Counter(label for label in item if label is not None)
        agreement.append(counts.most_common(1)[0][1] / len(item) if counts else 0.0)
    agreement = np.asarray(agreement)
    return {
        "n_samples": int(sizes.pop()),
        "agreement": float(agreement.mean()),
        "unanimous_rate": float(np.mean(agreement == 1.0)),
    }


def field_accuracy(true_fields: Sequence[Mapping[str, str]], pred_fields: Sequence[Mapping[str, str | None]],
                   keys: Sequence[str]) -> dict[str, float]:
    """Accuracy per answer field (e.g. valence, arousal, intensity); a missing or None prediction is wrong."""
    if len(true_fields) != len(pred_fields):
        raise ValueError(f"{len(true_fields)} true answers but {len(pred_fields)} predictions")
    if len(true_fields) == 0:
        raise ValueError("no answers to score")
    return {
        key: float(np.mean([p.get(key) is not None and p.get(key) == t[key] for t, p in zip(true_fields, pred_fields)]))
        for key in keys
    }


def consistency_rate(answers: Sequence[Mapping[str, str | None]], is_consistent: Callable[[Mapping], bool]) -> float:
    """Share of answers whose fields are all parsed and mutually consistent under `is_consistent`."""
    if len(answers) == 0:
        raise ValueError("no answers to check")
    return float(np.mean([all(v is not None for v in a.values()) and bool(is_consistent(a)) for a in answers]))


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value) of finite values; NaN entries are skipped."""
    array = np.asarray([v for v in values if v is not None and not math.isnan(float(v))], dtype=np.float64)
    if array.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "n": int(array.size)}


SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "parse_rate", "ece")


def aggregate_runs(runs: Sequence[Mapping[str, float]], keys: Sequence[str] | None = None) -> dict[str, dict]:
    """Mean ± std over runs (seeds) for each scalar metric present in the runs (or for `keys`)."""
    if not runs:
        raise ValueError("no runs to aggregate")
    if keys is None:
        keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float)) and not isinstance(runs[0][k], bool)]
    return {key: mean_std([run[key] for run in runs if key in run]) for key in keys}


def format_mean_std(summary: Mapping[str, float], digits: int = 3) -> str:
    """``"0.412 ± 0.031"`` (or ``"0.412"`` for a single run, ``"n/a"`` when undefined)."""
    if summary.get("n", 0) == 0:
        return "n/a"
    if summary["n"] == 1:
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"


__all__ = [
    "SUMMARY_KEYS",
    "UNPARSEABLE",
    "aggregate_runs",
    "classification_metrics",
    "consistency_rate",
    "expected_calibration_error",
    "field_accuracy",
    "format_mean_std",
    "mean_std",
    "self_consistency",
]
