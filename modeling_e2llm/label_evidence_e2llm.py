"""Which measured evidence speaks for a label, and which windows are no emotion EEG at all.

**Class signatures.** Each label's mean evidence feature over its training windows, in spread units (the feature's
SD over all training windows), with the pooled within-class SD of each feature (`class_signatures`): stored with a
model in its processor's evidence statistics (``statistics["signatures"]``).

**Label support.** Under the signatures' Gaussian model (class means, shared within-class SD per feature), the
measured feature ``z`` of one item speaks for label ``a`` over label ``b`` by its log-likelihood ratio

    support = (mu_a - mu_b) / sd**2 * (z - (mu_a + mu_b) / 2)

(positive: the item is closer to ``a``'s signature than to ``b``'s). `label_support` gives every item's support
for a label against its most confusable alternative (the label whose signature the window's evidence fits best after
the label itself) and how typical the item's value is of the label (``exp(-((z - mu_a) / sd)**2 / 2)``, 1 at the
label's mean). `select_label_evidence` picks the few items that favour the label against every alternative (the
evidence a rationale cites), and `evidence_label` is the label the cited items point to (for label consistency).
A rationale opens with one sentence in a fixed grammar, ``The evidence favours sadness over fear.`` (``only partly
favours`` when the window's whole evidence fits another label better), written by `format_label_support` and read
by `parse_label_support`; the items it then cites are evidence for that label (`items_for_label`: each alone favours
it over every alternative).

**Abstention.** `window_statistics` measures, per window, what separates EEG from other signals (amplitude, line
noise, high-frequency muscle activity, the slope of the spectrum, posterior alpha); `abstention_reason` turns one
window's statistics into an "insufficient evidence" reason, against the ranges of the training windows
(``statistics["abstention"]``, from `abstention_ranges`) where a model ships them.

Only numpy and scipy: this file travels with a model as remote code.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.signal import welch

from .eeg_evidence_features import Claim, feature_keys, format_claim, make_claim, region_of

MIN_WITHIN_SD = 0.05  # floor of a feature's within-class SD in spread units (a constant feature supports nothing)
MAX_CITED_ITEMS = 3


# ---------------------------------------------------------------- feature ids
def feature_id(kind: str, band: str | None, region: str | None) -> str:
    """``power:alpha:frontal``, ``de:alpha``, ``faa:alpha``: the id of one evidence feature."""
    return ":".join(part for part in (kind, band, region) if part is not None)


def feature_ids() -> list[str]:
    """The id of every evidence feature, in the order of `e2llm.eeg_evidence_features.feature_keys()`."""
    return [feature_id(*key) for key in feature_keys()]


def parse_feature_id(item: str) -> tuple[str, str | None, str | None]:
    """`(kind, band, region)` of a feature id (inverse of `feature_id`)."""
    parts = str(item).split(":")
    key = (parts + [None, None])[:3] if parts[0] == "power" else (parts[0], parts[1] if len(parts) > 1 else None, None)
    if tuple(key) not in feature_keys():
        raise ValueError(f"unknown evidence feature id {item!r}; ids look like {feature_ids()[:2]} or 'faa:alpha'")
    return tuple(key)


# ---------------------------------------------------------------- signatures
def _finite_or_none(values) -> list:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).ravel()]


def class_signatures(z, labels, label_names: Sequence[str], ids: Sequence[str] | None = None) -> dict:
    """Signatures from training windows' evidence `z` `(n_windows, n_features)` in spread units (NaN where a feature
    is absent) and their labels `(n_windows,)` (indices into `label_names`).

    Returns ``{"labels", "feature_ids", "mean_z" (n_labels x n_features), "within_sd" (n_features), "n_windows"
    (per label)}``, JSON-ready (None for a feature no window has); a label without windows gets no mean (None)."""
    z, labels = np.asarray(z, dtype=np.float64), np.asarray(labels).astype(int)
    ids = list(ids) if ids is not None else feature_ids()
    if z.ndim != 2 or z.shape[1] != len(ids) or len(z) != len(labels):
        raise ValueError(f"z must be (n_windows, {len(ids)} features) with one label per window; got {z.shape} and "
                         f"{labels.shape}")
    if len(z) == 0 or labels.min() < 0 or labels.max() >= len(label_names):
        raise ValueError(f"signatures need windows with labels in 0..{len(label_names) - 1}")
    counts = np.bincount(labels, minlength=len(label_names))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # features no window has (regions without channels): NaN
        means = np.stack([np.nanmean(z[labels == k], axis=0) if counts[k] else np.full(len(ids), np.nan)
                          for k in range(len(label_names))])
        residual = z - means[labels]
        within = np.sqrt(np.nanmean(residual**2, axis=0))
    within = np.where(np.isfinite(within), np.maximum(within, MIN_WITHIN_SD), np.nan)
    return {"labels": [str(n) for n in label_names], "feature_ids": ids,
            "mean_z": [_finite_or_none(row) for row in means], "within_sd": _finite_or_none(within),
            "n_windows": [int(c) for c in counts]}


def _signature_arrays(signatures: Mapping) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """`(labels, feature ids, mean (n_labels, n_features), sd (n_features,))` with NaN for None."""
    missing = [k for k in ("labels", "mean_z") if k not in signatures]
    if missing:
        raise ValueError(f"signatures lack {missing}: pass statistics['signatures'] of a model's evidence statistics")
    labels = [str(n) for n in signatures["labels"]]
    ids = list(signatures.get("feature_ids") or feature_ids())
    mean = np.array([[np.nan if v is None else v for v in row] for row in signatures["mean_z"]], dtype=np.float64)
    sd = np.array([np.nan if v is None else v for v in signatures.get("within_sd") or [1.0] * len(ids)],
                  dtype=np.float64)
    if mean.shape != (len(labels), len(ids)) or sd.shape != (len(ids),):
        raise ValueError(f"signatures hold mean_z {mean.shape} and within_sd {sd.shape} for {len(labels)} labels and "
                         f"{len(ids)} features")
    return labels, ids, mean, sd


def check_signatures(signatures: Mapping) -> dict:
    """`signatures` as a plain dict after checking their shapes (labels, feature ids, one mean per label and
    feature, one within-class SD per feature); ValueError naming what is wrong."""
    if not isinstance(signatures, Mapping):
        raise ValueError(f"signatures must be a dict (class_signatures' output), got {type(signatures).__name__}")
    labels, ids, _, _ = _signature_arrays(signatures)
    unknown = sorted(set(ids) - set(feature_ids()))
    if unknown:
        raise ValueError(f"signatures hold unknown feature ids {unknown[:5]}; ids look like {feature_ids()[:2]}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"signatures name a label twice: {labels}")
    return dict(signatures)


def z_vector(z_features, ids: Sequence[str]) -> np.ndarray:
    """`(n_features,)` evidence in spread units in the order of `ids`, from an array in that order or a mapping
    ``{feature id: z or None}`` (missing ids and None are NaN)."""
    if isinstance(z_features, Mapping):
        return np.array([np.nan if z_features.get(i) is None else float(z_features[i]) for i in ids])
    z = np.asarray(z_features, dtype=np.float64).ravel()
    if z.shape != (len(ids),):
        raise ValueError(f"z_features must hold {len(ids)} features (the signatures' feature_ids), got {z.shape}")
    return z


def _label_index(labels: list[str], label: str, what: str = "label") -> int:
    if label not in labels:
        raise ValueError(f"{what} {label!r} is not one of the signatures' labels {labels}")
    return labels.index(label)


def _log_likelihoods(z: np.ndarray, mean: np.ndarray, sd: np.ndarray, items: np.ndarray) -> np.ndarray:
    """`(n_labels,)` Gaussian log-likelihood (up to a constant) of the features `items` (bool mask)."""
    use = items & np.isfinite(z) & np.isfinite(sd)
    terms = -0.5 * ((z[use] - mean[:, use]) / sd[use]) ** 2
    return np.where(np.isfinite(mean[:, use]), terms, -np.inf).sum(axis=1) if use.any() else np.zeros(len(mean))


def label_log_likelihoods(z_features, signatures: Mapping, items: Sequence[str] | None = None) -> dict[str, float]:
    """Each label's log-likelihood of the window's evidence (or of the features `items` only) under the signatures."""
    labels, ids, mean, sd = _signature_arrays(signatures)
    z = z_vector(z_features, ids)
    mask = np.ones(len(ids), bool) if items is None else np.isin(ids, list(items))
    return dict(zip(labels, map(float, _log_likelihoods(z, mean, sd, mask))))


def most_confusable(z_features, signatures: Mapping, label: str) -> str:
    """The alternative to `label` that the window's whole evidence fits best."""
    scores = label_log_likelihoods(z_features, signatures)
    _label_index(list(scores), label)
    others = {name: value for name, value in scores.items() if name != label}
    if not others:
        raise ValueError("label support needs signatures of at least two labels")
    return max(others, key=others.get)


