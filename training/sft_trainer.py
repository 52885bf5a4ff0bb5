"""`E2LLMSFTTrainer`: TRL's `SFTTrainer` for stages 2 and 3, with the loss where it runs fastest and no host round
trip per step.

TRL computes the loss with its fused, chunked LM head, which never builds the `(batch, seq, vocab)` logits: the
right choice for Qwen's 151,936-token vocabulary on a GPU. On a CPU the chunked kernel is several times slower than
one matmul and a cross-entropy, so there the model's own forward (the Transformers `Trainer` loss, with
`num_items_in_batch` for gradient accumulation) is used (`InstructConfig.lm_head_loss`).

Padded batches hold labels for their answers' positions only (`logits_to_keep`): the model's head computes logits
there alone (about a quarter of a stage-3 row); the fused head gets full-width labels.

TRL also turns its step metrics (token accuracy, entropy, token count) into Python numbers at every step, which
makes a GPU wait for the host at every step. Here they stay tensors on the device, summed over the logging
interval, and become numbers once per logged step.
"""

from __future__ import annotations

import torch
from transformers import Trainer
from trl import SFTTrainer

from e2llm.training.checkpoints import AtomicCheckpointMixin

IGNORE_INDEX = -100


def _full_width_labels(inputs: dict) -> dict:
    """`inputs` whose ``labels`` cover the last ``logits_to_keep`` positions only (`InstructionCollator`'s padded
    batches), with labels for every position instead (-100 before those) and no ``logits_to_keep``."""
    if "logits_to_keep" not in inputs:
        return inputs
    inputs = dict(inputs)
    inputs.pop("logits_to_keep")
    width = inputs["input_ids"].shape[-1]
    inputs["labels"] = torch.nn.functional.pad(inputs["labels"], (width - inputs["labels"].shape[-1], 0),
                                               value=IGNORE_INDEX)
    return inputs


class E2LLMSFTTrainer(AtomicCheckpointMixin, SFTTrainer):
    """TRL's `SFTTrainer` with e2llm's loss choice (`lm_head_loss`) and step metrics kept on the device.

    Logged: ``mean_token_accuracy`` (and, with the fused head, ``entropy``) over the answer tokens of the logging
    interval, ``num_tokens`` seen so far (padding excluded)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choice = getattr(self.args, "lm_head_loss", "auto")
        self.use_fused_lm_head = self.args.device.type == "cuda" if choice == "auto" else choice == "fused"
        self._sums = {"train": {}, "eval": {}}
        self._train_tokens = None

    def _special_loss(self) -> bool:
        """Loss settings only TRL's own `compute_loss` implements (label smoothing, a custom loss function, a MoE
        router loss, sequence parallelism)."""
        parallel = getattr(self.accelerator, "parallelism_config", None)
        return bool(self.compute_loss_func is not None or self.label_smoother is not None or self.aux_loss_enabled
                    or (parallel is not None and getattr(parallel, "sp_enabled", False)))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.use_fused_lm_head:  # TRL's head scores every labelled position itself, from full-width labels
            inputs = _full_width_labels(inputs)
        if self.use_fused_lm_head and self._special_loss():
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        if self.use_fused_lm_head:
            loss, outputs = self._fused_loss(model, inputs, num_items_in_batch, mode)
        else:
            loss, outputs = Trainer.compute_loss(self, model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
            with torch.no_grad():
                next_labels = inputs["labels"][..., 1:]
                scored = next_labels != IGNORE_INDEX
                correct = (outputs.logits[..., :-1, :].argmax(-1) == next_labels) & scored
                self._add(mode, valid=scored.sum(), correct=correct.sum())
        if mode == "train":
            self._count_tokens(inputs)
        return (loss, outputs) if return_outputs else loss

    def _fused_loss(self, model, inputs, num_items_in_batch, mode):
        """TRL's fused-head loss (`nll` or `dft`), its metrics kept as tensors."""
        outputs = model(**inputs, fused_lm_head=True)
        per_token_loss = -outputs.log_probs  # zero on ignored positions
        if self.args.loss_type == "dft":
            per_token_loss = per_token_loss * outputs.log_probs.exp().detach()
        num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        with torch.no_grad():
            self._add(mode, valid=outputs.label_mask.sum(), correct=outputs.is_top1.sum(),
                      entropy=outputs.entropy.detach().sum())
        return loss, outputs

    def _add(self, mode: str, **values: torch.Tensor) -> None:
        sums = self._sums[mode]
        for name, value in values.items():
            sums[name] = value.detach() if name not in sums else sums[name] + value.detach()

    def _count_tokens(self, inputs) -> None:
        if "attention_mask" in inputs:
            tokens = inputs["attention_mask"].sum()
        else:  # padding-free rows: every position is a token
            tokens = torch.tensor(inputs["position_ids"].shape[-1], device=inputs["position_ids"].device)
        self._train_tokens = tokens if self._train_tokens is None else self._train_tokens + tokens

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        sums = {name: self.accelerator.gather_for_metrics(value.reshape(1)).sum()
                for name, value in self._sums[mode].items()}
        self._sums[mode] = {}
        if sums:
            valid = max(float(sums["valid"]), 1.0)
            self._metrics[mode]["mean_token_accuracy"] = [float(sums["correct"]) / valid]
            if "entropy" in sums:
                self._metrics[mode]["entropy"] = [float(sums["entropy"]) / valid]
        if self._train_tokens is not None:
            self._total_train_tokens = int(self.accelerator.gather_for_metrics(self._train_tokens.reshape(1)).sum())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens // self._tp_size]
        super().log(logs, start_time)

    def floating_point_ops(self, inputs) -> int:
        """The Trainer's 6 x tokens x parameters estimate, counting the parameters once instead of walking every
        module on every step (a tenth of a tiny model's step time on CPU)."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if getattr(self, "_non_embedding_parameters", None) is None:
            self._non_embedding_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._non_embedding_parameters


__all__ = ["IGNORE_INDEX", "E2LLMSFTTrainer"]
