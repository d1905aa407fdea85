r"""recbole_fair.tokenizer.report
##############################

The quality report of a code matrix (collisions, code usage and entropy per digit), the
fingerprint of the codes themselves, and the log lines of both tokenizers (OPQ/PQ for FAIR and
RPG, RQ-VAE for TIGER).
"""

from __future__ import annotations

import hashlib
from logging import getLogger
from typing import Sequence

import numpy as np
from recbole.utils import set_color

from recbole_fair.tokenizer.codes import collision_counts


def quality_report(codes: np.ndarray, codebook_size: int) -> dict:
    r"""Collision and code-usage statistics of the real items (rows 1..).

    Args:
        codes: int64 ``[n_items, L]`` (row 0 = padding, ignored).
        codebook_size: codes per digit.

    Returns:
        dict: ``collision_rate`` (share of real items whose full code tuple another item also
        has), ``n_collision_groups``, ``n_colliding_items``, ``codebook_usage`` (per digit,
        distinct codes / codebook_size), ``entropy_bits`` (per digit), and their means.
    """
    real = codes[1:]
    n = len(real)
    colliding, groups = collision_counts(codes)
    usage, entropy = [], []
    for digit in range(real.shape[1]):
        hist = np.bincount(real[:, digit], minlength=codebook_size)  # [K], items per code
        usage.append(float((hist > 0).sum() / codebook_size))
        p = hist[hist > 0] / max(n, 1)
        entropy.append(float(-(p * np.log2(p)).sum()))
    return {
        "collision_rate": colliding / n if n else 0.0,
        "n_collision_groups": groups,
        "n_colliding_items": colliding,
        "codebook_usage": usage,
        "entropy_bits": entropy,
        "mean_codebook_usage": float(np.mean(usage)) if usage else 0.0,
        "mean_entropy_bits": float(np.mean(entropy)) if entropy else 0.0,
        "max_entropy_bits": float(np.log2(codebook_size)),
    }


def collision_report(codes: np.ndarray, codebook_size: int) -> dict:
    r"""Collision statistics of TIGER's IDs before and after the extra digit.

    Args:
        codes: int64 ``[n_items, M + 1]`` (the last digit is the collision digit).
        codebook_size: codes per RQ-VAE digit.

    Returns:
        dict: :func:`quality_report` of the full IDs (``collision_rate`` ... ; 0 collisions by
        construction) plus ``*_before_extra_digit`` counts of the ``M`` RQ-VAE digits, the
        per-digit ``codebook_usage``/``entropy_bits`` of the RQ-VAE digits and
        ``max_collision_group``.
    """
    before = quality_report(codes[:, :-1], codebook_size)
    after = quality_report(codes, max(codebook_size, int(codes[:, -1].max()) + 1))
    return {
        "collision_rate": after["collision_rate"],
        "n_collision_groups": after["n_collision_groups"],
        "n_colliding_items": after["n_colliding_items"],
        "collision_rate_before_extra_digit": before["collision_rate"],
        "n_collision_groups_before_extra_digit": before["n_collision_groups"],
        "n_colliding_items_before_extra_digit": before["n_colliding_items"],
        "max_collision_group": int(codes[1:, -1].max()) + 1 if len(codes) > 1 else 0,
        "codebook_usage": before["codebook_usage"],
        "entropy_bits": before["entropy_bits"],
        "mean_codebook_usage": before["mean_codebook_usage"],
        "mean_entropy_bits": before["mean_entropy_bits"],
        "max_entropy_bits": before["max_entropy_bits"],
    }


def codes_fingerprint(codes: np.ndarray) -> str:
    r"""12 hex digits identifying a code matrix itself (its shape and every code, row 0
    included), unlike the cache key, which names the inputs: the same key rebuilt on another
    machine (another faiss thread count or BLAS) can give other codes, and a different
    fingerprint says so."""
    array = np.ascontiguousarray(codes, dtype=np.int64)
    digest = hashlib.sha256(str(array.shape).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:12]


def duplicate_text_items(texts: Sequence[str]) -> int:
    r"""Real items (1..) whose non-empty text another item also has: they get identical
    embeddings, hence identical codes, whatever the quantiser."""
    counts: dict[str, int] = {}
    for text in texts[1:]:
        if text.strip():
            counts[text] = counts.get(text, 0) + 1
    return sum(c for c in counts.values() if c > 1)


def log_report(report: dict) -> None:
    r"""Log the quality report of OPQ/PQ (or random) semantic IDs in RecBole's style."""
    logger = getLogger()
    logger.info(
        set_color("semantic IDs", "pink")
        + f": {report['n_items']} items x {report['n_codes']} digits "
        f"(codebook {report['codebook_size']}), fitted on {report['n_train_items']} training "
        f"items, {report['items_without_text']} items without text, "
        + set_color("cache", "blue")
        + f" [{report['cache_key']}] {'hit' if report['cache_hit'] else 'built'} in "
        f"{report['build_seconds']:.2f}s, "
        + set_color("codes", "blue")
        + f" [{report.get('codes_fingerprint')}]"
    )
    logger.info(
        set_color("semantic ID quality", "pink")
        + f": collision rate {report['collision_rate']:.4%} "
        f"({report['n_colliding_items']} items in {report['n_collision_groups']} groups; "
        f"{report.get('n_duplicate_text_items', 0)} items share their text with another), "
        f"mean codebook usage {report['mean_codebook_usage']:.3f}, mean entropy "
        f"{report['mean_entropy_bits']:.2f}/{report['max_entropy_bits']:.0f} bits"
    )
    if report["items_without_text"]:
        logger.warning(
            f"{report['items_without_text']} items have no text in {report['text_fields']}; "
            f"they are encoded as the empty string."
        )


def log_rqvae_report(report: dict) -> None:
    r"""Log the RQ-VAE semantic-ID report in RecBole's style."""
    logger = getLogger()
    logger.info(
        set_color("TIGER semantic IDs", "pink")
        + f": {report['n_items']} items x {report['rqvae_levels']} RQ-VAE digits "
        f"(codebook {report['codebook_size']}) + 1 collision digit, fitted on "
        f"{report['n_train_items']} training items, "
        + set_color("cache", "blue")
        + f" [{report['cache_key']}] {'hit' if report['cache_hit'] else 'built'} in "
        f"{report['build_seconds']:.2f}s"
    )
    logger.info(
        set_color("TIGER semantic ID quality", "pink")
        + f": collisions before the extra digit {report['collision_rate_before_extra_digit']:.4%} "
        f"({report['n_colliding_items_before_extra_digit']} items in "
        f"{report['n_collision_groups_before_extra_digit']} groups, largest "
        f"{report['max_collision_group']}), after {report['collision_rate']:.4%}; "
        f"codebook usage per digit {[round(u, 3) for u in report['codebook_usage']]}, mean "
        f"entropy {report['mean_entropy_bits']:.2f}/{report['max_entropy_bits']:.0f} bits"
    )


__all__ = [
    "codes_fingerprint",
    "collision_report",
    "duplicate_text_items",
    "log_report",
    "log_rqvae_report",
    "quality_report",
]
