"""What `e2llm quickstart` prints at its end: the results per protocol (stage-1 head, the LLM's answers and the
baselines with intervals, paired differences, the conflict tests (another class's input swapped in), rationale
checks, the stage-2 gap) and the time each part of each run took."""

from __future__ import annotations

import numpy as np

from e2llm.training.evaluation.report import dataset_title, format_metric

TIMED_PARTS = ("init", "stage1", "stage2", "stage3", "evaluation")
BASELINE_NAMES = ("de_logreg", "fbcnet", "eegnet_v4", "shallow_convnet")


def _method_lines(summary: dict, names: dict) -> list[str]:
    lines = []
    for method in ("stage1_head", "e2llm/emotion", *[m for m in summary if m in BASELINE_NAMES]):
        if method not in summary:
            continue
        stats = summary[method]
        parse = f"{stats['parse_rate']['mean']:.3f}" if method.startswith("e2llm") else ""
        lines.append(f"{names.get(method, method):<26}{format_metric(stats['accuracy']):>34}"
                     f"{stats['balanced_accuracy']['mean']:>9.3f}{stats['macro_f1']['mean']:>9.3f}{parse:>7}")
    return lines


def _mean(value) -> float:
    """A mean (or a plain number); NaN for one that is missing (a report read back from JSON writes NaN as null)."""
    value = value["mean"] if isinstance(value, dict) else value
    return float("nan") if value is None else float(value)


def _comparison_text(comparison) -> str:
    """The validation comparison that chose the source (`calibration.choose_label_source`), or ""."""
    if not comparison:
        return ""
    difference = f"; log-likelihood per window, language model - head {_mean(comparison.get('difference')):+.3f}"
    if "ci_low" not in comparison:  # summarised over runs: each run chose by its own interval
        return f"{difference} over {_mean(comparison.get('n_runs')):.0f} runs: in each, the head unless its interval is above 0"
    return (f"{difference} [{_mean(comparison.get('ci_low')):+.3f}, {_mean(comparison.get('ci_high')):+.3f}]: the "
            "head unless the interval is above 0")


def _calibration_lines(explanations: dict) -> list[str]:
    """Where the answers' probabilities come from (chosen on validation windows in stage 3) and their test ECE."""
    calibration = explanations.get("calibration") or {}
    if "answer" not in calibration:
        return []
    source = (explanations.get("label_probabilities") or {}).get("source", "language_model")
    shipped = (explanations.get("label_probabilities") or {}).get("shipped_calibration") or {}
    chosen = ("chosen on validation windows: " + ", ".join(
        f"{name.replace('_', ' ')} ECE {_mean(figures.get('ece')):.3f}"
        for name, figures in (shipped.get("sources") or {}).items())
        + _comparison_text(shipped.get("comparison"))) if shipped else "not calibrated"
    test = [f"{title} {_mean(calibration[key]['ece']):.3f}" for key, title in
            (("answer", "scores as returned"), ("answer_language_model", "language model"),
             ("answer_head", "emotion head")) if "ece" in (calibration.get(key) or {})]
    lines = [f"  label probabilities from the {source.replace('_', ' ')} ({chosen}); test ECE: " + ", ".join(test)]
    guidance = explanations.get("label_guidance") or {}
    decides = _mean(guidance.get("head_decides", 0.0))
    if decides > 0:
        head = (shipped.get("label_guidance") or {}).get("head_decides") or {}
        runs = "" if decides == 1 else f" in {decides:.2f} of the runs"
        figure = f" {_mean(head['balanced_accuracy']):.3f}" if head.get("balanced_accuracy") is not None else ""
        lines.append(f"  the emotion head decides the written labels{runs} (validation balanced accuracy{figure}; "
                     "the guided language model's was not better beyond the noise of the validation trials): those "
                     "answers are the head's, the language model writes the rationale"
                     + (f"; held to the answer's format before its Emotion line in {_mean(guidance['line_held']):.3f}"
                        " of them" if guidance.get("line_held") is not None else ""))
    if decides < 1 and _mean(guidance.get("weight", 0.0)) > 0:
        tried = (shipped.get("label_guidance") or {}).get("weights") or {}
        weight = guidance["weight"]
        spread = weight.get("std") if isinstance(weight, dict) else None
        weight = f"{_mean(weight):g}" if not spread else f"{_mean(weight):.1f} ± {spread:.1f} over runs"
        lines.append(f"  labels written with the emotion head's guidance, weight {weight} (chosen "
                     "on validation windows, balanced accuracy by weight: "
                     + ", ".join(f"{w} {_mean(f.get('balanced_accuracy')):.3f}" for w, f in sorted(tried.items(), key=lambda wf: float(wf[0])))
                     + f"); it changed the language model's own label in {_mean(guidance.get('changed')):.3f} of "
                     "the answers")
    return lines


