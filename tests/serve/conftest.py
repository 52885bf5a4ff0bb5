"""Serving tests against a real vLLM engine (`make test-serve`, in `.venv-serve`; `make test` never collects them).

The tiny serving model is the tiny Qwen3 E2LLM with head_dim 32: vLLM's CPU attention takes head_dim 32, 64, 80,
96, 112, 128, ... only (the tests' usual tiny model has 16)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU: plenty for the tiny model

pytest.importorskip("vllm", reason="the serving tests need vLLM: run them with `make test-serve`")

SERVE_TEXT_OVERRIDES = {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32}


@pytest.fixture(scope="session")
def serve_model_dir(tmp_path_factory):
    """A tiny E2LLM vLLM's CPU backend can run, saved as `save_pretrained` writes it."""
    import torch

    from e2llm import build_offline_tokenizer
    from e2llm.assembly import TINY_EEG_CONFIG, TINY_TEXT_CONFIG, assemble_e2llm

    torch.manual_seed(0)
    model, processor = assemble_e2llm(build_offline_tokenizer(), text_config={**TINY_TEXT_CONFIG,
                                                                              **SERVE_TEXT_OVERRIDES},
                                      eeg_config=TINY_EEG_CONFIG)
    folder = tmp_path_factory.mktemp("serve_model")
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def reference(serve_model_dir):
    """The Transformers `eeg-emotion` pipeline on the same folder."""
    from transformers import pipeline

    return pipeline("eeg-emotion", model=str(serve_model_dir))


@pytest.fixture(scope="session")
def signal():
    from e2llm import SEED_CHANNELS

    return {"sampling_rate": 200, "channel_names": list(SEED_CHANNELS), "units": "uV"}


@pytest.fixture(scope="session")
def recordings(signal):
    """Three recordings: 4 s (one window), 8 s (two), 4 s."""
    rng = np.random.default_rng(7)
    n_channels = len(signal["channel_names"])
    return [20 * rng.standard_normal((n_channels, int(seconds * 200))) for seconds in (4, 8, 4)]


def windows(result: dict) -> list[dict]:
    return result["windows"] if "windows" in result else [result]


@pytest.fixture(scope="session")
def same_answers():
    """`same_answers(expected, got)`: the check every serving test makes (see `assert_same_answers`)."""
    return assert_same_answers


@pytest.fixture(scope="session")
def window_list():
    """`window_list(result)`: the per-window results of one pipeline result."""
    return windows


def assert_same_answers(expected: list[dict], got: list[dict], atol: float = 1e-3) -> None:
    """Label, rationale and generated text equal; every probability within `atol`."""
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        assert have["label"] == want["label"]
        assert len(windows(have)) == len(windows(want))
        for a, b in zip(windows(want), windows(have)):
            assert (b["generated_text"], b["rationale"], b["label"]) == (a["generated_text"], a["rationale"],
                                                                          a["label"])
            assert list(b["scores"]) == list(a["scores"])
            np.testing.assert_allclose(list(b["scores"].values()), list(a["scores"].values()), atol=atol, rtol=0)
