"""`e2llm push`: the self-contained export (dry run), the upload with `HfApi` mocked, LoRA adapters, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open

from e2llm.hub_cards import push as push_module
from e2llm.hub_cards.export import PICKLE_SUFFIXES, check_remote_imports, export_model, is_pickle
from e2llm.modeling_e2llm import REMOTE_CODE_AUTO_MAP
from e2llm.training.cli import main as cli

REPO_ID = "me/e2llm-tiny"
NON_CODE_FILES = {
    "README.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
}


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def source(tiny_e2llm_dir, tmp_path_factory) -> Path:
    """A training output folder: the tiny model + processor, trainer leftovers, a local base-model path."""
    folder = tmp_path_factory.mktemp("push_source") / "stage3"
    shutil.copytree(tiny_e2llm_dir, folder)
    (folder / "training_args.bin").write_bytes(pickle.dumps({"lr": 1e-4}))
    torch.save({"step": 1}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(
        json.dumps({"log_history": [], "best_model_checkpoint": str(folder)})
    )
    (folder / "checkpoint-1").mkdir()
    (folder / "checkpoint-1" / "rng_state.pth").write_bytes(pickle.dumps([1, 2]))
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["_name_or_path"] = str(tmp_path_factory.getbasetemp() / "qwen-local-copy")
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="module")
def dry_run(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("push_dry_run") / "export"
    assert (
        cli(["push", "--model", str(source), "--repo-id", REPO_ID, "--dry-run", "--output-dir", str(out)])
        == 0
    )
    return out


def test_dry_run_writes_a_self_contained_folder(dry_run):
    from transformers.dynamic_module_utils import get_relative_import_files

    import e2llm

    names = {p.name for p in dry_run.iterdir()} - {".e2llm-output"}  # e2llm's marker, never uploaded
    assert {n for n in names if not n.endswith(".py")} == NON_CODE_FILES  # no trainer state, no checkpoints
    config = json.loads((dry_run / "config.json").read_text())
    assert config["auto_map"] == {**config["auto_map"], **REMOTE_CODE_AUTO_MAP}
    assert set(REMOTE_CODE_AUTO_MAP) <= set(config["auto_map"])
    pipeline = config["custom_pipelines"]["eeg-emotion"]
    assert pipeline["impl"] == "pipeline_e2llm.EEGEmotionPipeline" and pipeline["pt"] == [
        "AutoModelForCausalLM"
    ]
    package = Path(e2llm.__file__).parent
    modules = {ref.split(".")[0] for ref in REMOTE_CODE_AUTO_MAP.values()} | {"pipeline_e2llm"}
    for module in modules:  # every remote-code module and what it imports, identical to the installed code
        for needed in (
            package / f"{module}.py",
            *map(Path, get_relative_import_files(str(package / f"{module}.py"))),
        ):
            assert (dry_run / needed.name).read_bytes() == needed.read_bytes(), needed.name
    assert "_name_or_path" not in config["text_config"]  # the local base-model path is gone
    processor_config = json.loads((dry_run / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == REMOTE_CODE_AUTO_MAP["AutoProcessor"]
    card = ModelCard.load(dry_run / "README.md")
    assert card.data.pipeline_tag == "other" and card.data.library_name == "transformers"
    assert f'model_id = "{REPO_ID}"' in card.text


def test_export_holds_no_pickle(dry_run):
    for path in dry_run.rglob("*"):
        assert path.suffix not in PICKLE_SUFFIXES, path
        head = path.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and path.suffix != ".safetensors"), f"pickle header in {path}"
        assert head != b"PK", f"zip (torch.save) archive in {path}"
        assert not is_pickle(path)
    with safe_open(str(dry_run / "model.safetensors"), framework="pt") as weights:
        assert len(list(weights.keys())) > 10


def test_export_names_no_local_path(dry_run, tmp_path_factory, source):
    needles = {
        str(tmp_path_factory.getbasetemp()),
        str(source),
        "/work/",
        str(Path.home()) + "/",
        tempfile.gettempdir() + "/",
        os.getcwd(),
    }
    for path in dry_run.rglob("*"):
        if path.suffix == ".safetensors":
            continue
        text = path.read_text(encoding="utf-8")
        found = [needle for needle in needles if needle in text]
        assert not found, f"{path.name} names {found}"


class FakeHfApi:
    """Records what `e2llm push` asks of the Hub; snapshots the uploaded folder at upload time."""

    calls: list = []

    def __init__(self, *args, **kwargs):
        assert not args and not kwargs, "the token must come from the standard login/env, not from e2llm"

    def create_repo(self, repo_id, **kwargs):
        FakeHfApi.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        FakeHfApi.calls.append(
            ("upload_folder", kwargs["repo_id"], {**kwargs, "files": _hashes(Path(kwargs["folder_path"]))})
        )
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/0123abc"


def test_push_uploads_exactly_the_dry_run_folder(source, dry_run, monkeypatch, capsys):
    FakeHfApi.calls = []
    monkeypatch.setattr(push_module, "HfApi", FakeHfApi)
    assert cli(["push", "--model", str(source), "--repo-id", REPO_ID, "--private"]) == 0
    (create, repo, create_kwargs), (upload, upload_repo, upload_kwargs) = FakeHfApi.calls
    assert (create, repo, upload, upload_repo) == ("create_repo", REPO_ID, "upload_folder", REPO_ID)
    assert create_kwargs["private"] is True and create_kwargs["repo_type"] == "model"
    assert upload_kwargs["repo_type"] == "model" and upload_kwargs["ignore_patterns"] == [".e2llm-output", ".e2llm-files.json"]
    assert upload_kwargs["files"] == _hashes(dry_run)  # same files, same bytes
    assert "commit/0123abc" in capsys.readouterr().out
    assert not Path(upload_kwargs["folder_path"]).exists()  # the temporary export is cleaned up


def test_push_takes_no_token_argument(source):
    with pytest.raises(SystemExit):
        cli(["push", "--model", str(source), "--repo-id", REPO_ID, "--token", "hf_secret"])


def test_push_refusals(source, tiny_e2llm_dir, tmp_path, capsys):
    assert cli(["push", "--model", str(source), "--repo-id", REPO_ID, "--dry-run"]) == 2
    assert "e2llm push: error: --dry-run writes the folder it would upload: give it --output-dir" in capsys.readouterr().err
    argv = ["push", "--model", str(source), "--repo-id", "not a/valid//id", "--dry-run", "--output-dir", str(tmp_path)]
    assert cli(argv) == 2
    assert "not a valid Hub repo id" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a valid Hub repo id"):
        cli([*argv, "--debug"])
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "processor_config.json", "tokenizer.json"):
        shutil.copy(tiny_e2llm_dir / name, pickled / name)
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps({}))
    with pytest.raises(ValueError, match="no safetensors weights.*pytorch_model.bin"):
        export_model(pickled, tmp_path / "out1")
    no_processor = tmp_path / "no_processor"
    no_processor.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_e2llm_dir / name, no_processor / name)
    with pytest.raises(ValueError, match="lacks the processor files"):
        export_model(no_processor, tmp_path / "out2")
    with pytest.raises(ValueError, match="must not contain each other"):
        export_model(source, source / "export")
    with pytest.raises(ValueError, match="is or contains the input"):
        export_model(source, source.parent, overwrite=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_model(source, tmp_path / "busy")
    with pytest.raises(ValueError, match="not a saved model folder"):
        export_model(tmp_path / "busy", tmp_path / "out3")
    with pytest.raises(ValueError, match="not found"):  # fails half-way: nothing is left behind
        export_model(source, tmp_path / "out4", report=tmp_path / "missing.json")
    assert not (tmp_path / "out4").exists() and not list(tmp_path.glob(".out4*"))


def test_remote_code_import_check(tmp_path):
    (tmp_path / "ok.py").write_text(
        "import numpy\n\ndef f():\n    try:\n        import mne\n    except ImportError:\n        raise\n"
    )
    check_remote_imports(tmp_path)
    (tmp_path / "bad.py").write_text("def f():\n    import mne\n    return mne\n")
    with pytest.raises(ValueError, match=r"bad.py.*mne"):
        check_remote_imports(tmp_path)


def test_lora_adapter_is_pushed_on_its_own_with_a_card_naming_the_base(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    from e2llm import build_tiny_e2llm
    from e2llm.hub_cards.export import export_folder

    model, processor = build_tiny_e2llm(seed=0)
    lora = LoraConfig(
        r=2,
        lora_alpha=4,
        target_modules=r".*language_model\.layers\.\d+\.self_attn\.(q|v)_proj",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    with pytest.raises(ValueError, match="not a Hub repo id"):
        export_folder(adapter_dir, tmp_path / "refused")
    out = export_folder(adapter_dir, tmp_path / "export", base_model=REPO_ID, repo_id="me/e2llm-tiny-lora")
    assert {p.name for p in out.iterdir()} - {".e2llm-output"} == {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == REPO_ID
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == REPO_ID and card.data.library_name == "peft"
    assert card.data.to_dict()["base_model_relation"] == "adapter"
    assert 'PeftModel.from_pretrained(base, "me/e2llm-tiny-lora")' in card.text
    # the exported adapter reloads onto a fresh base and gives the same logits
    base, _ = build_tiny_e2llm(seed=0)
    reloaded = PeftModel.from_pretrained(base, out).eval()
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, peft_model.eval()(input_ids=ids).logits)


def test_card_inputs_recorded_at_training_and_given_on_the_command_line(tiny_e2llm_dir, tmp_path):
    from e2llm.hub_cards import write_model_card

    folder = tmp_path / "merged"
    shutil.copytree(tiny_e2llm_dir, folder)
    report = {"dataset": "seed_vii", "split": "trial", "metrics": {"accuracy": 0.5, "macro_f1": 0.4}}
    write_model_card(folder, report=report, training={"stage3": {"lora_r": 8}}, base_model="Qwen/Qwen3-0.6B")
    out = tmp_path / "export"
    assert (
        cli(["push", "--model", str(folder), "--repo-id", REPO_ID, "--dry-run", "--output-dir", str(out)])
        == 0
    )
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "Qwen/Qwen3-0.6B"  # recorded by write_model_card at training time
    assert card.data.eval_results[0].metric_value == 0.5 and "lora_r: 8" in card.text
    assert f'model_id = "{REPO_ID}"' in card.text  # re-rendered for the repo it is pushed to
    assert "e2llm_card_inputs.json" not in {p.name for p in out.iterdir()}
    # command-line inputs take precedence over the recorded ones
    report_path = tmp_path / "report.json"
    report_path.write_text(json.dumps({"dataset": "seed", "metrics": {"accuracy": 0.7}}))
    stage1 = tmp_path / "stage1.yaml"
    stage1.write_text("epochs: 3\n")
    assert (
        cli(
            [
                "push",
                "--model",
                str(folder),
                "--repo-id",
                REPO_ID,
                "--dry-run",
                "--output-dir",
                str(out),
                "--overwrite",
                "--report",
                str(report_path),
                "--dataset",
                "seed",
                "--base-model",
                "Qwen/Qwen2.5-0.5B",
                "--training-config",
                f"stage1={stage1}",
                "--license",
                "apache-2.0",
            ]
        )
        == 0
    )
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "Qwen/Qwen2.5-0.5B" and card.data.license == "apache-2.0"
    assert card.data.eval_results[0].metric_value == 0.7 and card.data.eval_results[0].dataset_name == "SEED"
    assert "epochs: 3" in card.text and "lora_r" not in card.text
    with pytest.raises(ValueError, match="STAGE=FILE"):
        cli(
            [
                "--debug",
                "push",
                "--model",
                str(folder),
                "--repo-id",
                REPO_ID,
                "--dry-run",
                "--output-dir",
                str(out),
                "--overwrite",
                "--training-config",
                "stage1",
            ]
        )


def test_export_scrubs_any_machines_absolute_paths(tiny_e2llm_dir, tmp_path):
    """Paths of another machine, in any key of any JSON file or in text, never ship; the export marks itself."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_e2llm_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["training_data"] = "/mnt/lab-nas/alice/SEED-VII/EEG_preprocessed"
    config["notes"] = ["fine-tuned from C:\\Users\\bob\\qwen on the lab cluster", "see https://hf.co/a/b"]
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["cache_dir"] = "/home/carol/.cache/tok"
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    out = export_model(folder, tmp_path / "export")
    exported = json.loads((out / "config.json").read_text())
    assert exported["training_data"] == "<local>/EEG_preprocessed"
    assert exported["notes"] == ["fine-tuned from <local>/qwen on the lab cluster", "see https://hf.co/a/b"]
    assert json.loads((out / "tokenizer_config.json").read_text())["cache_dir"] == "<local>/tok"
    for path in out.iterdir():
        if path.suffix != ".safetensors":
            text = path.read_text(encoding="utf-8")
            assert not any(s in text for s in ("/mnt/", "/home/carol", "Users\\\\bob", "Users\\bob")), path.name
    assert (out / ".e2llm-output").is_file()


def test_verify_export_refuses_a_path_it_could_not_scrub(tmp_path):
    from e2llm.hub_cards.export import verify_export

    (tmp_path / "notes.py").write_text('"""Trained with data in /srv/eeg/private/run3."""\n')
    with pytest.raises(ValueError, match="absolute local paths"):
        verify_export(tmp_path)


def test_export_overwrite_only_replaces_an_export(source, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="not written by e2llm"):
        export_model(source, user, overwrite=True)
    assert (user / "thesis.tex").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="never replaces a file"):
        export_model(source, tmp_path / "file", overwrite=True)
    out = export_model(source, tmp_path / "export")
    assert export_model(source, out, overwrite=True) == out
    with pytest.raises(ValueError, match="contain"):
        export_model(source, source.parent, overwrite=True)
