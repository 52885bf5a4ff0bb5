"""SEED-VII reader on format-exact fake folders (EEG_preprocessed, EEG_features, label xlsx, EEG_raw .cnt)."""

import mne
import numpy as np
import pytest
from scipy.io import loadmat, savemat

from e2llm.configuration_e2llm import SEED_VII_EMOTIONS
from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.features import lds_smooth, seed_features_from_trial
from e2llm.processing.readers import SEEDVIIReader, get_reader
from e2llm.processing.readers.seed_vii import (
    SEED_VII_VIDEO_EMOTIONS,
    read_label_table,
    write_label_table,
)
from e2llm.processing.splits import seed_vii_folds
from e2llm.processing.synthetic import write_synthetic_seed_vii

SEED_UPPER = ["FP1", "FPZ", "FP2", "AF3", "AF4", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "FT7", "FC5",
              "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8",
              "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3", "P1", "PZ", "P2", "P4",
              "P6", "P8", "PO7", "PO5", "PO3", "POZ", "PO4", "PO6", "PO8", "CB1", "O1", "OZ", "O2", "CB2"]


@pytest.fixture(scope="module")
def seed_vii_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("SEED-VII")
    return write_synthetic_seed_vii(root, n_subjects=1, trial_seconds=8.5, seed=3, features=True)


def test_notes_channel_order_matches_electrodes():
    assert [c.upper() for c in SEED_CHANNELS] == SEED_UPPER


def test_built_in_labels_follow_the_dataset():
    videos = SEED_VII_VIDEO_EMOTIONS
    assert len(videos) == 80 and videos[:20] == videos[:10] * 2
    assert videos[:10] == ("happiness", "neutral", "disgust", "sadness", "anger",
                           "anger", "sadness", "disgust", "neutral", "happiness")
    assert videos[20:25] == ("anger", "sadness", "fear", "neutral", "surprise")
    assert videos[40:45] == ("happiness", "surprise", "disgust", "fear", "anger")
    assert videos[60:65] == ("disgust", "sadness", "fear", "surprise", "happiness")
    counts = {name: videos.count(name) for name in SEED_VII_EMOTIONS}
    assert counts["neutral"] == 8 and all(c == 12 for n, c in counts.items() if n != "neutral")
    for session in range(4):
        assert len(set(videos[20 * session : 20 * session + 20])) == 5


def test_reads_preprocessed_trials(seed_vii_root):
    reader = get_reader("seed-vii", seed_vii_root)
    assert isinstance(reader, SEEDVIIReader) and reader.label_source.endswith(".xlsx")
    trials = list(reader)
    assert len(trials) == 80
    assert [t.trial for t in trials] == list(range(1, 81))
    assert [t.session for t in trials] == [1] * 20 + [2] * 20 + [3] * 20 + [4] * 20
    assert [SEED_VII_EMOTIONS[t.emotion] for t in trials] == list(SEED_VII_VIDEO_EMOTIONS)
    first = trials[0]
    assert first.recording.data.shape == (62, 1700) and first.recording.sfreq == 200.0
    assert first.recording.units == "uV" and first.recording.ch_names == list(SEED_CHANNELS)
    assert first.preprocessed and first.subject == 1
    raw = loadmat(seed_vii_root / "EEG_preprocessed" / "1.mat")["1"]
    np.testing.assert_array_equal(first.recording.data, raw.astype(np.float64))
    # the official folds hold 5 clips per session per fold
    keys = {"subject": np.ones(80, int), "session": np.array([t.session for t in trials]),
            "trial": np.array([t.trial for t in trials])}
    for _, test in seed_vii_folds(keys):
        assert np.bincount(keys["session"][test], minlength=5)[1:].tolist() == [5, 5, 5, 5]


def test_label_table_round_trip_and_priority(tmp_path, seed_vii_root):
    assert read_label_table(seed_vii_root / "emotion_label_and_stimuli_order.xlsx") == SEED_VII_VIDEO_EMOTIONS
    changed = list(SEED_VII_VIDEO_EMOTIONS)
    changed[0] = "fear"
    table = write_label_table(tmp_path / "labels.xlsx", changed)
    reader = SEEDVIIReader(seed_vii_root, label_table=table)
    assert SEED_VII_EMOTIONS[next(iter(reader)).emotion] == "fear"
    # without the table, the built-in mapping
    (tmp_path / "EEG_preprocessed").mkdir()
    (tmp_path / "EEG_preprocessed" / "1.mat").symlink_to(seed_vii_root / "EEG_preprocessed" / "1.mat")
    assert SEEDVIIReader(tmp_path).label_source == "built-in"


