"""Removing evidence from EEG windows, for ERASER-style checks of explanations (DeYoung et al., ACL 2020).

An evidence item (`e2llm.label_evidence_e2llm.feature_ids`) is a band on a set of channels: ``power:alpha:frontal``
is the alpha band on the frontal channels, ``de:alpha`` the alpha band on every EEG channel, ``faa:alpha`` the alpha
band on the frontal asymmetry pairs. `item_mask` turns items into a `(n_bands, n_channels)` mask. Two ways to take a
band out of a channel, both applied in the frequency domain over the whole window (`apply_band_gains`):

* `gains_to_reference`: scale the band so its power equals the reference's (the subject's baseline): the deviation
  the evidence measured becomes 0, and nothing new is added. This is what "removing the evidence" means for features
  measured against a baseline, and the default of the checks.
* `band_stop_gains`: zero the band (a band-stop filter). The band's power then falls far below the baseline: for
  features measured against a baseline this writes new, opposite evidence rather than removing the old.

*Comprehensiveness* removes the cited items (`mask`) and *sufficiency* keeps only them (removes ``~mask``).

    >>> import numpy as np
    >>> mask = item_mask(["power:alpha:occipital"], ["O1", "Cz"])
    >>> mask.astype(int).tolist()[2]  # the alpha row: O1 only
    [1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from e2llm.eeg_evidence_features import BAND_NAMES, BANDS, faa_pair_indices, region_of
from e2llm.electrodes import canonical_channel_name
from e2llm.label_evidence_e2llm import parse_feature_id


def item_channels(item: str, channel_names: Sequence[str]) -> np.ndarray:
    """Positions of the channels an evidence item is measured on (empty when the montage lacks them)."""
    kind, _, region = parse_feature_id(item)
    if kind == "power":
        return np.array([i for i, name in enumerate(channel_names) if region_of(name) == region], dtype=int)
    if kind == "faa":
        return np.array(sorted({i for pair in faa_pair_indices(channel_names) for i in pair}), dtype=int)
    return np.array([i for i, name in enumerate(channel_names) if canonical_channel_name(name)], dtype=int)


def item_mask(items: Sequence[str], channel_names: Sequence[str]) -> np.ndarray:
    """`(n_bands, n_channels)` bool: the bands and channels the `items` are measured on."""
    mask = np.zeros((len(BAND_NAMES), len(channel_names)), dtype=bool)
    for item in items:
        _, band, _ = parse_feature_id(item)
        mask[BAND_NAMES.index(band), item_channels(item, channel_names)] = True
    return mask


def gains_to_reference(power_db: np.ndarray, reference_db: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Amplitude gains `(n, n_bands, n_channels)` that bring band power `(n, n_bands, n_channels)` dB to the reference
    `(n, n_bands, n_channels)` (or `(n_bands, n_channels)`) dB where `mask` (`(n_bands, n_channels)` or per window)
    is True, 1 elsewhere."""
    gains = 10.0 ** ((np.asarray(reference_db) - np.asarray(power_db)) / 20.0)
    return np.where(mask, gains, 1.0)


def band_stop_gains(mask: np.ndarray, n_windows: int) -> np.ndarray:
    """Gains `(n_windows, n_bands, n_channels)` that zero the masked bands (a band-stop), 1 elsewhere."""
    return np.broadcast_to(np.where(mask, 0.0, 1.0), (n_windows, *np.shape(mask)[-2:])).copy()


def apply_band_gains(windows_uv, sfreq: float, gains: np.ndarray) -> np.ndarray:
    """Windows `(n, n_channels, n_times)` with each band's Fourier coefficients (``low <= f < high``, `BANDS`) on each
    channel multiplied by `gains` `(n, n_bands, n_channels)`; frequencies outside the bands are kept. float32."""
    x = np.asarray(windows_uv, dtype=np.float64)
    gains = np.asarray(gains, dtype=np.float64)
    if x.ndim != 3 or gains.shape != (len(x), len(BANDS), x.shape[1]):
        raise ValueError(f"windows must be (n, n_channels, n_times) and gains (n, {len(BANDS)}, n_channels); got "
                         f"{x.shape} and {gains.shape}")
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sfreq)
    band_of = np.full(freqs.shape, -1)
    for b, (low, high) in enumerate(BANDS.values()):
        band_of[(freqs >= low) & (freqs < high)] = b
    per_bin = np.ones((len(x), x.shape[1], len(freqs)))
    inside = band_of >= 0
    per_bin[..., inside] = np.swapaxes(gains, 1, 2)[..., band_of[inside]]
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * per_bin, n=x.shape[-1], axis=-1).astype(np.float32)


def random_items(present: Sequence[str], cited: Sequence[str], rng: np.random.Generator) -> list[str]:
    """As many items as `cited`, drawn at random from the `present` items not cited (fewer if too few are left)."""
    pool = [item for item in present if item not in set(cited)]
    size = min(len(cited), len(pool))
    return [pool[k] for k in rng.choice(len(pool), size=size, replace=False)] if size else []


__all__ = ["apply_band_gains", "band_stop_gains", "gains_to_reference", "item_channels", "item_mask", "random_items"]
