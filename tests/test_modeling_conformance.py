"""E2LLM behaves like a Transformers model: the checks ModelTesterMixin / GenerationTesterMixin run, on the EEG
encoder, the stage-1 model and the full model (tiny configurations)."""

from __future__ import annotations

import pytest
import torch

from e2llm import (
    E2LLMConfig,
    E2LLMEEGEncoder,
    E2LLMEEGForEmotionClassification,
    E2LLMForConditionalGeneration,
    E2LLMModel,
)

VOCAB, EEG_ID, N_EEG_TOKENS, N_CHANNELS, N_TIMES = 99, 98, 2, 5, 400
N_EEG_LAYERS, N_TEXT_LAYERS = 2, 2


def make_config(**eeg_overrides) -> E2LLMConfig:
    text = {
        "model_type": "qwen3", "head_dim": 8, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": N_TEXT_LAYERS, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": VOCAB,
        "max_position_embeddings": 256, "pad_token_id": 0, "eos_token_id": 1,
    }
    eeg = {
        "hidden_size": 32, "num_hidden_layers": N_EEG_LAYERS, "num_attention_heads": 4, "intermediate_size": 64,
        "window_samples": N_TIMES, "patch_size": 100, "id2label": {0: "low", 1: "high"}, **eeg_overrides,
    }
    return E2LLMConfig(text_config=text, eeg_config=eeg, eeg_token_id=EEG_ID, num_eeg_tokens=N_EEG_TOKENS)


def make_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """2 prompts of 12 tokens; 3 EEG windows (2 for the first prompt, 1 for the second)."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, EEG_ID - 1, (2, 12), generator=g)
    input_ids[0, 1 : 1 + 2 * N_EEG_TOKENS] = EEG_ID
    input_ids[1, 3 : 3 + N_EEG_TOKENS] = EEG_ID
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        **eeg_inputs(3, g),
    }


def eeg_inputs(n_windows: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "eeg_values": torch.randn(n_windows, N_CHANNELS, N_TIMES, generator=g),
        "eeg_channel_ids": torch.arange(N_CHANNELS).repeat(n_windows, 1),
        "eeg_channel_mask": torch.ones(n_windows, N_CHANNELS, dtype=torch.long),
    }


def build(cls, attn_implementation: str = "sdpa", seed: int = 0):
    torch.manual_seed(seed)
    config = make_config()
    if cls in (E2LLMEEGEncoder, E2LLMEEGForEmotionClassification):
        config = config.eeg_config
    model = cls(config).eval()
    model.set_attn_implementation(attn_implementation)
    return model


def model_inputs(cls) -> dict[str, torch.Tensor]:
    inputs = make_inputs()
    if cls in (E2LLMEEGEncoder, E2LLMEEGForEmotionClassification):
        return {k: v for k, v in inputs.items() if k.startswith("eeg_")}
    return inputs


def eeg_encoder_of(model) -> E2LLMEEGEncoder:
    if isinstance(model, E2LLMEEGEncoder):
        return model
    if isinstance(model, E2LLMEEGForEmotionClassification):
        return model.encoder
    return model.eeg_encoder if isinstance(model, E2LLMModel) else model.model.eeg_encoder


ALL_CLASSES = [E2LLMEEGEncoder, E2LLMEEGForEmotionClassification, E2LLMModel, E2LLMForConditionalGeneration]


def _flatten(output) -> list[torch.Tensor]:
    """Tensors of a (nested) output in order, as ModelTesterMixin's equivalence check walks them."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _flatten(item)]
    if hasattr(output, "to_legacy_cache") or type(output).__name__.endswith("Cache"):
        return []  # caches are compared through the logits they produce
    return _flatten(output.to_tuple())


# -- 1. return_dict=False ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_return_dict_false_gives_the_same_tensors_as_a_tuple(cls):
    model, inputs = build(cls, "eager"), model_inputs(cls)
    flags = {"output_hidden_states": True, "output_attentions": True}
    with torch.no_grad():
        as_dict = model(**inputs, **flags)
        as_tuple = model(**inputs, **flags, return_dict=False)
    assert isinstance(as_tuple, tuple)
    expected, got = _flatten(as_dict.to_tuple()), _flatten(as_tuple)
    assert len(got) == len(expected) > 1
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_config_return_dict_false_gives_a_tuple(cls):
    model, inputs = build(cls), model_inputs(cls)
    model.config.return_dict = False
    with torch.no_grad():
        assert isinstance(model(**inputs), tuple)
        assert not isinstance(model(**inputs, return_dict=True), tuple)


# -- 2. output_hidden_states / output_attentions -----------------------------------------------------------------


