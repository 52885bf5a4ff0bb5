"""Checks that every `e2llm` command runs on its arguments before any work: paths (inputs exist; an output file is
never an input, never inside an input, a model folder or a folder e2llm wrote, and never a file e2llm did not write
unless `--overwrite`; a missing local model folder told apart from a Hub id; a model folder's files whole), numeric
ranges, `--device` (CUDA asked where there is none), and for `e2llm train` its YAML config (malformed YAML, NaN
values), the paths it names and a resume from another stage's checkpoint. Each failure is a `ValueError` /
`FileNotFoundError` naming the option, the problem and the fix; `e2llm.training.cli` prints it as
``e2llm COMMAND: error: ...`` and exits 2.

>>> check_model_reference("Qwen/Qwen2.5-0.5B-Instruct")  # a Hub id: left to the Hub
'Qwen/Qwen2.5-0.5B-Instruct'
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import torch
import yaml

from e2llm.folder_checks_e2llm import check_model_folder, non_finite_value, read_json_file
from e2llm.provenance_e2llm import read_provenance
from e2llm.safe_output import check_output_file as check_output_path
from e2llm.training.checkpoints import check_complete, check_stage_output_dir

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
        check_complete(path, what=option)
        if (path / "config.json").is_file():  # damaged JSON or safetensors, label map, tokenizer: named here
            check_model_folder(path)
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


def check_output_file(path, option: str, inputs=(), overwrite: bool = False) -> Path:
    """A file path that can be written without costing the user data (`e2llm.safe_output.check_output_file`): not
    an input nor inside one, not a folder, and without `overwrite` not inside a model folder nor a file e2llm did
    not write."""
    return check_output_path(path, inputs=inputs, overwrite=overwrite, option=option)


def check_output_folder(path, option: str, inputs=()) -> Path:
    """A folder path that can be written: not a file, not below a file, neither an input folder nor inside one (a
    folder that merely holds an input is fine: files are checked one by one where they are written)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{option}: {path} is an existing file; pass a folder path")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"{option}: cannot create {path}: {parent} is a file")
    resolved = path.expanduser().resolve()
    for source in inputs:
        if source is None or not Path(source).expanduser().exists():
            continue
        other = Path(source).expanduser().resolve()
        if resolved == other or (other.is_dir() and other in resolved.parents):
            raise ValueError(f"{option} {path} is {'the input' if resolved == other else 'inside the input folder'} "
                             f"{source}: writing there would change an input; choose a folder outside it")
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


# Options naming an input (a file or folder the command reads): never written over.
INPUT_OPTIONS = ("files", "model", "data", "root", "labels", "baseline", "report", "channel_map", "config")


def input_paths(values: dict) -> list[str]:
    """The local paths among the input options of a command's arguments (`INPUT_OPTIONS`)."""
    paths = []
    for dest in INPUT_OPTIONS:
        value = values.get(dest)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (str, Path)) and item and Path(item).expanduser().exists():
                paths.append(str(item))
    return paths


# Options naming a JSON file the command reads.
JSON_OPTIONS = ("eeg_config", "report")


def check_json_file(path, option: str) -> object:
    """The parsed JSON file of an option; FileNotFoundError / ValueError naming the option and the file (and the line
    and column of the damage, or the key holding NaN / infinity)."""
    path = check_input_file(path, option)
    try:
        content = read_json_file(path)
    except ValueError as error:
        raise ValueError(f"{option}: {error}") from None
    bad = non_finite_value(content)
    if bad is not None:
        raise ValueError(f"{option} {path}: {bad[0]} is {bad[1]}; give a finite number")
    return content


def check_device(device, option: str = "--device") -> None:
    """ValueError for a `--device` this machine does not have (CUDA without a GPU or without a CUDA build of torch,
    an index past the last GPU, MPS off a Mac), or one torch does not know."""
    text = str(device)
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{option} {text} is not a device torch knows ({error}); use cpu, cuda, cuda:1 or mps") \
            from None
    kind = parsed.type
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"{option} {text}: no CUDA device here ({why}); pass {option} cpu, or leave {option} "
                             "unset to use a GPU when there is one")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{option} {text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} {text}: MPS (Apple GPUs) is not available here; pass {option} cpu")
    elif kind not in ("cpu", "mps") and not getattr(getattr(torch, kind, None), "is_available", lambda: False)():
        raise ValueError(f"{option} {text}: no {kind} device here; pass {option} cpu")


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
    for dest in JSON_OPTIONS:
        if values.get(dest) is not None:
            check_json_file(values[dest], _option(dest))
    if values.get("device") is not None:
        check_device(values["device"])
    inputs = input_paths(values)
    if values.get("output") is not None:
        check_output_file(values["output"], "--output", inputs, bool(values.get("overwrite")))
    for dest in ("output_dir", "evidence_dir"):
        if values.get(dest) is not None:
            check_output_folder(values[dest], _option(dest), inputs)
    if values.get("command") == "train" and values.get("stage") is not None:
        check_train_options(values["stage"], list(values.get("options") or []))



