"""Checks of a saved model folder before anything is loaded from it: every JSON file parses (a truncated
`tokenizer.json` is named with the place of the damage) and holds finite numbers; every safetensors header is whole
and consistent with the file (sizes, offsets, shards inside the folder); the label map agrees with itself and with the
emotion head's weights; the tokenizer has the `<|eeg|>` token with the id the model expects and no id beyond the
embeddings; the saved processor fits the model (tokens per window, rate, window). Each problem is one ValueError
naming the file and the fix. `e2llm.model_folder_e2llm` runs them in `from_pretrained`; `e2llm` CLI commands run them
on `--model` before any work.

Standard library at module level (this file travels as remote code with `modeling_e2llm.py`).

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "tokenizer.json").write_text('{"model": {"vocab": {')
>>> try:
...     read_json_file(folder / "tokenizer.json")
... except ValueError as error:
...     print(str(error).split(folder.name)[-1])
/tokenizer.json is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 22 of 1 lines) (it ends early: truncated); restore the file (download it again, or re-save the model with save_pretrained)
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from .configuration_e2llm import SEED_VII_EMOTIONS

EEG_TOKEN = "<|eeg|>"  # as in tokenization_e2llm (kept here so this file needs no tokenizer import)
JSON_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "added_tokens.json", "processor_config.json", "preprocessor_config.json",
              "chat_template.json", "model.safetensors.index.json", "adapter_config.json", "vocab.json")
# bytes per element of each safetensors dtype
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit
RESAVE = "restore the file (download it again, or re-save the model with save_pretrained)"
# Where the emotion head's label dimension shows in the weights, per class prefix.
_HEAD_KEYS = ("model.eeg_encoder.emotion_token.classifier.weight", "eeg_encoder.emotion_token.classifier.weight",
              "encoder.emotion_token.classifier.weight", "emotion_token.classifier.weight", "classifier.weight")


def read_json_file(path) -> object:
    """The parsed JSON of `path`; ValueError naming the file and the place of the damage when it does not parse."""
    path = Path(path)
    name = f"{path} (a link to {path.resolve()})" if path.is_symlink() else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{name} is not a UTF-8 text file (byte {error.start}): the file is damaged; {RESAVE}") \
            from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno} of {len(text.splitlines()) or 1} lines"
        cut = " (it ends early: truncated)" if error.pos >= len(text.rstrip()) else ""
        raise ValueError(f"{name} is not valid JSON ({error.msg} at {where}){cut}; {RESAVE}") from None


def safetensors_header(path) -> dict:
    """The header of the safetensors file `path` (`{name: {"dtype", "shape", "data_offsets"}}`, plus
    ``__metadata__``), checked against the file: ValueError naming the file when it is truncated or damaged."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is not a safetensors file ({size} bytes: too short for a header); {RESAVE}")
        (length,) = struct.unpack("<Q", head)
        if length > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path} is damaged: its header claims {length} bytes but the file holds {size - 8} "
                             f"after the size field (truncated, or not a safetensors file); {RESAVE}")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is damaged: its header is not valid JSON ({error}); {RESAVE}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is damaged: its header is not a mapping of tensors; {RESAVE}")
    data_bytes, spans = size - 8 - length, []
    for name, entry in header.items():
        if name != "__metadata__":
            _check_entry(path, name, entry, data_bytes)
            spans.append((*entry["data_offsets"], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ValueError(f"{path} is damaged: tensor {name!r} starts at byte {begin} of the data, where the one "
                             f"before it ended at {end} (overlapping or missing bytes); {RESAVE}")
        end = stop
    if end != data_bytes:
        raise ValueError(f"{path} is damaged: its tensors take {end} bytes but the file holds {data_bytes} bytes of "
                         f"data; {RESAVE}")
    return header


def _check_entry(path: Path, name: str, entry, data_bytes: int) -> None:
    try:
        dtype, shape, (begin, stop) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
        count = math.prod(int(n) for n in shape)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path} is damaged: the header entry of {name!r} is malformed ({entry!r}); {RESAVE}") \
            from None
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"{path}: tensor {name!r} has an unknown dtype {dtype!r}; {RESAVE}")
    if not (0 <= begin <= stop <= data_bytes):
        raise ValueError(f"{path} is damaged: tensor {name!r} lies at bytes {begin}-{stop} but the file holds "
                         f"{data_bytes} bytes of data (truncated?); {RESAVE}")
    if stop - begin != count * _DTYPE_BYTES[dtype]:
        raise ValueError(f"{path} is damaged: tensor {name!r} of shape {shape} ({dtype}) needs "
                         f"{count * _DTYPE_BYTES[dtype]} bytes but its header gives it {stop - begin}; {RESAVE}")


