"""The pipeline's answer on what is not emotion EEG (issue 26 item 5), and the label support of the evidence it cites
(issue 26 item 1): every window carries `abstention_reason` and `label_support`; noise, flat, line-noise-only and
artefact-dominated windows get the answer "insufficient evidence", no label and no rationale; a model that ships no
class signatures says so in `label_support` instead of inventing support."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from transformers import pipeline

from e2llm import SEED_CHANNELS, build_tiny_e2llm
from e2llm.label_evidence_e2llm import class_signatures
from e2llm.processing.synthetic import NON_EMOTION_KINDS, SyntheticEEG, SyntheticEEGConfig
from e2llm.window_verdicts_e2llm import INSUFFICIENT_EVIDENCE, NO_SIGNATURES

_spec = importlib.util.spec_from_file_location("pipeline_helpers", Path(__file__).parent / "fixtures" /
                                               "pipeline_helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

NAMES = list(SEED_CHANNELS)
SIGNAL = {"sampling_rate": 200.0, "channel_names": NAMES, "units": "uV"}
ANSWER = ("Reasoning: Relative to baseline: alpha power is lower over frontal channels (strongly); theta power is "
          "higher over central channels (slightly).\nEmotion: sadness")
# what each kind of non-emotion input is abstained for (the start of its reason)
EXPECTED = {"noise": "not like the training EEG (spectrum flat like noise", "flat": "flat signal",
            "line_noise": "line noise dominates", "muscle": "muscle artefact dominates",
            "eyes_closed": "not like the training EEG (posterior alpha"}


@pytest.fixture(scope="module")
def generator():
    return SyntheticEEG(SyntheticEEGConfig(sfreq=200.0, channel_names=tuple(NAMES), preprocessed=True), seed=0)


def _statistics(label_names, signatures: bool) -> dict:
    """Shipped statistics (spread, reference) with class signatures in which sadness has low frontal alpha."""
    statistics = helpers.statistics(NAMES, spread=2.0, reference_db=5.0)
    if signatures:
        ids = statistics["feature_ids"]
        z = np.random.default_rng(0).normal(0.0, 0.5, (14, len(ids)))
        labels = np.arange(14) % len(label_names)
        sad = list(label_names).index("sadness")
        z[labels == sad, ids.index("power:alpha:frontal")] -= 3.0
        statistics["signatures"] = class_signatures(z, labels, label_names, ids)
    return statistics


@pytest.fixture(scope="module")
def pipe():
    model, processor = build_tiny_e2llm()
    processor.set_evidence_statistics(_statistics(model.config.label_names, signatures=True))
    return pipeline("eeg-emotion", model=model, processor=processor)


@pytest.fixture(scope="module")
def bare_pipe():
    model, processor = build_tiny_e2llm()
    return pipeline("eeg-emotion", model=model, processor=processor)


def test_emotion_eeg_is_answered_with_label_support(pipe, generator):
    eeg = generator.trial(1, 1, 1, 800)
    eeg[:8] -= 0.5 * eeg[:8]  # weaker frontal channels: frontal alpha below the reference
    out = pipe(eeg, **SIGNAL, **helpers.forced(pipe, ANSWER))
    assert out["abstention_reason"] is None and "answer" not in out and out["label"] == "sadness"
    support = out["label_support"]
    assert set(support) == {"label", "against", "favoured", "cited", "for_label", "reason"}
    assert support["label"] == "sadness" and support["reason"] is None
    assert support["against"] in pipe.label_names and support["against"] != "sadness"
    assert [row["item"] for row in support["cited"]] == [claim["item"] for claim in out["claims"]]
    items = {item["id"]: item for item in out["evidence"]["items"]}
    for row in support["cited"] + support["for_label"]:
        assert set(row) == {"item", "value", "unit", "text", "support", "typicality"}
        assert row["value"] == items[row["item"]]["value"] and 0.0 <= row["typicality"] <= 1.0
    assert all(row["support"] > 0 for row in support["for_label"])  # chosen for the label over the alternatives
    frontal = next(row for row in support["cited"] if row["item"] == "power:alpha:frontal")
    assert (frontal["support"] > 0) == (frontal["value"] < 0)  # low frontal alpha speaks for sadness here


def test_label_scoring_only_gives_the_evidence_for_the_label(pipe, generator):
    out = pipe(generator.trial(1, 2, 3, 800), **SIGNAL, return_rationale=False)
    assert out["label_support"]["label"] == out["label"] and out["label_support"]["cited"] == []
    assert out["label_support"]["reason"] is None and out["label_support"]["against"] != out["label"]


@pytest.mark.parametrize("kind", NON_EMOTION_KINDS)
def test_non_emotion_windows_abstain(pipe, generator, kind):
    eeg = generator.non_emotion_trial(kind, 101, 1, 1600)  # two windows
    if kind == "flat":  # 0.05 uV is refused before any window (too small for microvolts); 0.2 uV gets through
        eeg = eeg + 0.2 * np.random.default_rng(1).standard_normal(eeg.shape)
    out = pipe(eeg, **SIGNAL, **helpers.forced(pipe, ANSWER))
    assert out["label"] is None and out["answer"] == INSUFFICIENT_EVIDENCE and out["n_abstained"] == 2
    assert out["votes"] == {} and out["n_unparseable"] == 0
    for window in out["windows"]:
        assert window["abstention_reason"].startswith(EXPECTED[kind]), window["abstention_reason"]
        assert window["label"] is None and window["answer"] == INSUFFICIENT_EVIDENCE and not window["parseable"]
        assert window["rationale"] == "Insufficient evidence." and window["claims"] == []
        assert window["claim_constraint"] is None and window["label_guidance"] is None  # nothing returned to count
        assert window["generated_text"].endswith("Emotion: sadness")  # what the model wrote stays visible
        assert window["label_support"]["reason"] == "no label to support"
    assert out["abstention_reason"] == EXPECTED[kind].split(" (")[0]


def test_flat_channels_refuse_the_window(pipe, generator):
    eeg = generator.trial(1, 1, 1, 800)
    eeg[:40, :400] = 3.0  # most channels flat for 2 s of the window's raw samples: refused, abstained for that
    out = pipe(eeg, **SIGNAL, return_rationale=False)
    assert out["label"] is None and out["abstention_reason"] == out["refused"] and "flat" in out["refused"]


def test_white_noise_array_abstains_without_any_statistics(bare_pipe):
    """A model without stored statistics still abstains (ranges that hold for EEG from any lab) and says that it
    cannot measure label support."""
    noise = 20 * np.random.default_rng(0).standard_normal((len(NAMES), 800))
    out = bare_pipe(noise, **SIGNAL, return_rationale=False)
    assert out["abstention_reason"].startswith(EXPECTED["noise"]) and out["label"] is None
    eeg = helpers.recording(NAMES, 4.0)
    out = bare_pipe(eeg, **SIGNAL, return_rationale=False)
    assert out["abstention_reason"] is None and out["label"] in bare_pipe.label_names
    assert out["label_support"] == {"label": out["label"], "against": None, "favoured": None, "cited": [],
                                    "for_label": [], "reason": NO_SIGNATURES}


def test_shipped_abstention_ranges_are_used(generator):
    """The training ranges a model ships (``evidence_statistics["abstention"]``) widen the default ones: a model
    trained on eyes-closed rest answers it."""
    model, processor = build_tiny_e2llm()
    statistics = _statistics(model.config.label_names, signatures=False)
    processor.set_evidence_statistics({**statistics, "abstention": {"slope": [-3.0, -0.8], "alpha_ratio": [0.0, 50.0]}})
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    out = pipe(generator.non_emotion_trial("eyes_closed", 101, 1, 800), **SIGNAL, return_rationale=False)
    assert out["abstention_reason"] is None and out["label"] is not None
    with pytest.raises(ValueError, match=r"abstention.*slope"):
        processor.set_evidence_statistics({**statistics, "abstention": {"slope": [1.0, -1.0]}})
    with pytest.raises(ValueError, match=r"evidence_statistics\['signatures'\]: signatures hold mean_z \(1, 3\)"):
        processor.set_evidence_statistics({**statistics, "signatures": {"labels": ["a", "b"], "mean_z": [[0.0] * 3]}})


def test_statistics_written_by_training_load_and_give_label_support():
    """What `processing.instructions.evidence_reference(...).statistics()` writes (signatures, reference, abstention
    ranges) is accepted by the processor, and the pipeline measures label support and abstains with it."""
    from e2llm.processing.instructions import evidence_reference
    from e2llm.training.data import synthetic_window_dataset

    windows = synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=8, channel_names=NAMES)
    statistics = evidence_reference(windows).statistics(provenance={"fingerprint": "f"})
    model, processor = build_tiny_e2llm()
    processor.set_evidence_statistics(statistics)
    assert processor.evidence_statistics["abstention"]["slope"] == statistics["abstention"]["slope"]
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    eeg = np.asarray(windows[0]["eeg"], dtype=np.float64)
    out = pipe(eeg, **SIGNAL, apply_filters=False, return_rationale=False)
    assert out["abstention_reason"] is None and out["label_support"]["reason"] is None
    assert out["label_support"]["for_label"] and out["evidence"]["reference"]["kind"] == "model_reference"
    noise = 20 * np.random.default_rng(0).standard_normal(eeg.shape)
    assert pipe(noise, **SIGNAL, return_rationale=False)["abstention_reason"] is not None


def test_window_statistics_only_when_asked_and_equal_when_streamed(bare_pipe):
    """The feature extractor measures the raw windows' statistics only when asked (the pipeline asks), the same
    whether the recording is processed whole or streamed."""
    extractor = bare_pipe.processor.feature_extractor
    eeg = helpers.eeg_like(len(NAMES), 200 * 60, seed=2)
    assert "eeg_window_statistics" not in extractor(eeg, **SIGNAL)
    whole = extractor(eeg, **SIGNAL, return_window_statistics=True)["eeg_window_statistics"]
    streamed = [s for batch in extractor.iter_windows(eeg, **SIGNAL, windows_per_chunk=4, return_window_statistics=True)
                for s in batch["eeg_window_statistics"]]
    assert len(whole) == len(streamed) == 15 and set(whole[0]) == {"rms_uv", "flat_share", "line_share",
                                                                   "residual_rms_uv", "muscle_share", "slope",
                                                                   "alpha_ratio"}
    for a, b in zip(whole, streamed):
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-4, atol=1e-4)
