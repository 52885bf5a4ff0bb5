"""Every input check of the EEG path, in one module: the feature extractor, streaming and the `eeg-emotion` pipeline
call these, and import nothing else from each other for them (no import cycle).

Each failure is one `ValueError` / `TypeError` naming the input, the problem and the fix.

>>> check_pipeline_arguments(batch_size=0)
Traceback (most recent call last):
...
ValueError: batch_size must be a positive integer, got 0
>>> check_sampling_rate(None, "array input")
Traceback (most recent call last):
...
ValueError: sampling_rate is required for array input: pass the rate in Hz at which the EEG was recorded (it is never guessed).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

import numpy as np
import torch

UNIT_SCALE = {"V": 1e6, "mV": 1e3, "uV": 1.0, "µV": 1.0, "μV": 1.0}  # to microvolts; micro sign and Greek mu
# Median channel std (µV, after the band-pass when filters are applied) outside which the stated units are
# taken to be wrong. Scalp EEG band-passed to 0.1-70 Hz has channel stds of ~5-100 µV (a few hundred with
# heavy artefacts); volts passed as "uV" give ~1e-5 µV and microvolts passed as "V" give ~1e7 µV, so both
# mistakes sit more than three orders of magnitude outside this range.
DEFAULT_PLAUSIBLE_STD_UV = (0.05, 5000.0)
# Sampling rates accepted for input EEG, in Hz. Below 32 Hz a recording holds no band above delta/theta (and a
# mistyped rate such as 1 Hz for 1 kHz data would make minutes look like hours); above 100 kHz no EEG amplifier
# records, and the polyphase resampling ratio to the model rate cannot be represented.
PLAUSIBLE_SAMPLING_RATE_HZ = (32.0, 100_000.0)
# Largest |sample| in µV accepted after unit conversion: 10 V, beyond any EEG amplifier's range. Larger values are
# not a voltage (wrong units, a corrupt file) and would overflow float32 statistics into NaN.
MAX_ABS_UV = 1e7


# ---------------------------------------------------------------- signal inputs
def check_sampling_rate(value, what: str, plausible: bool = True) -> float:
    """`value` as a float number of Hz; ValueError when missing, not a number, not positive or not plausible."""
    if value is None:
        raise ValueError(
            f"sampling_rate is required for {what}: pass the rate in Hz at which the EEG was recorded "
            "(it is never guessed)."
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"sampling_rate must be a number of Hz, got {value!r} ({type(value).__name__})")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"sampling_rate must be a positive number of Hz, got {value}")
    low, high = PLAUSIBLE_SAMPLING_RATE_HZ
    if plausible and not low <= value <= high:
        raise ValueError(
            f"sampling_rate={value} Hz is outside the plausible EEG range {low:g}-{high:g} Hz: pass the rate in Hz at "
            "which the EEG was recorded (not a period in seconds or a rate in kHz)"
        )
    return float(value)


def check_units(units, what: str = "array input") -> float:
    """Microvolts per unit of `units` ("V" or "uV"/"µV")."""
    if units is None:
        raise ValueError(f"units is required for {what}: 'V' (volts), 'mV' or 'uV' (microvolts).")
    if units not in UNIT_SCALE:
        raise ValueError(f"units must be 'V', 'mV' or 'uV' ('µV'), got {units!r}")
    return UNIT_SCALE[units]


def check_channel_names(channel_names) -> None:
    """TypeError unless `channel_names` is None, a list of strings, or a list of such lists."""
    if channel_names is None:
        return
    if isinstance(channel_names, (str, bytes)) or not isinstance(channel_names, (Sequence, np.ndarray)):
        raise TypeError(
            f"channel_names must be a list of channel-name strings (or one such list per item), got "
            f"{type(channel_names).__name__}: {channel_names!r:.80}"
        )
    for entry in channel_names:
        if isinstance(entry, str):
            continue
        nested_ok = isinstance(entry, (Sequence, np.ndarray)) and not isinstance(entry, bytes)
        if not nested_ok or not all(isinstance(name, str) for name in entry):
            raise TypeError(
                f"channel_names must hold strings (or lists of strings, one per item); found {entry!r:.60} "
                f"({type(entry).__name__})"
            )


def check_flag(name: str, value) -> None:
    """TypeError unless `value` is None or a bool."""
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def as_array(data, label: str) -> np.ndarray:
    """`data` (array, tensor or nested list) as a real numeric numpy array; ValueError / TypeError otherwise."""
    if isinstance(data, torch.Tensor):
        if data.is_complex() or data.dtype == torch.bool:
            raise ValueError(f"{label}: EEG must be a real-valued numeric tensor, got dtype {data.dtype}")
        data = data.detach().cpu().double().numpy()
    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"{label}: EEG must be an array, tensor or MNE object, got {type(data).__name__}")
    try:
        data = np.asarray(data)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"{label}: EEG must be a rectangular (n_channels, n_times) array: {error}") from None
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise ValueError(f"{label}: EEG must be a real-valued numeric array, got dtype {data.dtype}")
    return data


def check_values(array: np.ndarray, names: list[str], label: str) -> None:
    """ValueError naming the channels that hold NaN/Inf; `array` is `(..., n_channels, n_times)`."""
    finite = np.isfinite(array)
    if finite.all():
        return
    bad_per_channel = (~finite).reshape(-1, *array.shape[-2:]).sum(axis=(0, -1))  # (n_channels,)
    channels = np.nonzero(bad_per_channel)[0]
    where = ", ".join(
        f"{names[c] if c < len(names) else f'#{c}'!r}: {bad_per_channel[c]}" for c in channels[:10]
    )
    more = f" and {len(channels) - 10} more channels" if len(channels) > 10 else ""
    raise ValueError(
        f"{label}: {int(bad_per_channel.sum())} NaN/Inf values in {len(channels)} channel(s) ({where}{more})."
    )


def check_peak(peak: float, scale: float, label: str) -> None:
    """ValueError when the largest |sample| (`peak`, input units; `scale` µV per unit) is no voltage."""
    if peak * scale <= MAX_ABS_UV:
        return
    hint = ("this looks like microvolts given as volts (pass units='uV')" if scale > 1 and peak <= MAX_ABS_UV
            else "check the units and the file (corrupt samples or a wrong scale)")
    raise ValueError(f"{label}: a sample of {peak * scale:.3g} µV after unit conversion is beyond any EEG "
                     f"amplifier's range ({MAX_ABS_UV:g} µV): {hint}")


def check_length(n_windows: int, n_times: int, rate: float, window_seconds: float, label: str) -> None:
    """ValueError when the input gives no window."""
    if n_windows == 0:
        raise ValueError(
            f"{label}: too short for one window: {window_seconds} s needed, {n_times / rate:.3f} s given "
            f"({n_times} samples at {rate} Hz)."
        )


def total_memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(n_items: int, n_channels: int, n_times: int, n_out: int, rate: float, label: str) -> None:
    """ValueError, before anything is allocated, when processing the input at once would need more memory than the
    machine has (float32 copies of the input, the resampled (`n_out` samples) and filtered signal, and the windows)."""
    total = total_memory_bytes()
    need = 4 * n_items * n_channels * (2 * n_times + 4 * n_out)
    if total is not None and need > 0.8 * total:
        raise ValueError(
            f"{label}: {n_channels} channels x {n_times} samples at {rate:g} Hz need about {need / 2**30:.1f} GiB "
            f"at once, more than this machine's {total / 2**30:.1f} GiB: use `iter_windows` (bounded memory, "
            "streams files) or pass the recording in parts"
        )


def check_amplitude(data: np.ndarray, flat: np.ndarray, labels: list[str], plausible_std_uv) -> None:
    """ValueError when the median channel std (µV) of an item of `data` `(n_items, n_channels, n_times)` says the
    units are wrong; `flat` `(n_items, n_channels)` channels are left out of the median."""
    std = np.where(flat, np.nan, data.std(axis=-1))
    typical = np.nanmedian(std, axis=-1)  # (n_items,)
    low, high = plausible_std_uv
    for label, value in zip(labels, typical):
        if value < low:
            # EEG of ~20 µV reads as ~2e-5 when in volts and ~0.02 when in millivolts
            likely = "volts given as microvolts (pass units='V')" if value < 1e-3 else \
                "millivolts given as microvolts (pass units='mV')"
            raise ValueError(
                f"{label}: median channel std is {value:.3g} µV, below {low} µV: this looks like {likely}, or a "
                "recording without signal (electrodes off, amplifier saturated or disconnected)."
            )
        if value > high:
            raise ValueError(
                f"{label}: median channel std is {value:.3g} µV, above {high} µV: this looks like "
                "microvolts given as volts (pass units='uV')."
            )


def check_finite_output(windows: np.ndarray, labels: list[str]) -> None:
    """ValueError when the chain produced NaN/Inf (finite but extreme inputs overflowing float32): never a label
    from such windows. `windows` is `(n_items, n_windows, n_channels, n_times)`."""
    finite = np.isfinite(windows).all(axis=(1, 2, 3))
    if not finite.all():
        bad = [label for label, ok in zip(labels, finite) if not ok]
        raise ValueError(f"{', '.join(bad)}: the processed windows hold NaN/Inf (extreme sample values overflow "
                         "float32); check the units and remove the artefact")


def check_windows_per_chunk(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"windows_per_chunk must be a positive integer, got {value!r}")


def check_line_freq(value) -> float | None:
    """`line_freq` (the mains frequency the notch removes) as a float, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"line_freq must be the mains frequency in Hz (50 or 60), got {value!r}")
    return float(value)


