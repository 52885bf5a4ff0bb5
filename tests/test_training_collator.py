"""The chat collator: only the assistant's answer carries labels (checked by decoding), padding and EEG inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2llm.processing.instructions import build_instructions, conversation
from e2llm.training.data import (
    IGNORE_INDEX,
    EEGChatCollator,
    EEGClassificationCollator,
    collator_kwargs,
    synthetic_window_dataset,
)

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "P4", "O1", "O2", "T7"]


@pytest.fixture(scope="module")
def rows():
    windows = synthetic_window_dataset(n_subjects=1, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)
    return build_instructions(windows, tasks=("emotion", "multitask", "describe"), seed=1)


def test_labels_cover_exactly_the_answer(tiny_e2llm, rows):
    _, processor = tiny_e2llm
    collator = EEGChatCollator(processor, **collator_kwargs(rows))
    examples = [rows[i] for i in range(4)]
    batch = collator(examples)
    tokenizer = processor.tokenizer
    assert batch["eeg_values"].shape == (4, len(CHANNELS), 800)
    for i, example in enumerate(examples):
        labelled = batch["labels"][i] != IGNORE_INDEX
        # the labelled tokens decode to the answer and its end-of-turn token, nothing else
        assert tokenizer.decode(batch["input_ids"][i][labelled]) == example["completion"] + "<|im_end|>"
        assert torch.equal(batch["labels"][i][labelled], batch["input_ids"][i][labelled])
        # the unlabelled part is the prompt as generation sees it (chat template + EEG tokens), then padding
        n_real = int(batch["attention_mask"][i].sum())
        assert not labelled[n_real:].any() and (batch["input_ids"][i][n_real:] == tokenizer.pad_token_id).all()
        prompt = tokenizer.decode(batch["input_ids"][i][:n_real][~labelled[:n_real]])
        expected = processor.apply_chat_template(conversation(example["prompt"]), add_generation_prompt=True)
        assert prompt == expected.replace("<|eeg|>", "<|eeg|>" * processor.num_eeg_tokens)
        # prompt + answer is the full conversation rendered by the chat template
        full = processor.apply_chat_template(conversation(example["prompt"], example["completion"]))
        assert prompt + example["completion"] + "<|im_end|>\n" == full.replace(
            "<|eeg|>", "<|eeg|>" * processor.num_eeg_tokens)
    assert (batch["attention_mask"][:, 0] == 1).all()  # right padding for training


def test_max_length_truncates_the_answer_not_the_eeg(tiny_e2llm, rows):
    _, processor = tiny_e2llm
    full = EEGChatCollator(processor, **collator_kwargs(rows))([rows[0]])
    prompt_len = int((full["labels"][0] == IGNORE_INDEX).sum())
    short = EEGChatCollator(processor, max_length=prompt_len + 5, **collator_kwargs(rows))([rows[0]])
    assert short["input_ids"].shape[1] == prompt_len + 5
    assert int((short["input_ids"] == processor.eeg_token_id).sum()) == processor.num_eeg_tokens
    with pytest.raises(ValueError, match="leaves no room"):
        EEGChatCollator(processor, max_length=prompt_len, **collator_kwargs(rows))([rows[0]])


def test_prompt_only_batches_are_left_padded(tiny_e2llm, rows):
    _, processor = tiny_e2llm
    batch = EEGChatCollator(processor, with_completion=False, **collator_kwargs(rows))([rows[0], rows[2]])
    assert "labels" not in batch and (batch["attention_mask"][:, -1] == 1).all()


def test_classification_collator_and_window_length_check(tiny_e2llm, rows):
    _, processor = tiny_e2llm
    collator = EEGClassificationCollator(processor.feature_extractor, subject_ids=[1], **collator_kwargs(rows))
    batch = collator([rows[0], rows[1]])
    assert batch["labels"].tolist() == [rows[0]["emotion"], rows[1]["emotion"]]
    assert batch["subject_labels"].tolist() == [0, 0]
    long_row = {**rows[0], "eeg": np.concatenate([rows[0]["eeg"]] * 2, axis=-1)}
    with pytest.raises(ValueError, match="exactly one model window"):
        collator([long_row])
