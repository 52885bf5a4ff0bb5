"""`e2llm evaluate`: score a model on held-out trials or subjects, next to baselines trained on the same split.

    e2llm evaluate --model runs/stage3 --data data/seed7 --split trial --tasks emotion multitask scenario \\
        --baselines de_logreg eegnet_v4 --self-consistency 5 --seeds 0 1 2 --output-dir runs/eval

The split (``trial``: whole trials per subject; ``subject``: leave one subject out; ``seed_vii``: SEED-VII's
official folds) comes from `e2llm.processing.splits`, so no trial has windows on both sides; pass the same
``--split/--fold/--test-size/--split-seed`` the model was trained with. The model answers the test windows
through the ``eeg-emotion`` pipeline with the task prompts of `e2llm.processing.instructions`:

* ``emotion``: accuracy, balanced accuracy, macro-F1, Cohen's kappa, per-class report, confusion matrix,
  parse rate (unparseable answers count as wrong, never mapped to a class), ECE of the label scores,
  rationale faithfulness (share of checkable feature claims that agree with the window's own features);
* ``multitask``: the same for the emotion, plus valence / arousal / intensity accuracy and the rate of
  complete, mutually consistent answers;
* ``scenario``: zero-shot scenario accuracy with prompt templates held out from training.

``--self-consistency N`` samples N answers per window (basic task) and reports their agreement. Baselines
(DE + logistic regression; EEGNet-v4) are trained on the training side of the same split and tested on the
same windows. Every seed is one run; ``report.json`` holds each run and mean ± std over runs, ``report.md``
the tables, and ``confusion_<method>.png`` the confusion matrices.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from e2llm.training.baselines import BASELINES
from e2llm.training.metrics import (
    aggregate_runs,
    classification_metrics,
    consistency_rate,
    expected_calibration_error,
    field_accuracy,
    self_consistency,
)

SPLITS = ("trial", "subject", "seed_vii")
SPLIT_ALIASES = {"seed-vii-folds": "seed_vii", "seed_vii_folds": "seed_vii", "loso": "subject"}
EVAL_TASKS = ("emotion", "multitask", "scenario")


def resolve_split(dataset, split: str = "trial", fold: int = 0, test_size: float = 0.25, split_seed: int = 0):
    """`(train_idx, test_idx)` row positions of `dataset` for a split by trial, subject or SEED-VII fold."""
    from e2llm.processing import splits

    split = SPLIT_ALIASES.get(split, split)
    if split == "trial":
        return splits.split_by_trial(dataset, test_size=test_size, seed=split_seed)
    if split == "subject":
        folds = list(splits.leave_one_subject_out(dataset))
    elif split == "seed_vii":
        folds = splits.seed_vii_folds(dataset)
    else:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold {fold} does not exist: split {split!r} has folds 0..{len(folds) - 1}")
    return folds[fold]


def _subject_baselines(train, test, sfreq: float, batch_size: int = 256) -> dict[int, np.ndarray]:
    """Each subject's mean band power in dB `(n_bands, n_channels)`: the baseline rationales are relative to.

    As in training (`build_instructions` on the training windows), it is the mean over the subject's training
    windows; a subject with none (leave-one-subject-out) gets the mean over its test windows. No label is used.
    """
    from e2llm.processing.instructions import band_power_db

    baselines = {}
    for part in (train, test):
        table = part.with_format("numpy")
        power = np.concatenate([band_power_db(table[i : i + batch_size]["eeg"], sfreq)
                                for i in range(0, len(part), batch_size)])
        subjects = np.asarray(table["subject"])
        for subject in np.unique(subjects):
            baselines.setdefault(int(subject), power[subjects == subject].mean(axis=0))
    return baselines


def multitask_consistent(fields: dict) -> bool:
    """Whether emotion, valence, arousal and intensity agree with each other (the rules the instructions follow)."""
    from e2llm.processing.instructions import AFFECT

    emotion, valence, arousal, intensity = (fields.get(k) for k in ("Emotion", "Valence", "Arousal", "Intensity"))
    if emotion is not None and emotion.lower() == "neutral":
        return (valence, arousal, intensity) == ("neutral", "low", "mild")
    if emotion is not None and emotion.lower() in AFFECT and (valence, arousal) != AFFECT[emotion.lower()]:
        return False
    if valence == "neutral":
        return intensity == "mild"
    return intensity in (("moderate", "strong") if arousal == "high" else ("mild", "moderate"))


class _Evaluator:
    """Runs the pipeline on the test windows of one dataset for the requested tasks, `chunk_size` windows at a time
    (only one chunk of EEG is in memory)."""

    def __init__(self, pipe, test, metadata, label_names, batch_size, max_new_tokens, subject_baseline,
                 chunk_size: int = 256):
        self.pipe, self.test, self.metadata, self.label_names = pipe, test, metadata, label_names
        self.batch_size, self.max_new_tokens, self.chunk_size = batch_size, max_new_tokens, chunk_size
        table = test.with_format("numpy").select_columns(
            [c for c in test.column_names if c != "eeg"]  # everything but the EEG is small
        )[:]
        self.labels = np.asarray(table[metadata.get("label_column") or "emotion"])
        self.subjects = np.asarray(table["subject"])
        self.ratings = {k: np.asarray(table[k]) for k in ("valence", "arousal") if k in test.column_names}
        self.subject_baseline = subject_baseline
        self.signal = {"sampling_rate": float(metadata["sampling_rate"]),
                       "channel_names": list(metadata["channel_names"]), "units": metadata["units"]}
        self._max_deviation = None

    def chunks(self):
        """`(start, eeg (n, n_channels, n_times) float32)` over the test windows."""
        table = self.test.with_format("numpy")
        for start in range(0, len(self.test), self.chunk_size):
            yield start, np.asarray(table[start : start + self.chunk_size]["eeg"], dtype=np.float32)

    def prompts(self, task: str, template_split: str, seed: int) -> list[str]:
        from e2llm.processing.instructions import templates_for

        templates = templates_for(task, template_split)
        draw = np.random.default_rng(seed).integers(len(templates), size=len(self.labels))
        return [templates[k].text for k in draw]

    def run(self, questions: Sequence[str], extra_fields=None, check_rationale: bool = False, **generate) -> list[dict]:
        """Pipeline outputs per test window; with `check_rationale`, each also gets its rationale's faithfulness."""
        from e2llm.processing.instructions import rationale_faithfulness

        outputs = []
        for start, eeg in self.chunks():
            items = [{"eeg": w, "question": q} for w, q in zip(eeg, questions[start : start + len(eeg)])]
            chunk = self.pipe(items, batch_size=self.batch_size, apply_filters=False, extra_fields=extra_fields,
                              max_new_tokens=self.max_new_tokens, **self.signal, **generate)
            if check_rationale:
                for window, output, subject in zip(eeg, chunk, self.subjects[start : start + len(eeg)]):
                    result = rationale_faithfulness(
                        output["rationale"], window, self.signal["channel_names"], self.signal["sampling_rate"],
                        baseline_db=self.subject_baseline[int(subject)],
                    ) if output["rationale"] else {"n_checkable": 0, "n_agreeing": 0}
                    output["faithfulness"] = {k: result[k] for k in ("n_checkable", "n_agreeing")}
            outputs += chunk
        return outputs

    def max_deviation(self) -> np.ndarray:
        """Largest regional band-power deviation (dB) from the subject's baseline per window, as
        `build_instructions` measures it for the intensity of multi-task answers."""
        from e2llm.processing.instructions import band_power_db, channel_regions

        if self._max_deviation is None:
            regions = channel_regions(self.signal["channel_names"]).T
            parts = []
            for start, eeg in self.chunks():
                power = band_power_db(eeg, self.signal["sampling_rate"])
                baselines = np.stack([self.subject_baseline[int(s)] for s in self.subjects[start : start + len(eeg)]])
                parts.append(np.abs((power - baselines) @ regions).max(axis=(1, 2)))
            self._max_deviation = np.concatenate(parts)
        return self._max_deviation

    def true_fields(self, task: str) -> list[dict]:
        from e2llm.processing.instructions import answer_fields

        return [answer_fields(task, self.label_names[int(y)], float(d),
                              {k: float(v[i]) for k, v in self.ratings.items()} or None)
                for i, (y, d) in enumerate(zip(self.labels, self.max_deviation()))]

    def label_metrics(self, outputs: list[dict]) -> dict:
        predicted = [o["label"] for o in outputs]
        metrics = classification_metrics(self.labels.tolist(), predicted, self.label_names)
        probs = np.array([[o["scores"][n] for n in self.label_names] for o in outputs])
        metrics["ece"] = expected_calibration_error(probs, self.labels)
        metrics["score_accuracy"] = float(np.mean(probs.argmax(1) == self.labels))
        return metrics

    @staticmethod
    def faithfulness(outputs: list[dict]) -> dict:
        checked = sum(o["faithfulness"]["n_checkable"] for o in outputs)
        agreeing = sum(o["faithfulness"]["n_agreeing"] for o in outputs)
        with_claims = sum(o["faithfulness"]["n_checkable"] > 0 for o in outputs)
        return {"faithfulness": agreeing / checked if checked else float("nan"), "n_checkable_claims": checked,
                "share_with_checkable_claims": with_claims / len(outputs)}

    def task(self, task: str, seed: int) -> dict:
        from e2llm.processing.instructions import MULTITASK_FIELDS, SCENARIOS

        if task == "emotion":
            outputs = self.run(self.prompts("emotion", "train", seed), check_rationale=True)
            return {**self.label_metrics(outputs), **self.faithfulness(outputs)}, outputs
        if task == "multitask":
            outputs = self.run(self.prompts("multitask", "train", seed), extra_fields=MULTITASK_FIELDS)
            truth = self.true_fields("multitask")
            predicted = [{"Emotion": o["label"], **o["fields"]} for o in outputs]
            metrics = self.label_metrics(outputs)
            metrics.update({f"{k.lower()}_accuracy": v for k, v in field_accuracy(truth, predicted, list(MULTITASK_FIELDS)).items()})
            metrics["consistency_rate"] = consistency_rate(predicted, multitask_consistent)
            return metrics, outputs
        if task == "scenario":
            choices = sorted({SCENARIOS[n.lower()] for n in self.label_names if n.lower() in SCENARIOS})
            if not choices:
                raise ValueError(f"no scenario is known for the labels {self.label_names}")
            outputs = self.run(self.prompts("scenario", "heldout", seed), extra_fields={"Scenario": choices})
            truth = self.true_fields("scenario")
            predicted = [o["fields"] for o in outputs]
            metrics = {"scenario_accuracy": field_accuracy(truth, predicted, ["Scenario"])["Scenario"],
                       "scenario_parse_rate": float(np.mean([p.get("Scenario") is not None for p in predicted]))}
            emotion = self.label_metrics(outputs)
            metrics.update({"emotion_accuracy": emotion["accuracy"], "parse_rate": emotion["parse_rate"]})
            return metrics, outputs
        raise ValueError(f"unknown evaluation task {task!r}; use {EVAL_TASKS}")

    def self_consistency(self, n_samples: int, seed: int, temperature: float) -> dict:
        questions = self.prompts("emotion", "train", seed)
        samples = []
        for k in range(n_samples):
            torch.manual_seed(seed * 1000 + k)
            samples.append([o["label"] for o in self.run(questions, do_sample=True, temperature=temperature)])
        return self_consistency([list(row) for row in zip(*samples)])