def _explanation_lines(explanations: dict) -> list[str]:
    """The evaluation's conflict tests (an input of another class swapped in) and label consistency."""
    lines = []
    conflicts = explanations.get("conflicts") or {}
    swapped = [f"{name} {_mean(conflicts[key]['changed_answer']):.3f}" for key, name in
               (("eeg_tokens", "EEG tokens"), ("emotion_token", "emotion token"), ("evidence_text", "evidence line"))
               if "changed_answer" in (conflicts.get(key) or {})]
    if swapped:
        lines.append("  answer changed when another class's input was swapped in: " + ", ".join(swapped))
    lines += _calibration_lines(explanations)
    rationale = explanations.get("rationale") or {}
    if "label_consistency" in rationale:
        shuffled = rationale.get("shuffled_label_consistency")
        lines.append(f"  label consistency {_mean(rationale['label_consistency']):.3f}"
                     + (f" (shuffled {_mean(shuffled):.3f})" if shuffled is not None else ""))
    return lines


def _check_lines(protocol: dict) -> list[str]:
    lines = _explanation_lines(protocol.get("explanations") or {})
    for name, paired in protocol.get("paired", {}).items():
        lo, hi = paired["ci"]
        lines.append(f"  paired {name}: {paired['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}], p = {paired['p_value']:.4f}")
    answers = protocol["summary"].get("e2llm/emotion", {})
    if "selective_accuracy_50%" in answers:
        lines.append("  E2LLM selective accuracy at 50/80/100% coverage: " + " / ".join(
            f"{answers[f'selective_accuracy_{c}']['mean']:.3f}" for c in ("50%", "80%", "100%")))
    return lines


def rationale_lines(answers: dict, alignments: list[dict]) -> list[str]:
    """The rationale checks (means over training seeds) and the stage-2 gap (mean over runs) of one protocol."""
    lines = []
    if "faithfulness" in answers:
        mean = {k: _mean(answers[k]) for k in ("faithfulness", "shuffled_faithfulness", "most_frequent_faithfulness",
                                                "distinct_share", "duplicate_or_contradictory_share") if k in answers}
        lines.append(f"  rationales: faithfulness {mean['faithfulness']:.3f} (shuffled across windows "
                     f"{mean.get('shuffled_faithfulness', float('nan')):.3f}, most frequent "
                     f"{mean.get('most_frequent_faithfulness', float('nan')):.3f}); distinct "
                     f"{mean.get('distinct_share', float('nan')):.0%}, with duplicate or contradictory claims "
                     f"{mean.get('duplicate_or_contradictory_share', float('nan')):.0%}")
    if "numbers_not_measured" in answers:
        agreement = _mean(answers["claim_agreement"]) if "claim_agreement" in answers else float("nan")
        lines.append(f"  returned rationales: {_mean(answers['numbers_not_measured']):.0f} numbers that are not the "
                     f"measured value; claims whose item, direction and strength agree with measurement "
                     f"{agreement:.3f} ({_mean(answers['claims_linked']):.0f} linked, "
                     f"{_mean(answers['claims_removed']):.0f} removed for having no measured item; "
                     f"{_mean(answers.get('support_sentences_removed')):.0f} label sentences removed for "
                     "naming another label than the answer or the label over itself)")
    if "model_claim_agreement" in answers:
        lines.append(f"  claims kept to measured evidence for the label as they were written: "
                     f"{_mean(answers['claims_constrained']):.0f}, of which {_mean(answers['claims_overridden']):.0f} "
                     "where the model's own next word was another item, direction, strength or region (its own "
                     f"agreement {_mean(answers['model_claim_agreement']):.3f}; agreement and faithfulness above are "
                     "1 by construction)")
    if alignments:
        per_description = np.mean([a["description_gap_shuffled_minus_real"] for a in alignments])
        per_token = np.mean([a["gap_shuffled_minus_real"] for a in alignments])
        lines.append(f"  stage 2: description NLL with shuffled minus real EEG {per_description:+.3f} nats per "
                     f"description ({per_token:+.2e} per token)")
    return lines


