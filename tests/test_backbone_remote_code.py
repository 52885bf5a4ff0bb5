"""A saved tiny-EEGPT E2LLM works without e2llm (`trust_remote_code=True`): the backbone files travel with it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")

BLOCKER = '''
import sys


class _BlockE2LLM:
    def find_spec(self, name, path=None, target=None):
        if name == "e2llm" or name.startswith("e2llm."):
            raise ImportError(f"e2llm is blocked in this process ({name})")
        return None


sys.meta_path.insert(0, _BlockE2LLM())
'''

CHILD = '''
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoProcessor

folder, expected_path = sys.argv[1], sys.argv[2]
expected = np.load(expected_path)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
assert model.config.eeg_config.backbone == "eegpt"
assert not any(name == "e2llm" or name.startswith("e2llm.") for name in sys.modules)
inputs = processor(text=str(expected["prompt"]), eeg=expected["eeg"], sampling_rate=256,
                   channel_names=[str(n) for n in expected["channels"]], units="uV", return_tensors="pt")
assert np.array_equal(inputs["eeg_values"].numpy(), expected["eeg_values"])
with torch.no_grad():
    logits = model(**inputs).logits
assert np.array_equal(logits.numpy(), expected["logits"]), float(np.abs(logits.numpy() - expected["logits"]).max())
print("remote code OK")
'''


def test_tiny_eegpt_remote_code_without_e2llm(tmp_path):
    from e2llm import SEED_CHANNELS
    from e2llm.training.init_model import init_model

    folder = tmp_path / "model"
    model, processor = init_model(folder, tiny=True, eeg_encoder="eegpt")
    for name in ("modeling_eegpt.py", "modeling_cbramod.py", "modeling_labram.py", "modeling_eeg_backbones.py",
                 "backbones_e2llm.py"):
        assert (folder / name).is_file(), name
    model.eval()
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eeg = 20 * np.random.default_rng(2).standard_normal((len(SEED_CHANNELS), 4 * 256))
    inputs = processor(text=prompt, eeg=eeg, sampling_rate=256, channel_names=list(SEED_CHANNELS), units="uV",
                       return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    expected = tmp_path / "expected.npz"
    np.savez(expected, eeg=eeg, prompt=np.array(prompt), channels=np.array(SEED_CHANNELS), logits=logits.numpy(),
             eeg_values=inputs["eeg_values"].numpy())
    blocker_dir = tmp_path / "blocker"
    blocker_dir.mkdir()
    (blocker_dir / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    (tmp_path / "child.py").write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(blocker_dir), "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(folder), str(expected)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "remote code OK" in result.stdout
