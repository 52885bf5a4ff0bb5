"""The checks of an answer's explanation and of what drives the answer, on the test windows of one run.

`explanation_checks` takes the pipeline's answers on the test windows and measures, with the model's public methods
(`probes.ModelProbe`):

* the rationales against the signal and the class signatures (`rationales.split_rationale_report`: faithfulness,
  label consistency next to rationales shuffled across windows, copying from the prompt's evidence line);
* ERASER comprehensiveness and sufficiency of the cited items for the model's label scores, next to random items
  (`eraser`), with the evidence removed by bringing it to the subject's baseline and by a band-stop;
* the same for two controls that expose shortcuts: **head + rule** (the stage-1 head's label with the rationale the
  training targets give that label: what a head and a program achieve without the language model) and **head +
  line copier** (the head's label with the first items of the prompt's evidence line: what copying gives);
* the conflict tests (`conflicts`: EEG tokens, emotion token, evidence text swapped one at a time);
* calibration of the answers' label scores, the label-only scores and the head (`calibration`);
* abstention on inputs that are not emotion EEG and false abstention on the test windows (`abstention`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from e2llm.eeg_evidence_features import band_power_db
from e2llm.label_evidence_e2llm import MAX_CITED_ITEMS, feature_ids
from e2llm.processing.dataset_io import dataset_metadata
from e2llm.processing.instructions import evidence_reference, label_rationale, rationale_text
from e2llm.rationale_e2llm import claim_agreement, numbers_not_measured
from e2llm.training.evaluation.abstention import abstention_report, non_emotion_windows
from e2llm.training.evaluation.calibration import (
    answer_logits,
    calibration_summary,
    fit_temperature,
    logits_from_probs,
    validation_temperature,
)
from e2llm.training.evaluation.conflicts import conflict_tests
from e2llm.training.evaluation.eraser import METHODS, eraser_scores, head_scorer, lm_scorer
from e2llm.training.evaluation.probes import ModelProbe, softmax
from e2llm.training.evaluation.rationales import cited_items, line_claims, split_rationale_report


@dataclass
class TestWindows:
    """The evaluated windows in memory: `eeg` `(n, n_channels, n_times)` µV, `labels`, `subjects` `(n,)`, each
    window's subject baseline `baselines` and band power `power` `(n, n_bands, n_channels)` dB."""

    eeg: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    baselines: np.ndarray
    power: np.ndarray


def load_test_windows(evaluator) -> TestWindows:
    """The test windows of a `runner.Evaluator`, with their subjects' baselines (as the pipeline was given them)."""
    eeg = np.concatenate([chunk for _, chunk in evaluator.chunks()])
    baselines = np.stack([evaluator.subject_baseline[int(s)] for s in evaluator.subjects])
    return TestWindows(eeg, evaluator.labels, evaluator.subjects, baselines,
                       band_power_db(eeg, evaluator.signal["sampling_rate"]))


def _evidence_lines(probe: ModelProbe, windows: TestWindows) -> list[str] | None:
    if not probe.writes_evidence:
        return None
    return probe.processor.evidence_statements(windows.power, probe.signal["channel_names"], windows.baselines)


def _present_items(reference, windows: TestWindows) -> list[list[str]]:
    z = reference.z(reference.features(windows.power, windows.subjects))
    ids = np.array(feature_ids())
    return [ids[np.isfinite(row)].tolist() for row in z]


def _eraser_pair(score, windows: TestWindows, probe: ModelProbe, cited, predicted, present, seed,
                 methods=METHODS) -> dict:
    out = {}
    for method in methods:
        scores = eraser_scores(score, windows.eeg, probe.signal["sampling_rate"], probe.signal["channel_names"],
                               cited, predicted, windows.baselines, present, method=method, seed=seed)
        out.update({(k if method == "reference" else f"band_stop_{k}"): v for k, v in scores.items()
                    if k != "method"})
    return out


def _rule_rationales(reference, windows: TestWindows, label_ids) -> list[str]:
    features = reference.features(windows.power, windows.subjects)
    return [label_rationale(reference, features, i, reference.label_names[int(y)]) for i, y in enumerate(label_ids)]


def _copier_rationales(lines: list[str] | None, n: int) -> list[str]:
    """What a program that restates the first items of the evidence line writes (no line: nothing to copy)."""
    if lines is None:
        return [""] * n
    return [rationale_text(line_claims(line)[:MAX_CITED_ITEMS]) for line in lines]


