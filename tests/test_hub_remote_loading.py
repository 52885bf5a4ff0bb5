"""The exported folder works downstream without e2llm: Auto classes, generate, the `eeg-emotion` pipeline shipped
as remote code, and the card's own quick start, in a process where e2llm, MNE and the training stack cannot be
imported (only torch, transformers, numpy and scipy)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCausalLM,
    AutoProcessor,
    pipeline,
)

from e2llm import SEED_CHANNELS, E2LLMForConditionalGeneration, E2LLMProcessor
from e2llm.hub_cards.export import export_model

REPO_ID = "me/e2llm-tiny"
# Short example recordings are shorter than the 0.1 Hz high-pass kernel; the feature extractor says so.
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")
BLOCKED = ("e2llm", "mne", "matplotlib", "datasets", "trl", "peft", "accelerate", "sklearn", "pandas")

# Imported by `site` before anything else (PYTHONPATH): a None entry in sys.modules makes every import of the
# package (and its submodules) fail and `importlib.util.find_spec` report it missing, as if it were not installed.
SITECUSTOMIZE = f"import sys\n\nfor _name in {BLOCKED!r}:\n    sys.modules[_name] = None\n"

CHILD = textwrap.dedent("""
    import importlib, json, sys
    import numpy as np, torch
    from transformers import (AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCausalLM,
                              AutoModelForMultimodalLM, AutoProcessor, pipeline)

    folder, reference_path, quickstart_path = sys.argv[1:4]
    report = {"blocked": []}
    for name in %(blocked)r:
        try:
            importlib.import_module(name)
        except ImportError:
            report["blocked"].append(name)
    reference = np.load(reference_path)
    kinds = {}
    for auto in (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMultimodalLM, AutoProcessor,
                 AutoFeatureExtractor):
        obj = auto.from_pretrained(folder, trust_remote_code=True)
        kinds[auto.__name__] = [type(obj).__name__, type(obj).__module__.split(".")[0]]
    report["kinds"] = kinds
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = processor(text=prompt, eeg=reference["eeg"], sampling_rate=250, channel_names=%(channels)r, units="uV",
                       return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits.numpy()
    report["max_logit_diff"] = float(np.abs(logits - reference["logits"]).max())
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    report["generated_new_tokens"] = int(generated.shape[1] - inputs["input_ids"].shape[1])
    eeg_emotion = pipeline("eeg-emotion", model=folder, trust_remote_code=True)
    report["pipeline_class"] = [type(eeg_emotion).__name__, type(eeg_emotion).__module__.split(".")[0]]
    result = eeg_emotion(reference["eeg"], sampling_rate=250, channel_names=%(channels)r, units="uV",
                         max_new_tokens=4)
    report["pipeline_keys"] = sorted(result)
    report["pipeline_score_sum"] = float(sum(result["scores"].values()))
    report["pipeline_labels"] = sorted(result["scores"])
    exec(compile(open(quickstart_path).read(), "quickstart", "exec"), {"__name__": "__main__"})
    report["quickstart_ran"] = True
    report["leaked"] = sorted(n for n in sys.modules if n.split(".")[0] in %(blocked)r and sys.modules[n] is not None)
    print("REPORT " + json.dumps(report))
""") % {"blocked": BLOCKED, "channels": list(SEED_CHANNELS)}


@pytest.fixture(scope="module")
def exported(tiny_e2llm_dir, tmp_path_factory):
    return export_model(tiny_e2llm_dir, tmp_path_factory.mktemp("remote") / "export", repo_id=REPO_ID)


@pytest.fixture(scope="module")
def reference(tiny_e2llm, tmp_path_factory):
    """An 8-s 62-channel recording at 250 Hz and the in-process model's logits on it."""
    model, processor = tiny_e2llm
    eeg = (20 * np.random.default_rng(0).standard_normal((len(SEED_CHANNELS), 8 * 250))).astype(np.float32)
    conversation = [
        {"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}
    ]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = processor(
        text=prompt,
        eeg=eeg,
        sampling_rate=250,
        channel_names=list(SEED_CHANNELS),
        units="uV",
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = model(**inputs).logits.numpy()
    path = tmp_path_factory.mktemp("reference") / "reference.npz"
    np.savez(path, eeg=eeg, logits=logits)
    return path


def _quickstart(folder, tmp_path) -> str:
    """The card's quick start, pointed at the local folder, with short generations."""
    card = (folder / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert f'model_id = "{REPO_ID}"' in code
    code = code.replace(f'model_id = "{REPO_ID}"', f"model_id = {str(folder)!r}")
    code = code.replace("max_new_tokens=128", "max_new_tokens=2")
    assert "(len(channel_names), 60 * 200)" in code
    code = code.replace("(len(channel_names), 60 * 200)", "(len(channel_names), 8 * 200)")  # 2 windows suffice
    path = tmp_path / "quickstart.py"
    path.write_text(code)
    return str(path)


def test_export_loads_and_runs_without_e2llm(exported, reference, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN")}
    env.update(
        PYTHONPATH=str(blocker),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_MODULES_CACHE=str(tmp_path / "hf_modules"),
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore",
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "child.py"),
            str(exported),
            str(reference),
            _quickstart(exported, tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    report = json.loads(lines[-1].removeprefix("REPORT "))
    assert report["blocked"] == list(BLOCKED)
    assert report["kinds"] == {
        "AutoConfig": ["E2LLMConfig", "transformers_modules"],
        "AutoModel": ["E2LLMModel", "transformers_modules"],
        "AutoModelForCausalLM": ["E2LLMForConditionalGeneration", "transformers_modules"],
        "AutoModelForMultimodalLM": ["E2LLMForConditionalGeneration", "transformers_modules"],
        "AutoProcessor": ["E2LLMProcessor", "transformers_modules"],
        "AutoFeatureExtractor": ["E2LLMFeatureExtractor", "transformers_modules"],
    }
    assert report["max_logit_diff"] == 0.0  # the remote code computes exactly what e2llm computes
    assert report["generated_new_tokens"] > 0
    assert report["pipeline_class"] == ["EEGEmotionPipeline", "transformers_modules"]
    assert {"label", "scores"} <= set(report["pipeline_keys"])
    assert abs(report["pipeline_score_sum"] - 1) < 1e-4
    assert report["pipeline_labels"] == sorted(
        json.loads((exported / "config.json").read_text())["id2label"].values()
    )
    assert report["quickstart_ran"] is True
    assert report["leaked"] == []


def test_export_loads_with_e2llm_installed(exported):
    """Where e2llm is installed, the Auto classes take its registered classes without trust_remote_code; the remote
    `eeg-emotion` pipeline needs trust_remote_code=True (transformers' rule for `custom_pipelines`) or the class."""
    from e2llm import E2LLMConfig, E2LLMFeatureExtractor, E2LLMModel
    from e2llm.pipeline_e2llm import EEGEmotionPipeline

    assert type(AutoConfig.from_pretrained(exported)) is E2LLMConfig
    assert type(AutoModel.from_pretrained(exported)) is E2LLMModel
    assert type(AutoModelForCausalLM.from_pretrained(exported)) is E2LLMForConditionalGeneration
    assert type(AutoFeatureExtractor.from_pretrained(exported)) is E2LLMFeatureExtractor
    assert type(AutoProcessor.from_pretrained(exported)) is E2LLMProcessor
    eeg_emotion = pipeline("eeg-emotion", model=str(exported), pipeline_class=EEGEmotionPipeline)
    assert type(eeg_emotion.model) is E2LLMForConditionalGeneration
    eeg = 20 * np.random.default_rng(1).standard_normal((4, 4 * 200))
    result = eeg_emotion(
        eeg, sampling_rate=200, channel_names=["Fp1", "Fp2", "Cz", "O1"], units="uV", max_new_tokens=2
    )
    assert abs(sum(result["scores"].values()) - 1) < 1e-4
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("eeg-emotion", model=str(exported))
