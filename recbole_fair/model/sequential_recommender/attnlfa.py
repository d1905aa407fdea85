r"""AttnLFA
################################################

Attention-based Late Fusion for Actions: a causal Transformer over the item tokens only (N
tokens instead of 2N), then one attention step that pools the embeddings of past actions
``a_j`` (``j < n``) with weights from item similarity (queries and keys from the item
representations), and an MLP head on ``[h_n ; pooled_n]``.

Reference:
    "Beyond Interleaving: Causal Attention Reformulations for Generative Recommender Systems",
    arXiv 2603.10369.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from recbole_fair.model.action_layers import (
    ActionSequenceRecommender,
    attend,
    causal_mask,
    merge_heads,
    prediction_head,
    split_heads,
)
from recbole_fair.model.action_settings import AttnLFASettings


class AttnLFA(ActionSequenceRecommender):
    r"""Item-only causal encoder + similarity-weighted pooling of past actions (late fusion).

    The fusion attention uses a **strict** causal mask (position ``n`` attends ``j < n``:
    ``a_n`` is the label); position 1 has nothing to pool and gets a learned null vector.
    ``lfa_pooling: False`` replaces the pooled vector by zeros, which leaves the item-only
    encoder with the same head.
    """

    settings_class = AttnLFASettings

    def __init__(self, config: Any, dataset: Any):
        super().__init__(config, dataset)

        # define layers
        d = self.hidden_size
        self.embedding = self._embedding(self.max_seq_length + 1)
        self.encoder = self._encoder()
        self.fusion_query = nn.Linear(d, d)
        self.fusion_key = nn.Linear(d, d)
        self.fusion_value = nn.Linear(d, d)
        self.fusion_out = nn.Linear(d, d)
        self.null_action = nn.Parameter(torch.zeros(d))
        self.head = prediction_head(2 * d, d, self.num_action_types)

        # parameters initialization
        self.apply(self._init_weights)

    def item_representations(self, items: torch.Tensor) -> torch.Tensor:
        r"""The item-only causal encoder: ``items [B, T]`` -> ``[B, T, d]``."""
        return self.encoder(self.embedding.items(items), causal_mask(items.size(1), items.device))

    def pool_actions(self, hidden: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        r"""Late fusion: :math:`p_n=\sum_{j<n}\alpha_{nj}W_v e(a_j)` with
        :math:`\alpha` from :math:`(W_q h_n)\cdot(W_k h_j)`; :math:`p_1` = learned null vector.

        Args:
            hidden (torch.Tensor): item representations ``[B, T, d]``.
            actions (torch.Tensor): multi-hot actions ``[B, T, K]``.

        Returns:
            torch.Tensor: pooled actions ``[B, T, d]``.
        """
        batch, length, width = hidden.shape
        q = split_heads(self.fusion_query(hidden), self.n_heads)  # [B, h, T, d_h]
        k = split_heads(self.fusion_key(hidden), self.n_heads)  # [B, h, T, d_h]
        v = split_heads(self.fusion_value(self.embedding.actions(actions)), self.n_heads)
        mask = causal_mask(length, hidden.device, strict=True)  # [T, T], j < n
        # Row 0 has no allowed key; let it see itself so the kernel stays finite, then drop it.
        mask[0, 0] = True
        dropout_p = self.attn_dropout_prob if self.training else 0.0
        pooled = attend(q, k, v, mask, self.attention_type, dropout_p)  # [B, h, T, d_h]
        pooled = self.fusion_out(merge_heads(pooled))  # [B, T, d]
        null = self.null_action.expand(batch, 1, width)  # [B, 1, d]
        return torch.cat((null, pooled[:, 1:]), dim=1)  # [B, T, d]

    def forward(self, items: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        hidden = self.item_representations(items)  # [B, T, d]
        if self.settings.lfa_pooling:
            pooled = self.pool_actions(hidden, actions)  # [B, T, d]
        else:
            pooled = torch.zeros_like(hidden)
        return self.head(torch.cat((hidden, pooled), dim=-1))  # [B, T, K]
