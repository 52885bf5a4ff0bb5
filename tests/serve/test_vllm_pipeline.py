"""The `eeg-emotion` pipeline on a real vLLM engine gives the Transformers pipeline's label, probabilities (within
1e-3) and rationale on the same weights, greedy; and the HTTP routes of `e2llm serve` return them."""

from __future__ import annotations

import base64

import numpy as np
import pytest


@pytest.fixture(scope="module")
def served(serve_model_dir, tmp_path_factory):
    from e2llm.serving.engine import EngineSettings
    from e2llm.serving.pipeline import load_serving_pipeline

    pipe = load_serving_pipeline(serve_model_dir, lm_dir=tmp_path_factory.mktemp("lm") / "qwen",
                                 settings=EngineSettings(max_model_len=1024), device="cpu")
    yield pipe
    pipe.close()


@pytest.mark.parametrize("return_rationale", [True, False])
def test_vllm_answers_equal_the_transformers_pipeline(served, reference, recordings, signal, return_rationale,
                                                      same_answers, window_list):
    call = {**signal, "batch_size": 4, "max_new_tokens": 24, "return_rationale": return_rationale}
    expected, got = reference(recordings, **call), served(recordings, **call)
    same_answers(expected, got)
    texts = [w["generated_text"] for r in got for w in window_list(r)]
    assert all(texts) if return_rationale else not any(texts)


def test_one_recording_streamed_equals_too(served, reference, recordings, signal, same_answers):
    expected = reference(recordings[1], **signal, max_new_tokens=16)
    same_answers([expected], [served(recordings[1], **signal, max_new_tokens=16)])


@pytest.fixture(scope="module")
def client(served):
    from fastapi.testclient import TestClient

    from e2llm.serving.server import create_app

    return TestClient(create_app(served, "tiny-e2llm"))


def test_http_eeg_emotion_route(client, reference, recordings, signal, same_answers):
    eeg = recordings[1].astype(np.float32)
    body = {"eeg": {"base64": base64.b64encode(eeg.tobytes()).decode(), "shape": list(eeg.shape),
                    "dtype": "float32"}, **signal, "max_new_tokens": 16}
    response = client.post("/v1/eeg-emotion", json=body)
    assert response.status_code == 200, response.text
    expected = reference(eeg.astype(np.float64), **signal, max_new_tokens=16)
    same_answers([expected], [response.json()])
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny-e2llm"


def test_http_chat_completions_route(client, reference, recordings, signal, same_answers, window_list):
    eeg = {"data": recordings[1].tolist(), **signal}
    messages = [{"role": "user", "content": [{"type": "eeg", "eeg": eeg},
                                             {"type": "text", "text": "How does this person feel?"}]}]
    response = client.post("/v1/chat/completions", json={"model": "tiny-e2llm", "messages": messages,
                                                         "max_tokens": 16})
    assert response.status_code == 200, response.text
    reply = response.json()
    expected = reference(recordings[1], **signal, max_new_tokens=16, question="How does this person feel?")
    contents = [c["message"]["content"] for c in reply["choices"]]
    assert contents == [w["generated_text"] for w in window_list(expected)]
    same_answers([expected], [reply["eeg_emotion"]])


@pytest.mark.parametrize("body, message", [
    ({"eeg": "/etc/passwd", "sampling_rate": 200, "channel_names": ["Fz"], "units": "uV"}, "reads no files"),
    ({"eeg": [[0.0] * 800], "sampling_rate": 200, "channel_names": ["Fz", "Cz"], "units": "uV"}, "channel"),
])
def test_http_refusals_are_400_with_the_reason(client, body, message):
    response = client.post("/v1/eeg-emotion", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
