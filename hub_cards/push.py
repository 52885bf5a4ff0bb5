"""`e2llm push`: export a self-contained folder (model card included) and upload it to the Hugging Face Hub.

    e2llm push --model runs/stage3 --repo-id me/e2llm-qwen05b --report runs/eval/report.json --private
    e2llm push --model runs/stage3 --repo-id me/e2llm-qwen05b --dry-run --output-dir export/e2llm-qwen05b
    e2llm push --model runs/stage3-adapter --repo-id me/e2llm-lora --base-model me/e2llm-qwen05b

The token comes from the standard `huggingface_hub` places only (`hf auth login`, or the `HF_TOKEN` environment
variable); it is never a command-line argument. `--dry-run` writes the exact folder that would be uploaded and
uploads nothing.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.utils import HFValidationError, validate_repo_id

from e2llm.safe_output import MANIFEST_FILE, MARKER_FILE

from .export import export_folder
from .own_files import check_folder_tree

logger = logging.getLogger(__name__)


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    commit_message: str | None = None,
    api: HfApi | None = None,
) -> str:
    """Create `repo_id` (a model repo; kept if it exists) and upload `folder` as one commit; returns the commit URL.

    Only the folder's own files go up: a link out of the folder (other than into the Hugging Face cache's blob
    store), or anything that is not a plain file, is refused before anything is sent (`own_files.check_folder_tree`).
    """
    check_folder_tree(folder, what=f"the upload of {folder}")
    api = api if api is not None else HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        commit_message=commit_message or "Upload E2LLM (e2llm push)",
        ignore_patterns=[MARKER_FILE, MANIFEST_FILE],  # e2llm's own "written by e2llm" records stay local
    )
    return str(getattr(commit, "commit_url", commit))


def _training_configs(values: Sequence[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    stages = {}
    for value in values:
        stage, sep, path = value.partition("=")
        if not sep or not stage or not path:
            raise ValueError(
                f"--training-config takes STAGE=FILE (e.g. stage3=configs/stage3.yaml), got {value!r}"
            )
        stages[stage] = path
    return stages


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        help="a saved E2LLM folder (model + processor) or a PEFT LoRA adapter folder",
    )
    parser.add_argument("--repo-id", required=True, help="Hub repository, e.g. me/e2llm-qwen05b")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="only write the folder that would be uploaded (into --output-dir)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where to write the exported folder (required with --dry-run; default: a temporary one)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    parser.add_argument(
        "--report", type=Path, help="evaluation report.json (e2llm evaluate) for the card's results"
    )
    parser.add_argument(
        "--dataset",
        action="append",
        dest="datasets",
        metavar="NAME_OR_DIR",
        help="dataset trained on: a name or a prepared-dataset folder (repeatable)",
    )
    parser.add_argument(
        "--base-model", help="Hub id of the base: the Qwen checkpoint, or for an adapter its E2LLM"
    )
    parser.add_argument(
        "--training-config",
        action="append",
        metavar="STAGE=FILE",
        help="a stage's YAML config for the card's training recipe (repeatable)",
    )
    parser.add_argument("--license", help="licence id for the card, e.g. apache-2.0 (match the base model's)")
    parser.add_argument("--commit-message", help="commit message of the upload")


def run(args: argparse.Namespace) -> int:
    try:
        validate_repo_id(args.repo_id)
    except HFValidationError as error:
        raise ValueError(f"--repo-id {args.repo_id!r} is not a valid Hub repo id: {error}") from None
    if args.dry_run and args.output_dir is None:
        raise ValueError("--dry-run writes the folder it would upload: give it --output-dir")
    kwargs = dict(
        repo_id=args.repo_id,
        report=args.report,
        datasets=args.datasets,
        base_model=args.base_model,
        license=args.license,
        overwrite=args.overwrite,
    )
    training = _training_configs(args.training_config)
    if training is not None:
        kwargs["training"] = training
    with tempfile.TemporaryDirectory(prefix="e2llm-push-") as scratch:
        folder = export_folder(args.model, args.output_dir or Path(scratch) / "export", **kwargs)
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in (MARKER_FILE, MANIFEST_FILE))
        if args.dry_run:
            print(f"dry run: {len(files)} files written to {folder} (nothing uploaded): {', '.join(files)}")
            return 0
        url = push_folder(folder, args.repo_id, private=args.private, commit_message=args.commit_message)
    print(f"pushed {len(files)} files to https://huggingface.co/{args.repo_id}: {url}")
    return 0


__all__ = ["add_arguments", "push_folder", "run"]
