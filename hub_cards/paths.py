"""Keep the build machine's local paths out of what ships: redaction for JSON/YAML values, a scan for the rest."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]")
_BINARY_SUFFIXES = {".safetensors", ".arrow", ".png", ".jpg", ".npz", ".npy"}


def _is_local_path(value: str) -> bool:
    return (
        (value.startswith("/") and len(value) > 1 and "://" not in value)
        or bool(_WINDOWS_ABS.match(value))
        or value.startswith("~/")
    )


def redact_paths(obj):
    """A copy of `obj` (nested dicts/lists/str) with every absolute local path replaced by ``<local>/<name>``."""
    if isinstance(obj, dict):
        return {key: redact_paths(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_paths(value) for value in obj]
    if isinstance(obj, os.PathLike):
        obj = os.fspath(obj)
    if isinstance(obj, str) and _is_local_path(obj):
        return "<local>/" + re.split(r"[\\/]", obj.rstrip("/\\"))[-1]
    return obj


def machine_paths(*extra: str | os.PathLike) -> list[str]:
    """Absolute paths that identify this machine: home, temp dir, working dir, and `extra` (resolved)."""
    candidates = [Path.home(), Path(tempfile.gettempdir()), Path.cwd(), *map(Path, extra)]
    found = []
    for path in candidates:
        for variant in (str(path), str(Path(path).resolve())):
            if Path(variant).is_absolute() and variant != Path(variant).anchor and variant not in found:
                found.append(variant)
    return found


def find_local_paths(folder: str | os.PathLike, needles: Iterable[str]) -> list[tuple[str, str]]:
    """``(file, needle)`` for every text file under `folder` containing one of `needles` (binary files skipped)."""
    needles = [n for n in needles if n]
    hits = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.suffix in _BINARY_SUFFIXES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits.extend((str(path.relative_to(folder)), n) for n in needles if n in text)
    return hits


__all__ = ["find_local_paths", "machine_paths", "redact_paths"]
