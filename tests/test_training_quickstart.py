"""`e2llm quickstart` end to end at a very small scale (the full-size run is marked slow)."""

from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pytest

from e2llm.training.quickstart import QuickstartRecipe, results_table, run, run_quickstart

SMOKE = QuickstartRecipe(n_subjects=1, trial_seconds=8.0, stage1_linear_probe_epochs=1, stage1_epochs=1,
                         stage2_epochs=0.25, stage3_epochs=0.5,
                         stage3_batch_size=8, max_test_windows=6, eval_batch_size=6, max_new_tokens=24,
                         baselines=("de_logreg",))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    output = tmp_path_factory.mktemp("quickstart")
    return output, run_quickstart(output, recipe=SMOKE)


def test_quickstart_writes_model_report_and_table(smoke):
    from transformers import AutoModelForCausalLM, AutoProcessor

    output, report = smoke
    saved = json.loads((output / "report.json").read_text())
    assert saved["split"]["n_test_windows"] == 6 and saved["split"]["kind"] == "trial"
    for method in ("stage1_head", "e2llm/emotion", "de_logreg"):
        assert {"accuracy", "balanced_accuracy", "macro_f1", "parse_rate"} <= set(saved["summary"][method])
        assert len(saved["summary"][method]["accuracy"]["ci"]) == 2
    assert set(saved["quickstart"]["runs"][0]["timings_seconds"]) == {"stage1", "stage2", "stage3", "evaluation"}
    assert saved["synthetic"] is True and saved["dataset"] == "synthetic" and "reliance" in saved
    assert saved["command"] == f"e2llm quickstart --output-dir {output} --seeds 0 --protocol trial --max-test-windows 6"
    model = AutoModelForCausalLM.from_pretrained(output / "final")
    assert model.config.label_names == report["label_names"]
    assert AutoProcessor.from_pretrained(output / "final").num_eeg_tokens == model.config.num_eeg_tokens
    assert (output / "final" / "README.md").is_file() and (output / "stage3" / "merged").is_dir()
    assert not (output / "stage3" / "adapter").exists()  # stage 3 fine-tunes the tiny language model whole
    assert AutoProcessor.from_pretrained(output / "final").evidence_spread is not None  # measured evidence in prompts
    table = results_table(report)
    assert "stage-1 encoder head" in table and "DE + logistic regression" in table and "95% CI" in table
    assert "synthetic" in table and "mismatched EEG" in table
    assert "rationales: faithfulness" in table and "shuffled across windows" in table
    assert "stage 2: description NLL with shuffled minus real EEG" in table


def test_quickstart_model_carries_provenance_and_honest_cards(smoke):
    from e2llm.hub_cards import build_dataset_card
    from e2llm.processing.dataset_io import load_prepared
    from e2llm.training.evaluation.splits import SplitSpec, resolve_split
    from e2llm.training.provenance import read_provenance

    output, _ = smoke
    provenance = read_provenance(output / "final")
    assert [r["stage"] for r in provenance["stages"]] == ["stage1", "stage2", "stage3"]
    dataset = load_prepared(output / "prepared")
    split = resolve_split(dataset, SplitSpec("trial", test_size=SMOKE.test_size, seed=SMOKE.split_seed))
    trained = {tuple(k) for k in provenance["stages"][-1]["train_keys"]}
    assert trained == {tuple(k) for k in np.asarray(dataset.select(split.train).select_columns(
        ["subject", "session", "trial"]).to_pandas())}
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


def test_quickstart_on_prepared_data_prints_the_table(smoke, tmp_path, capsys, monkeypatch):
    output, _ = smoke
    import e2llm.training.quickstart as quickstart

    monkeypatch.setattr(quickstart, "QuickstartRecipe", lambda **kw: QuickstartRecipe(**{**vars(SMOKE), **kw}))
    args = Namespace(output_dir=str(tmp_path), data=str(output / "prepared"), seeds=[1], protocol="trial",
                     baselines=["de_logreg"], max_test_windows=6)
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "E2LLM answer (generated)" in printed and "example answer" in printed and "reproduce: e2llm" in printed
    assert not (tmp_path / "raw").exists()  # --data skips the synthetic files
    assert json.loads((tmp_path / "report.json").read_text())["runs"][0]["seed"] == 1


@pytest.mark.slow
def test_full_quickstart_beats_chance(tmp_path):
    report = run_quickstart(tmp_path)
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
