r"""recbole_fair.model.host_batch
##############################

What the host knows about a training batch before it is copied to the device.

A model's ``calculate_loss`` on a GPU waits for the GPU (a *host synchronisation*) whenever it
needs a number that lives on the device: FAIR/RPG/TIGER trim the padding columns beyond the
batch's longest history (``int(item_seq_len.max())``), and FAIR's all-positions loss selects the
valid positions with a boolean mask (whose result size only the device knows). While the host
waits it cannot queue the next step, so the GPU idles between steps.

Both numbers are free on the host, where the batch is built: recbole-fair's trainer
(:class:`~recbole_fair.trainer.sync_free.SyncFreeTrainer`) calls the model's ``prepare_batch``
on each training batch *before* the copy; the model trims the batch there and attaches a
:class:`HostBatch` to it (``interaction.host_batch``), which the trainer carries over to the
device copy. ``calculate_loss`` uses it when present and falls back to computing both on the
device otherwise (RecBole's own trainer, tests, hand-made batches): the same numbers either
way.

:func:`length_groups` cuts the padding of a batch whose rows are sorted by history length: it
splits the rows into a few contiguous groups, each to be trimmed to its own longest history,
choosing the boundaries that minimise the padded positions (TIGER's ``tiger_length_groups``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class HostBatch:
    r"""Host-side facts of one training batch (see the module docstring).

    Attributes:
        rows (int): batch size ``B``.
        longest (int): longest history of the batch: the item sequence was trimmed to
            ``[B, longest]`` on the host, and every history is at least 1 long (checked there).
        valid_index (torch.Tensor, optional): flat indices into the ``B * longest`` positions of
            the valid ones (position ``t < item_seq_len`` of its row), in row-major order: what
            ``hidden[valid_mask]`` selects, as ``hidden.reshape(B * longest, -1)[valid_index]``.
        groups (tuple, optional): the rows are sorted by history length and split into these
            groups, ``((end, longest), ...)``: rows ``previous end..end-1`` have histories of at
            most ``longest`` items (:func:`length_groups`).
    """

    rows: int
    longest: int
    valid_index: torch.Tensor | None = None
    groups: tuple[tuple[int, int], ...] | None = None

    def matches(self, item_seq: torch.Tensor) -> bool:
        r"""Whether ``item_seq`` is the batch this was computed for (already trimmed)."""
        return tuple(item_seq.shape) == (self.rows, self.longest)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> HostBatch:
        r"""The same facts with ``valid_index`` on ``device`` (pinned first for a CUDA copy, so
        that a non-blocking copy does not wait for the GPU)."""
        index = self.valid_index
        if index is not None:
            if non_blocking and torch.device(device).type == "cuda":
                index = index.pin_memory()
            index = index.to(device, non_blocking=non_blocking)
        return HostBatch(self.rows, self.longest, index, self.groups)


def host_batch_of(interaction: object, item_seq: torch.Tensor) -> HostBatch | None:
    r"""The :class:`HostBatch` attached to ``interaction`` when it describes ``item_seq``, else
    None (no hint, or a hint for another batch)."""
    hint = getattr(interaction, "host_batch", None)
    if isinstance(hint, HostBatch) and hint.matches(item_seq):
        return hint
    return None


def length_groups(lengths: np.ndarray, max_groups: int) -> tuple[tuple[int, int], ...]:
    r"""Split rows sorted by length into at most ``max_groups`` contiguous groups with the fewest
    padded positions.

    A group of ``n`` rows trimmed to its longest row ``L`` costs ``n * L`` positions; the split
    minimises their sum (exactly, by dynamic programming over the distinct lengths: a boundary
    inside a run of equal lengths never helps), using the fewest groups that reach the minimum.

    Args:
        lengths (numpy.ndarray): ``[B]`` row lengths, sorted ascending.
        max_groups (int): at most this many groups (>= 1).

    Returns:
        tuple: ``((end, longest), ...)`` per group in row order: the group holds rows
        ``previous end..end-1``, the longest of them is ``longest``; the last ``end`` is ``B``.
    """
    values, counts = np.unique(np.asarray(lengths, dtype=np.int64), return_counts=True)
    ends = np.cumsum(counts)  # [D], end row of each distinct length
    D = len(values)
    if D == 0:
        return ()
    # best[j]: fewest positions of rows 0..ends[j]-1 in g + 1 groups, the last one ending at j
    best = (ends * values).astype(np.float64)  # g = 0: one group
    choice = [best[-1]]
    back = []
    earlier = np.arange(D)[:, None] < np.arange(D)[None, :]  # [i, j]: i < j
    for _ in range(1, min(max_groups, D)):
        # previous groups end at i, the last group holds rows ends[i]..ends[j]-1
        cost = best[:, None] + (ends[None, :] - ends[:, None]) * values[None, :]  # [i, j]
        cost = np.where(earlier, cost, np.inf)
        back.append(cost.argmin(0))
        best = cost.min(0)
        choice.append(best[-1])
    n_groups = int(np.argmin(choice)) + 1  # the first (fewest groups) of the minima
    groups = []
    j = D - 1
    for g in range(n_groups - 1, -1, -1):
        groups.append((int(ends[j]), int(values[j])))
        if g:
            j = int(back[g - 1][j])
    return tuple(reversed(groups))


__all__ = ["HostBatch", "host_batch_of", "length_groups"]
