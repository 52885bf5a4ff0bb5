"""Leakage-safe splits of windowed EEG: by trial, by subject, and SEED-VII's official folds.

Windows cut from one trial (one film clip) share its slow drifts, its electrode impedances and,
after LDS smoothing, each other's values: a split that puts windows of one trial on both sides
inflates accuracy by tens of points. Every split here assigns whole trials, identified by
``(subject, session, trial)``, and checks that with :func:`assert_no_trial_leakage` before
returning.

Every training stage, the quickstart and `e2llm evaluate` resolve their split here, from a `SplitSpec`
(`resolve_split`):

* ``trial``: within subject, a `test_size` share of each subject's trials held out (whole trials);
* ``subject``: leave one subject out, subject number `fold` (in ascending order) held out;
* ``seed_vii``: SEED-VII's official fold `fold` (clips 5k+1..5k+5 of every session);
* ``none``: every window trains (no test side).

The validation part (checkpoint selection, early stopping) is carved from the training side only: a
`validation_size` share of each training subject's trials, or, for ``subject``, whole training subjects
(by trial when a single training subject is left). The test side is never touched by training.

A table is a ``datasets.Dataset``, a mapping of equal-length arrays (``{"subject": ..., "session":
..., "trial": ...}``) or a numpy structured array; the label column (default ``"emotion"``) is
only read for stratification. Index arrays are ``int64`` row positions into that table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

KEY_COLUMNS: tuple[str, str, str] = ("subject", "session", "trial")
SEED_VII_CLIPS_PER_SESSION = 20
SEED_VII_SESSIONS = 4
SEED_VII_FOLDS = 4
SPLITS = ("trial", "subject", "seed_vii", "none")
SPLIT_ALIASES = {"seed-vii-folds": "seed_vii", "seed_vii_folds": "seed_vii", "loso": "subject"}


def _column(table, name: str) -> np.ndarray:
    """Column `name` of a Dataset / mapping / structured array as a 1-d numpy array."""
    try:
        if hasattr(table, "column_names") and hasattr(table, "with_format"):  # datasets.Dataset
            if name not in table.column_names:
                raise KeyError(name)
            values = np.asarray(table.with_format("numpy").select_columns([name])[:][name])
        elif isinstance(table, np.ndarray) and table.dtype.names:
            values = np.asarray(table[name])
        elif isinstance(table, Mapping):
            values = np.asarray(table[name])
        else:
            raise TypeError
    except KeyError:
        raise ValueError(f"split table has no column {name!r}") from None
    except TypeError:
        raise ValueError(
            f"cannot read columns from {type(table).__name__}: pass a datasets.Dataset, a dict of arrays or a "
            "numpy structured array"
        ) from None
    if values.ndim != 1:
        raise ValueError(f"column {name!r} must be one value per row, got shape {values.shape}")
    return values


def trial_keys(table) -> np.ndarray:
    """`(n_rows, 3)` int64 array of `(subject, session, trial)` per row."""
    columns = [_column(table, name) for name in KEY_COLUMNS]
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise ValueError(f"columns {KEY_COLUMNS} have different lengths {[len(c) for c in columns]}")
    for name, values in zip(KEY_COLUMNS, columns):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"column {name!r} must hold integers, got dtype {values.dtype}")
    return np.stack(columns, axis=1).astype(np.int64) if lengths != {0} else np.zeros((0, 3), np.int64)


def _format_keys(keys: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(f"(subject={s}, session={e}, trial={t})" for s, e, t in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def assert_no_trial_leakage(train_rows, test_rows) -> None:
    """Raise ValueError naming every `(subject, session, trial)` that has rows on both sides.

    `train_rows` and `test_rows` are tables (see module doc) or `(n, 3)` key arrays from :func:`trial_keys`.
    """
    train = train_rows if isinstance(train_rows, np.ndarray) and train_rows.ndim == 2 else trial_keys(train_rows)
    test = test_rows if isinstance(test_rows, np.ndarray) and test_rows.ndim == 2 else trial_keys(test_rows)
    both = np.concatenate([train, test])
    if len(both) == 0:
        return
    _, ids = np.unique(both, axis=0, return_inverse=True)
    ids = ids.reshape(-1)
    shared = np.intersect1d(ids[: len(train)], ids[len(train) :])
    if shared.size:
        leaking = np.unique(both[np.isin(ids, shared)], axis=0)
        raise ValueError(
            f"split leaks {len(leaking)} trial(s): windows of {_format_keys(leaking)} are in both train and test"
        )


def check_split(table, train_idx, test_idx) -> tuple[np.ndarray, np.ndarray]:
    """Validate index arrays against `table` (in range, disjoint, no trial on both sides); return them as int64."""
    keys = trial_keys(table)
    train, test = np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)
    for name, idx in (("train", train), ("test", test)):
        if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= len(keys))):
            raise ValueError(f"{name} indices must be a 1-d array of row positions in 0..{len(keys) - 1}")
    if np.intersect1d(train, test).size:
        raise ValueError("the same rows are in both train and test")
    assert_no_trial_leakage(keys[train], keys[test])
    return train, test


def _trials(table, label_column: str | None):
    """Unique trials: `(trial_keys (n_trials, 3), row -> trial id (n_rows,), label per trial or None)`."""
    keys = trial_keys(table)
    if len(keys) == 0:
        raise ValueError("cannot split an empty table")
    unique, row_trial = np.unique(keys, axis=0, return_inverse=True)
    row_trial = row_trial.reshape(-1)
    if label_column is None:
        return unique, row_trial, None
    labels = _column(table, label_column)
    _, label_ids = np.unique(labels, return_inverse=True)
    trial_label = np.full(len(unique), -1, dtype=np.int64)
    trial_label[row_trial] = label_ids.reshape(-1)
    if np.any(trial_label[row_trial] != label_ids.reshape(-1)):
        mixed = unique[np.unique(row_trial[trial_label[row_trial] != label_ids.reshape(-1)])]
        raise ValueError(f"column {label_column!r} changes within trial(s) {_format_keys(mixed)}; cannot stratify")
    return unique, row_trial, trial_label


def _fold_of_trials(unique, trial_label, n_folds: int, seed: int) -> np.ndarray:
    """Fold number per trial: within each subject, trials ordered by (label, random) and dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(unique), dtype=np.int64)
    for subject in np.unique(unique[:, 0]):
        members = np.flatnonzero(unique[:, 0] == subject)
        if len(members) < n_folds:
            raise ValueError(f"subject {subject} has {len(members)} trial(s), fewer than the {n_folds} folds needed")
        order_key = rng.permutation(len(members))
        if trial_label is not None:  # stratified: sort by label, ties broken at random
            order = np.lexsort((order_key, trial_label[members]))
        else:
            order = np.argsort(order_key)
        offset = rng.integers(n_folds)
        fold[members[order]] = (np.arange(len(members)) + offset) % n_folds
    return fold


