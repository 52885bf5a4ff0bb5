"""Small prepared-format datasets of synthetic windows, in memory: for tests, benchmarks and demos that should not
touch the on-disk layout of a real dataset. The EEG comes from `e2llm.processing.synthetic.SyntheticEEG` (classes
differ the way real EEG does) and is marked synthetic in the metadata."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from e2llm.configuration_e2llm import SEED_VII_EMOTIONS
from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.dataset_io import windows_to_dataset
from e2llm.processing.features import window_trial
from e2llm.processing.synthetic import SyntheticEEG, SyntheticEEGConfig


def synthetic_window_dataset(
    n_subjects: int = 2,
    clips_per_class: int = 2,
    trial_seconds: float = 16.0,
    window_seconds: float = 4.0,
    channel_names: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    seed: int = 0,
    effect_size: float = 1.0,
):
    """A small prepared-format dataset of synthetic windows (µV), in memory.

    `n_subjects` x `clips_per_class` trials per label, each cut into non-overlapping windows; for tests, benchmarks
    and demos that should not touch the disk layout of a real dataset.
    """
    channels = tuple(channel_names or SEED_CHANNELS)
    labels = tuple(label_names or SEED_VII_EMOTIONS)
    config = SyntheticEEGConfig(channel_names=channels, label_names=labels, preprocessed=True,
                                effect_size=effect_size, blink_rate_hz=0.0)
    generator = SyntheticEEG(config, seed=seed)
    n_times = int(round(trial_seconds * config.sfreq))

    def chunks():
        for subject in range(1, n_subjects + 1):
            for clip in range(clips_per_class * len(labels)):
                label = clip % len(labels)
                data = generator.trial(subject, clip + 1, label, n_times)
                windows = window_trial(data, config.sfreq, window_seconds)
                yield {"eeg": windows, "start": np.arange(len(windows)) * window_seconds, "emotion": label,
                       "subject": subject, "session": 1, "trial": clip + 1}

    metadata = {
        "dataset": "synthetic", "sampling_rate": config.sfreq, "channel_names": list(channels), "units": "uV",
        "label_column": "emotion", "label_names": list(labels), "window_seconds": window_seconds,
        "stride_seconds": window_seconds, "preprocessing": {"synthetic": "preprocessed=True, no blinks"},
        "source": {"generator": "e2llm.processing.synthetic.SyntheticEEG", "seed": seed},
    }
    return windows_to_dataset(chunks(), metadata)


__all__ = ["synthetic_window_dataset"]