def weight_files(folder) -> list[Path]:
    """The safetensors files of a model folder (single file, or the shards its index names, each checked to exist)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = (read_json_file(index) or {}).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index} has no weight_map; {RESAVE}")
        shards = sorted(set(weight_map.values()))
        outside = [s for s in shards if not isinstance(s, str) or Path(s).name != s or s in (".", "..")]
        if outside:
            raise ValueError(f"{index} names weight shards outside the folder: {outside}; a shard is a file of "
                             f"{folder}. {RESAVE}")
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ValueError(f"{index} names weight shards that are missing from {folder}: {missing}; {RESAVE}")
        return [folder / s for s in shards]
    return [p for p in (folder / "model.safetensors",) if p.is_file()]


def weight_shapes(folder) -> dict[str, list[int]]:
    """`{tensor name: shape}` over the folder's safetensors files, every header checked (`safetensors_header`)."""
    shapes = {}
    for path in weight_files(folder):
        header = safetensors_header(path)
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    return shapes


def check_label_map(config: dict, where: str, shapes: dict[str, list[int]] | None = None) -> None:
    """ValueError when the `id2label` of a saved config is not a label set of at least two distinct names numbered
    0..n-1, when it disagrees with the `eeg_config`'s of an encoder with an emotion head (an unsaved one is the
    default, SEED-VII's seven), or when the emotion head in the weights has another count."""
    maps = {"id2label": config.get("id2label")}
    eeg = config.get("eeg_config")
    if isinstance(eeg, dict) and eeg.get("emotion_token"):  # the head's classes: the encoder's own label map
        maps["eeg_config.id2label"] = eeg.get("id2label") or {str(i): n for i, n in enumerate(SEED_VII_EMOTIONS)}
    labels = {}
    for key, mapping in maps.items():
        if mapping is None:
            continue
        if not isinstance(mapping, dict) or sorted(str(k) for k in mapping) != sorted(str(i) for i in range(len(mapping))):
            raise ValueError(f"{where}: {key} must number its labels 0..n-1, got {mapping!r}; restore the label map "
                             "the model was trained with")
        names = [mapping[k] for k in sorted(mapping, key=int)]
        if len(names) < 2 or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"{where}: {key} must list at least two distinct label names, got {names}; restore the "
                             "label map the model was trained with")
        labels[key] = names
    if len(labels) == 2 and labels["id2label"] != labels["eeg_config.id2label"]:
        raise ValueError(f"{where}: id2label {labels['id2label']} and eeg_config.id2label "
                         f"{labels['eeg_config.id2label']} disagree; restore the label map the model was trained "
                         "with (e2llm.training.instruct.set_label_names changes both)")
    head = next((shapes[k] for k in _HEAD_KEYS if shapes and k in shapes), None)
    names = next(iter(labels.values()), None)
    if head is not None and names is not None and head[0] != len(names):
        raise ValueError(f"{where}: id2label lists {len(names)} label(s) {names} but the emotion head in the weights "
                         f"has {head[0]} outputs; restore the label map the model was trained with (its "
                         f"{head[0]} labels), or re-head the model by training it on the new labels")


