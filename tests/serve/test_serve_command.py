"""`python -m e2llm.serving MODEL` (= `e2llm serve MODEL`) end to end: a real server process on a local port, a real
vLLM engine, OpenAI's client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

START_SECONDS = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(serve_model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [sys.executable, "-m", "e2llm.serving", str(serve_model_dir), "--port", str(port), "--device", "cpu",
               "--lm-dir", str(log.parent / "lm"), "--served-model-name", "tiny-e2llm", "--max-model-len", "1024"]
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"e2llm serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"e2llm serve did not answer within {START_SECONDS} s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_served_over_http_with_openai_client(server, reference, recordings, signal, same_answers):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == ["tiny-e2llm"]
    eeg = {"data": recordings[0].tolist(), **signal}
    completion = client.chat.completions.create(
        model="tiny-e2llm", max_tokens=16,
        messages=[{"role": "user", "content": [{"type": "eeg", "eeg": eeg}, {"type": "text", "text": "Emotion?"}]}])
    expected = reference(recordings[0], **signal, max_new_tokens=16, question="Emotion?")
    assert completion.choices[0].message.content == expected["generated_text"]
    same_answers([expected], [completion.model_extra["eeg_emotion"]])


def test_served_eeg_emotion_route_batches_a_recording(server, reference, recordings, signal, same_answers,
                                                        window_list):
    body = json.dumps({"eeg": recordings[1].tolist(), **signal, "max_new_tokens": 16}).encode()
    request = urllib.request.Request(f"{server}/v1/eeg-emotion", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        result = json.loads(response.read())
    expected = reference(recordings[1], **signal, max_new_tokens=16)
    assert len(window_list(result)) == 2
    same_answers([expected], [result])
