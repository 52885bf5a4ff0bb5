"""The pipeline on real recordings from MNE's public test data (tests/fixtures/real): every number of a returned
rationale is a measured value of the result's evidence, whatever number the model wrote; channels, filters, warnings
and refusals as a user would meet them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from transformers import pipeline

from e2llm import ELECTRODE_NAMES, build_tiny_e2llm, claim_agreement, numbers_not_measured

mne = pytest.importorskip("mne")
_spec = importlib.util.spec_from_file_location("pipeline_helpers", Path(__file__).parent / "fixtures" /
                                               "pipeline_helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

REAL = Path(__file__).parent / "fixtures" / "real"
pytestmark = pytest.mark.filterwarnings("ignore:only .* EEG channel:UserWarning")
# numbers the model writes (wrong ones, none, and a stray one): the returned text must carry only measured values
ANSWER = ("Reasoning: Relative to this subject's baseline: alpha power is lower over frontal channels (strongly, "
          "-1.5 dB); theta power is higher over central channels (slightly); gamma differential entropy is higher "
          "across the scalp (moderately, +9.99 nats); frontal alpha asymmetry is shifted left (slightly, -0.77); beta "
          "power is higher over occipital channels (strongly) near 12 Hz; so the evidence favours sadness over sadness."
          "\nEmotion: sadness")
# file -> (pipeline arguments, windows, channels used, a dropped channel and its reason, refused windows)
USABLE = {
    # the last 4 s are constant on every channel (a padded end): the second window is refused, said why
    "edf/test_edf_stim_channel.edf": ({}, 2, 19, ("EOG VEOG_I", "name says EOG"), {1}),
    "edf/chtypes_edf.edf": ({}, 1, 25, ("POL DC01", "name says DC channel"), set()),
    "bdf/multiple_annotation_chans_20s.bdf": ({}, 5, 10, ("Trigger", "MNE type stim"), set()),
    "brainvision/test.vhdr": ({}, 1, 26, ("ReRef", "MNE type misc"), set()),
    "nihon_kohden/MB0400FU.EEG": ({}, 7, 19, ("X1", "MNE type bio"), {0}),  # every channel flat for 1.1 s
    "eeglab/test_raw_2021.set": ({"channel_map": {"EEG 000": "Fz", "EEG 001": "Cz", "EEG 002": "Pz"}}, 2, 3, None,
                                 set()),
}
# windows that abstain ("insufficient evidence") by the abstention rule, and the start of their reason
ABSTAINED = {
    "edf/test_edf_stim_channel.edf": {0: "not like the training EEG (spectrum flat like noise"},  # 4.6 uV, slope -0.25
    "eeglab/test_raw_2021.set": {1: "not like the training EEG (posterior alpha"},  # Pz alpha 1.5x the rest
}


@pytest.fixture(scope="module")
def pipe():
    model, processor = build_tiny_e2llm()
    processor.set_evidence_statistics(helpers.statistics(ELECTRODE_NAMES[:-6], reference_db=5.0))
    return pipeline("eeg-emotion", model=model, processor=processor)


def _check_numbers(result: dict) -> None:
    """Every number of the returned rationale is its linked item's printed value; claims keep the model's words."""
    assert numbers_not_measured(result) == []
    for window in result.get("windows", [result]):
        if window["abstention_reason"] is not None:  # no rationale, no claims: the answer is "insufficient evidence"
            assert window["rationale"] == "Insufficient evidence." and window["claims"] == []
            continue
        items = {item["id"]: item for item in window["evidence"]["items"]}
        for claim in window["claims"]:
            assert claim["text"].endswith(items[claim["item"]]["text"] + ")")
            assert claim["text"] in window["rationale"]
            number = float(items[claim["item"]]["text"].split()[0])
            assert abs(number - items[claim["item"]]["value"]) <= 0.05 + 1e-9  # equal at the printed precision
        assert window["removed_numbers"] == ["12 Hz"]  # a number outside any claim
        assert window["rationale"].startswith("Relative to the model's reference:")  # what it was measured against


@pytest.mark.parametrize("name", sorted(USABLE))
def test_real_recording_numbers_come_from_measurement(pipe, name):
    kwargs, n_windows, n_used, dropped, refused = USABLE[name]
    result = pipe(str(REAL / name), **kwargs, **helpers.forced(pipe, ANSWER))
    windows = result.get("windows", [result])
    assert len(windows) == n_windows and len(result["channels"]["used"]) == n_used
    if dropped is not None:
        assert result["channels"]["dropped"][dropped[0]] == dropped[1]
    assert {w["evidence"]["reference"]["kind"] for w in windows} == {"model_reference"}  # under 10 windows
    assert {i for i, w in enumerate(windows) if "refused" in w} == refused
    assert all("flat" in windows[i]["refused"] and windows[i]["label"] is None for i in refused)
    assert all(windows[i]["abstention_reason"] == windows[i]["refused"] for i in refused)
    abstained = {i: w["abstention_reason"] for i, w in enumerate(windows) if i not in refused and
                 w["abstention_reason"] is not None}
    expected = ABSTAINED.get(name, {})
    assert set(abstained) == set(expected) and all(abstained[i].startswith(expected[i]) for i in expected), abstained
    assert all(windows[i]["label"] is None and windows[i]["answer"] == "insufficient evidence" for i in abstained)
    answered = [w for i, w in enumerate(windows) if i not in refused and i not in abstained]
    assert all(w["label"] == "sadness" and w["claims"] for w in answered)
    assert all(w["removed_support"]["reason"] == "it sets the label sadness against itself" and
               "so the evidence" not in w["rationale"] for w in answered)
    _check_numbers(result)
    summary = claim_agreement([result])
    assert summary["claims"] == summary["linked"] + summary["removed"] and summary["linked"] >= len(answered)


def test_short_real_recordings_and_filters(pipe):
    """Under the band-pass kernel's 39.6 s every file gets the fitted filter and says so; a file under one window
    is refused with what is needed."""
    result = pipe(str(REAL / "bdf/multiple_annotation_chans_20s.bdf"), return_rationale=False)
    assert result["filter"].startswith("fitted to a 20-s input")
    assert any("Omitted 9 annotation" in w for w in result["file_warnings"])  # MNE's warning, surfaced
    with pytest.raises(ValueError, match=r"test_raw_chanloc.set: too short for one window: 4.0 s needed, 3.008 s"):
        pipe(str(REAL / "eeglab/test_raw_chanloc.set"), return_rationale=False)


def test_non_10_05_caps_are_refused_with_the_remedy_or_placed(pipe):
    with pytest.raises(ValueError, match="numbered cap layout.*channel_map="):
        pipe(str(REAL / "eeglab/test_raw_2021.set"), return_rationale=False)
    with pytest.raises(ValueError, match='montage="biosemi') as refused:
        pipe(str(REAL / "bdf/test_abc.bdf"), return_rationale=False)
    montage = re.search(r'montage="([^"]+)"', str(refused.value)).group(1)
    placed = pipe(str(REAL / "bdf/test_abc.bdf"), montage=montage, **helpers.forced(pipe, ANSWER))
    assert placed["channels"]["placement"].startswith(f"montage {montage}")
    assert len(placed["channels"]["used"]) > 60 and "Status" in placed["channels"]["dropped"]
    _check_numbers(placed)


def test_the_processor_accepts_what_the_pipeline_accepts_nihon_kohden_export(pipe):
    """The DC channels of a Nihon Kohden export (volts, far beyond EEG) are dropped before any amplitude check, in
    the processor as in the pipeline: both accept the file, with the same channels."""
    path = REAL / "edf/chtypes_edf.edf"
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    prompt = pipe.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "?"}]}], add_generation_prompt=True)
    inputs = pipe.processor(text=prompt, eeg=raw, return_metadata=True, return_tensors="pt")
    result = pipe(str(path), return_rationale=False)
    assert inputs["eeg_channels"][0]["used"] == result["channels"]["used"]
    assert inputs["eeg_values"].shape[0] == 1 and np.isfinite(inputs["eeg_values"].numpy()).all()
    assert {"POL DC01", "POL DC02", "POL DC03", "POL DC04"} <= set(result["channels"]["dropped"])


def test_when_the_head_decides_a_real_recordings_answers_carry_its_label():
    """`config.label_decision` "emotion_head" on real recordings: every answered window's label is the head's most
    probable one (whatever label the model would write), its numbers measured, and each result says so."""
    from tests.test_label_sources import _model

    model, processor = _model()
    processor.set_evidence_statistics(helpers.statistics(ELECTRODE_NAMES[:-6], reference_db=5.0))
    model.config.label_decision = "emotion_head"
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    name = "bdf/multiple_annotation_chans_20s.bdf"  # 5 windows: the head's label differs on some, not on others
    # what the model is pushed to write (token by token, so without the opening label, whose token count the
    # head's label would shift); the head picks its own
    answer = ANSWER.replace("; so the evidence favours sadness over sadness.", ".").replace("sadness", "happiness")
    result = pipe(str(REAL / name), **helpers.forced(pipe, answer, bonus=30.0, extra_tokens=12))
    assert numbers_not_measured(result) == []
    answered = [w for w in result.get("windows", [result]) if w["abstention_reason"] is None]
    assert answered
    for window in answered:
        top = max(window["head_scores"], key=window["head_scores"].get)
        assert window["label"] == top and window["label_guidance"]["head_decides"]
        assert window["label_guidance"]["changed"] == (top != "happiness")
    assert len({w["label"] for w in answered}) > 1
    own = pipe(str(REAL / name), guide_labels=False, **helpers.forced(pipe, answer, bonus=30.0, extra_tokens=12))
    assert {w["label"] for w in own.get("windows", [own]) if w["abstention_reason"] is None} == {"happiness"}
    # an answer that would skip its Emotion line (a field line instead, then the end) is held to its format: each
    # window still answers the head's label, and says it was held
    skipping = answer.replace("\nEmotion: happiness", "\nValence: positive")
    own = pipe(str(REAL / name), guide_labels=False, **helpers.forced(pipe, skipping, bonus=30.0, extra_tokens=12))
    assert all(w["label"] is None for w in own.get("windows", [own]) if w["abstention_reason"] is None)
    held = pipe(str(REAL / name), **helpers.forced(pipe, skipping, bonus=30.0, extra_tokens=12))
    for window in [w for w in held.get("windows", [held]) if w["abstention_reason"] is None]:
        assert window["label"] == max(window["head_scores"], key=window["head_scores"].get)
        assert window["label_guidance"]["line_held"] and "Valence" not in window["generated_text"]
