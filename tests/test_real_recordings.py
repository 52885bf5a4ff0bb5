"""Real recordings from MNE's public test data (tests/fixtures/real): the channels each file gives, dropped ones with
their reasons, cap layouts refused or placed by position, MNE's warnings kept as data and never printed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from e2llm.channel_quality_e2llm import unusable_channels  # noqa: E402
from e2llm.channels_e2llm import select_channels  # noqa: E402
from e2llm.processing.recording import read_recording, recording_from_raw  # noqa: E402
from e2llm.recording_file_e2llm import open_recording  # noqa: E402

REAL = Path(__file__).parent / "fixtures" / "real"
TEN_TWENTY = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4", "P8",
              "O1", "O2"]
# BioSemi ABC labels that are also 10-05 names: the 18 (C1-C6, F1-F10, I1, I2) plus A1, A2
COINCIDENTAL = [f"C{k}" for k in range(1, 7)] + [f"F{k}" for k in range(1, 11)] + ["I1", "I2", "A1", "A2"]


def test_edf_with_decorated_names_and_non_eeg_channels_typed_eeg():
    rec = open_recording(REAL / "edf" / "test_edf_stim_channel.edf")
    assert rec.ch_names == TEN_TWENTY and rec.selection.placement == "10-05 names"
    assert rec.selection.renamed["EEG T3"] == "T7" and rec.selection.renamed["EEG Fp1"] == "Fp1"
    assert rec.dropped == {"EOG VEOG_I": "name says EOG", "EOG VEOG_II": "name says EOG",
                           "REF_EEG REF_EEG": "name says reference electrode", "ECG ECG1": "name says ECG",
                           "ECG ECG2": "name says ECG", "DIG DTRIG": "name says trigger/stimulus channel"}
    assert rec.warnings == [] and rec.line_freq is None and rec.info["sfreq"] == 128.0
    assert rec.ranges_uv.shape == (19, 2)
    same = read_recording(REAL / "edf" / "test_edf_stim_channel.edf")  # prepare's path: the same channels, data
    assert same.ch_names == rec.ch_names and same.provenance["dropped_channels"] == rec.dropped
    np.testing.assert_array_equal(same.data, rec.get_data())


def test_padded_end_of_a_real_edf_is_found_flat():
    rec = open_recording(REAL / "edf" / "test_edf_stim_channel.edf")
    data, sfreq = rec.get_data() * 1e6, rec.info["sfreq"]
    second = unusable_channels(data[:, 512:1024], sfreq, rec.ranges_uv)  # 4-8 s: 5.6-9.6 s is constant
    assert len(second) == 19 and all(r.startswith("flat (") and r.endswith("for 2.4 s") for r in second.values())


def test_nihon_kohden_export_with_dc_channels_typed_eeg():
    rec = open_recording(REAL / "edf" / "chtypes_edf.edf")
    assert len(rec.ch_names) == 25 and {"F9", "T9", "P10"} <= set(rec.ch_names)
    for name in ("POL DC01", "POL DC04"):
        assert rec.dropped[name] == "name says DC channel"
    assert rec.dropped["SaO2 X9"] == "name says non-EEG sensor" and rec.dropped["EEG A1-Ref"] == (
        "name says reference electrode")
    assert rec.dropped["POL T1"] == "not a 10-05 name"
    assert np.abs(rec.get_data()).max() < 1e-3  # the DC channels' volts never reach the EEG


def test_bdf_with_sensors_and_a_cropping_warning_kept_as_data(capfd):
    mne.set_log_level("INFO")  # even a chatty MNE prints nothing: standard output carries predict's JSON lines
    try:
        rec = open_recording(REAL / "bdf" / "multiple_annotation_chans_20s.bdf")
    finally:
        mne.set_log_level("WARNING")
    assert rec.ch_names == ["C3", "C4", "F3", "Fz", "F4", "P3", "Pz", "P4", "O1", "O2"]
    assert rec.dropped["acc1"] == "name says non-EEG sensor" and rec.dropped["Trigger"] == "MNE type stim"
    assert rec.dropped["A1"] == "name says reference electrode" and rec.dropped["EMG"] == "name says EMG"
    assert rec.warnings == ["Omitted 9 annotation(s) that were outside data range."]
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_nihon_kohden_warning_is_surfaced_not_printed(capfd):
    rec = open_recording(REAL / "nihon_kohden" / "MB0400FU.EEG")
    assert rec.ch_names == ["Fp2", "Fp1", "F4", "F3", "C4", "C3", "P4", "P3", "O2", "O1", "F8", "F7", "T8", "T7", "P8",
                            "P7", "Fz", "Cz", "Pz"]
    assert rec.dropped == {"A2": "name says reference electrode", "A1": "name says reference electrode",
                           "X1": "MNE type bio", "$A2": "MNE type misc", "$A1": "MNE type misc",
                           "E": "not a 10-05 name"}
    assert rec.warnings == ["No LOG file exists. Annotations will not be read"]
    assert capfd.readouterr().out == ""
    first = unusable_channels(rec.get_data(0, 800) * 1e6, 200.0)  # the first second of the file is flat
    assert len(first) == 19 and all(r.startswith("flat (") for r in first.values())


def test_brainvision_types_respected():
    rec = open_recording(REAL / "brainvision" / "test.vhdr")
    assert len(rec.ch_names) == 26 and rec.ch_names[:2] == ["Fp1", "Fp2"]
    assert rec.dropped == {name: "MNE type misc" for name in ("CP5", "CP6", "HL", "HR", "Vb", "ReRef")}


def test_biosemi_abc_bdf_is_refused_without_a_montage_and_placed_by_position_with_one():
    path = REAL / "bdf" / "test_abc.bdf"
    with pytest.raises(ValueError) as error:
        open_recording(path)
    assert str(error.value) == (
        f"{path}: 136 channels labelled A1, A2, A3, A4, A5, A6, ... I8 follow the BioSemi ABC cap layout, not 10-05 "
        'names, so they cannot be placed by name; pass montage="biosemi256" (or the montage of your cap) to place '
        'them by position, or channel_map={"old": "new", ...} to rename them to 10-05 names')
    with pytest.raises(ValueError, match=r"pass --montage biosemi256 .* or --channel-map FILE or --channel-map "
                                         r"OLD=NEW \.\.\. to rename them"):
        open_recording(path, interface="cli")
    rec = open_recording(path, montage="biosemi256")
    assert rec.selection.placement == "montage biosemi256 (by position)"
    assert 100 <= len(rec.ch_names) == len(set(rec.ch_names))
    for label in COINCIDENTAL:  # used ones were placed by position ("C1 (2.3 deg)"), never by their name
        if label in rec.selection.renamed:
            assert rec.selection.renamed[label].endswith(" deg)")
    assert rec.dropped["I3"] == "not in montage biosemi256" and rec.dropped["Status"] == "MNE type stim"
    assert rec.dropped["Ergo-Left"] == "name says non-EEG sensor"


def test_biosemi_abc_bdf_with_a_channel_map_file(tmp_path):
    from e2llm.processing.signal_options import parse_channel_map

    path = REAL / "bdf" / "test_abc.bdf"
    (tmp_path / "map.txt").write_text("# five electrodes of the cap\nA1=Fp1\nA2=AF7\nA3=AF3\nB1=Fpz\nB2=Fp2\n")
    with pytest.raises(ValueError, match=r"131 channels labelled A4, A5, .* BioSemi ABC cap layout"):
        open_recording(path, channel_map=parse_channel_map([str(tmp_path / "map.txt")]))  # the rest unplaced
    labels = mne.io.read_raw(path, verbose="error").ch_names[:136]
    lines = ["A1=Fp1", "A2=AF7", "A3=AF3", "B1=Fpz", "B2=Fp2"]
    lines += [f"{label}=" for label in labels if label not in ("A1", "A2", "A3", "B1", "B2")]  # OLD= drops
    (tmp_path / "map.txt").write_text("\n".join(lines) + "\n")
    rec = open_recording(path, channel_map=parse_channel_map([str(tmp_path / "map.txt")]))
    assert rec.ch_names == ["Fp1", "AF7", "AF3", "Fpz", "Fp2"] and rec.selection.placement == "channel_map"
    assert rec.dropped["C1"] == "dropped by channel_map" and rec.dropped["Status"] == "MNE type stim"


def test_egi_net_needs_its_montage():
    path = REAL / "egi" / "test_egi.raw"
    with pytest.raises(ValueError, match=r"256 channels labelled E1, .* EGI/GSN cap layout.*"
                                         r'montage="GSN-HydroCel-256"'):
        open_recording(path)
    rec = open_recording(path, montage="GSN-HydroCel-256")
    assert rec.selection.placement == "montage GSN-HydroCel-256 (by position)" and len(rec.ch_names) > 180
    assert all(r.startswith("no free 10-05 site within 8 degrees") or r == "MNE type stim"
               for r in rec.dropped.values())


def test_numbered_eeglab_channels_are_refused_with_the_remedy_then_mapped():
    path = REAL / "eeglab" / "test_raw_2021.set"
    with pytest.raises(ValueError, match=r"3 channels labelled EEG 000, EEG 001, EEG 002 follow the numbered cap "
                                         r"layout.*mgh60.*channel_map="):
        open_recording(path)
    rec = open_recording(path, channel_map={"EEG 000": "Fz", "EEG 001": "Cz", "EEG 002": "Pz"})
    assert rec.ch_names == ["Fz", "Cz", "Pz"] and rec.selection.placement == "channel_map"


def test_digitised_positions_in_centimetres_are_refused():
    with pytest.raises(ValueError, match=r"egi_dig_raw\.fif: cannot place channels by the digitised positions: the "
                                         r"electrode positions fit a sphere of radius 9\.92, not a head.*channel_map"):
        open_recording(REAL / "fif" / "egi_dig_raw.fif")


def test_real_digitised_positions_place_numbered_labels(tmp_path):
    raw = mne.io.read_raw(REAL / "eeglab" / "test_raw_chanloc.set", verbose="error")
    truth = list(raw.ch_names)
    raw.rename_channels({name: str(k + 1) for k, name in enumerate(truth)})  # positions kept, names lost
    raw.save(tmp_path / "numbered_raw.fif", verbose="error")
    rec = open_recording(tmp_path / "numbered_raw.fif")
    assert rec.selection.placement == "digitised positions" and len(rec.ch_names) == 61
    own = np.mean([rec.ch_names[k] == truth[p] for k, p in enumerate(rec.selection.picks)])
    assert own >= 0.9  # measured: 97 % (59 of 61); the others land on a neighbouring 10-05 site


def test_fif_positions_with_10_20_names_keep_the_names():
    rec = open_recording(REAL / "fif" / "bv_dig_raw.fif")
    assert len(rec.ch_names) == 64 and rec.selection.placement == "10-05 names"
    assert rec.dropped == {"ECG": "name says ECG", "HEOG": "name says EOG", "VEOG": "name says EOG"}


def test_eog_typed_raw_and_its_fif_give_the_same_channels(tmp_path):
    raw = mne.io.read_raw(REAL / "edf" / "test_edf_stim_channel.edf", preload=True, verbose="error")
    raw.set_channel_types({"EEG Fp1": "eog", "EEG Fp2": "eog"}, verbose="error")
    raw.save(tmp_path / "typed_raw.fif", verbose="error")
    from_file = open_recording(tmp_path / "typed_raw.fif")
    from_raw = select_channels(raw.ch_names, raw.get_channel_types(), raw.info["bads"], source="raw")
    assert from_file.selection.picks == from_raw.picks and from_file.ch_names == from_raw.names
    assert from_file.dropped["EEG Fp1"] == from_raw.dropped["EEG Fp1"] == "MNE type eog"
    assert "Fp1" not in from_file.ch_names and "Fp2" not in from_raw.names
    assert recording_from_raw(raw).ch_names == from_raw.names  # prepare's path too


def test_bad_channels_of_a_real_file_are_dropped_with_the_reason(tmp_path):
    raw = mne.io.read_raw(REAL / "brainvision" / "test.vhdr", preload=True, verbose="error")
    raw.info["bads"] = ["Cz"]
    raw.save(tmp_path / "bads_raw.fif", verbose="error")
    rec = open_recording(tmp_path / "bads_raw.fif")
    assert "Cz" not in rec.ch_names and rec.dropped["Cz"] == "marked bad (info['bads'])"


def test_raw_epochs_and_file_give_the_same_channels(tmp_path):
    from e2llm.channels_e2llm import select_mne_channels

    raw = mne.io.read_raw(REAL / "brainvision" / "test.vhdr", preload=True, verbose="error")
    raw.set_channel_types({"FP1": "eog", "FP2": "eog"}, verbose="error")
    raw.info["bads"] = ["Pz"]
    epochs = mne.make_fixed_length_epochs(raw, duration=2.0, verbose="error")
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    selections = [select_mne_channels(raw), select_mne_channels(epochs), select_mne_channels(epochs.info),
                  open_recording(tmp_path / "rec_raw.fif").selection]
    for selection in selections:
        assert selection.names == selections[0].names and selection.dropped == selections[0].dropped
    assert selections[0].dropped["FP1"] == "MNE type eog" and selections[0].dropped["Pz"] == (
        "marked bad (info['bads'])")
    assert len(selections[0].names) == 23
