"""Stage-2/3 loss: the model's own LM head and TRL's fused LM head give the same loss and gradients."""

from __future__ import annotations

import pytest
import torch

from e2llm import build_tiny_e2llm
from e2llm.processing.instructions import build_instructions
from e2llm.training.arguments import InstructConfig
from e2llm.training.data import EEGChatCollator, collator_kwargs, synthetic_window_dataset
from e2llm.training.instruct import E2LLMSFTTrainer

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]


def _trainer(model, processor, rows, tmp_path, lm_head_loss):
    args = InstructConfig(output_dir=str(tmp_path / lm_head_loss), lm_head_loss=lm_head_loss, report_to=[],
                          per_device_train_batch_size=4, max_length=None, bf16=False, use_cpu=True,
                          dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False)
    collator = EEGChatCollator(processor, **collator_kwargs(rows))
    return E2LLMSFTTrainer(model=model, args=args, train_dataset=rows, processing_class=processor,
                           data_collator=collator), collator


def test_model_and_fused_lm_head_losses_agree(tmp_path):
    windows = synthetic_window_dataset(n_subjects=1, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)
    rows = build_instructions(windows, tasks=("emotion", "multitask"), seed=0)
    model, processor = build_tiny_e2llm(seed=0)
    results = {}
    for choice in ("model", "fused"):
        trainer, collator = _trainer(model, processor, rows, tmp_path, choice)
        assert trainer.use_fused_lm_head is (choice == "fused")
        batch = collator([rows[i] for i in range(4)])
        model.zero_grad()
        model.train()
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        results[choice] = (loss.detach(), model.model.projector.linear_1.weight.grad.clone(),
                           dict(trainer._metrics["train"]))
    torch.testing.assert_close(results["model"][0], results["fused"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results["model"][1], results["fused"][1], atol=1e-6, rtol=1e-4)
    # both log token accuracy; only the fused head computes the entropy
    model_accuracy = results["model"][2]["mean_token_accuracy"][-1]
    assert model_accuracy == pytest.approx(results["fused"][2]["mean_token_accuracy"][-1])
    assert "entropy" in results["fused"][2] and "entropy" not in results["model"][2]


def test_auto_uses_the_fused_head_only_on_cuda(tmp_path):
    windows = synthetic_window_dataset(n_subjects=1, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)
    rows = build_instructions(windows, tasks=("emotion",), seed=0)
    model, processor = build_tiny_e2llm(seed=0)
    trainer, _ = _trainer(model, processor, rows, tmp_path, "auto")
    assert trainer.use_fused_lm_head is (trainer.args.device.type == "cuda")


def test_lm_head_loss_is_validated(tmp_path):
    with pytest.raises(ValueError, match="lm_head_loss must be one of"):
        InstructConfig(output_dir=str(tmp_path), lm_head_loss="chunked")