def split_by_trial(
    table,
    test_size: float | None = 0.25,
    n_folds: int | None = None,
    seed: int = 0,
    stratify: bool = True,
    label_column: str = "emotion",
):
    """Within-subject split by whole trials (every subject on both sides, every trial on one).

    With `n_folds`, returns a list of `(train_idx, test_idx)` folds (each trial is tested once);
    otherwise one `(train_idx, test_idx)` with about `test_size` of each subject's trials in test.
    `stratify` spreads each label's trials over the folds / both sides. Each trial needs one label.
    """
    unique, row_trial, trial_label = _trials(table, label_column if stratify else None)
    rows = np.arange(len(row_trial))
    if n_folds is not None:
        if int(n_folds) < 2:
            raise ValueError(f"n_folds must be at least 2, got {n_folds}")
        fold = _fold_of_trials(unique, trial_label, int(n_folds), seed)[row_trial]
        return [check_split(table, rows[fold != k], rows[fold == k]) for k in range(int(n_folds))]
    if test_size is None or not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    # Systematic sampling over the (label, random)-ordered trials of each subject: a test_size share.
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(unique), dtype=bool)
    for subject in np.unique(unique[:, 0]):
        members = np.flatnonzero(unique[:, 0] == subject)
        if len(members) < 2:
            raise ValueError(f"subject {subject} has a single trial; it cannot be on both sides of a split")
        order_key = rng.permutation(len(members))
        order = np.lexsort((order_key, trial_label[members])) if trial_label is not None else np.argsort(order_key)
        position = np.arange(len(members)) + rng.random()
        picked = np.floor((position + 1) * test_size) > np.floor(position * test_size)
        if picked.all() or not picked.any():
            picked[:] = False
            picked[rng.integers(len(members))] = True
        is_test[members[order]] = picked
    test_rows = is_test[row_trial]
    return check_split(table, rows[~test_rows], rows[test_rows])


def leave_one_subject_out(table) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `(train_idx, test_idx)` once per subject (in ascending order), that subject being the test set."""
    subjects = trial_keys(table)[:, 0]
    unique = np.unique(subjects)
    if len(unique) < 2:
        raise ValueError(f"leave-one-subject-out needs at least 2 subjects, got {len(unique)}")
    rows = np.arange(len(subjects))
    for subject in unique:
        yield check_split(table, rows[subjects != subject], rows[subjects == subject])


def seed_vii_fold_of_trial(trial) -> np.ndarray:
    """Official SEED-VII fold (0..3) of clip numbers 1..80: position p = (trial - 1) % 20 in its session, fold p // 5."""
    trial = np.asarray(trial)
    n_clips = SEED_VII_SESSIONS * SEED_VII_CLIPS_PER_SESSION
    if trial.size and (not np.issubdtype(trial.dtype, np.integer) or trial.min() < 1 or trial.max() > n_clips):
        raise ValueError(
            f"SEED-VII trials are clip numbers 1..{n_clips} (4 sessions x 20 clips); got values "
            f"{np.unique(trial)[:10].tolist()} (range {trial.min()}..{trial.max()})"
        )
    position = (trial - 1) % SEED_VII_CLIPS_PER_SESSION
    return position // (SEED_VII_CLIPS_PER_SESSION // SEED_VII_FOLDS)


