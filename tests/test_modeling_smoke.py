"""Fast smoke test: the package imports, registers itself and the tiny model generates."""

import numpy as np
import pytest
import torch
from transformers import AutoConfig

import e2llm

# Short test recordings are shorter than the 0.1 Hz high-pass kernel; the extractor rightly warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")



def test_import_registers_auto_config():
    config = AutoConfig.for_model("e2llm")
    assert isinstance(config, e2llm.E2LLMConfig)


def test_tiny_model_generates(tiny_e2llm):
    model, processor = tiny_e2llm
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eeg = 20 * np.random.default_rng(0).standard_normal((3, 8 * 200))
    inputs = processor(
        text=prompt, eeg=eeg, sampling_rate=200, channel_names=["Fz", "Cz", "Pz"], units="uV", return_tensors="pt"
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 3)
