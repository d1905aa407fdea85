"""Multi-process training support: the semantic-ID cache is built once, by rank 0.

RecBole's DDP path itself needs CUDA GPUs (NCCL); these tests run the build-once logic in a
real two-process gloo group on CPU, and the launcher's GPU check.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ddp_worker import build_rank

from recbole_fair.cli.launch import check_gpus
from recbole_fair.parallel import build_once, process_group


def _spawn(tmp_path, fail_on_rank0: bool) -> None:
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=build_rank, args=(rank, 2, str(tmp_path), fail_on_rank0))
        for rank in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank hung in build_once"
    assert [p.exitcode for p in procs] == [0, 0]


def _encoder_calls(tmp_path, rank: int) -> int:
    return sum(1 for name in os.listdir(tmp_path) if name.startswith(f"encoder-rank{rank}-"))


def test_rank0_builds_the_cache_and_the_other_rank_loads_it(tmp_path):
    _spawn(tmp_path, fail_on_rank0=False)
    # the texts were encoded once, by rank 0; rank 1 waited and then hit rank 0's cache
    assert _encoder_calls(tmp_path, 0) == 1
    assert _encoder_calls(tmp_path, 1) == 0
    reports = [json.loads((tmp_path / f"report-rank{r}.json").read_text()) for r in range(2)]
    assert reports == [{"cache_hit": False}, {"cache_hit": True}]
    codes = [np.load(tmp_path / f"codes-rank{r}.npy") for r in range(2)]
    assert codes[0].shape == (80, 4)
    np.testing.assert_array_equal(codes[0], codes[1])


def test_a_failing_rank0_does_not_leave_the_others_waiting(tmp_path):
    _spawn(tmp_path, fail_on_rank0=True)
    # rank 0 raised (after releasing the barrier); rank 1 built on its own
    assert _encoder_calls(tmp_path, 0) == 0
    assert _encoder_calls(tmp_path, 1) == 1
    assert json.loads((tmp_path / "report-rank1.json").read_text()) == {"cache_hit": False}


def test_without_a_process_group_build_once_just_builds():
    calls = []
    assert process_group() == (0, 1)
    assert build_once(lambda: calls.append(1) or "built") == "built"
    assert calls == [1]


def test_more_processes_than_gpus_is_a_clear_error():
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=rf"--nproc={available + 1} needs .* CUDA GPUs, found"):
        check_gpus(available + 1)
    with pytest.raises(ValueError, match="at least 1"):
        check_gpus(0)
    with pytest.raises(ValueError, match="--world_size"):
        check_gpus(2, world_size=1)
