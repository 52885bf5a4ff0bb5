"""Numbers by construction: the rationale a pipeline returns states only measured values.

The language model chooses which evidence to cite and how to reason from it to the label; it is never the source of a
number (and, where the pipeline completes its claims from measurement, `e2llm.claim_constraints_e2llm`, not of their
direction and strength words either). Each claim of the fixed grammar (`e2llm.eeg_evidence_features.parse_claims`, e.g. ``alpha power is lower over
frontal channels (strongly)``, the number optional) is linked to the window's measured item of the same feature and
rewritten with the measured value (``... (strongly, -5.5 dB)``), replacing any number the model wrote; the model's
direction and strength words stay, and the result records whether they agree with the measurement. A claim without a
measured item (a region without channels, an asymmetry without a frontal pair, a window without a reference) is
removed and counted, and so is any other number the text holds. A label-support sentence (``The evidence favours X
over Y``, or an earlier model's closing ``so the evidence favours X over Y``) that is not about the returned label, or
sets the label against itself, says nothing true of the answer: `check_label_support` removes it and says why.

`claim_agreement` gives the figure for reports: the share of parsed claims whose item exists and whose direction and
strength words agree with the measurement.

>>> items = [{"id": "power:alpha:frontal", "value": -5.53, "z": -2.1, "bucket": "strongly", "text": "-5.5 dB"}]
>>> out = ground_rationale("Relative to baseline: alpha power is lower over frontal channels (strongly, -1.5 dB); "
...                        "theta power is higher over occipital channels (slightly).", items)
>>> out.text
'Relative to baseline: alpha power is lower over frontal channels (strongly, -5.5 dB).'
>>> [(c["item"], c["direction_agrees"], c["bucket_agrees"]) for c in out.claims], out.removed_claims[0]["reason"]
([('power:alpha:frontal', True, True)], 'no measured item power:theta:occipital for this window')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .eeg_evidence_features import Claim, parse_claims
from .evidence_statistics_e2llm import feature_id
from .label_evidence_e2llm import parse_label_support

# A number standing on its own (not part of a name such as Fp1 or a word), with the unit it may carry.
_NUMBER = re.compile(r"(?<![\w.])[+-]?\d+(?:\.\d+)?(?:\s*(?:dB|nats|%|Hz|µV|uV))?(?![\w])")


@dataclass
class GroundedRationale:
    """The returned `text`, its `claims` (each linked to an item), the `removed_claims` and `removed_numbers`."""

    text: str | None
    claims: list[dict] = field(default_factory=list)
    removed_claims: list[dict] = field(default_factory=list)
    removed_numbers: list[str] = field(default_factory=list)


def render_claim(claim: Claim, item: dict) -> str:
    """The claim in the fixed grammar with the model's words and the measured value."""
    direction = {"power": ("higher", "lower"), "de": ("higher", "lower"), "faa": ("right", "left")}[claim.kind]
    word = direction[0] if claim.direction > 0 else direction[1]
    if claim.kind == "power":
        return f"{claim.band} power is {word} over {claim.region} channels ({claim.bucket}, {item['text']})"
    if claim.kind == "de":
        return f"{claim.band} differential entropy is {word} across the scalp ({claim.bucket}, {item['text']})"
    return f"frontal alpha asymmetry is shifted {word} ({claim.bucket}, {item['text']})"


def _link(claim: Claim, item: dict) -> dict:
    measured = 1 if item["value"] > 0 else -1 if item["value"] < 0 else 0
    return {"text": render_claim(claim, item), "item": item["id"], "direction_agrees": measured == claim.direction,
            "bucket_agrees": None if item.get("bucket") is None else item["bucket"] == claim.bucket}


def _drop(text: str, span: str) -> str:
    """`text` without the clause `span` and its separator, so the rest still reads as a list."""
    return re.sub(rf"(;\s*)?{re.escape(span)}(\s*;\s*)?", lambda m: "; " if m.group(1) and m.group(2) else "", text,
                  count=1)


def _strip_numbers(text: str, keep: Sequence[str]) -> tuple[str, list[str]]:
    """`text` without the numbers outside the rendered claims `keep`, and those numbers."""
    pieces, removed, position = [], [], 0
    spans = sorted((m.start(), m.end()) for claim in keep for m in re.finditer(re.escape(claim), text))
    for match in _NUMBER.finditer(text):
        if any(start <= match.start() < end for start, end in spans):
            continue
        pieces.append(text[position : match.start()])
        removed.append(match.group(0))
        position = match.end()
    pieces.append(text[position:])
    return re.sub(r"[ \t]{2,}", " ", "".join(pieces)), removed


REFERENCE_PHRASES = {"baseline": "the baseline recording", "baseline_power": "the given baseline",
                     "recording_mean": "this recording's mean", "model_reference": "the model's reference"}
_OPENING = re.compile(r"(?<!\w)Relative to [^:;.]{1,60}:")


