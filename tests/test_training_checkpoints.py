"""Killed (SIGKILL) in the middle of a checkpoint write or of the final save: resume takes the newest complete
checkpoint, says which it skipped, and the half-written stage folder is refused instead of loaded."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from e2llm.training.checkpoints import (
    INCOMPLETE_MARKER,
    check_complete,
    newest_complete_checkpoint,
    partial_checkpoints,
    resolve_resume,
)
from e2llm.training.cli_checks import check_model_reference, check_training_arguments

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments
    from e2llm.training.checkpoints import AtomicCheckpointMixin, resolve_resume, stage_finished, stage_started

    class AtomicTrainer(AtomicCheckpointMixin, Trainer):
        pass

    out, kill_at, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "resume"
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    model = Qwen2ForCausalLM(config)
    ids = torch.randint(0, 32, (48, 8), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(out, max_steps=12, save_steps=4, save_strategy="steps", save_total_limit=2,
                             per_device_train_batch_size=4, learning_rate=1e-3, report_to="none", use_cpu=True,
                             logging_steps=100, disable_tqdm=True)

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    if kill_at == "checkpoint-8":  # after the weights and an empty config.json, before the optimizer/state
        original = AtomicTrainer.save_model
        def save_model(self, output_dir=None, _internal_call=False):
            original(self, output_dir, _internal_call)
            if self.state.global_step == 8:
                Path(output_dir, "config.json").write_text("")
                kill()
        AtomicTrainer.save_model = save_model
    trainer = AtomicTrainer(model=model, args=args, train_dataset=data)
    stage_started(out, "stage output")
    trainer.train(resume_from_checkpoint=resolve_resume(out, True) if resume else None)
    if kill_at == "final":  # half of the final save: config.json written, no weights
        model.config.save_pretrained(out)
        kill()
    trainer.save_model(out)
    stage_finished(out)
    print("global_step", trainer.state.global_step)
    """
)


def _run(script, *argv):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    return subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, env=env, timeout=300)


def test_kill_during_checkpoint_and_final_save(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    killed = _run(script, str(out), "checkpoint-8", "fresh")
    assert killed.returncode == -9, killed.stderr[-2000:]
    # the half-written checkpoint never got its name: it is still in its hidden staging folder, marked
    staged = out / ".checkpoint-8.partial" / "checkpoint-8"
    assert not (out / "checkpoint-8").exists() and (out / "checkpoint-4" / "trainer_state.json").is_file()
    assert (staged / INCOMPLETE_MARKER).exists() and (staged / "config.json").stat().st_size == 0
    chosen, skipped = newest_complete_checkpoint(out)
    assert chosen.name == "checkpoint-4" and [p.name for p, _ in skipped] == [".checkpoint-8.partial"]
    with pytest.raises(ValueError, match="incomplete"):
        resolve_resume(out, str(staged))

    resumed = _run(script, str(out), "final", "resume")
    assert resumed.returncode == -9, resumed.stderr[-2000:]
    assert "resume: skipping .checkpoint-8.partial" in resumed.stdout and "resume: from checkpoint-4" in resumed.stdout
    assert partial_checkpoints(out) == []  # the leftover was cleared when step 8 was saved again
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-12", "checkpoint-8"]
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["global_step"] == 12  # training went on from step 4 to the end
    assert not (out / "checkpoint-12" / INCOMPLETE_MARKER).exists()
    # the final save was killed: the stage folder is marked and refused, with the way out in the message
    assert (out / INCOMPLETE_MARKER).exists()
    with pytest.raises(ValueError, match="incomplete.*resume"):
        check_model_reference(str(out))
    with pytest.raises(ValueError, match="incomplete"):
        check_complete(out)
    assert resolve_resume(out, True) == str(out / "checkpoint-12")  # a rerun resumes from the last complete one
    (out / "merged").mkdir()  # stage 3 writes merged/ inside its output folder: refused while that is marked
    (out / "merged" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="incomplete"):
        check_model_reference(str(out / "merged"))


def test_training_argument_ranges():
    from types import SimpleNamespace

    good = dict(max_steps=-1, num_train_epochs=3.0, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                learning_rate=1e-4, save_total_limit=None, output_dir="runs/x")
    check_training_arguments(SimpleNamespace(**good))
    check_training_arguments(SimpleNamespace(**{**good, "num_train_epochs": -1, "max_steps": 10}))
    for bad, message in (({"num_train_epochs": -1}, "num_train_epochs"), ({"num_train_epochs": 0}, "num_train_epochs"),
                         ({"per_device_train_batch_size": 0}, "batch_size"),
                         ({"learning_rate": float("nan")}, "learning_rate"), ({"save_total_limit": 0}, "save_total"),
                         ({"output_dir": __file__}, "existing file")):
        with pytest.raises((ValueError, FileExistsError), match=message):
            check_training_arguments(SimpleNamespace(**{**good, **bad}))


def test_best_checkpoint_is_named_by_its_final_path(tmp_path):
    """Checkpoint selection (on validation data) through the staged checkpoints: the best one is recorded, kept by
    rotation and loaded at the end under its final name, never its staging name."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments

    from e2llm.training.checkpoints import AtomicCheckpointMixin

    class AtomicTrainer(AtomicCheckpointMixin, Trainer):
        pass

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    ids = torch.randint(0, 32, (40, 8), generator=torch.Generator().manual_seed(0))
    rows = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(tmp_path / "run", max_steps=9, save_steps=3, eval_steps=3, eval_strategy="steps",
                             save_strategy="steps", save_total_limit=1, load_best_model_at_end=True,
                             metric_for_best_model="eval_loss", per_device_train_batch_size=4, learning_rate=1e-3,
                             report_to="none", use_cpu=True, disable_tqdm=True)
    trainer = AtomicTrainer(model=Qwen2ForCausalLM(config), args=args, train_dataset=rows[:32], eval_dataset=rows[32:])
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert ".partial" not in best and os.path.isdir(best), best
    saved = json.loads((tmp_path / "run" / os.path.basename(best) / "trainer_state.json").read_text())
    assert ".partial" not in str(saved["best_model_checkpoint"])
    assert partial_checkpoints(tmp_path / "run") == []
