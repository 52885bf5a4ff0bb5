"""Stage-2/3 loss: the model's own LM head and TRL's fused LM head give the same loss, gradients and logged token
accuracy; the step metrics stay tensors until a step is logged (no host round trip per step)."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer

from e2llm import build_tiny_e2llm
from e2llm.processing.instructions import build_instructions
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training.arguments import InstructConfig
from e2llm.training.data import InstructionCollator, tokenize_instructions
from e2llm.training.sft_trainer import E2LLMSFTTrainer
from e2llm.training.window_tensors import extract_windows

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]


@pytest.fixture(scope="module")
def data():
    windows = synthetic_window_dataset(n_subjects=1, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)
    model, processor = build_tiny_e2llm(seed=0)
    rows = tokenize_instructions(processor, build_instructions(windows, tasks=("emotion", "multitask"), seed=0))
    collator = InstructionCollator(extract_windows(windows, processor.feature_extractor),
                                   processor.tokenizer.pad_token_id)
    return model, processor, rows, collator


def _trainer(data, tmp_path, lm_head_loss):
    model, processor, rows, collator = data
    args = InstructConfig(output_dir=str(tmp_path / lm_head_loss), lm_head_loss=lm_head_loss, report_to=[],
                          per_device_train_batch_size=4, max_length=None, bf16=False, use_cpu=True)
    return E2LLMSFTTrainer(model=model, args=args, train_dataset=rows, processing_class=processor,
                           data_collator=collator)


def test_model_and_fused_lm_head_losses_agree(data, tmp_path, monkeypatch):
    model, _, rows, collator = data
    results = {}
    for choice in ("model", "fused"):
        trainer = _trainer(data, tmp_path, choice)
        assert trainer.use_fused_lm_head is (choice == "fused")
        batch = collator([rows[i] for i in range(4)])
        model.zero_grad()
        model.train()
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        assert all(isinstance(v, torch.Tensor) for v in trainer._sums["train"].values())  # not yet numbers
        logged = {}
        monkeypatch.setattr(Trainer, "log", lambda self, logs, start_time=None, into=logged: into.update(logs))
        trainer.log({"loss": float(loss.detach())})
        results[choice] = (loss.detach(), model.model.projector.linear_1.weight.grad.clone(), logged)
    torch.testing.assert_close(results["model"][0], results["fused"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results["model"][1], results["fused"][1], atol=1e-6, rtol=1e-4)
    # both log token accuracy over the answer tokens and the token count; only the fused head the entropy
    assert results["model"][2]["mean_token_accuracy"] == pytest.approx(results["fused"][2]["mean_token_accuracy"])
    assert results["model"][2]["num_tokens"] == results["fused"][2]["num_tokens"] == int(batch["attention_mask"].sum())
    assert "entropy" in results["fused"][2] and "entropy" not in results["model"][2]


def test_auto_uses_the_fused_head_only_on_cuda(data, tmp_path):
    trainer = _trainer(data, tmp_path, "auto")
    assert trainer.use_fused_lm_head is (trainer.args.device.type == "cuda")


def test_lm_head_loss_is_validated(tmp_path):
    with pytest.raises(ValueError, match="lm_head_loss must be one of"):
        InstructConfig(output_dir=str(tmp_path), lm_head_loss="chunked")


@pytest.mark.parametrize("lm_head_loss", ["model", "fused"])
def test_the_trainers_step_asks_the_device_for_no_number(data, tmp_path, monkeypatch, lm_head_loss):
    """No `.item()` / `float()` / `int()` / `bool()` of a tensor in the trainer's loss and metrics code: on a GPU
    each would make the host wait for the device at every step (they happen once per logged step, in `log`)."""
    import sys
    from pathlib import Path

    from e2llm.training import sft_trainer

    model, _, rows, collator = data
    trainer = _trainer(data, tmp_path, lm_head_loss)
    batch = collator([rows[i] for i in range(4)])
    model.train()
    ours = str(Path(sft_trainer.__file__).resolve())
    calls = []

    def watch(name):
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args):
            if str(Path(sys._getframe(1).f_code.co_filename).resolve()) == ours:
                calls.append(name)
            return original(self, *args)
        return wrapped

    with monkeypatch.context() as patch:
        for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
            patch.setattr(torch.Tensor, name, watch(name))
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
    assert calls == [] and trainer._sums["train"]["valid"] > 0
