"""The Qwen language models with ready configs (`training/configs/stage{2,3}_<name>.yaml`), and tiny look-alikes.

A tiny look-alike has the checkpoint's architecture (model type, attention biases or q/k norms, tied or untied
embeddings) at hidden size 64 and 2 layers, so every ready config is tested on CPU without downloading anything.
(The EEG encoders are `e2llm.backbones_e2llm.BACKBONES`.)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from e2llm.assembly import TINY_EEG_CONFIG, TINY_TEXT_CONFIG, assemble_e2llm
from e2llm.processing.instructions import TEMPLATES, build_instructions
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.tokenization_e2llm import build_offline_tokenizer

CONFIG_DIR = Path(__file__).parent / "configs"

# name -> Hub checkpoint and the architecture facts a tiny look-alike must share.
QWEN_CHECKPOINTS: dict[str, dict] = {
    "qwen2.5-0.5b": {"hub_id": "Qwen/Qwen2.5-0.5B-Instruct", "model_type": "qwen2", "tie_word_embeddings": True},
    "qwen2.5-1.5b": {"hub_id": "Qwen/Qwen2.5-1.5B-Instruct", "model_type": "qwen2", "tie_word_embeddings": True},
    "qwen2.5-3b": {"hub_id": "Qwen/Qwen2.5-3B-Instruct", "model_type": "qwen2", "tie_word_embeddings": True},
    "qwen2.5-7b": {"hub_id": "Qwen/Qwen2.5-7B-Instruct", "model_type": "qwen2", "tie_word_embeddings": False},
    "qwen3-0.6b": {"hub_id": "Qwen/Qwen3-0.6B", "model_type": "qwen3", "tie_word_embeddings": True},
    "qwen3-1.7b": {"hub_id": "Qwen/Qwen3-1.7B", "model_type": "qwen3", "tie_word_embeddings": True},
    "qwen3-4b": {"hub_id": "Qwen/Qwen3-4B", "model_type": "qwen3", "tie_word_embeddings": True},
    "qwen3-8b": {"hub_id": "Qwen/Qwen3-8B", "model_type": "qwen3", "tie_word_embeddings": False},
}


def tiny_text_config(model_type: str = "qwen3", tie_word_embeddings: bool = True) -> dict:
    """A Qwen2/Qwen3 text config of the given architecture at hidden 64, 2 layers (for `assemble_e2llm`)."""
    if model_type not in ("qwen2", "qwen3"):
        raise ValueError(f"tiny models exist for model_type 'qwen2' and 'qwen3', got {model_type!r}")
    config = {**TINY_TEXT_CONFIG, "model_type": model_type, "tie_word_embeddings": bool(tie_word_embeddings)}
    if model_type == "qwen2":
        config.pop("head_dim")  # Qwen2 derives it from hidden_size / num_attention_heads
    return config


@lru_cache(maxsize=1)
def instruction_corpus() -> tuple[str, ...]:
    """Texts the offline tokenizer of a tiny model learns its merges from: every prompt template, the answers of
    every instruction task and prompts ending with the measured-evidence line, on a few synthetic windows (no
    dataset is read, so every tiny model gets the same)."""
    windows = synthetic_window_dataset(n_subjects=1, clips_per_class=2, trial_seconds=8.0, seed=0)
    answers = build_instructions(windows, tasks=("emotion", "multitask", "scenario", "describe"),
                                 template_split="all", seed=0)["completion"]
    evidence = build_instructions(windows, tasks=("emotion", "multitask", "scenario"), template_split="all", seed=0,
                                  evidence_in_prompt=True, evidence_strongest=4)["prompt"]
    return (*(template.text for template in TEMPLATES), *answers, *evidence)


def build_tiny_lookalike(model_type: str = "qwen3", tie_word_embeddings: bool = True, label_names=None,
                         seed: int = 0):
    """`(model, processor)`: a tiny E2LLM with a look-alike of the given architecture and the offline tokenizer
    (merges learnt from `instruction_corpus`)."""
    torch.manual_seed(seed)
    id2label = dict(enumerate(label_names)) if label_names is not None else None
    return assemble_e2llm(build_offline_tokenizer(instruction_corpus()),
                          text_config=tiny_text_config(model_type, tie_word_embeddings),
                          eeg_config=TINY_EEG_CONFIG, id2label=id2label)


def ready_config(name: str, stage: str) -> Path:
    """Path of the ready YAML of Qwen checkpoint `name` for `stage` ("stage2" or "stage3")."""
    if name not in QWEN_CHECKPOINTS:
        raise ValueError(f"unknown language model {name!r}; ready configs exist for {sorted(QWEN_CHECKPOINTS)}")
    return CONFIG_DIR / f"{stage}_{name}.yaml"


__all__ = ["CONFIG_DIR", "QWEN_CHECKPOINTS", "build_tiny_lookalike", "instruction_corpus", "ready_config",
           "tiny_text_config"]
