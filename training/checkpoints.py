"""Crash-safe training output: checkpoints and stage folders that say whether they are complete.

A run killed while writing leaves a folder that looks complete (a 0-byte ``config.json``, no weights) unless
something marks it. Here every checkpoint and every stage output folder holds `INCOMPLETE_MARKER` while it is
being written; the marker is removed (one atomic unlink, after an fsync of the files) only when the last file is
in place. So:

- `AtomicCheckpointMixin` (put it before the Trainer class in a subclass's bases) writes each ``checkpoint-N`` into
  a hidden sibling and renames it into place when complete, and rotates old checkpoints only afterwards;
- `stage_started` / `stage_finished` mark a stage's output folder for the whole run (`e2llm train` calls them).
  That folder also holds the checkpoints a resume needs, so it is marked rather than renamed as a whole; its
  ``adapter``/``merged`` subfolders count as incomplete while it is marked. Prepared datasets and exports are
  written to a hidden sibling and renamed (`e2llm.safe_output.staged_dir`);
- `resolve_resume(output_dir, True)` picks the newest *complete* checkpoint and logs every newer one it skipped;
- `check_complete(folder)` refuses to load a marked (or visibly truncated) folder with a clear message.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from transformers.trainer_utils import rotate_checkpoints

from e2llm.provenance_e2llm import PROVENANCE_FILE, write_provenance
from e2llm.safe_output import is_e2llm_output

logger = logging.getLogger(__name__)

INCOMPLETE_MARKER = ".e2llm-incomplete"
PARTIAL_SUFFIX = ".partial"  # `.checkpoint-N.partial/`: a checkpoint being written, renamed into place when whole
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_STAGE_SUBFOLDERS = ("adapter", "merged")  # stage 3 writes these inside its (marked) output folder
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
            except OSError:  # e.g. a filesystem without fsync: nothing more to do
                pass


def mark_incomplete(folder, what: str = "checkpoint") -> None:
    """Write `INCOMPLETE_MARKER` into `folder` (created if needed) before anything else goes there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INCOMPLETE_MARKER).write_text(f"e2llm is writing this {what}; it is not complete\n")


def mark_complete(folder) -> None:
    """Flush `folder`'s files to disk, then remove its `INCOMPLETE_MARKER` (atomic)."""
    folder = Path(folder)
    _fsync_tree(folder)
    (folder / INCOMPLETE_MARKER).unlink(missing_ok=True)


stage_started = mark_incomplete


def written_by_a_stage(folder) -> bool:
    """Whether `folder` is a stage output folder e2llm wrote: marked incomplete (a stage running or stopped), or
    holding a stage's provenance at its top or in its ``adapter``/``merged`` subfolders (a finished stage), or
    e2llm's folder marker."""
    folder = Path(folder)
    return (is_e2llm_output(folder) or (folder / INCOMPLETE_MARKER).is_file()
            or any((folder / sub / PROVENANCE_FILE).is_file() for sub in ("", *_STAGE_SUBFOLDERS)))


def check_stage_output_dir(output_dir, option: str = "--output_dir") -> None:
    """ValueError when `output_dir` holds files but no stage of e2llm wrote it: a stage writes its weights,
    ``config.json`` and checkpoints there, over whatever has those names."""
    folder = Path(output_dir)
    if folder.is_dir() and any(folder.iterdir()) and not written_by_a_stage(folder):
        raise ValueError(f"{option} {folder} holds files no e2llm training stage wrote (no {PROVENANCE_FILE}, no "
                         f"{INCOMPLETE_MARKER} of an unfinished stage); a stage would write its weights, config.json "
                         "and checkpoints among them. Choose a new or empty folder")


def stage_finished(folder) -> None:
    """Mark a stage output folder complete (after its final save)."""
    mark_complete(folder)


def incomplete_reason(folder) -> str | None:
    """Why `folder` (a checkpoint or saved model) is not complete, or None when it looks complete."""
    folder = Path(folder)
    if (folder / INCOMPLETE_MARKER).exists() or (folder.name in _STAGE_SUBFOLDERS
                                                  and (folder.parent / INCOMPLETE_MARKER).exists()):
        return "it was being written when the run stopped"
    config = next((folder / n for n in ("config.json", "adapter_config.json") if (folder / n).exists()), None)
    if config is None:
        return "it holds no config.json"
    if config.stat().st_size == 0:
        return f"its {config.name} is empty"
    weights = [folder / n for n in _WEIGHTS if (folder / n).exists()] + sorted(folder.glob("model-*.safetensors"))
    if not weights:
        return "it holds no weights"
    if any(w.stat().st_size == 0 for w in weights):
        return "a weights file is empty"
    return None


def check_complete(folder, what: str = "model folder") -> None:
    """ValueError when `folder` is an incomplete save (see `incomplete_reason`)."""
    reason = incomplete_reason(folder)
    if reason == "it was being written when the run stopped":
        raise ValueError(f"{what} {folder} is incomplete: {reason}. Resume the run (--resume_from_checkpoint true) "
                         "or load one of its complete checkpoints")
    if reason is not None and reason.startswith(("its", "a weights")):
        raise ValueError(f"{what} {folder} is incomplete: {reason}. Save it again")


