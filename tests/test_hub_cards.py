"""Model, adapter and dataset cards: metadata that parses with huggingface_hub, content read from the saved files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from huggingface_hub import DatasetCard, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from e2llm.evidence_statistics_e2llm import FEATURE_IDS
from e2llm.hub_cards import build_dataset_card, build_model_card, write_model_card
from e2llm.hub_cards.cards import CARD_INPUTS_FILE, card_inputs, evaluation_rows, hub_id_or_none

REPORT = {
    "dataset": "SEED-VII",
    "split": "leave-one-subject-out",
    "metrics": {
        "accuracy": 0.4125,
        "balanced_accuracy": 0.3875,
        "macro_f1": 0.371,
        "parse_rate": 0.95,
        "per_class": {"fear": {"accuracy": 0.9}},
        "confusion_matrix": [[1, 0], [0, 1]],
    },
    "baselines": {"de_logistic_regression": {"accuracy": 0.35, "balanced_accuracy": 0.33, "macro_f1": 0.3}},
}


@pytest.fixture(scope="module")
def model_dir(tiny_e2llm_dir, tmp_path_factory):
    """A copy of the tiny model folder with a non-default feature extractor and a Qwen name in the text config."""
    folder = tmp_path_factory.mktemp("card_model") / "e2llm-tiny"
    shutil.copytree(tiny_e2llm_dir, folder)
    processor_config = json.loads((folder / "processor_config.json").read_text())
    processor_config["feature_extractor"].update(
        h_freq=45.0, notch_freqs=[60.0], window_seconds=2.0, window_stride_seconds=1.0, reference="average"
    )
    (folder / "processor_config.json").write_text(json.dumps(processor_config))
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["_name_or_path"] = "Qwen/Qwen3-0.6B"
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _parse(card) -> ModelCard:
    """Reparse the rendered text the way the Hub's client reads a README."""
    return ModelCard(str(card))


def test_model_card_metadata_parses_and_validates(model_dir):
    card = _parse(build_model_card(model_dir, report=REPORT, datasets=["seed_vii"], license="apache-2.0"))
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "other"  # a Hub task id; "eeg-emotion" is not one
    assert {"eeg", "emotion-recognition", "custom_code", "qwen3"} <= set(data.tags)
    assert data.base_model == "Qwen/Qwen3-0.6B"  # read from the saved text config
    assert data.license == "apache-2.0"
    # model-index: the model's metrics only, baselines kept out, round-tripping through huggingface_hub's parser
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == "e2llm-tiny"
    by_type = {r.metric_type: r.metric_value for r in results}
    assert by_type == {"accuracy": 0.4125, "balanced_accuracy": 0.3875, "f1": 0.371, "parse_rate": 0.95}
    assert {r.dataset_name for r in results} == {"SEED-VII"}
    assert {r.dataset_split for r in results} == {"leave-one-subject-out"}
    assert "0.3500" in card.text and "(baseline)" in card.text  # the baseline is in the table
    metadata = yaml.safe_load(str(card).split("---")[1])
    assert metadata["model-index"][0]["results"][0]["task"]["type"] == "other"


def test_model_card_states_the_saved_preprocessing_contract(model_dir):
    text = _parse(build_model_card(model_dir)).text
    assert "| band-pass | 0.1 – 45.0 Hz" in text
    assert "| notch | 60.0 Hz |" in text
    assert "| reference | average |" in text
    assert "2.0 s every 1.0 s" in text
    assert "200 Hz" in text
    assert "Not a medical device and not a diagnosis" in text
    for label in ("happiness", "sadness", "surprise"):
        assert label in text
    assert "| measured evidence |" not in text  # the tiny model's prompts carry none


