"""`e2llm init`: assemble an untrained E2LLM (EEG encoder + projector + Qwen language model) and save it.

    e2llm init --tiny --output-dir runs/tiny                      # tiny Qwen3-architecture model, offline tokenizer
    e2llm init --text-model Qwen/Qwen2.5-0.5B-Instruct --output-dir runs/e2llm-0.5b
    e2llm init --text-model ./my-qwen --labels negative neutral positive --output-dir runs/seed3

The folder holds `model.safetensors`, the config with the EEG encoder, projector and text settings, the processor
(feature extractor + tokenizer with the EEG tokens + chat template) and the remote code, so it loads with
`AutoModelForCausalLM` / `AutoProcessor` with e2llm installed, and with `trust_remote_code=True` without it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

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
    parser.add_argument("--output-dir", required=True, type=Path, help="folder to write the model and processor to")
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="the label set, in id order (default: SEED-VII's seven emotions)",
    )
    parser.add_argument(
        "--eeg-config",
        type=Path,
        metavar="JSON",
        help="E2LLMEEGConfig settings as a JSON file (default: the encoder's defaults; tiny ones with --tiny)",
    )
    parser.add_argument("--num-eeg-tokens", type=int, help="language-model tokens per EEG window")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="dtype the text model is loaded and the E2LLM saved in")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    parser.add_argument("--trust-remote-code", action="store_true", help="pass trust_remote_code to --text-model")


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
):
    """Build an untrained E2LLM from `text_model` (a checkpoint) or `tiny=True`, save it with its processor.

    Returns `(model, processor)`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from e2llm import assemble_e2llm, build_tiny_e2llm
    from e2llm.assembly import TINY_EEG_CONFIG

    if bool(text_model) == bool(tiny):
        raise ValueError("pass exactly one of text_model (a Qwen checkpoint) or tiny=True")
    if labels is not None:
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"labels must be at least two distinct names, got {labels}")
    id2label = dict(enumerate(labels)) if labels else None
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    if tiny:
        if eeg_config is None and num_eeg_tokens is None:
            model, processor = build_tiny_e2llm(id2label=id2label, seed=seed)
        else:
            from e2llm import build_offline_tokenizer
            from e2llm.assembly import TINY_TEXT_CONFIG

            model, processor = assemble_e2llm(
                build_offline_tokenizer(),
                text_config=TINY_TEXT_CONFIG,
                eeg_config={**TINY_EEG_CONFIG, **(eeg_config or {})},
                id2label=id2label,
                num_eeg_tokens=num_eeg_tokens,
            )
    else:
        tokenizer = AutoTokenizer.from_pretrained(text_model, trust_remote_code=trust_remote_code)
        language_model = AutoModelForCausalLM.from_pretrained(
            text_model, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        model_type = language_model.config.model_type
        if not model_type.startswith("qwen"):
            logger.warning("e2llm is built and tested with Qwen language models; %s is a %r model", text_model, model_type)
        model, processor = assemble_e2llm(
            tokenizer, text_model=language_model, eeg_config=eeg_config, id2label=id2label, num_eeg_tokens=num_eeg_tokens
        )
    model = model.to(torch_dtype)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return model, processor


def run(args: argparse.Namespace) -> int:
    eeg_config = json.loads(args.eeg_config.read_text()) if args.eeg_config else None
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
    )
    n_params = sum(p.numel() for p in model.parameters())
    n_eeg = sum(p.numel() for p in model.model.eeg_encoder.parameters())
    n_projector = sum(p.numel() for p in model.model.projector.parameters())
    print(
        f"saved an untrained E2LLM to {args.output_dir}: {n_params:,} parameters "
        f"(EEG encoder {n_eeg:,}, projector {n_projector:,}), text model {model.config.text_config.model_type}, "
        f"labels {model.config.label_names}"
    )
    return 0


__all__ = ["add_arguments", "init_model", "run"]
