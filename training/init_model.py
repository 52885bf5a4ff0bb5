"""`e2llm init`: assemble an untrained E2LLM (EEG encoder + projector + Qwen language model) and save it.

    e2llm init --tiny --output-dir runs/tiny                      # tiny Qwen3-architecture model, offline tokenizer
    e2llm init --text-model Qwen/Qwen2.5-0.5B-Instruct --output-dir runs/e2llm-0.5b
    e2llm init --text-model ./my-qwen --labels negative neutral positive --output-dir runs/seed3
    e2llm init --text-model Qwen/Qwen3-8B --eeg-encoder eegpt --eeg-encoder-weights braindecode/eegpt-pretrained \
        --dtype bfloat16 --output-dir runs/eegpt-qwen3-8b             # the paper's model, untrained projector
    e2llm init --tiny --eeg-encoder eegpt --output-dir runs/tiny-eegpt  # random tiny EEGPT (no download)

`--eeg-encoder-weights` takes braindecode's Hub format (a repo id or folder with `config.json` + `model.safetensors` /
`pytorch_model.bin`) or an authors' checkpoint file (EEGPT's Lightning `.ckpt`, LaBraM's / CBraMod's `.pth`); see
`e2llm.convert_backbones`. Without it a foundation encoder is randomly initialised (tiny with `--tiny`).

The folder holds `model.safetensors`, the config with the EEG encoder, projector and text settings, the processor
(feature extractor + tokenizer with the EEG tokens + chat template) and the remote code, so it loads with
`AutoModelForCausalLM` / `AutoProcessor` with e2llm installed, and with `trust_remote_code=True` without it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import yaml
from huggingface_hub import snapshot_download
from transformers import AutoModelForCausalLM, AutoTokenizer

from e2llm.assembly import (
    TINY_EEG_CONFIG,
    TINY_FOUNDATION_CONFIGS,
    TINY_TEXT_CONFIG,
    assemble_e2llm,
    eeg_config_from_checkpoint,
    load_eeg_encoder_weights,
)
from e2llm.safe_output import check_output_dir, staged_dir
from e2llm.tokenization_e2llm import build_offline_tokenizer
from e2llm.training.language_models import instruction_corpus

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--text-model",
        metavar="ID_OR_PATH",
        help="a Qwen2 / Qwen2.5 / Qwen3 causal-LM checkpoint (Hub id or local folder); its weights and tokenizer are kept",
    )
    source.add_argument(
        "--tiny", action="store_true", help="a tiny Qwen3-architecture language model (random weights, offline tokenizer)"
    )
    parser.add_argument("--output-dir", required=True, type=Path,
                        help="folder to write the model and processor to (new or empty; an existing one only with "
                             "--overwrite, and only when e2llm wrote it)")
    parser.add_argument("--overwrite", action="store_true", help="replace an --output-dir e2llm wrote before")
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="the label set, in id order (default: SEED-VII's seven emotions)",
    )
    parser.add_argument(
        "--eeg-config",
        type=Path,
        metavar="FILE",
        help="E2LLMEEGConfig settings as a JSON or YAML file (default: the encoder's defaults; tiny ones with --tiny; "
             "the quickstart's: training/configs/quickstart/eeg_config.yaml)",
    )
    parser.add_argument("--num-eeg-tokens", type=int, help="language-model tokens per EEG window")
    parser.add_argument("--eeg-encoder", default="patch", choices=("patch", "eegpt", "cbramod", "labram"),
                        help="the EEG encoder: e2llm's patch transformer or a pretrained foundation backbone")
    parser.add_argument("--eeg-encoder-weights", metavar="PATH_OR_REPO_ID",
                        help="published weights of --eeg-encoder: a braindecode Hub repo id / folder or a checkpoint file")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="dtype the text model is loaded and the E2LLM saved in")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    parser.add_argument("--trust-remote-code", action="store_true", help="pass trust_remote_code to --text-model")


def _tiny_e2llm(labels_map, eeg_encoder: str, eeg_config: dict | None, num_eeg_tokens: int | None):
    """The tiny Qwen3-architecture E2LLM: `TINY_EEG_CONFIG` (patch) or the foundation config, overridden by
    `eeg_config`; the offline tokenizer learns its merges from the instruction texts (`instruction_corpus`)."""
    base = TINY_EEG_CONFIG if eeg_encoder == "patch" else {}
    return assemble_e2llm(build_offline_tokenizer(instruction_corpus()), text_config=TINY_TEXT_CONFIG,
                          eeg_config={**base, **(eeg_config or {})}, id2label=labels_map,
                          num_eeg_tokens=num_eeg_tokens)


def _pretrained_e2llm(text_model: str, labels_map, eeg_config, num_eeg_tokens, dtype, trust_remote_code: bool):
    """An E2LLM around the Qwen checkpoint `text_model` (its weights and tokenizer kept)."""
    tokenizer = AutoTokenizer.from_pretrained(text_model, trust_remote_code=trust_remote_code)
    language_model = AutoModelForCausalLM.from_pretrained(text_model, dtype=dtype, trust_remote_code=trust_remote_code)
    model_type = language_model.config.model_type
    if not model_type.startswith("qwen"):
        logger.warning("e2llm is built and tested with Qwen language models; %s is a %r model", text_model, model_type)
    return assemble_e2llm(tokenizer, text_model=language_model, eeg_config=eeg_config, id2label=labels_map,
                          num_eeg_tokens=num_eeg_tokens)


def init_model(
    output_dir: str | Path,
    text_model: str | None = None,
    tiny: bool = False,
    labels: list[str] | None = None,
    eeg_config: dict | None = None,
    num_eeg_tokens: int | None = None,
    dtype: str = "float32",
    seed: int = 0,
    trust_remote_code: bool = False,
    eeg_encoder: str = "patch",
    eeg_encoder_weights: str | Path | None = None,
    overwrite: bool = False,
):
    """Build an untrained E2LLM from `text_model` (a checkpoint) or `tiny=True`, save it with its processor.

    `output_dir` must be new or empty, or (with `overwrite`) a folder e2llm wrote; checked before anything is built
    (`e2llm.safe_output.check_output_dir`). The folder is written beside it and renamed into place when complete.

    `eeg_config` overrides encoder settings (the quickstart's are ``training/configs/quickstart/eeg_config.yaml``);
    `eeg_encoder` picks the encoder backbone; `eeg_encoder_weights` (a braindecode Hub repo id or folder, or an
    authors' checkpoint file) loads its published weights. Returns `(model, processor)`.
    """
    if bool(text_model) == bool(tiny):
        raise ValueError("pass exactly one of text_model (a Qwen checkpoint) or tiny=True")
    if labels is not None and (len(labels) < 2 or len(set(labels)) != len(labels)):
        raise ValueError(f"labels must be at least two distinct names, got {labels}")
    inputs = [text_model, eeg_encoder_weights if eeg_encoder != "patch" else None]  # what will be read
    output_dir = check_output_dir(output_dir, inputs=inputs, overwrite=overwrite)
    labels_map = dict(enumerate(labels)) if labels else None
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    eeg_config, backbone_state = foundation_eeg_config(eeg_encoder, eeg_encoder_weights, eeg_config, tiny)
    if tiny:
        model, processor = _tiny_e2llm(labels_map, eeg_encoder, eeg_config, num_eeg_tokens)
    else:
        model, processor = _pretrained_e2llm(text_model, labels_map, eeg_config, num_eeg_tokens, torch_dtype,
                                             trust_remote_code)
    if backbone_state is not None:
        load_eeg_encoder_weights(model, backbone_state, source=str(eeg_encoder_weights))
    model = model.to(torch_dtype)
    with staged_dir(output_dir, kind="model") as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    return model, processor


def read_eeg_config(path: Path) -> dict:
    """The encoder settings of an ``--eeg-config`` file: a JSON or YAML mapping of `E2LLMEEGConfig` fields."""
    try:
        settings = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"--eeg-config {path}: not valid JSON or YAML ({error})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"--eeg-config {path} must hold a mapping of E2LLMEEGConfig fields")
    return settings


def resolve_weights(path_or_repo_id: str | Path) -> Path:
    """A local file or folder as is; otherwise a Hub repo id, downloaded (config and weight files only)."""
    path = Path(path_or_repo_id)
    if path.exists():
        return path
    if str(path_or_repo_id).count("/") != 1 or str(path_or_repo_id).startswith((".", "/")):
        raise ValueError(f"--eeg-encoder-weights {path_or_repo_id}: no such file or folder, and not a Hub repo id")
    return Path(snapshot_download(str(path_or_repo_id), allow_patterns=["config.json", "*.safetensors", "*.bin",
                                                                         "*.ckpt", "*.pth", "*.pt"]))


def foundation_eeg_config(eeg_encoder: str, weights, eeg_config: dict | None, tiny: bool):
    """`(eeg_config dict or None, converted backbone state or None)` for `--eeg-encoder` / `--eeg-encoder-weights`."""
    if eeg_encoder == "patch":
        if weights is not None:
            raise ValueError("--eeg-encoder-weights needs --eeg-encoder eegpt, cbramod or labram")
        return eeg_config, None
    given = dict(eeg_config or {})
    if given.get("backbone", eeg_encoder) != eeg_encoder:
        raise ValueError(f"--eeg-config says backbone={given['backbone']!r} but --eeg-encoder is {eeg_encoder!r}")
    given["backbone"] = eeg_encoder
    if weights is None:
        base = TINY_FOUNDATION_CONFIGS[eeg_encoder] if tiny else {"backbone": eeg_encoder}
        settings = {**base.get("backbone_config", {}), **given.pop("backbone_config", {})}
        return {**base, **given, "backbone_config": settings}, None
    given.pop("backbone")
    config, state = eeg_config_from_checkpoint(eeg_encoder, resolve_weights(weights), **given)
    return config.to_dict(), state


def run(args: argparse.Namespace) -> int:
    eeg_config = read_eeg_config(args.eeg_config) if args.eeg_config else None
    model, _ = init_model(
        args.output_dir,
        text_model=args.text_model,
        tiny=args.tiny,
        labels=args.labels,
        eeg_config=eeg_config,
        num_eeg_tokens=args.num_eeg_tokens,
        dtype=args.dtype,
        seed=args.seed,
        trust_remote_code=args.trust_remote_code,
        eeg_encoder=args.eeg_encoder,
        eeg_encoder_weights=args.eeg_encoder_weights,
        overwrite=args.overwrite,
    )
    n_params = sum(p.numel() for p in model.parameters())
    n_eeg = sum(p.numel() for p in model.model.eeg_encoder.parameters())
    n_projector = sum(p.numel() for p in model.model.projector.parameters())
    print(
        f"saved an untrained E2LLM to {args.output_dir}: {n_params:,} parameters "
        f"(EEG encoder {model.config.eeg_config.backbone} {n_eeg:,}, projector {n_projector:,}), text model "
        f"{model.config.text_config.model_type}, "
        f"labels {model.config.label_names}"
    )
    return 0


__all__ = ["add_arguments", "foundation_eeg_config", "init_model", "read_eeg_config", "resolve_weights", "run"]
