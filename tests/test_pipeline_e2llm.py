"""The eeg-emotion pipeline on a tiny untrained E2LLM: inputs, outputs, batching, parsing, bad inputs, evidence."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline

from e2llm import SEED_CHANNELS, EEGEmotionPipeline, build_tiny_e2llm
from e2llm.prompts_e2llm import DEFAULT_QUESTION

_spec = importlib.util.spec_from_file_location("pipeline_helpers", Path(__file__).parent / "fixtures" /
                                               "pipeline_helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)
forced = helpers.forced
pytestmark = pytest.mark.filterwarnings("ignore:only .* EEG channel:UserWarning")
NAMES = list(SEED_CHANNELS[:24])
SFREQ = 200.0


def _recording(seconds: float, seed: int = 0) -> np.ndarray:
    """`(24, n_times)` µV: EEG-like noise plus a 10 Hz rhythm."""
    return helpers.recording(NAMES, seconds, SFREQ, seed)


@pytest.fixture(scope="module")
def pipe():
    model, processor = build_tiny_e2llm()
    return pipeline("eeg-emotion", model=model, processor=processor, max_new_tokens=6)


SIGNAL = {"sampling_rate": SFREQ, "channel_names": NAMES, "units": "uV"}


def test_registered_on_import_as_a_chunk_pipeline():
    assert PIPELINE_REGISTRY.supported_tasks["eeg-emotion"]["impl"] is EEGEmotionPipeline
    assert PIPELINE_REGISTRY.supported_tasks["eeg-emotion"]["type"] == "multimodal"
    assert issubclass(EEGEmotionPipeline, ChunkPipeline) and "__call__" not in vars(EEGEmotionPipeline)


def test_one_window_array(pipe):
    out = pipe(_recording(4.0), **SIGNAL)
    assert set(out) >= {"label", "scores", "rationale", "generated_text", "parseable", "start", "end", "evidence",
                        "claims", "removed_claims", "channels", "filter"}
    assert list(out["scores"]) == pipe.label_names
    assert sum(out["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert (out["start"], out["end"]) == (0.0, 4.0)
    assert out["parseable"] == (out["label"] is not None)
    assert out["channels"] == {"used": NAMES, "dropped": {}, "placement": "10-05 names"}
    assert out["evidence"] == {"reference": None, "items": []}  # one window, no baseline, no shipped reference


def test_parsed_answer_and_garbage(pipe):
    out = pipe(_recording(4.0), **SIGNAL,
               **forced(pipe, "Reasoning: alpha power is higher over occipital channels (slightly).\nEmotion: sadness"))
    assert out["label"] == "sadness" and out["parseable"]
    assert out["generated_text"].startswith("Reasoning: alpha power is higher")
    assert out["removed_claims"][0]["text"].startswith("alpha power is higher over occipital")  # nothing measured
    out = pipe(_recording(4.0), **SIGNAL, **forced(pipe, "Reasoning: hmm.\nEmotion: joyful"))  # never mapped
    assert out["label"] is None and not out["parseable"]
    assert sum(out["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert pipe(_recording(4.0), **SIGNAL, **forced(pipe, "sadness sadness fear"))["label"] is None


def test_a_closing_sentence_that_sets_the_label_against_itself_is_not_returned(pipe):
    claim = "alpha power is higher over occipital channels (slightly)"
    for closing, reason in [("so the evidence favours sadness over sadness", "it sets the label sadness against itself"),
                            ("so the evidence favours fear over anger", "it favours fear, not the answer sadness"),
                            ("so the evidence favours sadness over fear", None)]:
        out = pipe(_recording(4.0), **SIGNAL, **forced(pipe, f"Reasoning: {claim}; {closing}.\nEmotion: sadness"))
        assert out["label"] == "sadness" and closing in out["generated_text"]  # what the model wrote stays visible
        if reason is None:
            assert out["removed_support"] is None and closing in out["rationale"]
        else:
            assert out["removed_support"] == {"text": closing, "reason": reason}
            assert "so the evidence" not in (out["rationale"] or "")  # nothing else is left of this one


def test_scoring_prefix():
    prefix = EEGEmotionPipeline.scoring_prefix
    assert prefix("Reasoning: x.\nEmotion: fear\n") == "Reasoning: x.\nEmotion:"
    assert prefix("Reasoning: x.") == "Reasoning: x.\nEmotion:"
    assert prefix("anything", with_rationale=False) == "Emotion:"


def test_long_recording_windows_and_aggregate(pipe):
    out = pipe(_recording(13.0), **SIGNAL, batch_size=2)
    assert [w["start"] for w in out["windows"]] == [0.0, 4.0, 8.0]
    assert [w["end"] for w in out["windows"]] == [4.0, 8.0, 12.0]
    mean = np.mean([[w["scores"][n] for n in pipe.label_names] for w in out["windows"]], axis=0)
    np.testing.assert_allclose([out["scores"][n] for n in pipe.label_names], mean, rtol=1e-6)
    assert out["n_unparseable"] == sum(w["label"] is None for w in out["windows"])
    assert out["label"] is None if not out["votes"] else out["label"] in out["votes"]
    assert out["channels"]["used"] == NAMES and "fitted" in out["filter"]


def test_batch_equals_one_by_one(pipe):
    items = [_recording(4.0, seed=1), {"eeg": _recording(8.0, seed=2), "question": "Which emotion? Be brief."}]
    batched = pipe(items, **SIGNAL, batch_size=3, return_rationale=False)
    single = [pipe(item, **SIGNAL, return_rationale=False) for item in items]
    assert isinstance(batched, list) and len(batched) == 2
    np.testing.assert_allclose(list(batched[0]["scores"].values()), list(single[0]["scores"].values()), atol=1e-5)
    for b, s in zip(batched[1]["windows"], single[1]["windows"]):
        np.testing.assert_allclose(list(b["scores"].values()), list(s["scores"].values()), atol=1e-5)
        assert b["generated_text"] == "" and b["label"] == max(b["scores"], key=b["scores"].get)


def test_mne_raw_epochs_and_edf_path(pipe, tmp_path):
    mne = pytest.importorskip("mne")
    pytest.importorskip("edfio")
    data_v = _recording(8.0) * 1e-6
    raw = mne.io.RawArray(data_v, mne.create_info(NAMES, SFREQ, "eeg"), verbose="error")
    from_raw = pipe(raw, return_rationale=False)
    from_array = pipe(data_v, sampling_rate=SFREQ, channel_names=NAMES, units="V", return_rationale=False)
    np.testing.assert_allclose(list(from_raw["scores"].values()), list(from_array["scores"].values()), atol=1e-6)
    epochs = mne.make_fixed_length_epochs(raw, duration=4.0, preload=True, verbose="error")
    from_epochs = pipe(epochs, return_rationale=False)
    assert len(from_epochs) == 2 and all("channels" in r and r["start"] == 0.0 for r in from_epochs)
    path = tmp_path / "rec.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    from_file = pipe(str(path))
    assert len(from_file["windows"]) == 2 and set(from_file["windows"][0]["scores"]) == set(pipe.label_names)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: (_recording(4.0), {**SIGNAL, "channel_names": NAMES[:-1]}), "23 channel names for 24 channels"),
        (lambda: (np.where(np.arange(800) == 3, np.nan, _recording(4.0)), SIGNAL), "NaN"),
        (lambda: (_recording(1.0), SIGNAL), "too short"),
        (lambda: (_recording(4.0)[None], SIGNAL), "one recording"),
        (lambda: (b"not an array", SIGNAL), "unsupported EEG input"),
        (lambda: (_recording(4.0), {**SIGNAL, "units": None}), "units is required"),
        (lambda: (_recording(4.0), {**SIGNAL, "line_freq": 0}), "line_freq must be the mains frequency"),
    ],
)
def test_bad_inputs(pipe, make, message):
    eeg, kwargs = make()
    with pytest.raises(ValueError, match=message):
        pipe(eeg, **kwargs)


def test_bad_item_of_a_batch_is_named(pipe):
    with pytest.raises(ValueError, match="input 1: .*NaN"):
        pipe([_recording(4.0), np.full((len(NAMES), 800), np.nan)], **SIGNAL)


def test_missing_file_and_unknown_argument(pipe, tmp_path):
    with pytest.raises(FileNotFoundError):
        pipe(str(tmp_path / "missing.edf"))
    with pytest.raises(ValueError, match="unknown eeg-emotion pipeline arguments"):
        pipe(_recording(4.0), **SIGNAL, colour="blue")


def test_custom_question_reaches_the_prompt(pipe):
    chunk = next(pipe.preprocess(_recording(4.0), **SIGNAL, question="Is this person calm?"))
    assert "Is this person calm?" in pipe.processor.decode(chunk["prompt_ids"])
    assert DEFAULT_QUESTION in pipe.processor.decode(next(pipe.preprocess(_recording(4.0), **SIGNAL))["prompt_ids"])
    assert chunk["prompt_ids"].count(pipe.processor.eeg_token_id) == pipe.processor.num_eeg_tokens


def test_channel_map_and_line_freq_pass_through(pipe):
    numbered = [f"EEG {i:03d}" for i in range(len(NAMES))]
    out = pipe(_recording(4.0), sampling_rate=SFREQ, channel_names=numbered, units="uV",
               channel_map=dict(zip(numbered, NAMES)), line_freq=60, return_rationale=False)
    assert out["channels"]["placement"] == "channel_map" and out["channels"]["used"] == NAMES
    assert "60 Hz" in out["filter"]
    with pytest.raises(ValueError, match="channel_map="):
        pipe(_recording(4.0), sampling_rate=SFREQ, channel_names=numbered, units="uV")


def test_evidence_png(pipe, tmp_path):
    pytest.importorskip("mne")
    pytest.importorskip("matplotlib")
    eeg = _recording(4.0)
    # against a baseline of half the amplitude, every band on every channel is 20 log10(2) = 6.02 dB higher
    out = pipe(eeg, **SIGNAL, return_evidence=True, evidence_dir=tmp_path, attribution_steps=4,
               return_rationale=False, baseline=eeg / 2)
    assert out["evidence"]["reference"]["kind"] == "baseline"
    assert {item["id"] for item in out["evidence"]["items"]} >= {"power:alpha:frontal", "de:alpha"}
    np.testing.assert_allclose([i["value"] for i in out["evidence"]["items"] if i["kind"] == "power"],
                               20 * np.log10(2), atol=1e-6)
    picture = out["evidence_map"]
    relative = np.array([list(band.values()) for band in picture["relative_band_power_db"].values()])
    np.testing.assert_allclose(relative, 20 * np.log10(2), atol=1e-6)
    with open(picture["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert set(picture["relative_band_power_db"]) == {"delta", "theta", "alpha", "beta", "gamma"}
    assert set(picture["attribution"]) == set(NAMES)
    assert any(v != 0 for v in picture["attribution"].values())


def test_prompt_must_be_text_or_a_chat(pipe):
    with pytest.raises(ValueError, match=r"prompt= must be a string or a chat .*got dict"):
        pipe(_recording(4.0), **SIGNAL, prompt={"role": "user"})
    from e2llm import parse_answer

    with pytest.raises(ValueError, match="extra_fields= must map a field name to its allowed values.*got str"):
        parse_answer("Emotion: fear", ["fear"], extra_fields="Valence")


def test_label_temperature_scales_the_scores():
    """A model that ships a fitted `label_temperature` gets softmax(log-likelihood / T) (1 when it ships none)."""
    import torch

    model, processor = build_tiny_e2llm()
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    plain = pipe(_recording(4.0), **SIGNAL, return_rationale=False)
    model.config.label_temperature = 2.0
    scaled = pipe(_recording(4.0), **SIGNAL, return_rationale=False)
    logits = torch.tensor(list(plain["scores"].values())).log()
    expected = (logits / 2.0).softmax(-1)
    np.testing.assert_allclose(list(scaled["scores"].values()), expected.numpy(), atol=1e-6)