def test_model_card_states_the_evidence_line_of_the_prompts(model_dir, tmp_path):
    folder = tmp_path / "with_evidence"
    shutil.copytree(model_dir, folder)
    processor_config = json.loads((folder / "processor_config.json").read_text())
    processor_config.update(evidence_spread=[1.0] * 31, evidence_strongest=4)
    (folder / "processor_config.json").write_text(json.dumps(processor_config))
    text = _parse(build_model_card(folder)).text
    assert "| measured evidence |" in text and "the 4 largest band-power deviations first" in text
    assert "a single window without one is refused" in text  # an older folder: spreads, no shipped reference
    reference = {"Fz": [1.0, 2.0, 3.0, 4.0, 5.0]}
    processor_config = {k: v for k, v in processor_config.items() if not k.startswith("evidence_")}
    processor_config["evidence_statistics"] = {
        "feature_ids": list(FEATURE_IDS), "spread": [1.0] * len(FEATURE_IDS),
        "reference_power_db": reference, "prompt": {"evidence_in_prompt": True, "strongest": 4}}
    (folder / "processor_config.json").write_text(json.dumps(processor_config))
    text = _parse(build_model_card(folder)).text
    assert "measured against the reference the model ships" in text and "without one is refused" not in text


def test_model_card_states_the_emotion_token(model_dir, tmp_path):
    assert "emotion reading" not in _parse(build_model_card(model_dir)).text  # the tiny model has none
    folder = tmp_path / "with_emotion_token"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["eeg_config"]["emotion_token"] = True
    (folder / "config.json").write_text(json.dumps(config))
    text = " ".join(_parse(build_model_card(folder)).text.split())
    assert f"The last of the {config['num_eeg_tokens']} EEG tokens of a window is the encoder's emotion reading" in text


def test_model_card_states_where_the_label_probabilities_come_from(model_dir, tmp_path):
    text = " ".join(_parse(build_model_card(model_dir)).text.split())
    assert "come from **the language model** (`config.label_probabilities`, temperature 1.00); not calibrated" in text
    folder = tmp_path / "calibrated"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["eeg_config"]["emotion_token"] = True
    config.update(label_probabilities="emotion_head", head_temperature=1.5, label_temperature=3.0, label_calibration={
        "chosen": "emotion_head", "n_windows": 90, "rule": "the head unless the language model is better",
        "comparison": {"difference": 0.031, "ci_low": -0.012, "ci_high": 0.07, "p_value": 0.2, "n_trials": 18},
        "sources": {"language_model": {"temperature": 3.0, "ece": 0.08}, "emotion_head": {"temperature": 1.5,
                                                                                          "ece": 0.05}}})
    (folder / "config.json").write_text(json.dumps(config))
    text = " ".join(_parse(build_model_card(folder)).text.split())
    assert ("come from **the emotion head** (`config.label_probabilities`, temperature 1.50), chosen on 90 validation "
            "windows: the emotion head's unless the language model's log-likelihood of the true labels is higher "
            "beyond noise (language model minus head +0.031 per window, 95% interval over validation trials [-0.012, "
            "+0.070]); expected calibration error after temperature scaling: language model 0.080 at temperature "
            "3.00, emotion head 0.050 at temperature 1.50") in text
    assert "The answer's label is the language model's alone." in text
    config.update(label_guidance_weight=4.0)
    config["label_calibration"]["label_guidance"] = {"weight": 4.0, "weights": {
        "0": {"balanced_accuracy": 0.721}, "4": {"balanced_accuracy": 0.771}}}
    (folder / "config.json").write_text(json.dumps(config))
    text = " ".join(_parse(build_model_card(folder)).text.split())
    assert ("written by the language model with the emotion head's log-probabilities, times 4, added at the label's "
            "tokens (`config.label_guidance_weight`, chosen by balanced accuracy on the validation windows: 0 0.721, 4 "
            "0.771; 0 is the language model alone): both the language model and the stage-1 head decide it") in text
    config.update(label_decision="emotion_head")
    config["label_calibration"]["label_guidance"].update(
        head_decides={"balanced_accuracy": 0.760}, decided_by="emotion_head",
        decision={"difference": 0.011, "ci_low": -0.02, "ci_high": 0.04, "level": 1 - 0.05 / 6, "p_value": 0.5})
    (folder / "config.json").write_text(json.dumps(config))
    text = " ".join(_parse(build_model_card(folder)).text.split())
    assert ("**The answer's label is the stage-1 emotion head's**, not the language model's (`config.label_decision` "
            "\"emotion_head\"): the head decides unless the language model's answers are better beyond the noise of "
            "the validation trials, and on the validation windows they were not (balanced accuracy with the head "
            "deciding 0.760; the language model's at each guidance weight tried: 0 0.721, 4 0.771; 0 is the language "
            "model alone; the best weight's minus the head's +0.011, 99.2% interval over validation trials (95% corrected "
            "for the weights tried) [-0.020, +0.040])") in text
    assert "both the language model and the stage-1 head decide it" not in text
    config["label_calibration"]["label_guidance"]["decision"]["resampled"] = "subjects, then their trials"
    (folder / "config.json").write_text(json.dumps(config))  # validation subjects held out: resampled too
    text = " ".join(_parse(build_model_card(folder)).text.split())
    assert "99.2% interval over validation subjects and their trials (95% corrected for the weights tried)" in text


