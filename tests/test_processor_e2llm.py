"""E2LLMProcessor: chat template with EEG parts, placeholder expansion, count checks, padding, assistant masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2llm import E2LLMProcessor
from e2llm.processing_e2llm import CHAT_TEMPLATE

CHANNELS = ["Fz", "Cz", "Pz"]
KW = {"sampling_rate": 200, "channel_names": CHANNELS, "units": "uV"}
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


def _eeg(seconds, seed=0):
    return 20 * np.random.default_rng(seed).standard_normal((3, int(seconds * 200)))


def _user(text="Which emotion?"):
    return {"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": text}]}


def test_chat_template_renders_eeg_parts(tiny_e2llm):
    _, processor = tiny_e2llm
    conversation = [
        {"role": "system", "content": "You read EEG."},
        _user(),
        {"role": "assistant", "content": [{"type": "text", "text": "Emotion: fear"}]},
    ]
    assert processor.apply_chat_template(conversation) == (
        "<|im_start|>system\nYou read EEG.<|im_end|>\n"
        "<|im_start|>user\n<|eeg_start|><|eeg|><|eeg_end|>Which emotion?<|im_end|>\n"
        "<|im_start|>assistant\nEmotion: fear<|im_end|>\n"
    )
    prompt = processor.apply_chat_template(conversation[:2], add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    batch = processor.apply_chat_template([conversation[:2], [_user("Again?")]])
    assert isinstance(batch, list) and len(batch) == 2 and "Again?" in batch[1]


def test_placeholder_expands_to_num_eeg_tokens_per_window(tiny_e2llm):
    _, processor = tiny_e2llm
    prompt = processor.apply_chat_template([_user()], add_generation_prompt=True)
    out = processor(text=prompt, eeg=_eeg(12.5), return_tensors="pt", **KW)  # 3 windows of 4 s
    eeg_id = processor.eeg_token_id
    assert out["eeg_values"].shape == (3, 3, 800)
    assert int((out["input_ids"] == eeg_id).sum()) == 3 * processor.num_eeg_tokens
    ids = out["input_ids"][0].tolist()
    start = ids.index(processor.tokenizer.convert_tokens_to_ids("<|eeg_start|>"))
    end = ids.index(processor.tokenizer.convert_tokens_to_ids("<|eeg_end|>"))
    assert ids[start + 1 : end] == [eeg_id] * (3 * processor.num_eeg_tokens)


def test_two_recordings_in_one_prompt_and_batch_with_left_padding(tiny_e2llm):
    model, processor = tiny_e2llm
    two = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "then"}, {"type": "eeg"}]}]
    prompts = processor.apply_chat_template([two, [_user()]], add_generation_prompt=True)
    out = processor(text=prompts, eeg=[_eeg(4), _eeg(8, 1), _eeg(4, 2)], return_tensors="pt", **KW)
    n = processor.num_eeg_tokens
    assert out["eeg_values"].shape[0] == 4
    assert (out["input_ids"] == processor.eeg_token_id).sum(-1).tolist() == [3 * n, n]
    assert processor.tokenizer.padding_side == "left"
    assert out["attention_mask"][1, 0] == 0 and out["attention_mask"][:, -1].tolist() == [1, 1]
    generated = model.generate(**out, max_new_tokens=2, do_sample=False)
    assert generated.shape[0] == 2


def test_placeholder_and_recording_counts_must_match(tiny_e2llm):
    _, processor = tiny_e2llm
    prompt = processor.apply_chat_template([_user()], add_generation_prompt=True)
    with pytest.raises(ValueError, match="holds 1 <\\|eeg\\|> placeholders but 2 EEG recordings"):
        processor(text=prompt, eeg=[_eeg(4), _eeg(4, 1)], **KW)
    with pytest.raises(ValueError, match="holds 1 <\\|eeg\\|> placeholders but no `eeg`"):
        processor(text=prompt)
    with pytest.raises(ValueError, match="holds 0 <\\|eeg\\|> placeholders but 1 EEG recordings"):
        processor(text="no eeg here", eeg=_eeg(4), **KW)
    with pytest.raises(ValueError, match="needs `text`"):
        processor(eeg=_eeg(4), **KW)
    with pytest.raises(ValueError, match="sampling_rate is required"):  # the feature extractor's errors come through
        processor(text=prompt, eeg=_eeg(4), channel_names=CHANNELS, units="uV")


def test_text_only_prompt(tiny_e2llm):
    _, processor = tiny_e2llm
    out = processor(text="Emotion: fear", return_tensors="pt")
    assert set(out) == {"input_ids", "attention_mask"}


def test_assistant_tokens_mask(tiny_e2llm):
    _, processor = tiny_e2llm
    conversations = [
        [_user(), {"role": "assistant", "content": "Emotion: fear"}],
        [{"role": "user", "content": "Hello"}, _user("Why?"),
         {"role": "assistant", "content": [{"type": "text", "text": "Reasoning: alpha is low.\nEmotion: sadness"}]}],
    ]
    out = processor.apply_chat_template(
        conversations, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt",
        processor_kwargs={"eeg": [_eeg(8), _eeg(4, 1)], **KW},
    )
    assert out["assistant_masks"].shape == out["input_ids"].shape
    decoded = [processor.decode(ids[mask.bool()]) for ids, mask in zip(out["input_ids"], out["assistant_masks"])]
    assert decoded == ["Emotion: fear<|im_end|>", "Reasoning: alpha is low.\nEmotion: sadness<|im_end|>"]
    # The expansion of <|eeg|> before the answer shifted it; the mask followed.
    assert int((out["input_ids"][0] == processor.eeg_token_id).sum()) == 2 * processor.num_eeg_tokens
    with pytest.raises(ValueError, match="not compatible with return_assistant_tokens_mask"):
        processor.apply_chat_template(conversations[0], return_assistant_tokens_mask=True, continue_final_message=True)


def test_label_candidates(tiny_e2llm):
    model, processor = tiny_e2llm
    candidates = processor.label_candidate_ids(model.config.label_names)
    assert len(candidates) == 7
    decoded = [processor.decode(c) for c in candidates]
    assert decoded == [f" {name}" for name in model.config.label_names]


def test_processor_save_reload(tiny_e2llm, tmp_path):
    _, processor = tiny_e2llm
    processor.save_pretrained(tmp_path)
    again = E2LLMProcessor.from_pretrained(tmp_path)
    assert again.num_eeg_tokens == processor.num_eeg_tokens and again.chat_template == CHAT_TEMPLATE
    assert again.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
    prompt = processor.apply_chat_template([_user()], add_generation_prompt=True)
    a = processor(text=prompt, eeg=_eeg(8), return_tensors="pt", **KW)
    b = again(text=prompt, eeg=_eeg(8), return_tensors="pt", **KW)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_processor_refuses_a_tokenizer_without_eeg_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from e2llm import E2LLMFeatureExtractor

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel()
    plain = PreTrainedTokenizerFast(tokenizer_object=backend)
    with pytest.raises(ValueError, match="no <\\|eeg\\|> token: call e2llm.add_eeg_tokens"):
        E2LLMProcessor(E2LLMFeatureExtractor(), plain)


def test_permuting_channels_with_their_names_leaves_the_output_unchanged(tiny_e2llm):
    """End to end (feature extractor -> encoder -> language model): the montage's order does not matter."""
    model, processor = tiny_e2llm
    names = ["Fp1", "Fp2", "F3", "F4", "Cz", "O1", "O2"]
    eeg = 20 * np.random.default_rng(3).standard_normal((7, 8 * 250))
    perm = [4, 0, 6, 2, 1, 5, 3]
    prompt = processor.apply_chat_template([_user()], add_generation_prompt=True)
    kw = {"sampling_rate": 250, "units": "uV", "return_tensors": "pt"}
    ordered = processor(text=prompt, eeg=eeg, channel_names=names, **kw)
    permuted = processor(text=prompt, eeg=eeg[perm], channel_names=[names[i] for i in perm], **kw)
    shuffled_names = processor(text=prompt, eeg=eeg[perm], channel_names=names, **kw)
    with torch.no_grad():
        reference = model(**ordered).logits
        torch.testing.assert_close(model(**permuted).logits, reference, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model(**shuffled_names).logits, reference, atol=1e-4)


