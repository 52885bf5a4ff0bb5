"""Provenance of a trained model: what each training stage trained and selected on, and the checks that keep it true.

The file format (``e2llm_provenance.json``, one record per stage) is `e2llm.provenance_e2llm`'s; the dataset's
identity (fingerprint, synthetic flag) is `e2llm.processing.metadata`'s. Here:

* `stage_record` builds a stage's record; a stage inherits the records of the folders it starts from
  (`inherited_stages`) and writes them all next to its weights and into every checkpoint;
* `check_resume` refuses to resume a checkpoint trained on another dataset, split or stage;
* `check_no_overlap` refuses to score a model on any trial one of its stages trained or validated on
  (`e2llm evaluate`, before any inference).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from e2llm.processing.metadata import dataset_identity, is_synthetic
from e2llm.processing.splits import SplitSpec, resolve_split, trial_keys
from e2llm.provenance_e2llm import (
    MISSING_PROVENANCE,
    PROVENANCE_FILE,
    PROVENANCE_FORMAT,
    provenance_summary,
    read_provenance,
    write_provenance,
)

# the split fields a resumed run must share with its checkpoint
_SPLIT_FIELDS = ("kind", "fold", "test_size", "seed", "validation_size")


class ProvenanceOverlapError(ValueError):
    """The evaluation windows include trials the model trained or validated on."""


def _keys(part) -> list[list[int]]:
    if part is None or len(part) == 0:
        return []
    return np.unique(trial_keys(part), axis=0).tolist()


def stage_record(stage: str, dataset, split, train, validation=None, seed: int = 0, extra: Mapping | None = None) -> dict:
    """The provenance record of one stage.

    Args:
        stage: "stage1", "stage2" or "stage3".
        dataset: the whole prepared dataset the split was made from.
        split: its `SplitIndices` (or None when the stage was given windows without a split).
        train, validation: the windows the stage trained and validated on (datasets or None).
        seed: the training seed.
    """
    return {
        "stage": stage,
        "seed": int(seed),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dataset": dataset_identity(dataset),
        "split": None if split is None else {**split.spec.as_dict(), "validation_kind": split.validation_kind},
        "train_keys": _keys(train),
        "validation_keys": _keys(validation),
        "n_train_windows": 0 if train is None else int(len(train)),
        "n_validation_windows": 0 if validation is None else int(len(validation)),
        **dict(extra or {}),
    }


def inherited_stages(folders: Iterable) -> list[dict]:
    """The stage records of the folders a stage starts from (in order, without repeats)."""
    records, seen = [], set()
    for folder in folders:
        for record in (read_provenance(folder) or {}).get("stages", []):
            key = (record["stage"], record.get("created"), record["dataset"].get("fingerprint"))
            if key not in seen:
                seen.add(key)
                records.append(record)
    return records


def _split_words(split: Mapping | None) -> str:
    if not split:
        return "no split"
    return ", ".join(f"{name}={split.get(name)}" for name in _SPLIT_FIELDS)


def resume_mismatch(previous: Mapping, record: Mapping) -> str | None:
    """How this run's `record` differs from the `previous` record of the run being resumed, in words; None when
    it is the same stage on the same data, split and training trials."""
    if previous.get("stage") != record["stage"]:
        return f"it was written by {previous.get('stage')}, this run is {record['stage']}"
    before, now = previous.get("dataset") or {}, record["dataset"]
    if before.get("fingerprint") != now["fingerprint"]:
        return (f"it was trained on {before.get('name')} (fingerprint {before.get('fingerprint')}), this run reads "
                f"{now['name']} (fingerprint {now['fingerprint']})")
    old_split, new_split = previous.get("split") or {}, record.get("split") or {}
    if any(old_split.get(name) != new_split.get(name) for name in _SPLIT_FIELDS):
        return f"it was trained on the split {_split_words(old_split)}, this run asks for {_split_words(new_split)}"
    if previous.get("train_keys") != record["train_keys"] or previous.get("validation_keys") != record[
            "validation_keys"]:
        return "its training or validation trials differ from this run's (another --max_train_samples or seed?)"
    return None


def check_resume(checkpoint, record: Mapping) -> None:
    """ValueError unless `checkpoint` (a folder to resume from) was written by the same stage on the same dataset,
    split and trials as this run's `record`: a resumed model must keep the provenance it will be given."""
    stages = (read_provenance(checkpoint) or {}).get("stages", [])
    if not stages:
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: it holds no {PROVENANCE_FILE}, so nothing shows it "
                         f"was trained by {record['stage']} on this dataset and split; start a new --output_dir "
                         "instead of resuming")
    reason = resume_mismatch(stages[-1], record)
    if reason is not None:
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: {reason}. Resume with the options it was trained "
                         "with, or start a new --output_dir")