def test_label_table_with_unknown_emotion_is_refused(tmp_path):
    bad = list(SEED_VII_VIDEO_EMOTIONS)
    bad[5] = "boredom"
    with pytest.raises(ValueError, match="unknown emotion 'Boredom'"):
        read_label_table(write_label_table(tmp_path / "t.xlsx", bad))


def test_published_features_match_seed_mode(seed_vii_root):
    records = list(SEEDVIIReader(seed_vii_root).features("de"))
    assert len(records) == 80 and records[0]["features"].shape == (2, 5, 62)
    data = loadmat(seed_vii_root / "EEG_preprocessed" / "1.mat")["5"].astype(np.float64)
    _, de = seed_features_from_trial(data, 200.0)
    np.testing.assert_allclose(records[4]["features"], de, rtol=1e-12)
    lds = loadmat(seed_vii_root / "EEG_features" / "1.mat")["de_LDS_5"]
    np.testing.assert_allclose(lds, lds_smooth(records[4]["features"]), atol=1e-9)
    with pytest.raises(ValueError, match="kind"):
        next(SEEDVIIReader(seed_vii_root).features("dasm"))


def _broken_copy(tmp_path, seed_vii_root, edit):
    content = {k: v for k, v in loadmat(seed_vii_root / "EEG_preprocessed" / "1.mat").items() if not k.startswith("__")}
    edit(content)
    (tmp_path / "EEG_preprocessed").mkdir()
    savemat(tmp_path / "EEG_preprocessed" / "1.mat", content)
    return SEEDVIIReader(tmp_path)


def test_missing_trial_is_refused(tmp_path, seed_vii_root):
    reader = _broken_copy(tmp_path, seed_vii_root, lambda c: c.pop("80"))
    with pytest.raises(ValueError, match=r"1\.mat: 79 trials where 80 are expected; missing \[80\]"):
        list(reader)


