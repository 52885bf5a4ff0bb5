"""What rationales are relative to and what they cite: the evidence reference of training windows, and the
rationale and description texts built from it.

`EvidenceReference` holds, from training windows only, each subject's mean band power (the baseline the evidence is
relative to), each feature's spread, the labels' class signatures (`e2llm.label_evidence_e2llm.class_signatures`),
the mean band power per channel (the reference a model ships) and the training ranges of the abstention statistics;
`EvidenceReference.statistics` writes what a model ships with its processor (interface 3). `label_rationale` is the
stage-3 rationale of a window for a label: the measured items that favour the label against its alternatives, in
the fixed claim grammar without numbers, and the label-support sentence (``...; so the evidence favours sadness over
fear.``); `description_text` the stage-2 description (no label).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from e2llm.eeg_evidence_features import (
    BAND_NAMES,
    REGIONS,
    Claim,
    EvidenceFeatures,
    band_power_db,
    evidence_features,
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
from e2llm.processing.dataset_io import dataset_metadata

RATIONALE_OPENING = "Relative to baseline: "

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
    """A rationale from its claims, without numbers (the pipeline renders them from measurement): ``The evidence
    favours <label> over <against>. Relative to baseline: claim; claim.`` (the label first, then the evidence for it),
    or without `label` the claims alone (stage-2 descriptions)."""
    clauses = [claim_words(c) for c in claims]
    if label is not None and selection is not None:
        opening = f"{format_label_support(label, selection['against'], selection['favoured'])}. {RATIONALE_OPENING}"
        if not clauses:
            return f"{opening}no measured feature speaks for {label} over {selection['against']}."
        return opening + "; ".join(clauses) + "."
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


class WindowEvidenceCache:
    """Each window's band power (dB) and `window_statistics`, keyed by the window's samples (a hash of its bytes), the
    sampling rate and the channel names; at most `max_windows` windows, the least recently used dropped first.

    The stages, the evaluation and the label-only rows read the evidence of the same windows again and again (stage
    2's reference and descriptions, stage 3's reference, conversations and label-only subset, the evaluation's
    reference and rationale checks): two Welch spectra per window each time. Keyed by content, a window is computed
    once per process whatever dataset, subset or order it comes in; the values are those of a fresh computation
    (each window's spectra are computed independently of the others in its batch)."""

    def __init__(self, max_windows: int = 50_000):
        self.max_windows = max_windows
        self._rows: OrderedDict[bytes, tuple[np.ndarray, dict]] = OrderedDict()

    def clear(self) -> None:
        self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def _key(window: np.ndarray, context: bytes) -> bytes:
        digest = hashlib.blake2b(np.ascontiguousarray(window).data, digest_size=20)
        digest.update(context)
        return digest.digest()

    def evidence(self, eeg: np.ndarray, sfreq: float, channel_names: Sequence[str]) -> tuple[np.ndarray, dict]:
        """`(power_db (n, n_bands, n_channels), window_stats {name: (n,)})` of windows `eeg` `(n, n_channels,
        n_times)`, computing only the windows not seen before."""
        context = repr((float(sfreq), tuple(channel_names), eeg.shape[1:], str(eeg.dtype))).encode()
        keys = [self._key(window, context) for window in eeg]
        missing = [i for i, key in enumerate(keys) if key not in self._rows]
        if missing:
            power = band_power_db(eeg[missing], sfreq)
            stats = window_statistics(eeg[missing], sfreq, channel_names)
            for j, i in enumerate(missing):
                self._rows[keys[i]] = (power[j], {name: values[j] for name, values in stats.items()})
        rows = [self._rows[key] for key in keys]
        for key in keys:
            self._rows.move_to_end(key)
        while len(self._rows) > self.max_windows:
            self._rows.popitem(last=False)
        return (np.stack([power for power, _ in rows]),
                {name: np.asarray([stats[name] for _, stats in rows]) for name in rows[0][1]})


WINDOW_EVIDENCE = WindowEvidenceCache()  # what `read_evidence_columns` reads windows through


def read_evidence_columns(dataset, batch_size: int = 256) -> dict:
    """Band power (dB) `(n, n_bands, n_channels)` and `window_statistics` of every window of a prepared dataset
    (reading `eeg` in chunks, each window computed once per process: `WINDOW_EVIDENCE`), with its
    ``channel_names``, ``sfreq``, ``label_names``, the ``labels``, ``subjects`` and ``ratings`` columns, and
    ``notes`` (the dataset's name and whether it is synthetic)."""
    metadata = dataset_metadata(dataset)
    sfreq, channel_names = float(metadata["sampling_rate"]), list(metadata["channel_names"])
    label_column = metadata.get("label_column") or "emotion"
    if label_column not in dataset.column_names:
        raise ValueError(f"the dataset has no label column {label_column!r} (columns: {dataset.column_names})")
    table = dataset.with_format("numpy")
    power, stats = [], []
    for i in range(0, len(dataset), batch_size):
        chunk_power, chunk_stats = WINDOW_EVIDENCE.evidence(table[i : i + batch_size]["eeg"], sfreq, channel_names)
        power.append(chunk_power)
        stats.append(chunk_stats)
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


__all__ = [
    "RATIONALE_OPENING",
    "WINDOW_EVIDENCE",
    "EvidenceReference",
    "WindowEvidenceCache",
    "channel_regions",
    "description_claims",
    "description_text",
    "evidence_reference",
    "label_evidence",
    "label_rationale",
    "rationale_text",
    "read_evidence_columns",
    "reference_from_columns",
]
