"""EEGPT, CBraMod and LaBraM backbones equal braindecode 1.8.1's classes on the same weights and inputs.

The reference weights, inputs and outputs come from `tests/fixtures/backbones_braindecode.safetensors`, written by
`tests/fixtures/make_backbone_fixtures.py` in a separate environment with braindecode 1.8.1 (see its docstring)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from e2llm.backbones_e2llm import channel_table_ids

_spec = importlib.util.spec_from_file_location("backbone_reference", Path(__file__).parent / "fixtures" / "backbone_reference.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


@pytest.fixture(scope="module")
def fixture():
    return ref.load_fixture()


@pytest.mark.parametrize("tag", ["eegpt", "eegpt_nostride"])
def test_eegpt_matches_braindecode(fixture, tag):
    state, x, expected, meta = ref.reference(fixture, tag)
    config = ref.eegpt_config(meta, meta["n_times"])
    module = ref.build_backbone(config, state)
    ids = torch.as_tensor(channel_table_ids(meta["channels"], config.channel_names)).expand(x.shape[0], -1)
    assert (ids >= 0).all()
    with torch.no_grad():
        out = module(x, ids)
    assert out.shape == expected.shape == (x.shape[0], module.embeddings.num_patches, 2, 32)
    assert ref.max_error(out, expected) <= ref.TOLERANCE


def test_cbramod_matches_braindecode(fixture):
    state, x, expected, meta = ref.reference(fixture, "cbramod")
    module = ref.build_backbone(ref.cbramod_config(meta), state)
    with torch.no_grad():
        out = module(x)
    assert out.shape == expected.shape
    assert ref.max_error(out, expected) <= ref.TOLERANCE


def test_labram_matches_braindecode(fixture):
    state, x, expected, meta = ref.reference(fixture, "labram")
    config = ref.labram_config(meta)
    module = ref.build_backbone(config, state)
    ids = torch.as_tensor(channel_table_ids(meta["channels"], config.channel_names)).expand(x.shape[0], -1)
    assert (ids >= 0).all()
    with torch.no_grad():
        out = module(x, ids)
    assert out.shape == expected.shape
    assert ref.max_error(out, expected) <= ref.TOLERANCE
