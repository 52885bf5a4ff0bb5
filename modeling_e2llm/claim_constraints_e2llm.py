"""Claims true by construction: while the language model writes its rationale, measurement decides what it can say.

A rationale opens with the label (``The evidence favours X over Y.``), then lists claims in a fixed grammar after
``Relative to baseline:``. The language model chooses the label, which evidence to cite (a kind of claim and a band:
``alpha power is``, ``gamma differential entropy is``, ``frontal alpha asymmetry is shifted``), in what order and how
many. `MeasuredClaimsLogitsProcessor` keeps each choice within the window's measured items, one generation step at a
time, by masking every other token:

* **which item** (where a claim starts, after the list's ``Relative to ...:`` or a finished claim's ``);``): only the
  opening of an item not cited yet; after the label, only of the label's evidence (`Favouring`): the items that each
  alone favour that label over every other under the class signatures the model ships
  (`e2llm.label_evidence_e2llm.items_for_label`), or, where no item does, the few that together do
  (`e2llm.label_evidence_e2llm.select_label_evidence`);
* **what it says** (once a claim is opened): only the measured direction and strength words, over a region whose
  item has that direction, again favouring the label where such an item can end the claim;
* **when the list ends**: after a claim, another (``;``) or the list's end (``.``), the model's choice, except after
  the label: once the label's evidence is all cited the list ends (``).`` and the next line), since an item more
  could point elsewhere; evidence that favours the label only together goes on (``);``) until it is all cited.
  Claims are constrained on the rationale's line only, not in the answer lines after it.

The text stays the model's own wording of true statements: ``alpha power is lower over frontal channels
(strongly)``; its numbers are rendered from measurement afterwards (`e2llm.rationale_e2llm`). Elsewhere (the label,
the answer lines) the model writes freely, and so it does where no measured item fits (the grounding step then
removes or flags the claim). Where an earlier logits processor forbids every measured continuation (a caller forcing
an answer), that processor decides.

How much the constraint changed is counted per window: a claim is *overridden* when at one of its steps the model's
own most likely token was not allowed (it would have cited another item, direction, strength or region). The share
of claims not overridden is the model's own agreement with the measurement and the label's evidence, the figure the
constraint would otherwise hide.

>>> items = [{"id": "power:alpha:frontal", "kind": "power", "band": "alpha", "region": "frontal", "value": -5.5,
...           "bucket": "strongly"}]
>>> completions("Reasoning: Relative to baseline: alpha power is lo", items)
['wer over frontal channels (strongly)']
>>> completions("Reasoning: Relative to baseline: alpha power is higher over", items)
[]
>>> completions("Reasoning: Relative to baseline:", items)
[' alpha power is']
>>> completions("Reasoning: Relative to baseline: alpha power is lower over frontal channels (strongly).", items) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from transformers import LogitsProcessor

from .eeg_evidence_features import BAND_NAMES, BUCKETS, parse_claims
from .evidence_statistics_e2llm import feature_id
from .label_evidence_e2llm import items_for_label, parse_label_support, select_label_evidence

_BANDS = "|".join(BAND_NAMES)
# The opening the model chooses freely; from its end on, the claim is completed from measurement.
# (without the space after it: byte-level tokens carry their leading space, `` lower`` is one token)
CLAIM_OPENING = re.compile(rf"\b(?:(?P<power>{_BANDS}) power is|(?P<de>{_BANDS}) differential entropy is|"
                           rf"(?P<faa>frontal alpha asymmetry is shifted))")


def _words(kind: str, value: float) -> str | None:
    if value == 0:
        return None
    if kind == "faa":
        return "right" if value > 0 else "left"
    return "higher" if value > 0 else "lower"


def claim_endings(kind: str, band: str, items: Sequence[dict], cited: set[str]) -> list[str]:
    """Every way a claim opened for `kind`/`band` can end as a measured item of `items` not in `cited`: e.g.
    `` lower over frontal channels (strongly)`` (any strength where the item has none)."""
    endings = []
    for item in items:
        if item["kind"] != kind or item["id"] in cited or (kind != "faa" and item["band"] != band):
            continue
        word = _words(kind, item["value"])
        if word is None:
            continue
        where = {"power": f" over {item['region']} channels", "de": " across the scalp", "faa": ""}[kind]
        # without the feature's spread (a model that ships none) the strength is not measured: the model's choice
        strengths = BUCKETS if item.get("bucket") is None else (item["bucket"],)
        endings += [f" {word}{where} ({strength})" for strength in strengths]
    return endings


# Where a claim starts: after the list's opening or a finished claim, with what is written of the next one so far.
CLAIM_START = re.compile(r"(?:Relative to [^:;.\n]{1,60}:|\);)(?P<written>[ a-z]*)$")
# A claim just finished, before how the list goes on is written (``)``, ``).``).
_JUST_FINISHED = re.compile(r"\)\.?$")
# An earlier model's closing label-support sentence may follow a claim (``; so the evidence favours X over Y``).
_CLOSING = " so the evidence"


def claim_openings(items: Sequence[dict], cited: set[str]) -> list[str]:
    """The openings of the claims `items` (not in `cited`, with a direction) allow: `` alpha power is``, `` gamma
    differential entropy is``, `` frontal alpha asymmetry is shifted``, each once, in the items' order."""
    openings = {}
    for item in items:
        if item["id"] in cited or _words(item["kind"], item["value"]) is None:
            continue
        opening = {"power": f" {item['band']} power is", "de": f" {item['band']} differential entropy is",
                   "faa": " frontal alpha asymmetry is shifted"}[item["kind"]]
        openings.setdefault(opening, None)
    return list(openings)


