"""`e2llm quickstart --eeg-encoder eegpt` end to end at a very small scale: a randomly initialised tiny EEGPT (no
download) through the three shipped stages and the evaluation; what a foundation encoder changes in the shipped
recipe (no linear probe, no evidence in the prompt) is in the commands it reports."""

from __future__ import annotations

import json

import pytest

from e2llm.training.quickstart import QuickstartRun, QuickstartSettings, run_quickstart
from e2llm.training.quickstart_report import results_table

SMOKE = {"n_subjects": 1, "trial_seconds": 8.0, "max_test_windows": 6, "batch_size": 6, "max_new_tokens": 24,
         "baselines": ("de_logreg",)}
OVERRIDES = {"stage1": ["--num_train_epochs", "1"], "stage2": ["--num_train_epochs", "0.25"],
             "stage3": ["--num_train_epochs", "0.5"]}
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


def test_quickstart_with_a_tiny_eegpt(tmp_path):
    from transformers import AutoModelForCausalLM, AutoProcessor

    report = run_quickstart(QuickstartRun(tmp_path, eeg_encoder="eegpt", settings=QuickstartSettings.from_file(**SMOKE),
                                          overrides=OVERRIDES))
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["command"].endswith("--eeg-encoder eegpt")
    for method in ("stage1_head", "e2llm/emotion", "de_logreg"):
        assert {"accuracy", "balanced_accuracy", "macro_f1"} <= set(saved["summary"][method])
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert model.config.eeg_config.backbone == "eegpt" and model.config.eeg_config.sampling_rate == 256
    processor = AutoProcessor.from_pretrained(tmp_path / "final")
    assert processor.feature_extractor.output_unit_uv == 1000.0 and processor.feature_extractor.reference == "average"
    assert processor.evidence_spread is None  # a re-referencing encoder gets no evidence line
    commands = saved["quickstart"]["runs"][0]["commands"]
    assert "--eeg-encoder eegpt" in commands["init"] and "--linear_probe_epochs 0" in commands["stage1"]
    assert "--evidence_in_prompt false --evidence_strongest None" in commands["stage3"]
    assert "stage-1 encoder head" in results_table(report)
