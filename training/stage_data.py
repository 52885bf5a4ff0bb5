"""The windows a training stage sees: a prepared dataset, split by trial or subject, with a validation part carved
from the training side. The test side never reaches a trainer; it is only for `e2llm evaluate`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from e2llm.processing.dataset_io import load_prepared
from e2llm.processing.splits import SplitIndices, SplitSpec, resolve_split, select


@dataclass
class StageData:
    """The whole prepared `dataset`, its `split`, and the rows (positions in `dataset`) of the windows a stage
    trains and validates on: `split.train` (or a seeded subset of it) and `split.validation` (carved from the
    training side; empty when `validation_size` is 0)."""

    dataset: object
    split: SplitIndices
    train_rows: np.ndarray

    @property
    def validation_rows(self) -> np.ndarray:
        return self.split.validation

    @property
    def train(self):
        return self.dataset.select(self.train_rows)

    @property
    def validation(self):
        """The validation windows, or None when there are none."""
        return select(self.dataset, self.split.validation)

    @property
    def label_names(self) -> list[str]:
        return list(self.dataset.features["emotion"].names)

    def windows(self):
        """The training windows followed by the validation windows, as one dataset (their model inputs are computed
        in one pass); the first `len(train_rows)` of them train."""
        return self.dataset.select(np.concatenate([self.train_rows, self.split.validation]))


def stage_data(dataset, spec: SplitSpec, max_train_samples: int | None = None) -> StageData:
    """Resolve `spec` on a prepared `dataset` into a `StageData` (`max_train_samples`: a subset of the training
    windows drawn with the split's seed)."""
    split = resolve_split(dataset, spec)
    rows = split.train
    if max_train_samples is not None:
        rows = rows[np.random.default_rng(spec.seed).permutation(len(rows))[:max_train_samples]]
    return StageData(dataset, split, rows)


def load_stage_data(script_args) -> StageData:
    """The prepared dataset of `script_args` (an `E2LLMScriptArguments`), checked against its summary, and split."""
    if script_args.dataset_path is None:
        raise ValueError("--dataset_path is required: a folder written by `e2llm prepare`")
    spec = SplitSpec(kind=script_args.split, fold=script_args.fold, test_size=script_args.test_size,
                     seed=script_args.split_seed, validation_size=script_args.validation_size)
    return stage_data(load_prepared(script_args.dataset_path), spec, script_args.max_train_samples)


def check_validation(training_args, data: StageData, stage: str) -> None:
    """A stage that evaluates, selects a checkpoint or early-stops needs a validation part (never the test split)."""
    strategy = getattr(training_args, "eval_strategy", "no")
    evaluates = str(getattr(strategy, "value", strategy)) != "no"
    if (evaluates or getattr(training_args, "load_best_model_at_end", False)) and data.validation is None:
        raise ValueError(
            f"{stage} evaluates during training (eval_strategy={training_args.eval_strategy}, load_best_model_at_end="
            f"{training_args.load_best_model_at_end}) but has no validation windows: set --validation_size (a share "
            "of the training trials, or of the training subjects under split=subject); the test split is never used "
            "for checkpoint selection"
        )


__all__ = ["StageData", "check_validation", "load_stage_data", "stage_data"]