def ground_rationale(rationale: str | None, items: Sequence[dict], missing_reason: str | None = None,
                     reference_kind: str | None = None) -> GroundedRationale:
    """`rationale` with every claim linked to its measured item in `items` and rendered with the measured value;
    claims without an item removed (`missing_reason` says why when the window has no items at all). An opening
    ``Relative to ...:`` names the reference the window was measured against (`reference_kind`)."""
    if not rationale:
        return GroundedRationale(rationale)
    by_id = {item["id"]: item for item in items}
    out = GroundedRationale(rationale)
    text = rationale
    if reference_kind in REFERENCE_PHRASES:
        text = _OPENING.sub(f"Relative to {REFERENCE_PHRASES[reference_kind]}:", text, count=1)
    for claim in parse_claims(rationale):
        item = by_id.get(feature_id(claim.kind, claim.band, claim.region))
        if item is None:
            reason = missing_reason or f"no measured item {feature_id(claim.kind, claim.band, claim.region)} for " \
                                       "this window"
            out.removed_claims.append({"text": claim.text, "reason": reason})
            text = _drop(text, claim.text)
            continue
        linked = _link(claim, item)
        out.claims.append(linked)
        text = text.replace(claim.text, linked["text"], 1)
    text = re.sub(r":\s*\.", ": no claim the measured evidence supports.", text).strip()
    out.text, out.removed_numbers = _strip_numbers(text, [c["text"] for c in out.claims])
    return out


def check_label_support(rationale: str | None, label: str | None,
                        label_names: Sequence[str]) -> tuple[str | None, dict | None]:
    """`rationale` without its label-support sentence when that sentence favours a label other than `label` or sets
    `label` against itself, and ``{"text", "reason"}`` of the removed sentence (None when it stays or is absent).

    >>> text, removed = check_label_support("theta power is higher over occipital channels (slightly); so the "
    ...                                     "evidence favours disgust over disgust.", "disgust", ["disgust", "fear"])
    >>> text, removed["reason"]
    ('theta power is higher over occipital channels (slightly).', 'it sets the label disgust against itself')
    """
    support = parse_label_support(rationale, label_names)
    if support is None or label is None:
        return rationale, None
    if support["label"] != label:
        reason = f"it favours {support['label']}, not the answer {label}"
    elif support["against"] == label:
        reason = f"it sets the label {label} against itself"
    else:
        return rationale, None
    sentence = support["text"]
    text = re.sub(rf"(?:[;,]\s*)?{re.escape(sentence)}", "", rationale, count=1).strip()
    text = re.sub(r"^[;,.\s]+", "", text)
    text = re.sub(r":\s*\.", ": no claim the measured evidence supports.", text)
    return text or None, {"text": sentence, "reason": reason}


def numbers_not_measured(result: dict) -> list[str]:
    """Numbers in a result's returned rationale(s) that are not a measured item's printed value: the check, by a
    parser of its own, that must give nothing (for reports and tests)."""
    bad = []
    for window in result.get("windows", [result]):
        measured = {item["text"].split()[0] for item in (window.get("evidence") or {}).get("items", [])}
        for match in re.finditer(r"(?<![\w.])[+-]?\d+(?:\.\d+)?(?![\w])", window.get("rationale") or ""):
            if match.group(0) not in measured:
                bad.append(match.group(0))
    return bad


def claim_agreement(results: Iterable[dict]) -> dict:
    """Over pipeline results (a window or a recording with `windows`): parsed claims, those linked to a measured item,
    removed ones, removed label-support sentences, and the share of parsed claims whose item, direction and strength
    word agree with measurement (strength counted only where the model ships spreads). Where the claims were completed
    from measurement (`e2llm.claim_constraints_e2llm`), that share is 1 by construction: ``constrained`` and
    ``overridden`` count those claims and the ones whose wording the constraint changed, and ``own_agree_share`` is
    the share the model would have written true of the window itself (None without constrained claims)."""
    linked = removed = agree = numbers = support = 0
    direction = bucket = constrained = overridden = 0
    for result in results:
        for window in result.get("windows", [result]):
            claims = window.get("claims") or []
            linked += len(claims)
            removed += len(window.get("removed_claims") or [])
            numbers += len(window.get("removed_numbers") or [])
            support += window.get("removed_support") is not None
            direction += sum(c["direction_agrees"] for c in claims)
            bucket += sum(bool(c["bucket_agrees"]) for c in claims)
            agree += sum(c["direction_agrees"] and c["bucket_agrees"] is not False for c in claims)
            counts = window.get("claim_constraint") or {}
            constrained += counts.get("claims", 0)
            overridden += counts.get("overridden", 0)
    parsed = linked + removed
    return {"claims": parsed, "linked": linked, "removed": removed, "removed_numbers": numbers,
            "removed_support": support,
            "direction_agrees": direction, "bucket_agrees": bucket,
            "agree_share": agree / parsed if parsed else None,
            "constrained": constrained, "overridden": overridden,
            "own_agree_share": 1 - overridden / constrained if constrained else None}


__all__ = ["GroundedRationale", "check_label_support", "claim_agreement", "ground_rationale", "numbers_not_measured", "render_claim"]
