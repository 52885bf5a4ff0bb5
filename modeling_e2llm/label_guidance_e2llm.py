"""The stage-1 head's say in the written label: its probabilities added to the language model's at the label's tokens.

Where the language model writes a label (after ``favours`` in the rationale's opening sentence, and after
``Emotion:``), `HeadGuidedLabelsLogitsProcessor` adds ``weight * (log p_head(label) - log p_head(top))`` to the tokens
that spell each label, spread over its tokens so that a whole label gets exactly that (a token several labels share
gets the largest, the rest goes to the tokens where they part). Greedy decoding then writes the label maximising
``log p_LM(label | text so far) + weight * log p_head(label)``, a product of the two experts (shallow fusion, as
external language models are added to speech recognisers). ``weight`` 0 leaves the language model alone; a large
``weight`` lets the head decide. The head's label is never changed; other labels are pushed down by how much less
likely the head finds them; every other token is left as it is. With ``decides`` the head decides: where a label is
written only the tokens that spell the head's most probable label are allowed (any other label, or a word that is no
label, would make the answer the language model's or unparseable); once the label is written out, the ``Emotion:`` line
ends there and the opening sentence goes on with `` over`` (not ``Emotion: fear: disgust``, ``favours feart``); and
the answer holds to its format until the ``Emotion:`` line is written: where it would end, a line break takes the
ending's probability, and a line after the rationale starts with one of the answer's keys not written yet (``Emotion``,
or a field the caller asks for: ``extra_fields``), so that the head's label is not lost to a skipped line
(``Valence: negative`` and no ``Emotion:``, unparseable). The language
model writes everything else (`config.label_decision` ``"emotion_head"``).

A model's `config.label_guidance_weight` holds the weight and `config.label_decision` whether the head decides,
chosen by stage 3 on validation windows (`e2llm.training.evaluation.calibration.calibrate_label_sources`) and
recorded with their figures in `config.label_calibration`; 0 and ``"language_model"`` (no guidance) for models
trained without it. After generation, `changed[i]` says
whether the guidance changed a label window ``i``'s language model would have written (at some label step its own
most likely token was not the one kept), and `line_held[i]` whether holding the format changed its answer (the model
would have ended it, or begun another line, before its ``Emotion:`` line).

>>> label_slot("Reasoning: The evidence favours sa")
' sa'
>>> label_slot("Reasoning: The evidence favours sadness over fe") is None
True
>>> label_slot("...).\\nEmotion:")
''
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from .claim_constraints_e2llm import token_texts

# Where a label is written: after the opening sentence's ``favours`` (not its ``over``) and after the ``Emotion:`` key.
_SLOT = re.compile(r"(?:\bfavours|(?P<key>\bEmotion\**[ \t]*[:=]))(?P<written>[ \t]*[A-Za-z-]*)$", re.IGNORECASE)


# A letter or hyphen after a label's last letter: the token makes another word ("sadness" + "s").
_WORD_GOES_ON = re.compile(r"[a-z-]")


# What follows the label in the opening sentence (``The evidence favours X over Y``).
_OVER = " over"  # whole: after a part of it (" o") no label slot is left to hold the sentence to its grammar
# What may follow a label written out at the ``Emotion:`` key: the end of the line (or of the answer).
_LINE_ENDS = re.compile(r"[ \t]*\n")
# The answer's label line, and any answer line's key (``Valence: negative``).
_LABEL_LINE = re.compile(r"^[ \t]*\**Emotion\**[ \t]*[:=]", re.IGNORECASE | re.MULTILINE)
_KEY_LINE = re.compile(r"^[ \t]*\**(?P<key>[A-Za-z][A-Za-z ]*?)\**[ \t]*[:=]")


def _spells_key(text: str, key: str) -> bool:
    """Whether `text` (an answer line) begins the line ``key:`` as the answer's parser reads it (spaces and asterisks
    around the key, any case) and holds nothing after the colon but spaces.

    >>> [_spells_key(t, "Emotion") for t in ("", " **emo", "Emotion", "EMOTION** :", "Emotion: ", "Emotion: x", "Val")]
    [True, True, True, True, True, False, False]
    """
    rest = text.lstrip(" \t").lstrip("*")
    written = rest[: len(key)]
    if written.lower() != key[: len(written)].lower():
        return False
    rest = rest[len(key):].lstrip("*").lstrip(" \t")
    return not rest or (rest[0] in ":=" and not rest[1:].strip(" \t"))


def label_slot(text: str) -> str | None:
    """What is written of the label `text` (the answer so far) is in the middle of, or None outside a label."""
    match = _SLOT.search(text)
    return None if match is None else match["written"]


def check_guidance_weight(weight) -> float:
    """`weight` as a float, or one clear error for a weight that is not a finite number >= 0."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"label_guidance_weight must be a finite number >= 0 (0: the language model alone), got "
                         f"{weight!r}")
    return float(weight)


