"""Synthetic SEED-VII-like trials generated in memory (`e2llm prepare synthetic`).

Datasheet:
    source: `e2llm.processing.synthetic` (no files; deterministic by `seed`).
    subjects: `n_subjects` (default 2); 80 clips each with SEED-VII's clip labels and sessions.
    channels: the 62 SEED channels; rate 200 Hz; units µV.
    labels: the seven SEED-VII emotions.
"""

from __future__ import annotations

from collections.abc import Iterator

from e2llm.configuration_e2llm import SEED_VII_EMOTIONS
from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.dataset_io import EEGDatasetReader, Trial


class SyntheticReader(EEGDatasetReader):
    """Synthetic trials as a reader; one work item per subject.

    Args:
        root: ignored (there is no folder); accepted so every reader is built the same way.
        n_subjects, trial_seconds, seed: sizes and seed of `e2llm.processing.synthetic.synthetic_trials`.
        preprocessed: generate data as SEED-VII's preprocessing leaves it (True, not filtered again)
            or raw-like with line noise (False, then `e2llm prepare` filters it; clips need tens of
            seconds for the 0.1 Hz high-pass).
    """

    name = "synthetic"
    label_names = SEED_VII_EMOTIONS
    channel_names = SEED_CHANNELS

    def __init__(self, root=None, n_subjects: int = 2, trial_seconds: float = 12.0, seed: int = 0,
                 preprocessed: bool = True, effect_size: float = 1.0):
        from e2llm.processing.synthetic import SyntheticEEGConfig

        if int(n_subjects) < 1:
            raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
        self.root = root
        self.n_subjects, self.trial_seconds, self.seed = int(n_subjects), float(trial_seconds), int(seed)
        self.config = SyntheticEEGConfig(preprocessed=bool(preprocessed), effect_size=float(effect_size))

    def describe(self) -> dict:
        return {"reader": type(self).__name__, "n_subjects": self.n_subjects, "trial_seconds": self.trial_seconds,
                "seed": self.seed, "preprocessed": self.config.preprocessed, "effect_size": self.config.effect_size}

    def items(self) -> list[int]:
        return list(range(1, self.n_subjects + 1))

    def read_item(self, item: int) -> Iterator[Trial]:
        from e2llm.processing.synthetic import synthetic_trials

        yield from synthetic_trials(trial_seconds=self.trial_seconds, seed=self.seed, config=self.config,
                                    subjects=[item])


__all__ = ["SyntheticReader"]
