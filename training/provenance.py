"""Provenance of a trained model: what each training stage trained and selected on, saved in the model folder.

``e2llm_provenance.json`` holds one record per stage the weights went through (a stage inherits the records
of the folders it starts from):

    {"format": "e2llm-provenance/1", "stages": [
        {"stage": "stage1", "seed": 0, "created": "...",
         "dataset": {"name", "fingerprint", "synthetic", "preprocessing", "sampling_rate", "window_seconds", ...},
         "split": {"kind", "fold", "test_size", "seed", "validation_size", "validation_kind"},
         "train_keys": [[subject, session, trial], ...], "validation_keys": [...],
         "n_train_windows": ..., "n_validation_windows": ...}, ...]}

`e2llm evaluate` refuses to score a model on any trial whose key one of its stages trained or validated on
(`check_no_overlap`), and the model card shows the records.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)
PROVENANCE_FILE = "e2llm_provenance.json"
FORMAT = "e2llm-provenance/1"
_SAMPLED_ROWS = 64


class ProvenanceOverlapError(ValueError):
    """The evaluation windows include trials the model trained or validated on."""


def is_synthetic(metadata: Mapping) -> bool:
    """Whether a prepared dataset's metadata says its EEG was generated (never recorded from people)."""
    source = metadata.get("source") or {}
    return bool(
        metadata.get("synthetic")
        or str(metadata.get("dataset", "")).lower().startswith("synthetic")
        or (isinstance(source, Mapping) and ("generator" in source or source.get("reader") == "synthetic"))
    )


def dataset_fingerprint(dataset) -> str:
    """SHA-256 (hex, 16 characters) of a prepared dataset's content.

    Hashes the metadata, every row's `(subject, session, trial, start, label)` and the EEG of up to 64 evenly spaced
    rows: cheap on large datasets, and different whenever the windows, labels, preprocessing or data differ.
    """
    from e2llm.processing.dataset_io import dataset_metadata

    metadata = dataset_metadata(dataset)
    label = metadata.get("label_column") or "emotion"
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True, default=str).encode())
    table = dataset.with_format("numpy")
    columns = table.select_columns(["subject", "session", "trial", "start", label])[:]
    for name in ("subject", "session", "trial", "start", label):
        digest.update(np.ascontiguousarray(columns[name]).astype(np.float64).tobytes())
    rows = np.unique(np.linspace(0, len(dataset) - 1, min(_SAMPLED_ROWS, len(dataset))).round().astype(int))
    digest.update(np.ascontiguousarray(table[rows.tolist()]["eeg"], dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def dataset_identity(dataset) -> dict:
    """Name, fingerprint, synthetic flag and preprocessing parameters of a prepared dataset."""
    from e2llm.processing.dataset_io import dataset_metadata
    from e2llm.processing.splits import trial_keys

    metadata = dataset_metadata(dataset)
    source = metadata.get("source") or {}
    keys = trial_keys(dataset)
    return {
        "name": str(metadata["dataset"]),
        "fingerprint": dataset_fingerprint(dataset),
        "synthetic": is_synthetic(metadata),
        "source": {k: (Path(v).name if k == "root" else v) for k, v in source.items()} if isinstance(source, Mapping)
        else str(source),
        "sampling_rate": metadata["sampling_rate"],
        "window_seconds": metadata["window_seconds"],
        "stride_seconds": metadata["stride_seconds"],
        "label_names": list(metadata["label_names"]),
        "preprocessing": metadata.get("preprocessing"),
        "n_windows": int(len(dataset)),
        "n_trials": int(len(np.unique(keys, axis=0))) if len(keys) else 0,
        "n_subjects": int(len(np.unique(keys[:, 0]))) if len(keys) else 0,
    }


def _keys(part) -> list[list[int]]:
    from e2llm.processing.splits import trial_keys

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


def read_provenance(folder) -> dict | None:
    """The provenance saved in a model folder, or None when it has none (a folder from elsewhere)."""
    if folder is None:
        return None
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it or re-run the training stage") from None
    if content.get("format") != FORMAT or not isinstance(content.get("stages"), list):
        raise ValueError(f"{path} is not an e2llm provenance file (format {content.get('format')!r})")
    return content


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


def write_provenance(folder, stages: Sequence[Mapping]) -> Path:
    """Write ``e2llm_provenance.json`` into `folder` (created if needed); returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PROVENANCE_FILE
    path.write_text(json.dumps({"format": FORMAT, "stages": list(stages)}, indent=1, default=str) + "\n")
    return path


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
    from e2llm.processing.splits import trial_keys

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
    from e2llm.training.evaluation.splits import SplitSpec, resolve_split

    candidates = []
    for record in reversed(provenance.get("stages", [])):
        split = record.get("split")
        if split:
            fields = {k: split[k] for k in ("kind", "fold", "test_size", "seed") if k in split}
            candidates.append(SplitSpec(**fields))
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


MISSING_WARNING = ("the model folder holds no provenance (e2llm_provenance.json): it cannot be checked that the "
                   "evaluation trials were not used to train or validate it")


def summary(provenance: Mapping | None) -> dict:
    """A short view of a provenance for reports and cards (no key lists)."""
    if provenance is None:
        return {"status": "missing", "warning": MISSING_WARNING}
    stages = []
    for record in provenance["stages"]:
        data = record["dataset"]
        stages.append({
            "stage": record["stage"], "seed": record.get("seed"), "dataset": data.get("name"),
            "fingerprint": data.get("fingerprint"), "synthetic": bool(data.get("synthetic")),
            "split": record.get("split"), "n_train_trials": len(record.get("train_keys", [])),
            "n_validation_trials": len(record.get("validation_keys", [])),
            "n_train_windows": record.get("n_train_windows"), "n_validation_windows": record.get("n_validation_windows"),
        })
    return {"status": "recorded", "stages": stages}


__all__ = [
    "FORMAT", "MISSING_WARNING", "PROVENANCE_FILE", "ProvenanceOverlapError", "check_no_overlap", "clean_split_hint",
    "dataset_fingerprint", "dataset_identity", "inherited_stages", "is_synthetic", "overlap", "read_provenance",
    "same_data", "seen_keys", "stage_record", "summary", "write_provenance",
]
