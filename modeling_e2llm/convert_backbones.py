"""Load published EEGPT / CBraMod / LaBraM weights into E2LLM's backbones.

Reads braindecode's Hub format (a folder with `config.json` + `model.safetensors` or `pytorch_model.bin`) and the
original authors' checkpoints: EEGPT's Lightning `.ckpt` (`state_dict` with `target_encoder.*`; the pretraining-only
`encoder.*`, `predictor.*`, `reconstructor.*` are skipped), LaBraM's `.pth` (`model` with `student.*` or plain keys;
`teacher.*`, `lm_head.*`, `mask_token` skipped), CBraMod's `.pth` state dict. Only safetensors are ever written; other
files are read with `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.

Every tensor the backbone needs must come from the file and every tensor of the file must be used or be a known
task head / pretraining part (listed in a log line): a wrong file is an error naming the missing and unexpected keys,
never a silently random encoder. braindecode's EEGPT channel projection (`chan_proj.*`, its default
`chan_proj_type="conv1d_constraint"`, and `"linear"`) is part of the encoder: it is converted, with the input channels
its `config.json` names (`chs_info`), never skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers.utils import logging

from .backbones_e2llm import BACKBONE_DEFAULTS, EEGPT_PROJECTED_CHANNELS
from .folder_checks_e2llm import read_json_file, safetensors_header

logger = logging.get_logger(__name__)

# Keys that belong to a task head or to pretraining, not to the encoder: skipped and listed.
_SKIPPED = {
    "eegpt": (r"encoder\..*", r"predictor\..*", r"reconstructor\..*", r"chans_id", r"final_layer\..*"),
    "cbramod": (r"final_layer\..*", r"classifier\..*", r"patch_embedding\.mask_encoding"),
    "labram": (r"final_layer\..*", r"fc_norm\..*", r"head\..*", r"lm_head\..*", r"mask_token", r"teacher\..*",
               r"projection_head\..*"),
}

# braindecode key -> ours, per backbone (regex, replacement); the fused q/k/v tensors are split separately.
_RULES = {
    "eegpt": (
        (r"chan_proj\.proj\.parametrizations\.weight\.original", "channel_projection.proj.weight"),
        (r"chan_proj\.proj\.(weight|bias)", r"channel_projection.proj.\1"),
        (r"summary_token", "embeddings.summary_tokens.weight"),
        (r"patch_embed\.proj\.(weight|bias)", r"embeddings.patch_projection.\1"),
        (r"chan_embed\.weight", "embeddings.channel_embedding.weight"),
        (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"layers.\1.attn_norm.\2"),
        (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"layers.\1.mlp_norm.\2"),
        (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"layers.\1.attention.qkv_proj.\2"),
        (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"layers.\1.attention.o_proj.\2"),
        (r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"layers.\1.mlp.\2.\3"),
        (r"norm\.(weight|bias)", r"norm.\1"),
    ),
    "cbramod": (
        (r"patch_embedding\.positional_encoding\.0\.(weight|bias)", r"embeddings.position_conv.\1"),
        (r"patch_embedding\.spectral_proj\.0\.(weight|bias)", r"embeddings.spectral_projection.\1"),
        (r"encoder\.layers\.(\d+)\.self_attn_s\.in_proj_(weight|bias)", r"layers.\1.spatial_attention.qkv_proj.\2"),
        (r"encoder\.layers\.(\d+)\.self_attn_t\.in_proj_(weight|bias)", r"layers.\1.temporal_attention.qkv_proj.\2"),
        (r"encoder\.layers\.(\d+)\.self_attn_s\.out_proj\.(weight|bias)", r"layers.\1.spatial_attention.o_proj.\2"),
        (r"encoder\.layers\.(\d+)\.self_attn_t\.out_proj\.(weight|bias)", r"layers.\1.temporal_attention.o_proj.\2"),
        (r"encoder\.layers\.(\d+)\.linear1\.(weight|bias)", r"layers.\1.fc1.\2"),
        (r"encoder\.layers\.(\d+)\.linear2\.(weight|bias)", r"layers.\1.fc2.\2"),
        (r"encoder\.layers\.(\d+)\.norm1\.(weight|bias)", r"layers.\1.attn_norm.\2"),
        (r"encoder\.layers\.(\d+)\.norm2\.(weight|bias)", r"layers.\1.mlp_norm.\2"),
        (r"proj_out\.0\.(weight|bias)", r"output_projection.\1"),
    ),
    "labram": (
        (r"cls_token", "embeddings.cls_token.weight"),
        (r"position_embedding", "embeddings.position_embedding.weight"),
        (r"temporal_embedding", "embeddings.time_embedding.weight"),
        (r"patch_embed\.temporal_conv\.((conv|norm)[123])\.(weight|bias)", r"embeddings.\1.\3"),
        (r"blocks\.(\d+)\.gamma_1", r"layers.\1.attention_scale"),
        (r"blocks\.(\d+)\.gamma_2", r"layers.\1.mlp_scale"),
        (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"layers.\1.attn_norm.\2"),
        (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"layers.\1.mlp_norm.\2"),
        (r"blocks\.(\d+)\.attn\.q_bias", r"layers.\1.attention.q_proj.bias"),
        (r"blocks\.(\d+)\.attn\.v_bias", r"layers.\1.attention.v_proj.bias"),
        (r"blocks\.(\d+)\.attn\.(q_norm|k_norm)\.(weight|bias)", r"layers.\1.attention.\2.\3"),
        (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"layers.\1.attention.o_proj.\2"),
        (r"blocks\.(\d+)\.mlp\.0\.(weight|bias)", r"layers.\1.fc1.\2"),
        (r"blocks\.(\d+)\.mlp\.2\.(weight|bias)", r"layers.\1.fc2.\2"),
        (r"norm\.(weight|bias)", r"norm.\1"),
    ),
}
_FUSED_QKV = {  # braindecode's fused q/k/v weights that e2llm keeps as separate projections
    "labram": (r"blocks\.(\d+)\.attn\.qkv\.weight", r"layers.\1.attention.{}_proj.weight"),
}
# reshapes from braindecode's tensor layout to ours
_RESHAPE = {
    "embeddings.summary_tokens.weight": lambda t: t.reshape(t.shape[-2], t.shape[-1]),
    "embeddings.patch_projection.weight": lambda t: t.reshape(t.shape[0], -1),
    "embeddings.cls_token.weight": lambda t: t.reshape(1, -1),
    "embeddings.position_embedding.weight": lambda t: t.reshape(t.shape[-2], t.shape[-1]),
    "embeddings.time_embedding.weight": lambda t: t.reshape(t.shape[-2], t.shape[-1]),
    "channel_projection.proj.weight": lambda t: t.reshape(t.shape[0], t.shape[1]),  # the 1x1 convolution's (out, in, 1)
}
# the authors' LaBraM names -> braindecode's
_LABRAM_ORIGINAL = (
    (r"pos_embed", "position_embedding"),
    (r"time_embed", "temporal_embedding"),
    (r"patch_embed\.((conv|norm)[123]\..*)", r"patch_embed.temporal_conv.\1"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(.*)", r"blocks.\1.mlp.0.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(.*)", r"blocks.\1.mlp.2.\2"),
)


def _cbramod_conv_name(key: str) -> str | None:
    """`patch_embedding.proj_in.{3i}` is convolution i, `.{3i + 1}` its GroupNorm (`.{3i + 2}`, GELU, has no weights)."""
    match = re.fullmatch(r"patch_embedding\.proj_in\.(\d+)\.(weight|bias)", key)
    if match is None or int(match.group(1)) % 3 == 2:
        return None
    index, kind = divmod(int(match.group(1)), 3)
    return f"embeddings.temporal_{'convs' if kind == 0 else 'norms'}.{index}.{match.group(2)}"


def detect_backbone(state_dict: dict) -> str | None:
    """Which backbone a (braindecode- or authors'-format) state dict holds, from its key names."""
    keys = set(state_dict)
    if any(k.startswith("target_encoder.") for k in keys):
        return "eegpt"
    if any(k.startswith("patch_embedding.proj_in.") for k in keys):
        return "cbramod"
    if {"cls_token", "position_embedding"} <= keys or {"cls_token", "pos_embed"} <= keys:
        return "labram"
    return None


def unwrap_checkpoint(obj) -> dict:
    """The flat `{name: tensor}` state dict inside a checkpoint (Lightning `state_dict`, LaBraM `model`, DDP `module.`,
    LaBraM pretraining `student.`)."""
    if not isinstance(obj, dict):
        raise ValueError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")
    for container in ("state_dict", "model", "module"):
        if container in obj and isinstance(obj[container], dict):
            obj = obj[container]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"the checkpoint holds no tensors (top-level keys: {sorted(obj)[:10]})")
    if all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("student.") for k in state):  # LaBraM's pretraining checkpoint: the student is the encoder
        state = {k[len("student."):] if k.startswith("student.") else k: v for k, v in state.items()}
    if "pos_embed" in state:  # the authors' LaBraM names
        state = {_rename(k, _LABRAM_ORIGINAL) or k: v for k, v in state.items()}
    return state