def test_wrong_shape_is_refused(tmp_path, seed_vii_root):
    reader = _broken_copy(tmp_path, seed_vii_root, lambda c: c.update({"7": c["7"][:61]}))
    with pytest.raises(ValueError, match=r"1\.mat\['7'\]: expected 62 channels, got shape \(61, 1700\)"):
        list(reader)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="SEED-VII folder not found"):
        SEEDVIIReader(tmp_path / "nowhere")
    (tmp_path / "EEG_preprocessed").mkdir()
    with pytest.raises(FileNotFoundError, match="No SEED-VII subject files"):
        SEEDVIIReader(tmp_path).items()
    (tmp_path / "EEG_preprocessed" / "2.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match=r"Cannot read .*2\.mat"):
        list(SEEDVIIReader(tmp_path))
    with pytest.raises(ValueError, match="source"):
        SEEDVIIReader(tmp_path, source="eye")


# ---- EEG_raw: Neuroscan .cnt through MNE (read_raw_cnt patched: MNE cannot write CNT) ----

CLIP_S, GAP_S, RAW_SFREQ = 1.0, 0.5, 1000.0


def _fake_cnt_raw(onsets):
    n_times = int((20 * (CLIP_S + GAP_S) + GAP_S) * RAW_SFREQ)
    names = SEED_UPPER + ["VEO", "HEO", "ECG"]
    rng = np.random.default_rng(0)
    data = rng.standard_normal((len(names), n_times)) * 20e-6
    data[:62] += np.arange(62)[:, None] * 1e-6  # channel identity survives reordering checks
    raw = mne.io.RawArray(data, mne.create_info(names, RAW_SFREQ, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations(onsets, np.zeros(len(onsets)), ["1"] * len(onsets)))
    return raw


def _good_onsets():
    starts = GAP_S + np.arange(20) * (CLIP_S + GAP_S)
    return np.stack([starts, starts + CLIP_S], axis=1).ravel()


@pytest.fixture
def raw_root(tmp_path, monkeypatch):
    (tmp_path / "EEG_raw").mkdir()
    (tmp_path / "save_info").mkdir()
    for name in ("3_20221001_2.cnt", "9_20221111_3.cnt"):
        (tmp_path / "EEG_raw" / name).write_bytes(b"")
    calls = []

    def fake_read_raw_cnt(fname, **kwargs):
        calls.append(str(fname))
        # the bad-trigger file carries broken annotations; the CSV holds the right ones
        return _fake_cnt_raw(_good_onsets()[:7] if "9_20221111_3" in str(fname) else _good_onsets())

    monkeypatch.setattr(mne.io, "read_raw_cnt", fake_read_raw_cnt)
    lines = [f"{i},2022-11-11 14:01:{27 + int(t)}.{int(round((t % 1) * 1e6)):06d}" for i, t in enumerate(_good_onsets())]
    (tmp_path / "save_info" / "9_20221111_3_trigger_info.csv").write_text("\n".join(lines) + "\n")
    return tmp_path, calls


def test_raw_cnt_files_with_annotations_and_save_info(raw_root):
    root, calls = raw_root
    trials = list(SEEDVIIReader(root, source="raw"))
    assert len(calls) == 2 and len(trials) == 40
    session2 = [t for t in trials if t.subject == 3]
    assert [t.trial for t in session2] == list(range(21, 41)) and {t.session for t in session2} == {2}
    assert [SEED_VII_EMOTIONS[t.emotion] for t in session2] == list(SEED_VII_VIDEO_EMOTIONS[20:40])
    rec = session2[0].recording
    assert rec.units == "V" and rec.sfreq == RAW_SFREQ and rec.ch_names == list(SEED_CHANNELS)
    assert rec.data.shape == (62, int(CLIP_S * RAW_SFREQ))
    assert set(rec.provenance["dropped_channels"]) == {"VEO", "HEO", "ECG"}
    assert not session2[0].preprocessed
    bad_file = [t for t in trials if t.subject == 9]
    assert [t.trial for t in bad_file] == list(range(41, 61))
    assert all(t.recording.data.shape == (62, 1000) for t in bad_file)


def test_raw_bad_trigger_file_needs_its_csv(raw_root):
    root, _ = raw_root
    (root / "save_info" / "9_20221111_3_trigger_info.csv").unlink()
    with pytest.raises(FileNotFoundError, match="9_20221111_3_trigger_info.csv"):
        list(SEEDVIIReader(root, source="raw", subjects=[9]))


def test_raw_wrong_trigger_count_is_refused(raw_root, monkeypatch):
    root, _ = raw_root
    monkeypatch.setattr(mne.io, "read_raw_cnt", lambda fname, **kw: _fake_cnt_raw(_good_onsets()[:38]))
    with pytest.raises(ValueError, match=r"3_20221001_2\.cnt \(annotations\): 38 triggers, expected 40"):
        list(SEEDVIIReader(root, source="raw", subjects=[3]))


def test_prepare_of_generated_files_calls_them_synthetic(tmp_path):
    """Synthetic files in SEED-VII's layout, through `e2llm prepare seed-vii`: metadata and dataset card say synthetic."""
    from e2llm.hub_cards.dataset_card import write_dataset_card
    from e2llm.processing.dataset_io import dataset_metadata
    from e2llm.processing.prepare import prepare_dataset
    from e2llm.training.provenance import dataset_identity

    raw = write_synthetic_seed_vii(tmp_path / "raw", n_subjects=1, trial_seconds=4.0, seed=5)
    dataset = prepare_dataset("seed-vii", raw, output_dir=tmp_path / "prepared", progress=False)
    metadata = dataset_metadata(dataset)
    assert metadata["dataset"] == "synthetic" and metadata["synthetic"] is True
    assert metadata["source"]["layout"] == "seed-vii" and metadata["source"]["seed"] == 5
    assert dataset_identity(dataset)["synthetic"] is True
    card = write_dataset_card(tmp_path / "prepared").read_text()
    assert "synthetic" in card.lower() and "SEED-VII" not in card and "seed-vii\n" not in card.lower()
