"""The one channel rule (`e2llm.channels_e2llm.select_channels`) on names, types, bads, maps, montages, positions."""

from __future__ import annotations

import numpy as np
import pytest

from e2llm.channels_e2llm import ChannelSelection, channel_kind, select_channels

mne = pytest.importorskip("mne")


def _abc(n):
    return [f"{'ABCDEFGH'[k // 32]}{k % 32 + 1}" for k in range(n)]


def _site_angle(a: str, b: str) -> float:
    """Angle in degrees between two 10-05 sites of the template, seen from its sphere's centre."""
    from e2llm.cap_layouts_e2llm import _fit_sphere, template_positions

    positions = template_positions()
    centre, _ = _fit_sphere(np.array(list(positions.values())))
    u, v = (positions[a] - centre), (positions[b] - centre)
    return float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))))


def test_types_bads_and_names_each_dropped_with_the_reason():
    sel = select_channels(["Fp1", "Fp2", "Fz", "Cz", "VEO", "ECG", "STI 014", "Box1", "Pz"],
                          types=["eog", "eeg", "eeg", "eeg", "eeg", "eeg", "stim", "eeg", "misc"], bads=["Cz"])
    assert sel.names == ["Fp2", "Fz"] and sel.picks == [1, 2]
    assert sel.dropped == {"Fp1": "MNE type eog", "Cz": "marked bad (info['bads'])", "VEO": "name says EOG",
                           "ECG": "name says ECG", "STI 014": "MNE type stim", "Box1": "not a 10-05 name",
                           "Pz": "MNE type misc"}
    assert sel.placement == "10-05 names"
    assert sel.as_dict() == {"used": ["Fp2", "Fz"], "dropped": sel.dropped, "placement": "10-05 names"}


def test_arrays_have_no_types_but_names_still_count():
    sel = select_channels(["FP1", "EEG T3-REF", "HEOG", "POL DC01", "$A1", "EEG A1-Ref"])
    assert sel.names == ["Fp1", "T7"]
    assert sel.renamed == {"FP1": "Fp1", "EEG T3-REF": "T7"}
    assert sel.dropped == {"HEOG": "name says EOG", "POL DC01": "name says DC channel", "$A1": "name says non-EEG sensor",
                           "EEG A1-Ref": "name says reference electrode"}


def test_channel_kinds():
    assert channel_kind("VEO") == "eog" and channel_kind("HEOG") == "eog" and channel_kind("EOG-L") == "eog"
    assert channel_kind("ECG") == "ecg" and channel_kind("M1") == "ref" and channel_kind("STI 014") == "stim"
    assert channel_kind("GSR") == "misc" and channel_kind("Fp1") == "eeg" and channel_kind("CB2") == "eeg"
    assert channel_kind("X1", mne_type="misc") == "misc" and channel_kind("DC03") == "dc"
    assert channel_kind("EEG 001") == "eeg" and channel_kind("LEOG") == "eog" and channel_kind("REF_EEG") == "ref"


def test_channel_map_renames_first_and_checks_both_sides():
    sel = select_channels(["EXG1", "ch2", "Cz"], channel_map={"EXG1": "fp1", "ch2": None})
    assert sel.names == ["Fp1", "Cz"] and sel.dropped == {"ch2": "dropped by channel_map"}
    assert sel.placement == "channel_map + 10-05 names"
    with pytest.raises(ValueError, match=r"channel_map names channels that rec.edf does not have: \['nope'\]"):
        select_channels(["Cz"], channel_map={"nope": "Fz"}, source="rec.edf")
    with pytest.raises(ValueError, match=r"--channel-map: new names must be 10-05 electrode names.*'Cz=Q7'"):
        select_channels(["Cz"], channel_map={"Cz": "Q7"}, interface="cli")
    # a channel the user renamed is judged by the new name, not its old one; its MNE type still counts
    assert select_channels(["LEOG", "Cz"], channel_map={"LEOG": "Fp1"}).names == ["Fp1", "Cz"]
    assert select_channels(["LEOG", "Cz"], types=["eog", "eeg"], channel_map={"LEOG": "Fp1"}).dropped == {
        "LEOG": "MNE type eog"}


def test_biosemi_abc_labels_are_never_placed_by_a_coincidental_name():
    labels = _abc(128)  # holds C1-C6 and A1/A2: 10-05 names by coincidence
    with pytest.raises(ValueError) as python_error:
        select_channels(labels, source="rec.bdf")
    message = str(python_error.value)
    assert message.startswith("rec.bdf: 128 channels labelled A1, A2, A3") and "BioSemi ABC" in message
    assert 'montage="biosemi128"' in message and "channel_map=" in message
    with pytest.raises(ValueError, match=r"--montage biosemi128 .*--channel-map FILE"):
        select_channels(labels, interface="cli")


