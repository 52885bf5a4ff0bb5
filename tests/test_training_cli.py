"""`e2llm train` from YAML configs: every shipped config parses, overrides win, resuming equals an unbroken run,
and every ready backbone config works on a tiny model of the same architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from peft import get_peft_model
from safetensors.torch import load_file
from trl import get_peft_config

from e2llm.processing.dataset_io import save_prepared
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training.arguments import DEFAULT_LORA_TARGETS
from e2llm.training.language_models import CONFIG_DIR, QWEN_CHECKPOINTS, build_tiny_lookalike, ready_config
from e2llm.training.provenance import read_provenance
from e2llm.training.train import parse_stage_args, run_stage

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "O2"]
STAGE_CONFIGS = sorted([*CONFIG_DIR.glob("stage*.yaml"), *CONFIG_DIR.glob("quickstart/stage*.yaml")])
CPU_OVERRIDES = ["--bf16", "false", "--report_to", "none", "--use_cpu", "true"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    windows = synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=8, channel_names=CHANNELS)
    return save_prepared(windows, tmp_path_factory.mktemp("data") / "prepared")


@pytest.mark.parametrize("path", STAGE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_config_parses_and_overrides_win(path):
    stage = path.stem.split("_")[0]
    script_args, training_args, model_args = parse_stage_args(
        stage, ["--config", str(path), *CPU_OVERRIDES, "--output_dir", "elsewhere", "--seed", "7"])
    raw = yaml.safe_load(path.read_text())
    assert training_args.output_dir == "elsewhere" and training_args.seed == 7
    assert script_args.dataset_path == raw.get("dataset_path")
    assert training_args.learning_rate == pytest.approx(float(raw["learning_rate"]))
    assert model_args.model_name_or_path == raw.get("model_name_or_path")
    assert model_args.use_peft == raw.get("use_peft", False)


def test_stage3_configs_say_whether_they_use_lora():
    """TRL's `use_peft` defaults to false: every shipped stage-3 config says which it is."""
    for path in STAGE_CONFIGS:
        if path.stem.startswith("stage3"):
            assert "use_peft" in yaml.safe_load(path.read_text()), path


def test_unknown_config_field_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiny: true\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        parse_stage_args("stage1", ["--config", str(bad)])


def test_accelerate_configs_name_their_strategy():
    kinds = {p.stem: yaml.safe_load(p.read_text())["distributed_type"] for p in (CONFIG_DIR / "accelerate").glob("*.yaml")}
    assert kinds == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero3": "DEEPSPEED", "cpu_2proc": "MULTI_GPU"}
    zero3 = yaml.safe_load((CONFIG_DIR / "accelerate" / "deepspeed_zero3.yaml").read_text())
    assert zero3["deepspeed_config"]["zero_stage"] == 3


def _stage1(prepared, output_dir, *extra):
    argv = ["--config", str(CONFIG_DIR / "stage1_tiny.yaml"), "--dataset_path", str(prepared), "--output_dir",
            str(output_dir), "--max_steps", "4", "--save_steps", "2", "--save_strategy", "steps",
            "--save_total_limit", "3", "--eval_strategy", "no", "--per_device_train_batch_size", "4",
            "--disable_tqdm", "true", *extra]
    return run_stage("stage1", argv)


def test_stage1_resume_matches_an_unbroken_run(prepared, tmp_path):
    unbroken = _stage1(prepared, tmp_path / "a")
    assert (unbroken / "checkpoint-2").is_dir()
    resumed = _stage1(prepared, tmp_path / "b", "--resume_from_checkpoint", str(unbroken / "checkpoint-2"))
    expected, got = load_file(unbroken / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)
    again = _stage1(prepared, tmp_path / "c")  # the seed makes a fresh run repeat itself
    torch.testing.assert_close(load_file(again / "model.safetensors"), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(QWEN_CHECKPOINTS))
def test_language_model_config_on_a_tiny_lookalike(name):
    info = QWEN_CHECKPOINTS[name]
    for stage in ("stage2", "stage3"):
        text = ready_config(name, stage).read_text()
        assert name in yaml.safe_load(text)["output_dir"] and info["hub_id"] in text
    *_, model_args = parse_stage_args("stage3", ["--config", str(ready_config(name, "stage3")), *CPU_OVERRIDES])
    assert model_args.lora_target_modules == DEFAULT_LORA_TARGETS and model_args.use_peft
    model, _ = build_tiny_lookalike(info["model_type"], info["tie_word_embeddings"])
    assert model.config.text_config.model_type == info["model_type"]
    assert model.config.tie_word_embeddings == info["tie_word_embeddings"]
    peft_model = get_peft_model(model, get_peft_config(model_args))
    layers = model.config.text_config.num_hidden_layers
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_parameters() if ".lora_A." in n}
    assert len(adapted) == layers * 7  # q k v o gate up down in every decoder layer
    assert not any("eeg_encoder" in n for n in adapted)
    ids = torch.tensor([[1, 2, 3]])
    logits = peft_model(input_ids=ids).logits
    logits.sum().backward()
    assert all(p.grad is not None for n, p in peft_model.named_parameters() if "lora_B" in n)


def test_stage2_and_stage3_from_cli_on_tiny_qwen2(prepared, tmp_path):
    stage1 = _stage1(prepared, tmp_path / "stage1")
    common = ["--dataset_path", str(prepared), "--max_steps", "1", "--per_device_train_batch_size", "2",
              "--save_strategy", "no", "--disable_tqdm", "true"]
    stage2 = run_stage("stage2", ["--config", str(CONFIG_DIR / "stage2_tiny.yaml"), "--tiny_model_type", "qwen2",
                                  "--encoder_name_or_path", str(stage1), "--output_dir", str(tmp_path / "s2"), *common])
    stage3 = run_stage("stage3", ["--config", str(CONFIG_DIR / "stage3_tiny.yaml"), "--model_name_or_path",
                                  str(stage2), "--output_dir", str(tmp_path / "s3"), *common])
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(Path(stage3) / "merged")
    assert merged.config.text_config.model_type == "qwen2"
    assert (Path(stage3) / "adapter" / "adapter_config.json").is_file()
    # every stage recorded what it trained on; the merged model carries the chain stage1 -> stage2 -> stage3
    assert [r["stage"] for r in read_provenance(stage1)["stages"]] == ["stage1"]
    chain = read_provenance(Path(stage3) / "merged")["stages"]
    assert [r["stage"] for r in chain] == ["stage1", "stage2", "stage3"]
    assert chain[0]["validation_keys"] and not chain[2]["validation_keys"]  # stage1_tiny.yaml validates, stage3 not
    assert len({r["dataset"]["fingerprint"] for r in chain}) == 1
