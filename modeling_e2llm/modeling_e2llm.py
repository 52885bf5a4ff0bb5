"""E2LLM: EEG encoder + projector + Qwen language model (Llava / Qwen2-Audio pattern)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.modeling_utils import slice_logits_to_keep
from transformers.utils import ModelOutput, torch_compilable_check
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_e2llm import E2LLMConfig
from .label_sources_e2llm import source_probabilities
from .model_folder_e2llm import ModelFolderMixin
from .modeling_eeg_encoder import E2LLMEEGAttentionPooler, E2LLMEEGEncoder
from .scoring_e2llm import score_candidates

EEG_INPUT_NAMES = ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")

# Every Auto class a saved E2LLM folder answers to when loaded with `trust_remote_code=True`.
REMOTE_CODE_AUTO_MAP = {
    "AutoConfig": "configuration_e2llm.E2LLMConfig",
    "AutoModel": "modeling_e2llm.E2LLMModel",
    "AutoModelForCausalLM": "modeling_e2llm.E2LLMForConditionalGeneration",
    "AutoModelForMultimodalLM": "modeling_e2llm.E2LLMForConditionalGeneration",
    "AutoFeatureExtractor": "feature_extraction_e2llm.E2LLMFeatureExtractor",
    "AutoProcessor": "processing_e2llm.E2LLMProcessor",
}
_PROCESSOR_FILES = ("processing_e2llm.py", "feature_extraction_e2llm.py")


@dataclass
class E2LLMModelOutputWithPast(ModelOutput):
    """`last_hidden_state` `(batch, seq_len, hidden)`; `eeg_hidden_states` `(n_windows, num_eeg_tokens, hidden)`."""

    last_hidden_state: torch.Tensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    eeg_hidden_states: torch.Tensor | None = None


@dataclass
class E2LLMCausalLMOutputWithPast(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    eeg_hidden_states: torch.Tensor | None = None


class E2LLMProjector(nn.Module):
    """Two-layer GELU MLP from the encoder's width to the language model's."""

    def __init__(self, config: E2LLMConfig):
        super().__init__()
        hidden = config.text_config.hidden_size
        self.linear_1 = nn.Linear(config.eeg_config.hidden_size, hidden, bias=config.projector_bias)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(hidden, hidden, bias=config.projector_bias)

    def forward(self, eeg_features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(eeg_features)))


class E2LLMPreTrainedModel(ModelFolderMixin, PreTrainedModel):
    """Base of the E2LLM models. `from_pretrained` is strict (`e2llm.model_folder_e2llm`): a folder whose weights lack a
    tensor, hold one the model has no place for, or disagree in shape with config.json is refused, as are a damaged
    JSON or safetensors file, a label map that disagrees with the emotion head and a tokenizer without the model's
    `<|eeg|>` token; `strict=False` loads anyway and reports what was not loaded in `model.loading_report`."""

    config: E2LLMConfig
    config_class = E2LLMConfig
    base_model_prefix = "model"
    input_modalities = ("eeg", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True  # no data-dependent Python branch in forward (tensor checks instead)
    _no_split_modules = ["E2LLMEEGLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer"]
    _skip_keys_device_placement = ["cache"]

    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs):
        """Save as usual; a model marked for remote code also gets the complete `auto_map` and the processor's code."""
        if self._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **REMOTE_CODE_AUTO_MAP}
        super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        if self._auto_class is not None and is_main_process:
            here = Path(__file__).parent
            for source in (here / name for name in _PROCESSOR_FILES):
                if source.exists():  # a copy loaded as remote code may hold only the modeling files
                    for needed in (source, *map(Path, get_relative_import_files(str(source)))):
                        shutil.copyfile(needed, Path(save_directory) / needed.name)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, E2LLMEEGAttentionPooler):
            init.normal_(module.queries, mean=0.0, std=self.config.initializer_range)


