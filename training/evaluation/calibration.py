"""Calibration of label probabilities: temperature scaling (Guo et al., ICML 2017) fitted on validation windows.

`fit_temperature` finds the temperature ``T`` that minimises the negative log-likelihood of ``softmax(logits / T)``
on validation windows (training trials held out of training, never test windows); a model stores it and its label
scoring divides the labels' log-likelihoods by it. `calibration_summary` gives what the report shows for one
source of probabilities (the language model's label scores, the stage-1 head): accuracy, mean confidence, expected
calibration error, negative log-likelihood and Brier score. `calibrate_label_sources` (run by stage 3 when it has
validation windows) fits both label sources' temperatures, the language model's and the stage-1 emotion head's, and
keeps the head's as the model's `config.label_probabilities` unless the language model's are better beyond the
noise of the validation trials (`choose_label_source`); given weights to try, it also chooses how much the head guides
the written labels (`config.label_guidance_weight`, `e2llm.label_guidance_e2llm`) and whether the head decides them
(`config.label_decision`).

    >>> import numpy as np
    >>> logits = np.log(np.array([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.99, 0.01]]))
    >>> labels = np.array([0, 0, 1, 1])  # 75% right at 99% confidence: too sure
    >>> fit_temperature(logits, labels) > 1
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from transformers import pipeline

from e2llm.processing.dataset_io import dataset_metadata
from e2llm.processing.splits import trial_keys
from e2llm.training.evaluation.metrics import classification_metrics, expected_calibration_error
from e2llm.training.evaluation.probes import softmax
from e2llm.training.evaluation.runner import Evaluator, _subject_baselines
from e2llm.training.evaluation.statistics import LEVEL, paired_bootstrap

TEMPERATURE_BOUNDS = (0.05, 100.0)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probs = softmax(logits, temperature)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300))))


def fit_temperature(logits, labels) -> float:
    """The temperature `(0.05 .. 100)` minimising the NLL of `softmax(logits / T)` (`logits` `(n, n_labels)`, e.g.
    label log-likelihoods or log-probabilities; `labels` `(n,)` true indices)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels).astype(int)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) < 2:
        raise ValueError(f"temperature scaling needs (n >= 2, n_labels) logits and n labels, got {logits.shape} and "
                         f"{labels.shape}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits must be finite (clip log-probabilities of 0 first)")
    lo, hi = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: _nll(logits, labels, float(np.exp(log_t))), bounds=(lo, hi),
                             method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def logits_from_probs(probs) -> np.ndarray:
    """Log-probabilities (softmax-equivalent logits) of probability rows, clipped away from 0."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))


def calibration_summary(probs, labels) -> dict:
    """``accuracy``, ``mean_confidence``, ``ece``, ``nll`` and ``brier`` of probability rows `(n, n_labels)`."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels).astype(int)
    onehot = np.eye(probs.shape[1])[labels]
    return {"accuracy": float(np.mean(probs.argmax(1) == labels)), "mean_confidence": float(probs.max(1).mean()),
            "ece": expected_calibration_error(probs, labels),
            "nll": float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300)))),
            "brier": float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))}


def answer_logits(outputs, label_names, key: str = "scores") -> np.ndarray:
    """`(n, n_labels)` log-probabilities of the ``eeg-emotion`` pipeline's label probabilities (one output per
    window): `key` ``"scores"`` (the source the model's config names), ``"language_model_scores"`` or
    ``"head_scores"``."""
    return logits_from_probs([[o[key][name] for name in label_names] for o in outputs])


def validation_answers(model, processor, validation, train, batch_size: int = 32, max_new_tokens: int = 160,
                       seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """The pipeline's answers (rationale, then label scores) on `validation` windows (a prepared dataset carved from
    the training trials, never test windows), with baselines from `train`, and their true label indices."""
    metadata = dataset_metadata(validation)
    was_training = model.training
    model.eval()
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device=model.device)
    evaluator = Evaluator(pipe, validation, metadata, list(model.config.label_names), batch_size, max_new_tokens,
                          _subject_baselines(train, validation, float(metadata["sampling_rate"])))
    outputs = evaluator.run(evaluator.prompts("emotion", "train", seed))
    model.train(was_training)
    return outputs, np.asarray(evaluator.labels)


