"""braindecode's EEGPT in its default settings: `chan_proj_type="conv1d_constraint"` (and "linear") mixes the model's
input channels into its 19 standard ones before the encoder. e2llm converts and runs that projection; the output must
equal braindecode's.

Row of issue 27.4: `e2llm init --eeg-encoder eegpt --eeg-encoder-weights` dropped `chan_proj.*` with a warning and the
backbone's output differed from braindecode's by 4.56 (max abs).

The fixture `eegpt_channel_projection.safetensors` was written by braindecode 1.8.1 itself
(`tests/fixtures/make_backbone_fixtures.py`, in a separate environment: braindecode cannot be imported next to torch
2.13 here): the `config.json` text its `save_pretrained` wrote, the saved state dict, an input and the encoder features
of `model(x, return_features=True)`. The tests rebuild the folder from those bytes (braindecode's Hub format).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from e2llm import E2LLMEEGConfig, E2LLMEEGEncoder
from e2llm.assembly import eeg_config_from_checkpoint
from e2llm.backbones_e2llm import EEGPT_PROJECTED_CHANNELS, channel_table_ids
from e2llm.convert_backbones import load_backbone_state
from e2llm.modeling_eeg_backbones import build_backbone

FIXTURE = Path(__file__).parent / "fixtures" / "eegpt_channel_projection.safetensors"
TOLERANCE = 1e-5  # relative to the output's scale, as in test_backbone_equivalence


def _load(kind: str):
    with safe_open(str(FIXTURE), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(f"{kind}.")}
    state = {k[len(kind) + len(".state."):]: v for k, v in tensors.items() if k.startswith(f"{kind}.state.")}
    return state, tensors[f"{kind}.input"], tensors[f"{kind}.output"], metadata[f"{kind}.config.json"]


def braindecode_folder(folder: Path, kind: str, state: dict | None = None, config_text: str | None = None) -> Path:
    """The folder braindecode's `save_pretrained` wrote: its config.json and model.safetensors, byte for byte."""
    saved_state, _, _, saved_config = _load(kind)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config_text if config_text is not None else saved_config)
    save_file({k: v.contiguous() for k, v in (state if state is not None else saved_state).items()},
              str(folder / "model.safetensors"))
    return folder


def _encoder_features(config: E2LLMEEGConfig, converted: dict, x: torch.Tensor, channels) -> torch.Tensor:
    module = build_backbone(config).eval()
    load_backbone_state(module, "eegpt", converted)
    ids = torch.as_tensor(channel_table_ids(channels, config.channel_names)).expand(x.shape[0], -1)
    with torch.no_grad():
        return module(x, ids).flatten(2)  # braindecode's return_features: (batch, n_patches, embed_num * embed_dim)


def _error(out, expected) -> float:
    return float((out - expected).abs().max()) / max(1.0, float(expected.abs().max()))


@pytest.mark.parametrize("kind", ["conv1d_constraint", "linear"])
def test_the_projection_is_converted_and_equals_braindecode(tmp_path, kind):
    state, x, expected, config_text = _load(kind)
    saved = json.loads(config_text)
    assert any(k.startswith("chan_proj.") for k in state), "the fixture must hold braindecode's projection"
    folder = braindecode_folder(tmp_path / "hub", kind)
    config, converted = eeg_config_from_checkpoint("eegpt", folder, window_samples=saved["n_times"],
                                                   num_attention_heads=4)
    settings = config.backbone_config
    assert settings["channel_projection"] == kind and settings["projected_channels"] == list(EEGPT_PROJECTED_CHANNELS)
    channels = [c["ch_name"] for c in saved["chs_info"]]
    assert config.channel_names == channels  # the projection's inputs, in the order braindecode was built with
    assert _error(_encoder_features(config, converted, x, channels), expected) <= TOLERANCE