def test_model_card_without_report_claims_no_score(model_dir):
    card = _parse(build_model_card(model_dir))
    assert "model-index" not in card.data.to_dict()
    assert "no score is claimed" in card.text
    assert "does not state which stages" in card.text


def test_model_card_datasets_training_recipe_and_quickstart(model_dir, tmp_path):
    stage3 = tmp_path / "stage3.yaml"
    stage3.write_text(
        yaml.safe_dump({"learning_rate": 2e-4, "output_dir": str(tmp_path / "runs" / "stage3")})
    )
    summary = {
        "dataset": "seed_vii",
        "n_subjects": 3,
        "n_trials": 12,
        "n_windows": 240,
        "metadata": {
            "channel_names": ["Fp1", "Fz", "Cz", "Oz"],
            "label_names": ["fear", "neutral"],
            "sampling_rate": 200,
            "window_seconds": 4.0,
        },
    }
    card = build_model_card(
        model_dir,
        training={"stage3": stage3, "stage1": {"epochs": 2}},
        datasets=[summary],
        repo_id="me/e2llm-tiny",
    )
    text = card.text
    assert "### stage3" in text and "learning_rate: 0.0002" in text and "epochs: 2" in text
    assert str(tmp_path) not in str(card)  # local paths are redacted
    assert "<local>/stage3" in text
    assert "SEED-VII" in text and "Fp1 Fz Cz Oz" in text and "BCMI (SJTU) licence" in text
    quickstart = text.split("```python\n")[1].split("```")[0]
    compile(quickstart, "quickstart", "exec")
    assert 'model_id = "me/e2llm-tiny"' in quickstart
    assert '"Fp1", "Fz", "Cz", "Oz"' in quickstart  # the example uses the training montage
    assert 'pipeline("eeg-emotion", model=model_id, trust_remote_code=True)' in quickstart


