"""`evaluate_model`: one model on the held-out side of one split, next to baselines trained on the same split.

Steps: resolve the split (`splits.resolve_split`); refuse, before any inference, test windows whose trials the
model's provenance says it trained or validated on; answer the test windows (`runner.Evaluator`) for each task;
check the emotion answers' explanations against the signal and the model, run the conflict tests, calibration and
abstention checks (`explanations.explanation_checks`); score the encoder's emotion head (stage 1's, when the encoder
has an emotion token) on the same windows; train and test the baselines on the same windows. The returned run holds
every metric plus per-window predictions, so `summary.summarize` can pool runs (training seeds, folds) into
mean ± std, bootstrap intervals over trials and paired comparisons.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import pipeline

from e2llm.processing.dataset_io import dataset_metadata
from e2llm.processing.splits import SplitIndices, SplitSpec, check_split, resolve_split, trial_keys
from e2llm.training import provenance as prov
from e2llm.training.evaluation.baselines import BASELINES
from e2llm.training.evaluation.eraser import METHODS
from e2llm.training.evaluation.explanations import explanation_checks
from e2llm.training.evaluation.metrics import classification_metrics, expected_calibration_error
from e2llm.training.evaluation.report import write_report
from e2llm.training.evaluation.runner import EVAL_TASKS, Evaluator, _subject_baselines
from e2llm.training.evaluation.summary import summarize

AUTO = "auto"


@dataclass
class EvalOptions:
    """What `evaluate_model` measures and how.

    `prompt_seed` draws the prompt template of each window (one draw; it is not a training seed and never
    gives ±); `training_seed` is the seed the model was trained with (from its provenance when known) and
    seeds the baselines. `max_test_windows` evenly subsamples the test windows (quick runs only).
    `mismatched_eeg`: run the checks that give the model mismatched or perturbed inputs (conflict tests, ERASER,
    abstention; `explanations.explanation_checks`); `non_emotion_windows` per kind of non-emotion input;
    `eraser_methods`: how ERASER removes the cited evidence (`eraser.METHODS`: to the baseline, and a band-stop).
    """

    tasks: Sequence[str] = ("emotion",)
    baselines: Sequence[str] = ("de_logreg",)
    prompt_seed: int = 0
    training_seed: int | None = None
    self_consistency_samples: int = 0
    temperature: float = 1.0
    mismatched_eeg: bool = True
    batch_size: int = 8
    max_new_tokens: int = 128
    max_test_windows: int | None = None
    eegnet_epochs: int = 30
    fbcnet_epochs: int = 20
    non_emotion_windows: int = 20
    eraser_methods: Sequence[str] = ("reference", "band_stop")
    model_name: str = "e2llm"
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        unknown = [t for t in self.tasks if t not in EVAL_TASKS] + [b for b in self.baselines if b not in BASELINES]
        unknown += [m for m in self.eraser_methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown tasks/baselines/ERASER methods {unknown}; tasks: {EVAL_TASKS}, baselines: "
                             f"{tuple(BASELINES)}, ERASER methods: {METHODS}")


def _model_provenance(model, provenance):
    if provenance is not AUTO:
        return provenance
    folder = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
    return prov.read_provenance(folder) if folder and Path(folder).is_dir() else None


def test_rows(indices: SplitIndices, max_windows: int | None = None) -> np.ndarray:
    """The test rows evaluated: all, or `max_windows` evenly spaced ones."""
    test = indices.test
    if max_windows is not None and len(test) > max_windows:
        test = test[np.linspace(0, len(test) - 1, int(max_windows)).round().astype(int)]
    return test


def _baseline_metrics(name, train, test, labels, label_names, sfreq, seed, options) -> dict:
    extra = {"eegnet_v4": {"epochs": options.eegnet_epochs}, "fbcnet": {"epochs": options.fbcnet_epochs}}.get(name, {})
    result = BASELINES[name](train, test, sfreq=sfreq, n_labels=len(label_names), seed=int(seed), **extra)
    metrics = classification_metrics(labels.tolist(), result.y_pred.tolist(), label_names)
    metrics["ece"] = expected_calibration_error(result.probs, labels)
    confidence = result.probs.max(axis=1)
    metrics.update(predictions=result.y_pred.tolist(), confidence=confidence.tolist(),
                   mean_confidence=float(confidence.mean()), train_seconds=result.info["seconds"])
    return metrics


def _head_metrics(head_probs: np.ndarray, labels, label_names) -> dict:
    """The encoder's emotion head scored like a method (predictions and confidence per window)."""
    predicted = head_probs.argmax(1)
    metrics = classification_metrics(labels.tolist(), predicted.tolist(), label_names)
    metrics["ece"] = expected_calibration_error(head_probs, labels)
    confidence = head_probs.max(axis=1)
    metrics.update(predictions=predicted.tolist(), confidence=confidence.tolist(),
                   mean_confidence=float(confidence.mean()))
    return metrics


