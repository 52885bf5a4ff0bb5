"""Generation and label scoring in one pass of the language model over prompt + rationale.

`generate` returns each step's logits and its KV cache. When a row's generated tokens begin with exactly the tokens
label scoring would append to the prompt (`scoring_e2llm.label_prompt_ids`: the rationale up to its label line, then
``Emotion:``), the logits of the next step are the distribution over every label's first token, so single-token labels
are scored without another pass; the other tokens of longer labels continue the generation's own cache, with the
attention mask cut back to the end of the row's prefix and positions continuing from there. Rows whose answer does not
line up (no label line, the label line written in other tokens, generation stopped right after ``Emotion:``, beam
search, a static cache) are scored as before: one prefix pass over prompt + prefix (`score_candidates`). Both give
the same numbers (tested).

On CUDA, `generate` uses a static KV cache, which Transformers compiles (`torch.compile`) for the decoding steps;
elsewhere the dynamic cache. A `cache_implementation` given by the caller wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .scoring_e2llm import candidate_tensor, label_prompt_ids, left_pad, score_candidates


def generation_defaults(device: torch.device, generate_kwargs: dict) -> dict:
    """`generate_kwargs` with the static cache (compiled decoding) on CUDA unless a cache is chosen."""
    kwargs = dict(generate_kwargs)
    if int(kwargs.get("num_return_sequences", 1) or 1) != 1:
        raise ValueError("the eeg-emotion pipeline returns one answer per window: num_return_sequences must be 1")
    if torch.device(device).type == "cuda":
        kwargs.setdefault("cache_implementation", "static")
    return kwargs


@dataclass
class Answers:
    """Per row: the generated `texts` (empty without a rationale), label log-likelihoods `scores` `(n, n_labels)`,
    whether each row's scores came from the generation's own logits/cache (`from_generation`), and the token ids after
    the prompt that label scoring continues (`tails`: the rationale as generated up to its label line, ``Emotion:``)."""

    texts: list[str]
    scores: torch.Tensor
    from_generation: list[bool]
    tails: list[list[int]]


def _rows(prompts: Sequence[torch.Tensor], tails: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    return [torch.cat([p, torch.as_tensor(list(t), dtype=torch.long, device=p.device)]) for p, t in zip(prompts, tails)]


def score_without_rationale(model, tokenizer, prompts, features, candidate_ids, pad_id: int) -> Answers:
    """Label scoring right after the prompt (``Emotion:`` appended): one prefix pass."""
    _, tail = label_prompt_ids(tokenizer, None)
    input_ids, attention_mask = left_pad(_rows(prompts, [tail] * len(prompts)), pad_id)
    scores = score_candidates(model, input_ids, attention_mask, candidate_ids, eeg_features=features)
    return Answers([""] * len(prompts), scores, [False] * len(prompts), [list(tail)] * len(prompts))


def generate_and_score(model, tokenizer, prompts: Sequence[torch.Tensor], features: torch.Tensor,
                       candidate_ids: Sequence[Sequence[int]], pad_id: int, generate_kwargs: dict) -> Answers:
    """Generate a rationale per prompt (one window each, `features` `(n, num_eeg_tokens, hidden)`) and score every
    label after its ``Emotion:`` (see the module docstring)."""
    input_ids, attention_mask = left_pad(list(prompts), pad_id)
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, eeg_features=features,
                         return_dict_in_generate=True, output_logits=True, **generate_kwargs)
    generated = out.sequences[:, input_ids.shape[1] :].tolist()
    answers = [label_prompt_ids(tokenizer, row) for row in generated]
    texts = [text for text, _ in answers]
    prefixes = [ids for _, ids in answers]
    n_steps = len(out.logits)
    continuable = all(len(c) == 1 for c in candidate_ids) or _cache_continues(out.cache)
    beams = int(generate_kwargs.get("num_beams", 1) or 1) != 1  # beams reorder rows and caches
    reusable = [row[: len(prefix)] == prefix and len(prefix) < n_steps and continuable and not beams
                for row, prefix in zip(generated, prefixes)]
    scores = torch.empty(len(prompts), len(candidate_ids), device=input_ids.device)
    fresh = [i for i, ok in enumerate(reusable) if not ok]
    if fresh:
        rows = _rows([prompts[i] for i in fresh], [prefixes[i] for i in fresh])
        ids, mask = left_pad(rows, pad_id)
        scores[fresh] = score_candidates(model, ids, mask, candidate_ids, eeg_features=features[fresh]).float()
    if len(fresh) < len(prompts):
        lengths = [len(prefix) if ok else 0 for prefix, ok in zip(prefixes, reusable)]
        from_generation = _scores_from_generation(model, out, lengths, attention_mask, candidate_ids)
        kept = [i for i, ok in enumerate(reusable) if ok]
        scores[kept] = from_generation[kept]
    return Answers(texts, scores, reusable, prefixes)


def _cache_continues(cache) -> bool:
    """Whether the generation's cache can take more tokens (a dynamic cache; a static one is full-length)."""
    return cache is not None and type(cache).__name__ == "DynamicCache"


