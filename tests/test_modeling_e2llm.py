"""E2LLM model family on tiny configurations (Transformers `ModelTester` style): configs, encoder, fusion, generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError

from e2llm import (
    E2LLMConfig,
    E2LLMEEGConfig,
    E2LLMEEGEncoder,
    E2LLMEEGForEmotionClassification,
    E2LLMForConditionalGeneration,
    E2LLMModel,
)
from e2llm.electrodes import ELECTRODE_NAMES

TEXT_CONFIGS = {
    "qwen2": {"model_type": "qwen2"},
    # Qwen2.5 checkpoints are `qwen2` models with biased q/k/v, a large RoPE base and tied embeddings at small sizes.
    "qwen2.5": {"model_type": "qwen2", "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
                "tie_word_embeddings": True},
    "qwen3": {"model_type": "qwen3", "head_dim": 8},
}


class E2LLMModelTester:
    """Builds tiny configs and inputs: 2 prompts, 3 EEG windows (2 for the first prompt, 1 for the second)."""

    vocab_size = 99
    eeg_token_id = 98
    pad_token_id = 0
    num_eeg_tokens = 2
    n_channels = 5
    window_samples = 400

    def __init__(self, text_kind: str = "qwen3", **eeg_overrides):
        self.text_kind = text_kind
        self.eeg_overrides = eeg_overrides

    def get_config(self) -> E2LLMConfig:
        text = {
            **TEXT_CONFIGS[self.text_kind],
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": 256,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": 1,
        }
        eeg = {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "window_samples": self.window_samples,
            "patch_size": 100,
            **self.eeg_overrides,
        }
        return E2LLMConfig(
            text_config=text, eeg_config=eeg, eeg_token_id=self.eeg_token_id, num_eeg_tokens=self.num_eeg_tokens
        )

    def prepare_inputs(self, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(2, self.eeg_token_id - 1, (2, 12), generator=g)
        input_ids[0, 1 : 1 + 2 * self.num_eeg_tokens] = self.eeg_token_id  # two windows
        input_ids[1, 3 : 3 + self.num_eeg_tokens] = self.eeg_token_id  # one window
        n_windows = 3
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "eeg_values": torch.randn(n_windows, self.n_channels, self.window_samples, generator=g),
            "eeg_channel_ids": torch.randperm(len(ELECTRODE_NAMES), generator=g)[: self.n_channels].repeat(n_windows, 1),
            "eeg_channel_mask": torch.ones(n_windows, self.n_channels, dtype=torch.long),
        }

    def model(self, cls=E2LLMForConditionalGeneration, seed: int = 0):
        torch.manual_seed(seed)
        return cls(self.get_config()).eval()


@pytest.fixture(scope="module")
def tester():
    return E2LLMModelTester()


@pytest.fixture(scope="module")
def model(tester):
    return tester.model()


# -- configs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text_kind", sorted(TEXT_CONFIGS))
def test_config_round_trip_through_dict_and_json(text_kind):
    config = E2LLMModelTester(text_kind).get_config()
    as_dict = config.to_dict()
    again = E2LLMConfig.from_dict(as_dict)
    assert again.to_dict() == as_dict
    assert E2LLMConfig.from_dict(config.to_diff_dict()).to_dict() == as_dict
    assert type(again.text_config) is type(config.text_config)
    assert again.text_config.model_type == TEXT_CONFIGS[text_kind]["model_type"]
    assert isinstance(again.eeg_config, E2LLMEEGConfig)
    assert again.eeg_config.num_output_tokens == again.num_eeg_tokens == 2
    assert again.id2label == config.id2label and len(again.label_names) == 7


def test_config_custom_labels_and_defaults():
    config = E2LLMConfig(id2label={0: "negative", 1: "neutral", 2: "positive"})
    assert config.label_names == ["negative", "neutral", "positive"]
    assert config.text_config.model_type == "qwen2"
    assert config.num_eeg_tokens == config.eeg_config.num_output_tokens


def test_eeg_config_rejects_inconsistent_shapes():
    # v5 configs are strict dataclasses: a failed `validate_architecture` is re-raised by huggingface_hub.
    with pytest.raises(StrictDataclassClassValidationError, match="window_samples=.* not a multiple of patch_size"):
        E2LLMEEGConfig(window_samples=450, patch_size=100)
    with pytest.raises(StrictDataclassClassValidationError, match="not divisible by num_attention_heads"):
        E2LLMEEGConfig(hidden_size=30, num_attention_heads=4)


# -- encoder ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder(tester):
    torch.manual_seed(0)
    return E2LLMEEGEncoder(tester.get_config().eeg_config).eval()


def test_encoder_shapes(encoder, tester):
    inputs = tester.prepare_inputs()
    out = encoder(inputs["eeg_values"], inputs["eeg_channel_ids"])
    n_patches = tester.window_samples // 100
    assert out.last_hidden_state.shape == (3, tester.n_channels * n_patches, 32)
    assert out.pooler_output.shape == (3, tester.num_eeg_tokens, 32)


def test_encoder_is_invariant_to_channel_order(encoder, tester):
    inputs = tester.prepare_inputs()
    perm = torch.tensor([3, 0, 4, 2, 1])
    with torch.no_grad():
        ref = encoder(inputs["eeg_values"], inputs["eeg_channel_ids"]).pooler_output
        permuted = encoder(inputs["eeg_values"][:, perm], inputs["eeg_channel_ids"][:, perm]).pooler_output
        # Same data, channel names shuffled against it: a different recording, a different output.
        mislabelled = encoder(inputs["eeg_values"][:, perm], inputs["eeg_channel_ids"]).pooler_output
    torch.testing.assert_close(permuted, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mislabelled, ref, atol=1e-3)


def test_masked_channels_are_ignored(encoder, tester):
    """A masked channel's values and electrode do not matter; the result equals that of the subset without it."""
    inputs = tester.prepare_inputs()
    values, ids = inputs["eeg_values"], inputs["eeg_channel_ids"]
    mask = torch.ones_like(ids)
    mask[:, 2] = 0
    changed_values, changed_ids = values.clone(), ids.clone()
    changed_values[:, 2] = 1e3 * torch.randn_like(values[:, 2])
    changed_ids[:, 2] = ELECTRODE_NAMES.index("CB1")
    keep = [0, 1, 3, 4]
    with torch.no_grad():
        masked = encoder(values, ids, mask).pooler_output
        masked_changed = encoder(changed_values, changed_ids, mask).pooler_output
        subset = encoder(values[:, keep], ids[:, keep]).pooler_output
        unmasked = encoder(values, ids).pooler_output
    torch.testing.assert_close(masked_changed, masked, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(subset, masked, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked, masked, atol=1e-3)


def test_encoder_accepts_seed_cerebellar_channels(encoder, tester):
    ids = torch.tensor([[ELECTRODE_NAMES.index(n) for n in ("CB1", "CB2", "Fp1", "O2", "Cz")]])
    out = encoder(torch.randn(1, 5, tester.window_samples), ids)
    assert torch.isfinite(out.pooler_output).all()


def test_encoder_errors(encoder, tester):
    ids = torch.zeros(1, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="window_samples=400"):
        encoder(torch.randn(1, 5, 300), ids)
    with pytest.raises(ValueError, match="must be \\(batch, n_channels, n_times\\)"):
        encoder(torch.randn(5, 400), ids)
    with pytest.raises(ValueError, match="eeg_channel_ids has shape"):
        encoder(torch.randn(1, 4, 400), ids)
    with pytest.raises(ValueError, match="at least one unmasked channel"):
        encoder(torch.randn(1, 5, 400), ids, torch.zeros_like(ids))


def test_stage1_head_loss_and_gradients(tester):
    eeg_config = tester.get_config().eeg_config
    eeg_config.id2label = {0: "low", 1: "high"}
    eeg_config.classifier_dropout = 0.0
    torch.manual_seed(0)
    head = E2LLMEEGForEmotionClassification(eeg_config)
    inputs = tester.prepare_inputs()
    labels = torch.tensor([0, 1, 1])
    out = head(inputs["eeg_values"], inputs["eeg_channel_ids"], labels=labels)
    assert out.logits.shape == (3, 2) and out.embeddings.shape == (3, 32)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))
    out.loss.backward()
    no_grad = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert no_grad == []
    assert head(inputs["eeg_values"], inputs["eeg_channel_ids"]).loss is None


