"""Writing evaluation reports: ``report.json``, ``report.md`` and confusion-matrix pictures."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from e2llm.training.metrics import aggregate_runs, format_mean_std

MAIN_COLUMNS = ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "parse_rate", "ece", "score_accuracy")
TASK_COLUMNS = ("valence_accuracy", "arousal_accuracy", "intensity_accuracy", "consistency_rate",
                "scenario_accuracy", "scenario_parse_rate", "emotion_accuracy", "faithfulness",
                "share_with_checkable_claims", "self_consistency_agreement", "self_consistency_unanimous_rate")


def combine_reports(reports: Sequence[Mapping], model_names: Sequence[str]) -> dict:
    """One report from several models' reports (e.g. one model per training seed): runs pooled, mean ± std redone."""
    if not reports:
        raise ValueError("no reports to combine")
    if len(reports) == 1:
        return {**reports[0], "models": list(model_names)}
    runs = [{**run, "model": name} for report, name in zip(reports, model_names) for run in report["runs"]]
    methods = list(dict.fromkeys(m for run in runs for m in run["methods"]))
    summary = {m: aggregate_runs([run["methods"][m] for run in runs if m in run["methods"]]) for m in methods}
    return {**reports[0], "models": list(model_names), "runs": runs, "summary": summary,
            "seconds": sum(r["seconds"] for r in reports)}


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _clean(value):
    """NaN -> None so report.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def plot_confusion(matrix: dict, title: str, path: Path) -> Path:
    """PNG of a confusion matrix `(n_labels, n_labels + 1)` (last column: unparseable), rows normalised."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix["matrix"], dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * counts.shape[1], 1.0 + 0.7 * counts.shape[0]))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{int(n)}", ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(counts.shape[1]), matrix["columns"], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(counts.shape[0]), matrix["labels"], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _summed_confusion(report: Mapping, method: str) -> dict | None:
    matrices = [run["methods"][method]["confusion_matrix"] for run in report["runs"]
                if "confusion_matrix" in run["methods"].get(method, {})]
    if not matrices:
        return None
    total = np.sum([np.asarray(m["matrix"]) for m in matrices], axis=0)
    return {**matrices[0], "matrix": total.tolist()}


def _table(summary: Mapping, columns: Sequence[str]) -> list[str]:
    used = [c for c in columns if any(c in s for s in summary.values())]
    if not used:
        return []
    lines = ["| method | " + " | ".join(used) + " |", "|---" * (len(used) + 1) + "|"]
    for method, stats in summary.items():
        if any(c in stats for c in used):
            lines.append(f"| {method} | " + " | ".join(format_mean_std(stats[c]) if c in stats else "" for c in used) + " |")
    return lines


def render_markdown(report: Mapping) -> str:
    split = report["split"]
    n_runs = len(report["runs"])
    lines = [
        f"# Evaluation of {report.get('model', 'e2llm')} on {report['dataset']}",
        "",
        f"Split: **{split['kind']}** (fold {split['fold']}, split seed {split['split_seed']}); "
        f"{split['n_train_windows']} training windows, {split['n_test_windows']} test windows from "
        f"{split['n_test_trials']} held-out trials of subjects {split['test_subjects']}. No trial has windows on both "
        "sides.",
        f"Runs: {n_runs} (seeds {report['seeds']}" + (f", models {report['models']}" if len(report.get('models', [])) > 1 else "")
        + "); values are mean ± std over runs.",
        "",
        "Unparseable answers count as wrong and are never mapped to a class; `parse_rate` is the share of "
        "answers with a readable label. `score_accuracy` is the accuracy of the label scores' arg-max, `ece` "
        "their expected calibration error.",
        "",
        "## Emotion recognition",
        "",
        *_table(report["summary"], MAIN_COLUMNS),
        "",
    ]
    task_lines = _table(report["summary"], TASK_COLUMNS)
    if task_lines:
        lines += ["## Multi-task, zero-shot, faithfulness, reliability", "", *task_lines, ""]
    pictures = [f for f in report.get("files", {}).get("confusion", [])]
    if pictures:
        lines += ["## Confusion matrices", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in pictures] + [""]
    if report.get("examples"):
        lines += ["## Example answers", ""]
        for ex in report["examples"]:
            text = ex["generated_text"].strip().replace("\n", " ")[:300] or "(empty)"
            lines.append(f"- [{ex['task']}] true **{ex['true']}**, parsed **{ex['label']}**: `{text}`")
        lines.append("")
    return "\n".join(lines)


def write_report(report: dict, output_dir: str | Path) -> dict:
    """Write ``report.json``, ``report.md`` and ``confusion_<method>.png`` into `output_dir`; return the paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pictures = []
    for method in report["summary"]:
        matrix = _summed_confusion(report, method)
        if matrix is not None:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", method)
            pictures.append(str(plot_confusion(matrix, f"{method} (all runs)", output_dir / f"confusion_{name}.png")))
    files = {"json": str(output_dir / "report.json"), "markdown": str(output_dir / "report.md"), "confusion": pictures}
    report = {**report, "files": files}
    (output_dir / "report.md").write_text(render_markdown(report) + "\n")
    (output_dir / "report.json").write_text(json.dumps(_clean(report), indent=2, default=_json_default) + "\n")
    return files


__all__ = ["combine_reports", "plot_confusion", "render_markdown", "write_report"]
