r"""recbole_fair.model.beam_search
###############################

Generation of semantic IDs constrained to existing items.

* :class:`ItemTrie`: the prefix tree of the items' code sequences, stored per level as sorted
  edge tensors (CSR): level ``l`` has nodes ``0..n_l-1`` (the distinct prefixes of length ``l``;
  node 0 of level 0 is the root) and one edge per distinct prefix of length ``l + 1``, keyed
  ``node * V + code``. The allowed next codes of a batch of nodes are a vectorised scatter into a
  ``[N, V]`` mask; following an edge is a ``searchsorted``. Memory is ``O(n_items * L)``,
  whatever the codebook size.
* :func:`constrained_beam_search`: beam search over ``L`` digits, batched over users and
  vectorised over beams. Every step masks the codes that leave the trie, so every finished beam
  is an existing item, and distinct beams are distinct items (the IDs are unique). The model is
  abstracted as a ``step_fn`` returning the log-probabilities of the next digit.
* :func:`branch_and_bound_topk`: the exact top-k items of one user (no beam limit), expanding
  only the prefixes that can still reach a given score; the reference the beam search is checked
  against.

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." in NeurIPS 2023.

Reference:
    Nicola De Cao et al. "Autoregressive Entity Retrieval." in ICLR 2021 (prefix-trie
    constrained beam search).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

#: ``step_fn(level, codes, parent) -> log_probs``: ``codes`` ``[B, W]`` are the digits chosen at
#: ``level - 1`` (``None`` at level 0), ``parent`` ``[B, W]`` the index of each beam's parent among
#: the previous step's beams (``None`` at level 0: one beam per user). Returns ``[B, W, V]``
#: log-probabilities of digit ``level`` (``W = 1`` at level 0).
StepFn = Callable[[int, "torch.Tensor | None", "torch.Tensor | None"], torch.Tensor]


class ItemTrie(nn.Module):
    r"""Prefix tree of the items' code sequences (see the module docstring).

    Args:
        item_codes (torch.Tensor): LongTensor ``[n_items, L]`` with codes in ``[0, V)``; row 0
            (padding item) is ignored. The rows of the real items must be distinct.
        vocab_size (int, optional): ``V``, codes per digit; default ``max code + 1``.

    Raises:
        ValueError: two real items share a code sequence.
    """

    def __init__(self, item_codes: torch.Tensor, vocab_size: int | None = None) -> None:
        super().__init__()
        codes = torch.as_tensor(item_codes).long().cpu().numpy()  # [n_items, L]
        if codes.ndim != 2 or codes.shape[0] < 2:
            raise ValueError(f"item_codes must be [n_items >= 2, L], got {codes.shape}.")
        self.n_levels = codes.shape[1]
        self.vocab_size = int(vocab_size or codes[1:].max() + 1)
        if codes[1:].min() < 0 or codes[1:].max() >= self.vocab_size:
            raise ValueError(f"item codes must lie in [0, {self.vocab_size}).")
        V = self.vocab_size
        real = codes[1:]
        items = np.arange(1, codes.shape[0], dtype=np.int64)
        node = np.zeros(len(real), dtype=np.int64)  # node of each item's prefix at this level
        n_nodes = [1]
        for level in range(self.n_levels):
            keys = node * V + real[:, level]  # [n_real]
            unique_keys, child = np.unique(keys, return_inverse=True)
            child = child.reshape(-1)
            if level == self.n_levels - 1:
                if len(unique_keys) != len(real):
                    raise ValueError(
                        f"{len(real) - len(unique_keys)} items share their full code sequence "
                        f"with another item; constrained decoding needs unique semantic IDs "
                        f"(TIGER appends a collision digit)."
                    )
                edge_child = np.empty(len(unique_keys), dtype=np.int64)
                edge_child[child] = items  # leaf -> item id
            else:
                edge_child = np.arange(len(unique_keys), dtype=np.int64)  # child node ids
            ptr = np.searchsorted(unique_keys // V, np.arange(n_nodes[-1] + 1), side="left")
            self.register_buffer(f"keys_{level}", torch.from_numpy(unique_keys), persistent=False)
            self.register_buffer(f"child_{level}", torch.from_numpy(edge_child), persistent=False)
            self.register_buffer(f"ptr_{level}", torch.from_numpy(ptr), persistent=False)
            n_nodes.append(len(unique_keys))
            node = child
        self.n_nodes = n_nodes[:-1]  # nodes per level
        self.n_items = codes.shape[0] - 1

    def _level(self, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            getattr(self, f"keys_{level}"),
            getattr(self, f"child_{level}"),
            getattr(self, f"ptr_{level}"),
        )

    def allowed(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        r"""Mask of the codes that extend each node's prefix to an existing item's prefix.

        Args:
            level (int): digit ``l`` (nodes are prefixes of length ``l``).
            nodes (torch.Tensor): node ids of level ``l``, any shape ``[*]``.

        Returns:
            torch.Tensor: bool ``[*, V]``.
        """
        keys, _, ptr = self._level(level)
        flat = nodes.reshape(-1)  # [N]
        start, end = ptr[flat], ptr[flat + 1]  # [N]
        counts = end - start
        rows = torch.repeat_interleave(torch.arange(len(flat), device=flat.device), counts)
        first = torch.cumsum(counts, 0) - counts  # [N], exclusive prefix sum
        edges = start[rows] + torch.arange(len(rows), device=flat.device) - first[rows]
        mask = torch.zeros(len(flat), self.vocab_size, dtype=torch.bool, device=flat.device)
        mask[rows, keys[edges] % self.vocab_size] = True
        return mask.view(*nodes.shape, self.vocab_size)

    def step(self, level: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        r"""Follow one edge per beam.

        Args:
            level (int): digit ``l``.
            nodes (torch.Tensor): node ids of level ``l``, shape ``[*]``.
            codes (torch.Tensor): codes of digit ``l``, shape ``[*]``.

        Returns:
            torch.Tensor: node ids of level ``l + 1`` (item ids after the last digit), ``-1``
            where ``code`` leaves the trie.
        """
        keys, child, _ = self._level(level)
        query = nodes * self.vocab_size + codes
        index = torch.searchsorted(keys, query.reshape(-1)).view_as(query)
        index = index.clamp(max=len(keys) - 1)
        found = keys[index] == query
        return torch.where(found, child[index], torch.full_like(query, -1))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        r"""Item id of full code sequences ``[*, L]`` (``-1`` where no item has them)."""
        node = torch.zeros(codes.shape[:-1], dtype=torch.long, device=codes.device)
        for level in range(self.n_levels):
            valid = node >= 0
            node = torch.where(valid, self.step(level, node.clamp(min=0), codes[..., level]), node)
        return node


@torch.no_grad()
def constrained_beam_search(
    step_fn: StepFn, trie: ItemTrie, batch_size: int, beam_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Beam search over the ``L`` digits, restricted to the item trie.

    Scores are sums of the per-digit log-probabilities returned by ``step_fn`` (the codes the trie
    forbids are masked to ``-inf`` before the top-k, the probabilities are not renormalised), so
    a finished beam's score is its item's exact sequence log-probability. With
    ``beam_size >= n_items`` no prefix is ever pruned and the result is the exact ranking.

    Args:
        step_fn: the model, see :data:`StepFn`.
        trie: the item trie.
        batch_size (int): ``B``, users.
        beam_size (int): ``W``.

    Returns:
        tuple: ``items`` LongTensor ``[B, W]`` (0 where fewer than ``W`` items exist) and
        ``scores`` ``[B, W]`` (``-inf`` there), best first.
    """
    device = trie.keys_0.device
    V = trie.vocab_size
    nodes = torch.zeros(batch_size, 1, dtype=torch.long, device=device)  # [B, 1], the root
    scores = torch.zeros(batch_size, 1, device=device)  # [B, 1]
    codes = parent = None
    for level in range(trie.n_levels):
        log_probs = step_fn(level, codes, parent).float()  # [B, w, V]
        allowed = trie.allowed(level, nodes)  # [B, w, V]
        candidates = scores.unsqueeze(-1) + log_probs.masked_fill(~allowed, float("-inf"))
        flat = candidates.view(batch_size, -1)  # [B, w * V]
        k = min(beam_size, flat.size(1))
        scores, index = flat.topk(k, dim=1)  # [B, k], best first
        parent = torch.div(index, V, rounding_mode="floor")  # [B, k]
        codes = index % V  # [B, k]
        alive = torch.isfinite(scores)
        nodes = trie.step(level, nodes.gather(1, parent), codes)  # [B, k]
        nodes = torch.where(alive & (nodes >= 0), nodes, torch.zeros_like(nodes))
        scores = scores.masked_fill(~alive, float("-inf"))
    items = nodes.masked_fill(~torch.isfinite(scores), 0)
    if items.size(1) < beam_size:  # fewer candidates than beams in total
        pad = beam_size - items.size(1)
        items = torch.cat([items, items.new_zeros(batch_size, pad)], 1)
        scores = torch.cat([scores, scores.new_full((batch_size, pad), float("-inf"))], 1)
    return items, scores