def checkpoints(output_dir) -> list[Path]:
    """``checkpoint-N`` folders of `output_dir`, newest (highest N) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def partial_checkpoints(output_dir) -> list[Path]:
    """Staging folders (``.checkpoint-N.partial``) a killed run left in `output_dir`."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir()
                  if p.is_dir() and p.name.startswith(".checkpoint-") and p.name.endswith(PARTIAL_SUFFIX))


def newest_complete_checkpoint(output_dir) -> tuple[Path | None, list[tuple[Path, str]]]:
    """`(checkpoint, skipped)`: the newest checkpoint with a trainer state that is complete, and the newer ones
    skipped with their reasons."""
    skipped = [(path, "killed while it was being written: never renamed into place") for path in partial_checkpoints(output_dir)]
    for path in checkpoints(output_dir):
        reason = incomplete_reason(path)
        if reason is None and not (path / "trainer_state.json").is_file():
            reason = "it holds no trainer_state.json"
        if reason is None:
            return path, skipped
        skipped.append((path, reason))
    return None, skipped


def resolve_resume(output_dir, resume):
    """What to pass as `Trainer.train(resume_from_checkpoint=...)`: True (or "true") becomes the newest complete
    checkpoint of `output_dir` (newer incomplete ones are skipped and logged); a path is checked; None, False,
    "false" or "" pass through as None."""
    if isinstance(resume, str) and resume.lower() in ("", "false", "true"):
        resume = resume.lower() == "true"
    if resume in (None, False):
        return None
    if resume is True:
        chosen, skipped = newest_complete_checkpoint(output_dir)
        for path, reason in skipped:
            logger.warning("skipping %s: %s", path.name, reason)
            print(f"resume: skipping {path.name} ({reason})", flush=True)
        if chosen is None:
            raise ValueError(f"--resume_from_checkpoint true: no complete checkpoint in {output_dir}"
                             + (f" ({len(skipped)} incomplete)" if skipped else "") + "; start without it")
        print(f"resume: from {chosen.name}", flush=True)
        return str(chosen)
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint: no such checkpoint folder: {path}")
    reason = incomplete_reason(path)
    if reason is not None:
        raise ValueError(f"--resume_from_checkpoint {path} is incomplete: {reason}; pass `true` to take the newest "
                         "complete checkpoint")
    return str(path)


class AtomicCheckpointMixin:
    """Mixin for a `transformers.Trainer` subclass (list it first): each ``checkpoint-N`` is written into a hidden
    sibling, ``.checkpoint-N.partial/checkpoint-N`` (marked incomplete as well), flushed to disk and renamed into
    place only when every process has written its files; older checkpoints are rotated out only afterwards. A kill
    at any moment leaves the previous checkpoints untouched and no ``checkpoint-N`` that is not whole.

    With `provenance_stages` set (the stage records of `e2llm.training.provenance`), every checkpoint carries them
    in ``e2llm_provenance.json``, so a resume can check it continues the same stage on the same data and split."""

    provenance_stages: list | None = None

    def _save_checkpoint(self, model, trial):
        run_dir = Path(self._get_output_dir(trial=trial))
        name = f"checkpoint-{self.state.global_step}"
        final, staging_root = run_dir / name, run_dir / f".{name}{PARTIAL_SUFFIX}"
        staged = staging_root / name
        main = self.args.should_save
        if main:
            if staging_root.exists():  # left by a run killed while saving this step
                shutil.rmtree(staging_root)
            mark_incomplete(staged)
        self.accelerator.wait_for_everyone()
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # rotate after the rename only
        self._get_output_dir = lambda trial=None: str(staging_root)  # every process writes into the staging folder
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # every process's files (e.g. its RNG state) are in
        if not main:
            return
        if self.state.best_model_checkpoint == str(staged):
            self.state.best_model_checkpoint = str(final)
            self.state.save_to_json(str(staged / "trainer_state.json"))
        if self.provenance_stages is not None:
            write_provenance(staged, self.provenance_stages)
        mark_complete(staged)
        _publish(staged, final)
        staging_root.rmdir()
        if limit is not None:
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)


def _publish(staged: Path, final: Path) -> None:
    """Rename the complete folder `staged` to `final` (retiring a folder already there, e.g. from an earlier run
    that was not resumed) and flush the rename to disk."""
    if final.exists():
        retired = final.parent / f".{final.name}.old"
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(final, retired)
        os.replace(staged, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staged, final)
    try:
        directory = os.open(final.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    except OSError:
        pass
    finally:
        os.close(directory)


__all__ = [
    "INCOMPLETE_MARKER",
    "PARTIAL_SUFFIX",
    "AtomicCheckpointMixin",
    "check_complete",
    "check_stage_output_dir",
    "checkpoints",
    "incomplete_reason",
    "mark_complete",
    "mark_incomplete",
    "newest_complete_checkpoint",
    "partial_checkpoints",
    "resolve_resume",
    "stage_finished",
    "stage_started",
    "written_by_a_stage",
]
