"""`evaluate_model` and `e2llm evaluate` / `e2llm predict` on a tiny model and a tiny synthetic split."""

import json
import math
import shutil

import numpy as np
import pytest

from e2llm import build_tiny_e2llm
from e2llm.processing.dataset_io import save_prepared
from e2llm.processing.splits import SplitIndices, SplitSpec, resolve_split, trial_keys
from e2llm.training.cli import main as cli_main
from e2llm.training.data import synthetic_window_dataset
from e2llm.training.evaluation.evaluate import EvalOptions, evaluate_model
from e2llm.training.evaluation.runner import multitask_consistent
from e2llm.training.evaluation.summary import summarize

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
    options = EvalOptions(tasks=("emotion", "multitask", "scenario"), baselines=("de_logreg", "eegnet_v4"),
                          eegnet_epochs=1, self_consistency_samples=2, max_new_tokens=3, max_test_windows=5,
                          batch_size=8, non_emotion_windows=2)
    return evaluate_model(model, processor, dataset, SplitSpec("trial"), options, provenance=None, output_dir=out)


def test_every_metric_is_reported(report):
    summary = report["summary"]
    assert set(summary) == {"e2llm/emotion", "e2llm/multitask", "e2llm/scenario", "de_logreg", "eegnet_v4"}
    for method in ("e2llm/emotion", "e2llm/multitask", "de_logreg", "eegnet_v4"):
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "parse_rate", "ece"):
            assert summary[method][key]["n"] == 1, (method, key)
        lo, hi = summary[method]["accuracy"]["ci"]  # every accuracy has its interval over held-out trials
        assert 0 <= lo <= summary[method]["accuracy"]["pooled"] <= hi <= 1
        assert "selective_accuracy_50%" in summary[method]
    emotion = summary["e2llm/emotion"]
    for key in ("score_accuracy", "self_consistency_agreement", "mean_confidence"):
        assert key in emotion
    multitask = summary["e2llm/multitask"]
    for key in ("valence_accuracy", "arousal_accuracy", "intensity_accuracy", "consistency_rate"):
        assert key in multitask
    assert "scenario_accuracy" in summary["e2llm/scenario"]
    run = report["runs"][0]["methods"]["e2llm/emotion"]
    assert set(run["per_class"]) == set(report["label_names"])
    assert len(run["confusion_matrix"]["matrix"][0]) == len(report["label_names"]) + 1
    assert set(report["paired"]) == {"e2llm/emotion - de_logreg", "e2llm/emotion - eegnet_v4",
                                     "e2llm/multitask - de_logreg", "e2llm/multitask - eegnet_v4"}


def test_explanations_conflicts_calibration_and_abstention_are_reported(report):
    checks = report["explanations"]
    assert set(checks) == {"rationale", "eraser", "controls", "conflicts", "calibration", "abstention", "seconds",
                           "label_probabilities", "label_guidance"}
    # no emotion head, no guidance: the language model writes every label alone, said so
    assert checks["label_guidance"]["weight"]["mean"] == 0 and checks["label_guidance"]["guided"]["mean"] == 0
    assert checks["conflicts"]["none"]["accuracy"]["n"] == 1 and "eeg_tokens" in checks["conflicts"]
    assert {"answer", "answer_language_model", "label_only"} <= set(checks["calibration"])
    # the tiny model has no emotion head and was never calibrated: the language model gives the scores, said so
    assert checks["label_probabilities"]["source"] == "language_model"
    assert checks["calibration"]["answer"]["ece"] == checks["calibration"]["answer_language_model"]["ece"]
    assert checks["calibration"]["answer"]["ece"]["n"] == 1
    abstention = checks["abstention"]
    assert set(abstention["inputs"]) == {"noise", "flat", "line_noise", "muscle", "eyes_closed"}
    assert abstention["inputs"]["flat"]["abstained"]["mean"] == 1.0
    assert abstention["false_abstention"]["mean"] == 0.0
    assert "flag_confidence_does_not_drop" not in json.dumps(report)  # the misconceived flag is gone


def test_untrained_answers_are_unparseable_and_counted(report):
    run = report["runs"][0]["methods"]["e2llm/emotion"]
    assert run["n"] == 5
    assert run["n_unparseable"] == round((1 - run["parse_rate"]) * 5)
    assert run["accuracy"] <= run["parse_rate"]


