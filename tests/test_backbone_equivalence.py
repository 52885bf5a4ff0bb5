"""EEGPT, CBraMod and LaBraM backbones equal braindecode 1.8.1's classes on the same weights and inputs.

The reference weights, inputs and outputs come from `tests/fixtures/backbones_braindecode.safetensors`, written by
`tests/fixtures/make_backbone_fixtures.py` in a separate environment with braindecode 1.8.1 (see its docstring)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from e2llm import E2LLMEEGConfig
from e2llm.convert_backbones import load_backbone_state, to_e2llm_state_dict
from e2llm.backbones_e2llm import channel_table_ids

FIXTURE = Path(__file__).parent / "fixtures" / "backbones_braindecode.safetensors"
TOLERANCE = 1e-5


def load_fixture():
    from safetensors import safe_open

    with safe_open(str(FIXTURE), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return tensors, metadata


@pytest.fixture(scope="module")
def fixture():
    return load_fixture()


def reference(fixture, tag):
    tensors, metadata = fixture
    prefix = f"{tag}.state."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return state, tensors[f"{tag}.input"], tensors[f"{tag}.output"], json.loads(metadata[tag])


def eegpt_config(meta, n_times):
    s = meta["settings"]
    settings = {"patch_size": s["patch_size"], "patch_stride": s["patch_stride"], "embed_dim": s["embed_dim"],
                "num_layers": s["depth"], "num_heads": s["num_heads"], "mlp_ratio": s["mlp_ratio"],
                "num_summary_tokens": s["embed_num"], "qkv_bias": s["qkv_bias"]}
    return E2LLMEEGConfig(backbone="eegpt", backbone_config=settings, window_samples=n_times, num_attention_heads=4,
                          min_channels=1)


def cbramod_config(meta):
    s = meta["settings"]
    stack = [[c, k, st, p, g[0]] for c, k, st, p, g in s["channels_kernel_stride_padding_norm"]]
    settings = {"patch_size": 200, "num_layers": s["n_layer"], "num_heads": s["nhead"],
                "intermediate_size": s["dim_feedforward"], "output_size": s["emb_dim"], "conv_stack": stack}
    return E2LLMEEGConfig(backbone="cbramod", backbone_config=settings, window_samples=meta["n_times"],
                          num_attention_heads=4, min_channels=1)


def labram_config(meta):
    s = meta["settings"]
    settings = {"patch_size": 200, "conv_channels": s["conv_out_channels"], "num_layers": s["num_layers"],
                "num_heads": s["num_heads"], "mlp_ratio": s["mlp_ratio"], "qkv_bias": s["qkv_bias"],
                "layer_scale_init": s["init_values"], "num_time_embeddings": meta["n_times"] // 200 + 1}
    return E2LLMEEGConfig(backbone="labram", backbone_config=settings, window_samples=meta["n_times"],
                          num_attention_heads=4, min_channels=1)


def build_backbone(config, state):
    from e2llm.modeling_eeg_backbones import build_backbone as build

    module = build(config).eval()
    ours, skipped, unknown = to_e2llm_state_dict(config.backbone, state)
    assert not unknown
    load_backbone_state(module, config.backbone, ours)
    return module


@pytest.mark.parametrize("tag", ["eegpt", "eegpt_nostride"])
def test_eegpt_matches_braindecode(fixture, tag):
    state, x, expected, meta = reference(fixture, tag)
    config = eegpt_config(meta, meta["n_times"])
    module = build_backbone(config, state)
    ids = torch.as_tensor(channel_table_ids(meta["channels"], config.channel_names)).expand(x.shape[0], -1)
    assert (ids >= 0).all()
    with torch.no_grad():
        out = module(x, ids)
    assert out.shape == expected.shape == (x.shape[0], module.embeddings.num_patches, 2, 32)
    assert (out - expected).abs().max() <= TOLERANCE


def test_cbramod_matches_braindecode(fixture):
    state, x, expected, meta = reference(fixture, "cbramod")
    module = build_backbone(cbramod_config(meta), state)
    with torch.no_grad():
        out = module(x)
    assert out.shape == expected.shape
    assert (out - expected).abs().max() <= TOLERANCE


def test_labram_matches_braindecode(fixture):
    state, x, expected, meta = reference(fixture, "labram")
    config = labram_config(meta)
    module = build_backbone(config, state)
    ids = torch.as_tensor(channel_table_ids(meta["channels"], config.channel_names)).expand(x.shape[0], -1)
    assert (ids >= 0).all()
    with torch.no_grad():
        out = module(x, ids)
    assert out.shape == expected.shape
    assert (out - expected).abs().max() <= TOLERANCE
