"""What each window's evidence is measured against, and the measured evidence items every pipeline result carries.

The reference of a window's band power is, in this order: the `baseline` recording the caller gives (the mean over
its windows), the `baseline_power` given, the input's own mean over its windows when the input has at least
`MIN_OWN_REFERENCE_WINDOWS` windows (with fewer, each window weighs so much in the mean that deviations mirror each
other: with two windows every deviation has an exact opposite), the reference the model ships
(`evidence_statistics["reference_power_db"]`, the training windows' mean band power per channel), or none. Each
window's result says which one it used.

Items: every feature of `e2llm.eeg_evidence_features` that the window's channels support, as
``{"id", "kind", "band", "region", "value", "unit", "z", "bucket", "text"}``; `value` in dB (regional band power), nats
(differential entropy) or ln-ratio units (frontal alpha asymmetry) relative to the reference, `z` the value in units
of the feature's spread over the training windows (None when the model ships no spread), `bucket` its strength word,
`text` the value as a rationale prints it (this precision is the one every returned number has).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .eeg_evidence_features import BAND_NAMES, bucket_of, evidence_features, feature_keys
from .electrodes import canonical_channel_name
from .evidence_statistics_e2llm import feature_id, shipped_reference

MIN_OWN_REFERENCE_WINDOWS = 10  # 40 s of 4-s windows: a window moves its own reference by at most 10 %
UNITS = {"power": "dB", "de": "nats", "faa": "ln ratio"}


def format_value(kind: str, value: float) -> str:
    """A measured value as rationales print it: ``-5.5 dB``, ``+0.12 nats``, ``+0.36``."""
    if kind == "power":
        return f"{value:+.1f} dB"
    if kind == "de":
        return f"{value:+.2f} nats"
    return f"{value:+.2f}"


@dataclass
class Reference:
    """Band power `power_db` `(n_bands, n_channels)` dB on the channels `names`, what it is (`kind`: "baseline",
    "baseline_power", "recording_mean" or "model_reference"), in words, and over how many windows."""

    kind: str
    description: str
    power_db: np.ndarray
    names: list[str]
    n_windows: int | None = None

    def report(self) -> dict:
        return {"kind": self.kind, "description": self.description, "n_windows": self.n_windows}

    def on(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`(reference (n_bands, n_known), known mask (n_channels,))` on `names` (the channels it covers)."""
        column = {canonical_channel_name(n) or n: i for i, n in enumerate(self.names)}
        keys = [canonical_channel_name(n) or n for n in names]
        known = np.array([k in column for k in keys])
        return self.power_db[:, [column[k] for k, ok in zip(keys, known) if ok]], known


def recording_mean(power: np.ndarray, names: list[str], what: str = "this input") -> Reference:
    """The mean over windows of `power` `(n_windows, n_bands, n_channels)` (NaN where a channel is flat)."""
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(power, axis=0)
    return Reference("recording_mean", f"the mean band power of {what}'s {len(power)} windows", mean, list(names),
                     len(power))


def baseline_reference(power: np.ndarray, names: list[str]) -> Reference:
    """The mean over the windows of a `baseline` recording."""
    ref = recording_mean(power, names, "the baseline recording")
    return Reference("baseline", ref.description, ref.power_db, ref.names, ref.n_windows)


def given_power_reference(baseline_power, input_names: Sequence[str] | None, names: list[str]) -> Reference:
    """`baseline_power` `(n_bands, n_input_channels)` dB given over the input's channels, on the used channels."""
    power = np.asarray(baseline_power, dtype=np.float64)
    if input_names is None:
        raise ValueError("baseline_power needs the input's channel_names (its columns follow them)")
    if power.shape != (len(BAND_NAMES), len(input_names)):
        raise ValueError(f"baseline_power must be ({len(BAND_NAMES)} bands, {len(input_names)} channels) dB, the "
                         f"input's channels in order; got shape {power.shape}")
    if not np.all(np.isfinite(power)):
        raise ValueError("baseline_power contains NaN or Inf values")
    column = {canonical_channel_name(n) or str(n): i for i, n in enumerate(input_names)}
    missing = [n for n in names if (canonical_channel_name(n) or n) not in column]
    if missing:
        raise ValueError(f"baseline_power has no column for the channels {missing}")
    return Reference("baseline_power", "the baseline_power given (band power per channel)",
                     power[:, [column[canonical_channel_name(n) or n] for n in names]], list(names))


def model_reference(statistics, names: list[str]) -> Reference | None:
    """The reference the model ships, on those of `names` it has (None if it ships none or has none of them)."""
    shipped = shipped_reference(statistics, names)
    if shipped is None:
        return None
    power, known = shipped
    provenance = (statistics or {}).get("provenance") or {}
    source = provenance.get("dataset", "its training data")
    synthetic = " (synthetic)" if provenance.get("synthetic") and "synthetic" not in str(source).lower() else ""
    n = provenance.get("n_windows")
    return Reference("model_reference", f"the model's training windows' mean band power per channel ({source}"
                     f"{synthetic}{f', {n} windows' if n else ''})", power, [n for n, k in zip(names, known) if k],
                     None)


def choose_reference(n_windows: int, own: Reference | None, given: Reference | None, statistics,
                     names: list[str]) -> Reference | None:
    """The reference for an input of `n_windows` windows (see the module docstring); None when there is none."""
    if given is not None:
        return given
    if own is not None and n_windows >= MIN_OWN_REFERENCE_WINDOWS:
        return own
    return model_reference(statistics, names)


def window_items(power: np.ndarray, names: Sequence[str], live: np.ndarray, reference: Reference | None,
                 spread: np.ndarray) -> list[list[dict]]:
    """The measured items of each window: `power` `(n, n_bands, n_channels)` dB on `names`, `live` `(n, n_channels)`
    (flat channels left out), `spread` `(n_features,)` in `feature_keys()` order (NaN where unknown)."""
    if reference is None:
        return [[] for _ in range(len(power))]
    ref, known = reference.on(names)
    items: list[list[dict]] = [[] for _ in range(len(power))]
    masks = (live & known[None]).astype(bool)
    for mask in np.unique(masks, axis=0):  # windows with the same channels: one computation
        rows = np.nonzero((masks == mask).all(axis=1))[0]
        if not mask.any():
            continue
        chosen = [n for n, keep in zip(names, mask) if keep]
        features = evidence_features(power[rows][:, :, mask], chosen, ref[:, mask[known]])
        for k, row in enumerate(rows):
            items[row] = _items(features.flat()[k], spread)
    return items


_KEYS = [(feature_id(kind, band, region), kind, band, region) for kind, band, region in feature_keys()]


def _items(values: np.ndarray, spread: np.ndarray) -> list[dict]:
    """One window's items (the strings shared between windows: a day of windows holds few copies)."""
    out = []
    for (item_id, kind, band, region), value, scale in zip(_KEYS, values.tolist(), spread.tolist()):
        if not np.isfinite(value):
            continue
        z = value / scale if np.isfinite(scale) else None
        out.append({"id": item_id, "kind": kind, "band": band, "region": region, "value": value, "unit": UNITS[kind],
                    "z": z, "bucket": None if z is None else bucket_of(z), "text": format_value(kind, value)})
    return out


__all__ = ["MIN_OWN_REFERENCE_WINDOWS", "UNITS", "Reference", "baseline_reference", "choose_reference",
           "format_value", "given_power_reference", "model_reference", "recording_mean", "window_items"]
