"""Synthetic RecBole atomic data with a known answer, shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_walk_dataset(
    root: Path,
    n_users: int,
    n_items: int,
    seq_len: int,
    stride: int = 1,
    rng: np.random.Generator | None = None,
    name: str = "syn",
) -> Path:
    r"""Write ``<root>/<name>/<name>.inter`` where each user walks ``s, s+stride, s+2*stride, ...``
    (mod ``n_items``) from a random start ``s``: the next item is a deterministic function of the
    last one. Item tokens are ``i<k>``, users ``u<k>``, timestamps the step index.

    Args:
        rng: the start points are drawn from it (default: a generator seeded 0), so a caller can
            keep drawing from the same stream afterwards.

    Returns:
        Path: ``root`` (the ``data_path`` for RecBole).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    (root / name).mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(n_users):
        start = rng.integers(n_items)
        lines += [f"u{u}\ti{(start + stride * t) % n_items}\t{t}" for t in range(seq_len)]
    (root / name / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return root


def write_item_texts(root: Path, n_items: int, name: str = "syn", groups: int = 7) -> Path:
    r"""Write ``<root>/<name>/<name>.item`` beside :func:`write_walk_dataset`'s ``.inter``: one
    ``title:token_seq`` per item ``i<k>`` (``group<k % groups> item<k>``), the text a
    semantic-ID model (FAIR, RPG) builds its codes from. Returns ``root``."""
    lines = ["item_id:token\ttitle:token_seq"]
    lines += [f"i{k}\tgroup{k % groups} item{k}" for k in range(n_items)]
    (root / name / f"{name}.item").write_text("\n".join(lines) + "\n")
    return root
