r"""recbole_fair.tokenizer.sharded
###############################

Text encoding shared by the ranks of a process group (a multi-GPU or multi-node run,
:mod:`recbole_fair.cli.launch`). Without a process group nothing here runs.

The semantic IDs are a chaotic function of the embeddings (a change of 2e-7 changes most items'
OPQ codes), and a text's embedding depends on the batch it is encoded in (the batch is padded to
its longest text). So the work is split by whole batches, and the result is bit for bit the
matrix of the one-process encode (on the same kind of device):

1. every rank tokenizes every ``world_size``-th text; the token lengths are all-gathered;
2. every rank forms the global list of token-length-sorted batches exactly as the one-process
   encode does (:func:`~recbole_fair.tokenizer.encoder.length_sorted_batches`) and encodes
   every ``world_size``-th batch (rank ``r``: batches ``r``, ``r + W``, ...);
3. the rows are all-gathered (tensors, :func:`recbole_fair.parallel.all_gather_rows`; nothing
   is pickled) and put back in item order on every rank.

The build then goes on as in one process, through :func:`recbole_fair.parallel.build_once`:
rank 0 fits the quantizer on the gathered embeddings and writes the caches once; the other
ranks wait, then load rank 0's cache file (``sid_cache_dir`` must be a directory every rank
reads: on several machines, a shared file system).
"""

from __future__ import annotations

import os
from logging import getLogger
from typing import Any, Callable, Sequence

import numpy as np
from recbole.utils import set_color

from recbole_fair.parallel import all_gather_rows, broadcast_flag, process_group
from recbole_fair.tokenizer.build import encoder_of_settings
from recbole_fair.tokenizer.cache import cache_file, embedding_cache_key
from recbole_fair.tokenizer.encoder import EncoderFn, assemble_batches, length_sorted_batches
from recbole_fair.tokenizer.settings import SemanticIDSettings


def can_shard(encoder: Any) -> bool:
    r"""Whether ``encoder`` exposes its batches: ``batch_size``, ``lengths(texts)`` and
    ``encode_batches(texts, batches)``, as :class:`~recbole_fair.tokenizer.encoder.SentenceEncoder`
    does (a plain function ``texts -> [n, d]`` is not split)."""
    return all(hasattr(encoder, name) for name in ("batch_size", "lengths", "encode_batches"))


def sharded_lengths(encoder: Any, texts: list[str]) -> np.ndarray:
    r"""``encoder.lengths(texts)``, every rank tokenizing every ``world_size``-th text.

    Returns:
        numpy.ndarray: int64 ``[n]``, the same on every rank.
    """
    rank, world_size = process_group()
    n = len(texts)
    share = texts[rank::world_size]
    mine = np.asarray(encoder.lengths(share) if share else [], dtype=np.int64)
    counts = [len(range(r, n, world_size)) for r in range(world_size)]
    lengths = np.empty(n, dtype=np.int64)
    for r, part in enumerate(all_gather_rows(mine.reshape(-1, 1), counts)):
        lengths[r::world_size] = part[:, 0]
    return lengths


def encode_sharded(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    r"""The embeddings of ``texts``, encoded by all ranks together (every rank calls it).

    Args:
        encoder: a batched encoder (:func:`can_shard`).
        texts: ``n`` strings, the same on every rank.

    Returns:
        numpy.ndarray: float32 ``[n, d]``, on every rank; equal bit for bit to ``encoder(texts)``
        in one process.
    """
    rank, world_size = process_group()
    texts = list(texts)
    batches = length_sorted_batches(sharded_lengths(encoder, texts), int(encoder.batch_size))
    mine = batches[rank::world_size]
    getLogger().info(
        set_color("encoding item texts", "green")
        + f": {len(texts)} texts in {len(batches)} batches over {world_size} ranks, "
        f"{len(mine)} batches on rank {rank}"
    )
    parts = encoder.encode_batches(texts, mine)
    local = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    shares = [batches[r::world_size] for r in range(world_size)]
    counts = [sum(len(batch) for batch in share) for share in shares]
    gathered = all_gather_rows(np.ascontiguousarray(local, dtype=np.float32), counts)
    return assemble_batches(
        len(texts),
        [np.concatenate(share) for share in shares if share],
        [rows for rows, share in zip(gathered, shares) if share],
    )


def fixed_encoder(embeddings: np.ndarray) -> EncoderFn:
    r"""An encoder function that returns ``embeddings`` (computed already) for the same texts."""

    def encoder_fn(texts: list[str]) -> np.ndarray:
        if len(texts) != len(embeddings):
            raise ValueError(
                f"These embeddings were computed for {len(embeddings)} texts, not {len(texts)}."
            )
        return embeddings

    return encoder_fn


def sharded_encoder_fn(
    texts: Sequence[str],
    settings: SemanticIDSettings,
    encoder_fn: EncoderFn | None = None,
    cache_files: Callable[[], Sequence[str | None]] | None = None,
) -> EncoderFn | None:
    r"""The encoder function a semantic-ID build should use under a process group: the texts
    encoded by all ranks together (:func:`encode_sharded`), when they must be encoded at all.
    Every rank calls it, before :func:`recbole_fair.parallel.build_once`.

    Args:
        texts: the item texts, the same on every rank.
        settings: the text and cache settings.
        encoder_fn: the build's encoder function; ``None`` = ``settings.text_encoder``.
        cache_files: returns the cache files of the build (the semantic-ID cache); called on
            rank 0 only: when rank 0 has one of them, or the embedding cache, nothing is
            encoded here.

    Returns:
        ``encoder_fn`` unchanged without a process group, with an encoder that cannot be split
        (:func:`can_shard`) or when rank 0 finds a cache file; else an encoder function that
        returns the embeddings encoded by all ranks.
    """
    rank, world_size = process_group()
    if world_size == 1:
        return encoder_fn
    encoder = encoder_fn or encoder_of_settings(settings)
    if not can_shard(encoder):
        return encoder_fn
    # rank 0 decides for all: every rank must take part in the collective encoding, or none
    if broadcast_flag(rank == 0 and _cached(texts, settings, cache_files)):
        return encoder_fn
    return fixed_encoder(encode_sharded(encoder, texts))


def _cached(
    texts: Sequence[str],
    settings: SemanticIDSettings,
    cache_files: Callable[[], Sequence[str | None]] | None,
) -> bool:
    r"""Whether the embedding cache file or one of ``cache_files()`` exists."""
    key = embedding_cache_key(texts, settings)
    files = [cache_file(settings.sid_cache_dir or None, "emb", key)]
    files += list(cache_files()) if cache_files else []
    return any(path and os.path.isfile(path) for path in files)


__all__ = [
    "can_shard",
    "encode_sharded",
    "fixed_encoder",
    "sharded_encoder_fn",
    "sharded_lengths",
]
