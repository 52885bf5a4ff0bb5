"""The `e2llm` command line. Each sub-command lives in its own module that defines
`add_arguments(parser)` and `run(args) -> int`; modules are imported by name only when their
command runs (`COMMANDS`), so `e2llm --help` stays fast and the command line reaches every layer (`e2llm card`
and `e2llm push` are `e2llm.hub_cards`') without one importing another.

User errors (a bad option, a missing or unreadable file, a refused input) end with one line,
``e2llm COMMAND: error: ...``, and exit status 2; `--debug` (before or after the command) shows the
traceback instead. Paths and numeric ranges are checked before any work (`e2llm.training.cli_checks`)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from e2llm.training.cli_checks import check_arguments
from e2llm.training.cli_errors import handle_error

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("e2llm.training.quickstart", "end-to-end demo: synthetic SEED-VII data, stages 1-3, evaluation"),
    "init": ("e2llm.training.init_model", "assemble an untrained E2LLM (encoder + projector + Qwen) and save it"),
    "prepare": ("e2llm.processing.prepare", "read a dataset folder into windows saved with datasets.save_to_disk"),
    "train": ("e2llm.training.train", "run a training stage: stage1 | stage2 | stage3 --config FILE"),
    "evaluate": ("e2llm.training.evaluate_cli", "evaluate a model on held-out trials/subjects with baselines"),
    "predict": ("e2llm.training.predict", "run the eeg-emotion pipeline on recordings"),
    "card": ("e2llm.hub_cards.card_command", "render the model card of a saved model folder (README.md)"),
    "push": ("e2llm.hub_cards.push", "export a self-contained folder with its model card and upload it to the Hub"),
    "serve": ("e2llm.serving.cli", "serve a merged E2LLM over HTTP (OpenAI-style API) with vLLM (extra: serve)"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2llm", description="EEG-to-emotion language models.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    requested = next((arg for arg in argv if arg in COMMANDS), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if name == requested:  # only the command being run (or asked about) is imported
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 2 (with ``e2llm COMMAND: error: ...`` on stderr) for a user error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # accepted anywhere on the line, so `e2llm predict ... --debug` works too
    argv = [arg for arg in argv if arg != "--debug"]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print(f"e2llm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a user error becomes one line in the command's words; a bug keeps its traceback
        logging.getLogger(__name__).debug("error", exc_info=True)
        return handle_error(error, parser, args.command, debug)


if __name__ == "__main__":
    sys.exit(main())
