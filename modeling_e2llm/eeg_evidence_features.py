"""The EEG evidence an E2LLM rationale cites, computed in one place for training targets, checks and inference.

Features of a window (`(n_channels, n_times)` in µV), each relative to a reference band power (a subject's mean
over its training windows, or a recording's own mean):

* regional band power: mean over a scalp region's channels of the band power in dB minus the reference's;
* differential entropy (DE): mean over channels of the Gaussian DE ``0.5 ln(2 pi e var)`` of a band minus the
  reference's, in nats (``ln(10) / 20`` times the channel-mean dB deviation);
* frontal alpha asymmetry (FAA): mean over the available right/left pairs of ``ln(alpha right) - ln(alpha left)``
  minus the reference's (positive: shifted to the right hemisphere).

A claim names one feature with a direction, a magnitude bucket (in units of the feature's spread across training
windows: below 1, 1 to 2, at least 2) and the number, in one fixed grammar (`format_claim` / `parse_claims`), so a
generated rationale can be checked against the signal and claims the montage cannot support can be removed
(`remove_unsupported_claims`). Only numpy and scipy: this file travels with a model as remote code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import welch

from .electrodes import SEED_CHANNELS, canonical_channel_name

# Frequency bands in Hz, [low, high): the SEED family's five bands (equal to `e2llm.processing.features.BANDS`).
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 14.0), "beta": (14.0, 31.0), "gamma": (31.0, 49.0),
}
BAND_NAMES: tuple[str, ...] = tuple(BANDS)
REGIONS: tuple[str, ...] = ("frontal", "central", "temporal", "parietal", "occipital")
# Letters of a 10-05 name (digits and the midline "z" removed) -> scalp region.
_REGION_OF_PREFIX = {
    "FP": "frontal", "AF": "frontal", "F": "frontal", "FC": "central", "C": "central", "FT": "temporal",
    "T": "temporal", "TP": "temporal", "CP": "parietal", "P": "parietal", "PO": "occipital", "O": "occipital",
    "CB": "occipital", "I": "occipital",
}
FAA_PAIRS: tuple[tuple[str, str], ...] = (("F4", "F3"), ("F8", "F7"), ("AF4", "AF3"), ("Fp2", "Fp1"))
# Below this share of a full montage's electrodes (SEED's 62), the pipeline warns that channels are missing.
MIN_CHANNEL_SHARE = 0.5
SEED_MONTAGE: tuple[str, ...] = tuple(SEED_CHANNELS)
DB_TO_NATS = np.log(10) / 20  # 0.5 * ln(power ratio) per dB of band power
CLAIM_KINDS: tuple[str, ...] = ("power", "de", "faa")
BUCKETS: tuple[str, ...] = ("slightly", "moderately", "strongly")
BUCKET_EDGES: tuple[float, ...] = (1.0, 2.0)  # |value| / spread: [0, 1) slightly, [1, 2) moderately, >= 2 strongly
_POWER_FLOOR = 1e-12


def band_power(windows_uv, sfreq: float, bands: dict[str, tuple[float, float]] | None = None,
               batch_size: int = 256) -> np.ndarray:
    """Welch band power in µV²: `(n, n_channels, n_times)` (or one `(n_channels, n_times)` window) ->
    `(n, n_bands, n_channels)`. Hann segments of 2 s (or the whole window if shorter), 50 % overlap, integrated over
    ``low <= f < high`` for each of `bands` (default `BANDS`); computed `batch_size` windows at a time."""
    bands = BANDS if bands is None else dict(bands)
    windows = np.asarray(windows_uv, dtype=np.float64)
    if windows.ndim == 2:
        windows = windows[None]
    if windows.ndim != 3 or windows.shape[-1] < 2:
        raise ValueError(f"windows must be (n_windows, n_channels, n_times), got shape {windows.shape}")
    if not np.all(np.isfinite(windows)):
        raise ValueError("windows contain NaN or Inf values")
    nperseg = int(min(windows.shape[-1], round(2 * sfreq)))
    chunks = []
    for start in range(0, len(windows), batch_size):
        freqs, psd = welch(windows[start : start + batch_size], fs=sfreq, window="hann", nperseg=nperseg, axis=-1)
        masks = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in bands.values()], axis=-1).astype(np.float64)
        if not masks.any(axis=0).all():
            raise ValueError(f"a band holds no frequency bin at {sfreq} Hz with {windows.shape[-1]} samples")
        chunks.append(np.swapaxes(psd @ masks * (freqs[1] - freqs[0]), -1, -2))
    return np.concatenate(chunks) if chunks else np.zeros((0, len(bands), windows.shape[1]))


def band_power_db(windows_uv, sfreq: float, batch_size: int = 256,
                  bands: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """`band_power` in dB (10 log10 µV², floored at -120 dB): `(n, n_bands, n_channels)`."""
    return 10 * np.log10(np.maximum(band_power(windows_uv, sfreq, bands, batch_size), _POWER_FLOOR))


def region_of(channel_name: str) -> str | None:
    """Scalp region of a 10-05 channel name (None for non-EEG or unknown names)."""
    canonical = canonical_channel_name(channel_name) or ""
    return _REGION_OF_PREFIX.get(re.sub(r"[0-9z]", "", canonical).upper())


def region_matrix(channel_names: Sequence[str]) -> np.ndarray:
    """`(n_regions, n_channels)` averaging matrix over `REGIONS` (rows of regions without channels are 0)."""
    matrix = np.zeros((len(REGIONS), len(channel_names)))
    for i, name in enumerate(channel_names):
        region = region_of(name)
        if region is not None:
            matrix[REGIONS.index(region), i] = 1.0
    counts = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, counts, out=np.zeros_like(matrix), where=counts > 0)


def faa_pair_indices(channel_names: Sequence[str]) -> list[tuple[int, int]]:
    """`(right, left)` channel positions of the `FAA_PAIRS` present in `channel_names`."""
    index = {canonical_channel_name(name) or name: i for i, name in enumerate(channel_names)}
    return [(index[right], index[left]) for right, left in FAA_PAIRS if right in index and left in index]


@dataclass(frozen=True)
class MontageSupport:
    """Which claims a montage supports: `regions` with at least one channel, `faa` (a frontal pair is present),
    and the share of a full montage's electrodes present (`channel_share`)."""

    regions: tuple[str, ...]
    faa: bool
    n_channels: int
    channel_share: float
    n_full: int = len(SEED_MONTAGE)

    @property
    def warning(self) -> str | None:
        """A message when fewer than `MIN_CHANNEL_SHARE` of the full montage's electrodes are present."""
        if self.channel_share >= MIN_CHANNEL_SHARE:
            return None
        absent = [r for r in REGIONS if r not in self.regions] + ([] if self.faa else ["frontal alpha asymmetry"])
        removed = f"; claims about {', '.join(absent)} cannot be computed and are removed" if absent else ""
        return (f"only {self.n_channels} EEG channel(s) ({self.channel_share:.0%} of the model's {self.n_full}-"
                f"electrode montage) are present: the model was trained on full montages, so its answer is less "
                f"reliable{removed}")

    def supports(self, claim: Claim) -> bool:
        if claim.kind == "faa":
            return self.faa
        if claim.kind == "power":
            return claim.region in self.regions
        return self.n_channels > 0