def test_write_model_card_records_its_inputs(model_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    report_path = tmp_path / "report.json"
    report_path.write_text(json.dumps(REPORT))
    path = write_model_card(
        folder,
        report=report_path,
        training={"stage1": {"lr": 1e-3, "data": str(tmp_path)}},
        base_model="Qwen/Qwen3-0.6B",
        datasets=["seed_vii"],
    )
    assert path == folder / "README.md"
    assert ModelCard.load(path).data.eval_results[0].metric_value == 0.4125
    recorded = card_inputs(folder)
    assert recorded["report"]["metrics"]["accuracy"] == 0.4125
    assert recorded["base_model"] == "Qwen/Qwen3-0.6B"
    assert str(tmp_path) not in (folder / CARD_INPUTS_FILE).read_text()


def test_report_rows_are_tolerant_of_layout():
    nested = {
        "dataset": {"name": "SEED"},
        "protocol": "cross-subject",
        "tasks": {"basic": {"accuracy": 0.5, "macro_f1": 0.4}, "multi_task": {"balanced_accuracy": 0.45}},
        "baseline_eegnet": {"accuracy": 0.3},
    }
    rows = evaluation_rows(nested)
    names = {(r["name"], r["baseline"]) for r in rows}
    assert names == {("tasks / basic", False), ("tasks / multi_task", False), ("baseline_eegnet", True)}
    assert {r["dataset"] for r in rows} == {"SEED"} and {r["split"] for r in rows} == {"cross-subject"}
    assert evaluation_rows(None) == [] and evaluation_rows({"n_windows": 3}) == []


def test_bad_card_inputs_raise_clear_errors(model_dir, tmp_path):
    with pytest.raises(ValueError, match="Hub repo id"):
        build_model_card(model_dir, base_model="/abs/local/qwen")
    with pytest.raises(ValueError, match="not found"):
        build_model_card(model_dir, report=tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not found"):
        build_model_card(model_dir, training={"stage1": tmp_path / "missing.yaml"})
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(model_dir / "config.json", bare / "config.json")
    with pytest.raises(ValueError, match="no saved feature extractor"):
        build_model_card(bare)
    with pytest.raises(ValueError, match="no config.json"):
        build_model_card(tmp_path)
    assert hub_id_or_none("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert hub_id_or_none("/home/me/qwen") is None and hub_id_or_none("") is None


def test_dataset_card_from_prepared_folder(tmp_path):
    from e2llm.processing.dataset_io import save_prepared, windows_to_dataset

    metadata = {
        "dataset": "seed_vii",
        "sampling_rate": 200,
        "channel_names": ["Fp1", "Fz", "Cz"],
        "units": "uV",
        "label_column": "emotion",
        "label_names": ["happiness", "sadness"],
        "window_seconds": 1.0,
        "stride_seconds": 1.0,
        "preprocessing": {"l_freq": 0.1, "h_freq": 70.0},
        "source": {"reader": "SEEDVIIReader", "root": str(tmp_path / "raw")},
    }
    rng = np.random.default_rng(0)
    chunks = [
        {
            "eeg": rng.standard_normal((2, 3, 200)).astype(np.float32),
            "start": np.array([0.0, 1.0]),
            "emotion": trial % 2,
            "subject": 1,
            "session": 1,
            "trial": trial,
        }
        for trial in range(4)
    ]
    folder = save_prepared(
        windows_to_dataset(chunks, metadata, cache_dir=tmp_path / "cache"), tmp_path / "prepared"
    )
    card = DatasetCard(str(build_dataset_card(folder, repo_id="me/seed-vii-windows")))
    assert {"eeg", "emotion-recognition"} <= set(card.data.tags)
    assert card.data.license == "other"
    assert "| windows | 8 |" in card.text and "| trials | 4 |" in card.text
    assert "Fp1 Fz Cz" in card.text and "BCMI (SJTU) licence" in card.text
    assert "never by window" in card.text
    assert str(tmp_path) not in str(card)
    with pytest.raises(ValueError, match="not a prepared e2llm dataset"):
        build_dataset_card(tmp_path / "cache")


def test_card_reads_the_report_of_e2llm_evaluate(model_dir, tmp_path):
    """`e2llm evaluate` writes mean ± std over runs per method under "summary"; baselines are the other methods."""
    from e2llm.training.evaluation.metrics import aggregate_runs

    runs = [
        {"accuracy": 0.40, "balanced_accuracy": 0.38, "macro_f1": 0.36, "parse_rate": 1.0, "ece": 0.1},
        {"accuracy": 0.44, "balanced_accuracy": 0.40, "macro_f1": 0.38, "parse_rate": 0.9, "ece": 0.2},
    ]
    report = {
        "model": "e2llm",
        "dataset": "seed_vii",
        "label_names": ["fear", "neutral"],
        "split": {"kind": "trial", "fold": 0, "test_size": 0.25, "n_test_windows": 40},
        "summary": {
            "e2llm/emotion": aggregate_runs(runs),
            "de_logreg": aggregate_runs([{"accuracy": 0.30, "balanced_accuracy": 0.29, "macro_f1": 0.28}]),
        },
        "runs": [{"seed": 0, "methods": {"e2llm/emotion": runs[0]}}],
        "files": {"json": str(tmp_path / "eval" / "report.json")},
    }
    card = _parse(build_model_card(model_dir, report=report))
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert {r.metric_type: r.metric_value for r in results} == {
        "accuracy": 0.42,
        "balanced_accuracy": 0.39,
        "f1": 0.37,
        "parse_rate": 0.95,
    }
    assert {(r.dataset_name, r.dataset_split) for r in results} == {("SEED-VII", "trial (fold 0)")}
    assert "| e2llm/emotion | 0.4200 ± 0.0283" in card.text
    assert "| de_logreg (baseline) | 0.3000 |" in card.text
    assert str(tmp_path) not in str(card)


@pytest.mark.slow
def test_card_from_a_real_evaluation_report(tmp_path):
    """End to end: synthetic SEED-VII -> prepared windows -> `evaluate_model` report.json -> card -> export (~35 s)."""
    from e2llm import build_tiny_e2llm
    from e2llm.hub_cards import export_model
    from e2llm.processing.dataset_io import dataset_metadata
    from e2llm.processing.prepare import prepare_dataset
    from e2llm.processing.splits import SplitSpec
    from e2llm.processing.synthetic import write_synthetic_seed_vii
    from e2llm.training.evaluation.evaluate import EvalOptions, evaluate_model

    raw = write_synthetic_seed_vii(tmp_path / "raw", n_subjects=1, trial_seconds=8.0, seed=0)
    dataset = prepare_dataset(
        "seed-vii", raw, output_dir=tmp_path / "prepared", overwrite=True, progress=False
    )
    model, processor = build_tiny_e2llm(id2label=dict(enumerate(dataset_metadata(dataset)["label_names"])))
    options = EvalOptions(max_test_windows=6, max_new_tokens=4, baselines=("de_logreg",))
    report = evaluate_model(model, processor, dataset, SplitSpec("trial"), options, provenance=None,
                            output_dir=tmp_path / "eval")
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    write_model_card(
        tmp_path / "model", report=tmp_path / "eval" / "report.json", datasets=[tmp_path / "prepared"]
    )
    out = export_model(tmp_path / "model", tmp_path / "export", repo_id="me/e2llm-tiny")
    card = ModelCard.load(out / "README.md")
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    expected = report["summary"]["e2llm/emotion"]
    assert values["accuracy"] == round(expected["accuracy"]["mean"], 4)
    assert values["f1"] == round(expected["macro_f1"]["mean"], 4)
    baseline = report["summary"]["de_logreg"]["balanced_accuracy"]["mean"]
    assert f"| de_logreg (baseline) | {report['summary']['de_logreg']['accuracy']['mean']:.4f}" in card.text
    assert f"{baseline:.4f}" in card.text
    assert "| 1 | " in card.text and "Fp1 Fpz Fp2" in card.text  # subjects and electrodes trained on


def test_model_card_shows_the_explanation_checks(model_dir):
    """`e2llm evaluate`'s explanation checks (conflict tests, label consistency with its shuffled control) reach the
    card; the old `reliance` block does not."""
    report = {"model": "e2llm", "summary": {"e2llm/emotion": {"accuracy": {"mean": 0.6, "std": 0.0, "n": 1}}},
              "explanations": {"conflicts": {"none": {"changed_answer": {"mean": 0.0}, "accuracy": {"mean": 0.6}},
                                             "eeg_tokens": {"changed_answer": {"mean": 0.41}, "accuracy": {"mean": 0.3}},
                                             "evidence_text": {"changed_answer": 0.05, "accuracy": 0.58},
                                             "partners": [1, 0]},
                               "rationale": {"label_consistency": {"mean": 0.83},
                                             "shuffled_label_consistency": {"mean": 0.31}}},
              "reliance": {"flag_confidence_does_not_drop": True}}
    text = build_model_card(model_dir, report=report).text
    assert "| its EEG tokens (emotion token kept) | 0.410 | 0.300 |" in text
    assert "| its evidence line | 0.050 | 0.580 |" in text and "own inputs" not in text
    assert "label consistency 0.830" in text and "against 0.310 when the same rationales" in text
    assert "Flag" not in text and "Reliance" not in text
    assert "by construction" not in text  # no claim constraint in this report
    report["explanations"]["rationale"]["model_claim_agreement"] = {"mean": 0.34}
    text = build_model_card(model_dir, report=report).text
    assert "agree with the measured values by construction" in text and "step of 0.340 of its claims" in text


def test_model_card_reads_the_evidence_statistics(model_dir, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    path = folder / "processor_config.json"
    processor = json.loads(path.read_text())
    processor.pop("evidence_spread", None)
    processor["evidence_statistics"] = {"prompt": {"evidence_in_prompt": True, "strongest": 3},
                                        "reference_power_db": {"Fz": [1.0] * 5},
                                        "provenance": {"dataset": "SEED-VII", "synthetic": True}}
    path.write_text(json.dumps(processor))
    text = build_model_card(folder).text
    assert "| measured evidence |" in text and "the 3 largest band-power deviations first" in text
    assert "The model ships a reference" in text and "from SEED-VII (synthetic EEG)" in text
