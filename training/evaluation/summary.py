"""Pooling evaluation runs into one summary: mean ± std over training seeds, 95% intervals over held-out trials,
paired LLM-vs-baseline comparisons, the explanation checks (conflict tests, ERASER, label consistency, calibration,
abstention) and selective prediction.

A run is one trained model (one training seed, a *replicate*) tested on one fold of a split. Runs of one
replicate over several folds (leave-one-subject-out) are pooled window by window (every test window counted
once), so a replicate's figure covers the whole protocol; the summary gives mean ± std over replicates (± is
never over prompt redraws) and, for every accuracy, a 95% bootstrap interval resampling held-out trials, with each
window's correctness averaged over replicates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from e2llm.training.evaluation.metrics import aggregate_runs, classification_metrics, mean_std
from e2llm.training.evaluation.statistics import paired_bootstrap, selective_accuracy, trial_bootstrap_ci

POOLED = ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "parse_rate")
_PER_WINDOW = ("predictions", "confidence")


def _replicate(run: Mapping) -> object:
    return run.get("replicate", run["seed"])


def _scalars(metrics: Mapping) -> dict:
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in POOLED and k != "n"}


def _per_replicate(runs: Sequence[Mapping], method: str, label_names) -> dict | None:
    """Metrics of one replicate's runs of `method`, pooled over its folds."""
    present = [r for r in runs if method in r["methods"]]
    if not present:
        return None
    metrics = aggregate_runs([_scalars(r["methods"][method]) for r in present])
    pooled = {k: v["mean"] for k, v in metrics.items()}
    if all("predictions" in r["methods"][method] for r in present):
        true = np.concatenate([r["windows"]["labels"] for r in present]).astype(int)
        pred = np.concatenate([r["methods"][method]["predictions"] for r in present]).astype(int)
        scores = classification_metrics(true.tolist(), [None if p < 0 else int(p) for p in pred], label_names)
        pooled.update({k: scores[k] for k in POOLED})
        confidence = np.concatenate([r["methods"][method]["confidence"] for r in present])
        pooled.update({f"selective_accuracy_{k}": v for k, v in selective_accuracy(pred == true, confidence).items()})
    else:  # tasks without per-window predictions (e.g. scenario): mean over folds
        pooled.update({k: mean_std([r["methods"][method][k] for r in present])["mean"]
                       for k in POOLED if k in present[0]["methods"][method]})
    return pooled


def _fold_windows(runs: Sequence[Mapping]) -> list[tuple[object, list[Mapping]]]:
    by_fold = defaultdict(list)
    for run in runs:
        by_fold[run.get("fold", 0)].append(run)
    return sorted(by_fold.items(), key=lambda item: str(item[0]))


def _window_correctness(runs: Sequence[Mapping], method: str):
    """`(correct (n,), labels (n,), keys (n, 3))` over all folds' test windows, correctness averaged over replicates;
    None when some run of `method` lacks per-window predictions."""
    correct, labels, keys = [], [], []
    for _, fold_runs in _fold_windows(runs):
        with_method = [r for r in fold_runs if method in r["methods"]]
        if not with_method or any("predictions" not in r["methods"][method] for r in with_method):
            return None
        truth = np.asarray(with_method[0]["windows"]["labels"])
        hits = [np.asarray(r["methods"][method]["predictions"]) == truth for r in with_method]
        correct.append(np.mean(hits, axis=0))
        labels.append(truth)
        keys.append(np.asarray(with_method[0]["windows"]["keys"]))
    return np.concatenate(correct), np.concatenate(labels), np.concatenate(keys)


def _same_text(found: Sequence) -> str:
    """A text leaf across replicates: itself when they agree, else each distinct one with its count."""
    counts = Counter(str(f) for f in found)
    return found[0] if len(counts) == 1 else "; ".join(f"{text} ({n} of {len(found)})" for text, n in counts.items())


def _nested_mean(values: Sequence[Mapping]) -> dict:
    """Leaf-wise mean of nested dicts of numbers (texts kept as a tuple of every replicate's, so that a later
    `_nested_mean_std` counts each one once; lists are left out)."""
    out = {}
    for key in values[0]:
        found = [v[key] for v in values if v.get(key) is not None]  # a NaN read back from JSON is null: missing
        if not found:
            continue
        if isinstance(found[0], Mapping):
            out[key] = _nested_mean(found)
        elif isinstance(found[0], str):
            out[key] = tuple(found)
        elif isinstance(found[0], (int, float)) and not isinstance(found[0], bool):
            out[key] = float(np.nanmean([float(f) for f in found])) if any(f == f for f in found) else float("nan")
    return out


def _nested_mean_std(values: Sequence[Mapping]) -> dict:
    """Leaf-wise `mean_std` of nested dicts of numbers (texts kept as `_same_text`)."""
    out = {}
    for key in values[0]:
        found = [v[key] for v in values if key in v]
        if isinstance(found[0], Mapping):
            out[key] = _nested_mean_std(found)
        elif isinstance(found[0], (str, tuple)):
            out[key] = _same_text([text for f in found for text in ((f,) if isinstance(f, str) else f)])
        elif isinstance(found[0], (int, float)) and not isinstance(found[0], bool):
            out[key] = mean_std(found)
    return out


