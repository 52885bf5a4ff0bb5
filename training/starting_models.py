"""The model a training stage starts from, and what it trains of it.

Stage 1 trains an `E2LLMEEGForEmotionClassification` built from an E2LLM folder (`e2llm init`: its encoder and
eeg config), an ``e2llm_eeg`` folder, or the tiny config; stages 2 and 3 load an E2LLM folder (or build the tiny
one). A model whose label set is not the data's gets the data's (`set_label_names`: answers, parsing and scoring
read it from the config); stage 2 copies the stage-1 encoder in (`load_encoder_weights`).
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoProcessor

from e2llm.assembly import TINY_EEG_CONFIG
from e2llm.configuration_e2llm import E2LLMEEGConfig
from e2llm.modeling_e2llm import E2LLMForConditionalGeneration
from e2llm.modeling_eeg_encoder import E2LLMEEGEmotionToken, E2LLMEEGForEmotionClassification
from e2llm.training.language_models import build_tiny_lookalike


def classifier_from_e2llm(e2llm, label_names, seed: int = 0) -> E2LLMEEGForEmotionClassification:
    """A stage-1 classifier with the E2LLM's encoder config and weights, and a new head for `label_names`."""
    eeg_config = E2LLMEEGConfig(**{**e2llm.config.eeg_config.to_dict(), "id2label": dict(enumerate(label_names))})
    torch.manual_seed(seed)
    model = E2LLMEEGForEmotionClassification(eeg_config)
    state = e2llm.model.eeg_encoder.state_dict()
    if eeg_config.emotion_token and eeg_config.num_labels != e2llm.config.eeg_config.num_labels:
        # the encoder's emotion head is sized for the E2LLM's labels: a new one for these
        state = {name: value for name, value in state.items() if not name.startswith("emotion_token.")}
        state.update({name: value for name, value in model.encoder.state_dict().items()
                      if name.startswith("emotion_token.")})
    model.encoder.load_state_dict(state)
    return model


def build_stage1_model(model_args, label_names, seed: int = 0) -> E2LLMEEGForEmotionClassification:
    """The classifier stage 1 trains: from an E2LLM (its encoder and eeg config), an e2llm_eeg folder, or tiny."""
    id2label = dict(enumerate(label_names))
    if model_args.model_name_or_path is None:
        if not model_args.tiny:
            raise ValueError("stage 1 needs --model_name_or_path (an E2LLM or e2llm_eeg folder) or --tiny")
        torch.manual_seed(seed)
        return E2LLMEEGForEmotionClassification(E2LLMEEGConfig(**TINY_EEG_CONFIG, id2label=id2label))
    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    if config.model_type == "e2llm":
        e2llm = E2LLMForConditionalGeneration.from_pretrained(model_args.model_name_or_path, dtype=torch.float32)
        return classifier_from_e2llm(e2llm, label_names, seed=seed)
    if config.model_type == "e2llm_eeg":
        return E2LLMEEGForEmotionClassification.from_pretrained(
            model_args.model_name_or_path, id2label=id2label, ignore_mismatched_sizes=True
        )
    raise ValueError(
        f"{model_args.model_name_or_path} is a {config.model_type!r} model; stage 1 needs an E2LLM (from `e2llm init`) "
        "or an e2llm_eeg encoder"
    )


def set_label_names(model, processor, label_names) -> None:
    """Make the E2LLM's `id2label` the dataset's label set (answers, parsing and scoring read it from the config);
    an encoder with an emotion token gets a new head for these labels."""
    id2label = dict(enumerate(label_names))
    model.config.id2label = id2label
    model.config.label2id = {name: i for i, name in id2label.items()}
    model.config.eeg_config.id2label = id2label
    model.config.eeg_config.label2id = model.config.label2id
    encoder = model.model.eeg_encoder
    if encoder.emotion_token is not None:  # its head read the old labels: a new one, which stage 1 trains
        parameter = next(encoder.emotion_token.parameters())
        head = E2LLMEEGEmotionToken(model.config.eeg_config).to(parameter.device, parameter.dtype)
        head.apply(encoder._init_weights)
        encoder.emotion_token = head


def load_e2llm(model_args, label_names, seed: int = 0, trust_remote_code: bool = False):
    """`(model, processor)` stage 2 or 3 starts from: the tiny look-alike (`model_args.tiny`, labels from the data)
    or an E2LLM folder/repo, given the data's label set."""
    if model_args.model_name_or_path is None:
        if not model_args.tiny:
            raise ValueError("--model_name_or_path is required (an E2LLM folder, e.g. from `e2llm init`), or --tiny")
        return build_tiny_lookalike(model_args.tiny_model_type, label_names=label_names, seed=seed)
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    model = E2LLMForConditionalGeneration.from_pretrained(
        model_args.model_name_or_path, dtype=dtype, attn_implementation=model_args.attn_implementation,
        trust_remote_code=trust_remote_code,
    )
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path, trust_remote_code=trust_remote_code)
    if list(model.config.label_names) != list(label_names):
        set_label_names(model, processor, label_names)
    return model, processor


def load_encoder_weights(model, encoder_path: str) -> None:
    """Copy the encoder of a stage-1 folder (`E2LLMEEGForEmotionClassification`) into the E2LLM."""
    classifier = E2LLMEEGForEmotionClassification.from_pretrained(encoder_path, dtype=torch.float32)
    hint = "was it trained from this model's eeg_config, on the same labels?"
    try:
        missing, unexpected = model.model.eeg_encoder.load_state_dict(classifier.encoder.state_dict(), strict=False)
    except RuntimeError as error:  # misshapen tensors
        raise ValueError(f"the stage-1 encoder at {encoder_path} does not fit this E2LLM's encoder ({hint}): "
                         f"{error}") from None
    if missing or unexpected:
        raise ValueError(f"the stage-1 encoder at {encoder_path} does not fit this E2LLM's encoder: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]} ({hint})")


def train_only(model, prefixes: tuple[str, ...]) -> None:
    """Parameters whose names start with one of `prefixes` train; every other one is frozen."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(prefixes)


__all__ = ["build_stage1_model", "classifier_from_e2llm", "load_e2llm", "load_encoder_weights", "set_label_names",
           "train_only"]
