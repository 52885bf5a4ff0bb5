"""The model taken apart with its public methods (`probes`), and the conflict tests (`conflicts`), on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import pipeline

from e2llm import assemble_e2llm, build_offline_tokenizer
from e2llm.assembly import TINY_TEXT_CONFIG
from e2llm.eeg_evidence_features import band_power_db
from e2llm.training.evaluation.conflicts import conflict_tests, mismatched_partners
from e2llm.training.evaluation.probes import ModelProbe, softmax

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]
EEG_CONFIG = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64,
              "patch_size": 400, "use_sample_embedding": False, "use_spectral_embedding": False,
              "band_power_readout": True, "region_tokens": True, "emotion_token": True, "num_output_tokens": 9}
LABELS = {0: "happiness", 1: "sadness", 2: "fear"}


@pytest.fixture(scope="module")
def tiny():  # the quickstart encoder's layout: pooled, region and emotion tokens
    torch.manual_seed(0)
    model, processor = assemble_e2llm(build_offline_tokenizer(), text_config=TINY_TEXT_CONFIG, eeg_config=EEG_CONFIG,
                                      id2label=LABELS)
    return model.eval(), processor


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(0)
    return (20 * rng.standard_normal((6, len(CHANNELS), 800))).astype(np.float32), np.array([0, 1, 2, 0, 1, 2])


def _probe(tiny):
    return ModelProbe(*tiny, sampling_rate=200.0, channel_names=CHANNELS, units="uV", batch_size=4)


def test_probe_scores_as_the_pipeline_does(tiny, windows):
    model, processor = tiny
    eeg, _ = windows
    probe = _probe(tiny)
    probs = softmax(probe.label_log_likelihoods([probe.prompt_ids()] * len(eeg), probe.eeg_tokens(probe.encode(eeg))))
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    out = pipe([{"eeg": w} for w in eeg], sampling_rate=200.0, channel_names=CHANNELS, units="uV",
               apply_filters=False, return_rationale=False)
    expected = np.array([[o["scores"][name] for name in LABELS.values()] for o in out])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    head = probe.head_probs(probe.encode(eeg))
    assert head.shape == (6, 3) and np.allclose(head.sum(1), 1)


def test_probe_writes_the_pipelines_evidence_line(tiny, windows):
    model, processor = tiny
    eeg, _ = windows
    processor.set_evidence_prompt([1.0] * 31, None)  # prompts with every feature's line, for this test only
    try:
        probe = _probe(tiny)
        power = band_power_db(eeg, 200.0)
        baseline = power.mean(axis=0)
        lines = processor.evidence_statements(power, CHANNELS, baseline)
        probs = softmax(probe.label_log_likelihoods([probe.prompt_ids(None, line) for line in lines],
                                                    probe.eeg_tokens(probe.encode(eeg))))
        pipe = pipeline("eeg-emotion", model=model, processor=processor)
        out = pipe([{"eeg": w, "baseline_power": baseline} for w in eeg], sampling_rate=200.0, channel_names=CHANNELS,
                   units="uV", apply_filters=False, return_rationale=False)
        expected = np.array([[o["scores"][name] for name in LABELS.values()] for o in out])
        np.testing.assert_allclose(probs, expected, atol=1e-5)
        assert probe.writes_evidence
    finally:
        processor.set_evidence_prompt(None, None)


def test_conflicts_swap_one_input_at_a_time(tiny, windows):
    eeg, labels = windows
    results = conflict_tests(_probe(tiny), eeg, labels, seed=1)
    assert set(results) == {"none", "eeg_tokens", "emotion_token", "all", "partners"}  # no evidence line here
    partners = np.array(results["partners"])
    assert (labels[partners] != labels).all()
    assert results["none"]["changed_answer"] == 0.0 and results["none"]["follows_partner_answer"] >= 0.0
    assert results["all"]["follows_partner_answer"] == 1.0  # every input of the partner: the partner's answer
    for name in ("eeg_tokens", "emotion_token"):
        assert 0.0 <= results[name]["changed_answer"] <= 1.0 and 0 < results[name]["mean_confidence"] <= 1


def test_conflict_inputs_are_the_partners_tokens(tiny, windows):
    from e2llm.training.evaluation.conflicts import _swapped_inputs

    tokens = torch.arange(4 * 3 * 2, dtype=torch.float32).view(4, 3, 2)
    prompts = ["p0", "p1", "p2", "p3"]
    partners = np.array([1, 0, 3, 2])
    tests = _swapped_inputs(tokens, prompts, partners, emotion_token=True, has_evidence=True)
    eeg, rows = tests["eeg_tokens"]
    assert torch.equal(eeg[0, :2], tokens[1, :2]) and torch.equal(eeg[0, 2], tokens[0, 2]) and rows == prompts
    eeg, rows = tests["emotion_token"]
    assert torch.equal(eeg[0, :2], tokens[0, :2]) and torch.equal(eeg[0, 2], tokens[1, 2])
    eeg, rows = tests["evidence_text"]
    assert torch.equal(eeg, tokens) and rows == ["p1", "p0", "p3", "p2"]
    no_token = _swapped_inputs(tokens, prompts, partners, emotion_token=False, has_evidence=False)
    assert set(no_token) == {"none", "eeg_tokens", "all"} and torch.equal(no_token["eeg_tokens"][0], tokens[partners])
    with pytest.raises(ValueError, match="two classes"):
        mismatched_partners(np.zeros(4, dtype=int))
