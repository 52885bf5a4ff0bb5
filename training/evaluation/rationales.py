"""Are the rationales true of the EEG they explain? Faithfulness per claim type, next to controls from the same run.

A claim (`e2llm.eeg_evidence_features`: "beta power is higher over frontal channels (strongly, +3.1 dB)") agrees
with a window when the window's recomputed feature lies in the signed interval its direction and magnitude bucket
stand for (moderately higher: 1 to 2 spreads above the baseline), widened by `tolerance` spreads on each side; the
spread is that feature's SD over the training windows, so the tolerance is tied to how much the feature varies.

`rationale_report` scores a set of rationales against their windows and, in the same call, two uninformative
controls scored the same way: the same rationales shuffled across windows (a derangement) and the single most
frequent rationale given for every window. It also reports the share of distinct rationales, rationales with
duplicate or contradictory claims, and label–rationale consistency: whether the label given after a rationale is
the one whose training-set centroid (mean feature per label, in spread units) the rationale's claims point at.

    >>> from e2llm.eeg_evidence_features import EvidenceFeatures
    >>> import numpy as np
    >>> feats = EvidenceFeatures(power=np.zeros((1, 5, 5)), de=np.zeros((1, 5)), faa=np.array([0.3]))
    >>> spread = np.ones(31)
    >>> check_claims("frontal alpha asymmetry is shifted right (slightly, +0.30)", feats, 0, spread)[0]["agrees"]
    True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from e2llm.eeg_evidence_features import (
    BUCKETS,
    CLAIM_KINDS,
    EvidenceFeatures,
    bucket_interval,
    feature_keys,
    parse_claims,
)

TOLERANCE_SPREADS = 0.25  # a claim's interval is widened by this many spreads of its feature on each side
_BUCKET_MIDPOINT = {"slightly": 0.5, "moderately": 1.5, "strongly": 2.5}


def check_claims(rationale: str | None, features: EvidenceFeatures, index: int, spread: np.ndarray,
                 tolerance: float = TOLERANCE_SPREADS) -> list[dict]:
    """Each claim of `rationale` checked against window `index` of `features`; `spread` `(n_features,)` in the
    order of `feature_keys()`. A claim about a feature the window cannot give (an absent region, no frontal pair)
    is not checkable (``agrees`` None) and counted under ``unsupported``."""
    keys = feature_keys()
    results = []
    for claim in parse_claims(rationale):
        actual = features.value(claim, index)
        scale = float(spread[keys.index(claim.key)])
        checkable = bool(np.isfinite(actual) and np.isfinite(scale))
        agrees = None
        if checkable:
            lo, hi = bucket_interval(claim.bucket, claim.direction)
            agrees = bool((lo - tolerance) * scale <= actual <= (hi + tolerance) * scale)
        results.append({"kind": claim.kind, "key": claim.key, "claim": claim, "actual": actual if checkable else None,
                        "checkable": checkable, "agrees": agrees})
    return results


def claim_problems(rationale: str | None) -> dict:
    """Duplicates (two claims about one feature) and contradictions (one feature in two directions, or a stated
    number whose sign contradicts its direction word) in one rationale."""
    claims = parse_claims(rationale)
    keys = Counter(c.key for c in claims)
    directions: dict[tuple, set] = {}
    for c in claims:
        directions.setdefault(c.key, set()).add(c.direction)
    contradictory = any(len(d) > 1 for d in directions.values()) or any(
        c.value is not None and c.value != 0 and (c.value > 0) != (c.direction > 0) for c in claims)
    return {"duplicate": any(n > 1 for n in keys.values()), "contradictory": contradictory}


def _faithfulness(checks: Sequence[list[dict]]) -> dict:
    """Share of checkable claims that agree, overall and per claim type."""
    flat = [c for window in checks for c in window]
    out = {}
    for kind in (None, *CLAIM_KINDS):
        chosen = [c for c in flat if c["checkable"] and (kind is None or c["kind"] == kind)]
        agreeing = sum(c["agrees"] for c in chosen)
        value = agreeing / len(chosen) if chosen else float("nan")
        if kind is None:
            out.update(faithfulness=value, n_checkable_claims=len(chosen),
                       n_unsupported_claims=sum(not c["checkable"] for c in flat))
        else:
            out[f"faithfulness_{kind}"] = value
            out[f"n_claims_{kind}"] = len(chosen)
    return out


def evidence_vector(rationale: str | None, spread: np.ndarray) -> np.ndarray:
    """`(n_features,)` what a rationale's claims say, in spread units (its number when stated, else the bucket's
    midpoint), 0 for features it does not mention."""
    keys = feature_keys()
    vector = np.zeros(len(keys))
    for claim in parse_claims(rationale):
        k = keys.index(claim.key)
        if claim.value is not None and np.isfinite(spread[k]):
            vector[k] = claim.value / spread[k]
        else:
            vector[k] = claim.direction * _BUCKET_MIDPOINT[claim.bucket]
    return vector


def label_consistency(rationales: Sequence[str | None], labels: Sequence[int | None], spread: np.ndarray,
                      centroids: np.ndarray) -> float:
    """Share of (rationale with claims, given label) pairs where the label is the one whose centroid `(n_labels,
    n_features)` best matches the rationale's evidence (largest dot product)."""
    hits = []
    for rationale, label in zip(rationales, labels):
        vector = evidence_vector(rationale, spread)
        if label is None or not vector.any():
            continue
        hits.append(int(np.argmax(centroids @ vector)) == int(label))
    return float(np.mean(hits)) if hits else float("nan")


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of `n` (n >= 2) with no fixed point."""
    permutation = rng.permutation(n)
    fixed = np.flatnonzero(permutation == np.arange(n))
    if len(fixed) == 1:
        other = (fixed[0] + 1) % n
        permutation[[fixed[0], other]] = permutation[[other, fixed[0]]]
    elif len(fixed) > 1:
        permutation[fixed] = permutation[np.roll(fixed, 1)]
    return permutation


def _score(rationales, labels, features, spread, centroids, tolerance) -> dict:
    checks = [check_claims(r, features, i, spread, tolerance) for i, r in enumerate(rationales)]
    return {**_faithfulness(checks), "label_consistency": label_consistency(rationales, labels, spread, centroids)}


def rationale_report(rationales: Sequence[str | None], labels: Sequence[int | None], features: EvidenceFeatures,
                     spread: np.ndarray, centroids: np.ndarray, seed: int = 0,
                     tolerance: float = TOLERANCE_SPREADS) -> dict:
    """Faithfulness of `rationales` (one per window of `features`) with the label each was followed by (`labels`,
    ids or None), next to the shuffled and most-frequent controls; see the module docstring.

    Returns flat keys: ``faithfulness`` (and ``faithfulness_power|de|faa``, claim counts), ``label_consistency``,
    ``distinct_share``, ``duplicate_share``, ``contradictory_share``, ``duplicate_or_contradictory_share``,
    ``claims_per_rationale``, and ``shuffled_*`` / ``most_frequent_*`` for the controls, and
    ``faithfulness_gap_vs_shuffled``.
    """
    rationales = [r or "" for r in rationales]
    n = len(rationales)
    if n != len(labels) or n != len(features.de):
        raise ValueError(f"{n} rationales, {len(labels)} labels and {len(features.de)} windows: give one each")
    if n < 2:
        raise ValueError("the shuffled control needs at least two windows")
    report = _score(rationales, labels, features, spread, centroids, tolerance)
    shuffled = [rationales[j] for j in derangement(n, np.random.default_rng(seed))]
    for name, value in _score(shuffled, labels, features, spread, centroids, tolerance).items():
        report[f"shuffled_{name}"] = value
    with_claims = [r for r in rationales if parse_claims(r)]
    if with_claims:
        mode = Counter(with_claims).most_common(1)[0][0]
        for name, value in _score([mode] * n, labels, features, spread, centroids, tolerance).items():
            report[f"most_frequent_{name}"] = value
    problems = [claim_problems(r) for r in rationales]
    report.update(
        faithfulness_gap_vs_shuffled=report["faithfulness"] - report["shuffled_faithfulness"],
        distinct_share=len(set(rationales)) / n,
        duplicate_share=float(np.mean([p["duplicate"] for p in problems])),
        contradictory_share=float(np.mean([p["contradictory"] for p in problems])),
        duplicate_or_contradictory_share=float(np.mean([p["duplicate"] or p["contradictory"] for p in problems])),
        claims_per_rationale=float(np.mean([len(parse_claims(r)) for r in rationales])),
        share_with_claims=len(with_claims) / n,
        tolerance_spreads=tolerance,
        buckets=list(BUCKETS),
    )
    return report


def split_rationale_report(rationales: Sequence[str | None], predicted: Sequence[str | None], train, test,
                           seed: int = 0, tolerance: float = TOLERANCE_SPREADS) -> dict:
    """`rationale_report` of generated `rationales` and `predicted` label names for the windows of the prepared
    dataset `test`, relative to the `EvidenceReference` of `train` (training windows only; a test subject without
    training windows gets its own windows' mean as baseline). Adds ``gold_label_consistency``: the same consistency
    for the rationales built from the test windows' own features, followed by their true labels (a ceiling)."""
    from e2llm.processing.instructions import (
        evidence_reference,
        rationale_claims,
        rationale_text,
        read_evidence_columns,
    )

    reference = evidence_reference(train)
    columns = read_evidence_columns(test)
    features = reference.features(columns["power_db"], columns["subjects"])
    index = {name: i for i, name in enumerate(reference.label_names)}
    ids = [index.get(label) if label is not None else None for label in predicted]
    report = rationale_report(rationales, ids, features, reference.spread, reference.centroids, seed, tolerance)
    gold = [rationale_text(rationale_claims(reference, features, i)) for i in range(len(columns["labels"]))]
    report["gold_label_consistency"] = label_consistency(gold, columns["labels"], reference.spread, reference.centroids)
    return report


__all__ = ["TOLERANCE_SPREADS", "check_claims", "claim_problems", "derangement", "evidence_vector", "label_consistency",
           "rationale_report", "split_rationale_report"]
