"""`evaluate_model` and `e2llm evaluate` / `e2llm predict` on a tiny model and a tiny synthetic split."""

import json
import math

import numpy as np
import pytest

from e2llm import build_tiny_e2llm
from e2llm.processing.dataset_io import save_prepared
from e2llm.processing.splits import trial_keys
from e2llm.training.cli import main as cli_main
from e2llm.training.data import synthetic_window_dataset
from e2llm.training.evaluate import evaluate_model, multitask_consistent, resolve_split

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


# 18 channels (frontal pairs for asymmetry, every region): a quarter of the encoder's work of the 62 SEED channels
CHANNELS = ("Fp1", "Fp2", "AF3", "AF4", "F7", "F3", "Fz", "F4", "F8", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "Oz", "O2")


@pytest.fixture(scope="module")
def dataset():
    return synthetic_window_dataset(n_subjects=2, clips_per_class=2, trial_seconds=8.0, channel_names=CHANNELS)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_e2llm()


@pytest.fixture(scope="module")
def report(dataset, tiny, tmp_path_factory):
    model, processor = tiny
    out = tmp_path_factory.mktemp("eval")
    return evaluate_model(
        model, processor, dataset, tasks=("emotion", "multitask", "scenario"), baselines=("de_logreg", "eegnet_v4"),
        eegnet_epochs=1, seeds=(0, 1), self_consistency_samples=2, max_new_tokens=3, max_test_windows=5,
        batch_size=8, output_dir=out,
    )


def test_every_metric_is_reported(report):
    summary = report["summary"]
    assert set(summary) == {"e2llm/emotion", "e2llm/multitask", "e2llm/scenario", "de_logreg", "eegnet_v4"}
    for method in ("e2llm/emotion", "e2llm/multitask", "de_logreg", "eegnet_v4"):
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "parse_rate", "ece"):
            assert summary[method][key]["n"] == 2, (method, key)
    emotion = summary["e2llm/emotion"]
    for key in ("score_accuracy", "self_consistency_agreement", "share_with_checkable_claims"):
        assert key in emotion
    assert "faithfulness" in emotion  # NaN (no checkable claim) is reported as n = 0, never as a number
    multitask = summary["e2llm/multitask"]
    for key in ("valence_accuracy", "arousal_accuracy", "intensity_accuracy", "consistency_rate"):
        assert key in multitask
    assert "scenario_accuracy" in summary["e2llm/scenario"]
    run = report["runs"][0]["methods"]["e2llm/emotion"]
    assert set(run["per_class"]) == set(report["label_names"])
    assert len(run["confusion_matrix"]["matrix"][0]) == len(report["label_names"]) + 1


def test_untrained_answers_are_unparseable_and_counted(report):
    run = report["runs"][0]["methods"]["e2llm/emotion"]
    assert run["n"] == 5
    assert run["n_unparseable"] == round((1 - run["parse_rate"]) * 5)
    assert run["accuracy"] <= run["parse_rate"]


