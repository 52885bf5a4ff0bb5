"""The three stage scripts on a tiny model: what trains and what stays frozen, what each writes, adapter
save/reload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from transformers import AutoModelForCausalLM, AutoProcessor

from e2llm import E2LLMForConditionalGeneration
from e2llm.processing.dataset_io import save_prepared
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training import encoder_pretraining, stage1, stage2, stage3
from e2llm.training.data import InstructionCollator, tokenize_instructions
from e2llm.training.init_model import init_model
from e2llm.training.window_tensors import extract_windows

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]
COMMON = {"report_to": [], "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True, "use_cpu": True}
SFT = {**COMMON, "per_device_train_batch_size": 4, "learning_rate": 1e-2, "bf16": False, "max_length": None,
       "activation_checkpointing": False}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    windows = synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)
    return save_prepared(windows, tmp_path_factory.mktemp("data") / "prepared")


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("init")
    init_model(folder, tiny=True)
    return folder


def run(script, **fields):
    """A stage script's `main` on its arguments given as one mapping (as a YAML config would)."""
    return script.main(*script.make_parser().parse_dict(fields))


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _changed(before: dict, model) -> dict[str, bool]:
    return {name: not torch.equal(before[name], p.detach()) for name, p in model.named_parameters()}


def test_supervised_contrastive_loss_prefers_clustered_embeddings():
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    loss = encoder_pretraining.supervised_contrastive_loss
    assert loss(clustered, labels) < loss(mixed, labels)
    single = loss(torch.randn(3, 4, requires_grad=True), torch.tensor([0, 1, 2]))
    assert single.item() == 0.0 and single.requires_grad


def test_stage1_trains_every_parameter_with_adversary_and_saves_encoder(prepared, tmp_path):
    trainer = run(stage1, tiny=True, dataset_path=str(prepared), output_dir=str(tmp_path), max_steps=2,
                  per_device_train_batch_size=8, learning_rate=1e-2, adversarial_weight=0.5, **COMMON)
    model = trainer.model
    names = json.loads((prepared / "summary.json").read_text())["metadata"]["label_names"]
    assert any("loss" in entry for entry in trainer.state.log_history)
    assert not hasattr(model, "subject_adversary")  # a training device only
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["id2label"] == {str(i): n for i, n in enumerate(names)}
    assert (tmp_path / "preprocessor_config.json").is_file() and (tmp_path / "e2llm_provenance.json").is_file()


def test_stage1_adversary_and_every_parameter_train(prepared, tmp_path, monkeypatch):
    """Every encoder parameter and the adversary change in two steps (checked before the adversary is removed)."""
    seen = {}
    original = encoder_pretraining.EncoderPretrainingTrainer.train

    def train(self, *args, **kwargs):
        before = _snapshot(self.model)
        output = original(self, *args, **kwargs)
        seen.update(_changed(before, self.model))
        return output

    monkeypatch.setattr(encoder_pretraining.EncoderPretrainingTrainer, "train", train)
    run(stage1, tiny=True, dataset_path=str(prepared), output_dir=str(tmp_path), max_steps=2,
        per_device_train_batch_size=8, learning_rate=1e-2, adversarial_weight=0.5, **COMMON)
    assert seen and all(seen.values()), [n for n, c in seen.items() if not c]
    assert any(n.startswith("subject_adversary.") for n in seen)


def test_stage1_evidence_readout_trains_on_training_reference_and_is_not_saved(prepared, tmp_path, monkeypatch):
    """`evidence_weight`: a linear readout of each window's evidence features (spread units, relative to the
    training windows) from the pooled tokens; its error is part of the loss, and it never reaches the saved model."""
    losses = []
    loss_of = encoder_pretraining.EvidenceReadout.loss
    monkeypatch.setattr(encoder_pretraining.EvidenceReadout, "loss",
                        lambda self, *a: losses.append(loss_of(self, *a)) or losses[-1])
    trainer = run(stage1, tiny=True, dataset_path=str(prepared), output_dir=str(tmp_path), max_steps=2,
                  per_device_train_batch_size=8, learning_rate=1e-2, evidence_weight=1.0, **COMMON)
    assert len(losses) == 2 and all(torch.isfinite(x) and x > 0 for x in losses)
    assert not hasattr(trainer.model, "evidence_readout")
    assert not any("evidence" in key for key in safetensors.torch.load_file(tmp_path / "model.safetensors"))
    windows = synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)
    (z,) = encoder_pretraining.evidence_targets(windows)
    finite = np.isfinite(z)
    assert z.shape == (len(windows), 31) and finite.any()
    np.testing.assert_allclose(np.nanstd(np.where(finite, z, np.nan), axis=0)[finite.all(0)], 1.0, rtol=1e-4)


