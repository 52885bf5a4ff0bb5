"""SEED, SEED-IV, SEED-V, DEAP, DREAMER and folder readers on tiny format-exact fake folders."""

import pickle

import mne
import numpy as np
import pytest
from scipy.io import savemat

from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.dataset_io import dataset_metadata
from e2llm.processing.prepare import prepare_dataset
from e2llm.processing.readers import READERS, get_reader
from e2llm.processing.readers._ratings import subtract_baseline
from e2llm.processing.readers.deap import DEAP_CHANNELS
from e2llm.processing.readers.dreamer import DREAMER_CHANNELS
from e2llm.processing.readers.seed_family import (
    SEED_IV_LABELS,
    SEED_V_END_SECONDS,
    SEED_V_LABELS,
    SEED_V_START_SECONDS,
)

RNG = np.random.default_rng(0)


def _eeg(n_channels, n_times, scale=20.0):
    return RNG.standard_normal((n_channels, n_times)) * scale


def test_registry_and_unknown_name():
    assert sorted(READERS) == ["deap", "dreamer", "folder", "seed", "seed-iv", "seed-v", "seed-vii", "synthetic"]
    with pytest.raises(ValueError, match="Unknown dataset 'seed-6'"):
        get_reader("seed-6", ".")
    with pytest.raises(ValueError, match="needs --root"):
        get_reader("deap", None)


# ---------------- SEED ----------------

@pytest.fixture(scope="module")
def seed_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("SEED")
    eeg, feats = root / "Preprocessed_EEG", root / "ExtractedFeatures"
    eeg.mkdir(), feats.mkdir()
    for date in ("20131030", "20131027"):  # written out of date order on purpose
        savemat(eeg / f"1_{date}.mat", {f"djc_eeg{k}": _eeg(62, 300 + k) for k in range(1, 16)})
        savemat(feats / f"1_{date}.mat", {f"de_LDS{k}": RNG.standard_normal((62, 3 + k % 2, 5)) for k in range(1, 16)})
    savemat(eeg / "label.mat", {"label": np.array([[1, 0, -1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 0, 1, -1]])})
    return root


def test_seed_reader(seed_root):
    reader = get_reader("seed", seed_root)
    assert reader.label_source.endswith("label.mat")
    items = reader.items()
    assert [(p.name, s, k) for p, s, k in items] == [("1_20131027.mat", 1, 1), ("1_20131030.mat", 1, 2)]
    trials = list(reader)
    assert len(trials) == 30 and [t.trial for t in trials[:15]] == list(range(1, 16))
    assert [reader.label_names[t.emotion] for t in trials[:4]] == ["positive", "neutral", "negative", "negative"]
    assert trials[0].recording.data.shape == (62, 301) and trials[0].recording.units == "uV"
    assert trials[0].recording.ch_names == list(SEED_CHANNELS) and trials[0].preprocessed
    records = list(reader.features("de_LDS"))
    assert len(records) == 30 and records[0]["features"].shape == (4, 5, 62)


def test_seed_reader_refuses_missing_trial(tmp_path, seed_root):
    (tmp_path / "Preprocessed_EEG").mkdir()
    savemat(tmp_path / "Preprocessed_EEG" / "2_20140101.mat", {f"ab_eeg{k}": _eeg(62, 10) for k in range(1, 15)})
    with pytest.raises(ValueError, match=r"2_20140101\.mat: 14 trials .* where 15 are expected; missing \[15\]"):
        list(get_reader("seed", tmp_path))


# ---------------- SEED-IV ----------------

def test_seed_iv_reader(tmp_path):
    for folder in ("eeg_raw_data", "eeg_feature_smooth"):
        for session in (1, 2, 3):
            (tmp_path / folder / str(session)).mkdir(parents=True)
    for session in (1, 2, 3):
        savemat(tmp_path / "eeg_raw_data" / str(session) / "1_20160518.mat",
                {f"cz_eeg{k}": _eeg(62, 200) for k in range(1, 25)})
        savemat(tmp_path / "eeg_feature_smooth" / str(session) / "1_20160518.mat",
                {f"de_LDS{k}": RNG.standard_normal((62, 2, 5)) for k in range(1, 25)})
    reader = get_reader("seed-iv", tmp_path)
    trials = list(reader)
    assert len(trials) == 72 and {t.session for t in trials} == {1, 2, 3}
    assert [t.emotion for t in trials if t.session == 2] == list(SEED_IV_LABELS[2])
    assert reader.label_names[SEED_IV_LABELS[1][0]] == "sadness"
    assert next(reader.features())["features"].shape == (2, 5, 62)
    (tmp_path / "eeg_raw_data" / "3" / "1_20160518.mat").unlink()
    (tmp_path / "eeg_raw_data" / "3" / "x.mat").write_bytes(b"")
    with pytest.raises(ValueError, match=r"x\.mat: file name does not follow the SEED-IV"):
        reader.items()