# -- fusion, loss, generate ------------------------------------------------------------------------------------


def test_forward_with_labels_reaches_projector_and_encoder(tester):
    model = tester.model().train()
    inputs = tester.prepare_inputs()
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == tester.eeg_token_id, -100)
    out = model(**inputs, labels=labels)
    assert out.logits.shape == (2, 12, tester.vocab_size)
    assert out.eeg_hidden_states.shape == (3, tester.num_eeg_tokens, 32)
    out.loss.backward()
    for prefix in ("model.eeg_encoder.", "model.projector.", "model.language_model.", "lm_head."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None for g in grads), prefix
        assert sum(float(g.abs().sum()) for g in grads) > 0, prefix
    # Embeddings of the placeholder token itself are replaced, so the EEG reaches the loss only through the encoder.
    assert float(model.get_input_embeddings().weight.grad[tester.eeg_token_id].abs().sum()) == 0


def test_eeg_changes_the_logits(model, tester):
    inputs = tester.prepare_inputs()
    other = {**inputs, "eeg_values": torch.randn_like(inputs["eeg_values"])}
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).logits, model(**other).logits, atol=1e-4)


def test_placeholder_count_mismatch_is_a_clear_error(model, tester):
    inputs = tester.prepare_inputs()
    too_few = {**inputs, **{k: inputs[k][:2] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}}
    with pytest.raises(ValueError, match="holds 6 <\\|eeg\\|> tokens but the EEG gives 4 \\(2 windows x 2 tokens"):
        model(**too_few)
    with pytest.raises(ValueError, match="without eeg_channel_ids"):
        model(input_ids=inputs["input_ids"], eeg_values=inputs["eeg_values"])


