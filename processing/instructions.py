"""Instruction data for E2LLM: per-window conversations whose answers cite checkable features of that window.

Five tasks, each with its prompt templates defined once here (never per dataset):

* ``emotion`` — basic emotion recognition: a rationale, then ``Emotion: <label>``.
* ``label`` — the same prompts answered with ``Emotion: <label>`` alone, ``Emotion:`` given (``prefill``, never
  learned), so label scoring without a rationale (``return_rationale=False``) continues a context the model was
  trained on while generation still always starts with a rationale.
* ``multitask`` — emotion, valence, arousal and intensity, mutually consistent (a neutral emotion has
  neutral valence, low arousal and mild intensity; high arousal is at least moderately intense).
* ``scenario`` — zero-shot scenario understanding: which kind of situation (film clip) the EEG
  was recorded in. Some templates of every task are *held out*: they never appear in training and
  are used to test instruction-following on unseen phrasings.
* ``describe`` — stage-2 alignment pairs: EEG -> a description of its features, no label.

Rationales are built from the window's own evidence (`e2llm.eeg_evidence_features`) relative to an
`EvidenceReference` computed from training windows only: each subject's mean band power over its training
windows (the baseline), each feature's spread across training windows and the labels' class signatures. A rationale
cites the measured items that speak for the window's label against its alternatives under those signatures
(`e2llm.label_evidence_e2llm.select_label_evidence`: at most three, each with region, band, direction and a
magnitude bucket in spread units, never a number: the pipeline renders numbers from measurement) and ends with what
they show, e.g. ``...; so the evidence favours sadness over fear.`` (``only partly favours`` when the window's whole
evidence fits another label better). Claims about regions without channels are never written. The grammar is fixed,
so `e2llm.training.evaluation.rationales` can find each claim and the label it argues for in a generated answer and
check both against the signal and against the model.

The label set always comes from the dataset (its ``ClassLabel`` names); valence and arousal come
from rating columns when a dataset has them (DEAP, DREAMER: 1-9 scales), otherwise from the
affect table of known emotion names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from e2llm.answers import LABEL_KEY, format_answer
from e2llm.eeg_evidence_features import REGIONS, band_power_db, evidence_statement
from e2llm.processing.evidence_reference import (
    EvidenceReference,
    channel_regions,
    description_claims,
    description_text,
    evidence_reference,
    label_evidence,
    label_rationale,
    rationale_text,
    read_evidence_columns,
    reference_from_columns,
)

TASKS: tuple[str, ...] = ("emotion", "label", "multitask", "scenario", "describe")
# (valence, arousal) of emotion names; a dataset with other labels needs rating columns for multitask answers.
AFFECT: dict[str, tuple[str, str]] = {
    "happiness": ("positive", "high"), "happy": ("positive", "high"), "positive": ("positive", "high"),
    "sadness": ("negative", "low"), "sad": ("negative", "low"), "negative": ("negative", "high"),
    "fear": ("negative", "high"), "disgust": ("negative", "high"), "anger": ("negative", "high"),
    "surprise": ("positive", "high"), "neutral": ("neutral", "low"),
}
SCENARIOS: dict[str, str] = {
    "happiness": "a comedy or uplifting film clip", "happy": "a comedy or uplifting film clip",
    "positive": "a comedy or uplifting film clip", "sadness": "a tragic or mournful film clip",
    "sad": "a tragic or mournful film clip", "negative": "a distressing film clip",
    "fear": "a horror or threatening film clip", "disgust": "a repulsive or gross-out film clip",
    "anger": "a film clip showing injustice or provocation", "surprise": "a film clip with an unexpected twist",
    "neutral": "a calm documentary clip",
}
VALENCES: tuple[str, ...] = ("positive", "negative", "neutral")
AROUSALS: tuple[str, ...] = ("high", "low")
INTENSITIES: tuple[str, ...] = ("mild", "moderate", "strong")
MULTITASK_FIELDS: dict[str, tuple[str, ...]] = {"Valence": VALENCES, "Arousal": AROUSALS, "Intensity": INTENSITIES}
STRONG_DEVIATION_DB = 3.0  # a window deviating this much from baseline raises the intensity one level


@dataclass(frozen=True)
class PromptTemplate:
    """One phrasing of a task's user prompt; `held_out` templates are never used for training."""

    task: str
    text: str
    held_out: bool = False


