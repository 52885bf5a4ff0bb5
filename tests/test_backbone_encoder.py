"""Foundation backbones inside E2LLM: config contract and validation, the encoder's pooled tokens and its public
backbone output, masking, a tiny EEGPT E2LLM with its processor (save/reload), the feature extractor following the
encoder contract."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

from e2llm import E2LLMEEGConfig
from e2llm.assembly import TINY_FOUNDATION_CONFIGS, load_eeg_encoder_weights
from e2llm.backbones_e2llm import EEGPT_CHANNELS, channel_table_ids, feature_extractor_settings
from e2llm.convert_backbones import to_e2llm_state_dict
from e2llm.electrodes import SEED_CHANNELS
from e2llm.modeling_eeg_encoder import E2LLMEEGEncoder

_spec = importlib.util.spec_from_file_location("backbone_reference", Path(__file__).parent / "fixtures" / "backbone_reference.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def tiny_encoder(name, **overrides):
    torch.manual_seed(0)
    return E2LLMEEGEncoder(E2LLMEEGConfig(**{**TINY_FOUNDATION_CONFIGS[name], **overrides})).eval()


def inputs(config, names, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(batch, len(names), config.window_samples, generator=generator)
    ids = torch.as_tensor(channel_table_ids(names, config.channel_names)).expand(batch, -1).clone()
    return values, ids


def test_contract_defaults_and_round_trip():
    config = E2LLMEEGConfig(backbone="eegpt")
    assert (config.sampling_rate, config.window_samples, config.hidden_size) == (256, 1024, 512)
    assert config.channel_names == list(EEGPT_CHANNELS) and len(config.channel_names) == 62
    assert (config.input_unit_uv, config.reference, config.backbone_config["num_summary_tokens"]) == (1000.0, "average", 4)
    again = E2LLMEEGConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert E2LLMEEGConfig(backbone="labram").hidden_size == 200 and E2LLMEEGConfig(backbone="cbramod").hidden_size == 200
    assert E2LLMEEGConfig().sampling_rate == 200 and E2LLMEEGConfig().backbone_config == {}


@pytest.mark.parametrize("kwargs, message", [
    ({"backbone": "bendr"}, "backbone must be one of"),
    ({"backbone": "eegpt", "backbone_config": {"depth": 8}}, r"unknown eegpt setting\(s\) \['depth'\]"),
    ({"backbone": "eegpt", "backbone_config": {"num_layers": "8"}}, "num_layers='8' must be a int"),
    ({"backbone": "cbramod", "backbone_config": {"patch_size": 256}}, "200-sample patches"),
    ({"backbone": "labram", "window_samples": 3600}, "more than the 16 time embeddings"),
    ({"backbone": "eegpt", "reference": "car"}, "reference must be 'average' or 'none'"),
    ({"backbone": "eegpt", "channel_names": ["Fz", "FZ"]}, r"lists \['FZ', 'Fz'\] more than once"),
    ({"channel_names": ["Fz"]}, "part of a foundation backbone's input contract"),
    ({"backbone": "eegpt", "num_attention_heads": 5}, "not divisible by num_attention_heads=5"),
])
def test_bad_backbone_settings(kwargs, message):
    # errors found in __post_init__ are ValueErrors; `validate_architecture` ones are re-raised by huggingface_hub
    with pytest.raises((ValueError, StrictDataclassClassValidationError), match=message):
        E2LLMEEGConfig(**kwargs)


@pytest.mark.parametrize("name, layout", [("eegpt", (2, 31, 4, 32)), ("cbramod", (2, 6, 4, 32)),
                                          ("labram", (2, 1 + 6 * 4, 100))])
def test_encoder_pools_backbone_tokens(name, layout):
    encoder = tiny_encoder(name)
    values, ids = inputs(encoder.config, ["Fp1", "Fz", "Cz", "Pz", "O1", "O2"])
    out = encoder(values, ids, output_backbone_hidden_states=True)
    assert out.pooler_output.shape == (2, encoder.config.num_output_tokens, encoder.config.hidden_size)
    assert tuple(out.backbone_hidden_states.shape) == layout
    assert encoder(values, ids).backbone_hidden_states is None
    assert torch.isfinite(out.pooler_output).all()


@pytest.mark.parametrize("tag", ["eegpt", "cbramod", "labram"])
def test_public_backbone_output_equals_braindecode(tag):
    state, x, expected, meta = ref.reference(ref.load_fixture(), tag)
    config = {"eegpt": lambda: ref.eegpt_config(meta, meta["n_times"]), "cbramod": lambda: ref.cbramod_config(meta),
              "labram": lambda: ref.labram_config(meta)}[tag]()
    encoder = E2LLMEEGEncoder(config).eval()
    load_eeg_encoder_weights(encoder, to_e2llm_state_dict(tag, state)[0])
    names = meta.get("channels") or list(SEED_CHANNELS[: x.shape[1]])
    ids = torch.as_tensor(channel_table_ids(names, config.channel_names)).expand(x.shape[0], -1)
    with torch.no_grad():
        out = encoder(x, ids, output_backbone_hidden_states=True).backbone_hidden_states
    assert ref.max_error(out, expected) <= ref.TOLERANCE


@pytest.mark.parametrize("name", ["eegpt", "labram"])
def test_masked_channel_is_as_if_absent(name):
    encoder = tiny_encoder(name)
    names = ["Fp1", "Fz", "Cz", "Pz", "O1", "O2"]
    values, ids = inputs(encoder.config, names)
    mask = torch.ones_like(ids)
    mask[:, 2] = 0
    with torch.no_grad():
        masked = encoder(values, ids, mask).pooler_output
        masked_again = encoder(values.index_fill(1, torch.tensor([2]), -3.0), ids, mask).pooler_output
        keep = [0, 1, 3, 4, 5]
        absent = encoder(values[:, keep], ids[:, keep]).pooler_output
    # the masked channel's values never matter, and the window reads as if the channel were not recorded
    assert (masked - masked_again).abs().max() < 1e-5
    assert (masked - absent).abs().max() < 1e-5


def test_cbramod_puts_channels_in_table_order():
    encoder = tiny_encoder("cbramod")
    names = ["Fp1", "Fz", "Cz", "Pz", "O1", "O2"]
    values, ids = inputs(encoder.config, names)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        a = encoder(values, ids, output_backbone_hidden_states=True)
        b = encoder(values[:, order], ids[:, order], output_backbone_hidden_states=True)
    assert (a.backbone_hidden_states - b.backbone_hidden_states).abs().max() < 1e-5
    assert (a.pooler_output - b.pooler_output).abs().max() < 1e-5


def test_wrong_window_and_ids_are_errors():
    encoder = tiny_encoder("eegpt")
    values, ids = inputs(encoder.config, ["Fz", "Cz"])
    with pytest.raises(ValueError, match="window_samples=1024"):
        encoder(values[..., :800], ids)
    with pytest.raises(ValueError, match="channel table of 62 names"):
        encoder(values, ids + 100)


def test_feature_extractor_follows_the_encoder_contract(caplog):
    from e2llm import E2LLMFeatureExtractor

    config = E2LLMEEGConfig(**TINY_FOUNDATION_CONFIGS["eegpt"])
    extractor = E2LLMFeatureExtractor(**feature_extractor_settings(config))
    assert (extractor.sampling_rate, extractor.window_samples, extractor.output_unit_uv) == (256, 1024, 1000.0)
    assert extractor.reference == "average" and extractor.electrode_names == list(EEGPT_CHANNELS)
    rng = np.random.default_rng(0)
    eeg = 20.0 * rng.standard_normal((len(SEED_CHANNELS), 200 * 8))  # SEED montage, 200 Hz, µV
    with caplog.at_level(logging.WARNING):
        out = extractor(eeg, sampling_rate=200, channel_names=list(SEED_CHANNELS), units="uV", return_tensors="pt")
    assert "CB1" in caplog.text and "CB2" in caplog.text
    assert out["eeg_values"].shape == (2, 60, 1024)
    # millivolts, average reference: the channel mean is zero and amplitudes are tens of µV = hundredths of mV
    assert out["eeg_values"].mean(1).abs().max() < 1e-6
    assert 0.001 < out["eeg_values"].std() < 0.1
    with pytest.raises(ValueError, match="needs at least 8"):
        extractor(eeg[:5], sampling_rate=200, channel_names=list(SEED_CHANNELS[:5]), units="uV")


def test_tiny_eegpt_e2llm_saves_and_reloads(tmp_path):
    from e2llm import E2LLMForConditionalGeneration, E2LLMProcessor, assemble_e2llm, build_offline_tokenizer
    from e2llm.assembly import TINY_EEGPT_CONFIG, TINY_TEXT_CONFIG

    torch.manual_seed(0)
    model, processor = assemble_e2llm(build_offline_tokenizer(), text_config=TINY_TEXT_CONFIG,
                                      eeg_config=TINY_EEGPT_CONFIG)
    model.eval()
    eeg = 20.0 * np.random.default_rng(1).standard_normal((len(SEED_CHANNELS), 256 * 4))
    messages = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], eeg=[eeg], sampling_rate=256, channel_names=list(SEED_CHANNELS), units="uV",
                      return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again = E2LLMForConditionalGeneration.from_pretrained(tmp_path).eval()
    processor_again = E2LLMProcessor.from_pretrained(tmp_path)
    assert again.config.eeg_config.backbone == "eegpt"
    assert processor_again.feature_extractor.output_unit_uv == 1000.0
    assert processor_again.feature_extractor.sampling_rate == 256
    with torch.no_grad():
        assert torch.equal(again(**batch).logits, logits)