@torch.no_grad()
def branch_and_bound_topk(
    step_fn: StepFn, trie: ItemTrie, k: int, lower_bound: float = float("-inf")
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Exact top-k items of one user by branch and bound over the trie.

    A prefix's log-probability bounds those of all items below it (each digit adds a
    log-probability <= 0), so every item scoring at least ``lower_bound`` is reached by
    expanding, level by level, only the prefixes scoring at least ``lower_bound``. With
    ``lower_bound`` = the k-th score of a beam search (an achieved score, hence <= the true k-th
    score) the result equals scoring every item and taking the top k, at a fraction of the cost
    when the model is confident. The bound is loosened by ``1e-4 * max(1, |bound|)`` for float
    rounding.

    Args:
        step_fn: the model for one user, see :data:`StepFn` (``B = 1``; the ``w`` "beams" of a
            step are all the surviving prefixes).
        trie: the item trie.
        k (int): items to return.
        lower_bound (float): a score at least ``k`` items reach (``-inf``: no pruning).

    Returns:
        tuple: items ``[k]`` and scores ``[k]``, best first (0 / ``-inf`` padding when fewer
        than ``k`` items exist).
    """
    device = trie.keys_0.device
    bound = lower_bound
    bound -= 1e-4 * max(1.0, abs(bound)) if bound > float("-inf") else 0.0  # float slack
    nodes = torch.zeros(1, dtype=torch.long, device=device)  # [n], the root
    scores = torch.zeros(1, device=device)  # [n]
    codes = parent = None
    for level in range(trie.n_levels):
        log_probs = step_fn(level, codes, parent)[0]  # [n, V]
        allowed = trie.allowed(level, nodes)  # [n, V]
        candidates = scores.unsqueeze(1) + log_probs.masked_fill(~allowed, float("-inf"))
        keep = (candidates >= bound) & torch.isfinite(candidates)  # [n, V]
        survivor, code = torch.nonzero(keep, as_tuple=True)  # the surviving prefixes
        scores = candidates[survivor, code]
        nodes = trie.step(level, nodes[survivor], code)
        codes, parent = code.unsqueeze(0), survivor.unsqueeze(0)  # [1, n]
    items = torch.zeros(k, dtype=torch.long, device=device)
    top_scores = torch.full((k,), float("-inf"), device=device)
    top = scores.topk(min(k, scores.numel()))
    items[: top.indices.numel()] = nodes[top.indices]
    top_scores[: top.indices.numel()] = top.values
    return items, top_scores


def count_invalid(items: torch.Tensor, scores: torch.Tensor) -> tuple[int, int, int]:
    r"""Sanity counts of a beam-search result.

    Args:
        items (torch.Tensor): ``[B, W]`` item ids (0 = no item).
        scores (torch.Tensor): ``[B, W]`` scores (``-inf`` = empty beam).

    Returns:
        tuple: ``(returned, invalid, duplicates)``: finished beams, finished beams that are not an
        item (id <= 0), and finished beams repeating an item already returned for the same user.
    """
    alive = torch.isfinite(scores)
    returned = int(alive.sum())
    invalid = int((alive & (items <= 0)).sum())
    marked = torch.where(alive & (items > 0), items, torch.full_like(items, -1))
    ordered = marked.sort(dim=1).values
    dup = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    return returned, invalid, int(dup.sum())
