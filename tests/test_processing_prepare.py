"""`prepare_dataset` and `e2llm prepare`: schema, metadata, summary, options, and clean failure."""

import json

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from e2llm.configuration_e2llm import SEED_VII_EMOTIONS
from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.dataset_io import dataset_metadata, load_prepared
from e2llm.processing.prepare import prepare_dataset
from e2llm.processing.readers.seed_vii import SEED_VII_VIDEO_EMOTIONS
from e2llm.processing.splits import assert_no_trial_leakage, seed_vii_folds
from e2llm.processing.synthetic import write_synthetic_seed_vii
from e2llm.training.cli import main


@pytest.fixture(scope="module")
def seed_vii_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("SEED-VII")
    return write_synthetic_seed_vii(root, n_subjects=2, trial_seconds=8.0, seed=1)


def test_prepare_seed_vii_saves_windows_metadata_and_summary(seed_vii_root, tmp_path):
    out = tmp_path / "prepared"
    ds = prepare_dataset("seed-vii", seed_vii_root, output_dir=out, progress=False)
    assert ds.num_rows == 2 * 80 * 2
    assert ds.features["emotion"].names == list(SEED_VII_EMOTIONS)
    row = ds.with_format("numpy")[0]
    assert row["eeg"].shape == (62, 800) and row["eeg"].dtype == np.float32
    assert (row["subject"], row["session"], row["trial"], row["start"]) == (1, 1, 1, 0.0)
    assert SEED_VII_EMOTIONS[row["emotion"]] == SEED_VII_VIDEO_EMOTIONS[0]
    source = loadmat(seed_vii_root / "EEG_preprocessed" / "1.mat")["1"]
    np.testing.assert_allclose(row["eeg"], source[:, :800], rtol=1e-6)  # µV, not filtered again
    meta = dataset_metadata(ds)
    assert meta["channel_names"] == list(SEED_CHANNELS) and meta["sampling_rate"] == 200.0
    assert meta["units"] == "uV" and meta["window_seconds"] == 4.0
    assert meta["preprocessing"]["params"]["h_freq"] == 70.0
    assert meta["preprocessing"]["filter_applied"] is False
    assert meta["preprocessing"]["example_steps"][0]["filter_applied"] is False
    assert meta["source"]["reader"] == "SEEDVIIReader" and meta["source"]["labels"].endswith(".xlsx")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_trials"] == 160 and summary["n_trials_read"] == 160
    assert summary["trials_per_class"]["neutral"] == 16 and summary["windows_per_class"]["anger"] == 48
    reloaded = load_prepared(out)
    assert reloaded.num_rows == ds.num_rows and dataset_metadata(reloaded) == meta
    for train, test in seed_vii_folds(reloaded):
        assert_no_trial_leakage(reloaded.select(train), reloaded.select(test))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_window_stride_and_resample_options(seed_vii_root):
    ds = prepare_dataset("seed-vii", seed_vii_root, window_seconds=2.0, stride_seconds=1.0, target_sfreq=100.0,
                         l_freq=None, h_freq=40.0, notch_freqs=(), progress=False, subjects=[2])
    assert ds.num_rows == 80 * 7 and set(ds["subject"]) == {2}
    assert np.asarray(ds[0]["eeg"]).shape == (62, 200)
    assert ds["start"][:7] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert dataset_metadata(ds)["sampling_rate"] == 100.0


def test_cli_prepare_synthetic_and_bad_input(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["prepare", "synthetic", "--n-subjects", "1", "--trial-seconds", "4", "--output-dir", str(out),
                 "--no-progress"]) == 0
    assert load_prepared(out).num_rows == 80
    assert main(["prepare", "synthetic", "--output-dir", str(out), "--no-progress"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["prepare", "seed-vii", "--root", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "x")]) == 2
    assert "--root: no such folder" in capsys.readouterr().err
    (tmp_path / "x.csv").write_text("file,label\n")
    assert main(["prepare", "synthetic", "--labels", str(tmp_path / "x.csv"), "--output-dir", str(tmp_path / "y")]) == 2
    assert "do not apply to dataset 'synthetic'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_bad_file_midway_leaves_nothing_that_looks_complete(seed_vii_root, tmp_path):
    root = tmp_path / "broken"
    (root / "EEG_preprocessed").mkdir(parents=True)
    (root / "EEG_preprocessed" / "1.mat").symlink_to(seed_vii_root / "EEG_preprocessed" / "1.mat")
    content = {k: v for k, v in loadmat(seed_vii_root / "EEG_preprocessed" / "2.mat").items() if not k.startswith("__")}
    content["12"] = content["12"][:, :, None]
    savemat(root / "EEG_preprocessed" / "2.mat", content)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"2\.mat\['12'\]: expected a 2-D array"):
        prepare_dataset("seed-vii", root, output_dir=out, progress=False)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["broken"]


def test_bad_parameters_are_refused(seed_vii_root):
    with pytest.raises(ValueError, match="Unknown dataset 'seed-x'"):
        prepare_dataset("seed-x", seed_vii_root)
    with pytest.raises(ValueError, match="reference"):
        prepare_dataset("seed-vii", seed_vii_root, reference="mastoids")
    with pytest.raises(ValueError, match="No window of 20.0 s"):
        prepare_dataset("seed-vii", seed_vii_root, window_seconds=20.0, stride_seconds=20.0, progress=False,
                        subjects=[1])
