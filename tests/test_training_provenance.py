"""Provenance that cannot be bent (#27.6): a resumed stage continues the same stage on the same dataset and split or
is refused; a prepared folder's data must be what its summary says before a stage or an evaluation reads it."""

from __future__ import annotations

import json
import shutil

import pytest

from e2llm.processing.dataset_io import load_prepared, save_prepared
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.provenance_e2llm import PROVENANCE_FILE
from e2llm.training.cli import main as cli_main
from e2llm.training.language_models import CONFIG_DIR
from e2llm.training.train import run_stage

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    first = save_prepared(synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=8,
                                                   channel_names=CHANNELS), root / "first")
    other = save_prepared(synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=8,
                                                   channel_names=CHANNELS, seed=5), root / "other")
    return first, other


def _stage1(dataset, output_dir, *extra):
    argv = ["--config", str(CONFIG_DIR / "stage1_tiny.yaml"), "--dataset_path", str(dataset), "--output_dir",
            str(output_dir), "--max_steps", "2", "--save_steps", "2", "--save_strategy", "steps",
            "--eval_strategy", "no", "--validation_size", "0", "--per_device_train_batch_size", "4",
            "--disable_tqdm", "true", *extra]
    return run_stage("stage1", argv)


@pytest.fixture(scope="module")
def checkpoint(prepared, tmp_path_factory):
    out = _stage1(prepared[0], tmp_path_factory.mktemp("stage1"))
    assert (out / "checkpoint-2" / PROVENANCE_FILE).is_file()  # every checkpoint carries the stage's records
    return out / "checkpoint-2"


def test_resume_with_the_same_settings_is_accepted(prepared, checkpoint, tmp_path):
    out = _stage1(prepared[0], tmp_path, "--max_steps", "3", "--resume_from_checkpoint", str(checkpoint))
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("change, words", [
    (["--split_seed", "1"], "it was trained on the split kind=trial, fold=0, test_size=0.25, seed=0"),
    (["--split", "subject", "--fold", "1"], "this run asks for kind=subject, fold=1"),
    (["--test_size", "0.5"], "test_size=0.5"),
])
def test_resume_with_another_split_is_refused(prepared, checkpoint, tmp_path, change, words):
    with pytest.raises(ValueError, match="Resume with the options it was trained with") as error:
        _stage1(prepared[0], tmp_path, "--resume_from_checkpoint", str(checkpoint), *change)
    assert words in str(error.value) and str(checkpoint) in str(error.value)
    assert not (tmp_path / "model.safetensors").exists()


def test_resume_on_another_dataset_is_refused(prepared, checkpoint, tmp_path):
    with pytest.raises(ValueError, match="this run reads synthetic") as error:
        _stage1(prepared[1], tmp_path, "--resume_from_checkpoint", str(checkpoint))
    assert "fingerprint" in str(error.value)


def test_resume_by_another_stage_is_refused(prepared, checkpoint, tmp_path, capsys):
    code = cli_main(["train", "stage2", "--config", str(CONFIG_DIR / "stage2_tiny.yaml"), "--dataset_path",
                     str(prepared[0]), "--encoder_name_or_path", str(checkpoint.parent), "--output_dir",
                     str(tmp_path), "--resume_from_checkpoint", str(checkpoint), "--max_steps", "1"])
    assert code == 2
    message = capsys.readouterr().err
    assert "e2llm train: error: --resume_from_checkpoint" in message
    assert "it was written by stage1, this run is stage2" in message


def test_resume_from_a_checkpoint_without_provenance_is_refused(prepared, checkpoint, tmp_path):
    bare = tmp_path / "checkpoint-2"
    shutil.copytree(checkpoint, bare)
    (bare / PROVENANCE_FILE).unlink()
    with pytest.raises(ValueError, match="holds no e2llm_provenance.json"):
        _stage1(prepared[0], tmp_path / "out", "--resume_from_checkpoint", str(bare))


def _copy(folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    return copy


def test_a_prepared_folder_whose_state_points_at_another_dataset_is_refused(prepared, tiny_e2llm_dir, tmp_path,
                                                                            capsys):
    copy = _copy(prepared[0], tmp_path)
    state = json.loads((copy / "state.json").read_text())
    state["_data_files"] = [{"filename": str(prepared[1] / entry["filename"])} for entry in state["_data_files"]]
    (copy / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="names data files that are not in the folder"):
        load_prepared(copy)
    code = cli_main(["evaluate", "--model", str(tiny_e2llm_dir), "--data", str(copy), "--output-dir",
                     str(tmp_path / "e")])
    assert code == 2 and "not in the folder" in capsys.readouterr().err


def test_a_prepared_folder_whose_data_changed_is_refused(prepared, tmp_path):
    copy = _copy(prepared[0], tmp_path)
    for source, target in zip(sorted(prepared[1].glob("data-*.arrow")), sorted(copy.glob("data-*.arrow"))):
        shutil.copyfile(source, target)  # another dataset's windows under this folder's summary
    with pytest.raises(ValueError, match="its data do not match its summary.json") as error:
        load_prepared(copy)
    assert "fingerprint" in str(error.value) and "e2llm prepare" in str(error.value)
    with pytest.raises(ValueError, match="its data do not match"):
        _stage1(copy, tmp_path / "out")


def test_an_older_summary_without_fingerprint_is_checked_by_its_counts(prepared, tmp_path):
    copy = _copy(prepared[0], tmp_path)
    summary = json.loads((copy / "summary.json").read_text())
    del summary["fingerprint"]
    (copy / "summary.json").write_text(json.dumps(summary))
    assert len(load_prepared(copy)) == summary["n_windows"]  # an older folder that matches still loads
    summary["n_windows"] += 1
    (copy / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="n_windows differ"):
        load_prepared(copy)
