"""bench/bench_gpu.py (#24): the `--tiny` CPU dry run runs every step and prints every figure as JSON; a missing or
too old package stops the script with one line naming it."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_gpu.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_dry_run_prints_every_figure():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny"], capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)  # stdout holds the JSON alone
    assert result["tiny"] is True and result["model"]["eeg_backbone"] == "eegpt"
    assert set(result) >= {"date", "commit", "versions", "hardware", "model", "stage3", "pipeline", "seconds_total"}
    hardware, stage3, pipe = result["hardware"], result["stage3"], result["pipeline"]
    figures = [hardware["matmul"]["tflops"], hardware["copy_bandwidth_gb_s"], result["model"]["parameters_6n"],
               result["model"]["decode_weight_bytes"], stage3["tokens_per_s"], stage3["tflops_6n"],
               stage3["mfu_6n"], stage3["peak_memory_gib"], pipe["label_scoring_windows_per_s"],
               pipe["with_rationale_windows_per_s"], pipe["prefill_ms_per_call"], pipe["decode_bound_ms_per_step"],
               *stage3["step_seconds"].values()]
    assert all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in figures), figures
    assert stage3["timed_steps"] == 4 and stage3["tasks"] == ["emotion", "multitask", "scenario"]
    assert stage3["lora_r"] == 32 and math.isfinite(stage3["train_loss"])
    steps = stage3["step_seconds"]
    assert steps["min"] <= steps["p10"] <= steps["median"] <= steps["p90"] <= steps["max"]
    assert stage3["mfu_6n"] == pytest.approx(stage3["tflops_6n"] / hardware["matmul"]["tflops"])
    assert pipe["windows"] == 4 and pipe["generate_calls"] == 2  # 2 recordings of 8 s, batch 2
    assert math.isfinite(pipe["decode_ms_per_step"]) and math.isfinite(pipe["decode_over_bound"])
    assert result["model"]["text_config"]["num_hidden_layers"] == 2


def test_a_missing_package_stops_it_with_one_line(monkeypatch, tmp_path):
    module = bench_module()
    # a distribution whose own requirement is unmet: the check looks one level down
    info = tmp_path / "needsnewnumpy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: needsnewnumpy\nVersion: 1.0\n"
                                   "Requires-Dist: numpy>=999\nRequires-Dist: pytest; extra == 'test'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = module.missing_requirements(("needsnewnumpy", "surely-not-installed-e2llm-dep", "numpy>=1"))
    assert len(problems) == 2
    assert problems[0].startswith("numpy ") and problems[0].endswith("(needsnewnumpy needs >=999)")
    assert problems[1] == "surely-not-installed-e2llm-dep (not installed)"
    monkeypatch.setattr(module, "REQUIREMENTS", ("surely-not-installed-e2llm-dep",))
    with pytest.raises(SystemExit) as stop:
        module.require_packages()
    message = str(stop.value.code)
    assert "\n" not in message and message.startswith("bench_gpu: missing or too old: surely-not-installed")
    assert "carry their wheels" in message
