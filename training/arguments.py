"""Argument dataclasses of the training stages, parsed from YAML + command line with `trl.TrlParser`.

Each stage script (`stage1.py`, `stage2.py`, `stage3.py`) takes three, as TRL's `trl/scripts/sft.py` does:

* script arguments: the prepared dataset, its split and what e2llm builds from it (`Stage1ScriptArguments`,
  `AlignmentScriptArguments`, `InstructionScriptArguments`);
* trainer arguments: `Stage1Config` (a `transformers.TrainingArguments`) or `InstructConfig` (a `trl.SFTConfig`);
* model arguments: `E2LLMModelConfig`, TRL's `ModelConfig` (checkpoint, dtype, attention, LoRA through
  `trl.get_peft_config`) with e2llm's defaults and the tiny-model switch.

Any field can be set in the YAML file given with ``--config`` and overridden on the command line
(``--learning_rate 1e-4``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments
from trl import ModelConfig, SFTConfig

STAGES: tuple[str, ...] = ("stage1", "stage2", "stage3")
LM_HEAD_LOSSES: tuple[str, ...] = ("auto", "fused", "model")
# LoRA targets: the attention and MLP projections of the language model's decoder layers (Qwen2 / Qwen3 names).
DEFAULT_LORA_TARGETS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass
class E2LLMModelConfig(ModelConfig):
    """TRL's `ModelConfig` with e2llm's defaults (LoRA on the language model's projections, the projector trained
    whole, sdpa) and where a stage's model comes from when it is not a folder."""

    attn_implementation: str | None = field(default="sdpa", metadata={"help": "sdpa | eager | flash_attention_2"})
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: [DEFAULT_LORA_TARGETS],
        metadata={"help": "regex over module names that get LoRA adapters (one item: a regex, as in TRL)."},
    )
    lora_modules_to_save: list[str] | None = field(
        default_factory=lambda: ["projector"],
        metadata={"help": "modules trained whole next to the adapters (the projector; language_model.norm for a "
                          "language model that never saw text)."},
    )
    encoder_name_or_path: str | None = field(
        default=None, metadata={"help": "stage 2: the stage-1 output; its encoder weights replace the E2LLM's."}
    )
    tiny: bool = field(
        default=False,
        metadata={"help": "without model_name_or_path: build the tiny Qwen-architecture E2LLM with the offline "
                          "tokenizer (tests, CPU demos)."},
    )
    tiny_model_type: str = field(default="qwen3", metadata={"help": "architecture of the tiny model: qwen2 | qwen3."})


@dataclass
class E2LLMScriptArguments:
    """Which windows a stage trains on: a prepared dataset and its split (by trial or subject, never by window)."""

    dataset_path: str | None = field(default=None, metadata={"help": "a folder written by `e2llm prepare`."})
    split: str = field(
        default="trial", metadata={"help": "trial (within-subject, whole trials) | subject (leave one out) | "
                                           "seed_vii (official 4 folds) | none (train on everything); the test "
                                           "side is only for `e2llm evaluate`"}
    )
    test_size: float = field(default=0.25, metadata={"help": "share of each subject's trials held out (split=trial)."})
    fold: int = field(default=0, metadata={"help": "fold (seed_vii) or index of the held-out subject (subject)."})
    split_seed: int = field(default=0)
    validation_size: float = field(
        default=0.0,
        metadata={"help": "share of each training subject's trials (split=subject: of the training subjects) held out "
                          "for validation: what eval_strategy, load_best_model_at_end and early stopping see. The "
                          "test split is never handed to a trainer."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "keep at most this many training windows."})


@dataclass
class Stage1ScriptArguments(E2LLMScriptArguments):
    """Stage 1 trains on the windows and their labels alone."""


