"""One file-reading path for inference (`pipeline(path)`, `e2llm predict`) and data preparation: lazy, EEG
channels only, and every bad file refused with one message naming it."""

import mne
import numpy as np
import pytest

from e2llm.processing.recording import read_recording
from e2llm.recording_file_e2llm import EEGFile, open_recording

SFREQ = 250.0


@pytest.fixture(scope="module")
def edf(tmp_path_factory):
    names = ["Fp1", "FZ", "Cz", "Pz", "VEO", "ECG"]
    data = 2e-5 * np.random.default_rng(0).standard_normal((len(names), int(20 * SFREQ)))
    raw = mne.io.RawArray(data, mne.create_info(names, SFREQ, "eeg"), verbose="error")
    path = tmp_path_factory.mktemp("edf") / "rec.edf"
    mne.export.export_raw(path, raw, verbose="error")
    return path, data


def test_lazy_eeg_channels(edf):
    path, data = edf
    recording = open_recording(path)
    assert isinstance(recording, EEGFile) and recording.ch_names == ["Fp1", "Fz", "Cz", "Pz"]
    assert recording.dropped == {"VEO": "name says EOG", "ECG": "name says ECG"} and recording.info["sfreq"] == SFREQ
    assert recording.selection.placement == "10-05 names" and recording.line_freq is None
    np.testing.assert_allclose(recording.get_data(100, 300), data[:4, 100:300], atol=2e-8)
    np.testing.assert_allclose(recording.get_data(), read_recording(path).data)  # prepare reads the same


def test_truncated_edf_is_refused(edf, tmp_path):
    content = edf[0].read_bytes()
    (tmp_path / "cut.edf").write_bytes(content[: len(content) * 2 // 3])
    for read in (open_recording, read_recording):
        with pytest.raises(ValueError, match=r"cut\.edf looks damaged or truncated: .*file size"):
            read(tmp_path / "cut.edf")


def test_bad_files_get_one_clear_message(tmp_path):
    (tmp_path / "notes.txt").write_text("not a recording")
    (tmp_path / "noise.edf").write_bytes(b"0       garbage")
    (tmp_path / "folder.edf").mkdir()
    raw = mne.io.RawArray(np.zeros((2, 500)), mne.create_info(["ECG", "STI 014"], 100.0, ["ecg", "stim"]),
                          verbose="error")
    raw.save(tmp_path / "no_eeg_raw.fif", verbose="error")
    cases = {
        "missing.edf": (FileNotFoundError, "recording not found"),
        "notes.txt": (ValueError, r"cannot read .*notes\.txt as an EEG recording \(\.txt is not a recording file"),
        "noise.edf": (ValueError, r"cannot read .*noise\.edf as an EEG recording"),
        "folder.edf": (ValueError, "is a folder; pass a recording file"),
        "no_eeg_raw.fif": (ValueError, r"no EEG channel left to use among 2 channels \(ECG: MNE type ecg; STI 014: MNE "
                                       r"type stim\)"),
    }
    for name, (kind, message) in cases.items():
        with pytest.raises(kind, match=message):
            open_recording(tmp_path / name)
