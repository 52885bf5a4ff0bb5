"""Keep local paths (of this machine or any other) out of what ships: redaction for JSON values and free
text, and a scan that refuses any absolute path left in a text file.

>>> scrub_text("trained from /home/ana/runs/stage2 (see https://hf.co/a/b) on C:\\data\\seed")
'trained from <local>/stage2 (see https://hf.co/a/b) on <local>/seed'
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]")
_BINARY_SUFFIXES = {".safetensors", ".arrow", ".png", ".jpg", ".npz", ".npy"}
# An absolute path inside free text: POSIX (two or more components, not part of a URL or a relative path),
# Windows drive paths, UNC paths and home-relative ``~/`` paths.
_PATH_IN_TEXT = re.compile(
    r"(?<![\w/.:\\~-])/[\w.@+~-]+/[\w.@+~/-]*"
    r"|(?<![\w])[A-Za-z]:[\\/][^\s\"'<>|,;)]*"
    r"|(?<![\w\\])\\\\[\w.-]+\\[^\s\"'<>|,;)]*"
    r"|(?<![\w/.])~/[^\s\"'<>|,;)]*"
)


def _is_local_path(value: str) -> bool:
    return (
        (value.startswith("/") and len(value) > 1 and "://" not in value)
        or bool(_WINDOWS_ABS.match(value))
        or value.startswith("~/")
    )


def _basename(path: str) -> str:
    return re.split(r"[\\/]", path.rstrip("/\\"))[-1]


def scrub_text(text: str) -> str:
    """`text` with every absolute local path (any machine's) replaced by ``<local>/<name>``."""
    return _PATH_IN_TEXT.sub(lambda match: "<local>/" + _basename(match.group(0)), text)


def absolute_paths_in(text: str) -> list[str]:
    """The absolute local paths `scrub_text` would replace in `text`."""
    return [match.group(0) for match in _PATH_IN_TEXT.finditer(text)]


def redact_paths(obj):
    """A copy of `obj` (nested dicts/lists/str) with every absolute local path replaced by ``<local>/<name>``."""
    if isinstance(obj, dict):
        return {key: redact_paths(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_paths(value) for value in obj]
    if isinstance(obj, os.PathLike):
        obj = os.fspath(obj)
    if isinstance(obj, str) and _is_local_path(obj):
        return "<local>/" + _basename(obj)
    if isinstance(obj, str):
        return scrub_text(obj)
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


def _strings(obj) -> list[str]:
    if isinstance(obj, dict):
        return [text for key, value in obj.items() for text in (*_strings(key), *_strings(value))]
    if isinstance(obj, list):
        return [text for value in obj for text in _strings(value)]
    return [obj] if isinstance(obj, str) else []


def _texts_for_scan(path: Path) -> list[str]:
    """The texts of `path` to scan for paths: the string values of a JSON file (``tokenizer.json`` without its
    vocabulary and merges: tokens such as ``/usr`` are vocabulary, not paths), a text file's text, nothing for a
    binary file."""
    if path.suffix in _BINARY_SUFFIXES:
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    if path.suffix == ".json":

        try:
            content = json.loads(text)
        except ValueError:
            return [text]
        if path.name == "tokenizer.json" and isinstance(content, dict):
            content = {key: value for key, value in content.items() if key not in ("model", "added_tokens")}
        return _strings(content)
    return [text]


def find_absolute_paths(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """``(file, path)`` for every absolute local path (any machine's) in the text files under `folder`."""
    hits = []
    for path in sorted(Path(folder).rglob("*")):
        for text in _texts_for_scan(path) if path.is_file() else []:
            hits.extend((str(path.relative_to(folder)), found) for found in absolute_paths_in(text))
    return hits


__all__ = ["absolute_paths_in", "find_absolute_paths", "find_local_paths", "machine_paths", "redact_paths",
           "scrub_text"]
