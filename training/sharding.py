"""Inference over many inputs on 1..N processes: under `accelerate launch` each process takes a contiguous shard of
the inputs, and the results come back to every process merged in input order.

    accelerate launch --num_processes 2 -m e2llm.training.cli predict a.edf b.edf c.edf --model runs/stage3

Without a launcher (one process) the inputs are simply run in order, so callers need no branch of their own.
"""

from __future__ import annotations

import atexit
import gc
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import gather_object

T = TypeVar("T")
R = TypeVar("R")


def _launched() -> bool:
    """Whether a launcher (torchrun / accelerate launch, or MPI for multi-CPU) started several processes."""
    return any(int(os.environ.get(name, "1")) > 1 for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))


def _state():
    # on a machine without CUDA, processes started by a launcher join a gloo group on CPU
    state = PartialState(cpu=not torch.cuda.is_available())
    leave_process_group_at_exit()
    return state


_exit_hook_registered = False


def leave_process_group_at_exit() -> None:
    """Register, once, the process group's teardown for interpreter exit: a gloo group left to the interpreter's
    finalisers aborts the process now and then ("terminate called without an active exception")."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_leave_group)
        _exit_hook_registered = True


def _leave_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def end_training(trainer) -> None:
    """`trainer.end()` (destroys the process group) after dropping the trainer's wrapped model first.

    A DDP wrapper's reducer holds a reference to the gloo process group. Left alive past `destroy_process_group`,
    the reducer holds the last one, and freeing the trainer then runs the group's destructor with the GIL held: it
    joins the group's worker threads while one of them waits for the GIL to release the tensors of the last
    collective, and the process never exits (seen on rank 1 under load, 1 launch in 2). Freed while the group is
    still registered, the reducer drops a reference that is not the last, and `destroy_process_group` frees the
    group without the GIL."""
    trainer.model_wrapped = trainer.model
    trainer.accelerator._models.clear()  # the prepared (wrapped) models
    gc.collect()
    trainer.end()


def process_count() -> int:
    """Processes taking part (1 without a launcher)."""
    return _state().num_processes if _launched() else 1


def process_index() -> int:
    """This process's rank (0 without a launcher)."""
    return _state().process_index if _launched() else 0


def is_main_process() -> bool:
    """Whether this process writes the outputs (the only one without a launcher)."""
    return _state().is_main_process if _launched() else True


def inference_device(requested: str | None = None) -> str | None:
    """`requested` when given; on several processes each one's own accelerator (`cuda:<local rank>`), else None
    (the caller's default)."""
    if requested is not None or not _launched():
        return requested
    device = _state().device
    return "cpu" if device.type == "cpu" else str(device)


def shard_bounds(n_items: int, n_shards: int, index: int) -> tuple[int, int]:
    """`[start, end)` of shard `index` of `n_items` split into `n_shards` contiguous shards, the first
    `n_items % n_shards` one item longer (the split `accelerate.PartialState.split_between_processes` makes)."""
    if n_shards < 1 or not 0 <= index < n_shards:
        raise ValueError(f"shard {index} of {n_shards} does not exist")
    size, extra = divmod(n_items, n_shards)
    start = index * size + min(index, extra)
    return start, start + size + (1 if index < extra else 0)


def sharded_map(run: Callable[[list[T]], list[R]], items: Sequence[T]) -> list[R]:
    """`run(items)`, computed as `run(shard)` on each process's shard; every process gets the whole result in input
    order. `run` must return one result per item (a process with an empty shard does not call it)."""
    items = list(items)
    if not _launched():
        return _checked(run(items), len(items))
    state = _state()
    start, end = shard_bounds(len(items), state.num_processes, state.process_index)
    local = _checked(run(items[start:end]), end - start) if end > start else []
    # one entry per process: gather_object concatenates the processes' lists in rank order
    merged = gather_object([local])
    results = [result for part in merged for result in part]
    return _checked(results, len(items))


def _checked(results: list, expected: int) -> list:
    results = list(results)
    if len(results) != expected:
        raise ValueError(f"the sharded function returned {len(results)} results for {expected} inputs")
    return results


__all__ = ["end_training", "inference_device", "is_main_process", "leave_process_group_at_exit", "process_count",
           "process_index", "shard_bounds", "sharded_map"]
