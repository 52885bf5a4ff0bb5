"""Stage 2 for a language model that has never seen text (LoRA merged after the stage), the alignment gap, and the
label-only conversations of stage 3."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from e2llm import E2LLMForConditionalGeneration, build_tiny_e2llm
from e2llm.processing.instructions import build_instructions, evidence_reference
from e2llm.training.arguments import InstructConfig
from e2llm.training.data import EEGChatCollator, collator_kwargs, synthetic_window_dataset
from e2llm.training.instruct import alignment_gap, instruction_mix, train_stage2

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)


def _args(path, **kwargs) -> InstructConfig:
    defaults = dict(output_dir=str(path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2, bf16=False,
                    report_to=[], save_strategy="no", logging_steps=1, max_length=None, disable_tqdm=True,
                    gradient_checkpointing=False)
    return InstructConfig(**{**defaults, **kwargs})


def test_lora_alignment_trains_the_language_model_and_saves_it_merged(windows, tmp_path):
    model, processor = build_tiny_e2llm(dict(enumerate(windows.features["emotion"].names)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train, validation = windows.select(range(0, 10)), windows.select(range(10, 14))
    trainer = train_stage2(model, processor, train, _args(tmp_path, align_language_model="lora"),
                           eval_dataset=validation)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert any(n.startswith("model.projector.") for n in changed)
    assert any(".layers." in n and "proj" in n for n in changed)  # LoRA folded into the language model
    assert not any("encoder" in n for n in changed)
    saved = E2LLMForConditionalGeneration.from_pretrained(tmp_path)
    assert not any("lora" in n for n, _ in saved.named_parameters())
    gap = json.loads((tmp_path / "alignment.json").read_text())
    assert gap == pytest.approx(trainer.alignment_gap)
    assert set(gap) >= {"loss_real_eeg", "loss_shuffled_eeg", "loss_zeros_eeg", "gap_shuffled_minus_real",
                        "description_nll_real_eeg", "description_gap_shuffled_minus_real"}
    assert gap["description_nll_real_eeg"] == pytest.approx(gap["loss_real_eeg"] * gap["tokens_per_description"])


def test_frozen_alignment_trains_only_the_projector(windows, tmp_path):
    model, processor = build_tiny_e2llm(dict(enumerate(windows.features["emotion"].names)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_stage2(model, processor, windows.select(range(8)), _args(tmp_path))
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and all(n.startswith("model.projector.") for n in changed)
    with pytest.raises(ValueError, match="align_language_model"):
        _args(tmp_path, align_language_model="everything")


def test_full_alignment_trains_the_language_model_but_not_the_encoder(windows, tmp_path):
    model, processor = build_tiny_e2llm(dict(enumerate(windows.features["emotion"].names)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_stage2(model, processor, windows.select(range(8)), _args(tmp_path, align_language_model="full"))
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert any(n.startswith("model.projector.") for n in changed)
    assert any(n.startswith("model.language_model.layers.") for n in changed)
    assert any(n.startswith("model.language_model.embed_tokens") for n in changed)
    assert not any("encoder" in n for n in changed)
    saved = E2LLMForConditionalGeneration.from_pretrained(tmp_path)
    for name, parameter in saved.named_parameters():
        torch.testing.assert_close(parameter, dict(model.named_parameters())[name].detach())


def test_alignment_gap_is_zero_when_the_model_ignores_the_eeg(windows):
    model, processor = build_tiny_e2llm(dict(enumerate(windows.features["emotion"].names)))
    for parameter in model.model.projector.parameters():
        torch.nn.init.zeros_(parameter)  # every window's EEG tokens become the same embedding
    pairs = build_instructions(windows.select(range(6)), tasks=("describe",))
    gap = alignment_gap(model, processor, pairs, batch_size=3)
    assert gap["gap_shuffled_minus_real"] == pytest.approx(0.0, abs=1e-6)
    assert gap["loss_real_eeg"] == pytest.approx(gap["loss_zeros_eeg"], abs=1e-6) and gap["n_windows"] == 6


def test_instruction_mix_adds_label_only_answers(windows):
    reference = evidence_reference(windows)
    mixed = instruction_mix(windows, ("emotion",), reference, seed=0, label_only_share=0.5)
    assert len(mixed) == len(windows) + round(0.5 * len(windows))
    label_only = [c for c, t in zip(mixed["completion"], mixed["task"]) if t == "label"]
    assert len(label_only) == round(0.5 * len(windows)) and all(c.startswith("Emotion: ") for c in label_only)
    assert np.all([len(c.splitlines()) == 1 for c in label_only])
    with pytest.raises(ValueError, match="label_only_share"):
        instruction_mix(windows, ("emotion",), reference, label_only_share=1.5)


def test_label_only_rows_learn_the_label_but_not_to_skip_the_rationale(windows):
    _, processor = build_tiny_e2llm(dict(enumerate(windows.features["emotion"].names)))
    rows = build_instructions(windows.select(range(4)), tasks=("label",))
    batch = EEGChatCollator(processor, **collator_kwargs(rows))([rows[i] for i in range(4)])
    candidates = processor.label_candidate_ids(windows.features["emotion"].names)
    eos = processor.tokenizer.eos_token_id
    for i in range(4):
        scored = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert scored == candidates[rows[i]["emotion"]] + [eos]  # the label and the end, "Emotion:" given
    with pytest.raises(ValueError, match="prefill"):
        EEGChatCollator(processor, **collator_kwargs(rows))([{**rows[0], "prefill": "Reasoning:"}])
