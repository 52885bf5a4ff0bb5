"""Loading a trained E2LLM for inference: what `e2llm predict` and `e2llm evaluate` (and the quickstart's
evaluation) load a model folder or Hub id with."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoProcessor

import e2llm  # noqa: F401  (registers the Auto classes and the eeg-emotion pipeline)


def load_model(path: str, device: str | None = None, trust_remote_code: bool = False):
    """`(model, processor)` from a saved E2LLM folder or Hub id, the model in eval mode on `device` (default: CUDA
    when there is one)."""
    folder = Path(path)
    if (folder / "adapter_config.json").exists() and not (folder / "config.json").exists():
        raise ValueError(f"{path} holds a LoRA adapter, not a model: pass the merged model that stage 3 writes "
                         "next to it (OUTPUT/merged)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code).to(device)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    return model.eval(), processor


__all__ = ["load_model"]
