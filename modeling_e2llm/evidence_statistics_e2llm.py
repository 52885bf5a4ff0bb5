"""The statistics a model ships with its processor (`E2LLMProcessor(evidence_statistics=...)`): what its evidence
is measured against when the input cannot serve as its own reference, and the spreads that turn a measured value
into a strength word.

Format (every entry but `feature_ids` and `spread` optional; `processing.instructions.EvidenceReference.statistics`
writes it, the stage-3 script stores it):

```
{"feature_ids": ["power:delta:frontal", ..., "de:delta", ..., "faa:alpha"],   # order of every vector below
 "spread": [float | None, ...],                       # SD of each feature over the training windows
 "reference_power_db": {"Fp1": [5 floats], ...},      # mean band power (dB) per channel over the training windows
 "signatures": {"labels": [...], "mean_z": [[...], ...]},   # class means in spread units
 "prompt": {"evidence_in_prompt": bool, "strongest": int | None},   # whether/how prompts carry the evidence line
 "abstention": {"slope": [low, high], "alpha_ratio": [low, high], ...},   # training ranges for abstention
 "provenance": {"dataset": name, "synthetic": bool, "fingerprint": ..., "n_windows": int, "split": {...}}}
```

>>> feature_id("power", "alpha", "frontal"), feature_id("de", "theta"), feature_id("faa", "alpha")
('power:alpha:frontal', 'de:theta', 'faa:alpha')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .eeg_evidence_features import BAND_NAMES, feature_keys
from .electrodes import canonical_channel_name
from .label_evidence_e2llm import check_signatures

KNOWN_KEYS = ("feature_ids", "spread", "reference_power_db", "signatures", "prompt", "abstention", "provenance")


def feature_id(kind: str, band: str | None = None, region: str | None = None) -> str:
    """The id of an evidence feature: ``power:<band>:<region>``, ``de:<band>`` or ``faa:alpha``."""
    return ":".join(part for part in (kind, band, region) if part is not None)


FEATURE_IDS: tuple[str, ...] = tuple(feature_id(*key) for key in feature_keys())


def _finite_or_none(value, what: str) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be positive (a feature's SD over the training windows) or None, got {value}")
    return value


def _check_reference(reference: Mapping) -> dict[str, list[float]]:
    checked = {}
    for name, values in reference.items():
        spelled = canonical_channel_name(str(name))
        if spelled is None:
            raise ValueError(f"evidence_statistics['reference_power_db'] has {name!r}, which is no 10-05 channel name")
        values = [float(v) for v in values]
        if len(values) != len(BAND_NAMES) or not all(math.isfinite(v) for v in values):
            raise ValueError(f"evidence_statistics['reference_power_db'][{name!r}] must hold {len(BAND_NAMES)} finite "
                             f"band powers in dB ({', '.join(BAND_NAMES)}), got {values}")
        checked[spelled] = values
    return checked


def _check_prompt(prompt: Mapping) -> dict:
    unknown = set(prompt) - {"evidence_in_prompt", "strongest"}
    if unknown:
        raise ValueError(f"evidence_statistics['prompt'] takes evidence_in_prompt and strongest, not {sorted(unknown)}")
    strongest = prompt.get("strongest")
    if strongest is not None and (isinstance(strongest, bool) or int(strongest) < 1):
        raise ValueError(f"evidence_statistics['prompt']['strongest'] must be at least 1 or None, got {strongest}")
    return {"evidence_in_prompt": bool(prompt.get("evidence_in_prompt", False)),
            "strongest": None if strongest is None else int(strongest)}


def _check_abstention(ranges: Mapping) -> dict:
    """The training ranges of the abstention statistics (`e2llm.label_evidence_e2llm.abstention_ranges`)."""
    if not isinstance(ranges, Mapping):
        raise ValueError(f"evidence_statistics['abstention'] must be a dict of ranges, got {type(ranges).__name__}")
    checked = dict(ranges)
    for name in ("slope", "alpha_ratio"):
        if name not in ranges:
            continue
        pair = [float(v) for v in ranges[name]]
        if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or pair[0] > pair[1]:
            raise ValueError(f"evidence_statistics['abstention'][{name!r}] must be [low, high] finite numbers, got "
                             f"{ranges[name]}")
        checked[name] = pair
    return checked


def check_statistics(statistics: Mapping | None) -> dict | None:
    """`statistics` checked and normalised (JSON-ready: floats and None), or None; ValueError naming the entry."""
    if statistics is None:
        return None
    if not isinstance(statistics, Mapping):
        raise TypeError(f"evidence_statistics must be a dict, got {type(statistics).__name__}")
    unknown = set(statistics) - set(KNOWN_KEYS)
    if unknown:
        raise ValueError(f"evidence_statistics has unknown entries {sorted(unknown)}; known: {list(KNOWN_KEYS)}")
    ids = [str(i) for i in statistics.get("feature_ids", ())]
    spread = list(statistics.get("spread", ()))
    if not ids or len(ids) != len(spread):
        raise ValueError(f"evidence_statistics needs 'feature_ids' and one 'spread' value per id, got {len(ids)} ids "
                         f"and {len(spread)} values")
    strange = sorted(set(ids) - set(FEATURE_IDS))
    if strange:
        raise ValueError(f"evidence_statistics['feature_ids'] holds unknown ids {strange[:5]}; known ids look like "
                         f"{FEATURE_IDS[0]!r}, {FEATURE_IDS[-6]!r}, {FEATURE_IDS[-1]!r}")
    checked = {"feature_ids": ids,
               "spread": [_finite_or_none(v, f"spread of {i}") for i, v in zip(ids, spread)]}
    if statistics.get("reference_power_db") is not None:
        checked["reference_power_db"] = _check_reference(statistics["reference_power_db"])
    checked["prompt"] = _check_prompt(statistics.get("prompt") or {})
    if statistics.get("abstention") is not None:
        checked["abstention"] = _check_abstention(statistics["abstention"])
    if statistics.get("signatures") is not None:
        try:
            checked["signatures"] = check_signatures(statistics["signatures"])
        except ValueError as error:
            raise ValueError(f"evidence_statistics['signatures']: {error}") from error
    if statistics.get("provenance") is not None:
        checked["provenance"] = dict(statistics["provenance"])
    return checked


def statistics_from_legacy(spread: Sequence[float | None] | None, strongest: int | None) -> dict | None:
    """The statistics of an older processor folder (`evidence_spread` in `feature_keys()` order,
    `evidence_strongest`): a model whose prompts carried the evidence line, without a shipped reference."""
    if spread is None:
        return None
    spread = list(spread)
    if len(spread) != len(FEATURE_IDS):
        raise ValueError(f"evidence_spread needs one value per evidence feature ({len(FEATURE_IDS)}), got "
                         f"{len(spread)}")
    return check_statistics({"feature_ids": list(FEATURE_IDS), "spread": spread,
                             "prompt": {"evidence_in_prompt": True, "strongest": strongest}})


def spread_vector(statistics: Mapping | None) -> np.ndarray:
    """Each feature's spread in `feature_keys()` order, NaN where unknown (all NaN without statistics)."""
    if statistics is None:
        return np.full(len(FEATURE_IDS), np.nan)
    by_id = dict(zip(statistics["feature_ids"], statistics["spread"]))
    return np.array([np.nan if by_id.get(i) is None else by_id[i] for i in FEATURE_IDS])


def shipped_reference(statistics: Mapping | None, channel_names: Sequence[str]):
    """`(reference (n_bands, n_known), known)`: the shipped mean band power on those of `channel_names` it has, and
    a boolean mask `(n_channels,)` of them; None when the model ships no reference or knows none of the channels."""
    table = (statistics or {}).get("reference_power_db")
    if not table:
        return None
    table = {canonical_channel_name(str(name)) or str(name): values for name, values in table.items()}
    known = np.array([canonical_channel_name(n) in table for n in channel_names])
    if not known.any():
        return None
    columns = [table[canonical_channel_name(n)] for n, k in zip(channel_names, known) if k]
    return np.asarray(columns, dtype=np.float64).T, known


__all__ = ["FEATURE_IDS", "KNOWN_KEYS", "check_statistics", "feature_id", "shipped_reference", "spread_vector",
           "statistics_from_legacy"]
