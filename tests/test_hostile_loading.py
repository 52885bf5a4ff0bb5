"""Issue 27.4: strict model loading. Every damaged or mismatched folder ends in one error naming the file and the fix;
`strict=False` loads it anyway and says what was not loaded.

Rows: a tensor missing from `model.safetensors` was silently re-initialised at random (labels changed, rc 0); an
`id2label` with 1 label for a 7-way head gave "happiness 1.000" for every window; a tokenizer without `<|eeg|>` ended in
`IndexError: index out of range in self`; corrupt safetensors headers, shape mismatches and a disk full at the final
save ended in library tracebacks; a missing local model path gave "Repo id must be in the form...".
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from e2llm import E2LLMEEGConfig, E2LLMEEGForEmotionClassification, E2LLMForConditionalGeneration, E2LLMModel
from e2llm.assembly import TINY_EEG_CONFIG


@pytest.fixture
def folder(tiny_e2llm_dir, tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(tiny_e2llm_dir, copy)
    return copy


def _edit_weights(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": "pt"})


def _edit_json(path: Path, edit) -> None:
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def test_the_intact_folder_loads_bit_identically(tiny_e2llm, folder):
    model = E2LLMForConditionalGeneration.from_pretrained(folder)
    original = tiny_e2llm[0].state_dict()
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())
    assert model.loading_report == {"source": str(folder), "strict": True}


def test_a_missing_tensor_is_an_error_naming_it(folder):
    _edit_weights(folder, lambda state: state.pop("model.projector.linear_2.weight"))
    with pytest.raises(ValueError, match=r"weights of .*model cannot be used as they are: 1 tensor\(s\) the model needs are missing "
                                         r"\(they would be initialised at random\): model\.projector\.linear_2\.weight"
                                         r".*strict=False"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_strict_false_loads_and_reports(folder, caplog):
    _edit_weights(folder, lambda state: state.pop("model.projector.linear_2.weight"))
    with caplog.at_level("WARNING"):
        model = E2LLMForConditionalGeneration.from_pretrained(folder, strict=False)
    assert model.loading_report["missing"] == ["model.projector.linear_2.weight"]
    assert "loaded" in caplog.text and "partially (strict=False)" in caplog.text


def test_an_unexpected_tensor_is_an_error(folder):
    _edit_weights(folder, lambda state: state.update({"model.projector.linear_3.weight": torch.zeros(2, 2)}))
    with pytest.raises(ValueError, match=r"1 tensor\(s\) have no place in the model: model\.projector\.linear_3"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_a_shape_mismatch_is_an_error_naming_both_shapes(folder):
    def widen(state):
        state["model.projector.linear_1.bias"] = torch.zeros(65)

    _edit_weights(folder, widen)
    with pytest.raises(ValueError, match=r"another shape than config\.json implies: model\.projector\.linear_1\.bias: "
                                         r"\(65,\) in the file, \(64,\) in the model"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_loading_the_base_model_from_a_full_folder_is_fine(folder):
    model = E2LLMModel.from_pretrained(folder)  # lm_head has no place in the base model: expected, not an error
    assert model.loading_report["strict"] and "unexpected" not in model.loading_report


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), r"tensor .* lies at bytes"),
    (lambda path: path.write_bytes(struct.pack("<Q", 10**12) + path.read_bytes()[8:]), r"header claims 1000000000000"),
    (lambda path: path.write_bytes(path.read_bytes()[:8] + b"#" + path.read_bytes()[9:]), r"header is not valid JSON"),
    (lambda path: path.write_bytes(b"\x00" * 4), r"too short for a header"),
])
def test_damaged_safetensors_are_named(folder, damage, message):
    damage(folder / "model.safetensors")
    with pytest.raises(ValueError, match=rf"model\.safetensors (is damaged: |is not a safetensors file ).*{message}|"
                                         rf"model\.safetensors.*{message}"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_a_truncated_tokenizer_json_is_named_with_the_place(folder):
    path = folder / "tokenizer.json"
    path.write_text(path.read_text()[:5000])
    with pytest.raises(ValueError, match=r"tokenizer\.json is not valid JSON \(.* at line \d+, column \d+ of \d+ "
                                         r"lines\) \(it ends early: truncated\); restore the file"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_a_one_label_map_for_a_seven_way_model_is_refused(folder):
    _edit_json(folder / "config.json", lambda c: c.update(id2label={"0": "happiness"}, label2id={"happiness": 0}))
    with pytest.raises(ValueError, match=r"config\.json: id2label must list at least two distinct label names, got "
                                         r"\['happiness'\]"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_label_maps_that_disagree_are_refused(tmp_path):
    """With an emotion head in the encoder, the model's labels are the head's classes: the two maps must agree."""
    from e2llm import assemble_e2llm, build_offline_tokenizer
    from e2llm.assembly import TINY_TEXT_CONFIG

    model, _ = assemble_e2llm(build_offline_tokenizer(), text_config=TINY_TEXT_CONFIG,
                              eeg_config={**TINY_EEG_CONFIG, "emotion_token": True, "num_output_tokens": 5})
    model.save_pretrained(tmp_path / "model")

    def rename(config):
        config["id2label"] = {str(i): f"class{i}" for i in range(7)}

    _edit_json(tmp_path / "model" / "config.json", rename)
    with pytest.raises(ValueError, match=r"id2label \['class0', .*\] and eeg_config\.id2label \['happiness', .*\] "
                                         r"disagree"):
        E2LLMForConditionalGeneration.from_pretrained(tmp_path / "model")


def test_a_label_map_that_disagrees_with_the_emotion_head(tmp_path):
    config = E2LLMEEGConfig(**TINY_EEG_CONFIG, emotion_token=True, num_output_tokens=5)
    model = E2LLMEEGForEmotionClassification(config)
    model.save_pretrained(tmp_path / "stage1")
    three = {"0": "positive", "1": "neutral", "2": "negative"}
    _edit_json(tmp_path / "stage1" / "config.json", lambda c: c.update(id2label=three,
                                                                       label2id={v: int(k) for k, v in three.items()}))
    with pytest.raises(ValueError, match=r"id2label lists 3 label\(s\) .* but the emotion head in the weights has 7 "
                                         r"outputs"):
        E2LLMEEGForEmotionClassification.from_pretrained(tmp_path / "stage1")


def _tokenizer_without_eeg(folder: Path) -> None:
    path = folder / "tokenizer.json"
    content = json.loads(path.read_text())
    content["added_tokens"] = [t for t in content["added_tokens"] if "eeg" not in t["content"]]
    for name in ("<|eeg_start|>", "<|eeg|>", "<|eeg_end|>"):
        content["model"]["vocab"].pop(name, None)
    path.write_text(json.dumps(content))


def test_a_tokenizer_without_the_eeg_token_is_refused(folder):
    _tokenizer_without_eeg(folder)
    with pytest.raises(ValueError, match=r"tokenizer\.json has no <\|eeg\|> token, so no prompt can carry EEG: it is "
                                         r"not this model's tokenizer"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_a_tokenizer_of_another_model_is_refused(folder):
    _edit_json(folder / "config.json", lambda c: c.update(eeg_token_id=c["eeg_token_id"] + 1))
    with pytest.raises(ValueError, match=r"gives <\|eeg\|> the id \d+ but config\.json expects eeg_token_id=\d+"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_a_missing_local_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder at runs/stage3/merged .*not a Hub id"):
        E2LLMForConditionalGeneration.from_pretrained("runs/stage3/merged")
    with pytest.raises(FileNotFoundError, match="no model folder at"):
        E2LLMForConditionalGeneration.from_pretrained(tmp_path / "nothing")


def test_nan_in_a_saved_processor_setting_is_named(folder, tiny_e2llm_dir):
    path = folder / "processor_config.json"
    path.write_text(path.read_text().replace('"window_seconds": 4.0', '"window_seconds": NaN'))
    assert "NaN" in path.read_text()
    with pytest.raises(ValueError, match=r"processor_config\.json: feature_extractor\.window_seconds is nan"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_too_little_space_is_refused_before_writing(tiny_e2llm, tmp_path, monkeypatch):
    import shutil as shutil_module
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError, match=r"saving the model into .*out needs about \d\.\d MB but only 1\.0 kB are free "
                                      r"there; nothing was written"):
        tiny_e2llm[0].save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


_FULL_DISK_SAVE = textwrap.dedent("""
    import resource, signal, sys
    from e2llm import build_tiny_e2llm
    model, _ = build_tiny_e2llm()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # the weights are ~1 MB: the write fails midway
    try:
        model.save_pretrained(sys.argv[1])
    except OSError as error:
        print("ERROR", type(error).__name__, error)
