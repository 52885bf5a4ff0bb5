"""Stage 2 for a language model that has never seen text (LoRA merged after the stage, or the whole language model),
the alignment gap, and the label-only conversations of stage 3."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from e2llm import E2LLMForConditionalGeneration, build_tiny_e2llm
from e2llm.processing.dataset_io import save_prepared
from e2llm.processing.instructions import build_instructions, evidence_reference
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training import stage2
from e2llm.training.alignment import alignment_gap
from e2llm.training.data import tokenize_instructions
from e2llm.training.init_model import init_model
from e2llm.training.instruction_rows import instruction_mix

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]
SFT = {"max_steps": 3, "per_device_train_batch_size": 4, "learning_rate": 1e-2, "bf16": False, "report_to": [],
       "save_strategy": "no", "logging_steps": 1, "max_length": None, "disable_tqdm": True, "use_cpu": True,
       "activation_checkpointing": False}


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)


@pytest.fixture(scope="module")
def prepared(windows, tmp_path_factory):
    return save_prepared(windows, tmp_path_factory.mktemp("data") / "prepared")


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("init")
    init_model(folder, tiny=True)
    return folder


def _stage2(init_dir, prepared, out, **fields):
    initial = {n: p.detach().clone() for n, p in E2LLMForConditionalGeneration.from_pretrained(init_dir).named_parameters()}
    trainer = stage2.main(*stage2.make_parser().parse_dict({
        "model_name_or_path": str(init_dir), "dataset_path": str(prepared), "output_dir": str(out), **SFT, **fields}))
    model = trainer.accelerator.unwrap_model(trainer.model)
    saved = E2LLMForConditionalGeneration.from_pretrained(out)
    changed = {n for n, p in saved.named_parameters() if not torch.equal(initial[n], p.detach())}
    return trainer, model, saved, changed


def test_lora_alignment_trains_the_language_model_and_saves_it_merged(init_dir, prepared, tmp_path):
    _, _, saved, changed = _stage2(init_dir, prepared, tmp_path, use_peft=True,
                                   lora_modules_to_save=["projector", "language_model.norm"], validation_size=0.25)
    assert any(n.startswith("model.projector.") for n in changed)
    assert any(".layers." in n and "proj" in n for n in changed)  # LoRA folded into the language model
    assert not any("encoder" in n for n in changed)
    assert not any("lora" in n for n, _ in saved.named_parameters())
    gap = json.loads((tmp_path / "alignment.json").read_text())  # on the validation windows
    assert set(gap) >= {"loss_real_eeg", "loss_shuffled_eeg", "loss_zeros_eeg", "gap_shuffled_minus_real",
                        "description_nll_real_eeg", "description_gap_shuffled_minus_real"}
    assert gap["description_nll_real_eeg"] == pytest.approx(gap["loss_real_eeg"] * gap["tokens_per_description"])


def test_frozen_alignment_trains_only_the_projector(init_dir, prepared, tmp_path):
    _, _, _, changed = _stage2(init_dir, prepared, tmp_path)
    assert changed and all(n.startswith("model.projector.") for n in changed)
    assert not (tmp_path / "alignment.json").exists()  # no validation windows


def test_full_alignment_trains_the_language_model_but_not_the_encoder(init_dir, prepared, tmp_path):
    _, model, saved, changed = _stage2(init_dir, prepared, tmp_path, train_language_model=True)
    assert any(n.startswith("model.projector.") for n in changed)
    assert any(n.startswith("model.language_model.layers.") for n in changed)
    assert any(n.startswith("model.language_model.embed_tokens") for n in changed)
    assert not any("encoder" in n for n in changed)
    for name, parameter in saved.named_parameters():
        torch.testing.assert_close(parameter, dict(model.named_parameters())[name].detach())


def test_whole_language_model_and_lora_cannot_both_train(init_dir, prepared, tmp_path):
    with pytest.raises(ValueError, match="choose one"):
        _stage2(init_dir, prepared, tmp_path, train_language_model=True, use_peft=True)


def test_alignment_gap_is_zero_when_the_model_ignores_the_eeg(windows):
    model, processor = build_tiny_e2llm(dict(enumerate(windows.features["emotion"].names)))
    for parameter in model.model.projector.parameters():
        torch.nn.init.zeros_(parameter)  # every window's EEG tokens become the same embedding
    part = windows.select(range(6))
    gap = alignment_gap(model, processor, part, evidence_reference(windows), batch_size=3)
    assert gap["gap_shuffled_minus_real"] == pytest.approx(0.0, abs=1e-6)
    assert gap["loss_real_eeg"] == pytest.approx(gap["loss_zeros_eeg"], abs=1e-6) and gap["n_windows"] == 6


def test_instruction_mix_adds_label_only_answers(windows):
    reference = evidence_reference(windows)
    mixed, index = instruction_mix(windows, ("emotion",), reference, seed=0, label_only_share=0.5)
    n_label = round(0.5 * len(windows))
    assert len(mixed) == len(windows) + n_label == len(index)
    assert list(index[: len(windows)]) == list(range(len(windows)))
    label_only = [c for c, t in zip(mixed["completion"], mixed["task"]) if t == "label"]
    assert len(label_only) == n_label and all(c.startswith("Emotion: ") for c in label_only)
    assert np.all([len(c.splitlines()) == 1 for c in label_only])
    labels = np.asarray(windows["emotion"])
    names = windows.features["emotion"].names
    for completion, window in zip(mixed["completion"][len(windows):], index[len(windows):]):
        assert completion == f"Emotion: {names[labels[window]]}"  # each label-only row keeps its own window
    with pytest.raises(ValueError, match="label_only_share"):
        instruction_mix(windows, ("emotion",), reference, label_only_share=1.5)


def test_label_only_rows_learn_the_label_but_not_to_skip_the_rationale(windows):
    _, processor = build_tiny_e2llm(dict(enumerate(windows.features["emotion"].names)))
    rows = build_instructions(windows.select(range(4)), tasks=("label",))
    tokenized = tokenize_instructions(processor, rows)
    candidates = processor.label_candidate_ids(windows.features["emotion"].names)
    eos = processor.tokenizer.eos_token_id
    for i in range(4):
        answer = tokenized[i]["input_ids"][tokenized[i]["prompt_length"]:]
        assert answer == candidates[rows[i]["emotion"]] + [eos]  # the label and the end, "Emotion:" given
    with pytest.raises(ValueError, match="prefill"):
        tokenize_instructions(processor, rows.select([0]).map(lambda r: {"prefill": "Reasoning:"}))
