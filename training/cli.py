"""The `e2llm` command line. Each sub-command lives in its own module that defines
`add_arguments(parser)` and `run(args) -> int`; modules are imported only when their
command runs, so `e2llm --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("e2llm.training.quickstart", "end-to-end demo: synthetic SEED-VII data, stages 1-3, evaluation"),
    "init": ("e2llm.training.init_model", "assemble an untrained E2LLM (encoder + projector + Qwen) and save it"),
    "prepare": ("e2llm.processing.prepare", "read a dataset folder into windows saved with datasets.save_to_disk"),
    "train": ("e2llm.training.train", "run a training stage: stage1 | stage2 | stage3 --config FILE"),
    "evaluate": ("e2llm.training.evaluate", "evaluate a model on held-out trials/subjects with baselines"),
    "predict": ("e2llm.training.predict", "run the eeg-emotion pipeline on recordings"),
    "push": ("e2llm.hub_cards.push", "export a self-contained folder with its model card and upload it to the Hub"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2llm", description="EEG-to-emotion language models.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    requested = next((arg for arg in argv if arg in COMMANDS), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if name == requested:  # only the command being run (or asked about) is imported
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
