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
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    rows: int
    longest: int
    valid_index: torch.Tensor | None = None

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
        return HostBatch(self.rows, self.longest, index)


def host_batch_of(interaction: object, item_seq: torch.Tensor) -> HostBatch | None:
    r"""The :class:`HostBatch` attached to ``interaction`` when it describes ``item_seq``, else
    None (no hint, or a hint for another batch)."""
    hint = getattr(interaction, "host_batch", None)
    if isinstance(hint, HostBatch) and hint.matches(item_seq):
        return hint
    return None


__all__ = ["HostBatch", "host_batch_of"]
