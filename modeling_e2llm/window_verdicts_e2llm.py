"""What the `eeg-emotion` pipeline adds to each window's answer: whether it abstains, and how well the cited evidence
supports the label.

**Abstention.** A window that is not emotion EEG gets no label: the answer ``insufficient evidence`` and its
`abstention_reason`. The reason is the window's refusal (more than half of its channels flat, stuck, clipped or
saturated in its raw samples) or `e2llm.label_evidence_e2llm.abstention_reason` of the statistics of its raw samples
(flat signal, line noise only, muscle artefact, a spectrum like noise or like eyes-closed rest), against the ranges of
the model's training windows where the model ships them (``evidence_statistics["abstention"]``), else against ranges
that hold for EEG from any lab.

**Label support.** Under the class signatures a model ships (``evidence_statistics["signatures"]``, the mean evidence
of each label's training windows), each measured item speaks for the label over its most confusable alternative by a
log-likelihood ratio (`e2llm.label_evidence_e2llm.label_support`) and is more or less typical of the label. The
result gives that for every item the rationale cites (`cited`) and for the items that best favour the label against
every alternative (`for_label`, `e2llm.label_evidence_e2llm.select_label_evidence`); a window without it says why
(`reason`: a model without signatures, no label, nothing measured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .label_evidence_e2llm import abstention_reason, label_support, select_label_evidence

INSUFFICIENT_EVIDENCE = "insufficient evidence"
NO_SIGNATURES = ("the model ships no class signatures (evidence_statistics['signatures'], written by training): "
                 "label support cannot be measured")


def window_abstention(refused: str | None, signal_statistics: Mapping | None, statistics: Mapping | None) -> (
        str | None):
    """Why a window gets no label (see the module docstring), or None."""
    if refused:
        return refused
    if not signal_statistics:
        return None
    return abstention_reason(signal_statistics, statistics)


def _row(item: dict, support: dict | None) -> dict:
    return {"item": item["id"], "value": item["value"], "unit": item["unit"], "text": item["text"],
            "support": None if support is None else support["support"],
            "typicality": None if support is None else support["typicality"]}


def _no_support(label: str | None, reason: str) -> dict:
    return {"label": label, "against": None, "favoured": None, "cited": [], "for_label": [], "reason": reason}


def evidence_label_support(label: str | None, items: Sequence[dict], cited: Sequence[str],
                           statistics: Mapping | None) -> dict:
    """``{"label", "against", "favoured", "cited", "for_label", "reason"}`` of one window: `items` its measured
    items (with `z`, in the spread units of the signatures), `cited` the item ids its rationale cites.

    `cited` and `for_label` rows: ``{"item", "value", "unit", "text", "support", "typicality"}`` (support and
    typicality None for an item the signatures do not cover); `favoured`: the window's whole evidence fits `label`
    best of all labels."""
    signatures = (statistics or {}).get("signatures")
    if label is None:
        return _no_support(None, "no label to support")
    if not signatures:
        return _no_support(label, NO_SIGNATURES)
    labels = [str(n) for n in signatures.get("labels", ())]
    if label not in labels or len(labels) < 2:
        return _no_support(label, f"the model's class signatures cover {labels}, not {label!r} and an alternative")
    z = {item["id"]: item["z"] for item in items if item.get("z") is not None}
    if not z:
        return _no_support(label, "no evidence measured in spread units for this window (no reference to measure "
                                  "it against, or the model ships no spreads)")
    supports = {row["item"]: row for row in label_support(z, signatures, label)}
    selection = select_label_evidence(z, signatures, label)
    by_id = {item["id"]: item for item in items}
    return {"label": label, "against": selection["against"], "favoured": selection["favoured"],
            "cited": [_row(by_id[i], supports.get(i)) for i in dict.fromkeys(cited) if i in by_id],
            "for_label": [_row(by_id[i], supports.get(i)) for i in selection["items"]], "reason": None}


__all__ = ["INSUFFICIENT_EVIDENCE", "NO_SIGNATURES", "evidence_label_support", "window_abstention"]