def test_inputs_embeds_path_matches_input_ids(model, tester):
    inputs = tester.prepare_inputs()
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    with torch.no_grad():
        ref = model(**inputs).logits
        via_embeds = model(**{**inputs, "input_ids": None}, inputs_embeds=embeds).logits
    torch.testing.assert_close(via_embeds, ref)


def test_base_model_returns_last_hidden_state(tester):
    base = tester.model(E2LLMModel)
    full = tester.model(E2LLMForConditionalGeneration)
    full.model.load_state_dict(base.state_dict())
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        hidden = base(**inputs).last_hidden_state
        logits = full(**inputs).logits
    assert hidden.shape == (2, 12, 32)
    torch.testing.assert_close(full.lm_head(hidden), logits)


class _CallCounter:
    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, *args):
        self.calls += 1


def test_generate_with_cache_equals_without_and_encodes_eeg_once(model, tester):
    inputs = tester.prepare_inputs()
    counter = _CallCounter(model.model.eeg_encoder)
    try:
        cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, eos_token_id=None)
        assert counter.calls == 1
        uncached = model.generate(**inputs, max_new_tokens=6, do_sample=False, eos_token_id=None, use_cache=False)
    finally:
        counter.handle.remove()
    assert cached.shape == (2, 18)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :12], inputs["input_ids"])


def test_left_padded_batch_generates_like_single_prompts(model, tester):
    """Batched generation with left padding gives each prompt the tokens it gets alone."""
    inputs = tester.prepare_inputs()
    short = inputs["input_ids"][1, 2:]  # 10 tokens holding the second prompt's window
    padded = torch.cat([torch.full((2,), tester.pad_token_id), short])[None]
    batch_ids = torch.cat([inputs["input_ids"][:1], padded])
    attention_mask = torch.ones_like(batch_ids)
    attention_mask[1, :2] = 0
    eeg = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    kw = {"max_new_tokens": 5, "do_sample": False, "eos_token_id": None}
    batched = model.generate(input_ids=batch_ids, attention_mask=attention_mask, **eeg, **kw)
    alone = model.generate(input_ids=short[None], **{k: v[2:] for k, v in eeg.items()}, **kw)
    assert torch.equal(batched[1, -5:], alone[0, -5:])


