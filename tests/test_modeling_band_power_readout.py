"""The encoder's standardised band-power readout: running statistics per electrode, saved with the weights."""

from __future__ import annotations

import torch

from e2llm import E2LLMEEGConfig, E2LLMEEGEncoder

CONFIG = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, patch_size=400,
              band_power_readout=True)


def _batch(n=6, channels=(0, 2, 19, 30)):
    torch.manual_seed(0)
    scale = torch.linspace(0.5, 2.0, len(channels))[None, :, None]
    return torch.randn(n, len(channels), 800) * scale, torch.tensor([list(channels)] * n)


def test_statistics_follow_the_training_batches_and_freeze_otherwise():
    encoder = E2LLMEEGEncoder(E2LLMEEGConfig(**CONFIG))
    readout = encoder.readout
    eeg, ids = _batch()
    encoder.train()
    encoder(eeg, ids)
    log_power = readout.log_band_power(eeg)
    torch.testing.assert_close(readout.running_mean[ids[0]], log_power.mean(0))  # first batch: its own statistics
    assert readout.num_updates[ids[0]].eq(1).all() and readout.num_updates.sum() == len(ids[0])
    frozen = readout.running_mean.clone()
    encoder.eval()
    encoder(eeg * 3, ids)
    readout.weight.requires_grad_(False)
    encoder.train()
    encoder(eeg * 3, ids)
    torch.testing.assert_close(readout.running_mean, frozen)


def test_readout_round_trips_and_ignores_masked_channels(tmp_path):
    encoder = E2LLMEEGEncoder(E2LLMEEGConfig(**CONFIG))
    eeg, ids = _batch()
    encoder.train()
    for _ in range(3):
        encoder(eeg, ids)
    encoder.eval()
    encoder.save_pretrained(tmp_path)
    reloaded = E2LLMEEGEncoder.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded.readout.running_var, encoder.readout.running_var)
    torch.testing.assert_close(reloaded(eeg, ids).pooler_output, encoder(eeg, ids).pooler_output)
    mask = torch.tensor([[1, 1, 1, 0]] * len(eeg))
    noisy = eeg.clone()
    noisy[:, 3] = 1000 * torch.randn_like(noisy[:, 3])
    torch.testing.assert_close(encoder.readout(noisy, ids, mask.bool()), encoder.readout(eeg, ids, mask.bool()))


def test_readout_is_off_by_default():
    assert E2LLMEEGEncoder(E2LLMEEGConfig(**{**CONFIG, "band_power_readout": False})).readout is None