def test_split_is_held_out_and_files_written(report, dataset):
    split = report["split"]
    assert split["kind"] == "trial" and split["n_test_windows"] == 5
    indices = resolve_split(dataset, SplitSpec("trial"))
    train_keys = {tuple(k) for k in trial_keys(dataset.select(indices.train))}
    assert not train_keys & {tuple(k) for k in trial_keys(dataset.select(indices.test))}
    files = report["files"]
    assert len(files["confusion"]) == 4  # emotion, multitask, de_logreg, eegnet_v4 (scenario has none)
    for png in files["confusion"]:
        with open(png, "rb") as f:
            assert f.read(4) == b"\x89PNG"
    stored = json.loads(open(files["json"]).read(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert stored["summary"]["de_logreg"]["accuracy"]["n"] == 1 and stored["synthetic"] is True
    markdown = open(files["markdown"]).read()
    assert "| de_logreg |" in markdown and "unparseable" in markdown.lower()
    assert "Synthetic data" in markdown and "What drives the answer" in markdown and "Abstention" in markdown
    assert "Warning:" in markdown and "no provenance" in markdown  # evaluated with provenance=None


def test_label_set_mismatch_and_bad_fold(dataset):
    model, processor = build_tiny_e2llm(id2label={0: "positive", 1: "negative"})
    with pytest.raises(ValueError, match="differ from the dataset"):
        evaluate_model(model, processor, dataset, provenance=None)
    with pytest.raises(ValueError, match="fold 5 does not exist"):
        resolve_split(dataset, SplitSpec("subject", fold=5))


def test_given_indices_are_checked_for_trial_leakage(dataset, tiny):
    model, processor = tiny
    keys = trial_keys(dataset)
    rows = np.arange(len(dataset))
    first_trial = (keys == keys[0]).all(axis=1)
    leaking_test = np.concatenate([rows[first_trial][:1], rows[~first_trial][:3]])  # one window of a train trial
    leaking = SplitIndices(SplitSpec("trial"), rows[first_trial][1:], test=leaking_test)
    options = EvalOptions(baselines=(), mismatched_eeg=False, max_new_tokens=2, max_test_windows=3)
    with pytest.raises(ValueError, match="leaks 1 trial"):
        evaluate_model(model, processor, dataset, options=options, indices=leaking, provenance=None)
    indices = resolve_split(dataset, SplitSpec("trial", seed=3))
    report = evaluate_model(model, processor, dataset, options=options, indices=indices, provenance=None)
    assert report["split"]["seed"] == 3 and list(report["runs"][0]["methods"]) == ["e2llm/emotion"]


def test_multitask_consistency_rules():
    assert multitask_consistent({"Emotion": "neutral", "Valence": "neutral", "Arousal": "low", "Intensity": "mild"})
    assert not multitask_consistent({"Emotion": "happiness", "Valence": "negative", "Arousal": "high",
                                     "Intensity": "strong"})
    assert multitask_consistent({"Emotion": "fear", "Valence": "negative", "Arousal": "high", "Intensity": "moderate"})
    assert not multitask_consistent({"Emotion": "fear", "Valence": "negative", "Arousal": "high", "Intensity": "mild"})


def test_training_seeds_pool_into_mean_std(report):
    """Two replicates (training seeds) of the same split: mean ± std over them, one interval over trials."""
    second = json.loads(json.dumps(report["runs"][0]))
    second["replicate"] = 1
    predictions = second["methods"]["de_logreg"]["predictions"]
    second["methods"]["de_logreg"]["predictions"] = [(p + 1) % len(report["label_names"]) for p in predictions]
    second["methods"]["de_logreg"]["accuracy"] = 0.0
    pooled = summarize([report, {**report, "runs": [second]}])
    assert pooled["n_replicates"] == 2
    accuracy = pooled["summary"]["de_logreg"]["accuracy"]
    assert accuracy["n"] == 2 and accuracy["std"] > 0 and len(accuracy["ci"]) == 2


def _without_empty(tree):
    """`tree` without the {"mean": None, "n": 0} leaves a field that is NaN in every run leaves (read back from JSON
    as null, such a field is absent instead)."""
    if isinstance(tree, dict):
        return {k: _without_empty(v) for k, v in tree.items() if not (isinstance(v, dict) and v.get("n") == 0)}
    return [_without_empty(v) for v in tree] if isinstance(tree, list) else tree


def test_quickstart_outputs_of_other_seeds_merge_as_one_command(report, tmp_path):
    """bench/merge_runs.py: the output of seed 0 and that of seed 1 pool as one command with both seeds pools them;
    outputs that are not seeds of one command (same seed twice, other data, other recipe) are refused."""
    import importlib.util
    from pathlib import Path

    from e2llm.training.quickstart import QuickstartRun, QuickstartSettings, _write_reports

    script = Path(__file__).resolve().parents[1] / "bench" / "merge_runs.py"
    spec = importlib.util.spec_from_file_location("merge_runs", script)
    merge_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge_runs)
    settings = QuickstartSettings.from_file()

    def single(seed, fingerprint):
        run = json.loads(json.dumps(report["runs"][0]))
        run["seed"] = seed
        predictions = run["methods"]["de_logreg"]["predictions"]
        run["methods"]["de_logreg"]["predictions"] = [(p + seed) % len(report["label_names"]) for p in predictions]
        stages = [{"stage": "stage3", "seed": seed, "fingerprint": fingerprint}]
        return {**report, "runs": [run], "provenance": {"status": "recorded", "stages": stages}}

    def write(name, seeds, fingerprint="f9d7", config="stage3.yaml"):
        runs = [{"protocol": "trial", "fold": 0, "seed": s, "folder": f"{name}/runs/trial-fold0-seed{s}",
                 "alignment": {"description_gap_shuffled_minus_real": 0.5 + s},
                 "commands": {"stage3": f"e2llm train stage3 --config {config} --output_dir {name}/runs/s{s} "
                                        f"--dataset_path {name}/prepared --seed {s}"}} for s in seeds]
        plan = QuickstartRun(tmp_path / name, seeds=tuple(seeds), settings=settings)
        _write_reports(plan, {"trial": [single(s, fingerprint) for s in seeds]}, runs, 0.0, 1.0)
        return str(tmp_path / name)

    both, first, second = write("both", [0, 1]), write("a", [0]), write("b", [1])
    assert merge_runs.main([first, second, "--output-dir", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    expected = json.loads((tmp_path / "both" / "report.json").read_text())
    assert merged["n_replicates"] == 2 and merged["quickstart"]["seeds"] == [0, 1]
    for key in ("summary", "intervals", "paired", "folds", "explanations", "split"):
        assert _without_empty(merged[key]) == _without_empty(expected[key]), key
    assert [m["seeds"] for m in merged["quickstart"]["merged_from"]] == [[0], [1]]
    assert len(merged["provenance"]["per_model"]) == 2 and (tmp_path / "merged" / "report.md").is_file()
    assert "stage-2 gap, nats per description (mean ± std over runs) | +1.00 ± 0.71" in \
        (tmp_path / "merged" / "issue26.md").read_text()
    for sources, message in [([first, both], "different seeds"), ([first, write("c", [1], fingerprint="0000")],
                                                                   "same prepared data"),
                             ([first, write("d", [1], config="other.yaml")], "one recipe")]:
        with pytest.raises(SystemExit, match=message):
            merge_runs.main([*sources, "--output-dir", str(tmp_path / "refused")])


@pytest.fixture(scope="module")
def saved(tiny, dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    model, processor = tiny
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    save_prepared(dataset, root / "data")
    return root


def test_evaluate_cli_without_provenance_warns(saved, capsys):
    out = saved / "report"
    assert cli_main(["evaluate", "--model", str(saved / "model"), "--data", str(saved / "data"), "--split", "subject",
                     "--fold", "1", "--max-new-tokens", "4", "--max-test-windows", "6", "--output-dir", str(out),
                     "--device", "cpu"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["split"]["kind"] == "subject" and report["split"]["test_subjects"] == [2]
    assert report["provenance"]["status"] == "missing"
    assert report["command"].startswith("e2llm evaluate --model") and "--fold 1" in report["command"]
    assert (out / "report.md").exists() and (out / "confusion_de_logreg.png").exists()
    assert "report written" in capsys.readouterr().out


def test_evaluate_refuses_trials_the_model_trained_on(saved, dataset, tmp_path, capsys):
    """A model trained on a trial split, evaluated leave-one-subject-out: most test trials are its training trials."""
    from e2llm.training.provenance import stage_record, write_provenance

    model = tmp_path / "model"
    shutil.copytree(saved / "model", model)
    indices = resolve_split(dataset, SplitSpec("trial", test_size=0.25, seed=0))
    write_provenance(model, [stage_record("stage3", dataset, indices, dataset.select(indices.train), seed=0)])
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(model), "--data", str(saved / "data"), "--split", "subject", "--fold", "0",
            "--max-new-tokens", "2", "--max-test-windows", "4", "--baselines", "--output-dir", str(out), "--device",
            "cpu"]
    assert cli_main(argv) == 2
    message = capsys.readouterr().err
    n_trials = len(np.unique(trial_keys(dataset)[trial_keys(dataset)[:, 0] == 1], axis=0))
    n_seen = len({tuple(k) for k in trial_keys(dataset.select(indices.train)) if k[0] == 1})
    assert f"{n_seen} of the {n_trials} evaluation trials" in message and "stage3 train" in message
    assert "--split trial --test-size 0.25 --split-seed 0` (the split the model was trained with) is clean" in message
    assert not out.exists()  # refused before any inference or writing
    clean = argv[:5] + ["--split", "trial"] + argv[9:]
    assert cli_main(clean) == 0
    assert json.loads((out / "report.json").read_text())["provenance"]["overlap"]["n_overlapping_windows"] == 0


def test_evaluate_seeds_option_was_renamed(saved, capsys):
    with pytest.raises(SystemExit):
        cli_main(["evaluate", "--model", str(saved / "model"), "--data", str(saved / "data"), "--seeds", "0", "1",
                  "--output-dir", str(saved / "x")])
    assert "--prompt-seed" in capsys.readouterr().err


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


def _with_provenance(saved, dataset, folder, spec, seed):
    from e2llm.training.provenance import stage_record, write_provenance

    shutil.copytree(saved / "model", folder)
    indices = resolve_split(dataset, spec)
    write_provenance(folder, [stage_record("stage3", dataset, indices, dataset.select(indices.train), seed=seed)])
    return str(folder)


def test_evaluate_every_fold_in_one_call(saved, dataset, tmp_path, capsys):
    """`--fold all`: each model on the fold its provenance names; LOSO over both subjects next to the trial split."""
    folds = [_with_provenance(saved, dataset, tmp_path / f"subject{k}", SplitSpec("subject", fold=k), seed=0)
             for k in (0, 1)]
    trial = _with_provenance(saved, dataset, tmp_path / "trial", SplitSpec("trial", test_size=0.25, seed=0), seed=0)
    out = tmp_path / "eval"
    base = ["evaluate", "--data", str(saved / "data"), "--split", "trial", "subject", "--fold", "all",
            "--max-new-tokens", "2", "--max-test-windows", "4", "--baselines", "de_logreg", "--no-mismatched-eeg",
            "--device", "cpu"]
    assert cli_main([*base, "--model", *folds, trial, "--output-dir", str(out)]) == 0
    subject = json.loads((out / "subject" / "report.json").read_text())
    assert subject["split"]["folds"] == [0, 1] and subject["split"]["test_subjects"] == [1, 2]
    assert subject["models"] == folds and subject["n_replicates"] == 1  # one training seed, its two folds pooled
    assert json.loads((out / "trial" / "report.json").read_text())["models"] == [trial]
    assert "--fold all" in subject["command"]

    assert cli_main([*base, "--model", folds[0], trial, "--output-dir", str(tmp_path / "e2")]) == 2
    assert "no --model was trained on fold(s) [1] of 2" in capsys.readouterr().err
    assert cli_main([*base, "--model", str(saved / "model"), "--output-dir", str(tmp_path / "e3")]) == 2
    assert "records no split" in capsys.readouterr().err


def test_temperatures_fitted_on_validation_windows(dataset, tiny):
    model, processor = tiny
    options = EvalOptions(tasks=("emotion",), baselines=(), max_new_tokens=2, max_test_windows=4,
                          non_emotion_windows=0)
    report = evaluate_model(model, processor, dataset, SplitSpec("trial", validation_size=0.3), options,
                            provenance=None)
    calibration = report["runs"][0]["explanations"]["calibration"]
    scaled = calibration["answer_scaled"]
    assert 0.05 <= scaled["temperature"] <= 100 and scaled["accuracy"] == calibration["answer"]["accuracy"]
    assert report["runs"][0]["explanations"]["abstention"]["inputs"] == {}  # no non-emotion windows asked for
