"""Exports hold only the folder's own files: a symbolic link is followed only into the folder itself or into the
Hugging Face cache's blob store (where `snapshot_download` keeps a snapshot's files); any other link, or anything that
is not a plain file (a FIFO, a device), is refused and named before anything is read or copied.

A link out of the folder would otherwise copy, and upload, the contents of a file the folder does not own (a key
file, another project's weights) under a model file's name.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "config.json").write_text("{}")
>>> own_files(folder, ["config.json"]) == [folder / "config.json"]
True
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from huggingface_hub import constants


def in_blob_store(target: Path, cache: Path | None = None) -> bool:
    """Whether the resolved path `target` is a file of a blob store, ``<cache>/<kind>s--<owner>--<name>/blobs/<hash>``,
    of the Hugging Face cache (`cache`, default: the configured one, ``HF_HUB_CACHE``)."""
    cache = Path(cache if cache is not None else constants.HF_HUB_CACHE).expanduser().resolve()
    try:
        parts = target.relative_to(cache).parts
    except ValueError:
        return False
    return len(parts) == 3 and parts[1] == "blobs" and "--" in parts[0]


def _snapshot_cache(folder: Path) -> Path | None:
    """The cache folder of a snapshot folder ``<cache>/models--a--b/snapshots/<rev>`` (in any cache folder)."""
    resolved = folder.resolve()
    if resolved.parent.name == "snapshots" and "--" in resolved.parent.parent.name:
        return resolved.parent.parent.parent
    return None


def link_target_allowed(path: Path, folder: Path) -> bool:
    """Whether `path` (a file of `folder`, or a link there) resolves into `folder` or a Hugging Face blob store (the
    configured cache's, or the one of the cache `folder` is a snapshot of)."""
    target, root = path.resolve(), folder.resolve()
    if root in target.parents:
        return True
    snapshot_cache = _snapshot_cache(folder)
    return in_blob_store(target) or (snapshot_cache is not None and in_blob_store(target, snapshot_cache))


def check_own_file(path: Path, folder: Path, what: str = "the export") -> None:
    """ValueError unless `path` (in `folder`) is a plain file of the folder or a link into it or a blob store."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"{what}: {path} is a broken link (to {os.readlink(path)}); remove it or restore its "
                         "target") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{what}: {path} is not a plain file (a FIFO, device or socket); remove it from {folder}")
    if path.is_symlink() and not link_target_allowed(path, folder):
        raise ValueError(
            f"{what}: {path} is a link to {path.resolve()}, outside {folder} and the Hugging Face cache: e2llm "
            "exports and uploads only the folder's own files. If that file belongs to the model, copy it into the "
            f"folder (replace the link with the file); otherwise remove the link"
        )


def own_files(folder, names: Iterable[str], what: str = "the export") -> list[Path]:
    """The files `names` of `folder` that exist, each checked with `check_own_file` (in the order given)."""
    folder = Path(folder)
    found = []
    for name in names:
        path = folder / name
        if path.exists() or path.is_symlink():
            check_own_file(path, folder, what)
            found.append(path)
    return found


def check_folder_tree(folder, what: str = "the upload") -> list[Path]:
    """Every file under `folder` (what `upload_folder` would send), each checked with `check_own_file`; a linked
    sub-folder must also resolve into `folder` or a blob store. Returns the files, sorted."""
    folder = Path(folder)
    files = []
    for root, dirs, names in os.walk(folder):
        for name in dirs:
            linked = Path(root) / name
            if linked.is_symlink() and not link_target_allowed(linked, folder):
                raise ValueError(f"{what}: {linked} is a link to the folder {linked.resolve()}, outside {folder}: "
                                 "e2llm uploads only the folder's own files; copy what belongs to the model into it")
        for name in names:
            path = Path(root) / name
            check_own_file(path, folder, what)
            files.append(path)
    return sorted(files)


__all__ = ["check_folder_tree", "check_own_file", "in_blob_store", "link_target_allowed", "own_files"]
