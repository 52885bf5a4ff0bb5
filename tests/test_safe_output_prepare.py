"""`--overwrite` deletes only folders e2llm wrote; never the input, a folder holding it, or a plain file."""

import pytest

from e2llm.processing.prepare import prepare_dataset
from e2llm.safe_output import MARKER_FILE, check_output_dir, is_e2llm_output, staged_dir

SMALL = dict(n_subjects=1, trial_seconds=8.0, progress=False)


def _user_folder(root):
    (root / "EEG_preprocessed").mkdir(parents=True)
    (root / "EEG_preprocessed" / "1.mat").write_bytes(b"precious")
    (root / "notes.txt").write_text("my notes")
    return root


def _untouched(root):
    return (root / "EEG_preprocessed" / "1.mat").read_bytes() == b"precious" and (root / "notes.txt").is_file()


def test_output_equal_to_root_is_refused_before_reading(tmp_path):
    root = _user_folder(tmp_path / "SEED-VII")
    with pytest.raises(ValueError, match="is or contains the input"):
        prepare_dataset("seed-vii", root, output_dir=root, overwrite=True, progress=False)
    with pytest.raises(ValueError, match="is or contains the input"):
        prepare_dataset("seed-vii", root, output_dir=tmp_path, overwrite=True, progress=False)
    assert _untouched(root)


def test_plain_file_is_never_replaced(tmp_path):
    target = tmp_path / "out"
    target.write_text("a file")
    with pytest.raises(FileExistsError, match="never replaces a file"):
        prepare_dataset("synthetic", None, output_dir=target, overwrite=True, **SMALL)
    assert target.read_text() == "a file"


def test_overwrite_refuses_folder_not_written_by_e2llm(tmp_path):
    folder = _user_folder(tmp_path / "mine")
    with pytest.raises(FileExistsError, match="not empty"):
        check_output_dir(folder)
    with pytest.raises(ValueError, match="not written by e2llm"):
        prepare_dataset("synthetic", None, output_dir=folder, overwrite=True, **SMALL)
    assert _untouched(folder)


def test_overwrite_replaces_own_output(tmp_path):
    out = tmp_path / "prepared"
    first = prepare_dataset("synthetic", None, output_dir=out, **SMALL)
    assert is_e2llm_output(out) and (out / MARKER_FILE).is_file()
    with pytest.raises(FileExistsError):
        prepare_dataset("synthetic", None, output_dir=out, **SMALL)
    second = prepare_dataset("synthetic", None, output_dir=out, overwrite=True, seed=1, **SMALL)
    assert second.num_rows == first.num_rows and is_e2llm_output(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging/retired folders left


def test_failed_write_leaves_nothing_under_the_real_name(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_dir(out) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_output_inside_the_input_is_refused(tmp_path):
    root = _user_folder(tmp_path / "SEED-VII")
    with pytest.raises(ValueError, match="lies inside the input folder"):
        check_output_dir(root / "prepared", inputs=[root], overwrite=True)
    assert _untouched(root) and not (root / "prepared").exists()


def test_a_hub_id_among_the_inputs_is_not_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output_dir(tmp_path, inputs=["Qwen/Qwen2.5-0.5B-Instruct"]) == tmp_path
