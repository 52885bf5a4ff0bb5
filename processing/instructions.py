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
windows (the baseline) and each feature's spread across training windows. A rationale states the two strongest
regional band-power deviations, the strongest differential-entropy deviation and frontal alpha asymmetry (when a
frontal pair is present), each at most once, with region, band, direction, a magnitude bucket in spread units
and the number; claims about regions without channels are never written. The grammar is fixed, so
`e2llm.training.evaluation.rationales` can find each claim in a generated answer and check it against the signal.

The label set always comes from the dataset (its ``ClassLabel`` names); valence and arousal come
from rating columns when a dataset has them (DEAP, DREAMER: 1-9 scales), otherwise from the
affect table of known emotion names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from e2llm.answers import LABEL_KEY, format_answer
from e2llm.eeg_evidence_features import (
    BAND_NAMES,
    REGIONS,
    Claim,
    EvidenceFeatures,
    band_power_db,
    evidence_features,
    evidence_statement,
    feature_keys,
    format_claim,
    make_claim,
    region_matrix,
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
N_POWER_CLAIMS = 2  # regional band-power claims per rationale (the strongest deviations in spread units)
RATIONALE_OPENING = "Relative to this subject's baseline: "


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


channel_regions = region_matrix  # `(n_regions, n_channels)` averaging matrix (one definition, re-exported)


@dataclass
class EvidenceReference:
    """What rationales are relative to, from training windows only.

    `baseline_db` maps a subject to its mean band power `(n_bands, n_channels)` dB over its training windows;
    `spread` `(n_features,)` is each feature's SD across training windows (columns of `EvidenceFeatures.flat`,
    NaN where a region has no channel); `centroids` `(n_labels, n_features)` is each label's mean feature in spread
    units (for label-rationale consistency).
    """

    channel_names: list[str]
    label_names: list[str]
    baseline_db: dict[int, np.ndarray]
    spread: np.ndarray
    centroids: np.ndarray
    notes: dict = field(default_factory=dict)

    @classmethod
    def from_training_windows(cls, power_db, subjects, labels, channel_names, label_names) -> EvidenceReference:
        """Reference from band power `(n, n_bands, n_channels)` dB of training windows, their subjects and labels."""
        power_db, subjects, labels = np.asarray(power_db), np.asarray(subjects).astype(int), np.asarray(labels)
        if len(power_db) == 0:
            raise ValueError("an evidence reference needs at least one training window")
        baseline = {int(s): power_db[subjects == s].mean(axis=0) for s in np.unique(subjects)}
        flat = evidence_features(power_db, channel_names, np.stack([baseline[int(s)] for s in subjects])).flat()
        spread = flat.std(axis=0)
        spread = np.where(np.isfinite(spread), np.maximum(spread, 1e-6), np.nan)
        z = flat / spread
        centroids = np.stack([z[labels == k].mean(axis=0) if np.any(labels == k) else np.zeros(z.shape[1])
                              for k in range(len(label_names))])
        return cls(list(channel_names), list(label_names), baseline, spread, np.nan_to_num(centroids),
                   {"baseline": "mean band power of each subject's training windows",
                    "spread": "SD of each feature over the training windows"})

    def baselines_for(self, subjects, power_db=None) -> np.ndarray:
        """Per-window baseline `(n, n_bands, n_channels)`; a subject without training windows (leave-one-subject-out)
        gets the mean of its own windows in `power_db` (the recording's own baseline; no label is used)."""
        subjects = np.asarray(subjects).astype(int)
        own = {}
        for s in np.unique(subjects):
            if int(s) not in self.baseline_db:
                if power_db is None:
                    raise ValueError(f"subject {s} has no training baseline; pass its windows' band power")
                own[int(s)] = np.asarray(power_db)[subjects == s].mean(axis=0)
        return np.stack([self.baseline_db.get(int(s), own.get(int(s))) for s in subjects])

    def features(self, power_db, subjects) -> EvidenceFeatures:
        """Evidence of windows `(n, n_bands, n_channels)` dB relative to their subjects' baselines."""
        return evidence_features(power_db, self.channel_names, self.baselines_for(subjects, power_db))

    def spread_of(self, kind: str, band: str | None = None, region: str | None = None) -> float:
        return float(self.spread[feature_keys().index((kind, band, region))])


def rationale_claims(reference: EvidenceReference, features: EvidenceFeatures, index: int,
                     n_power: int = N_POWER_CLAIMS) -> list[Claim]:
    """The claims of window `index`: its `n_power` strongest regional band-power deviations (in spread units,
    present regions only), its strongest differential-entropy deviation and its frontal alpha asymmetry."""
    n_regions = len(REGIONS)
    power_z = features.power[index] / reference.spread[: len(BAND_NAMES) * n_regions].reshape(len(BAND_NAMES), -1)
    order = [k for k in np.argsort(-np.nan_to_num(np.abs(power_z), nan=-1.0), axis=None) if np.isfinite(power_z.flat[k])]
    claims = []
    for flat in order[:n_power]:
        b, r = np.unravel_index(flat, power_z.shape)
        claims.append(make_claim("power", features.power[index, b, r], reference.spread_of("power", BAND_NAMES[b],
                                 REGIONS[r]), band=BAND_NAMES[b], region=REGIONS[r]))
    de_spread = np.array([reference.spread_of("de", band) for band in BAND_NAMES])
    if np.all(np.isfinite(features.de[index])):
        b = int(np.argmax(np.abs(features.de[index] / de_spread)))
        claims.append(make_claim("de", features.de[index, b], de_spread[b], band=BAND_NAMES[b]))
    if np.isfinite(features.faa[index]):
        claims.append(make_claim("faa", features.faa[index], reference.spread_of("faa", "alpha"), band="alpha"))
    return claims


def rationale_text(claims: Sequence[Claim]) -> str:
    """A rationale from its claims: ``Relative to this subject's baseline: claim; claim; ...``."""
    if not claims:
        return RATIONALE_OPENING + "no claim the recorded channels support."
    return RATIONALE_OPENING + "; ".join(format_claim(c) for c in claims) + "."


def description_claims(reference: EvidenceReference, features: EvidenceFeatures, index: int) -> list[Claim]:
    """Stage-2 target claims: every present region's strongest band deviation, the strongest DE deviation, FAA."""
    claims = []
    for r, region in enumerate(REGIONS):
        spreads = np.array([reference.spread_of("power", band, region) for band in BAND_NAMES])
        values = features.power[index, :, r]
        if not np.all(np.isfinite(values)):
            continue
        b = int(np.argmax(np.abs(values / spreads)))
        claims.append(make_claim("power", values[b], spreads[b], band=BAND_NAMES[b], region=region))
    return claims + [c for c in rationale_claims(reference, features, index, n_power=0)]


def description_text(reference: EvidenceReference, features: EvidenceFeatures, index: int) -> str:
    """The stage-2 description of window `index` (no label)."""
    return rationale_text(description_claims(reference, features, index))


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


def read_evidence_columns(dataset, batch_size: int = 256) -> dict:
    """Band power (dB) `(n, n_bands, n_channels)` of every window of a prepared dataset (reading `eeg` in chunks),
    with its ``channel_names``, ``sfreq``, ``label_names`` and the ``labels``, ``subjects`` and ``ratings`` columns."""
    from e2llm.processing.dataset_io import dataset_metadata

    metadata = dataset_metadata(dataset)
    sfreq, channel_names = float(metadata["sampling_rate"]), list(metadata["channel_names"])
    label_column = metadata.get("label_column") or "emotion"
    if label_column not in dataset.column_names:
        raise ValueError(f"the dataset has no label column {label_column!r} (columns: {dataset.column_names})")
    table = dataset.with_format("numpy")
    power = [band_power_db(table[i : i + batch_size]["eeg"], sfreq) for i in range(0, len(dataset), batch_size)]
    small = table.select_columns([c for c in dataset.column_names if c != "eeg"])[:]
    return {
        "power_db": np.concatenate(power) if power else np.zeros((0, len(BAND_NAMES), len(channel_names))),
        "channel_names": channel_names, "sfreq": sfreq,
        "label_names": list(dataset.features[label_column].names),
        "labels": np.asarray(small[label_column]), "subjects": np.asarray(small["subject"]),
        "ratings": {name: np.asarray(small[name]) for name in ("valence", "arousal") if name in dataset.column_names},
    }


def evidence_reference(dataset, batch_size: int = 256) -> EvidenceReference:
    """The `EvidenceReference` of a prepared dataset's windows (pass training windows only)."""
    columns = read_evidence_columns(dataset, batch_size)
    return EvidenceReference.from_training_windows(columns["power_db"], columns["subjects"], columns["labels"],
                                                   columns["channel_names"], columns["label_names"])


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
    ends with the window's measured evidence (`e2llm.eeg_evidence_features.evidence_statement`, `evidence_strongest`)
    on a new line, as the `eeg-emotion` pipeline writes it for a processor with `evidence_spread`.
    """
    weights = dict(tasks) if isinstance(tasks, Mapping) else {task: 1.0 for task in tasks}
    if not weights:
        raise ValueError("tasks is empty")
    for task in weights:
        templates_for(task, template_split)  # validates the task and that it has templates in this split
    probabilities = np.asarray(list(weights.values()), dtype=np.float64)
    if np.any(probabilities < 0) or probabilities.sum() <= 0:
        raise ValueError(f"task weights must be non-negative with a positive sum, got {weights}")
    columns = read_evidence_columns(dataset, batch_size)
    if reference is None:
        reference = EvidenceReference.from_training_windows(columns["power_db"], columns["subjects"],
                                                            columns["labels"], columns["channel_names"],
                                                            columns["label_names"])
    elif list(reference.channel_names) != columns["channel_names"]:
        raise ValueError("the evidence reference was computed on other channels than the dataset's")
    features = reference.features(columns["power_db"], columns["subjects"])
    rng = np.random.default_rng(seed)
    task_names = list(weights)
    drawn_tasks = rng.choice(len(task_names), size=len(dataset), p=probabilities / probabilities.sum())
    draws = rng.random(len(dataset))
    max_deviation = np.nan_to_num(np.abs(features.power)).max(axis=(1, 2))
    label_names, labels, ratings = columns["label_names"], columns["labels"], columns["ratings"]
    rows = {"task": [], "prompt": [], "completion": [], "rationale": [], "prefill": []}
    for i in range(len(dataset)):  # text is assembled per window; the features above are computed in batches
        task = task_names[drawn_tasks[i]]
        candidates = templates_for(task, template_split)
        prompt = candidates[int(draws[i] * len(candidates))].text
        if evidence_in_prompt and task != "describe":
            prompt += "\n" + evidence_statement(features, reference.spread, i, evidence_strongest)
        rationale, prefill = "", ""
        if task == "describe":
            completion = description_text(reference, features, i)
        else:
            rating = {name: float(values[i]) for name, values in ratings.items()}
            fields = answer_fields(task, label_names[int(labels[i])], float(max_deviation[i]), rating)
            if task != "label":
                rationale = rationale_text(rationale_claims(reference, features, i))
            else:  # given, not learned: the model never learns to skip its rationale, only the label after it
                prefill = f"{LABEL_KEY}:"
            completion = format_answer(fields, rationale or None)
        for key, value in zip(rows, (task, prompt, completion, rationale, prefill)):
            rows[key].append(value)
    for key, values in rows.items():
        if key in dataset.column_names:
            dataset = dataset.remove_columns(key)
        dataset = dataset.add_column(key, values)
    return dataset


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
    "rationale_claims",
    "rationale_text",
    "read_evidence_columns",
    "templates_for",
]