def tokenizer_problem(folder: Path, config: dict, content=None) -> str | None:
    """Why the folder's `tokenizer.json` (its parsed `content`, read here when not given) cannot serve the model of
    `config`, or why `config.json`'s `eeg_token_id` cannot (None when all is well)."""
    path = folder / "tokenizer.json"
    expected, rows = config.get("eeg_token_id"), (config.get("text_config") or {}).get("vocab_size")
    if isinstance(expected, int) and isinstance(rows, int) and not 0 <= expected < rows:
        return (f"{folder / 'config.json'} gives eeg_token_id={expected}, outside the {rows} rows of the model's "
                "embeddings (text_config.vocab_size): the file is damaged or from another model; " + RESAVE)
    if not path.is_file():
        return None
    content = read_json_file(path) if content is None else content
    if not isinstance(content, dict):
        return f"{path} is not a tokenizer (not a JSON object)"
    ids = {t.get("content"): t.get("id") for t in content.get("added_tokens") or [] if isinstance(t, dict)}
    vocab = (content.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        ids = {**vocab, **ids}
    if EEG_TOKEN not in ids:
        return (f"{path} has no {EEG_TOKEN} token, so no prompt can carry EEG: it is not this model's tokenizer. Save "
                "the processor the model was trained with into the folder (processor.save_pretrained), or add the "
                "EEG tokens (e2llm.add_eeg_tokens) and train the model with them")
    if expected is not None and ids[EEG_TOKEN] != expected:
        return (f"{path} gives {EEG_TOKEN} the id {ids[EEG_TOKEN]} but config.json expects eeg_token_id={expected}: "
                "the tokenizer and the model do not belong together; save the model's own processor into the folder")
    largest = max((i for i in ids.values() if isinstance(i, int)), default=-1)
    if isinstance(rows, int) and largest >= rows:
        return (f"{path} has token ids up to {largest} but the model's embeddings have {rows} rows "
                "(text_config.vocab_size): those tokens would fail; save the model's own processor into the folder, "
                "or resize the embeddings (model.resize_token_embeddings(len(tokenizer))) and train")
    return None


def non_finite_value(content, path: str = "") -> tuple[str, float] | None:
    """`(key path, value)` of the first NaN or infinite number in parsed JSON `content` (Python's json reads them)."""
    if isinstance(content, float) and not math.isfinite(content):
        return path or "the value", content
    items = content.items() if isinstance(content, dict) else enumerate(content) if isinstance(content, list) else ()
    for key, value in items:
        found = non_finite_value(value, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


_LARGE_JSON = ("tokenizer.json", "vocab.json")  # vocabularies: parsed, not walked value by value


def check_processor_contract(parsed: dict[str, object], folder: Path) -> None:
    """ValueError when the saved processor disagrees with the model's config.json: `num_eeg_tokens` (the processor
    would write another number of `<|eeg|>` tokens per window than the encoder gives), or the feature extractor's
    rate and window against the encoder's `sampling_rate` and `window_samples`."""
    config = parsed.get("config.json") or {}
    processor = parsed.get("processor_config.json") if isinstance(parsed.get("processor_config.json"), dict) else {}
    eeg = config.get("eeg_config") if isinstance(config.get("eeg_config"), dict) else {}
    tokens, expected = processor.get("num_eeg_tokens"), config.get("num_eeg_tokens")
    if tokens is not None and expected is not None and tokens != expected:
        raise ValueError(f"{folder / 'processor_config.json'} writes num_eeg_tokens={tokens} <|eeg|> tokens per window "
                         f"but config.json's encoder gives num_eeg_tokens={expected}: the processor belongs to another "
                         "model; save the model's own processor into the folder")
    extractor = processor.get("feature_extractor") or parsed.get("preprocessor_config.json") or {}
    rate, window = extractor.get("sampling_rate"), extractor.get("window_seconds")
    if not (isinstance(rate, (int, float)) and isinstance(window, (int, float))):
        return
    if eeg.get("sampling_rate") is not None and abs(rate - eeg["sampling_rate"]) > 1e-6:
        raise ValueError(f"{folder}: the saved feature extractor resamples to {rate} Hz but the EEG encoder in "
                         f"config.json takes {eeg['sampling_rate']} Hz; save the model's own processor into the folder")
    if eeg.get("window_samples") is not None and abs(rate * window - eeg["window_samples"]) > 1e-6:
        raise ValueError(f"{folder}: the saved feature extractor cuts windows of {window} s x {rate} Hz = "
                         f"{rate * window:g} samples but the EEG encoder in config.json takes window_samples="
                         f"{eeg['window_samples']}; save the model's own processor into the folder")


def check_model_folder(folder, model_type: str | None = None) -> dict:
    """Check a saved model folder before loading it (module docstring); returns its `config.json` content."""
    folder = Path(folder)
    parsed = {}
    for name in JSON_FILES:
        if (folder / name).is_file():
            content = parsed[name] = read_json_file(folder / name)
            bad = None if name in _LARGE_JSON else non_finite_value(content)
            if bad is not None:
                raise ValueError(f"{folder / name}: {bad[0]} is {bad[1]}, not a finite number; restore the value the "
                                 "model was saved with (or re-save it with save_pretrained)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{folder} holds no config.json: not a saved model folder (pass the folder save_pretrained "
                         "wrote)")
    config = parsed["config.json"]
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} is not a model configuration (not a JSON object); {RESAVE}")
    if model_type is not None and config.get("model_type") != model_type:
        raise ValueError(f"{config_path} describes a {config.get('model_type')!r} model, not {model_type!r}: load "
                         "it with its own class, or pass the folder of an e2llm model")
    shapes = weight_shapes(folder)
    if not shapes and not any(folder.glob("*.bin")):
        raise ValueError(f"{folder} holds no weights (model.safetensors or its shards); {RESAVE}")
    check_label_map(config, str(config_path), shapes)
    problem = (tokenizer_problem(folder, config, parsed.get("tokenizer.json")) if config.get("model_type") == "e2llm"
               else None)
    if problem is not None:
        raise ValueError(problem)
    check_processor_contract(parsed, folder)
    return config


def looks_local(reference: str) -> bool:
    """Whether `reference` can only be a local path (absolute, ``./``, ``~``, a backslash, or more than one ``/``)."""
    return (os.path.isabs(reference) or reference.startswith((".", "~")) or "\\" in reference
            or reference.count("/") > 1)


def local_folder(reference, subfolder: str = "") -> Path | None:
    """The local folder `reference` names (with `subfolder`), None for a Hub id; FileNotFoundError for a path that
    can only be local and does not exist (rather than Hugging Face's "Repo id must be in the form...")."""
    if isinstance(reference, os.PathLike):
        reference = os.fspath(reference)
    if not isinstance(reference, str):
        return None
    path = Path(reference).expanduser() / subfolder
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{reference} is a file; pass the model folder (holding config.json) or a Hub id (owner/name)")
    if looks_local(reference):
        raise FileNotFoundError(f"no model folder at {reference} (and it is not a Hub id, which looks like "
                                "owner/name); check the path")
    return None


__all__ = ["JSON_FILES", "RESAVE", "check_label_map", "check_model_folder", "check_processor_contract", "local_folder",
           "looks_local", "non_finite_value", "read_json_file", "safetensors_header", "tokenizer_problem",
           "weight_files", "weight_shapes"]
