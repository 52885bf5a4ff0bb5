"""EEGPT (Wang et al., NeurIPS 2024) as an E2LLM backbone: the pretrained "target encoder".

Same math as braindecode 1.8.1 `EEGPT(..., return_encoder_output=True)`: each channel's window is cut into patches of
`patch_size` samples every `patch_stride` (the end zero-padded so the last patch fits), a patch becomes a token through
a linear map plus its channel's embedding, and for every time patch the channel tokens and `num_summary_tokens`
learned summary tokens go through pre-norm transformer layers; the normalised summary tokens are the output,
`(batch, n_patches, num_summary_tokens, embed_dim)`. Channels a window does not have (mask 0) are never attended to;
with every channel present this equals the reference exactly.

braindecode's default `chan_proj_type="conv1d_constraint"` (and `"linear"`) first mixes the model's input channels
(`config.channel_names`, the `chs_info` it was built with) into the channels `backbone_config["projected_channels"]`
(its 19 standard ones), through a 1x1 convolution whose weight rows are renormalised to an L2 norm of at most
`projection_max_norm` at every call (braindecode's `MaxNormParametrize`), or a linear map over the channel axis:
`E2LLMEEGPTChannelProjection`. Input channels a window does not have enter it as zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .backbones_e2llm import EEGPT_CHANNELS, backbone_num_patches, channel_table_ids


def key_padding_bias(key_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """`(batch, k_len)` bool -> additive `(batch, 1, 1, k_len)` mask, or None when every key is present."""
    if key_mask is None or bool(key_mask.all()):
        return None
    bias = torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device)
    return bias.masked_fill(~key_mask, torch.finfo(dtype).min)[:, None, None, :]


def eager_attention(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0, **kwargs):
    """Plain softmax attention with the signature of the Transformers attention interface."""
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.dropout(F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype), p=dropout,
                        training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def attend(module: nn.Module, query, key, value, key_mask, dropout: float, scaling: float | None = None):
    """Multi-head attention of `(batch, heads, len, head_dim)` tensors through the Transformers attention interface.

    Returns `(batch, q_len, heads * head_dim)`."""
    implementation = getattr(module.config, "_attn_implementation", "sdpa")
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    dropout = dropout if module.training else 0.0
    bias = key_padding_bias(key_mask, query.dtype)
    if implementation != "eager":
        # torch's kernel itself (flash / memory-efficient where it can): the dense key-padding mask rules out the
        # unpadded flash-attention path, and the interface's wrapper copies cost ~15 % of this attention on CPU
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout, scale=scaling)
        return out.transpose(1, 2).reshape(query.shape[0], query.shape[2], -1)
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention)
    out, _ = interface(module, query, key, value, bias, dropout=dropout, scaling=scaling, is_causal=False)
    return out.reshape(out.shape[0], out.shape[1], -1)


class E2LLMEEGPTAttention(nn.Module):
    def __init__(self, config, settings: dict):
        super().__init__()
        self.config = config
        width, bias = settings["embed_dim"], settings["qkv_bias"]
        self.num_heads = settings["num_heads"]
        self.dropout = settings["attention_dropout"]
        self.qkv_proj = nn.Linear(width, 3 * width, bias=bias)  # fused: one GEMM instead of three
        self.o_proj = nn.Linear(width, width)

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        qkv = self.qkv_proj(hidden_states).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return self.o_proj(attend(self, qkv[0], qkv[1], qkv[2], key_mask, self.dropout))


class E2LLMEEGPTMLP(nn.Module):
    def __init__(self, settings: dict):
        super().__init__()
        width = settings["embed_dim"]
        self.fc1 = nn.Linear(width, int(width * settings["mlp_ratio"]))
        self.fc2 = nn.Linear(int(width * settings["mlp_ratio"]), width)
        self.dropout = nn.Dropout(settings["dropout"])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(hidden_states)))))


class E2LLMEEGPTLayer(GradientCheckpointingLayer):
    """Pre-norm layer over the tokens of one time patch (its channels + the summary tokens)."""

    def __init__(self, config, settings: dict):
        super().__init__()
        eps = settings["layer_norm_eps"]
        self.attn_norm = nn.LayerNorm(settings["embed_dim"], eps=eps)
        self.attention = E2LLMEEGPTAttention(config, settings)
        self.mlp_norm = nn.LayerNorm(settings["embed_dim"], eps=eps)
        self.mlp = E2LLMEEGPTMLP(settings)
        self.dropout = nn.Dropout(settings["dropout"])

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        hidden_states = hidden_states + self.dropout(self.attention(self.attn_norm(hidden_states), key_mask))
        return hidden_states + self.mlp(self.mlp_norm(hidden_states))


class E2LLMEEGPTEmbeddings(nn.Module):
    """`(batch, n_channels, n_times)` -> patch tokens `(batch, n_patches, n_channels, embed_dim)` + channel embeddings."""

    def __init__(self, config, settings: dict):
        super().__init__()
        self.patch_size, self.patch_stride = settings["patch_size"], settings["patch_stride"] or settings["patch_size"]
        self.num_patches = backbone_num_patches("eegpt", settings, config.window_samples)
        self.padded_length = (self.num_patches - 1) * self.patch_stride + self.patch_size
        self.patch_projection = nn.Linear(self.patch_size, settings["embed_dim"])
        self.channel_embedding = nn.Embedding(settings["num_channel_embeddings"], settings["embed_dim"])
        self.summary_tokens = nn.Embedding(settings["num_summary_tokens"], settings["embed_dim"])

    def forward(self, eeg_values: torch.Tensor, channel_ids: torch.Tensor) -> torch.Tensor:
        padded = F.pad(eeg_values, (0, self.padded_length - eeg_values.shape[-1]))
        # (batch, n_patches, n_channels, patch), made contiguous here: the linear map runs ~5x slower on the strided
        # view, and reordering the narrow patches is cheaper than reordering the embed_dim-wide tokens
        patches = padded.unfold(-1, self.patch_size, self.patch_stride).transpose(1, 2).contiguous()
        return self.patch_projection(patches) + self.channel_embedding(channel_ids)[:, None, :, :]


class E2LLMEEGPTChannelProjection(nn.Module):
    """braindecode's `_ChannelProjection`: `(batch, n_inputs, n_times)` -> `(batch, n_outputs, n_times)`.

    `"conv1d_constraint"`: a 1x1 convolution whose weight rows are renormalised to L2 norm <= `max_norm` at every call
    (`Conv1dWithConstraint`); `"linear"`: `nn.Linear` over the channel axis. `proj.weight` `(n_outputs, n_inputs)` is
    the unconstrained weight (braindecode's `parametrizations.weight.original`)."""

    def __init__(self, n_inputs: int, n_outputs: int, kind: str, max_norm: float):
        super().__init__()
        if kind not in ("conv1d_constraint", "linear"):
            raise ValueError(f"eegpt channel_projection must be 'none', 'conv1d_constraint' or 'linear', got {kind!r}")
        self.kind, self.max_norm = kind, float(max_norm)
        self.proj = nn.Linear(n_inputs, n_outputs)

    def forward(self, eeg_values: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return self.proj(eeg_values.transpose(1, 2)).transpose(1, 2)
        weight = self.proj.weight.renorm(p=2, dim=0, maxnorm=self.max_norm)
        return F.conv1d(eeg_values, weight[:, :, None], self.proj.bias)


def projected_channel_ids(settings: dict) -> torch.Tensor:
    """Rows of the EEGPT channel embedding of the projection's output channels `(n_outputs,)` (braindecode's
    `chans_id` for its 19 channels)."""
    return torch.as_tensor(channel_table_ids(settings["projected_channels"], EEGPT_CHANNELS), dtype=torch.long)


class E2LLMEEGPTBackbone(nn.Module):
    """EEGPT's encoder: `(batch, n_channels, n_times)` -> summary tokens `(batch, n_patches, num_summary, embed_dim)`.

    `channel_ids` `(batch, n_channels)` index `config.channel_names`: the 62-name EEGPT table (the embedding rows), or
    with a channel projection its input channels (the outputs then take the embedding rows of `projected_channels`)."""

    def __init__(self, config):
        super().__init__()
        settings = config.backbone_config
        self.config = config
        self.channel_projection = None
        if settings["channel_projection"] != "none":
            self.channel_projection = E2LLMEEGPTChannelProjection(
                len(config.channel_names), len(settings["projected_channels"]), settings["channel_projection"],
                settings["projection_max_norm"])
            # derived from the config, so never saved (`E2LLMEEGPreTrainedModel._init_weights` fills it after loading)
            self.register_buffer("projected_ids", projected_channel_ids(settings), persistent=False)
        self.embeddings = E2LLMEEGPTEmbeddings(config, settings)
        self.layers = nn.ModuleList(E2LLMEEGPTLayer(config, settings) for _ in range(settings["num_layers"]))
        self.norm = nn.LayerNorm(settings["embed_dim"], eps=settings["layer_norm_eps"])
        self.gradient_checkpointing = False

    def project_channels(self, eeg_values: torch.Tensor, channel_ids: torch.Tensor,
                         channel_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Put the window's channels in the order of `config.channel_names` (absent ones zero) and project them:
        `(batch, n_projected, n_times)` and the projected channels' embedding rows `(batch, n_projected)`."""
        batch, _, n_times = eeg_values.shape
        if channel_mask is not None:
            eeg_values = eeg_values * channel_mask[:, :, None].to(eeg_values.dtype)
        table = eeg_values.new_zeros(batch, len(self.config.channel_names), n_times)
        table = table.scatter_add(1, channel_ids[:, :, None].expand(-1, -1, n_times), eeg_values)
        return self.channel_projection(table), self.projected_ids[None].expand(batch, -1)

    def forward(self, eeg_values: torch.Tensor, channel_ids: torch.Tensor,
                channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.channel_projection is not None:
            eeg_values, channel_ids = self.project_channels(eeg_values, channel_ids, channel_mask)
            channel_mask = None
        tokens = self.embeddings(eeg_values, channel_ids)
        batch, n_patches, n_channels, width = tokens.shape
        summary = self.embeddings.summary_tokens.weight[None].expand(batch * n_patches, -1, -1)
        hidden_states = torch.cat([tokens.reshape(batch * n_patches, n_channels, width), summary], dim=1)
        key_mask = None
        if channel_mask is not None and not bool(channel_mask.all()):
            present = torch.ones(batch, summary.shape[1], dtype=torch.bool, device=channel_mask.device)
            key_mask = torch.cat([channel_mask.bool(), present], dim=1).repeat_interleave(n_patches, dim=0)
        for layer in self.layers:
            hidden_states = layer(hidden_states, key_mask)
        summary_out = self.norm(hidden_states[:, n_channels:])
        return summary_out.reshape(batch, n_patches, summary.shape[1], width)


__all__ = ["E2LLMEEGPTBackbone", "E2LLMEEGPTChannelProjection", "attend", "eager_attention", "key_padding_bias",
           "projected_channel_ids"]
