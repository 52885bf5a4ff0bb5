"""`e2llm serve`'s request formats and the translation of generation settings and label scoring into vLLM requests
(no vLLM needed)."""

from __future__ import annotations

import base64
import itertools

import numpy as np
import pytest

from e2llm.serving.requests import RequestError, chat_call, chat_response, decode_eeg, pipeline_call
from e2llm.serving.sampling import candidate_log_likelihoods, sampling_kwargs, scoring_nodes

NAMES = ["Fz", "Cz", "Pz"]


def encoded(array: np.ndarray, dtype: str = "float32") -> dict:
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return {"base64": base64.b64encode(data).decode(), "shape": list(array.shape), "dtype": dtype}


def test_eeg_arrives_as_lists_or_base64():
    eeg = np.random.default_rng(0).standard_normal((3, 50)).astype(np.float32)
    np.testing.assert_array_equal(decode_eeg(eeg.tolist()), eeg.astype(np.float64))
    np.testing.assert_array_equal(decode_eeg(encoded(eeg)), eeg.astype(np.float64))
    ints = np.arange(12, dtype=np.int16).reshape(2, 6)
    np.testing.assert_array_equal(decode_eeg(encoded(ints, "int16")), ints)


@pytest.mark.parametrize("value, message", [
    ("/etc/passwd", "not a string: the server reads no files"),
    ([[1.0, 2.0], [3.0]], "channels differ in length"),
    ([1.0, 2.0], "a list of channels"),
    ([["a", "b"]], "must be numbers"),
    ({"base64": "AAAA", "shape": [2, 2]}, "holds 3 bytes"),
    ({"base64": "@@", "shape": [1, 1]}, "does not decode"),
    ({"base64": "", "shape": [2, 2], "dtype": "complex64"}, "dtype 'complex64'"),
    ({"base64": "", "shape": [2, -1]}, "positive integers"),
    ({"data": []}, "needs 'base64' and 'shape'"),
])
def test_bad_eeg_is_refused_with_the_reason(value, message):
    with pytest.raises(RequestError, match=message):
        decode_eeg(value)


def test_eeg_larger_than_the_limit_is_refused_before_decoding():
    with pytest.raises(RequestError, match="holds 2000000 values; this server takes at most 1000"):
        decode_eeg({"base64": "", "shape": [2, 1000000]}, max_values=1000)
    with pytest.raises(RequestError, match="takes at most 10"):
        decode_eeg([[0.0] * 6, [0.0] * 6], max_values=10)


def test_eeg_emotion_request_becomes_a_pipeline_call():
    body = {"eeg": [[0.0] * 4] * 3, "sampling_rate": 200, "channel_names": NAMES, "units": "uV",
            "question": "How does this person feel?", "return_rationale": False, "max_new_tokens": 16}
    eeg, kwargs = pipeline_call(body)
    assert eeg.shape == (3, 4)
    assert kwargs == {"sampling_rate": 200, "channel_names": NAMES, "units": "uV",
                      "question": "How does this person feel?", "return_rationale": False, "max_new_tokens": 16}


