"""One internal form for an EEG recording, whatever file or dataset it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Recording:
    """A continuous multichannel EEG recording.

    Attributes:
        data: `(n_channels, n_times)` float64 samples, in `units`.
        sfreq: sampling rate in Hz.
        ch_names: EEG channel names in 10-05 spelling (see `e2llm.electrodes`).
        units: "V" (MNE's convention) or "uV" (the SEED .mat files).
        annotations: `(onset_seconds, duration_seconds, description)` triples.
        provenance: what produced these samples (source file, preprocessing steps and parameters).
    """

    data: np.ndarray
    sfreq: float
    ch_names: list[str]
    units: str
    annotations: list[tuple[float, float, str]] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
