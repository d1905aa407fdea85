r"""recbole_fair.data.item_counts
##############################

How often items occur in a training split: the item popularity that graph decoding starts from
(:mod:`recbole_fair.model.graph_decoding`; :class:`~recbole_fair.data.dataset.SemanticIDDataset`
counts it when it builds its splits, ``train_target_counts``, and the models read it from the
dataset) and the recency-weighted item prior of the score calibration analysis
(:mod:`recbole_fair.analysis.score_calibration`).
"""

from __future__ import annotations

from typing import Any

import torch


def item_popularity(dataset: Any, n_items: int) -> torch.Tensor:
    r"""Number of training interactions whose target is each item, ``LongTensor [n_items]``.

    A dataset built by :class:`~recbole_fair.data.dataset.SemanticIDDataset` carries these counts
    as ``train_target_counts`` (counted before ``train_mode: all_positions`` thins the training
    split to one row per window, whose ``inter_feat`` holds only each window's last target);
    otherwise counts ``dataset.inter_feat[dataset.iid_field]``. A dataset without interactions
    gives zeros (the start beams then fall back to the lowest item ids).
    """
    counts = torch.zeros(n_items, dtype=torch.long)
    known = getattr(dataset, "train_target_counts", None)
    if known is not None:
        known = torch.as_tensor(known).long().reshape(-1)[:n_items]
        counts[: known.numel()] = known
        counts[0] = 0  # the padding item
        return counts
    inter = getattr(dataset, "inter_feat", None)
    iid_field = getattr(dataset, "iid_field", None)
    if inter is None or iid_field is None or iid_field not in inter:
        return counts
    return count_items(inter[iid_field], n_items)


def count_items(items: Any, n_items: int) -> torch.Tensor:
    r"""How often each real item id (``1 … n_items − 1``) occurs in ``items``, ``LongTensor
    [n_items]`` (the padding item 0 and ids out of range are not counted)."""
    items = torch.as_tensor(items).long().reshape(-1)
    items = items[(items > 0) & (items < n_items)]
    return torch.bincount(items, minlength=n_items)[:n_items]


def recent_target_counts(
    users: Any, history: Any, targets: Any, n_items: int, last: int
) -> torch.Tensor:
    r"""How often each item id is one of its users' ``last`` most recent training targets,
    ``LongTensor [n_items]`` (the padding item 0 and ids out of range are not counted).

    One entry per training row of RecBole's sequential split (one row per prefix, per user in
    chronological order): a row with a longer history is a later target, and among histories
    capped at ``MAX_ITEM_LIST_LENGTH`` (equal lengths) the later row is.
    """
    users, history, targets = (
        torch.as_tensor(x).long().reshape(-1) for x in (users, history, targets)
    )
    if not users.numel() == history.numel() == targets.numel():
        raise ValueError(
            f"users, history and targets need one entry per training row, got "
            f"{users.numel()}, {history.numel()} and {targets.numel()}."
        )
    if users.numel() == 0 or last < 1:
        return torch.zeros(n_items, dtype=torch.long, device=users.device)
    row = torch.arange(users.numel(), device=users.device)
    # per user, latest first: stable sorts from the least significant key (later row) up
    order = torch.argsort(-row, stable=True)
    order = order[torch.argsort(-history[order], stable=True)]
    order = order[torch.argsort(users[order], stable=True)]
    sorted_users = users[order]
    starts = torch.ones_like(sorted_users, dtype=torch.bool)
    starts[1:] = sorted_users[1:] != sorted_users[:-1]
    first = torch.cummax(torch.where(starts, row, torch.zeros_like(row)), 0).values
    return count_items(targets[order[row - first < last]], n_items)
