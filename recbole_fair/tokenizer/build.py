r"""recbole_fair.tokenizer.build
#############################

The semantic IDs of every item, from the cache when a valid one exists, else built: item texts
-> sentence embeddings (cached on their own, shared by every quantiser) -> quantiser fitted on
the training-split items -> the codes of all items -> quality report -> cache.

* :func:`build_semantic_ids`: FAIR's and RPG's IDs, OPQ/PQ codes (the paper) or random codes
  (``sid_method``, ``sid_random_digits``).
* :func:`build_rqvae_semantic_ids`: TIGER's IDs, RQ-VAE codes plus a collision digit.

Both are deterministic given their inputs and cached, so under DDP the dataset calls them through
``build_once`` (:meth:`recbole_fair.data.dataset.SemanticIDDataset.build`): rank 0 builds the
cache while the other ranks wait, then they load it.
"""

from __future__ import annotations

import dataclasses
import time
from logging import getLogger
from typing import Callable, Sequence

import numpy as np
from recbole.utils import set_color

from recbole_fair.tokenizer.cache import (
    SemanticIDs,
    cache_file,
    embedding_cache_key,
    load_cached_embeddings,
    load_cached_semantic_ids,
    rqvae_cache_key,
    save_embeddings,
    save_semantic_ids,
    semantic_id_cache_key,
)
from recbole_fair.tokenizer.codes import add_collision_digit, collision_rate, random_codes
from recbole_fair.tokenizer.encoder import EncoderFn, make_encoder_fn
from recbole_fair.tokenizer.quantizer import check_quantizer_args, quantize
from recbole_fair.tokenizer.report import (
    codes_fingerprint,
    collision_report,
    duplicate_text_items,
    log_report,
    log_rqvae_report,
    quality_report,
)
from recbole_fair.tokenizer.rqvae_train import rqvae_encode, train_rqvae
from recbole_fair.tokenizer.settings import RQVAESettings, SemanticIDSettings, check_random_digits


# --------------------------------------------------------------------------------- shared steps
def _checked_inputs(
    texts: Sequence[str], train_item_mask: np.ndarray, items_without_text: int | None
) -> tuple[list[str], np.ndarray, int]:
    r"""The texts as a list, the training-item mask (padding item 0 excluded) and the count of
    real items without text, after checking that the mask has one entry per text."""
    texts = list(texts)
    n_items = len(texts)
    mask = np.asarray(train_item_mask, dtype=bool).copy()
    if mask.shape != (n_items,):
        raise ValueError(
            f"train_item_mask has shape {mask.shape}, expected ({n_items},) (one per text)."
        )
    mask[0] = False  # the padding item is never a training item
    if items_without_text is None:
        items_without_text = sum(1 for t in texts[1:] if not t.strip())
    return texts, mask, int(items_without_text)