def _rename(key: str, rules) -> str | None:
    for pattern, replacement in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(replacement)
    return None


def to_e2llm_state_dict(backbone: str, state_dict: dict) -> tuple[dict, list[str], list[str]]:
    """braindecode-layout `state_dict` -> `(ours, skipped_keys, unknown_keys)` for the `backbone` module."""
    if backbone == "eegpt":
        state_dict = {k[len("target_encoder."):] if k.startswith("target_encoder.") else k: v
                      for k, v in state_dict.items()}
    ours, skipped, unknown = {}, [], []
    fused_pattern, fused_target = _FUSED_QKV.get(backbone, (r"(?!)", None))
    for key, tensor in state_dict.items():
        if any(re.fullmatch(p, key) for p in _SKIPPED[backbone]):
            skipped.append(key)
            continue
        fused = re.fullmatch(fused_pattern, key)
        if fused:
            target = fused.expand(fused_target)
            for name, part in zip("qkv", tensor.chunk(3, dim=0)):
                ours[target.format(name)] = part.clone()
            continue
        name = _rename(key, _RULES[backbone]) or (_cbramod_conv_name(key) if backbone == "cbramod" else None)
        if name is None:
            unknown.append(key)
            continue
        ours[name] = _RESHAPE.get(name, lambda t: t)(tensor).clone()
    return ours, skipped, unknown


