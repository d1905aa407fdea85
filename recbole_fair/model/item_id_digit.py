r"""recbole_fair.model.item_id_digit
#################################

:class:`ItemIDDigit`, a recbole-fair extension of FAIR (``item_id_embedding: True``) for items
whose codes cannot tell them apart (collisions, the long tail): every item also gets its own
embedding ``e_i``, tied between input and output as SASRec's.

* Input: ``e_i`` is added to the item's pooled code embedding in the history (:meth:`embed`).
* Output: one more digit whose codebook is the item table, ``logit_item(i) = cos(head(h), e_i) /
  τ`` (or the dot product) from one more residual head (:meth:`logits`).
* Loss: its cross-entropy over the items joins the ``L`` digits' (:meth:`mtp_loss`: the MTP loss
  becomes the mean over ``L + 1`` digits); with ``item_loss_weight`` its logit joins the
  item-level loss's code sum.
* Ranking: ``+ log p_item(i)`` (:meth:`log_probs`).

Measured: docs/results.md (Amazon_Beauty, Amazon_Scientific: test N@10 above FAIR's, per-user
Wilcoxon p < 1e-4 with the item-level loss).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recbole_fair.model.layers import DigitHeads


class ItemIDDigit(nn.Module):
    r"""An embedding per item, used as input and as one more output digit.

    Args:
        n_items (int): item ids, 0 = padding.
        hidden_size (int): ``d``.
        head_logits (str): ``cosine`` or ``dot``, as the code digits'.
        head_temperature (float): ``τ`` of the cosine logits.
    """

    def __init__(
        self, n_items: int, hidden_size: int, head_logits: str, head_temperature: float
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_items, hidden_size, padding_idx=0)  # e_i
        self.head = DigitHeads(1, hidden_size, head_logits, head_temperature)

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        r"""``e_i`` of ``items [...]``, shape ``[..., d]`` (zeros for the padding item)."""
        return self.embedding(items)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        r"""``logit_item(i)`` of every item for hidden states ``h [N, d]``: ``[N, n_items]``."""
        return self.head(h, self.embedding.weight.unsqueeze(0)).squeeze(1)

    @staticmethod
    def mtp_loss(
        loss_codes: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, n_codes: int
    ) -> torch.Tensor:
        r"""The MTP loss over ``L + 1`` digits: ``(L · loss_codes + CE_item) / (L + 1)``.

        Args:
            loss_codes (torch.Tensor): the ``L`` code digits' MTP loss (scalar).
            logits (torch.Tensor): :meth:`logits` ``[N, n_items]``.
            targets (torch.Tensor): target items in ``[1, n_items)``, ``[N]``.
            n_codes (int): ``L``.
        """
        loss_id = F.cross_entropy(logits[:, 1:], targets - 1)  # the padding item left out
        return (n_codes * loss_codes + loss_id) / (n_codes + 1)

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        r"""The ranking term ``log p_item(i)`` ``[N, n_items]``, a softmax over the real items
        (the padding item ``-inf``)."""
        log_p = self.logits(h)[:, 1:].log_softmax(dim=-1)  # [N, n_items - 1]
        return F.pad(log_p, (1, 0), value=float("-inf"))


def rename_legacy_keys(state_dict: dict, prefix: str, *args: Any) -> None:
    r"""A ``load_state_dict`` pre-hook of FAIR: checkpoints written before the item-ID digit
    became a module name its parameters ``item_embedding.weight`` and ``item_head.{weight,
    bias}``; they load as ``item_id.embedding.weight`` and ``item_id.head.*``. Can go when no
    such checkpoint is kept."""
    for old, new in (("item_embedding.", "item_id.embedding."), ("item_head.", "item_id.head.")):
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)
