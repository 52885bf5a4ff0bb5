"""E2LLM configurations: the EEG encoder's, and the composite EEG + projector + Qwen one."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

from .electrodes import ELECTRODE_NAMES

# SEED-VII's seven emotions, in the order its labels are numbered in e2llm datasets.
SEED_VII_EMOTIONS: tuple[str, ...] = ("happiness", "sadness", "fear", "disgust", "neutral", "anger", "surprise")
DEFAULT_ID2LABEL: dict[int, str] = dict(enumerate(SEED_VII_EMOTIONS))


@strict
class E2LLMEEGConfig(PreTrainedConfig):
    r"""
    Configuration of [`E2LLMEEGEncoder`], a patch transformer over `(batch, n_channels, n_times)` EEG windows.

    Each channel's window is cut into patches of `patch_size` samples; a patch token is the sum of a linear embedding
    of its samples, of its log-amplitude spectrum (when `use_spectral_embedding`), of its electrode's learned embedding
    and of its time-patch index embedding. Transformer layers mix all (channel, patch) tokens; `num_output_tokens`
    learned queries pool them into the tokens handed to the language model.

    Args:
        num_electrodes (`int`): size of the electrode vocabulary (`e2llm.electrodes.ELECTRODE_NAMES`).
        sampling_rate (`int`): rate the encoder expects, in Hz.
        window_samples (`int`): samples per window (`n_times`); a multiple of `patch_size`.
        patch_size (`int`): samples per time patch.
        num_output_tokens (`int`): pooled tokens per window.

    Example:

    ```python
    >>> from e2llm import E2LLMEEGConfig, E2LLMEEGEncoder
    >>> config = E2LLMEEGConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    >>> encoder = E2LLMEEGEncoder(config)
    >>> config.window_samples // config.patch_size
    4
    ```"""

    model_type = "e2llm_eeg"
    base_config_key = "eeg_config"

    num_electrodes: int = len(ELECTRODE_NAMES)
    sampling_rate: int = 200
    window_samples: int = 800
    patch_size: int = 200
    hidden_size: int = 256
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout: float | int = 0.0
    attention_dropout: float | int = 0.0
    layer_norm_eps: float = 1e-5
    num_output_tokens: int = 4
    use_spectral_embedding: bool = True
    classifier_dropout: float | int = 0.1
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.id2label is None and kwargs.get("num_labels") is None:
            self.id2label = dict(DEFAULT_ID2LABEL)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        super().validate_architecture()
        if self.window_samples % self.patch_size:
            raise ValueError(
                f"window_samples={self.window_samples} is not a multiple of patch_size={self.patch_size}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )

    @property
    def num_patches(self) -> int:
        return self.window_samples // self.patch_size


@strict
class E2LLMConfig(PreTrainedConfig):
    r"""
    Configuration of [`E2LLMModel`] and [`E2LLMForConditionalGeneration`]: an EEG encoder, a GELU MLP projector and a
    Qwen2 / Qwen2.5 / Qwen3 language model.

    Args:
        eeg_config (`E2LLMEEGConfig` or `dict`): the EEG encoder.
        text_config (`PreTrainedConfig` or `dict`): the language model (any `model_type` AutoConfig knows; Qwen2 by
            default).
        eeg_token_id (`int`): id of the `<|eeg|>` placeholder token, set from the tokenizer.
        num_eeg_tokens (`int`): language-model tokens per EEG window; the encoder pools to this many.
        projector_hidden_act (`str`): activation between the projector's two linear layers.
        id2label (`dict[int, str]`): the label set (SEED-VII's seven emotions by default); scoring, parsing and the
            pipeline read it from here.

    Example:

    ```python
    >>> from e2llm import E2LLMConfig
    >>> config = E2LLMConfig(text_config={"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 2})
    >>> config.text_config.model_type, config.num_eeg_tokens
    ('qwen3', 4)
    ```"""

    model_type = "e2llm"
    sub_configs_defaults = {
        "eeg_config": SubConfigSpec(config_class=E2LLMEEGConfig),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2"),
    }

    eeg_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    eeg_token_id: int | None = None
    num_eeg_tokens: int | None = None
    projector_hidden_act: str = "gelu"
    projector_bias: bool = True
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.id2label is None and kwargs.get("num_labels") is None:
            self.id2label = dict(DEFAULT_ID2LABEL)
        super().__post_init__(**kwargs)
        # The encoder pools to exactly the number of placeholder tokens the processor writes per window.
        if self.num_eeg_tokens is None:
            self.num_eeg_tokens = self.eeg_config.num_output_tokens
        else:
            self.eeg_config.num_output_tokens = self.num_eeg_tokens
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True

    @property
    def label_names(self) -> list[str]:
        """Label strings in id order."""
        return [self.id2label[i] for i in sorted(self.id2label)]


__all__ = ["DEFAULT_ID2LABEL", "E2LLMConfig", "E2LLMEEGConfig", "SEED_VII_EMOTIONS"]
