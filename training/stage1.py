"""Stage 1: emotion-discriminative pretraining of the EEG encoder (`e2llm.training.encoder_pretraining`).

The result is a `from_pretrained` folder (encoder + head + feature extractor + provenance) whose encoder stage 2
loads into the E2LLM.

    e2llm train stage1 --config training/configs/stage1_tiny.yaml --dataset_path DIR --output_dir runs/stage1
    accelerate launch --config_file training/configs/accelerate/ddp.yaml -m e2llm.training.stage1 --config ...
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoFeatureExtractor, set_seed
from trl import TrlParser

from e2llm.feature_extraction_e2llm import E2LLMFeatureExtractor
from e2llm.modeling_eeg_backbones import backbone_parameters
from e2llm.training.arguments import E2LLMModelConfig, Stage1Config, Stage1ScriptArguments
from e2llm.training.checkpoints import resolve_resume, stage_finished, stage_started
from e2llm.training.data import WindowClassificationCollator, WindowRows
from e2llm.training.encoder_pretraining import (
    TRAINING_DEVICES,
    EncoderPretrainingTrainer,
    EvidenceReadout,
    SubjectAdversary,
    accuracy,
    evidence_targets,
    linear_probe,
)
from e2llm.training.provenance import check_resume, inherited_stages, stage_record, write_provenance
from e2llm.training.sharding import end_training
from e2llm.training.stage_data import StageData, check_validation, load_stage_data
from e2llm.training.starting_models import build_stage1_model
from e2llm.training.window_tensors import extract_windows


def window_rows(data: StageData, training_args, model) -> tuple[WindowRows, WindowRows | None]:
    """`(train rows, validation rows)` over `data.windows()`, with the subject labels of the adversary and the
    evidence targets of the readout when those are on; adds those training devices to `model`."""
    windows, n_train = data.windows(), len(data.train_rows)
    small = windows.select_columns(["emotion", "subject"]).with_format("numpy")[:]
    columns = {"window": torch.arange(len(windows)), "labels": torch.as_tensor(small["emotion"], dtype=torch.long)}
    if training_args.adversarial_weight > 0:
        subjects = np.unique(small["subject"][:n_train])
        if len(subjects) < 2:
            raise ValueError("the subject-adversarial loss needs at least two subjects in the training data")
        position = np.searchsorted(subjects, small["subject"])
        known = (position < len(subjects)) & (subjects[np.minimum(position, len(subjects) - 1)] == small["subject"])
        columns["subject_labels"] = torch.as_tensor(np.where(known, position, -100), dtype=torch.long)
        model.subject_adversary = SubjectAdversary(model.config.hidden_size, len(subjects),
                                                   training_args.adversarial_weight)
    if training_args.evidence_weight > 0:
        train_targets, validation_targets = evidence_targets(data.train, data.validation)
        targets = train_targets if validation_targets is None else np.concatenate([train_targets, validation_targets])
        columns["evidence_targets"] = torch.as_tensor(targets)
        model.evidence_readout = EvidenceReadout(model.config.num_output_tokens * model.config.hidden_size,
                                                 targets.shape[1], training_args.evidence_weight)
    train = WindowRows(**{name: column[:n_train] for name, column in columns.items()})
    validation = WindowRows(**{name: column[n_train:] for name, column in columns.items()})
    return train, (validation if len(validation) else None)


def main(script_args, training_args, model_args):
    set_seed(training_args.seed)
    data = load_stage_data(script_args)
    check_validation(training_args, data, "stage1")
    model = build_stage1_model(model_args, data.label_names, seed=training_args.seed)
    starts_from = [model_args.model_name_or_path] if model_args.model_name_or_path else []
    feature_extractor = (AutoFeatureExtractor.from_pretrained(model_args.model_name_or_path) if starts_from
                         else E2LLMFeatureExtractor(sampling_rate=model.config.sampling_rate))
    stages = [*inherited_stages(starts_from), stage_record("stage1", data.dataset, data.split, data.train,
                                                           data.validation, training_args.seed)]
    resume = resolve_resume(training_args.output_dir, training_args.resume_from_checkpoint)
    if resume is not None:
        check_resume(resume, stages[-1])
    collator = WindowClassificationCollator(extract_windows(data.windows(), feature_extractor))
    train_rows, validation_rows = window_rows(data, training_args, model)
    if training_args.freeze_backbone:  # a frozen pretrained backbone under a trainable pooler + head
        for parameter in backbone_parameters(model.encoder):
            parameter.requires_grad_(False)
    if training_args.should_save:  # marked incomplete until its final save is done
        stage_started(training_args.output_dir, "stage1 output")
    if training_args.linear_probe_epochs > 0 and resume is None:  # a checkpoint holds the probe's result
        linear_probe(model, train_rows, training_args, collator)
    trainer = EncoderPretrainingTrainer(model=model, args=training_args, train_dataset=train_rows,
                                        eval_dataset=validation_rows, data_collator=collator,
                                        compute_metrics=accuracy if validation_rows is not None else None)
    trainer.provenance_stages = stages
    if training_args.num_train_epochs > 0 or training_args.max_steps > 0:  # 0: the linear probe alone
        trainer.train(resume_from_checkpoint=resume)
    for device in TRAINING_DEVICES:
        if hasattr(model, device):
            delattr(model, device)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        feature_extractor.save_pretrained(training_args.output_dir)
        write_provenance(training_args.output_dir, stages)
        stage_finished(training_args.output_dir)
    end_training(trainer)
    return trainer


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser((Stage1ScriptArguments, Stage1Config, E2LLMModelConfig), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())


__all__ = ["main", "make_parser", "window_rows"]
