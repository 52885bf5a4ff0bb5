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
    make_claim,
    region_matrix,
)
from e2llm.label_evidence_e2llm import (
    abstention_ranges,
    claim_words,
    class_signatures,
    feature_ids,
    format_label_support,
    item_claim,
    select_label_evidence,
    window_statistics,
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
RATIONALE_OPENING = "Relative to baseline: "


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
    """What rationales are relative to and what they cite, from training windows only.

    `baseline_db` maps a subject to its mean band power `(n_bands, n_channels)` dB over its training windows;
    `spread` `(n_features,)` is each feature's SD across training windows (columns of `EvidenceFeatures.flat`, NaN
    where a region has no channel); `signatures` are the labels' class signatures in spread units
    (`e2llm.label_evidence_e2llm.class_signatures`); `reference_db` `(n_bands, n_channels)` is the mean band power
    over all training windows (the reference a model ships for inputs too short for their own mean); `abstention`
    holds the training ranges of `e2llm.label_evidence_e2llm.window_statistics` (None without them).
    """

    channel_names: list[str]
    label_names: list[str]
    baseline_db: dict[int, np.ndarray]
    spread: np.ndarray
    signatures: dict
    reference_db: np.ndarray
    abstention: dict | None = None
    notes: dict = field(default_factory=dict)

    @classmethod
    def from_training_windows(cls, power_db, subjects, labels, channel_names, label_names, window_stats=None,
                              notes=None) -> EvidenceReference:
        """Reference from band power `(n, n_bands, n_channels)` dB of training windows, their subjects and labels
        (and their `window_statistics`, for the abstention ranges)."""
        power_db, subjects, labels = np.asarray(power_db), np.asarray(subjects).astype(int), np.asarray(labels)
        if len(power_db) == 0:
            raise ValueError("an evidence reference needs at least one training window")
        baseline = {int(s): power_db[subjects == s].mean(axis=0) for s in np.unique(subjects)}
        flat = evidence_features(power_db, channel_names, np.stack([baseline[int(s)] for s in subjects])).flat()
        spread = flat.std(axis=0)
        spread = np.where(np.isfinite(spread), np.maximum(spread, 1e-6), np.nan)
        signatures = class_signatures(flat / spread, labels, label_names)
        notes = {"baseline": "mean band power of each subject's training windows",
                 "spread": "SD of each feature over the training windows", "n_windows": int(len(power_db)),
                 **(notes or {})}
        return cls(list(channel_names), list(label_names), baseline, spread, signatures, power_db.mean(axis=0),
                   abstention_ranges(window_stats) if window_stats is not None else None, notes)

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

    def z(self, features: EvidenceFeatures) -> np.ndarray:
        """`(n, n_features)` evidence in spread units (NaN where a feature is absent)."""
        return features.flat() / self.spread

    def spread_of(self, kind: str, band: str | None = None, region: str | None = None) -> float:
        return float(self.spread[feature_keys().index((kind, band, region))])

    def statistics(self, evidence_in_prompt: bool = False, strongest: int | None = None,
                   provenance: Mapping | None = None) -> dict:
        """The evidence statistics a model ships with its processor (`E2LLMProcessor(evidence_statistics=...)`):
        feature ids, spreads, the training windows' mean band power per channel, the class signatures, whether and
        how prompts carry the evidence line, the abstention ranges and the provenance (the reference's notes,
        updated with `provenance`: fingerprint, split...). JSON-ready."""
        def finite(values):
            return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).ravel()]

        known = {k: self.notes.get(k) for k in ("dataset", "synthetic", "n_windows")}
        known["synthetic"] = bool(known["synthetic"] or str(known["dataset"] or "").lower().startswith("synthetic"))
        return {
            "feature_ids": feature_ids(),
            "spread": finite(self.spread),
            "reference_power_db": {name: finite(self.reference_db[:, c]) for c, name in enumerate(self.channel_names)},
            "signatures": self.signatures,
            "prompt": {"evidence_in_prompt": bool(evidence_in_prompt),
                       "strongest": None if strongest is None else int(strongest)},
            "abstention": self.abstention,
            "provenance": {"fingerprint": None, "split": None, **known, **dict(provenance or {})},
        }


def label_evidence(reference: EvidenceReference, features: EvidenceFeatures, index: int,
                   label: str) -> tuple[list[Claim], dict]:
    """The claims a rationale for `label` cites in window `index`: the measured items that favour `label` against
    its alternatives under the class signatures (`e2llm.label_evidence_e2llm.select_label_evidence`), and that
    selection (``items``, ``against``, ``margin``, ``favoured``)."""
    z = reference.z(features)[index]
    selection = select_label_evidence(z, reference.signatures, label)
    values = dict(zip(feature_ids(), features.flat()[index]))
    spreads = dict(zip(feature_ids(), reference.spread))
    return [item_claim(item, values[item], spreads[item]) for item in selection["items"]], selection


