r"""recbole_fair.data.window_rows
##############################

The rows of ``train_mode: all_positions``, planned before any history list is built.

RecBole's :meth:`~recbole.data.dataset.SequentialDataset.data_augmentation` makes one row per
prefix (every interaction but each user's first is the target of one row) and gives each row a
``[MAX_ITEM_LIST_LENGTH]`` list of every interaction field: at a million items and histories of
200 that is tens of GB, although all-position training keeps one training row per window
(:func:`all_positions_row_index`). Under RecBole's leave-one-out split in time order, which
prefix rows end up in which split is known from the user ids alone, so
:func:`plan_window_rows` picks the rows the split keeps (every valid and test row, the training
rows that end a window) and what the split needs from the rows it never sees (the training
target counts; the order of the users), and :func:`gather_lists` builds the list fields of the
kept rows only.

Glossary: a user with ``n`` interactions (sorted by user, then time; ties keep their order) has
``m = n - 1`` prefix rows ``r = 0..m-1``, row ``r`` predicting interaction ``r + 1`` from the
``min(r + 1, W)`` interactions before it (``W = MAX_ITEM_LIST_LENGTH``). Leave-one-out
(``valid_and_test``) gives row ``m - 1`` to test and row ``m - 2`` to valid when ``m >= 3``,
row ``m - 1`` to test when ``m == 2``, and the rest to train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def all_positions_row_index(
    uid: np.ndarray, time: np.ndarray | None, max_item_list_len: int
) -> np.ndarray:
    r"""Rows of a prefix-augmented training split to keep for all-position training.

    Per user, the ``m`` training rows are ranked ``k = 0..m-1`` in time order (ties keep their
    current order, which is RecBole's augmentation order). Row ``k`` predicts the
    ``min(k + 1, W)`` targets of its history window at every position, so keeping the rows with
    ``(m - 1 - k) % W == 0`` (``W = max_item_list_len``) covers every target exactly once.

    Args:
        uid: ``[n]`` user id of every row.
        time: ``[n]`` time of every row's target (``None``: the current order).
        max_item_list_len: ``W``, RecBole's ``MAX_ITEM_LIST_LENGTH``.

    Returns:
        numpy.ndarray: int64 indices of the kept rows, in their current order.
    """
    n = len(uid)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    time = np.zeros(n) if time is None else np.asarray(time)
    order = np.lexsort((np.arange(n), time, uid))  # by user, then time, then current order
    sorted_uid = uid[order]
    is_start = np.r_[True, sorted_uid[1:] != sorted_uid[:-1]]
    starts = np.flatnonzero(is_start)  # [n_users]
    group = np.cumsum(is_start) - 1  # [n]
    rank = np.arange(n) - starts[group]  # k
    size = np.diff(np.r_[starts, n])[group]  # m
    keep = (size - 1 - rank) % int(max_item_list_len) == 0
    return np.sort(order[keep]).astype(np.int64)


@dataclass
class WindowRows:
    r"""The prefix rows an all-position leave-one-out split keeps (see the module docstring).

    Attributes:
        target: ``[rows]`` int64, the interaction each kept row predicts (ascending: RecBole's
            augmentation order).
        start: ``[rows]`` int64, the first interaction of each kept row's history.
        length: ``[rows]`` int64, its history length (``target - start``).
        train_targets: ``[train rows]`` int64, the target of every training prefix row, kept
            or not (the training-target counts are counted on them).
        user_rank: ``[max uid + 1]`` int64, the order in which RecBole's split lists the users:
            by the time of their first prefix row, then that row's position (users without
            rows: ``-1``).
        prefix_rows (int): the rows RecBole's augmentation would build.
        train_rows (int), kept_train_rows (int): the training prefix rows, and how many of
            them end a window.
    """

    target: np.ndarray
    start: np.ndarray
    length: np.ndarray
    train_targets: np.ndarray
    user_rank: np.ndarray
    prefix_rows: int
    train_rows: int
    kept_train_rows: int

    def grouped_index(self, uid: np.ndarray) -> list[list[int]]:
        r"""RecBole's ``Dataset._grouped_index`` on the kept rows: the row positions of each
        user, users in the order the full prefix rows would list them (:attr:`user_rank`)."""
        uid = np.asarray(uid)
        if len(uid) == 0:
            return []
        keys = self.user_rank[uid]
        order = np.argsort(keys, kind="stable")
        bounds = np.flatnonzero(np.diff(keys[order])) + 1
        return [group.tolist() for group in np.split(order, bounds)]


def plan_window_rows(uid: np.ndarray, time: np.ndarray, max_item_list_len: int) -> WindowRows:
    r"""Which prefix rows of the interactions ``(uid, time)`` a leave-one-out split in time order
    keeps under all-position training (every valid and test row, the training rows that
    :func:`all_positions_row_index` keeps), computed without building any row.

    Args:
        uid: ``[n]`` user of every interaction, sorted by user then time (RecBole's
            augmentation order).
        time: ``[n]`` time of every interaction.
        max_item_list_len: ``W``.

    Returns:
        WindowRows: the kept rows and what the split needs from the others.
    """
    uid, time = np.asarray(uid), np.asarray(time)
    n = len(uid)
    is_start = np.r_[True, uid[1:] != uid[:-1]] if n else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(is_start)  # [users]
    group = np.cumsum(is_start) - 1  # [n]
    pos = np.arange(n) - starts[group]  # position in the user's sequence
    size = np.diff(np.r_[starts, n]).astype(np.int64)[group]  # the user's interactions
    rows = np.flatnonzero(pos > 0)  # one prefix row per target, in augmentation order
    r, m = pos[rows] - 1, size[rows] - 1
    test = (m >= 2) & (r == m - 1)
    valid = (m >= 3) & (r == m - 2)
    train = rows[~(test | valid)]
    kept_train = train[all_positions_row_index(uid[train], time[train], max_item_list_len)]
    target = np.sort(np.r_[kept_train, rows[test | valid]]).astype(np.int64)
    start = np.maximum(starts[group[target]], target - int(max_item_list_len))
    first = rows[r == 0]  # each user's first row: where RecBole's split meets the user
    user_rank = np.full(int(uid.max()) + 1 if n else 0, -1, dtype=np.int64)
    user_rank[uid[first[np.lexsort((first, time[first]))]]] = np.arange(len(first))
    return WindowRows(
        target=target,
        start=start.astype(np.int64),
        length=(target - start).astype(np.int64),
        train_targets=train.astype(np.int64),
        user_rank=user_rank,
        prefix_rows=len(rows),
        train_rows=len(train),
        kept_train_rows=len(kept_train),
    )


def gather_lists(
    value: torch.Tensor, start: np.ndarray, length: np.ndarray, shape: tuple
) -> torch.Tensor:
    r"""The history lists of one field, as RecBole's augmentation fills them
    (``lists[i, :length[i]] = value[start[i]:start[i] + length[i]]``, zeros after).

    Args:
        value: ``[n, ...]`` the field of every interaction.
        start, length: ``[rows]`` each row's history.
        shape: ``(rows, W, ...)`` the list field's shape.

    Returns:
        torch.Tensor: ``shape``, of ``value``'s dtype.
    """
    lists = torch.zeros(shape, dtype=value.dtype)
    col = np.arange(shape[1])
    filled = col[None, :] < length[:, None]  # [rows, W]
    source = (start[:, None] + col[None, :])[filled]
    lists[torch.from_numpy(filled)] = value[torch.from_numpy(source)]
    return lists