# -- apply_chat_template is ProcessorMixin's (issue 12, item 5) ---------------------------------------------------


def test_apply_chat_template_is_processor_mixins(tiny_e2llm, monkeypatch):
    """The processor only checks that no conversation is empty (issue 27's still-open list), then hands every
    argument to `ProcessorMixin.apply_chat_template` unchanged."""
    from transformers.processing_utils import ProcessorMixin

    _, processor = tiny_e2llm
    calls, original = [], ProcessorMixin.apply_chat_template

    def spy(self, *args, **kwargs):
        calls.append((args, kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ProcessorMixin, "apply_chat_template", spy)
    conversation = [_user()]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tools=None)
    assert calls == [((conversation,), {"add_generation_prompt": True, "tools": None})]
    assert prompt == original(processor, conversation, add_generation_prompt=True)


def test_tokenize_true_returns_input_ids_and_return_dict_the_batch(tiny_e2llm):
    _, processor = tiny_e2llm
    conversation = [_user()]
    kwargs = {"add_generation_prompt": True, "processor_kwargs": {"eeg": _eeg(8), **KW}}
    ids = processor.apply_chat_template(conversation, tokenize=True, **kwargs)
    batch = processor.apply_chat_template(conversation, tokenize=True, return_dict=True, return_tensors="pt", **kwargs)
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    direct = processor(text=prompt, eeg=_eeg(8), return_tensors="pt", **KW)
    assert ids == direct["input_ids"].tolist()
    assert set(batch) == set(direct) == set(processor.model_input_names)
    assert all(torch.equal(batch[k], direct[k]) for k in direct)


