"""Markdown sections of the explanation checks (`explanations.explanation_checks`, pooled by `summary`).

Every cell is mean ± std over training seeds (a single value for one run).
"""

from __future__ import annotations

from collections.abc import Mapping

from e2llm.training.evaluation.metrics import format_mean_std

CONFLICT_NAMES = {"none": "own inputs", "eeg_tokens": "EEG tokens of another class (emotion token kept)",
                  "emotion_token": "emotion token of another class (EEG tokens kept)",
                  "evidence_text": "evidence line of another class (EEG kept)", "all": "every input of another class"}
EXPLAINERS = {"rationale": "E2LLM rationale", "head_rule": "head + rule-written rationale",
              "head_line_copier": "head + copy of the evidence line's first items"}
RATIONALE_COLUMNS = (("label_consistency", "label consistency"), ("shuffled_label_consistency", "shuffled"),
                     ("faithfulness", "faithfulness"), ("shuffled_faithfulness", "shuffled"),
                     ("model_claim_agreement", "model's own claim agreement"),
                     ("ngram_copy_share", "4-grams copied from prompt"),
                     ("first_items_share", "cites the line's first items"))
ERASER_COLUMNS = (("comprehensiveness", "comprehensiveness"), ("random_comprehensiveness", "random items"),
                  ("sufficiency", "sufficiency"), ("random_sufficiency", "random items"),
                  ("band_stop_comprehensiveness", "band-stop compr."),
                  ("band_stop_random_comprehensiveness", "random items"))


def _cell(stats: Mapping | None) -> str:
    return format_mean_std(stats) if isinstance(stats, Mapping) and "n" in stats else "n/a"


def _number(found) -> str:
    """A summarised figure (mean ± std) or a plain number."""
    return f"{found:.3f}" if isinstance(found, (int, float)) else _cell(found)


def _count(found) -> str:
    """A count that is the same in every replicate as a whole number, else as mean ± std."""
    if isinstance(found, Mapping) and "mean" in found and not found.get("std"):
        found = found["mean"]
    return f"{found:g}" if isinstance(found, (int, float)) else _cell(found)


def _row(name: str, stats: Mapping, columns) -> str:
    return f"| {name} | " + " | ".join(_cell(stats.get(key)) for key, _ in columns) + " |"


def _header(columns, first: str) -> list[str]:
    return ["| " + first + " | " + " | ".join(title for _, title in columns) + " |", "|---" * (len(columns) + 1) + "|"]


def conflict_lines(checks: Mapping) -> list[str]:
    conflicts = checks.get("conflicts") or {}
    if not conflicts:
        return []
    columns = (("accuracy", "accuracy"), ("follows_partner_label", "follows the other class"),
               ("follows_partner_answer", "= answer on the other window"), ("changed_answer", "answer changed"),
               ("mean_confidence", "mean confidence"))
    lines = ["## What drives the answer (inputs swapped one at a time)", "",
             "Label scores right after the prompt (`return_rationale=False`), each test window paired with a window "
             "of another class; one input at a time comes from that window.", "", *_header(columns, "inputs")]
    lines += [_row(CONFLICT_NAMES.get(name, name), stats, columns) for name, stats in conflicts.items()
              if isinstance(stats, Mapping) and "accuracy" in stats]
    return lines + [""]


def explanation_lines(checks: Mapping) -> list[str]:
    rows = {"rationale": checks.get("rationale") or {}, **(checks.get("controls") or {})}
    eraser = {"rationale": {k: v for k, v in (checks.get("eraser") or {}).items()},
              **{name: {k[len("eraser_"):]: v for k, v in stats.items() if k.startswith("eraser_")}
                 for name, stats in (checks.get("controls") or {}).items()}}
    lines = ["## Explanations checked against the signal and the model", "",
             "Label consistency: the cited items, at their measured values, point to the answer's label under the "
             "class signatures (shuffled: the same rationales given to other windows). Faithfulness: claims whose "
             "direction and strength word match the window. The controls show what a score credits without the "
             "language model: the stage-1 head's label with the rationale a rule writes for it, or with the first "
             "items of the prompt's evidence line.", "", *_header(RATIONALE_COLUMNS, "rationale")]
    lines += [_row(EXPLAINERS.get(name, name), stats, RATIONALE_COLUMNS) for name, stats in rows.items() if stats]
    lines += ["", "ERASER: drop in the answer label's probability when the cited items are brought to the subject's "
              "baseline (comprehensiveness: higher is better) or when everything else is (sufficiency: lower is "
              "better), next to as many random items; band-stop: the cited bands removed instead.", "",
              *_header(ERASER_COLUMNS, "rationale")]
    lines += [_row(EXPLAINERS.get(name, name), stats, ERASER_COLUMNS) for name, stats in eraser.items() if stats]
    return lines + [""]


def calibration_lines(checks: Mapping) -> list[str]:
    calibration = checks.get("calibration") or {}
    if not calibration:
        return []
    names = {"answer": "E2LLM answer's `scores` (as returned)",
             "answer_language_model": "language model's label scores after the rationale (shipped temperature)",
             "answer_head": "emotion head's probabilities (shipped temperature)",
             "label_only": "E2LLM label-only scores", "head": "stage-1 emotion head (temperature 1)",
             "answer_scaled": "E2LLM answer, temperature fitted on validation windows",
             "head_scaled": "stage-1 head, temperature fitted on validation windows"}
    columns = (("accuracy", "accuracy"), ("mean_confidence", "mean confidence"), ("ece", "ECE"), ("nll", "NLL"),
               ("brier", "Brier"), ("temperature", "temperature"))
    source = (checks.get("label_probabilities") or {}).get("source")
    shipped = (checks.get("label_probabilities") or {}).get("shipped_calibration")
    lines = ["## Calibration", ""]
    if source is not None:
        lines += [f"The answers' `scores` come from the {source.replace('_', ' ')} (`config.label_probabilities`), "
                  + (f"chosen on {_count(shipped.get('n_windows'))} validation windows: the emotion head unless the "
                     "language model's log-likelihood of the true labels is higher beyond noise (its 95% interval "
                     "above 0)" + _comparison_cell(shipped.get("comparison"))
                     + "; ECE after temperature scaling: "
                     + ", ".join(f"{name.replace('_', ' ')} {_cell(figures.get('ece'))}"
                                 for name, figures in shipped["sources"].items()) + "."
                     if shipped else "not calibrated (no validation windows in stage 3)."), ""]
    lines += guidance_lines(checks)
    lines += _header(columns, "probabilities")
    lines += [_row(names.get(name, name), stats, columns) for name, stats in calibration.items()]
    return lines + [""]


