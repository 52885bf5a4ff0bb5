"""The stages under `accelerate launch` with two CPU processes (gloo): both ranks train, results are written once,
and the saved models load."""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2llm.processing.dataset_io import save_prepared
from e2llm.processing.splits import SplitSpec, resolve_split
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training.language_models import CONFIG_DIR

pytestmark = pytest.mark.distributed
CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]


def _launch(stage: str, config: str, *args: str) -> str:
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--config_file", str(CONFIG_DIR / "accelerate" / "cpu_2proc.yaml"),
               "--main_process_port", "0", "-m", "e2llm.training.train", stage, "--config", str(CONFIG_DIR / config),
               "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--save_strategy", "no", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    for rank in (0, 1):
        assert f"rank {rank}/2: {stage} done" in result.stdout, result.stdout[-3000:]
    return result.stdout


def _logs(stdout: str) -> list[dict]:
    return [ast.literal_eval(line) for line in stdout.splitlines() if line.startswith("{'loss'")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    windows = synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=8, channel_names=CHANNELS)
    return save_prepared(windows, tmp_path_factory.mktemp("data") / "prepared")


@pytest.fixture(scope="module")
def stage1(prepared, tmp_path_factory):
    output = tmp_path_factory.mktemp("stage1")
    stdout = _launch("stage1", "stage1_tiny.yaml", "--dataset_path", str(prepared), "--output_dir", str(output),
                     "--max_steps", "2", "--per_device_train_batch_size", "4", "--eval_strategy", "no",
                     "--logging_steps", "1")
    return output, stdout


def test_stage1_on_two_processes(stage1, prepared):
    from e2llm import E2LLMEEGForEmotionClassification
    from e2llm.processing.dataset_io import load_prepared

    output, stdout = stage1
    train = resolve_split(load_prepared(prepared), SplitSpec("trial", test_size=0.25, validation_size=0.25)).train
    # one optimizer step consumes 2 ranks x 4 windows: the epoch advances at twice the one-process rate
    logs = _logs(stdout)
    assert len(logs) == 2  # logged once (main process), not once per rank
    assert float(logs[0]["epoch"]) == pytest.approx(1 / math.ceil(len(train) / 8), abs=1e-3)
    files = sorted(p.name for p in output.iterdir())
    assert files.count("model.safetensors") == 1 and not [f for f in files if f.startswith((".", "tmp"))]
    E2LLMEEGForEmotionClassification.from_pretrained(output)


@pytest.mark.slow
def test_stage2_and_stage3_on_two_processes(stage1, prepared, tmp_path):
    from transformers import AutoModelForCausalLM

    common = ["--dataset_path", str(prepared), "--per_device_train_batch_size", "2"]
    _launch("stage2", "stage2_tiny.yaml", *common, "--output_dir", str(tmp_path / "stage2"),
            "--encoder_name_or_path", str(stage1[0]), "--max_steps", "1")
    _launch("stage3", "stage3_tiny.yaml", *common, "--output_dir", str(tmp_path / "stage3"),
            "--model_name_or_path", str(tmp_path / "stage2"), "--max_steps", "2")
    AutoModelForCausalLM.from_pretrained(tmp_path / "stage3" / "merged")
    assert (tmp_path / "stage3" / "adapter" / "adapter_model.safetensors").is_file()
