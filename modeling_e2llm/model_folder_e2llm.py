"""Saved E2LLM folders, read strictly and written safely: nothing is silently re-initialised, misread, mismatched or
half-written.

`from_pretrained` of every e2llm model class (`ModelFolderMixin`) checks a local folder before anything is built
(`e2llm.folder_checks_e2llm`: damaged JSON or safetensors files, label maps, tokenizer, processor). After loading, a
tensor the model needs that the weights lack (it would be random), a tensor of the weights the model has no place for,
a tensor of another shape, or one holding NaN or infinite values is an error naming the file and the fix.
`strict=False` loads such a folder anyway and reports what was not loaded (a warning, and `model.loading_report`).

`save_pretrained` (`ModelFolderMixin`) checks the free space of the target before writing anything and turns a full
disk (or quota, or file-size limit) met while writing into one clear error naming the folder, instead of a
safetensors or torch traceback.

Standard library at module level, plus `e2llm.safe_output` (this file travels as remote code with `modeling_e2llm.py`).
"""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path

from .folder_checks_e2llm import RESAVE, check_model_folder, local_folder
from .safe_output import DiskFullError, disk_full_error, size_text

logger = logging.getLogger(__name__)


def non_finite_tensors(model, chunk: int = 1 << 24) -> list[str]:
    """Names of the model's parameters and buffers holding NaN or infinite values.

    A tensor whose sum is finite holds none (one reduction at memory speed: ~25 ms per 100 M float32 values on a
    laptop-class CPU); only a tensor whose sum is not finite (a NaN or inf, or a half-precision sum that overflowed)
    is checked element by element, in chunks of `chunk` values, so the check never needs much extra memory."""
    found = []
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not tensor.is_floating_point() or tensor.device.type == "meta" or tensor.numel() == 0:
            continue
        flat = tensor.detach().reshape(-1)
        if bool(flat.sum().isfinite()):
            continue
        if not all(bool(flat[i:i + chunk].isfinite().all()) for i in range(0, flat.numel(), chunk)):
            found.append(name)
    return found


def loading_problems(info: dict, allowed_mismatch: bool) -> dict[str, list]:
    """The keys from `from_pretrained(..., output_loading_info=True)` that strict loading refuses."""
    problems = {"missing": sorted(info.get("missing_keys") or []),
                "unexpected": sorted(info.get("unexpected_keys") or [])}
    if not allowed_mismatch:
        problems["mismatched"] = sorted(f"{k}: {tuple(a)} in the file, {tuple(b)} in the model"
                                        for k, a, b in info.get("mismatched_keys") or [])
    return {k: v for k, v in problems.items() if v}


def describe_problems(problems: dict[str, list], source: str) -> str:
    parts = []
    if problems.get("missing"):
        parts.append(f"{len(problems['missing'])} tensor(s) the model needs are missing (they would be initialised "
                     f"at random): {_some(problems['missing'])}")
    if problems.get("unexpected"):
        parts.append(f"{len(problems['unexpected'])} tensor(s) have no place in the model: "
                     f"{_some(problems['unexpected'])}")
    if problems.get("mismatched"):
        parts.append(f"{len(problems['mismatched'])} tensor(s) have another shape than config.json implies: "
                     f"{_some(problems['mismatched'])}")
    if problems.get("non_finite"):
        parts.append(f"{len(problems['non_finite'])} tensor(s) hold NaN or infinite values: "
                     f"{_some(problems['non_finite'])}")
    return f"the weights of {source} cannot be used as they are: " + "; ".join(parts)


def _some(items: list, n: int = 6) -> str:
    return ", ".join(map(str, items[:n])) + (f" and {len(items) - n} more" if len(items) > n else "")


# What a full disk looks like in the errors of the writers save_pretrained uses (safetensors' Rust I/O error, torch's
# zip writer, Python's OSError): "No space left on device" (ENOSPC 28), "Disk quota exceeded" (EDQUOT 122), "File too
# large" (EFBIG 27).
_DISK_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "file too large", "storagefull",
                    "code: 28", "code: 27", "code: 122")


