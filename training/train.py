"""`e2llm train stage1|stage2|stage3 --config FILE [--field value ...]`: one training stage from a YAML config.

The YAML holds fields of the stage's dataclasses (`e2llm.training.arguments` and the Transformers/TRL trainer
arguments); the command line overrides any of them. Under `accelerate launch` every stage runs on N processes
unchanged (DDP, FSDP, DeepSpeed ZeRO-3: `training/configs/accelerate/`):

    e2llm train stage1 --config training/configs/stage1_tiny.yaml --output_dir runs/stage1
    accelerate launch --config_file training/configs/accelerate/ddp.yaml -m e2llm.training.train \\
        stage3 --config training/configs/stage3_qwen2.5-0.5b.yaml

`--resume_from_checkpoint PATH` (or `true` for the newest checkpoint in output_dir) resumes a stage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from e2llm.training.arguments import (
    STAGES,
    DataArguments,
    InstructConfig,
    LoraArguments,
    ModelArguments,
    Stage1Config,
)
from e2llm.training.checkpoints import resolve_resume, stage_finished, stage_started
from e2llm.training.cli_checks import check_training_arguments

_CONFIGS = Path(__file__).parent / "configs"


def stage_dataclasses(stage: str) -> tuple:
    """The argument dataclasses of `stage`, in parsing order."""
    if stage == "stage1":
        return ModelArguments, DataArguments, Stage1Config
    if stage == "stage2":
        return ModelArguments, DataArguments, InstructConfig
    if stage == "stage3":
        return ModelArguments, DataArguments, InstructConfig, LoraArguments
    raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")


def parse_stage_args(stage: str, argv: list[str]) -> tuple:
    """Parse ``--config FILE`` and command-line overrides into the stage's dataclasses (`trl.TrlParser`)."""
    from trl import TrlParser

    return TrlParser(stage_dataclasses(stage)).parse_args_and_config(argv)


def _resume(value):
    if value in (None, "", "false", "False"):
        return None
    return True if value in ("true", "True") else value


def load_data(data_args: DataArguments):
    """`(train, test)` windows of the prepared dataset, split by trial/subject (see `split_dataset`)."""
    from e2llm.processing.dataset_io import load_prepared
    from e2llm.training.data import split_dataset

    if data_args.dataset_path is None:
        raise ValueError("--dataset_path is required: a folder written by `e2llm prepare`")
    dataset = load_prepared(data_args.dataset_path)
    train, test = split_dataset(dataset, data_args.split, data_args.test_size, data_args.fold, data_args.split_seed)
    if data_args.max_train_samples is not None:
        train = train.shuffle(seed=data_args.split_seed).select(range(min(data_args.max_train_samples, len(train))))
    return train, test


def load_e2llm(model_args: ModelArguments, label_names, seed: int = 0, trust_remote_code: bool = False):
    """`(model, processor)`: the tiny model (labels from the data) or an E2LLM folder/repo."""
    from transformers import AutoProcessor

    from e2llm import E2LLMForConditionalGeneration
    from e2llm.training.backbones import build_tiny_backbone
    from e2llm.training.instruct import set_label_names

    if model_args.tiny and model_args.model_name_or_path is None:
        return build_tiny_backbone(model_args.tiny_model_type, label_names=label_names, seed=seed)
    if model_args.model_name_or_path is None:
        raise ValueError("--model_name_or_path is required (an E2LLM folder, e.g. from `e2llm init`), or --tiny")
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    model = E2LLMForConditionalGeneration.from_pretrained(
        model_args.model_name_or_path, dtype=dtype, attn_implementation=model_args.attn_implementation,
        trust_remote_code=trust_remote_code,
    )
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path, trust_remote_code=trust_remote_code)
    if list(model.config.label_names) != list(label_names):
        set_label_names(model, processor, label_names)
    return model, processor


def run_stage(stage: str, argv: list[str]) -> Path:
    """Parse the stage's arguments, train it, and return its output folder."""
    from transformers import AutoFeatureExtractor, set_seed

    parsed = parse_stage_args(stage, argv)
    model_args, data_args, training_args = parsed[:3]
    check_training_arguments(training_args)  # before any data is read
    set_seed(training_args.seed)
    train, test = load_data(data_args)
    label_names = train.features["emotion"].names
    resume = resolve_resume(training_args.output_dir, _resume(training_args.resume_from_checkpoint))
    if training_args.should_save:  # marked incomplete until its final save is done (e2llm.training.checkpoints)
        stage_started(training_args.output_dir, f"{stage} output")
    if stage == "stage1":
        from e2llm import E2LLMFeatureExtractor
        from e2llm.training.stage1 import build_stage1_model, train_stage1

        model = build_stage1_model(model_args, label_names, seed=training_args.seed)
        feature_extractor = (
            AutoFeatureExtractor.from_pretrained(model_args.model_name_or_path)
            if model_args.model_name_or_path is not None
            else E2LLMFeatureExtractor(sampling_rate=model.config.sampling_rate)
        )
        train_stage1(model, train, training_args, feature_extractor, eval_dataset=test, resume_from_checkpoint=resume)
    elif stage == "stage2":
        from e2llm.training.instruct import load_encoder_weights, train_stage2

        model, processor = load_e2llm(model_args, label_names, training_args.seed, training_args.trust_remote_code)
        if model_args.encoder_name_or_path is not None:
            load_encoder_weights(model, model_args.encoder_name_or_path)
        train_stage2(model, processor, train, training_args, data_args.instruction_seed, resume_from_checkpoint=resume)
    else:
        from e2llm.training.instruct import train_stage3

        model, processor = load_e2llm(model_args, label_names, training_args.seed, training_args.trust_remote_code)
        train_stage3(model, processor, train, training_args, parsed[3], tasks=data_args.tasks,
                     instruction_seed=data_args.instruction_seed, resume_from_checkpoint=resume)
    if training_args.should_save:
        stage_finished(training_args.output_dir)
    return Path(training_args.output_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=STAGES, help="which stage to run")
    parser.add_argument(
        "options", nargs=argparse.REMAINDER,
        help=f"--config FILE (YAML; ready ones in {_CONFIGS}) and overrides such as --output_dir DIR; "
             "`e2llm train STAGE --help` lists every field",
    )


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

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


__all__ = ["add_arguments", "load_data", "load_e2llm", "parse_stage_args", "run", "run_stage", "stage_dataclasses"]
