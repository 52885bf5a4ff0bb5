"""Checks that every `e2llm` command runs on its arguments before any work: paths (inputs exist, outputs can be
written, a missing local model folder told apart from a Hub id) and numeric ranges. Each failure is a
`ValueError` / `FileNotFoundError` naming the option, the problem and the fix; `e2llm.training.cli` prints it as
``e2llm COMMAND: error: ...`` and exits 2.

>>> check_model_reference("Qwen/Qwen2.5-0.5B-Instruct")  # a Hub id: left to the Hub
'Qwen/Qwen2.5-0.5B-Instruct'
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

# A Hub repo id: "name" or "owner/name" of letters, digits, "-", "_", "." (no "--" or ".." inside).
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")

# option name (argparse dest) -> (lowest allowed, whether the lowest is allowed, highest or None)
RANGES: dict[str, tuple[float, bool, float | None]] = {
    "batch_size": (1, True, None),
    "max_new_tokens": (1, True, None),
    "eegnet_epochs": (1, True, None),
    "max_test_windows": (1, True, None),
    "self_consistency": (0, True, None),
    "temperature": (0, False, None),
    "test_size": (0, False, 1),
    "fold": (0, True, None),
    "num_eeg_tokens": (1, True, None),
    "n_subjects": (1, True, None),
    "trial_seconds": (0, False, None),
    "window_seconds": (0, False, None),
    "stride_seconds": (0, False, None),
    "resample": (0, False, None),
    "l_freq": (0, True, None),
    "h_freq": (0, False, None),
}


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def looks_like_local_path(reference: str) -> bool:
    """Whether `reference` can only be meant as a local path (absolute, ``./``, ``~``, backslashes, or more than
    one ``/``), as opposed to a Hub id such as ``owner/name``."""
    text = str(reference)
    return (Path(text).is_absolute() or text.startswith((".", "~")) or "\\" in text or text.count("/") > 1
            or not _HUB_ID.match(text))


def check_model_reference(reference, option: str = "--model") -> str:
    """A model folder that exists, or a well-formed Hub id; FileNotFoundError for a missing local folder."""
    text = str(reference)
    path = Path(text).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
            raise ValueError(f"{option} {text} is a folder without config.json, not a saved model: pass the folder "
                             "a training stage or `e2llm init` wrote")
        from e2llm.training.checkpoints import check_complete

        check_complete(path, what=option)
        return text
    if path.exists():
        raise ValueError(f"{option} {text} is a file; pass the model folder (holding config.json) or a Hub id")
    if looks_like_local_path(text):
        raise FileNotFoundError(f"{option}: local model folder not found: {text} (a Hub id looks like owner/name)")
    return text


def check_input_file(path, option: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{option}: no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{option}: {path} is a folder; pass a file")
    return path


def check_input_dir(path, option: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{option}: no such folder: {path}")
    if not path.is_dir():
        raise ValueError(f"{option}: {path} is a file; pass a folder")
    return path


def check_output_file(path, option: str) -> Path:
    """A file path that can be written: not a folder, its parent a folder (or creatable)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option}: {path} is a folder; pass a file name")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"{option}: cannot create {path}: {parent} is a file")
    return path


def check_output_folder(path, option: str) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{option}: {path} is an existing file; pass a folder path")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"{option}: cannot create {path}: {parent} is a file")
    return path


def check_number(value, dest: str) -> None:
    """ValueError when `value` (an option's number) is NaN/inf or outside `RANGES[dest]`."""
    if value is None or dest not in RANGES:
        return
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, str):  # a keyword the option also takes (``--fold all``)
            continue
        low, inclusive, high = RANGES[dest]
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{_option(dest)} must be a finite number, got {item}")
        if item < low or (item == low and not inclusive) or (high is not None and item >= high):
            bound = f"{'>=' if inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
            raise ValueError(f"{_option(dest)} must be {bound}, got {item}")


def check_arguments(args: argparse.Namespace) -> None:
    """Run the checks above on every option of `args` they apply to (by argparse dest name)."""
    values = vars(args)
    for dest, value in values.items():
        check_number(value, dest)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{_option(dest)} must be a finite number, got {value}")
    if values.get("model") is not None:
        for reference in values["model"] if isinstance(values["model"], list) else [values["model"]]:
            check_model_reference(reference)
    for path in values.get("files") or []:
        check_input_file(path, "FILE")
    for dest in ("data", "root"):
        if values.get(dest) is not None:
            check_input_dir(values[dest], _option(dest))
    if values.get("labels") is not None and not isinstance(values["labels"], list):
        check_input_file(values["labels"], "--labels")
    if values.get("output") is not None:
        check_output_file(values["output"], "--output")
    for dest in ("output_dir", "evidence_dir"):
        if values.get(dest) is not None:
            check_output_folder(values[dest], _option(dest))



def check_training_arguments(training_args) -> None:
    """ValueError for `TrainingArguments` values that would train nothing or nonsense (e.g. ``--num_train_epochs
    -1`` saving an untrained model), checked before any data is read."""
    max_steps = getattr(training_args, "max_steps", -1)
    epochs = getattr(training_args, "num_train_epochs", 1.0)
    if max_steps is not None and max_steps <= 0 and not (math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"--num_train_epochs must be > 0 (got {epochs}), or --max_steps > 0 (got {max_steps})")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        value = getattr(training_args, name, 1)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    rate = getattr(training_args, "learning_rate", 0.0)
    if not (math.isfinite(rate) and rate >= 0):
        raise ValueError(f"--learning_rate must be a finite number >= 0, got {rate}")
    output_dir = getattr(training_args, "output_dir", None)
    if output_dir is not None:
        check_output_folder(output_dir, "--output_dir")
    if getattr(training_args, "save_total_limit", None) is not None and training_args.save_total_limit < 1:
        raise ValueError(f"--save_total_limit must be >= 1 (or unset), got {training_args.save_total_limit}")


__all__ = ["RANGES", "check_arguments", "check_input_dir", "check_input_file", "check_model_reference", "check_number",
           "check_output_file", "check_output_folder", "check_training_arguments", "looks_like_local_path"]
