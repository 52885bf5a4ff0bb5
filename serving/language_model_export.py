"""A merged E2LLM's language model as a stock Qwen folder, which vLLM (or Transformers) loads natively.

An E2LLM folder holds one `model.safetensors` (or shards) with the EEG encoder (`model.eeg_encoder.*`), the projector
(`model.projector.*`), the language model (`model.language_model.*`) and its head (`lm_head.weight`, absent when tied
to the input embeddings). The language model's tensors, renamed to the stock layout (`model.*`, `lm_head.weight`),
its `text_config` with the stock architecture, the generation config and the tokenizer (with the EEG tokens) make a
folder that `AutoModelForCausalLM.from_pretrained` and `vllm.LLM(model=folder)` read as an ordinary Qwen checkpoint:
the same weights, the same vocabulary. Tensors are copied file by file, so the export needs the memory of one
shard, not of the model.

    >>> from e2llm.serving import export_language_model
    >>> export_language_model("runs/stage3/merged", "runs/stage3/language_model")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

LANGUAGE_MODEL_PREFIX = "model.language_model."
HEAD_KEY = "lm_head.weight"
# model_type of the text config -> the causal-LM architecture name vLLM and Transformers know it by
ARCHITECTURES = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen2_moe": "Qwen2MoeForCausalLM",
                 "qwen3_moe": "Qwen3MoeForCausalLM", "llama": "LlamaForCausalLM"}
SHARD_BYTES = 5 * 2**30
EXPORT_RECORD = "e2llm_export.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "added_tokens.json", "chat_template.jinja")


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a saved model folder (one file, or the shards its index names)."""
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / name for name in names]
    single = model_dir / "model.safetensors"
    if single.exists():
        return [single]
    raise ValueError(f"{model_dir} holds no model.safetensors (nor a model.safetensors.index.json): save the E2LLM "
                     "with save_pretrained (safetensors), e.g. the merged/ folder of `e2llm train stage3`")


def read_e2llm_config(model_dir: Path) -> dict:
    """The folder's config.json as a dict, checked to be a merged E2LLM."""
    if (model_dir / "adapter_config.json").exists():
        raise ValueError(f"{model_dir} is a PEFT adapter: serve the merged model (the merged/ folder that `e2llm train "
                         "stage3` writes next to adapter/), whose language model vLLM can load as it is")
    path = model_dir / "config.json"
    if not path.exists():
        raise ValueError(f"{model_dir} has no config.json: pass a folder saved by E2LLM save_pretrained")
    config = json.loads(path.read_text())
    if config.get("model_type") != "e2llm" or not isinstance(config.get("text_config"), dict):
        raise ValueError(f"{model_dir} is not an E2LLM folder (config.json model_type "
                         f"{config.get('model_type')!r}); `e2llm serve` serves E2LLM models")
    return config


