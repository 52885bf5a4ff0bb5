"""Stage 1: emotion-discriminative pretraining of the EEG encoder.

`E2LLMEEGForEmotionClassification` is trained through the Transformers `Trainer` with cross-entropy plus a
supervised contrastive loss (Khosla et al., 2020) on the pooled window embeddings; optionally a subject
classifier behind a gradient-reversal layer (Ganin & Lempitsky, 2015) pushes the embeddings to forget who the
subject is, for cross-subject training. The result is a `from_pretrained` folder (encoder + head + feature
extractor) whose encoder stage 2 loads into the E2LLM.

    e2llm train stage1 --config training/configs/stage1_tiny.yaml
    accelerate launch --config_file training/configs/accelerate/ddp.yaml -m e2llm.training.train stage1 --config ...
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from e2llm.modeling_eeg_backbones import backbone_parameters
from e2llm.modeling_eeg_encoder import E2LLMEEGForEmotionClassification
from e2llm.training.checkpoints import AtomicCheckpointMixin
from e2llm.training.data import EEGClassificationCollator, collator_kwargs


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
    if not anchors.any():
        return embeddings.sum() * 0.0
    mean_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1)[anchors] / n_positives[anchors]
    return -mean_log_prob.mean()


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


def with_evidence_targets(train_dataset, *others):
    """`train_dataset` and `others` with an ``evidence_targets`` column: each window's evidence features relative to
    the training windows' reference (their subjects' mean band power, each feature's spread), NaN where absent."""
    from e2llm.processing.instructions import EvidenceReference, read_evidence_columns

    columns = read_evidence_columns(train_dataset)
    reference = EvidenceReference.from_training_windows(columns["power_db"], columns["subjects"], columns["labels"],
                                                        columns["channel_names"], columns["label_names"])
    out = []
    for dataset in (train_dataset, *others):
        if dataset is None:
            out.append(None)
            continue
        found = columns if dataset is train_dataset else read_evidence_columns(dataset)
        z = reference.features(found["power_db"], found["subjects"]).flat() / reference.spread
        out.append(dataset.add_column("evidence_targets", z.astype(np.float32).tolist()))
    return out


class EncoderPretrainingTrainer(AtomicCheckpointMixin, Trainer):
    """`Trainer` whose loss is cross-entropy + `supcon_weight` x SupCon (+ `adversarial_weight` x subject CE)
    (+ `evidence_weight` x the evidence readout's error)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        subject_labels = inputs.pop("subject_labels", None)
        evidence_targets = inputs.pop("evidence_targets", None)
        outputs = model(**inputs)
        loss = F.cross_entropy(outputs.logits.float(), labels)
        args = self.args
        if getattr(args, "supcon_weight", 0.0) > 0:
            loss = loss + args.supcon_weight * supervised_contrastive_loss(
                outputs.embeddings, labels, args.supcon_temperature
            )
        adversary = getattr(self.accelerator.unwrap_model(model), "subject_adversary", None)
        if adversary is not None and subject_labels is not None and model.training:
            loss = loss + args.adversarial_weight * F.cross_entropy(adversary(outputs.embeddings).float(), subject_labels)
        readout = getattr(self.accelerator.unwrap_model(model), "evidence_readout", None)
        if readout is not None and evidence_targets is not None:
            loss = loss + readout.loss(outputs.pooler_output, evidence_targets)
        outputs["loss"] = loss
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        labels = inputs["labels"]
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, dict(inputs), return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        return loss.detach(), outputs.logits.detach(), labels


def _accuracy(eval_prediction) -> dict:
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def classifier_from_e2llm(e2llm, label_names, seed: int = 0) -> E2LLMEEGForEmotionClassification:
    """A stage-1 classifier with the E2LLM's encoder config and weights, and a new head for `label_names`."""
    from e2llm import E2LLMEEGConfig

    eeg_config = E2LLMEEGConfig(**{**e2llm.config.eeg_config.to_dict(), "id2label": dict(enumerate(label_names))})
    torch.manual_seed(seed)
    model = E2LLMEEGForEmotionClassification(eeg_config)
    state = e2llm.model.eeg_encoder.state_dict()
    if eeg_config.emotion_token and eeg_config.num_labels != e2llm.config.eeg_config.num_labels:
        # the encoder's emotion head is sized for the E2LLM's labels: a new one for these
        state = {name: value for name, value in state.items() if not name.startswith("emotion_token.")}
        state.update({name: value for name, value in model.encoder.state_dict().items()
                      if name.startswith("emotion_token.")})
    model.encoder.load_state_dict(state)
    return model