@pytest.fixture(scope="module")
def stage1_dir(prepared, init_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    run(stage1, model_name_or_path=str(init_dir), dataset_path=str(prepared), output_dir=str(out), max_steps=1,
        **COMMON)
    return out


@pytest.fixture(scope="module")
def stage2_dir(prepared, init_dir, stage1_dir, tmp_path_factory):
    """A tiny E2LLM after stage 1 (one step) and stage 2 (projector only), saved."""
    out = tmp_path_factory.mktemp("stage2")
    initial = _snapshot(E2LLMForConditionalGeneration.from_pretrained(init_dir))
    trainer = run(stage2, model_name_or_path=str(init_dir), encoder_name_or_path=str(stage1_dir),
                  dataset_path=str(prepared), output_dir=str(out), max_steps=2, **SFT)
    encoder = safetensors.torch.load_file(stage1_dir / "model.safetensors")
    for name, parameter in trainer.model.named_parameters():
        if name.startswith("model.eeg_encoder."):  # the stage-1 encoder, frozen
            assert torch.equal(parameter.detach(), encoder[name.replace("model.eeg_encoder.", "encoder.", 1)]), name
        else:  # the projector trains, the language model stays frozen
            assert torch.equal(parameter.detach(), initial[name]) != name.startswith("model.projector."), name
    return out


def test_stage2_output_loads_with_processor_and_provenance(stage2_dir):
    model = E2LLMForConditionalGeneration.from_pretrained(stage2_dir)
    processor = AutoProcessor.from_pretrained(stage2_dir)
    assert model.config.eeg_token_id == processor.eeg_token_id
    stages = json.loads((stage2_dir / "e2llm_provenance.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["stage1", "stage2"]


@pytest.fixture(scope="module")
def stage3_lora(stage2_dir, prepared, tmp_path_factory):
    before = _snapshot(E2LLMForConditionalGeneration.from_pretrained(stage2_dir))
    out = tmp_path_factory.mktemp("stage3")
    trainer = run(stage3, model_name_or_path=str(stage2_dir), dataset_path=str(prepared), output_dir=str(out),
                  tasks=["emotion", "multitask"], use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.1,
                  merge=False, max_steps=3, **SFT)
    return trainer, before, out


def test_stage3_trains_lora_and_projector_only(stage3_lora):
    trainer, before, _ = stage3_lora
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


def test_adapter_reload_gives_identical_logits(stage3_lora, stage2_dir, prepared):
    from datasets import Dataset
    from peft import PeftModel

    from e2llm.processing.dataset_io import load_prepared

    trainer, _, out = stage3_lora
    processor = AutoProcessor.from_pretrained(Path(out) / "adapter")
    windows = load_prepared(prepared).select(range(3))
    rows = tokenize_instructions(processor, Dataset.from_dict({"prompt": ["Which emotion?"] * 3,
                                                               "completion": ["Emotion: fear"] * 3}))
    batch = InstructionCollator(extract_windows(windows, processor.feature_extractor),
                                processor.tokenizer.pad_token_id)([rows[i] for i in range(3)])
    batch.pop("labels")
    trained = trainer.model.eval()
    reloaded = PeftModel.from_pretrained(E2LLMForConditionalGeneration.from_pretrained(stage2_dir),
                                         str(Path(out) / "adapter")).eval()
    with torch.no_grad():
        expected = trained(**batch).logits
        torch.testing.assert_close(reloaded(**batch).logits, expected, rtol=0, atol=1e-5)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(**batch).logits, expected, rtol=1e-4, atol=1e-4)


def test_stage3_merged_folder_is_self_contained(stage2_dir, prepared, tmp_path):
    run(stage3, model_name_or_path=str(stage2_dir), dataset_path=str(prepared), output_dir=str(tmp_path),
        use_peft=True, lora_r=2, max_steps=1, **SFT)
    merged = tmp_path / "merged"
    assert (merged / "processor_config.json").is_file() and (merged / "e2llm_provenance.json").is_file()
    assert (tmp_path / "adapter" / "e2llm_provenance.json").is_file()
    assert not (merged / "README.md").exists()  # cards are rendered from the folder by `e2llm card` / `e2llm push`
    reloaded = AutoModelForCausalLM.from_pretrained(merged)
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    assert AutoProcessor.from_pretrained(merged).num_eeg_tokens == reloaded.config.num_eeg_tokens


def test_stage3_without_peft_fine_tunes_the_language_model_and_saves_merged_only(stage2_dir, prepared, tmp_path):
    before = _snapshot(E2LLMForConditionalGeneration.from_pretrained(stage2_dir))
    trainer = run(stage3, model_name_or_path=str(stage2_dir), dataset_path=str(prepared), output_dir=str(tmp_path),
                  max_steps=3, **SFT)
    changed = _changed(before, trainer.model)
    assert not any("lora" in name for name in changed)
    assert not any(did for name, did in changed.items() if name.startswith("model.eeg_encoder."))
    assert changed["model.language_model.layers.0.self_attn.q_proj.weight"]
    assert any(did for name, did in changed.items() if name.startswith("model.projector."))
    assert not (tmp_path / "adapter").exists()
    reloaded = E2LLMForConditionalGeneration.from_pretrained(tmp_path / "merged")
    for name, param in reloaded.named_parameters():
        torch.testing.assert_close(param, trainer.model.state_dict()[name], rtol=0, atol=0)
    assert AutoProcessor.from_pretrained(tmp_path / "merged").num_eeg_tokens == reloaded.config.num_eeg_tokens


def test_stage3_trains_the_encoder_only_when_asked(stage2_dir, prepared, tmp_path):
    before = _snapshot(E2LLMForConditionalGeneration.from_pretrained(stage2_dir))
    trainer = run(stage3, model_name_or_path=str(stage2_dir), dataset_path=str(prepared), output_dir=str(tmp_path),
                  train_encoder=True, max_steps=2, **SFT)
    changed = _changed(before, trainer.model)
    assert any(did for name, did in changed.items() if name.startswith("model.eeg_encoder.layers."))
    assert changed["model.language_model.layers.0.self_attn.q_proj.weight"]


def test_stage3_without_peft_refuses_to_save_nothing(stage2_dir, prepared, tmp_path):
    with pytest.raises(ValueError, match="--merge false would save nothing"):
        run(stage3, model_name_or_path=str(stage2_dir), dataset_path=str(prepared), output_dir=str(tmp_path),
            merge=False, max_steps=1, **SFT)


def test_stage3_ships_its_evidence_statistics(stage2_dir, prepared, tmp_path):
    from e2llm.processing.dataset_io import load_prepared
    from e2llm.processing.instructions import evidence_reference
    from e2llm.processing.metadata import dataset_fingerprint
    from e2llm.processing.splits import SplitSpec, resolve_split

    dataset = load_prepared(prepared)
    reference = evidence_reference(dataset.select(resolve_split(dataset, SplitSpec()).train))
    run(stage3, model_name_or_path=str(stage2_dir), dataset_path=str(prepared), output_dir=str(tmp_path / "with"),
        evidence_in_prompt=True, evidence_strongest=4, max_steps=1, **SFT)
    processor = AutoProcessor.from_pretrained(tmp_path / "with" / "merged")
    assert processor.evidence_spread == [None if not np.isfinite(v) else float(v) for v in reference.spread]
    statistics = processor.evidence_statistics
    assert statistics["prompt"] == {"evidence_in_prompt": True, "strongest": 4}
    assert statistics["signatures"]["labels"] == reference.label_names
    assert statistics["provenance"]["fingerprint"] == dataset_fingerprint(dataset)
    channel = reference.channel_names[0]
    np.testing.assert_allclose(statistics["reference_power_db"][channel], reference.reference_db[:, 0], rtol=1e-6)
    run(stage3, model_name_or_path=str(stage2_dir), dataset_path=str(prepared), output_dir=str(tmp_path / "without"),
        max_steps=1, **SFT)
    without = AutoProcessor.from_pretrained(tmp_path / "without" / "merged")
    assert without.evidence_spread is None and not without.evidence_in_prompt
    assert without.evidence_statistics["signatures"] == statistics["signatures"]  # label support needs no prompt line


def test_stage3_refuses_evidence_prompts_for_a_re_referencing_encoder(stage2_dir, prepared, tmp_path):
    rereferencing = tmp_path / "model"
    model = E2LLMForConditionalGeneration.from_pretrained(stage2_dir)
    processor = AutoProcessor.from_pretrained(stage2_dir)
    processor.feature_extractor.reference = "average"
    model.save_pretrained(rereferencing)
    processor.save_pretrained(rereferencing)
    with pytest.raises(ValueError, match="re-references them"):
        run(stage3, model_name_or_path=str(rereferencing), dataset_path=str(prepared), output_dir=str(tmp_path / "o"),
            evidence_in_prompt=True, max_steps=1, **SFT)


def test_stage_arguments_refuse_a_strongest_without_the_evidence_line():
    from e2llm.training.arguments import InstructionScriptArguments

    with pytest.raises(ValueError, match="set without it"):
        InstructionScriptArguments(evidence_strongest=4)
    with pytest.raises(ValueError, match="at least 1"):
        InstructionScriptArguments(evidence_in_prompt=True, evidence_strongest=0)
    assert InstructionScriptArguments(evidence_in_prompt=True, evidence_strongest=4).evidence_strongest == 4


def test_stage3_with_activation_checkpointing_trains_the_same(stage2_dir, prepared, tmp_path):
    """Optional activation (gradient) checkpointing recomputes activations in the backward pass: the same losses
    and weights as without it (LoRA, where the frozen embeddings need their outputs to require grads)."""
    results = {}
    for checkpointing in (False, True):
        fields = {**SFT, "activation_checkpointing": checkpointing}
        trainer = run(stage3, model_name_or_path=str(stage2_dir), dataset_path=str(prepared), use_peft=True,
                      lora_r=2, merge=False, output_dir=str(tmp_path / str(checkpointing)), max_steps=2, **fields)
        assert trainer.model.get_base_model().is_activation_checkpointing == checkpointing
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        results[checkpointing] = losses, safetensors.torch.load_file(
            tmp_path / str(checkpointing) / "adapter" / "adapter_model.safetensors")
    assert len(results[True][0]) == 2
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    for name, value in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], value, rtol=1e-4, atol=1e-6)