def _explanations(runs: Sequence[Mapping]) -> dict | None:
    """The explanation checks: averaged over each replicate's folds, then mean ± std over replicates."""
    replicates = defaultdict(list)
    for run in runs:
        if run.get("explanations"):
            replicates[_replicate(run)].append(run["explanations"])
    if not replicates:
        return None
    checks = _nested_mean_std([_nested_mean(found) for found in replicates.values()])
    n_runs = sum(len(found) for found in replicates.values())
    if n_runs > 1:
        _keep_mean_differences(checks, n_runs)
    return checks


# One run's validation comparison (`e2llm.training.evaluation.calibration`) carries its own interval and p-value, the
# test that chose that run's source or decider; averaged over runs they would read as an interval of nothing.
_RUN_TEST_FIELDS = ("ci_low", "ci_high", "p_value")


def _keep_mean_differences(checks: dict, n_runs: int) -> None:
    """Over several runs keep only the mean difference of each shipped validation comparison, with `n_runs`."""
    shipped = (checks.get("label_probabilities") or {}).get("shipped_calibration") or {}
    for comparison in (shipped.get("comparison"), (shipped.get("label_guidance") or {}).get("decision")):
        if isinstance(comparison, dict):
            for key in _RUN_TEST_FIELDS:
                comparison.pop(key, None)
            comparison["n_runs"] = n_runs


def _by_fold(runs: Sequence[Mapping], method: str, key: str = "accuracy") -> dict | None:
    folds = {str(fold): mean_std([r["methods"][method][key] for r in fold_runs
                                  if key in r["methods"].get(method, {})])["mean"]
             for fold, fold_runs in _fold_windows(runs) if any(key in r["methods"].get(method, {}) for r in fold_runs)}
    if len(folds) < 2:
        return None
    return {"per_fold": folds, "mean_std": mean_std(list(folds.values()))}


def summarize_runs(runs: Sequence[Mapping], label_names: Sequence[str], model_prefix: str = "e2llm/",
                   n_boot: int = 2000) -> dict:
    """``{"summary", "intervals", "paired", "folds", "explanations"}`` of runs (see the module doc)."""
    methods = list(dict.fromkeys(m for run in runs for m in run["methods"]))
    replicates = defaultdict(list)
    for run in runs:
        replicates[_replicate(run)].append(run)
    summary, intervals, folds, correctness = {}, {}, {}, {}
    for method in methods:
        per = [p for p in (_per_replicate(group, method, label_names) for group in replicates.values()) if p]
        summary[method] = aggregate_runs(per)
        window = _window_correctness(runs, method)
        if window is not None:
            correctness[method] = window
            intervals[method] = trial_bootstrap_ci(window[0], window[1], window[2], n_boot=n_boot)
            for key in ("accuracy", "balanced_accuracy"):
                summary[method][key]["ci"] = intervals[method][key]["ci"]
                summary[method][key]["pooled"] = intervals[method][key]["value"]
        split = _by_fold(runs, method)
        if split is not None:
            folds[method] = split
    paired = {}
    for method in (m for m in methods if m.startswith(model_prefix) and m in correctness):
        for baseline in (b for b in methods if not b.startswith(model_prefix) and b in correctness):
            a, b = correctness[method], correctness[baseline]
            if len(a[0]) == len(b[0]) and np.array_equal(a[2], b[2]):
                paired[f"{method} - {baseline}"] = paired_bootstrap(a[0], b[0], a[2], n_boot=n_boot)
    return {"summary": summary, "intervals": intervals, "paired": paired, "folds": folds,
            "explanations": _explanations(runs), "n_replicates": len(replicates)}


def summarize(reports: Sequence[Mapping], model_names: Sequence[str] | None = None, n_boot: int = 2000) -> dict:
    """One report from single-run reports of `evaluate_model` (training seeds and/or folds of one protocol)."""
    if not reports:
        raise ValueError("no reports to summarize")
    runs = []
    for i, report in enumerate(reports):
        for run in report["runs"]:
            runs.append({**run, **({"model": model_names[i]} if model_names else {})})
    first = reports[0]
    pooled = summarize_runs(runs, first["label_names"], f"{first.get('model', 'e2llm')}/", n_boot=n_boot)
    provenance = [r.get("provenance") for r in reports]
    splits = [r["split"] for r in reports]
    return {
        **first,
        "models": list(model_names) if model_names else first.get("models", []),
        "split": {**splits[0], "folds": sorted({s.get("fold", 0) for s in splits}),
                  "n_test_windows": sum(s["n_test_windows"] for s in _unique_folds(splits)),
                  "n_test_trials": sum(s["n_test_trials"] for s in _unique_folds(splits)),
                  "test_subjects": sorted({x for s in splits for x in s["test_subjects"]})},
        "provenance": provenance[0] if len(provenance) == 1 else {"per_model": provenance,
                                                                   "status": _worst(provenance)},
        "runs": runs,
        "seconds": sum(r.get("seconds", 0.0) for r in reports),
        **pooled,
    }


def _unique_folds(splits):
    seen, out = set(), []
    for s in splits:
        if s.get("fold", 0) not in seen:
            seen.add(s.get("fold", 0))
            out.append(s)
    return out


def _worst(provenance) -> str:
    return "missing" if any((p or {}).get("status") == "missing" for p in provenance) else "recorded"


__all__ = ["POOLED", "summarize", "summarize_runs"]
