"""`e2llm evaluate` under `accelerate launch` with two CPU processes (gloo): the test windows are answered in shards,
merged in order, and the report (written once) equals a one-process run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2llm.training.backbones import CONFIG_DIR

pytestmark = [pytest.mark.distributed, pytest.mark.slow]
CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]


def _evaluate(launch: bool, model: Path, data: Path, output: Path) -> subprocess.CompletedProcess:
    command = ["-m", "e2llm.training.cli", "evaluate", "--model", str(model), "--data", str(data),
               "--tasks", "emotion", "--baselines", "de_logreg", "--no-mismatched-eeg", "--max-new-tokens", "3",
               "--max-test-windows", "6", "--batch-size", "2", "--output-dir", str(output)]
    if launch:
        accelerate = Path(sys.executable).with_name("accelerate")
        command = [str(accelerate), "launch", "--config_file", str(CONFIG_DIR / "accelerate" / "cpu_2proc.yaml"),
                   "--main_process_port", "0", *command]
    else:
        command = [sys.executable, *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def test_evaluate_on_two_processes_equals_one_process(tiny_e2llm_dir, tmp_path):
    pytest.importorskip("sklearn")
    from e2llm.processing.dataset_io import save_prepared
    from e2llm.training.data import synthetic_window_dataset

    data = save_prepared(synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=8,
                                                  channel_names=CHANNELS), tmp_path / "prepared")
    reports = {}
    for launch in (True, False):
        output = tmp_path / ("two" if launch else "one")
        result = _evaluate(launch, tiny_e2llm_dir, data, output)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        if launch:
            assert result.stdout.count("report written to") == 1  # only the main process writes
        reports[launch] = json.loads((output / "report.json").read_text())
    two, one = reports[True]["summary"], reports[False]["summary"]
    assert set(two) == set(one)
    for method in one:
        for key in ("accuracy", "parse_rate", "ece"):
            if key in one[method]:
                assert two[method][key]["mean"] == pytest.approx(one[method][key]["mean"], abs=1e-6), (method, key)