TEMPLATES: tuple[PromptTemplate, ...] = (
    PromptTemplate("emotion", "Which emotion does this EEG show? Explain your reasoning from the signal, then answer."),
    PromptTemplate("emotion", "Read this EEG recording and tell me which emotion the person feels, with your reasons."),
    PromptTemplate("emotion", "What is the emotional state behind this brain activity? Reason step by step.", True),
    PromptTemplate("multitask", "Analyse this EEG: give the emotion, its valence, arousal and intensity, with reasons."),
    PromptTemplate("multitask", "From this EEG, reason about the feeling, then state emotion, valence, arousal and intensity."),
    PromptTemplate("multitask", "Describe the affect in this EEG along emotion, valence, arousal and intensity.", True),
    PromptTemplate("scenario", "What kind of situation was this person in when this EEG was recorded? Explain."),
    PromptTemplate("scenario", "Guess the kind of film clip the viewer was watching during this EEG, with reasons."),
    PromptTemplate("scenario", "Imagine the scene that evoked this EEG. What was it, and which emotion did it cause?", True),
    PromptTemplate("describe", "Describe the features of this EEG recording."),
    PromptTemplate("describe", "Summarise the band powers and asymmetry of this EEG window."),
)


def templates_for(task: str, split: str = "train") -> list[PromptTemplate]:
    """The templates of `task`; `split` is "train" (not held out), "heldout" or "all"."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {TASKS}")
    if task == "label":  # label-only answers to the emotion prompts
        task = "emotion"
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"template split must be 'train', 'heldout' or 'all', got {split!r}")
    chosen = [t for t in TEMPLATES if t.task == task and (split == "all" or t.held_out == (split == "heldout"))]
    if not chosen:
        raise ValueError(f"task {task!r} has no {split} templates")
    return chosen


def affect_of(label: str, ratings: Mapping[str, float] | None = None) -> tuple[str, str]:
    """(valence, arousal) of a window: from 1-9 ratings when given, otherwise from the `AFFECT` table."""
    if ratings and "valence" in ratings and "arousal" in ratings:
        valence = "positive" if ratings["valence"] > 5 else "negative"
        return valence, "high" if ratings["arousal"] > 5 else "low"
    if label.lower() not in AFFECT:
        raise ValueError(
            f"no valence/arousal known for label {label!r}: multitask answers need 'valence' and 'arousal' rating "
            f"columns in the dataset, or labels among {sorted(AFFECT)}"
        )
    return AFFECT[label.lower()]


def intensity_of(valence: str, arousal: str, max_deviation_db: float) -> str:
    """Intensity consistent with valence and arousal, raised one level by a strong deviation from baseline."""
    if valence == "neutral":
        return "mild"
    level = 1 if arousal == "high" else 0
    if max_deviation_db >= STRONG_DEVIATION_DB:
        level += 1
    return INTENSITIES[min(level, 2)]


def answer_fields(task: str, label: str, max_deviation_db: float, ratings=None) -> dict[str, str]:
    """The ``Key: value`` fields of an answer for `task`."""
    if task in ("emotion", "label"):
        return {"Emotion": label}
    if task == "multitask":
        valence, arousal = affect_of(label, ratings)
        if label.lower() == "neutral":
            valence, arousal = "neutral", "low"
        intensity = intensity_of(valence, arousal, max_deviation_db)
        return {"Emotion": label, "Valence": valence, "Arousal": arousal, "Intensity": intensity}
    if task == "scenario":
        if label.lower() not in SCENARIOS:
            raise ValueError(f"no scenario known for label {label!r}; scenario answers know {sorted(SCENARIOS)}")
        return {"Scenario": SCENARIOS[label.lower()], "Emotion": label}
    raise ValueError(f"task {task!r} has no answer fields")


def conversation(prompt: str, completion: str | None = None) -> list[dict]:
    """Chat messages: a user turn with one EEG part and `prompt`, then (if given) the assistant's `completion`."""
    messages = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": prompt}]}]
    if completion is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": completion}]})
    return messages


