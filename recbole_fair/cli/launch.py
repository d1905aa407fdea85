r"""recbole_fair.cli.launch
#######################

Multi-GPU training through RecBole's own DDP path (``recbole-fair run --nproc=N``, also
``python run_recbole_fair.py --nproc=N``). :func:`run_distributed` starts one process per GPU
(``torch.multiprocessing.spawn``); RecBole's Config then joins them into an NCCL process group
(``local_rank``, ``world_size``, ``ip``, ``port``, ``offset`` keys), RecBole's trainer wraps the
model in ``DistributedDataParallel`` and shards the training data, and rank 0 returns the result.
The semantic-ID cache is built once, by rank 0, while the other ranks wait
(:func:`recbole_fair.parallel.build_once`).

RecBole's DDP path is NCCL-only (GPUs): asking for more processes than visible GPUs is an error
that says so, before anything is spawned.
"""

from __future__ import annotations

import secrets
from typing import Any

import torch

from recbole_fair.errors import UserInputError
from recbole_fair.quick_start import run_recbole_fair


def check_gpus(nproc: int, world_size: int = -1) -> None:
    r"""Fail early, with what to do, when RecBole's NCCL-based DDP cannot run here.

    Raises:
        ValueError: ``nproc < 1``, or more processes than visible CUDA devices.
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1 (got {nproc}).")
    if world_size != -1 and world_size < nproc:
        raise ValueError(f"--world_size ({world_size}) must be at least --nproc ({nproc}).")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if nproc > available:
        raise ValueError(
            f"--nproc={nproc} needs {nproc} CUDA GPUs, found {available}: RecBole's distributed "
            f"training runs one process per GPU over NCCL. On CPU (or one GPU) leave --nproc out; "
            f"to choose GPUs set --gpu_id='0,1'."
        )


def _rank_main(rank: int, kwargs: dict[str, Any]) -> None:
    r"""One rank of :func:`run_distributed` (a module-level function, so that ``spawn`` can
    pickle it)."""
    config_dict = dict(kwargs.pop("config_dict") or {})
    config_dict["local_rank"] = rank
    run_recbole_fair(config_dict=config_dict, **kwargs)


def run_distributed(
    model: str | None = None,
    dataset: str | None = None,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    saved: bool = True,
    nproc: int = 1,
    world_size: int = -1,
    ip: str = "localhost",
    port: str | int = "5678",
    group_offset: int = 0,
) -> dict[str, Any] | None:
    r"""Train one model on ``nproc`` local GPUs (RecBole's DDP path); rank 0's result.

    ``world_size`` (default ``nproc``), ``ip``, ``port`` and ``group_offset`` (the rank of this
    machine's first process) are RecBole's multi-node settings, passed through unchanged.

    Returns:
        dict: the result of :func:`recbole_fair.quick_start.run_recbole_fair` on rank 0, or
        ``None`` when this machine does not host rank 0 (multi-node).
    """
    import torch.multiprocessing as mp

    check_gpus(nproc, world_size)
    world_size = nproc if world_size == -1 else world_size
    config_dict = dict(config_dict or {})
    config_dict.update(
        world_size=world_size, ip=ip, port=str(port), nproc=nproc, offset=group_offset
    )
    queue = mp.get_context("spawn").SimpleQueue()
    kwargs = {
        "model": model,
        "dataset": dataset,
        "config_file_list": config_file_list,
        "config_dict": config_dict,
        "saved": saved,
        "queue": queue,
    }
    # one checkpoint name for every rank, unique to this run (RecBole's is unique to the second)
    kwargs["run_id"] = secrets.token_hex(3)
    try:
        mp.spawn(_rank_main, args=(kwargs,), nprocs=nproc, join=True)
    except mp.ProcessRaisedException as err:
        raise user_error_of(err) from err
    return None if queue.empty() else queue.get()


def user_error_of(err: Exception) -> Exception:
    r"""A rank's error as the CLI should see it: a problem with the user's input raised in a
    rank (its last traceback line names a :class:`~recbole_fair.errors.UserInputError`) becomes
    one here, with its message alone; anything else stays ``err``."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    name, _, message = last.partition(": ")
    user_errors = ("UserInputError", "ConfigError", "DataError")
    if name.startswith("recbole_fair.errors.") and name.rsplit(".", 1)[-1] in user_errors:
        return UserInputError(message)
    return err