def rationale_text(claims: Sequence[Claim], label: str | None = None, selection: Mapping | None = None) -> str:
    """A rationale from its claims, without numbers (the pipeline renders them from measurement): ``Relative to
    baseline: claim; claim; so the evidence favours <label> over <against>.``, or without `label` the claims alone
    (stage-2 descriptions)."""
    clauses = [claim_words(c) for c in claims]
    if label is not None and selection is not None:
        if not clauses:
            return f"{RATIONALE_OPENING}no measured feature speaks for {label} over {selection['against']}."
        clauses.append(format_label_support(label, selection["against"], selection["favoured"]))
    if not clauses:
        return RATIONALE_OPENING + "no claim the recorded channels support."
    return RATIONALE_OPENING + "; ".join(clauses) + "."


def label_rationale(reference: EvidenceReference, features: EvidenceFeatures, index: int, label: str) -> str:
    """The stage-3 rationale of window `index` for `label` (`label_evidence`, then `rationale_text`)."""
    claims, selection = label_evidence(reference, features, index, label)
    return rationale_text(claims, label, selection)


def description_claims(reference: EvidenceReference, features: EvidenceFeatures, index: int) -> list[Claim]:
    """Stage-2 target claims: every present region's strongest band deviation (in spread units), the strongest
    differential-entropy deviation and the frontal alpha asymmetry."""
    claims = []
    for r, region in enumerate(REGIONS):
        spreads = np.array([reference.spread_of("power", band, region) for band in BAND_NAMES])
        values = features.power[index, :, r]
        if not np.all(np.isfinite(values)):
            continue
        b = int(np.argmax(np.abs(values / spreads)))
        claims.append(make_claim("power", values[b], spreads[b], band=BAND_NAMES[b], region=region))
    de_spread = np.array([reference.spread_of("de", band) for band in BAND_NAMES])
    if np.all(np.isfinite(features.de[index])):
        b = int(np.argmax(np.abs(features.de[index] / de_spread)))
        claims.append(make_claim("de", features.de[index, b], de_spread[b], band=BAND_NAMES[b]))
    if np.isfinite(features.faa[index]):
        claims.append(make_claim("faa", features.faa[index], reference.spread_of("faa", "alpha"), band="alpha"))
    return claims


def description_text(reference: EvidenceReference, features: EvidenceFeatures, index: int) -> str:
    """The stage-2 description of window `index` (no label, no numbers)."""
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
    """Band power (dB) `(n, n_bands, n_channels)` and `window_statistics` of every window of a prepared dataset
    (reading `eeg` in chunks), with its ``channel_names``, ``sfreq``, ``label_names``, the ``labels``, ``subjects``
    and ``ratings`` columns, and ``notes`` (the dataset's name and whether it is synthetic)."""
    from e2llm.processing.dataset_io import dataset_metadata

    metadata = dataset_metadata(dataset)
    sfreq, channel_names = float(metadata["sampling_rate"]), list(metadata["channel_names"])
    label_column = metadata.get("label_column") or "emotion"
    if label_column not in dataset.column_names:
        raise ValueError(f"the dataset has no label column {label_column!r} (columns: {dataset.column_names})")
    table = dataset.with_format("numpy")
    power, stats = [], []
    for i in range(0, len(dataset), batch_size):
        eeg = table[i : i + batch_size]["eeg"]
        power.append(band_power_db(eeg, sfreq))
        stats.append(window_statistics(eeg, sfreq, channel_names))
    small = table.select_columns([c for c in dataset.column_names if c != "eeg"])[:]
    return {
        "power_db": np.concatenate(power) if power else np.zeros((0, len(BAND_NAMES), len(channel_names))),
        "window_stats": {k: np.concatenate([s[k] for s in stats]) for k in stats[0]} if stats else None,
        "channel_names": channel_names, "sfreq": sfreq,
        "label_names": list(dataset.features[label_column].names),
        "labels": np.asarray(small[label_column]), "subjects": np.asarray(small["subject"]),
        "ratings": {name: np.asarray(small[name]) for name in ("valence", "arousal") if name in dataset.column_names},
        "notes": {"dataset": metadata.get("dataset"), "synthetic": bool(metadata.get("synthetic", False))},
    }


def reference_from_columns(columns: Mapping) -> EvidenceReference:
    """The `EvidenceReference` of the windows `read_evidence_columns` read (pass training windows only)."""
    return EvidenceReference.from_training_windows(columns["power_db"], columns["subjects"], columns["labels"],
                                                   columns["channel_names"], columns["label_names"],
                                                   columns.get("window_stats"), columns.get("notes"))


def evidence_reference(dataset, batch_size: int = 256) -> EvidenceReference:
    """The `EvidenceReference` of a prepared dataset's windows (pass training windows only)."""
    return reference_from_columns(read_evidence_columns(dataset, batch_size))


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
        reference = reference_from_columns(columns)
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
                rationale = label_rationale(reference, features, i, label_names[int(labels[i])])
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
    "label_evidence",
    "label_rationale",
    "rationale_text",
    "read_evidence_columns",
    "reference_from_columns",
    "templates_for",
]
