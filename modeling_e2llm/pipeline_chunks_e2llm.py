"""The `eeg-emotion` pipeline's `preprocess`: one input -> window chunks, from the one signal chain.

An input (an array, an MNE `Raw` or `Epochs`, a path, an `EEGFile`, or a dict holding one of them with its own
arguments) is resolved once (a file is opened once). A continuous recording whose samples fit `WHOLE_BYTES` is read
once and run through the feature extractor at once; a longer one goes through `E2LLMFeatureExtractor.iter_windows`
(bounded memory: a checking pass, then the windows `STREAM_WINDOWS` at a time). Epochs give one item per epoch. Every
window comes out as one chunk (model inputs, its prompt ids, start, band power, and the input's `InputContext`), the
last one marked `is_last`, as Transformers' `ChunkPipeline` expects.

A model whose prompts carry each window's measured evidence needs the reference before its prompts are written:
`baseline` / `baseline_power`, the input's own mean (first pass over a streamed recording; its windows are kept when
they fit `WINDOW_CACHE_BYTES`, otherwise computed again), or the reference the model ships; without any, the input is
refused with what is needed. Other models' references are chosen in `postprocess`, which sees every window.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from .eeg_evidence_features import MontageSupport, montage_support
from .eeg_inputs_e2llm import is_epochs, is_mne_like
from .measured_evidence_e2llm import (
    MIN_OWN_REFERENCE_WINDOWS,
    Reference,
    baseline_reference,
    choose_reference,
    given_power_reference,
    recording_mean,
)
from .recording_file_e2llm import open_recording
from .validation_e2llm import check_line_freq

STREAM_WINDOWS = 64  # windows computed at a time for a streamed recording
WHOLE_BYTES = 64 * 2**20  # a recording whose used samples (float64) fit this is read once and processed at once
WINDOW_CACHE_BYTES = 256 * 2**20  # windows kept between the reference pass and the prompts of a streamed recording
SIGNAL_KEYS = ("sampling_rate", "channel_names", "units", "channel_map", "montage", "line_freq")
DICT_KEYS = {"eeg", *SIGNAL_KEYS, "question", "prompt", "baseline", "baseline_power"}


@dataclass
class InputContext:
    """What every window of one input shares: the question, the channels used and dropped, the filter, the
    reference (when chosen before the prompts), and the montage's support for claims."""

    question: str | None
    prompt: object
    channels: dict
    filter: str
    names: list[str]
    montage: MontageSupport
    epochs: bool
    n_windows: int
    reference: Reference | None = None
    baseline: Reference | None = None  # a reference the caller gave, for postprocess
    window_seconds: float = 4.0
    warnings: list[str] = field(default_factory=list)


def resolve(item, params: dict) -> tuple:
    """`(eeg, signal arguments, question, prompt, baseline, baseline_power)` of one input; a dict's entries win."""
    params = dict(params)
    if isinstance(item, Mapping):
        unknown = set(item) - DICT_KEYS
        if "eeg" not in item or unknown:
            raise ValueError(f"a dict input needs an 'eeg' entry and may add {sorted(DICT_KEYS - {'eeg'})}; got keys "
                             f"{sorted(item)}")
        params.update({k: v for k, v in item.items() if k != "eeg"})
        item = item["eeg"]
    if isinstance(item, (str, os.PathLike)):  # opened once; the file's reader applies the channel rule
        item = open_recording(item, channel_map=params.get("channel_map"), montage=params.get("montage"))
        params.update(channel_map=None, montage=None)
    if not (is_mne_like(item) or isinstance(item, np.ndarray) or hasattr(item, "detach")):
        raise ValueError(f"unsupported EEG input of type {type(item).__name__}: pass an array, an MNE Raw/Epochs, "
                         "a path to a recording, or a dict with 'eeg'")
    if not is_mne_like(item) and np.ndim(item) != 2:
        raise ValueError(f"an array input must be one recording (n_channels, n_times), got shape {np.shape(item)}"
                         "; pass a list of recordings for a batch")
    signal = {k: params.get(k) for k in SIGNAL_KEYS}
    if signal["line_freq"] is None and getattr(item, "line_freq", None) is not None:
        signal["line_freq"] = item.line_freq  # the file's own, where MNE knows it
    check_line_freq(signal["line_freq"])
    return item, signal, params.get("question"), params.get("prompt"), params.get("baseline"), \
        params.get("baseline_power")