class Favouring(NamedTuple):
    """A label's evidence in one window: `ids` of the items that point to it, each alone (`together` False: any of
    them cited point to the label) or only all together (`together` True)."""

    ids: frozenset[str]
    together: bool = False


def _favoured(items: Sequence[dict], text: str, for_label, label_names) -> tuple[list[dict], Favouring] | None:
    """The items of the label a support sentence in `text` names and its `Favouring`, or None without one."""
    support = parse_label_support(text, label_names) if for_label is not None and label_names else None
    if support is None:
        return None
    favouring = for_label(support["label"])
    return [i for i in items if i["id"] in favouring.ids], favouring


def _list_goes_on(favouring: Favouring, cited: set[str]) -> str | None:
    """How a claim list citing `cited` (after the label) goes on: ``.`` and the line's end (it ends: the label's
    evidence is all cited; the answer's next line follows), ``;`` (evidence that points to the label only together
    is not), or None (the model chooses)."""
    if not favouring.ids:
        return None
    if favouring.ids <= cited:
        return ".\n"
    return ";" if favouring.together else None


def completions(text: str, items: Sequence[dict], for_label: Callable[[str], Favouring] | None = None,
                label_names: Sequence[str] = ()) -> list[str] | None:
    """What may follow `text` (the answer written so far) so that its current claim is one of the measured `items`
    (see the module docstring): the rest of an allowed opening where a claim starts, the rest of an allowed ending
    where one is open. None outside claims (the model writes freely); an empty list where nothing measured fits
    (free as well). With `for_label` (label -> its `Favouring`) and a label-support sentence of `label_names`
    before the claim, items favouring that label where they fit, and the list's end where they are all cited."""
    opening = _last_opening(text)
    if opening is not None and ")" in text[opening.end():]:  # a finished claim: after the label, how the list goes on
        before, written = text[: opening.start()], text[opening.end():]
        favoured = _favoured(items, before, for_label, label_names)
        goes_on = None if favoured is None else _list_goes_on(favoured[1], _cited(text))
        tail = written[written.index(")") + 1 :]
        if goes_on is None and not tail:  # the model chooses: another claim or the list's end, as the grammar has it
            return [";", "."]
        if goes_on is not None and goes_on.startswith(tail) and goes_on != tail:
            return [goes_on[len(tail):]]
    elif opening is not None:
        before, written = text[: opening.start()], text[opening.end():]
        kind = next(k for k in ("power", "de", "faa") if opening[k] is not None)
        band = opening[kind] if kind != "faa" else "alpha"
        cited = _cited(before)
        favoured = _favoured(items, before, for_label, label_names)
        endings = [e for e in claim_endings(kind, band, items, cited) if e.startswith(written)]
        if favoured is not None:
            chosen = [e for e in claim_endings(kind, band, favoured[0], cited) if e.startswith(written)]
            if chosen:  # each ending with how the list goes on after it
                ids = {e: i["id"] for i in favoured[0] for e in claim_endings(kind, band, [i], cited)}
                endings = [e + (_list_goes_on(favoured[1], cited | {ids[e]}) or "") for e in chosen]
        return [e[len(written):] for e in endings]
    start = CLAIM_START.search(text)
    if start is None or not _in_rationale(text, start.start()):
        return None
    written, cited = start["written"], _cited(text)
    favoured = _favoured(items, text, for_label, label_names)
    openings = (claim_openings(favoured[0], cited) if favoured else []) or claim_openings(items, cited)
    if not openings:
        return []
    openings += [_CLOSING] if start.group(0).startswith(")") else []
    return [o[len(written):] for o in openings if o.startswith(written) and o != written]


def _cited(text: str) -> set[str]:
    return {feature_id(c.kind, c.band, c.region) for c in parse_claims(text)}


