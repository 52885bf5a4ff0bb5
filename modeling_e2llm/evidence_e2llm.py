"""Evidence behind an `eeg-emotion` prediction: band power relative to a baseline and integrated gradients over the
encoder input, drawn as scalp maps.

Both reuse what the pipeline already computed: the band power comes from the windows of its one feature-extraction
run (measured inside the signal chain, before normalisation; `e2llm.chain_e2llm`), relative to the window's reference
(`e2llm.measured_evidence_e2llm`), and the attributions from its label-scoring rows, targets and channel layout.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .eeg_evidence_features import BANDS as EVIDENCE_BANDS  # the SEED family's five bands, [low, high) Hz
from .eeg_evidence_features import band_power_db  # one definition for rationales, their checks and these maps
from .scoring_e2llm import left_pad


def integrated_gradients(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor,
    target_ids: list[list[int]],
    eeg_values: torch.Tensor,
    eeg_channel_ids: torch.LongTensor,
    eeg_channel_mask: torch.LongTensor,
    steps: int = 16,
) -> torch.Tensor:
    """Integrated gradients (zero baseline, `steps` midpoint Riemann steps) of each window's target log-likelihood
    with respect to the encoder input, summed over time: `(n_windows, n_channels)`.

    `input_ids` / `attention_mask` `(n_windows, prompt_len)` are the left-padded label-scoring prompts (one window
    each), `target_ids` the token ids of each window's target label. All `n_windows * steps` points of the paths go
    through the encoder and the language model in one batched pass.
    """
    if steps < 1:
        raise ValueError(f"attribution_steps must be at least 1, got {steps}")
    n, device = len(target_ids), input_ids.device
    # prompt + target per window, left-padded; the targets aligned with the rows' ends
    rows, masks = left_pad([torch.cat([ids[mask.bool()], torch.as_tensor(target, device=device)])
                            for ids, mask, target in zip(input_ids, attention_mask, target_ids)], pad_token_id=0)
    targets, target_mask = left_pad([torch.as_tensor(target, device=device) for target in target_ids], pad_token_id=0)
    width = targets.shape[1]
    rows, masks, targets, target_mask = (x.repeat_interleave(steps, 0) for x in (rows, masks, targets, target_mask))
    alphas = (torch.arange(steps, device=device, dtype=eeg_values.dtype) + 0.5) / steps
    with torch.enable_grad():
        path = (eeg_values.repeat_interleave(steps, 0) * alphas.repeat(n)[:, None, None]).requires_grad_(True)
        features = model.get_eeg_features(path, eeg_channel_ids.repeat_interleave(steps, 0),
                                          eeg_channel_mask.repeat_interleave(steps, 0))
        hidden = model.model(
            input_ids=rows, attention_mask=masks, position_ids=(masks.cumsum(-1) - 1).clamp(min=0),
            eeg_features=features, use_cache=False,
        ).last_hidden_state
        logits = model.lm_head(hidden[:, -width - 1 : -1]).float()  # position t predicts token t + 1
        logp = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        (grad,) = torch.autograd.grad((logp * target_mask).sum(), path)
    mean_grad = grad.view(n, steps, *grad.shape[1:]).mean(1)
    return (eeg_values * mean_grad).sum(-1).detach().float().cpu()


def evidence_map(relative_db: np.ndarray, attribution: np.ndarray, channel_names: list[str], sampling_rate: float,
                 start: float, evidence_dir=None, stem: str = "evidence") -> dict:
    """PNG of scalp maps of one window: band power relative to the baseline (dB) per band `(n_bands, n_channels)`
    and the input attribution `(n_channels,)`; returns its path and the values by channel name."""
    try:  # optional: inside try so remote-code loading (check_imports) does not require them
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        import mne
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("evidence maps need MNE-Python and matplotlib: pip install mne matplotlib") from error

    attribution = np.asarray(attribution)[: len(channel_names)]
    info = mne.create_info(channel_names, sampling_rate, "eeg")
    builtin = mne.channels.get_builtin_montages()
    info.set_montage("colin27_1005" if "colin27_1005" in builtin else "standard_1005", on_missing="ignore")
    placed = np.array([not np.isnan(ch["loc"][:3]).any() and np.any(ch["loc"][:3]) for ch in info["chs"]])
    if placed.sum() < 3:
        raise ValueError(f"evidence maps need at least 3 channels with 10-05 positions, got {channel_names}")
    info = mne.pick_info(info, np.flatnonzero(placed))
    fig, axes = plt.subplots(1, len(EVIDENCE_BANDS) + 1, figsize=(3 * (len(EVIDENCE_BANDS) + 1), 3.2))
    limit = float(np.abs(relative_db[:, placed]).max()) or 1.0
    for ax, band, values in zip(axes, EVIDENCE_BANDS, relative_db):
        mne.viz.plot_topomap(values[placed], info, axes=ax, show=False, cmap="RdBu_r", vlim=(-limit, limit), res=32)
        ax.set_title(f"{band} (dB vs baseline)", fontsize=9)
    att_limit = float(np.abs(attribution[placed]).max()) or 1.0
    mne.viz.plot_topomap(attribution[placed], info, axes=axes[-1], show=False, cmap="PuOr_r",
                         vlim=(-att_limit, att_limit), res=32)
    axes[-1].set_title("integrated gradients", fontsize=9)
    fig.suptitle(f"window at {start:.1f} s", fontsize=10)
    folder = Path(evidence_dir) if evidence_dir is not None else Path(tempfile.mkdtemp(prefix="e2llm-evidence-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}_{os.getpid()}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return {
        "png": str(path),
        "relative_band_power_db": {band: dict(zip(channel_names, map(float, row)))
                                   for band, row in zip(EVIDENCE_BANDS, relative_db)},
        "attribution": dict(zip(channel_names, map(float, attribution))),
    }


__all__ = ["EVIDENCE_BANDS", "band_power_db", "evidence_map", "integrated_gradients"]
