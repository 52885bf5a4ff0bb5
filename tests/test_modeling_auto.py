"""save_pretrained -> Auto classes reload with e2llm installed: same classes, bit-identical outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCausalLM,
    AutoProcessor,
    AutoTokenizer,
)

import e2llm

# Short test recordings are shorter than the 0.1 Hz high-pass kernel; the extractor rightly warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


CHANNELS = ["Fp1", "Fp2", "Cz", "O1"]


def _inputs(processor):
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eeg = 20 * np.random.default_rng(1).standard_normal((4, 8 * 200))
    return processor(text=prompt, eeg=eeg, sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="pt")


def test_saved_folder_layout(tiny_e2llm_dir):
    files = {p.name for p in tiny_e2llm_dir.iterdir()}
    assert "model.safetensors" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    for code in ("configuration_e2llm.py", "modeling_e2llm.py", "modeling_eeg_encoder.py", "processing_e2llm.py",
                 "feature_extraction_e2llm.py", "signal_e2llm.py", "electrodes.py", "tokenization_e2llm.py"):
        assert code in files, code
    auto_map = json.loads((tiny_e2llm_dir / "config.json").read_text())["auto_map"]
    assert set(auto_map) >= {"AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoProcessor", "AutoFeatureExtractor"}
    processor_config = json.loads((tiny_e2llm_dir / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_e2llm.E2LLMProcessor"


def test_auto_classes_reload_bit_identical(tiny_e2llm, tiny_e2llm_dir):
    model, processor = tiny_e2llm
    config = AutoConfig.from_pretrained(tiny_e2llm_dir)
    assert isinstance(config, e2llm.E2LLMConfig)
    assert config.to_diff_dict() | {"_name_or_path": ""} == model.config.to_diff_dict() | {"_name_or_path": ""}

    loaded_processor = AutoProcessor.from_pretrained(tiny_e2llm_dir)
    assert isinstance(loaded_processor, e2llm.E2LLMProcessor)
    assert loaded_processor.num_eeg_tokens == processor.num_eeg_tokens
    assert loaded_processor.chat_template == processor.chat_template
    assert isinstance(AutoFeatureExtractor.from_pretrained(tiny_e2llm_dir), e2llm.E2LLMFeatureExtractor)
    assert AutoTokenizer.from_pretrained(tiny_e2llm_dir).eeg_token == "<|eeg|>"

    inputs = _inputs(processor)
    reloaded_inputs = _inputs(loaded_processor)
    for key in inputs:
        assert torch.equal(inputs[key], reloaded_inputs[key]), key

    causal = AutoModelForCausalLM.from_pretrained(tiny_e2llm_dir).eval()
    base = AutoModel.from_pretrained(tiny_e2llm_dir).eval()
    assert type(causal) is e2llm.E2LLMForConditionalGeneration and type(base) is e2llm.E2LLMModel
    with torch.no_grad():
        assert torch.equal(causal(**inputs).logits, model(**inputs).logits)
        assert torch.equal(base(**inputs).last_hidden_state, model.model(**inputs).last_hidden_state)
    kw = {"max_new_tokens": 4, "do_sample": False}
    assert torch.equal(causal.generate(**inputs, **kw), model.generate(**inputs, **kw))
