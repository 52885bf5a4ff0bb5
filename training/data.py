"""Data for the training stages: batch collators and small synthetic window datasets.

Collators follow TRL's pattern: `@dataclass` objects called on a list of dataset rows, returning a dict of
tensors. They run the model's own processor, so training sees exactly what inference sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from e2llm.processing.dataset_io import DATASET_UNITS, dataset_metadata
from e2llm.processing.instructions import conversation

IGNORE_INDEX = -100


def _eeg_batch(examples: Sequence[dict]) -> list[np.ndarray]:
    windows = [np.asarray(example["eeg"], dtype=np.float32) for example in examples]
    if any(w.ndim != 2 for w in windows):
        raise ValueError(f"each row's 'eeg' must be (n_channels, n_times); got shapes {[w.shape for w in windows]}")
    return windows


@dataclass
class EEGClassificationCollator:
    """Stage-1 batches: EEG windows through the feature extractor, plus class ids.

    Input rows: ``eeg`` `(n_channels, n_times)` in `units`, the label column (``emotion``), optionally ``subject``.
    Output: ``eeg_values`` `(batch, n_channels, window_samples)`, ``eeg_channel_ids``, ``eeg_channel_mask``
    `(batch, n_channels)`, ``labels`` `(batch,)` and, with `subject_ids`, ``subject_labels`` `(batch,)` (index of
    each row's subject in `subject_ids`, for the adversarial term).

    Each row must give exactly one window: rows are windows of a prepared dataset, whose length equals the feature
    extractor's window. `apply_filters=False` because prepared windows are already filtered at trial level (filtering
    a 4-s window again would add edge effects the pipeline never sees).
    """

    feature_extractor: object
    sampling_rate: float
    channel_names: Sequence[str]
    units: str = DATASET_UNITS
    label_column: str = "emotion"
    subject_ids: Sequence[int] | None = None
    apply_filters: bool = False

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        features = self.feature_extractor(
            _eeg_batch(examples),
            sampling_rate=self.sampling_rate,
            channel_names=list(self.channel_names),
            units=self.units,
            apply_filters=self.apply_filters,
            return_tensors="pt",
        )
        if int(features["eeg_num_windows"].max()) != 1 or len(features["eeg_values"]) != len(examples):
            raise ValueError(
                "each row must hold exactly one model window; got "
                f"{features['eeg_num_windows'].tolist()} windows per row (window length differs from the model's?)"
            )
        batch = {name: features[name] for name in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
        batch["labels"] = torch.tensor([int(example[self.label_column]) for example in examples], dtype=torch.long)
        if "evidence_targets" in examples[0]:  # stage 1 with an evidence readout (`e2llm.training.stage1`)
            batch["evidence_targets"] = torch.tensor(np.stack([np.asarray(e["evidence_targets"], dtype=np.float32)
                                                               for e in examples]))
        if self.subject_ids is not None:
            index = {int(s): i for i, s in enumerate(self.subject_ids)}
            # subjects outside the training set (evaluation rows) get the ignore index
            batch["subject_labels"] = torch.tensor([index.get(int(example["subject"]), IGNORE_INDEX)
                                                    for example in examples])
        return batch


@dataclass
class EEGChatCollator:
    """Stage-2/3 batches: one-window conversations tokenised by the E2LLM processor, with loss on the answer only.

    Input rows: ``eeg`` `(n_channels, n_times)` in `units`, ``prompt`` (user text) and ``completion`` (assistant
    text, e.g. from `e2llm.processing.instructions.build_instructions`).
    Output: ``input_ids``, ``attention_mask``, ``labels`` `(batch, seq_len)` right-padded, with ``labels`` equal to
    ``input_ids`` on the assistant's answer and its closing ``<|im_end|>`` and -100 on the prompt (system/user turns,
    the ``<|im_start|>assistant`` header, the EEG tokens), on the answer's optional ``prefill`` (its given start)
    and on padding; ``eeg_values`` `(batch, n_channels,
    window_samples)`, ``eeg_channel_ids``, ``eeg_channel_mask`` `(batch, n_channels)`.

    The prompt is the chat template rendered with ``add_generation_prompt=True`` (exactly what `generate` sees) and
    the answer is tokenised separately and appended, so the boundary between the two never depends on BPE merges.
    `max_length` truncates the answer's end, never the EEG tokens. With ``with_completion=False`` the rows get only
    the prompt, left-padded, for generation.
    """

    processor: object
    sampling_rate: float
    channel_names: Sequence[str]
    units: str = DATASET_UNITS
    max_length: int | None = None
    apply_filters: bool = False
    with_completion: bool = True

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        processor = self.processor
        prompts = [
            processor.apply_chat_template(conversation(example["prompt"]), add_generation_prompt=True)
            for example in examples
        ]
        encoded = processor(
            text=prompts,
            eeg=_eeg_batch(examples),
            sampling_rate=self.sampling_rate,
            channel_names=list(self.channel_names),
            units=self.units,
            apply_filters=self.apply_filters,
            padding=False,
            return_tensors=None,
            add_special_tokens=False,
        )
        eeg = {name: torch.as_tensor(np.asarray(encoded[name])) for name in ("eeg_values", "eeg_channel_ids",
                                                                          "eeg_channel_mask")}
        if len(eeg["eeg_values"]) != len(examples):
            raise ValueError("each row must hold exactly one model window (window length differs from the model's?)")
        tokenizer = processor.tokenizer
        pad_id = tokenizer.pad_token_id
        if not self.with_completion:
            padded = tokenizer.pad({"input_ids": encoded["input_ids"]}, padding=True, padding_side="left",
                                   return_tensors="pt")
            return {"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"], **eeg}
        answers = tokenizer(
            [example["completion"] + tokenizer.eos_token for example in examples], add_special_tokens=False
        )["input_ids"]
        rows, targets = [], []
        for example, prompt_ids, answer_ids in zip(examples, encoded["input_ids"], answers):
            given = _prefill_length(tokenizer, example.get("prefill"), answer_ids)
            prompt_ids, answer_ids = list(prompt_ids) + answer_ids[:given], answer_ids[given:]
            if self.max_length is not None:
                room = self.max_length - len(prompt_ids)
                if room < 1:
                    raise ValueError(f"max_length={self.max_length} leaves no room for the answer after a prompt of "
                                     f"{len(prompt_ids)} tokens")
                answer_ids = answer_ids[:room]
            rows.append(list(prompt_ids) + list(answer_ids))
            targets.append([IGNORE_INDEX] * len(prompt_ids) + list(answer_ids))
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, (row, target) in enumerate(zip(rows, targets)):
            input_ids[i, : len(row)] = torch.tensor(row)
            labels[i, : len(row)] = torch.tensor(target)
            attention_mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, **eeg}


def _prefill_length(tokenizer, prefill: str | None, answer_ids: list[int]) -> int:
    """How many leading answer tokens are the row's ``prefill`` (given to the model, kept out of the loss)."""
    if not prefill:
        return 0
    ids = tokenizer(prefill, add_special_tokens=False)["input_ids"]
    if list(answer_ids[: len(ids)]) != ids:
        raise ValueError(f"the completion does not start with the tokens of its prefill {prefill!r}")
    return len(ids)