def _emotion_task(evaluator: Evaluator, options: EvalOptions, train, model, processor,
                  validation=None) -> tuple[dict, list, dict]:
    """The emotion answers' metrics, their outputs, and the explanation checks (or {})."""
    metrics, outputs = evaluator.task("emotion", options.prompt_seed)
    # label scoring straight after the prompt, no rationale (`return_rationale=False`, `--no-rationale`)
    label_only = evaluator.label_metrics(evaluator.run(evaluator.prompts("emotion", "train", options.prompt_seed),
                                                       return_rationale=False))
    metrics.update({f"label_only_{k}": label_only[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece")})
    checks = {}
    if options.mismatched_eeg:
        checks = explanation_checks(model, processor, evaluator, outputs, train, seed=options.prompt_seed,
                                    non_emotion=options.non_emotion_windows, validation=validation,
                                    eraser_methods=tuple(options.eraser_methods))
        metrics.update(checks["rationale"])
    return metrics, outputs, checks


def _llm_methods(evaluator: Evaluator, options: EvalOptions, label_names, train, model, processor,
                 validation=None) -> tuple[dict, list, dict]:
    methods, examples, checks = {}, [], {}
    for task in options.tasks:
        if task == "emotion":
            metrics, outputs, checks = _emotion_task(evaluator, options, train, model, processor, validation)
        else:
            metrics, outputs = evaluator.task(task, options.prompt_seed)
        methods[f"{options.model_name}/{task}"] = metrics
        examples += [{"task": task, "true": label_names[int(evaluator.labels[i])],
                      **{k: outputs[i][k] for k in ("label", "generated_text")}} for i in range(min(3, len(outputs)))]
    if options.self_consistency_samples > 0:
        name = f"{options.model_name}/emotion"
        agreement = evaluator.self_consistency(options.self_consistency_samples, options.prompt_seed,
                                               options.temperature)
        methods[name] = {**methods.get(name, {}), **{f"self_consistency_{k}": v for k, v in agreement.items()}}
    return methods, examples, checks


def _resolve(model, dataset, split, indices, options: EvalOptions, provenance) -> dict:
    """The checked split, labels and provenance of one evaluation; refuses trials the model trained on."""
    options.check()
    metadata = dataset_metadata(dataset)
    label_names = list(dataset.features[metadata.get("label_column") or "emotion"].names)
    if list(model.config.label_names) != label_names:
        raise ValueError(f"the model's labels {list(model.config.label_names)} differ from the dataset's {label_names}")
    indices = indices or resolve_split(dataset, split or SplitSpec())
    check_split(dataset, indices.training_side, indices.test)
    if len(indices.test) == 0 or len(indices.training_side) == 0:
        raise ValueError("the split leaves no training or no test windows")
    provenance = _model_provenance(model, provenance)
    overlap = prov.check_no_overlap(provenance, dataset, indices.test)  # before any inference
    seed = options.training_seed
    if seed is None:
        seeds = {r.get("seed") for r in (provenance or {}).get("stages", [])}
        seed = seeds.pop() if len(seeds) == 1 else 0
    return {"metadata": metadata, "label_names": label_names, "indices": indices, "provenance": provenance,
            "overlap": overlap, "rows": test_rows(indices, options.max_test_windows), "seed": int(seed)}


def _report(setup: dict, options: EvalOptions, run: dict, examples: list, test, started: float) -> dict:
    keys, indices = trial_keys(test), setup["indices"]
    run["windows"] = {"keys": keys.tolist(), "labels": run.pop("labels")}
    return {
        "model": options.model_name,
        "dataset": setup["metadata"]["dataset"],
        "synthetic": prov.is_synthetic(setup["metadata"]),
        "label_names": setup["label_names"],
        "split": {**indices.spec.as_dict(), "validation_kind": indices.validation_kind,
                  "n_train_windows": int(len(indices.training_side)), "n_test_windows": int(len(setup["rows"])),
                  "n_test_trials": int(len(np.unique(keys, axis=0))),
                  "test_subjects": sorted(int(s) for s in np.unique(keys[:, 0]))},
        "provenance": {**prov.summary(setup["provenance"]),
                       "overlap": {k: v for k, v in setup["overlap"].items() if k != "identity"}},
        "tasks": list(options.tasks),
        "prompt_seed": int(options.prompt_seed),
        "runs": [run],
        "examples": examples,
        "seconds": time.perf_counter() - started,
        **options.extra,
    }


def evaluate_model(model, processor, dataset, split: SplitSpec | None = None, options: EvalOptions | None = None, *,
                   indices: SplitIndices | None = None, provenance=AUTO, output_dir=None) -> dict:
    """Evaluate `model` (+ `processor`) on the test side of `split` (or of the given `indices`) of a prepared
    `dataset`; return the report (one run; `summary.summarize` adds intervals), written to `output_dir` if given.

    `provenance`: the model's provenance (dict), None (unknown: a warning in the report), or "auto" (read from
    the folder the model was loaded from). Test trials the model trained or validated on raise
    `ProvenanceOverlapError` before anything runs. The run's ``seconds`` say what each step took.
    """
    started = time.perf_counter()
    options = options or EvalOptions()
    setup = _resolve(model, dataset, split, indices, options, provenance)
    label_names, seed = setup["label_names"], setup["seed"]
    train, test = dataset.select(setup["indices"].training_side), dataset.select(setup["rows"])
    sfreq = float(setup["metadata"]["sampling_rate"])
    was_training = model.training
    model.eval()
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device=model.device)
    evaluator = Evaluator(pipe, test, setup["metadata"], label_names, options.batch_size, options.max_new_tokens,
                          _subject_baselines(train, test, sfreq))
    validation = dataset.select(setup["indices"].validation) if len(setup["indices"].validation) else None
    methods, examples, checks = _llm_methods(evaluator, options, label_names, train, model, processor, validation)
    seconds = {"language_model": round(time.perf_counter() - started, 1)}
    head_probs = checks.pop("head_probs", None)
    if head_probs is not None:
        methods["emotion_head"] = _head_metrics(head_probs, evaluator.labels, label_names)
    model.train(was_training)
    for name in options.baselines:
        methods[name] = _baseline_metrics(name, train, test, evaluator.labels, label_names, sfreq, seed, options)
        seconds[name] = round(methods[name]["train_seconds"], 1)
    run = {"seed": seed, "fold": setup["indices"].spec.fold, "methods": methods, "explanations": checks or None,
           "labels": evaluator.labels.tolist(), "seconds": seconds}
    report = _report(setup, options, run, examples, test, started)
    if output_dir is not None:
        report = summarize([report])
        report["files"] = write_report(report, output_dir)
    return report


__all__ = ["AUTO", "EvalOptions", "evaluate_model", "test_rows"]
