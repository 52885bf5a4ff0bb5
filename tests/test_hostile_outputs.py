"""Issue 27.1: no command writes over anything it did not create; writes are atomic.

Rows: `e2llm predict rec.edf ... --output rec.edf` overwrote the recording; `--output MODEL/config.json` broke the
model; any output path that is an input, inside an input or a model folder, or an existing file e2llm did not write,
is refused unless `--overwrite` (and never for an input); a full disk leaves the old file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import e2llm.safe_output as safe_output
from e2llm.safe_output import (
    MANIFEST_FILE,
    atomic_open,
    atomic_write,
    check_output_file,
    is_model_folder,
    made_by_e2llm,
    protecting_folder,
    sweep_leftovers,
    write_output_file,
)
from e2llm.training.cli import main as cli

# e2llm.safe_output is standard library only: subprocesses import it without the package __init__ (transformers).
LIGHT_IMPORT = textwrap.dedent(f"""
    import sys, types
    package = types.ModuleType("e2llm")
    package.__path__ = [{str(Path(safe_output.__file__).parent)!r}]
    sys.modules["e2llm"] = package
""")


@pytest.fixture
def recording(tmp_path) -> Path:
    path = tmp_path / "rec.edf"
    path.write_bytes(b"0       precious EDF header" + bytes(range(256)))
    return path


def test_predict_output_equal_to_the_recording_is_refused(tiny_e2llm_dir, recording, capsys):
    before = recording.read_bytes()
    assert cli(["predict", str(recording), "--model", str(tiny_e2llm_dir), "--output", str(recording)]) == 2
    assert "--output" in capsys.readouterr().err and recording.read_bytes() == before


def test_predict_output_inside_the_model_folder_is_refused(tiny_e2llm_dir, recording, capsys):
    config = tiny_e2llm_dir / "config.json"
    before = config.read_bytes()
    assert cli(["predict", str(recording), "--model", str(tiny_e2llm_dir), "--output", str(config)]) == 2
    err = capsys.readouterr().err
    assert "inside the input folder" in err and str(tiny_e2llm_dir) in err and config.read_bytes() == before


def test_an_input_is_refused_even_with_overwrite(recording):
    with pytest.raises(ValueError, match="is the input"):
        check_output_file(recording, inputs=[recording], overwrite=True)
    link = recording.parent / "link.edf"
    os.link(recording, link)  # a hard link is the same file under another name
    with pytest.raises(ValueError, match="is the input"):
        check_output_file(link, inputs=[recording], overwrite=True)
    with pytest.raises(ValueError, match="inside the input folder"):
        check_output_file(recording.parent / "out.jsonl", inputs=[recording.parent], overwrite=True)


def test_a_file_e2llm_did_not_write_needs_overwrite(tmp_path):
    mine = tmp_path / "notes.jsonl"
    mine.write_text("my notes\n")
    with pytest.raises(FileExistsError, match=r"output='.*notes.jsonl' exists and was not written by e2llm.*"
                                              r"overwrite=True"):
        write_output_file(mine, "{}\n")
    assert mine.read_text() == "my notes\n"
    write_output_file(mine, "{}\n", overwrite=True)
    assert mine.read_text() == "{}\n" and made_by_e2llm(mine)


def test_a_file_e2llm_wrote_is_replaced_until_someone_edits_it(tmp_path):
    out = tmp_path / "predictions.jsonl"
    write_output_file(out, '{"label": "fear"}\n')
    write_output_file(out, '{"label": "anger"}\n')  # ours: replaced without overwrite
    assert out.read_text() == '{"label": "anger"}\n'
    assert json.loads((tmp_path / MANIFEST_FILE).read_text())["files"]["predictions.jsonl"]["size"] == 19
    out.write_text('{"label": "anger", "checked_by": "me"}\n')  # the user edits it: no longer ours
    assert not made_by_e2llm(out)
    with pytest.raises(FileExistsError, match="not written by e2llm"):
        write_output_file(out, "{}\n")


def test_a_file_replaced_by_a_link_is_not_ours(tmp_path):
    out = tmp_path / "report.json"
    write_output_file(out, "{}\n")
    target = tmp_path / "elsewhere.json"
    target.write_text("{}\n")
    out.unlink()
    out.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_output_file(out, "[]\n")
    assert target.read_text() == "{}\n"


def test_model_folders_and_e2llm_folders_are_protected(tiny_e2llm_dir, tmp_path):
    assert is_model_folder(tiny_e2llm_dir) and protecting_folder(tiny_e2llm_dir / "x.json") == tiny_e2llm_dir.resolve()
    with pytest.raises(ValueError, match="inside the model folder .* overwrite=True"):
        check_output_file(tiny_e2llm_dir / "predictions.jsonl")
    check_output_file(tiny_e2llm_dir / "predictions.jsonl", overwrite=True)  # explicit
    braindecode = tmp_path / "braindecode"
    braindecode.mkdir()
    (braindecode / "config.json").write_text(json.dumps({"chs_info": [], "n_outputs": 2}))
    assert is_model_folder(braindecode)
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text(json.dumps({"theme": "dark"}))  # some other tool's config: not a model
    assert not is_model_folder(project)
    check_output_file(project / "out.jsonl")


def test_streams_are_written_in_place():
    check_output_file("/dev/null")
    with atomic_open("/dev/null") as handle:
        handle.write("nothing")
    assert Path("/dev/null").exists() and not Path("/dev/null").is_file()


def test_folder_and_file_paths_are_told_apart(tmp_path):
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        check_output_file(tmp_path)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="a_file is a file, not a folder"):
        check_output_file(tmp_path / "a_file" / "out.json")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "report.json"
    atomic_write(out, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(out) as handle:
            handle.write("half of the new")
            raise RuntimeError("killed")
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_temporaries_of_dead_processes_are_swept(tmp_path):
    out = tmp_path / "report.json"
    code = LIGHT_IMPORT + (f"from e2llm.safe_output import atomic_open\nimport os\n"
                           f"with atomic_open({str(out)!r}) as h:\n    h.write('x'); h.flush(); os._exit(9)\n")
    subprocess.run([sys.executable, "-c", code], check=False)
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".report.json.tmp-")]
    assert len(left) == 1 and not out.exists()
    assert sweep_leftovers(out) == left and not left[0].exists()


_FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, write() fails with EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    from e2llm.safe_output import atomic_write
    try:
        atomic_write(sys.argv[1], "new " * 10000)
    except OSError as error:
        print("ERROR", error)
""")


