"""Where a model's label probabilities come from, as its config says (never a silent choice).

Two sources can give them: the language model (softmax of the labels' log-likelihoods after the answer, divided by
`config.label_temperature`) and the encoder's stage-1 emotion head (softmax of its logits divided by
`config.head_temperature`; only with `eeg_config.emotion_token`). `config.label_probabilities` names the one
`score_emotions` and the pipeline's ``scores`` use; stage 3 chooses it, and fits both temperatures, on validation
windows (`e2llm.training.evaluation.calibration.calibrate_label_sources`) and records the figures in
`config.label_calibration`. The pipeline returns both sources' probabilities next to ``scores``.
"""

from __future__ import annotations

import math

import torch

from .label_guidance_e2llm import check_guidance_weight

LABEL_SOURCES = ("language_model", "emotion_head")


def check_label_source(config) -> None:
    """One clear error for a label source the model cannot give, or a temperature that is not a positive number."""
    if config.label_probabilities not in LABEL_SOURCES:
        raise ValueError(f"label_probabilities must be one of {LABEL_SOURCES}, got {config.label_probabilities!r}")
    for name in ("label_temperature", "head_temperature"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")
    check_guidance_weight(config.label_guidance_weight)
    if config.label_guidance_weight > 0 and not getattr(config.eeg_config, "emotion_token", False):
        raise ValueError("label_guidance_weight > 0 adds the encoder's emotion head to the written label, but this "
                         "encoder has none (eeg_config.emotion_token is false): set label_guidance_weight=0")
    decision = getattr(config, "label_decision", "language_model")
    if decision not in LABEL_SOURCES:
        raise ValueError(f"label_decision must be one of {LABEL_SOURCES}, got {decision!r}")
    if decision == "emotion_head" and not getattr(config.eeg_config, "emotion_token", False):
        raise ValueError("label_decision='emotion_head' writes the encoder's emotion head's label, but this encoder "
                         "has none (eeg_config.emotion_token is false): use label_decision='language_model'")
    if config.label_probabilities == "emotion_head" and not getattr(config.eeg_config, "emotion_token", False):
        raise ValueError("label_probabilities='emotion_head' reads the encoder's emotion head, but this encoder has "
                         "none (eeg_config.emotion_token is false): use label_probabilities='language_model'")


def source_probabilities(config, label_scores: torch.Tensor | None, emotion_logits: torch.Tensor | None) -> dict:
    """``{"language_model": (batch, n_labels) or None, "emotion_head": (batch, n_labels) or None}``: each source's
    temperature-scaled probabilities (`label_scores`: the labels' log-likelihoods; `emotion_logits`: the head's)."""
    out = {"language_model": None, "emotion_head": None}
    if label_scores is not None:
        out["language_model"] = (label_scores.float() / float(config.label_temperature)).softmax(-1)
    if emotion_logits is not None:
        out["emotion_head"] = (emotion_logits.float() / float(config.head_temperature)).softmax(-1)
    return out


__all__ = ["LABEL_SOURCES", "check_label_source", "source_probabilities"]