@pytest.mark.parametrize("change, message", [
    ({"path": "/data/x.edf"}, r"unknown fields \['path'\]"),
    ({"units": None}, r"missing fields \['units'\]"),
    ({"sampling_rate": "200"}, "'sampling_rate' must be a number"),
    ({"channel_names": "Fz,Cz"}, "'channel_names' must be a list of strings"),
    ({"max_new_tokens": 0}, "'max_new_tokens' must be a positive integer"),
    ({"return_rationale": "yes"}, "'return_rationale' must be true or false"),
])
def test_eeg_emotion_request_errors_name_the_field(change, message):
    body = {"eeg": [[0.0] * 4] * 3, "sampling_rate": 200, "channel_names": NAMES, "units": "uV", **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(RequestError, match=message):
        pipeline_call(body)


def chat_body(**change):
    eeg = {"data": [[0.0] * 4] * 3, "sampling_rate": 200, "channel_names": NAMES, "units": "uV"}
    body = {"model": "e2llm", "messages": [
        {"role": "system", "content": "You read EEG."},
        {"role": "user", "content": [{"type": "eeg", "eeg": eeg}, {"type": "text", "text": "Which emotion?"}]}],
        "max_tokens": 32}
    return {**body, **change}


def test_chat_request_becomes_the_pipeline_prompt():
    eeg, kwargs = chat_call(chat_body(), "e2llm")
    assert eeg.shape == (3, 4)
    assert kwargs["prompt"] == [{"role": "system", "content": "You read EEG."},
                                {"role": "user", "content": [{"type": "eeg"}, {"type": "text",
                                                                               "text": "Which emotion?"}]}]
    assert kwargs["max_new_tokens"] == 32 and "generate_kwargs" not in kwargs  # greedy
    _, sampled = chat_call(chat_body(temperature=0.7, top_p=0.9), "e2llm")
    assert sampled["generate_kwargs"] == {"do_sample": True, "temperature": 0.7, "top_p": 0.9}


@pytest.mark.parametrize("change, message", [
    ({"model": "gpt-4"}, "model 'gpt-4' is not served here"),
    ({"n": 2}, "n > 1 and stream are not supported"),
    ({"stream": True}, "n > 1 and stream are not supported"),
    ({"logprobs": True}, r"unsupported fields \['logprobs'\]"),
    ({"messages": [{"role": "user", "content": "no EEG here"}]}, "exactly one EEG content part, found 0"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "unsupported content part"),
    ({"temperature": -1}, "'temperature' must be a number >= 0"),
])
def test_chat_request_errors(change, message):
    with pytest.raises(RequestError, match=message):
        chat_call(chat_body(**change), "e2llm")


def test_chat_response_has_one_choice_per_window():
    window = {"label": "sadness", "scores": {"sadness": np.float32(0.75), "fear": 0.25}, "rationale": "low alpha",
              "generated_text": "Reasoning: low alpha\nEmotion: sadness", "parseable": True, "start": 0.0, "end": 4.0}
    result = {"label": "sadness", "scores": {"sadness": 0.75, "fear": 0.25}, "votes": {"sadness": 2},
              "n_unparseable": 0, "windows": [window, {**window, "start": 4.0, "end": 8.0}]}
    reply = chat_response(result, "e2llm")
    assert reply["object"] == "chat.completion" and reply["model"] == "e2llm"
    assert [c["message"]["content"] for c in reply["choices"]] == [window["generated_text"]] * 2
    assert [c["eeg_window"]["start"] for c in reply["choices"]] == [0.0, 4.0]
    assert reply["eeg_emotion"]["windows"][0]["scores"]["sadness"] == 0.75
    assert type(reply["eeg_emotion"]["windows"][0]["scores"]["sadness"]) is float


def test_greedy_settings_map_to_vllm():
    kwargs = sampling_kwargs({"max_new_tokens": 64, "eos_token_id": 7, "pad_token_id": 0, "do_sample": False}, 100)
    assert kwargs == {"max_tokens": 64, "min_tokens": 0, "stop_token_ids": [7], "ignore_eos": False,
                      "detokenize": False, "temperature": 0.0}
    assert sampling_kwargs({"max_length": 130, "eos_token_id": [7, 8]}, 100)["max_tokens"] == 30
    sampled = sampling_kwargs({"max_new_tokens": 4, "do_sample": True, "temperature": 0.5, "top_k": 20}, 10)
    assert (sampled["temperature"], sampled["top_k"], sampled["top_p"]) == (0.5, 20, 1.0)


@pytest.mark.parametrize("settings, message", [
    ({"max_new_tokens": 8, "num_beams": 4}, r"\['num_beams'\]"),
    ({"max_new_tokens": 8, "repetition_penalty": 1.3}, r"\['repetition_penalty'\]"),
    ({"max_new_tokens": 8, "some_future_option": True}, r"\['some_future_option'\]"),
    ({"eos_token_id": 2}, "set max_new_tokens"),
    ({"max_length": 10}, "must be at least 1"),
])
def test_settings_vllm_cannot_honour_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        sampling_kwargs(settings, prompt_length=10)


def test_neutral_settings_pass():
    kwargs = sampling_kwargs({"max_new_tokens": 8, "num_beams": 1, "repetition_penalty": 1.0, "use_cache": True}, 3)
    assert kwargs["max_tokens"] == 8


def test_label_scoring_tree_gives_each_candidate_its_summed_log_probability():
    candidates = [[5, 6, 7], [5, 6, 9], [5, 8], [11], [12, 13]]
    nodes = scoring_nodes(candidates)
    assert nodes[0] == ((), [5, 11, 12])
    assert dict(nodes) == {(): [5, 11, 12], (5,): [6, 8], (5, 6): [7, 9], (12,): [13]}
    rng = np.random.default_rng(0)
    table = {prefix: dict(zip(following, rng.normal(size=len(following)))) for prefix, following in nodes}
    expected = [sum(table[tuple(c[:k])][t] for k, t in enumerate(c)) for c in candidates]
    np.testing.assert_allclose(candidate_log_likelihoods(candidates, table), expected)
    # every (prefix, next token) pair a candidate needs is asked for exactly once
    needed = {(tuple(c[:k]), t) for c in candidates for k, t in enumerate(c)}
    asked = list(itertools.chain.from_iterable([(p, t) for t in f] for p, f in nodes))
    assert sorted(asked) == sorted(needed)
    with pytest.raises(ValueError, match="at least one token"):
        scoring_nodes([[1], []])