def build_instructions(
    dataset,
    tasks: Sequence[str] | Mapping[str, float] = ("emotion",),
    template_split: str = "train",
    seed: int = 0,
    batch_size: int = 256,
    reference: EvidenceReference | None = None,
    evidence_in_prompt: bool = False,
    evidence_strongest: int | None = None,
):
    """Add one instruction per window to a prepared dataset (see `e2llm.processing.dataset_io`).

    Each window gets one task drawn from `tasks` (a list: uniform; a mapping: weights) and one of that task's
    templates of `template_split` ("train" for training data, "heldout" for zero-shot evaluation, "all"), both seeded.
    Rationales are relative to `reference` (default: computed from `dataset` itself, which must then be training
    windows). Returns the dataset with string columns `task`, `prompt`, `completion` (the assistant text, via
    `e2llm.answers.format_answer`), `rationale` and `prefill` (the start of `completion` that is given to the model
    rather than learned: ``Emotion:`` for ``label`` rows, so they teach the label after that line but never to
    answer without a rationale; empty otherwise). With `evidence_in_prompt`, every prompt but the ``describe`` ones
    ends with the window's measured evidence (`e2llm.eeg_evidence_features.evidence_statement`: every feature in
    its fixed order, or with `evidence_strongest` the largest deviations first) on a new line, as the `eeg-emotion`
    pipeline writes it for a model whose evidence statistics say so (``prompt``).
    """
    task_names, probabilities = _task_weights(tasks, template_split)
    columns = read_evidence_columns(dataset, batch_size)
    if reference is None:
        reference = reference_from_columns(columns)
    elif list(reference.channel_names) != columns["channel_names"]:
        raise ValueError("the evidence reference was computed on other channels than the dataset's")
    features = reference.features(columns["power_db"], columns["subjects"])
    rng = np.random.default_rng(seed)
    drawn_tasks = rng.choice(len(task_names), size=len(dataset), p=probabilities)
    draws = rng.random(len(dataset))
    max_deviation = np.nan_to_num(np.abs(features.power)).max(axis=(1, 2))
    rows = {"task": [], "prompt": [], "completion": [], "rationale": [], "prefill": []}
    for i in range(len(dataset)):  # text is assembled per window; the features above are computed in batches
        task = task_names[drawn_tasks[i]]
        candidates = templates_for(task, template_split)
        prompt = candidates[int(draws[i] * len(candidates))].text
        if evidence_in_prompt and task != "describe":
            prompt += "\n" + evidence_statement(features, reference.spread, i, evidence_strongest)
        completion, rationale, prefill = _answer(task, i, reference, features, columns, float(max_deviation[i]))
        for key, value in zip(rows, (task, prompt, completion, rationale, prefill)):
            rows[key].append(value)
    for key, values in rows.items():
        if key in dataset.column_names:
            dataset = dataset.remove_columns(key)
        dataset = dataset.add_column(key, values)
    return dataset


def _task_weights(tasks, template_split: str) -> tuple[list[str], np.ndarray]:
    """Task names and their draw probabilities (a list: uniform; a mapping: weights), checked."""
    weights = dict(tasks) if isinstance(tasks, Mapping) else {task: 1.0 for task in tasks}
    if not weights:
        raise ValueError("tasks is empty")
    for task in weights:
        templates_for(task, template_split)  # validates the task and that it has templates in this split
    probabilities = np.asarray(list(weights.values()), dtype=np.float64)
    if np.any(probabilities < 0) or probabilities.sum() <= 0:
        raise ValueError(f"task weights must be non-negative with a positive sum, got {weights}")
    return list(weights), probabilities / probabilities.sum()


def _answer(task: str, i: int, reference, features, columns: Mapping, max_deviation: float) -> tuple[str, str, str]:
    """`(completion, rationale, prefill)` of window `i` for `task`."""
    if task == "describe":
        return description_text(reference, features, i), "", ""
    label = columns["label_names"][int(columns["labels"][i])]
    rating = {name: float(values[i]) for name, values in columns["ratings"].items()}
    fields = answer_fields(task, label, max_deviation, rating)
    if task == "label":  # given, not learned: the model never learns to skip its rationale, only the label after it
        return format_answer(fields, None), "", f"{LABEL_KEY}:"
    rationale = label_rationale(reference, features, i, label)
    return format_answer(fields, rationale), rationale, ""

__all__ = [
    "AFFECT",
    "MULTITASK_FIELDS",
    "REGIONS",
    "SCENARIOS",
    "TASKS",
    "TEMPLATES",
    "EvidenceReference",
    "PromptTemplate",
    "affect_of",
    "answer_fields",
    "band_power_db",
    "build_instructions",
    "channel_regions",
    "conversation",
    "description_claims",
    "description_text",
    "evidence_reference",
    "intensity_of",
    "label_evidence",
    "label_rationale",
    "rationale_text",
    "read_evidence_columns",
    "reference_from_columns",
    "templates_for",
]