def test_a_full_disk_leaves_the_old_file(tmp_path):
    out = tmp_path / "predictions.jsonl"
    out.write_text("old\n")
    result = subprocess.run([sys.executable, "-c", LIGHT_IMPORT + _FULL_DISK, str(out)], capture_output=True,
                            text=True, check=True)
    assert "ERROR" in result.stdout and "no room left to write" in result.stdout, result.stdout + result.stderr
    assert "nothing was replaced" in result.stdout
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl"]


def _fif_recording(path: Path) -> Path:
    import mne
    import numpy as np

    names = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "Fz", "Cz", "Pz"]
    data = 20e-6 * np.random.default_rng(0).standard_normal((len(names), 200 * 10))
    mne.io.RawArray(data, mne.create_info(names, 200.0, "eeg"), verbose="error").save(path, verbose="error")
    return path


def test_predict_records_its_output_and_takes_overwrite(tiny_e2llm_dir, tmp_path):
    fif = _fif_recording(tmp_path / "rec_raw.fif")
    out = tmp_path / "predictions.jsonl"
    out.write_text("somebody's notes\n")
    args = ["predict", str(fif), "--model", str(tiny_e2llm_dir), "--no-rationale", "--output", str(out)]
    assert cli(args) == 2 and out.read_text() == "somebody's notes\n"  # not ours: refused
    assert cli([*args, "--overwrite"]) == 0 and made_by_e2llm(out)
    assert cli(args) == 0  # ours now: replaced without --overwrite