def _controls(probe, reference, windows, lines, train, test, present, seed, methods=METHODS) -> dict:
    """Head + rule and head + line copier: rationale checks and ERASER of the head for the rule's items."""
    head = probe.head_probs(probe.encode(windows.eeg))
    if head is None:
        return {}
    names = reference.label_names
    head_ids = head.argmax(1)
    head_labels = [names[int(y)] for y in head_ids]
    out = {}
    for name, rationales in (("head_rule", _rule_rationales(reference, windows, head_ids)),
                             ("head_line_copier", _copier_rationales(lines, len(head_ids)))):
        report = split_rationale_report(rationales, head_labels, train, test, seed=seed, reference=reference,
                                        prompts=lines)
        cited = [[i for i in cited_items(r) if i in set(p)] for r, p in zip(rationales, present)]
        report.update({f"eraser_{k}": v for k, v in _eraser_pair(head_scorer(probe), windows, probe, cited,
                                                                   head_ids, present, seed, methods).items()})
        out[name] = _flat(report)
    out["head_probs"] = head
    return out


def grounding_report(outputs) -> dict:
    """What the returned rationales state against the results' measured evidence: numbers that are no measured
    item's printed value (0 by construction; counted by a parser of their own), claims linked to a measured item or
    removed for having none, label-support sentences removed for not being about the label, and the share of parsed
    claims whose item, direction and strength word agree with measurement (`e2llm.claim_agreement`); with claims
    completed from measurement (1 by construction), also how many the constraint changed and the model's own
    agreement (``model_claim_agreement``: the share it did not change)."""
    agreement = claim_agreement(outputs)
    out = {"numbers_not_measured": sum(len(numbers_not_measured(o)) for o in outputs),
           "claims_linked": agreement["linked"], "claims_removed": agreement["removed"],
           "numbers_removed": agreement["removed_numbers"], "support_sentences_removed": agreement["removed_support"]}
    if agreement["agree_share"] is not None:
        out["claim_agreement"] = agreement["agree_share"]
    if agreement["own_agree_share"] is not None:  # claims completed from measurement: agreement 1 by construction
        out.update(claims_constrained=agreement["constrained"], claims_overridden=agreement["overridden"],
                   model_claim_agreement=agreement["own_agree_share"])
    return out


