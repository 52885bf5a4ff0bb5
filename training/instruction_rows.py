"""The rows stages 2 and 3 train on, built once per stage from its windows and tokenised once.

Stage 2 pairs each window with a description of its measured band power (``describe``); stage 3 gives each window
one conversation of the instruction tasks (training templates only) and, for a seeded `label_only_share` of the
windows, a second one answered with the label alone. Texts come from `e2llm.processing.instructions`, relative to
the training windows' `EvidenceReference` for training and validation rows alike; each row keeps the index of its
window, whose model inputs the stage computes once (`e2llm.training.window_tensors`).
"""

from __future__ import annotations

import numpy as np
from datasets import concatenate_datasets

from e2llm.processing.instructions import build_instructions
from e2llm.training.data import tokenize_instructions


def instruction_mix(windows, tasks, reference, seed: int = 0, label_only_share: float = 0.0,
                    evidence_in_prompt: bool = False, evidence_strongest: int | None = None):
    """`(conversations, window_index)`: one stage-3 conversation per window of `windows` (tasks drawn from
    `tasks`), then a ``label`` conversation for a seeded `label_only_share` of the windows; `window_index[i]` is the
    window of conversation i. Rationales are relative to `reference`; `evidence_in_prompt` / `evidence_strongest`
    as in `build_instructions`."""
    if not 0.0 <= label_only_share <= 1.0:
        raise ValueError(f"label_only_share must be in [0, 1], got {label_only_share}")
    evidence = {"evidence_in_prompt": evidence_in_prompt, "evidence_strongest": evidence_strongest}
    conversations = build_instructions(windows, tasks=tuple(tasks), template_split="train", seed=seed,
                                       reference=reference, **evidence)
    index = np.arange(len(windows))
    n_label = int(round(label_only_share * len(windows)))
    if n_label == 0:
        return conversations, index
    rows = np.sort(np.random.default_rng(seed + 1).choice(len(windows), size=n_label, replace=False))
    label_only = build_instructions(windows.select(rows), tasks=("label",), template_split="train", seed=seed + 1,
                                    reference=reference, **evidence)
    return concatenate_datasets([conversations, label_only]), np.concatenate([index, rows])


def description_rows(processor, windows, reference, seed: int = 0, offset: int = 0,
                     max_length: int | None = None):
    """Stage-2 rows: each window of `windows` with the description of its evidence (window indices from
    `offset`)."""
    pairs = build_instructions(windows, tasks=("describe",), seed=seed, reference=reference)
    return tokenize_instructions(processor, pairs, offset + np.arange(len(windows)), max_length)


def instruction_rows(processor, windows, reference, tasks, seed: int = 0, offset: int = 0, max_length=None,
                     **mix):
    """Stage-3 rows: the tokenised `instruction_mix` of `windows` (window indices from `offset`); `mix`: the
    keyword arguments of `instruction_mix`."""
    conversations, index = instruction_mix(windows, tasks, reference, seed, **mix)
    return tokenize_instructions(processor, conversations, offset + index, max_length)


__all__ = ["description_rows", "instruction_mix", "instruction_rows"]
