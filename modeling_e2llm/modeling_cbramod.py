"""CBraMod (Wang et al., ICLR 2025) as an E2LLM backbone: criss-cross attention over (channel, 1-s patch) tokens.

Same math as braindecode 1.8.1 `CBraMod(..., return_encoder_output=True)`: a patch of 200 samples becomes a token
through temporal convolutions (GroupNorm + GELU) plus a linear map of its FFT magnitude, a depth-wise convolution over
the (channel, patch) grid adds a position term, and each layer splits the token's features in two halves: one attends
across channels within a patch (spatial), the other across patches within a channel (temporal). Output:
`(batch, n_channels, n_patches, output_size)`. Missing channels (mask 0) are never attended to spatially.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .backbones_e2llm import cbramod_hidden_size
from .modeling_eegpt import attend
from .modeling_labram import masked_group_norm


class E2LLMCBraModAttention(nn.Module):
    """Multi-head self-attention over one axis, on half of the token's features."""

    def __init__(self, config, width: int, num_heads: int, dropout: float):
        super().__init__()
        self.config = config
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv_proj = nn.Linear(width, 3 * width)  # fused: one GEMM instead of three
        self.o_proj = nn.Linear(width, width)

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        qkv = self.qkv_proj(hidden_states).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return self.o_proj(attend(self, qkv[0], qkv[1], qkv[2], key_mask, self.dropout))


class E2LLMCBraModLayer(GradientCheckpointingLayer):
    """Pre-norm criss-cross layer on `(batch, n_channels, n_patches, width)`."""

    def __init__(self, config, settings: dict, width: int):
        super().__init__()
        half, heads, dropout = width // 2, settings["num_heads"] // 2, settings["dropout"]
        self.attn_norm = nn.LayerNorm(width, eps=settings["layer_norm_eps"])
        self.spatial_attention = E2LLMCBraModAttention(config, half, heads, dropout)
        self.temporal_attention = E2LLMCBraModAttention(config, half, heads, dropout)
        self.mlp_norm = nn.LayerNorm(width, eps=settings["layer_norm_eps"])
        self.fc1 = nn.Linear(width, settings["intermediate_size"])
        self.fc2 = nn.Linear(settings["intermediate_size"], width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, channel_mask: torch.Tensor | None) -> torch.Tensor:
        batch, n_channels, n_patches, width = hidden_states.shape
        normed = self.attn_norm(hidden_states)
        spatial = normed[..., : width // 2].transpose(1, 2).reshape(batch * n_patches, n_channels, -1)
        key_mask = None if channel_mask is None else channel_mask.repeat_interleave(n_patches, dim=0)
        spatial = self.spatial_attention(spatial, key_mask).view(batch, n_patches, n_channels, -1).transpose(1, 2)
        temporal = normed[..., width // 2:].reshape(batch * n_channels, n_patches, -1)
        temporal = self.temporal_attention(temporal, None).view(batch, n_channels, n_patches, -1)
        hidden_states = hidden_states + self.dropout(torch.cat([spatial, temporal], dim=-1))
        feed_forward = self.fc2(self.dropout(F.gelu(self.fc1(self.mlp_norm(hidden_states)))))
        return hidden_states + self.dropout(feed_forward)


class E2LLMCBraModEmbeddings(nn.Module):
    """`(batch, n_channels, n_times)` -> `(batch, n_channels, n_patches, width)` patch tokens with position term."""

    def __init__(self, settings: dict, width: int):
        super().__init__()
        self.patch_size = settings["patch_size"]
        convs, norms, in_channels = [], [], 1
        for out_channels, kernel, stride, padding, groups in settings["conv_stack"]:
            convs.append(nn.Conv2d(in_channels, out_channels, (1, kernel), stride=(1, stride), padding=(0, padding)))
            norms.append(nn.GroupNorm(groups, out_channels))
            in_channels = out_channels
        self.temporal_convs = nn.ModuleList(convs)
        self.temporal_norms = nn.ModuleList(norms)
        self.spectral_projection = nn.Linear(self.patch_size // 2 + 1, width)
        kernel_c, kernel_p = settings["position_kernel"]
        self.position_conv = nn.Conv2d(width, width, (kernel_c, kernel_p), padding=(kernel_c // 2, kernel_p // 2),
                                       groups=width)
        self.dropout = nn.Dropout(settings["dropout"])

    def forward(self, eeg_values: torch.Tensor, channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, n_channels, n_times = eeg_values.shape
        patches = eeg_values.reshape(batch, 1, -1, self.patch_size)  # (batch, 1, n_channels * n_patches, patch)
        token_mask = None if channel_mask is None else channel_mask.repeat_interleave(n_times // self.patch_size, 1)
        hidden = patches
        for conv, norm in zip(self.temporal_convs, self.temporal_norms):
            hidden = F.gelu(masked_group_norm(conv(hidden), norm, token_mask))
        # (batch, conv_channels, tokens, length) -> (batch, tokens, conv_channels * length)
        hidden = hidden.permute(0, 2, 1, 3).reshape(batch, n_channels, n_times // self.patch_size, -1)
        spectrum = torch.fft.rfft(patches.float(), dim=-1, norm="forward").abs().to(patches.dtype)
        hidden = hidden + self.dropout(self.spectral_projection(spectrum.view(hidden.shape[:3] + (-1,))))
        position = self.position_conv(hidden.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return hidden + position


class E2LLMCBraModBackbone(nn.Module):
    """CBraMod: `(batch, n_channels, n_times)` (channels in table order) -> `(batch, n_channels, n_patches, output)`."""

    def __init__(self, config):
        super().__init__()
        settings = config.backbone_config
        width = cbramod_hidden_size(settings)
        self.config = config
        self.embeddings = E2LLMCBraModEmbeddings(settings, width)
        self.layers = nn.ModuleList(E2LLMCBraModLayer(config, settings, width) for _ in range(settings["num_layers"]))
        self.output_projection = nn.Linear(width, settings["output_size"])
        self.gradient_checkpointing = False

    def forward(self, eeg_values: torch.Tensor, channel_ids: torch.Tensor | None = None,
                channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        key_mask = None if channel_mask is None or bool(channel_mask.all()) else channel_mask.bool()
        hidden_states = self.embeddings(eeg_values, key_mask)
        for layer in self.layers:
            hidden_states = layer(hidden_states, key_mask)
        return self.output_projection(hidden_states)


__all__ = ["E2LLMCBraModBackbone"]
