"""Validation is carved from the training side only, every Trainer evaluates on it (never on the test split), and
every stage writes the provenance that `e2llm evaluate` checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from e2llm import build_tiny_e2llm
from e2llm.processing.splits import trial_keys
from e2llm.training.arguments import InstructConfig, LoraArguments, ModelArguments, Stage1Config
from e2llm.training.data import synthetic_window_dataset
from e2llm.training.evaluation.splits import SplitSpec, resolve_split
from e2llm.training.provenance import PROVENANCE_FILE, read_provenance
from e2llm.training.stage1 import build_stage1_model
from e2llm.training.train import check_validation, run_stage1, run_stage2, run_stage3, stage_data

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=3, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)


def _keys(dataset, rows=None) -> set:
    part = dataset if rows is None else dataset.select(rows)
    return {tuple(k) for k in trial_keys(part)}


@pytest.mark.parametrize("spec", [SplitSpec("trial", test_size=0.25, validation_size=0.25, seed=1),
                                  SplitSpec("subject", fold=0, validation_size=0.5),
                                  SplitSpec("subject", fold=2, validation_size=0.3, seed=4)], ids=str)
def test_validation_is_part_of_the_training_side(windows, spec):
    split = resolve_split(windows, spec)
    outer = resolve_split(windows, SplitSpec(spec.kind, spec.fold, spec.test_size, spec.seed))
    train, validation, test = (_keys(windows, rows) for rows in (split.train, split.validation, split.test))
    assert validation and validation <= _keys(windows, outer.train)  # carved from the training trials
    assert not validation & test and not validation & train and not train & test
    assert np.array_equal(split.test, outer.test)  # the test side does not move
    if spec.kind == "subject":  # whole training subjects under leave-one-subject-out
        assert split.validation_kind == "subject"
        assert not {k[0] for k in validation} & ({k[0] for k in train} | {k[0] for k in test})


def test_a_stage_that_evaluates_needs_validation(windows, tmp_path):
    data = stage_data(windows, SplitSpec("trial"))
    args = Stage1Config(output_dir=str(tmp_path), eval_strategy="epoch", report_to=[])
    with pytest.raises(ValueError, match="--validation_size"):
        check_validation(args, data, "stage1")
    check_validation(Stage1Config(output_dir=str(tmp_path), report_to=[]), data, "stage1")


def _sft(path, **kwargs) -> dict:
    return dict(output_dir=str(path), max_steps=1, per_device_train_batch_size=4, per_device_eval_batch_size=4,
                bf16=False, report_to=[], save_strategy="no", logging_steps=1, max_length=None, disable_tqdm=True,
                gradient_checkpointing=False, eval_strategy="steps", eval_steps=1, **kwargs)


def test_every_trainer_evaluates_on_validation_never_on_test(windows, tmp_path):
    data = stage_data(windows, SplitSpec("trial", test_size=0.25, validation_size=0.25))
    validation, test = _keys(data.validation), _keys(windows, data.split.test)
    names = windows.features["emotion"].names
    model, processor = build_tiny_e2llm(id2label=dict(enumerate(names)), seed=0)

    classifier = build_stage1_model(ModelArguments(tiny=True), names)
    stage1 = run_stage1(classifier, processor.feature_extractor, data, Stage1Config(
        output_dir=str(tmp_path / "s1"), max_steps=1, report_to=[], save_strategy="no", disable_tqdm=True,
        eval_strategy="steps", eval_steps=1, per_device_train_batch_size=4))
    stage2 = run_stage2(model, processor, data, InstructConfig(**_sft(tmp_path / "s2")), inherits=[tmp_path / "s1"])
    stage3 = run_stage3(model, processor, data, InstructConfig(**_sft(tmp_path / "s3")), LoraArguments(lora_r=2),
                        inherits=[tmp_path / "s2"])
    for trainer in (stage1, stage2, stage3):
        evaluated = _keys(trainer.eval_dataset)
        assert evaluated == validation and not evaluated & test
        assert any("eval_loss" in entry for entry in trainer.state.log_history)

    provenance = read_provenance(tmp_path / "s3" / "merged")
    assert [r["stage"] for r in provenance["stages"]] == ["stage1", "stage2", "stage3"]
    for record in provenance["stages"]:
        assert {tuple(k) for k in record["validation_keys"]} == validation
        assert {tuple(k) for k in record["train_keys"]} == _keys(data.train)
        assert record["dataset"]["synthetic"] and record["split"]["validation_size"] == 0.25
    assert (tmp_path / "s3" / "adapter" / PROVENANCE_FILE).is_file()
    card = (tmp_path / "s3" / "merged" / "README.md").read_text()
    assert "## Training provenance" in card and "| stage3 | 42 |" in card  # the TrainingArguments default seed


def test_provenance_survives_export(windows, tmp_path):
    from e2llm.hub_cards import export_model
    from e2llm.training.provenance import stage_record, write_provenance

    model, processor = build_tiny_e2llm(seed=0)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    split = resolve_split(windows, SplitSpec("trial"))
    write_provenance(tmp_path / "model", [stage_record("stage3", windows, split, windows.select(split.train))])
    exported = export_model(tmp_path / "model", tmp_path / "export", repo_id="me/tiny")
    kept = json.loads((exported / PROVENANCE_FILE).read_text())
    assert kept == json.loads((tmp_path / "model" / PROVENANCE_FILE).read_text())
