"""Argument dataclasses of the training stages, parsed from YAML + command line with `trl.TrlParser`.

Each stage takes `ModelArguments`, `DataArguments` and its trainer's arguments: `Stage1Config` (a
`transformers.TrainingArguments`) for stage 1, `InstructConfig` (a `trl.SFTConfig`) for stage 2, `InstructConfig` +
`LoraArguments` for stage 3. Any field can be set in the YAML file given with ``--config`` and overridden on
the command line (``--learning_rate 1e-4``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments
from trl import SFTConfig

STAGES: tuple[str, ...] = ("stage1", "stage2", "stage3")
LM_HEAD_LOSSES: tuple[str, ...] = ("auto", "fused", "model")
ALIGN_MODES: tuple[str, ...] = ("frozen", "lora", "full")  # what learns in stage 2 besides the projector
# LoRA targets: the attention and MLP projections of the language model's decoder layers (Qwen2 / Qwen3 names).
DEFAULT_LORA_TARGETS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass
class ModelArguments:
    """Which model a stage starts from."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "stage 1: an E2LLM or e2llm_eeg folder/repo whose encoder is trained (None with --tiny); "
                          "stage 2: an E2LLM folder/repo (e.g. from `e2llm init`); stage 3: the stage-2 output."},
    )
    encoder_name_or_path: str | None = field(
        default=None, metadata={"help": "stage 2: the stage-1 output; its encoder weights replace the E2LLM's."}
    )
    tiny: bool = field(
        default=False,
        metadata={"help": "build the tiny Qwen-architecture E2LLM with the offline tokenizer (tests, CPU demos)."},
    )
    tiny_model_type: str = field(default="qwen3", metadata={"help": "architecture of the tiny model: qwen2 | qwen3."})
    attn_implementation: str | None = field(default="sdpa", metadata={"help": "sdpa | eager | flash_attention_2"})
    dtype: str | None = field(default="auto", metadata={"help": "weights dtype when loading: auto | float32 | bfloat16"})


@dataclass
class DataArguments:
    """Which windows a stage trains on, and the split (by trial or subject: never by window)."""

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
    tasks: list[str] = field(
        default_factory=lambda: ["emotion"],
        metadata={"help": "instruction tasks (stage 3): emotion multitask scenario; stage 2 always uses describe."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "keep at most this many training windows."})
    instruction_seed: int = field(default=0, metadata={"help": "seed of the task/template draw per window."})
    label_only_share: float = field(
        default=0.0,
        metadata={"help": "stage 3: share of windows that also get an answer with the label alone (no rationale), "
                          "which label scoring without a rationale (--no-rationale) needs."},
    )


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
        metadata={"help": "keep the encoder's pretrained backbone (EEGPT / CBraMod / LaBraM; all of the patch encoder but its "
                          "pooler) frozen: only the pooler and the emotion head train."},
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
    """Stage-2/3 trainer arguments: TRL's `SFTConfig` plus where the language-model loss is computed."""

    lm_head_loss: str = field(
        default="auto",
        metadata={
            "help": "'fused': TRL's chunked LM head (never builds the (batch, seq, vocab) logits: least memory, logs "
                    "entropy); 'model': the model's own LM head and cross-entropy (faster on CPU and for small "
                    "vocabularies); 'auto': fused on CUDA, model elsewhere.",
            "choices": list(LM_HEAD_LOSSES),
        },
    )
    align_language_model: str = field(
        default="frozen",
        metadata={"help": "stage 2: 'frozen' trains only the projector (pretrained Qwen); 'lora' also trains LoRA "
                          "adapters and the final norm of the language model, merged after the stage; 'full' trains "
                          "the whole language model with the projector (for a language model that has never seen "
                          "text, e.g. the randomly initialised tiny one).",
                  "choices": list(ALIGN_MODES)},
    )
    align_lora_r: int = field(default=16, metadata={"help": "stage 2 with align_language_model=lora: LoRA rank."})
    evidence_in_prompt: bool = field(
        default=False,
        metadata={"help": "stage 3: end each prompt with the window's measured evidence (regional band power, DE and "
                          "frontal asymmetry relative to the subject's baseline); the saved processor keeps the "
                          "training spreads, so the eeg-emotion pipeline writes the same line at inference."},
    )
    evidence_strongest: int | None = field(
        default=None,
        metadata={"help": "with evidence_in_prompt: list only this many regional band-power deviations, largest "
                          "first (default: every feature in a fixed order)."},
    )

    def __post_init__(self):
        if self.align_language_model not in ALIGN_MODES:
            raise ValueError(f"align_language_model must be one of {ALIGN_MODES}, got {self.align_language_model!r}")
        if self.evidence_strongest is not None and self.evidence_strongest < 1:
            raise ValueError(f"evidence_strongest must be at least 1, got {self.evidence_strongest}")
        if self.evidence_strongest is not None and not self.evidence_in_prompt:
            raise ValueError("evidence_strongest shapes the evidence line of --evidence_in_prompt true; it is set "
                             "without it")
        if self.lm_head_loss not in LM_HEAD_LOSSES:
            raise ValueError(f"lm_head_loss must be one of {LM_HEAD_LOSSES}, got {self.lm_head_loss!r}")
        super().__post_init__()


@dataclass
class LoraArguments:
    """Stage-3 adapters: LoRA on the language model, full training of the projector (and optionally the encoder);
    or, with `use_peft=False`, full fine-tuning of the language model and the projector."""

    use_peft: bool = field(
        default=True,
        metadata={"help": "False: train the whole language model with the projector instead of LoRA adapters (for "
                          "a small language model, e.g. the randomly initialised tiny one, which LoRA adapts too "
                          "little); the stage then writes the model to OUTPUT/merged only (no adapter/)."},
    )
    lora_r: int = field(default=16)
    lora_alpha: int = field(default=32)
    lora_dropout: float = field(default=0.05)
    lora_target_modules: str = field(
        default=DEFAULT_LORA_TARGETS, metadata={"help": "regex over module names that get LoRA adapters."}
    )
    train_encoder: bool = field(default=False, metadata={"help": "also train the EEG encoder fully."})
    extra_modules_to_save: list[str] = field(
        default_factory=list,
        metadata={"help": "more modules trained fully, e.g. language_model.norm for a randomly initialised LM."},
    )
    merge: bool = field(default=True, metadata={"help": "also save a merged, self-contained model in OUTPUT/merged."})


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "LM_HEAD_LOSSES",
    "STAGES",
    "DataArguments",
    "InstructConfig",
    "LoraArguments",
    "ModelArguments",
    "Stage1Config",
]
