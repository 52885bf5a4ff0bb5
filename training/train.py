"""`e2llm train stage1|stage2|stage3 --config FILE [--field value ...]`: one training stage from a YAML config.

Each stage is a TRL-style script (`e2llm.training.stage1`, `stage2`, `stage3`: `make_parser()` + `main(script_args,
training_args, model_args)`); this command parses the stage's arguments (the YAML holds fields of its three
dataclasses, `e2llm.training.arguments`; the command line overrides any of them) and runs its `main`.
`e2llm quickstart` runs its stages through `run_stage` too, on `training/configs/quickstart/`. Under `accelerate
launch` every stage runs on N processes unchanged (DDP, FSDP, DeepSpeed ZeRO-3: `training/configs/accelerate/`):

    e2llm train stage1 --config training/configs/stage1_tiny.yaml --output_dir runs/stage1
    accelerate launch --config_file training/configs/accelerate/ddp.yaml -m e2llm.training.train \\
        stage3 --config training/configs/stage3_qwen2.5-0.5b.yaml

`--resume_from_checkpoint PATH` (or `true` for the newest complete checkpoint in output_dir) resumes a stage; a
checkpoint written by another stage, or on another dataset or split, is refused. Every stage writes
``e2llm_provenance.json`` (dataset fingerprint, split, the trial keys it trained and validated on) next to its
weights; `--validation_size` carves the windows a Trainer evaluates on from the training trials (or subjects).
One model per training seed: run the stages once per `--seed` (the quickstart's `--seeds` does this loop).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from accelerate import PartialState

from e2llm.output_lock import output_lock
from e2llm.training import stage1, stage2, stage3
from e2llm.training.arguments import STAGES
from e2llm.training.cli_checks import check_training_arguments
from e2llm.training.language_models import CONFIG_DIR

STAGE_SCRIPTS = {"stage1": stage1, "stage2": stage2, "stage3": stage3}


def parse_stage_args(stage: str, argv: list[str]) -> tuple:
    """`(script_args, training_args, model_args)` of `stage` from ``--config FILE`` and command-line overrides."""
    if stage not in STAGE_SCRIPTS:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    return STAGE_SCRIPTS[stage].make_parser(prog=f"e2llm train {stage}").parse_args_and_config(list(argv))


def run_stage(stage: str, argv: list[str]) -> Path:
    """Parse `stage`'s arguments, run its script's `main` holding the output folder's lock (one writer per folder:
    `e2llm.output_lock`), and return the folder."""
    script_args, training_args, model_args = parse_stage_args(stage, argv)
    check_training_arguments(training_args)  # before any data is read
    with output_lock(training_args.output_dir, command=shlex.join(["e2llm", "train", stage, *argv])):
        STAGE_SCRIPTS[stage].main(script_args, training_args, model_args)
    return Path(training_args.output_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=STAGES, help="which stage to run")
    parser.add_argument(
        "options", nargs=argparse.REMAINDER,
        help=f"--config FILE (YAML; ready ones in {CONFIG_DIR}) and overrides such as --output_dir DIR; "
             "`e2llm train STAGE --help` lists every field",
    )


def run(args: argparse.Namespace) -> int:
    output = run_stage(args.stage, list(args.options))
    state = PartialState()
    print(f"rank {state.process_index}/{state.num_processes}: {args.stage} done, saved to {output}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m e2llm.training.train STAGE ...` (what `accelerate launch -m` runs)."""
    parser = argparse.ArgumentParser(prog="e2llm train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["STAGE_SCRIPTS", "add_arguments", "main", "parse_stage_args", "run", "run_stage"]