def test_eager_and_sdpa_agree(tester, tmp_path):
    model = tester.model()
    model.save_pretrained(tmp_path)
    inputs = tester.prepare_inputs()
    logits = {}
    for implementation in ("eager", "sdpa"):
        loaded = E2LLMForConditionalGeneration.from_pretrained(tmp_path, attn_implementation=implementation).eval()
        for config in (loaded.config, loaded.config.text_config, loaded.model.eeg_encoder.config):
            assert config._attn_implementation == implementation
        with torch.no_grad():
            logits[implementation] = loaded(**inputs).logits
    torch.testing.assert_close(logits["eager"], logits["sdpa"], atol=1e-5, rtol=1e-4)
    model.set_attn_implementation("eager")  # switching at run time reaches the encoder too
    assert model.model.eeg_encoder.config._attn_implementation == "eager"
    assert E2LLMForConditionalGeneration._supports_flash_attn and E2LLMForConditionalGeneration._supports_sdpa


def test_activation_checkpointing_training_step(tester):
    inputs = tester.prepare_inputs()
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == tester.eeg_token_id, -100)
    grads = {}
    for checkpointing in (False, True):
        model = tester.model().train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert all(layer.gradient_checkpointing for layer in model.model.eeg_encoder.layers)
            assert model.model.language_model.layers[0].gradient_checkpointing
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        grads[checkpointing] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        optimizer.step()
        assert torch.isfinite(model(**inputs, labels=labels).loss)
    assert grads[True].keys() == grads[False].keys()
    for name in grads[False]:
        torch.testing.assert_close(grads[True][name], grads[False][name], atol=1e-5, rtol=1e-4)


def test_bf16_on_cpu(tester):
    model = tester.model().to(torch.bfloat16)
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits.float()).all()
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False, eos_token_id=None)
    assert generated.shape == (2, 15)


def test_tied_embeddings_follow_the_text_config():
    tied = E2LLMModelTester("qwen2.5").model()
    assert tied.config.tie_word_embeddings
    assert tied.lm_head.weight.data_ptr() == tied.get_input_embeddings().weight.data_ptr()
    untied = E2LLMModelTester("qwen2").model()
    assert untied.lm_head.weight.data_ptr() != untied.get_input_embeddings().weight.data_ptr()


def test_resize_token_embeddings_keeps_eeg_path(tester):
    model = tester.model()
    model.resize_token_embeddings(tester.vocab_size + 5)
    assert model.get_output_embeddings().weight.shape[0] == tester.vocab_size + 5
    assert model.config.text_config.vocab_size == tester.vocab_size + 5
    with torch.no_grad():
        assert model(**tester.prepare_inputs()).logits.shape[-1] == tester.vocab_size + 5


def test_label_temperature_scales_the_label_probabilities(tiny_e2llm, tmp_path):
    """`score_emotions` is softmax(score_labels / label_temperature); the temperature is saved with the model and a
    config without it loads with 1.0."""
    import copy
    import json as json_module

    from e2llm import LABEL_PREFIX, E2LLMConfig, E2LLMForConditionalGeneration

    model, processor = tiny_e2llm
    model = copy.deepcopy(model)
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True) + LABEL_PREFIX.rstrip()
    eeg = 20 * np.random.default_rng(0).standard_normal((3, 4 * 200))
    inputs = processor(text=prompt, eeg=eeg, sampling_rate=200, channel_names=["Fz", "Cz", "Pz"], units="uV",
                       return_tensors="pt")
    candidates = processor.label_candidate_ids(model.config.label_names)
    scores = model.score_labels(**inputs, candidate_ids=candidates)
    assert torch.allclose(model.score_emotions(**inputs, candidate_ids=candidates), scores.softmax(-1))
    model.config.label_temperature = 2.0
    assert torch.allclose(model.score_emotions(**inputs, candidate_ids=candidates), (scores / 2.0).softmax(-1))
    model.save_pretrained(tmp_path / "model")
    assert E2LLMForConditionalGeneration.from_pretrained(tmp_path / "model").config.label_temperature == 2.0
    config = json_module.loads((tmp_path / "model" / "config.json").read_text())
    config.pop("label_temperature")
    assert E2LLMConfig(**{k: v for k, v in config.items() if k not in ("model_type", "transformers_version")}
                       ).label_temperature == 1.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(StrictDataclassClassValidationError, match="label_temperature must be a finite number > 0"):
            E2LLMConfig(label_temperature=bad)