def _support(z, mean, sd, a: int, b: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        support = (mean[a] - mean[b]) / sd**2 * (z - (mean[a] + mean[b]) / 2)
    return np.where(np.isfinite(support), support, np.nan)


def label_support(z_features, signatures: Mapping, label: str, against: str | None = None) -> list[dict]:
    """Per measured item, ``{"item", "support", "typicality", "against"}``, largest support first: how much the item
    speaks for `label` over `against` (default: `most_confusable`), and how typical its value is of `label`."""
    labels, ids, mean, sd = _signature_arrays(signatures)
    z = z_vector(z_features, ids)
    a = _label_index(labels, label)
    against = most_confusable(z, signatures, label) if against is None else against
    b = _label_index(labels, against, "against")
    support = _support(z, mean, sd, a, b)
    with np.errstate(invalid="ignore"):
        typicality = np.exp(-0.5 * ((z - mean[a]) / sd) ** 2)
    rows = [{"item": ids[k], "support": float(support[k]), "typicality": float(typicality[k]), "against": against}
            for k in np.flatnonzero(np.isfinite(support))]
    return sorted(rows, key=lambda row: -row["support"])


def select_label_evidence(z_features, signatures: Mapping, label: str, max_items: int = MAX_CITED_ITEMS) -> dict:
    """The items a rationale for `label` cites: greedily, up to `max_items` items with positive support against the
    most confusable alternative, each step taking the item that most raises the smallest margin of `label` over
    every alternative (restricted to the cited items).

    Returns ``{"items": [ids], "against": label, "margin": float (smallest margin of the cited items; -inf when
    none is cited), "favoured": bool (the window's whole evidence fits `label` best)}``."""
    labels, ids, mean, sd = _signature_arrays(signatures)
    z = z_vector(z_features, ids)
    a = _label_index(labels, label)
    totals = _log_likelihoods(z, mean, sd, np.ones(len(ids), bool))
    against = most_confusable(z, signatures, label)
    versus = _support(z, mean, sd, a, labels.index(against))
    candidates = [k for k in np.argsort(-np.nan_to_num(versus, nan=-np.inf)) if versus[k] > 0]
    others = [b for b in range(len(labels)) if b != a and np.isfinite(mean[b]).any()]
    per_item = np.nan_to_num(np.stack([_support(z, mean, sd, a, b) for b in others]), nan=0.0)
    chosen, margin, running = [], -np.inf, np.zeros(len(others))
    for _ in range(max_items):
        margins = {k: float(np.min(running + per_item[:, k])) for k in candidates if k not in chosen}
        best = max(margins, key=margins.get, default=None)
        if best is None or margins[best] <= margin:
            break
        chosen.append(best)
        running, margin = running + per_item[:, best], margins[best]
    return {"items": [ids[k] for k in chosen], "against": against, "margin": margin,
            "favoured": bool(totals[a] >= totals.max())}


def items_for_label(z_features, signatures: Mapping, label: str) -> list[str]:
    """The measured items that each, alone, favour `label` over every other label of the signatures (support
    positive against each): any of them cited together point to `label` (`evidence_label`), since their supports
    add up."""
    labels, ids, mean, sd = _signature_arrays(signatures)
    z = z_vector(z_features, ids)
    a = _label_index(labels, label)
    others = [b for b in range(len(labels)) if b != a and np.isfinite(mean[b]).any()]
    if not others:
        return []
    support = np.stack([_support(z, mean, sd, a, b) for b in others])
    with np.errstate(invalid="ignore"):
        alone = np.isfinite(support).all(axis=0) & (support > 0).all(axis=0)
    return [ids[k] for k in np.flatnonzero(alone)]


def evidence_label(z_features, signatures: Mapping, items: Sequence[str]) -> str | None:
    """The label the features `items` of the window point to (largest log-likelihood of those features alone);
    None when no item is measured."""
    labels, ids, mean, sd = _signature_arrays(signatures)
    z = z_vector(z_features, ids)
    mask = np.isin(ids, list(items)) & np.isfinite(z)
    if not mask.any():
        return None
    return labels[int(np.argmax(_log_likelihoods(z, mean, sd, mask)))]


# ---------------------------------------------------------------- rationale grammar
SUPPORT_FAVOURS, SUPPORT_PARTLY = "favours", "only partly favours"


def format_label_support(label: str, against: str, favoured: bool = True) -> str:
    """``The evidence favours sadness over fear`` (``only partly favours`` when the window's whole evidence fits
    another label better than `label`): the sentence a rationale opens with, before the evidence it cites."""
    return f"The evidence {SUPPORT_FAVOURS if favoured else SUPPORT_PARTLY} {label} over {against}"


def parse_label_support(text: str | None, label_names: Sequence[str]) -> dict | None:
    """``{"label", "against", "favoured", "text"}`` of the last label-support sentence in `text` (labels matched
    case-insensitively against `label_names`; `text` the sentence as written; the closing ``so the evidence favours
    X over Y`` of earlier models' rationales too), or None when there is none."""
    names = "|".join(re.escape(n) for n in sorted(label_names, key=len, reverse=True))
    pattern = re.compile(rf"(?:so )?the evidence (?P<strength>{SUPPORT_FAVOURS}|{SUPPORT_PARTLY}) (?P<label>{names}) "
                         rf"over (?P<against>{names})\b", re.IGNORECASE)
    matches = list(pattern.finditer(text or ""))
    if not matches:
        return None
    found = matches[-1]
    canonical = {n.lower(): n for n in label_names}
    return {"label": canonical[found["label"].lower()], "against": canonical[found["against"].lower()],
            "favoured": found["strength"].lower() == SUPPORT_FAVOURS, "text": found.group(0)}


def claim_words(claim: Claim) -> str:
    """A claim in the fixed grammar without its number (the pipeline renders numbers from measurement), e.g.
    ``alpha power is lower over frontal channels (strongly)``."""
    return re.sub(r", [+-]?\d+(?:\.\d+)?(?: dB| nats)?\)$", ")", format_claim(claim))


def item_claim(item: str, value: float, spread: float) -> Claim:
    """The claim an item's measured `value` (spread `spread`) makes."""
    kind, band, region = parse_feature_id(item)
    return make_claim(kind, value, spread, band=band, region=region)


# ---------------------------------------------------------------- abstention
FLAT_UV = 0.5  # a channel whose SD is below this is flat
MIN_EEG_UV = 1.0  # below this RMS (after removing line noise), nothing but line noise is left
LINE_FREQS = (50.0, 60.0)
MUSCLE_RATIO = 1.0  # more power at 30-95 Hz than at 1-30 Hz on a channel: muscle activity dominates it
MUSCLE_CHANNEL_SHARE = 0.3
# What counts as EEG-like whatever a model was trained on (a model's training ranges can only widen these): spectral
# slope at 2-20 Hz, and posterior alpha over the rest of the 2-30 Hz power (eyes open).
DEFAULT_RANGES = {"slope": (-3.0, -0.8), "alpha_ratio": (0.0, 1.0)}
SLOPE_MARGIN = 0.35  # beyond the training range of the spectral slope by this much: not EEG-like
ALPHA_FACTOR = 1.5  # posterior alpha over the rest of 2-30 Hz this many times the training maximum: eyes closed


def _band_power(freqs, psd, lo, hi, exclude=()):
    mask = (freqs >= lo) & (freqs < hi)
    for centre in exclude:
        mask &= np.abs(freqs - centre) > 2.0
    return psd[..., mask].sum(-1) * (freqs[1] - freqs[0])


def window_statistics(windows_uv, sfreq: float, channel_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """What separates EEG from other signals, per window of `(n_windows, n_channels, n_times)` µV (or one window):
    ``rms_uv`` (median channel SD), ``flat_share`` (channels with SD below `FLAT_UV`), ``line_share`` (power within
    1 Hz of 50 or 60 Hz over all power from 1 Hz), ``residual_rms_uv`` (median channel RMS without line noise),
    ``muscle_share`` (channels with more power at 30-95 Hz than at 1-30 Hz), ``slope`` (median log-log slope of the
    spectrum at 2-20 Hz, alpha excluded; EEG about -1 to -2.5, white noise 0) and ``alpha_ratio`` (median over
    posterior channels, or all without one, of the 8-13 Hz power over the rest of the 2-30 Hz power). Compute it on the signal as
    recorded (before notch and band-pass filters), each `(n_windows,)`."""
    x = np.asarray(windows_uv, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[-1] < int(sfreq):
        raise ValueError(f"windows must be (n_windows, n_channels, n_times) of at least 1 s, got shape {x.shape}")
    freqs, psd = welch(x - x.mean(-1, keepdims=True), fs=sfreq, nperseg=int(min(x.shape[-1], round(2 * sfreq))), axis=-1)
    nyquist = sfreq / 2
    lines = [f for f in LINE_FREQS if f + 1 < nyquist]
    total = _band_power(freqs, psd, 1.0, nyquist)
    line = max((_band_power(freqs, psd, f - 1.0, f + 1.0) for f in lines), key=np.sum, default=np.zeros(total.shape))
    residual = _band_power(freqs, psd, 1.0, nyquist, exclude=[f * k for f in lines for k in (1, 2)])
    high = _band_power(freqs, psd, 30.0, min(95.0, nyquist), exclude=lines)
    low = _band_power(freqs, psd, 1.0, 30.0)
    fit = (freqs >= 2) & (freqs <= 20) & ~((freqs >= 7) & (freqs <= 14))
    logf, logp = np.log10(freqs[fit]), np.log10(np.maximum(psd[..., fit], 1e-20))
    slope = ((logp - logp.mean(-1, keepdims=True)) @ (logf - logf.mean())) / np.sum((logf - logf.mean()) ** 2)
    posterior = np.array([region_of(n) in ("parietal", "occipital") for n in channel_names or []], dtype=bool)
    picks = posterior if posterior.any() else np.ones(x.shape[1], bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = _band_power(freqs, psd, 8.0, 13.0)
        alpha = alpha / np.maximum(_band_power(freqs, psd, 2.0, 30.0) - alpha, 1e-20)
        return {"rms_uv": np.median(x.std(-1), axis=1), "flat_share": np.mean(x.std(-1) < FLAT_UV, axis=1),
                "line_share": np.sum(line, 1) / np.maximum(np.sum(total, 1), 1e-20),
                "residual_rms_uv": np.median(np.sqrt(residual), axis=1),
                "muscle_share": np.mean(high > MUSCLE_RATIO * low, axis=1), "slope": np.median(slope, axis=1),
                "alpha_ratio": np.nanmedian(alpha[:, picks], axis=1)}


def abstention_ranges(stats: Mapping[str, np.ndarray], low: float = 0.005, high: float = 0.995) -> dict:
    """Training ranges (`low` and `high` quantiles over training windows) of the statistics `abstention_reason`
    compares against, for ``statistics["abstention"]``."""
    out = {"quantiles": [low, high], "n_windows": int(len(np.asarray(stats["slope"])))}
    for name in ("slope", "alpha_ratio"):
        values = np.asarray(stats[name], dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            raise ValueError(f"no finite {name} among the training windows")
        out[name] = [float(np.quantile(values, low)), float(np.quantile(values, high))]
    return out


def _accepted_ranges(trained: Mapping) -> dict[str, tuple[float, float]]:
    """`DEFAULT_RANGES` widened to a model's training ranges (never narrowed: a model trained on a narrow set, one
    lab or synthetic data, must not refuse other labs' EEG for being unlike it)."""
    out = {}
    for name, (lo, hi) in DEFAULT_RANGES.items():
        t_lo, t_hi = trained.get(name, (lo, hi))
        out[name] = (min(lo, t_lo), max(hi, t_hi))
    return out


def abstention_reason(window_stats: Mapping[str, float], statistics: Mapping | None = None) -> str | None:
    """Why a window is not emotion EEG (one window's `window_statistics`, as floats), or None: ``flat signal``,
    ``line noise dominates``, ``muscle artefact dominates``, ``not like the training EEG (...)``. `statistics`: the
    model's evidence statistics, whose ``abstention`` ranges (training windows) widen `DEFAULT_RANGES`."""
    s = {k: float(np.asarray(v).ravel()[0]) if np.size(v) else float("nan") for k, v in window_stats.items()}
    ranges = _accepted_ranges((statistics or {}).get("abstention") or {})
    if s["flat_share"] > 0.5 or s["rms_uv"] < FLAT_UV:
        return "flat signal"
    if s["line_share"] > 0.5 and s["residual_rms_uv"] < MIN_EEG_UV:
        return "line noise dominates"
    lo, hi = ranges["slope"]
    if s["slope"] > hi + SLOPE_MARGIN:  # white noise: as much power at 20 Hz as at 2 Hz
        return f"not like the training EEG (spectrum flat like noise: slope {s['slope']:.2f}, EEG-like {lo:.2f} to {hi:.2f})"
    if s["muscle_share"] >= MUSCLE_CHANNEL_SHARE:
        return f"muscle artefact dominates ({s['muscle_share']:.0%} of the channels)"
    if s["slope"] < lo - SLOPE_MARGIN:
        return f"not like the training EEG (spectrum too steep: slope {s['slope']:.2f}, EEG-like {lo:.2f} to {hi:.2f})"
    if s["alpha_ratio"] > ALPHA_FACTOR * ranges["alpha_ratio"][1]:
        return (f"not like the training EEG (posterior alpha {s['alpha_ratio']:.1f} times the other 2-30 Hz power, "
                f"EEG-like at most {ranges['alpha_ratio'][1]:.1f}: eyes-closed rest?)")
    return None


__all__ = [
    "MAX_CITED_ITEMS",
    "abstention_ranges",
    "abstention_reason",
    "check_signatures",
    "claim_words",
    "class_signatures",
    "evidence_label",
    "feature_id",
    "feature_ids",
    "format_label_support",
    "item_claim",
    "label_log_likelihoods",
    "label_support",
    "most_confusable",
    "parse_feature_id",
    "parse_label_support",
    "select_label_evidence",
    "window_statistics",
    "z_vector",
]
