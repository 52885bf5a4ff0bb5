"""The E2LLM EEG encoder: a patch transformer over multichannel EEG windows, and its stage-1 emotion head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, torch_compilable_check
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_e2llm import E2LLMEEGConfig
from .eeg_evidence_features import FAA_PAIRS, REGIONS, region_of
from .electrodes import ELECTRODE_NAMES
from .model_folder_e2llm import ModelFolderMixin
from .modeling_eeg_backbones import backbone_tokens, build_backbone
from .modeling_eegpt import E2LLMEEGPTBackbone, projected_channel_ids


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(batch, heads, q_len, head_dim)` attention with an additive `attention_mask` `(batch, 1, 1, k_len)`.

    Returns `(batch, q_len, heads, head_dim)` and the weights, like the Transformers attention interface."""
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    return torch.matmul(attn_weights, value).transpose(1, 2).contiguous(), attn_weights


class E2LLMEEGAttention(nn.Module):
    """Multi-head attention with a key padding mask (masked channels are never attended to)."""

    def __init__(self, config: E2LLMEEGConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`queries` `(batch, q_len, hidden)` attend to `keys` `(batch, k_len, hidden)` where `key_mask` is True.

        Returns the output `(batch, q_len, hidden)` and the weights `(batch, heads, q_len, k_len)` (eager attention
        only; `None` otherwise), like Transformers' attention modules."""
        implementation = self.config._attn_implementation
        if implementation not in ("eager", "sdpa"):
            # Flash kernels take unpadded variable-length inputs and flex attention a BlockMask, while the encoder
            # masks keys with a dense padding mask; torch's sdpa picks its own flash kernel on CUDA where it can.
            implementation = "sdpa"
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        query = self._heads(self.q_proj(queries))
        attention_mask = torch.zeros(key_mask.shape, dtype=query.dtype, device=query.device)
        attention_mask = attention_mask.masked_fill(~key_mask, torch.finfo(query.dtype).min)[:, None, None, :]
        out, attn_weights = attention_interface(
            self,
            query,
            self._heads(self.k_proj(keys)),
            self._heads(self.v_proj(keys)),
            attention_mask,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.head_dim**-0.5,
            is_causal=False,
        )
        return self.o_proj(out.reshape(queries.shape[0], queries.shape[1], -1)), attn_weights


class E2LLMEEGMLP(nn.Module):
    def __init__(self, config: E2LLMEEGConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class E2LLMEEGLayer(GradientCheckpointingLayer):
    """Pre-norm transformer layer over all (channel, patch) tokens of a window."""

    def __init__(self, config: E2LLMEEGConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = E2LLMEEGAttention(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = E2LLMEEGMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        normed = self.attn_norm(hidden_states)
        attn_output, _ = self.attn(normed, normed, token_mask)
        hidden_states = hidden_states + self.dropout(attn_output)
        return hidden_states + self.dropout(self.mlp(self.mlp_norm(hidden_states)))


def patch_band_power(eeg_values: torch.Tensor, band_weights: torch.Tensor, patch_size: int,
                     amplitude: torch.Tensor | None = None) -> torch.Tensor:
    """`(batch, n_channels, n_times)` -> `(batch, n_channels, n_patches, n_bands)` float32: each patch's mean power
    per bin of the orthonormal transform over each band (`band_weights` `(n_bands, n_bins)`); about the variance for
    white noise, whatever the patch. FFTs are not implemented for half precision on CPU: taken in float32.
    `amplitude`: the patches' spectrum magnitude `(batch, n_channels, n_patches, n_bins)` when already computed."""
    if amplitude is None:
        batch, n_channels, n_times = eeg_values.shape
        patches = eeg_values.float().view(batch, n_channels, n_times // patch_size, patch_size)
        amplitude = torch.fft.rfft(patches, dim=-1).abs()
    power = amplitude.square() / patch_size
    return power @ band_weights.T.float()


class E2LLMEEGPatchEmbedding(nn.Module):
    """Token per (channel, time patch): the sum of the enabled patch views (samples, log spectrum, log band powers)
    and of the electrode and patch-position embeddings."""

    band_power_floor = 1e-6

    def __init__(self, config: E2LLMEEGConfig):
        super().__init__()
        self.config = config
        n_bins = config.patch_size // 2 + 1
        self.sample_projection = nn.Linear(config.patch_size, config.hidden_size) if config.use_sample_embedding else None
        self.spectral_projection = nn.Linear(n_bins, config.hidden_size) if config.use_spectral_embedding else None
        self.band_power_projection = None
        if config.use_band_power_embedding:
            # derived from the config, so never saved with the weights (`_init_weights` fills it after loading)
            self.register_buffer("band_weights", self.compute_band_weights(config), persistent=False)
            n_bands = len(config.band_edges) - 1
            self.band_power_projection = nn.Linear(n_bands, config.hidden_size)
            if config.electrode_band_rank > 0:
                self.electrode_band_factors = nn.Embedding(config.num_electrodes, config.electrode_band_rank)
                self.electrode_band_projection = nn.Linear(n_bands * config.electrode_band_rank, config.hidden_size)
        self.electrode_embedding = nn.Embedding(config.num_electrodes, config.hidden_size)
        self.patch_position_embedding = nn.Embedding(config.num_patches, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    @staticmethod
    def compute_band_weights(config: E2LLMEEGConfig) -> torch.Tensor:
        """`(n_bands, n_bins)` weights averaging a patch's power spectrum over each band [lo, hi) of `band_edges`."""
        frequencies = torch.fft.rfftfreq(config.patch_size, d=1.0 / config.sampling_rate)
        edges = [float(edge) for edge in config.band_edges]
        masks = torch.stack([(frequencies >= lo) & (frequencies < hi) for lo, hi in zip(edges, edges[1:])]).float()
        return masks / masks.sum(-1, keepdim=True)

    def forward(
        self, eeg_values: torch.Tensor, eeg_channel_ids: torch.Tensor, channel_mask: torch.Tensor,
        band_power: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(batch, n_channels, n_times)` -> `(batch, n_channels, n_patches, hidden_size)`; `channel_mask`
        `(batch, n_channels)` bool marks the real channels (the others never enter the channel mean); `band_power`:
        the windows' `patch_band_power` when already computed (the encoder shares it with its readout)."""
        batch, n_channels, _ = eeg_values.shape
        patches = eeg_values.view(batch, n_channels, self.config.num_patches, self.config.patch_size)
        positions = torch.arange(self.config.num_patches, device=eeg_values.device)
        embeddings = (
            self.electrode_embedding(eeg_channel_ids)[:, :, None, :] + self.patch_position_embedding(positions)[None, None]
        )
        if self.sample_projection is not None:
            embeddings = embeddings + self.sample_projection(patches)
        amplitude = None
        if self.spectral_projection is not None:
            # FFTs are not implemented for half precision on CPU: take the spectrum in float32.
            amplitude = torch.fft.rfft(patches.float(), dim=-1).abs()
            embeddings = embeddings + self.spectral_projection(torch.log1p(amplitude).to(patches.dtype))
        if self.band_power_projection is not None:
            if band_power is None:  # (batch, n_channels, n_patches, n_bands)
                band_power = patch_band_power(eeg_values, self.band_weights, self.config.patch_size, amplitude)
            weights = channel_mask[:, :, None, None].float()
            # Inputs are normalised windows (unit scale), so a floor far below any real band's power keeps an
            # empty band (a pure tone, a padded channel) at a fixed value instead of the log of rounding noise;
            # padded channels are also kept out of the channel mean.
            log_power = torch.log(band_power + self.band_power_floor) * weights
            embeddings = embeddings + self.band_power_projection(log_power.to(patches.dtype))
            if self.config.electrode_band_rank > 0:
                channel_mean = log_power.sum(1, keepdim=True) / weights.sum(1, keepdim=True)
                relative = (log_power - channel_mean) * weights  # (batch, n_channels, n_patches, n_bands)
                factors = self.electrode_band_factors(eeg_channel_ids).float()  # (batch, n_channels, rank)
                spatial = relative[..., :, None] * factors[:, :, None, None, :]
                embeddings = embeddings + self.electrode_band_projection(spatial.flatten(-2).to(patches.dtype))
        return self.norm(embeddings)


class E2LLMEEGAttentionPooler(nn.Module):
    """`num_output_tokens` tokens: the mean of the window's (unmasked) tokens plus what a learned query reads from them.

    The mean keeps every token's contribution from the first step (the queries start near zero); each query then
    learns which channels and patches to stress."""

    def __init__(self, config: E2LLMEEGConfig):
        super().__init__()
        self.queries = nn.Parameter(torch.empty(config.num_query_tokens, config.hidden_size))
        self.attn = E2LLMEEGAttention(config)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        weights = token_mask.to(hidden_states.dtype)[..., None]
        mean = (hidden_states * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
        queries = self.queries[None].expand(hidden_states.shape[0], -1, -1)
        attended, _ = self.attn(queries + mean, hidden_states, token_mask)
        return self.norm(mean + queries + attended)


class E2LLMEEGBandPowerReadout(nn.Module):
    """`(batch, hidden_size)`: the mean over present channels of per-electrode weights `(n_bands, hidden_size)` times
    the channel's log band power over the window, standardised per (electrode, band).

    The standardisation uses running statistics per electrode and band (`running_mean`, `running_var`, saved with
    the weights), updated while the readout trains: a cumulative average that becomes an exponential one (momentum
    0.1). Without it the band powers' large, band-specific offsets swamp their small differences between windows
    (a linear readout of unstandardised log powers reached 0.3-0.4 balanced accuracy where standardised ones reached
    0.6 on the quickstart's validation trials). Added to every pooled token, it gives the stage-1 head and the
    projector a linear path from each electrode's spectrum, as a logistic regression on differential entropy has."""

    momentum = 0.1

    def __init__(self, config: E2LLMEEGConfig):
        super().__init__()
        self.config = config
        n_bands = len(config.band_edges) - 1
        self.register_buffer("band_weights", E2LLMEEGPatchEmbedding.compute_band_weights(config), persistent=False)
        self.register_buffer("running_mean", torch.zeros(config.num_electrodes, n_bands))
        self.register_buffer("running_var", torch.ones(config.num_electrodes, n_bands))
        self.register_buffer("num_updates", torch.zeros(config.num_electrodes))
        self.weight = nn.Embedding(config.num_electrodes, n_bands * config.hidden_size)

    def log_band_power(self, eeg_values: torch.Tensor, band_power: torch.Tensor | None = None) -> torch.Tensor:
        """`(batch, n_channels, n_times)` -> `(batch, n_channels, n_bands)` log band power over the window's patches
        (`band_power`: the windows' `patch_band_power` when already computed)."""
        if band_power is None:
            band_power = patch_band_power(eeg_values, self.band_weights, self.config.patch_size)
        return torch.log(band_power.mean(2) + E2LLMEEGPatchEmbedding.band_power_floor)

    @torch.no_grad()
    def _update(self, log_power: torch.Tensor, ids: torch.Tensor) -> None:
        count = torch.zeros_like(self.num_updates).index_add_(0, ids, torch.ones_like(ids, dtype=self.num_updates.dtype))
        total = torch.zeros_like(self.running_mean).index_add_(0, ids, log_power)
        squares = torch.zeros_like(self.running_mean).index_add_(0, ids, log_power.square())
        seen = count > 1
        mean = total[seen] / count[seen, None]
        var = (squares[seen] / count[seen, None] - mean.square()).clamp_min(1e-6)
        rate = torch.clamp(1.0 / (self.num_updates[seen] + 1), min=self.momentum)[:, None]
        self.running_mean[seen] += rate * (mean - self.running_mean[seen])
        self.running_var[seen] += rate * (var - self.running_var[seen])
        self.num_updates[seen] += 1

    def standardised_log_power(self, eeg_values: torch.Tensor, eeg_channel_ids: torch.Tensor,
                               channel_mask: torch.Tensor, band_power: torch.Tensor | None = None) -> torch.Tensor:
        """`(batch, n_channels, n_bands)` float32: log band power standardised per (electrode, band); updates the
        running statistics while the readout trains. `band_power` as in `log_band_power`."""
        log_power = self.log_band_power(eeg_values, band_power)
        if self.training and self.weight.weight.requires_grad:  # a frozen readout keeps its statistics
            self._update(log_power[channel_mask], eeg_channel_ids[channel_mask])
        return (log_power - self.running_mean[eeg_channel_ids]) / self.running_var[eeg_channel_ids].sqrt()

    def forward(self, eeg_values: torch.Tensor, eeg_channel_ids: torch.Tensor, channel_mask: torch.Tensor,
                standard: torch.Tensor | None = None) -> torch.Tensor:
        """`standard`: the `standardised_log_power` of these windows when already computed."""
        if standard is None:
            standard = self.standardised_log_power(eeg_values, eeg_channel_ids, channel_mask)
        weights = self.weight(eeg_channel_ids).view(*eeg_channel_ids.shape, standard.shape[-1], -1)
        mask = channel_mask.float()
        readout = torch.einsum("bcn,bcnh->bh", standard * mask[..., None], weights.float())
        return (readout / mask.sum(1, keepdim=True)).to(eeg_values.dtype)


class E2LLMEEGRegionTokens(nn.Module):
    """`(batch, n_regions + 1, hidden_size)`: one token per scalp region (`REGIONS`) and one scalp-wide token, each a
    learned linear embedding of what a rationale cites about it.

    A region's token embeds the mean over its present channels of the standardised log band power of
    `E2LLMEEGBandPowerReadout` (one value per band) and whether the region has a channel at all; the scalp-wide
    token embeds the mean over all present channels of each band and the frontal alpha asymmetry (mean right minus
    mean left frontal alpha, over the `FAA_PAIRS` electrodes present). An attention pooler mixes every channel into
    every token, so a rationale's regional claims (``alpha power is higher over occipital channels``) would have to be
    disentangled again; these tokens hand them to the projector as they are, region by region."""

    def __init__(self, config: E2LLMEEGConfig):
        super().__init__()
        self.config = config
        n_bands, n_regions = len(config.band_edges) - 1, len(REGIONS)
        region, side = self.electrode_tables(config.num_electrodes)
        self.register_buffer("electrode_region", region, persistent=False)
        self.register_buffer("electrode_side", side, persistent=False)
        self.alpha_band = list(config.band_edges).index(8.0)  # the band starting at 8 Hz (checked by the config)
        self.weight = nn.Parameter(torch.empty(n_regions + 1, n_bands + 1, config.hidden_size))
        self.embedding = nn.Parameter(torch.empty(n_regions + 1, config.hidden_size))

    @staticmethod
    def electrode_tables(num_electrodes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(num_electrodes,)` region index of each electrode (`len(REGIONS)`: none) and its FAA side (+1 right, -1
        left, 0 neither)."""
        region = torch.full((num_electrodes,), len(REGIONS), dtype=torch.long)
        side = torch.zeros(num_electrodes)
        for i, name in enumerate(ELECTRODE_NAMES[:num_electrodes]):
            if region_of(name) is not None:
                region[i] = REGIONS.index(region_of(name))
        for right, left in FAA_PAIRS:
            side[ELECTRODE_NAMES.index(right)], side[ELECTRODE_NAMES.index(left)] = 1.0, -1.0
        return region, side

    def values(self, standard: torch.Tensor, eeg_channel_ids: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
        """`(batch, n_regions + 1, n_bands + 1)`: per region its channel-mean standardised band powers and 1 if it has a
        channel (else all 0); last row the scalp-wide band means and the frontal alpha asymmetry (0 without a pair)."""
        mask = channel_mask.float()
        n_regions = self.weight.shape[0] - 1
        member = F.one_hot(self.electrode_region[eeg_channel_ids], n_regions + 1)[..., :n_regions] * mask[..., None]
        count = member.sum(1)  # (batch, n_regions)
        regional = torch.einsum("bcr,bcn->brn", member, standard) / count.clamp_min(1)[..., None]
        scalp = (standard * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        side = self.electrode_side[eeg_channel_ids] * mask  # (batch, n_channels)
        alpha = standard[..., self.alpha_band]
        right, left = (side > 0).float(), (side < 0).float()
        faa = ((alpha * right).sum(1) / right.sum(1).clamp_min(1) - (alpha * left).sum(1) / left.sum(1).clamp_min(1))
        faa = faa * (right.sum(1) > 0) * (left.sum(1) > 0)
        return torch.cat([torch.cat([regional, (count > 0).float()[..., None]], -1),
                          torch.cat([scalp, faa[:, None]], -1)[:, None]], 1)

    def forward(self, standard: torch.Tensor, eeg_channel_ids: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
        values = self.values(standard, eeg_channel_ids, channel_mask)
        return torch.einsum("btn,tnh->bth", values, self.weight.float()) + self.embedding.float()


class E2LLMEEGEmotionToken(nn.Module):
    """The stage-1 emotion head inside the encoder, and its reading as one more token for the language model.

    `classifier` reads the mean of the other output tokens `(batch, n_tokens, hidden)` -> `(batch, num_labels)`
    logits (what stage 1 trains); the token is the head's class probabilities times learned per-class embeddings
    `(num_labels, hidden)`, a point in the simplex of the classes. The language model thus gets the encoder's
    emotion-discriminative reading of the window directly, rather than having to relearn it from the pooled tokens
    with a few hundred training windows."""

    def __init__(self, config: E2LLMEEGConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.label_embeddings = nn.Parameter(torch.empty(config.num_labels, config.hidden_size))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(batch, n_tokens, hidden)` -> `(logits (batch, num_labels), token (batch, 1, hidden))`."""
        logits = self.classifier(self.dropout(tokens.mean(1)))
        token = logits.float().softmax(-1) @ self.label_embeddings.float()
        return logits, token[:, None].to(tokens.dtype)


@dataclass
class E2LLMEEGEncoderOutput(BaseModelOutputWithPooling):
    r"""
    last_hidden_state (`(batch_size, n_channels * n_patches, hidden_size)`): the (channel, patch) tokens.
    pooler_output (`(batch_size, num_output_tokens, hidden_size)`): the pooled tokens handed to the projector.
    hidden_states (`tuple` of `(batch_size, n_channels * n_patches, hidden_size)`, with `output_hidden_states=True`):
        the input of the first layer and the output of each layer (the last one after the final norm).
    attentions (`tuple` of `(batch_size, num_heads, n_tokens, n_tokens)`, with `output_attentions=True`, eager
        attention): each layer's attention weights.
    emotion_logits (`(batch_size, num_labels)`, with `config.emotion_token`): the encoder's emotion head, whose class
        probabilities make the last pooled token (`E2LLMEEGEmotionToken`).
    pooler_attentions (`tuple` of one `(batch_size, num_heads, num_output_tokens, n_tokens)`, with
        `output_pooler_attentions=True`, eager attention): how much each pooled token reads from each
        (channel, patch) token, channel-major.
    backbone_hidden_states (with `output_backbone_hidden_states=True`, foundation backbones): the backbone's own
        output in its reference layout (EEGPT `(batch_size, n_patches, num_summary_tokens, embed_dim)`, CBraMod
        `(batch_size, n_channels, n_patches, output_size)` in table order, LaBraM `(batch_size, 1 + n_tokens, width)`).
    """

    emotion_logits: torch.Tensor | None = None
    pooler_attentions: tuple[torch.Tensor, ...] | None = None
    backbone_hidden_states: torch.Tensor | None = None


class E2LLMEEGPreTrainedModel(ModelFolderMixin, PreTrainedModel):
    """Base of the EEG encoder models; `from_pretrained` is strict (`e2llm.model_folder_e2llm`; `strict=False` opts out)."""

    config: E2LLMEEGConfig
    config_class = E2LLMEEGConfig
    base_model_prefix = "encoder"
    main_input_name = "eeg_values"
    input_modalities = ("eeg",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _can_compile_fullgraph = True  # the patch backbone's forward has no data-dependent Python branch
    _no_split_modules = ["E2LLMEEGLayer"]
    # Outputs recorded by hooks when `output_hidden_states` / `output_attentions` / `output_pooler_attentions` is set.
    _can_record_outputs = {
        "hidden_states": E2LLMEEGLayer,
        "attentions": OutputRecorder(E2LLMEEGAttention, index=1, layer_name="layers"),
        "pooler_attentions": OutputRecorder(E2LLMEEGAttention, index=1, layer_name="pooler"),
    }

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, E2LLMEEGAttentionPooler):
            init.normal_(module.queries, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, E2LLMEEGPatchEmbedding) and module.band_power_projection is not None:
            init.copy_(module.band_weights, module.compute_band_weights(module.config))
            if module.config.electrode_band_rank > 0:
                # unit-scale factors: the centred log powers are O(1), so the spatial term starts as large as the rest
                init.normal_(module.electrode_band_factors.weight, mean=0.0, std=1.0)
        elif isinstance(module, E2LLMEEGBandPowerReadout):
            init.copy_(module.band_weights, E2LLMEEGPatchEmbedding.compute_band_weights(module.config))
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_updates)
        elif isinstance(module, E2LLMEEGRegionTokens):
            # standardised inputs are O(1): tokens start at the scale of the layer-normed pooled tokens
            init.normal_(module.weight, mean=0.0, std=module.weight.shape[1] ** -0.5)
            init.normal_(module.embedding, mean=0.0, std=1.0)
            region, side = module.electrode_tables(module.config.num_electrodes)
            init.copy_(module.electrode_region, region)
            init.copy_(module.electrode_side, side)
        elif isinstance(module, E2LLMEEGEmotionToken):
            init.normal_(module.label_embeddings, mean=0.0, std=1.0)  # at the scale of the layer-normed tokens
        elif isinstance(module, E2LLMEEGPTBackbone) and module.channel_projection is not None:
            init.copy_(module.projected_ids, projected_channel_ids(module.config.backbone_config))


class E2LLMEEGEncoder(E2LLMEEGPreTrainedModel):
    """EEG windows `(batch, n_channels, n_times)` at `config.sampling_rate` -> `(batch, num_output_tokens, hidden)`.

    Channels are identified by `eeg_channel_ids` (indices into `e2llm.electrodes.ELECTRODE_NAMES`), so any subset
    and order of electrodes works; `eeg_channel_mask` is 0 for padded or missing channels, which are never attended to.

    Example:

    ```python
    >>> import torch
    >>> from e2llm import E2LLMEEGConfig, E2LLMEEGEncoder
    >>> encoder = E2LLMEEGEncoder(E2LLMEEGConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4))
    >>> out = encoder(torch.randn(2, 3, 800), eeg_channel_ids=torch.tensor([[0, 2, 19]] * 2))
    >>> tuple(out.pooler_output.shape)
    (2, 4, 32)
    ```"""

    _keys_to_ignore_on_load_unexpected = [r"^classifier\."]  # loading the encoder from a stage-1 classifier folder

    def __init__(self, config: E2LLMEEGConfig):
        super().__init__(config)
        if config.backbone == "patch":
            self.embeddings = E2LLMEEGPatchEmbedding(config)
            self.layers = nn.ModuleList(E2LLMEEGLayer(config) for _ in range(config.num_hidden_layers))
            self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        else:  # a pretrained foundation encoder (EEGPT, CBraMod, LaBraM): e2llm.modeling_eeg_backbones
            self.backbone = build_backbone(config)
        self.pooler = E2LLMEEGAttentionPooler(config)
        self.readout = (E2LLMEEGBandPowerReadout(config) if config.band_power_readout and config.backbone == "patch"
                        else None)
        self.region_tokens = E2LLMEEGRegionTokens(config) if config.region_tokens else None
        self.emotion_token = E2LLMEEGEmotionToken(config) if config.emotion_token else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The (channel, patch) token embedding: what `enable_input_require_grads` hooks for PEFT + checkpointing."""
        return self.embeddings if self.config.backbone == "patch" else self.backbone.embeddings

    def _check_inputs(self, eeg_values: torch.Tensor, eeg_channel_ids: torch.Tensor) -> None:
        """ValueError naming the problem when `eeg_values` is not `(batch, n_channels, window_samples)` or
        `eeg_channel_ids` not `(batch, n_channels)`."""
        if eeg_values.ndim != 3:
            raise ValueError(f"eeg_values must be (batch, n_channels, n_times), got shape {tuple(eeg_values.shape)}")
        if eeg_values.shape[-1] != self.config.window_samples:
            raise ValueError(
                f"eeg_values has n_times={eeg_values.shape[-1]}, but the encoder takes windows of "
                f"window_samples={self.config.window_samples} ({self.config.window_samples / self.config.sampling_rate:g} s "
                f"at {self.config.sampling_rate} Hz); run the inputs through E2LLMFeatureExtractor"
            )
        if eeg_channel_ids.shape != eeg_values.shape[:2]:
            raise ValueError(
                f"eeg_channel_ids has shape {tuple(eeg_channel_ids.shape)}, expected {tuple(eeg_values.shape[:2])}"
            )

    def _patch_tokens(self, eeg_values: torch.Tensor, eeg_channel_ids: torch.Tensor, channel_mask: torch.Tensor,
                      band_power: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The patch transformer: `(hidden_states (batch, n_channels * n_patches, hidden_size), token_mask
        (batch, n_channels * n_patches))`; `band_power`: the windows' `patch_band_power` when already computed."""
        hidden_states = self.embeddings(eeg_values.to(self.dtype), eeg_channel_ids, channel_mask, band_power)
        batch, n_channels, n_patches, hidden = hidden_states.shape
        hidden_states = hidden_states.reshape(batch, n_channels * n_patches, hidden)
        token_mask = channel_mask[:, :, None].expand(-1, -1, n_patches).reshape(batch, -1)
        for layer in self.layers:
            hidden_states = layer(hidden_states, token_mask)
        return self.norm(hidden_states), token_mask

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        eeg_values: torch.Tensor,
        eeg_channel_ids: torch.Tensor,
        eeg_channel_mask: torch.Tensor | None = None,
        output_backbone_hidden_states: bool = False,
        **kwargs,
    ) -> E2LLMEEGEncoderOutput:
        r"""
        eeg_values (`torch.FloatTensor` of shape `(batch_size, n_channels, n_times)`): normalised EEG windows (for a
            foundation backbone: in its input units, as the feature extractor built from this config writes them).
        eeg_channel_ids (`torch.LongTensor` of shape `(batch_size, n_channels)`): electrode index of each channel.
        eeg_channel_mask (`torch.LongTensor` of shape `(batch_size, n_channels)`, *optional*): 1 for real channels.

        Returns [`E2LLMEEGEncoderOutput`]: `last_hidden_state` `(batch_size, n_channels * n_patches, hidden_size)`,
        `pooler_output` `(batch_size, num_output_tokens, hidden_size)` and, on request (`output_hidden_states`,
        `output_attentions`, `output_pooler_attentions`), the recorded intermediate outputs; a tuple with
        `return_dict=False`.
        """
        self._check_inputs(eeg_values, eeg_channel_ids)
        if eeg_channel_mask is None:
            eeg_channel_mask = torch.ones_like(eeg_channel_ids)
        channel_mask = eeg_channel_mask.bool()
        # a tensor check, not `if`: no graph break under torch.compile / torch.export
        torch_compilable_check(channel_mask.any(-1).all(), "every EEG window needs at least one unmasked channel")

        backbone_output = band_power = None
        if self.config.backbone != "patch":
            hidden_states, token_mask, backbone_output = backbone_tokens(
                self.backbone, self.config, eeg_values.to(self.dtype), eeg_channel_ids, channel_mask
            )
            pooled = self.pooler(hidden_states, token_mask)
        else:
            if self.readout is not None and self.dtype == eeg_values.dtype:  # one spectrum for both
                band_power = patch_band_power(eeg_values, self.readout.band_weights, self.config.patch_size)
            hidden_states, token_mask = self._patch_tokens(eeg_values, eeg_channel_ids, channel_mask, band_power)
            pooled = self.pooler(hidden_states, token_mask)
        if self.readout is not None:  # (batch, hidden) added to every pooled token
            standard = self.readout.standardised_log_power(eeg_values, eeg_channel_ids, channel_mask, band_power)
            pooled = pooled + self.readout(eeg_values, eeg_channel_ids, channel_mask, standard)[:, None].to(self.dtype)
            if self.region_tokens is not None:
                region_tokens = self.region_tokens(standard, eeg_channel_ids, channel_mask).to(pooled.dtype)
                pooled = torch.cat([pooled, region_tokens], 1)
        emotion_logits = None
        if self.emotion_token is not None:
            emotion_logits, token = self.emotion_token(pooled)
            pooled = torch.cat([pooled, token], 1)
        return E2LLMEEGEncoderOutput(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            emotion_logits=emotion_logits,
            backbone_hidden_states=backbone_output if output_backbone_hidden_states else None,
        )


@dataclass
class E2LLMEEGClassifierOutput(ModelOutput):
    """Stage-1 output: `logits` `(batch, num_labels)`, `embeddings` `(batch, hidden_size)` (for contrastive losses),
    `pooler_output` `(batch, num_output_tokens, hidden_size)`; the encoder's `hidden_states` / `attentions` on request."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class E2LLMEEGForEmotionClassification(E2LLMEEGPreTrainedModel):
    """The encoder with the stage-1 emotion head (labels from `config.id2label`).

    With `config.emotion_token` the head is the encoder's own (`encoder.emotion_token.classifier`, reading the same
    mean of the pooled tokens), so the E2LLM that takes this encoder keeps it; otherwise it is `classifier` here."""

    def __init__(self, config: E2LLMEEGConfig):
        super().__init__(config)
        self.encoder = E2LLMEEGEncoder(config)
        if not config.emotion_token:
            self.dropout = nn.Dropout(config.classifier_dropout)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    @can_return_tuple
    def forward(
        self,
        eeg_values: torch.Tensor,
        eeg_channel_ids: torch.Tensor,
        eeg_channel_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> E2LLMEEGClassifierOutput:
        r"""labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): class ids; gives a cross-entropy loss.

        `output_hidden_states` / `output_attentions` in `kwargs` reach the encoder; `return_dict=False` gives a tuple."""
        encoded = self.encoder(eeg_values, eeg_channel_ids, eeg_channel_mask, return_dict=True, **kwargs)
        pooled = encoded.pooler_output
        if self.config.emotion_token:  # the head read the other tokens; the last one is its own reading
            embeddings, logits = pooled[:, :-1].mean(dim=1), encoded.emotion_logits
        else:
            embeddings = pooled.mean(dim=1)
            logits = self.classifier(self.dropout(embeddings))
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return E2LLMEEGClassifierOutput(
            loss=loss,
            logits=logits,
            embeddings=embeddings,
            pooler_output=pooled,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )


__all__ = ["E2LLMEEGEncoder", "E2LLMEEGEncoderOutput", "E2LLMEEGForEmotionClassification", "E2LLMEEGPreTrainedModel"]
