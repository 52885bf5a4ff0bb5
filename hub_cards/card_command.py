"""`e2llm card MODEL_DIR`: render the model card (``README.md``) of a saved E2LLM folder from the folder's own files
(config, processor, ``e2llm_provenance.json``) and, if given, an evaluation report.

    e2llm card runs/stage3/merged --report runs/eval/report.json

Training writes no card (it would be stale the moment the folder is evaluated); `e2llm push` renders one too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cards import write_model_card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a saved E2LLM folder")
    parser.add_argument("--report", type=Path, metavar="FILE", help="an evaluation report.json to show")
    parser.add_argument("--base-model", metavar="ID", help="the Hub id of the language model it was built from")
    parser.add_argument("--dataset", nargs="*", default=(), metavar="DIR_OR_ID",
                        help="prepared dataset folders or Hub dataset ids it was trained on")
    parser.add_argument("--license", default=None, help="license id for the card's metadata")


def run(args: argparse.Namespace) -> int:
    if not (args.model_dir / "config.json").is_file():
        raise ValueError(f"{args.model_dir} is not a saved model folder (no config.json)")
    if args.report is not None and not args.report.is_file():
        raise FileNotFoundError(f"--report: no such file: {args.report}")
    path = write_model_card(args.model_dir, report=args.report, base_model=args.base_model,
                            datasets=list(args.dataset) or None, license=args.license)
    print(f"model card written to {path}")
    return 0


__all__ = ["add_arguments", "run"]
