"""Rank processes of tests/test_distributed.py (a module of its own so that ``spawn`` finds it)."""

from __future__ import annotations

import json
import os
import time

import numpy as np


def _join_group(folder: str, rank: int, world_size: int) -> None:
    r"""Join the two-process gloo group of ``folder`` (rendezvous through a file there)."""
    import torch.distributed as dist

    dist.init_process_group(
        "gloo",
        init_method="file://" + os.path.join(folder, "rendezvous"),
        rank=rank,
        world_size=world_size,
    )


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

    _join_group(folder, rank, world_size)
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


class BatchSensitiveEncoder:
    """A batched stand-in for the sentence encoder (``batch_size``, ``lengths``,
    ``encode_batches``, as :class:`recbole_fair.tokenizer.encoder.SentenceEncoder`): like the
    real one, a text's embedding depends on the batch it is encoded in (here on the batch's
    longest text), so only a split by whole batches reproduces the one-process matrix. It
    records each batch it encodes in ``folder``."""

    def __init__(self, batch_size: int = 8, folder: str | None = None, rank: int = 0):
        self.batch_size, self.folder, self.rank = batch_size, folder, rank

    def lengths(self, texts: list[str]) -> np.ndarray:
        return np.array([len(text.split()) + 2 for text in texts], dtype=np.int64)

    def encode_batches(self, texts: list[str], batches: list) -> list:
        parts = []
        for batch in batches:
            if self.folder:
                name = f"batch-rank{self.rank}-{time.time_ns()}.npy"
                np.save(os.path.join(self.folder, name), np.asarray(batch))
            rows = np.stack(
                [np.random.default_rng(len(texts[i]) * 7919 + i).normal(size=16) for i in batch]
            )
            rows[:, 0] += 0.01 * max(len(texts[i]) for i in batch)  # the batch's padding
            parts.append((rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32))
        return parts

    def __call__(self, texts: list[str]) -> np.ndarray:
        from recbole_fair.tokenizer.encoder import assemble_batches, length_sorted_batches

        batches = length_sorted_batches(self.lengths(texts), self.batch_size)
        return assemble_batches(len(texts), batches, self.encode_batches(texts, batches))


def shard_texts(n_items: int = 193) -> list[str]:
    """Item texts of many lengths (193: 25 batches of 8, the last of one text, so the two ranks
    encode 13 and 12 batches)."""
    return [""] + [
        " ".join(["word"] * (1 + (i * 37) % 23)) + f" item {i}" for i in range(1, n_items)
    ]


def shard_settings(cache_dir: str):
    from recbole_fair.tokenizer import SemanticIDSettings

    return SemanticIDSettings(
        n_codes=4,
        codebook_size=8,
        sid_opq_iterations=5,
        sid_cache_dir=cache_dir,
        show_progress=False,
    )


def _record_saves(folder: str, rank: int) -> None:
    """Record every cache file this rank writes (``save_npz_atomic``) in ``folder``."""
    from recbole_fair.tokenizer import cache

    save = cache.save_npz_atomic

    def recording(path, arrays):
        name = os.path.basename(path).split("-")[0]
        with open(os.path.join(folder, f"save-rank{rank}-{name}-{time.time_ns()}"), "w"):
            pass
        save(path, arrays)

    cache.save_npz_atomic = recording


def shard_rank(rank: int, world_size: int, folder: str, rounds: int) -> None:
    """Join a gloo group and build semantic IDs as the dataset does: the texts encoded by all
    ranks together (``sharded_encoder_fn``), then ``build_once``; ``rounds`` times. Before the
    second round rank 0 deletes the embedding cache: the semantic-ID cache alone must keep the
    ranks from encoding. Saves the embeddings, codes and cache hit of each round."""
    import torch.distributed as dist

    from recbole_fair import parallel
    from recbole_fair.tokenizer import build_semantic_ids, sharded_encoder_fn
    from recbole_fair.tokenizer.cache import cache_file, semantic_id_cache_key

    _join_group(folder, rank, world_size)
    try:
        parallel.GATHER_BYTES = 1024  # rounds of 8 rows of 16 floats from each of 2 ranks
        _record_saves(folder, rank)
        texts = shard_texts()
        mask = np.ones(len(texts), dtype=bool)
        mask[0] = False  # the padding item, as the dataset's training-item mask has it
        settings = shard_settings(os.path.join(folder, "cache"))
        sid_file = cache_file(
            settings.sid_cache_dir, "sid", semantic_id_cache_key(texts, mask, settings)
        )
        for step in range(rounds):
            if step == 1 and rank == 0:
                for name in os.listdir(settings.sid_cache_dir):
                    if name.startswith("emb-"):
                        os.remove(os.path.join(settings.sid_cache_dir, name))
            dist.barrier()
            os.makedirs(os.path.join(folder, f"round{step}"), exist_ok=True)
            encoder = BatchSensitiveEncoder(folder=os.path.join(folder, f"round{step}"), rank=rank)
            encoder_fn = sharded_encoder_fn(texts, settings, encoder, lambda: [sid_file])
            sids = parallel.build_once(
                lambda: build_semantic_ids(texts, mask, settings, encoder_fn)  # noqa: B023
            )
            out = os.path.join(folder, f"round{step}", f"rank{rank}")
            np.savez(out, embeddings=sids.embeddings, codes=sids.codes)
            with open(out + ".json", "w") as f:
                json.dump({"cache_hit": bool(sids.report["cache_hit"])}, f)
    finally:
        dist.destroy_process_group()