@pytest.mark.parametrize("cls", [E2LLMEEGEncoder, E2LLMEEGForEmotionClassification], ids=lambda c: c.__name__)
@pytest.mark.parametrize("via", ["kwargs", "config"])
def test_encoder_hidden_states_and_attentions(cls, via):
    model, inputs = build(cls, "eager"), model_inputs(cls)
    n_tokens = N_CHANNELS * (N_TIMES // 100)
    with torch.no_grad():
        plain = model(**inputs)
        if via == "config":
            model.config.output_hidden_states = model.config.output_attentions = True
            out = model(**inputs)
        else:
            out = model(**inputs, output_hidden_states=True, output_attentions=True)
    assert plain.hidden_states is None and plain.attentions is None
    assert len(out.hidden_states) == N_EEG_LAYERS + 1
    assert all(h.shape == (3, n_tokens, 32) for h in out.hidden_states)
    assert len(out.attentions) == N_EEG_LAYERS
    assert all(a.shape == (3, 4, n_tokens, n_tokens) for a in out.attentions)
    # attention rows are distributions
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(3, 4, n_tokens))
    if cls is E2LLMEEGEncoder:
        torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)
        assert not torch.allclose(out.hidden_states[0], out.hidden_states[1])


def test_encoder_pooler_attentions_skip_masked_channels():
    model = build(E2LLMEEGEncoder, "eager")
    inputs = model_inputs(E2LLMEEGEncoder)
    inputs["eeg_channel_mask"][:, 1] = 0
    with torch.no_grad():
        out = model(**inputs, output_pooler_attentions=True)
    (weights,) = out.pooler_attentions
    n_patches = N_TIMES // 100
    assert weights.shape == (3, 4, N_EEG_TOKENS, N_CHANNELS * n_patches)
    per_channel = weights.view(3, 4, N_EEG_TOKENS, N_CHANNELS, n_patches).sum(-1)
    assert float(per_channel[..., 1].abs().max()) == 0.0
    torch.testing.assert_close(per_channel.sum(-1), torch.ones(3, 4, N_EEG_TOKENS))


def test_full_model_hidden_states_and_attentions():
    model, inputs = build(E2LLMForConditionalGeneration, "eager"), make_inputs()
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == N_TEXT_LAYERS + 1 and out.hidden_states[0].shape == (2, 12, 32)
    assert len(out.attentions) == N_TEXT_LAYERS and out.attentions[0].shape == (2, 4, 12, 12)


# -- 6. get_input_embeddings / enable_input_require_grads ---------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_enable_input_require_grads_with_reentrant_checkpointing(cls):
    """PEFT's setup: weights frozen except one late layer, reentrant checkpointing. Without the input-embedding hook,
    no gradient reaches the trainable layer (torch warns that no checkpoint input requires grad)."""
    model, inputs = build(cls), model_inputs(cls)
    assert isinstance(model.get_input_embeddings(), torch.nn.Module)
    trainable = [eeg_encoder_of(model).layers[-1]]
    if cls in (E2LLMModel, E2LLMForConditionalGeneration):
        trainable.append((model if cls is E2LLMModel else model.model).language_model.layers[-1])
    model.train()
    model.requires_grad_(False)
    for module in trainable:
        module.requires_grad_(True)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    out = model(**inputs)
    first = out[0] if cls is not E2LLMEEGForEmotionClassification else out.logits
    first.float().square().mean().backward()
    grads = [p.grad for module in trainable for p in module.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    model.disable_input_require_grads()


# -- 8. past_key_values (deprecated alias of cache) ----------------------------------------------------------------


@pytest.mark.parametrize("cls", [E2LLMModel, E2LLMForConditionalGeneration], ids=lambda c: c.__name__)
def test_past_key_values_alias_is_honoured(cls):
    model, inputs = build(cls), make_inputs()
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    eeg = {k: v for k, v in inputs.items() if k.startswith("eeg_")}
    with torch.no_grad():
        full = model(**inputs)[0][:, -1]
        prefix = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], use_cache=True, **eeg)
        with pytest.warns(FutureWarning, match="past_key_values"):
            step = model(input_ids=ids[:, -1:], attention_mask=mask, past_key_values=prefix.cache)[0][:, -1]
        without_cache = model(input_ids=ids[:, -1:], attention_mask=mask[:, -1:])[0][:, -1]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(without_cache, full, atol=1e-3)


def test_logits_to_keep_int_and_positions():
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    with torch.no_grad():
        full = model(**inputs).logits
        torch.testing.assert_close(model(**inputs, logits_to_keep=1).logits, full[:, -1:])
        torch.testing.assert_close(model(**inputs, logits_to_keep=torch.tensor([2, 5])).logits, full[:, [2, 5]])


# -- precomputed EEG features (Llava's pattern) ------------------------------------------------------------------


class _CallCounter:
    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, *args):
        self.calls += 1


