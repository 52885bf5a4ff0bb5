"""The eeg-emotion pipeline on a tiny untrained E2LLM: inputs, outputs, batching, parsing, bad inputs, evidence."""

import numpy as np
import pytest
import torch
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from e2llm import SEED_CHANNELS, EEGEmotionPipeline, build_tiny_e2llm
from e2llm.pipeline_e2llm import DEFAULT_QUESTION

NAMES = list(SEED_CHANNELS[:24])
SFREQ = 200.0


def _recording(seconds: float, seed: int = 0) -> np.ndarray:
    """`(24, n_times)` µV: noise plus a 10 Hz rhythm."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SFREQ)) / SFREQ
    return 15 * rng.standard_normal((len(NAMES), len(t))) + 10 * np.sin(2 * np.pi * 10 * t)


@pytest.fixture(scope="module")
def pipe():
    model, processor = build_tiny_e2llm()
    return pipeline("eeg-emotion", model=model, processor=processor, max_new_tokens=6)


SIGNAL = {"sampling_rate": SFREQ, "channel_names": NAMES, "units": "uV"}


def _fake_generate(pipe, monkeypatch, answer: str):
    """Make `generate` append `answer` to every prompt, as a trained model would write it."""
    ids = pipe.processor.tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"][0]

    def generate(input_ids=None, **kwargs):
        return torch.cat([input_ids, ids.expand(len(input_ids), -1)], dim=1)

    monkeypatch.setattr(pipe.model, "generate", generate)


def test_registered_on_import():
    assert PIPELINE_REGISTRY.supported_tasks["eeg-emotion"]["impl"] is EEGEmotionPipeline
    assert PIPELINE_REGISTRY.supported_tasks["eeg-emotion"]["type"] == "multimodal"


def test_one_window_array(pipe):
    out = pipe(_recording(4.0), **SIGNAL)
    assert set(out) >= {"label", "scores", "rationale", "generated_text", "parseable", "start", "end"}
    assert list(out["scores"]) == pipe.label_names
    assert sum(out["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert (out["start"], out["end"]) == (0.0, 4.0)
    assert out["parseable"] == (out["label"] is not None)


def test_parsed_answer_and_garbage(pipe, monkeypatch):
    _fake_generate(pipe, monkeypatch, "Reasoning: alpha power is higher over occipital channels (+2.0 dB).\nEmotion: sadness")
    out = pipe(_recording(4.0), **SIGNAL)
    assert out["label"] == "sadness" and out["parseable"]
    assert out["rationale"].startswith("alpha power is higher")
    _fake_generate(pipe, monkeypatch, "Reasoning: hmm.\nEmotion: joyful")  # not a label: never mapped to one
    out = pipe(_recording(4.0), **SIGNAL)
    assert out["label"] is None and not out["parseable"]
    assert sum(out["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    _fake_generate(pipe, monkeypatch, "sadness sadness fear")
    assert pipe(_recording(4.0), **SIGNAL)["label"] is None


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
    assert len(pipe(epochs, return_rationale=False)) == 2
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
    prepared = pipe.preprocess(_recording(4.0), **SIGNAL, question="Is this person calm?")
    assert "Is this person calm?" in pipe.processor.decode(prepared["prompt_ids"][0])
    assert DEFAULT_QUESTION in pipe.processor.decode(pipe.preprocess(_recording(4.0), **SIGNAL)["prompt_ids"][0])


def test_evidence_png(pipe, tmp_path):
    pytest.importorskip("mne")
    pytest.importorskip("matplotlib")
    eeg = _recording(4.0)
    # against a baseline of half the amplitude, every band on every channel is 20 log10(2) = 6.02 dB higher
    out = pipe(eeg, **SIGNAL, return_evidence=True, evidence_dir=tmp_path, attribution_steps=4,
               return_rationale=False, baseline=eeg / 2)
    evidence = out["evidence"]
    relative = np.array([list(band.values()) for band in evidence["relative_band_power_db"].values()])
    np.testing.assert_allclose(relative, 20 * np.log10(2), atol=1e-6)
    with open(evidence["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert set(evidence["relative_band_power_db"]) == {"delta", "theta", "alpha", "beta", "gamma"}
    assert set(evidence["attribution"]) == set(NAMES)
    assert any(v != 0 for v in evidence["attribution"].values())