""")


def test_a_disk_full_during_the_save_is_one_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-c", _FULL_DISK_SAVE, str(tmp_path / "out")], capture_output=True,
                            text=True, timeout=300)
    assert "ERROR DiskFullError no room left to write" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "the file-size limit is full" in result.stdout and "MB needed" in result.stdout
    assert "the saved folder is incomplete: do not load it" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_tokenizer_object_that_does_not_fit_the_model(tiny_e2llm):
    from e2llm import build_offline_tokenizer
    from e2llm.tokenization_e2llm import check_tokenizer_fits

    model, processor = tiny_e2llm
    check_tokenizer_fits(processor.tokenizer, model.config)
    with pytest.raises(ValueError, match=r"has no <\|eeg\|> token"):
        check_tokenizer_fits(build_offline_tokenizer(eeg_tokens=False), model.config)
    bigger = build_offline_tokenizer()
    bigger.add_tokens([f"<extra_{i}>" for i in range(model.config.text_config.vocab_size)])
    with pytest.raises(ValueError, match=r"token ids up to \d+ but the model's embeddings have \d+ rows"):
        check_tokenizer_fits(bigger, model.config)


def test_weights_holding_nan_are_refused(folder):
    def poison(state):
        state["model.projector.linear_1.weight"][0, 0] = float("nan")

    _edit_weights(folder, poison)
    with pytest.raises(ValueError, match=r"1 tensor\(s\) hold NaN or infinite values: model\.projector\.linear_1"):
        E2LLMForConditionalGeneration.from_pretrained(folder)
    model = E2LLMForConditionalGeneration.from_pretrained(folder, strict=False)
    assert model.loading_report == {"source": str(folder), "strict": False}  # not checked when not strict


def _safetensors_with_header(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_overlapping_tensors_in_a_safetensors_file_are_named(tmp_path):
    from e2llm.folder_checks_e2llm import safetensors_header

    path = tmp_path / "model.safetensors"
    entry = {"dtype": "F32", "shape": [2]}
    _safetensors_with_header(path, {"a": {**entry, "data_offsets": [0, 8]}, "b": {**entry, "data_offsets": [4, 12]}},
                             bytes(12))
    with pytest.raises(ValueError, match=r"tensor 'b' starts at byte 4 of the data, where the one before it ended at "
                                         r"8"):
        safetensors_header(path)
    _safetensors_with_header(path, {"a": {**entry, "data_offsets": [0, 8]}}, bytes(16))
    with pytest.raises(ValueError, match=r"its tensors take 8 bytes but the file holds 16"):
        safetensors_header(path)


def test_a_shard_index_pointing_outside_the_folder_is_refused(folder):
    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {name: "model-00001-of-00001.safetensors" for name in weights}}
    index["weight_map"]["model.projector.linear_1.weight"] = "../../outside.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"names weight shards outside the folder: \['\.\./\.\./outside"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_a_processor_of_another_model_is_refused(folder):
    _edit_json(folder / "processor_config.json", lambda c: c.update(num_eeg_tokens=c["num_eeg_tokens"] + 2))
    with pytest.raises(ValueError, match=r"processor_config\.json writes num_eeg_tokens=6 .* but config\.json's "
                                         r"encoder gives num_eeg_tokens=4"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_a_feature_extractor_with_another_window_is_refused(folder):
    _edit_json(folder / "processor_config.json", lambda c: c["feature_extractor"].update(window_seconds=2.0))
    with pytest.raises(ValueError, match=r"cuts windows of 2\.0 s x 200 Hz = 400 samples but the EEG encoder in "
                                         r"config\.json takes window_samples=800"):
        E2LLMForConditionalGeneration.from_pretrained(folder)


def test_the_finiteness_check_is_exact_where_a_half_precision_sum_overflows():
    from e2llm.model_folder_e2llm import non_finite_tensors

    layer = torch.nn.Linear(100, 100).half()
    with torch.no_grad():
        layer.weight.fill_(60000.0)  # finite, but its float16 sum overflows
    assert non_finite_tensors(layer) == []
    with torch.no_grad():
        layer.bias[7] = float("inf")
    assert non_finite_tensors(layer, chunk=16) == ["bias"]


def test_a_disk_full_at_the_final_save_through_the_cli(tmp_path):
    code = textwrap.dedent("""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        from e2llm.training.cli import main
        sys.exit(main(["init", "--tiny", "--output-dir", sys.argv[1]]))
    """)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "e2llm init: error: no room left to write" in result.stderr and "Traceback" not in result.stderr


def test_an_eeg_token_id_past_the_embeddings_is_refused(folder):
    (folder / "tokenizer.json").unlink()
    _edit_json(folder / "config.json", lambda c: c.update(eeg_token_id=10**6))
    with pytest.raises(ValueError, match=r"config\.json gives eeg_token_id=1000000, outside the \d+ rows"):
        E2LLMForConditionalGeneration.from_pretrained(folder)
