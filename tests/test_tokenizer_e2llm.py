"""The offline tokenizer, and EEG tokens added to a tokenizer that lacks them (as a real Qwen one does)."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from e2llm import EEG_TOKEN, add_eeg_tokens, assemble_e2llm, build_offline_tokenizer
from e2llm.assembly import TINY_TEXT_CONFIG
from e2llm.tokenization_e2llm import EEG_SPECIAL_TOKENS, QWEN_SPECIAL_TOKENS


def test_offline_tokenizer_round_trip(tmp_path):
    tokenizer = build_offline_tokenizer()
    text = "<|im_start|>user\n<|eeg_start|><|eeg|><|eeg|><|eeg_end|>Which emotion? ünïcode 😀<|im_end|>"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    for token in (*QWEN_SPECIAL_TOKENS, *EEG_SPECIAL_TOKENS):
        assert tokenizer.convert_ids_to_tokens(tokenizer(token)["input_ids"]) == [token]
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.eeg_token == EEG_TOKEN
    assert again.padding_side == "left" and again.pad_token == "<|endoftext|>" and again.eos_token == "<|im_end|>"
    assert again(text)["input_ids"] == ids
    assert again.get_vocab() == tokenizer.get_vocab()


def test_offline_tokenizer_is_deterministic():
    assert build_offline_tokenizer().get_vocab() == build_offline_tokenizer().get_vocab()


def test_add_eeg_tokens_to_a_tokenizer_without_them(tmp_path):
    tokenizer = build_offline_tokenizer(eeg_tokens=False)
    tokenizer.padding_side = "right"
    before = len(tokenizer)
    assert EEG_TOKEN not in tokenizer.get_vocab()
    eeg_id = add_eeg_tokens(tokenizer)
    assert len(tokenizer) == before + 3 and eeg_id == tokenizer.convert_tokens_to_ids(EEG_TOKEN)
    assert tokenizer.padding_side == "left"
    assert tokenizer.convert_ids_to_tokens(tokenizer("<|eeg_start|><|eeg|><|eeg_end|>")["input_ids"]) == list(
        EEG_SPECIAL_TOKENS
    )
    assert add_eeg_tokens(tokenizer) == eeg_id and len(tokenizer) == before + 3  # idempotent
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).convert_tokens_to_ids(EEG_TOKEN) == eeg_id


def test_assembling_from_a_pretrained_text_model_resizes_and_keeps_its_weights(tmp_path):
    """The `--text-model` path: a saved Qwen checkpoint whose tokenizer lacks the EEG tokens."""
    tokenizer = build_offline_tokenizer(eeg_tokens=False)
    config = AutoConfig.for_model(**{**TINY_TEXT_CONFIG, "model_type": "qwen2", "tie_word_embeddings": False},
                                  vocab_size=len(tokenizer))
    torch.manual_seed(0)
    text_model = AutoModelForCausalLM.from_config(config)
    text_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    text_model = AutoModelForCausalLM.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    n_old = len(tokenizer)

    model, processor = assemble_e2llm(tokenizer, text_model=text_model, id2label={0: "calm", 1: "tense"})
    assert model.config.text_config.model_type == "qwen2" and not model.config.tie_word_embeddings
    assert model.get_input_embeddings().num_embeddings == len(processor.tokenizer) == n_old + 3
    assert model.lm_head.weight.shape[0] == n_old + 3
    assert model.config.eeg_token_id == processor.tokenizer.convert_tokens_to_ids(EEG_TOKEN) >= n_old
    torch.testing.assert_close(model.get_input_embeddings().weight[:n_old], text_model.get_input_embeddings().weight)
    torch.testing.assert_close(model.lm_head.weight[:n_old], text_model.lm_head.weight)
    layer = "layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(
        model.model.language_model.state_dict()[layer], text_model.get_decoder().state_dict()[layer]
    )
    # Text without EEG gives the language model's own logits.
    ids = tokenizer("Emotion: fear", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model.eval()(input_ids=ids).logits
        torch.testing.assert_close(logits[..., :n_old], text_model.eval()(input_ids=ids).logits)
    assert model.config.label_names == ["calm", "tense"] and model.config.eeg_config.id2label == {0: "calm", 1: "tense"}
