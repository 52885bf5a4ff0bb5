"""A saved folder works without e2llm: `trust_remote_code=True` in a process where `import e2llm` fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

# Short test recordings are shorter than the 0.1 Hz high-pass kernel; the extractor rightly warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")

CHANNELS = ["Fp1", "Fp2", "Cz", "O1"]

# Installed before anything else runs (sitecustomize on PYTHONPATH): every import of e2llm, or of a module inside
# it, fails, as on a machine where the package is not installed.
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

try:
    import e2llm  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("e2llm could be imported: the blocker did not work")

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCausalLM, AutoProcessor


folder, expected_path = sys.argv[1], sys.argv[2]
expected = np.load(expected_path)
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
assert type(config).__name__ == "E2LLMConfig", type(config)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
assert type(processor).__name__ == "E2LLMProcessor", type(processor)
assert type(AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)).__name__ == "E2LLMFeatureExtractor"
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__name__ == "E2LLMForConditionalGeneration", type(model)
assert type(AutoModel.from_pretrained(folder, trust_remote_code=True)).__name__ == "E2LLMModel"
assert not any(name == "e2llm" or name.startswith("e2llm.") for name in sys.modules)

conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
inputs = processor(text=prompt, eeg=expected["eeg"], sampling_rate=200, channel_names=CHANNELS_PLACEHOLDER, units="uV",
                   return_tensors="pt")
for key in ("input_ids", "eeg_values", "eeg_channel_ids"):
    assert np.array_equal(inputs[key].numpy(), expected[key]), key
with torch.no_grad():
    logits = model(**inputs).logits
assert np.array_equal(logits.numpy(), expected["logits"]), float(np.abs(logits.numpy() - expected["logits"]).max())
generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
assert np.array_equal(generated.numpy(), expected["generated"]), (generated, expected["generated"])
candidates = processor.label_candidate_ids(model.config.label_names)
probs = model.score_emotions(inputs["input_ids"], inputs["attention_mask"], candidates,
                             **{k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")})
assert abs(float(probs.sum()) - 1) < 1e-5
print("remote code OK")
'''.replace("CHANNELS_PLACEHOLDER", repr(CHANNELS))


def test_remote_code_without_e2llm(tiny_e2llm, tiny_e2llm_dir, tmp_path):
    model, processor = tiny_e2llm
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eeg = 20 * np.random.default_rng(2).standard_normal((4, 8 * 200))
    inputs = processor(text=prompt, eeg=eeg, sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    expected = tmp_path / "expected.npz"
    np.savez(
        expected,
        eeg=eeg,
        logits=logits.numpy(),
        generated=generated.numpy(),
        **{k: inputs[k].numpy() for k in ("input_ids", "eeg_values", "eeg_channel_ids")},
    )

    blocker_dir = tmp_path / "blocker"
    blocker_dir.mkdir()
    (blocker_dir / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    (tmp_path / "child.py").write_text(CHILD)
    env = {
        **os.environ,
        "PYTHONPATH": str(blocker_dir),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), str(tiny_e2llm_dir), str(expected)],
        cwd=tmp_path,  # not the repository root, whose folders must not be importable either
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "remote code OK" in result.stdout