def read_checkpoint(path: str | Path) -> tuple[dict, dict | None]:
    """`(state_dict, braindecode_config_or_None)` from a braindecode Hub folder or a checkpoint file."""
    path = Path(path)
    config = None
    if path.is_dir():
        config_file = path / "config.json"
        config = read_json_file(config_file) if config_file.exists() else None
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"{config_file} is not braindecode's model configuration (not a JSON object)")
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise ValueError(f"{path} holds neither model.safetensors nor pytorch_model.bin (braindecode's Hub format)")
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        safetensors_header(path)  # a damaged or truncated file is named before safetensors reads it
        return load_file(str(path)), config
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError and others for anything beyond tensors + containers
        raise ValueError(
            f"{path} could not be read with torch.load(weights_only=True) ({type(error).__name__}: {error}). e2llm "
            "never unpickles arbitrary objects; re-save the checkpoint's state dict (torch.save(ckpt['state_dict'], "
            "...)) or as safetensors"
        ) from error
    return unwrap_checkpoint(obj), config


def settings_from_checkpoint(backbone: str, state: dict, config: dict | None) -> dict:
    """The backbone hyper-parameters a converted state dict implies (shapes), completed from braindecode's config."""
    config = config or {}
    layers = {int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))}
    settings = {"num_layers": len(layers)}
    if backbone == "eegpt":
        settings.update(eegpt_projection_settings(state, config))
        width = state["embeddings.channel_embedding.weight"].shape[1]
        settings.update(embed_dim=width, patch_size=state["embeddings.patch_projection.weight"].shape[1],
                        num_summary_tokens=state["embeddings.summary_tokens.weight"].shape[0],
                        num_channel_embeddings=state["embeddings.channel_embedding.weight"].shape[0],
                        qkv_bias="layers.0.attention.qkv_proj.bias" in state,
                        mlp_ratio=state["layers.0.mlp.fc1.weight"].shape[0] / width)
        for ours, theirs in (("num_heads", "num_heads"), ("patch_stride", "patch_stride"),
                             ("layer_norm_eps", "layer_norm_eps")):
            if theirs in config:
                settings[ours] = config[theirs]
    elif backbone == "cbramod":
        stack = []
        for i in range(len([k for k in state if re.fullmatch(r"embeddings\.temporal_convs\.\d+\.weight", k)])):
            weight = state[f"embeddings.temporal_convs.{i}.weight"]
            stack.append([weight.shape[0], weight.shape[-1]])
        given = config.get("channels_kernel_stride_padding_norm")
        reference = given or BACKBONE_DEFAULTS["cbramod"]["conv_stack"]
        if len(reference) != len(stack):
            raise ValueError(f"the checkpoint has {len(stack)} temporal convolutions; stride/padding are known for "
                             f"{len(reference)}: pass them in backbone_config['conv_stack']")
        groups = [row[4][0] if isinstance(row[4], (list, tuple)) else row[4] for row in reference]
        settings["conv_stack"] = [[c, k, int(r[2]), int(r[3]), int(g)] for (c, k), r, g in zip(stack, reference, groups)]
        settings.update(intermediate_size=state["layers.0.fc1.weight"].shape[0],
                        output_size=state["output_projection.weight"].shape[0],
                        position_kernel=list(state["embeddings.position_conv.weight"].shape[-2:]))
        if "nhead" in config:
            settings["num_heads"] = config["nhead"]
    elif backbone == "labram":
        width = state["embeddings.cls_token.weight"].shape[1]
        settings.update(conv_channels=state["embeddings.conv1.weight"].shape[0],
                        qkv_bias="layers.0.attention.q_proj.bias" in state,
                        qk_norm="layers.0.attention.q_norm.weight" in state,
                        num_time_embeddings=state["embeddings.time_embedding.weight"].shape[0],
                        mlp_ratio=state["layers.0.fc1.weight"].shape[0] / width)
        settings["layer_scale_init"] = 0.1 if "layers.0.attention_scale" in state else 0.0
        if settings["qk_norm"]:
            settings["num_heads"] = width // state["layers.0.attention.q_norm.weight"].shape[0]
        elif "num_heads" in config:
            settings["num_heads"] = config["num_heads"]
        settings["patch_size"] = config.get("patch_size", 200)
    return settings


