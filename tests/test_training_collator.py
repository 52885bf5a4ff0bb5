"""Rows tokenised once and the collators: only the assistant's answer carries labels (checked by decoding), padding,
EEG inputs gathered from the stage's precomputed window tensors, and the per-batch classification collator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2llm.modeling_eeg_encoder import E2LLMEEGEncoderOutput
from e2llm.processing.instructions import build_instructions, conversation
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training.data import (
    IGNORE_INDEX,
    EEGClassificationCollator,
    InstructionCollator,
    WindowClassificationCollator,
    WindowRows,
    collator_kwargs,
    tokenize_instructions,
)
from e2llm.training.window_tensors import encode_windows, extract_windows

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "P4", "O1", "O2", "T7"]


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=1, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)


@pytest.fixture(scope="module")
def rows(windows):
    return build_instructions(windows, tasks=("emotion", "multitask", "describe"), seed=1)


def test_labels_cover_exactly_the_answer(tiny_e2llm, windows, rows):
    _, processor = tiny_e2llm
    tokenized = tokenize_instructions(processor, rows)
    collator = InstructionCollator(extract_windows(windows, processor.feature_extractor), processor.tokenizer.pad_token_id)
    batch = collator([tokenized[i] for i in range(4)])
    tokenizer = processor.tokenizer
    keep = batch["logits_to_keep"]
    assert batch["eeg_values"].shape == (4, len(CHANNELS), 800) and batch["labels"].shape == (4, keep)
    assert keep == max(len(tokenized[i]["input_ids"]) - tokenized[i]["prompt_length"] for i in range(4)) + 1
    for i in range(4):
        example = rows[i]
        labelled = batch["labels"][i] != IGNORE_INDEX
        answer_ids = batch["input_ids"][i][-keep:][labelled]
        # the labelled tokens (the last positions of the row) decode to the answer and its end-of-turn token
        assert tokenizer.decode(answer_ids) == example["completion"] + "<|im_end|>"
        assert torch.equal(batch["labels"][i][labelled], answer_ids)
        # padding on the left, as for generation; positions count from each row's first real token
        n_real = int(batch["attention_mask"][i].sum())
        assert (batch["input_ids"][i][: -n_real] == tokenizer.pad_token_id).all()
        assert batch["position_ids"][i][-n_real:].tolist() == list(range(n_real))
        # the rest of the row is the prompt as generation sees it (chat template + EEG tokens)
        prompt = tokenizer.decode(batch["input_ids"][i][-n_real:][: n_real - int(labelled.sum())])
        expected = processor.apply_chat_template(conversation(example["prompt"]), add_generation_prompt=True)
        assert prompt == expected.replace("<|eeg|>", "<|eeg|>" * processor.num_eeg_tokens)
        # prompt + answer is the full conversation rendered by the chat template
        full = processor.apply_chat_template(conversation(example["prompt"], example["completion"]))
        assert prompt + example["completion"] + "<|im_end|>\n" == full.replace(
            "<|eeg|>", "<|eeg|>" * processor.num_eeg_tokens)
    assert (batch["attention_mask"][:, -1] == 1).all()


def test_answer_logits_only_give_the_full_loss(tiny_e2llm, windows, rows):
    """The model's loss on the kept positions equals the cross-entropy over every position of the rows."""
    model, processor = tiny_e2llm
    tokenized = tokenize_instructions(processor, rows)
    tensors = extract_windows(windows, processor.feature_extractor)
    batch = InstructionCollator(tensors, processor.tokenizer.pad_token_id)([tokenized[i] for i in range(4)])
    with torch.no_grad():
        kept = model(**batch).loss
        full = {k: v for k, v in batch.items() if k not in ("logits_to_keep", "labels")}
        logits = model(**full).logits
        labels = torch.nn.functional.pad(batch["labels"], (logits.shape[1] - batch["labels"].shape[1], 0), value=-100)
        expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
    torch.testing.assert_close(kept, expected, rtol=1e-5, atol=1e-6)


