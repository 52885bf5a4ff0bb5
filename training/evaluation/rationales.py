"""Are the rationales true of the EEG they explain? Faithfulness per claim type, next to controls from the same run.

A claim (`e2llm.eeg_evidence_features`: "beta power is higher over frontal channels (strongly, +3.1 dB)") agrees
with a window when the window's recomputed feature lies in the signed interval its direction and magnitude bucket
stand for (moderately higher: 1 to 2 spreads above the baseline), widened by `tolerance` spreads on each side; the
spread is that feature's SD over the training windows, so the tolerance is tied to how much the feature varies.

`rationale_report` scores a set of rationales against their windows and, in the same call, two uninformative
controls scored the same way: the same rationales shuffled across windows (a derangement) and the single most
frequent rationale given for every window. It also reports the share of distinct rationales, rationales with
duplicate or contradictory claims, and *label consistency*: whether the items a rationale cites, at the values
measured in its window, point to the label given after it under the class signatures
(`e2llm.label_evidence_e2llm.evidence_label`), next to the same rationales shuffled across windows. *Copying*:
`copy_report` measures how much of a rationale is the prompt's evidence line restated: the share of the rationale's
word 4-grams found in the prompt, and the share of rationales that cite exactly the first items of the line (what a
program that copies the line writes).

    >>> from e2llm.eeg_evidence_features import EvidenceFeatures
    >>> import numpy as np
    >>> feats = EvidenceFeatures(power=np.zeros((1, 5, 5)), de=np.zeros((1, 5)), faa=np.array([0.3]))
    >>> spread = np.ones(31)
    >>> check_claims("frontal alpha asymmetry is shifted right (slightly, +0.30)", feats, 0, spread)[0]["agrees"]
    True
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from e2llm.eeg_evidence_features import (
    BAND_NAMES,
    BUCKETS,
    CLAIM_KINDS,
    REGIONS,
    Claim,
    EvidenceFeatures,
    bucket_interval,
    feature_keys,
    format_claim,
    parse_claims,
)
from e2llm.label_evidence_e2llm import evidence_label, feature_id, parse_label_support
from e2llm.processing.instructions import evidence_reference, label_rationale, read_evidence_columns

TOLERANCE_SPREADS = 0.25  # a claim's interval is widened by this many spreads of its feature on each side


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


def cited_items(rationale: str | None) -> list[str]:
    """The evidence feature ids a rationale's claims are about, in order, each once."""
    return list(dict.fromkeys(feature_id(*claim.key) for claim in parse_claims(rationale)))


def label_consistency(rationales: Sequence[str | None], labels: Sequence[str | None], z: np.ndarray,
                      signatures: dict) -> float:
    """Share of (rationale citing a measured item, given label) pairs where the cited items, at the values measured
    in the window (`z` `(n_windows, n_features)` in spread units), point to the label under the class
    `signatures` (`evidence_label`). NaN when no rationale cites a measured item."""
    hits = []
    for i, (rationale, label) in enumerate(zip(rationales, labels)):
        pointed = evidence_label(z[i], signatures, cited_items(rationale)) if label is not None else None
        if pointed is not None:
            hits.append(pointed == label)
    return float(np.mean(hits)) if hits else float("nan")


def support_statement_report(rationales: Sequence[str | None], labels: Sequence[str | None],
                             label_names: Sequence[str]) -> dict:
    """How often a rationale ends with a label-support sentence (``so the evidence favours X over Y``), and how
    often its X is the label given after it."""
    stated = [parse_label_support(r, label_names) for r in rationales]
    matched = [s["label"] == label for s, label in zip(stated, labels) if s is not None and label is not None]
    return {"support_stated_share": float(np.mean([s is not None for s in stated])) if stated else float("nan"),
            "support_matches_label": float(np.mean(matched)) if matched else float("nan"),
            "support_partly_share": float(np.mean([s is not None and not s["favoured"] for s in stated]))
            if stated else float("nan")}


_NUMBER = r"(?P<value>[+-]?\d+(?:\.\d+)?)"
_LINE_ITEM = re.compile(rf"(?:(?P<region>{'|'.join(REGIONS)}) (?P<band>{'|'.join(BAND_NAMES)}) {_NUMBER} dB|"
                        rf"(?P<de>{'|'.join(BAND_NAMES)}) entropy {_NUMBER.replace('value', 'de_value')} nats|"
                        rf"(?P<faa>asymmetry) {_NUMBER.replace('value', 'faa_value')}) (?P<bucket>{'|'.join(BUCKETS)})")


def line_claims(line: str | None) -> list[Claim]:
    """The claims a measured-evidence line (`e2llm.eeg_evidence_features.evidence_statement`) states, in its order:
    ``frontal delta -0.7 dB slightly`` is the claim that delta power is lower over frontal channels (slightly)."""
    claims = []
    for m in _LINE_ITEM.finditer(line or ""):
        kind = "power" if m["region"] else "de" if m["de"] else "faa"
        value = float(m["value"] or m["de_value"] or m["faa_value"])
        band = m["band"] or m["de"] or "alpha"
        claim = Claim(kind, band, m["region"], 1 if value >= 0 else -1, m["bucket"], value)
        claims.append(Claim(**{**claim.__dict__, "text": format_claim(claim)}))
    return claims


