"""Outputs that never cost the user data: every path e2llm writes is checked before any work, written atomically,
and replaced only when e2llm wrote it. Standard library only (the pipeline ships it as remote code).

**Folders** e2llm writes as a whole (prepared datasets, exports, final stage folders) hold a marker file,
`MARKER_FILE`. `check_output_dir` refuses, before anything is read or computed, an output folder that is, holds or
lies inside an input, a plain file at the output path, a non-empty folder without ``overwrite``, and (even with ``overwrite``) a
folder without the marker. `staged_dir` writes into a hidden sibling and renames it into place when complete.

**Files** (predictions, reports, cards, evidence pictures): `check_output_file` refuses an output file that is an
input or lies inside an input folder (always), one inside a model folder or a folder e2llm wrote as a whole, and an
existing file e2llm did not write (both unless ``overwrite``). e2llm knows the files it wrote from the manifest
`MANIFEST_FILE` in their folder (name, size, modification time, SHA-256), so a file the user edited or replaced since
is no longer "ours". `atomic_write` / `atomic_open` write a hidden temporary file, flush it to disk and rename it
over the target, so a crash or a full disk leaves the old file or the new one, never half of one.

Messages speak the words of the Python interface (``output='x'``, ``overwrite=True``); the command line rewrites
them into its flags (`e2llm.training.cli_errors`).

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "prepared"
>>> with staged_dir(out, kind="example") as tmp:
...     _ = (tmp / "data.txt").write_text("ok")
>>> sorted(p.name for p in out.iterdir())
['.e2llm-output', 'data.txt']
>>> report = out.parent / "report.json"
>>> _ = write_output_file(report, '{"accuracy": 0.5}\\n', option="output")
>>> made_by_e2llm(report), report.read_text()
(True, '{"accuracy": 0.5}\\n')
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import atomic_files
from .atomic_files import (
    DISK_FULL_ERRNOS,
    DiskFullError,
    disk_full_error,
    fsync_folder,
    is_stream,
    replace_atomically,
    size_text,
    sweep_leftovers,
    temporary_name,
)
from .output_lock import track_temporary

MARKER_FILE = ".e2llm-output"
MANIFEST_FILE = ".e2llm-files.json"
# A folder holding one of these is a model folder (Transformers, PEFT, braindecode, a Trainer checkpoint).
MODEL_FOLDER_FILES = ("adapter_config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                      "pytorch_model.bin.index.json", "tokenizer_config.json", "processor_config.json",
                      "preprocessor_config.json", "generation_config.json", "trainer_state.json")
_CONFIG_KEYS = ("model_type", "architectures", "auto_map", "chs_info")  # config.json keys of a model's config
_HASHED_BYTES = 1 << 30  # files up to 1 GiB are recognised by content when their modification time changed


def named(option: str, value) -> str:
    """How a message names an option and its value: ``output='x'`` (Python), ``--output x`` (command line), or
    ``the export folder x`` (a phrase)."""
    if option.startswith("-"):
        return f"{option} {value}"
    if option.isidentifier():
        return f"{option}={str(value)!r}"
    return f"{option} {value}"


def _resolved(path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return _resolved(a) == _resolved(b)


# ---------------------------------------------------------------- what a folder or a file is


def is_e2llm_output(path) -> bool:
    """Whether `path` is a folder holding e2llm's marker file (a folder e2llm wrote as a whole)."""
    return (Path(path) / MARKER_FILE).is_file()


def is_model_folder(path) -> bool:
    """Whether `path` is a saved model folder: weights, a PEFT adapter, tokenizer/processor files, a Trainer
    checkpoint, or a `config.json` of a model (it names a ``model_type``, ``architectures``, ``auto_map`` or, for
    braindecode, ``chs_info``)."""
    path = Path(path)
    if not path.is_dir():
        return False
    if any((path / name).exists() for name in MODEL_FOLDER_FILES) or any(path.glob("model-*-of-*.safetensors")):
        return True
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        content = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and any(key in content for key in _CONFIG_KEYS)


def protecting_folder(path) -> Path | None:
    """The nearest folder above `path` that is a model folder or a folder e2llm wrote as a whole (None if none)."""
    for folder in _resolved(path).parents:
        if is_model_folder(folder) or is_e2llm_output(folder):
            return folder
    return None


def _fingerprint(path: Path, with_hash: bool = True) -> dict:
    info = path.stat()
    entry = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    if with_hash and info.st_size <= _HASHED_BYTES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        entry["sha256"] = digest.hexdigest()
    return entry


def _read_manifest(folder: Path) -> dict:
    try:
        content = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = content.get("files") if isinstance(content, dict) else None
    return files if isinstance(files, dict) else {}


