"""Whole-or-nothing file writes: a hidden temporary sibling, flushed to disk, renamed over the target; a full disk
(or quota, or file-size limit) named in one clear error; temporaries of dead processes swept. Standard library only.

The public entry points are re-exported by `e2llm.safe_output` (with e2llm's record of the files it wrote).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "report.json"
>>> with atomic_open(path) as handle:
...     _ = handle.write("{}")
>>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
('{}', ['report.json'])
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .output_lock import pid_alive

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_stream(path: Path) -> bool:
    """A character device or a FIFO (the null device, a terminal, a named pipe): written in place, never replaced."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def host_tag() -> str:
    """This host's name as it appears in temporary file names (letters, digits and '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:32] or "host"


def temporary_name(path: Path, kind: str = "tmp") -> Path:
    """A hidden sibling of `path` for work in progress: ``.NAME.KIND-HOST-PID-RANDOM``."""
    return path.parent / f".{path.name}.{kind}-{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def sweep_leftovers(path, kinds: tuple[str, ...] = ("tmp", "partial", "old")) -> list[Path]:
    """Remove the hidden temporary siblings of `path` (``.NAME.tmp-HOST-PID-*``, ``.partial-``, ``.old-``) left by
    processes of this host that are no longer running; returns what was removed."""
    path = Path(path)
    host = host_tag()
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.({'|'.join(kinds)})-(.+)-(\d+)-[0-9a-f]{{8}}$")
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.iterdir():
        match = pattern.match(candidate.name)
        if match is None or match.group(2) != host or pid_alive(int(match.group(3))):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


class DiskFullError(OSError):
    """A write failed because the disk, a quota or the file-size limit is full; its text is the whole message."""

    def __str__(self) -> str:
        return str(self.strerror)


def size_text(n_bytes: float) -> str:
    """``1.20 GB``, ``3.4 MB``, ``512 kB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{int(n_bytes)} bytes"


def disk_full_error(error: OSError, target, needed: int | None = None,
                    outcome: str = "nothing was replaced") -> DiskFullError:
    """A clear error for a write to `target` that failed because its disk (or quota, or file-size limit) is full;
    `outcome` says what state the write left."""
    target = Path(target)
    folder = target if target.is_dir() else target.parent
    try:
        free = f"{size_text(shutil.disk_usage(next(p for p in [folder, *folder.parents] if p.exists())).free)} free"
    except (OSError, StopIteration):
        free = "free space unknown"
    need = f", about {size_text(needed)} needed" if needed else ""
    return DiskFullError(error.errno, f"no room left to write {target}: the disk, a quota or the file-size limit is "
                                      f"full ({free}{need}); {outcome}. Free some space or choose another location")


@contextmanager
def atomic_open(path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None) -> Iterator:
    """Open a hidden temporary sibling of `path` for writing; when the block ends without error it is flushed to
    disk and renamed over `path`. On error it is removed and `path` is unchanged. A character device or FIFO (the
    null device, a named pipe) is written in place."""
    path = Path(path)
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    text = {"encoding": encoding, "newline": newline} if mode == "w" else {}
    if is_stream(path):
        with open(path, mode, **text) as handle:
            yield handle
        return
    temporary = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(path, ("tmp",))
        handle = open(temporary, mode.replace("w", "x"), **text)
    except PermissionError as error:
        raise PermissionError(error.errno, f"cannot write {path}: no permission to create files in {path.parent}; "
                                           "choose another location") from None
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_folder(path.parent)
    except OSError as error:
        if error.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(error, path) from error
        raise
    finally:
        if temporary.exists():
            temporary.unlink()


def replace_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_open`)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening folders)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


__all__ = ["DISK_FULL_ERRNOS", "DiskFullError", "atomic_open", "disk_full_error", "fsync_folder", "host_tag",
           "is_stream", "replace_atomically", "size_text", "sweep_leftovers", "temporary_name"]
