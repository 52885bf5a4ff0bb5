"""Output folders that never cost the user data: checked before any work, written atomically, replaced only
when e2llm wrote them.

Every folder e2llm writes as a whole (prepared datasets, exports, final stage folders) holds a marker file,
`MARKER_FILE`. `check_output_dir` refuses, before anything is read or computed:

- a plain file at the output path (it is never replaced);
- an output folder that is, or contains, one of the inputs (``--root D --output-dir D`` would delete D);
- a non-empty folder without ``overwrite``, and with ``overwrite`` one that lacks the marker (not ours).

`staged_dir` then writes into a hidden sibling and renames it into place only when complete, so a
killed run leaves either the old folder or the new one, never a half-written folder under the real name.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "prepared"
>>> with staged_dir(out, kind="example") as tmp:
...     _ = (tmp / "data.txt").write_text("ok")
>>> sorted(p.name for p in out.iterdir())
['.e2llm-output', 'data.txt']
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER_FILE = ".e2llm-output"


def is_e2llm_output(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder holding e2llm's marker file."""
    return (Path(path) / MARKER_FILE).is_file()


def check_output_dir(output_dir, inputs: Iterable = (), overwrite: bool = False, option: str = "--output-dir") -> Path:
    """`output_dir` as a Path, after refusing every case that could delete user data (see the module docstring).

    Raises:
        FileExistsError: a file at `output_dir`, or a non-empty folder without `overwrite`.
        ValueError: `output_dir` is or contains an input, or `overwrite` is asked for a folder e2llm did not write.
    """
    output_dir = Path(output_dir)
    resolved = output_dir.resolve()
    for source in inputs:
        if source is None:
            continue
        source_resolved = Path(source).resolve()
        if resolved == source_resolved or resolved in source_resolved.parents:
            raise ValueError(
                f"{option} {output_dir} is or contains the input {source}: writing there could delete the input; "
                "choose a folder outside it"
            )
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{option} {output_dir} is an existing file; e2llm never replaces a file. "
                              "Choose a folder path.")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{option} {output_dir} exists and is not empty; pass --overwrite "
                                  "(overwrite=True) to replace a folder e2llm wrote, or choose another path")
        if not is_e2llm_output(output_dir):
            raise ValueError(
                f"{option} {output_dir} was not written by e2llm (no {MARKER_FILE} marker), so --overwrite will "
                "not delete it; remove it yourself or choose another path"
            )
    return output_dir


def write_marker(folder: str | os.PathLike, kind: str) -> None:
    """Mark `folder` as written by e2llm (`kind`: "prepared-dataset", "export", "stage", ...)."""
    (Path(folder) / MARKER_FILE).write_text(json.dumps({"written_by": "e2llm", "kind": kind}) + "\n")


def replace_dir(staging: Path, output_dir: Path) -> None:
    """Move the complete folder `staging` to `output_dir`, retiring an existing e2llm folder there first."""
    if output_dir.exists():
        if not is_e2llm_output(output_dir) and any(output_dir.iterdir()):
            raise ValueError(f"{output_dir} appeared during the run and was not written by e2llm; left untouched, "
                             f"the result is in {staging}")
        retired = output_dir.parent / f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(output_dir, retired)
        os.replace(staging, output_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, output_dir)


@contextmanager
def staged_dir(output_dir, kind: str = "output") -> Iterator[Path]:
    """A hidden sibling folder of `output_dir` to write into; marked and renamed into place when the block ends
    without error, removed otherwise. Call `check_output_dir` first."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.parent / f".{output_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        write_marker(staging, kind)
        replace_dir(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


__all__ = ["MARKER_FILE", "check_output_dir", "is_e2llm_output", "replace_dir", "staged_dir", "write_marker"]
