"""Rank processes of tests/test_distributed.py (a module of its own so that ``spawn`` finds it)."""

from __future__ import annotations

import json
import os
import time

import numpy as np


def fake_encoder(rank: int, folder: str, slow: float):
    """A deterministic text encoder that records each call in ``folder``."""

    def encode(texts: list[str]) -> np.ndarray:
        with open(os.path.join(folder, f"encoder-rank{rank}-{time.time_ns()}"), "w") as f:
            f.write(str(len(texts)))
        time.sleep(slow)  # rank 1 must still be waiting when rank 0 writes the cache
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for i in range(len(texts)):
            rng = np.random.default_rng(i)
            out[i] = rng.normal(size=16)
        return out

    return encode


def build_rank(rank: int, world_size: int, folder: str, fail_on_rank0: bool) -> None:
    """Join a gloo group, build semantic IDs through ``build_once``, save what came back."""
    import torch.distributed as dist

    from recbole_fair.parallel import build_once, process_group
    from recbole_fair.tokenizer import SemanticIDSettings, build_semantic_ids

    dist.init_process_group(
        "gloo",
        init_method="file://" + os.path.join(folder, "rendezvous"),
        rank=rank,
        world_size=world_size,
    )
    try:
        assert process_group() == (rank, world_size)
        n_items = 80
        texts = [""] + [f"item {i} text" for i in range(1, n_items)]
        mask = np.ones(n_items, dtype=bool)
        settings = SemanticIDSettings(
            n_codes=4,
            codebook_size=8,
            sid_opq_iterations=5,
            sid_cache_dir=os.path.join(folder, "cache"),
            show_progress=False,
        )

        def build():
            if rank == 0 and fail_on_rank0:
                raise RuntimeError("rank 0 failed on purpose")
            return build_semantic_ids(texts, mask, settings, fake_encoder(rank, folder, 1.0))

        try:
            sids = build_once(build)
        except RuntimeError:
            return
        np.save(os.path.join(folder, f"codes-rank{rank}.npy"), sids.codes)
        with open(os.path.join(folder, f"report-rank{rank}.json"), "w") as f:
            json.dump({"cache_hit": bool(sids.report.get("cache_hit"))}, f)
    finally:
        dist.destroy_process_group()
