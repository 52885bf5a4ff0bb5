"""E2LLM configurations: the EEG encoder's, and the composite EEG + projector + Qwen one."""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

from .backbones_e2llm import (
    BACKBONES,
    CONTRACTS,
    backbone_output_size,
    check_channel_table,
    resolve_backbone_config,
    validate_backbone,
)
from .eeg_evidence_features import REGIONS
from .electrodes import ELECTRODE_NAMES
from .label_sources_e2llm import check_label_source

# SEED-VII's seven emotions, in the order its labels are numbered in e2llm datasets.
SEED_VII_EMOTIONS: tuple[str, ...] = ("happiness", "sadness", "fear", "disgust", "neutral", "anger", "surprise")
DEFAULT_ID2LABEL: dict[int, str] = dict(enumerate(SEED_VII_EMOTIONS))


@strict
class E2LLMEEGConfig(PreTrainedConfig):
    r"""
    Configuration of [`E2LLMEEGEncoder`], a patch transformer over `(batch, n_channels, n_times)` EEG windows.

    Each channel's window is cut into patches of `patch_size` samples; a patch token is the sum of linear embeddings
    of its samples (`use_sample_embedding`), of its log-amplitude spectrum (`use_spectral_embedding`) and of its log
    power in the frequency bands `band_edges` (`use_band_power_embedding`), plus its electrode's learned embedding and
    its time-patch index embedding. With `electrode_band_rank > 0` the band powers, centred on the window's channel
    mean, are also embedded through `electrode_band_rank` learned factors of their electrode, so a spatial pattern
    (which electrode has more alpha than the others) reaches the tokens linearly, as in a linear model on SEED's
    differential-entropy features. Transformer layers mix all (channel, patch) tokens; `num_output_tokens` learned
    queries pool them, on top of the tokens' mean, into the tokens handed to the language model.

    Args:
        num_electrodes (`int`): size of the electrode vocabulary (`e2llm.electrodes.ELECTRODE_NAMES`).
        sampling_rate (`int`): rate the encoder expects, in Hz.
        window_samples (`int`): samples per window (`n_times`); a multiple of `patch_size`.
        patch_size (`int`): samples per time patch.
        num_output_tokens (`int`): pooled tokens per window.
        band_edges (`list[float]`): edges in Hz of the bands of the band-power embedding (default δ, θ, α, β, γ as
            in SEED's differential entropy features); each band must hold at least one FFT bin of a patch.
        electrode_band_rank (`int`): rank of the electrode-conditioned band-power embedding (0 turns it off).
        band_power_readout (`bool`): add to every pooled token a linear readout of each channel's log band power over
            the window, standardised per (electrode, band) by running statistics, through per-electrode weights (patch
            backbone): a path as direct as a linear model on differential entropy.
        region_tokens (`bool`): make the last `len(REGIONS) + 1` of the `num_output_tokens` tokens region tokens
            (`E2LLMEEGRegionTokens`): per scalp region, and scalp-wide, a linear embedding of the readout's
            standardised band powers (needs `band_power_readout`); the other tokens are the pooler's queries.
        emotion_token (`bool`): make the last of the `num_output_tokens` tokens the encoder's emotion reading
            (`E2LLMEEGEmotionToken`): the stage-1 emotion head lives in the encoder, and its class probabilities,
            times learned per-class embeddings, are one more token for the language model.
        backbone (`str`): `"patch"` (the patch transformer above, trained from scratch) or a pretrained foundation
            encoder: `"eegpt"`, `"cbramod"`, `"labram"` (see `e2llm.backbones_e2llm`). With a foundation backbone,
            `hidden_size` is its output width and the patch-transformer fields (`num_hidden_layers`, embeddings...) are
            unused; `num_output_tokens` queries (with `num_attention_heads` heads) pool its tokens.
        backbone_config (`dict`): the backbone's hyper-parameters; unset ones take the published model's values.
        sampling_rate, window_samples: default to the backbone's pretraining contract (EEGPT 256 Hz x 1024,
            CBraMod and LaBraM 200 Hz x 800; the patch encoder 200 Hz x 800).
        channel_names (`list[str]`): the backbone's channel table (embedding rows / channel order); defaults to its own.
            With an EEGPT `channel_projection`, the projection's input channels in order.
        input_unit_uv (`float`): microvolts per unit of the backbone's input (EEGPT 1000: mV; CBraMod and LaBraM
            100); None for the patch encoder, which takes normalised windows.
        reference (`str`): "average" to re-reference before the backbone (EEGPT's pretraining did), "none" to keep it.
        min_channels (`int`): fewest known channels a recording must have (default 1, 8 for foundation backbones).

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
    sampling_rate: int | None = None
    window_samples: int | None = None
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
    use_sample_embedding: bool = True
    use_spectral_embedding: bool = True
    use_band_power_embedding: bool = True
    band_edges: list[float] | tuple[float, ...] = (1.0, 4.0, 8.0, 14.0, 31.0, 50.0)
    electrode_band_rank: int = 8
    band_power_readout: bool = False
    region_tokens: bool = False
    emotion_token: bool = False
    classifier_dropout: float | int = 0.1
    initializer_range: float = 0.02
    backbone: str = "patch"
    backbone_config: dict | None = None
    channel_names: list[str] | tuple[str, ...] | None = None
    input_unit_uv: float | int | None = None
    reference: str | None = None
    min_channels: int | None = None

    def __post_init__(self, **kwargs):
        if self.id2label is None and kwargs.get("num_labels") is None:
            self.id2label = dict(DEFAULT_ID2LABEL)
        self._resolve_backbone()
        super().__post_init__(**kwargs)

    def _resolve_backbone(self):
        """Fill the unset input-contract fields from the backbone's pretraining contract (the values are saved)."""
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        contract = CONTRACTS[self.backbone]
        self.backbone_config = resolve_backbone_config(self.backbone, self.backbone_config)
        if self.sampling_rate is None:
            self.sampling_rate = contract["sampling_rate"]
        if self.window_samples is None:
            self.window_samples = contract["window_samples"]
        if self.backbone == "patch":
            for name in ("channel_names", "input_unit_uv", "reference"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is part of a foundation backbone's input contract; the patch encoder "
                                     "uses the electrode vocabulary and normalised windows")
            self.min_channels = 1 if self.min_channels is None else self.min_channels
            return
        self.channel_names = check_channel_table(self.channel_names or contract["channel_names"])
        if self.input_unit_uv is None:
            self.input_unit_uv = contract["input_unit_uv"]
        if self.reference is None:
            self.reference = contract["reference"] or "none"
        if self.min_channels is None:
            self.min_channels = 8
        self.hidden_size = backbone_output_size(self.backbone, self.backbone_config)
        self.patch_size = self.backbone_config["patch_size"]

    @property
    def num_region_tokens(self) -> int:
        """Region tokens per window (`region_tokens`): one per scalp region and one scalp-wide, else 0."""
        return len(REGIONS) + 1 if self.region_tokens else 0

    @property
    def num_query_tokens(self) -> int:
        """Tokens the attention pooler's queries give: `num_output_tokens` less the region and emotion tokens."""
        return self.num_output_tokens - self.num_region_tokens - int(self.emotion_token)

    def validate_architecture(self):
        super().validate_architecture()
        if self.min_channels < 1:
            raise ValueError(f"min_channels must be >= 1, got {self.min_channels}")
        if self.region_tokens:
            if self.backbone != "patch" or not self.band_power_readout:
                raise ValueError("region_tokens embeds the band-power readout's values: it needs backbone='patch' and "
                                 "band_power_readout=True")
            if 8.0 not in [float(edge) for edge in self.band_edges[:-1]]:
                raise ValueError(f"region_tokens needs a band starting at 8 Hz (alpha, for the frontal asymmetry) in "
                                 f"band_edges, got {list(self.band_edges)}")
        if self.num_query_tokens < 1:
            special = [f"the {self.num_region_tokens} region tokens"] * self.region_tokens
            special += ["the emotion token"] * self.emotion_token
            needed = self.num_region_tokens + self.emotion_token + 1
            raise ValueError(f"num_output_tokens={self.num_output_tokens} leaves no pooled token next to "
                             f"{' and '.join(special)}; use at least {needed}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.backbone != "patch":
            validate_backbone(self.backbone, self.backbone_config, self.sampling_rate, self.window_samples)
            if self.reference not in ("average", "none"):
                raise ValueError(f"reference must be 'average' or 'none', got {self.reference!r}")
            if not self.input_unit_uv or self.input_unit_uv <= 0:
                raise ValueError(f"input_unit_uv must be a positive number of microvolts, got {self.input_unit_uv}")
            if (self.backbone == "eegpt" and self.backbone_config["channel_projection"] == "none"
                    and len(self.channel_names) > self.backbone_config["num_channel_embeddings"]):
                raise ValueError(f"channel_names has {len(self.channel_names)} names for "
                                 f"{self.backbone_config['num_channel_embeddings']} EEGPT channel embeddings")
            return
        if self.window_samples % self.patch_size:
            raise ValueError(
                f"window_samples={self.window_samples} is not a multiple of patch_size={self.patch_size}"
            )
        if not (self.use_sample_embedding or self.use_spectral_embedding or self.use_band_power_embedding):
            raise ValueError("the patch embedding needs at least one of use_sample_embedding, use_spectral_embedding "
                             "and use_band_power_embedding")
        if self.electrode_band_rank < 0:
            raise ValueError(f"electrode_band_rank must be >= 0, got {self.electrode_band_rank}")
        if self.use_band_power_embedding:
            edges = [float(edge) for edge in self.band_edges]
            if len(edges) < 2 or any(hi <= lo for lo, hi in zip(edges, edges[1:])) or edges[0] < 0:
                raise ValueError(f"band_edges must be at least two increasing frequencies >= 0 Hz, got {edges}")
            resolution = self.sampling_rate / self.patch_size
            if edges[-1] > self.sampling_rate / 2:
                raise ValueError(f"band_edges end at {edges[-1]:g} Hz, above the Nyquist frequency "
                                 f"{self.sampling_rate / 2:g} Hz")
            for lo, hi in zip(edges, edges[1:]):
                if math.floor((hi - 1e-9) / resolution) < math.ceil(lo / resolution):
                    raise ValueError(f"the band {lo:g}-{hi:g} Hz holds no FFT bin of a {self.patch_size}-sample patch "
                                     f"({resolution:g} Hz resolution); use longer patches or wider bands")

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
        label_temperature (`float`): temperature of the label probabilities (`score_emotions`: softmax of the labels'
            log-likelihoods divided by it; Guo et al. 2017), fitted on validation windows at the end of stage 3
            (`e2llm.training.evaluation.calibration.fit_temperature`); 1.0 leaves them as they are.
        label_probabilities (`str`): where `score_emotions` and the pipeline's ``scores`` come from: ``"language_model"``
            (the labels' log-likelihoods) or ``"emotion_head"`` (the encoder's stage-1 head, with
            `eeg_config.emotion_token`); stage 3 keeps the head's unless the language model's are better
            calibrated on validation windows beyond their noise (`e2llm.label_sources_e2llm`).
        head_temperature (`float`): temperature of the emotion head's probabilities, fitted as `label_temperature`.
        label_guidance_weight (`float`): how much the emotion head's (temperature-scaled) log-probabilities add to
            the language model's where it writes a label (`e2llm.label_guidance_e2llm`); 0 (the default): the
            language model alone. Stage 3 chooses it on validation windows.
        label_decision (`str`): who decides the written label: ``"language_model"`` (the default; guided by the head
            at `label_guidance_weight`) or ``"emotion_head"`` (the head's most probable label is written wherever the
            answer writes a label, the language model writes the rest; with `eeg_config.emotion_token`). Stage 3
            lets the head decide only when its answers beat every guidance weight's on validation windows.
        label_calibration (`dict`, *optional*): the validation figures behind the fields above (windows, each
            source's temperature and calibration error, the comparison that chose the source, the guidance weights
            tried); None when the model was not
            calibrated.

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
    label_temperature: float | int = 1.0
    label_probabilities: str = "language_model"
    head_temperature: float | int = 1.0
    label_guidance_weight: float | int = 0.0
    label_decision: str = "language_model"
    label_calibration: dict | None = None

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

    def validate_architecture(self):
        super().validate_architecture()
        check_label_source(self)

    @property
    def label_names(self) -> list[str]:
        """Label strings in id order."""
        return [self.id2label[i] for i in sorted(self.id2label)]


__all__ = ["DEFAULT_ID2LABEL", "E2LLMConfig", "E2LLMEEGConfig", "SEED_VII_EMOTIONS"]
