"""Does the model abstain on what is not emotion EEG, and only there?

`non_emotion_windows` generates windows of signals that are not emotion EEG (`e2llm.processing.synthetic`:
white noise, flat, mains only, muscle-dominated, eyes-closed rest) on the evaluated montage; `abstention_report`
applies the model's abstention rule (`e2llm.label_evidence_e2llm.abstention_reason`, with the model's training
ranges) to them and to held-out emotion windows: the abstention rate per kind of input, the reasons given, and the
false-abstention rate on emotion EEG.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from e2llm.label_evidence_e2llm import abstention_reason, window_statistics
from e2llm.processing.synthetic import NON_EMOTION_KINDS, SyntheticEEG, SyntheticEEGConfig

REAL_KIND_PREFIX = "real:"


def reasons(windows_uv, sfreq: float, channel_names: Sequence[str], statistics: Mapping | None) -> list[str | None]:
    """The abstention reason (or None) of each window `(n, n_channels, n_times)` µV."""
    stats = window_statistics(windows_uv, sfreq, channel_names)
    return [abstention_reason({k: v[i] for k, v in stats.items()}, statistics) for i in range(len(stats["slope"]))]


def non_emotion_windows(channel_names: Sequence[str], sfreq: float, n_times: int, n_windows: int = 20,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """`{kind: (n_windows, n_channels, n_times) µV}` for every kind of `e2llm.processing.synthetic.NON_EMOTION_KINDS`
    (subjects 101.. of a generator seeded `seed`, never those of the data)."""
    generator = SyntheticEEG(SyntheticEEGConfig(sfreq=sfreq, channel_names=tuple(channel_names), preprocessed=True),
                             seed=seed)
    return {kind: np.stack([generator.non_emotion_trial(kind, 101 + k % 5, k, n_times) for k in range(n_windows)])
            .astype(np.float32) for kind in NON_EMOTION_KINDS}


def _summary(found: list[str | None]) -> dict:
    named = Counter(r.split(" (")[0] for r in found if r is not None)
    return {"abstained": float(np.mean([r is not None for r in found])), "n_windows": len(found),
            "reasons": dict(named.most_common())}


def abstention_report(statistics: Mapping | None, emotion_windows, sfreq: float, channel_names: Sequence[str],
                      other_inputs: Mapping[str, np.ndarray]) -> dict:
    """``{"false_abstention": share of emotion windows abstained, "emotion": {...}, "inputs": {kind: {"abstained",
    "n_windows", "reasons"}}, "mean_abstention_non_emotion"}``."""
    emotion = _summary(reasons(emotion_windows, sfreq, channel_names, statistics))
    inputs = {kind: _summary(reasons(windows, sfreq, channel_names, statistics))
              for kind, windows in other_inputs.items()}
    synthetic = [v["abstained"] for k, v in inputs.items() if not k.startswith(REAL_KIND_PREFIX)]
    return {"false_abstention": emotion["abstained"], "emotion": emotion, "inputs": inputs,
            "mean_abstention_non_emotion": float(np.mean(synthetic)) if synthetic else float("nan")}


__all__ = ["REAL_KIND_PREFIX", "abstention_report", "non_emotion_windows", "reasons"]