def _flat(report: dict) -> dict:
    return {k: v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def label_guidance_report(outputs, config) -> dict:
    """How much the emotion head guided the written labels (`e2llm.label_guidance_e2llm`): ``{"weight",
    "head_decides", "guided", "changed"}``, the model's weight, 1.0 when its head decides the labels
    (`config.label_decision`, so a mean over runs is the share of runs), the share of answers written under guidance
    and the share whose label the guidance changed from the language model's own most likely one; where the head
    decides, ``"line_held"``: the share whose answer was held to its format (the language model would have ended it, or
    begun another line, before its ``Emotion:`` line; an answer that ends there has no readable label)."""
    guided = [o["label_guidance"] for o in outputs if o.get("label_guidance")]
    n = max(1, len(outputs))
    decides = getattr(config, "label_decision", "language_model") == "emotion_head"
    report = {"weight": float(getattr(config, "label_guidance_weight", 0.0) or 0.0), "head_decides": float(decides),
              "guided": len(guided) / n, "changed": sum(bool(g["changed"]) for g in guided) / n}
    if decides:
        report["line_held"] = sum(bool(g.get("line_held")) for g in guided) / n
    return report


def _calibration(outputs, label_only, head, labels, names, temperatures: dict | None) -> dict:
    """Calibration of the answers' scores as returned (from the source the model's config names, at its shipped
    temperature), of each source's as returned, of the label-only scores and of the unscaled head; with
    `temperatures` (fitted here on validation windows) also of the temperature-scaled answers and head."""
    answers = answer_logits(outputs, names)
    out = {"answer": calibration_summary(softmax(answers), labels),
           "answer_language_model": calibration_summary(softmax(answer_logits(outputs, names,
                                                                             "language_model_scores")), labels)}
    if outputs and outputs[0].get("head_scores") is not None:
        out["answer_head"] = calibration_summary(softmax(answer_logits(outputs, names, "head_scores")), labels)
    out["label_only"] = calibration_summary(label_only, labels)
    if head is not None:
        out["head"] = calibration_summary(head, labels)
    if temperatures:
        out["answer_scaled"] = {**calibration_summary(softmax(answers, temperatures["answer"]), labels),
                                "temperature": temperatures["answer"]}
        if head is not None and "head" in temperatures:
            out["head_scaled"] = {**calibration_summary(softmax(logits_from_probs(head), temperatures["head"]),
                                                        labels), "temperature": temperatures["head"]}
    return out


def validation_temperatures(model, processor, probe: ModelProbe, validation, train, batch_size: int,
                            max_new_tokens: int, seed: int) -> dict:
    """Temperatures of the answers' scores and of the head, fitted on `validation` windows (training side)."""
    out = {"answer": validation_temperature(model, processor, validation, train, batch_size, max_new_tokens,
                                            seed)["label_temperature"]}
    table = validation.with_format("numpy")
    head = probe.head_probs(probe.encode(np.asarray(table["eeg"], dtype=np.float32)))
    if head is not None:
        column = dataset_metadata(validation).get("label_column") or "emotion"
        out["head"] = fit_temperature(logits_from_probs(head), np.asarray(table[column]))
    return out


def explanation_checks(model, processor, evaluator, outputs, train, question: str | None = None,
                       seed: int = 0, non_emotion: int = 20, validation=None, eraser_methods=METHODS) -> dict:
    """Every check of the module docstring for the pipeline `outputs` on `evaluator`'s test windows (`train`: the
    training side, for the class signatures and baselines; `validation`: windows carved from the training trials, for
    temperatures fitted on them, or None; `eraser_methods`: how evidence is removed, `eraser.METHODS`). Returns ``{"rationale", "eraser", "controls",
    "conflicts", "calibration", "abstention", "seconds", "head_probs"}`` (``head_probs`` `(n, n_labels)`: the emotion head's
    probabilities, None without an emotion token)."""
    reference = evidence_reference(train)
    probe = ModelProbe(model, processor, **evaluator.signal, batch_size=evaluator.batch_size)
    windows = load_test_windows(evaluator)
    lines, present = _evidence_lines(probe, windows), _present_items(reference, windows)
    names = list(reference.label_names)
    predicted = np.array([names.index(o["label"]) if o["label"] in names else -1 for o in outputs])
    rationales = [o["rationale"] or "" for o in outputs]
    clock = _Clock()
    checks = {"rationale": _flat(split_rationale_report(rationales, [o["label"] for o in outputs], train,
                                                         evaluator.test, seed=seed, reference=reference,
                                                         prompts=lines))}
    checks["rationale"].update(grounding_report(outputs))
    cited = [[i for i in cited_items(r) if i in set(p)] for r, p in zip(rationales, present)]
    score = lm_scorer(probe, question)
    checks["eraser"] = clock("eraser", _eraser_pair(score, windows, probe, cited, predicted, present, seed,
                                                    eraser_methods))
    checks["controls"] = clock("controls", _controls(probe, reference, windows, lines, train, evaluator.test,
                                                     present, seed, eraser_methods))
    head = checks["controls"].pop("head_probs", None)
    checks["conflicts"] = clock("conflicts", conflict_tests(probe, windows.eeg, windows.labels, lines, question,
                                                            seed))
    temperatures = None  # a model calibrated in stage 3 ships its temperatures, fitted on these validation windows
    if validation is not None and len(validation) > 1 and not model.config.label_calibration:
        temperatures = validation_temperatures(model, processor, probe, validation, train, evaluator.batch_size,
                                               evaluator.max_new_tokens, seed)
    label_only = score(windows.eeg, windows.baselines)
    checks["calibration"] = clock("calibration", _calibration(outputs, label_only, head, windows.labels, names,
                                                              temperatures))
    other = non_emotion_windows(probe.signal["channel_names"], probe.signal["sampling_rate"],
                                windows.eeg.shape[-1], non_emotion, seed) if non_emotion else {}
    checks["abstention"] = clock("abstention", abstention_report(
        reference.statistics(), windows.eeg, probe.signal["sampling_rate"], probe.signal["channel_names"], other))
    checks["label_probabilities"] = {"source": model.config.label_probabilities,
                                     "shipped_calibration": model.config.label_calibration}
    checks["label_guidance"] = label_guidance_report(outputs, model.config)
    return {**checks, "seconds": clock.seconds, "head_probs": head}


class _Clock:
    """Seconds each check took (`seconds`), since the previous one."""

    def __init__(self):
        self.seconds, self.last = {}, time.perf_counter()

    def __call__(self, name: str, value):
        now = time.perf_counter()
        self.seconds[name], self.last = round(now - self.last, 2), now
        return value


__all__ = ["TestWindows", "explanation_checks", "load_test_windows"]
