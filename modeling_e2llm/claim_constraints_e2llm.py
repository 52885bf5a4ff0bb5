"""Claims true by construction: while the language model writes a claim, measurement decides what it says.

The language model chooses which evidence to cite (a band and a kind of claim: ``alpha power is``, ``gamma
differential entropy is``, ``frontal alpha asymmetry is shifted``) and how to reason from it to a label. Once it has
written such an opening, `MeasuredClaimsLogitsProcessor` lets it finish the claim only as one of the window's
measured items: the direction and strength words the measurement gives, over a region whose item has that direction
(and that the rationale has not cited yet). Every other token is masked, one generation step at a time, so the text
stays the model's own wording of a true statement: ``alpha power is lower over frontal channels (strongly)``. Its
numbers are rendered from measurement afterwards (`e2llm.rationale_e2llm`). Outside a claim, and inside one that no
measured item can complete (a region without channels, a feature cited already), the model writes freely; the
grounding step then treats the claim as before.

How much the constraint changed is counted, per row: a claim is *overridden* when at one of its steps the model's
own most likely token was not allowed (it would have written another direction, strength or region). The share of
claims not overridden is the model's own agreement with the measurement, the figure the constraint would otherwise
hide. Where an earlier logits processor forbids every measured ending (a caller forcing an answer), that processor
decides.

>>> from e2llm import build_offline_tokenizer
>>> tokenizer = build_offline_tokenizer()
>>> items = [{"id": "power:alpha:frontal", "kind": "power", "band": "alpha", "region": "frontal", "value": -5.5,
...           "bucket": "strongly"}]
>>> completions("Reasoning: Relative to baseline: alpha power is lo", items)
['wer over frontal channels (strongly)']
>>> completions("Reasoning: Relative to baseline: alpha power is higher over", items)
[]
>>> completions("Reasoning: Relative to baseline: alpha power is lower over frontal channels (strongly); ", items) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from .eeg_evidence_features import BAND_NAMES, BUCKETS, parse_claims
from .evidence_statistics_e2llm import feature_id

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


def completions(text: str, items: Sequence[dict]) -> list[str] | None:
    """What may follow `text` (the answer written so far) to finish its open claim as a measured item of `items`;
    None when no claim is open (the model writes freely), an empty list when the open claim has no measured ending
    (also free: the grounding step removes or flags it)."""
    opening = _last_opening(text)
    if opening is None:
        return None
    written = text[opening.end():]
    if ")" in written:  # the last claim is finished
        return None
    kind = next(k for k in ("power", "de", "faa") if opening[k] is not None)
    band = opening[kind] if kind != "faa" else "alpha"
    cited = {feature_id(c.kind, c.band, c.region) for c in parse_claims(text[: opening.start()])}
    return [e[len(written):] for e in claim_endings(kind, band, items, cited) if e.startswith(written)]


class MeasuredClaimsLogitsProcessor(LogitsProcessor):
    """Masks every token that would not finish an open claim as a measured item (see the module docstring).

    `items` holds each window's measured items (`e2llm.measured_evidence_e2llm.window_items`; None: no constraint
    for that window); `prompt_length` is the (padded) prompt length of `input_ids`. With beam search every beam of a
    window is constrained. After generation, `claims[i]` and `overridden[i]` count window `i`'s constrained claims
    and those the constraint changed (on its first row: the answer itself without beam search)."""

    def __init__(self, tokenizer, items: Sequence[Sequence[dict] | None], prompt_length: int):
        self.tokenizer = tokenizer
        self.items = list(items)
        self.prompt_length = prompt_length
        self.token_texts = _token_texts(tokenizer)
        self._allowed: dict[tuple[str, ...], torch.Tensor] = {}
        self._claims: list[dict[int, bool]] = [{} for _ in self.items]
        self.calls = 0  # generation steps it was called for (0: the backend never applied it)

    @property
    def claims(self) -> list[int]:
        return [len(window) for window in self._claims]

    @property
    def overridden(self) -> list[int]:
        return [sum(window.values()) for window in self._claims]

    def allowed_ids(self, endings: Sequence[str]) -> torch.Tensor:
        """Ids of the tokens that start one of `endings` or finish one and go on (`(n_allowed,)`, cached)."""
        key = tuple(sorted(endings))
        if key not in self._allowed:
            self._allowed[key] = torch.tensor(
                [i for i, t in enumerate(self.token_texts)
                 if t and any(e.startswith(t) or t.startswith(e) for e in key)], dtype=torch.long)
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
            endings = completions(text, self.items[window])
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
                claims, start = self._claims[window], _last_opening(text).start()
                claims[start] = claims.get(start, False) or not bool((allowed == own).any())
        return masked


def _last_opening(text: str) -> re.Match | None:
    matches = list(CLAIM_OPENING.finditer(text))
    return matches[-1] if matches else None


def _token_texts(tokenizer) -> list[str]:
    """Each token id's text as it decodes on its own (cached on the tokenizer: the vocabulary is read once)."""
    cached = getattr(tokenizer, "_e2llm_token_texts", None)
    if cached is None or len(cached) != len(tokenizer):
        cached = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        tokenizer._e2llm_token_texts = cached
    return cached


__all__ = ["CLAIM_OPENING", "MeasuredClaimsLogitsProcessor", "claim_endings", "completions"]
