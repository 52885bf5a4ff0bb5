"""Each window's model inputs computed once per stage instead of once per step.

A training stage reads the same windows every epoch. Run per step, the feature extractor (resampling, channel
mapping, normalisation) and, in stages 2 and 3, the frozen EEG encoder cost more than the language model's step
on a CPU and leave a GPU waiting. So a stage computes them once:

* `extract_windows`: the feature extractor over every window of a prepared dataset, in chunks -> `eeg_values`
  `(n_windows, n_channels, window_samples)`, `eeg_channel_ids`, `eeg_channel_mask` `(n_windows, n_channels)`
  (a memory-mapped file instead of memory when the values would take more than `max_in_memory_bytes`);
* `encode_windows`: a frozen encoder over those, in eval mode as at inference -> its pooled tokens `eeg_pooled`
  `(n_windows, num_output_tokens, hidden_size)`, which the E2LLM projects itself (`eeg_features` as the encoder's
  output), so a trainable projector still learns.

`WindowTensors.gather(index)` gives a batch's model inputs; `model_inputs` names them as the model takes them.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from e2llm.modeling_eeg_encoder import E2LLMEEGEncoderOutput
from e2llm.processing.metadata import dataset_metadata

EEG_INPUTS = ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")
POOLED = "eeg_pooled"


@dataclass
class WindowTensors:
    """Per-window tensors, row i = window i of the stage's windows: `EEG_INPUTS` from the feature extractor, or
    `POOLED` (a frozen encoder's pooled tokens)."""

    tensors: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def gather(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows `index` `(batch,)` of every tensor."""
        return {name: tensor[index] for name, tensor in self.tensors.items()}

    def model_inputs(self, index: torch.Tensor) -> dict:
        """The rows `index` as E2LLM inputs: `eeg_values` + channel ids and mask, or `eeg_features` (the encoder's
        output, projected by the model)."""
        rows = self.gather(index)
        if POOLED in rows:
            return {"eeg_features": E2LLMEEGEncoderOutput(pooler_output=rows[POOLED])}
        return rows


def _output_arrays(n: int, first: dict[str, np.ndarray], max_in_memory_bytes: int) -> dict[str, np.ndarray]:
    """Arrays for `n` windows shaped like the first chunk's: in memory, or memory-mapped files in a temporary
    folder removed at exit when the values would exceed `max_in_memory_bytes`."""
    size = n * first["eeg_values"][0].nbytes
    if size <= max_in_memory_bytes:
        return {name: np.empty((n, *value.shape[1:]), value.dtype) for name, value in first.items()}
    folder = Path(tempfile.mkdtemp(prefix="e2llm-windows-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return {name: np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=value.dtype,
                                            shape=(n, *value.shape[1:])) for name, value in first.items()}


def _extract_chunk(feature_extractor, eeg: np.ndarray, metadata: dict) -> dict[str, np.ndarray]:
    features = feature_extractor(
        list(eeg), sampling_rate=float(metadata["sampling_rate"]), channel_names=list(metadata["channel_names"]),
        units=metadata["units"], apply_filters=False, return_tensors="np",
    )
    if len(features["eeg_values"]) != len(eeg):
        raise ValueError(f"each window must give exactly one model window; got {len(features['eeg_values'])} from "
                         f"{len(eeg)} (the prepared windows' length differs from the model's window)")
    return {name: np.asarray(features[name]) for name in EEG_INPUTS}


def extract_windows(dataset, feature_extractor, batch_size: int = 256,
                    max_in_memory_bytes: int = 4 << 30) -> WindowTensors:
    """The feature extractor's inputs for every window of a prepared `dataset`, computed once.

    Prepared windows are already filtered at trial level, so they are not filtered again (`apply_filters=False`, as
    everywhere in training: filtering a 4-s window would add edge effects the pipeline never sees)."""
    if len(dataset) == 0:
        raise ValueError("there are no windows to extract")
    metadata = dataset_metadata(dataset)
    table = dataset.with_format("numpy")
    arrays = None
    for start in range(0, len(dataset), batch_size):
        chunk = _extract_chunk(feature_extractor, table[start : start + batch_size]["eeg"], metadata)
        if arrays is None:
            arrays = _output_arrays(len(dataset), chunk, max_in_memory_bytes)
        for name, value in chunk.items():
            arrays[name][start : start + len(value)] = value
    return WindowTensors({name: torch.from_numpy(array) for name, array in arrays.items()})


@torch.no_grad()
def encode_windows(encoder, windows: WindowTensors, device=None, batch_size: int = 64) -> WindowTensors:
    """A frozen `encoder`'s pooled tokens for `windows` (from `extract_windows`), in eval mode (no dropout: what
    inference computes), in the encoder's dtype, kept on the CPU (the data loader pins and moves each batch).
    `device`: where to run the encoder (it is moved there; default: where it is). Its training mode is restored."""
    was_training = encoder.training
    encoder.eval()
    if device is not None:
        encoder.to(device)
    device = next(encoder.parameters()).device
    pooled = []
    try:
        for start in range(0, len(windows), batch_size):
            rows = windows.gather(torch.arange(start, min(start + batch_size, len(windows))))
            output = encoder(*(rows[name].to(device) for name in EEG_INPUTS), return_dict=True)
            pooled.append(output.pooler_output.cpu())
    finally:
        encoder.train(was_training)
    return WindowTensors({POOLED: torch.cat(pooled)})


__all__ = ["EEG_INPUTS", "POOLED", "WindowTensors", "encode_windows", "extract_windows"]