# ---------------- SEED-V ----------------

def test_seed_v_raw_and_de_features(tmp_path, monkeypatch):
    (tmp_path / "EEG_raw").mkdir()
    (tmp_path / "EEG_raw" / "4_2_20180711.cnt").write_bytes(b"")
    names = [c.upper() for c in SEED_CHANNELS] + ["M1", "M2", "VEO", "HEO"]
    sfreq = 10.0  # a low rate keeps the fake hour-long session small; the reader does not assume 1000 Hz

    def fake_read_raw_cnt(fname, **kwargs):
        n_times = int(3000 * sfreq)
        return mne.io.RawArray(_eeg(66, n_times, 1e-5), mne.create_info(names, sfreq, "eeg"), verbose="error")

    monkeypatch.setattr(mne.io, "read_raw_cnt", fake_read_raw_cnt)
    reader = get_reader("seed-v", tmp_path)
    trials = list(reader)
    assert len(trials) == 15 and all(t.session == 2 and t.subject == 4 for t in trials)
    assert [t.emotion for t in trials] == list(SEED_V_LABELS[2])
    expected = (SEED_V_END_SECONDS[2][0] - SEED_V_START_SECONDS[2][0]) * sfreq
    assert trials[0].recording.data.shape == (62, expected) and trials[0].recording.units == "V"
    assert set(trials[0].recording.provenance["dropped_channels"]) == {"M1", "M2", "VEO", "HEO"}

    monkeypatch.setattr(mne.io, "read_raw_cnt", lambda fname, **kw: mne.io.RawArray(
        _eeg(66, 100, 1e-5), mne.create_info(names, sfreq, "eeg"), verbose="error"))
    with pytest.raises(ValueError, match="ends before the last clip"):
        list(reader)

    (tmp_path / "EEG_DE_features").mkdir()
    data = {k: RNG.standard_normal((3 + k % 2, 310)) for k in range(45)}
    labels = {k: np.full(3 + k % 2, SEED_V_LABELS[k // 15 + 1][k % 15]) for k in range(45)}
    np.savez(tmp_path / "EEG_DE_features" / "4_123.npz", data=pickle.dumps(data), label=pickle.dumps(labels))
    records = list(reader.features())
    assert len(records) == 45 and records[16]["session"] == 2 and records[16]["trial"] == 2
    assert records[16]["emotion"] == SEED_V_LABELS[2][1]
    features = records[0]["features"]
    assert features.shape == (3, 5, 62)
    # channel-major (62 x 5): entry [w, band, channel] is column channel * 5 + band
    np.testing.assert_array_equal(features[:, 2, 7], data[0][:, 7 * 5 + 2])


# ---------------- DEAP ----------------

@pytest.fixture(scope="module")
def deap_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("DEAP")
    (root / "data_preprocessed_python").mkdir()
    data = RNG.standard_normal((40, 40, 8064)).astype(np.float32) * 10
    data[:, :32, :384] += 100.0  # a baseline offset that baseline removal takes away
    ratings = np.column_stack([np.linspace(1, 9, 40), np.linspace(9, 1, 40), np.full(40, 5.0), np.full(40, 7.0)])
    with open(root / "data_preprocessed_python" / "s07.dat", "wb") as handle:
        pickle.dump({"data": data, "labels": ratings}, handle, protocol=2)
    return root


def test_deap_reader(deap_root):
    reader = get_reader("deap", deap_root, target="valence")
    trials = list(reader)
    assert len(trials) == 40 and trials[0].subject == 7 and trials[0].trial == 1
    assert reader.label_names == ("low valence", "high valence")
    rec = trials[0].recording
    assert rec.data.shape == (32, 60 * 128) and rec.sfreq == 128.0 and rec.ch_names == list(DEAP_CHANNELS)
    assert rec.units == "uV" and trials[0].preprocessed
    assert [t.emotion for t in trials] == [int(v > 5) for v in np.linspace(1, 9, 40)]
    assert trials[0].ratings == {"valence": 1.0, "arousal": 9.0, "dominance": 5.0}
    quadrant = get_reader("deap", deap_root, target="quadrant")
    assert [t.emotion for t in quadrant][:1] == [1]  # low valence, high arousal
    assert abs(trials[0].recording.data.mean()) < 1.0  # baseline cut off


def test_baseline_removal():
    sfreq = 4.0
    baseline = np.tile(np.array([[1.0, 2.0, 3.0, 4.0]]), (2, 3))
    trial = np.tile(np.array([[11.0, 12.0, 13.0, 14.0]]), (2, 2))[:, :7]
    np.testing.assert_allclose(subtract_baseline(trial, baseline, sfreq), np.full((2, 7), 10.0))
    with pytest.raises(ValueError, match="shorter than one second"):
        subtract_baseline(trial, baseline[:, :3], sfreq)


def test_deap_prepare_with_baseline_removal_and_ratings(deap_root):
    ds = prepare_dataset("deap", deap_root, progress=False, baseline_removal=True, label_threshold=4.5)
    assert ds.num_rows == 40 * 15 and {"valence", "arousal", "dominance"} <= set(ds.column_names)
    assert np.asarray(ds[0]["eeg"]).shape == (32, 800)


def test_deap_wrong_shape(tmp_path):
    (tmp_path / "data_preprocessed_python").mkdir()
    with open(tmp_path / "data_preprocessed_python" / "s01.dat", "wb") as handle:
        pickle.dump({"data": np.zeros((39, 40, 8064), np.float32), "labels": np.zeros((39, 4))}, handle, protocol=2)
    with pytest.raises(ValueError, match=r"s01\.dat: 'data' has shape \(39, 40, 8064\), expected \(40, 40, 8064\)"):
        list(get_reader("deap", tmp_path))


# ---------------- DREAMER ----------------

def _struct(**fields):
    out = np.empty((1, 1), dtype=[(name, object) for name in fields])
    for name, value in fields.items():
        out[0, 0][name] = value
    return out


def _cells(arrays):
    out = np.empty((len(arrays), 1), dtype=object)
    for i, a in enumerate(arrays):
        out[i, 0] = a
    return out


def _write_dreamer(path, n_subjects=2, n_videos=18):
    data = np.empty((1, n_subjects), dtype=object)  # Data{s}: a cell array of 1x1 structs
    for s in range(n_subjects):
        stimuli = _cells([4200 + _eeg(14, 128 * 5 + 7 * t).T for t in range(n_videos)])
        baselines = _cells([4200 + _eeg(14, 128 * 3).T for _ in range(n_videos)])
        data[0, s] = _struct(
            EEG=_struct(stimuli=stimuli, baseline=baselines),
            ScoreValence=np.arange(1, n_videos + 1).reshape(-1, 1) % 5 + 1,
            ScoreArousal=np.full((n_videos, 1), 4),
            ScoreDominance=np.full((n_videos, 1), 2),
        )
    electrodes = np.empty((1, 14), dtype=object)
    electrodes[0, :] = list(DREAMER_CHANNELS)
    savemat(path, {"DREAMER": _struct(Data=data, EEG_SamplingRate=128.0, EEG_Electrodes=electrodes,
                                      noOfVideoSequences=float(n_videos))})


def test_dreamer_reader(tmp_path):
    _write_dreamer(tmp_path / "DREAMER.mat")
    from scipy.io import loadmat

    m = loadmat(tmp_path / "DREAMER.mat")  # the access path of the datasheet works on the fake
    assert m["DREAMER"][0, 0]["Data"][0, 1]["EEG"][0, 0]["stimuli"][0, 0][3, 0].shape == (128 * 5 + 21, 14)
    reader = get_reader("dreamer", tmp_path, target="valence", baseline_removal=True)
    trials = list(reader)
    assert len(trials) == 36 and [t.subject for t in trials[::18]] == [1, 2]
    rec = trials[3].recording
    assert rec.data.shape == (14, 128 * 5 + 21) and rec.ch_names == list(DREAMER_CHANNELS) and rec.sfreq == 128.0
    assert abs(rec.data.mean()) < 10.0  # the 4200 µV offset is removed with the baseline
    valence = np.arange(1, 19) % 5 + 1
    assert [t.emotion for t in trials[:18]] == [int(v > 3) for v in valence]
    assert trials[0].ratings == {"valence": 2.0, "arousal": 4.0, "dominance": 2.0} and not trials[0].preprocessed


def test_dreamer_wrong_video_count(tmp_path):
    _write_dreamer(tmp_path / "DREAMER.mat", n_subjects=1, n_videos=17)
    with pytest.raises(ValueError, match=r"Data\{1\}: stimuli has 17 entries, expected 18"):
        list(get_reader("dreamer", tmp_path))


# ---------------- folder ----------------

@pytest.fixture
def folder_root(tmp_path):
    names = ["FP1", "FP2", "FZ", "CZ", "PZ", "O1", "VEOG"]
    for index, name in enumerate(("a.edf", "b.edf")):
        info = mne.create_info(names, 250.0, ["eeg"] * 6 + ["eog"])
        raw = mne.io.RawArray(_eeg(len(names), 250 * 30, 1e-5), info, verbose="error")
        if index == 1:
            raw.drop_channels(["PZ"])
        mne.export.export_raw(tmp_path / name, raw, fmt="edf", verbose="error")
    (tmp_path / "labels.csv").write_text(
        "file,emotion,subject,start,stop,valence\n"
        "a.edf,calm,1,0,12,6.5\n"
        "a.edf,stress,1,12,30,2.0\n"
        "b.edf,calm,2,,,5.0\n"
    )
    return tmp_path


def test_folder_reader(folder_root):
    with pytest.raises(ValueError, match=r"do not share one channel set \(a.edf 6, b.edf 5 EEG channels\); only 5 "
                                         r"are in every file .* would drop 1 of a.edf's\. Choose: "
                                         r"channel_policy=\"common\""):
        get_reader("folder", folder_root)
    reader = get_reader("folder", folder_root, channel_policy="common")
    assert reader.label_names == ("calm", "stress") and reader.rating_columns == ("valence",)
    assert reader.channel_names == ("Fp1", "Fp2", "Fz", "Cz", "O1")  # common EEG channels, VEOG dropped
    report = reader.channel_report["files"][str(folder_root / "a.edf")]
    assert report["not_kept"] == ["Pz"] and report["dropped"] == {"VEOG": "name says EOG"}
    trials = list(reader)
    assert [(t.subject, t.trial, t.emotion) for t in trials] == [(1, 1, 0), (1, 2, 1), (2, 1, 0)]
    assert trials[0].recording.data.shape[1] == 12 * 250 and trials[0].recording.units == "V"
    ds = prepare_dataset("folder", folder_root, progress=False, l_freq=1.0, channel_policy="common")
    assert ds.num_rows == 3 + 4 + 7 and np.asarray(ds[0]["eeg"]).shape == (5, 800)
    assert ds.features["emotion"].names == ["calm", "stress"]
    values = np.asarray(ds[0]["eeg"])
    assert 1.0 < values.std() < 100.0  # microvolts, not volts


def test_folder_reader_each_and_interpolate(folder_root):
    each = prepare_dataset("folder", folder_root, progress=False, l_freq=1.0, channel_policy="each")
    meta = dataset_metadata(each)
    assert meta["channel_names"] == ["Fp1", "Fp2", "Fz", "Cz", "Pz", "O1"]
    rows = each.with_format("numpy")
    pz = meta["channel_names"].index("Pz")
    subjects = np.asarray(rows["subject"])
    eeg = np.asarray(rows["eeg"])
    assert np.all(eeg[subjects == 2][:, pz] == 0) and np.all(eeg[subjects == 1][:, pz].std(axis=-1) > 1.0)
    inter = prepare_dataset("folder", folder_root, progress=False, l_freq=1.0, channel_policy="interpolate")
    eeg = np.asarray(inter.with_format("numpy")["eeg"])
    assert np.all(eeg[:, pz].std(axis=-1) > 0.1)  # b.edf's Pz interpolated from its neighbours
def test_folder_reader_bad_tables(folder_root):
    (folder_root / "t.tsv").write_text("file\tmood\nmissing.edf\tcalm\na.edf\tcalm\n")
    with pytest.raises(ValueError, match=r"no 'emotion' column"):
        get_reader("folder", folder_root, label_table=folder_root / "t.tsv")
    with pytest.raises(ValueError, match=r"names 1 file\(s\) not found .*missing\.edf"):
        get_reader("folder", folder_root, label_table=folder_root / "t.tsv", label_column="mood")
    (folder_root / "labels.csv").write_text("file,emotion,subject\na.edf,calm,one\n")
    with pytest.raises(ValueError, match=r"line 2: column 'subject' must be an integer, got 'one'"):
        get_reader("folder", folder_root)
    with pytest.raises(ValueError, match=r"labels \['calm'\] are not in label_names"):
        (folder_root / "labels.csv").write_text("file,emotion\na.edf,calm\n")
        get_reader("folder", folder_root, label_names=["happy", "sad"])