def _scores_from_generation(model, out, prefix_lengths: list[int], prompt_mask: torch.Tensor,
                            candidate_ids) -> torch.Tensor:
    """Label log-likelihoods `(batch, n_candidates)` after each row's prefix (`prefix_lengths` generated tokens) from
    the generation's logits (first tokens) and its cache (the rest); rows that are not used may hold anything."""
    device = prompt_mask.device
    cand, cand_mask = candidate_tensor(candidate_ids, device)
    steps = torch.stack(out.logits, dim=1)  # (batch, n_steps, vocab): step t predicts generated token t
    at = torch.tensor(prefix_lengths, device=device)
    first = steps[torch.arange(len(at), device=device), at].float().log_softmax(-1)  # (batch, vocab)
    scores = first[:, cand[:, 0]]
    long = torch.nonzero(cand_mask.sum(-1) > 1).flatten()
    if len(long):
        scores[:, long] += _continue_cache(model, out.cache, at, prompt_mask, steps.shape[1], cand, cand_mask, long)
    return scores


def _continue_cache(model, cache, prefix_lengths: torch.Tensor, prompt_mask, n_steps: int, cand, cand_mask,
                    long) -> torch.Tensor:
    """Log-likelihood of the tokens after the first of each long candidate, continuing the generation's cache from
    the end of each row's prefix (later generated tokens masked out, positions continuing the prefix):
    `(batch, n_long)`."""
    batch, n_long, device = prompt_mask.shape[0], len(long), prompt_mask.device
    kept = torch.arange(n_steps - 1, device=device)[None] < prefix_lengths[:, None]
    past_mask = torch.cat([prompt_mask, kept.long()], dim=1)  # the cache: prompt + every processed generated token
    rest = cand[long, :-1].repeat(batch, 1)  # inputs: every token but the last
    targets, target_mask = cand[long, 1:].repeat(batch, 1), cand_mask[long, 1:].repeat(batch, 1)
    cache.batch_repeat_interleave(n_long)
    mask = torch.cat([past_mask.repeat_interleave(n_long, 0), torch.ones_like(rest)], dim=1)
    start = (prompt_mask.sum(-1) + prefix_lengths)[:, None].repeat_interleave(n_long, 0)
    hidden = model.model(input_ids=rest, attention_mask=mask, cache=cache, use_cache=True,
                         position_ids=start + torch.arange(rest.shape[1], device=device)).last_hidden_state
    logprobs = F.log_softmax(model.lm_head(hidden).float(), -1)
    later = logprobs.gather(-1, targets[..., None]).squeeze(-1)
    return (later * target_mask).sum(-1).view(batch, n_long)


__all__ = ["Answers", "generate_and_score", "generation_defaults", "score_without_rationale"]