@dataclass
class AlignmentScriptArguments(E2LLMScriptArguments):
    """Stage 2: EEG -> description pairs; what learns besides the projector."""

    instruction_seed: int | None = field(
        default=None, metadata={"help": "seed of the template draw per window (default: --seed)."}
    )
    train_language_model: bool = field(
        default=False,
        metadata={"help": "train the whole language model with the projector (for one that has never seen text, e.g. "
                          "the randomly initialised tiny one); false with --use_peft false: only the projector learns "
                          "(the paper's recipe); --use_peft true: LoRA adapters, merged into the saved model."},
    )


@dataclass
class InstructionScriptArguments(E2LLMScriptArguments):
    """Stage 3: the instruction conversations built from the windows, and what the saved model carries."""

    tasks: list[str] = field(
        default_factory=lambda: ["emotion"],
        metadata={"help": "instruction tasks: emotion multitask scenario (training templates only)."},
    )
    instruction_seed: int | None = field(
        default=None, metadata={"help": "seed of the task/template draw per window (default: --seed)."}
    )
    label_only_share: float = field(
        default=0.0,
        metadata={"help": "share of windows that also get an answer with the label alone (no rationale), which label "
                          "scoring without a rationale (--no-rationale) needs."},
    )
    evidence_in_prompt: bool = field(
        default=False,
        metadata={"help": "end each prompt with the window's measured evidence (regional band power, DE and frontal "
                          "asymmetry relative to the subject's baseline); the saved processor keeps the training "
                          "spreads, so the eeg-emotion pipeline writes the same line at inference."},
    )
    evidence_strongest: int | None = field(
        default=None,
        metadata={"help": "with evidence_in_prompt: list only this many regional band-power deviations, largest "
                          "first (default: every feature in a fixed order)."},
    )
    train_encoder: bool = field(
        default=False, metadata={"help": "also train the EEG encoder (whole); otherwise it stays frozen, in eval mode."}
    )
    merge: bool = field(default=True, metadata={"help": "with LoRA: also save a merged model in OUTPUT/merged."})
    emotion_token_dropout: float = field(
        default=0.0,
        metadata={"help": "share of training rows whose emotion token (the stage-1 head's reading, the last EEG token) "
                          "is replaced by the token of no class, so the language model learns to read the other EEG "
                          "tokens (frozen encoder with an emotion token only)."},
    )
    calibrate_labels: bool = field(
        default=True,
        metadata={"help": "with validation windows (--validation_size > 0): fit the temperatures of the language "
                          "model's label scores and of the emotion head on them; the head gives the saved model's label "
                          "probabilities unless the language model's are better on them beyond noise "
                          "(config.label_probabilities, label_calibration)."},
    )
    label_guidance_weights: list[float] = field(
        default_factory=list,
        metadata={"help": "with --calibrate_labels and an encoder with an emotion token: weights of the emotion "
                          "head's log-probabilities added to the language model's where it writes a label, each tried "
                          "on the validation windows; the one whose answers have the highest balanced accuracy is "
                          "saved (config.label_guidance_weight; 0, the language model alone, always competes). "
                          "Empty: no guidance."},
    )
    label_head_may_decide: bool = field(
        default=True,
        metadata={"help": "with --label_guidance_weights: the emotion head decides the written label (the language "
                          "model writes the rest; config.label_decision) unless the answers at the best weight have a "
                          "higher balanced accuracy on the validation windows, its interval over validation "
                          "trials (paired bootstrap, 95% corrected for the weights tried) above 0. false: the "
                          "language model always writes it."},
    )

    def __post_init__(self):
        if not 0.0 <= self.label_only_share <= 1.0:
            raise ValueError(f"label_only_share must be in [0, 1], got {self.label_only_share}")
        if not 0.0 <= self.emotion_token_dropout < 1.0:
            raise ValueError(f"emotion_token_dropout must be in [0, 1), got {self.emotion_token_dropout}")
        if any(not (w >= 0 and w < float("inf")) for w in self.label_guidance_weights):
            raise ValueError(f"label_guidance_weights must be finite numbers >= 0, got {self.label_guidance_weights}")
        if self.evidence_strongest is not None and self.evidence_strongest < 1:
            raise ValueError(f"evidence_strongest must be at least 1, got {self.evidence_strongest}")
        if self.evidence_strongest is not None and not self.evidence_in_prompt:
            raise ValueError("evidence_strongest shapes the evidence line of --evidence_in_prompt true; it is set "
                             "without it")


