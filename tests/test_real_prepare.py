"""`e2llm prepare folder` on real recordings with different montages: never narrowed in silence, the user's choice
of channels, what each file loses in summary.json and on standard error, and the signal options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from e2llm.processing.dataset_io import dataset_metadata, load_prepared  # noqa: E402
from e2llm.training.cli import main  # noqa: E402

REAL = Path(__file__).parent / "fixtures" / "real"
FILES = {  # name in the folder: (fixture, EEG channels the channel rule keeps)
    "edf_a.edf": ("edf/chtypes_edf.edf", 25),
    "edf_b.edf": ("edf/test_edf_stim_channel.edf", 19),
    "test.vhdr": ("brainvision/test.vhdr", 26),
    "openbci.bdf": ("bdf/multiple_annotation_chans_20s.bdf", 10),
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A folder of four real recordings from four labs, with 25, 19, 26 and 10 EEG channels (10 in common)."""
    root = tmp_path_factory.mktemp("mixed")
    for name, (fixture, _) in FILES.items():
        source = REAL / fixture
        if source.suffix == ".vhdr":  # a header with its data and marker files
            for ext in ("vhdr", "vmrk", "eeg"):
                shutil.copy(source.with_suffix(f".{ext}"), root / f"test.{ext}")
        else:
            shutil.copy(source, root / name)
    rows = ["file,emotion,subject", "edf_a.edf,calm,1", "edf_b.edf,stress,2", "test.vhdr,calm,3",
            "openbci.bdf,stress,4"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _prepare(root, out, *options):
    return main(["prepare", "folder", "--root", str(root), "--output-dir", str(out), "--no-progress",
                 "--window-seconds", "2", "--stride-seconds", "2", "--l-freq", "1", *options])


def test_different_montages_are_refused_with_the_numbers_and_the_choices(mixed, tmp_path, capsys):
    assert _prepare(mixed, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "the recordings do not share one channel set (edf_a.edf 25, edf_b.edf 19, test.vhdr 26, openbci.bdf 10 " \
           "EEG channels); only 10 are in every file (F3, F4, C3, C4, P3, P4, O1, O2, Fz, Pz)" in err
    assert "so keeping the common ones would drop 15 of edf_a.edf's, 9 of edf_b.edf's, 16 of test.vhdr's." in err
    assert "Choose: --channels common (keep the 10 channels every file has), --channels each" in err
    assert "--channels interpolate" in err and not (tmp_path / "out").exists()


def test_common_channels_stated_per_file(mixed, tmp_path, capsys):
    out = tmp_path / "common"
    assert _prepare(mixed, out, "--channels", "common") == 0
    err = capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    channels = summary["channels"]
    assert channels["policy"] == "common" and len(channels["channel_names"]) == 10
    entry = channels["files"][str(mixed / "edf_a.edf")]
    assert len(entry["used"]) == 25 and len(entry["not_kept"]) == 15
    assert entry["dropped"]["POL DC01"] == "name says DC channel"
    bdf = channels["files"][str(mixed / "openbci.bdf")]
    assert bdf["warnings"] == ["Omitted 9 annotation(s) that were outside data range."]
    assert "e2llm prepare: channels: common -> 10 channels" in err
    assert f"e2llm prepare: {mixed / 'edf_a.edf'}: 25 channels used (10-05 names); dropped: POL PG1 (name says " \
           "non-EEG sensor)" in err
    assert "; not kept (not in every file): " in err
    assert f"e2llm prepare: {mixed / 'openbci.bdf'}: MNE: Omitted 9 annotation(s)" in err
    assert dataset_metadata(load_prepared(out))["channel_names"] == channels["channel_names"]


def test_each_file_keeps_its_own_channels(mixed, tmp_path):
    out = tmp_path / "each"
    assert _prepare(mixed, out, "--channels", "each") == 0
    dataset = load_prepared(out)
    names = dataset_metadata(dataset)["channel_names"]
    summary = json.loads((out / "summary.json").read_text())
    assert len(names) == len(set(names)) > 26
    rows = dataset.with_format("numpy")
    eeg, subjects = np.asarray(rows["eeg"]), np.asarray(rows["subject"])
    for subject, name in enumerate(("edf_a.edf", "edf_b.edf", "test.vhdr", "openbci.bdf"), start=1):
        entry = summary["channels"]["files"][str(mixed / name)]
        present = [names.index(n) for n in entry["used"]]
        absent = [names.index(n) for n in entry["absent"]]
        windows = eeg[subjects == subject]
        if len(windows):
            assert np.all(windows[:, absent] == 0)  # stored as zeros: the feature extractor masks them
            assert np.mean(windows[:, present].std(axis=-1) > 0) > 0.5


def test_interpolate_onto_all_channels(mixed, tmp_path):
    out = tmp_path / "interp"
    assert _prepare(mixed, out, "--channels", "interpolate") == 0
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["channels"]["files"][str(mixed / "openbci.bdf")]
    assert len(entry["interpolated"]) == len(summary["channels"]["channel_names"]) - 10
    eeg = np.asarray(load_prepared(out).with_format("numpy")["eeg"])
    assert np.isfinite(eeg).all()


def test_biosemi_abc_with_a_montage_and_the_line_frequency(tmp_path):
    root = tmp_path / "biosemi"
    root.mkdir()
    shutil.copy(REAL / "bdf" / "test_abc.bdf", root / "rec.bdf")
    (root / "labels.csv").write_text("file,emotion\nrec.bdf,calm\n")
    out = tmp_path / "placed"
    assert _prepare(root, out, "--montage", "biosemi256", "--line-freq", "60") == 0
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["channels"]["files"][str(root / "rec.bdf")]
    assert entry["placement"] == "montage biosemi256 (by position)" and len(entry["used"]) >= 100
    preprocessing = summary["metadata"]["preprocessing"]
    assert preprocessing["params"]["notch_freqs"] == [60.0] and preprocessing["notch_source"] == "line_freq given"


def test_refusal_names_the_cli_remedy(tmp_path, capsys):
    root = tmp_path / "abc"
    root.mkdir()
    shutil.copy(REAL / "bdf" / "test_abc.bdf", root / "rec.bdf")
    (root / "labels.csv").write_text("file,emotion\nrec.bdf,calm\n")
    assert _prepare(root, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "follow the BioSemi ABC cap layout" in err and "pass --montage biosemi256" in err
    assert "--channel-map FILE or --channel-map OLD=NEW" in err


def test_units_when_the_file_lies_about_them(tmp_path, capsys):
    root = tmp_path / "units"
    root.mkdir()
    raw = mne.io.read_raw(REAL / "brainvision" / "test.vhdr", preload=True, verbose="error")
    raw.pick(raw.ch_names[:26])
    uv = mne.io.RawArray(raw.get_data() * 1e6, raw.info, verbose="error")  # microvolt numbers stored as volts
    uv.save(root / "rec_raw.fif", verbose="error")
    (root / "labels.csv").write_text("file,emotion\nrec_raw.fif,calm\n")
    assert _prepare(root, tmp_path / "trusting") == 2
    assert "this looks like microvolts stored as volts" in capsys.readouterr().err
    assert _prepare(root, tmp_path / "told", "--units", "uV") == 0
    told = np.asarray(load_prepared(tmp_path / "told").with_format("numpy")["eeg"])
    assert 1.0 < np.median(told.std(axis=-1)) < 200.0  # microvolts, as the original file
    summary = json.loads((tmp_path / "told" / "summary.json").read_text())
    assert summary["metadata"]["source"]["units"] == "uV"


def test_channel_map_and_units_flags_are_refused_for_other_datasets(tmp_path, capsys):
    assert main(["prepare", "synthetic", "--output-dir", str(tmp_path / "s"), "--montage", "biosemi64"]) == 2
    assert "options ['--montage'] do not apply to dataset 'synthetic'" in capsys.readouterr().err
    assert main(["prepare", "synthetic", "--output-dir", str(tmp_path / "s"), "--channel-map", "nope"]) == 2
    assert "--channel-map: 'nope' is neither OLD=NEW nor an existing file" in capsys.readouterr().err
