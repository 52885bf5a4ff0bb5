"""Instruction data for E2LLM: per-window conversations whose answers cite features of that window.

Four tasks, each with its prompt templates defined once here (never per dataset):

* ``emotion`` — basic emotion recognition: a rationale, then ``Emotion: <label>``.
* ``multitask`` — emotion, valence, arousal and intensity, mutually consistent (a neutral emotion has
  neutral valence, low arousal and mild intensity; high arousal is at least moderately intense).
* ``scenario`` — zero-shot scenario understanding: which kind of situation (film clip) the EEG
  was recorded in. Some templates of every task are *held out*: they never appear in training and
  are used to test instruction-following on unseen phrasings.
* ``describe`` — stage-2 alignment pairs: EEG -> a description of its features, no label.

Rationales are built from features of the window itself (vectorised over windows, with
`e2llm.processing.features`): band power in dB relative to the subject's baseline (the mean over
that subject's windows) per scalp region, the mean differential entropy of a band, and frontal
alpha asymmetry. Each claim is written in a fixed grammar so `rationale_faithfulness` can find it
again in a generated answer and check it against the signal.

The label set always comes from the dataset (its ``ClassLabel`` names); valence and arousal come
from rating columns when a dataset has them (DEAP, DREAMER: 1-9 scales), otherwise from the
affect table of known emotion names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from e2llm.answers import format_answer
from e2llm.electrodes import canonical_channel_name
from e2llm.processing.features import BAND_NAMES, BANDS, available_pairs, band_power, frontal_alpha_asymmetry

TASKS: tuple[str, ...] = ("emotion", "multitask", "scenario", "describe")
REGIONS: tuple[str, ...] = ("frontal", "central", "temporal", "parietal", "occipital")
# Letters of a 10-05 name (digits and the midline "z" removed) -> scalp region.
_REGION_OF_PREFIX = {
    "FP": "frontal", "AF": "frontal", "F": "frontal", "FC": "central", "C": "central", "FT": "temporal",
    "T": "temporal", "TP": "temporal", "CP": "parietal", "P": "parietal", "PO": "occipital", "O": "occipital",
    "CB": "occipital", "I": "occipital",
}
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
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"template split must be 'train', 'heldout' or 'all', got {split!r}")
    chosen = [t for t in TEMPLATES if t.task == task and (split == "all" or t.held_out == (split == "heldout"))]
    if not chosen:
        raise ValueError(f"task {task!r} has no {split} templates")
    return chosen


def channel_regions(channel_names: Sequence[str]) -> np.ndarray:
    """`(n_regions, n_channels)` float averaging matrix over `REGIONS` (rows of regions without channels are 0)."""
    matrix = np.zeros((len(REGIONS), len(channel_names)))
    for i, name in enumerate(channel_names):
        canonical = canonical_channel_name(name) or ""
        region = _REGION_OF_PREFIX.get(re.sub(r"[0-9z]", "", canonical).upper())
        if region is not None:
            matrix[REGIONS.index(region), i] = 1.0
    counts = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, counts, out=np.zeros_like(matrix), where=counts > 0)


@dataclass
class WindowFeatures:
    """Features of `n` windows: `power_db` `(n, n_bands, n_channels)` (10 log10 µV²), `relative_db` `(n, n_bands,
    n_regions)` against the baseline, `de` `(n, n_bands)` channel-mean differential entropy (nats), `faa` `(n,)`
    mean frontal alpha asymmetry ln(right) - ln(left) (NaN without frontal pairs)."""

    power_db: np.ndarray
    relative_db: np.ndarray
    de: np.ndarray
    faa: np.ndarray
    region_present: np.ndarray  # (n_regions,) bool


def band_power_db(windows_uv, sfreq: float, batch_size: int = 256) -> np.ndarray:
    """`(n, n_channels, n_times)` µV -> Welch band power `(n, n_bands, n_channels)` in dB, in chunks of windows."""
    windows = np.asarray(windows_uv)
    if windows.ndim == 2:
        windows = windows[None]
    chunks = [band_power(windows[i : i + batch_size], sfreq) for i in range(0, len(windows), batch_size)]
    power = np.concatenate(chunks) if chunks else np.zeros((0, len(BANDS), windows.shape[1]))
    return 10 * np.log10(np.maximum(power, 1e-12))


def window_features(power_db: np.ndarray, channel_names: Sequence[str], baseline_db: np.ndarray | None) -> WindowFeatures:
    """Features from band power in dB `(n, n_bands, n_channels)` and a baseline `(n_bands, n_channels)` (or per-window
    `(n, n_bands, n_channels)`; None: the windows' own mean)."""
    power_db = np.asarray(power_db, dtype=np.float64)
    if power_db.ndim != 3 or power_db.shape[1:] != (len(BANDS), len(channel_names)):
        raise ValueError(
            f"power_db must be (n_windows, {len(BANDS)} bands, {len(channel_names)} channels), got {power_db.shape}"
        )
    regions = channel_regions(channel_names)
    baseline = power_db.mean(axis=0) if baseline_db is None else np.asarray(baseline_db, dtype=np.float64)
    relative = (power_db - baseline) @ regions.T
    variance = 10 ** (power_db / 10)
    de = (0.5 * np.log(2 * np.pi * np.e * variance)).mean(axis=-1)
    if available_pairs(channel_names):
        alpha = variance[:, BAND_NAMES.index("alpha")]
        faa = frontal_alpha_asymmetry(alpha, channel_names).mean(axis=-1)
    else:
        faa = np.full(len(power_db), np.nan)
    return WindowFeatures(power_db, relative, de, faa, regions.sum(axis=1) > 0)


def subject_baselines(power_db: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """Per-window baseline `(n, n_bands, n_channels)`: the mean band power (dB) of that window's subject."""
    _, inverse = np.unique(np.asarray(subjects), return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((inverse.max() + 1, *power_db.shape[1:]))
    np.add.at(sums, inverse, power_db)
    return (sums / np.bincount(inverse)[:, None, None])[inverse]


def _signed(value: float, digits: int = 1) -> str:
    return f"{value:+.{digits}f}"


def rationale_text(features: WindowFeatures, index: int, n_claims: int = 2) -> str:
    """The rationale of window `index`: its `n_claims` largest regional deviations, its strongest-band DE and FAA."""
    relative = features.relative_db[index][:, features.region_present]
    regions = [r for r, present in zip(REGIONS, features.region_present) if present]
    order = np.argsort(-np.abs(relative), axis=None)[:n_claims]
    claims = []
    for flat in order:
        band, region = np.unravel_index(flat, relative.shape)
        value = relative[band, region]
        direction = "higher" if value >= 0 else "lower"
        claims.append(f"{BAND_NAMES[band]} power is {direction} over {regions[region]} channels ({_signed(value)} dB)")
    sentences = ["Relative to this subject's baseline, " + " and ".join(claims) + "."]
    top_band = BAND_NAMES[int(np.argmax(np.abs(relative).max(axis=1)))]
    sentences.append(
        f"Mean {top_band} differential entropy is {features.de[index, BAND_NAMES.index(top_band)]:.2f} nats."
    )
    faa = features.faa[index]
    if np.isfinite(faa):
        side = "right greater than left, approach" if faa >= 0 else "left greater than right, withdrawal"
        sentences.append(f"Frontal alpha asymmetry is {_signed(faa, 2)} ({side}).")
    return " ".join(sentences)


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
    if task == "emotion":
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


def description_text(features: WindowFeatures, index: int) -> str:
    """Stage-2 target: every present region's strongest deviation, the DE of each band and FAA; no label."""
    relative = features.relative_db[index]
    parts = []
    for r, region in enumerate(REGIONS):
        if not features.region_present[r]:
            continue
        band = int(np.argmax(np.abs(relative[:, r])))
        value = relative[band, r]
        direction = "higher" if value >= 0 else "lower"
        parts.append(f"{BAND_NAMES[band]} power is {direction} over {region} channels ({_signed(value)} dB)")
    text = "Relative to this subject's baseline, " + ", ".join(parts) + ". "
    text += "Mean differential entropy: " + ", ".join(
        f"{band} {features.de[index, b]:.2f}" for b, band in enumerate(BAND_NAMES)
    ) + " nats."
    if np.isfinite(features.faa[index]):
        text += f" Frontal alpha asymmetry is {_signed(features.faa[index], 2)}."
    return text


def conversation(prompt: str, completion: str | None = None) -> list[dict]:
    """Chat messages: a user turn with one EEG part and `prompt`, then (if given) the assistant's `completion`."""
    messages = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": prompt}]}]
    if completion is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": completion}]})
    return messages


def _read_columns(dataset, batch_size: int):
    """Band power (dB) of every window plus the label/subject/rating columns, reading `eeg` in chunks."""
    from e2llm.processing.dataset_io import dataset_metadata

    metadata = dataset_metadata(dataset)
    sfreq, channel_names = float(metadata["sampling_rate"]), list(metadata["channel_names"])
    label_column = metadata.get("label_column") or "emotion"
    if label_column not in dataset.column_names:
        raise ValueError(f"the dataset has no label column {label_column!r} (columns: {dataset.column_names})")
    label_names = list(dataset.features[label_column].names)
    table = dataset.with_format("numpy")
    power = [
        band_power_db(table[i : i + batch_size]["eeg"], sfreq) for i in range(0, len(dataset), batch_size)
    ]
    columns = {name: np.asarray(table[name]) for name in (label_column, "subject")}
    ratings = {name: np.asarray(table[name]) for name in ("valence", "arousal") if name in dataset.column_names}
    return np.concatenate(power), channel_names, label_names, columns[label_column], columns["subject"], ratings


def build_instructions(
    dataset,
    tasks: Sequence[str] | Mapping[str, float] = ("emotion",),
    template_split: str = "train",
    seed: int = 0,
    batch_size: int = 256,
):
    """Add one instruction per window to a prepared dataset (see `e2llm.processing.dataset_io`).

    Each window gets one task drawn from `tasks` (a list: uniform; a mapping: weights) and one of that task's
    templates of `template_split` ("train" for training data, "heldout" for zero-shot evaluation, "all"), both seeded.
    Baselines are per subject, over the windows of `dataset`. Returns the dataset with string columns `task`,
    `prompt`, `completion` (the assistant text, via `e2llm.answers.format_answer`) and `rationale`.
    """
    weights = dict(tasks) if isinstance(tasks, Mapping) else {task: 1.0 for task in tasks}
    if not weights:
        raise ValueError("tasks is empty")
    for task in weights:
        templates_for(task, template_split)  # validates the task and that it has templates in this split
    probabilities = np.asarray(list(weights.values()), dtype=np.float64)
    if np.any(probabilities < 0) or probabilities.sum() <= 0:
        raise ValueError(f"task weights must be non-negative with a positive sum, got {weights}")
    power, channel_names, label_names, labels, subjects, ratings = _read_columns(dataset, batch_size)
    features = window_features(power, channel_names, subject_baselines(power, subjects))
    rng = np.random.default_rng(seed)
    task_names = list(weights)
    drawn_tasks = rng.choice(len(task_names), size=len(dataset), p=probabilities / probabilities.sum())
    draws = rng.random(len(dataset))
    max_deviation = np.abs(features.relative_db).max(axis=(1, 2))
    rows = {"task": [], "prompt": [], "completion": [], "rationale": []}
    for i in range(len(dataset)):  # text is assembled per window; the features above are computed in batches
        task = task_names[drawn_tasks[i]]
        candidates = templates_for(task, template_split)
        prompt = candidates[int(draws[i] * len(candidates))].text
        if task == "describe":
            rationale, completion = "", description_text(features, i)
        else:
            rating = {name: float(values[i]) for name, values in ratings.items()}
            fields = answer_fields(task, label_names[int(labels[i])], float(max_deviation[i]), rating)
            rationale = rationale_text(features, i)
            completion = format_answer(fields, rationale)
        for key, value in zip(rows, (task, prompt, completion, rationale)):
            rows[key].append(value)
    for key, values in rows.items():
        if key in dataset.column_names:
            dataset = dataset.remove_columns(key)
        dataset = dataset.add_column(key, values)
    return dataset


_CLAIM_PATTERNS = {
    "relative_power": re.compile(
        r"(?P<band>delta|theta|alpha|beta|gamma) power is (?P<direction>higher|lower) over "
        r"(?P<region>frontal|central|temporal|parietal|occipital) channels \((?P<value>[+-]?\d+(?:\.\d+)?) dB\)",
        re.IGNORECASE,
    ),
    "differential_entropy": re.compile(
        r"(?P<band>delta|theta|alpha|beta|gamma) differential entropy is (?P<value>[+-]?\d+(?:\.\d+)?) nats",
        re.IGNORECASE,
    ),
    "asymmetry": re.compile(r"frontal alpha asymmetry is (?P<value>[+-]?\d+(?:\.\d+)?)", re.IGNORECASE),
}
DEFAULT_TOLERANCES = {"relative_power": 1.5, "differential_entropy": 0.25, "asymmetry": 0.15}


def rationale_faithfulness(
    rationale: str | None,
    window_uv,
    channel_names: Sequence[str],
    sfreq: float,
    baseline_db: np.ndarray | None = None,
    tolerances: Mapping[str, float] | None = None,
) -> dict:
    """Check the feature claims of a rationale against the window they describe.

    Claims are found in the grammar the builders write ("alpha power is lower over frontal channels (-1.8 dB)",
    "gamma differential entropy is 2.31 nats", "frontal alpha asymmetry is +0.21"). A claim is checkable when the
    signal allows recomputing it (relative power needs `baseline_db` `(n_bands, n_channels)`, the subject's mean band
    power in dB from `band_power_db`; asymmetry needs a frontal pair); it agrees when its direction/sign matches and
    its value is within the tolerance. `window_uv` is `(n_channels, n_times)` in µV.

    Returns ``{"n_claims", "n_checkable", "n_agreeing", "agreement" (None when nothing is checkable), "claims"}``.
    """
    tolerance = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    window = np.asarray(window_uv, dtype=np.float64)
    if window.ndim != 2 or window.shape[0] != len(channel_names):
        raise ValueError(f"window_uv must be ({len(channel_names)} channels, n_times), got shape {window.shape}")
    if baseline_db is not None and np.shape(baseline_db) != (len(BANDS), len(channel_names)):
        raise ValueError(f"baseline_db must be ({len(BANDS)}, {len(channel_names)}), got {np.shape(baseline_db)}")
    power = band_power_db(window, sfreq)
    features = window_features(power, channel_names, power[0] if baseline_db is None else baseline_db)
    claims = []
    for kind, pattern in _CLAIM_PATTERNS.items():
        for match in pattern.finditer(rationale or ""):
            claimed = float(match.group("value"))
            actual, checkable = None, True
            if kind == "relative_power":
                region = REGIONS.index(match.group("region").lower())
                checkable = baseline_db is not None and bool(features.region_present[region])
                if checkable:
                    actual = float(features.relative_db[0, BAND_NAMES.index(match.group("band").lower()), region])
                sign_ok = (match.group("direction").lower() == "higher") == (claimed >= 0)
            elif kind == "differential_entropy":
                actual = float(features.de[0, BAND_NAMES.index(match.group("band").lower())])
                sign_ok = True
            else:
                checkable = bool(np.isfinite(features.faa[0]))
                actual = float(features.faa[0]) if checkable else None
                sign_ok = True
            agrees = None
            if checkable:
                same_sign = kind == "differential_entropy" or (actual >= 0) == (claimed >= 0) or abs(actual) < 0.05
                agrees = bool(sign_ok and same_sign and abs(actual - claimed) <= tolerance[kind])
            claims.append({"kind": kind, "text": match.group(0), "claimed": claimed, "actual": actual,
                           "checkable": checkable, "agrees": agrees})
    checkable = [c for c in claims if c["checkable"]]
    agreeing = sum(bool(c["agrees"]) for c in checkable)
    return {
        "n_claims": len(claims),
        "n_checkable": len(checkable),
        "n_agreeing": agreeing,
        "agreement": agreeing / len(checkable) if checkable else None,
        "claims": claims,
    }


__all__ = [
    "AFFECT",
    "MULTITASK_FIELDS",
    "REGIONS",
    "SCENARIOS",
    "TASKS",
    "TEMPLATES",
    "PromptTemplate",
    "WindowFeatures",
    "DEFAULT_TOLERANCES",
    "affect_of",
    "answer_fields",
    "band_power_db",
    "build_instructions",
    "channel_regions",
    "conversation",
    "description_text",
    "intensity_of",
    "rationale_faithfulness",
    "rationale_text",
    "subject_baselines",
    "templates_for",
    "window_features",
]
