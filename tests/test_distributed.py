"""Multi-process training support: the item texts are encoded by all ranks together, the
semantic-ID cache is built once, by rank 0.

RecBole's DDP path itself needs CUDA GPUs (NCCL); these tests run the shared encoding and the
build-once logic in real two-process gloo groups on CPU, and the launcher's GPU check.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ddp_worker import (
    BatchSensitiveEncoder,
    build_rank,
    shard_rank,
    shard_settings,
    shard_texts,
)

from recbole_fair.cli.launch import check_gpus
from recbole_fair.parallel import (
    all_gather_rows,
    broadcast_flag,
    build_once,
    default_threads,
    process_group,
)
from recbole_fair.tokenizer import build_semantic_ids, sharded_encoder_fn
from recbole_fair.tokenizer.encoder import length_sorted_batches


def _spawn(tmp_path, last_arg, target=build_rank) -> None:
    """Run ``target(rank, 2, folder, last_arg)`` in two processes."""
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=target, args=(rank, 2, str(tmp_path), last_arg)) for rank in range(2)
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
    _spawn(tmp_path, False)  # rank 0 does not fail
    # the texts were encoded once, by rank 0; rank 1 waited and then hit rank 0's cache
    assert _encoder_calls(tmp_path, 0) == 1
    assert _encoder_calls(tmp_path, 1) == 0
    reports = [json.loads((tmp_path / f"report-rank{r}.json").read_text()) for r in range(2)]
    assert reports == [{"cache_hit": False}, {"cache_hit": True}]
    codes = [np.load(tmp_path / f"codes-rank{r}.npy") for r in range(2)]
    assert codes[0].shape == (80, 4)
    np.testing.assert_array_equal(codes[0], codes[1])


def test_a_failing_rank0_does_not_leave_the_others_waiting(tmp_path):
    _spawn(tmp_path, True)  # rank 0 fails
    # rank 0 raised (after releasing the barrier); rank 1 built on its own
    assert _encoder_calls(tmp_path, 0) == 0
    assert _encoder_calls(tmp_path, 1) == 1
    assert json.loads((tmp_path / "report-rank1.json").read_text()) == {"cache_hit": False}


def test_without_a_process_group_build_once_just_builds():
    calls = []
    assert process_group() == (0, 1)
    assert build_once(lambda: calls.append(1) or "built") == "built"
    assert calls == [1]


def _encoded_batches(folder, rank: int) -> list[list[int]]:
    names = sorted(n for n in os.listdir(folder) if n.startswith(f"batch-rank{rank}-"))
    return [np.load(os.path.join(folder, n)).tolist() for n in names]


def _saves(tmp_path, rank: int) -> list[str]:
    return sorted(
        n.split("-")[2] for n in os.listdir(tmp_path) if n.startswith(f"save-rank{rank}-")
    )


def test_sharded_encoding_gives_the_one_process_embeddings_and_codes(tmp_path):
    texts = shard_texts()
    mask = np.ones(len(texts), dtype=bool)
    single = build_semantic_ids(
        texts, mask, shard_settings(str(tmp_path / "single")), BatchSensitiveEncoder()
    )
    # the stand-in depends on the batches like the real encoder: other batches, other rows
    other = BatchSensitiveEncoder(batch_size=5)(texts)
    assert not np.array_equal(other, single.embeddings)

    run = tmp_path / "run"
    run.mkdir()
    _spawn(run, 2, target=shard_rank)  # two rounds: cold, then from the cache
    for rank in range(2):
        got = np.load(run / "round0" / f"rank{rank}.npz")
        # bit for bit the one-process matrix, and so the same codes
        assert got["embeddings"].tobytes() == single.embeddings.tobytes()
        np.testing.assert_array_equal(got["codes"], single.codes)
    hits = [json.loads((run / "round0" / f"rank{r}.json").read_text()) for r in range(2)]
    assert hits == [{"cache_hit": False}, {"cache_hit": True}]  # rank 1 loaded rank 0's file
    # every rank encoded every other whole batch of the one-process list, longest first
    lengths = BatchSensitiveEncoder().lengths(texts)
    batches = [b.tolist() for b in length_sorted_batches(lengths, 8)]
    assert len(batches) == 25 and len(batches[-1]) == 1
    assert _encoded_batches(run / "round0", 0) == batches[0::2]
    assert _encoded_batches(run / "round0", 1) == batches[1::2]
    # the caches were written once, by rank 0
    assert _saves(run, 0) == ["emb", "sid"] and _saves(run, 1) == []
    # the second round found rank 0's semantic-ID cache (its embedding cache deleted):
    # nothing encoded on any rank
    assert not _encoded_batches(run / "round1", 0) and not _encoded_batches(run / "round1", 1)
    for rank in range(2):
        again = np.load(run / "round1" / f"rank{rank}.npz")
        np.testing.assert_array_equal(again["codes"], single.codes)
        assert json.loads((run / "round1" / f"rank{rank}.json").read_text()) == {"cache_hit": True}


def test_without_a_process_group_nothing_is_shared(tmp_path):
    texts = shard_texts(20)
    settings = shard_settings(str(tmp_path))
    encoder = BatchSensitiveEncoder()
    # the build's encoder function is returned as it was, nothing is encoded
    assert sharded_encoder_fn(texts, settings, encoder) is encoder
    assert sharded_encoder_fn(texts, settings, None) is None
    assert os.listdir(tmp_path) == []
    assert broadcast_flag(True) is True and broadcast_flag(False) is False
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    (gathered,) = all_gather_rows(rows, [3])
    np.testing.assert_array_equal(gathered, rows)
    assert 1 <= default_threads() <= 16


def test_more_processes_than_gpus_is_a_clear_error():
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=rf"--nproc={available + 1} needs .* CUDA GPUs, found"):
        check_gpus(available + 1)
    with pytest.raises(ValueError, match="at least 1"):
        check_gpus(0)
    with pytest.raises(ValueError, match="--world_size"):
        check_gpus(2, world_size=1)
