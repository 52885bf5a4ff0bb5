"""Errors of the `e2llm` command line: which exceptions are the user's to fix, and their messages in the words of
the command line.

The library speaks Python: its messages name arguments as ``baseline=...``, ``units='V'``, ``overwrite=True``. A
command-line user has flags instead, so `cli_message` rewrites every ``name=value`` whose name is an option of the
command into that option (``--baseline FILE``, ``--units V``, ``--overwrite``; `train`'s options keep their field
names, ``--learning_rate 0.1``). Exceptions that mean "the input, a file or the machine is not as it must be" (bad
values, unreadable or damaged files, malformed YAML, a full disk, no CUDA device, too little memory, a missing
optional package) become one line; anything else is a bug and keeps its traceback.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument("--units"), parser.add_argument("--overwrite", action="store_true")
>>> cli_words("pass units='V' for volts, or overwrite=True", parser)
'pass --units V for volts, or --overwrite'
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import errno
import re
import shlex
import sys

from e2llm.safe_output import DiskFullError

# Python argument -> command-line option, where the command's option has another name than the argument.
ALIASES: dict[str, str] = {
    "notch_freqs": "--notch",
    "target_sfreq": "--resample",
    "label_table": "--labels",
}
# Python argument with a value -> the flag that says it on the command line.
VALUE_FLAGS: dict[tuple[str, str], str] = {
    ("apply_filters", "False"): "--no-filters",
    ("return_rationale", "False"): "--no-rationale",
}
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NAME = re.compile(r"(?<![\w.\-/?&])([A-Za-z_]\w*)=(?!=)")
_CLOSE = {"[": "]", "(": ")", "{": "}"}


def _scan_value(text: str, start: int) -> int:
    """End index of the Python value that begins at `text[start]` (a quoted string, a bracketed literal, or a bare
    token up to whitespace, a comma, a semicolon or an unmatched closing bracket)."""
    if start >= len(text):
        return start
    first = text[start]
    if first in "'\"":
        end = start + 1
        while end < len(text) and text[end] != first:
            end += 2 if text[end] == "\\" else 1
        return min(end + 1, len(text))
    if first in _CLOSE:
        depth, end, quote = 0, start, None
        while end < len(text):
            char = text[end]
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char in _CLOSE:
                depth += 1
            elif char in _CLOSE.values():
                depth -= 1
                if depth == 0:
                    return end + 1
            end += 1
        return end
    end = start
    while end < len(text) and not text[end].isspace() and text[end] not in ",;)]}":
        end += 1
    return end


def _cli_value(raw: str) -> str:
    """A Python literal as command-line words: ``'V'`` -> ``V``; ``[50, 60]`` -> ``50 60``; ``{'A1': 'Fp1'}`` ->
    ``A1=Fp1``, ``{"old": "new", ...}`` -> ``old=new ...``; anything else as written."""
    more = re.search(r",\s*\.\.\.\s*([}\]])$", raw)  # an example that goes on: {"old": "new", ...}
    try:
        value = ast.literal_eval(raw[:more.start()] + more.group(1) if more else raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return raw
    if more and isinstance(value, (dict, list)):
        return f"{_cli_value(repr(value))} ..."
    if isinstance(value, str):
        return shlex.quote(value) if value else "''"
    if isinstance(value, dict):
        return " ".join(f"{shlex.quote(str(k))}={shlex.quote(str(v))}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " ".join(shlex.quote(str(v)) for v in value)
    return raw


def option_table(parser: argparse.ArgumentParser | None, extra_fields=()) -> dict[str, tuple[str, bool]]:
    """Python argument name -> (`--option`, whether it is a switch taking no value), from `parser`'s options (dest
    names) and `extra_fields` (names whose option is ``--name``, as `HfArgumentParser` spells dataclass fields)."""
    table = {name: (f"--{name}", False) for name in extra_fields}
    for action in getattr(parser, "_actions", []):
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and action.dest not in ("help", "debug"):
            table[action.dest] = (max(longs, key=len), action.nargs == 0)
    for name, option in ALIASES.items():
        if any(flag == option for flag, _ in table.values()):
            table[name] = (option, next(switch for flag, switch in table.values() if flag == option))
    return table


def cli_words(message: str, parser: argparse.ArgumentParser | None, extra_fields=()) -> str:
    """`message` with every ``name=value`` of a Python argument the command has an option for in option words."""
    table = option_table(parser, extra_fields)
    out, position = [], 0
    for match in _NAME.finditer(message):
        if match.start() < position:
            continue
        name = match.group(1)
        end = _scan_value(message, match.end())
        raw = message[match.end():end]
        flag = VALUE_FLAGS.get((name, raw))
        if flag is None and name not in table:
            continue
        out.append(message[position:match.start()])
        if flag is not None:
            out.append(flag)
        else:
            option, switch = table[name]
            if switch and raw == "True":
                out.append(option)
            elif switch and raw == "False":
                out.append(f"no {option}")
            elif raw:
                out.append(f"{option} {_cli_value(raw)}")
            else:  # "pass baseline= (a recording ...)": the option alone
                out.append(option)
        position = end
    out.append(message[position:])
    return "".join(out)


def training_fields() -> list[str]:
    """Field names of the training stages' dataclasses (what `e2llm train` takes as ``--field``)."""
    names = []
    try:
        from transformers import TrainingArguments

        from e2llm.training import arguments
    except ImportError:
        return names
    for value in [TrainingArguments, *vars(arguments).values()]:
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            names.extend(field.name for field in dataclasses.fields(value))
    return names


