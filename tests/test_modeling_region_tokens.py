"""The encoder's region tokens: one per scalp region and one scalp-wide, each reading only what it names."""

from __future__ import annotations

import pytest
import torch

from e2llm import E2LLMEEGConfig, E2LLMEEGEncoder
from e2llm.eeg_evidence_features import REGIONS
from e2llm.electrodes import ELECTRODE_NAMES

CONFIG = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, patch_size=400,
              band_power_readout=True, region_tokens=True, num_output_tokens=8)
NAMES = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "O1", "O2"]  # frontal (with two FAA pairs), central, occipital


def _batch(n=4, names=NAMES):
    torch.manual_seed(0)
    return torch.randn(n, len(names), 800), torch.tensor([[ELECTRODE_NAMES.index(x) for x in names]] * n)


def test_region_tokens_follow_the_pooled_tokens():
    encoder = E2LLMEEGEncoder(E2LLMEEGConfig(**CONFIG)).eval()
    eeg, ids = _batch()
    pooled = encoder(eeg, ids).pooler_output
    assert encoder.config.num_region_tokens == len(REGIONS) + 1 and encoder.pooler.queries.shape[0] == 2
    assert pooled.shape == (4, 8, 32)
    standard = encoder.readout.standardised_log_power(eeg, ids, torch.ones_like(ids, dtype=torch.bool))
    torch.testing.assert_close(pooled[:, 2:], encoder.region_tokens(standard, ids, torch.ones_like(ids).bool()))


def test_a_region_token_reads_only_its_region():
    encoder = E2LLMEEGEncoder(E2LLMEEGConfig(**CONFIG)).eval()
    eeg, ids = _batch()
    louder = eeg.clone()
    louder[:, NAMES.index("O1")] *= 5  # occipital only
    before, after = encoder(eeg, ids).pooler_output, encoder(louder, ids).pooler_output
    changed = [not torch.allclose(before[:, 2 + t], after[:, 2 + t]) for t in range(len(REGIONS) + 1)]
    assert changed == [region == "occipital" for region in REGIONS] + [True]  # and the scalp-wide token


def test_values_mark_absent_regions_and_give_the_frontal_asymmetry():
    encoder = E2LLMEEGEncoder(E2LLMEEGConfig(**CONFIG)).eval()
    eeg, ids = _batch()
    mask = torch.ones_like(ids, dtype=torch.bool)
    standard = encoder.readout.standardised_log_power(eeg, ids, mask)
    values = encoder.region_tokens.values(standard, ids, mask)
    present = values[:, : len(REGIONS), -1]
    assert present[0].tolist() == [float(r in ("frontal", "central", "occipital")) for r in REGIONS]
    assert values[:, [REGIONS.index("temporal"), REGIONS.index("parietal")]].abs().sum() == 0
    alpha = standard[..., encoder.region_tokens.alpha_band]
    right = alpha[:, [NAMES.index("Fp2"), NAMES.index("F4")]].mean(1)
    left = alpha[:, [NAMES.index("Fp1"), NAMES.index("F3")]].mean(1)
    torch.testing.assert_close(values[:, -1, -1], right - left)
    masked = mask.clone()
    masked[:, [NAMES.index("Fp1"), NAMES.index("F3")]] = False  # no left frontal channel: no asymmetry
    assert encoder.region_tokens.values(standard, ids, masked)[:, -1, -1].abs().sum() == 0


def test_region_tokens_round_trip(tmp_path):
    encoder = E2LLMEEGEncoder(E2LLMEEGConfig(**CONFIG))
    eeg, ids = _batch()
    encoder.train()
    encoder(eeg, ids)
    encoder.eval()
    encoder.save_pretrained(tmp_path)
    reloaded = E2LLMEEGEncoder.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(eeg, ids).pooler_output, encoder(eeg, ids).pooler_output)


@pytest.mark.parametrize("change, message", [
    ({"band_power_readout": False}, "needs backbone='patch' and band_power_readout=True"),
    ({"num_output_tokens": 6}, "leaves no pooled token next to the 6 region tokens; use at least 7"),
    ({"band_edges": [1.0, 4.0, 9.0, 30.0]}, "needs a band starting at 8 Hz"),
])
def test_config_refuses_region_tokens_it_cannot_build(change, message):
    with pytest.raises(Exception, match=message):
        E2LLMEEGConfig(**{**CONFIG, **change})
