"""The `eeg-emotion` pipeline's `postprocess`: window outputs -> results with measured evidence.

Every window's result carries its label (parsed from the answer, never guessed; None for a window refused because
more than half of its channels are flat, stuck, clipped or saturated in its raw samples, which says why), label
probabilities (``scores``, from the source the model's `config.label_probabilities` names, said in
``scores_source``; both sources' in ``language_model_scores`` and ``head_scores``), the returned
rationale (its numbers rendered from measurement, `e2llm.rationale_e2llm`), the generated text as written, its
measured evidence (`{"reference", "items"}`, `e2llm.measured_evidence_e2llm`), the claims linked to their items and
those removed (and a closing label-support sentence that is not about the returned label, `removed_support`), its
`abstention_reason` (a window that is not emotion EEG answers "insufficient evidence", without
label or rationale) and the `label_support` of its cited evidence (`e2llm.window_verdicts_e2llm`). A recording of
several windows (or each epoch of an `Epochs`) gets the aggregate: the most frequent parsed label (ties broken by the
mean scores), the mean scores, the votes, the counts of unparseable, refused and abstained windows, and its windows.
Each result names the channels used and dropped (a channel masked in every window counts as dropped, with its reason)
and the filter the input got.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .answers import parse_answer
from .evidence_e2llm import evidence_map
from .evidence_statistics_e2llm import spread_vector
from .measured_evidence_e2llm import MIN_OWN_REFERENCE_WINDOWS, choose_reference, recording_mean, window_items
from .rationale_e2llm import check_label_support, ground_rationale
from .window_verdicts_e2llm import INSUFFICIENT_EVIDENCE, evidence_label_support, window_abstention

_PARENTHESES = re.compile(r"\s*\([^)]*\)")


@dataclass
class WindowOutput:
    """What `_forward` returns per window (kept as one object so Transformers' batch unpacking leaves it whole)."""

    text: str
    scores: np.ndarray  # (n_labels,) the language model's label probabilities
    start: float
    item: int
    band_power: np.ndarray  # (n_bands, n_channels) dB, NaN on flat channels
    live: np.ndarray  # (n_channels,) bool
    context: object  # the input's `InputContext`
    attribution: np.ndarray | None = None
    from_generation: bool = False
    unusable: dict | None = None  # {channel: reason} unusable in this window's raw samples (masked)
    refused: str | None = None  # why the window is refused (too many unusable channels)
    signal_statistics: dict | None = None  # `window_statistics` of its raw samples (for abstention)
    head_scores: np.ndarray | None = None  # (n_labels,) the emotion head's probabilities (None without one)
    items: list[dict] | None = None  # its measured items when `_forward` measured them (reference known up front)
    claim_constraint: dict | None = None  # {"claims", "overridden"} of the claim constraint (None: not applied)
    label_guidance: dict | None = None  # {"weight", "head_decides", "changed", "line_held"} of the head's guidance (None: not applied)


def _reference(windows: list[WindowOutput], statistics):
    context = windows[0].context
    if context.reference is not None or context.baseline is not None:
        return context.reference or context.baseline
    own = None
    if len(windows) >= MIN_OWN_REFERENCE_WINDOWS:
        own = recording_mean(np.stack([w.band_power for w in windows]), context.names)
    return choose_reference(len(windows), own, None, statistics, context.names)


def _no_items_reason(reference, n_windows: int) -> str:
    if reference is None:
        return (f"no reference to measure this window against: the input has {n_windows} window(s), fewer than "
                f"{MIN_OWN_REFERENCE_WINDOWS} for its own mean, and the model ships no reference (pass baseline= or "
                "baseline_power=)")
    return "no channel of the window supports this claim"


def window_result(pipe, window: WindowOutput, items: list[dict], reference, n_windows: int,
                  extra_fields=None) -> dict:
    """One window's result (see the module docstring)."""
    by_source = {"language_model": dict(zip(pipe.label_names, window.scores.tolist())),
                 "emotion_head": None if window.head_scores is None
                 else dict(zip(pipe.label_names, window.head_scores.tolist()))}
    source = pipe.model.config.label_probabilities
    fields: dict = {}
    if window.text:
        parsed = parse_answer(window.text, pipe.label_names, extra_fields)
        label, rationale, fields = parsed.label, parsed.rationale, parsed.fields
    else:  # label scoring only
        label, rationale = pipe.label_names[int(window.scores.argmax())], None
    grounded = ground_rationale(rationale, items, None if items else _no_items_reason(reference, n_windows),
                                None if reference is None else reference.kind)
    returned, removed_support = check_label_support(grounded.text, label, pipe.label_names)
    end = window.start + window.context.window_seconds
    result = {"label": label, "scores": by_source[source], "scores_source": source,
              "language_model_scores": by_source["language_model"], "head_scores": by_source["emotion_head"],
              "rationale": returned, "generated_text": window.text,
              "parseable": label is not None, "start": window.start, "end": end,
              "evidence": {"reference": None if reference is None else reference.report(), "items": items},
              "claims": grounded.claims, "removed_claims": grounded.removed_claims,
              "removed_numbers": grounded.removed_numbers, "removed_support": removed_support,
              "claim_constraint": window.claim_constraint, "label_guidance": window.label_guidance}
    if extra_fields:
        result["fields"] = fields
    if window.unusable:
        result["unusable_channels"] = dict(window.unusable)
    if window.refused:  # no label from a window most of whose channels are not EEG; its scores stay for reference
        result.update(label=None, parseable=False, refused=window.refused)
    statistics = pipe.processor.evidence_statistics
    reason = window_abstention(window.refused, window.signal_statistics, statistics)
    result["abstention_reason"] = reason
    if reason is not None:  # not emotion EEG: the answer is "insufficient evidence", never a label nor a rationale
        result.update(label=None, parseable=False, answer=INSUFFICIENT_EVIDENCE, claims=[], removed_claims=[],
                      removed_numbers=[], removed_support=None, rationale=f"{INSUFFICIENT_EVIDENCE.capitalize()}.",
                      claim_constraint=None, label_guidance=None)  # nothing written is returned: nothing to count
    result["label_support"] = evidence_label_support(result["label"], items, [c["item"] for c in result["claims"]],
                                                     statistics)
    return result


def _evidence_map(pipe, window: WindowOutput, reference, evidence_dir, index: int) -> dict:
    """Scalp maps of one window: band power relative to its reference (or to its channel mean without one)."""
    names = window.context.names
    if reference is not None:
        ref, known = reference.on(names)
        relative = np.full_like(window.band_power, np.nan)
        relative[:, known] = window.band_power[:, known] - ref
    else:
        relative = window.band_power - np.nanmean(window.band_power, axis=-1, keepdims=True)
    relative = np.nan_to_num(relative)
    return evidence_map(relative, window.attribution[: len(names)], names,
                        pipe.processor.feature_extractor.sampling_rate, window.start, evidence_dir,
                        stem=f"evidence_{id(window.context)}_{index:05d}")


def aggregate(label_names, windows: list[dict]) -> dict:
    """The result of several windows: majority parsed label (ties by mean score), mean scores, votes."""
    mean = {name: float(np.mean([w["scores"][name] for w in windows])) for name in label_names}
    votes = Counter(w["label"] for w in windows if w["label"] is not None)
    label = None
    if votes:
        top = max(votes.values())
        label = max((name for name, c in votes.items() if c == top), key=lambda name: mean[name])
    refused = sum("refused" in w for w in windows)
    abstained = sum(w.get("abstention_reason") is not None for w in windows)
    out = {"label": label, "scores": mean, "scores_source": windows[0].get("scores_source"), "votes": dict(votes),
           "n_unparseable": sum(w["label"] is None and w.get("abstention_reason") is None for w in windows),
           "n_refused": refused, "n_abstained": abstained, "windows": windows}
    if abstained == len(windows):  # no window is emotion EEG: the recording's answer is "insufficient evidence"
        reasons = Counter(_PARENTHESES.sub("", w["abstention_reason"]) for w in windows)
        out.update(answer=INSUFFICIENT_EVIDENCE, abstention_reason=reasons.most_common(1)[0][0])
    return out


def _masked_throughout(windows: list[WindowOutput], names: list[str]) -> dict[str, str]:
    """`{name: reason}` of the channels masked in every window of one input (flat over the whole input, or unusable
    in each of its windows): dropped in effect, so the result's `channels` says so."""
    live = np.stack([w.live[: len(names)] for w in windows]).any(axis=0)
    dropped = {}
    for c in np.flatnonzero(~live):
        name = names[c]
        found = [w.unusable[name] for w in windows if w.unusable and name in w.unusable]
        dropped[name] = _PARENTHESES.sub("", found[0]) + " in every window" if found else \
            "flat (constant) over the whole input"
    return dropped


def _channels_report(channels: dict, dropped: dict[str, str]) -> dict:
    if not dropped:
        return channels
    return {**channels, "used": [n for n in channels["used"] if n not in dropped],
            "dropped": {**channels.get("dropped", {}), **dropped}}


def measured_items(statistics, chunks: list[dict]) -> list[list[dict] | None]:
    """The measured items of each window chunk whose input's reference is known before the windows are answered (a
    reference the prompts are measured against, or a given baseline); None for the others (their reference may be
    the input's own mean, known once every window is in: `build_results` measures them)."""
    out: list[list[dict] | None] = [None] * len(chunks)
    groups: dict[int, list[int]] = {}
    for i, chunk in enumerate(chunks):
        groups.setdefault(id(chunk["context"]), []).append(i)
    for rows in groups.values():
        context = chunks[rows[0]]["context"]
        reference = context.reference or context.baseline
        if reference is None:
            continue
        power = np.stack([chunks[i]["band_power"] for i in rows])
        live = np.stack([chunks[i]["eeg_channel_mask"] == 1 for i in rows]) & np.isfinite(power).all(axis=1)
        for i, items in zip(rows, window_items(power, context.names, live, reference, spread_vector(statistics))):
            out[i] = items
    return out


def build_results(pipe, windows: list[WindowOutput], extra_fields=None, return_evidence: bool = False,
                  evidence_dir=None):
    """The result of one input: one dict, or one per epoch of an `Epochs`."""
    context = windows[0].context
    reference = _reference(windows, pipe.processor.evidence_statistics)
    if all(w.items is not None for w in windows):  # measured once already, against this reference
        items = [w.items for w in windows]
    else:
        power = np.stack([w.band_power for w in windows])
        live = np.stack([w.live for w in windows]) & np.isfinite(power).all(axis=1)
        items = window_items(power, context.names, live, reference, spread_vector(pipe.processor.evidence_statistics))
    results = [window_result(pipe, w, i, reference, len(windows), extra_fields) for w, i in zip(windows, items)]
    if return_evidence:
        for k, (window, result) in enumerate(zip(windows, results)):
            result["evidence_map"] = _evidence_map(pipe, window, reference, evidence_dir, k)
    groups: dict[int, list[dict]] = {}
    outputs: dict[int, list[WindowOutput]] = {}
    for window, result in zip(windows, results):
        groups.setdefault(window.item, []).append(result)
        outputs.setdefault(window.item, []).append(window)
    out = [group[0] if len(group) == 1 else aggregate(pipe.label_names, group) for group in groups.values()]
    warning = context.montage.warning
    if warning is not None:
        warnings.warn(warning, stacklevel=3)
    for result, item_windows in zip(out, outputs.values()):
        channels = _channels_report(context.channels, _masked_throughout(item_windows, context.names))
        result.update(channels=channels, filter=context.filter)
        if context.warnings:
            result["file_warnings"] = list(context.warnings)
        if warning is not None:
            result["warning"] = warning
    return out if context.epochs else out[0]


__all__ = ["WindowOutput", "aggregate", "build_results", "measured_items", "window_result"]