def validation_temperature(model, processor, validation, train, batch_size: int = 32, max_new_tokens: int = 160,
                           seed: int = 0) -> dict:
    """The temperature of the pipeline's ``scores`` fitted on `validation` windows (`validation_answers`).

    Returns ``{"label_temperature", "ece_before", "ece_after", "n_windows"}`` (the ECE on the validation windows
    themselves)."""
    outputs, labels = validation_answers(model, processor, validation, train, batch_size, max_new_tokens, seed)
    logits = answer_logits(outputs, list(model.config.label_names))
    temperature = fit_temperature(logits, labels)
    return {"label_temperature": temperature, "n_windows": len(outputs),
            "ece_before": expected_calibration_error(softmax(logits), labels),
            "ece_after": expected_calibration_error(softmax(logits, temperature), labels)}


SOURCE_KEYS = {"language_model": "language_model_scores", "emotion_head": "head_scores"}


def _log_likelihoods(logits: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    """`(n,)` log-probability of each window's true label under ``softmax(logits / temperature)``."""
    probs = softmax(logits, temperature)
    return np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300))


def _source_figures(logits: np.ndarray, labels: np.ndarray) -> dict:
    temperature = fit_temperature(logits, labels)
    scaled = calibration_summary(softmax(logits, temperature), labels)
    return {"temperature": temperature, "ece_before": expected_calibration_error(softmax(logits), labels),
            "ece": scaled["ece"], "nll": scaled["nll"], "accuracy": scaled["accuracy"]}


SOURCE_RULE = ("each source's temperature minimises its NLL on the validation windows; the emotion head's "
               "probabilities are kept unless the language model's log-likelihood of the true labels (at their "
               "temperatures) is higher, its 95% interval over validation trials (paired bootstrap; over validation "
               "subjects and their trials where two or more subjects held out of training validate) above 0")


def choose_label_source(log_likelihoods: dict[str, np.ndarray], trials, seed: int = 0,
                        by_subject: bool = False) -> tuple[str, dict | None]:
    """The source of the label probabilities and the comparison that chose it.

    `log_likelihoods` maps ``"language_model"`` (and ``"emotion_head"`` when the model has one) to `(n,)` per-window
    log-probabilities of the true label on validation windows, each at its fitted temperature; `trials` `(n, k)`
    their trial keys. The head is the default and the language model must beat it beyond the noise of the validation
    trials: a choice by the lower ECE on 90 windows followed differences of 0.003 that reversed on the test trials.
    Returns ``(chosen, comparison)``, comparison ``{"difference", "ci_low", "ci_high", "p_value", "n_trials", ...}``
    (`statistics.paired_bootstrap` of language model minus head, mean log-likelihood per window; over validation
    subjects and their trials with `by_subject`, see `compare_label_deciders`) or None without a head."""
    if "emotion_head" not in log_likelihoods:
        return "language_model", None
    comparison = paired_bootstrap(log_likelihoods["language_model"], log_likelihoods["emotion_head"], trials,
                                  seed=seed, by_subject=by_subject)
    low, high = comparison.pop("ci")  # two numbers, not a list, so that summaries over runs keep them
    comparison.update(ci_low=low, ci_high=high,
                      test=f"paired bootstrap over validation {_resampled(comparison)} of the mean log-likelihood, "
                           f"language model - head")
    return ("language_model" if low > 0 else "emotion_head"), comparison


def answered_label_figures(outputs, labels: np.ndarray, label_names) -> dict:
    """``{"balanced_accuracy", "accuracy", "unparseable", "guided_changed"}`` of the pipeline's answered labels
    (`outputs`, one per window; an unparseable or abstained answer counts as wrong)."""
    predicted = [o.get("label") for o in outputs]
    figures = classification_metrics([label_names[i] for i in labels], predicted, label_names)
    changed = sum(bool((o.get("label_guidance") or {}).get("changed")) for o in outputs)
    return {"balanced_accuracy": figures["balanced_accuracy"], "accuracy": figures["accuracy"],
            "unparseable": sum(p is None for p in predicted), "guided_changed": changed}


