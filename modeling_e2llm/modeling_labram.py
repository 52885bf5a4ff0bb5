"""LaBraM (Jiang et al., ICLR 2024) as an E2LLM backbone: a ViT over (channel, 1-s patch) tokens.

Same math as braindecode 1.8.1 `Labram(...)` in its neural-tokenizer mode (`forward(x, ch_names=...,
return_features=True)`): each 200-sample patch goes through three temporal convolutions (GroupNorm + GELU) to a token,
a [CLS] token is prepended, every token gets its channel's position embedding (rows of the 128-name table) and its
patch's time embedding, and pre-norm layers with q/k LayerNorm, q/v biases and layer scale follow. Output: all tokens
after the final norm, `(batch, 1 + n_channels * n_patches, width)` ([CLS] first, then channel-major tokens).
Missing channels (mask 0) are never attended to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .backbones_e2llm import labram_hidden_size
from .modeling_eegpt import attend


def masked_group_norm(hidden: torch.Tensor, norm: nn.GroupNorm, token_mask: torch.Tensor | None) -> torch.Tensor:
    """GroupNorm of `(batch, channels, n_tokens, length)` whose statistics skip absent tokens.

    The reference normalises over every (channel, patch) token of a window at once, so one channel's values move all
    the others' embeddings; with `token_mask` `(batch, n_tokens)` the absent ones are left out of the statistics (with
    every token present this is `norm` itself)."""
    if token_mask is None:
        return norm(hidden)
    batch, channels, n_tokens, length = hidden.shape
    grouped = hidden.reshape(batch, norm.num_groups, channels // norm.num_groups, n_tokens, length)
    weights = token_mask.to(hidden.dtype)[:, None, None, :, None]
    count = weights.sum((2, 3, 4), keepdim=True) * (channels // norm.num_groups) * length
    mean = (grouped * weights).sum((2, 3, 4), keepdim=True) / count
    variance = ((grouped - mean).square() * weights).sum((2, 3, 4), keepdim=True) / count
    normed = ((grouped - mean) / torch.sqrt(variance + norm.eps)).reshape_as(hidden)
    return normed * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]


class E2LLMLaBraMAttention(nn.Module):
    def __init__(self, config, settings: dict, width: int):
        super().__init__()
        self.config = config
        self.num_heads = settings["num_heads"]
        self.dropout = settings["attention_dropout"]
        head_dim = width // self.num_heads
        self.q_proj = nn.Linear(width, width, bias=settings["qkv_bias"])
        self.k_proj = nn.Linear(width, width, bias=False)  # the reference's key bias is fixed at zero
        self.v_proj = nn.Linear(width, width, bias=settings["qkv_bias"])
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-6) if settings["qk_norm"] else None
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-6) if settings["qk_norm"] else None
        self.o_proj = nn.Linear(width, width)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, -1).transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        query, key, value = (self._heads(p(hidden_states)) for p in (self.q_proj, self.k_proj, self.v_proj))
        if self.q_norm is not None:
            query, key = self.q_norm(query), self.k_norm(key)
        return self.o_proj(attend(self, query, key, value, key_mask, self.dropout))


class E2LLMLaBraMLayer(GradientCheckpointingLayer):
    """Pre-norm layer with layer scale (`gamma_*`, absent when `layer_scale_init` is 0)."""

    def __init__(self, config, settings: dict, width: int):
        super().__init__()
        self.attn_norm = nn.LayerNorm(width, eps=settings["layer_norm_eps"])
        self.attention = E2LLMLaBraMAttention(config, settings, width)
        self.mlp_norm = nn.LayerNorm(width, eps=settings["layer_norm_eps"])
        self.fc1 = nn.Linear(width, int(width * settings["mlp_ratio"]))
        self.fc2 = nn.Linear(int(width * settings["mlp_ratio"]), width)
        self.dropout = nn.Dropout(settings["dropout"])
        scale = settings["layer_scale_init"]
        self.attention_scale = nn.Parameter(torch.full((width,), float(scale))) if scale > 0 else None
        self.mlp_scale = nn.Parameter(torch.full((width,), float(scale))) if scale > 0 else None

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.dropout(self.attention(self.attn_norm(hidden_states), key_mask))
        hidden_states = hidden_states + (attended if self.attention_scale is None else self.attention_scale * attended)
        mlp = self.dropout(self.fc2(F.gelu(self.fc1(self.mlp_norm(hidden_states)))))
        return hidden_states + (mlp if self.mlp_scale is None else self.mlp_scale * mlp)


class E2LLMLaBraMEmbeddings(nn.Module):
    """`(batch, n_channels, n_times)` -> `(batch, 1 + n_channels * n_patches, width)` with position and time terms."""

    def __init__(self, settings: dict, num_positions: int, width: int):
        super().__init__()
        self.patch_size = settings["patch_size"]
        channels = settings["conv_channels"]
        self.conv1 = nn.Conv2d(1, channels, (1, 15), stride=(1, 8), padding=(0, 7))
        self.norm1 = nn.GroupNorm(4, channels)
        self.conv2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.norm2 = nn.GroupNorm(4, channels)
        self.conv3 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.norm3 = nn.GroupNorm(4, channels)
        self.cls_token = nn.Embedding(1, width)
        self.position_embedding = nn.Embedding(num_positions + 1, width)  # row 0: [CLS], row i + 1: table channel i
        self.time_embedding = nn.Embedding(settings["num_time_embeddings"], width)
        self.dropout = nn.Dropout(settings["dropout"])

    def forward(self, eeg_values: torch.Tensor, channel_ids: torch.Tensor,
                channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, n_channels, n_times = eeg_values.shape
        n_patches = n_times // self.patch_size
        hidden = eeg_values.reshape(batch, 1, n_channels * n_patches, self.patch_size)
        token_mask = None if channel_mask is None else channel_mask.repeat_interleave(n_patches, dim=1)
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2), (self.conv3, self.norm3)):
            hidden = F.gelu(masked_group_norm(conv(hidden), norm, token_mask))
        # (batch, conv_channels, tokens, length) -> (batch, tokens, length * conv_channels)
        tokens = hidden.permute(0, 2, 3, 1).reshape(batch, n_channels, n_patches, -1)
        tokens = (tokens + self.position_embedding(channel_ids + 1)[:, :, None]
                  + self.time_embedding.weight[:n_patches])
        cls = (self.cls_token.weight + self.position_embedding.weight[:1]).expand(batch, 1, -1)
        return self.dropout(torch.cat([cls, tokens.flatten(1, 2)], dim=1))


class E2LLMLaBraMBackbone(nn.Module):
    """LaBraM: `(batch, n_channels, n_times)` -> all tokens `(batch, 1 + n_channels * n_patches, width)`.

    `channel_ids` `(batch, n_channels)` index LaBraM's channel table (`config.channel_names`)."""

    def __init__(self, config):
        super().__init__()
        settings = config.backbone_config
        width = labram_hidden_size(settings)
        self.config = config
        self.embeddings = E2LLMLaBraMEmbeddings(settings, len(config.channel_names), width)
        self.layers = nn.ModuleList(E2LLMLaBraMLayer(config, settings, width) for _ in range(settings["num_layers"]))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.gradient_checkpointing = False

    def forward(self, eeg_values: torch.Tensor, channel_ids: torch.Tensor,
                channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        present = None if channel_mask is None or bool(channel_mask.all()) else channel_mask.bool()
        hidden_states = self.embeddings(eeg_values, channel_ids, present)
        key_mask = None
        if present is not None:
            n_patches = eeg_values.shape[-1] // self.embeddings.patch_size
            tokens = channel_mask.bool().repeat_interleave(n_patches, dim=1)
            key_mask = torch.cat([torch.ones_like(tokens[:, :1]), tokens], dim=1)
        for layer in self.layers:
            hidden_states = layer(hidden_states, key_mask)
        return self.norm(hidden_states)


__all__ = ["E2LLMLaBraMBackbone", "masked_group_norm"]