def montage_support(channel_names: Sequence[str], full_montage: Sequence[str] | None = None) -> MontageSupport:
    """The `MontageSupport` of a list of channel names (non-EEG names count as absent); `channel_share` is relative
    to `full_montage`, the electrodes the model was trained on (default: SEED's 62)."""
    known = {canonical_channel_name(n) for n in channel_names} - {None}
    full = {canonical_channel_name(n) for n in (full_montage or SEED_MONTAGE)} - {None}
    if not full:
        raise ValueError("full_montage holds no known 10-05 electrode name")
    regions = tuple(r for r, row in zip(REGIONS, region_matrix(list(known))) if row.any())
    return MontageSupport(regions, bool(faa_pair_indices(list(known))), len(known), len(known & full) / len(full),
                          len(full))


@dataclass
class EvidenceFeatures:
    """Evidence of `n` windows relative to a reference: `power` `(n, n_bands, n_regions)` dB (NaN for absent
    regions), `de` `(n, n_bands)` nats, `faa` `(n,)` ln-ratio units (NaN without a frontal pair)."""

    power: np.ndarray
    de: np.ndarray
    faa: np.ndarray

    def value(self, claim: Claim, index: int) -> float:
        """The feature a claim is about, in window `index` (NaN when it cannot be computed)."""
        if claim.kind == "power":
            return float(self.power[index, BAND_NAMES.index(claim.band), REGIONS.index(claim.region)])
        if claim.kind == "de":
            return float(self.de[index, BAND_NAMES.index(claim.band)])
        return float(self.faa[index])

    def flat(self) -> np.ndarray:
        """`(n, n_features)`: power (band-major), then DE, then FAA, in the order of `feature_keys()`."""
        return np.concatenate([self.power.reshape(len(self.de), -1), self.de, self.faa[:, None]], axis=1)


def feature_keys() -> list[tuple[str, str | None, str | None]]:
    """`(kind, band, region)` of each column of `EvidenceFeatures.flat`."""
    return ([("power", b, r) for b in BAND_NAMES for r in REGIONS] + [("de", b, None) for b in BAND_NAMES]
            + [("faa", "alpha", None)])


