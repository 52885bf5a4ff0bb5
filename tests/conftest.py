"""Shared test setup: nothing may reach a hub, and a tiny E2LLM is built once per session."""

from __future__ import annotations

import os

# Set before transformers / datasets / huggingface_hub are imported by any test module, so an accidental download
# fails at once instead of hanging.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_e2llm():
    """`(model, processor)`: the tiny Qwen3-architecture E2LLM in eval mode. Shared: do not modify it in place."""
    from e2llm import build_tiny_e2llm

    model, processor = build_tiny_e2llm(seed=0)
    return model.eval(), processor


@pytest.fixture(scope="session")
def tiny_e2llm_dir(tiny_e2llm, tmp_path_factory):
    """A folder holding the tiny model and processor as `save_pretrained` writes them (with remote code)."""
    model, processor = tiny_e2llm
    folder = tmp_path_factory.mktemp("tiny_e2llm")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