def _comparison_cell(comparison: Mapping | None) -> str:
    if not comparison:
        return ""
    if "ci_low" not in comparison:  # summarised over runs (`summary._keep_mean_differences`)
        return (f" (language model - head: {_number(comparison.get('difference'))} per window over "
                f"{_count(comparison.get('n_runs'))} runs; each run's source was chosen by its own interval)")
    over = "subjects and their trials" if comparison.get("resampled", "trials") != "trials" else "trials"
    return (f" (language model - head: {_number(comparison.get('difference'))} per window, 95% interval over "
            f"validation {over} [{_number(comparison.get('ci_low'))}, {_number(comparison.get('ci_high'))}])")


def _decision_text(decision: Mapping | None) -> str:
    if not decision:
        return ""
    if isinstance(decision.get("difference"), Mapping) or "ci_low" not in decision:  # summarised over runs
        return f"; best weight - head deciding: {_number(decision['difference'])} over runs"
    level = 100 * float(decision.get("level", 0.95))
    over = "subjects and their trials" if decision.get("resampled", "trials") != "trials" else "trials"
    return (f"; best weight - head deciding: {_number(decision.get('difference'))}, {level:.1f}% interval over "
            f"validation {over} [{_number(decision.get('ci_low'))}, {_number(decision.get('ci_high'))}]")


def guidance_lines(checks: Mapping) -> list[str]:
    """Who writes the label: the language model alone, with the emotion head's guidance (and how often it changed the
    label), or the emotion head (`config.label_decision`; over runs, the share of runs where it decided)."""
    guidance = checks.get("label_guidance") or {}
    weight = guidance.get("weight")
    if weight is None:
        return []
    shipped = ((checks.get("label_probabilities") or {}).get("shipped_calibration") or {}).get("label_guidance")
    tried = ("; validation balanced accuracy by weight: " + ", ".join(
        f"{w} {_number(f.get('balanced_accuracy'))}" for w, f in sorted(shipped["weights"].items(), key=lambda wf: float(wf[0])))
        + (f", the head deciding {_number(shipped['head_decides'].get('balanced_accuracy'))}"
           if shipped.get("head_decides") else "") + _decision_text(shipped.get("decision"))) if shipped else ""
    decides = guidance.get("head_decides") or 0.0
    decides = decides["mean"] if isinstance(decides, Mapping) else decides
    lines = []
    if decides:
        runs = "" if decides == 1 else f" in {decides:.2f} of the runs"
        lines += [f"The emotion head decides the answered labels{runs} (`config.label_decision` \"emotion_head\": the "
                  f"head decides unless the language model's answers are better beyond the noise of the validation "
                  f"trials{tried}); the language model writes "
                  f"the rationale around the head's label, so these answers are the head's, not the language "
                  f"model's{_held_text(guidance)}. The conflict tests above score the language model alone.", ""]
        if decides == 1:
            return lines
        tried = ""
    if not (weight["mean"] if isinstance(weight, Mapping) else weight):
        return lines + ["The answered labels are the language model's alone (`config.label_guidance_weight` 0"
                        + (" where the head does not decide" if decides else "") + ").", ""]
    return lines + [
        f"The answered labels are written with the emotion head's log-probabilities added at the label's tokens "
        f"(weight {_count(weight)}, chosen on validation windows{tried}); this changed the language model's own "
        f"label in {_number(guidance.get('changed'))} of the answers. The conflict tests above score the language "
        f"model alone.", ""]


def _held_text(guidance: Mapping) -> str:
    """How often the head-decided answers were held to their format (`label_guidance_report`'s ``line_held``)."""
    held = guidance.get("line_held")
    if held is None:
        return ""
    return (f"; in {_number(held)} of the answers the language model would have ended the answer, or begun another "
            f"line, before its Emotion line, and was held to the format (an answer that ends there has no readable label)")


def abstention_lines(checks: Mapping) -> list[str]:
    abstention = checks.get("abstention") or {}
    if not abstention:
        return []
    lines = ["## Abstention (insufficient evidence)", "",
             f"Held-out emotion windows abstained on (false abstention): {_cell(abstention.get('false_abstention'))}.",
             "", "| input | abstained |", "|---|---|"]
    for kind, stats in (abstention.get("inputs") or {}).items():
        lines.append(f"| {kind} | {_cell(stats.get('abstained'))} |")
    return lines + [""]


def explanation_sections(report: Mapping) -> list[str]:
    """Every section, from a summarised report's ``explanations`` (empty when absent)."""
    checks = report.get("explanations")
    if not checks:
        return []
    return [*conflict_lines(checks), *explanation_lines(checks), *calibration_lines(checks), *abstention_lines(checks)]


__all__ = ["abstention_lines", "calibration_lines", "conflict_lines", "explanation_lines", "explanation_sections",
           "guidance_lines"]
