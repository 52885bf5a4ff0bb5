"""`e2llm quickstart` end to end at a very small scale (the full-size run is marked slow)."""

from __future__ import annotations

import json
from argparse import Namespace

import pytest

from e2llm.training.quickstart import QuickstartRecipe, results_table, run, run_quickstart

SMOKE = QuickstartRecipe(n_subjects=1, trial_seconds=8.0, stage1_epochs=1, stage2_epochs=0.25, stage3_epochs=0.5,
                         stage3_batch_size=8, max_test_windows=6, eval_batch_size=6, max_new_tokens=24)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    output = tmp_path_factory.mktemp("quickstart")
    return output, run_quickstart(output, recipe=SMOKE)


def test_quickstart_writes_model_report_and_table(smoke):
    from transformers import AutoModelForCausalLM, AutoProcessor

    output, report = smoke
    saved = json.loads((output / "report.json").read_text())
    assert saved["split"]["n_test_windows"] == 6 and saved["split"]["kind"] in ("trial", "given", "given indices")
    for method in ("e2llm/emotion", "de_logreg"):
        assert {"accuracy", "balanced_accuracy", "macro_f1", "parse_rate"} <= set(saved["summary"][method])
    assert {"accuracy", "balanced_accuracy", "macro_f1"} <= set(saved["stage1_head"])
    assert set(saved["quickstart"]["timings_seconds"]) == {"data", "stage1", "stage2", "stage3", "evaluation"}
    model = AutoModelForCausalLM.from_pretrained(output / "final")
    assert model.config.label_names == report["label_names"]
    assert AutoProcessor.from_pretrained(output / "final").num_eeg_tokens == model.config.num_eeg_tokens
    assert (output / "final" / "README.md").is_file() and (output / "stage3" / "adapter").is_dir()
    table = results_table(report)
    assert "stage-1 encoder head" in table and "DE + logistic regression" in table and "parse rate" in table


def test_quickstart_on_prepared_data_prints_the_table(smoke, tmp_path, capsys, monkeypatch):
    output, _ = smoke
    import e2llm.training.quickstart as quickstart

    monkeypatch.setattr(quickstart, "QuickstartRecipe", lambda **kw: QuickstartRecipe(**{**vars(SMOKE), **kw}))
    assert run(Namespace(output_dir=str(tmp_path), data=str(output / "prepared"), seed=1, max_test_windows=6)) == 0
    printed = capsys.readouterr().out
    assert "E2LLM answer (generated)" in printed and "example answer" in printed
    assert not (tmp_path / "raw").exists()  # --data skips the synthetic files


@pytest.mark.slow
def test_full_quickstart_beats_chance(tmp_path):
    report = run_quickstart(tmp_path)
    chance = 1 / len(report["label_names"])
    llm = report["summary"]["e2llm/emotion"]["accuracy"]["mean"]
    assert llm > chance + 0.15
    assert abs(llm - report["stage1_head"]["accuracy"]) <= 0.10


def test_tasks_follow_the_label_set():
    from e2llm.training.quickstart import supported_tasks

    tasks = ("emotion", "multitask", "scenario")
    assert supported_tasks(tasks, ["sadness", "neutral", "happiness"], ["eeg", "emotion"]) == tasks
    assert supported_tasks(tasks, ["low", "high"], ["eeg", "emotion"]) == ("emotion",)
    assert supported_tasks(tasks, ["low", "high"], ["eeg", "emotion", "valence", "arousal"]) == ("emotion", "multitask")