def build_stage1_model(model_args, label_names, seed: int = 0) -> E2LLMEEGForEmotionClassification:
    """The classifier stage 1 trains: from an E2LLM (its encoder and eeg config), an e2llm_eeg folder, or tiny."""
    from transformers import AutoConfig

    from e2llm import E2LLMEEGConfig
    from e2llm.assembly import TINY_EEG_CONFIG

    id2label = dict(enumerate(label_names))
    if model_args.model_name_or_path is None:
        if not model_args.tiny:
            raise ValueError("stage 1 needs --model_name_or_path (an E2LLM or e2llm_eeg folder) or --tiny")
        torch.manual_seed(seed)
        return E2LLMEEGForEmotionClassification(E2LLMEEGConfig(**TINY_EEG_CONFIG, id2label=id2label))
    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    if config.model_type == "e2llm":
        from e2llm import E2LLMForConditionalGeneration

        e2llm = E2LLMForConditionalGeneration.from_pretrained(model_args.model_name_or_path, dtype=torch.float32)
        return classifier_from_e2llm(e2llm, label_names, seed=seed)
    if config.model_type == "e2llm_eeg":
        return E2LLMEEGForEmotionClassification.from_pretrained(
            model_args.model_name_or_path, id2label=id2label, ignore_mismatched_sizes=True
        )
    raise ValueError(
        f"{model_args.model_name_or_path} is a {config.model_type!r} model; stage 1 needs an E2LLM (from `e2llm init`) "
        "or an e2llm_eeg encoder"
    )


# What the linear-probe phase trains: the encoder's linear band-power paths, the emotion head and the training-only
# devices (subject adversary, evidence readout); everything else in the encoder stays as it is.
LINEAR_PROBE_MODULES = ("encoder.readout.", "encoder.region_tokens.", "encoder.emotion_token.", "classifier.",
                        "subject_adversary.", "evidence_readout.")


def linear_probe(model: E2LLMEEGForEmotionClassification, train_dataset, args, collator) -> EncoderPretrainingTrainer:
    """The linear-probe phase of LP-FT (Kumar et al., 2022): `args.linear_probe_epochs` epochs at
    `args.linear_probe_learning_rate` in which only `LINEAR_PROBE_MODULES` train; the rest of the encoder is frozen
    meanwhile, then trainable again. No evaluation or checkpoint (the main phase has them). Returns its trainer.

    With the quickstart's 450 training windows, the whole encoder trained at once fits the training trials through
    its transformer before its linear band-power paths have learnt much (validation balanced accuracy 0.57-0.58,
    DE + LR 0.61); with this phase first, 0.70 (`e2llm.training.quickstart.QuickstartRecipe`)."""
    from dataclasses import replace

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
    trainer = EncoderPretrainingTrainer(model=model, args=probe_args, train_dataset=train_dataset,
                                        data_collator=collator)
    try:
        trainer.train()
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    return trainer


def train_stage1(
    model: E2LLMEEGForEmotionClassification,
    train_dataset,
    args,
    feature_extractor,
    eval_dataset=None,
    resume_from_checkpoint=None,
) -> EncoderPretrainingTrainer:
    """Train `model` on a prepared window dataset; save it (with `feature_extractor`) to `args.output_dir`."""
    meta = collator_kwargs(train_dataset)
    label_column = "emotion"
    if list(model.config.id2label.values()) != list(train_dataset.features[label_column].names):
        raise ValueError(
            f"the model's labels {list(model.config.id2label.values())} differ from the dataset's "
            f"{train_dataset.features[label_column].names}"
        )
    if feature_extractor.sampling_rate != model.config.sampling_rate:
        raise ValueError(f"feature extractor rate {feature_extractor.sampling_rate} Hz != encoder rate "
                         f"{model.config.sampling_rate} Hz")
    subjects = None
    if getattr(args, "adversarial_weight", 0.0) > 0:
        subjects = sorted(set(int(s) for s in train_dataset["subject"]))
        if len(subjects) < 2:
            raise ValueError("the subject-adversarial loss needs at least two subjects in the training data")
        model.subject_adversary = SubjectAdversary(model.config.hidden_size, len(subjects), args.adversarial_weight)
    if getattr(args, "evidence_weight", 0.0) > 0:
        train_dataset, eval_dataset = with_evidence_targets(train_dataset, eval_dataset)
        tokens = model.config.num_output_tokens * model.config.hidden_size
        n_features = len(train_dataset[0]["evidence_targets"])
        model.evidence_readout = EvidenceReadout(tokens, n_features, args.evidence_weight)
    if getattr(args, "freeze_backbone", False):  # a frozen pretrained backbone under a trainable pooler + head
        for parameter in backbone_parameters(model.encoder):
            parameter.requires_grad_(False)
    collator = EEGClassificationCollator(feature_extractor, subject_ids=subjects, **meta)
    if getattr(args, "linear_probe_epochs", 0.0) > 0 and resume_from_checkpoint is None:  # a checkpoint holds it
        linear_probe(model, train_dataset, args, collator)
    trainer = EncoderPretrainingTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        compute_metrics=_accuracy if eval_dataset is not None else None,
    )
    if args.num_train_epochs > 0 or args.max_steps > 0:  # 0: the linear probe alone
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    for device in ("subject_adversary", "evidence_readout"):  # training devices only: never saved with the encoder
        if hasattr(model, device):
            delattr(model, device)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        feature_extractor.save_pretrained(args.output_dir)
    return trainer


def predict_stage1(trainer: EncoderPretrainingTrainer, dataset) -> np.ndarray:
    """Predicted class ids `(n_windows,)` of the stage-1 head on `dataset`."""
    output = trainer.predict(dataset)
    return np.argmax(output.predictions, axis=-1)


__all__ = [
    "EncoderPretrainingTrainer",
    "LINEAR_PROBE_MODULES",
    "SubjectAdversary",
    "build_stage1_model",
    "classifier_from_e2llm",
    "linear_probe",
    "predict_stage1",
    "supervised_contrastive_loss",
    "train_stage1",
]
