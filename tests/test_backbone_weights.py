"""Loading published backbone weights: braindecode's Hub format and the authors' checkpoint formats, rebuilt exactly
(key names, nesting, extra pretraining tensors) from the braindecode fixture's random state dicts. Every converted
backbone must reproduce braindecode's output; wrong files must fail with a message naming the problem."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from e2llm.assembly import eeg_config_from_checkpoint
from e2llm.backbones_e2llm import channel_table_ids
from e2llm.convert_backbones import load_backbone_state
from e2llm.modeling_eeg_backbones import build_backbone

_spec = importlib.util.spec_from_file_location("backbone_reference", Path(__file__).parent / "fixtures" / "backbone_reference.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)
TOLERANCE, load_fixture, reference = ref.TOLERANCE, ref.load_fixture, ref.reference


@pytest.fixture(scope="module")
def fixture():
    return load_fixture()


def braindecode_hub_folder(folder, state, meta, weights="model.safetensors"):
    """What `EEGPT/CBraMod/Labram.save_pretrained` writes: config.json (constructor arguments) + weights."""
    folder.mkdir()
    config = {**meta["settings"], "n_times": meta["n_times"], "braindecode_version": "1.8.1"}
    if "channels" in meta:
        config["chs_info"] = [{"ch_name": name} for name in meta["channels"]]
    (folder / "config.json").write_text(json.dumps(config))
    if weights.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / weights))
    else:
        torch.save(state, folder / weights)
    return folder


def eegpt_lightning_ckpt(path, state):
    """EEGPT's pretraining checkpoint: Lightning `state_dict` with the online encoder, the momentum `target_encoder`
    (the one downstream code loads), the predictor and the reconstructor."""
    encoder = {k: v for k, v in state.items() if k.startswith("target_encoder.")}
    lightning = {**encoder, **{k[len("target_"):]: v + 0.5 for k, v in encoder.items()},
                 "predictor.mask_token": torch.zeros(1, 1, 16), "predictor.blocks.0.norm1.weight": torch.ones(16),
                 "reconstructor.time_embed": torch.zeros(1, 8, 16)}
    torch.save({"epoch": 199, "global_step": 1000, "pytorch-lightning_version": "1.9.0", "state_dict": lightning}, path)
    return path


_TO_LABRAM_ORIGINAL = ((r"position_embedding", "pos_embed"), (r"temporal_embedding", "time_embed"),
                       (r"patch_embed\.temporal_conv\.(.*)", r"patch_embed.\1"), (r"(blocks\.\d+\.mlp)\.0\.(.*)", r"\1.fc1.\2"),
                       (r"(blocks\.\d+\.mlp)\.2\.(.*)", r"\1.fc2.\2"), (r"final_layer\.(.*)", r"head.\1"))


def labram_pretraining_pth(path, state):
    """LaBraM's pretraining checkpoint: `{"model": {"student.<authors' names>": ...}}` with its LM head and mask token."""
    original = {}
    for key, value in state.items():
        for pattern, replacement in _TO_LABRAM_ORIGINAL:
            if re.fullmatch(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        original["student." + key] = value
    original["student.lm_head.weight"] = torch.zeros(8, state["cls_token"].shape[-1])
    original["student.mask_token"] = torch.zeros(1, 1, state["cls_token"].shape[-1])
    torch.save({"model": original, "epoch": 49}, path)
    return path


def output_of(config, state, x, channels=None):
    module = build_backbone(config).eval()
    load_backbone_state(module, config.backbone, state)
    with torch.no_grad():
        if config.backbone == "cbramod":
            return module(x)
        ids = torch.as_tensor(channel_table_ids(channels, config.channel_names)).expand(x.shape[0], -1)
        return module(x, ids)


@pytest.mark.parametrize("tag", ["eegpt", "cbramod", "labram"])
@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_braindecode_hub_folder(fixture, tmp_path, tag, weights):
    state, x, expected, meta = reference(fixture, tag)
    folder = braindecode_hub_folder(tmp_path / "hub", state, meta, weights)
    config, converted = eeg_config_from_checkpoint(tag, folder, window_samples=meta["n_times"], num_attention_heads=4)
    out = output_of(config, converted, x, meta.get("channels"))
    assert ref.max_error(out, expected) <= TOLERANCE


def test_eegpt_lightning_checkpoint(fixture, tmp_path):
    state, x, expected, meta = reference(fixture, "eegpt")
    path = eegpt_lightning_ckpt(tmp_path / "eegpt_mcae_58chs_4s_large4E.ckpt", state)
    # an authors' checkpoint cannot tell the head count or patch stride: they are passed like the published ones
    config, converted = eeg_config_from_checkpoint("eegpt", path, window_samples=meta["n_times"], num_attention_heads=4,
                                                   backbone_config={"num_heads": 4, "patch_stride": 32})
    assert config.backbone_config["num_summary_tokens"] == 2 and config.backbone_config["num_layers"] == 2
    assert ref.max_error(output_of(config, converted, x, meta["channels"]), expected) <= TOLERANCE


def test_labram_pretraining_checkpoint(fixture, tmp_path):
    state, x, expected, meta = reference(fixture, "labram")
    path = labram_pretraining_pth(tmp_path / "labram-base.pth", state)
    config, converted = eeg_config_from_checkpoint("labram", path, window_samples=meta["n_times"],
                                                   num_attention_heads=4)
    assert config.backbone_config["num_heads"] == 4  # from the q-norm width
    assert ref.max_error(output_of(config, converted, x, meta["channels"]), expected) <= TOLERANCE


def test_cbramod_authors_state_dict(fixture, tmp_path):
    state, x, expected, meta = reference(fixture, "cbramod")
    path = tmp_path / "pretrained_weights.pth"
    torch.save({"module." + k: v for k, v in state.items() if not k.startswith("final_layer")}, path)
    settings = {"num_heads": meta["settings"]["nhead"],
                "conv_stack": [[c, k, s, p, g[0]] for c, k, s, p, g in meta["settings"]["channels_kernel_stride_padding_norm"]]}
    config, converted = eeg_config_from_checkpoint("cbramod", path, window_samples=meta["n_times"],
                                                   num_attention_heads=4, backbone_config=settings)
    assert ref.max_error(output_of(config, converted, x), expected) <= TOLERANCE


def test_missing_tensor_is_an_error(fixture, tmp_path):
    state, _, _, meta = reference(fixture, "eegpt")
    state = {k: v for k, v in state.items() if k != "target_encoder.blocks.1.mlp.fc2.weight"}
    folder = braindecode_hub_folder(tmp_path / "hub", state, meta)
    config, converted = eeg_config_from_checkpoint("eegpt", folder, window_samples=meta["n_times"], num_attention_heads=4)
    with pytest.raises(ValueError, match=r"missing \['layers\.1\.mlp\.fc2\.weight'\]"):
        load_backbone_state(build_backbone(config), "eegpt", converted)


def test_unknown_tensor_is_an_error(fixture, tmp_path):
    state, _, _, meta = reference(fixture, "labram")
    folder = braindecode_hub_folder(tmp_path / "hub", {**state, "blocks.0.attn.rel_bias": torch.zeros(3)}, meta)
    with pytest.raises(ValueError, match=r"not part of a labram encoder: \['blocks\.0\.attn\.rel_bias'\]"):
        eeg_config_from_checkpoint("labram", folder)


def test_wrong_backbone_is_an_error(fixture, tmp_path):
    state, _, _, meta = reference(fixture, "cbramod")
    folder = braindecode_hub_folder(tmp_path / "hub", state, meta)
    with pytest.raises(ValueError, match="holds cbramod weights, not eegpt: pass --eeg-encoder cbramod"):
        eeg_config_from_checkpoint("eegpt", folder)


def test_shape_mismatch_is_an_error(fixture, tmp_path):
    state, _, _, meta = reference(fixture, "eegpt")
    folder = braindecode_hub_folder(tmp_path / "hub", state, meta)
    _, converted = eeg_config_from_checkpoint("eegpt", folder, window_samples=meta["n_times"], num_attention_heads=4)
    from e2llm import E2LLMEEGConfig

    other = E2LLMEEGConfig(backbone="eegpt", backbone_config={"embed_dim": 64, "num_layers": 2, "num_heads": 4,
                                                              "num_summary_tokens": 2, "mlp_ratio": 2.0})
    with pytest.raises(ValueError, match="shape mismatches"):
        load_backbone_state(build_backbone(other), "eegpt", converted)


def test_pickled_objects_are_refused(tmp_path):
    import functools

    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"target_encoder.norm.weight": torch.ones(2)},
                "hyper_parameters": {"norm_layer": functools.partial(torch.nn.LayerNorm, eps=1e-6)}}, path)
    with pytest.raises(ValueError, match=r"weights_only=True"):
        eeg_config_from_checkpoint("eegpt", path)


def test_not_a_backbone_checkpoint(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"linear.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ValueError, match="holds no EEGPT, CBraMod or LaBraM weights"):
        eeg_config_from_checkpoint("eegpt", path)
    with pytest.raises(ValueError, match="no checkpoint at"):
        eeg_config_from_checkpoint("eegpt", tmp_path / "nothing_here")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(ValueError, match="neither model.safetensors nor pytorch_model.bin"):
        eeg_config_from_checkpoint("eegpt", tmp_path / "empty_folder")
