"""Classes from self-ratings (DEAP, DREAMER): high/low valence or arousal, or the four quadrants."""

from __future__ import annotations

import numpy as np

TARGETS: tuple[str, ...] = ("valence", "arousal", "quadrant")


def rating_label_names(target: str) -> tuple[str, ...]:
    """Class names for `target`: ("low valence", "high valence"), ... or the four valence/arousal quadrants."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "quadrant":
        return ("low valence low arousal", "low valence high arousal",
                "high valence low arousal", "high valence high arousal")
    return (f"low {target}", f"high {target}")


def rating_classes(valence, arousal, target: str, threshold: float) -> np.ndarray:
    """Class index per trial: a rating above `threshold` is "high" (quadrant = 2 * high valence + high arousal)."""
    high_valence = np.asarray(valence, dtype=np.float64) > threshold
    high_arousal = np.asarray(arousal, dtype=np.float64) > threshold
    if target == "valence":
        return high_valence.astype(np.int64)
    if target == "arousal":
        return high_arousal.astype(np.int64)
    if target == "quadrant":
        return (2 * high_valence + high_arousal).astype(np.int64)
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def check_threshold(value, scale: tuple[float, float], dataset: str) -> float:
    """`value` as a float strictly inside the rating `scale`; ValueError otherwise (NaN would make one class)."""
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{dataset} label_threshold must be a number, got {value!r}") from None
    low, high = scale
    if not low <= threshold < high:  # NaN fails too
        raise ValueError(f"{dataset} label_threshold must lie in [{low:g}, {high:g}) on the {low:g}-{high:g} rating "
                         f"scale, got {value!r}; otherwise every trial falls in one class")
    return threshold


def check_ratings(ratings, scale: tuple[float, float], source: str) -> np.ndarray:
    """`ratings` as float64, refused when any is NaN or outside the dataset's rating `scale`."""
    ratings = np.asarray(ratings, dtype=np.float64)
    low, high = scale
    bad = ~((ratings >= low) & (ratings <= high))
    if bad.any():
        values = sorted(set(ratings[bad].ravel().tolist()))[:5]
        raise ValueError(f"{source}: {int(bad.sum())} ratings outside the {low:g}-{high:g} scale (e.g. {values}); "
                         "the file is corrupt or not this dataset")
    return ratings


def subtract_baseline(trial: np.ndarray, baseline: np.ndarray, sfreq: float) -> np.ndarray:
    """Remove the pre-trial baseline: the mean of the baseline's whole 1-s segments, subtracted from every
    1-s segment of the trial (`(n_channels, n_times)` each; the last partial second uses the template's start)."""
    n_second = int(round(sfreq))
    n_segments = baseline.shape[-1] // n_second
    if n_segments < 1:
        raise ValueError(f"baseline of {baseline.shape[-1]} samples is shorter than one second at {sfreq} Hz")
    template = baseline[:, : n_segments * n_second].reshape(baseline.shape[0], n_segments, n_second).mean(axis=1)
    repeats = -(-trial.shape[-1] // n_second)
    return trial - np.tile(template, repeats)[:, : trial.shape[-1]]


__all__ = ["TARGETS", "check_ratings", "check_threshold", "rating_classes", "rating_label_names",
           "subtract_baseline"]
