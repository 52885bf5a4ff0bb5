"""The signal options every command that reads recordings takes: ``--channel-map``, ``--montage``, ``--units``,
``--line-freq`` (``e2llm prepare``, ``predict``, ``evaluate``). One parser, one set of messages.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_signal_arguments(parser)
>>> args = parser.parse_args(["--channel-map", "A1=Fp1", "EXG1=", "--montage", "biosemi64", "--line-freq", "60"])
>>> signal_options(args)
{'channel_map': {'A1': 'Fp1', 'EXG1': None}, 'montage': 'biosemi64', 'units': None, 'line_freq': 60.0}

In Python the same options are keyword arguments: ``channel_map={"A1": "Fp1"}``, ``montage="biosemi64"``,
``units="uV"``, ``line_freq=60``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

UNITS = ("V", "mV", "uV")


def _read_map_file(path: Path) -> dict[str, str | None]:
    """`{old: new}` from a JSON object, or lines ``old=new`` / ``old,new`` / ``old<TAB>new`` (``#`` comments)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--channel-map: cannot read {path}: {error}") from error
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--channel-map: {path} is not valid JSON ({error})") from error
        if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
            raise ValueError(f"--channel-map: {path} must hold one JSON object {{\"old\": \"new\", ...}}")
        return {k: (None if v in (None, "") else str(v)) for k, v in mapping.items()}
    mapping = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split("=", 1) if "=" in line else next(csv.reader([line], delimiter="\t" if "\t" in line
                                                                       else ","))
        if len(parts) != 2 or not parts[0].strip():
            raise ValueError(f"--channel-map: {path}, line {number}: {line!r} is not OLD=NEW (or OLD,NEW)")
        mapping[parts[0].strip()] = parts[1].strip() or None
    if not mapping:
        raise ValueError(f"--channel-map: {path} holds no OLD=NEW line")
    return mapping


def parse_channel_map(values) -> dict[str, str | None] | None:
    """`{old: new}` from ``--channel-map`` values: one file (JSON or OLD=NEW lines) or OLD=NEW pairs (an empty NEW
    drops the channel). None when no value is given."""
    if not values:
        return None
    values = [str(v) for v in values]
    if len(values) == 1 and "=" not in values[0]:
        path = Path(values[0])
        if not path.is_file():
            raise ValueError(f"--channel-map: {values[0]!r} is neither OLD=NEW nor an existing file")
        return _read_map_file(path)
    mapping = {}
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old.strip():
            raise ValueError(f"--channel-map: {value!r} is not OLD=NEW (give pairs such as A1=Fp1, or one file)")
        if old.strip() in mapping:
            raise ValueError(f"--channel-map: channel {old.strip()!r} is mapped twice")
        mapping[old.strip()] = new.strip() or None
    return mapping


def parse_line_freq(value) -> float | None:
    """A power-line frequency in Hz (``--line-freq``/``line_freq``): None, or a number in (0, 1000)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"line frequency must be a number of Hz (50 or 60), got {value!r}") from None
    if not math.isfinite(number) or not 0 < number < 1000:
        raise ValueError(f"line frequency must be a positive number of Hz below 1000 (50 or 60), got {value!r}")
    return number


def parse_units(value) -> str | None:
    """``--units``/``units``: "V", "mV" or "uV" (also "µV"), or None to trust the file."""
    if value is None:
        return None
    spelled = {"v": "V", "mv": "mV", "uv": "uV", "µv": "uV", "\u03bcv": "uV"}.get(str(value).strip().lower())
    if spelled is None:
        raise ValueError(f"units must be one of {', '.join(UNITS)}, got {value!r}")
    return spelled


def add_signal_arguments(parser: argparse.ArgumentParser, units: bool = True, line_freq: bool = True) -> None:
    """Add ``--channel-map``, ``--montage`` (and ``--units``, ``--line-freq``) to a command's parser."""
    group = parser.add_argument_group("channels and signal (for recordings whose files do not say it right)")
    group.add_argument("--channel-map", nargs="+", metavar="FILE|OLD=NEW",
                       help="rename channels to 10-05 names before anything else: OLD=NEW pairs (OLD= drops the "
                            "channel) or one file (JSON object, or OLD=NEW lines)")
    group.add_argument("--montage", metavar="NAME",
                       help="MNE standard montage of a cap whose labels are not 10-05 names (biosemi64, biosemi128, "
                            "GSN-HydroCel-129, easycap-M10, mgh60...): electrodes are placed by position")
    if units:
        group.add_argument("--units", choices=["V", "mV", "uV"],
                           help="what the numbers MNE reads from the file really are, when its header is wrong "
                                "(default: trust the file)")
    if line_freq:
        group.add_argument("--line-freq", type=float, metavar="HZ",
                           help="power-line frequency to notch (50 or 60; default: what the file states, else 50)")


def signal_options(args: argparse.Namespace) -> dict:
    """`{"channel_map", "montage", "units", "line_freq"}` from parsed arguments (absent options are None)."""
    return {
        "channel_map": parse_channel_map(getattr(args, "channel_map", None)),
        "montage": getattr(args, "montage", None),
        "units": parse_units(getattr(args, "units", None)),
        "line_freq": parse_line_freq(getattr(args, "line_freq", None)),
    }


__all__ = ["UNITS", "add_signal_arguments", "parse_channel_map", "parse_line_freq", "parse_units", "signal_options"]
