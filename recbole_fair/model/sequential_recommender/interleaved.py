r"""Interleaved
################################################

HSTU-style generative ranking baseline: items and actions as one interleaved token sequence
``[i_1, a_1, i_2, a_2, ..., i_N, a_N]`` (length 2N) under a causal mask; the prediction of
``a_n`` is read at the output of token ``i_n``, which has not seen ``a_n``. Action tokens carry
no loss.

Reference:
    Jiaqi Zhai et al. "Actions Speak Louder than Words: Trillion-Parameter Sequential
    Transducers for Generative Recommendations." ICML 2024.
    "Beyond Interleaving: Causal Attention Reformulations for Generative Recommender Systems",
    arXiv 2603.10369 (the baseline AttnLFA and AttnMVP replace).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from recbole_fair.model.action_layers import (
    ActionSequenceRecommender,
    causal_mask,
    prediction_head,
)


class Interleaved(ActionSequenceRecommender):
    r"""Causal Transformer over interleaved item and action tokens (2N tokens).

    Both tokens of pair ``n`` share the position embedding ``n``; a token-type embedding tells
    item tokens from action tokens. Same embeddings, encoder and head sizes as
    :class:`AttnLFA` and :class:`AttnMVP`.
    """

    def __init__(self, config: Any, dataset: Any):
        super().__init__(config, dataset)

        # define layers
        self.embedding = self._embedding(self.max_seq_length + 1)
        self.token_type = nn.Embedding(2, self.hidden_size)  # 0 = item token, 1 = action token
        self.encoder = self._encoder()
        self.head = prediction_head(self.hidden_size, self.hidden_size, self.num_action_types)

        # parameters initialization
        self.apply(self._init_weights)

    @staticmethod
    def interleave(item_tokens: torch.Tensor, action_tokens: torch.Tensor) -> torch.Tensor:
        r"""``[i_1, a_1, i_2, a_2, ...]`` from the two token streams.

        Args:
            item_tokens (torch.Tensor): ``[B, T, ...]``.
            action_tokens (torch.Tensor): ``[B, T, ...]``.

        Returns:
            torch.Tensor: ``[B, 2T, ...]`` with ``out[:, 2n] = item_tokens[:, n]`` and
            ``out[:, 2n + 1] = action_tokens[:, n]``.
        """
        return torch.stack((item_tokens, action_tokens), dim=2).flatten(1, 2)

    @staticmethod
    def item_positions(length: int, device: torch.device | None = None) -> torch.Tensor:
        r"""Indices of the item tokens ``i_1..i_T`` (the read-out positions) in the 2T sequence."""
        return torch.arange(0, 2 * length, 2, device=device)

    def forward(self, items: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        length = items.size(1)
        type_item, type_action = self.token_type.weight  # [d] each
        item_tokens = self.embedding.items(items, extra=type_item)  # [B, T, d]
        action_tokens = self.embedding.actions(actions, positions=True, extra=type_action)
        tokens = self.interleave(item_tokens, action_tokens)  # [B, 2T, d]
        hidden = self.encoder(tokens, causal_mask(2 * length, items.device))  # [B, 2T, d]
        hidden = hidden[:, self.item_positions(length, items.device)]  # [B, T, d] at i_n
        return self.head(hidden)  # [B, T, K]
