"""Stages 2 and 3: cross-modal alignment and chain-of-thought instruction tuning, with TRL's `SFTTrainer`.

Stage 2 freezes the EEG encoder and trains the projector on EEG -> description pairs (``describe`` task of
`e2llm.processing.instructions`). With a pretrained Qwen (``--align_language_model frozen``, the paper's recipe)
the language model stays frozen. A language model that has never seen text (the quickstart's randomly initialised
tiny one) cannot turn projected EEG into words with frozen weights: its stage-2 loss was the same with real EEG,
EEG shuffled across windows and zeros (6.508 / 6.508 / 6.511 nats). For such a model ``--align_language_model
lora`` trains LoRA adapters and the final norm of the language model with the projector and merges them into the
saved model, so stage 3 starts from a model that already writes descriptions read from the EEG. `alignment_gap`
measures the point of the stage: the description loss with real EEG against shuffled EEG on held-out windows.

Stage 3 adds LoRA adapters (PEFT) to the language model's attention and MLP projections and trains the projector
fully (and the encoder with ``--train_encoder``) on the emotion / multi-task / scenario conversations, held-out
templates excluded, plus label-only answers for ``--label_only_share`` of the windows. Both stages take the loss on
the assistant's tokens only (`EEGChatCollator`).

    e2llm train stage2 --config training/configs/stage2_tiny.yaml
    e2llm train stage3 --config training/configs/stage3_qwen2.5-0.5b.yaml --learning_rate 1e-4
    accelerate launch --config_file training/configs/accelerate/fsdp.yaml -m e2llm.training.train stage3 --config ...
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer
from trl import SFTTrainer

from e2llm.processing.instructions import build_instructions, evidence_reference
from e2llm.training.arguments import ALIGN_MODES
from e2llm.training.checkpoints import AtomicCheckpointMixin
from e2llm.training.data import IGNORE_INDEX, EEGChatCollator, collator_kwargs

logger = logging.getLogger(__name__)
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"


class E2LLMSFTTrainer(AtomicCheckpointMixin, SFTTrainer):
    """TRL's `SFTTrainer`, whose loss can also come from the model's own LM head (`lm_head_loss="model"`).

    TRL always computes the loss with its fused, chunked LM head, which never builds the `(batch, seq, vocab)`
    logits: the right choice for Qwen's 151,936-token vocabulary on a GPU. On a CPU the chunked kernel is several
    times slower than one matmul and a cross-entropy, so there the model's own forward (the Transformers
    `Trainer` loss, with `num_items_in_batch` for gradient accumulation) is used, logging token accuracy but not
    entropy.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choice = getattr(self.args, "lm_head_loss", "auto")
        self.use_fused_lm_head = self.args.device.type == "cuda" if choice == "auto" else choice == "fused"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.use_fused_lm_head:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        loss, outputs = Trainer.compute_loss(self, model, inputs, return_outputs=True,
                                             num_items_in_batch=num_items_in_batch)
        with torch.no_grad():
            next_labels = inputs["labels"][:, 1:]
            scored = next_labels != IGNORE_INDEX
            correct = (outputs.logits[:, :-1].argmax(-1) == next_labels) & scored
            n_scored = self.accelerator.gather_for_metrics(scored.sum()).sum()
            n_correct = self.accelerator.gather_for_metrics(correct.sum()).sum()
        self._metrics[mode]["mean_token_accuracy"].append((n_correct / n_scored).item() if n_scored > 0 else 0.0)
        if mode == "train":
            self._total_train_tokens += self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss

    def floating_point_ops(self, inputs) -> int:
        """The Trainer's 6 x tokens x parameters estimate, counting the parameters once instead of walking every
        module on every step (a tenth of a tiny model's step time on CPU)."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if getattr(self, "_non_embedding_parameters", None) is None:
            self._non_embedding_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._non_embedding_parameters


def _sft_trainer(model, processor, train_dataset, args, peft_config=None, eval_dataset=None):
    if args.dataset_kwargs is None or not args.dataset_kwargs.get("skip_prepare_dataset"):
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    args.remove_unused_columns = False  # the collator needs eeg/prompt/completion
    collator = EEGChatCollator(processor, max_length=args.max_length, **collator_kwargs(train_dataset))
    return E2LLMSFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        data_collator=collator,
        peft_config=peft_config,
    )


def set_label_names(model, processor, label_names) -> None:
    """Make the E2LLM's `id2label` the dataset's label set (answers, parsing and scoring read it from the config);
    an encoder with an emotion token gets a new head for these labels."""
    id2label = dict(enumerate(label_names))
    model.config.id2label = id2label
    model.config.label2id = {name: i for i, name in id2label.items()}
    model.config.eeg_config.id2label = id2label
    model.config.eeg_config.label2id = model.config.label2id
    encoder = model.model.eeg_encoder
    if encoder.emotion_token is not None:  # its head read the old labels: a new one, which stage 1 trains
        from e2llm.modeling_eeg_encoder import E2LLMEEGEmotionToken

        parameter = next(encoder.emotion_token.parameters())
        head = E2LLMEEGEmotionToken(model.config.eeg_config).to(parameter.device, parameter.dtype)
        head.apply(encoder._init_weights)
        encoder.emotion_token = head


def load_encoder_weights(model, encoder_path: str) -> None:
    """Copy the encoder of a stage-1 folder (`E2LLMEEGForEmotionClassification`) into the E2LLM."""
    from e2llm.modeling_eeg_encoder import E2LLMEEGForEmotionClassification

    classifier = E2LLMEEGForEmotionClassification.from_pretrained(encoder_path, dtype=torch.float32)
    hint = "was it trained from this model's eeg_config, on the same labels?"
    try:
        missing, unexpected = model.model.eeg_encoder.load_state_dict(classifier.encoder.state_dict(), strict=False)
    except RuntimeError as error:  # misshapen tensors
        raise ValueError(f"the stage-1 encoder at {encoder_path} does not fit this E2LLM's encoder ({hint}): "
                         f"{error}") from None
    if missing or unexpected:
        raise ValueError(f"the stage-1 encoder at {encoder_path} does not fit this E2LLM's encoder: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]} ({hint})")


def _frozen_except(model, prefixes: tuple[str, ...]) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(prefixes)


def alignment_lora_config(lora_r: int = 16):
    """PEFT `LoraConfig` of stage 2 for a language model that has never seen text (`align_language_model="lora"`):
    adapters on the attention and MLP projections, the projector and the final norm trained fully."""
    from peft import LoraConfig

    from e2llm.training.arguments import DEFAULT_LORA_TARGETS

    return LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, target_modules=DEFAULT_LORA_TARGETS,
                      modules_to_save=["projector", "language_model.norm"], task_type="CAUSAL_LM")


def train_stage2(model, processor, train_dataset, args, instruction_seed: int = 0, resume_from_checkpoint=None,
                 eval_dataset=None):
    """Align: train the projector on EEG -> description pairs of `train_dataset` (windows); save to `args.output_dir`.

    `args.align_language_model` picks what else learns. ``"frozen"`` (the paper's recipe, for pretrained Qwen
    checkpoints): only the projector. ``"lora"``: LoRA adapters on the language model and its final norm learn
    with the projector and are merged into the saved model. ``"full"``: the whole language model learns with the
    projector. The last two are for a language model that has never seen text (the randomly initialised tiny one),
    whose frozen weights cannot turn projected EEG into words, so a projector alone learns nothing (its loss with
    real and with shuffled EEG is the same). On the quickstart's validation trials "full" taught the tiny model the
    descriptions (0.32-0.43 nats per token; LoRA 5.15, near ln(vocab)); with the encoder's region tokens and a
    fully fine-tuned stage 3 it is the quickstart's choice (see `QuickstartRecipe`). `eval_dataset`: validation windows (training side, never the test split)
    for the Trainer's evaluation and for `alignment_gap`, written to ``OUTPUT/alignment.json``. Descriptions of both
    are relative to the training windows' `EvidenceReference`.
    """
    reference = evidence_reference(train_dataset)
    pairs = build_instructions(train_dataset, tasks=("describe",), seed=instruction_seed, reference=reference)
    eval_pairs = None
    if eval_dataset is not None:
        eval_pairs = build_instructions(eval_dataset, tasks=("describe",), seed=instruction_seed, reference=reference)
    mode = getattr(args, "align_language_model", "frozen")
    if mode not in ALIGN_MODES:
        raise ValueError(f"align_language_model must be one of {ALIGN_MODES}, got {mode!r}")
    _frozen_except(model, ("model.projector.", "model.language_model.", "lm_head.") if mode == "full"
                   else ("model.projector.",))
    peft_config = alignment_lora_config(getattr(args, "align_lora_r", 16)) if mode == "lora" else None
    if peft_config is not None:
        _frozen_except(model, ())  # PEFT re-enables the adapters and modules_to_save
    trainer = _sft_trainer(model, processor, pairs, args, peft_config=peft_config, eval_dataset=eval_pairs)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if peft_config is not None:
        trainer.model = merged_model(trainer.accelerator.unwrap_model(trainer.model))
        trainer.model_wrapped = trainer.model
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(args.output_dir)
        processor.save_pretrained(args.output_dir)
        if eval_pairs is not None:
            trainer.alignment_gap = alignment_gap(trainer.model, processor, eval_pairs, seed=instruction_seed)
            Path(args.output_dir, "alignment.json").write_text(json.dumps(trainer.alignment_gap, indent=2) + "\n")
    return trainer


def alignment_gap(model, processor, pairs, seed: int = 0, batch_size: int = 16, max_windows: int | None = 256) -> dict:
    """Mean description loss of `pairs` (``describe`` rows of `build_instructions`) with each window's own EEG, with
    the EEG shuffled across windows (a derangement) and with zero EEG: per answer token (``loss_*``) and per
    description (``description_nll_*``, the negative log-likelihood of a whole description, in nats).

    Alignment works when the real-EEG loss is clearly below the shuffled one: the descriptions are then read from
    the signal, not guessed from the text alone."""
    from e2llm.training.evaluation.rationales import derangement

    if max_windows is not None and len(pairs) > max_windows:
        pairs = pairs.select(np.linspace(0, len(pairs) - 1, max_windows).round().astype(int))
    n = len(pairs)
    if n < 2:
        raise ValueError("the alignment gap needs at least two description pairs")
    permutation = derangement(n, np.random.default_rng(seed))
    collator = EEGChatCollator(processor, **collator_kwargs(pairs))
    was_training = model.training
    model.eval()
    totals = {"real": [0.0, 0], "shuffled": [0.0, 0], "zeros": [0.0, 0]}
    with torch.no_grad():
        for start in range(0, n, batch_size):
            rows = list(range(start, min(start + batch_size, n)))
            batch = collator([pairs[i] for i in rows])
            shuffled = collator([{**pairs[i], "eeg": pairs[int(permutation[i])]["eeg"]} for i in rows])
            for name, eeg in (("real", batch["eeg_values"]), ("shuffled", shuffled["eeg_values"]),
                              ("zeros", torch.zeros_like(batch["eeg_values"]))):
                inputs = {**batch, "eeg_values": eeg}
                if name == "shuffled":
                    inputs.update(eeg_channel_ids=shuffled["eeg_channel_ids"], eeg_channel_mask=shuffled["eeg_channel_mask"])
                labels = inputs.pop("labels").to(model.device)
                logits = model(**{k: v.to(model.device) for k, v in inputs.items()}, use_cache=False).logits
                losses = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                                           ignore_index=IGNORE_INDEX, reduction="sum")
                totals[name][0] += float(losses)
                totals[name][1] += int((labels[:, 1:] != IGNORE_INDEX).sum())
    model.train(was_training)
    out = {f"loss_{name}_eeg": total / max(count, 1) for name, (total, count) in totals.items()}
    out.update({f"description_nll_{name}_eeg": total / n for name, (total, _) in totals.items()})
    out.update(gap_shuffled_minus_real=out["loss_shuffled_eeg"] - out["loss_real_eeg"],
               description_gap_shuffled_minus_real=(out["description_nll_shuffled_eeg"]
                                                    - out["description_nll_real_eeg"]),
               tokens_per_description=totals["real"][1] / n, n_windows=n)
    return out


def lora_config(lora_args):
    """PEFT `LoraConfig`: adapters on `lora_target_modules`, projector (and encoder) trained fully."""
    from peft import LoraConfig

    modules_to_save = ["projector"] + (["eeg_encoder"] if lora_args.train_encoder else [])
    modules_to_save += list(lora_args.extra_modules_to_save)
    return LoraConfig(
        r=lora_args.lora_r,
        lora_alpha=lora_args.lora_alpha,
        lora_dropout=lora_args.lora_dropout,
        target_modules=lora_args.lora_target_modules,
        modules_to_save=modules_to_save,
        task_type="CAUSAL_LM",
    )


def train_stage3(model, processor, train_dataset, args, lora_args, tasks=("emotion",), instruction_seed: int = 0,
                 resume_from_checkpoint=None, eval_dataset=None, label_only_share: float = 0.0):
    """Instruction tuning on conversations built from `train_dataset` (training templates only): LoRA, or the whole
    language model with `lora_args.use_peft=False`.

    `label_only_share` of the windows also get a ``label`` conversation (the emotion prompt answered with
    ``Emotion: <label>`` alone), so label scoring without a rationale continues a context seen in training.
    Saves the adapter (and the processor) to ``OUTPUT/adapter`` and, with `lora_args.merge`, the merged,
    self-contained model with its processor to ``OUTPUT/merged``; without PEFT only the latter. Returns the trainer.
    """
    use_peft = getattr(lora_args, "use_peft", True)
    if not use_peft and not lora_args.merge:
        raise ValueError("use_peft=False writes the fine-tuned model to OUTPUT/merged only: merge=False would save "
                         "nothing; leave merge on")
    evidence = {"evidence_in_prompt": bool(getattr(args, "evidence_in_prompt", False)),
                "evidence_strongest": getattr(args, "evidence_strongest", None)}
    rereference = getattr(processor.feature_extractor, "reference", None)
    if evidence["evidence_in_prompt"] and rereference is not None:
        raise ValueError(f"evidence_in_prompt states band power as the prepared windows have it, but this encoder's "
                         f"feature extractor re-references them ({rereference!r}), so the stated evidence would not "
                         f"be that of the signal the model reads: train without --evidence_in_prompt")
    reference = evidence_reference(train_dataset)
    # the saved processor writes the same evidence line at inference (or none)
    processor.set_evidence_prompt(reference.spread.tolist() if evidence["evidence_in_prompt"] else None,
                                  evidence["evidence_strongest"])
    conversations = instruction_mix(train_dataset, tasks, reference, instruction_seed, label_only_share, **evidence)
    if eval_dataset is not None:  # validation windows (training side) -> the same kind of conversations
        eval_dataset = instruction_mix(eval_dataset, tasks, reference, instruction_seed, label_only_share, **evidence)
    # PEFT re-enables LoRA weights and modules_to_save; full fine-tuning trains the language model and projector
    _frozen_except(model, () if use_peft else ("model.projector.", "model.language_model.", "lm_head.")
                   + (("model.eeg_encoder.",) if lora_args.train_encoder else ()))
    trainer = _sft_trainer(model, processor, conversations, args,
                           peft_config=lora_config(lora_args) if use_peft else None, eval_dataset=eval_dataset)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    save_stage3(trainer, processor, args.output_dir, merge=lora_args.merge)
    return trainer


def instruction_mix(windows, tasks, reference, seed: int = 0, label_only_share: float = 0.0, **evidence):
    """Stage-3 conversations: one per window of `windows` (tasks drawn from `tasks`), plus a ``label`` conversation
    for a seeded `label_only_share` of the windows; rationales relative to `reference`; `evidence`:
    `evidence_in_prompt` and `evidence_strongest` of `build_instructions`."""
    from datasets import concatenate_datasets

    if not 0.0 <= label_only_share <= 1.0:
        raise ValueError(f"label_only_share must be in [0, 1], got {label_only_share}")
    conversations = build_instructions(windows, tasks=tuple(tasks), template_split="train", seed=seed,
                                       reference=reference, **evidence)
    n_label = int(round(label_only_share * len(windows)))
    if n_label == 0:
        return conversations
    rows = np.sort(np.random.default_rng(seed + 1).choice(len(windows), size=n_label, replace=False))
    label_only = build_instructions(windows.select(rows), tasks=("label",), template_split="train", seed=seed + 1,
                                    reference=reference, **evidence)
    return concatenate_datasets([conversations, label_only])


def merged_model(peft_model):
    """A plain `E2LLMForConditionalGeneration` with the adapters folded in, in place (no second copy in memory):
    the PEFT model must not be trained further afterwards."""
    return peft_model.merge_and_unload()


def save_stage3(trainer, processor, output_dir, merge: bool = True, card_kwargs: dict | None = None) -> dict:
    """Write ``adapter/`` (PEFT adapter + processor) and ``merged/`` (model + processor + card) under `output_dir`.

    A model trained without PEFT (full fine-tuning) is written to ``merged/`` alone. Returns the paths, and under
    ``"model"`` the merged model (merging happens in place on the main process).
    """
    from peft import PeftModel

    output_dir = Path(output_dir)
    adapter_dir, merged_dir = output_dir / ADAPTER_DIR, output_dir / MERGED_DIR
    if not isinstance(trainer.accelerator.unwrap_model(trainer.model), PeftModel):
        trainer.save_model(str(merged_dir))  # gathers sharded weights; the processor is saved with them
        if trainer.is_world_process_zero():
            processor.save_pretrained(merged_dir)
            write_card(merged_dir, **(card_kwargs or {}))
        trainer.accelerator.wait_for_everyone()
        return {"merged": merged_dir, "model": trainer.accelerator.unwrap_model(trainer.model)}
    trainer.save_model(str(adapter_dir))
    paths = {"adapter": adapter_dir}
    if merge:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
            logger.warning("sharded training: the merged model is built from the saved adapter, not in memory")
            model = _reload_adapter(adapter_dir)
        if trainer.is_world_process_zero():
            merged = merged_model(model)
            paths["model"] = merged
            merged.save_pretrained(merged_dir)
            processor.save_pretrained(merged_dir)
            write_card(merged_dir, **(card_kwargs or {}))
        trainer.accelerator.wait_for_everyone()
        paths["merged"] = merged_dir
    return paths


def _reload_adapter(adapter_dir: Path):
    import json

    from peft import PeftModel

    from e2llm import E2LLMForConditionalGeneration

    base = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(E2LLMForConditionalGeneration.from_pretrained(base), str(adapter_dir))


def write_card(model_dir, **kwargs) -> Path | None:
    """The model card of a saved E2LLM folder, rendered by `e2llm.hub_cards` (None if that package is absent)."""
    try:
        from e2llm.hub_cards import write_model_card
    except ImportError:  # hub_cards is optional at training time
        return None
    return write_model_card(model_dir, **kwargs)


__all__ = [
    "ADAPTER_DIR",
    "ALIGN_MODES",
    "alignment_gap",
    "alignment_lora_config",
    "instruction_mix",
    "MERGED_DIR",
    "load_encoder_weights",
    "lora_config",
    "merged_model",
    "save_stage3",
    "set_label_names",
    "train_stage2",
    "train_stage3",
    "write_card",
]
