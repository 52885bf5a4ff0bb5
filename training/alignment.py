"""What stage 2 (cross-modal alignment) is for, measured: descriptions read from the EEG, not guessed from the text.

`alignment_gap` scores each window's description with its own EEG, with another window's EEG (a derangement) and
with zeros. Alignment works when the real-EEG loss is clearly below the shuffled one.
"""

from __future__ import annotations

import numpy as np
import torch
from accelerate.utils import send_to_device

from e2llm.training.data import IGNORE_INDEX, InstructionCollator
from e2llm.training.evaluation.rationales import derangement
from e2llm.training.instruction_rows import description_rows
from e2llm.training.window_tensors import WindowTensors, extract_windows


def _variants(tensors: WindowTensors, permutation: np.ndarray) -> dict[str, WindowTensors]:
    """The windows' own EEG, another window's (`permutation`), and zeros (same channels)."""
    real = tensors.tensors
    shuffled = tensors.gather(torch.as_tensor(permutation))
    zeros = {**real, "eeg_values": torch.zeros_like(real["eeg_values"])}
    return {"real": tensors, "shuffled": WindowTensors(shuffled), "zeros": WindowTensors(zeros)}


@torch.no_grad()
def _summed_losses(model, rows, variants: dict, pad_token_id: int, batch_size: int) -> dict[str, list]:
    """Per variant: `[summed answer-token loss, answer-token count]` over `rows`."""
    totals = {name: [0.0, 0] for name in variants}
    collators = {name: InstructionCollator(windows, pad_token_id) for name, windows in variants.items()}
    for start in range(0, len(rows), batch_size):
        batch_rows = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        for name, collate in collators.items():
            batch = collate(batch_rows)
            batch = send_to_device(batch, model.device)
            labels = batch.pop("labels")
            logits = model(**batch, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                                     ignore_index=IGNORE_INDEX, reduction="sum")
            totals[name][0] += float(loss)
            totals[name][1] += int((labels[:, 1:] != IGNORE_INDEX).sum())
    return totals


def alignment_gap(model, processor, windows, reference, seed: int = 0, batch_size: int = 16,
                  max_windows: int | None = 256) -> dict:
    """Mean description loss of `windows` (a prepared dataset; descriptions relative to `reference`, the training
    windows' `EvidenceReference`) with each window's own EEG, with the EEG shuffled across windows and with zero
    EEG: per answer token (``loss_*``) and per description (``description_nll_*``, the negative log-likelihood of
    a whole description, in nats); at most `max_windows` evenly spaced windows."""
    if max_windows is not None and len(windows) > max_windows:
        windows = windows.select(np.linspace(0, len(windows) - 1, max_windows).round().astype(int))
    n = len(windows)
    if n < 2:
        raise ValueError("the alignment gap needs at least two windows")
    rows = description_rows(processor, windows, reference, seed=seed)
    variants = _variants(extract_windows(windows, processor.feature_extractor),
                         derangement(n, np.random.default_rng(seed)))
    was_training = model.training
    model.eval()
    try:
        totals = _summed_losses(model, rows, variants, processor.tokenizer.pad_token_id, batch_size)
    finally:
        model.train(was_training)
    out = {f"loss_{name}_eeg": total / max(count, 1) for name, (total, count) in totals.items()}
    out.update({f"description_nll_{name}_eeg": total / n for name, (total, _) in totals.items()})
    out.update(gap_shuffled_minus_real=out["loss_shuffled_eeg"] - out["loss_real_eeg"],
               description_gap_shuffled_minus_real=(out["description_nll_shuffled_eeg"]
                                                    - out["description_nll_real_eeg"]),
               tokens_per_description=totals["real"][1] / n, n_windows=n)
    return out


__all__ = ["alignment_gap"]
