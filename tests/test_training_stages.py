"""The three stages on a tiny model: what trains and what stays frozen, resuming, adapter save/reload, configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from trl import SFTConfig

from e2llm import E2LLMForConditionalGeneration, build_tiny_e2llm
from e2llm.training.arguments import LoraArguments, ModelArguments, Stage1Config
from e2llm.training.data import EEGChatCollator, collator_kwargs, synthetic_window_dataset
from e2llm.training.instruct import load_encoder_weights, train_stage2, train_stage3
from e2llm.training.stage1 import build_stage1_model, supervised_contrastive_loss, train_stage1

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _changed(before: dict, model) -> dict[str, bool]:
    return {name: not torch.equal(before[name], p.detach()) for name, p in model.named_parameters()}


def _sft_args(path, **kwargs) -> SFTConfig:
    defaults = dict(output_dir=str(path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2, bf16=False,
                    report_to=[], save_strategy="no", logging_steps=1, max_length=None, disable_tqdm=True,
                    gradient_checkpointing=False)
    return SFTConfig(**{**defaults, **kwargs})


def test_supervised_contrastive_loss_prefers_clustered_embeddings():
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    assert supervised_contrastive_loss(clustered, labels) < supervised_contrastive_loss(mixed, labels)
    single = supervised_contrastive_loss(torch.randn(3, 4, requires_grad=True), torch.tensor([0, 1, 2]))
    assert single.item() == 0.0 and single.requires_grad


def test_stage1_trains_every_parameter_with_adversary_and_saves_encoder(windows, tmp_path):
    names = windows.features["emotion"].names
    model = build_stage1_model(ModelArguments(tiny=True), names)
    _, processor = build_tiny_e2llm()
    before = _snapshot(model)
    args = Stage1Config(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-2,
                        report_to=[], save_strategy="no", adversarial_weight=0.5, disable_tqdm=True, logging_steps=1)
    trainer = train_stage1(model, windows, args, processor.feature_extractor)
    assert not [n for n, changed in _changed(before, model).items() if not changed]
    assert any("loss" in entry for entry in trainer.state.log_history)
    assert not hasattr(model, "subject_adversary")  # a training device only
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["id2label"] == {str(i): n for i, n in enumerate(names)}
    assert (tmp_path / "preprocessor_config.json").is_file()


def test_stage1_evidence_readout_trains_on_training_reference_and_is_not_saved(windows, tmp_path, monkeypatch):
    """`evidence_weight`: a linear readout of each window's evidence features (spread units, relative to the
    training windows) from the pooled tokens; its error is part of the loss, and it never reaches the saved model."""
    from e2llm.training import stage1

    names = windows.features["emotion"].names
    model = build_stage1_model(ModelArguments(tiny=True), names)
    _, processor = build_tiny_e2llm()
    losses = []
    loss_of = stage1.EvidenceReadout.loss
    monkeypatch.setattr(stage1.EvidenceReadout, "loss", lambda self, *a: losses.append(loss_of(self, *a)) or losses[-1])
    args = Stage1Config(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-2,
                        report_to=[], save_strategy="no", evidence_weight=1.0, disable_tqdm=True)
    train_stage1(model, windows, args, processor.feature_extractor)
    assert len(losses) == 2 and all(torch.isfinite(x) and x > 0 for x in losses)
    assert not hasattr(model, "evidence_readout")
    assert not any("evidence" in key for key in safetensors.torch.load_file(tmp_path / "model.safetensors"))
    (targeted,) = stage1.with_evidence_targets(windows)
    z = np.array(targeted["evidence_targets"], dtype=np.float64)
    finite = np.isfinite(z)
    assert z.shape == (len(windows), 31) and finite.any()
    np.testing.assert_allclose(np.nanstd(np.where(finite, z, np.nan), axis=0)[finite.all(0)], 1.0, rtol=1e-4)


@pytest.fixture(scope="module")
def stage2_dir(windows, tmp_path_factory):
    """A tiny E2LLM after stage 1 (a few steps) and stage 2, saved."""
    names = windows.features["emotion"].names
    model, processor = build_tiny_e2llm(id2label=dict(enumerate(names)), seed=0)
    stage1 = tmp_path_factory.mktemp("stage1")
    classifier = build_stage1_model(ModelArguments(tiny=True), names)
    train_stage1(classifier, windows, Stage1Config(output_dir=str(stage1), max_steps=1, report_to=[],
                                                   save_strategy="no", disable_tqdm=True), processor.feature_extractor)
    load_encoder_weights(model, str(stage1))
    torch.testing.assert_close(model.model.eeg_encoder.state_dict(), classifier.encoder.state_dict())
    out = tmp_path_factory.mktemp("stage2")
    before = _snapshot(model)
    train_stage2(model, processor, windows, _sft_args(out, max_steps=2))
    changed = _changed(before, model)
    assert {n for n, c in changed.items() if c} == {n for n in changed if n.startswith("model.projector.")}
    return out


def test_stage2_output_loads_with_processor(stage2_dir):
    from transformers import AutoProcessor

    model = E2LLMForConditionalGeneration.from_pretrained(stage2_dir)
    processor = AutoProcessor.from_pretrained(stage2_dir)
    assert model.config.eeg_token_id == processor.eeg_token_id


@pytest.fixture(scope="module")
def stage3(stage2_dir, windows, tmp_path_factory):
    model = E2LLMForConditionalGeneration.from_pretrained(stage2_dir)
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(stage2_dir)
    before = _snapshot(model)
    out = tmp_path_factory.mktemp("stage3")
    lora = LoraArguments(lora_r=4, lora_alpha=8, lora_dropout=0.1, merge=False)
    trainer = train_stage3(model, processor, windows, _sft_args(out), lora, tasks=("emotion", "multitask"))
    return trainer, processor, before, out


def test_stage3_trains_lora_and_projector_only(stage3):
    trainer, _, before, _ = stage3
    peft_model = trainer.model
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".modules_to_save." in n for n in trainable)
    assert any("projector" in n for n in trainable) and not any("eeg_encoder" in n for n in trainable)
    for name, param in peft_model.named_parameters():
        base_name = (name.replace("base_model.model.", "", 1).replace(".base_layer", "")
                     .replace(".original_module", ""))
        if name in trainable:
            assert not torch.equal(param.detach(), before.get(base_name, torch.empty(0))), f"{name} did not train"
        elif base_name in before:
            assert torch.equal(param.detach(), before[base_name]), f"frozen {name} changed"


def test_adapter_reload_gives_identical_logits(stage3, stage2_dir, windows):
    from peft import PeftModel

    trainer, processor, _, out = stage3
    batch = EEGChatCollator(processor, **collator_kwargs(windows))(
        [{**windows[i], "prompt": "Which emotion?", "completion": "Emotion: fear"} for i in range(3)]
    )
    batch.pop("labels")
    trained = trainer.model.eval()
    reloaded = PeftModel.from_pretrained(E2LLMForConditionalGeneration.from_pretrained(stage2_dir),
                                         str(Path(out) / "adapter")).eval()
    with torch.no_grad():
        expected = trained(**batch).logits
        torch.testing.assert_close(reloaded(**batch).logits, expected, rtol=0, atol=1e-5)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(**batch).logits, expected, rtol=1e-4, atol=1e-4)


def test_stage3_merged_folder_is_self_contained(stage2_dir, windows, tmp_path):
    from transformers import AutoModelForCausalLM, AutoProcessor

    model = E2LLMForConditionalGeneration.from_pretrained(stage2_dir)
    processor = AutoProcessor.from_pretrained(stage2_dir)
    train_stage3(model, processor, windows, _sft_args(tmp_path, max_steps=1), LoraArguments(lora_r=2))
    merged = tmp_path / "merged"
    assert (merged / "README.md").is_file() and (merged / "processor_config.json").is_file()
    reloaded = AutoModelForCausalLM.from_pretrained(merged)
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    assert AutoProcessor.from_pretrained(merged).num_eeg_tokens == reloaded.config.num_eeg_tokens


def test_stage3_without_peft_fine_tunes_the_language_model_and_saves_merged_only(stage2_dir, windows, tmp_path):
    from transformers import AutoProcessor

    model = E2LLMForConditionalGeneration.from_pretrained(stage2_dir)
    processor = AutoProcessor.from_pretrained(stage2_dir)
    before = _snapshot(model)
    trainer = train_stage3(model, processor, windows, _sft_args(tmp_path), LoraArguments(use_peft=False),
                           tasks=("emotion",))
    changed = _changed(before, trainer.model)
    assert not any("lora" in name for name in changed)
    for name, did_change in changed.items():
        if name.startswith("model.eeg_encoder."):
            assert not did_change, f"frozen {name} changed"
    assert changed["model.language_model.layers.0.self_attn.q_proj.weight"]
    assert any(did for name, did in changed.items() if name.startswith("model.projector."))
    assert not (tmp_path / "adapter").exists()
    reloaded = E2LLMForConditionalGeneration.from_pretrained(tmp_path / "merged")
    for name, param in reloaded.named_parameters():
        torch.testing.assert_close(param, trainer.model.state_dict()[name], rtol=0, atol=0)
    assert (tmp_path / "merged" / "README.md").is_file()
    assert AutoProcessor.from_pretrained(tmp_path / "merged").num_eeg_tokens == reloaded.config.num_eeg_tokens


def test_stage3_without_peft_trains_the_encoder_only_when_asked(stage2_dir, windows, tmp_path):
    from transformers import AutoProcessor

    model = E2LLMForConditionalGeneration.from_pretrained(stage2_dir)
    before = _snapshot(model)
    trainer = train_stage3(model, AutoProcessor.from_pretrained(stage2_dir), windows, _sft_args(tmp_path, max_steps=2),
                           LoraArguments(use_peft=False, train_encoder=True), tasks=("emotion",))
    changed = _changed(before, trainer.model)
    assert any(did for name, did in changed.items() if name.startswith("model.eeg_encoder.layers."))
    assert changed["model.language_model.layers.0.self_attn.q_proj.weight"]


def test_stage3_without_peft_refuses_to_save_nothing(stage2_dir, windows, tmp_path):
    model = E2LLMForConditionalGeneration.from_pretrained(stage2_dir)
    with pytest.raises(ValueError, match="merge=False would save nothing"):
        train_stage3(model, None, windows, _sft_args(tmp_path), LoraArguments(use_peft=False, merge=False))