# ---------------------------------------------------------------- pipeline arguments
def _positive_int(name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_pipeline_arguments(batch_size=None, apply_filters=None, return_rationale=None, return_evidence=None,
                             max_new_tokens=None, attribution_steps=None, constrain_claims=None,
                             guide_labels=None) -> None:
    """TypeError / ValueError for a pipeline argument of the wrong type or out of range (None: not given)."""
    for name, value in (("apply_filters", apply_filters), ("return_rationale", return_rationale),
                        ("return_evidence", return_evidence), ("constrain_claims", constrain_claims),
                        ("guide_labels", guide_labels)):
        check_flag(name, value)
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


def check_prompt(prompt) -> None:
    """ValueError unless `prompt` is None, a string, or a chat (a list of message dicts)."""
    if prompt is None or isinstance(prompt, str):
        return
    if not isinstance(prompt, (list, tuple)) or not all(isinstance(m, dict) for m in prompt):
        raise ValueError(f"prompt= must be a string or a chat (a list of messages with one {{'type': 'eeg'}} part), "
                         f"got {type(prompt).__name__}")


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
    check_prompt(prompt)
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


__all__ = [
    "DEFAULT_PLAUSIBLE_STD_UV",
    "MAX_ABS_UV",
    "PLAUSIBLE_SAMPLING_RATE_HZ",
    "UNIT_SCALE",
    "as_array",
    "check_amplitude",
    "check_channel_names",
    "check_finite_output",
    "check_finite_scores",
    "check_flag",
    "check_length",
    "check_line_freq",
    "check_memory",
    "check_peak",
    "check_prompt",
    "check_pipeline_arguments",
    "check_sampling_rate",
    "check_units",
    "check_user_text",
    "check_values",
    "check_windows_per_chunk",
    "control_tokens_in",
    "total_memory_bytes",
    "user_texts",
]
