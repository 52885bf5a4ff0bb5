"""Issue 27.7: every message names the file or option the user can act on, in the words of the interface in use, and
no user error ends in a traceback.

Rows: CLI messages named Python arguments ("pass baseline=", "units='V'"); a NaN window length gave "cannot convert
float NaN to integer"; a truncated tokenizer.json gave a JSON position without a file name; stage 2 resumed from a
stage-1 checkpoint gave an optimizer-group error; `--device cuda` without CUDA and malformed YAML ended in tracebacks;
a missing local model path gave "Repo id must be in the form..."; and the still-open list: `pipeline(prompt={...})`,
`extra_fields="x"` (AttributeError), `apply_chat_template([])` (IndexError), `notch_freqs=50` ("'int' object is not
iterable").
"""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

from e2llm.training.cli import main as cli
from e2llm.training.cli_errors import cli_message, cli_words, handle_error, user_error_text


def _parser(*options: tuple[str, dict]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2llm predict")
    for option, kwargs in options:
        parser.add_argument(option, **kwargs)
    return parser


PREDICT_LIKE = _parser(("--baseline", {}), ("--units", {}), ("--overwrite", {"action": "store_true"}),
                       ("--channel-map", {"nargs": "+"}), ("--notch", {"nargs": "*", "type": float}),
                       ("--no-filters", {"action": "store_true"}), ("--evidence-dir", {}))


@pytest.mark.parametrize("python, cli_text", [
    ("the recording is in volts: pass units='V'", "the recording is in volts: pass --units V"),
    ("pass baseline=<a recording at rest> to state band power", "pass --baseline <a recording at rest> to state band power"),
    ("exists; pass overwrite=True to replace it", "exists; pass --overwrite to replace it"),
    ("labels A1 are not 10-05 names: pass channel_map={'A1': 'Fp1', 'A2': 'Fp2'}",
     "labels A1 are not 10-05 names: pass --channel-map A1=Fp1 A2=Fp2"),
    ("line noise at 60 Hz: pass notch_freqs=[60.0]", "line noise at 60 Hz: pass --notch 60.0"),
    ("already filtered? pass apply_filters=False", "already filtered? pass --no-filters"),
    ("evidence_dir='/tmp/my maps' is inside the model folder", "--evidence-dir '/tmp/my maps' is inside the model folder"),
    ("sampling_rate=200 is not an option here, id2label={0: 'a'} neither", "sampling_rate=200 is not an option here, "
                                                                            "id2label={0: 'a'} neither"),
    ("see https://hf.co/x?units=V and a==b", "see https://hf.co/x?units=V and a==b"),
    ("pass baseline= (a recording at rest)", "pass --baseline (a recording at rest)"),
    ("or channel_map={\"old\": \"new\", ...} to rename them", "or --channel-map old=new ... to rename them"),
])
def test_python_words_become_the_command_line_s(python, cli_text):
    assert cli_words(python, PREDICT_LIKE) == cli_text


def test_train_fields_keep_their_names():
    message = cli_message(ValueError("learning_rate=-1 must be >= 0; per_device_train_batch_size=0 too"), None, "train")
    assert message == "--learning_rate -1 must be >= 0; --per_device_train_batch_size 0 too"


@pytest.mark.parametrize("error, expected", [
    (KeyError("x"), None),
    (TypeError("unsupported operand"), None),
    (OSError(28, "No space left on device"), "the disk is full"),
    (FileNotFoundError(2, "No such file or directory", "/data/x.edf"), "No such file or directory: '/data/x.edf'"),
    (AssertionError("Torch not compiled with CUDA enabled"), "no usable CUDA device"),
    (ModuleNotFoundError("No module named 'mne'", name="mne"), "pip install 'e2llm[train]'"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "lower --batch-size"),
])
def test_which_errors_are_the_user_s(error, expected):
    text = user_error_text(error)
    assert (text is None) if expected is None else expected in text


def test_an_invalid_configuration_is_the_user_s():
    from e2llm import E2LLMEEGConfig

    with pytest.raises(Exception) as caught:
        E2LLMEEGConfig(hidden_size=30, num_attention_heads=4)
    assert type(caught.value).__name__ == "StrictDataclassClassValidationError"
    assert user_error_text(caught.value) == ("invalid configuration: hidden_size=30 is not divisible by "
                                             "num_attention_heads=4")


def test_an_invalid_configuration_through_the_cli(tmp_path, capsys):
    eeg_config = tmp_path / "eeg.json"
    eeg_config.write_text(json.dumps({"hidden_size": 30, "num_attention_heads": 4}))
    assert cli(["init", "--tiny", "--eeg-config", str(eeg_config), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration: hidden_size=30 is not divisible by num_attention_heads=4" in err, err


def test_yaml_and_safetensors_errors_are_the_user_s():
    import yaml
    from safetensors import SafetensorError

    assert user_error_text(yaml.YAMLError("bad")).startswith("malformed YAML")
    assert "could not be read" in user_error_text(SafetensorError("Error while deserializing header"))


def test_the_hook_prints_one_line_or_keeps_the_traceback(capsys):
    parser = argparse.ArgumentParser(prog="e2llm")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("predict").add_argument("--units")
    assert handle_error(ValueError("pass units='V'"), parser, "predict") == 2
    assert capsys.readouterr().err == "e2llm predict: error: pass --units V (--debug shows the traceback)\n"
    with pytest.raises(KeyError):
        handle_error(KeyError("bug"), parser, "predict")
    with pytest.raises(ValueError):
        handle_error(ValueError("pass units='V'"), parser, "predict", debug=True)


def test_cuda_asked_where_there_is_none(tiny_e2llm_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = cli(["predict", str(tmp_path / "x.edf"), "--model", str(tiny_e2llm_dir), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and ("FILE: no such file" in err or "--device cuda: no CUDA device here" in err)
    (tmp_path / "x.edf").write_bytes(b"0")
    assert cli(["predict", str(tmp_path / "x.edf"), "--model", str(tiny_e2llm_dir), "--device", "cuda"]) == 2
    assert "--device cuda: no CUDA device here" in capsys.readouterr().err
    assert cli(["predict", str(tmp_path / "x.edf"), "--model", str(tiny_e2llm_dir), "--device", "gpu0"]) == 2
    assert "--device gpu0 is not a device torch knows" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("output_dir: runs/x\nlearning_rate: [1e-4\n", r"--config .*bad\.yaml is not valid YAML \(.* at line \d+, "
                                                  r"column \d+\); fix the file"),
    ("- a\n- b\n", r"must hold a mapping of fields \(name: value\), got a list"),
    ("window_seconds: .nan\n", r"window_seconds is nan; give a finite number"),
])
def test_malformed_yaml_is_named(tmp_path, capsys, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert cli(["train", "stage1", "--config", str(config)]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize("text, message", [
    ('{"hidden_size": 64,', r"--eeg-config: .*eeg\.json is not valid JSON \(.* at line 1, column \d+ of 1 lines\) "
                           r"\(it ends early: truncated\)"),
    ('{"hidden_size": NaN}', r"--eeg-config .*eeg\.json: hidden_size is nan; give a finite number"),
])
def test_a_damaged_json_option_file_is_named(tmp_path, capsys, text, message):
    import re

    (tmp_path / "eeg.json").write_text(text)
    assert cli(["init", "--tiny", "--eeg-config", str(tmp_path / "eeg.json"), "--output-dir", str(tmp_path / "o")]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_missing_local_model_path(tmp_path, capsys):
    assert cli(["train", "stage2", "--model_name_or_path", "runs/stage1/merged", "--tiny", "false"]) == 2
    err = capsys.readouterr().err
    assert "--model_name_or_path: local model folder not found: runs/stage1/merged" in err and "Repo id" not in err


def test_stage2_resumed_from_a_stage1_checkpoint(tmp_path, capsys):
    from e2llm import E2LLMEEGConfig, E2LLMEEGForEmotionClassification
    from e2llm.assembly import TINY_EEG_CONFIG

    checkpoint = tmp_path / "stage1" / "checkpoint-10"
    E2LLMEEGForEmotionClassification(E2LLMEEGConfig(**TINY_EEG_CONFIG)).save_pretrained(checkpoint)
    assert cli(["train", "stage2", "--tiny", "true", "--resume_from_checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "--resume_from_checkpoint" in err and "checkpoint of the EEG encoder (stage 1), not of stage2" in err
    assert "--encoder_name_or_path" in err and "optimizer" not in err
    # `true` picks the newest checkpoint in --output_dir: the same check
    assert cli(["train", "stage2", "--tiny", "true", "--output_dir", str(tmp_path / "stage1"),
                "--resume_from_checkpoint", "true"]) == 2
    assert "the newest checkpoint in" in capsys.readouterr().err


def test_a_truncated_tokenizer_json_through_the_cli(tiny_e2llm_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(tiny_e2llm_dir, folder)
    (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text()[:3000])
    (tmp_path / "x.edf").write_bytes(b"0")
    assert cli(["predict", str(tmp_path / "x.edf"), "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'tokenizer.json'} is not valid JSON" in err and "truncated" in err


def test_a_label_map_of_one_label_through_the_cli(tiny_e2llm_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(tiny_e2llm_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "happiness"}, {"happiness": 0}
    (folder / "config.json").write_text(json.dumps(config))
    (tmp_path / "x.edf").write_bytes(b"0")
    assert cli(["predict", str(tmp_path / "x.edf"), "--model", str(folder)]) == 2
    assert "id2label must list at least two distinct label names" in capsys.readouterr().err


# ------------------------------------------------------------------ rows whose fix lands in other helpers' files


def test_the_cli_speaks_in_flags(tmp_path, capsys):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    assert cli(["prepare", "synthetic", "--n-subjects", "1", "--output-dir", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite" in err and "overwrite=True" not in err


def test_pipeline_prompt_must_be_text(tiny_e2llm):
    from transformers import pipeline

    model, processor = tiny_e2llm
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    eeg = 20 * np.random.default_rng(0).standard_normal((3, 8 * 200))
    with pytest.raises(ValueError, match=r"prompt="):
        pipe(eeg, sampling_rate=200, channel_names=["Fz", "Cz", "Pz"], units="uV", prompt={"text": "Which emotion?"})


def test_parse_answer_extra_fields_must_be_a_mapping():
    from e2llm import parse_answer

    with pytest.raises(ValueError, match=r"extra_fields="):
        parse_answer("Emotion: fear", ["fear", "anger"], extra_fields="x")


def test_an_empty_conversation_is_refused(tiny_e2llm):
    _, processor = tiny_e2llm
    with pytest.raises(ValueError, match=r"conversation"):
        processor.apply_chat_template([])
    with pytest.raises(ValueError, match=r"conversation 1 of the batch is empty"):
        processor.apply_chat_template([[{"role": "user", "content": "hi"}], []])


def test_a_single_notch_frequency_in_the_feature_extractor():
    from e2llm import E2LLMFeatureExtractor

    assert list(E2LLMFeatureExtractor(notch_freqs=50).notch_freqs) == [50]


def test_a_single_notch_frequency_in_prepare():
    from e2llm.processing.prepare import prepare_dataset

    dataset = prepare_dataset("synthetic", None, notch_freqs=50, n_subjects=1, trial_seconds=8.0, progress=False)
    metadata = json.loads(dataset.info.description)
    assert metadata["preprocessing"]["params"]["notch_freqs"] in ([50.0], (50.0,), [50])


def test_a_nan_window_length_is_named():
    from e2llm import E2LLMFeatureExtractor

    with pytest.raises(ValueError, match=r"window_seconds"):
        E2LLMFeatureExtractor(window_seconds=float("nan"))