def made_by_e2llm(path) -> bool:
    """Whether the file `path` is one e2llm wrote and nobody changed since (per its folder's `MANIFEST_FILE`)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    entry = _read_manifest(path.parent).get(path.name)
    if not isinstance(entry, dict):
        return False
    now = _fingerprint(path, with_hash=False)
    if now["size"] != entry.get("size"):
        return False
    if now["mtime_ns"] == entry.get("mtime_ns"):
        return True
    return entry.get("sha256") is not None and _fingerprint(path).get("sha256") == entry["sha256"]


def record_output(path) -> None:
    """Note in the folder's `MANIFEST_FILE` that e2llm wrote the file `path` (entries of vanished or changed files
    are dropped at the same time). Two processes recording into one folder at the same instant may lose one entry:
    that file then counts as not e2llm's (a later run asks for overwrite=True), never the reverse."""
    path = Path(path)
    folder = path.parent
    files = {name: entry for name, entry in _read_manifest(folder).items()
             if name != path.name and made_by_e2llm(folder / name)}
    files[path.name] = _fingerprint(path)
    text = json.dumps({"written_by": "e2llm", "files": files}, indent=1, sort_keys=True) + "\n"
    replace_atomically(folder / MANIFEST_FILE, text.encode("utf-8"))


# ---------------------------------------------------------------- checks before any work


def _check_not_input(path: Path, inputs: Iterable, what: str) -> None:
    resolved = _resolved(path)
    for source in inputs:
        if source is None or not Path(source).expanduser().exists():
            continue
        source = Path(source).expanduser()
        if _same_file(path, source) if path.exists() else resolved == _resolved(source):
            raise ValueError(f"{what} is the input {source}: e2llm never writes over its inputs; choose another path")
        if source.is_dir() and _resolved(source) in resolved.parents:
            raise ValueError(f"{what} lies inside the input folder {source}: writing there would change an input; "
                             "choose a path outside it")


