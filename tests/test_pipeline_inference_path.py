"""The pipeline does each piece of work once: one encoder pass per window, one feature-extraction run, label scoring
from one prefix pass that continues the generated token ids, and the same scores as the text-level path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import pipeline

import e2llm.pipeline_e2llm as pipeline_module
from e2llm import SEED_CHANNELS, EEGEmotionPipeline, build_tiny_e2llm

pytestmark = [pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:only .* EEG channel:UserWarning")]
NAMES = list(SEED_CHANNELS[:24])
SFREQ = 200.0
SIGNAL = {"sampling_rate": SFREQ, "channel_names": NAMES, "units": "uV"}


def _recording(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SFREQ)) / SFREQ
    return 15 * rng.standard_normal((len(NAMES), len(t))) + 10 * np.sin(2 * np.pi * 10 * t)


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
        extractor_call = type(pipe.processor.feature_extractor).__call__

        def counted_extractor(extractor, *args, **kwargs):
            self.extractor_runs += 1
            return extractor_call(extractor, *args, **kwargs)

        monkeypatch.setattr(type(pipe.processor.feature_extractor), "__call__", counted_extractor)
        extractor_stream = type(pipe.processor.feature_extractor).iter_windows

        def counted_stream(extractor, *args, **kwargs):  # one run of the chain, read piece by piece
            self.extractor_runs += 1
            return extractor_stream(extractor, *args, **kwargs)

        monkeypatch.setattr(type(pipe.processor.feature_extractor), "iter_windows", counted_stream)

    def _on_encoder(self, module, args, output):
        self.encoder += 1
        self.windows += args[0].shape[0]

    def _on_lm(self, module, args, kwargs, output):
        self.lm["generate" if self._in_generate else "other"].append(kwargs["inputs_embeds"].shape[0])

    def remove(self):
        for hook in self._hooks:
            hook.remove()


def test_each_window_is_encoded_once_and_scored_from_one_prefix_pass(pipe, monkeypatch):
    counter = Counter(pipe, monkeypatch)
    try:
        out = pipe(_recording(12.0), **SIGNAL, batch_size=3, max_new_tokens=5, do_sample=False)
    finally:
        counter.remove()
    assert len(out["windows"]) == 3
    assert (counter.encoder, counter.windows, counter.extractor_runs) == (1, 3, 1)
    assert counter.lm["generate"] == [3] * 5  # prefill + 4 decode steps of the 3 windows
    # the seven labels are single tokens of the offline tokenizer: their scores come from the prefix pass alone
    assert all(len(c) == 1 for c in pipe.candidate_ids)
    assert counter.lm["other"] == [3]


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
    written += tokenizer(" is high.\nEmotion: fear", add_special_tokens=False)["input_ids"]

    def generate(input_ids=None, **kwargs):
        return torch.cat([input_ids, torch.tensor(written).expand(len(input_ids), -1)], dim=1)

    monkeypatch.setattr(pipe.model, "generate", generate)
    scored = []
    original = pipeline_module.score_candidates

    def spy(model, input_ids, attention_mask, *args, **kwargs):
        scored.append(input_ids)
        return original(model, input_ids, attention_mask, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "score_candidates", spy)
    out = pipe(_recording(4.0), **SIGNAL)
    assert out["label"] == "fear" and out["generated_text"].startswith("Reasoning: alpha is high.")
    row = scored[0][0].tolist()
    assert any(row[i : i + len(pieces)] == pieces for i in range(len(row)))
    assert pipe.processor.decode(row).endswith("assistant\nReasoning: alpha is high.\nEmotion:")


def test_scores_equal_the_text_level_path(pipe, monkeypatch):
    """The shared-work path gives the scores of processor(prompt + scoring prefix) + score_emotions on raw EEG."""
    answer = "Reasoning: theta power is low over frontal channels.\nEmotion: neutral\nValence: neutral"
    ids = pipe.processor.tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    monkeypatch.setattr(pipe.model, "generate",
                        lambda input_ids=None, **kw: torch.cat([input_ids, ids.expand(len(input_ids), -1)], dim=1))
    eegs = [_recording(4.0, seed=3), _recording(4.0, seed=4)]
    outputs = pipe(eegs, **SIGNAL, batch_size=2)
    question = {"type": "text", "text": pipeline_module.DEFAULT_QUESTION}
    conversation = [{"role": "user", "content": [{"type": "eeg"}, question]}]
    prompt = pipe.processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = pipe.processor(text=[prompt + EEGEmotionPipeline.scoring_prefix(answer)] * 2, eeg=eegs, **SIGNAL,
                            return_tensors="pt")
    eeg = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    expected = pipe.model.score_emotions(inputs["input_ids"], inputs["attention_mask"], pipe.candidate_ids, **eeg)
    got = torch.tensor([[o["scores"][n] for n in pipe.label_names] for o in outputs])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_a_list_of_arrays_goes_through_one_feature_extraction(pipe, monkeypatch):
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
    assert counter.extractor_runs == 1 and (counter.encoder, counter.windows) == (1, 4)
    single = [pipe(item, **signal, return_rationale=False) for item in items]
    for b, s in zip(batched, single):
        b_windows, s_windows = b.get("windows", [b]), s.get("windows", [s])
        assert [w["start"] for w in b_windows] == [w["start"] for w in s_windows]
        for bw, sw in zip(b_windows, s_windows):
            np.testing.assert_allclose(list(bw["scores"].values()), list(sw["scores"].values()), atol=1e-5)


def test_one_recording_streams_and_equals_the_whole_signal_path(pipe, monkeypatch, tmp_path):
    """A single recording runs piece by piece (here 4 windows at a time); `[recording]` takes the whole-signal
    path. Same windows, same scores, from an array and from an EDF file read lazily."""
    import e2llm.pipeline_e2llm as module

    monkeypatch.setattr(module, "STREAM_WINDOWS", 4)
    eeg = _recording(42.0)  # 10 windows of 4 s: 3 pieces
    streamed = pipe(eeg, **SIGNAL, return_rationale=False)
    (whole,) = pipe([eeg], **SIGNAL, return_rationale=False)
    assert len(streamed["windows"]) == len(whole["windows"]) == 10
    for a, b in zip(streamed["windows"], whole["windows"]):
        assert a["start"] == b["start"] and a["label"] == b["label"]
        np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), atol=1e-5)

    mne = pytest.importorskip("mne")
    pytest.importorskip("edfio")
    raw = mne.io.RawArray(eeg * 1e-6, mne.create_info(SIGNAL["channel_names"], SIGNAL["sampling_rate"], "eeg"),
                          verbose="error")
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