def collator_kwargs(dataset) -> dict:
    """`sampling_rate`, `channel_names` and `units` of a prepared dataset, for the collators."""
    metadata = dataset_metadata(dataset)
    return {
        "sampling_rate": float(metadata["sampling_rate"]),
        "channel_names": list(metadata["channel_names"]),
        "units": metadata["units"],
    }


def split_dataset(dataset, split: str = "trial", test_size: float = 0.25, fold: int = 0, seed: int = 0):
    """`(train, test)` selections of a prepared dataset (test None for split "none"); whole trials (or subjects) go
    to one side, never windows. Resolved by `e2llm.training.evaluation.splits` (the one place splits are made)."""
    from e2llm.training.evaluation.splits import SplitSpec, resolve_split, select

    indices = resolve_split(dataset, SplitSpec(kind=split, fold=fold, test_size=test_size, seed=seed))
    return dataset.select(indices.train), select(dataset, indices.test)


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
    """A small prepared-format dataset of synthetic windows (µV) from `e2llm.processing.synthetic`, in memory.

    `n_subjects` x `clips_per_class` trials per label, each cut into non-overlapping windows; for tests, benchmarks
    and demos that should not touch the disk layout of a real dataset.
    """
    from e2llm.configuration_e2llm import SEED_VII_EMOTIONS
    from e2llm.electrodes import SEED_CHANNELS
    from e2llm.processing.dataset_io import windows_to_dataset
    from e2llm.processing.features import window_trial
    from e2llm.processing.synthetic import SyntheticEEG, SyntheticEEGConfig

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


__all__ = [
    "IGNORE_INDEX",
    "EEGChatCollator",
    "EEGClassificationCollator",
    "collator_kwargs",
    "split_dataset",
    "synthetic_window_dataset",
]
