"""The file format of a model folder's training provenance, ``e2llm_provenance.json`` (standard library only).

Every training stage writes it next to its weights (`e2llm.training.provenance` builds the records); model cards
(`e2llm.hub_cards`) and `e2llm evaluate` read it. One record per stage the weights went through, oldest first:

    {"format": "e2llm-provenance/1", "stages": [
        {"stage": "stage1", "seed": 0, "created": "...",
         "dataset": {"name", "fingerprint", "synthetic", "preprocessing", "sampling_rate", "window_seconds", ...},
         "split": {"kind", "fold", "test_size", "seed", "validation_size", "validation_kind"},
         "train_keys": [[subject, session, trial], ...], "validation_keys": [...],
         "n_train_windows": ..., "n_validation_windows": ...}, ...]}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

PROVENANCE_FILE = "e2llm_provenance.json"
PROVENANCE_FORMAT = "e2llm-provenance/1"
MISSING_PROVENANCE = ("the model folder holds no provenance (e2llm_provenance.json): it cannot be checked that the "
                      "evaluation trials were not used to train or validate it")


def read_provenance(folder) -> dict | None:
    """The provenance saved in a model folder, or None when it has none (a folder from elsewhere)."""
    if folder is None:
        return None
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it or re-run the training stage") from None
    if not isinstance(content, dict) or content.get("format") != PROVENANCE_FORMAT or not isinstance(
            content.get("stages"), list):
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{path} is not an e2llm provenance file (format {found!r})")
    return content


def write_provenance(folder, stages: Sequence[Mapping]) -> Path:
    """Write ``e2llm_provenance.json`` into `folder` (created if needed), atomically; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PROVENANCE_FILE
    text = json.dumps({"format": PROVENANCE_FORMAT, "stages": list(stages)}, indent=1, default=str) + "\n"
    handle, staged = tempfile.mkstemp(dir=folder, prefix=f".{PROVENANCE_FILE}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return path


def provenance_summary(provenance: Mapping | None) -> dict:
    """A short view of a provenance for reports and cards: per stage the data (synthetic or not), its fingerprint,
    the split and the trial and window counts (no key lists)."""
    if provenance is None:
        return {"status": "missing", "warning": MISSING_PROVENANCE}
    stages = []
    for record in provenance["stages"]:
        data = record.get("dataset") or {}
        stages.append({
            "stage": record.get("stage"), "seed": record.get("seed"), "dataset": data.get("name"),
            "fingerprint": data.get("fingerprint"), "synthetic": bool(data.get("synthetic")),
            "split": record.get("split"), "n_train_trials": len(record.get("train_keys") or []),
            "n_validation_trials": len(record.get("validation_keys") or []),
            "n_train_windows": record.get("n_train_windows"), "n_validation_windows": record.get("n_validation_windows"),
        })
    return {"status": "recorded", "stages": stages}


__all__ = ["MISSING_PROVENANCE", "PROVENANCE_FILE", "PROVENANCE_FORMAT", "provenance_summary", "read_provenance",
           "write_provenance"]
