"""Issue 27.3: exports and pushes hold only the folder's own files.

Row: export/push of a model folder holding a symlink to a file outside it copied the outside file's contents into the
export (and would have uploaded them), without a warning. Links are followed only into the folder itself or into the
Hugging Face cache's blob store; anything else is refused and named before anything is read.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from unittest import mock

import pytest

from e2llm.hub_cards import export_model, push_folder
from e2llm.hub_cards.own_files import check_folder_tree, in_blob_store
from e2llm.training.cli import main as cli

REPO_ID = "me/e2llm-tiny"


@pytest.fixture
def model_dir(tiny_e2llm_dir, tmp_path) -> Path:
    folder = tmp_path / "stage3"
    shutil.copytree(tiny_e2llm_dir, folder)
    return folder


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "outside" / "id_ed25519"
    path.parent.mkdir()
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    return path


def _replace_with_link(folder: Path, name: str, target: Path) -> None:
    (folder / name).unlink(missing_ok=True)
    (folder / name).symlink_to(target)


@pytest.mark.parametrize("name", ["tokenizer_config.json", "chat_template.jinja", "e2llm_card_inputs.json"])
def test_a_link_out_of_the_folder_is_refused_and_named(model_dir, secret, tmp_path, name):
    _replace_with_link(model_dir, name, secret)
    with pytest.raises(ValueError, match=rf"{name} is a link to {secret}, outside .*stage3.* copy it into the folder"):
        export_model(model_dir, tmp_path / "export", repo_id=REPO_ID)
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("name", ["generation_config.json", "chat_template.jinja"])
def test_push_refuses_before_uploading(model_dir, secret, tmp_path, capsys, name):
    _replace_with_link(model_dir, name, secret)
    with mock.patch("e2llm.hub_cards.push.HfApi") as api:
        code = cli(["push", "--model", str(model_dir), "--repo-id", REPO_ID])
    err = capsys.readouterr().err
    assert code == 2 and name in err and f"a link to {secret}" in err
    api.return_value.upload_folder.assert_not_called()


def test_push_folder_checks_what_it_uploads(tmp_path, secret):
    folder = tmp_path / "ready"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "notes.md").symlink_to(secret)
    api = mock.Mock()
    with pytest.raises(ValueError, match="notes.md is a link to"):
        push_folder(folder, REPO_ID, api=api)
    api.upload_folder.assert_not_called()
    (folder / "sub" / "notes.md").unlink()
    (folder / "linked").symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(ValueError, match="linked is a link to the folder"):
        check_folder_tree(folder)


def test_links_inside_the_folder_are_followed(model_dir, tmp_path):
    keep = model_dir / "versions" / "v1"
    keep.mkdir(parents=True)
    os.replace(model_dir / "chat_template.jinja", keep / "chat_template.jinja")
    (model_dir / "chat_template.jinja").symlink_to(Path("versions/v1/chat_template.jinja"))
    out = export_model(model_dir, tmp_path / "export", repo_id=REPO_ID)
    exported = out / "chat_template.jinja"
    assert exported.is_file() and not exported.is_symlink()
    assert exported.read_text() == (keep / "chat_template.jinja").read_text()


def test_a_snapshot_of_the_hub_cache_is_exported(model_dir, tmp_path, monkeypatch):
    """`snapshot_download` leaves links from `snapshots/<rev>/` into `blobs/`; both the configured cache and another
    cache folder (`cache_dir=`) are accepted."""
    from huggingface_hub import constants

    for cache, configured in ((tmp_path / "hub", True), (tmp_path / "elsewhere", False)):
        repo = cache / "models--me--e2llm-tiny"
        snapshot = repo / "snapshots" / "0123abcd"
        (repo / "blobs").mkdir(parents=True)
        snapshot.mkdir(parents=True)
        for path in model_dir.iterdir():
            if path.is_file():
                blob = repo / "blobs" / f"{abs(hash(path.name)):x}"
                shutil.copyfile(path, blob)
                (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
        if configured:
            monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        assert in_blob_store((snapshot / "config.json").resolve(), cache)
        out = export_model(snapshot, tmp_path / f"export-{cache.name}", repo_id=REPO_ID)
        assert (out / "model.safetensors").is_file() and not (out / "model.safetensors").is_symlink()


def test_a_link_to_a_blob_of_another_repo_outside_a_cache_is_refused(model_dir, tmp_path):
    fake = tmp_path / "not-a-cache" / "blobs"
    fake.mkdir(parents=True)
    shutil.copyfile(model_dir / "config.json", fake / "abc")
    _replace_with_link(model_dir, "config.json", fake / "abc")
    with pytest.raises(ValueError, match="config.json is a link to"):
        export_model(model_dir, tmp_path / "export", repo_id=REPO_ID)


def test_special_files_and_broken_links_are_refused(model_dir, tmp_path):
    (model_dir / "preprocessor_config.json").unlink(missing_ok=True)
    os.mkfifo(model_dir / "preprocessor_config.json")  # reading it would hang the export
    with pytest.raises(ValueError, match="preprocessor_config.json is not a plain file"):
        export_model(model_dir, tmp_path / "export", repo_id=REPO_ID)
    (model_dir / "preprocessor_config.json").unlink()
    (model_dir / "special_tokens_map.json").symlink_to(tmp_path / "gone.json")
    with pytest.raises(ValueError, match="special_tokens_map.json is a broken link"):
        export_model(model_dir, tmp_path / "export", repo_id=REPO_ID)
