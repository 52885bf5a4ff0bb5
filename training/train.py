"""`e2llm train stage1|stage2|stage3 --config FILE [--field value ...]`: one training stage from a YAML config.

The YAML holds fields of the stage's dataclasses (`e2llm.training.arguments` and the Transformers/TRL trainer
arguments); the command line overrides any of them. Under `accelerate launch` every stage runs on N processes
unchanged (DDP, FSDP, DeepSpeed ZeRO-3: `training/configs/accelerate/`):

    e2llm train stage1 --config training/configs/stage1_tiny.yaml --output_dir runs/stage1
    accelerate launch --config_file training/configs/accelerate/ddp.yaml -m e2llm.training.train \\
        stage3 --config training/configs/stage3_qwen2.5-0.5b.yaml

`--resume_from_checkpoint PATH` (or `true` for the newest checkpoint in output_dir) resumes a stage. Every stage
writes ``e2llm_provenance.json`` (dataset fingerprint, split, the trial keys it trained and validated on) next to
its weights; `--validation_size` carves the windows a Trainer evaluates on from the training trials (or subjects).
One model per training seed: run the stages once per `--seed` (the quickstart's `--seeds` does this loop).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
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
from e2llm.training.evaluation.splits import SplitIndices, SplitSpec

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


@dataclass
class StageData:
    """The windows a stage sees: the whole prepared `dataset`, its `split`, and the `train` / `validation` windows
    (validation carved from the training side; None when `validation_size` is 0). The test side is never here."""

    dataset: object
    split: SplitIndices
    train: object
    validation: object | None


def stage_data(dataset, spec: SplitSpec, max_train_samples: int | None = None) -> StageData:
    """Resolve `spec` on a prepared `dataset` (`e2llm.training.evaluation.splits`) into a `StageData`."""
    from e2llm.training.evaluation.splits import resolve_split, select

    split = resolve_split(dataset, spec)
    train = dataset.select(split.train)
    if max_train_samples is not None:
        train = train.shuffle(seed=spec.seed).select(range(min(max_train_samples, len(train))))
    return StageData(dataset, split, train, select(dataset, split.validation))


def load_data(data_args: DataArguments) -> StageData:
    """The prepared dataset of `data_args`, split by trial/subject with a validation part of the training side."""
    from e2llm.processing.dataset_io import load_prepared

    if data_args.dataset_path is None:
        raise ValueError("--dataset_path is required: a folder written by `e2llm prepare`")
    spec = SplitSpec(kind=data_args.split, fold=data_args.fold, test_size=data_args.test_size,
                     seed=data_args.split_seed, validation_size=data_args.validation_size)
    return stage_data(load_prepared(data_args.dataset_path), spec, data_args.max_train_samples)


def check_validation(training_args, data: StageData, stage: str) -> None:
    """A stage that evaluates, selects a checkpoint or early-stops needs a validation part (never the test split)."""
    strategy = getattr(training_args, "eval_strategy", "no")
    evaluates = str(getattr(strategy, "value", strategy)) != "no"
    if (evaluates or getattr(training_args, "load_best_model_at_end", False)) and data.validation is None:
        raise ValueError(
            f"{stage} evaluates during training (eval_strategy={training_args.eval_strategy}, load_best_model_at_end="
            f"{training_args.load_best_model_at_end}) but has no validation windows: set --validation_size (a share "
            "of the training trials, or of the training subjects under split=subject); the test split is never used "
            "for checkpoint selection"
        )


def _write_provenance(stage: str, data: StageData, training_args, inherits, folders, is_main: bool = True) -> dict:
    from e2llm.training.provenance import inherited_stages, stage_record, write_provenance

    record = stage_record(stage, data.dataset, data.split, data.train, data.validation, seed=training_args.seed)
    stages = [*inherited_stages(inherits), record]
    if is_main:
        for folder in folders:
            write_provenance(folder, stages)
    return {"stages": stages}


def run_stage1(model, feature_extractor, data: StageData, training_args, inherits=(), resume_from_checkpoint=None):
    """Stage 1 on `data` (validation windows to the Trainer, if any); saves the model with its provenance."""
    from e2llm.training.stage1 import train_stage1

    check_validation(training_args, data, "stage1")
    trainer = train_stage1(model, data.train, training_args, feature_extractor, eval_dataset=data.validation,
                           resume_from_checkpoint=resume_from_checkpoint)
    _write_provenance("stage1", data, training_args, inherits, [training_args.output_dir],
                      trainer.is_world_process_zero())
    return trainer


def run_stage2(model, processor, data: StageData, training_args, instruction_seed: int = 0, inherits=(),
               resume_from_checkpoint=None):
    """Stage 2 on `data`; saves the model with its provenance (inherited from `inherits` folders)."""
    from e2llm.training.instruct import train_stage2

    check_validation(training_args, data, "stage2")
    trainer = train_stage2(model, processor, data.train, training_args, instruction_seed,
                           resume_from_checkpoint=resume_from_checkpoint, eval_dataset=data.validation)
    _write_provenance("stage2", data, training_args, inherits, [training_args.output_dir],
                      trainer.is_world_process_zero())
    return trainer


def run_stage3(model, processor, data: StageData, training_args, lora_args, tasks=("emotion",),
               instruction_seed: int = 0, inherits=(), resume_from_checkpoint=None, label_only_share: float = 0.0):
    """Stage 3 on `data`; the adapter and the merged model get the provenance, and the merged card shows it."""
    from e2llm.training.instruct import ADAPTER_DIR, MERGED_DIR, train_stage3, write_card

    check_validation(training_args, data, "stage3")
    trainer = train_stage3(model, processor, data.train, training_args, lora_args, tasks=tasks,
                           instruction_seed=instruction_seed, resume_from_checkpoint=resume_from_checkpoint,
                           eval_dataset=data.validation, label_only_share=label_only_share)
    output = Path(training_args.output_dir)
    use_peft = getattr(lora_args, "use_peft", True)
    folders = ([output / ADAPTER_DIR] if use_peft else []) + ([output / MERGED_DIR] if lora_args.merge else [])
    main = trainer.is_world_process_zero()
    _write_provenance("stage3", data, training_args, inherits, folders, main)
    if main and lora_args.merge:
        write_card(output / MERGED_DIR)  # again, now that the provenance is there
    return trainer


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


def _local(*paths) -> list:
    return [p for p in paths if p is not None and Path(p).is_dir()]


def run_stage(stage: str, argv: list[str]) -> Path:
    """Parse the stage's arguments, train it, and return its output folder."""
    from transformers import AutoFeatureExtractor, set_seed

    parsed = parse_stage_args(stage, argv)
    model_args, data_args, training_args = parsed[:3]
    check_training_arguments(training_args)  # before any data is read
    set_seed(training_args.seed)
    data = load_data(data_args)
    label_names = data.train.features["emotion"].names
    resume = resolve_resume(training_args.output_dir, _resume(training_args.resume_from_checkpoint))
    if training_args.should_save:  # marked incomplete until its final save is done (e2llm.training.checkpoints)
        stage_started(training_args.output_dir, f"{stage} output")
    if stage == "stage1":
        from e2llm import E2LLMFeatureExtractor
        from e2llm.training.stage1 import build_stage1_model

        model = build_stage1_model(model_args, label_names, seed=training_args.seed)
        feature_extractor = (
            AutoFeatureExtractor.from_pretrained(model_args.model_name_or_path)
            if model_args.model_name_or_path is not None
            else E2LLMFeatureExtractor(sampling_rate=model.config.sampling_rate)
        )
        run_stage1(model, feature_extractor, data, training_args, _local(model_args.model_name_or_path), resume)
    elif stage == "stage2":
        from e2llm.training.instruct import load_encoder_weights

        model, processor = load_e2llm(model_args, label_names, training_args.seed, training_args.trust_remote_code)
        if model_args.encoder_name_or_path is not None:
            load_encoder_weights(model, model_args.encoder_name_or_path)
        run_stage2(model, processor, data, training_args, data_args.instruction_seed,
                   _local(model_args.model_name_or_path, model_args.encoder_name_or_path), resume)
    else:
        model, processor = load_e2llm(model_args, label_names, training_args.seed, training_args.trust_remote_code)
        run_stage3(model, processor, data, training_args, parsed[3], tasks=data_args.tasks,
                   instruction_seed=data_args.instruction_seed, inherits=_local(model_args.model_name_or_path),
                   resume_from_checkpoint=resume, label_only_share=data_args.label_only_share)
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

    from e2llm.training.sharding import leave_process_group_at_exit

    leave_process_group_at_exit()
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


__all__ = ["StageData", "add_arguments", "check_validation", "load_data", "load_e2llm", "parse_stage_args", "run",
           "run_stage", "run_stage1", "run_stage2", "run_stage3", "stage_data", "stage_dataclasses"]
