"""The language model's side of an evaluation: its answers on the test windows, task by task.

`Evaluator` runs the ``eeg-emotion`` pipeline (its public call only) on the test windows, `chunk_size` windows at a
time (one chunk of EEG in memory), with the task prompts of `e2llm.processing.instructions`, and scores the
answers. What drives the answers (inputs swapped one at a time) is measured in `conflicts`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from e2llm.processing.instructions import (
    AFFECT,
    MULTITASK_FIELDS,
    SCENARIOS,
    answer_fields,
    band_power_db,
    channel_regions,
    templates_for,
)
from e2llm.training.evaluation.metrics import (
    classification_metrics,
    consistency_rate,
    expected_calibration_error,
    field_accuracy,
    self_consistency,
)
from e2llm.training.sharding import sharded_map

EVAL_TASKS = ("emotion", "multitask", "scenario")


def _subject_baselines(train, test, sfreq: float, batch_size: int = 256) -> dict[int, np.ndarray]:
    """Each subject's mean band power in dB `(n_bands, n_channels)`: the baseline rationales are relative to.

    As in training (`build_instructions` on the training windows), it is the mean over the subject's training
    windows; a subject with none (leave-one-subject-out) gets the mean over its test windows. No label is used.
    """
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
    emotion, valence, arousal, intensity = (fields.get(k) for k in ("Emotion", "Valence", "Arousal", "Intensity"))
    if emotion is not None and emotion.lower() == "neutral":
        return (valence, arousal, intensity) == ("neutral", "low", "mild")
    if emotion is not None and emotion.lower() in AFFECT and (valence, arousal) != AFFECT[emotion.lower()]:
        return False
    if valence == "neutral":
        return intensity == "mild"
    return intensity in (("moderate", "strong") if arousal == "high" else ("mild", "moderate"))


class Evaluator:
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

    def chunks(self, rows: np.ndarray | None = None):
        """`(start, eeg (n, n_channels, n_times) float32)` over the test windows (or over test rows `rows`, in
        that order: the EEG of window `rows[i]` is given to question i)."""
        table = self.test.with_format("numpy")
        for start in range(0, len(self.test), self.chunk_size):
            if rows is None:
                yield start, np.asarray(table[start : start + self.chunk_size]["eeg"], dtype=np.float32)
                continue
            wanted = np.asarray(rows[start : start + self.chunk_size])
            order = np.argsort(wanted, kind="stable")  # sorted reads are faster on Arrow
            eeg = np.asarray(table[wanted[order].tolist()]["eeg"], dtype=np.float32)
            yield start, eeg[np.argsort(order, kind="stable")]

    def prompts(self, task: str, template_split: str, seed: int) -> list[str]:
        templates = templates_for(task, template_split)
        draw = np.random.default_rng(seed).integers(len(templates), size=len(self.labels))
        return [templates[k].text for k in draw]

    def run(self, questions: Sequence[str], extra_fields=None, eeg_rows=None, **generate) -> list[dict]:
        """Pipeline outputs per test window; `eeg_rows` (test row per question) swaps in other windows' EEG."""
        outputs = []
        rows = np.arange(len(self.labels)) if eeg_rows is None else np.asarray(eeg_rows)
        for start, eeg in self.chunks(eeg_rows):
            # the subject's baseline: what a model with evidence prompts states each window's band power against
            items = [{"eeg": w, "question": q, "baseline_power": self.subject_baseline[int(self.subjects[row])]}
                     for w, q, row in zip(eeg, questions[start : start + len(eeg)], rows[start : start + len(eeg)])]
            # under `accelerate launch` each process answers a shard; every process gets all outputs, in order
            outputs += sharded_map(lambda part: self.pipe(
                part, batch_size=self.batch_size, apply_filters=False, extra_fields=extra_fields,
                max_new_tokens=self.max_new_tokens, **self.signal, **generate), items)
        return outputs

    def max_deviation(self) -> np.ndarray:
        """Largest regional band-power deviation (dB) from the subject's baseline per window, as
        `build_instructions` measures it for the intensity of multi-task answers."""
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
        return [answer_fields(task, self.label_names[int(y)], float(d),
                              {k: float(v[i]) for k, v in self.ratings.items()} or None)
                for i, (y, d) in enumerate(zip(self.labels, self.max_deviation()))]

    def predictions(self, outputs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """`(predicted label index (n,), -1 when unparseable; confidence (n,))`: the label score of the answer's
        label (the largest label score for an unparseable answer)."""
        index = {name: i for i, name in enumerate(self.label_names)}
        predicted = np.array([index.get(o["label"], -1) if o["label"] is not None else -1 for o in outputs])
        confidence = np.array([o["scores"][o["label"]] if o["label"] is not None else max(o["scores"].values())
                               for o in outputs])
        return predicted, confidence

    def label_metrics(self, outputs: list[dict]) -> dict:
        predicted = [o["label"] for o in outputs]
        metrics = classification_metrics(self.labels.tolist(), predicted, self.label_names)
        probs = np.array([[o["scores"][n] for n in self.label_names] for o in outputs])
        metrics["ece"] = expected_calibration_error(probs, self.labels)
        metrics["score_accuracy"] = float(np.mean(probs.argmax(1) == self.labels))
        pred, confidence = self.predictions(outputs)
        metrics["predictions"], metrics["confidence"] = pred.tolist(), confidence.tolist()
        metrics["mean_confidence"] = float(confidence.mean())
        return metrics

    def task(self, task: str, seed: int) -> dict:
        if task == "emotion":
            outputs = self.run(self.prompts("emotion", "train", seed))
            return self.label_metrics(outputs), outputs
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


__all__ = ["EVAL_TASKS", "Evaluator", "multitask_consistent"]
