"""`e2llm init --eeg-encoder ... [--eeg-encoder-weights ...]`: a random tiny EEGPT, and published-format weights
(braindecode Hub folder, EEGPT Lightning checkpoint) assembled into a saved E2LLM whose encoder reproduces braindecode."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoProcessor

from e2llm.backbones_e2llm import channel_table_ids
from e2llm.electrodes import SEED_CHANNELS
from e2llm.training.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load("fixtures/backbone_reference")
weights = _load("test_backbone_weights")


def _generate(folder, rate):
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eeg = 20 * np.random.default_rng(0).standard_normal((len(SEED_CHANNELS), 4 * rate))
    inputs = processor(text=prompt, eeg=eeg, sampling_rate=rate, channel_names=list(SEED_CHANNELS), units="uV",
                       return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2
    return model, processor


def test_init_tiny_random_eegpt(tmp_path, capsys):
    assert main(["init", "--tiny", "--eeg-encoder", "eegpt", "--output-dir", str(tmp_path)]) == 0
    assert "EEG encoder eegpt" in capsys.readouterr().out
    model, processor = _generate(tmp_path, 256)
    assert model.config.eeg_config.backbone == "eegpt" and model.config.eeg_config.hidden_size == 32
    assert processor.feature_extractor.sampling_rate == 256 and processor.feature_extractor.output_unit_uv == 1000.0


@pytest.mark.parametrize("source", ["hub_folder", "lightning_ckpt"])
def test_init_loads_published_eegpt_weights(tmp_path, source):
    state, x, expected, meta = ref.reference(ref.load_fixture(), "eegpt")
    if source == "hub_folder":
        path = weights.braindecode_hub_folder(tmp_path / "eegpt-pretrained", state, meta)
        settings = {}
    else:
        path = weights.eegpt_lightning_ckpt(tmp_path / "eegpt.ckpt", state)
        settings = {"backbone_config": {"num_heads": 4, "patch_stride": 32}}
    eeg_config = tmp_path / "eeg.json"
    eeg_config.write_text(json.dumps({"window_samples": meta["n_times"], "num_attention_heads": 4, "min_channels": 4,
                                      **settings}))
    out = tmp_path / "e2llm"
    assert main(["init", "--tiny", "--eeg-encoder", "eegpt", "--eeg-encoder-weights", str(path),
                 "--eeg-config", str(eeg_config), "--output-dir", str(out)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    encoder = model.model.eeg_encoder
    ids = torch.as_tensor(channel_table_ids(meta["channels"], encoder.config.channel_names)).expand(x.shape[0], -1)
    with torch.no_grad():
        got = encoder(x, ids, output_backbone_hidden_states=True).backbone_hidden_states
    assert ref.max_error(got, expected) <= ref.TOLERANCE


def test_init_encoder_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="needs --eeg-encoder eegpt, cbramod or labram"):
        main(["init", "--tiny", "--eeg-encoder-weights", str(tmp_path), "--output-dir", str(tmp_path / "o"), "--debug"])
    with pytest.raises(ValueError, match="no such file or folder, and not a Hub repo id"):
        main(["init", "--tiny", "--eeg-encoder", "eegpt", "--eeg-encoder-weights", "./missing.ckpt",
              "--output-dir", str(tmp_path / "o"), "--debug"])