def check_output_file(path, inputs: Iterable = (), overwrite: bool = False, option: str = "output") -> Path:
    """`path` as a Path, after refusing every output file that could cost the user data (module docstring).

    Raises:
        ValueError: `path` is an input, inside an input folder, a folder, below a file, or (without `overwrite`)
            inside a model folder or a folder e2llm wrote.
        FileExistsError: `path` exists, e2llm did not write it, and `overwrite` is False.
    """
    path = Path(path).expanduser()
    what = named(option, path)
    _check_not_input(path, inputs, what)
    if path.is_dir():
        raise ValueError(f"{what} is a folder; give a file name")
    blocking = next((p for p in path.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ValueError(f"{what} cannot be created: {blocking} is a file, not a folder")
    if is_stream(path):
        return path
    folder = protecting_folder(path)
    if folder is not None and not overwrite:
        kind = "model folder" if is_model_folder(folder) else "folder e2llm wrote as a whole"
        raise ValueError(f"{what} lies inside the {kind} {folder}: writing there could break it; choose a path "
                         "outside it, or pass overwrite=True to write there anyway")
    if (path.exists() or path.is_symlink()) and not overwrite and not made_by_e2llm(path):
        raise FileExistsError(f"{what} exists and was not written by e2llm, so it is not replaced; choose another "
                              "file name, or pass overwrite=True to replace it")
    return path


def check_files_dir(folder, inputs: Iterable = (), overwrite: bool = False, option: str = "output_dir") -> Path:
    """`folder` as a Path, for a command that adds files to it (evidence pictures, reports; each file then goes
    through `check_output_file`): refused when it is a file, an input or inside one (always), or (unless `overwrite`)
    a model folder, a folder e2llm wrote as a whole, or inside one."""
    folder = Path(folder).expanduser()
    what = named(option, folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{what} is an existing file; give a folder")
    _check_not_input(folder, inputs, what)
    protecting = folder.resolve() if is_model_folder(folder) or is_e2llm_output(folder) else protecting_folder(folder)
    if protecting is not None and not overwrite:
        kind = "model folder" if is_model_folder(protecting) else "folder e2llm wrote as a whole"
        where = "is" if protecting == folder.resolve() else "lies inside"
        raise ValueError(f"{what} {where} the {kind} {protecting}: writing there could break it; choose another "
                         "folder, or pass overwrite=True to write there anyway")
    return folder


def check_output_dir(output_dir, inputs: Iterable = (), overwrite: bool = False, option: str = "output_dir") -> Path:
    """`output_dir` as a Path, after refusing every case that could delete user data (module docstring).

    Raises:
        FileExistsError: a file at `output_dir`, or a non-empty folder without `overwrite`.
        ValueError: `output_dir` is or contains an input, or `overwrite` is asked for a folder e2llm did not write.
    """
    output_dir = Path(output_dir).expanduser()
    what = named(option, output_dir)
    resolved = _resolved(output_dir)
    for source in inputs:
        if source is None or not Path(source).expanduser().exists():  # a Hub id, or nothing there: no local input
            continue
        source_resolved = _resolved(source)
        if resolved == source_resolved or resolved in source_resolved.parents:
            raise ValueError(f"{what} is or contains the input {source}: writing there could delete the input; "
                             "choose a folder outside it")
        if source_resolved.is_dir() and source_resolved in resolved.parents:
            raise ValueError(f"{what} lies inside the input folder {source}: writing there would change an input; "
                             "choose a folder outside it")
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{what} is an existing file; e2llm never replaces a file with a folder. Choose a "
                              "folder path.")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{what} exists and is not empty; pass overwrite=True to replace a folder e2llm "
                                  "wrote, or choose another path")
        if not is_e2llm_output(output_dir):
            raise ValueError(f"{what} was not written by e2llm (no {MARKER_FILE} marker), so overwrite=True will "
                             "not delete it; remove it yourself or choose another path")
    return output_dir


# ---------------------------------------------------------------- atomic writes (`e2llm.atomic_files`), recorded


@contextmanager
def atomic_open(path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None,
                record: bool = False) -> Iterator:
    """`e2llm.atomic_files.atomic_open` (a hidden temporary renamed over `path` when the block succeeds); with
    `record`, the file is then noted as written by e2llm."""
    with atomic_files.atomic_open(path, mode, encoding, newline) as handle:
        yield handle
    if record and not is_stream(Path(path)):
        record_output(path)


def atomic_write(path, data: str | bytes, encoding: str = "utf-8", record: bool = False) -> Path:
    """Write `data` (text or bytes) to `path` atomically (see `atomic_open`); returns `path`."""
    path = Path(path)
    text = isinstance(data, str)
    with atomic_open(path, "w" if text else "wb", encoding=encoding if text else None, newline="" if text else None,
                     record=record) as handle:
        handle.write(data)
    return path


def atomic_write_json(path, content, record: bool = False, **dumps_kwargs) -> Path:
    """`json.dumps(content, **dumps_kwargs)` plus a newline, written to `path` atomically."""
    return atomic_write(path, json.dumps(content, **dumps_kwargs) + "\n", record=record)


def write_output_file(path, data: str | bytes, inputs: Iterable = (), overwrite: bool = False,
                      option: str = "output") -> Path:
    """`check_output_file`, then `atomic_write` recorded as written by e2llm: the one call for an output file."""
    path = check_output_file(path, inputs=inputs, overwrite=overwrite, option=option)
    return atomic_write(path, data, record=True)


# ---------------------------------------------------------------- folders written as a whole


def write_marker(folder, kind: str) -> None:
    """Mark `folder` as written by e2llm (`kind`: "prepared-dataset", "export", "stage", ...)."""
    atomic_write_json(Path(folder) / MARKER_FILE, {"written_by": "e2llm", "kind": kind})


def replace_dir(staging: Path, output_dir: Path) -> None:
    """Move the complete folder `staging` to `output_dir`, retiring an existing e2llm folder there first."""
    if output_dir.exists():
        if not is_e2llm_output(output_dir) and any(output_dir.iterdir()):
            raise ValueError(f"{output_dir} appeared during the run and was not written by e2llm; left untouched, "
                             f"the result is in {staging}")
        retired = temporary_name(output_dir, "old")
        os.replace(output_dir, retired)
        os.replace(staging, output_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, output_dir)
    fsync_folder(output_dir.parent)


@contextmanager
def staged_dir(output_dir, kind: str = "output") -> Iterator[Path]:
    """A hidden sibling folder of `output_dir` to write into; marked and renamed into place when the block ends
    without error, removed otherwise (also on SIGTERM while an `e2llm.output_lock` is held; after a kill, by the
    next run). Call `check_output_dir` first."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(output_dir, ("partial", "old"))
    staging = temporary_name(output_dir, "partial")
    staging.mkdir()
    track_temporary(staging)
    try:
        yield staging
        write_marker(staging, kind)
        replace_dir(staging, output_dir)
    except OSError as error:
        if error.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(error, output_dir) from error
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


__all__ = [
    "DiskFullError",
    "MANIFEST_FILE",
    "MARKER_FILE",
    "MODEL_FOLDER_FILES",
    "atomic_open",
    "atomic_write",
    "atomic_write_json",
    "check_files_dir",
    "check_output_dir",
    "check_output_file",
    "disk_full_error",
    "is_e2llm_output",
    "is_model_folder",
    "made_by_e2llm",
    "named",
    "protecting_folder",
    "record_output",
    "replace_dir",
    "size_text",
    "staged_dir",
    "sweep_leftovers",
    "write_marker",
    "write_output_file",
]