def evaluate_model(
    model,
    processor,
    dataset,
    *,
    split: str = "trial",
    fold: int = 0,
    test_size: float = 0.25,
    split_seed: int = 0,
    train_idx=None,
    test_idx=None,
    tasks: Sequence[str] = ("emotion",),
    baselines: Sequence[str] = ("de_logreg",),
    seeds: Sequence[int] = (0,),
    self_consistency_samples: int = 0,
    temperature: float = 1.0,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    max_test_windows: int | None = None,
    eegnet_epochs: int = 30,
    output_dir: str | Path | None = None,
    model_name: str = "e2llm",
) -> dict:
    """Evaluate `model` (+ `processor`) on the held-out side of a split of a prepared `dataset`; return the report.

    `train_idx`/`test_idx` (row positions) override `split`/`fold`/`test_size`/`split_seed`; either way the split
    is checked for trial leakage. `max_test_windows` evenly subsamples the test windows (for quick runs). With
    `output_dir`, writes ``report.json``, ``report.md`` and ``confusion_<method>.png`` there.
    """
    from transformers import pipeline

    from e2llm.processing.dataset_io import dataset_metadata
    from e2llm.processing.splits import check_split, trial_keys

    started = time.perf_counter()
    metadata = dataset_metadata(dataset)
    label_column = metadata.get("label_column") or "emotion"
    label_names = list(dataset.features[label_column].names)
    model_labels = list(model.config.label_names)
    if model_labels != label_names:
        raise ValueError(f"the model's labels {model_labels} differ from the dataset's {label_names}")
    unknown = [t for t in tasks if t not in EVAL_TASKS] + [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown tasks/baselines {unknown}; tasks: {EVAL_TASKS}, baselines: {tuple(BASELINES)}")
    if not seeds:
        raise ValueError("give at least one seed")
    if (train_idx is None) != (test_idx is None):
        raise ValueError("pass both train_idx and test_idx, or neither")
    split_kind = "given indices" if train_idx is not None else SPLIT_ALIASES.get(split, split)
    if train_idx is None:
        train_idx, test_idx = resolve_split(dataset, split, fold, test_size, split_seed)
    train_idx, test_idx = check_split(dataset, train_idx, test_idx)
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise ValueError("the split leaves no training or no test windows")
    if max_test_windows is not None and len(test_idx) > max_test_windows:
        test_idx = test_idx[np.linspace(0, len(test_idx) - 1, int(max_test_windows)).round().astype(int)]
    train, test = dataset.select(train_idx), dataset.select(test_idx)
    keys = trial_keys(test)
    sfreq = float(metadata["sampling_rate"])
    subject_baseline = _subject_baselines(train, test, sfreq)

    was_training = model.training
    model.eval()
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device=model.device)
    evaluator = _Evaluator(pipe, test, metadata, label_names, batch_size, max_new_tokens, subject_baseline)
    runs, examples = [], []
    for seed in seeds:
        run = {"seed": int(seed), "methods": {}}
        for task in tasks:
            metrics, outputs = evaluator.task(task, seed)
            run["methods"][f"{model_name}/{task}"] = metrics
            if seed == seeds[0]:
                examples += [{"task": task, "true": label_names[int(evaluator.labels[i])], **{
                    k: outputs[i][k] for k in ("label", "generated_text")}} for i in range(min(3, len(outputs)))]
        if self_consistency_samples > 0:
            run["methods"][f"{model_name}/emotion"] = {
                **run["methods"].get(f"{model_name}/emotion", {}),
                **{f"self_consistency_{k}": v for k, v in
                   evaluator.self_consistency(self_consistency_samples, seed, temperature).items()},
            }
        for name in baselines:
            extra = {"epochs": eegnet_epochs} if name == "eegnet_v4" else {}
            result = BASELINES[name](train, test, sfreq=sfreq, n_labels=len(label_names), seed=int(seed), **extra)
            metrics = classification_metrics(evaluator.labels.tolist(), result.y_pred.tolist(), label_names)
            metrics["ece"] = expected_calibration_error(result.probs, evaluator.labels)
            run["methods"][name] = {**metrics, "train_seconds": result.info["seconds"]}
        runs.append(run)
    model.train(was_training)

    methods = list(runs[0]["methods"])
    report = {
        "model": model_name,
        "dataset": metadata["dataset"],
        "label_names": label_names,
        "split": {
            "kind": split_kind,
            "fold": fold, "test_size": test_size, "split_seed": split_seed,
            "n_train_windows": int(len(train_idx)), "n_test_windows": int(len(test_idx)),
            "n_test_trials": int(len(np.unique(keys, axis=0))),
            "test_subjects": sorted(int(s) for s in np.unique(keys[:, 0])),
        },
        "tasks": list(tasks),
        "seeds": [int(s) for s in seeds],
        "summary": {m: aggregate_runs([r["methods"][m] for r in runs]) for m in methods},
        "runs": runs,
        "examples": examples,
        "seconds": time.perf_counter() - started,
    }
    if output_dir is not None:
        from e2llm.training.eval_report import write_report

        report["files"] = write_report(report, output_dir)
    return report