GUIDANCE_RULE = ("the emotion head's log-probabilities (at its fitted temperature) times the weight are added to the "
                 "language model's at the label's tokens; the weight whose answered labels have the highest balanced "
                 "accuracy on the validation windows is kept (the smallest on a tie; 0 is the language model alone); "
                 "the emotion head decides the written label unless those answers' balanced accuracy is higher than "
                 "the head's answers', its interval over validation trials (paired bootstrap; over validation "
                 "subjects and their trials where two or more subjects held out of training validate; 95% corrected "
                 "for the number of weights tried, Bonferroni) above 0")


def balanced_correct(predicted, labels: np.ndarray, label_names) -> np.ndarray:
    """`(n,)` per-window correctness weighted so that its mean is the balanced accuracy: a right answer of class
    ``c`` counts ``n / (n_classes * n_c)`` (classes present in `labels`), a wrong, unparseable or abstained one 0.
    Paired over windows, `statistics.paired_bootstrap` of two such arrays compares balanced accuracies over trials."""
    labels = np.asarray(labels).astype(int)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    right = np.array([p is not None and p == label_names[t] for p, t in zip(predicted, labels)], dtype=np.float64)
    return right * len(labels) / (len(classes) * counts[inverse])


def _resampled(comparison: dict) -> str:
    """What a validation comparison resampled, said as a test's text."""
    if comparison["resampled"] != "trials":
        return f"subjects ({comparison['n_subjects']}) and their trials"
    return "trials" if comparison["n_subjects"] > 1 else "trials of one subject (the noise between subjects unknown)"


def compare_label_deciders(language_model_outputs, head_outputs, labels: np.ndarray, label_names, trials,
                           seed: int = 0, n_tried: int = 1, by_subject: bool = False) -> dict:
    """The paired bootstrap over validation trials of the balanced accuracy of the answers whose labels the
    language model writes (guided) minus those whose labels the emotion head decides: ``{"difference", "ci_low",
    "ci_high", "level", "p_value", "n_trials", "n_boot", "test"}``.

    `n_tried`: how many guidance weights the language model's answers are the best of, on these same windows. The
    best of several is flattered by its own selection (the winner's curse), so the interval's level is corrected
    for them (Bonferroni: ``1 - 0.05 / n_tried``). `by_subject` (validation subjects held out of training, as the
    test subjects are): with two validation subjects or more, the subjects are resampled, then their trials, so that
    the interval holds the noise between subjects a new subject brings (with one, only its trials; the record's
    ``n_subjects`` and ``resampled`` say which)."""
    level = 1 - (1 - LEVEL) / max(1, int(n_tried))
    comparison = paired_bootstrap(balanced_correct([o.get("label") for o in language_model_outputs], labels,
                                                   label_names),
                                  balanced_correct([o.get("label") for o in head_outputs], labels, label_names),
                                  trials, seed=seed, level=level, by_subject=by_subject)
    low, high = comparison.pop("ci")
    comparison.update(ci_low=low, ci_high=high, level=level,
                      test=f"paired bootstrap over validation {_resampled(comparison)} of the balanced accuracy, "
                           f"language model (best "
                           f"of {n_tried} guidance weights) - emotion head deciding; interval at {level:.4f} "
                           f"(0.95 corrected for the {n_tried} weights)")
    return comparison