def text_model_config(config: dict) -> dict:
    """The stock causal-LM config.json of an E2LLM config's language model."""
    text = dict(config["text_config"])
    model_type = text.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ValueError(f"the language model is a {model_type!r} model; serving knows {sorted(ARCHITECTURES)}")
    text["architectures"] = [ARCHITECTURES[model_type]]
    text["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
    for key in ("dtype", "torch_dtype"):
        if key in config and key not in text:
            text[key] = config[key]
    text.pop("auto_map", None)
    return text


def stock_name(key: str) -> str | None:
    """The stock causal-LM name of an E2LLM tensor name; None for the EEG encoder's and the projector's."""
    if key.startswith(LANGUAGE_MODEL_PREFIX):
        return "model." + key[len(LANGUAGE_MODEL_PREFIX):]
    return HEAD_KEY if key == HEAD_KEY else None


def copy_language_model(files: list[Path], output_dir: Path, shard_bytes: int = SHARD_BYTES) -> list[str]:
    """Write the language-model tensors of `files` under their stock names in shards of at most `shard_bytes`
    (`model.safetensors`, or `model-0000i-of-0000n.safetensors` + index); the stock names written. Memory: one
    shard."""
    written: list[list[str]] = []
    pending, size = {}, 0

    def flush():
        nonlocal pending, size
        save_file(pending, str(output_dir / f"partial-{len(written):05d}.safetensors"), metadata={"format": "pt"})
        written.append(list(pending))
        pending, size = {}, 0

    for path in files:
        with safe_open(str(path), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open has no __iter__)
                name = stock_name(key)
                if name is None:
                    continue
                tensor = weights.get_tensor(key).contiguous()
                if pending and size + tensor.numel() * tensor.element_size() > shard_bytes:
                    flush()
                pending[name] = tensor
                size += tensor.numel() * tensor.element_size()
    if pending or not written:
        flush()
    if len(written) == 1:
        os.replace(output_dir / "partial-00000.safetensors", output_dir / "model.safetensors")
        return written[0]
    weight_map = {}
    for i, names in enumerate(written):
        final = f"model-{i + 1:05d}-of-{len(written):05d}.safetensors"
        os.replace(output_dir / f"partial-{i:05d}.safetensors", output_dir / final)
        weight_map.update(dict.fromkeys(names, final))
    index = {"metadata": {}, "weight_map": weight_map}
    (output_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return list(weight_map)


def fingerprint(model_dir: Path) -> str:
    """A short hash of the folder's config and weight files (names, sizes, modification times)."""
    digest = hashlib.sha256(str(model_dir.resolve()).encode())
    for path in [model_dir / "config.json", *weight_files(model_dir)]:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def export_language_model(model_dir: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Write the language model of the merged E2LLM at `model_dir` to `output_dir` as a stock Qwen folder (config,
    weights, generation config, tokenizer). A folder already exported from the same files is kept as it is.

    Returns `output_dir`. Raises `ValueError` for a folder that is not a merged E2LLM saved with safetensors."""
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    config = read_e2llm_config(model_dir)
    stamp = {"source": str(model_dir.resolve()), "fingerprint": fingerprint(model_dir)}
    record = output_dir / EXPORT_RECORD
    if record.exists() and json.loads(record.read_text()) == stamp:
        return output_dir
    check_output_dir(output_dir)
    text = text_model_config(config)
    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    names = copy_language_model(weight_files(model_dir), staging)
    if HEAD_KEY not in names and not text["tie_word_embeddings"]:
        raise ValueError(f"{model_dir} has no lm_head.weight and its embeddings are not tied: not a complete E2LLM")
    embeddings = "model.embed_tokens.weight"
    if embeddings not in names:
        raise ValueError(f"{model_dir} holds no language-model weights ({LANGUAGE_MODEL_PREFIX}*)")
    (staging / "config.json").write_text(json.dumps(text, indent=2, sort_keys=True) + "\n")
    copy_tokenizer(model_dir, staging)
    (staging / EXPORT_RECORD).write_text(json.dumps(stamp, indent=2) + "\n")
    if output_dir.exists():  # an older export of this or another model: replaced whole
        shutil.rmtree(output_dir)
    os.replace(staging, output_dir)
    return output_dir


def check_output_dir(output_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier export (it would be deleted)."""
    if output_dir.exists() and (not output_dir.is_dir() or (any(output_dir.iterdir())
                                                             and not (output_dir / EXPORT_RECORD).exists())):
        raise ValueError(f"{output_dir} exists and is not a language model exported by e2llm: choose a new or empty "
                         "folder (it is replaced whole when the model changes)")


def copy_tokenizer(model_dir: Path, output_dir: Path) -> None:
    """The generation config and the tokenizer files, the tokenizer's config without the E2LLM processor's
    `auto_map` / `processor_class` (a stock tokenizer folder)."""
    for name in ("generation_config.json", *TOKENIZER_FILES):
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, output_dir / name)
    config_path = output_dir / "tokenizer_config.json"
    if not config_path.exists():
        raise ValueError(f"{model_dir} holds no tokenizer (tokenizer_config.json): save the processor with the model")
    tokenizer_config = json.loads(config_path.read_text())
    for key in ("auto_map", "processor_class"):
        tokenizer_config.pop(key, None)
    config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")


__all__ = ["ARCHITECTURES", "export_language_model", "fingerprint", "text_model_config", "weight_files"]