def results_table(report: dict) -> str:
    """The printed summary per protocol: stage-1 head, the LLM's answers and the baselines, each as mean ± std over
    training seeds with the 95% interval over held-out trials, then the conflict tests and the paired differences."""
    names = {"stage1_head": "stage-1 encoder head", "e2llm/emotion": "E2LLM answer (generated)",
             "de_logreg": "DE + logistic regression", "eegnet_v4": "EEGNet-v4", "fbcnet": "FBCNet",
             "shallow_convnet": "Shallow ConvNet", "emotion_head": "emotion head (in the E2LLM)"}
    quickstart = report.get("quickstart") or {}
    for name, title in (("eegnet_v4", "EEGNet-v4"), ("fbcnet", "FBCNet")):
        epochs = quickstart.get("settings", {}).get(f"{name.split('_')[0]}_epochs")
        if epochs:
            names[name] = f"{title} ({epochs} ep.)"
    lines, runs = [], quickstart.get("runs", [])
    for kind, protocol in report.get("protocols", {"trial": report}).items():
        split = protocol["split"]
        what = {"trial": "held-out trials", "subject": "held-out subjects (leave one out, all folds)"}.get(kind, kind)
        if quickstart.get("on_validation"):
            what = "validation trials (carved from the training trials; the test trials are not used)"
        lines += ["", f"[{kind}] {dataset_title(protocol)} - {what}: {split['n_test_trials']} trials "
                      f"({split['n_test_windows']} windows), training seeds: {protocol['n_replicates']}, "
                      f"chance = {1 / len(protocol['label_names']):.3f}",
                  f"{'method':<26}{'accuracy (mean ± std [95% CI])':>34}{'bal. acc':>9}{'macro-F1':>9}{'parse':>7}"]
        lines += _method_lines(protocol["summary"], names) + _check_lines(protocol)
        lines += rationale_lines(protocol["summary"].get("e2llm/emotion", {}),
                                 [run["alignment"] for run in runs if run["protocol"] == kind and run.get("alignment")])
    return "\n".join(lines).lstrip("\n")


def timing_table(report: dict) -> str:
    """Seconds per part of each run (`TIMED_PARTS`), the data preparation and the total, as a table; then what the
    evaluation's time went to (the language model's answers and checks, each baseline, the stage-1 head, the stage-2
    gap, the model card)."""
    quickstart = report["quickstart"]
    threads = quickstart.get("threads") or {}
    where = ", ".join(f"{name} {value}" for name, value in threads.items() if value is not None)
    header = f"{'seconds':<26}" + "".join(f"{part:>11}" for part in (*TIMED_PARTS, "total"))
    lines = [f"time per part (on {quickstart['device']}, load average {quickstart['load_average_1min']}"
             + (f"; threads: {where}" if where else "") + "):", header]
    for run in quickstart["runs"]:
        timings = run["timings_seconds"]
        lines.append(f"{_run_name(run):<26}" + "".join(f"{timings.get(p, 0.0):>11.1f}" for p in TIMED_PARTS)
                     + f"{sum(timings.values()):>11.1f}")
    lines.append(f"{'data (once)':<26}{quickstart['data_seconds']:>11.1f}")
    lines.append(f"{'whole run':<26}{'':>{11 * len(TIMED_PARTS)}}{quickstart['total_seconds']:>11.1f}")
    parts = list(dict.fromkeys(part for run in quickstart["runs"] for part in run.get("evaluation_seconds") or {}))
    if parts:
        lines += ["evaluation, seconds per part:", f"{'':<26}" + "".join(f"{part:>15}" for part in parts)]
        lines += [f"{_run_name(run):<26}" + "".join(f"{(run.get('evaluation_seconds') or {}).get(p, 0.0):>15.1f}"
                                                   for p in parts) for run in quickstart["runs"]]
    return "\n".join(lines)


def _run_name(run: dict) -> str:
    return f"{run['protocol']} fold {run['fold']} seed {run['seed']}"


__all__ = ["TIMED_PARTS", "rationale_lines", "results_table", "timing_table"]