class MeasuredClaimsLogitsProcessor(LogitsProcessor):
    """Masks every token that would not open or finish a claim as an allowed measured item (see the module
    docstring).

    `items` holds each window's measured items (`e2llm.measured_evidence_e2llm.window_items`; None: no constraint
    for that window); `prompt_length` is the (padded) prompt length of `input_ids`; `signatures` (the model's
    ``evidence_statistics["signatures"]``, or None) and `label_names` let claims after a label-support sentence cite
    only evidence for its label. With beam search every beam of a
    window is constrained. After generation, `claims[i]` and `overridden[i]` count window `i`'s constrained claims
    and those the constraint changed (on its first row: the answer itself without beam search)."""

    def __init__(self, tokenizer, items: Sequence[Sequence[dict] | None], prompt_length: int,
                 signatures: Mapping | None = None, label_names: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.items = list(items)
        self.prompt_length = prompt_length
        self.signatures = signatures
        self.label_names = [n for n in label_names if signatures and n in signatures.get("labels", ())]
        self._favouring: dict[tuple[int, str], Favouring] = {}
        self.token_texts = token_texts(tokenizer)
        self._allowed: dict[tuple[str, ...], torch.Tensor] = {}
        self._claims: list[dict[int, bool]] = [{} for _ in self.items]
        self.calls = 0  # generation steps it was called for (0: the backend never applied it)

    @property
    def claims(self) -> list[int]:
        return [len(window) for window in self._claims]

    @property
    def overridden(self) -> list[int]:
        return [sum(window.values()) for window in self._claims]

    def finished(self, window: int, text: str) -> tuple[int, int]:
        """``(claims, overridden)`` of window `window` counting only the claims its answer `text` finishes (a claim
        cut short by the token limit is not one)."""
        done = len(parse_claims(text))
        kept = [changed for index, changed in self._claims[window].items() if index < done]
        return len(kept), sum(kept)

    def favouring(self, window: int, label: str) -> Favouring:
        """Window `window`'s evidence for `label`: its items that alone favour it, or else those that together do
        (cached per window and label; no ids where nothing measured points to it)."""
        if (window, label) not in self._favouring:
            z = {i["id"]: i["z"] for i in self.items[window] or () if i.get("z") is not None}
            alone = items_for_label(z, self.signatures, label) if z else []
            together = select_label_evidence(z, self.signatures, label) if z and not alone else None
            self._favouring[window, label] = (
                Favouring(frozenset(alone)) if alone or together is None or together["margin"] <= 0
                else Favouring(frozenset(together["items"]), together=True))
        return self._favouring[window, label]

    def allowed_ids(self, endings: Sequence[str]) -> torch.Tensor:
        """Ids of the tokens that start one of `endings` or finish one and go on, but not with the same word
        (``shifted``, not ``shiftedent``) (`(n_allowed,)`, cached)."""
        key = tuple(sorted(endings))
        if key not in self._allowed:
            self._allowed[key] = torch.tensor(
                [i for i, t in enumerate(self.token_texts)
                 if t and any(e.startswith(t) or (t.startswith(e) and not t[len(e):len(e) + 1].isalpha())
                              for e in key)], dtype=torch.long)
        return self._allowed[key]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.calls += 1
        per_window = max(1, input_ids.shape[0] // max(1, len(self.items)))
        masked = scores
        for row in range(input_ids.shape[0]):
            window = row // per_window
            if window >= len(self.items) or self.items[window] is None:
                continue
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :], skip_special_tokens=True)
            endings = completions(text, self.items[window], lambda label, w=window: self.favouring(w, label),
                                  self.label_names)
            if not endings:
                continue
            allowed = self.allowed_ids(endings).to(scores.device)
            if len(allowed) == 0:
                continue
            keep = masked[row, allowed]
            if not torch.isfinite(keep).any():  # an earlier processor forbids every measured ending: it decides
                continue
            if masked is scores:
                masked = scores.clone()
            own = int(scores[row].argmax())
            masked[row] = float("-inf")
            masked[row, allowed] = keep
            if row % per_window == 0:
                # the claim being written: the one after the finished ones, or the one just finished (its ``;``/``.``,
                # counted only where the claim itself was constrained)
                finished = bool(_JUST_FINISHED.search(text))
                claims, index = self._claims[window], len(parse_claims(text)) - finished
                if not finished or index in claims:
                    claims[index] = claims.get(index, False) or not bool((allowed == own).any())
        return masked


def _in_rationale(text: str, position: int) -> bool:
    """Whether `position` of the answer `text` is on its rationale's line (its first): claims are listed there, not
    in the answer lines after it."""
    return "\n" not in text[:position].lstrip()


def _last_opening(text: str) -> re.Match | None:
    matches = [m for m in CLAIM_OPENING.finditer(text) if _in_rationale(text, m.start())]
    return matches[-1] if matches else None


def token_texts(tokenizer) -> list[str]:
    """Each token id's text as it decodes on its own (cached on the tokenizer: the vocabulary is read once)."""
    cached = getattr(tokenizer, "_e2llm_token_texts", None)
    if cached is None or len(cached) != len(tokenizer):
        cached = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        tokenizer._e2llm_token_texts = cached
    return cached


__all__ = ["CLAIM_OPENING", "CLAIM_START", "Favouring", "MeasuredClaimsLogitsProcessor", "claim_endings",
           "claim_openings", "completions", "token_texts"]