def _eeg_of(inputs):
    return {k: v for k, v in inputs.items() if k.startswith("eeg_")}


def _text_of(inputs):
    return {k: v for k, v in inputs.items() if not k.startswith("eeg_")}


@pytest.mark.parametrize("cls", [E2LLMModel, E2LLMForConditionalGeneration], ids=lambda c: c.__name__)
def test_eeg_features_give_the_same_outputs_without_encoding(cls):
    model, inputs = build(cls), make_inputs()
    with torch.no_grad():
        reference = model(**inputs)[0]
        features = model.get_eeg_features(**_eeg_of(inputs))
        encoder = eeg_encoder_of(model)
        encoded = encoder(**_eeg_of(inputs))
        counter = _CallCounter(encoder)
        try:
            from_features = model(**_text_of(inputs), eeg_features=features)[0]
            from_encoder_output = model(**_text_of(inputs), eeg_features=encoded)[0]
        finally:
            counter.handle.remove()
    assert counter.calls == 0
    torch.testing.assert_close(from_features, reference, rtol=0, atol=0)
    torch.testing.assert_close(from_encoder_output, reference, rtol=0, atol=0)


def test_eeg_features_bad_inputs_are_clear_errors():
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    features = model.get_eeg_features(**_eeg_of(inputs)).detach()
    text = _text_of(inputs)
    with pytest.raises(ValueError, match="pass eeg_values or eeg_features"):
        model(**inputs, eeg_features=features)
    with pytest.raises(ValueError, match="holds 6 <\\|eeg\\|> tokens but the EEG gives 4 \\(2 windows x 2 tokens"):
        model(**text, eeg_features=features[:2])
    with pytest.raises(ValueError, match="must be projected EEG tokens \\(n_windows, num_eeg_tokens, 32\\)"):
        model(**text, eeg_features=features[..., :16])


def test_text_with_placeholders_and_no_eeg_is_an_ordinary_forward():
    """As in Llava, the `<|eeg|>` count is checked only when EEG is given."""
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    with torch.no_grad():
        plain = model(**_text_of(inputs)).logits
        embedded = model.lm_head(model.model.language_model(inputs_embeds=model.get_input_embeddings()(
            inputs["input_ids"]), attention_mask=inputs["attention_mask"]).last_hidden_state)
    torch.testing.assert_close(plain, embedded)


def test_generate_with_eeg_features_matches_eeg_values_and_never_encodes():
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    kw = {"max_new_tokens": 5, "do_sample": False, "eos_token_id": None}
    reference = model.generate(**inputs, **kw)
    features = model.get_eeg_features(**_eeg_of(inputs))
    counter = _CallCounter(model.model.eeg_encoder)
    try:
        cached = model.generate(**_text_of(inputs), eeg_features=features, **kw)
        uncached = model.generate(**_text_of(inputs), eeg_features=features, use_cache=False, **kw)
    finally:
        counter.handle.remove()
    assert counter.calls == 0
    assert torch.equal(cached, reference) and torch.equal(uncached, reference)


# -- 3. the model writes <|eeg|> itself ---------------------------------------------------------------------------


def test_generate_continues_after_the_model_writes_an_eeg_token():
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    # With the cache (the default) the EEG enters at prefill only. Without it every step re-reads the EEG for the whole
    # text and the written tokens make the count check fail, as in Llava.
    kw = {"max_new_tokens": 4, "do_sample": False, "eos_token_id": None, "sequence_bias": {(EEG_ID,): 100.0}}
    generated = model.generate(**inputs, **kw)
    assert generated.shape == (2, 16)
    assert (generated[:, 12:] == EEG_ID).all()


# -- 4. assisted decoding -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("eeg_as", ["values", "features"])
def test_assisted_decoding_with_eeg_equals_greedy(eeg_as):
    model, assistant = build(E2LLMForConditionalGeneration), build(E2LLMForConditionalGeneration, seed=1)
    inputs = {k: v[:1] for k, v in _text_of(make_inputs()).items()}  # assisted decoding takes one prompt
    eeg = {k: v[:2] for k, v in _eeg_of(make_inputs()).items()}  # its two windows
    kw = {"max_new_tokens": 6, "do_sample": False, "eos_token_id": None}
    greedy = model.generate(**inputs, **eeg, **kw)
    if eeg_as == "features":
        # each model reads the EEG through its own encoder, so the assistant gets eeg_values from the caller
        eeg = {"eeg_features": model.get_eeg_features(**eeg)}
        assistant = build(E2LLMForConditionalGeneration)  # same weights: the features fit both
    assisted = model.generate(**inputs, **eeg, assistant_model=assistant, **kw)
    assert torch.equal(assisted, greedy)