def item_embeddings(
    texts: Sequence[str],
    settings: SemanticIDSettings,
    encoder_fn: EncoderFn | None,
    cache_dir: str | None,
) -> tuple[np.ndarray, bool]:
    r"""Text embeddings ``[n_items, d]`` from the embedding cache, else from the encoder.

    Args:
        texts: one text per item.
        settings: the text encoder settings.
        encoder_fn: ``list[str] -> [n, d]`` float32; ``None`` loads ``settings.text_encoder``.
        cache_dir: the cache directory, ``None`` = no cache.

    Returns:
        tuple: the float32 embeddings and whether they came from the cache.
    """
    key = embedding_cache_key(texts, settings)
    path = cache_file(cache_dir, "emb", key)
    cached = load_cached_embeddings(path, key, len(texts))
    if cached is not None:
        return cached, True
    if encoder_fn is None:
        encoder_fn = make_encoder_fn(
            settings.text_encoder,
            settings.text_encode_batch_size,
            settings.device,
            settings.show_progress,
        )
    getLogger().info(set_color("encoding item texts", "green") + f": {len(texts)} texts")
    embeddings = np.ascontiguousarray(encoder_fn(list(texts)), dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(texts):
        raise ValueError(
            f"The text encoder returned shape {embeddings.shape} for {len(texts)} texts; "
            f"expected [n_texts, dim]."
        )
    save_embeddings(path, key, embeddings)
    return embeddings, False


def _item_counts(texts: list[str], mask: np.ndarray, items_without_text: int) -> dict:
    r"""The first entries of both reports: real items, training items, items without text."""
    return {
        "n_items": len(texts) - 1,
        "n_train_items": int(mask.sum()),
        "items_without_text": items_without_text,
    }


# ---------------------------------------------------------------------- OPQ/PQ and random IDs
def _codes_check(n_items: int, n_digits: int, codebook_size: int) -> Callable[[np.ndarray], bool]:
    r"""Whether cached codes fit: ``[n_items, L]`` int64 in ``[0, codebook_size)``."""

    def valid(a: np.ndarray) -> bool:
        return (
            a.shape == (n_items, n_digits)
            and a.dtype == np.int64
            and (a.size == 0 or (a.min() >= 0 and a.max() < codebook_size))
        )

    return valid


def _check_before_encoding(settings: SemanticIDSettings, mask: np.ndarray) -> None:
    r"""Fail before a (possibly long) encoding on what is known already: the settings, and
    whether the training items are enough for the quantizer."""
    check_random_digits(settings)
    if settings.sid_method != "random":
        n_semantic = settings.n_codes - settings.sid_random_digits
        n_train = int(mask.sum())
        check_quantizer_args(
            None, n_train, n_semantic, settings.codebook_size, settings.sid_pca_dim
        )


def _random_ids(n_items: int, settings: SemanticIDSettings) -> np.ndarray:
    n_digits, K = settings.n_codes, settings.codebook_size
    getLogger().info(
        set_color("random IDs", "green")
        + f": {n_digits} digits x {K} codes drawn at random (seed {settings.sid_seed}), one "
        f"distinct tuple per item, no content (sid_method=random, an ablation)"
        + (", sid_collisions has nothing to separate" if settings.sid_collisions != "keep" else "")
    )
    return random_codes(n_items, n_digits, K, settings.sid_seed)


def _opq_ids(
    embeddings: np.ndarray, mask: np.ndarray, settings: SemanticIDSettings, stats: dict
) -> np.ndarray:
    r"""OPQ/PQ codes of the first ``n_codes - sid_random_digits`` digits, then random codes at
    the last ``sid_random_digits`` digits; the quantizer's numbers go to ``stats``."""
    n_random = settings.sid_random_digits
    n_semantic, K = settings.n_codes - n_random, settings.codebook_size
    getLogger().info(
        set_color("quantizing", "green")
        + f": OPQ + PQ, {n_semantic} digits x {K} codes on {int(mask.sum())} training items"
        + (f", PCA to {settings.sid_pca_dim}" if settings.sid_pca_dim else "")
        + (f", then {n_random} random digits per item" if n_random else "")
    )
    codes = quantize(
        embeddings,
        mask,
        n_digits=n_semantic,
        codebook_size=K,
        seed=settings.sid_seed,
        pca_dim=settings.sid_pca_dim,
        pca_whiten=settings.sid_pca_whiten,
        opq_iterations=settings.sid_opq_iterations,
        collisions=settings.sid_collisions,
        stats=stats,
    )
    if n_random:
        stats["collision_rate_of_semantic_digits"] = collision_rate(codes)
        codes = random_codes(len(embeddings), n_random, K, settings.sid_seed, prefix=codes)
    return codes


def _sid_report(
    texts: list[str],
    mask: np.ndarray,
    items_without_text: int,
    settings: SemanticIDSettings,
    embeddings: np.ndarray,
    codes: np.ndarray,
    quantizer_stats: dict,
) -> dict:
    r"""The report of :func:`build_semantic_ids` (without the key, cache and timing entries)."""
    return {
        **_item_counts(texts, mask, items_without_text),
        "n_codes": settings.n_codes,
        "codebook_size": settings.codebook_size,
        "embedding_dim": int(embeddings.shape[1]),
        "text_fields": list(settings.text_fields),
        "text_template": settings.text_template,
        "text_encoder": settings.text_encoder,
        "sid_pca_dim": settings.sid_pca_dim,
        "sid_pca_whiten": settings.sid_pca_whiten,
        "sid_seed": settings.sid_seed,
        "sid_opq_iterations": settings.sid_opq_iterations,
        "sid_collisions": settings.sid_collisions,
        "sid_method": settings.sid_method,
        "sid_random_digits": settings.sid_random_digits,
        # provenance: faiss' k-means sums in a thread-dependent order, and the codes are a
        # chaotic function of the embeddings (another thread count changes most items' codes);
        # quantize reports the threads it ran with, random IDs use none
        "faiss_threads": None,
        **quantizer_stats,
        "n_duplicate_text_items": duplicate_text_items(texts),
        **quality_report(codes, settings.codebook_size),
    }


def build_semantic_ids(
    texts: Sequence[str],
    train_item_mask: np.ndarray,
    settings: SemanticIDSettings | None = None,
    encoder_fn: EncoderFn | None = None,
    items_without_text: int | None = None,
) -> SemanticIDs:
    r"""Semantic IDs of every item (FAIR, RPG), from the cache when a valid one exists.

    Args:
        texts: ``n_items`` texts in internal item-id order (index 0 = padding item, ``""``).
        train_item_mask: bool ``[n_items]``: items occurring in the training split; the PCA,
            OPQ and PQ are fitted on those rows only.
        settings: see :class:`~recbole_fair.tokenizer.settings.SemanticIDSettings`.
        encoder_fn: ``list[str] -> [n, d]`` float32; ``None`` loads ``settings.text_encoder``.
        items_without_text: count for the report (default: empty texts among items 1..).

    Returns:
        SemanticIDs: codes ``[n_items, n_codes]``, embeddings, report, cache key and path.

    Raises:
        ValueError: bad shapes or settings (see
            :func:`recbole_fair.tokenizer.quantizer.check_quantizer_args`).
    """
    start = time.time()
    settings = settings or SemanticIDSettings()
    texts, mask, items_without_text = _checked_inputs(texts, train_item_mask, items_without_text)
    n_items, n_digits, K = len(texts), settings.n_codes, settings.codebook_size
    cache_dir = settings.sid_cache_dir or None
    key = semantic_id_cache_key(texts, mask, settings)
    path = cache_file(cache_dir, "sid", key)
    valid = _codes_check(n_items, n_digits, K)
    cached = load_cached_semantic_ids(path, key, n_items, valid, start, log_report)
    if cached is not None:
        return cached

    _check_before_encoding(settings, mask)
    # the random IDs do not use them, but the report and the attention maps' text similarity do
    embeddings, embedding_hit = item_embeddings(texts, settings, encoder_fn, cache_dir)
    encode_seconds = time.time() - start
    quantizer_stats: dict = {}
    if settings.sid_method == "random":
        codes = _random_ids(n_items, settings)
    else:
        codes = _opq_ids(embeddings, mask, settings, quantizer_stats)
    report = {
        **_sid_report(
            texts, mask, items_without_text, settings, embeddings, codes, quantizer_stats
        ),
        "cache_key": key,
        "codes_fingerprint": codes_fingerprint(codes),
        "embedding_cache_hit": embedding_hit,
        "encode_seconds": encode_seconds,
        "build_seconds": time.time() - start,
        "cache_hit": False,
    }
    save_semantic_ids(path, key, codes, embeddings, report)
    log_report(report)
    return SemanticIDs(codes, embeddings, report, key, path)


# ---------------------------------------------------------------------------------- RQ-VAE IDs
def _warn_unused_settings(settings: SemanticIDSettings) -> None:
    r"""Warn about the OPQ settings that TIGER's RQ-VAE IDs do not use."""
    if settings.sid_collisions != "keep":
        getLogger().warning(
            f"sid_collisions [{settings.sid_collisions}] applies to the OPQ codes of FAIR/RPG; "
            "TIGER's semantic IDs are unique by construction (a last digit numbers the items "
            "sharing a prefix), so it is not used here."
        )
    if settings.sid_method != "opq" or settings.sid_random_digits:
        getLogger().warning(
            f"sid_method [{settings.sid_method}] and sid_random_digits "
            f"[{settings.sid_random_digits}] apply to the OPQ codes of FAIR/RPG; TIGER's "
            "semantic IDs come from its RQ-VAE, so they are not used here."
        )


def _rqvae_codes_check(n_items: int, levels: int, codebook_size: int) -> Callable:
    r"""Whether cached TIGER codes fit: ``[n_items, levels + 1]`` int64, the RQ-VAE digits in
    ``[0, codebook_size)``, unique rows for the real items, row 0 zeros."""

    def valid(codes: np.ndarray) -> bool:
        if codes.shape != (n_items, levels + 1) or codes.dtype != np.int64:
            return False
        if codes.size and (codes.min() < 0 or codes[:, :levels].max() >= codebook_size):
            return False
        if n_items > 1 and len(np.unique(codes[1:], axis=0)) != n_items - 1:
            return False  # the IDs must be unique
        return not codes[0].any()

    return valid


def _rqvae_ids(
    embeddings: np.ndarray, mask: np.ndarray, rqvae: RQVAESettings, settings: SemanticIDSettings
) -> tuple[np.ndarray, dict]:
    r"""RQ-VAE trained on the training items, the codes of all items plus the collision digit
    ``[n_items, M + 1]``, and the training history."""
    getLogger().info(
        set_color("training RQ-VAE", "green")
        + f": {rqvae.rqvae_levels} levels x {rqvae.rqvae_codebook_size} codewords, dim "
        f"{rqvae.rqvae_code_dim}, MLP {rqvae.rqvae_hidden_sizes}, {rqvae.rqvae_epochs} epochs "
        f"on {int(mask.sum())} training items"
    )
    seed = rqvae.seed(settings.sid_seed)
    model, history = train_rqvae(embeddings[mask], rqvae, seed, settings.device)
    return add_collision_digit(rqvae_encode(model, embeddings)), history


def _rqvae_report(
    texts: list[str],
    mask: np.ndarray,
    items_without_text: int,
    settings: SemanticIDSettings,
    rqvae: RQVAESettings,
    embeddings: np.ndarray,
    history: dict,
) -> dict:
    r"""The report of :func:`build_rqvae_semantic_ids` (without key, cache and timings)."""
    M, K = rqvae.rqvae_levels, rqvae.rqvae_codebook_size
    recon, quant = history["recon_loss"], history["quant_loss"]
    return {
        "tokenizer": "rqvae",
        **_item_counts(texts, mask, items_without_text),
        "n_codes": M + 1,
        "rqvae_levels": M,
        "codebook_size": K,
        "embedding_dim": int(embeddings.shape[1]),
        "text_fields": list(settings.text_fields),
        "text_template": settings.text_template,
        "text_encoder": settings.text_encoder,
        "rqvae_settings": dataclasses.asdict(rqvae),
        "rqvae_seed": rqvae.seed(settings.sid_seed),
        "rqvae_first_recon_loss": recon[0] if recon else None,
        "rqvae_final_recon_loss": recon[-1] if recon else None,
        "rqvae_final_quant_loss": quant[-1] if quant else None,
    }


def build_rqvae_semantic_ids(
    texts: Sequence[str],
    train_item_mask: np.ndarray,
    settings: SemanticIDSettings | None = None,
    rqvae: RQVAESettings | None = None,
    encoder_fn: EncoderFn | None = None,
    items_without_text: int | None = None,
) -> SemanticIDs:
    r"""TIGER semantic IDs of every item, from the cache when a valid one exists: RQ-VAE codes
    at the first ``rqvae_levels`` digits, then a collision digit that makes them unique
    (:func:`~recbole_fair.tokenizer.codes.add_collision_digit`).

    Args:
        texts: ``n_items`` texts in internal item-id order (index 0 = padding item, ``""``).
        train_item_mask: bool ``[n_items]``: items of the training split; the RQ-VAE is trained
            on those rows only, then every item is encoded.
        settings: text and cache settings (its quantiser fields are not used).
        rqvae: see :class:`~recbole_fair.tokenizer.settings.RQVAESettings`.
        encoder_fn: ``list[str] -> [n, d]`` float32; ``None`` loads ``settings.text_encoder``.
        items_without_text: count for the report (default: empty texts among items 1..).

    Returns:
        SemanticIDs: ``codes`` int64 ``[n_items, rqvae_levels + 1]`` (unique rows for the real
        items, row 0 zeros), embeddings, report, cache key and path.
    """
    start = time.time()
    settings = settings or SemanticIDSettings()
    rqvae = rqvae or RQVAESettings()
    texts, mask, items_without_text = _checked_inputs(texts, train_item_mask, items_without_text)
    _warn_unused_settings(settings)
    n_items, M, K = len(texts), rqvae.rqvae_levels, rqvae.rqvae_codebook_size
    cache_dir = settings.sid_cache_dir or None
    key = rqvae_cache_key(texts, mask, settings, rqvae)
    path = cache_file(cache_dir, "rqvae", key)
    valid = _rqvae_codes_check(n_items, M, K)
    cached = load_cached_semantic_ids(path, key, n_items, valid, start, log_rqvae_report)
    if cached is not None:
        return cached

    embeddings, embedding_hit = item_embeddings(texts, settings, encoder_fn, cache_dir)
    encode_seconds = time.time() - start
    train_start = time.time()
    codes, history = _rqvae_ids(embeddings, mask, rqvae, settings)  # [n_items, M + 1]
    train_seconds = time.time() - train_start
    report = {
        **_rqvae_report(texts, mask, items_without_text, settings, rqvae, embeddings, history),
        "rqvae_train_seconds": train_seconds,
        "n_duplicate_text_items": duplicate_text_items(texts),
        **collision_report(codes, K),
        "cache_key": key,
        "embedding_cache_hit": embedding_hit,
        "encode_seconds": encode_seconds,
        "build_seconds": time.time() - start,
        "cache_hit": False,
    }
    save_semantic_ids(path, key, codes, embeddings, report)
    log_rqvae_report(report)
    return SemanticIDs(codes, embeddings, report, key, path)


__all__ = ["build_rqvae_semantic_ids", "build_semantic_ids", "item_embeddings"]
