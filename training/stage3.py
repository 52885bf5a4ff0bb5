"""Stage 3: chain-of-thought instruction tuning, with TRL's `SFTTrainer` (`E2LLMSFTTrainer`).

LoRA adapters (``--use_peft true``, TRL's `get_peft_config`) on the language model's attention and MLP
projections, the projector trained whole (``--lora_modules_to_save``), on the emotion / multi-task / scenario
conversations of the windows (training templates only; held-out templates are for zero-shot evaluation), plus
label-only answers for ``--label_only_share`` of the windows; the loss on the answer only. ``--use_peft false``
fine-tunes the whole language model with the projector instead (a small language model that LoRA adapts too
little). The encoder stays frozen and is run once per window, unless ``--train_encoder true``.
``--evidence_in_prompt true`` ends each prompt with the window's measured evidence, and the saved processor
keeps the training spreads so the ``eeg-emotion`` pipeline writes the same line at inference.

Writes ``OUTPUT/adapter`` and ``OUTPUT/merged`` (`e2llm.training.saving`), each with its provenance.

    e2llm train stage3 --config training/configs/stage3_qwen2.5-0.5b.yaml --learning_rate 1e-4
    accelerate launch --config_file training/configs/accelerate/fsdp.yaml -m e2llm.training.stage3 --config ...
"""

from __future__ import annotations

from transformers import set_seed
from trl import TrlParser, get_peft_config

from e2llm.processing.instructions import evidence_reference
from e2llm.training.arguments import E2LLMModelConfig, InstructConfig, InstructionScriptArguments
from e2llm.training.checkpoints import resolve_resume, stage_finished, stage_started
from e2llm.training.data import InstructionCollator
from e2llm.training.instruction_rows import instruction_rows
from e2llm.training.provenance import check_resume, inherited_stages, stage_record
from e2llm.training.saving import save_instruction_model
from e2llm.training.sft_trainer import E2LLMSFTTrainer
from e2llm.training.sharding import end_training
from e2llm.training.stage_data import check_validation, load_stage_data
from e2llm.training.starting_models import load_e2llm, train_only
from e2llm.training.window_tensors import encode_windows, extract_windows

LANGUAGE_MODEL = ("model.projector.", "model.language_model.", "lm_head.")


def check_evidence_prompt(script_args, processor) -> None:
    """Evidence in the prompt states band power as the prepared windows have it: refused for an encoder whose
    feature extractor re-references them (the stated evidence would not be that of the signal the model reads)."""
    rereference = getattr(processor.feature_extractor, "reference", None)
    if script_args.evidence_in_prompt and rereference is not None:
        raise ValueError(f"evidence_in_prompt states band power as the prepared windows have it, but this encoder's "
                         f"feature extractor re-references them ({rereference!r}), so the stated evidence would not "
                         f"be that of the signal the model reads: train without --evidence_in_prompt")


def main(script_args, training_args, model_args):
    set_seed(training_args.seed)
    if not model_args.use_peft and not script_args.merge:
        raise ValueError("--use_peft false writes the fine-tuned model to OUTPUT/merged only: --merge false would "
                         "save nothing; leave merge on")
    data = load_stage_data(script_args)
    check_validation(training_args, data, "stage3")
    model, processor = load_e2llm(model_args, data.label_names, training_args.seed, training_args.trust_remote_code)
    check_evidence_prompt(script_args, processor)
    starts_from = [model_args.model_name_or_path] if model_args.model_name_or_path else []
    stages = [*inherited_stages(starts_from), stage_record("stage3", data.dataset, data.split, data.train,
                                                           data.validation, training_args.seed)]
    resume = resolve_resume(training_args.output_dir, training_args.resume_from_checkpoint)
    if resume is not None:
        check_resume(resume, stages[-1])
    # the saved processor ships what evidence is measured against: the same evidence line (or none), the training
    # windows' reference band power (for inputs too short for their own mean), class signatures, abstention ranges
    reference = evidence_reference(data.train)
    processor.set_evidence_statistics(reference.statistics(
        script_args.evidence_in_prompt, script_args.evidence_strongest,
        provenance={"fingerprint": stages[-1]["dataset"]["fingerprint"], "split": stages[-1]["split"]}))
    seed = training_args.seed if script_args.instruction_seed is None else script_args.instruction_seed
    mix = {"tasks": script_args.tasks, "seed": seed, "max_length": training_args.max_length,
           "label_only_share": script_args.label_only_share, "evidence_in_prompt": script_args.evidence_in_prompt,
           "evidence_strongest": script_args.evidence_strongest}
    train_rows = instruction_rows(processor, data.train, reference, **mix)
    validation_rows = None if data.validation is None else instruction_rows(
        processor, data.validation, reference, offset=len(data.train_rows), **mix)
    windows = extract_windows(data.windows(), processor.feature_extractor)
    if not script_args.train_encoder:
        windows = encode_windows(model.model.eeg_encoder, windows, training_args.device)
    peft_config = get_peft_config(model_args)
    if peft_config is not None and script_args.train_encoder:
        peft_config.modules_to_save = [*(peft_config.modules_to_save or []), "eeg_encoder"]
    encoder = ("model.eeg_encoder.",) if script_args.train_encoder else ()
    train_only(model, () if peft_config is not None else LANGUAGE_MODEL + encoder)  # PEFT enables its modules
    if training_args.should_save:
        stage_started(training_args.output_dir, "stage3 output")
    trainer = E2LLMSFTTrainer(model=model, args=training_args, train_dataset=train_rows,
                              eval_dataset=validation_rows, processing_class=processor, peft_config=peft_config,
                              data_collator=InstructionCollator(windows, processor.tokenizer.pad_token_id,
                                                                training_args.pack_rows))
    trainer.provenance_stages = stages
    trainer.train(resume_from_checkpoint=resume)
    save_instruction_model(trainer, processor, training_args.output_dir, merge=script_args.merge, provenance=stages)
    if trainer.is_world_process_zero():
        stage_finished(training_args.output_dir)
    end_training(trainer)
    return trainer


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser((InstructionScriptArguments, InstructConfig, E2LLMModelConfig), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())


__all__ = ["check_evidence_prompt", "main", "make_parser"]