def test_the_controls_differ(tmp_path):
    """The equality above depends on the projection applied as braindecode does: with its max-norm constraint off, or
    with the projection dropped (what e2llm did before: the encoder on the raw input channels), the output differs."""
    state, x, expected, config_text = _load("conv1d_constraint")
    channels = [c["ch_name"] for c in json.loads(config_text)["chs_info"]]
    folder = braindecode_folder(tmp_path / "hub", "conv1d_constraint")
    config, converted = eeg_config_from_checkpoint("eegpt", folder, window_samples=256, num_attention_heads=4)
    module = build_backbone(config).eval()
    load_backbone_state(module, "eegpt", converted)
    norms = module.channel_projection.proj.weight.norm(dim=1)
    assert (norms > 1.0).any() and (norms < 1.0).any()  # rows on both sides of the max norm
    module.channel_projection.max_norm = float("inf")
    ids = torch.arange(len(channels)).expand(x.shape[0], -1)
    with torch.no_grad():
        assert _error(module(x, ids).flatten(2), expected) > 1e-2
    dropped = E2LLMEEGConfig(backbone="eegpt", backbone_config={
        k: v for k, v in config.backbone_config.items()
        if k not in ("channel_projection", "projected_channels", "projection_max_norm")},
        window_samples=256, num_attention_heads=4, min_channels=1)
    without = {k: v for k, v in converted.items() if not k.startswith("channel_projection.")}
    assert _error(_encoder_features(dropped, without, x, channels), expected) > 1e-2


def test_channel_order_of_the_recording_does_not_matter(tmp_path):
    state, x, expected, config_text = _load("conv1d_constraint")
    folder = braindecode_folder(tmp_path / "hub", "conv1d_constraint")
    config, converted = eeg_config_from_checkpoint("eegpt", folder, window_samples=256, num_attention_heads=4)
    channels = [c["ch_name"] for c in json.loads(config_text)["chs_info"]]
    order = torch.randperm(len(channels), generator=torch.Generator().manual_seed(0))
    shuffled = _encoder_features(config, converted, x[:, order], [channels[i] for i in order])
    assert _error(shuffled, expected) <= TOLERANCE


def test_the_projection_round_trips_through_save_and_load(tmp_path):
    state, x, expected, config_text = _load("conv1d_constraint")
    folder = braindecode_folder(tmp_path / "hub", "conv1d_constraint")
    config, converted = eeg_config_from_checkpoint("eegpt", folder, window_samples=256, num_attention_heads=4)
    encoder = E2LLMEEGEncoder(config)
    load_backbone_state(encoder.backbone, "eegpt", converted)
    encoder.save_pretrained(tmp_path / "encoder")
    again = E2LLMEEGEncoder.from_pretrained(tmp_path / "encoder").eval()
    assert torch.equal(again.backbone.projected_ids, encoder.backbone.projected_ids)
    channels = json.loads(config_text)["chs_info"]
    ids = torch.arange(len(channels)).expand(x.shape[0], -1)
    with torch.no_grad():
        assert _error(again.backbone(x, ids).flatten(2), expected) <= TOLERANCE


def test_a_folder_without_channel_names_is_refused(tmp_path):
    _, _, _, config_text = _load("conv1d_constraint")
    saved = json.loads(config_text)
    saved.pop("chs_info")
    folder = braindecode_folder(tmp_path / "hub", "conv1d_constraint", config_text=json.dumps(saved))
    with pytest.raises(ValueError, match=r"the channel projection takes 8 input channels but config\.json names 0 "
                                         r"\(chs_info\).*pass channel_names=\[\.\.\.\]"):
        eeg_config_from_checkpoint("eegpt", folder, window_samples=256, num_attention_heads=4)
    config, _ = eeg_config_from_checkpoint("eegpt", folder, window_samples=256, num_attention_heads=4,
                                           channel_names=["Fp1", "F3", "Fz", "C3", "Cz", "Pz", "O1", "O2"])
    assert config.channel_names[0] == "Fp1"


