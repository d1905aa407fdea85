r"""AttnMVP
################################################

Attention-based Mixed Value Pooling: early fusion of actions in every attention layer. Queries
and keys come from the item stream only; the values mix item and action information with the
same weights, the action part with its diagonal masked:

.. math::
    O_n = \sum_{j\le n}\alpha_{nj}V^{item}_j + \sum_{j<n}\alpha_{nj}V^{act}_j

so nothing about ``a_n`` ever reaches position ``n``, in any layer. N tokens instead of 2N.

Reference:
    "Beyond Interleaving: Causal Attention Reformulations for Generative Recommender Systems",
    arXiv 2603.10369.
"""

from __future__ import annotations

from typing import Any

import torch

from recbole_fair.model.action_layers import (
    ActionSequenceRecommender,
    causal_mask,
    prediction_head,
)


class AttnMVP(ActionSequenceRecommender):
    r"""Causal Transformer over item tokens whose every attention layer also pools the past
    actions' value vectors (each layer has its own action value projection)."""

    def __init__(self, config: Any, dataset: Any):
        super().__init__(config, dataset)

        # define layers
        self.embedding = self._embedding(self.max_seq_length + 1)
        self.encoder = self._encoder(mixed_values=True)
        self.head = prediction_head(self.hidden_size, self.hidden_size, self.num_action_types)

        # parameters initialization
        self.apply(self._init_weights)

    def forward(self, items: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        length = items.size(1)
        x = self.embedding.items(items)  # [B, T, d]
        a = self.embedding.actions(actions)  # [B, T, d]
        hidden = self.encoder(
            x,
            causal_mask(length, items.device),  # item values: j <= n
            actions=a,
            action_mask=causal_mask(length, items.device, strict=True),  # action values: j < n
        )  # [B, T, d]
        return self.head(hidden)  # [B, T, K]