def evidence_features(power_db, channel_names: Sequence[str], reference_db) -> EvidenceFeatures:
    """Evidence from band power `(n, n_bands, n_channels)` dB (`band_power_db`) and a reference `(n_bands,
    n_channels)` or per window `(n, n_bands, n_channels)` dB."""
    power_db = np.asarray(power_db, dtype=np.float64)
    if power_db.ndim != 3 or power_db.shape[1:] != (len(BANDS), len(channel_names)):
        raise ValueError(f"power_db must be (n_windows, {len(BANDS)} bands, {len(channel_names)} channels), "
                         f"got {power_db.shape}")
    deviation = power_db - np.asarray(reference_db, dtype=np.float64)
    regions = region_matrix(channel_names)
    power = deviation @ regions.T
    power[..., ~regions.any(axis=1)] = np.nan
    eeg = np.array([canonical_channel_name(n) is not None for n in channel_names])
    de = DB_TO_NATS * deviation[..., eeg].mean(axis=-1) if eeg.any() else np.full(power_db.shape[:2], np.nan)
    pairs = faa_pair_indices(channel_names)
    alpha = deviation[:, BAND_NAMES.index("alpha")] * (np.log(10) / 10)  # ln of the alpha power ratio
    faa = (np.mean([alpha[:, right] - alpha[:, left] for right, left in pairs], axis=0) if pairs
           else np.full(len(power_db), np.nan))
    return EvidenceFeatures(power, de, faa)


# ---------------------------------------------------------------- measured evidence, written into prompts
EVIDENCE_OPENING = "Measured relative to baseline: "


def evidence_items(features: EvidenceFeatures, spread, index: int) -> list[tuple[float, str, str]]:
    """`(|value| / spread, kind, text)` of every feature window `index` has, in `feature_keys()` order: e.g.
    ``frontal beta +3.1 dB strongly``, ``gamma entropy +0.12 nats moderately``, ``asymmetry +0.36 slightly``.
    Regions without channels, and the asymmetry without a frontal pair, are left out."""
    spread = np.asarray(spread, dtype=np.float64)
    items = []
    values = np.concatenate([features.power[index].reshape(-1), features.de[index], [features.faa[index]]])
    for (kind, band, region), value, scale in zip(feature_keys(), values, spread):  # the order of `flat()`
        if not (np.isfinite(value) and np.isfinite(scale)):
            continue
        bucket = bucket_of(value / scale)
        text = (f"{region} {band} {value:+.1f} dB {bucket}" if kind == "power"
                else f"{band} entropy {value:+.2f} nats {bucket}" if kind == "de" else f"asymmetry {value:+.2f} {bucket}")
        items.append((abs(value / scale), kind, text))
    return items


def evidence_statement(features: EvidenceFeatures, spread, index: int, strongest: int | None = None) -> str:
    """What was measured in window `index`, as one line for a prompt (Time-LLM's prompt-as-prefix input statistics):
    every feature in `feature_keys()` order, or with `strongest` the `strongest` largest regional band-power
    deviations first (in spread units, largest first), then the DE bands (largest first) and the asymmetry.
    `spread` `(n_features,)` is each feature's SD over the training windows (it sets the magnitude words)."""
    items = evidence_items(features, spread, index)
    if strongest is not None:
        by_size = sorted(items, key=lambda item: -item[0])
        items = ([i for i in by_size if i[1] == "power"][:strongest] + [i for i in by_size if i[1] == "de"]
                 + [i for i in items if i[1] == "faa"])
    return EVIDENCE_OPENING + ("; ".join(text for _, _, text in items) or "no feature the channels support") + "."


# ---------------------------------------------------------------- claims
@dataclass(frozen=True)
class Claim:
    """One statement about a feature: `kind` ("power", "de", "faa"), `band`, `region` (power only), `direction`
    (+1 higher / right, -1 lower / left), `bucket` (one of `BUCKETS`) and the stated `value` (None if absent)."""

    kind: str
    band: str | None
    region: str | None
    direction: int
    bucket: str
    value: float | None = None
    text: str = ""

    @property
    def key(self) -> tuple:
        """What the claim is about, without what it says: duplicates share a key."""
        return (self.kind, self.band, self.region)


def bucket_of(z: float) -> str:
    """Magnitude bucket of a deviation in spread units (`BUCKET_EDGES`)."""
    return BUCKETS[int(np.searchsorted(BUCKET_EDGES, abs(z), side="right"))]


def bucket_interval(bucket: str, direction: int) -> tuple[float, float]:
    """Signed interval of spread units a claim's bucket and direction stand for (e.g. moderately lower: (-2, -1])."""
    edges = (0.0, *BUCKET_EDGES, np.inf)
    k = BUCKETS.index(bucket)
    lo, hi = edges[k], edges[k + 1]
    return (lo, hi) if direction > 0 else (-hi, -lo)