def test_trl_sft_collator_call(tiny_e2llm):
    """The exact call of TRL 1.16's `DataCollatorForVisionLanguageModeling` (conversational case), with the EEG of the
    `{"type": "eeg"}` parts in `processor_kwargs` (the public route; the processor overrides no private hook of
    `ProcessorMixin` to read data out of content parts, and says so when a part carries it)."""
    model, processor = tiny_e2llm
    messages = [
        [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]},
         {"role": "assistant", "content": [{"type": "text", "text": "Emotion: fear"}]}],
        [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "And here?"}]},
         {"role": "assistant", "content": [{"type": "text", "text": "Reasoning: alpha is low.\nEmotion: sadness"}]}],
    ]
    processor_kwargs = {
        "padding": True, "padding_side": "right", "pad_to_multiple_of": None, "truncation": False, "max_length": None,
        "add_special_tokens": False, **KW,
    }
    output = processor.apply_chat_template(
        messages, chat_template=None, tokenize=True, return_dict=True, return_tensors="pt",
        return_assistant_tokens_mask=True, processor_kwargs={**processor_kwargs, "eeg": [_eeg(8), _eeg(4, 1)]},
    )
    assert output["input_ids"].shape == output["attention_mask"].shape == output["assistant_masks"].shape
    mask = output["attention_mask"]
    assert mask[:, 0].all() and not mask[:, -1].all()  # right padding, as TRL asked
    assert output["eeg_values"].shape[0] == 3
    assert (output["input_ids"] == processor.eeg_token_id).sum(-1).tolist() == [2 * processor.num_eeg_tokens,
                                                                                  processor.num_eeg_tokens]
    answers = [processor.decode(ids[m.bool()]) for ids, m in zip(output["input_ids"], output["assistant_masks"])]
    assert answers == ["Emotion: fear<|im_end|>", "Reasoning: alpha is low.\nEmotion: sadness<|im_end|>"]
    labels = output["input_ids"].masked_fill(output["assistant_masks"] == 0, -100)
    batch = {k: v for k, v in output.items() if k != "assistant_masks"}
    assert torch.isfinite(model(**batch, labels=labels).loss)
    in_parts = [[{"role": "user", "content": [{"type": "eeg", "eeg": _eeg(4)}, {"type": "text", "text": "?"}]}]]
    with pytest.raises(ValueError, match=r"no `eeg` was given: pass the recordings as eeg=.*processor_kwargs"):
        processor.apply_chat_template(in_parts, tokenize=True, processor_kwargs=KW)


def test_processor_imports_no_private_transformers_name():
    import ast
    import inspect

    from e2llm import processing_e2llm

    tree = ast.parse(inspect.getsource(processing_e2llm))
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("transformers") for alias in node.names]
    assert imported and not [name for name in imported if name.startswith("_")], imported
    assert "_multimodal_inputs_from_conversations" not in vars(E2LLMProcessor)