# ---------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", required=True, metavar="DIR",
                        help="model folder(s) or Hub id(s); several (e.g. one per training seed) give mean ± std")
    parser.add_argument("--data", required=True, metavar="DIR", help="a prepared dataset folder (`e2llm prepare`)")
    parser.add_argument("--split", default="trial", choices=[*SPLITS, *SPLIT_ALIASES],
                        help="trial: held-out trials per subject; subject: leave one subject out; seed_vii: official folds")
    parser.add_argument("--fold", type=int, default=0, help="fold (seed_vii) or held-out subject index (subject)")
    parser.add_argument("--test-size", type=float, default=0.25, help="share of each subject's trials tested (trial)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the trial split (same as in training)")
    parser.add_argument("--tasks", nargs="+", default=["emotion"], choices=EVAL_TASKS)
    parser.add_argument("--baselines", nargs="*", default=["de_logreg"], choices=list(BASELINES),
                        help="baselines trained on the same split (eegnet_v4 is slower)")
    parser.add_argument("--eegnet-epochs", type=int, default=30)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--self-consistency", type=int, default=0, metavar="N", help="sampled answers per window")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for self-consistency")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--max-test-windows", type=int, default=None, help="evenly subsample the test windows")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--output-dir", required=True, metavar="DIR")


def load_model(path: str, device: str | None = None, trust_remote_code: bool = False):
    """`(model, processor)` from a saved E2LLM folder or Hub id."""
    from transformers import AutoModelForCausalLM, AutoProcessor

    import e2llm  # noqa: F401  (registers the Auto classes and the pipeline)

    folder = Path(path)
    if (folder / "adapter_config.json").exists() and not (folder / "config.json").exists():
        raise ValueError(f"{path} holds a LoRA adapter, not a model: pass the merged model that stage 3 writes "
                         "next to it (OUTPUT/merged)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code).to(device)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    return model.eval(), processor


def run(args: argparse.Namespace) -> int:
    from e2llm.processing.dataset_io import load_prepared
    from e2llm.training.eval_report import combine_reports, write_report

    dataset = load_prepared(args.data)
    reports = []
    for i, path in enumerate(args.model):
        model, processor = load_model(path, args.device, args.trust_remote_code)
        reports.append(evaluate_model(
            model, processor, dataset, split=args.split, fold=args.fold, test_size=args.test_size,
            split_seed=args.split_seed, tasks=args.tasks, baselines=args.baselines if i == 0 else (),
            seeds=args.seeds, self_consistency_samples=args.self_consistency, temperature=args.temperature,
            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, max_test_windows=args.max_test_windows,
            eegnet_epochs=args.eegnet_epochs, model_name="e2llm",
        ))
    report = combine_reports(reports, [str(p) for p in args.model])
    report["files"] = write_report(report, args.output_dir)
    print(json.dumps({m: {k: v["mean"] for k, v in s.items() if k in ("accuracy", "balanced_accuracy", "macro_f1",
                                                                      "parse_rate")}
                      for m, s in report["summary"].items()}, indent=2))
    print(f"report written to {Path(args.output_dir) / 'report.md'}")
    return 0


__all__ = ["EVAL_TASKS", "SPLITS", "add_arguments", "evaluate_model", "load_model", "multitask_consistent",
           "resolve_split", "run"]