def same_data(identity: Mapping, record_dataset: Mapping) -> bool:
    """Whether a stage's training data and `identity` come from the same recordings (so their keys compare).

    The same fingerprint, or the same dataset name (another preparation of the same recordings, e.g. other
    windows), except for synthetic data from different generators.
    """
    if identity.get("fingerprint") and identity.get("fingerprint") == record_dataset.get("fingerprint"):
        return True
    if identity.get("name") != record_dataset.get("name"):
        return False
    if identity.get("synthetic") or record_dataset.get("synthetic"):
        return identity.get("source") == record_dataset.get("source")
    return True


def seen_keys(provenance: Mapping | None, identity: Mapping) -> dict[tuple, list[str]]:
    """`(subject, session, trial)` -> the stages/parts that used it, over the records on the same data."""
    seen: dict[tuple, list[str]] = {}
    for record in (provenance or {}).get("stages", []):
        if not same_data(identity, record["dataset"]):
            continue
        for part in ("train", "validation"):
            for key in record.get(f"{part}_keys", []):
                seen.setdefault(tuple(int(k) for k in key), []).append(f"{record['stage']} {part}")
    return seen


def overlap(provenance: Mapping | None, dataset, rows) -> dict:
    """How many evaluation trials/windows (`rows` of `dataset`) a model's stages trained or validated on."""
    identity = dataset_identity(dataset)
    seen = seen_keys(provenance, identity)
    keys = trial_keys(dataset)[np.asarray(rows, dtype=np.int64)]
    hit = np.array([tuple(k) in seen for k in keys.tolist()], dtype=bool)
    trials = {tuple(k) for k in keys.tolist()}
    bad = {tuple(k) for k in keys[hit].tolist()}
    parts = sorted({p for k in bad for p in seen[k]})
    return {"n_trials": len(trials), "n_windows": int(len(keys)), "n_overlapping_trials": len(bad),
            "n_overlapping_windows": int(hit.sum()), "parts": parts, "identity": identity}


def clean_split_hint(provenance: Mapping, dataset) -> str:
    """Which `e2llm evaluate` split of `dataset` the model never trained or validated on, in words."""
    candidates = []
    for record in reversed(provenance.get("stages", [])):
        split = record.get("split")
        if split:
            candidates.append(SplitSpec(**{k: split[k] for k in ("kind", "fold", "test_size", "seed") if k in split}))
    for spec in candidates:
        try:
            test = resolve_split(dataset, spec).test
        except ValueError:
            continue
        if len(test) and overlap(provenance, dataset, test)["n_overlapping_windows"] == 0:
            return f"`{spec.cli_flags()}` (the split the model was trained with) is clean"
    identity = dataset_identity(dataset)
    unseen = len({tuple(k) for k in _keys(dataset)} - set(seen_keys(provenance, identity)))
    return (f"no recorded split is clean on this dataset; {unseen} of its trials were never used in training or "
            "validation: evaluate on those (e.g. a dataset prepared from other subjects)")


def check_no_overlap(provenance: Mapping | None, dataset, rows) -> dict:
    """Raise `ProvenanceOverlapError` when evaluation rows include trials the model trained or validated on.

    Returns the overlap summary (all zeros when clean; `provenance` None: nothing to check).
    """
    found = overlap(provenance, dataset, rows)
    if found["n_overlapping_windows"]:
        raise ProvenanceOverlapError(
            f"{found['n_overlapping_trials']} of the {found['n_trials']} evaluation trials "
            f"({found['n_overlapping_windows']} of {found['n_windows']} windows) were used to train or validate "
            f"this model ({', '.join(found['parts'])}), so its score there would not be held-out. "
            f"{clean_split_hint(provenance, dataset)}."
        )
    return found


def trained_split(path) -> tuple[str, int, int]:
    """`(kind, fold, seed)` a model folder was trained with: its last training stage's split in its provenance."""
    provenance = read_provenance(path) if Path(path).is_dir() else None
    stages = [s for s in (provenance or {}).get("stages", []) if s.get("split")]
    if not stages:
        raise ValueError(f"--fold all needs each model's provenance to know its fold, and {path} records no split "
                         "(no e2llm_provenance.json from a training stage); evaluate it with --fold N instead")
    split = stages[-1]["split"]
    return SplitSpec(kind=split["kind"]).kind, int(split.get("fold", 0)), int(stages[-1].get("seed", 0))


# Names `e2llm.training.evaluation` reads from this module (`prov.summary`, `prov.MISSING_WARNING`).
summary = provenance_summary
MISSING_WARNING = MISSING_PROVENANCE

__all__ = [
    "MISSING_WARNING", "PROVENANCE_FILE", "PROVENANCE_FORMAT", "ProvenanceOverlapError", "check_no_overlap",
    "check_resume", "clean_split_hint", "inherited_stages", "is_synthetic", "overlap", "provenance_summary",
    "read_provenance", "resume_mismatch", "same_data", "seen_keys", "stage_record", "summary", "trained_split",
    "write_provenance",
]