def is_disk_full(error: BaseException) -> bool:
    """Whether `error`, raised while writing, says the disk (or quota, or file-size limit) is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    text = str(error).lower()
    return any(marker in text for marker in _DISK_FULL_TEXTS)


def weights_bytes(model, state_dict: dict | None = None) -> int:
    """Bytes the weights take on disk (shared tensors counted once): of `state_dict` when given (what
    `save_pretrained` writes), else of the model's parameters and buffers, read without calling `state_dict()`
    (whose hooks gather sharded weights across processes under FSDP)."""
    tensors = list(state_dict.values()) if state_dict is not None else [*model.parameters(), *model.buffers()]
    seen, total = set(), 0
    for tensor in tensors:
        if not hasattr(tensor, "numel"):
            continue
        key = (tensor.data_ptr(), tensor.numel()) if tensor.device.type != "meta" else id(tensor)
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def check_free_space(folder, needed: int) -> None:
    """OSError (ENOSPC) naming `folder` when its file system has less than `needed` bytes free (weights already in
    the folder, which a save replaces, count as free)."""
    folder = Path(folder)
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is None:
        return
    replaced = sum(p.stat().st_size for p in folder.glob("model*.safetensors")) if folder.is_dir() else 0
    free = shutil.disk_usage(existing).free + replaced
    if free < needed:
        raise DiskFullError(errno.ENOSPC, f"saving the model into {folder} needs about {size_text(needed)} but only "
                                          f"{size_text(free)} are free there; nothing was written. Free some space or "
                                          "choose another folder")


class ModelFolderMixin:
    """`from_pretrained` that refuses a folder whose weights do not fit, and `save_pretrained` that refuses to start
    on a disk without room and names a full disk met while writing (see the module docstring); put it first in the
    bases of a `PreTrainedModel` subclass. `strict=False` loads anyway and reports in `loading_report`."""

    loading_report: dict | None = None

    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs):
        needed = 0
        if is_main_process:
            needed = weights_bytes(self, kwargs.get("state_dict")) + (1 << 20)  # weights + configs, tokenizer
            check_free_space(save_directory, needed)
        try:
            return super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        except Exception as error:
            if is_disk_full(error):
                cause = error if isinstance(error, OSError) else OSError(errno.ENOSPC, str(error))
                raise disk_full_error(cause, Path(save_directory), needed,
                                      "the saved folder is incomplete: do not load it") from error
            raise

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, strict: bool = True, **kwargs):
        folder = local_folder(pretrained_model_name_or_path, kwargs.get("subfolder", "") or "")
        if folder is not None and strict:
            check_model_folder(folder, getattr(getattr(cls, "config_class", None), "model_type", None))
        wants_info = kwargs.pop("output_loading_info", False)
        allowed_mismatch = bool(kwargs.get("ignore_mismatched_sizes", False))
        kwargs["ignore_mismatched_sizes"] = True  # mismatches are collected and judged below
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, output_loading_info=True,
                                              **kwargs)
        problems = loading_problems(info, allowed_mismatch)
        if strict:
            random = set(problems.get("missing", []))  # re-initialised: finite, and already reported
            problems.update({"non_finite": [n for n in non_finite_tensors(model) if n not in random]})
            problems = {k: v for k, v in problems.items() if v}
        source = str(folder) if folder is not None else str(pretrained_model_name_or_path)
        if problems and strict:
            raise ValueError(describe_problems(problems, source) + ". The weights are incomplete or belong to another "
                             f"configuration; {RESAVE}. Pass strict=False to load them anyway (what is missing stays "
                             "random; reported in model.loading_report)")
        if problems:
            logger.warning("loaded %s partially (strict=False): %s", source, describe_problems(problems, source))
        model.loading_report = {"source": source, "strict": strict, **problems}
        return (model, info) if wants_info else model


__all__ = ["ModelFolderMixin", "check_free_space", "describe_problems", "is_disk_full", "loading_problems",
           "non_finite_tensors", "weights_bytes"]
