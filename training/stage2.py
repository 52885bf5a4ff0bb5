"""Stage 2: cross-modal alignment, with TRL's `SFTTrainer` (`E2LLMSFTTrainer`).

The EEG encoder (from stage 1) stays frozen, so each window is encoded once before training; the projector learns
from EEG -> description pairs (the ``describe`` task of `e2llm.processing.instructions`), the loss on the answer
only. With a pretrained Qwen the language model stays frozen too (the paper's recipe). A language model that has
never seen text (the quickstart's randomly initialised tiny one) cannot turn projected EEG into words with frozen
weights: its stage-2 loss was the same with real EEG, EEG shuffled across windows and zeros (6.508 / 6.508 / 6.511
nats). For such a model ``--train_language_model true`` trains it whole with the projector, or ``--use_peft true``
trains LoRA adapters (and ``--lora_modules_to_save``), merged into the saved model. With validation windows the
stage writes ``OUTPUT/alignment.json`` (`e2llm.training.alignment.alignment_gap`).

    e2llm train stage2 --config training/configs/stage2_tiny.yaml --dataset_path DIR --output_dir runs/stage2
    accelerate launch --config_file training/configs/accelerate/ddp.yaml -m e2llm.training.stage2 --config ...
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import set_seed
from trl import TrlParser, get_peft_config

from e2llm.processing.instructions import evidence_reference
from e2llm.training.alignment import alignment_gap
from e2llm.training.arguments import AlignmentScriptArguments, E2LLMModelConfig, InstructConfig
from e2llm.training.checkpoints import resolve_resume, stage_finished, stage_started
from e2llm.training.data import InstructionCollator
from e2llm.training.instruction_rows import description_rows
from e2llm.training.provenance import check_resume, inherited_stages, stage_record, write_provenance
from e2llm.training.saving import merged_model
from e2llm.training.sft_trainer import E2LLMSFTTrainer
from e2llm.training.sharding import end_training
from e2llm.training.stage_data import check_validation, load_stage_data
from e2llm.training.starting_models import load_e2llm, load_encoder_weights, train_only
from e2llm.training.window_tensors import encode_windows, extract_windows

LANGUAGE_MODEL = ("model.projector.", "model.language_model.", "lm_head.")


def main(script_args, training_args, model_args):
    set_seed(training_args.seed)
    if script_args.train_language_model and model_args.use_peft:
        raise ValueError("--train_language_model true trains the whole language model; --use_peft true trains LoRA "
                         "adapters on it instead: choose one")
    data = load_stage_data(script_args)
    check_validation(training_args, data, "stage2")
    model, processor = load_e2llm(model_args, data.label_names, training_args.seed, training_args.trust_remote_code)
    if model_args.encoder_name_or_path is not None:
        load_encoder_weights(model, model_args.encoder_name_or_path)
    starts_from = [p for p in (model_args.model_name_or_path, model_args.encoder_name_or_path) if p]
    stages = [*inherited_stages(starts_from), stage_record("stage2", data.dataset, data.split, data.train,
                                                           data.validation, training_args.seed)]
    resume = resolve_resume(training_args.output_dir, training_args.resume_from_checkpoint)
    if resume is not None:
        check_resume(resume, stages[-1])
    seed = training_args.seed if script_args.instruction_seed is None else script_args.instruction_seed
    reference = evidence_reference(data.train)
    train_rows = description_rows(processor, data.train, reference, seed, max_length=training_args.max_length)
    validation_rows = None if data.validation is None else description_rows(
        processor, data.validation, reference, seed, offset=len(data.train_rows), max_length=training_args.max_length)
    windows = encode_windows(model.model.eeg_encoder, extract_windows(data.windows(), processor.feature_extractor),
                             training_args.device)
    train_only(model, LANGUAGE_MODEL if script_args.train_language_model else ("model.projector.",))
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        train_only(model, ())  # PEFT enables the adapters and modules_to_save
    if training_args.should_save:
        stage_started(training_args.output_dir, "stage2 output")
    trainer = E2LLMSFTTrainer(model=model, args=training_args, train_dataset=train_rows,
                              eval_dataset=validation_rows, processing_class=processor, peft_config=peft_config,
                              data_collator=InstructionCollator(windows, processor.tokenizer.pad_token_id,
                                                                training_args.pack_rows))
    trainer.provenance_stages = stages
    trainer.train(resume_from_checkpoint=resume)
    aligned = merged_model(trainer.accelerator.unwrap_model(trainer.model)) if peft_config is not None else model
    if trainer.is_world_process_zero():
        aligned.save_pretrained(training_args.output_dir)
        processor.save_pretrained(training_args.output_dir)
        write_provenance(training_args.output_dir, stages)
        if data.validation is not None:
            gap = alignment_gap(aligned, processor, data.validation, reference, seed=seed)
            Path(training_args.output_dir, "alignment.json").write_text(json.dumps(gap, indent=2) + "\n")
        stage_finished(training_args.output_dir)
    end_training(trainer)
    return trainer


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser((AlignmentScriptArguments, InstructConfig, E2LLMModelConfig), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())


__all__ = ["LANGUAGE_MODEL", "main", "make_parser"]