def seed_vii_folds(table) -> list[tuple[np.ndarray, np.ndarray]]:
    """SEED-VII's official 4 folds (subject-dependent): fold k tests clips 5k+1..5k+5 of every session.

    The `trial` column must hold clip numbers 1..80 (= the keys of ``EEG_preprocessed/{subject}.mat``;
    clips 1-20 are session 1, 21-40 session 2, ...), so each fold holds 5 clips per session per
    subject and every subject is on both sides.
    """
    keys = trial_keys(table)
    fold = seed_vii_fold_of_trial(keys[:, 2])
    rows = np.arange(len(keys))
    return [check_split(table, rows[fold != k], rows[fold == k]) for k in range(SEED_VII_FOLDS)]


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


def n_folds(table, kind: str) -> int:
    """How many folds split `kind` has on `table` (1 for trial / none)."""
    kind = SPLIT_ALIASES.get(kind, kind)
    if kind == "subject":
        return len(np.unique(trial_keys(table)[:, 0]))
    return SEED_VII_FOLDS if kind == "seed_vii" else 1


def _outer(table, spec: SplitSpec) -> tuple[np.ndarray, np.ndarray]:
    if spec.kind == "none":
        return np.arange(len(trial_keys(table)), dtype=np.int64), np.zeros(0, np.int64)
    if spec.kind == "trial":
        return split_by_trial(table, test_size=spec.test_size, seed=spec.seed)
    folds = list(leave_one_subject_out(table)) if spec.kind == "subject" else seed_vii_folds(table)
    if not 0 <= spec.fold < len(folds):
        raise ValueError(f"fold {spec.fold} does not exist: split {spec.kind!r} has folds 0..{len(folds) - 1}")
    return folds[spec.fold]


def _validation(keys: np.ndarray, labels, train: np.ndarray, spec: SplitSpec) -> tuple[np.ndarray, np.ndarray, str]:
    """`(fit rows, validation rows, how)` carved from the training rows (`keys`: every row's trial key)."""
    if spec.validation_size == 0:
        return train, np.zeros(0, np.int64), "none"
    subjects = keys[train, 0]
    unique = np.unique(subjects)
    rng = np.random.default_rng(spec.seed + 7919)  # not the outer split's draw
    if spec.kind == "subject" and len(unique) >= 2:
        n_val = min(len(unique) - 1, max(1, int(round(spec.validation_size * len(unique)))))
        held = rng.choice(unique, size=n_val, replace=False)
        is_val = np.isin(subjects, held)
        return train[~is_val], train[is_val], "subject"
    part = {"subject": keys[train, 0], "session": keys[train, 1], "trial": keys[train, 2], "emotion": labels[train]}
    fit, val = split_by_trial(part, test_size=spec.validation_size, seed=spec.seed + 7919)
    return train[fit], train[val], "trial"


def resolve_split(table, spec: SplitSpec | None = None, **kwargs) -> SplitIndices:
    """The `SplitIndices` of `table` (a prepared dataset) for `spec` (or `SplitSpec(**kwargs)`), checked for
    trial leakage between every pair of sides."""
    spec = spec or SplitSpec(**kwargs)
    keys = trial_keys(table)
    train, test = _outer(table, spec)
    fit, validation, how = _validation(keys, _column(table, "emotion"), np.asarray(train, np.int64), spec)
    assert_no_trial_leakage(keys[fit], keys[test])
    assert_no_trial_leakage(keys[validation], keys[test])
    assert_no_trial_leakage(keys[fit], keys[validation])
    return SplitIndices(spec, np.asarray(fit, np.int64), np.asarray(validation, np.int64),
                        np.asarray(test, np.int64), how)


def select(dataset, rows: np.ndarray):
    """`dataset.select(rows)`, or None for no rows."""
    return dataset.select(rows) if len(rows) else None


__all__ = [
    "KEY_COLUMNS",
    "SPLITS",
    "SPLIT_ALIASES",
    "SplitIndices",
    "SplitSpec",
    "n_folds",
    "resolve_split",
    "select",
    "assert_no_trial_leakage",
    "check_split",
    "leave_one_subject_out",
    "seed_vii_fold_of_trial",
    "seed_vii_folds",
    "split_by_trial",
    "trial_keys",
]