def test_output_folders_inside_an_input_are_refused(tiny_e2llm_dir, recording, tmp_path, capsys):
    maps = tiny_e2llm_dir / "maps"
    assert cli(["predict", str(recording), "--model", str(tiny_e2llm_dir), "--evidence-dir", str(maps)]) == 2
    assert "--evidence-dir" in (err := capsys.readouterr().err) and "inside the input folder" in err
    assert not maps.exists()
    data = tmp_path / "prepared"
    data.mkdir()
    assert cli(["train", "stage1", "--tiny", "true", "--dataset_path", str(data), "--output_dir", str(data)]) == 2
    assert "--output_dir" in (err := capsys.readouterr().err) and "is the input" in err
    # a folder that merely holds an input is fine: pictures next to the recordings
    from e2llm.training.cli_checks import check_output_folder

    assert check_output_folder(recording.parent, "--evidence-dir", [recording]) == recording.parent


def test_a_model_card_replaces_only_generated_cards(tiny_e2llm_dir, tmp_path):
    from e2llm.hub_cards import write_model_card

    folder = tmp_path / "stage3"
    shutil.copytree(tiny_e2llm_dir, folder)
    readme = folder / "README.md"
    readme.write_text("---\nlibrary_name: transformers\ntags:\n- trl\n- sft\n---\n# Model Card\nTrained with TRL.\n")
    write_model_card(folder)  # a Trainer's card: replaced
    assert "e2llm" in readme.read_text() and made_by_e2llm(readme)
    write_model_card(folder)  # e2llm's own card: replaced again
    readme.write_text(readme.read_text() + "\n## My notes\nDo not use on children.\n")  # the user edits it
    with pytest.raises(FileExistsError, match=r"README\.md is a card e2llm did not write \(or one edited since\).*"
                                              r"overwrite=True"):
        write_model_card(folder)
    assert "My notes" in readme.read_text()
    write_model_card(folder, overwrite=True)
    assert "My notes" not in readme.read_text()


def test_init_does_not_write_into_a_folder_it_did_not_create(tmp_path, capsys):
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.json").write_text('{"theme": "dark"}')
    assert cli(["init", "--tiny", "--output-dir", str(mine)]) == 2
    assert (mine / "config.json").read_text() == '{"theme": "dark"}' and not (mine / "model.safetensors").exists()
    assert "--output-dir" in capsys.readouterr().err


def test_train_does_not_write_into_a_folder_it_did_not_create(tmp_path, capsys):
    from e2llm.processing.prepare import prepare_dataset

    data = tmp_path / "prepared"
    prepare_dataset("synthetic", None, output_dir=data, n_subjects=2, trial_seconds=8.0, progress=False)
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.json").write_text('{"theme": "dark"}')
    code = cli(["train", "stage1", "--tiny", "true", "--dataset_path", str(data), "--max_steps", "1",
                "--report_to", "none", "--output_dir", str(mine)])
    assert code == 2 and (mine / "config.json").read_text() == '{"theme": "dark"}'
    assert "--output_dir" in capsys.readouterr().err


def test_a_folder_without_write_permission_is_named(tmp_path, monkeypatch):
    """(Simulated: the tests run as root, who may write anywhere.)"""
    from e2llm import atomic_files

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(atomic_files, "open", refuse, raising=False)
    with pytest.raises(PermissionError, match=r"cannot write .*report\.json: no permission to create files in"):
        atomic_write(tmp_path / "report.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_receives_files(tiny_e2llm_dir, recording, tmp_path):
    from e2llm.safe_output import check_files_dir

    assert check_files_dir(tmp_path / "maps", inputs=[recording], option="evidence_dir") == tmp_path / "maps"
    assert check_files_dir(recording.parent, inputs=[recording]) == recording.parent  # beside an input: fine
    with pytest.raises(ValueError, match=r"evidence_dir='.*' is the model folder .*overwrite=True"):
        check_files_dir(tiny_e2llm_dir, option="evidence_dir")
    with pytest.raises(ValueError, match=r"lies inside the model folder"):
        check_files_dir(tiny_e2llm_dir / "maps", option="evidence_dir")
    with pytest.raises(ValueError, match=r"lies inside the input folder"):
        check_files_dir(tiny_e2llm_dir / "maps", inputs=[tiny_e2llm_dir], overwrite=True)
    with pytest.raises(FileExistsError, match="is an existing file"):
        check_files_dir(recording)
