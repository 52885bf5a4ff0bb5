"""Evidence: integrated gradients batched over windows and steps, the unnormalised feature-extraction path, and
band power relative to a reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2llm import LABEL_PREFIX
from e2llm.evidence_e2llm import integrated_gradients, normalized_like_extractor, relative_band_power

pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")
CHANNELS = ["Fp1", "Fp2", "Cz", "O1"]


def _inputs(processor, n_windows: int = 2):
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True) + LABEL_PREFIX.rstrip()
    rng = np.random.default_rng(0)
    eeg = [20 * rng.standard_normal((len(CHANNELS), 800)) for _ in range(n_windows)]
    return processor(text=[prompt] * n_windows, eeg=eeg, sampling_rate=200, channel_names=CHANNELS, units="uV",
                     return_tensors="pt")


def _target_logprob(model, inputs, target, eeg_values):
    ids = torch.cat([inputs["input_ids"], torch.tensor([target])], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids, eeg_values=eeg_values, eeg_channel_ids=inputs["eeg_channel_ids"],
                       eeg_channel_mask=inputs["eeg_channel_mask"]).logits.float()
    logp = logits[0, -len(target) - 1 : -1].log_softmax(-1)
    return float(logp.gather(-1, torch.tensor(target)[:, None]).sum())


def test_integrated_gradients_complete_and_batched(tiny_e2llm):
    """Attributions sum to f(x) - f(0) (completeness, up to the Riemann error); windows batched == one by one."""
    model, processor = tiny_e2llm
    inputs = _inputs(processor)
    candidates = processor.label_candidate_ids([*model.config.label_names, "quiet zest"])
    targets = [candidates[1], candidates[-1]]  # a single-token and a multi-token target
    eeg = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    both = integrated_gradients(model, inputs["input_ids"], inputs["attention_mask"], targets, **eeg, steps=32)
    assert both.shape == (2, len(CHANNELS))
    for i in range(2):
        single = {k: v[i : i + 1] for k, v in inputs.items()}
        alone = integrated_gradients(model, single["input_ids"], single["attention_mask"], [targets[i]],
                                     single["eeg_values"], single["eeg_channel_ids"], single["eeg_channel_mask"],
                                     steps=32)
        torch.testing.assert_close(both[i], alone[0], atol=1e-5, rtol=1e-4)
        gap = _target_logprob(model, single, targets[i], single["eeg_values"]) - _target_logprob(
            model, single, targets[i], torch.zeros_like(single["eeg_values"]))
        assert abs(gap) > 1e-3
        # midpoint rule with 32 steps; the encoder's log band-power embedding is steep near the zero baseline
        assert float(both[i].sum()) == pytest.approx(gap, rel=0.1, abs=1e-3)
    with pytest.raises(ValueError, match="at least 1"):
        integrated_gradients(model, inputs["input_ids"], inputs["attention_mask"], targets, **eeg, steps=0)


def test_unnormalised_windows_normalise_to_the_extractor_output(tiny_e2llm):
    _, processor = tiny_e2llm
    extractor = processor.feature_extractor
    eeg = 20 * np.random.default_rng(1).standard_normal((len(CHANNELS), 1600))
    eeg[2] = 0.0  # a flat channel stays masked and zero
    signal = {"sampling_rate": 200, "channel_names": CHANNELS, "units": "uV", "return_tensors": "pt"}
    normal = extractor(eeg, **signal)
    raw_extractor = type(extractor)(**{**extractor.to_dict(), "normalization": "none"})
    raw = raw_extractor(eeg, **signal)
    assert not torch.allclose(raw["eeg_values"], normal["eeg_values"])
    rebuilt = normalized_like_extractor(raw["eeg_values"], raw["eeg_channel_mask"], extractor.normalization)
    torch.testing.assert_close(rebuilt, normal["eeg_values"], atol=1e-5, rtol=1e-5)
    assert rebuilt[:, 2].abs().max() == 0


def test_relative_band_power_references():
    power = np.arange(2 * 5 * 3, dtype=float).reshape(2, 5, 3)
    baseline = np.stack([power[0] + 2.0, power[1]])  # its mean over windows is 1 dB above the input's
    np.testing.assert_allclose(relative_band_power(power, baseline).mean(axis=0), -1.0)
    np.testing.assert_allclose(relative_band_power(power, None).mean(axis=0), 0.0)  # the recording's own mean
    one = relative_band_power(power[:1], None)  # one window: against the mean over channels
    np.testing.assert_allclose(one.mean(axis=-1), 0.0)
