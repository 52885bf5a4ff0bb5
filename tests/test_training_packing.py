"""Padding-free stage-3 batches (`InstructionCollator(pack_rows=True)`): the rows one after the other with position
ids restarting per row give the same logits per row, the same loss and the same gradients as the padded batch, with
sdpa and eager attention, through the model's loss and TRL's fused LM head; attention never crosses rows."""

from __future__ import annotations

import pytest
import torch

from e2llm import build_tiny_e2llm
from e2llm.processing.instructions import build_instructions, evidence_reference
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training.arguments import InstructConfig
from e2llm.training.data import IGNORE_INDEX, InstructionCollator, tokenize_instructions
from e2llm.training.sft_trainer import E2LLMSFTTrainer
from e2llm.training.window_tensors import encode_windows, extract_windows

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]


@pytest.fixture(scope="module")
def setup():
    windows = synthetic_window_dataset(n_subjects=1, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)
    model, processor = build_tiny_e2llm(dict(enumerate(windows.features["emotion"].names)), seed=0)
    rows = build_instructions(windows, tasks=("emotion", "multitask", "label"), seed=0,
                              reference=evidence_reference(windows))
    tokenized = tokenize_instructions(processor, rows)
    lengths = {len(tokenized[i]["input_ids"]) for i in range(6)}
    assert len(lengths) > 1  # rows of different lengths: the padded batch holds padding
    tensors = extract_windows(windows, processor.feature_extractor)
    return model, processor, [tokenized[i] for i in range(6)], tensors


def _batches(processor, rows, tensors):
    pad = processor.tokenizer.pad_token_id
    return InstructionCollator(tensors, pad)(rows), InstructionCollator(tensors, pad, pack_rows=True)(rows)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_rows_give_the_padded_rows_logits_loss_and_gradients(setup, attention):
    model, processor, rows, tensors = setup
    model.config.text_config._attn_implementation = attention
    padded, packed = _batches(processor, rows, tensors)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows)) and "attention_mask" not in packed
    assert packed["position_ids"][0, packed["cu_seq_lens_q"][:-1].long()].eq(0).all()
    results = {}
    for name, batch in (("padded", padded), ("packed", packed)):
        model.zero_grad()
        output = model(**{**batch, "use_cache": False})
        output.loss.backward()
        results[name] = (output, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    (padded_out, padded_grads), (packed_out, packed_grads) = results["padded"], results["packed"]
    starts = packed["cu_seq_lens_q"].tolist()
    with torch.no_grad():
        for i, row in enumerate(rows):  # each row reads only itself: its logits are those of the row alone
            alone = model(input_ids=torch.tensor([row["input_ids"]]), use_cache=False,
                          **tensors.model_inputs(torch.tensor([row["window"]]))).logits[0]
            torch.testing.assert_close(packed_out.logits[0, starts[i]:starts[i + 1]], alone, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(packed_out.loss, padded_out.loss, rtol=1e-5, atol=1e-6)
    assert packed_grads.keys() == padded_grads.keys()
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-3, atol=1e-6, msg=name)
    model.config.text_config._attn_implementation = "sdpa"


def test_packing_with_a_frozen_encoders_output(setup):
    model, processor, rows, tensors = setup
    padded, packed = _batches(processor, rows, encode_windows(model.model.eeg_encoder, tensors))
    with torch.no_grad():
        torch.testing.assert_close(model(**packed).loss, model(**padded).loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lm_head_loss", ["model", "fused"])
def test_the_trainer_loss_and_token_count_of_packed_rows(setup, tmp_path, lm_head_loss):
    model, processor, rows, tensors = setup
    args = InstructConfig(output_dir=str(tmp_path), lm_head_loss=lm_head_loss, report_to=[], bf16=False,
                          use_cpu=True, max_length=None)
    trainer = E2LLMSFTTrainer(model=model, args=args, train_dataset=tokenize_instructions(
        processor, build_instructions(synthetic_window_dataset(n_subjects=1, clips_per_class=1, trial_seconds=4,
                                                               channel_names=CHANNELS), tasks=("emotion",))),
        processing_class=processor, data_collator=InstructionCollator(tensors, processor.tokenizer.pad_token_id))
    padded, packed = _batches(processor, rows, tensors)
    model.train()
    losses, tokens = {}, {}
    for name, batch in (("padded", padded), ("packed", packed)):
        trainer._train_tokens = None
        n_items = (batch["labels"][..., 1:] != IGNORE_INDEX).sum()
        losses[name] = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items).detach()
        tokens[name] = int(trainer._train_tokens)
    torch.testing.assert_close(losses["packed"], losses["padded"], rtol=1e-5, atol=1e-6)
    assert tokens["packed"] == tokens["padded"] == sum(len(r["input_ids"]) for r in rows)
