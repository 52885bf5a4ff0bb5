"""Evidence: integrated gradients batched over windows and steps; references and measured items per window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2llm import LABEL_PREFIX
from e2llm.evidence_e2llm import integrated_gradients
from e2llm.evidence_statistics_e2llm import FEATURE_IDS, spread_vector
from e2llm.measured_evidence_e2llm import (
    MIN_OWN_REFERENCE_WINDOWS,
    baseline_reference,
    choose_reference,
    given_power_reference,
    model_reference,
    recording_mean,
    window_items,
)

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


def test_references_in_order_of_preference():
    names = ["Fp1", "Fp2", "Cz", "O1"]
    power = np.arange(12 * 5 * 4, dtype=float).reshape(12, 5, 4)
    own = recording_mean(power, names)
    assert own.kind == "recording_mean" and own.n_windows == 12 and "12 windows" in own.description
    np.testing.assert_allclose(own.power_db, power.mean(0))
    statistics = {"feature_ids": list(FEATURE_IDS), "spread": [1.0] * len(FEATURE_IDS),
                  "reference_power_db": {"FP1": [1.0] * 5, "O1": [2.0] * 5},
                  "provenance": {"dataset": "SEED-VII", "synthetic": False, "n_windows": 900}}
    shipped = model_reference(statistics, names)
    assert shipped.kind == "model_reference" and shipped.names == ["Fp1", "O1"] and "SEED-VII" in shipped.description
    given = given_power_reference(np.ones((5, 4)), names, names)
    assert choose_reference(12, own, given, statistics, names) is given  # what the caller gives wins
    assert choose_reference(MIN_OWN_REFERENCE_WINDOWS, own, None, statistics, names) is own
    assert choose_reference(MIN_OWN_REFERENCE_WINDOWS - 1, own, None, statistics, names).kind == "model_reference"
    assert choose_reference(2, own, None, None, names) is None
    assert model_reference(statistics, ["Cz"]) is None  # ships no value for this channel
    with pytest.raises(ValueError, match=r"baseline_power must be \(5 bands, 4 channels\)"):
        given_power_reference(np.ones((5, 3)), names, names)
    assert baseline_reference(power, names).kind == "baseline"


def test_items_per_window_on_live_channels_the_reference_covers():
    names = ["Fp1", "Fp2", "F3", "F4", "O1", "O2"]
    power = np.zeros((2, 5, len(names)))
    power[0, 2, names.index("F4")] = 10.0  # right frontal alpha 10 dB above the reference
    power[1, :, names.index("O1")] = -6.0
    live = np.ones((2, len(names)), bool)
    live[1, names.index("O2")] = False  # flat in the second window
    reference = recording_mean(np.zeros((3, 5, len(names))), names)
    items = window_items(power, names, live, reference, spread_vector({"feature_ids": list(FEATURE_IDS),
                                                                       "spread": [2.0] * len(FEATURE_IDS)}))
    first = {item["id"]: item for item in items[0]}
    assert first["power:alpha:frontal"]["value"] == pytest.approx(2.5) and first["power:alpha:frontal"]["unit"] == "dB"
    assert first["power:alpha:frontal"]["z"] == pytest.approx(1.25) and first["power:alpha:frontal"]["bucket"] == (
        "moderately")
    assert first["power:alpha:frontal"]["text"] == "+2.5 dB"
    assert first["faa:alpha"]["value"] > 0 and first["de:alpha"]["unit"] == "nats"
    assert "power:alpha:central" not in first  # no central channel
    second = {item["id"]: item for item in items[1]}
    assert second["power:delta:occipital"]["value"] == pytest.approx(-6.0)  # O1 alone: O2 is flat
    no_spread = window_items(power, names, live, reference, spread_vector(None))
    assert no_spread[0][0]["z"] is None and no_spread[0][0]["bucket"] is None
    assert window_items(power, names, live, None, spread_vector(None)) == [[], []]