def prompt_items(prompt: str | None) -> list[str]:
    """The evidence feature ids of a prompt's measured-evidence line, in the order written."""
    return [feature_id(*claim.key) for claim in line_claims(prompt)]


def _ngrams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z]+|[+-]?\d+(?:\.\d+)?", (text or "").lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def copy_report(rationales: Sequence[str | None], prompts: Sequence[str]) -> dict:
    """``ngram_copy_share`` (share of the rationales' word 4-grams found in their prompts) and
    ``first_items_share`` (share of rationales with claims that cite exactly the first items of the prompt's
    evidence line, in its order: what copying the line gives)."""
    found = total = 0
    first = []
    for rationale, prompt in zip(rationales, prompts):
        grams = _ngrams(rationale)
        found, total = found + len(grams & _ngrams(prompt)), total + len(grams)
        cited, line = cited_items(rationale), prompt_items(prompt)
        if cited and line:
            first.append(cited == line[: len(cited)])
    return {"ngram_copy_share": found / total if total else float("nan"),
            "first_items_share": float(np.mean(first)) if first else float("nan")}


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


def _score(rationales, labels, features, spread, z, signatures, tolerance) -> dict:
    checks = [check_claims(r, features, i, spread, tolerance) for i, r in enumerate(rationales)]
    return {**_faithfulness(checks), "label_consistency": label_consistency(rationales, labels, z, signatures)}


def rationale_report(rationales: Sequence[str | None], labels: Sequence[str | None], features: EvidenceFeatures,
                     spread: np.ndarray, signatures: dict, seed: int = 0,
                     tolerance: float = TOLERANCE_SPREADS) -> dict:
    """Faithfulness of `rationales` (one per window of `features`) with the label name each was followed by
    (`labels`, None when unparseable), next to the shuffled and most-frequent controls; see the module docstring.

    Returns flat keys: ``faithfulness`` (and ``faithfulness_power|de|faa``, claim counts), ``label_consistency``,
    ``support_stated_share``, ``support_matches_label``, ``distinct_share``, ``duplicate_share``,
    ``contradictory_share``, ``duplicate_or_contradictory_share``, ``claims_per_rationale``, and ``shuffled_*`` /
    ``most_frequent_*`` for the controls, and ``faithfulness_gap_vs_shuffled``.
    """
    rationales = [r or "" for r in rationales]
    n = len(rationales)
    if n != len(labels) or n != len(features.de):
        raise ValueError(f"{n} rationales, {len(labels)} labels and {len(features.de)} windows: give one each")
    if n < 2:
        raise ValueError("the shuffled control needs at least two windows")
    z = features.flat() / spread
    report = _score(rationales, labels, features, spread, z, signatures, tolerance)
    shuffled = [rationales[j] for j in derangement(n, np.random.default_rng(seed))]
    for name, value in _score(shuffled, labels, features, spread, z, signatures, tolerance).items():
        report[f"shuffled_{name}"] = value
    with_claims = [r for r in rationales if parse_claims(r)]
    if with_claims:
        mode = Counter(with_claims).most_common(1)[0][0]
        for name, value in _score([mode] * n, labels, features, spread, z, signatures, tolerance).items():
            report[f"most_frequent_{name}"] = value
    problems = [claim_problems(r) for r in rationales]
    report.update(
        support_statement_report(rationales, labels, signatures["labels"]),
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
                           seed: int = 0, tolerance: float = TOLERANCE_SPREADS, prompts: Sequence[str] | None = None,
                           reference=None) -> dict:
    """`rationale_report` of generated `rationales` and `predicted` label names for the windows of the prepared
    dataset `test`, relative to the `EvidenceReference` of `train` (or `reference`; training windows only; a test
    subject without training windows gets its own windows' mean as baseline), plus `copy_report` when the `prompts`
    are given. Adds ``gold_label_consistency``: the consistency of the rationales the training targets would give
    the test windows for their true labels (a ceiling)."""
    reference = reference or evidence_reference(train)
    columns = read_evidence_columns(test)
    features = reference.features(columns["power_db"], columns["subjects"])
    report = rationale_report(rationales, list(predicted), features, reference.spread, reference.signatures, seed,
                              tolerance)
    truth = [reference.label_names[int(y)] for y in columns["labels"]]
    gold = [label_rationale(reference, features, i, label) for i, label in enumerate(truth)]
    report["gold_label_consistency"] = label_consistency(gold, truth, reference.z(features), reference.signatures)
    if prompts is not None:
        report.update(copy_report([r or "" for r in rationales], prompts))
    return report


__all__ = ["TOLERANCE_SPREADS", "check_claims", "cited_items", "claim_problems", "copy_report", "derangement",
           "label_consistency", "line_claims", "prompt_items", "rationale_report", "split_rationale_report",
           "support_statement_report"]
