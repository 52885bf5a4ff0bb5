"""Argument checks of the eeg-emotion pipeline: types and ranges, control tokens in user text, finite scores.

Each failure is one `ValueError` / `TypeError` naming the argument, the problem and the fix.

>>> check_pipeline_arguments(batch_size=0)
Traceback (most recent call last):
...
ValueError: batch_size must be a positive integer, got 0
"""

from __future__ import annotations

import numbers

import torch


def _flag(name: str, value) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def _positive_int(name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_pipeline_arguments(batch_size=None, apply_filters=None, return_rationale=None, return_evidence=None,
                             max_new_tokens=None, attribution_steps=None) -> None:
    """TypeError / ValueError for a pipeline argument of the wrong type or out of range (None: not given)."""
    for name, value in (("apply_filters", apply_filters), ("return_rationale", return_rationale),
                        ("return_evidence", return_evidence)):
        _flag(name, value)
    for name, value in (("batch_size", batch_size), ("max_new_tokens", max_new_tokens),
                        ("attribution_steps", attribution_steps)):
        _positive_int(name, value)


def control_tokens_in(text: str, tokenizer) -> list[str]:
    """The tokenizer's special tokens (``<|im_end|>``, ``<|eeg|>``, ...) written inside `text`."""
    if tokenizer is None:
        return []
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    specials |= {str(token) for token in (getattr(tokenizer, "added_tokens_encoder", {}) or {})}
    return sorted(token for token in specials if token and token in text)


def user_texts(question, prompt) -> list[str]:
    """The texts a user wrote: `question`, and the text parts of the user turns of a `prompt` conversation."""
    texts = [question] if isinstance(question, str) else []
    if isinstance(prompt, str):
        texts.append(prompt)
    elif prompt is not None:
        for message in prompt:
            if not isinstance(message, dict) or message.get("role") != "user":
                continue
            content = message.get("content")
            parts = [content] if isinstance(content, str) else [p.get("text") for p in content or []
                                                                  if isinstance(p, dict)]
            texts += [part for part in parts if isinstance(part, str)]
    return texts


def check_user_text(question, prompt, tokenizer) -> None:
    """ValueError when user text holds a control token: it would become a real turn or EEG boundary."""
    if question is not None and not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}")
    for text in user_texts(question, prompt):
        found = control_tokens_in(text, tokenizer)
        if found:
            raise ValueError(f"the question holds the control token(s) {found}, which would end the turn or fake an "
                             "EEG placeholder; remove them from the text")


def check_finite_scores(scores: torch.Tensor) -> None:
    """ValueError when label scores are NaN/Inf: no label is ever derived from them."""
    if not bool(torch.isfinite(scores).all()):
        bad = int((~torch.isfinite(scores)).any(dim=-1).sum()) if scores.ndim > 1 else 1
        raise ValueError(f"label scoring gave NaN/Inf for {bad} window(s) (extreme EEG values or a broken model); "
                         "no label is returned. Check the recording's units and artefacts")


__all__ = ["check_finite_scores", "check_pipeline_arguments", "check_user_text", "control_tokens_in", "user_texts"]