def train_option(options: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` / ``--name=VALUE`` (or the dashed spelling) in `e2llm train`'s options (last
    one wins, as in argparse); None when absent."""
    spellings = {f"--{name}", f"--{name.replace('_', '-')}"}
    found = None
    for i, item in enumerate(options):
        flag, sep, inline = item.partition("=")
        if flag in spellings:
            found = inline if sep else (options[i + 1] if i + 1 < len(options) else "")
    return found


def read_yaml_config(path, option: str = "--config") -> dict:
    """The mapping in the YAML file `path`; ValueError naming the file, line and column of malformed YAML, a file that
    holds no mapping, or a NaN / infinite value."""
    path = check_input_file(path, option)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{option} {path} is not a UTF-8 text file (byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{option} {path} is not valid YAML ({problem}{where}); fix the file") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(f"{option} {path} must hold a mapping of fields (name: value), got a "
                         f"{type(content).__name__}")
    bad = non_finite_value(content)
    if bad is not None:
        raise ValueError(f"{option} {path}: {bad[0]} is {bad[1]}; give a finite number")
    return content


def _model_kind(folder: Path) -> str | None:
    """"encoder" (stage 1, e2llm_eeg), "e2llm" (stages 2-3), "adapter" or None, from a checkpoint's files."""
    if (folder / "config.json").is_file():
        try:
            model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            return None
        return {"e2llm_eeg": "encoder", "e2llm": "e2llm"}.get(model_type)
    return "adapter" if (folder / "adapter_config.json").is_file() else None


def check_resume(stage: str, resume, output_dir) -> None:
    """ValueError when `--resume_from_checkpoint` (a path, or true: the newest checkpoint in `output_dir`) is a
    checkpoint of another stage's model: stage 1 trains the EEG encoder alone, stages 2 and 3 the whole E2LLM."""
    text = str(resume)
    if text.lower() in ("", "false", "none"):
        return
    if text.lower() == "true":
        found = sorted((p for p in Path(output_dir or ".").glob("checkpoint-*") if p.name[11:].isdigit()),
                       key=lambda p: int(p.name[11:]))
        if not found:
            return
        folder, how = found[-1], f"--resume_from_checkpoint true (the newest checkpoint in {output_dir}: {found[-1]})"
    else:
        folder, how = check_input_dir(text, "--resume_from_checkpoint"), f"--resume_from_checkpoint {text}"
    kind = _model_kind(folder)
    wanted = "encoder" if stage == "stage1" else "e2llm"
    if kind is None or kind == wanted or (kind == "adapter" and stage != "stage1"):
        return
    if kind == "encoder":
        fix = ("to start from a stage-1 encoder pass --encoder_name_or_path with its folder" if stage == "stage2"
               else "stage 3 starts from the stage-2 model: pass --model_name_or_path with its folder")
    else:
        fix = "stage 1 resumes only from stage-1 checkpoints"
    stages = (read_provenance(folder) or {}).get("stages") or [{}]
    writer = stages[-1].get("stage") or ("stage1" if kind == "encoder" else "stage2 or stage3")
    model = "the EEG encoder (stage 1)" if kind == "encoder" else "an E2LLM (stage 2 or 3)"
    raise ValueError(f"{how} is a checkpoint of {model}, not of {stage} (it was written by {writer}, this run is "
                     f"{stage}): a run resumes only from its own stage's checkpoints (in its --output_dir); {fix}, and "
                     "choose a new --output_dir")


def check_train_options(stage: str, options: list[str]) -> None:
    """`e2llm train STAGE` options, before any work: the YAML `--config`, the model, encoder and dataset paths (from
    the command line or the config), the output folder, and a resume from another stage's checkpoint."""
    config_path = train_option(options, "config")
    config = read_yaml_config(config_path) if config_path is not None else {}

    def value(name: str):
        given = train_option(options, name)
        return given if given is not None else config.get(name)

    references = []
    for name in ("model_name_or_path", "encoder_name_or_path"):
        if value(name) not in (None, ""):
            references.append(check_model_reference(value(name), f"--{name}"))
    dataset = value("dataset_path")
    if dataset not in (None, ""):
        references.append(str(check_input_dir(dataset, "--dataset_path")))
    output_dir = value("output_dir")
    if output_dir not in (None, ""):
        check_output_folder(output_dir, "--output_dir", [r for r in references if Path(r).expanduser().exists()])
    resume = value("resume_from_checkpoint")
    if resume is not None:
        check_resume(stage, resume, output_dir)


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
        check_stage_output_dir(output_dir)
    if getattr(training_args, "save_total_limit", None) is not None and training_args.save_total_limit < 1:
        raise ValueError(f"--save_total_limit must be >= 1 (or unset), got {training_args.save_total_limit}")


__all__ = ["INPUT_OPTIONS", "JSON_OPTIONS", "RANGES", "check_arguments", "check_device", "check_input_dir", "check_input_file",
           "check_json_file", "check_model_reference", "check_number", "check_output_file", "check_output_folder", "check_resume",
           "check_train_options", "check_training_arguments", "input_paths", "looks_like_local_path",
           "read_yaml_config", "train_option"]