def eegpt_projection_settings(state: dict, config: dict) -> dict:
    """The `channel_projection` settings of a converted EEGPT state dict (empty without one), from braindecode's
    `chan_proj_type` / `n_chans_target` / `chan_conv_max_norm` (or, without a config, the tensors' layout)."""
    weight = state.get("channel_projection.proj.weight")
    if weight is None:
        if config.get("chan_proj_type", "none") != "none":
            raise ValueError(f"config.json says chan_proj_type={config['chan_proj_type']!r} but the weights hold no "
                             "chan_proj tensors: the folder is incomplete")
        return {}
    kind = config.get("chan_proj_type")
    if kind not in ("conv1d_constraint", "linear"):
        raise ValueError(f"the weights hold a channel projection (chan_proj) but config.json gives chan_proj_type="
                         f"{config.get('chan_proj_type')!r}; e2llm implements braindecode's 'conv1d_constraint' and "
                         "'linear'")
    if weight.shape[0] != len(EEGPT_PROJECTED_CHANNELS):
        raise ValueError(f"the channel projection writes {weight.shape[0]} channels, but braindecode's EEGPT feeds its "
                         f"encoder {len(EEGPT_PROJECTED_CHANNELS)} (n_chans_target=19, {list(EEGPT_PROJECTED_CHANNELS)}); "
                         "e2llm cannot tell which channel embeddings the others take")
    return {"channel_projection": kind, "projection_max_norm": float(config.get("chan_conv_max_norm", 1.0)),
            "projected_channels": list(EEGPT_PROJECTED_CHANNELS)}


