"""The language model of a merged E2LLM exported as a stock Qwen folder (what vLLM serves), and the EEG front end the
serving pipeline keeps: both must compute exactly what the E2LLM computes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from e2llm import build_offline_tokenizer
from e2llm.assembly import TINY_EEG_CONFIG, TINY_TEXT_CONFIG, assemble_e2llm
from e2llm.serving import export_language_model
from e2llm.serving.language_model_export import EXPORT_RECORD, copy_language_model, weight_files
from e2llm.serving.pipeline import load_front_end


def save(model, processor, folder):
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def untied_dir(tmp_path_factory):
    """A tiny E2LLM whose LM head is not tied to its embeddings (like Qwen3-8B's)."""
    torch.manual_seed(1)
    model, processor = assemble_e2llm(build_offline_tokenizer(), text_config={**TINY_TEXT_CONFIG,
                                                                              "tie_word_embeddings": False},
                                      eeg_config=TINY_EEG_CONFIG)
    return save(model.eval(), processor, tmp_path_factory.mktemp("untied"))


def language_model_logits(model, embeds):
    hidden = model.model.language_model(inputs_embeds=embeds).last_hidden_state
    return model.lm_head(hidden)


@pytest.mark.parametrize("source", ["tiny_e2llm_dir", "untied_dir"])
def test_exported_folder_is_the_same_language_model(source, request, tmp_path):
    from e2llm import E2LLMForConditionalGeneration

    folder = request.getfixturevalue(source)
    e2llm = E2LLMForConditionalGeneration.from_pretrained(folder).eval()
    exported = export_language_model(folder, tmp_path / "lm")
    stock = AutoModelForCausalLM.from_pretrained(exported).eval()
    assert type(stock).__name__ == "Qwen3ForCausalLM"
    assert stock.config.tie_word_embeddings == e2llm.config.tie_word_embeddings
    embeds = torch.randn(2, 9, e2llm.config.text_config.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(stock(inputs_embeds=embeds).logits, language_model_logits(e2llm, embeds),
                                   rtol=0, atol=0)
    tokenizer = AutoTokenizer.from_pretrained(exported)
    assert len(tokenizer) == stock.get_input_embeddings().num_embeddings == e2llm.config.text_config.vocab_size
    assert "auto_map" not in json.loads((exported / "tokenizer_config.json").read_text())
    assert json.loads((exported / "generation_config.json").read_text())["eos_token_id"] == tokenizer.eos_token_id


def test_export_shards_large_models_and_keeps_every_tensor(untied_dir, tmp_path):
    files = weight_files(untied_dir)
    names = copy_language_model(files, tmp_path, shard_bytes=64 * 1024)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert sorted(index["weight_map"]) == sorted(names)
    assert len(set(index["weight_map"].values())) > 1
    assert "lm_head.weight" in names and not any("eeg_encoder" in n or "projector" in n for n in names)
    assert not list(tmp_path.glob("partial-*"))


def test_export_is_reused_until_the_weights_change(tiny_e2llm_dir, tmp_path):
    exported = export_language_model(tiny_e2llm_dir, tmp_path / "lm")
    stamp = (exported / "model.safetensors").stat().st_mtime_ns
    assert export_language_model(tiny_e2llm_dir, tmp_path / "lm") == exported
    assert (exported / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((exported / EXPORT_RECORD).read_text())["source"] == str(tiny_e2llm_dir.resolve())


def test_export_refuses_what_it_cannot_serve_or_must_not_delete(tiny_e2llm_dir, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a language model exported by e2llm"):
        export_language_model(tiny_e2llm_dir, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="PEFT adapter: serve the merged model"):
        export_language_model(adapter, tmp_path / "out")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    with pytest.raises(ValueError, match="not an E2LLM folder"):
        export_language_model(other, tmp_path / "out")


def test_front_end_encodes_and_embeds_like_the_full_model(tiny_e2llm, tiny_e2llm_dir):
    model, processor = tiny_e2llm
    front = load_front_end(tiny_e2llm_dir)
    assert len(front.model.language_model.layers) == 0
    assert sum(p.numel() for p in front.parameters()) < sum(p.numel() for p in model.parameters())
    eeg = 20 * np.random.default_rng(0).standard_normal((3, 800))
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "eeg"}, {"type": "text",
                                                                                          "text": "Which emotion?"}]}],
                                           add_generation_prompt=True)
    inputs = processor(text=prompt, eeg=eeg, sampling_rate=200, channel_names=["Fz", "Cz", "Pz"], units="uV",
                       return_tensors="pt")
    eeg_inputs = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    with torch.no_grad():
        features = front.get_eeg_features(**eeg_inputs)
        torch.testing.assert_close(features, model.get_eeg_features(**eeg_inputs), rtol=0, atol=0)
        embeds, _ = front.model.embed_inputs(input_ids=inputs["input_ids"], eeg_features=features)
        expected, _ = model.model.embed_inputs(input_ids=inputs["input_ids"], eeg_features=features)
    torch.testing.assert_close(embeds, expected, rtol=0, atol=0)


@pytest.mark.parametrize("damage", ["nan_projector", "missing_embeddings", "foreign_tensor"])
def test_front_end_still_refuses_a_folder_strict_loading_refuses(tiny_e2llm_dir, tmp_path, damage):
    """Leaving the decoder layers unread is the front end's only exception to strict loading."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny_e2llm_dir, tmp_path / "damaged")
    tensors = load_file(folder / "model.safetensors")
    if damage == "nan_projector":
        name = next(k for k in tensors if k.startswith("model.projector.") and k.endswith("weight"))
        tensors[name] = torch.full_like(tensors[name], float("nan"))
    elif damage == "missing_embeddings":
        del tensors["model.language_model.embed_tokens.weight"]
    else:
        tensors["model.language_model.extra.weight"] = torch.zeros(2)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="cannot be used as they are"):
        load_front_end(folder)
