"""`e2llm quickstart --eeg-encoder eegpt` end to end at a very small scale: a randomly initialised tiny EEGPT (no
download) through the three stages and the evaluation."""

from __future__ import annotations

import json

import pytest

from e2llm.training.quickstart import QuickstartRecipe, results_table, run_quickstart

SMOKE = QuickstartRecipe(n_subjects=1, trial_seconds=8.0, stage1_linear_probe_epochs=1, stage1_epochs=1,
                         stage2_epochs=0.25, stage3_epochs=0.5,
                         stage3_batch_size=8, max_test_windows=6, eval_batch_size=6, max_new_tokens=24,
                         baselines=("de_logreg",), eeg_encoder="eegpt")
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


def test_quickstart_with_a_tiny_eegpt(tmp_path):
    from transformers import AutoModelForCausalLM, AutoProcessor

    report = run_quickstart(tmp_path, recipe=SMOKE)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["command"].endswith("--eeg-encoder eegpt")
    for method in ("stage1_head", "e2llm/emotion", "de_logreg"):
        assert {"accuracy", "balanced_accuracy", "macro_f1"} <= set(saved["summary"][method])
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert model.config.eeg_config.backbone == "eegpt" and model.config.eeg_config.sampling_rate == 256
    processor = AutoProcessor.from_pretrained(tmp_path / "final")
    assert processor.feature_extractor.output_unit_uv == 1000.0 and processor.feature_extractor.reference == "average"
    table = results_table(report)
    assert "stage-1 encoder head" in table
    print(f"\n{table}\nwall time {report['quickstart']['total_seconds']} s {report['quickstart']['runs'][0]['timings_seconds']}")
