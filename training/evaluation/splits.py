"""Split resolution, in one place: which windows a model trains on, validates on, and is tested on.

Every training stage, the quickstart and `e2llm evaluate` resolve their split here, from a `SplitSpec`:

* ``trial``: within subject, a `test_size` share of each subject's trials held out (whole trials);
* ``subject``: leave one subject out, subject number `fold` (in ascending order) held out;
* ``seed_vii``: SEED-VII's official fold `fold` (clips 5k+1..5k+5 of every session);
* ``none``: every window trains (no test side).

The validation part (checkpoint selection, early stopping) is carved from the training side only: a
`validation_size` share of each training subject's trials, or, for ``subject``, whole training subjects
(by trial when a single training subject is left). The test side is never touched by training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from e2llm.processing import splits
from e2llm.processing.splits import SEED_VII_FOLDS, assert_no_trial_leakage, split_by_trial, trial_keys

SPLITS = ("trial", "subject", "seed_vii", "none")
SPLIT_ALIASES = {"seed-vii-folds": "seed_vii", "seed_vii_folds": "seed_vii", "loso": "subject"}


@dataclass(frozen=True)
class SplitSpec:
    """How a prepared dataset is split (see the module doc); `seed` drives the trial draws."""

    kind: str = "trial"
    fold: int = 0
    test_size: float = 0.25
    seed: int = 0
    validation_size: float = 0.0

    def __post_init__(self):
        kind = SPLIT_ALIASES.get(self.kind, self.kind)
        if kind not in SPLITS:
            raise ValueError(f"unknown split {self.kind!r}; use one of {SPLITS}")
        object.__setattr__(self, "kind", kind)
        if not 0 <= self.validation_size < 1:
            raise ValueError(f"validation_size must be in [0, 1), got {self.validation_size}")

    def as_dict(self) -> dict:
        return asdict(self)

    def cli_flags(self) -> str:
        """The `e2llm evaluate` options that select this split's test side."""
        if self.kind == "trial":
            return f"--split trial --test-size {self.test_size:g} --split-seed {self.seed}"
        if self.kind in ("subject", "seed_vii"):
            return f"--split {self.kind} --fold {self.fold}"
        return "--split none"


@dataclass
class SplitIndices:
    """Row positions (int64) of the training, validation and test windows of one split."""

    spec: SplitSpec
    train: np.ndarray
    validation: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    validation_kind: str = "none"

    @property
    def training_side(self) -> np.ndarray:
        """Training and validation rows together (what baselines train on: they select nothing)."""
        return np.sort(np.concatenate([self.train, self.validation]))


def n_folds(dataset, kind: str) -> int:
    """How many folds split `kind` has on `dataset` (1 for trial / none)."""
    kind = SPLIT_ALIASES.get(kind, kind)
    if kind == "subject":
        return len(np.unique(trial_keys(dataset)[:, 0]))
    return SEED_VII_FOLDS if kind == "seed_vii" else 1


def _outer(dataset, spec: SplitSpec) -> tuple[np.ndarray, np.ndarray]:
    if spec.kind == "none":
        return np.arange(len(dataset), dtype=np.int64), np.zeros(0, np.int64)
    if spec.kind == "trial":
        return splits.split_by_trial(dataset, test_size=spec.test_size, seed=spec.seed)
    folds = list(splits.leave_one_subject_out(dataset)) if spec.kind == "subject" else splits.seed_vii_folds(dataset)
    if not 0 <= spec.fold < len(folds):
        raise ValueError(f"fold {spec.fold} does not exist: split {spec.kind!r} has folds 0..{len(folds) - 1}")
    return folds[spec.fold]


def _validation(dataset, train: np.ndarray, spec: SplitSpec) -> tuple[np.ndarray, np.ndarray, str]:
    """`(fit rows, validation rows, how)` carved from the training rows."""
    if spec.validation_size == 0:
        return train, np.zeros(0, np.int64), "none"
    subjects = trial_keys(dataset.select(train))[:, 0] if hasattr(dataset, "select") else trial_keys(dataset)[train, 0]
    unique = np.unique(subjects)
    rng = np.random.default_rng(spec.seed + 7919)  # not the outer split's draw
    if spec.kind == "subject" and len(unique) >= 2:
        n_val = min(len(unique) - 1, max(1, int(round(spec.validation_size * len(unique)))))
        held = rng.choice(unique, size=n_val, replace=False)
        is_val = np.isin(subjects, held)
        return train[~is_val], train[is_val], "subject"
    part = dataset.select(train)
    fit, val = split_by_trial(part, test_size=spec.validation_size, seed=spec.seed + 7919)
    return train[fit], train[val], "trial"


def resolve_split(dataset, spec: SplitSpec | None = None, **kwargs) -> SplitIndices:
    """The `SplitIndices` of `dataset` for `spec` (or `SplitSpec(**kwargs)`), checked for trial leakage."""
    spec = spec or SplitSpec(**kwargs)
    train, test = _outer(dataset, spec)
    fit, validation, how = _validation(dataset, np.asarray(train, np.int64), spec)
    keys = trial_keys(dataset)
    assert_no_trial_leakage(keys[fit], keys[test])
    assert_no_trial_leakage(keys[validation], keys[test])
    assert_no_trial_leakage(keys[fit], keys[validation])
    return SplitIndices(spec, np.asarray(fit, np.int64), np.asarray(validation, np.int64),
                        np.asarray(test, np.int64), how)


def select(dataset, rows: np.ndarray):
    """`dataset.select(rows)`, or None for no rows."""
    return dataset.select(rows) if len(rows) else None


__all__ = ["SPLITS", "SPLIT_ALIASES", "SplitIndices", "SplitSpec", "n_folds", "resolve_split", "select"]