def input_channel_names(backbone: str, state: dict, config: dict | None) -> list[str] | None:
    """The names of the input channels a converted backbone's channel projection takes, in order (from braindecode's
    `chs_info`), or None when it has no projection. ValueError when the file does not name them all."""
    weight = state.get("channel_projection.proj.weight") if backbone == "eegpt" else None
    if weight is None:
        return None
    names = [info.get("ch_name") for info in (config or {}).get("chs_info") or [] if isinstance(info, dict)]
    if len(names) != weight.shape[1] or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"the channel projection takes {weight.shape[1]} input channels but config.json names "
                         f"{len(names)} (chs_info): e2llm cannot tell which recording channel feeds which input; pass "
                         f"channel_names=[...] (the {weight.shape[1]} names, in the order the model was built with)")
    return names


def load_backbone_state(module: torch.nn.Module, backbone: str, state: dict, source: str = "the checkpoint") -> None:
    """Copy a converted state dict into `module` (a backbone); any missing, unexpected or misshapen key is an error."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in sorted(set(state) & set(expected))
                 if state[k].shape != expected[k].shape]
    if missing or unexpected or misshapen:
        parts = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
                 f"shape mismatches {misshapen}" if misshapen else ""]
        raise ValueError(f"{source} does not fit the {backbone} backbone: " + "; ".join(p for p in parts if p)
                         + ". Check that the file is a " + backbone + " checkpoint and that backbone_config matches it")
    module.load_state_dict(state, strict=True)


def _with_projection_type(backbone: str, state: dict, config: dict | None) -> dict | None:
    """`config`, completed with the `chan_proj_type` an EEGPT checkpoint without braindecode's config.json implies:
    a weight-norm parametrised or 3-d (1x1 convolution) weight is "conv1d_constraint", a 2-d one "linear"."""
    if backbone != "eegpt" or (config or {}).get("chan_proj_type") is not None:
        return config
    raw = next((k for k in state if re.fullmatch(r"(target_encoder\.)?chan_proj\.proj\.(weight|parametrizations\."
                                                 r"weight\.original)", k)), None)
    if raw is None:
        return config
    kind = "conv1d_constraint" if "parametrizations" in raw or state[raw].ndim == 3 else "linear"
    return {**(config or {}), "chan_proj_type": kind}


def convert_checkpoint(path: str | Path, backbone: str) -> tuple[dict, dict, dict | None]:
    """`(our_state_dict, settings, braindecode_config)` of the `backbone` weights at `path` (folder or file)."""
    state, config = read_checkpoint(path)
    found = detect_backbone(state)
    if found is None:
        raise ValueError(f"{path} holds no EEGPT, CBraMod or LaBraM weights (first keys: {sorted(state)[:8]})")
    if found != backbone:
        raise ValueError(f"{path} holds {found} weights, not {backbone}: pass --eeg-encoder {found}")
    config = _with_projection_type(backbone, state, config)
    ours, skipped, unknown = to_e2llm_state_dict(backbone, state)
    if unknown:
        raise ValueError(f"{path}: keys that are not part of a {backbone} encoder: {sorted(unknown)[:20]}"
                         + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""))
    if skipped:
        groups = sorted({k.split(".")[0] for k in skipped})
        logger.warning(f"{path}: skipped {len(skipped)} tensors of the task head / pretraining parts {groups}")
    return ours, settings_from_checkpoint(backbone, ours, config), config


__all__ = ["convert_checkpoint", "detect_backbone", "eegpt_projection_settings", "input_channel_names",
           "load_backbone_state", "read_checkpoint", "settings_from_checkpoint", "to_e2llm_state_dict",
           "unwrap_checkpoint"]
