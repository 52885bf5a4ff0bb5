"""Validation is carved from the training side only, every Trainer evaluates on it (never on the test split), and
every stage writes the provenance that `e2llm evaluate` checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from e2llm import build_tiny_e2llm
from e2llm.processing.dataset_io import load_prepared, save_prepared
from e2llm.processing.splits import SplitSpec, resolve_split, trial_keys
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training import stage1, stage2, stage3
from e2llm.training.arguments import Stage1Config
from e2llm.training.provenance import PROVENANCE_FILE, read_provenance, stage_record, write_provenance
from e2llm.training.stage_data import check_validation, stage_data

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


def _evaluated_keys(trainer, windows) -> set:
    """The trial keys of the windows a trainer's eval rows point at (rows index `StageData.windows()`)."""
    return {tuple(k) for k in trial_keys(windows.select(np.asarray(trainer.eval_dataset["window"]).tolist()
                                                        if hasattr(trainer.eval_dataset, "column_names")
                                                        else trainer.eval_dataset.columns["window"].tolist()))}


def test_every_trainer_evaluates_on_validation_never_on_test(windows, tmp_path):
    prepared = save_prepared(windows, tmp_path / "prepared")
    dataset = load_prepared(prepared)
    data = stage_data(dataset, SplitSpec("trial", test_size=0.25, validation_size=0.25))
    validation, test = _keys(data.validation), _keys(dataset, data.split.test)
    model, processor = build_tiny_e2llm(id2label=dict(enumerate(data.label_names)), seed=0)
    model.save_pretrained(tmp_path / "init")
    processor.save_pretrained(tmp_path / "init")
    common = {"dataset_path": str(prepared), "validation_size": 0.25, "max_steps": 1, "report_to": [],
              "save_strategy": "no", "disable_tqdm": True, "eval_strategy": "steps", "eval_steps": 1,
              "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "use_cpu": True}
    sft = {"bf16": False, "max_length": None, "activation_checkpointing": False}
    trainers = [
        stage1.main(*stage1.make_parser().parse_dict({**common, "model_name_or_path": str(tmp_path / "init"),
                                                       "output_dir": str(tmp_path / "s1")})),
        stage2.main(*stage2.make_parser().parse_dict({**common, **sft, "model_name_or_path": str(tmp_path / "init"),
                                                       "encoder_name_or_path": str(tmp_path / "s1"),
                                                       "output_dir": str(tmp_path / "s2")})),
        stage3.main(*stage3.make_parser().parse_dict({**common, **sft, "model_name_or_path": str(tmp_path / "s2"),
                                                       "use_peft": True, "lora_r": 2, "output_dir": str(tmp_path / "s3")})),
    ]
    for trainer in trainers:
        evaluated = _evaluated_keys(trainer, data.windows())
        assert evaluated == validation and not evaluated & test
        assert any("eval_loss" in entry for entry in trainer.state.log_history)

    provenance = read_provenance(tmp_path / "s3" / "merged")
    assert [r["stage"] for r in provenance["stages"]] == ["stage1", "stage2", "stage3"]
    for record in provenance["stages"]:
        assert {tuple(k) for k in record["validation_keys"]} == validation
        assert {tuple(k) for k in record["train_keys"]} == _keys(data.train)
        assert record["dataset"]["synthetic"] and record["split"]["validation_size"] == 0.25
    assert (tmp_path / "s3" / "adapter" / PROVENANCE_FILE).is_file()
    assert json.loads((tmp_path / "s2" / "alignment.json").read_text())["n_windows"] == len(data.validation)


def test_provenance_survives_export(windows, tmp_path):
    from e2llm.hub_cards import export_model

    model, processor = build_tiny_e2llm(seed=0)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    split = resolve_split(windows, SplitSpec("trial"))
    write_provenance(tmp_path / "model", [stage_record("stage3", windows, split, windows.select(split.train))])
    exported = export_model(tmp_path / "model", tmp_path / "export", repo_id="me/tiny")
    kept = json.loads((exported / PROVENANCE_FILE).read_text())
    assert kept == json.loads((tmp_path / "model" / PROVENANCE_FILE).read_text())


def test_stage3_refuses_guidance_weights_it_cannot_use(windows, tmp_path):
    prepared = save_prepared(windows, tmp_path / "prepared")
    labels = stage_data(load_prepared(prepared), SplitSpec("trial")).label_names
    model, processor = build_tiny_e2llm(id2label=dict(enumerate(labels)), seed=0)
    assert not model.config.eeg_config.emotion_token
    model.save_pretrained(tmp_path / "init")
    processor.save_pretrained(tmp_path / "init")
    args = {"dataset_path": str(prepared), "validation_size": 0.25, "max_steps": 1, "report_to": [], "use_cpu": True,
            "model_name_or_path": str(tmp_path / "init"), "output_dir": str(tmp_path / "s3"), "bf16": False,
            "label_guidance_weights": [1.0, 4.0]}
    with pytest.raises(ValueError, match="encoder has none .eeg_config.emotion_token is false.: leave "
                                         "--label_guidance_weights empty"):
        stage3.main(*stage3.make_parser().parse_dict(args))
    with pytest.raises(ValueError, match="label_guidance_weights must be finite numbers >= 0"):
        stage3.make_parser().parse_dict({**args, "label_guidance_weights": [-1.0]})