def test_split_is_held_out_and_files_written(report, dataset):
    split = report["split"]
    assert split["kind"] == "trial" and split["n_test_windows"] == 5
    train_idx, test_idx = resolve_split(dataset, "trial")
    train_keys = {tuple(k) for k in trial_keys(dataset.select(train_idx))}
    assert not train_keys & {tuple(k) for k in trial_keys(dataset.select(test_idx))}
    files = report["files"]
    assert len(files["confusion"]) == 4
    for png in files["confusion"]:
        with open(png, "rb") as f:
            assert f.read(4) == b"\x89PNG"
    stored = json.loads(open(files["json"]).read(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert stored["summary"]["de_logreg"]["accuracy"]["n"] == 2
    markdown = open(files["markdown"]).read()
    assert "| de_logreg |" in markdown and "unparseable" in markdown.lower()


def test_label_set_mismatch_and_bad_fold(dataset):
    model, processor = build_tiny_e2llm(id2label={0: "positive", 1: "negative"})
    with pytest.raises(ValueError, match="differ from the dataset"):
        evaluate_model(model, processor, dataset)
    with pytest.raises(ValueError, match="fold 5 does not exist"):
        resolve_split(dataset, "subject", fold=5)


def test_given_indices_are_checked_for_trial_leakage(dataset, tiny):
    model, processor = tiny
    keys = trial_keys(dataset)
    rows = np.arange(len(dataset))
    first_trial = (keys == keys[0]).all(axis=1)
    leaking_test = np.concatenate([rows[first_trial][:1], rows[~first_trial][:3]])  # one window of a train trial
    with pytest.raises(ValueError, match="leaks 1 trial"):
        evaluate_model(model, processor, dataset, train_idx=rows[first_trial][1:], test_idx=leaking_test,
                       baselines=())
    train_idx, test_idx = resolve_split(dataset, "trial", split_seed=3)
    report = evaluate_model(model, processor, dataset, train_idx=train_idx, test_idx=test_idx, baselines=(),
                            max_new_tokens=2, max_test_windows=3)
    assert report["split"]["kind"] == "given indices" and list(report["summary"]) == ["e2llm/emotion"]


def test_multitask_consistency_rules():
    assert multitask_consistent({"Emotion": "neutral", "Valence": "neutral", "Arousal": "low", "Intensity": "mild"})
    assert not multitask_consistent({"Emotion": "happiness", "Valence": "negative", "Arousal": "high",
                                     "Intensity": "strong"})
    assert multitask_consistent({"Emotion": "fear", "Valence": "negative", "Arousal": "high", "Intensity": "moderate"})
    assert not multitask_consistent({"Emotion": "fear", "Valence": "negative", "Arousal": "high", "Intensity": "mild"})


@pytest.fixture(scope="module")
def saved(tiny, dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    model, processor = tiny
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    save_prepared(dataset, root / "data")
    return root


def test_evaluate_cli(saved, capsys):
    out = saved / "report"
    assert cli_main(["evaluate", "--model", str(saved / "model"), "--data", str(saved / "data"), "--split", "subject",
                     "--fold", "1", "--max-new-tokens", "4", "--max-test-windows", "6", "--output-dir", str(out),
                     "--device", "cpu"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["split"]["kind"] == "subject" and report["split"]["test_subjects"] == [2]
    assert (out / "report.md").exists() and (out / "confusion_de_logreg.png").exists()
    assert "report written" in capsys.readouterr().out


def test_pipeline_from_saved_folder(saved):
    from transformers import pipeline

    from e2llm import EEGEmotionPipeline

    pipe = pipeline("eeg-emotion", model=str(saved / "model"), max_new_tokens=3)
    assert isinstance(pipe, EEGEmotionPipeline)
    out = pipe(20 * np.random.default_rng(0).standard_normal((len(CHANNELS), 800)), sampling_rate=200.0,
               channel_names=list(CHANNELS), units="uV")
    assert math.isclose(sum(out["scores"].values()), 1.0, abs_tol=1e-5)


def test_predict_cli(saved, tmp_path):
    mne = pytest.importorskip("mne")
    pytest.importorskip("edfio")
    rng = np.random.default_rng(0)
    names = [f"EEG {name}-REF" for name in CHANNELS] + ["VEOG"]  # clinical spelling and an EOG channel
    raw = mne.io.RawArray(20e-6 * rng.standard_normal((len(names), 1800)), mne.create_info(names, 200.0, "eeg"),
                          verbose="error")
    path = tmp_path / "rec.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    output = tmp_path / "pred.jsonl"
    assert cli_main(["predict", str(path), "--model", str(saved / "model"), "--max-new-tokens", "4",
                     "--output", str(output), "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["window"] for r in rows] == [0, 1, "all"]
    assert rows[1]["start"] == 4.0 and math.isclose(sum(rows[0]["scores"].values()), 1.0, abs_tol=1e-5)
    assert rows[-1]["n_windows"] == 2
    table = tmp_path / "pred.txt"
    cli_main(["predict", str(path), "--model", str(saved / "model"), "--format", "table", "--no-rationale",
              "--output", str(table), "--device", "cpu"])
    assert "rec.edf" in table.read_text()


def test_combine_reports_pools_runs_of_several_models(report):
    from e2llm.training.eval_report import combine_reports

    combined = combine_reports([report, report], ["seed0", "seed1"])
    assert len(combined["runs"]) == 2 * len(report["runs"])
    assert {run["model"] for run in combined["runs"]} == {"seed0", "seed1"}
    assert combined["summary"]["de_logreg"]["accuracy"]["n"] == 4
