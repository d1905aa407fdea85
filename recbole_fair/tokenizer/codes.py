r"""recbole_fair.tokenizer.codes
#############################

Operations on code matrices, whatever quantizer made them. A code matrix is int64
``[n_items, L]``: row ``i`` is the semantic ID of item ``i`` (row 0 = padding item, all zeros),
column ``l`` its digit ``l``, each entry a code in ``[0, K)``.

* :func:`random_codes`: random digits (the random-ID ablation, or ``sid_random_digits``).
* :func:`collision_counts`, :func:`collision_rate`: items sharing their full code tuple.
* :func:`separate_collisions`: move colliding items one digit apart (``sid_collisions:
  separate``).
* :func:`add_collision_digit`: TIGER's extra digit numbering the items that share a prefix.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def random_codes(
    n_items: int,
    n_digits: int,
    codebook_size: int,
    seed: int,
    prefix: np.ndarray | None = None,
) -> np.ndarray:
    r"""Uniformly drawn codes: the random-ID ablation, or random digits after semantic ones.

    Without ``prefix``: a code tuple for every real item, all distinct. Same shape and
    vocabulary as the semantic IDs (``L`` digits of ``codebook_size`` codes), but no content:
    two items share a code only by chance (probability ``1/codebook_size`` per digit), so
    whatever a model gains from semantic IDs over these is what the text carries.
    With ``prefix`` (``[n_items, P]`` semantic codes): ``n_digits`` random digits are appended,
    so that items with the same semantic prefix still get distinct tuples (each item keeps its
    content digits plus item-specific ones).
    Rows whose full tuple an earlier row holds draw their random codes again until every tuple
    is unique.

    Args:
        n_items: rows, including the padding row 0 (all zeros).
        n_digits: random digits per item; ``codebook_size``: codes per digit.
        seed: seed of the draw (``sid_seed``).
        prefix: optional int64 ``[n_items, P]`` codes to put before the random digits.

    Returns:
        numpy.ndarray: int64 ``[n_items, P + n_digits]``.

    Raises:
        ValueError: more items share one prefix (all items, without one) than there are
            random tuples (``codebook_size ** n_digits``).
    """
    n_real = max(int(n_items) - 1, 0)
    if prefix is None:
        prefix = np.zeros((n_items, 0), dtype=np.int64)
    prefix = np.asarray(prefix, dtype=np.int64)
    width = prefix.shape[1]
    largest = int(np.unique(prefix[1:], axis=0, return_counts=True)[1].max()) if n_real else 0
    if int(codebook_size) ** int(n_digits) < largest:
        raise ValueError(
            f"random codes: {codebook_size}^{n_digits} tuples of random digits cannot give "
            f"{largest} items {'sharing one semantic prefix ' if width else ''}a tuple each; "
            f"raise n_codes or codebook_size{' or sid_random_digits' if width else ''}."
        )
    rng = np.random.default_rng(seed)
    codes = np.zeros((n_items, width + n_digits), dtype=np.int64)
    codes[:, :width] = prefix
    codes[1:, width:] = rng.integers(0, codebook_size, size=(n_real, n_digits))
    while True:
        _, first = np.unique(codes[1:], axis=0, return_index=True)
        repeat = np.setdiff1d(np.arange(n_real), first) + 1  # rows holding an earlier tuple
        if not len(repeat):
            return codes
        codes[repeat, width:] = rng.integers(0, codebook_size, size=(len(repeat), n_digits))


def collision_counts(codes: np.ndarray) -> tuple[int, int]:
    r"""Among the real items (rows 1.. of ``[n_items, L]`` codes): how many share their full
    code tuple with another item, and in how many groups."""
    _, counts = np.unique(codes[1:], axis=0, return_counts=True)
    return int(counts[counts > 1].sum()), int((counts > 1).sum())


def collision_rate(codes: np.ndarray) -> float:
    r"""Share of the real items (rows 1..) whose full code tuple another item also has."""
    return collision_counts(codes)[0] / max(len(codes) - 1, 1)


def separate_collisions(
    codes: np.ndarray, distances_of: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, int, int]:
    r"""Give every real item (rows 1..) a code tuple of its own, at the least quantization cost.

    Items sharing a full code tuple form a group. Its member with the smallest quantization
    error (sum over digits of the squared distance to the codewords of its codes; ties: lowest
    row) keeps the tuple. Every other member, in that order, changes the code of **one** digit:
    the (digit, code) change that increases its quantization error least among the changes
    giving a tuple no item has. Items with identical embeddings (duplicate texts) thus get
    distinct tuples, one digit apart, nearest first. Nothing else changes, so a model still
    sees 31 of the 32 codes it would have seen.

    Args:
        codes: int64 ``[n_items, L]`` (row 0 = padding, left alone).
        distances_of: rows ``[m]`` -> float ``[m, L, K]`` squared distances to the codewords.

    Returns:
        tuple: the new codes (a copy), the number of items moved, the number left colliding
        (only when every one-digit change of an item is taken: not reachable in practice).
    """
    codes = np.array(codes, dtype=np.int64, copy=True)
    n_digits = codes.shape[1]
    groups: dict[bytes, list[int]] = {}
    for row in range(1, len(codes)):
        groups.setdefault(codes[row].tobytes(), []).append(row)
    used = set(groups)
    moved = unresolved = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        rows = np.asarray(members)
        dist = distances_of(rows)  # [m, L, K]
        current = np.take_along_axis(dist, codes[rows][:, :, None], axis=2)[..., 0]  # [m, L]
        order = np.lexsort((rows, current.sum(1)))  # smallest error first, then lowest row
        for i in order[1:]:
            row = rows[i]
            cost = dist[i] - current[i][:, None]  # [L, K], 0 at the current codes
            cost[np.arange(n_digits), codes[row]] = np.inf
            for flat in np.argsort(cost, axis=None, kind="stable"):
                if not np.isfinite(cost.flat[flat]):
                    unresolved += 1
                    break
                digit, code = divmod(int(flat), cost.shape[1])
                candidate = codes[row].copy()
                candidate[digit] = code
                key = candidate.tobytes()
                if key not in used:
                    used.add(key)
                    codes[row] = candidate
                    moved += 1
                    break
    return codes, moved, unresolved


def add_collision_digit(codes: np.ndarray) -> np.ndarray:
    r"""Append a digit that makes the code tuples of the real items unique (TIGER).

    Items sharing their first ``M`` codes get ``0, 1, ..., n-1`` in item-id order at the new
    digit; an item without a twin gets 0. Row 0 (the padding item) stays all zeros and is
    ignored.

    Args:
        codes: int64 ``[n_items, M]``.

    Returns:
        numpy.ndarray: int64 ``[n_items, M + 1]``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_items = codes.shape[0]
    extra = np.zeros(n_items, dtype=np.int64)
    if n_items > 1:
        _, group = np.unique(codes[1:], axis=0, return_inverse=True)
        group = group.reshape(-1)
        order = np.argsort(group, kind="stable")  # by group, then item id
        sorted_group = group[order]
        starts = np.r_[0, np.flatnonzero(sorted_group[1:] != sorted_group[:-1]) + 1]
        first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        extra[1:][order] = np.arange(len(order)) - first
    out = np.concatenate([codes, extra[:, None]], axis=1)
    out[0] = 0
    return out


__all__ = [
    "add_collision_digit",
    "collision_counts",
    "collision_rate",
    "random_codes",
    "separate_collisions",
]