def _fits(source) -> bool:
    return source.n_items * len(source.names) * source.n_times * 8 <= WHOLE_BYTES


def _batches(extractor, eeg, signal: dict, apply_filters: bool, stream: bool) -> Iterator:
    """Feature-extractor outputs of `eeg` with band power: the whole input at once, or streamed."""
    kwargs = dict(apply_filters=apply_filters, return_band_power=True, return_window_statistics=True,
                  return_tensors="np", **signal)
    if stream:
        yield from extractor.iter_windows(eeg, windows_per_chunk=STREAM_WINDOWS, **kwargs)
    else:
        yield extractor(eeg, **kwargs)


def _given_reference(extractor, baseline, baseline_power, eeg, signal, apply_filters, names) -> Reference | None:
    if baseline is not None and baseline_power is not None:
        raise ValueError("pass either baseline (a recording) or baseline_power (its band power), not both")
    if baseline_power is not None:
        return given_power_reference(baseline_power, signal["channel_names"] or getattr(eeg, "ch_names", None), names)
    if baseline is None:
        return None
    if isinstance(baseline, (str, os.PathLike)):
        baseline = open_recording(baseline, channel_map=signal["channel_map"], montage=signal["montage"])
        signal = {**signal, "channel_map": None, "montage": None}
    out = extractor(baseline, apply_filters=apply_filters, return_band_power=True, return_tensors="np", **signal)
    base_names = out["eeg_channels"][0]["used"]
    missing = sorted(set(names) - set(base_names))
    if missing:
        raise ValueError(f"the baseline recording must have the input's channels; it lacks {missing}")
    power = out["eeg_band_power"][:, :, : len(base_names)]
    return baseline_reference(power, base_names)


def _powers(batch, n_names: int) -> np.ndarray:
    """Band power `(n, n_bands, n_names)` dB of a batch's windows, NaN on flat channels."""
    power = batch["eeg_band_power"][:, :, :n_names].copy()
    power[np.broadcast_to(batch["eeg_channel_mask"][:, None, :n_names] == 0, power.shape)] = np.nan
    return power


def _prompt_reference(pipe, context: InputContext, batches, again) -> tuple[Reference, Iterator]:
    """The reference the prompts state evidence against (a model trained with evidence in its prompts), and the
    batches to go on with: the own mean takes a pass over the windows, kept when they fit `WINDOW_CACHE_BYTES`
    and computed again (`again()`) otherwise."""
    own = None
    if context.baseline is None and context.n_windows >= MIN_OWN_REFERENCE_WINDOWS:
        kept, powers, size = [], [], 0
        for batch in batches:
            powers.append(_powers(batch, len(context.names)))
            size += batch["eeg_values"].nbytes
            if kept is not None:
                kept = kept + [batch] if size <= WINDOW_CACHE_BYTES else None
        own = recording_mean(np.concatenate(powers), context.names)
        batches = iter(kept) if kept is not None else again()
    reference = choose_reference(context.n_windows, own, context.baseline, pipe.processor.evidence_statistics,
                                 context.names)
    if reference is None:
        raise ValueError(
            f"this model's prompts state each window's band power relative to a reference, and the input has "
            f"{context.n_windows} window(s), too few for its own mean (at least {MIN_OWN_REFERENCE_WINDOWS}, "
            f"{MIN_OWN_REFERENCE_WINDOWS * context.window_seconds:g} s), and the model ships no reference for its "
            "channels: pass baseline= (a recording of the same person and montage, e.g. at rest), baseline_power= "
            "(its mean band power), or a longer recording")
    return reference, batches


