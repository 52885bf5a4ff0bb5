"""Typed keyword arguments of the feature extractor and the processor, the Transformers 5 way
(`ProcessingKwargs` / `valid_processor_kwargs`, as Qwen2-Audio's processor).

This module has no `from __future__ import annotations`: Transformers reads these annotations as classes.
"""

from typing import Any, TypedDict

from transformers.processing_utils import ProcessingKwargs


class E2LLMEEGKwargs(TypedDict, total=False):
    """Keyword arguments of `E2LLMFeatureExtractor.__call__`, in the processor's `audio_kwargs` (the slot Transformers
    maps to a feature extractor)."""

    sampling_rate: int | float | None
    channel_names: Any
    units: str | None
    apply_filters: bool | None
    channel_map: dict | None
    montage: Any
    line_freq: int | float | None
    return_band_power: bool | None
    return_window_statistics: bool | None
    return_tensors: Any


class E2LLMProcessorKwargs(ProcessingKwargs, total=False):
    """Typed keyword arguments of `E2LLMProcessor.__call__`: the tokenizer's (`text_kwargs`), the feature
    extractor's (`audio_kwargs`, see `E2LLMEEGKwargs`) and `return_metadata`. Flat keyword arguments are routed by
    name."""

    audio_kwargs: E2LLMEEGKwargs
    return_metadata: bool
    _defaults = {"text_kwargs": {"padding": True}}


__all__ = ["E2LLMEEGKwargs", "E2LLMProcessorKwargs"]