class HeadGuidedLabelsLogitsProcessor(LogitsProcessor):
    """Adds the head's weighted log-probabilities to the label tokens (see the module docstring).

    `head_probs` `(n_windows, n_labels)` are the emotion head's (temperature-scaled) probabilities of each window,
    `label_names` their labels, `prompt_length` the (padded) prompt length of `input_ids`. With beam search every beam
    of a window is guided. `decides` True: the head's label is written (`weight` is then only recorded) and the answer
    holds to its format until its ``Emotion:`` line, whose lines after the rationale may start with ``Emotion`` or one
    of `field_keys` (the other fields asked for)."""

    def __init__(self, tokenizer, head_probs: torch.Tensor, label_names: Sequence[str], weight: float,
                 prompt_length: int, decides: bool = False, field_keys: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.log_head = head_probs.detach().float().clamp_min(1e-12).log().cpu()  # (n_windows, n_labels)
        self.labels = [" " + name.lower() for name in label_names]
        self.weight = check_guidance_weight(weight)
        self.decides = bool(decides)
        self.prompt_length = prompt_length
        # per (labels, written) the label tokens, kept on the tokenizer: a large vocabulary is scanned once per state
        if not hasattr(tokenizer, "_e2llm_label_tokens"):
            tokenizer._e2llm_label_tokens = {}
        self._tokens: dict[tuple, list[torch.Tensor] | torch.Tensor] = tokenizer._e2llm_label_tokens
        self.keys = ("Emotion", *(str(k) for k in field_keys if str(k).lower() != "emotion"))
        self.changed = [False] * len(self.log_head)
        self.line_held = [False] * len(self.log_head)
        self.calls = 0

    def label_tokens(self, written: str) -> list[torch.Tensor]:
        """Per label, the ids of the tokens that continue `written` (what is written of the label) as that label
        (a token may finish it and go on, but not with the same word: `` sad.``, not `` sadder``; lower case but for a
        capital first letter); empty for a label `written` does not begin (cached)."""
        key = (tuple(self.labels), written, len(self.tokenizer))
        if key not in self._tokens:
            raw = token_texts(self.tokenizer)
            texts = [t.lower() for t in raw]
            # letters as a label is written: lower case, the first may be a capital ("Sadness", not "SadNEss")
            cased = [t == t.lower() or (len(written) + len(t) - len(t.lstrip()) == 1  # at the label's first letter
                                        and t.lstrip()[1:] == t.lstrip()[1:].lower()) for t in raw]
            per_label = []
            for label in self.labels:
                rest = label[len(written):] if label.startswith(written) and label != written else None
                ids = [] if rest is None else [i for i, t in enumerate(texts) if t and cased[i] and (
                    rest.startswith(t) or (t.startswith(rest) and not _WORD_GOES_ON.match(t, len(rest))))]
                per_label.append(torch.tensor(ids, dtype=torch.long))
            self._tokens[key] = per_label
        return self._tokens[key]

    def label_ends(self, at_key: bool) -> torch.Tensor:
        """Ids of the tokens that may follow a label written out: at the ``Emotion:`` key the end of its line or of
        the answer (special tokens), so that the value stays the label (``Emotion: fear: disgust``, ``Emotion:
        feart`` would be unparseable); after ``favours`` the sentence's `` over `` (not ``feart``, nor a line break
        that leaves the sentence without its grammar) (cached)."""
        key = ("ends", at_key, len(self.tokenizer))
        if key not in self._tokens:
            texts = token_texts(self.tokenizer)
            special = set(self.tokenizer.all_special_ids)
            if at_key:
                ids = [i for i, t in enumerate(texts) if i in special or _LINE_ENDS.match(t)]
            else:  # the opening sentence goes on as its grammar does: "favours X over Y"
                ids = [i for i, t in enumerate(texts) if t.startswith(_OVER) and not _WORD_GOES_ON.match(t, len(_OVER))]
            self._tokens[key] = torch.tensor(ids, dtype=torch.long)
        return self._tokens[key]

    def key_tokens(self, keys: tuple[str, ...], line: str, blank_ok: bool = True) -> torch.Tensor:
        """Ids of the tokens that go on spelling one of `keys` as the answer's parser reads a key from `line` (an
        answer line so far, after the rationale): ``Emo``, ``tion``, ``:`` from ``""`` towards ``Emotion:``, in any
        case, with the spaces and asterisks the parser allows, and a blank line where `blank_ok` (one, not a run of
        them) (cached)."""
        key = ("keys", keys, line, blank_ok, len(self.tokenizer))
        if key not in self._tokens:
            blank = blank_ok and not line.strip(" \t")
            self._tokens[key] = torch.tensor(
                [i for i, t in enumerate(token_texts(self.tokenizer)) if t and (
                    (blank and not t.strip(" \t\r\n")) or any(_spells_key(line + t, k) for k in keys))], dtype=torch.long)
        return self._tokens[key]

    def answer_ends(self) -> tuple[torch.Tensor, int | None]:
        """Ids of the tokens that end an answer (the tokenizer's special tokens) and of the line break (None where it
        is no single token) (cached)."""
        key = ("answer ends", len(self.tokenizer))
        if key not in self._tokens:
            newline = self.tokenizer("\n", add_special_tokens=False)["input_ids"]
            self._tokens[key] = (torch.tensor(sorted(set(self.tokenizer.all_special_ids)), dtype=torch.long),
                                 newline[0] if len(newline) == 1 else None)
        return self._tokens[key]

    def format_held(self, text: str) -> torch.Tensor | None:
        """How the answer `text` (so far) is held to its format until its ``Emotion:`` line: the only tokens allowed
        on a line after the rationale (those spelling a key not written yet), an empty tensor where the answer may go
        on as it likes but not end (the rationale's line, a key's line), None where nothing is held (the label line
        is written, or a line began with a key not asked for)."""
        if _LABEL_LINE.search(text):
            return None
        lines = text.lstrip("\n").split("\n")
        if len(lines) == 1:  # the rationale's line
            return torch.empty(0, dtype=torch.long)
        written = {m["key"].strip().lower() for m in map(_KEY_LINE.match, lines[1:-1]) if m is not None}
        keyed = _KEY_LINE.match(lines[-1])
        if keyed is None:
            return self.key_tokens(tuple(k for k in self.keys if k.lower() not in written), lines[-1],
                                   blank_ok=bool(lines[-2].strip()))
        asked = keyed["key"].strip().lower() in {k.lower() for k in self.keys}
        return torch.empty(0, dtype=torch.long) if asked else None

    def _hold(self, row: int, window: int, per_window: int, scores, guided, text: str):
        """`guided` with row `row` held to the answer's format (`format_held`): where it may only spell a key, every
        other token is masked; where it may not end, the ending tokens' probability goes to a line break (the next
        line then spells the label's key). Unchanged where nothing is held, or where an earlier processor forbids
        every allowed token (it decides)."""
        held = self.format_held(text)
        if held is None:
            return guided
        row_scores = guided[row]
        if len(held):
            kept = torch.full_like(row_scores, float("-inf"))
            kept[held.to(scores.device)] = row_scores[held.to(scores.device)]
        else:
            ends, newline = self.answer_ends()
            ends = ends.to(scores.device)
            kept = row_scores.clone()
            if newline is not None and torch.isfinite(row_scores[newline]):
                kept[newline] = torch.logaddexp(row_scores[newline], torch.logsumexp(row_scores[ends], 0))
            kept[ends] = float("-inf")
        if not torch.isfinite(kept).any():
            return guided
        if guided is scores:
            guided = scores.clone()
        guided[row] = kept
        if row % per_window == 0 and int(kept.argmax()) != int(scores[row].argmax()):
            self.line_held[window] = True
        return guided

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.calls += 1
        if self.weight == 0 and not self.decides:
            return scores
        per_window = max(1, input_ids.shape[0] // max(1, len(self.log_head)))
        guided = scores
        for row in range(input_ids.shape[0]):
            window = row // per_window
            if window >= len(self.log_head):
                continue
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :], skip_special_tokens=True)
            slot = _SLOT.search(text)
            if slot is None:
                if self.decides:
                    guided = self._hold(row, window, per_window, scores, guided, text)
                continue
            written = slot["written"].lower()
            tokens = self.label_tokens(written)
            if self.decides:
                head_label = int(self.log_head[window].argmax())
                ids = tokens[head_label]
                if not len(ids) and written == self.labels[head_label]:  # written out: it ends here
                    ids = self.label_ends(slot["key"] is not None)
                if len(ids):  # empty: the slot began before this processor, or holds no label
                    if guided is scores:
                        guided = scores.clone()
                    allowed = torch.full_like(scores[row], float("-inf"))
                    allowed[ids.to(scores.device)] = 0.0
                    guided[row] = scores[row] + allowed
                    if row % per_window == 0 and int(guided[row].argmax()) != int(scores[row].argmax()):
                        self.changed[window] = True
                else:  # past the opening sentence's label: its format until the Emotion line
                    guided = self._hold(row, window, per_window, scores, guided, text)
                continue
            live = [k for k, ids in enumerate(tokens) if len(ids)]
            if not live:  # a finished label, or text that is not one
                continue
            log_head = self.log_head[window].to(scores.device)
            top = log_head[live].max()  # the best label still open: the labels parting later keep their share
            bonus = torch.full((scores.shape[-1],), float("-inf"), device=scores.device)
            for k in live:
                ids = tokens[k].to(scores.device)
                bonus[ids] = torch.maximum(bonus[ids], self.weight * (log_head[k] - top))
            if guided is scores:
                guided = scores.clone()
            hit = torch.isfinite(bonus)
            guided[row, hit] = scores[row, hit] + bonus[hit]
            if row % per_window == 0 and int(guided[row].argmax()) != int(scores[row].argmax()):
                self.changed[window] = True
        return guided


__all__ = ["HeadGuidedLabelsLogitsProcessor", "check_guidance_weight", "label_slot"]
