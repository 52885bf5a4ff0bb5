"""`e2llm quickstart` end to end at a very small scale (the full-size run is marked slow): the shipped configs run
through `e2llm train`'s code, the commands it reports reproduce its model exactly, and the report, cards and
provenance it writes."""

from __future__ import annotations

import json
import shlex
from argparse import Namespace

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from e2llm.training import quickstart
from e2llm.training.quickstart import CONFIGS, QuickstartRun, QuickstartSettings, run, run_quickstart
from e2llm.training.quickstart_report import results_table, timing_table
from e2llm.training.train import parse_stage_args

SMOKE = {"n_subjects": 1, "trial_seconds": 8.0, "max_test_windows": 6, "batch_size": 6, "max_new_tokens": 24,
         "baselines": ("de_logreg",)}
OVERRIDES = {"stage1": ["--num_train_epochs", "1", "--linear_probe_epochs", "1"],
             "stage2": ["--num_train_epochs", "0.25"], "stage3": ["--num_train_epochs", "0.5"]}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    output = tmp_path_factory.mktemp("quickstart")
    plan = QuickstartRun(output, settings=QuickstartSettings.from_file(**SMOKE), overrides=OVERRIDES)
    return output, run_quickstart(plan)


def test_quickstart_writes_model_report_and_tables(smoke):
    from transformers import AutoModelForCausalLM, AutoProcessor

    output, report = smoke
    saved = json.loads((output / "report.json").read_text())
    assert saved["split"]["n_test_windows"] == 6 and saved["split"]["kind"] == "trial"
    for method in ("stage1_head", "e2llm/emotion", "de_logreg"):
        assert {"accuracy", "balanced_accuracy", "macro_f1", "parse_rate"} <= set(saved["summary"][method])
        assert len(saved["summary"][method]["accuracy"]["ci"]) == 2
    assert set(saved["quickstart"]["runs"][0]["timings_seconds"]) == {"init", "stage1", "stage2", "stage3",
                                                                      "evaluation"}
    assert saved["synthetic"] is True and saved["dataset"] == "synthetic" and "explanations" in saved
    assert saved["command"] == f"e2llm quickstart --output-dir {output} --seeds 0 --protocol trial --max-test-windows 6"
    model = AutoModelForCausalLM.from_pretrained(output / "final")
    assert model.config.label_names == report["label_names"]
    assert AutoProcessor.from_pretrained(output / "final").num_eeg_tokens == model.config.num_eeg_tokens
    assert (output / "final" / "README.md").is_file() and (output / "stage3" / "merged").is_dir()
    assert not (output / "stage3" / "adapter").exists()  # stage 3 fine-tunes the tiny language model whole
    assert AutoProcessor.from_pretrained(output / "final").evidence_spread is not None  # measured evidence in prompts
    table = results_table(report)
    assert "stage-1 encoder head" in table and "DE + logistic regression" in table and "95% CI" in table
    assert "synthetic" in table and "answer changed when another class's input was swapped in" in table
    assert "rationales: faithfulness" in table and "shuffled across windows" in table
    assert saved["summary"]["e2llm/emotion"]["numbers_not_measured"]["mean"] == 0  # numbers come from measurement
    assert "0 numbers that are not the measured value" in table
    assert saved["explanations"]["eraser"] and saved["explanations"]["abstention"]["inputs"]
    assert "stage 2: description NLL with shuffled minus real EEG" in table
    timing = timing_table(report)
    assert "stage3" in timing and "trial fold 0 seed 0" in timing and "whole run" in timing


def test_the_quickstart_model_is_built_from_the_shipped_configs(smoke):
    """The encoder is eeg_config.yaml's (the config `e2llm init --tiny --eeg-config` reads); each stage ran with
    its YAML's values."""
    output, _ = smoke
    config = json.loads((output / "init" / "config.json").read_text())["eeg_config"]
    for key, value in yaml.safe_load((CONFIGS / "eeg_config.yaml").read_text()).items():
        assert config[key] == value, key
    stage3 = yaml.safe_load((CONFIGS / "stage3.yaml").read_text())
    arguments = torch.load(output / "stage3" / "merged" / "training_args.bin", weights_only=False)
    assert arguments.learning_rate == stage3["learning_rate"] and arguments.lr_scheduler_type == "cosine"
    assert arguments.num_train_epochs == float(OVERRIDES["stage3"][-1])  # the test's override on top of the YAML