def test_a_projection_to_other_than_19_channels_is_refused(tmp_path):
    state, _, _, _ = _load("conv1d_constraint")
    key = "chan_proj.proj.parametrizations.weight.original"
    state = {**state, key: state[key][:18], "chan_proj.proj.bias": state["chan_proj.proj.bias"][:18]}
    folder = braindecode_folder(tmp_path / "hub", "conv1d_constraint", state=state)
    with pytest.raises(ValueError, match=r"writes 18 channels, but braindecode's EEGPT feeds its encoder 19"):
        eeg_config_from_checkpoint("eegpt", folder, window_samples=256, num_attention_heads=4)


def test_a_config_that_names_a_projection_the_weights_lack_is_refused(tmp_path):
    state, _, _, _ = _load("conv1d_constraint")
    state = {k: v for k, v in state.items() if not k.startswith("chan_proj.")}
    folder = braindecode_folder(tmp_path / "hub", "conv1d_constraint", state=state)
    with pytest.raises(ValueError, match="chan_proj_type='conv1d_constraint' but the weights hold no chan_proj"):
        eeg_config_from_checkpoint("eegpt", folder, window_samples=256, num_attention_heads=4)


def test_projection_settings_are_checked():
    from huggingface_hub.errors import StrictDataclassClassValidationError as Invalid

    base = {"embed_dim": 32, "num_layers": 1, "num_heads": 4}
    with pytest.raises(Invalid, match="channel_projection must be 'none', 'conv1d_constraint' or 'linear'"):
        E2LLMEEGConfig(backbone="eegpt", backbone_config={**base, "channel_projection": "conv2d"})
    with pytest.raises(Invalid, match="needs projected_channels"):
        E2LLMEEGConfig(backbone="eegpt", backbone_config={**base, "channel_projection": "linear"})
    with pytest.raises(Invalid, match=r"projected_channels \['Xx9'\] are not in the EEGPT channel table"):
        E2LLMEEGConfig(backbone="eegpt", backbone_config={**base, "channel_projection": "linear",
                                                          "projected_channels": ["Xx9"]})


def test_e2llm_init_with_braindecode_default_weights(tmp_path):
    """The issue's command: `e2llm init --eeg-encoder eegpt --eeg-encoder-weights <braindecode folder>`; the saved
    E2LLM's encoder reproduces braindecode, and the model reads recordings through its processor."""
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoProcessor

    from e2llm.training.cli import main

    state, x, expected, config_text = _load("conv1d_constraint")
    saved = json.loads(config_text)
    channels = [c["ch_name"] for c in saved["chs_info"]]
    folder = braindecode_folder(tmp_path / "eegpt-pretrained", "conv1d_constraint")
    eeg_config = tmp_path / "eeg.json"
    eeg_config.write_text(json.dumps({"window_samples": saved["n_times"], "num_attention_heads": 4, "min_channels": 4}))
    out = tmp_path / "e2llm"
    assert main(["init", "--tiny", "--eeg-encoder", "eegpt", "--eeg-encoder-weights", str(folder),
                 "--eeg-config", str(eeg_config), "--output-dir", str(out)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    encoder = model.model.eeg_encoder
    ids = torch.as_tensor(channel_table_ids(channels, encoder.config.channel_names)).expand(x.shape[0], -1)
    with torch.no_grad():
        got = encoder(x, ids, output_backbone_hidden_states=True).backbone_hidden_states
    assert _error(got.flatten(2), expected) <= TOLERANCE
    processor = AutoProcessor.from_pretrained(out)
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eeg = 20 * np.random.default_rng(0).standard_normal((len(channels), 2 * 256))
    inputs = processor(text=prompt, eeg=eeg, sampling_rate=256, channel_names=channels, units="uV",
                       return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 2


def test_damaged_braindecode_files_are_named(tmp_path):
    folder = braindecode_folder(tmp_path / "hub", "conv1d_constraint")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"model\.safetensors is damaged"):
        eeg_config_from_checkpoint("eegpt", folder)
    (folder / "config.json").write_text('{"chs_info": [')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        eeg_config_from_checkpoint("eegpt", folder)