class E2LLMModel(E2LLMPreTrainedModel):
    """EEG encoder + projector + the bare language model; returns `last_hidden_state`."""

    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]  # loading the base model from a folder with the LM head

    def __init__(self, config: E2LLMConfig):
        super().__init__(config)
        self.eeg_encoder = E2LLMEEGEncoder(config.eeg_config)
        self.projector = E2LLMProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.language_model.set_input_embeddings(value)

    def get_eeg_features(
        self,
        eeg_values: torch.Tensor,
        eeg_channel_ids: torch.Tensor,
        eeg_channel_mask: torch.Tensor | None = None,
        return_emotion_logits: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """`(n_windows, n_channels, n_times)` -> projected EEG tokens `(n_windows, num_eeg_tokens, text_hidden)`;
        with `return_emotion_logits`, also the encoder's emotion-head logits `(n_windows, num_labels)` (None without
        an emotion token) from the same pass."""
        encoded = self.eeg_encoder(eeg_values, eeg_channel_ids, eeg_channel_mask, return_dict=True)
        features = self.projector(encoded.pooler_output)
        return (features, encoded.emotion_logits) if return_emotion_logits else features

    def get_placeholder_mask(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor, eeg_features: torch.Tensor
    ) -> torch.Tensor:
        """Boolean mask `(batch, seq_len, 1)` of the `<|eeg|>` positions; checks their count against `eeg_features`
        `(n_windows, num_eeg_tokens, hidden)` (a tensor check: no graph break under torch.compile / torch.export)."""
        if self.config.eeg_token_id is None:
            raise ValueError("config.eeg_token_id is not set: build the model with the tokenizer's <|eeg|> id")
        if input_ids is None:
            placeholder = self.get_input_embeddings()(
                torch.tensor(self.config.eeg_token_id, dtype=torch.long, device=inputs_embeds.device)
            )
            mask = (inputs_embeds == placeholder).all(-1)
        else:
            mask = input_ids == self.config.eeg_token_id
        n_tokens = mask.sum()
        n_windows, per_window = eeg_features.shape[0], eeg_features.shape[1]
        torch_compilable_check(
            n_tokens * inputs_embeds.shape[-1] == eeg_features.numel(),
            lambda: (
                f"EEG features and <|eeg|> tokens do not match: the text holds {int(n_tokens)} <|eeg|> tokens but the "
                f"EEG gives {n_windows * per_window} ({n_windows} windows x {per_window} tokens per window). Build "
                "inputs with E2LLMProcessor, which expands each <|eeg|> placeholder to the windows of its recording."
            ),
        )
        return mask.unsqueeze(-1)

    def embed_inputs(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        eeg_values: torch.Tensor | None = None,
        eeg_channel_ids: torch.Tensor | None = None,
        eeg_channel_mask: torch.Tensor | None = None,
        eeg_features: torch.Tensor | ModelOutput | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token embeddings with the projected EEG scattered into the `<|eeg|>` positions, and those features.

        The EEG comes as `eeg_values` (encoded here) or already encoded as `eeg_features` (see `forward`). Without
        either, nothing is scattered and nothing is checked, as in Llava: a `<|eeg|>` token the model wrote itself is
        an ordinary token.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if eeg_values is not None and eeg_features is not None:
            raise ValueError("pass eeg_values or eeg_features (the EEG already encoded), not both")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if eeg_values is not None:
            if eeg_channel_ids is None:
                raise ValueError("eeg_values were given without eeg_channel_ids")
            eeg_features = self.get_eeg_features(eeg_values, eeg_channel_ids, eeg_channel_mask)
        elif isinstance(eeg_features, ModelOutput):  # the EEG encoder's output: project its pooled tokens
            eeg_features = self.projector(eeg_features.pooler_output)
        if eeg_features is None:
            return inputs_embeds, None
        if eeg_features.ndim != 3 or eeg_features.shape[-1] != inputs_embeds.shape[-1]:
            raise ValueError(
                f"eeg_features must be projected EEG tokens (n_windows, num_eeg_tokens, {inputs_embeds.shape[-1]}) "
                f"from get_eeg_features, or the EEG encoder's output; got shape {tuple(eeg_features.shape)}"
            )
        eeg_features = eeg_features.to(inputs_embeds.device, inputs_embeds.dtype)
        mask = self.get_placeholder_mask(input_ids, inputs_embeds, eeg_features)
        inputs_embeds = inputs_embeds.masked_scatter(mask, eeg_features)
        return inputs_embeds, eeg_features

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        eeg_values: torch.Tensor | None = None,
        eeg_channel_ids: torch.LongTensor | None = None,
        eeg_channel_mask: torch.LongTensor | None = None,
        eeg_features: torch.Tensor | ModelOutput | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> E2LLMModelOutputWithPast | tuple:
        r"""
        eeg_values (`torch.FloatTensor` of shape `(n_windows, n_channels, n_times)`): windows from the feature extractor,
            in the order of the `<|eeg|>` token groups in `input_ids` (`num_eeg_tokens` tokens per window).
        eeg_channel_ids, eeg_channel_mask (`(n_windows, n_channels)`): electrode index and validity of each channel.
        eeg_features (`torch.FloatTensor` of shape `(n_windows, num_eeg_tokens, hidden_size)`, *optional*): the EEG
            already encoded and projected (`get_eeg_features`), used instead of `eeg_values`, which are then not
            encoded again; the EEG encoder's output (its `pooler_output`) is also accepted and projected here.

        The `<|eeg|>` count is checked only when EEG is given (as in Llava), so decoding steps that read the EEG from
        the cache, and `<|eeg|>` tokens the model writes itself, need no EEG.
        """
        inputs_embeds, eeg_features = self.embed_inputs(
            input_ids, inputs_embeds, eeg_values, eeg_channel_ids, eeg_channel_mask, eeg_features
        )
        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        return E2LLMModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            eeg_hidden_states=eeg_features,
        )


class E2LLMForConditionalGeneration(E2LLMPreTrainedModel, GenerationMixin):
    """E2LLM with the language-model head: `generate` on EEG + text; label scoring with [`score_labels`].

    Example:

    ```python
    >>> import numpy as np
    >>> from e2llm import LABEL_PREFIX, build_tiny_e2llm
    >>> model, processor = build_tiny_e2llm()
    >>> conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    >>> prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    >>> eeg = 20 * np.random.default_rng(0).standard_normal((3, 8 * 200))  # (n_channels, n_times) in µV
    >>> eeg_kw = {"eeg": eeg, "sampling_rate": 200, "channel_names": ["Fz", "Cz", "Pz"], "units": "uV"}
    >>> inputs = processor(text=prompt, return_tensors="pt", **eeg_kw)
    >>> generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    >>> generated.shape[1] - inputs["input_ids"].shape[1]
    5
    >>> scoring = processor(text=prompt + LABEL_PREFIX.strip(), return_tensors="pt", **eeg_kw)
    >>> candidates = processor.label_candidate_ids(model.config.label_names)
    >>> probs = model.score_emotions(**scoring, candidate_ids=candidates)
    >>> tuple(probs.shape), round(float(probs.sum()), 4)
    ((1, 7), 1.0)
    ```"""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: E2LLMConfig):
        super().__init__(config)
        self.model = E2LLMModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module):
        self.lm_head = new_embeddings

    def get_eeg_features(self, eeg_values, eeg_channel_ids, eeg_channel_mask=None, return_emotion_logits=False):
        """Projected EEG tokens `(n_windows, num_eeg_tokens, hidden)`: pass them as `eeg_features` to `forward`,
        `generate` or label scoring to encode the EEG once (with `return_emotion_logits`, also the emotion head's
        logits, see `E2LLMModel.get_eeg_features`)."""
        return self.model.get_eeg_features(eeg_values, eeg_channel_ids, eeg_channel_mask, return_emotion_logits)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        eeg_values: torch.Tensor | None = None,
        eeg_channel_ids: torch.LongTensor | None = None,
        eeg_channel_mask: torch.LongTensor | None = None,
        eeg_features: torch.Tensor | ModelOutput | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> E2LLMCausalLMOutputWithPast | tuple:
        r"""labels (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*): -100 where no loss is taken.

        The EEG inputs (`eeg_values` + `eeg_channel_ids` + `eeg_channel_mask`, or `eeg_features`) are those of
        [`E2LLMModel.forward`]; `return_dict=False` gives a tuple."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            eeg_values=eeg_values,
            eeg_channel_ids=eeg_channel_ids,
            eeg_channel_mask=eeg_channel_mask,
            eeg_features=eeg_features,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        logits = self.lm_head(slice_logits_to_keep(hidden_states, logits_to_keep))
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return E2LLMCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            eeg_hidden_states=outputs.eeg_hidden_states,
        )

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        cache: Cache | None = None,
        attention_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        eeg_values: torch.Tensor | None = None,
        eeg_channel_ids: torch.LongTensor | None = None,
        eeg_channel_mask: torch.LongTensor | None = None,
        eeg_features: torch.Tensor | ModelOutput | None = None,
        **kwargs,
    ):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            next_sequence_length=next_sequence_length,
            cache=cache,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        # The EEG enters once, at prefill; later steps read it from the KV cache.
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs.update(
                eeg_values=eeg_values,
                eeg_channel_ids=eeg_channel_ids,
                eeg_channel_mask=eeg_channel_mask,
                eeg_features=eeg_features,
            )
        return model_inputs

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        """As in `GenerationMixin` (beam search, `num_return_sequences`), but the EEG inputs, one row per window in
        prompt order, are repeated as each prompt's group of windows (`[a1, a2 | b1]` -> `[a1, a2, a1, a2 | b1, b1]`),
        not window by window, which would pair prompts with other prompts' windows."""
        names = (*EEG_INPUT_NAMES, "eeg_features")
        eeg = {name: model_kwargs.pop(name) for name in names if model_kwargs.get(name) is not None}
        if expand_size > 1 and eeg:
            if isinstance(eeg.get("eeg_features"), ModelOutput):
                eeg["eeg_features"] = self.model.projector(eeg["eeg_features"].pooler_output)
            if input_ids is not None and input_ids.numel() > 0:
                placeholders = input_ids == self.config.eeg_token_id
            else:
                placeholder = self.get_input_embeddings()(
                    torch.tensor(self.config.eeg_token_id, device=model_kwargs["inputs_embeds"].device)
                )
                placeholders = (model_kwargs["inputs_embeds"] == placeholder).all(-1)
            windows = (placeholders.sum(-1) // self.config.num_eeg_tokens).tolist()
            starts = [sum(windows[:i]) for i in range(len(windows))]
            index = torch.cat(
                [torch.arange(s, s + n).repeat(expand_size) for s, n in zip(starts, windows)]
                or [torch.zeros(0, dtype=torch.long)]
            )
            eeg = {name: value[index.to(value.device)] for name, value in eeg.items()}
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=is_encoder_decoder, input_ids=input_ids, **model_kwargs
        )
        return input_ids, {**model_kwargs, **eeg}

    @torch.no_grad()
    def score_labels(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        candidate_ids: Sequence[Sequence[int]],
        eeg_values: torch.Tensor | None = None,
        eeg_channel_ids: torch.LongTensor | None = None,
        eeg_channel_mask: torch.LongTensor | None = None,
        eeg_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Log-likelihood of each candidate continuation after each prompt: `(batch, n_candidates)` summed token
        log-probabilities.

        The prompts `(batch, prompt_len)` (left-padded, as for `generate`; they may end in a generated rationale) run
        through the language model once, the EEG is encoded once (or `eeg_features` from `get_eeg_features` are
        reused), and every candidate is scored from that pass's cache (`e2llm.scoring_e2llm.score_candidates`).
        """
        return score_candidates(
            self, input_ids, attention_mask, candidate_ids, eeg_features=eeg_features, eeg_values=eeg_values,
            eeg_channel_ids=eeg_channel_ids, eeg_channel_mask=eeg_channel_mask,
        )

    def score_emotions(self, input_ids, attention_mask, candidate_ids, **eeg_inputs) -> torch.Tensor:
        """Probability of each label `(batch, n_labels)` from the source `config.label_probabilities` names, each
        temperature-scaled (Guo et al. 2017) with the temperatures stage 3 fits on validation windows:
        ``"language_model"``, the softmax over the labels' log-likelihoods / `config.label_temperature`;
        ``"emotion_head"``, the encoder's stage-1 head / `config.head_temperature` (it needs `eeg_values`, not
        `eeg_features`; the prompt is not read). See `e2llm.label_sources_e2llm`.

        `candidate_ids` are the token ids of the label strings in `config.id2label` order (see
        `E2LLMProcessor.label_candidate_ids`); the prompts end where the label is written (after `Emotion:`).
        """
        if len(candidate_ids) != len(self.config.id2label):
            raise ValueError(
                f"got {len(candidate_ids)} label candidates but the model has {len(self.config.id2label)} labels"
            )
        if self.config.label_probabilities == "emotion_head":
            if eeg_inputs.get("eeg_values") is None:
                raise ValueError("this model's label probabilities come from its emotion head "
                                 "(config.label_probabilities='emotion_head'): pass eeg_values (and eeg_channel_ids), "
                                 "not eeg_features")
            names = ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")
            _, logits = self.get_eeg_features(**{k: eeg_inputs.get(k) for k in names}, return_emotion_logits=True)
            return source_probabilities(self.config, None, logits)["emotion_head"]
        scores = self.score_labels(input_ids, attention_mask, candidate_ids, **eeg_inputs)
        return source_probabilities(self.config, scores, None)["language_model"]


__all__ = ["E2LLMForConditionalGeneration", "E2LLMModel", "E2LLMPreTrainedModel", "E2LLMProjector"]