def test_the_reported_commands_reproduce_the_quickstart_model_exactly(smoke, tmp_path):
    """`e2llm train stage3 --config training/configs/quickstart/stage3.yaml ...` after the quickstart's stages 1-2
    builds the same arguments and trains the same weights, bit for bit."""
    from e2llm.training.cli import main as cli_main

    output, report = smoke
    command = shlex.split(report["quickstart"]["runs"][0]["commands"]["stage3"])
    assert command[:5] == ["e2llm", "train", "stage3", "--config", str(CONFIGS / "stage3.yaml")]
    elsewhere = [tmp_path / "stage3" if part == str(output / "stage3") else part for part in command]
    args_quickstart = parse_stage_args("stage3", command[3:])
    args_train = parse_stage_args("stage3", [str(p) for p in elsewhere[3:]])
    def fields(arguments):
        values = arguments.to_dict() if hasattr(arguments, "to_dict") else vars(arguments)
        return {k: v for k, v in values.items() if k not in ("output_dir", "logging_dir")}

    for ours, theirs in zip(args_quickstart, args_train):
        assert fields(ours) == fields(theirs)
    assert cli_main([str(p) for p in elsewhere[1:]]) == 0
    expected, got = load_file(output / "stage3" / "merged" / "model.safetensors"), load_file(
        tmp_path / "stage3" / "merged" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_quickstart_model_carries_provenance_and_honest_cards(smoke):
    from e2llm.hub_cards import build_dataset_card
    from e2llm.processing.dataset_io import load_prepared
    from e2llm.processing.splits import SplitSpec, resolve_split
    from e2llm.training.provenance import read_provenance

    output, _ = smoke
    provenance = read_provenance(output / "final")
    assert [r["stage"] for r in provenance["stages"]] == ["stage1", "stage2", "stage3"]
    dataset = load_prepared(output / "prepared")
    split = resolve_split(dataset, SplitSpec("trial", validation_size=0.15))  # the shipped stages' split
    keys = lambda rows: {tuple(int(v) for v in k) for k in np.asarray(dataset.select(rows).select_columns(  # noqa: E731
        ["subject", "session", "trial"]).to_pandas())}
    for record in provenance["stages"]:  # every stage held out the same validation trials (stage 3 calibrates on them)
        assert {tuple(k) for k in record["train_keys"]} == keys(split.train)
        assert {tuple(k) for k in record["validation_keys"]} == keys(split.validation) != set()
    card = (output / "final" / "README.md").read_text()
    assert "Synthetic data" in card and "## Training provenance" in card and "Reproduce these figures" in card
    assert "SEED-VII" not in card.split("## Evaluation")[1]
    dataset_card = str(build_dataset_card(output / "prepared"))
    assert "Synthetic data" in dataset_card and "SEED-VII" not in dataset_card


def test_evaluating_the_quickstart_model_on_its_training_trials_is_refused(smoke, tmp_path, capsys):
    from e2llm.training.cli import main as cli_main

    output, _ = smoke
    code = cli_main(["evaluate", "--model", str(output / "final"), "--data", str(output / "prepared"), "--split",
                     "trial", "--split-seed", "1", "--output-dir", str(tmp_path / "eval"), "--device", "cpu"])
    assert code == 2
    message = capsys.readouterr().err
    assert "evaluation trials" in message and "stage1 train" in message and "--split-seed 0" in message


def test_quickstart_on_prepared_data_prints_the_tables(smoke, tmp_path, capsys, monkeypatch):
    output, _ = smoke
    settings = QuickstartSettings.from_file
    monkeypatch.setattr(QuickstartSettings, "from_file", classmethod(
        lambda cls, path, **kw: settings(path, **{**SMOKE, **kw, "max_test_windows": 6})))
    monkeypatch.setattr(quickstart, "QuickstartRun", lambda *a, **kw: QuickstartRun(*a, **kw, overrides=OVERRIDES))
    args = Namespace(output_dir=tmp_path, data=output / "prepared", seeds=[1], protocol="trial", full=False,
                     on_validation=False, baselines=["de_logreg"], max_test_windows=6, eeg_encoder="patch")
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "E2LLM answer (generated)" in printed and "example answer" in printed and "reproduce: e2llm" in printed
    assert "e2llm train stage3 --config" in printed and "time per part" in printed
    assert not (tmp_path / "raw").exists()  # --data skips the synthetic files
    assert json.loads((tmp_path / "report.json").read_text())["runs"][0]["seed"] == 1


def test_on_validation_never_reads_the_test_trials(smoke, tmp_path):
    from e2llm.processing.dataset_io import load_prepared
    from e2llm.processing.splits import SplitSpec, resolve_split, trial_keys

    output, _ = smoke
    plan = QuickstartRun(tmp_path, data=output / "prepared", on_validation=True,
                         settings=QuickstartSettings.from_file(**SMOKE), overrides=OVERRIDES)
    report = run_quickstart(plan)
    full = load_prepared(output / "prepared")
    test = {tuple(k) for k in trial_keys(full.select(resolve_split(full, SplitSpec("trial")).test))}
    used = {tuple(k) for k in trial_keys(load_prepared(tmp_path / "prepared-validation"))}
    assert used and not used & test
    assert report["quickstart"]["on_validation"] and "validation trials" in results_table(report)


@pytest.mark.slow
def test_full_quickstart_beats_chance(tmp_path):
    report = run_quickstart(QuickstartRun(tmp_path))
    chance = 1 / len(report["label_names"])
    llm = report["summary"]["e2llm/emotion"]["accuracy"]["mean"]
    assert llm > chance + 0.15
    assert abs(llm - report["summary"]["stage1_head"]["accuracy"]["mean"]) <= 0.10


def test_tasks_follow_the_label_set():
    from e2llm.training.quickstart import supported_tasks

    tasks = ("emotion", "multitask", "scenario")
    assert supported_tasks(tasks, ["sadness", "neutral", "happiness"], ["eeg", "emotion"]) == tasks
    assert supported_tasks(tasks, ["low", "high"], ["eeg", "emotion"]) == ("emotion",)
    assert supported_tasks(tasks, ["low", "high"], ["eeg", "emotion", "valence", "arousal"]) == ("emotion", "multitask")


def test_the_results_table_shows_the_evaluations_conflict_tests():
    """The evaluation's conflict tests and label consistency (`report["explanations"]`) get their lines."""
    stats = {"mean": 0.5, "std": 0.0, "ci": [0.4, 0.6]}
    summary = {"e2llm/emotion": {"accuracy": stats, "balanced_accuracy": stats, "macro_f1": stats,
                                 "parse_rate": stats}}
    protocol = {"split": {"n_test_trials": 4, "n_test_windows": 8}, "summary": summary, "n_replicates": 1,
                "label_names": ["a", "b"], "dataset": "synthetic", "synthetic": True,
                "explanations": {"conflicts": {"eeg_tokens": {"changed_answer": {"mean": 0.625}},
                                               "emotion_token": {"changed_answer": {"mean": 0.25}}},
                                 "rationale": {"label_consistency": {"mean": 0.9},
                                               "shuffled_label_consistency": {"mean": 0.2}}}}
    table = results_table({"protocols": {"trial": protocol}})
    assert "answer changed when another class's input was swapped in: EEG tokens 0.625, emotion token 0.250" in table
    assert "label consistency 0.900 (shuffled 0.200)" in table


def test_a_copied_recipe_folder_is_the_one_used(tmp_path):
    """`--configs DIR`: the quickstart's commands read the stages and the model from that folder."""
    import shutil
    from pathlib import Path

    from e2llm.processing.splits import SplitSpec
    from e2llm.training.quickstart import run_commands

    recipe = Path(shutil.copytree(CONFIGS, tmp_path / "recipe"))
    stage3 = recipe / "stage3.yaml"
    stage3.write_text(stage3.read_text().replace("learning_rate: 3.0e-3", "learning_rate: 1.0e-3"))
    commands = run_commands(tmp_path / "run", tmp_path / "data", SplitSpec(), 0, ["a", "b"], "patch", {}, recipe)
    assert commands["init"][-1] == str(recipe / "eeg_config.yaml")
    _, training_args, _ = parse_stage_args("stage3", commands["stage3"][2:])
    assert training_args.learning_rate == 1e-3
    plan = QuickstartRun(tmp_path, configs=recipe)
    assert plan.command().endswith(f"--configs {recipe}")