def test_typed_kwargs_are_validated_and_routed(tiny_e2llm):
    from e2llm.kwargs_e2llm import E2LLMProcessorKwargs

    _, processor = tiny_e2llm
    assert processor.valid_processor_kwargs is E2LLMProcessorKwargs
    prompt = processor.apply_chat_template([_user()], add_generation_prompt=True)
    nested = processor(text=prompt, eeg=_eeg(8), audio_kwargs={**KW, "line_freq": 60}, text_kwargs={"padding": False},
                       return_tensors="np", return_metadata=True)
    assert "notch 60 Hz" in nested["eeg_filter"][0] or "60 Hz removed" in nested["eeg_filter"][0]
    with pytest.raises(Exception, match="apply_filters"):  # a typed argument of the wrong type
        processor(text=prompt, eeg=_eeg(8), apply_filters="yes", **KW)


def test_continue_final_message_and_template_variables(tiny_e2llm):
    _, processor = tiny_e2llm
    partial = [_user(), {"role": "assistant", "content": "Reasoning: frontal alpha"}]
    text = processor.apply_chat_template(partial, continue_final_message=True)
    assert text.endswith("<|im_start|>assistant\nReasoning: frontal alpha")
    ids = processor.apply_chat_template(
        partial, continue_final_message=True, tokenize=True, processor_kwargs={"eeg": _eeg(4), **KW}
    )
    assert processor.decode(ids[0]).endswith("Reasoning: frontal alpha")
    with pytest.raises(ValueError, match="not compatible"):
        processor.apply_chat_template(partial, continue_final_message=True, add_generation_prompt=True)
    # extra variables, tools and documents reach the template
    template = ("{{ greeting }}|{% for t in tools %}{{ t['function']['name'] }}{% endfor %}|"
                "{% for d in documents %}{{ d['title'] }}{% endfor %}|{{ messages[0]['role'] }}")
    rendered = processor.apply_chat_template(
        [_user()], chat_template=template, greeting="hi", tools=[{"type": "function", "function": {"name": "band"}}],
        documents=[{"title": "SEED-VII", "text": "..."}],
    )
    assert rendered == "hi|band|SEED-VII|user"


def test_return_metadata_gives_window_starts(tiny_e2llm):
    model, processor = tiny_e2llm
    prompts = processor.apply_chat_template([[_user()], [_user("Again?")]], add_generation_prompt=True)
    out = processor(text=prompts, eeg=[_eeg(12.5), _eeg(4, 1)], return_tensors="pt", return_metadata=True, **KW)
    assert out["eeg_window_starts"].tolist() == [0.0, 4.0, 8.0, 0.0]
    assert out["eeg_num_windows"].tolist() == [3, 1]
    plain = processor(text=prompts, eeg=[_eeg(12.5), _eeg(4, 1)], return_tensors="pt", **KW)
    assert set(plain) == set(processor.model_input_names)
    assert model.generate(**plain, max_new_tokens=1, do_sample=False).shape[0] == 2


def test_processor_rejects_other_modalities(tiny_e2llm):
    _, processor = tiny_e2llm
    with pytest.raises(ValueError, match="images, videos and audio are not supported"):
        processor(text="hello", images=[np.zeros((4, 4, 3))])


def test_sanitize_control_tokens_keeps_typed_placeholders_as_text(tiny_e2llm):
    """A user who types `<|eeg|>` writes text: with `sanitize_control_tokens=True` it is neither a placeholder nor the
    placeholder's token id."""
    _, processor = tiny_e2llm
    conversation = [_user("Is <|eeg|> or <|im_end|> special here?")]
    out = processor.apply_chat_template(
        conversation, tokenize=True, return_dict=True, add_generation_prompt=True, sanitize_control_tokens=True,
        processor_kwargs={"eeg": _eeg(8), **KW},
    )
    assert sum(row.count(processor.eeg_token_id) for row in out["input_ids"]) == 2 * processor.num_eeg_tokens
    assert "Is <|eeg|> or <|im_end|> special here?" in processor.decode(out["input_ids"][0])
    with pytest.raises(ValueError, match="holds 2 <\\|eeg\\|> placeholders but 1 EEG recordings"):
        processor.apply_chat_template(
            conversation, tokenize=True, add_generation_prompt=True, processor_kwargs={"eeg": _eeg(8), **KW}
        )
