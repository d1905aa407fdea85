r"""recbole_fair.model.weights_cache
#################################

One rule for every tensor derived from a model's weights or an item table and kept between
batches (evaluation's input embedding of every item, the code-token tables of exact ranking, which
training's item-level loss also reads, the item graph of graph decoding): recompute it when any
tensor it depends on changes, where "changes" is a new ``(data_ptr, version counter, device)``.
An optimizer step or ``load_state_dict`` bumps a tensor's version counter, a move to another
device changes its pointer and device, so a stale value is never returned. Whatever else the
value depends on (a target device or dtype, decoding settings) is passed as extra key parts.
"""

from __future__ import annotations

from typing import Callable, Hashable, Sequence

import torch


def tensor_key(tensor: torch.Tensor) -> tuple:
    r"""``(data_ptr, version counter, device)``: changes whenever ``tensor``'s values may have."""
    return tensor.data_ptr(), tensor._version, str(tensor.device)


class WeightsCache:
    r"""A tensor computed from some tensors, recomputed when any of them changes.

    Computed without autograd (the cached tensor holds no graph): for values that need no
    gradient, those of evaluation or constants such as the code tables.
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.value: torch.Tensor | None = None

    def clear(self) -> None:
        r"""Drop the value (it is recomputed on the next :meth:`get`)."""
        self.key, self.value = None, None

    def get(
        self,
        tensors: Sequence[torch.Tensor],
        compute: Callable[[], torch.Tensor],
        extra: tuple[Hashable, ...] = (),
    ) -> torch.Tensor:
        r"""``compute()``, called on the first use of these ``tensors`` (what it depends on)
        and ``extra`` key parts (anything else it depends on: a device, a dtype, settings)."""
        key = tuple(tensor_key(t) for t in tensors) + tuple(extra)
        if self.key != key or self.value is None:
            with torch.no_grad():
                self.value = compute()
            self.key = key
        return self.value


__all__ = ["WeightsCache", "tensor_key"]
