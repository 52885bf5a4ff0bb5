"""The Qwen backbones with ready configs (`training/configs/stage{2,3}_<name>.yaml`), and tiny look-alikes.

A tiny look-alike has the backbone's architecture (model type, attention biases or q/k norms, tied or untied
embeddings) at hidden size 64 and 2 layers, so every ready config is tested on CPU without downloading anything.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"

# name -> Hub checkpoint and the architecture facts a tiny look-alike must share.
BACKBONES: dict[str, dict] = {
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
    from e2llm.assembly import TINY_TEXT_CONFIG

    if model_type not in ("qwen2", "qwen3"):
        raise ValueError(f"tiny models exist for model_type 'qwen2' and 'qwen3', got {model_type!r}")
    config = {**TINY_TEXT_CONFIG, "model_type": model_type, "tie_word_embeddings": bool(tie_word_embeddings)}
    if model_type == "qwen2":
        config.pop("head_dim")  # Qwen2 derives it from hidden_size / num_attention_heads
    return config


def build_tiny_backbone(model_type: str = "qwen3", tie_word_embeddings: bool = True, label_names=None, seed: int = 0,
                        tokenizer_corpus=None):
    """`(model, processor)`: a tiny E2LLM with a look-alike of the given architecture and the offline tokenizer."""
    import torch

    from e2llm import assemble_e2llm, build_offline_tokenizer
    from e2llm.assembly import TINY_EEG_CONFIG

    torch.manual_seed(seed)
    id2label = dict(enumerate(label_names)) if label_names is not None else None
    return assemble_e2llm(build_offline_tokenizer(tokenizer_corpus),
                          text_config=tiny_text_config(model_type, tie_word_embeddings),
                          eeg_config=TINY_EEG_CONFIG, id2label=id2label)


def backbone_config(name: str, stage: str) -> Path:
    """Path of the ready YAML of backbone `name` for `stage` ("stage2" or "stage3")."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; ready configs exist for {sorted(BACKBONES)}")
    return CONFIG_DIR / f"{stage}_{name}.yaml"


__all__ = ["BACKBONES", "CONFIG_DIR", "backbone_config", "build_tiny_backbone", "tiny_text_config"]
