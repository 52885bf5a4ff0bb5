"""What a prepared dataset says about itself: its metadata (a JSON dict in ``dataset.info.description``), its
content fingerprint, whether it is synthetic, and the identity that training provenance and model cards record.

`save_prepared` writes the fingerprint into ``summary.json``; `load_prepared` recomputes it and refuses a folder
whose data no longer match (another dataset's Arrow files, a changed ``state.json``), so what a stage trains on
and what an evaluation reports on is what the folder says it holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from e2llm.processing.splits import trial_keys

METADATA_KEYS: tuple[str, ...] = (
    "dataset",
    "sampling_rate",
    "channel_names",
    "units",
    "label_column",
    "label_names",
    "window_seconds",
    "stride_seconds",
    "preprocessing",
    "source",
)
DATASET_UNITS = "uV"
_SAMPLED_ROWS = 64


def check_metadata(metadata: dict, where: str) -> dict:
    """`metadata` if it is a prepared dataset's metadata dict (every key of `METADATA_KEYS`, windows in µV); else
    ValueError naming `where` it came from."""
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"{where}: metadata lacks the keys {missing}")
    if metadata["units"] != DATASET_UNITS:
        raise ValueError(f"{where}: prepared windows are in {DATASET_UNITS!r}, metadata says {metadata['units']!r}")
    return metadata


def dataset_metadata(dataset) -> dict:
    """The metadata dict of a prepared dataset (ValueError if it has none)."""
    description = getattr(dataset.info, "description", None) or ""
    try:
        metadata = json.loads(description)
    except json.JSONDecodeError:
        raise ValueError("This dataset carries no e2llm metadata (info.description is not JSON)") from None
    return check_metadata(metadata, "dataset metadata")


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

    Hashes `metadata`, every row's `(subject, session, trial, start, label)` and the EEG of up to 64 evenly spaced
    rows: cheap on large datasets, and different whenever the windows, labels, preprocessing or data differ.
    """
    metadata = dataset_metadata(dataset)
    label = metadata.get("label_column") or "emotion"
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True, default=str).encode())
    table = dataset.with_format("numpy")
    columns = table.select_columns(["subject", "session", "trial", "start", label])[:]
    for name in ("subject", "session", "trial", "start", label):
        digest.update(np.ascontiguousarray(columns[name]).astype(np.float64).tobytes())
    if len(dataset):
        rows = np.unique(np.linspace(0, len(dataset) - 1, min(_SAMPLED_ROWS, len(dataset))).round().astype(int))
        digest.update(np.ascontiguousarray(table[rows.tolist()]["eeg"], dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def dataset_identity(dataset) -> dict:
    """Name, fingerprint, synthetic flag, preprocessing parameters and counts of a prepared dataset."""
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


__all__ = ["DATASET_UNITS", "METADATA_KEYS", "check_metadata", "dataset_fingerprint", "dataset_identity",
           "dataset_metadata", "is_synthetic"]
