"""Label scoring as `E2LLMForConditionalGeneration.score_labels` did it at commit c847536, kept as the benchmarks'
reference: every prompt (+ rationale) is repeated once per label candidate and all `batch * n_candidates` full
rows run through the language model (the EEG is encoded once).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def score_labels_per_label_copies(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor,
    candidate_ids: Sequence[Sequence[int]],
    eeg_values: torch.Tensor | None = None,
    eeg_channel_ids: torch.LongTensor | None = None,
    eeg_channel_mask: torch.LongTensor | None = None,
    eeg_features: torch.Tensor | None = None,
) -> torch.Tensor:
    """`(batch, n_candidates)` summed log-probabilities (the c847536 algorithm, verbatim but for `self` -> `model`
    and `eeg_features`, precomputed EEG, accepted as the model now does)."""
    if not candidate_ids or any(len(c) == 0 for c in candidate_ids):
        raise ValueError("every candidate needs at least one token")
    device = input_ids.device
    batch, prompt_len = input_ids.shape
    n_candidates, cand_len = len(candidate_ids), max(len(c) for c in candidate_ids)
    cand = torch.zeros(n_candidates, cand_len, dtype=torch.long, device=device)
    cand_mask = torch.zeros(n_candidates, cand_len, dtype=torch.long, device=device)
    for i, ids in enumerate(candidate_ids):
        cand[i, : len(ids)] = torch.as_tensor(list(ids), device=device)
        cand_mask[i, : len(ids)] = 1

    prompt_embeds, _ = model.model.embed_inputs(
        input_ids, None, eeg_values, eeg_channel_ids, eeg_channel_mask, eeg_features=eeg_features
    )
    cand_embeds = model.get_input_embeddings()(cand)
    rows = batch * n_candidates
    embeds = torch.cat([prompt_embeds.repeat_interleave(n_candidates, 0), cand_embeds.repeat(batch, 1, 1)], dim=1)
    mask = torch.cat([attention_mask.repeat_interleave(n_candidates, 0), cand_mask.repeat(batch, 1)], dim=1)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = model.model.language_model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state
    # Position t predicts token t + 1: the candidate's tokens are predicted from prompt_len - 1 on.
    logits = model.lm_head(hidden[:, prompt_len - 1 : prompt_len - 1 + cand_len]).float()
    token_logprobs = F.log_softmax(logits, -1).gather(-1, cand.repeat(batch, 1)[..., None]).squeeze(-1)
    return (token_logprobs * cand_mask.repeat(batch, 1)).sum(-1).view(rows // n_candidates, n_candidates)


__all__ = ["score_labels_per_label_copies"]