def make_claim(kind: str, value: float, spread: float, band: str | None = None, region: str | None = None) -> Claim:
    """The claim a feature `value` makes, bucketed by `spread` (the feature's SD over training windows)."""
    claim = Claim(kind, band, region, 1 if value >= 0 else -1, bucket_of(value / spread), float(value))
    return Claim(**{**claim.__dict__, "text": format_claim(claim)})


def format_claim(claim: Claim) -> str:
    """The claim in the fixed grammar, e.g. ``beta power is higher over frontal channels (strongly, +3.1 dB)``."""
    if claim.kind == "power":
        return (f"{claim.band} power is {'higher' if claim.direction > 0 else 'lower'} over {claim.region} channels "
                f"({claim.bucket}, {claim.value:+.1f} dB)")
    if claim.kind == "de":
        return (f"{claim.band} differential entropy is {'higher' if claim.direction > 0 else 'lower'} across the "
                f"scalp ({claim.bucket}, {claim.value:+.2f} nats)")
    if claim.kind == "faa":
        return (f"frontal alpha asymmetry is shifted {'right' if claim.direction > 0 else 'left'} "
                f"({claim.bucket}, {claim.value:+.2f})")
    raise ValueError(f"unknown claim kind {claim.kind!r}; use one of {CLAIM_KINDS}")


_NUMBER = r"(?P<value>[+-]?\d+(?:\.\d+)?)"
_BUCKET = rf"(?P<bucket>{'|'.join(BUCKETS)})"
_CLAIM_PATTERNS = {
    "power": re.compile(rf"(?P<band>{'|'.join(BAND_NAMES)}) power is (?P<direction>higher|lower) over "
                        rf"(?P<region>{'|'.join(REGIONS)}) channels \({_BUCKET}(?:, {_NUMBER} dB)?\)", re.IGNORECASE),
    "de": re.compile(rf"(?P<band>{'|'.join(BAND_NAMES)}) differential entropy is (?P<direction>higher|lower) across "
                     rf"the scalp \({_BUCKET}(?:, {_NUMBER} nats)?\)", re.IGNORECASE),
    "faa": re.compile(rf"frontal alpha asymmetry is shifted (?P<direction>right|left) \({_BUCKET}(?:, {_NUMBER})?\)",
                      re.IGNORECASE),
}


def parse_claims(text: str | None) -> list[Claim]:
    """Every claim written in the fixed grammar in `text`, in order of appearance."""
    found = []
    for kind, pattern in _CLAIM_PATTERNS.items():
        for m in pattern.finditer(text or ""):
            groups = m.groupdict()
            direction = 1 if groups["direction"].lower() in ("higher", "right") else -1
            value = float(groups["value"]) if groups.get("value") is not None else None
            band = groups["band"].lower() if groups.get("band") else ("alpha" if kind == "faa" else None)
            region = groups["region"].lower() if groups.get("region") else None
            found.append((m.start(), Claim(kind, band, region, direction, groups["bucket"].lower(), value, m.group(0))))
    return [claim for _, claim in sorted(found, key=lambda pair: pair[0])]


def remove_unsupported_claims(text: str | None, support: MontageSupport) -> tuple[str | None, list[Claim]]:
    """`text` without the clauses whose claim the montage cannot support, and the removed claims."""
    if not text:
        return text, []
    removed = [c for c in parse_claims(text) if not support.supports(c)]
    for claim in removed:
        # drop the clause with its separator ("; " between clauses) so the rest still reads as a list
        text = re.sub(rf"(;\s*)?{re.escape(claim.text)}(\s*;\s*)?",
                      lambda m: "; " if m.group(1) and m.group(2) else "", text, count=1)
    return re.sub(r":\s*\.", ": no claim the recorded channels support.", text).strip(), removed


__all__ = [
    "BANDS",
    "BAND_NAMES",
    "BUCKETS",
    "CLAIM_KINDS",
    "EVIDENCE_OPENING",
    "FAA_PAIRS",
    "MIN_CHANNEL_SHARE",
    "REGIONS",
    "SEED_MONTAGE",
    "Claim",
    "EvidenceFeatures",
    "MontageSupport",
    "band_power",
    "band_power_db",
    "bucket_interval",
    "bucket_of",
    "evidence_features",
    "evidence_items",
    "evidence_statement",
    "faa_pair_indices",
    "feature_keys",
    "format_claim",
    "make_claim",
    "montage_support",
    "parse_claims",
    "region_matrix",
    "region_of",
    "remove_unsupported_claims",
]