def test_rows_tokenise_like_the_processor(tiny_e2llm, windows, rows):
    """The prompt ids of a tokenised row are what `E2LLMProcessor` (the pipeline's path) gives for the window."""
    _, processor = tiny_e2llm
    tokenized = tokenize_instructions(processor, rows)
    prompt = processor.apply_chat_template(conversation(rows[2]["prompt"]), add_generation_prompt=True)
    encoded = processor(text=prompt, eeg=np.asarray(windows[2]["eeg"]), sampling_rate=200, channel_names=CHANNELS,
                        units="uV", apply_filters=False, add_special_tokens=False)
    row = tokenized[2]
    assert row["input_ids"][: row["prompt_length"]] == list(encoded["input_ids"][0]) and row["window"] == 2


def test_max_length_truncates_the_answer_not_the_eeg(tiny_e2llm, rows):
    _, processor = tiny_e2llm
    full = tokenize_instructions(processor, rows.select([0]))[0]
    short = tokenize_instructions(processor, rows.select([0]), max_length=full["prompt_length"] + 5)[0]
    assert len(short["input_ids"]) == full["prompt_length"] + 5 and short["input_ids"] == full["input_ids"][:len(short["input_ids"])]
    assert short["input_ids"].count(processor.eeg_token_id) == processor.num_eeg_tokens
    with pytest.raises(ValueError, match="leaves no room"):
        tokenize_instructions(processor, rows.select([0]), max_length=full["prompt_length"])


def test_frozen_encoder_rows_carry_the_encoders_output(tiny_e2llm, windows, rows):
    model, processor = tiny_e2llm
    tensors = extract_windows(windows, processor.feature_extractor)
    pooled = encode_windows(model.model.eeg_encoder, tensors)
    tokenized = tokenize_instructions(processor, rows, windows=[3, 1, 0, 2] + list(range(4, len(rows))))
    batch = InstructionCollator(pooled, processor.tokenizer.pad_token_id)([tokenized[i] for i in range(3)])
    assert isinstance(batch["eeg_features"], E2LLMEEGEncoderOutput) and "eeg_values" not in batch
    with torch.no_grad():
        expected = model.model.eeg_encoder(*(tensors.gather(torch.tensor([3, 1, 0]))[k] for k in
                                             ("eeg_values", "eeg_channel_ids", "eeg_channel_mask"))).pooler_output
        torch.testing.assert_close(batch["eeg_features"].pooler_output, expected)
        logits_values = model(**InstructionCollator(tensors, processor.tokenizer.pad_token_id)(
            [tokenized[i] for i in range(3)])).logits
        torch.testing.assert_close(model(**batch).logits, logits_values, rtol=1e-5, atol=1e-5)


def test_window_classification_collator(tiny_e2llm, windows):
    _, processor = tiny_e2llm
    tensors = extract_windows(windows, processor.feature_extractor)
    rows = WindowRows(window=torch.tensor([4, 2]), labels=torch.tensor([1, 0]), subject_labels=torch.tensor([0, -100]))
    batch = WindowClassificationCollator(tensors)([rows[0], rows[1]])
    assert batch["labels"].tolist() == [1, 0] and batch["subject_labels"].tolist() == [0, -100]
    torch.testing.assert_close(batch["eeg_values"], tensors.tensors["eeg_values"][[4, 2]])
    with pytest.raises(ValueError, match="one length"):
        WindowRows(window=torch.arange(3), labels=torch.arange(2))


def test_per_batch_classification_collator_and_window_length_check(tiny_e2llm, windows):
    _, processor = tiny_e2llm
    collator = EEGClassificationCollator(processor.feature_extractor, subject_ids=[1], **collator_kwargs(windows))
    batch = collator([windows[0], windows[1]])
    assert batch["labels"].tolist() == [windows[0]["emotion"], windows[1]["emotion"]]
    assert batch["subject_labels"].tolist() == [0, 0]
    torch.testing.assert_close(batch["eeg_values"], extract_windows(windows, processor.feature_extractor)
                               .tensors["eeg_values"][:2])
    long_row = {**windows[0], "eeg": np.concatenate([windows[0]["eeg"]] * 2, axis=-1)}
    with pytest.raises(ValueError, match="exactly one model window"):
        collator([long_row])


