r"""recbole_fair.parallel
#####################

The process group of a multi-process (DDP) run, and :func:`build_once`: expensive per-dataset
artefacts (the semantic-ID cache: OPQ/RQ-VAE fit, and the text encoding unless the ranks shared
it out beforehand, :mod:`recbole_fair.tokenizer.sharded`) are built **once**, by rank 0, while
the other ranks wait at a barrier and then load rank 0's cache file. Without that every rank
would fit the quantiser at the same time (N times the work, N writers racing on one cache
file). Outside a process group (the usual single-process run)
:func:`build_once` simply calls the step.

:func:`default_threads` is the thread count of one process's faiss and text encoder.
:func:`broadcast_flag` and :func:`all_gather_rows` are the two collective steps of the text
encoding shared by all ranks (:mod:`recbole_fair.tokenizer.sharded`): tensors only, nothing is
pickled.

The launcher that starts such a run (``--nproc=N``) is :mod:`recbole_fair.cli.launch`. This module
imports nothing of recbole-fair: the data layer uses it.

The barrier in :func:`build_once` is subject to the process group's timeout (NCCL: 10 minutes by
default in torch). The shared text encoding comes before it; what rank 0 does alone (the
quantiser fit, the codes of every item, writing the cache) can take longer for a very large
catalogue on a slow machine: then build the cache first with a single-process run (any
``--epochs``; the cache is keyed by the texts and the tokenizer settings, not by the model), then
launch the multi-GPU run.
"""

from __future__ import annotations

import os
from logging import getLogger
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def default_threads() -> int:
    r"""Half the cores (at most 16), the threads of faiss and of the text encoder: faiss' OpenMP
    threads busy-wait, and on a machine shared with other work (or with a data loader) using
    every core makes k-means several times slower."""
    return max(1, min(16, (os.cpu_count() or 2) // 2))


def process_group() -> tuple[int, int]:
    r"""``(rank, world_size)`` of the default process group; ``(0, 1)`` when there is none."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def build_once(build: Callable[[], T], what: str = "semantic IDs") -> T:
    r"""Run ``build`` on rank 0 first; the other ranks wait, then run it themselves.

    ``build`` must be cached (its second call loads what the first wrote), so rank ``r > 0``
    gets rank 0's result from the cache instead of rebuilding it. If the cache cannot be written
    (read-only directory) the other ranks rebuild, which is slower but gives the same result:
    every build step of this package is seeded.

    Args:
        build: the cached build step.
        what: its name, for the log.

    Returns:
        whatever ``build`` returns.
    """
    import torch.distributed as dist

    rank, world_size = process_group()
    if world_size == 1:
        return build()
    logger = getLogger()
    if rank == 0:
        try:
            return build()
        finally:
            # also on failure: the other ranks must not hang (they then fail or rebuild)
            dist.barrier()
    logger.info(f"rank {rank}: waiting for rank 0 to build the {what}")
    dist.barrier()
    return build()


#: bytes a rank receives per round of :func:`all_gather_rows` (bounds its buffers: on GPUs the
#: gather runs in device memory)
GATHER_BYTES = 1 << 28


def _collective_device() -> Any:
    r"""The device of the tensors the process group's collectives take: the current CUDA
    device under NCCL, else the CPU (gloo)."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_flag(flag: bool) -> bool:
    r"""Rank 0's ``flag`` on every rank (``flag`` itself without a process group): a decision
    that every rank must take alike, e.g. whether all of them take part in a collective step."""
    import torch
    import torch.distributed as dist

    if process_group()[1] == 1:
        return bool(flag)
    value = torch.tensor([int(bool(flag))], dtype=torch.int64, device=_collective_device())
    dist.broadcast(value, src=0)
    return bool(value.item())


def all_gather_rows(
    local: np.ndarray, counts: Sequence[int], chunk_bytes: int | None = None
) -> list[np.ndarray]:
    r"""Every rank's rows, on every rank: a padded tensor ``all_gather`` in rounds of at most
    ``chunk_bytes`` received per rank (default :data:`GATHER_BYTES`). Nothing is pickled.

    Args:
        local: ``[counts[rank], width]`` rows of this rank (same dtype on every rank; a rank
            without rows may pass any ``[0, w]`` array of that dtype).
        counts: the rows of every rank, known to every rank.
        chunk_bytes: bytes received per round.

    Returns:
        list of numpy.ndarray: ``[counts[r], width]`` for every rank ``r`` (``[local]`` without
        a process group).
    """
    import torch
    import torch.distributed as dist

    rank, world_size = process_group()
    if world_size == 1:
        return [np.asarray(local)]
    device = _collective_device()
    width = torch.tensor([local.shape[1] if counts[rank] else 0], device=device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX)  # a rank without rows cannot know it
    width = int(width.item())
    dtype = torch.from_numpy(np.zeros(0, dtype=local.dtype)).dtype
    row_bytes = max(1, width * local.dtype.itemsize * world_size)
    rows = max(1, int(chunk_bytes or GATHER_BYTES) // row_bytes)
    out = [np.empty((count, width), dtype=local.dtype) for count in counts]
    for start in range(0, max(counts), rows):
        send = torch.zeros((rows, width), dtype=dtype, device=device)
        mine = np.ascontiguousarray(local[start : start + rows])
        if len(mine):
            send[: len(mine)] = torch.from_numpy(mine).to(device)
        received = [torch.empty_like(send) for _ in range(world_size)]
        dist.all_gather(received, send)
        for r, part in enumerate(received):
            take = min(rows, max(0, counts[r] - start))
            out[r][start : start + take] = part[:take].cpu().numpy()
    return out