# -- beam search / num_return_sequences: each prompt keeps its own windows ----------------------------------------


@pytest.mark.parametrize("eeg_as", ["values", "features"])
def test_beam_search_pairs_each_prompt_with_its_own_windows(eeg_as):
    """Prompts with 2 and 1 windows, 2 beams: the first step's logits of every beam equal the prompt's own."""
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    with torch.no_grad():
        reference = model(**inputs).logits[:, -1]
        features = model.get_eeg_features(**_eeg_of(inputs))
    eeg = _eeg_of(inputs) if eeg_as == "values" else {"eeg_features": features}
    out = model.generate(
        **_text_of(inputs), **eeg, max_new_tokens=2, do_sample=False, eos_token_id=None, num_beams=2,
        num_return_sequences=2, output_logits=True, return_dict_in_generate=True,
    )
    torch.testing.assert_close(out.logits[0], reference.repeat_interleave(2, 0), atol=1e-5, rtol=1e-5)
    assert out.sequences.shape == (4, 14)


# -- 7. torch.compile(fullgraph=True), torch.export, static cache -------------------------------------------------
# Dynamo's graph capture is what fullgraph=True checks (a data-dependent Python branch breaks it); the "eager"
# backend skips inductor's code generation, which takes minutes on a small CPU and is exercised by the slow test.


@pytest.mark.parametrize(
    "cls",
    # the full model holds the encoder and the base model, the stage-1 model the encoder: those two run by default
    [pytest.param(E2LLMEEGEncoder, marks=pytest.mark.slow), E2LLMEEGForEmotionClassification,
     pytest.param(E2LLMModel, marks=pytest.mark.slow), E2LLMForConditionalGeneration],
    ids=lambda c: c.__name__,
)
def test_forward_compiles_with_fullgraph(cls):
    assert cls._can_compile_fullgraph
    torch._dynamo.reset()
    model, inputs = build(cls), model_inputs(cls)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected = model(**inputs)
        got = compiled(**inputs)
    torch.testing.assert_close(got[0], expected[0])


def test_forward_with_eeg_features_compiles_with_fullgraph():
    torch._dynamo.reset()
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    with torch.no_grad():
        features = model.get_eeg_features(**_eeg_of(inputs))
        expected = model(**inputs).logits
        got = torch.compile(model, fullgraph=True, backend="eager")(**_text_of(inputs), eeg_features=features).logits
    torch.testing.assert_close(got, expected)


def test_compiled_checks_still_raise():
    """The count and channel checks are tensor checks (`torch._check`): still errors when compiled."""
    torch._dynamo.reset()
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    too_few = {**_text_of(inputs), **{k: v[:2] for k, v in _eeg_of(inputs).items()}}
    with pytest.raises(Exception, match="Runtime assertion failed|do not match"):
        with torch.no_grad():
            compiled(**too_few)


def test_torch_export_matches_eager():
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    exported = torch.export.export(model, args=(), kwargs={**inputs, "use_cache": False})
    with torch.no_grad():
        expected = model(**inputs, use_cache=False).logits
        other = model(**make_inputs(seed=1), use_cache=False).logits
    got = exported.module()(**inputs, use_cache=False)
    torch.testing.assert_close(got.logits if hasattr(got, "logits") else got[0], expected)
    got_other = exported.module()(**make_inputs(seed=1), use_cache=False)  # new EEG and text, same shapes
    torch.testing.assert_close(got_other.logits if hasattr(got_other, "logits") else got_other[0], other)


def test_static_cache_generation_with_compiled_forward():
    """GenerationTesterMixin's compile check: a static cache and the decoding forward compiled with fullgraph=True
    give the dynamic cache's tokens."""
    from transformers import CompileConfig

    torch._dynamo.reset()
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    kw = {"max_new_tokens": 5, "do_sample": False, "eos_token_id": None}
    dynamic = model.generate(**inputs, **kw)
    compile_config = CompileConfig(fullgraph=True, dynamic=False, backend="eager")
    compile_config._compile_all_devices = True  # CPU: Transformers compiles only on accelerators by default
    static = model.generate(**inputs, cache_implementation="static", compile_config=compile_config, **kw)
    assert torch.equal(static, dynamic)
    features = model.get_eeg_features(**_eeg_of(inputs))
    from_features = model.generate(
        **_text_of(inputs), eeg_features=features, cache_implementation="static", compile_config=compile_config, **kw
    )
    assert torch.equal(from_features, dynamic)


@pytest.mark.slow
def test_inductor_fullgraph_compile_matches_eager():
    torch._dynamo.reset()
    model, inputs = build(E2LLMForConditionalGeneration), make_inputs()
    with torch.no_grad():
        expected = model(**inputs).logits
        got = torch.compile(model, fullgraph=True)(**inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
