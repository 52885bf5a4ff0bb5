"""Reading recordings (EDF, BrainVision, EEGLAB, FIF round trips; pyedflib's real EEG) and the SEED montage."""

from pathlib import Path

import mne
import numpy as np
import pytest

from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.features import band_power
from e2llm.processing.montage import make_montage, set_montage
from e2llm.processing.preprocess import PreprocessingParams, preprocess_recording
from e2llm.processing.recording import (
    Recording,
    convert_units,
    crop_recording,
    read_recording,
    recording_from_raw,
    recording_to_raw,
)

SFREQ = 200.0
UPPER = [c.upper() for c in SEED_CHANNELS]


def _pyedflib_file(*parts):
    pyedflib = pytest.importorskip("pyedflib")
    path = Path(pyedflib.__file__).parent.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is not installed")
    return path


@pytest.fixture(scope="module")
def raw_62():
    """62 SEED channels (upper-case, as Neuroscan spells them) + VEO, HEO, ECG, at 200 Hz, 10 s, in volts."""
    names = UPPER + ["VEO", "HEO", "ECG"]
    rng = np.random.default_rng(0)
    t = np.arange(int(10 * SFREQ)) / SFREQ
    data = rng.standard_normal((len(names), t.size)) * 10e-6
    data[:62] += 30e-6 * np.sin(2 * np.pi * 10 * t) * np.linspace(0.5, 1.5, 62)[:, None]
    raw = mne.io.RawArray(data, mne.create_info(names, SFREQ, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([1.0, 4.5], [0.5, 1.0], ["start", "end"]))
    return raw


@pytest.mark.parametrize("fmt, suffix, atol", [("edf", ".edf", 2e-8), ("brainvision", ".vhdr", 1e-9),
                                               ("eeglab", ".set", 1e-12), ("fif", "_raw.fif", 1e-12)])
def test_round_trip(raw_62, tmp_path, fmt, suffix, atol):
    path = tmp_path / f"rec{suffix}"
    if fmt == "fif":
        raw_62.save(path, verbose="error")
    else:
        mne.export.export_raw(path, raw_62, fmt=fmt, verbose="error")
    rec = read_recording(path)
    assert rec.ch_names == list(SEED_CHANNELS)  # FP1 -> Fp1, FZ -> Fz, CB1/CB2 kept
    assert rec.sfreq == SFREQ and rec.units == "V" and rec.data.shape == (62, 2000)
    assert set(rec.provenance["dropped_channels"]) == {"VEO", "HEO", "ECG"}
    assert rec.provenance["dropped_channels"]["VEO"] == "name says EOG"
    assert rec.provenance["channels"] == {"used": list(SEED_CHANNELS), "placement": "10-05 names",
                                          "dropped": rec.provenance["dropped_channels"],
                                          "renamed": {n: c for n, c in zip(UPPER, SEED_CHANNELS) if n != c}}
    np.testing.assert_allclose(rec.data, raw_62.get_data()[:62], atol=atol)
    # BrainVision stores descriptions as "Comment/start"
    assert [(round(o, 3), round(d, 3), s.split("/")[-1]) for o, d, s in rec.annotations] == [
        (1.0, 0.5, "start"), (4.5, 1.0, "end")]
    uv = convert_units(rec, "uV")
    np.testing.assert_allclose(uv.data, rec.data * 1e6)


def test_unknown_duplicate_flat_and_non_eeg_channels():
    info = mne.create_info(["FP1", "Fp1", "CZ"], SFREQ, "eeg")
    raw = mne.io.RawArray(np.zeros((3, 100)), info, verbose="error")
    with pytest.raises(ValueError, match="all resolve to the same 10-05 electrode"):
        recording_from_raw(raw)
    data = np.random.default_rng(0).standard_normal((3, 100)) * 1e-5
    data[2] = 0.0
    raw = mne.io.RawArray(data, mne.create_info(["CZ", "Box1", "Pz"], SFREQ, "eeg"), verbose="error")
    rec = recording_from_raw(raw)
    assert rec.ch_names == ["Cz"] and rec.data.shape == (1, 100)
    assert rec.provenance["dropped_channels"] == {"Box1": "not a 10-05 name",
                                                  "Pz": "flat over the whole recording (peak-to-peak 0 uV)"}
    raw = mne.io.RawArray(np.zeros((1, 100)), mne.create_info(["VEO"], SFREQ, "eeg"), verbose="error")
    with pytest.raises(ValueError, match=r"no EEG channel left to use among 1 channels \(VEO: name says EOG\)"):
        recording_from_raw(raw)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_recording(tmp_path / "none.edf")
    (tmp_path / "bad.edf").write_bytes(b"garbage that is no EDF header")
    with pytest.raises(ValueError, match=r"cannot read .*bad\.edf as an EEG recording"):
        read_recording(tmp_path / "bad.edf")


def test_crop_and_back_to_raw(raw_62):
    rec = recording_from_raw(raw_62)
    part = crop_recording(rec, 1.0, 5.0)
    assert part.data.shape == (62, 800) and [a[0] for a in part.annotations] == [0.0, 3.5]
    with pytest.raises(ValueError, match="cannot crop"):
        crop_recording(rec, 9.0, 12.0)
    raw = recording_to_raw(convert_units(part, "uV"))
    np.testing.assert_allclose(raw.get_data(), part.data, rtol=1e-12)
    assert raw.get_montage() is not None and len(raw.annotations) == 2


def test_montage_covers_all_seed_channels():
    montage = make_montage(SEED_CHANNELS)
    positions = montage.get_positions()["ch_pos"]
    assert list(positions) == list(SEED_CHANNELS)
    xyz = np.array([positions[c] for c in SEED_CHANNELS])
    assert np.all(np.isfinite(xyz)) and len(np.unique(xyz.round(6), axis=0)) == 62
    # CB1/CB2: below and behind O1/O2, on their own side
    for cb, o in (("CB1", "O1"), ("CB2", "O2")):
        assert positions[cb][2] < positions[o][2] and positions[cb][1] < positions[o][1]
        assert np.sign(positions[cb][0]) == np.sign(positions[o][0])
    assert make_montage(["T3"]).get_positions()["ch_pos"]["T3"] is not None
    with pytest.raises(ValueError, match="No position for channels"):
        make_montage(["Fp1", "XYZ"])
    raw = mne.io.RawArray(np.zeros((62, 10)), mne.create_info(list(SEED_CHANNELS), SFREQ, "eeg"), verbose="error")
    set_montage(raw)  # raises if any SEED channel lacks a position
    assert np.all(np.isfinite([ch["loc"][:3] for ch in raw.info["chs"]]))


def test_real_one_channel_eeg_from_pyedflib():
    rec = read_recording(_pyedflib_file("tests", "data", "test_subsecond.edf"))
    assert rec.ch_names == ["Fp1"] and rec.sfreq == 128.0 and rec.units == "V"
    assert rec.data.shape == (1, 698 * 128)
    assert {d for _, _, d in rec.annotations} >= {"XLSpike", "XLEvent"}
    assert 1e-6 < rec.data.std() < 1e-3  # real scalp EEG in volts
    out = preprocess_recording(rec, PreprocessingParams(l_freq=0.5, h_freq=45.0))
    assert out.sfreq == 200.0 and out.data.shape == (1, 698 * 200)
    assert out.provenance["steps"][-1]["resample"]["up"] == 25
    assert make_montage(rec.ch_names).get_positions()["ch_pos"].keys() == {"Fp1"}  # a partial montage


def test_generator_file_is_an_oracle_for_filters_and_band_power():
    # generator signals carry no electrode names: a channel map names the ones used here
    mapping = {"sine 8.5 Hz": "Fz", "sine 15 Hz": "Cz", "sine 17 Hz": "Pz", "sine 50 Hz": "Oz"}
    rec = read_recording(_pyedflib_file("data", "test_generator.edf"), channel_map=mapping)
    assert rec.sfreq == 200.0 and rec.ch_names == ["Fz", "Cz", "Pz", "Oz"]
    assert rec.provenance["channels"]["placement"] == "channel_map"
    assert rec.provenance["dropped_channels"]["pulse"] == "name says non-EEG sensor"
    assert rec.provenance["dropped_channels"]["sine 8 Hz"] == "not a 10-05 name"
    rec = convert_units(rec, "uV")
    index = {name: rec.ch_names.index(new) for name, new in mapping.items()}
    x = rec.data[:, 20 * 200 : 80 * 200]
    power = band_power(x, 200.0, {"theta": (4.0, 8.0), "alpha": (8.0, 14.0), "beta": (14.0, 31.0),
                                  "line": (45.0, 55.0)})
    # a 100 µV sine has power 100**2 / 2 = 5000 µV², all of it in the band holding its frequency
    assert power[1, index["sine 8.5 Hz"]] == pytest.approx(5000, rel=0.05)
    assert power[2, index["sine 15 Hz"]] == pytest.approx(5000, rel=0.05)
    assert power[2, index["sine 17 Hz"]] == pytest.approx(5000, rel=0.05)
    assert power[2, index["sine 8.5 Hz"]] < 50 and power[0, index["sine 15 Hz"]] < 50
    assert power[3, index["sine 50 Hz"]] == pytest.approx(5000, rel=0.05)
    filtered = preprocess_recording(rec, PreprocessingParams(l_freq=1.0, h_freq=45.0, notch_freqs=(50.0,)))
    after = band_power(filtered.data[:, 20 * 200 : 80 * 200], 200.0, {"alpha": (8.0, 14.0), "line": (45.0, 55.0)})
    assert after[1, index["sine 50 Hz"]] < 1e-3 * 5000  # notched away
    assert after[0, index["sine 8.5 Hz"]] == pytest.approx(5000, rel=0.05)  # passband untouched


def test_recording_dataclass_units():
    rec = Recording(np.ones((1, 4)), 100.0, ["Cz"], "mV")
    assert convert_units(rec, "V").data[0, 0] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="Unknown units"):
        convert_units(rec, "nV")
