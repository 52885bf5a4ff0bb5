"""Recordings that lie (issue 27, item 5), built from the real fixtures: an edited header byte, stuck or clipped
samples, a header pointing at a file outside its folder. Each case: the behaviour and the message."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from e2llm.channel_quality_e2llm import unusable_channels  # noqa: E402
from e2llm.processing.prepare import prepare_dataset  # noqa: E402
from e2llm.processing.recording import read_recording  # noqa: E402
from e2llm.recording_checks_e2llm import read_edf_header  # noqa: E402
from e2llm.recording_file_e2llm import open_recording  # noqa: E402

REAL = Path(__file__).parent / "fixtures" / "real"
EDF = REAL / "edf" / "test_edf_stim_channel.edf"  # 25 signals, 1 record of 1228 samples each, 16 bit
CHTYPES = REAL / "edf" / "chtypes_edf.edf"  # 42 signals, 5 records of 1 s at 200 Hz, 16 bit
BDF = REAL / "bdf" / "multiple_annotation_chans_20s.bdf"  # 34 signals (15 annotation), 20 records of 1 s, 24 bit
_FIELDS = {"physical_min": (104, 8), "physical_max": (112, 8), "digital_min": (120, 8), "digital_max": (128, 8)}


def _edit_signal_field(data: bytearray, field: str, index: int, value: str) -> None:
    n_signals = int(data[252:256])
    offset, width = _FIELDS[field]
    start = 256 + offset * n_signals + width * index
    data[start:start + width] = f"{value:<{width}}".encode()


def _copy(source: Path, folder: Path, name: str | None = None, edit=None) -> Path:
    data = bytearray(source.read_bytes())
    if edit is not None:
        edit(data)
    path = folder / (name or source.name)
    path.write_bytes(bytes(data))
    return path


def _sample_offsets(path: Path, label: str) -> tuple[list[int], int, int]:
    """`(byte offset of `label`'s samples in each record, samples per record, bytes per sample)`."""
    header = read_edf_header(path)
    width = 3 if header.bdf else 2
    index = header.labels.index(label)
    record = sum(header.samples) * width
    before = sum(header.samples[:index]) * width
    return [header.header_bytes + r * record + before for r in range(header.n_records)], header.samples[index], width


def test_digital_min_equal_to_max_drops_that_channel(tmp_path):
    path = _copy(EDF, tmp_path, edit=lambda d: _edit_signal_field(d, "digital_max", 1, "-32768"))
    with pytest.warns(RuntimeWarning, match="Scaling factor will not be defined"):  # MNE's own reading warns
        mne.io.read_raw(path, verbose="warning")
    for read in (open_recording, read_recording):
        rec = read(path)
        names = rec.ch_names
        dropped = rec.dropped if hasattr(rec, "dropped") else rec.provenance["dropped_channels"]
        assert "Fp2" not in names and len(names) == 18
        assert dropped["EEG Fp2"] == ("EDF header: digital minimum (-32768) is not below the maximum (-32768): the "
                                  "scaling is undefined")


def test_record_duration_zero_is_refused(tmp_path):
    def zero(data):
        data[244:252] = b"0       "

    path = _copy(EDF, tmp_path, edit=zero)
    with pytest.raises(ValueError, match=r"the EDF/BDF header is not plausible: the record duration is 0 s \(bytes "
                                         r"244-251\), so the sampling rate is undefined\. Fix the header"):
        open_recording(path)


def test_physical_range_problems_drop_the_channel(tmp_path):
    def edit(data):
        _edit_signal_field(data, "physical_min", 2, "175921")
        _edit_signal_field(data, "physical_max", 2, "175921")  # = physical minimum
        _edit_signal_field(data, "physical_min", 3, "-4800000")  # +-4.8 V for an EEG channel
        _edit_signal_field(data, "physical_max", 3, "4800000")

    rec = open_recording(_copy(EDF, tmp_path, edit=edit))
    assert rec.dropped["EEG F7"] == "EDF header: physical minimum = maximum (175921): every sample would read 175921"
    assert rec.dropped["EEG F3"] == ("EDF header: physical range -4.8e+06..4.8e+06 uV is beyond any EEG amplifier's "
                                 "(+-1 V): the ranges or the units in the header are wrong")
    assert len(rec.ch_names) == 17


def test_a_field_that_is_not_a_number_is_refused(tmp_path):
    path = _copy(EDF, tmp_path, edit=lambda d: _edit_signal_field(d, "digital_min", 0, "abc"))
    with pytest.raises(ValueError, match=r"header is not plausible: digital min of channel 'EEG Fp1' is 'abc', not "
                                         r"a number"):
        open_recording(path)


def test_sample_count_against_file_size(tmp_path):
    content = CHTYPES.read_bytes()
    (tmp_path / "cut.edf").write_bytes(content[:len(content) - 20000])
    with pytest.raises(ValueError, match=r"cut\.edf looks damaged or truncated: the header declares 5 records but the "
                                         r"file holds 3 \(and "):
        open_recording(tmp_path / "cut.edf")
    (tmp_path / "long.edf").write_bytes(content + b"\0" * 1000)
    rec = open_recording(tmp_path / "long.edf")
    assert "long.edf: 1000 bytes after the 5 records the header declares are ignored" in rec.warnings
    assert len(rec.ch_names) == 25


def _stuck_at_rail(tmp_path) -> Path:
    """chtypes_edf.edf with 'EEG C3-Ref' stuck at its digital maximum for records 1-3 (3 s)."""
    header = read_edf_header(CHTYPES)
    top = header.digital_max[header.labels.index("EEG C3-Ref")]

    def stick(data):
        offsets, n, width = _sample_offsets(CHTYPES, "EEG C3-Ref")
        for start in offsets[1:4]:
            data[start:start + n * width] = np.full(n, top, "<i2").tobytes()

    return _copy(CHTYPES, tmp_path, edit=stick)


def test_rail_stuck_int16_channel(tmp_path):
    rec = open_recording(_stuck_at_rail(tmp_path))
    c3 = rec.ch_names.index("C3")
    problems = unusable_channels(rec.get_data() * 1e6, rec.info["sfreq"], rec.ranges_uv)
    limit = rec.ranges_uv[c3, 1]
    assert problems == {c3: f"stuck at the amplifier's limit ({limit:.4g} uV) for 3 s"}


def _clipped(tmp_path) -> Path:
    """The BDF with C3's fast part (its deviation from a 0.5-s moving average) amplified until 20 % of it exceeds
    +-3000 uV, then clipped there, as an amplifier or an export with a +-3 mV range clips large artefacts."""
    header = read_edf_header(BDF)
    index = header.labels.index("C3")
    pmin, dmin = header.physical_min[index], header.digital_min[index]
    gain = (header.physical_max[index] - pmin) / (header.digital_max[index] - dmin)
    x = mne.io.read_raw(BDF, verbose="error").get_data(picks=["C3"])[0] * 1e6
    fast = x - np.convolve(x, np.ones(63) / 63, mode="same")
    y = np.clip(fast * 3000 / np.percentile(np.abs(fast), 80), -3000, 3000)
    digital = np.round((y - pmin) / gain + dmin).astype(np.int32)

    def clip(data):
        offsets, n, _ = _sample_offsets(BDF, "C3")
        for r, start in enumerate(offsets):
            value = digital[r * n:(r + 1) * n] & 0xFFFFFF
            data[start:start + 3 * n] = np.stack([value & 255, (value >> 8) & 255, value >> 16], 1).astype(
                np.uint8).tobytes()

    return _copy(BDF, tmp_path, edit=clip)


def test_clipping_at_3000_uv(tmp_path):
    rec = open_recording(_clipped(tmp_path))
    c3 = rec.ch_names.index("C3")
    data = rec.get_data() * 1e6
    assert np.abs(data[c3]).max() == pytest.approx(3000, abs=0.1)
    problems = unusable_channels(data, rec.info["sfreq"], rec.ranges_uv)
    assert list(problems) == [c3] and problems[c3].startswith("clipped at +-3000 uV (")


def test_prepare_leaves_stuck_and_clipped_channels_out_of_windows_and_says_so(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _stuck_at_rail(root).rename(root / "stuck.edf")
    _clipped(root).rename(root / "clipped.bdf")
    (root / "labels.csv").write_text("file,emotion\nstuck.edf,calm\nclipped.bdf,calm\n")
    out = tmp_path / "prepared"
    ds = prepare_dataset("folder", root, output_dir=out, progress=False, window_seconds=1.0, stride_seconds=1.0,
                         l_freq=1.0, channel_policy="each")  # 25 and 10 channels: each keeps its own
    summary = json.loads((out / "summary.json").read_text())
    quality = summary["window_quality"]
    stuck = [e for e in quality["examples"] if e["source"].endswith("stuck.edf")]
    clipped = [e for e in quality["examples"] if e["source"].endswith("clipped.bdf")]
    assert quality["windows_refused"] == 0 and quality["channel_windows_masked"]["C3"] == 3 + len(clipped)
    assert [e["start"] for e in stuck] == [1.0, 2.0, 3.0] and len(clipped) >= 3
    assert all(e["channels"] == {"C3": e["channels"]["C3"]} for e in quality["examples"])
    assert stuck[0]["channels"]["C3"].startswith("stuck at the amplifier's limit (")
    assert all(e["channels"]["C3"].startswith("clipped at ") for e in clipped)
    c3 = summary["metadata"]["channel_names"].index("C3")
    rows = ds.with_format("numpy")
    eeg, subjects = np.asarray(rows["eeg"]), np.asarray(rows["trial"])
    first = eeg[subjects == 1]  # stuck.edf: 5 one-second windows, C3 masked in windows 1-3 only
    assert np.all(first[1:4, c3] == 0) and np.all(first[[0, 4], c3].std(axis=-1) > 0)


def test_prepare_refuses_windows_where_most_channels_are_unusable(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(REAL / "nihon_kohden" / "MB0400FU.EEG", root)
    for ext in ("21E", "PNT"):
        shutil.copy(REAL / "nihon_kohden" / f"MB0400FU.{ext}", root)
    (root / "labels.csv").write_text("file,emotion\nMB0400FU.EEG,calm\n")
    out = tmp_path / "prepared"
    prepare_dataset("folder", root, output_dir=out, progress=False, l_freq=1.0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_windows"] == 6 and summary["window_quality"]["windows_refused"] == 1  # 7 windows in 29 s
    example = summary["window_quality"]["examples"][0]
    assert example["action"] == "window refused" and example["start"] == 0.0 and len(example["channels"]) == 19
    assert summary["channels"]["files"][str(root / "MB0400FU.EEG")]["warnings"] == [
        "No LOG file exists. Annotations will not be read"]


def _brainvision(folder: Path, data_file: str | None = None, marker_file: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("eeg", "vmrk"):
        shutil.copy(REAL / "brainvision" / f"test.{ext}", folder)
    text = (REAL / "brainvision" / "test.vhdr").read_text(encoding="latin-1")
    if data_file is not None:
        text = text.replace("DataFile=test.eeg", f"DataFile={data_file}")
    if marker_file is not None:
        text = text.replace("MarkerFile=test.vmrk", f"MarkerFile={marker_file}")
    (folder / "test.vhdr").write_text(text, encoding="latin-1")
    return folder / "test.vhdr"


@pytest.fixture
def mne_never_opens(monkeypatch):
    """Make every MNE reader fail loudly: a refusal must come before MNE opens anything."""
    def opened(*args, **kwargs):
        raise AssertionError("MNE was asked to open the file")

    for name in ("read_raw", "read_raw_brainvision", "read_raw_eeglab"):
        monkeypatch.setattr(mne.io, name, opened)


def test_brainvision_data_file_outside_the_folder_is_refused_before_mne_opens_it(tmp_path, mne_never_opens):
    cases = {
        "/etc/passwd": r"DataFile= '/etc/passwd' is not a file name beside the header",
        "../../etc/passwd": r"DataFile= '\.\./\.\./etc/passwd' is not a file name beside the header",
        "missing.eeg": r"DataFile= 'missing.eeg' is not found beside the header",
    }
    for k, (value, message) in enumerate(cases.items()):
        header = _brainvision(tmp_path / f"case{k}", data_file=value)
        for read in (open_recording, read_recording):
            with pytest.raises(ValueError, match=message):
                read(header)
    header = _brainvision(tmp_path / "marker", marker_file="../elsewhere/test.vmrk")
    with pytest.raises(ValueError, match=r"MarkerFile= '\.\./elsewhere/test\.vmrk' is not a file name beside"):
        open_recording(header)


def test_brainvision_data_file_linked_from_elsewhere_is_refused(tmp_path, mne_never_opens):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(REAL / "brainvision" / "test.eeg", outside / "real.eeg")
    header = _brainvision(tmp_path / "rec")
    (tmp_path / "rec" / "test.eeg").unlink()
    os.symlink(outside / "real.eeg", tmp_path / "rec" / "test.eeg")
    with pytest.raises(ValueError, match=r"DataFile= 'test\.eeg' is a link to .*outside[/\\]real\.eeg, outside the "
                                         r"recording's folder"):
        open_recording(header)


def test_eeglab_fdt_outside_the_folder_is_refused_before_mne_opens_it(tmp_path, mne_never_opens):
    content = (REAL / "eeglab" / "test_raw_chanloc.set").read_bytes()
    original = "test_raw_chanloc.fdt".encode("utf-16-le")  # the .set stores the name as MATLAB chars
    for k, elsewhere in enumerate(("../up/test_raw_c.fdt", "/etc/x/test_raw_.fdt")):
        assert len(elsewhere) == 20 and content.count(original) == 2  # EEG.data and EEG.datfile
        folder = tmp_path / f"case{k}"
        folder.mkdir()
        (folder / "test_raw_chanloc.set").write_bytes(content.replace(original, elsewhere.encode("utf-16-le")))
        shutil.copy(REAL / "eeglab" / "test_raw_chanloc.fdt", folder)
        with pytest.raises(ValueError, match=rf"its data file \(EEG.data\) '{elsewhere}' is not a file name beside "
                                             r"the header"):
            open_recording(folder / "test_raw_chanloc.set")


def test_the_real_headers_pass(tmp_path):
    """The untouched fixtures are not refused by the checks above (no false alarm on real files)."""
    assert len(open_recording(REAL / "brainvision" / "test.vhdr").ch_names) == 26
    assert len(open_recording(REAL / "eeglab" / "test_raw_chanloc.set").ch_names) == 61
    assert open_recording(BDF).dropped.get("C3") is None and open_recording(CHTYPES).warnings == []
