"""`e2llm quickstart`: the whole method end to end on a laptop CPU, offline, in a few minutes.

Writes a synthetic dataset in SEED-VII's on-disk layout (or takes a folder from `e2llm prepare` with ``--data``),
prepares it, splits it by trial (whole trials on one side, never windows), runs the three stages with a tiny
Qwen3-architecture model and the offline tokenizer, evaluates on the held-out trials next to a DE + logistic
regression baseline trained on the same split, and writes

* ``OUTPUT/final``: the merged stage-3 model with its processor (`from_pretrained` folder, model card);
* ``OUTPUT/report.json``: the evaluation report (plus the stage-1 head's scores and timings);
* ``OUTPUT/stage1``, ``OUTPUT/stage2``, ``OUTPUT/stage3/adapter``: each stage's output.

    e2llm quickstart                      # synthetic SEED-VII, outputs/quickstart
    e2llm quickstart --data runs/my_prepared --output-dir runs/qs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class QuickstartRecipe:
    """Sizes and hyper-parameters of the quickstart (tuned for a 2-core CPU, about 3 minutes in all)."""

    n_subjects: int = 2
    trial_seconds: float = 20.0
    test_size: float = 0.25
    seed: int = 0
    stage1_epochs: float = 20.0
    stage1_lr: float = 3e-3
    stage1_batch_size: int = 32
    stage2_epochs: float = 3.0
    stage2_lr: float = 1e-3
    stage3_epochs: float = 14.0
    stage3_lr: float = 3e-3
    stage3_batch_size: int = 8
    lora_r: int = 32
    train_encoder: bool = False
    tasks: tuple[str, ...] = ("emotion", "multitask", "scenario")
    max_test_windows: int | None = None
    eval_batch_size: int = 32
    max_new_tokens: int = 160


# A smaller encoder than `e2llm.assembly.TINY_EEG_CONFIG`: 2-s patches halve the tokens per window (62 channels x 2),
# and with 600 training windows only the band-power views of a patch are embedded (raw samples and the full spectrum
# let a model this small memorise the training trials instead of learning their spectra).
QUICKSTART_EEG_CONFIG = {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 96,
                         "patch_size": 400, "use_sample_embedding": False, "use_spectral_embedding": False,
                         "hidden_dropout": 0.1, "attention_dropout": 0.1}


def build_quickstart_model(label_names, tokenizer_corpus, seed: int = 0):
    """`(model, processor)`: the tiny Qwen3-architecture LM, the quickstart encoder and the offline tokenizer."""
    import torch

    from e2llm import assemble_e2llm, build_offline_tokenizer
    from e2llm.assembly import TINY_TEXT_CONFIG

    torch.manual_seed(seed)
    return assemble_e2llm(build_offline_tokenizer(tokenizer_corpus), text_config=TINY_TEXT_CONFIG,
                          eeg_config=QUICKSTART_EEG_CONFIG, id2label=dict(enumerate(label_names)))


def _silence_libraries() -> None:
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def make_synthetic_data(output_dir: Path, recipe: QuickstartRecipe):
    """Write synthetic SEED-VII files under ``output_dir/raw`` and prepare them into ``output_dir/prepared``."""
    from e2llm.processing.prepare import prepare_dataset
    from e2llm.processing.synthetic import write_synthetic_seed_vii

    raw = write_synthetic_seed_vii(output_dir / "raw", n_subjects=recipe.n_subjects,
                                   trial_seconds=recipe.trial_seconds, seed=recipe.seed)
    return prepare_dataset("seed-vii", raw, output_dir=output_dir / "prepared", overwrite=True, progress=False)


def supported_tasks(tasks, label_names, column_names) -> tuple[str, ...]:
    """The tasks of `tasks` a dataset's labels allow: multitask needs known affect or valence/arousal ratings,
    scenario needs labels with a known scenario; the basic emotion task always works."""
    from e2llm.processing.instructions import AFFECT, SCENARIOS

    known = {name.lower() for name in label_names}
    allowed = {"emotion", "describe"}
    if known <= set(AFFECT) or {"valence", "arousal"} <= set(column_names):
        allowed.add("multitask")
    if known <= set(SCENARIOS):
        allowed.add("scenario")
    return tuple(task for task in tasks if task in allowed)


def _tokenizer_corpus(train, tasks) -> list[str]:
    """Texts the offline tokenizer learns its merges from: the templates and training answers (never test data)."""
    from e2llm.processing.instructions import TEMPLATES, build_instructions

    sample = train.select(range(0, len(train), max(1, len(train) // 64)))
    texts = build_instructions(sample, tasks=(*tasks, "describe"), template_split="all")
    return [t.text for t in TEMPLATES] + list(texts["completion"])


def _common_args(output_dir: Path, recipe: QuickstartRecipe) -> dict:
    return {"output_dir": str(output_dir), "seed": recipe.seed, "report_to": [], "save_strategy": "no",
            "logging_steps": 20, "disable_tqdm": False, "dataloader_num_workers": 0, "lr_scheduler_type": "cosine",
            "warmup_steps": 0.05, "dataloader_pin_memory": False}


def run_quickstart(output_dir: str | Path = "outputs/quickstart", data: str | Path | None = None,
                   recipe: QuickstartRecipe | None = None) -> dict:
    """Run the quickstart; returns the report (also written to ``output_dir/report.json``)."""
    from transformers import set_seed
    from e2llm.processing.dataset_io import dataset_metadata, load_prepared
    from e2llm.processing.splits import split_by_trial
    from e2llm.training.arguments import InstructConfig, LoraArguments, Stage1Config
    from e2llm.training.evaluate import evaluate_model
    from e2llm.training.instruct import load_encoder_weights, train_stage2, train_stage3
    from e2llm.training.metrics import classification_metrics
    from e2llm.training.stage1 import classifier_from_e2llm, predict_stage1, train_stage1

    recipe = recipe or QuickstartRecipe()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _silence_libraries()
    timings, started = {}, time.perf_counter()

    def lap(name):
        timings[name] = round(time.perf_counter() - started - sum(timings.values()), 1)

    dataset = load_prepared(data) if data is not None else make_synthetic_data(output_dir, recipe)
    metadata = dataset_metadata(dataset)
    label_names = list(dataset.features[metadata.get("label_column") or "emotion"].names)
    train_idx, test_idx = split_by_trial(dataset, test_size=recipe.test_size, seed=recipe.seed)
    train, test = dataset.select(train_idx), dataset.select(test_idx)
    tasks = supported_tasks(recipe.tasks, label_names, dataset.column_names)
    lap("data")

    set_seed(recipe.seed)
    model, processor = build_quickstart_model(label_names, _tokenizer_corpus(train, tasks), seed=recipe.seed)
    classifier = classifier_from_e2llm(model, label_names, seed=recipe.seed)
    stage1_args = Stage1Config(
        **_common_args(output_dir / "stage1", recipe), num_train_epochs=recipe.stage1_epochs,
        learning_rate=recipe.stage1_lr, per_device_train_batch_size=recipe.stage1_batch_size,
        per_device_eval_batch_size=64, weight_decay=0.05,
    )
    stage1 = train_stage1(classifier, train, stage1_args, processor.feature_extractor)
    head_pred = predict_stage1(stage1, test)
    head_metrics = classification_metrics(np.asarray(test["emotion"]).tolist(), head_pred.tolist(), label_names)
    lap("stage1")

    load_encoder_weights(model, str(output_dir / "stage1"))
    sft = {"bf16": False, "max_length": None, "per_device_train_batch_size": recipe.stage3_batch_size,
           "gradient_checkpointing": False}
    stage2_args = InstructConfig(**_common_args(output_dir / "stage2", recipe), **sft,
                            num_train_epochs=recipe.stage2_epochs, learning_rate=recipe.stage2_lr)
    train_stage2(model, processor, train, stage2_args, instruction_seed=recipe.seed)
    lap("stage2")

    stage3_args = InstructConfig(**_common_args(output_dir / "stage3", recipe), **sft,
                            num_train_epochs=recipe.stage3_epochs, learning_rate=recipe.stage3_lr)
    # the tiny LM is randomly initialised: its final norm trains too, so it can sharpen its near-uniform logits
    lora = LoraArguments(lora_r=recipe.lora_r, lora_alpha=2 * recipe.lora_r, lora_dropout=0.0,
                         train_encoder=recipe.train_encoder, extra_modules_to_save=["language_model.norm"])
    trainer = train_stage3(model, processor, train, stage3_args, lora, tasks=tasks,
                           instruction_seed=recipe.seed)
    lap("stage3")

    final = output_dir / "final"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(output_dir / "stage3" / "merged", final)
    from e2llm import E2LLMForConditionalGeneration

    final_model = E2LLMForConditionalGeneration.from_pretrained(final)
    del trainer
    report = evaluate_model(
        final_model, processor, dataset, train_idx=train_idx, test_idx=test_idx, tasks=("emotion",),
        baselines=("de_logreg",), seeds=(recipe.seed,), batch_size=recipe.eval_batch_size,
        max_new_tokens=recipe.max_new_tokens, max_test_windows=recipe.max_test_windows, model_name="e2llm",
    )
    lap("evaluation")
    report["stage1_head"] = head_metrics
    report["quickstart"] = {"recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(recipe).items()},
                            "data": str(data) if data is not None else "synthetic SEED-VII layout",
                            "split": {"kind": "trial", "function": "e2llm.processing.splits.split_by_trial",
                                      "test_size": recipe.test_size, "seed": recipe.seed},
                            "load_average_1min": round(os.getloadavg()[0], 2),
                            "timings_seconds": timings, "total_seconds": round(time.perf_counter() - started, 1)}
    (output_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    from e2llm.training.instruct import write_card

    write_card(final, report=report)
    return report


def _mean(summary: dict, key: str) -> float:
    value = summary.get(key)
    return float(value["mean"]) if isinstance(value, dict) else float(value)


def results_table(report: dict) -> str:
    """The printed summary: stage-1 head, the LLM's answers and the baseline on the held-out trials."""
    llm = report["summary"]["e2llm/emotion"]
    base = report["summary"]["de_logreg"]
    head = report["stage1_head"]
    n_labels = len(report["label_names"])
    rows = [("stage-1 encoder head", head["accuracy"], head["balanced_accuracy"], head["macro_f1"], None),
            ("E2LLM answer (generated)", _mean(llm, "accuracy"), _mean(llm, "balanced_accuracy"),
             _mean(llm, "macro_f1"), _mean(llm, "parse_rate")),
            ("DE + logistic regression", _mean(base, "accuracy"), _mean(base, "balanced_accuracy"),
             _mean(base, "macro_f1"), None)]
    split = report["split"]
    lines = [f"held-out trials: {split['n_test_trials']} ({split['n_test_windows']} windows), "
             f"train windows: {split['n_train_windows']}, chance = {1 / n_labels:.3f}",
             f"{'method':<26}{'accuracy':>10}{'bal. acc':>10}{'macro-F1':>10}{'parse rate':>12}"]
    for name, acc, bal, f1, parse in rows:
        lines.append(f"{name:<26}{acc:>10.3f}{bal:>10.3f}{f1:>10.3f}{'' if parse is None else f'{parse:.3f}':>12}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default="outputs/quickstart", help="where everything is written")
    parser.add_argument("--data", default=None, help="a folder from `e2llm prepare` (default: synthetic SEED-VII)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-test-windows", type=int, default=None, help="evaluate on at most this many windows")


def run(args: argparse.Namespace) -> int:
    recipe = QuickstartRecipe(seed=args.seed, max_test_windows=args.max_test_windows)
    report = run_quickstart(args.output_dir, data=args.data, recipe=recipe)
    print("\n" + results_table(report))
    example = next((e for e in report["examples"] if e["task"] == "emotion"), None)
    if example is not None:
        print(f"\nexample answer (true emotion: {example['true']}):\n{example['generated_text'].strip()}")
    print(f"\nwall time {report['quickstart']['total_seconds']:.0f} s {report['quickstart']['timings_seconds']}; "
          f"model in {Path(args.output_dir) / 'final'}, report in {Path(args.output_dir) / 'report.json'}")
    return 0


__all__ = ["QUICKSTART_EEG_CONFIG", "QuickstartRecipe", "add_arguments", "build_quickstart_model", "make_synthetic_data", "results_table", "run", "run_quickstart",
           "supported_tasks"]