@dataclass
class Stage1Config(TrainingArguments):
    """Stage-1 trainer arguments: cross-entropy + supervised contrastive loss, optional subject adversary."""

    supcon_weight: float = field(default=0.5, metadata={"help": "weight of the supervised contrastive loss."})
    supcon_temperature: float = field(default=0.1)
    adversarial_weight: float = field(
        default=0.0, metadata={"help": "weight of the subject-adversarial loss (gradient reversal); 0 disables it."}
    )
    evidence_weight: float = field(
        default=0.0,
        metadata={"help": "weight of an auxiliary loss that reads each window's rationale evidence (regional band-power, "
                          "DE and asymmetry deviations from the training reference, in spread units) linearly from the "
                          "pooled tokens the projector receives; 0 disables it."},
    )
    freeze_backbone: bool = field(
        default=False,
        metadata={"help": "keep the encoder's pretrained backbone (EEGPT / CBraMod / LaBraM; all of the patch encoder but "
                          "its pooler) frozen: only the pooler and the emotion head train."},
    )
    linear_probe_epochs: float = field(
        default=0.0,
        metadata={"help": "epochs of a linear-probe phase before the main one (LP-FT, Kumar et al., 2022): only the "
                          "encoder's band-power readout, its region tokens and the emotion head train, the rest of the "
                          "encoder frozen; 0 skips it. Needs `band_power_readout` in the encoder config."},
    )
    linear_probe_learning_rate: float | None = field(
        default=None, metadata={"help": "learning rate of the linear-probe phase (default: --learning_rate)."}
    )
    remove_unused_columns: bool = field(default=False)

    def __post_init__(self):
        super().__post_init__()
        if self.linear_probe_epochs < 0:
            raise ValueError(f"linear_probe_epochs must be >= 0, got {self.linear_probe_epochs}")
        if self.linear_probe_learning_rate is not None and self.linear_probe_learning_rate <= 0:
            raise ValueError(f"linear_probe_learning_rate must be > 0, got {self.linear_probe_learning_rate}")


@dataclass
class InstructConfig(SFTConfig):
    """Stage-2/3 trainer arguments: TRL's `SFTConfig` with e2llm's data path (rows tokenised once by the stage, EEG
    collated by e2llm's collator) and where the language-model loss is computed."""

    remove_unused_columns: bool = field(default=False, metadata={"help": "the collator reads every column."})
    dataset_kwargs: dict | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={"help": "the stage tokenises its rows itself (TRL's preparation knows no EEG)."},
    )
    lm_head_loss: str = field(
        default="auto",
        metadata={
            "help": "'fused': TRL's chunked LM head (never builds the (batch, seq, vocab) logits: least memory, logs "
                    "entropy); 'model': the model's own LM head and cross-entropy (faster on CPU and for small "
                    "vocabularies); 'auto': fused on CUDA, model elsewhere.",
            "choices": list(LM_HEAD_LOSSES),
        },
    )
    pack_rows: bool = field(
        default=False,
        metadata={"help": "padding-free batches: the batch's rows in one sequence, position ids restarting per row "
                          "(attention stays within each row: flash-attention's varlen kernel on CUDA, a block-diagonal "
                          "mask with sdpa), each row's EEG tokens inside it. No padding is computed."},
    )

    def __post_init__(self):
        if self.lm_head_loss not in LM_HEAD_LOSSES:
            raise ValueError(f"lm_head_loss must be one of {LM_HEAD_LOSSES}, got {self.lm_head_loss!r}")
        super().__post_init__()


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "LM_HEAD_LOSSES",
    "STAGES",
    "AlignmentScriptArguments",
    "E2LLMModelConfig",
    "E2LLMScriptArguments",
    "InstructConfig",
    "InstructionScriptArguments",
    "Stage1Config",
    "Stage1ScriptArguments",
]