def window_chunks(pipe, item, apply_filters: bool = True, **params) -> Iterator[dict]:
    """The chunks of one input (see the module docstring)."""
    eeg, signal, question, prompt, baseline, baseline_power = resolve(item, params)
    extractor = pipe.processor.feature_extractor
    epochs = is_epochs(eeg)
    source = extractor.source(eeg, allow_batch=epochs, **{k: signal[k] for k in SIGNAL_KEYS if k != "line_freq"})
    stream = not epochs and not _fits(source)

    def make():
        return _batches(extractor, eeg, signal, apply_filters, stream)

    batches = make()
    first = next(batches)
    names = first["eeg_channels"][0]["used"]
    context = InputContext(question, prompt, first["eeg_channels"][0], first["eeg_filter"][0], names,
                           montage_support(names, getattr(pipe.model.config.eeg_config, "channel_names", None)),
                           epochs, source.n_items * extractor.window_count(source.n_times, source.rate),
                           window_seconds=extractor.window_seconds)
    context.baseline = _given_reference(extractor, baseline, baseline_power, eeg, signal, apply_filters, names)
    context.warnings = list(getattr(eeg, "warnings", None) or [])  # what MNE and the header checks said of a file
    batches = itertools.chain([first], batches)
    if pipe.processor.evidence_in_prompt:
        context.reference, batches = _prompt_reference(pipe, context, batches, make)
    yield from _chunks(pipe, context, batches)


def _chunks(pipe, context: InputContext, batches) -> Iterator[dict]:
    """One chunk per window, the last marked `is_last` (one window held back to know it)."""
    held, item = None, 0
    for batch in batches:
        per_item = batch["eeg_num_windows"].tolist()
        items = np.repeat(np.arange(item, item + len(per_item)), per_item)
        lines = _evidence_lines(pipe, context, batch)
        powers = _powers(batch, len(context.names))
        for i in range(len(batch["eeg_values"])):
            chunk = {"eeg_values": batch["eeg_values"][i], "eeg_channel_ids": batch["eeg_channel_ids"][i],
                     "eeg_channel_mask": batch["eeg_channel_mask"][i],
                     "prompt_ids": pipe.prompts.ids(context.question, context.prompt, lines[i]),
                     "start": float(batch["eeg_window_starts"][i]), "item": int(items[i]) if context.epochs else 0,
                     "band_power": powers[i], "unusable": batch["eeg_unusable"][i],
                     "refused": batch["eeg_refused"][i], "signal_statistics": batch["eeg_window_statistics"][i],
                     "context": context, "is_last": False}
            if held is not None:
                yield held
            held = chunk
        item += len(per_item)
    held["is_last"] = True
    yield held


def _evidence_lines(pipe, context: InputContext, batch) -> list[str | None]:
    """Each window's measured-evidence line for its prompt (None for models without it), on its live channels that
    the reference covers."""
    n = len(batch["eeg_values"])
    if not pipe.processor.evidence_in_prompt:
        return [None] * n
    n_names = len(context.names)
    reference, known = context.reference.on(context.names)
    power = batch["eeg_band_power"][:, :, :n_names]
    masks = (batch["eeg_channel_mask"][:, :n_names] == 1) & known[None]
    lines: list[str | None] = [None] * n
    for mask in np.unique(masks, axis=0):  # windows with the same channels: one computation
        rows = np.nonzero((masks == mask).all(axis=1))[0]
        names = [name for name, keep in zip(context.names, mask) if keep]
        for row, line in zip(rows, pipe.processor.evidence_statements(power[rows][:, :, mask], names,
                                                                      reference[:, mask[known]])):
            lines[row] = line
    return lines


__all__ = ["STREAM_WINDOWS", "WHOLE_BYTES", "WINDOW_CACHE_BYTES", "InputContext", "resolve", "window_chunks"]
