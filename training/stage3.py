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

import logging

import torch
from transformers import set_seed
from trl import TrlParser, get_peft_config

from e2llm.processing.instructions import evidence_reference
from e2llm.training.arguments import E2LLMModelConfig, InstructConfig, InstructionScriptArguments
from e2llm.training.checkpoints import resolve_resume, stage_finished, stage_started
from e2llm.training.data import EmotionTokenDropout, InstructionCollator
from e2llm.training.evaluation.calibration import calibrate_label_sources
from e2llm.training.instruction_rows import instruction_rows
from e2llm.training.provenance import check_resume, inherited_stages, stage_record
from e2llm.training.saving import save_instruction_model
from e2llm.training.sft_trainer import E2LLMSFTTrainer
from e2llm.training.sharding import end_training
from e2llm.training.stage_data import check_validation, load_stage_data
from e2llm.training.starting_models import load_e2llm, train_only
from e2llm.training.window_tensors import encode_windows, extract_windows

logger = logging.getLogger(__name__)
LANGUAGE_MODEL = ("model.projector.", "model.language_model.", "lm_head.")


def check_evidence_prompt(script_args, processor) -> None:
    """Evidence in the prompt states band power as the prepared windows have it: refused for an encoder whose
    feature extractor re-references them (the stated evidence would not be that of the signal the model reads)."""
    rereference = getattr(processor.feature_extractor, "reference", None)
    if script_args.evidence_in_prompt and rereference is not None:
        raise ValueError(f"evidence_in_prompt states band power as the prepared windows have it, but this encoder's "
                         f"feature extractor re-references them ({rereference!r}), so the stated evidence would not "
                         f"be that of the signal the model reads: train without --evidence_in_prompt")


def emotion_token_dropout(script_args, model, n_train_windows: int, seed: int) -> EmotionTokenDropout | None:
    """The collator's emotion-token dropout for ``--emotion_token_dropout`` (None at 0), refused where it cannot
    apply: an encoder without an emotion token, or one trained in this stage (its tokens are not computed once)."""
    if script_args.emotion_token_dropout == 0:
        return None
    token = model.model.eeg_encoder.emotion_token
    if token is None:
        raise ValueError("--emotion_token_dropout replaces the encoder's emotion token, but this encoder has none "
                         "(eeg_config.emotion_token false): leave it at 0")
    if script_args.train_encoder:
        raise ValueError("--emotion_token_dropout works on the frozen encoder's tokens, computed once: use it with "
                         "--train_encoder false")
    with torch.no_grad():  # the head's reading of uniform class probabilities
        blank = token.label_embeddings.float().mean(0)
    return EmotionTokenDropout(script_args.emotion_token_dropout, blank, n_train_windows, seed)


def calibrate_saved_model(script_args, training_args, written: dict, processor, data) -> dict | None:
    """Fit the label sources' temperatures on the validation windows and choose the source of the label
    probabilities (`calibrate_label_sources`), written into the merged model's config; None (and the model left at temperature 1,
    language-model probabilities) without validation windows, a merged model or ``--calibrate_labels``."""
    if not script_args.calibrate_labels or "model" not in written:
        return None
    if data.validation is None:
        logger.warning("stage3: no validation windows (--validation_size 0), so the label probabilities are not "
                       "calibrated: the model gives the language model's, at temperature 1")
        return None
    record = calibrate_label_sources(written["model"], processor, data.validation, data.train,
                                     batch_size=training_args.per_device_eval_batch_size, seed=training_args.seed,
                                     guidance_weights=script_args.label_guidance_weights,
                                     head_may_decide=script_args.label_head_may_decide,
                                     by_subject=data.split is not None and data.split.validation_kind == "subject")
    written["model"].config.save_pretrained(written["merged"])
    sources = ", ".join(f"{name} ECE {figures['ece']:.3f} at T={figures['temperature']:.2f}"
                        for name, figures in record["sources"].items())
    logger.info(f"stage3: label probabilities from the {record['chosen']} ({record['n_windows']} validation windows: "
                f"{sources})")
    guidance = record.get("label_guidance")
    if guidance is not None:
        tried = ", ".join(f"{w}: {f['balanced_accuracy']:.3f}" for w, f in guidance["weights"].items())
        head = guidance.get("head_decides")
        tried += f", the head deciding: {head['balanced_accuracy']:.3f}" if head else ""
        decision = guidance.get("decision")
        tried += (f"; best weight - head {decision['difference']:+.3f}, {100 * decision['level']:.1f}% interval "
                  f"over validation {decision.get('resampled', 'trials')} "
                  f"[{decision['ci_low']:+.3f}, {decision['ci_high']:+.3f}]" if decision else "")
        who = ("the emotion head decides the written labels" if guidance["decided_by"] == "emotion_head" else
               f"labels written with the emotion head's guidance at weight {guidance['weight']:g}")
        logger.info(f"stage3: {who} (validation balanced accuracy by weight: {tried})")
    return record


def main(script_args, training_args, model_args):
    set_seed(training_args.seed)
    if not model_args.use_peft and not script_args.merge:
        raise ValueError("--use_peft false writes the fine-tuned model to OUTPUT/merged only: --merge false would "
                         "save nothing; leave merge on")
    data = load_stage_data(script_args)
    check_validation(training_args, data, "stage3")
    model, processor = load_e2llm(model_args, data.label_names, training_args.seed, training_args.trust_remote_code)
    check_evidence_prompt(script_args, processor)
    guided = any(weight > 0 for weight in script_args.label_guidance_weights)
    if guided and not getattr(model.config.eeg_config, "emotion_token", False):
        raise ValueError("--label_guidance_weights adds the encoder's emotion head to the written labels, but this "
                         "encoder has none (eeg_config.emotion_token is false): leave --label_guidance_weights empty "
                         "(or 0)")
    if guided and not script_args.calibrate_labels:
        raise ValueError("--label_guidance_weights are tried on the validation windows when the labels are calibrated: "
                         "set --calibrate_labels true, or leave --label_guidance_weights empty (or 0)")
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
    collator = InstructionCollator(windows, processor.tokenizer.pad_token_id, training_args.pack_rows,
                                   emotion_token_dropout(script_args, model, len(data.train_rows), seed))
    trainer = E2LLMSFTTrainer(model=model, args=training_args, train_dataset=train_rows,
                              eval_dataset=validation_rows, processing_class=processor, peft_config=peft_config,
                              data_collator=collator)
    trainer.provenance_stages = stages
    trainer.train(resume_from_checkpoint=resume)
    written = save_instruction_model(trainer, processor, training_args.output_dir, merge=script_args.merge,
                                     provenance=stages)
    if trainer.is_world_process_zero():
        calibrate_saved_model(script_args, training_args, written, processor, data)
        stage_finished(training_args.output_dir)
    end_training(trainer)
    return trainer


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser((InstructionScriptArguments, InstructConfig, E2LLMModelConfig), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())


__all__ = ["check_evidence_prompt", "main", "make_parser"]