def test_extract_windows_spills_to_a_memory_mapped_file(tiny_e2llm, windows, tmp_path, monkeypatch):
    from e2llm.training import window_tensors

    _, processor = tiny_e2llm
    in_memory = extract_windows(windows, processor.feature_extractor, batch_size=5)
    monkeypatch.setattr(window_tensors.tempfile, "mkdtemp", lambda prefix: str(tmp_path))
    mapped = extract_windows(windows, processor.feature_extractor, batch_size=5, max_in_memory_bytes=1)
    assert (tmp_path / "eeg_values.npy").stat().st_size > in_memory.tensors["eeg_values"].numel() * 4
    for name, value in in_memory.tensors.items():
        assert torch.equal(mapped.tensors[name], value)


def test_emotion_token_dropout_blanks_training_rows_only(tiny_e2llm, windows, rows):
    """A share of the training rows get the blank emotion token (the last pooled token); validation rows never."""
    from e2llm.training.data import EmotionTokenDropout
    from e2llm.training.window_tensors import POOLED, WindowTensors

    _, processor = tiny_e2llm
    tokenized = tokenize_instructions(processor, rows)
    n = len(windows)
    pooled = torch.randn(n, 5, 8)
    blank = torch.full((8,), 7.0)
    dropout = EmotionTokenDropout(0.5, blank, n_train_windows=n // 2, seed=0)
    collator = InstructionCollator(WindowTensors({POOLED: pooled.clone()}), processor.tokenizer.pad_token_id,
                                   emotion_token_dropout=dropout)
    picked = list(range(len(tokenized))) * 8
    changed, train_rows, validation_rows = 0, 0, 0
    for start in range(0, len(picked), 4):
        batch_rows = [tokenized[i] for i in picked[start:start + 4]]
        out = collator(batch_rows)["eeg_features"].pooler_output
        for row, tokens in zip(batch_rows, out):
            window = row["window"]
            torch.testing.assert_close(tokens[:-1], pooled[window, :-1])  # only the emotion token may change
            if torch.equal(tokens[-1], blank):
                changed += 1
                assert window < n // 2  # validation windows keep their token
            else:
                torch.testing.assert_close(tokens[-1], pooled[window, -1])
            train_rows += window < n // 2
            validation_rows += window >= n // 2
    assert validation_rows > 0 and 0.3 < changed / train_rows < 0.7
    assert torch.equal(collator.windows.tensors[POOLED], pooled)  # the cached tokens are never modified
    with pytest.raises(ValueError, match="emotion_token_dropout must be in"):
        EmotionTokenDropout(1.0, blank, n)


def test_stage3_emotion_token_dropout_is_refused_where_it_cannot_apply(tiny_e2llm):
    """No emotion token, or an encoder trained in stage 3: one clear error each; otherwise the blank token is the
    head's reading of uniform class probabilities."""
    from types import SimpleNamespace

    from e2llm import assemble_e2llm, build_offline_tokenizer
    from e2llm.assembly import TINY_TEXT_CONFIG
    from e2llm.training.arguments import InstructionScriptArguments
    from e2llm.training.stage3 import emotion_token_dropout

    args = SimpleNamespace(emotion_token_dropout=0.5, train_encoder=False)
    assert emotion_token_dropout(SimpleNamespace(emotion_token_dropout=0.0, train_encoder=False), tiny_e2llm[0], 10,
                                 0) is None
    with pytest.raises(ValueError, match="this encoder has none"):
        emotion_token_dropout(args, tiny_e2llm[0], 10, 0)
    torch.manual_seed(0)
    model, _ = assemble_e2llm(build_offline_tokenizer(), text_config=TINY_TEXT_CONFIG, eeg_config={
        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64,
        "patch_size": 400, "band_power_readout": True, "region_tokens": True, "emotion_token": True,
        "num_output_tokens": 9})
    with pytest.raises(ValueError, match="use it with --train_encoder false"):
        emotion_token_dropout(SimpleNamespace(emotion_token_dropout=0.5, train_encoder=True), model, 10, 0)
    dropout = emotion_token_dropout(args, model, 10, 0)
    token = model.model.eeg_encoder.emotion_token
    uniform = torch.full((1, token.label_embeddings.shape[0]), 1.0 / token.label_embeddings.shape[0])
    torch.testing.assert_close(dropout.blank, (uniform @ token.label_embeddings.detach())[0])
    with pytest.raises(ValueError, match=r"emotion_token_dropout must be in \[0, 1\)"):
        InstructionScriptArguments(dataset_path="x", emotion_token_dropout=1.0)
