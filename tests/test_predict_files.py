"""`e2llm predict` over many files: rows written as each file completes, a failing file named with its reason while
the others finish, the exit status, MNE's messages kept off the JSON lines, and the signal flags passed through."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from e2llm.training.cli import main as cli_main

mne = pytest.importorskip("mne")
pytest.importorskip("edfio")
pytestmark = [pytest.mark.filterwarnings("ignore:only .* EEG channel:UserWarning")]
CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]
REAL = Path(__file__).parent / "fixtures" / "real"


def _edf(path: Path, seconds: float, seed: int = 0, names=CHANNELS, scale=20e-6) -> Path:
    rng = np.random.default_rng(seed)
    raw = mne.io.RawArray(scale * rng.standard_normal((len(names), int(seconds * 200))),
                          mne.create_info(list(names), 200.0, "eeg"), verbose="error")
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    return path


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_failing_file_is_named_and_the_others_finish(tiny_e2llm_dir, tmp_path, capsys):
    good = [_edf(tmp_path / "a.edf", 8, 1), _edf(tmp_path / "c.edf", 4, 3)]
    bad = _edf(tmp_path / "b.edf", 4, 2, names=["X1", "X2", "X3"])  # no channel the model can use
    output = tmp_path / "out.jsonl"
    status = cli_main(["predict", str(good[0]), str(bad), str(good[1]), "--model", str(tiny_e2llm_dir),
                       "--max-new-tokens", "2", "--device", "cpu", "--output", str(output)])
    assert status == 1
    err = capsys.readouterr().err
    assert f"{bad}: failed:" in err and "no EEG channel left to use" in err and "1 of 3 files failed" in err
    rows = _rows(output.read_text())
    assert [r["file"] for r in rows if r["window"] == "all"] == [str(good[0]), str(good[1])]
    summary = rows[2]
    assert summary["channels"]["used"] == CHANNELS and "filter" in summary and summary["n_refused"] == 0
    assert {"evidence", "claims", "removed_claims", "rationale"} <= set(rows[0])


def test_help_states_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        cli_main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 every file predicted; 1 some files failed" in text
    assert all(flag in text for flag in ("--channel-map", "--montage", "--units", "--line-freq"))


def test_rows_are_written_as_each_file_completes(tiny_e2llm, tmp_path):
    from transformers import pipeline

    from e2llm.training.predict import RowWriter, predict_files

    model, processor = tiny_e2llm
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    files = [str(_edf(tmp_path / f"r{i}.edf", 4, i)) for i in range(3)]
    output = tmp_path / "rows.jsonl"
    seen = []

    def watching(path, **options):  # what is on disk when each file starts
        seen.append([r["file"] for r in _rows(output.read_text()) if r["window"] == "all"])
        return pipe(path, **options)

    with open(output, "w") as handle:
        failures = predict_files(watching, files, {"max_new_tokens": 2}, RowWriter(handle, table=False))
    assert failures == [] and seen == [[], files[:1], files[:2]]


def test_standard_output_holds_only_json_lines(tiny_e2llm_dir, tmp_path, capfd, monkeypatch):
    """Whatever MNE or a library prints while files are read goes to standard error (checked at the file
    descriptors, where MNE's own log handler writes)."""
    import e2llm.pipeline_chunks_e2llm as chunks

    opened = chunks.open_recording

    def noisy(path, **kwargs):
        print("a library's print")
        mne.utils.logger.warning("MNE says something")
        return opened(path, **kwargs)

    monkeypatch.setattr(chunks, "open_recording", noisy)
    path = _edf(tmp_path / "r.edf", 8)
    assert cli_main(["predict", str(path), "--model", str(tiny_e2llm_dir), "--max-new-tokens", "2",
                     "--device", "cpu"]) == 0
    out, err = capfd.readouterr()
    rows = _rows(out)  # every line parses
    assert len(rows) == 3 and "a library's print" in err and "MNE says something" in err


def test_signal_flags_reach_the_pipeline(tiny_e2llm_dir, tmp_path, capsys):
    numbered = REAL / "eeglab" / "test_raw_2021.set"  # EEG 000..EEG 002: refused without a map
    copy = tmp_path / numbered.name
    shutil.copy(numbered, copy)
    common = ["--model", str(tiny_e2llm_dir), "--max-new-tokens", "2", "--device", "cpu", "--no-rationale"]
    assert cli_main(["predict", str(copy), *common]) == 1
    assert "numbered cap layout" in capsys.readouterr().err
    mapping = tmp_path / "map.txt"
    mapping.write_text("EEG 000=Fz\nEEG 001=Cz\nEEG 002=Pz\n")
    assert cli_main(["predict", str(copy), *common, "--channel-map", str(mapping), "--line-freq", "60"]) == 0
    rows = _rows(capsys.readouterr().out)
    summary = rows[-1]
    assert summary["channels"]["used"] == ["Fz", "Cz", "Pz"] and summary["channels"]["placement"] == "channel_map"
    assert "60 Hz" in summary["filter"]
    assert cli_main(["predict", str(copy), *common, "--channel-map", "EEG 000=Fz", "EEG 001=Cz", "EEG 002=Pz",
                     "--units", "uV"]) == 1  # the file holds volts: taken as µV the amplitude is implausible
    assert "volts given as microvolts" in capsys.readouterr().err


def test_refused_windows_are_said_in_the_rows(tiny_e2llm_dir, tmp_path, capsys):
    """A window whose channels are mostly flat in its raw samples gets no label, and its row says why."""
    path = tmp_path / "padded.edf"
    rng = np.random.default_rng(5)
    data = 20e-6 * rng.standard_normal((len(CHANNELS), 1600))
    data[:, 800:1400] = 3e-6  # 3 s of the second window constant on every channel (a padded end)
    mne.export.export_raw(path, mne.io.RawArray(data, mne.create_info(CHANNELS, 200.0, "eeg"), verbose="error"),
                          fmt="edf", verbose="error")
    assert cli_main(["predict", str(path), "--model", str(tiny_e2llm_dir), "--device", "cpu", "--no-rationale"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert "refused" not in rows[0] and rows[1]["label"] is None and "flat" in rows[1]["refused"]
    assert rows[2]["n_refused"] == 1 and rows[2]["n_unparseable"] == 0
    # the first window is white noise: no emotion EEG, so the answer is "insufficient evidence" and the row says why
    assert rows[0]["label"] is None and rows[0]["answer"] == "insufficient evidence"
    assert rows[0]["abstention_reason"].startswith("not like the training EEG (spectrum flat like noise")
    assert rows[1]["abstention_reason"] == rows[1]["refused"] and rows[2]["n_abstained"] == 2
    assert rows[2]["answer"] == "insufficient evidence" and rows[0]["label_support"]["reason"] == "no label to support"


def test_a_failing_file_gets_its_remedy_in_command_line_words(tiny_e2llm_dir, capsys):
    numbered = REAL / "eeglab" / "test_raw_2021.set"  # channels "EEG 000".. without positions
    status = cli_main(["predict", str(numbered), "--model", str(tiny_e2llm_dir), "--no-rationale", "--device", "cpu"])
    assert status == 1
    err = capsys.readouterr().err
    assert "--montage NAME" in err and "--channel-map old=new ..." in err
    assert "montage=" not in err and "channel_map=" not in err  # the library's Python words are translated
