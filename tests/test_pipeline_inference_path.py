"""The pipeline does each piece of work once: one encoder pass per window, one feature-extraction run per input,
label scores from the generation's own logits (or one prefix pass that continues the generated token ids), and the
same scores as the text-level path; long recordings stream in bounded memory with the same results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline

import e2llm.generation_e2llm as generation_module
import e2llm.pipeline_chunks_e2llm as chunks_module
from e2llm import SEED_CHANNELS, EEGEmotionPipeline, build_tiny_e2llm
from e2llm.prompts_e2llm import DEFAULT_QUESTION
from e2llm.scoring_e2llm import left_pad, score_candidates

_spec = importlib.util.spec_from_file_location("pipeline_helpers", Path(__file__).parent / "fixtures" /
                                               "pipeline_helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

pytestmark = [pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:only .* EEG channel:UserWarning")]
NAMES = list(SEED_CHANNELS[:24])
SFREQ = 200.0
SIGNAL = {"sampling_rate": SFREQ, "channel_names": NAMES, "units": "uV"}


def _recording(seconds: float, seed: int = 0) -> np.ndarray:
    return helpers.recording(NAMES, seconds, SFREQ, seed)


@pytest.fixture(scope="module")
def pipe():
    model, processor = build_tiny_e2llm()
    return pipeline("eeg-emotion", model=model, processor=processor, max_new_tokens=5)


class Counter:
    """Encoder calls / windows and language-model calls / rows, inside and outside `generate`."""

    def __init__(self, pipe, monkeypatch):
        self.encoder, self.windows, self.extractor_runs = 0, 0, 0
        self.lm = {"generate": [], "other": []}  # rows of each call
        self._in_generate = False
        model = pipe.model
        self._hooks = [
            model.model.eeg_encoder.register_forward_hook(self._on_encoder),
            model.model.language_model.register_forward_hook(self._on_lm, with_kwargs=True),
        ]
        generate = model.generate

        def counted_generate(*args, **kwargs):
            self._in_generate = True
            try:
                return generate(*args, **kwargs)
            finally:
                self._in_generate = False

        monkeypatch.setattr(model, "generate", counted_generate)
        extractor = type(pipe.processor.feature_extractor)
        for name in ("__call__", "iter_windows"):  # one run of the chain each, whole or piece by piece
            original = getattr(extractor, name)

            def counted(self_, *args, _original=original, **kwargs):
                self.extractor_runs += 1
                return _original(self_, *args, **kwargs)

            monkeypatch.setattr(extractor, name, counted)

    def _on_encoder(self, module, args, output):
        self.encoder += 1
        self.windows += args[0].shape[0]

    def _on_lm(self, module, args, kwargs, output):
        self.lm["generate" if self._in_generate else "other"].append(kwargs["inputs_embeds"].shape[0])

    def remove(self):
        for hook in self._hooks:
            hook.remove()


@pytest.mark.parametrize("writes_label_line", [True, False])
def test_each_window_is_encoded_once_and_labels_come_from_the_generation(pipe, monkeypatch, writes_label_line):
    answer = "Reasoning: x.\nEmotion: fear" if writes_label_line else "Reasoning: x y z w"
    counter = Counter(pipe, monkeypatch)
    try:
        out = pipe(_recording(12.0), **SIGNAL, batch_size=3, **helpers.forced(pipe, answer))
    finally:
        counter.remove()
    assert len(out["windows"]) == 3
    assert (counter.encoder, counter.windows, counter.extractor_runs) == (1, 3, 1)
    steps = len(pipe.processor.tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1
    assert counter.lm["generate"] == [3] * steps  # prefill + decode steps of the 3 windows
    # with the label line, the label distribution is the generation's own next step: no further pass; without it,
    # one prefix pass over prompt + rationale + "Emotion:" (the seven labels are single tokens of this tokenizer)
    assert counter.lm["other"] == ([] if writes_label_line else [3])


def test_evidence_reuses_the_feature_extraction_and_batches_the_attribution_paths(pipe, monkeypatch, tmp_path):
    pytest.importorskip("mne")
    pytest.importorskip("matplotlib")
    counter = Counter(pipe, monkeypatch)
    try:
        out = pipe(_recording(8.0), **SIGNAL, batch_size=2, return_evidence=True, evidence_dir=tmp_path,
                   attribution_steps=3, return_rationale=False)
    finally:
        counter.remove()
    # one encoder pass of the 2 windows, one of the 2 x 3 points of their integrated-gradient paths
    assert (counter.encoder, counter.windows, counter.extractor_runs) == (2, 2 + 6, 1)
    assert counter.lm["other"] == [2, 6]
    plain = pipe(_recording(8.0), **SIGNAL, batch_size=2, return_rationale=False)
    for with_evidence, without in zip(out["windows"], plain["windows"]):  # the same model inputs either way
        np.testing.assert_allclose(list(with_evidence["scores"].values()), list(without["scores"].values()), atol=1e-5)


def test_generated_ids_are_continued_not_retokenised(pipe, monkeypatch):
    tokenizer = pipe.processor.tokenizer
    # "alpha" written letter by letter, which re-tokenising the text would merge into other ids
    pieces = [i for letter in "alpha" for i in tokenizer(letter, add_special_tokens=False)["input_ids"]]
    assert pieces != tokenizer("alpha", add_special_tokens=False)["input_ids"]
    written = tokenizer("Reasoning: ", add_special_tokens=False)["input_ids"] + pieces
    written += tokenizer(" is high.\nno label line", add_special_tokens=False)["input_ids"]
    scored = []
    original = generation_module.score_candidates

    def spy(model, input_ids, attention_mask, *args, **kwargs):
        scored.append(input_ids)
        return original(model, input_ids, attention_mask, *args, **kwargs)

    monkeypatch.setattr(generation_module, "score_candidates", spy)
    out = pipe(_recording(4.0), **SIGNAL, **helpers.forced(pipe, written))
    assert out["generated_text"].startswith("Reasoning: alpha is high.")
    row = scored[0][0].tolist()
    assert any(row[i : i + len(pieces)] == pieces for i in range(len(row)))
    assert pipe.processor.decode(row).endswith("assistant\nReasoning: alpha is high.\nno label line\nEmotion:")


def test_scores_equal_the_text_level_path(pipe):
    """The shared-work path gives the scores of processor(prompt + scoring prefix) + score_emotions on raw EEG."""
    answer = "Reasoning: theta power is low over frontal channels.\nEmotion: neutral\nValence: neutral"
    eegs = [_recording(4.0, seed=3), _recording(4.0, seed=4)]
    outputs = pipe(eegs, **SIGNAL, batch_size=2, **helpers.forced(pipe, answer))
    question = {"type": "text", "text": DEFAULT_QUESTION}
    conversation = [{"role": "user", "content": [{"type": "eeg"}, question]}]
    prompt = pipe.processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = pipe.processor(text=[prompt + EEGEmotionPipeline.scoring_prefix(answer)] * 2, eeg=eegs, **SIGNAL,
                            return_tensors="pt")
    eeg = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    with torch.no_grad():
        expected = pipe.model.score_emotions(inputs["input_ids"], inputs["attention_mask"], pipe.candidate_ids, **eeg)
    got = torch.tensor([[o["scores"][n] for n in pipe.label_names] for o in outputs])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_a_list_of_inputs_is_batched_across_inputs(pipe, monkeypatch):
    # different lengths, questions and channel counts
    items = [{"eeg": _recording(4.0, seed=5), "channel_names": NAMES},
             {"eeg": _recording(8.0, seed=6), "channel_names": NAMES, "question": "Calm or not?"},
             {"eeg": _recording(4.0, seed=7)[:20], "channel_names": NAMES[:20]}]
    signal = {**SIGNAL, "channel_names": None}
    counter = Counter(pipe, monkeypatch)
    try:
        batched = pipe(items, **signal, batch_size=4, return_rationale=False)
    finally:
        counter.remove()
    assert counter.extractor_runs == 3 and (counter.encoder, counter.windows) == (1, 4)  # 4 windows, one batch
    single = [pipe(item, **signal, return_rationale=False) for item in items]
    for b, s in zip(batched, single):
        b_windows, s_windows = b.get("windows", [b]), s.get("windows", [s])
        assert [w["start"] for w in b_windows] == [w["start"] for w in s_windows]
        for bw, sw in zip(b_windows, s_windows):
            np.testing.assert_allclose(list(bw["scores"].values()), list(sw["scores"].values()), atol=1e-5)


def test_one_recording_streams_and_equals_the_whole_signal_path(pipe, monkeypatch, tmp_path):
    """A recording too large to read at once runs piece by piece (here 4 windows at a time); one that fits is read
    once. Same windows, same scores, from an array and from an EDF file read lazily."""
    eeg = _recording(42.0)  # 10 windows of 4 s
    (whole,) = pipe([eeg], **SIGNAL, return_rationale=False)
    monkeypatch.setattr(chunks_module, "STREAM_WINDOWS", 4)
    monkeypatch.setattr(chunks_module, "WHOLE_BYTES", 0)
    streamed = pipe(eeg, **SIGNAL, return_rationale=False)
    assert len(streamed["windows"]) == len(whole["windows"]) == 10
    for a, b in zip(streamed["windows"], whole["windows"]):
        assert a["start"] == b["start"] and a["label"] == b["label"]
        np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), atol=1e-5)
        assert [i["value"] for i in a["evidence"]["items"]] == pytest.approx([i["value"] for i in b["evidence"]
                                                                             ["items"]], abs=1e-3)
    mne = pytest.importorskip("mne")
    pytest.importorskip("edfio")
    raw = mne.io.RawArray(eeg * 1e-6, mne.create_info(NAMES, SFREQ, "eeg"), verbose="error")
    path = tmp_path / "rec.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    chunks = []
    iter_windows = type(pipe.processor.feature_extractor).iter_windows

    def recorded(extractor, *args, **kwargs):
        for chunk in iter_windows(extractor, *args, **kwargs):
            chunks.append(len(chunk["eeg_values"]))
            yield chunk

    monkeypatch.setattr(type(pipe.processor.feature_extractor), "iter_windows", recorded)
    from_file = pipe(str(path), return_rationale=False)
    assert chunks == [4, 4, 2]  # never more than one piece of windows in memory
    for a, b in zip(from_file["windows"], whole["windows"]):  # EDF's 16-bit samples: close, not equal
        np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), atol=1e-3)


def test_reference_rows_score_like_the_reuse_path(pipe):
    """The first-token label distribution taken from `generate` equals the prefix pass on prompt + rationale."""
    answer = "Reasoning: beta power is higher over central channels (moderately).\nEmotion: anger"
    out = pipe(_recording(4.0, seed=9), **SIGNAL, **helpers.forced(pipe, answer))
    chunk = next(pipe.preprocess(_recording(4.0, seed=9), **SIGNAL))
    tail = pipe.processor.tokenizer(answer[: answer.index("Emotion")] + "Emotion:", add_special_tokens=False)
    ids, mask = left_pad([torch.tensor(chunk["prompt_ids"] + tail["input_ids"])], pipe.processor.tokenizer.pad_token_id)
    eeg = pipe._stack([chunk])
    with torch.no_grad():
        features = pipe.model.get_eeg_features(**eeg)
        expected = score_candidates(pipe.model, ids, mask, pipe.candidate_ids, eeg_features=features).softmax(-1)
    np.testing.assert_allclose(list(out["scores"].values()), expected[0].numpy(), atol=1e-5)