def _module_error(error: BaseException, name: str) -> bool:
    return any(type_.__module__.split(".")[0] == name for type_ in type(error).__mro__)


def user_error_text(error: BaseException) -> str | None:
    """The message of `error` when it is the user's to fix (module docstring), else None (a bug: keep the
    traceback)."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, OSError) and error.errno in _DISK_FULL and not isinstance(error, DiskFullError):
        return _disk_full_text(getattr(error, "filename", None), error.strerror or text)
    if isinstance(error, OSError):
        filename = getattr(error, "filename", None)
        return text if not filename or str(filename) in text else f"{text}: {filename}"
    if isinstance(error, ValueError):
        return text
    if type(error).__name__.startswith("StrictDataclass"):  # a configuration's validator refused a value
        cause = error.__cause__
        return f"invalid configuration: {cause if cause is not None else text}"
    if _module_error(error, "yaml"):
        return f"malformed YAML: {text}"
    if _module_error(error, "safetensors"):
        return f"a .safetensors file could not be read ({text}); restore or re-save it"
    if type(error).__name__ == "OutOfMemoryError" or isinstance(error, MemoryError):
        return (f"out of memory ({text.splitlines()[0] if text else 'MemoryError'}); lower --batch-size (or "
                "--per_device_train_batch_size), or use a smaller model")
    if isinstance(error, ModuleNotFoundError) and error.name:
        return (f"the optional package {error.name!r} is not installed: pip install 'e2llm[train]' (or "
                f"'e2llm[eeg]' for reading recordings)")
    if isinstance(error, (AssertionError, RuntimeError)) and re.search(r"CUDA|NVIDIA driver|cuda", text):
        return f"no usable CUDA device ({text.splitlines()[0]}); pass --device cpu, or run where a GPU is visible"
    if isinstance(error, RuntimeError) and re.search(r"No space left|Disk quota|File too large|file write failed",
                                                     text):
        return _disk_full_text(None, text.splitlines()[0])
    if isinstance(error, ImportError):  # an optional extra's module raises ImportError saying what to install
        return text
    return None


def _disk_full_text(filename, cause: str) -> str:
    """The message of a write that failed on a full disk (ENOSPC), quota (EDQUOT) or file-size limit (EFBIG)."""
    target = f" {filename}" if filename else ""
    return (f"no room left to write{target}: the disk is full, or a quota or the file-size limit is reached "
            f"({cause}); free some space or choose another output folder")


def cli_message(error: BaseException, parser: argparse.ArgumentParser | None, command: str | None = None) -> str | None:
    """The one-line message of `error` for `e2llm COMMAND`, in the command's words; None when it is a bug."""
    text = user_error_text(error)
    if text is None:
        return None
    fields = training_fields() if command == "train" else ()
    return " ".join(cli_words(text, parser, fields).split())


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    """The sub-parser of `command` inside the `e2llm` parser (None if there is none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def handle_error(error: BaseException, parser: argparse.ArgumentParser, command: str, debug: bool = False) -> int:
    """The `e2llm` error hook: print ``e2llm COMMAND: error: MESSAGE`` and return 2 for a user error; re-raise a bug
    (or anything, with `debug`)."""
    message = None if debug else cli_message(error, command_parser(parser, command) or parser, command)
    if message is None:
        raise error
    print(f"e2llm {command}: error: {message} (--debug shows the traceback)", file=sys.stderr)
    return 2


__all__ = ["ALIASES", "VALUE_FLAGS", "cli_message", "cli_words", "command_parser", "handle_error", "option_table",
           "training_fields", "user_error_text"]
