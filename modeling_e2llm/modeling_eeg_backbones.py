"""Foundation backbones inside `E2LLMEEGEncoder`: build one from the config, and turn its output into pooled tokens.

Pooling (documented contract): whatever layout a backbone returns, its tokens are flattened to
`(batch, n_tokens, hidden_size)` with a mask of the tokens that exist, and `E2LLMEEGAttentionPooler` maps them to
`num_output_tokens` LLM tokens: the mean of the existing tokens plus what `num_output_tokens` learned queries read from
all of them by attention. Tokens per 4-s window before pooling: EEGPT `n_patches x num_summary_tokens` (31 x 4 = 124
at the published stride); CBraMod `n_channels x 4`; LaBraM `1 + n_channels x 4`.
"""

from __future__ import annotations

import torch
from torch import nn

from .modeling_cbramod import E2LLMCBraModBackbone
from .modeling_eegpt import E2LLMEEGPTBackbone
from .modeling_labram import E2LLMLaBraMBackbone

BACKBONE_CLASSES = {"eegpt": E2LLMEEGPTBackbone, "cbramod": E2LLMCBraModBackbone, "labram": E2LLMLaBraMBackbone}


def build_backbone(config) -> nn.Module:
    """The backbone module of `config.backbone` (one of `BACKBONE_CLASSES`), randomly initialised."""
    if config.backbone not in BACKBONE_CLASSES:
        raise ValueError(f"no foundation backbone {config.backbone!r}; expected one of {sorted(BACKBONE_CLASSES)}")
    return BACKBONE_CLASSES[config.backbone](config)


def check_backbone_inputs(config, eeg_values: torch.Tensor, channel_ids: torch.Tensor) -> None:
    """Clear errors for inputs a foundation backbone cannot take."""
    if eeg_values.shape[-1] != config.window_samples:
        raise ValueError(
            f"eeg_values has n_times={eeg_values.shape[-1]}, but the {config.backbone} encoder takes windows of "
            f"window_samples={config.window_samples} ({config.window_samples / config.sampling_rate:g} s at "
            f"{config.sampling_rate} Hz); build the feature extractor from this encoder's config"
        )
    if channel_ids.min() < 0 or channel_ids.max() >= len(config.channel_names):
        raise ValueError(f"eeg_channel_ids must index the {config.backbone} channel table of {len(config.channel_names)} "
                         f"names (config.channel_names); got ids in [{int(channel_ids.min())}, {int(channel_ids.max())}]")


def backbone_tokens(backbone: nn.Module, config, eeg_values: torch.Tensor, channel_ids: torch.Tensor,
                    channel_mask: torch.Tensor):
    """Run `backbone`; returns `(tokens (batch, n_tokens, hidden), token_mask (batch, n_tokens), backbone_output)`.

    `backbone_output` is in the reference layout (for CBraMod with the channels in table order)."""
    check_backbone_inputs(config, eeg_values, channel_ids)
    batch = eeg_values.shape[0]
    if config.backbone == "cbramod":
        # the depth-wise convolution over channels learned the table's order; absent channels go last
        order = torch.where(channel_mask, channel_ids, channel_ids.new_full((), len(config.channel_names))).argsort(1)
        eeg_values = eeg_values.gather(1, order[:, :, None].expand_as(eeg_values))
        channel_ids, channel_mask = channel_ids.gather(1, order), channel_mask.gather(1, order)
        eeg_values = eeg_values * channel_mask[:, :, None].to(eeg_values.dtype)
    output = backbone(eeg_values, channel_ids, channel_mask)
    if config.backbone == "eegpt":
        tokens = output.reshape(batch, -1, output.shape[-1])
        token_mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    elif config.backbone == "cbramod":
        tokens = output.reshape(batch, -1, output.shape[-1])
        token_mask = channel_mask[:, :, None].expand(-1, -1, output.shape[2]).reshape(batch, -1)
    else:
        tokens = output
        n_patches = (output.shape[1] - 1) // channel_mask.shape[1]
        token_mask = torch.cat([torch.ones_like(channel_mask[:, :1]), channel_mask.repeat_interleave(n_patches, 1)], 1)
    return tokens, token_mask, output


def backbone_parameters(encoder: nn.Module) -> list[nn.Parameter]:
    """The pretrained backbone's parameters (what `--freeze_backbone` freezes); empty for the patch encoder."""
    backbone = getattr(encoder, "backbone", None)
    if backbone is not None:
        return list(backbone.parameters())
    return [p for name, p in encoder.named_parameters() if not name.startswith("pooler.")]


__all__ = ["BACKBONE_CLASSES", "backbone_parameters", "backbone_tokens", "build_backbone", "check_backbone_inputs"]
