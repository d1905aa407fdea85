r"""recbole_fair.parallel
#####################

The process group of a multi-process (DDP) run, and :func:`build_once`: expensive per-dataset
artefacts (the semantic-ID cache: text encoding + OPQ/RQ-VAE) are built **once**, by rank 0,
while the other ranks wait at a barrier and then load rank 0's cache file. Without that every
rank would encode all item texts and fit the quantiser at the same time (N times the work, N
writers racing on one cache file). Outside a process group (the usual single-process run)
:func:`build_once` simply calls the step.

The launcher that starts such a run (``--nproc=N``) is :mod:`recbole_fair.cli.launch`. This module
imports nothing of recbole-fair: the data layer uses it.

The barrier in :func:`build_once` is subject to the process group's timeout (NCCL: 10 minutes by
default in torch). A cold semantic-ID build of a large catalogue on a slow machine can take longer:
build the cache first with a single-process run (any ``--epochs``; the cache is keyed by the
texts and the tokenizer settings, not by the model), then launch the multi-GPU run.
"""

from __future__ import annotations

from logging import getLogger
from typing import Callable, TypeVar

T = TypeVar("T")


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
