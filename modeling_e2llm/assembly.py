"""Assemble an untrained E2LLM from a Qwen language model (or a tiny Qwen-architecture config) and an EEG encoder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from .backbones_e2llm import feature_extractor_settings
from .configuration_e2llm import DEFAULT_ID2LABEL, E2LLMConfig, E2LLMEEGConfig
from .convert_backbones import convert_checkpoint, input_channel_names, load_backbone_state
from .feature_extraction_e2llm import E2LLMFeatureExtractor
from .modeling_e2llm import E2LLMForConditionalGeneration
from .processing_e2llm import E2LLMProcessor
from .tokenization_e2llm import add_eeg_tokens, build_offline_tokenizer

# A language model of the Qwen3 architecture small enough for tests and the CPU quickstart.
TINY_TEXT_CONFIG = {
    "model_type": "qwen3",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
TINY_EEG_CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
# A randomly initialised EEGPT with the published input contract (256 Hz, 4-s windows, 62-channel table, 4 summary
# tokens, stride 32) at width 32 and 2 layers: the pretrained architecture at CPU-test size.
TINY_EEGPT_CONFIG = {"backbone": "eegpt", "num_attention_heads": 4,
                     "backbone_config": {"embed_dim": 32, "num_layers": 2, "num_heads": 4, "mlp_ratio": 2.0}}
TINY_FOUNDATION_CONFIGS = {
    "eegpt": TINY_EEGPT_CONFIG,
    "cbramod": {"backbone": "cbramod", "num_attention_heads": 4,
                "backbone_config": {"num_layers": 2, "num_heads": 4, "intermediate_size": 64, "output_size": 32,
                                    "conv_stack": [[4, 49, 25, 24, 2], [4, 3, 1, 1, 2], [4, 3, 1, 1, 2]]}},
    "labram": {"backbone": "labram", "num_attention_heads": 4,
               "backbone_config": {"conv_channels": 4, "num_layers": 2, "num_heads": 4, "mlp_ratio": 1.0}},
}


def eeg_config_from_checkpoint(backbone: str, path: str | Path, **overrides) -> tuple[E2LLMEEGConfig, dict]:
    """`(E2LLMEEGConfig, backbone_state_dict)` for the published `backbone` weights at `path`.

    `path` is braindecode's Hub folder (`config.json` + weights) or an authors' checkpoint file; the backbone's sizes
    come from the tensors (and braindecode's `config.json`), anything else from `overrides` (e.g. `backbone_config=
    {"num_heads": 8}`, which an authors' checkpoint cannot tell) or the published defaults. An EEGPT saved with
    braindecode's channel projection (its default) takes the input channels of its `chs_info` as `channel_names`
    (override with `channel_names=[...]`, in the order the model was built with)."""
    state, settings, braindecode_config = convert_checkpoint(path, backbone)
    backbone_config = {**settings, **dict(overrides.pop("backbone_config", None) or {})}
    if "channel_projection.proj.weight" in state:
        inputs = state["channel_projection.proj.weight"].shape[1]
        names = overrides.pop("channel_names", None)
        if names is None:
            names = input_channel_names(backbone, state, braindecode_config)
        elif len(names) != inputs:
            raise ValueError(f"{path}: its channel projection takes {inputs} input channels, channel_names gives "
                             f"{len(names)}")
        overrides["channel_names"] = list(names)
    return E2LLMEEGConfig(backbone=backbone, backbone_config=backbone_config, **overrides), state


def load_eeg_encoder_weights(model, state: dict, source: str = "the checkpoint") -> None:
    """Copy converted backbone weights into an E2LLM's (or a bare encoder's) foundation backbone; strict."""
    encoder = model.model.eeg_encoder if hasattr(model, "model") else getattr(model, "encoder", model)
    backbone = getattr(encoder, "backbone", None)
    if backbone is None:
        raise ValueError("the model's EEG encoder has no foundation backbone (backbone='patch')")
    load_backbone_state(backbone, encoder.config.backbone, state, source)


def assemble_e2llm(
    tokenizer: PreTrainedTokenizerBase,
    text_model: PreTrainedModel | None = None,
    text_config: Mapping | None = None,
    eeg_config: Mapping | E2LLMEEGConfig | None = None,
    id2label: Mapping[int, str] | None = None,
    feature_extractor: E2LLMFeatureExtractor | None = None,
    num_eeg_tokens: int | None = None,
) -> tuple[E2LLMForConditionalGeneration, E2LLMProcessor]:
    """Join an EEG encoder (random init) and a projector to a language model.

    `text_model` is a loaded Qwen `*ForCausalLM` whose weights are kept; without it the language model is built from
    `text_config` (random weights). The tokenizer gets the EEG tokens and the embeddings are resized to it.
    """
    if (text_model is None) == (text_config is None):
        raise ValueError("pass exactly one of text_model (pretrained weights) or text_config (random weights)")
    eeg_token_id = add_eeg_tokens(tokenizer)
    labels = dict(id2label) if id2label is not None else dict(DEFAULT_ID2LABEL)
    if isinstance(eeg_config, E2LLMEEGConfig):
        eeg_config = eeg_config.to_dict()
    eeg_config = {**(eeg_config or {}), "id2label": labels}
    if text_model is not None:
        resolved_text_config = text_model.config.to_dict()
    else:
        resolved_text_config = AutoConfig.for_model(**text_config).to_dict()
        resolved_text_config["vocab_size"] = len(tokenizer)
    for token in ("pad_token_id", "eos_token_id", "bos_token_id"):
        resolved_text_config[token] = getattr(tokenizer, token)
    config = E2LLMConfig(
        eeg_config=eeg_config,
        text_config=resolved_text_config,
        eeg_token_id=eeg_token_id,
        num_eeg_tokens=num_eeg_tokens,
        id2label=labels,
    )
    model = E2LLMForConditionalGeneration(config)
    if text_model is not None:
        model.model.language_model.load_state_dict(text_model.get_decoder().state_dict())
        if not config.tie_word_embeddings:
            model.lm_head.load_state_dict(text_model.get_output_embeddings().state_dict())
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    for token in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, token, getattr(tokenizer, token))
    processor = E2LLMProcessor(
        feature_extractor or E2LLMFeatureExtractor(**feature_extractor_settings(config.eeg_config)),
        tokenizer,
        num_eeg_tokens=config.num_eeg_tokens,
    )
    return model, processor


def build_tiny_e2llm(
    id2label: Mapping[int, str] | None = None, tokenizer_corpus=None, seed: int = 0
) -> tuple[E2LLMForConditionalGeneration, E2LLMProcessor]:
    """A tiny E2LLM (Qwen3 architecture, hidden 64, 2 layers) with the offline tokenizer: for tests and demos."""
    torch.manual_seed(seed)
    tokenizer = build_offline_tokenizer(tokenizer_corpus)
    return assemble_e2llm(tokenizer, text_config=TINY_TEXT_CONFIG, eeg_config=TINY_EEG_CONFIG, id2label=id2label)


__all__ = [
    "TINY_EEGPT_CONFIG",
    "TINY_EEG_CONFIG",
    "TINY_FOUNDATION_CONFIGS",
    "TINY_TEXT_CONFIG",
    "assemble_e2llm",
    "build_tiny_e2llm",
    "eeg_config_from_checkpoint",
    "load_eeg_encoder_weights",
]
