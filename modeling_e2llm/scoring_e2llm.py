"""Label scoring from a shared prefix: the prompt (+ rationale) runs through the language model once, and every label
candidate is scored from that pass's last position and its KV cache.

A candidate's first token is predicted by the prefix's last position, so single-token labels need no further pass;
the remaining tokens of longer candidates run in one more pass of `candidate_len - 1` tokens per (prompt, long
candidate) row, continuing a copy of the prefix cache. The result equals scoring each `prompt + candidate`
sequence on its own (`score_labels` at c847536 repeated the whole prompt once per label).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .answers import LABEL_KEY

# The start of an answer's label line (`Emotion:`), where label scoring takes over from the generated text.
LABEL_LINE = re.compile(rf"^[ \t]*\**{LABEL_KEY}\**[ \t]*[:=]", re.IGNORECASE | re.MULTILINE)


def candidate_tensor(candidate_ids: Sequence[Sequence[int]], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded candidates `(n_candidates, max_len)` and their mask (1 on real tokens)."""
    if not candidate_ids or any(len(c) == 0 for c in candidate_ids):
        raise ValueError("every candidate needs at least one token")
    width = max(len(c) for c in candidate_ids)
    ids = torch.zeros(len(candidate_ids), width, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, tokens in enumerate(candidate_ids):
        ids[i, : len(tokens)] = torch.as_tensor(list(tokens), dtype=torch.long, device=device)
        mask[i, : len(tokens)] = 1
    return ids, mask


def left_pad(rows: Sequence[torch.Tensor], pad_token_id: int) -> tuple[torch.LongTensor, torch.LongTensor]:
    """1-D token rows -> left-padded `input_ids` and `attention_mask` `(n_rows, max_len)`."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long, device=rows[0].device)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :], mask[i, width - len(row) :] = row, 1
    return ids, mask


def label_prompt_ids(tokenizer, generated_ids: Sequence[int] | None) -> tuple[str, list[int]]:
    """The answer text and the tokens that label scoring appends to the prompt, from the generated token ids.

    The generated tokens are kept as the model wrote them (special tokens dropped) up to the answer's label line
    (or its end, trailing whitespace dropped, plus a newline); only the few characters of a token that straddles
    that point and `Emotion:` are tokenised. The text is the text-level prefix (`answer[:cut] + "Emotion:"`); the
    tokens are the ones the model wrote, where re-tokenising the text could merge them differently. `None`: no
    rationale, the prompt continues with `Emotion:` at once.
    """
    suffix = f"{LABEL_KEY}:"
    if generated_ids is None:
        return "", tokenizer(suffix, add_special_tokens=False)["input_ids"]
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    ids = [int(t) for t in generated_ids if int(t) not in special]
    answer = tokenizer.decode(ids, skip_special_tokens=True)
    match = LABEL_LINE.search(answer)
    cut = match.start() if match else len(answer.rstrip())
    kept, covered = 0, 0
    for k in range(1, len(ids) + 1):  # the longest run of whole tokens whose text is answer[:<= cut]
        text = tokenizer.decode(ids[:k], skip_special_tokens=True)
        if len(text) > cut and answer.startswith(text):
            break
        if answer.startswith(text):  # (a token ending inside a multi-byte character decodes to U+FFFD)
            kept, covered = k, len(text)
    tail = answer[covered:cut] + ("" if match else "\n") + suffix
    return answer, ids[:kept] + tokenizer(tail, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def score_candidates(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor,
    candidate_ids: Sequence[Sequence[int]],
    eeg_features: torch.Tensor | None = None,
    eeg_values: torch.Tensor | None = None,
    eeg_channel_ids: torch.LongTensor | None = None,
    eeg_channel_mask: torch.LongTensor | None = None,
) -> torch.Tensor:
    """Summed log-probability of each candidate after each prompt: `(batch, n_candidates)`.

    Args:
        model: an `E2LLMForConditionalGeneration`.
        input_ids, attention_mask: left-padded prompts `(batch, prompt_len)` (as for `generate`); they may end in a
            rationale.
        candidate_ids: token ids of each candidate continuation.
        eeg_features: projected EEG `(n_windows, num_eeg_tokens, hidden)` from `model.get_eeg_features`, reused
            as they are; or `eeg_values` `(n_windows, n_channels, n_times)` + `eeg_channel_ids` (+ mask), encoded
            here once.
    """
    cand, cand_mask = candidate_tensor(candidate_ids, input_ids.device)
    attention_mask = attention_mask.to(input_ids.device)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    eeg = dict(eeg_values=eeg_values, eeg_channel_ids=eeg_channel_ids, eeg_channel_mask=eeg_channel_mask,
               eeg_features=eeg_features)
    prefix = model.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=cand.shape[1] > 1, **{k: v for k, v in eeg.items() if v is not None})
    last = prefix.last_hidden_state[:, -1]  # (batch, hidden): predicts every candidate's first token
    long = torch.nonzero(cand_mask.sum(-1) > 1).flatten()
    if len(long) == 0:
        return F.log_softmax(model.lm_head(last).float(), -1)[:, cand[:, 0]]
    # The other tokens of the long candidates continue a copy of the prefix cache, one row per (prompt, candidate).
    batch, n_long = input_ids.shape[0], len(long)
    rest = cand[long, :-1].repeat(batch, 1)  # inputs: every token but the last
    targets, target_mask = cand[long, 1:].repeat(batch, 1), cand_mask[long, 1:].repeat(batch, 1)
    cache = prefix.cache
    cache.batch_repeat_interleave(n_long)
    mask = torch.cat([attention_mask.repeat_interleave(n_long, 0), torch.ones_like(rest)], dim=1)
    start = position_ids[:, -1:].repeat_interleave(n_long, 0) + 1
    hidden = model.model(
        input_ids=rest, attention_mask=mask, position_ids=start + torch.arange(rest.shape[1], device=rest.device),
        cache=cache, use_cache=True,
    ).last_hidden_state
    # one pass of the head over both sets of positions (it is the largest matrix of a small model)
    logprobs = F.log_softmax(model.lm_head(torch.cat([last, hidden.flatten(0, 1)])).float(), -1)
    scores = logprobs[:batch, cand[:, 0]]  # (batch, n_candidates)
    later = logprobs[batch:].view(*rest.shape, -1).gather(-1, targets[..., None]).squeeze(-1)
    scores[:, long] += (later * target_mask).sum(-1).view(batch, n_long)
    return scores

__all__ = ["LABEL_LINE", "candidate_tensor", "label_prompt_ids", "left_pad", "score_candidates"]
