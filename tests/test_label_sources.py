"""Where the label probabilities come from (`config.label_probabilities`): the language model or the encoder's
emotion head, each at its own temperature, chosen on validation windows in stage 3 and said in every result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import pipeline

from e2llm import (
    LABEL_PREFIX,
    E2LLMConfig,
    E2LLMForConditionalGeneration,
    assemble_e2llm,
    build_offline_tokenizer,
)
from e2llm.assembly import TINY_TEXT_CONFIG
from e2llm.processing.splits import SplitSpec, resolve_split, trial_keys
from e2llm.training.data import synthetic_window_dataset
from e2llm.training.evaluation.calibration import calibrate_label_sources, choose_label_source

CHANNELS = ("Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2")
EEG_CONFIG = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64,
              "patch_size": 400, "use_sample_embedding": False, "use_spectral_embedding": False,
              "band_power_readout": True, "region_tokens": True, "emotion_token": True, "num_output_tokens": 9}
LABELS = {0: "happiness", 1: "sadness", 2: "fear"}


def _model():
    torch.manual_seed(0)
    model, processor = assemble_e2llm(build_offline_tokenizer(), text_config=TINY_TEXT_CONFIG, eeg_config=EEG_CONFIG,
                                      id2label=LABELS)
    return model.eval(), processor


def _inputs(processor, n=3):
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True) + LABEL_PREFIX.rstrip()
    eeg = 20 * np.random.default_rng(0).standard_normal((n, len(CHANNELS), 4 * 200))
    return processor(text=[prompt] * n, eeg=list(eeg), sampling_rate=200, channel_names=list(CHANNELS), units="uV",
                     return_tensors="pt")


def test_a_source_the_model_cannot_give_is_refused():
    # the config's validator raises ValueError, which huggingface_hub's strict dataclasses wrap
    with pytest.raises(StrictDataclassClassValidationError, match="label_probabilities must be one of"):
        E2LLMConfig(label_probabilities="head")
    with pytest.raises(StrictDataclassClassValidationError, match="has none .eeg_config.emotion_token is false.: use label_probabilities="):
        E2LLMConfig(label_probabilities="emotion_head")
    for bad in (0.0, -2.0, float("inf")):
        with pytest.raises(StrictDataclassClassValidationError, match="head_temperature must be a finite number > 0"):
            E2LLMConfig(head_temperature=bad)


def test_score_emotions_follows_the_configured_source(tmp_path):
    model, processor = _model()
    inputs = _inputs(processor)
    candidates = processor.label_candidate_ids(model.config.label_names)
    eeg = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    scores = model.score_labels(**inputs, candidate_ids=candidates)
    torch.testing.assert_close(model.score_emotions(**inputs, candidate_ids=candidates), scores.softmax(-1))
    model.config.label_probabilities, model.config.head_temperature = "emotion_head", 2.5
    _, logits = model.get_eeg_features(**eeg, return_emotion_logits=True)
    head = (logits / 2.5).softmax(-1)
    torch.testing.assert_close(model.score_emotions(**inputs, candidate_ids=candidates), head)
    # the head reads the EEG only: another prompt gives the same probabilities
    other = _inputs(processor)
    other["input_ids"] = other["input_ids"].roll(1, dims=-1)
    torch.testing.assert_close(model.score_emotions(**other, candidate_ids=candidates), head)
    with pytest.raises(ValueError, match="pass eeg_values .and eeg_channel_ids., not eeg_features"):
        model.score_emotions(inputs["input_ids"], inputs["attention_mask"], candidates,
                             eeg_features=model.get_eeg_features(**eeg))
    model.save_pretrained(tmp_path / "model")
    loaded = E2LLMForConditionalGeneration.from_pretrained(tmp_path / "model").config
    assert (loaded.label_probabilities, loaded.head_temperature) == ("emotion_head", 2.5)


def test_pipeline_results_say_which_source_gives_the_scores():
    model, processor = _model()
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    eeg = 20 * np.random.default_rng(1).standard_normal((len(CHANNELS), 8 * 200))
    kwargs = dict(sampling_rate=200, channel_names=list(CHANNELS), units="uV", return_rationale=False)
    window = pipe(eeg, **kwargs)["windows"][0]
    assert window["scores_source"] == "language_model" and window["scores"] == window["language_model_scores"]
    assert set(window["head_scores"]) == set(LABELS.values())
    model.config.label_probabilities = "emotion_head"
    again = pipe(eeg, **kwargs)["windows"][0]
    assert again["scores_source"] == "emotion_head" and again["scores"] == again["head_scores"]
    assert again["language_model_scores"] == window["language_model_scores"]
    assert again["label"] == window["label"]  # the label is the language model's answer; only the scores move


def test_stage3_calibration_fits_both_sources_and_chooses_by_the_validation_comparison(tmp_path):
    model, processor = _model()
    dataset = synthetic_window_dataset(n_subjects=2, clips_per_class=3, trial_seconds=8.0, channel_names=CHANNELS,
                                       label_names=list(LABELS.values()))
    split = resolve_split(dataset, SplitSpec("trial", validation_size=0.4))
    record = calibrate_label_sources(model, processor, dataset.select(split.validation), dataset.select(split.train),
                                     batch_size=8, max_new_tokens=2)
    sources = record["sources"]
    assert set(sources) == {"language_model", "emotion_head"} and record["n_windows"] == len(split.validation)
    comparison = record["comparison"]
    assert comparison["n_trials"] == len(np.unique(trial_keys(dataset.select(split.validation)), axis=0))
    assert comparison["ci_low"] <= comparison["difference"] <= comparison["ci_high"]
    assert record["chosen"] == ("language_model" if comparison["ci_low"] > 0 else "emotion_head")
    config = model.config
    assert config.label_probabilities == record["chosen"] and config.label_calibration == record
    assert config.label_temperature == sources["language_model"]["temperature"]
    assert config.head_temperature == sources["emotion_head"]["temperature"]
    for figures in sources.values():
        assert 0.05 <= figures["temperature"] <= 100 and 0 <= figures["ece"] <= 1
    model.save_pretrained(tmp_path / "model")
    assert E2LLMConfig.from_pretrained(tmp_path / "model").label_calibration == record


def test_a_real_recording_gets_the_configured_sources_probabilities():
    """A real BioSemi recording (MNE's test data, 20 s, 5 windows): each window's `scores` are the
    emotion head's when the config says so, a probability per label summing to 1, and the language model's stay."""
    from pathlib import Path

    model, processor = _model()
    model.config.label_probabilities = "emotion_head"
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    result = pipe(str(Path(__file__).parent / "fixtures" / "real" / "bdf" / "multiple_annotation_chans_20s.bdf"),
                  return_rationale=False)
    assert len(result.get("windows", [])) > 1 and result["scores_source"] == "emotion_head"  # the aggregate says it
    for window in result["windows"]:
        assert window["scores_source"] == "emotion_head" and window["scores"] == window["head_scores"]
        assert abs(sum(window["scores"].values()) - 1) < 1e-5
        assert abs(sum(window["language_model_scores"].values()) - 1) < 1e-5


def test_the_head_keeps_the_probabilities_unless_the_language_model_is_better_beyond_noise():
    """A language model better on average but within the noise of 12 validation trials keeps the head; better on
    every trial, it gives the probabilities; without a head it is the only source."""
    rng = np.random.default_rng(0)
    trials = np.repeat(np.arange(12), 5)
    head = np.log(rng.uniform(0.3, 0.9, size=60))
    noisy = head + rng.normal(0.02, 0.5, size=60)
    chosen, comparison = choose_label_source({"language_model": noisy, "emotion_head": head}, trials)
    assert comparison["difference"] > 0 and comparison["ci_low"] < 0 < comparison["ci_high"]
    assert chosen == "emotion_head" and comparison["n_trials"] == 12
    chosen, comparison = choose_label_source({"language_model": head + 0.2, "emotion_head": head}, trials)
    assert chosen == "language_model" and comparison["ci_low"] > 0
    assert choose_label_source({"language_model": head}, trials) == ("language_model", None)
