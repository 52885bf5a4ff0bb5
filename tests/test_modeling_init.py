"""`e2llm init`: --tiny and --text-model (a local Qwen2 checkpoint) write folders the Auto classes load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor

from e2llm import E2LLMForConditionalGeneration, E2LLMProcessor, build_offline_tokenizer
from e2llm.assembly import TINY_TEXT_CONFIG
from e2llm.training.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


def _generate(folder):
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    assert isinstance(model, E2LLMForConditionalGeneration) and isinstance(processor, E2LLMProcessor)
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eeg = 20 * np.random.default_rng(0).standard_normal((3, 4 * 200))
    inputs = processor(text=prompt, eeg=eeg, sampling_rate=200, channel_names=["Fz", "Cz", "Pz"], units="uV",
                       return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2
    return model


def test_init_tiny(tmp_path, capsys):
    assert main(["init", "--tiny", "--output-dir", str(tmp_path), "--labels", "negative", "neutral", "positive"]) == 0
    assert "saved an untrained E2LLM" in capsys.readouterr().out
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.label_names == ["negative", "neutral", "positive"]
    assert config.text_config.model_type == "qwen3"
    model = _generate(tmp_path)
    assert model.config.eeg_config.id2label == {0: "negative", 1: "neutral", 2: "positive"}


def test_init_from_a_local_qwen2_checkpoint(tmp_path):
    source = tmp_path / "qwen2"
    tokenizer = build_offline_tokenizer(eeg_tokens=False)
    config = AutoConfig.for_model(**{**TINY_TEXT_CONFIG, "model_type": "qwen2"}, vocab_size=len(tokenizer))
    torch.manual_seed(0)
    qwen = AutoModelForCausalLM.from_config(config)
    qwen.save_pretrained(source)
    tokenizer.save_pretrained(source)
    eeg_config = tmp_path / "eeg.json"
    eeg_config.write_text(json.dumps({"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                                      "intermediate_size": 64}))
    out = tmp_path / "e2llm"
    assert main(["init", "--text-model", str(source), "--output-dir", str(out), "--eeg-config", str(eeg_config),
                 "--num-eeg-tokens", "3"]) == 0
    model = _generate(out)
    assert model.config.text_config.model_type == "qwen2"
    assert model.config.num_eeg_tokens == 3 and model.config.eeg_config.hidden_size == 32
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) + 3
    torch.testing.assert_close(model.get_input_embeddings().weight[: len(tokenizer)], qwen.get_input_embeddings().weight)
    assert AutoProcessor.from_pretrained(out).num_eeg_tokens == 3


def test_init_argument_errors(tmp_path):
    with pytest.raises(SystemExit):  # argparse: one of --tiny / --text-model is required
        main(["init", "--output-dir", str(tmp_path)])
    with pytest.raises(ValueError, match="at least two distinct"):
        main(["init", "--tiny", "--output-dir", str(tmp_path), "--labels", "calm", "calm", "--debug"])


def test_init_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["init", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--text-model" in help_text and "--tiny" in help_text and "--labels" in help_text
