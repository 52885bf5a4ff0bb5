"""Stage 1's training objective: emotion-discriminative pretraining of the EEG encoder.

`E2LLMEEGForEmotionClassification` is trained through the Transformers `Trainer` (`EncoderPretrainingTrainer`)
with cross-entropy plus a supervised contrastive loss (Khosla et al., 2020) on the pooled window embeddings;
optionally a subject classifier behind a gradient-reversal layer (Ganin & Lempitsky, 2015) pushes the embeddings
to forget who the subject is, for cross-subject training, and an evidence readout keeps in the pooled tokens what
rationales are written from. `linear_probe` is the first phase of LP-FT (Kumar et al., 2022).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from e2llm.processing.instructions import EvidenceReference, read_evidence_columns
from e2llm.training.checkpoints import AtomicCheckpointMixin

# What the linear-probe phase trains: the encoder's linear band-power paths, the emotion head and the training-only
# devices (subject adversary, evidence readout); everything else in the encoder stays as it is.
LINEAR_PROBE_MODULES = ("encoder.readout.", "encoder.region_tokens.", "encoder.emotion_token.", "classifier.",
                        "subject_adversary.", "evidence_readout.")
TRAINING_DEVICES = ("subject_adversary", "evidence_readout")  # trained with the encoder, never saved with it


def supervised_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1):
    """SupCon loss of `(batch, dim)` embeddings with `(batch,)` labels (anchors without a positive are skipped).

    Returns a scalar; zero (with a gradient path) when no anchor has a positive in the batch.
    """
    z = F.normalize(embeddings.float(), dim=-1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    n_positives = positives.sum(1)
    anchors = n_positives > 0
    # no anchor with a positive: zero, computed without a host round trip
    mean_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1) / n_positives.clamp_min(1)
    return -(mean_log_prob * anchors).sum() / anchors.sum().clamp_min(1)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


class SubjectAdversary(nn.Module):
    """Subject classifier on gradient-reversed embeddings `(batch, hidden)` -> `(batch, n_subjects)` logits."""

    def __init__(self, hidden_size: int, n_subjects: int, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)
        self.classifier = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, n_subjects))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.classifier(_GradientReversal.apply(embeddings, self.weight))


class EvidenceReadout(nn.Module):
    """Training-only linear readout `(batch, num_tokens * hidden) -> (batch, n_features)` of each window's evidence
    features in spread units (`e2llm.processing.instructions.EvidenceReference`), from the pooled tokens the
    projector receives. Its masked mean-squared error keeps in those tokens what rationales are written from, which
    a classification loss alone discards."""

    def __init__(self, n_inputs: int, n_features: int, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)
        self.linear = nn.Linear(n_inputs, n_features)

    def loss(self, pooled: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        present = torch.isfinite(targets)  # NaN: a feature the montage cannot give (a region without channels)
        error = (self.linear(pooled.flatten(1).float()) - torch.nan_to_num(targets)).square()
        return self.weight * (error * present).sum() / present.sum().clamp_min(1)


def evidence_targets(train_windows, *others) -> list[np.ndarray | None]:
    """Each window's evidence features `(n_windows, n_features)` float32 relative to the training windows'
    reference (their subjects' mean band power, each feature's spread), NaN where absent; for `train_windows` and
    each of `others` (None stays None)."""
    columns = read_evidence_columns(train_windows)
    reference = EvidenceReference.from_training_windows(columns["power_db"], columns["subjects"], columns["labels"],
                                                        columns["channel_names"], columns["label_names"])
    out = []
    for windows in (train_windows, *others):
        if windows is None:
            out.append(None)
            continue
        found = columns if windows is train_windows else read_evidence_columns(windows)
        out.append((reference.features(found["power_db"], found["subjects"]).flat() / reference.spread).astype(np.float32))
    return out


class EncoderPretrainingTrainer(AtomicCheckpointMixin, Trainer):
    """`Trainer` whose loss is cross-entropy + `supcon_weight` x SupCon (+ `adversarial_weight` x subject CE)
    (+ `evidence_weight` x the evidence readout's error)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        subject_labels = inputs.pop("subject_labels", None)
        targets = inputs.pop("evidence_targets", None)
        outputs = model(**inputs)
        loss = F.cross_entropy(outputs.logits.float(), labels)
        args = self.args
        if getattr(args, "supcon_weight", 0.0) > 0:
            loss = loss + args.supcon_weight * supervised_contrastive_loss(outputs.embeddings, labels,
                                                                           args.supcon_temperature)
        unwrapped = self.accelerator.unwrap_model(model)
        adversary = getattr(unwrapped, "subject_adversary", None)
        if adversary is not None and subject_labels is not None and model.training:
            loss = loss + args.adversarial_weight * F.cross_entropy(adversary(outputs.embeddings).float(), subject_labels)
        readout = getattr(unwrapped, "evidence_readout", None)
        if readout is not None and targets is not None:
            loss = loss + readout.loss(outputs.pooler_output, targets)
        outputs["loss"] = loss
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        labels = inputs["labels"]
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, dict(inputs), return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        return loss.detach(), outputs.logits.detach(), labels


def accuracy(eval_prediction) -> dict:
    """`compute_metrics` of stage 1: the head's accuracy."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def linear_probe(model, train_rows, args, collator) -> EncoderPretrainingTrainer:
    """The linear-probe phase of LP-FT: `args.linear_probe_epochs` epochs at `args.linear_probe_learning_rate` in
    which only `LINEAR_PROBE_MODULES` train; the rest of the encoder is frozen meanwhile, then trainable again. No
    evaluation or checkpoint (the main phase has them). Returns its trainer.

    With the quickstart's training windows, the whole encoder trained at once fits the training trials through its
    transformer before its linear band-power paths have learnt much; with this phase first it does not (validation
    figures in the quickstart's notes)."""
    if model.encoder.readout is None:
        raise ValueError("linear_probe_epochs needs the encoder's band-power readout (patch backbone with "
                         "band_power_readout=True); set linear_probe_epochs to 0 for this encoder")
    frozen = [parameter for name, parameter in model.named_parameters()
              if parameter.requires_grad and not name.startswith(LINEAR_PROBE_MODULES)]
    for parameter in frozen:
        parameter.requires_grad_(False)
    probe_args = replace(args, num_train_epochs=args.linear_probe_epochs, max_steps=-1, eval_strategy="no",
                         save_strategy="no", load_best_model_at_end=False, linear_probe_epochs=0.0,
                         learning_rate=args.linear_probe_learning_rate or args.learning_rate)
    trainer = EncoderPretrainingTrainer(model=model, args=probe_args, train_dataset=train_rows, data_collator=collator)
    try:
        trainer.train()
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    return trainer


__all__ = ["LINEAR_PROBE_MODULES", "TRAINING_DEVICES", "EncoderPretrainingTrainer", "EvidenceReadout",
           "SubjectAdversary", "accuracy", "evidence_targets", "linear_probe", "supervised_contrastive_loss"]