def calibrate_label_sources(model, processor, validation, train, batch_size: int = 32, max_new_tokens: int = 160,
                            seed: int = 0, guidance_weights: Sequence[float] = (), head_may_decide: bool = True,
                            by_subject: bool = False) -> dict:
    """Fit each label source's temperature on `validation` windows and choose the source of the label
    probabilities (`choose_label_source`: the emotion head unless the language model is better beyond noise), then set ``model.config``'s `label_temperature`,
    `head_temperature`, `label_probabilities` and `label_calibration` (see `e2llm.label_sources_e2llm`).

    With `guidance_weights`, the validation answers are also generated with the head's guidance at each weight
    (`e2llm.label_guidance_e2llm`, the head at its fitted temperature) and the weight whose answered labels have the
    highest balanced accuracy is kept in `config.label_guidance_weight` (0, the language model alone, on a tie: the
    smallest weight wins); with `head_may_decide`, the head decides the label (`config.label_decision` ``"emotion_head"``,
    the limit of an infinite weight) unless the answers at that weight have a higher balanced accuracy beyond the noise
    of the validation trials and of choosing the best of the weights (`compare_label_deciders`): a choice by the point
    estimate on one validation subject kept the language model in 5 of 9 leave-one-subject-out runs, and it lost to
    the head on every one's test subject.
    The language model's temperature is fitted on the answers so chosen. `by_subject`: the validation windows are
    subjects held out of training (a leave-one-subject-out split); both comparisons then resample the validation
    subjects where there are two or more.

    Returns the `label_calibration` record: ``{"chosen", "n_windows", "sources": {source: {"temperature",
    "ece_before", "ece", "nll", "accuracy"}}, "comparison", "rule", "label_guidance"}``, the figures on the validation windows
    themselves (``label_guidance``: ``{"weight", "weights": {weight: answered-label figures}, "head_decides":
    answered-label figures or None, "decided_by", "decision": `compare_label_deciders` or None, "rule"}``, None without `guidance_weights`)."""
    config = model.config
    config.label_temperature, config.head_temperature = 1.0, 1.0  # fitted from the raw scores
    config.label_probabilities, config.label_guidance_weight = "language_model", 0.0
    config.label_decision = "language_model"
    outputs, labels = validation_answers(model, processor, validation, train, batch_size, max_new_tokens, seed)
    names = list(config.label_names)
    sources = {}
    if outputs[0].get(SOURCE_KEYS["emotion_head"]) is not None:
        sources["emotion_head"] = _source_figures(answer_logits(outputs, names, SOURCE_KEYS["emotion_head"]), labels)
        config.head_temperature = sources["emotion_head"]["temperature"]
    guidance = None
    if guidance_weights and "emotion_head" in sources:
        tried = {0.0: (outputs, answered_label_figures(outputs, labels, names))}
        for weight in sorted({float(w) for w in guidance_weights} - {0.0}):
            config.label_guidance_weight = weight
            answers, _ = validation_answers(model, processor, validation, train, batch_size, max_new_tokens, seed)
            tried[weight] = (answers, answered_label_figures(answers, labels, names))
        best = max(tried, key=lambda w: (round(tried[w][1]["balanced_accuracy"], 4), -w))
        config.label_guidance_weight, outputs = best, tried[best][0]
        head_decides = decision = None
        if head_may_decide:
            config.label_decision = "emotion_head"
            answers, _ = validation_answers(model, processor, validation, train, batch_size, max_new_tokens, seed)
            head_decides = answered_label_figures(answers, labels, names)
            decision = compare_label_deciders(outputs, answers, labels, names, trial_keys(validation), seed,
                                              n_tried=len(tried), by_subject=by_subject)
            if decision["ci_low"] > 0:
                config.label_decision = "language_model"
            else:
                outputs = answers
        guidance = {"weight": best, "weights": {f"{w:g}": figures for w, (_, figures) in tried.items()},
                    "head_decides": head_decides, "decided_by": config.label_decision, "decision": decision,
                    "rule": GUIDANCE_RULE}
    lm_logits = answer_logits(outputs, names, SOURCE_KEYS["language_model"])
    sources = {"language_model": _source_figures(lm_logits, labels), **sources}
    log_likelihoods = {"language_model": _log_likelihoods(lm_logits, labels, sources["language_model"]["temperature"])}
    if "emotion_head" in sources:
        log_likelihoods["emotion_head"] = _log_likelihoods(answer_logits(outputs, names, SOURCE_KEYS["emotion_head"]),
                                                           labels, sources["emotion_head"]["temperature"])
    chosen, comparison = choose_label_source(log_likelihoods, trial_keys(validation), seed, by_subject)
    config.label_temperature = sources["language_model"]["temperature"]
    config.label_probabilities = chosen
    config.label_calibration = {"chosen": chosen, "n_windows": len(outputs), "sources": sources,
                                "comparison": comparison, "rule": SOURCE_RULE, "label_guidance": guidance}
    return config.label_calibration

__all__ = ["GUIDANCE_RULE", "SOURCE_KEYS", "SOURCE_RULE", "TEMPERATURE_BOUNDS", "answer_logits", "answered_label_figures",
           "balanced_correct", "calibrate_label_sources", "calibration_summary", "choose_label_source",
           "compare_label_deciders", "fit_temperature",
           "logits_from_probs", "validation_answers", "validation_temperature"]