def test_biosemi_16_to_64_abc_labels_take_the_montage_names_in_biosemi_order():
    sel = select_channels(_abc(64) + ["EXG1", "Status"], types=["eeg"] * 65 + ["stim"], montage="biosemi64")
    expected = mne.channels.make_standard_montage("biosemi64").ch_names
    assert sel.names == expected and sel.placement == "montage biosemi64 (BioSemi ABC order)"
    assert sel.dropped == {"EXG1": "not in montage biosemi64", "Status": "MNE type stim"}
    assert select_channels(_abc(16), montage="biosemi16").names[:3] == ["Fp1", "Fp2", "F4"]


def test_dense_caps_are_placed_by_position_at_free_sites_within_the_tolerance():
    sel = select_channels(_abc(128), montage="biosemi128")
    assert sel.placement == "montage biosemi128 (by position)"
    assert len(set(sel.names)) == len(sel.names) >= 120  # one electrode per site
    assert sel.renamed["A1"].startswith("Cz (")  # BioSemi's A1 is the vertex
    degrees = [float(v.split("(")[1].split(" ")[0]) for v in sel.renamed.values()]
    assert max(degrees) <= 8.0
    assert all(reason.startswith("no free 10-05 site within 8 degrees") for reason in sel.dropped.values())


def test_egi_labels_with_a_gsn_montage():
    labels = mne.channels.make_standard_montage("GSN-HydroCel-129").ch_names
    with pytest.raises(ValueError, match='EGI/GSN cap layout.*montage="GSN-HydroCel-128"'):
        select_channels(labels[:-1])
    sel = select_channels(labels, montage="GSN-HydroCel-129")
    assert "Cz" in sel.names and sel.placement == "10-05 names + montage GSN-HydroCel-129 (by position)"
    assert len(sel.names) > 100


def test_numbered_labels_need_positions_or_a_map():
    with pytest.raises(ValueError, match=r"3 channels labelled EEG 000, EEG 001, EEG 002 follow the numbered cap "
                                         r"layout.*montage=\"NAME\".*channel_map="):
        select_channels(["EEG 000", "EEG 001", "EEG 002"])
    mgh = [f"EEG {k:03d}" for k in range(1, 61)]  # spelled with a space; the montage has EEG001
    sel = select_channels(mgh, montage="mgh60")
    assert sel.names[:3] == ["Fp1", "Fpz", "Fp2"] and not sel.dropped


def test_digitised_positions_place_unknown_labels_and_refuse_wrong_units():
    montage = mne.channels.make_standard_montage("easycap-M1")
    positions = montage.get_positions()["ch_pos"]
    names = [n for n in montage.ch_names if n not in ("A1", "A2")][:40]
    numbered = {n: str(k + 1) for k, n in enumerate(names)}
    sel = select_channels(list(numbered.values()), positions={numbered[n]: positions[n] for n in names})
    assert sel.placement == "digitised positions"
    own = np.mean([sel.names[k] == names[p] for k, p in enumerate(sel.picks)])
    assert own >= 0.6 and len(sel.names) >= 38
    # the others land on a neighbouring 10-05 site: within 12 degrees of the site of their own name
    assert max(_site_angle(sel.names[k], names[p]) for k, p in enumerate(sel.picks)) <= 12.0
    in_cm = {numbered[n]: np.asarray(positions[n]) * 100 for n in names}
    with pytest.raises(ValueError, match=r"fit a sphere of radius 9\.5, not a head .*must be in metres"):
        select_channels(list(numbered.values()), positions=in_cm)


def test_unknown_montage_and_duplicates_and_nothing_left():
    with pytest.raises(ValueError, match="unknown montage 'biosemi65'; MNE's standard montages are: "):
        select_channels(_abc(64), montage="biosemi65")
    with pytest.raises(ValueError, match=r"channels \{'Fp1': \['Fp1', 'FP1'\]\} all resolve to the same 10-05 "
                                         r"electrode; rename or drop all but one with channel_map"):
        select_channels(["Fp1", "FP1", "Cz"])
    with pytest.raises(ValueError, match=r"x.fif: no EEG channel left to use among 2 channels \(ECG: name says ECG; "
                                         r"Box: not a 10-05 name\); if some are EEG electrodes, name them with "
                                         r"channel_map"):
        select_channels(["ECG", "Box"], source="x.fif")


def test_without_removes_used_channels_with_reasons():
    sel = select_channels(["Fp1", "Fz", "Cz"])
    fewer = sel.without({1: "flat"})
    assert isinstance(fewer, ChannelSelection) and fewer.names == ["Fp1", "Cz"] and fewer.picks == [0, 2]
    assert fewer.dropped == {"Fz": "flat"}
    with pytest.raises(ValueError, match=r"rec: no EEG channel left to use \(Fp1: flat; Fz: flat; Cz: flat\)"):
        sel.without({0: "flat", 1: "flat", 2: "flat"}, source="rec")
