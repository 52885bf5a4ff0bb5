"""`e2llm predict` over several files under `accelerate launch` with two CPU processes (gloo): each process takes a
shard of the files, and the rows equal a one-process run, in input order, written once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from e2llm.training.backbones import CONFIG_DIR
from e2llm.training.sharding import shard_bounds, sharded_map

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]


def test_shard_bounds_cover_the_inputs_in_order():
    for n_items in range(0, 9):
        for n_shards in range(1, 5):
            bounds = [shard_bounds(n_items, n_shards, i) for i in range(n_shards)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n_items
            assert all(end == start for (_, end), (start, _) in zip(bounds, bounds[1:]))
            sizes = [end - start for start, end in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="shard 2 of 2 does not exist"):
        shard_bounds(5, 2, 2)


def test_sharded_map_on_one_process_checks_the_result_count():
    assert sharded_map(lambda part: [x * 2 for x in part], [1, 2, 3]) == [2, 4, 6]
    with pytest.raises(ValueError, match="returned 2 results for 3 inputs"):
        sharded_map(lambda part: part[:2], [1, 2, 3])


@pytest.mark.distributed
def test_sharded_map_on_two_processes(tmp_path):
    script = tmp_path / "shards.py"
    script.write_text(
        "from e2llm.training.sharding import is_main_process, process_index, sharded_map\n"
        "seen = []\n"
        "out = sharded_map(lambda part: seen.extend(part) or [x * 10 for x in part], list(range(5)))\n"
        "print(f'rank {process_index()} ran {seen} got {out} main {is_main_process()}', flush=True)\n"
    )
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--config_file", str(CONFIG_DIR / "accelerate" / "cpu_2proc.yaml"),
               "--main_process_port", "0", str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "rank 0 ran [0, 1, 2] got [0, 10, 20, 30, 40] main True" in result.stdout
    assert "rank 1 ran [3, 4] got [0, 10, 20, 30, 40] main False" in result.stdout


def _launch_predict(files: list[Path], model: Path, output: Path) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--config_file", str(CONFIG_DIR / "accelerate" / "cpu_2proc.yaml"),
               "--main_process_port", "0", "-m", "e2llm.training.cli", "predict", *map(str, files),
               "--model", str(model), "--max-new-tokens", "4", "--output", str(output)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.distributed
@pytest.mark.slow  # two launched processes plus a one-process run: ~75 s on a loaded 2-core machine
def test_predict_on_two_processes_equals_one_process(tiny_e2llm_dir, tmp_path):
    mne = pytest.importorskip("mne")
    import torch

    from e2llm.training.cli import main as cli_main

    rng = np.random.default_rng(0)
    files = []
    for i, seconds in enumerate((8, 4, 12)):  # 2, 1 and 3 windows
        raw = mne.io.RawArray(20e-6 * rng.standard_normal((len(CHANNELS), int(seconds * 200))),
                              mne.create_info(CHANNELS, 200.0, "eeg"), verbose="error")
        files.append(tmp_path / f"rec{i}_raw.fif")
        raw.save(files[-1], verbose="error")
    result = _launch_predict(files, tiny_e2llm_dir, tmp_path / "two.jsonl")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "process 0/2: 2 of 3 files" in result.stderr and "process 1/2: 1 of 3 files" in result.stderr
    assert result.stderr.count("rows written to") == 1  # only the main process writes

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the launched processes (OMP_NUM_THREADS=1)
    try:
        assert cli_main(["predict", *map(str, files), "--model", str(tiny_e2llm_dir), "--max-new-tokens", "4",
                         "--output", str(tmp_path / "one.jsonl"), "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    one, two = ([json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
                for name in ("one.jsonl", "two.jsonl"))
    assert [(r["file"], r["window"]) for r in two] == [(r["file"], r["window"]) for r in one]
    assert [r["file"] for r in two if r["window"] == "all"] == list(map(str, files))
    for a, b in zip(one, two):
        assert a.get("generated_text") == b.get("generated_text") and a["label"] == b["label"]
        np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), atol=1e-5)
