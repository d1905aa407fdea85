r"""recbole_fair.model.action_layers
################################

Shared code of the action-prediction models ``Interleaved``, ``AttnLFA`` and ``AttnMVP``, in
reading order: masks -> attention (softmax or HSTU-style SiLU) -> self-attention with optional
mixed values -> Transformer block (feed-forward from :mod:`recbole_fair.model.layers`)
-> encoder -> embeddings -> the common RecBole model base
:class:`ActionSequenceRecommender` (batch layout, loss, prediction).

The task (generative ranking): a user history of (item ``i_n``, action ``a_n``) pairs in time
order, ``a_n`` a multi-hot vector over K action types; predict ``a_n`` from ``i_1..i_n`` and
``a_1..a_{n-1}``, at every position. Every model maps ``items [B, T]`` and
``actions [B, T, K]`` to ``logits [B, T, K]`` such that ``logits[:, n]`` never depends on
``actions[:, n:]`` or ``items[:, n+1:]``.

Reference:
    "Beyond Interleaving: Causal Attention Reformulations for Generative Recommender Systems",
    arXiv 2603.10369 (AttnLFA, AttnMVP).
    Jiaqi Zhai et al. "Actions Speak Louder than Words: Trillion-Parameter Sequential
    Transducers for Generative Recommendations." ICML 2024 (HSTU: interleaved item/action
    tokens, pointwise SiLU attention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

# Importing the models registers BCE / NE / AUROC with RecBole before its Config checks metrics.
import recbole_fair.evaluator.action_metrics  # noqa: F401
from recbole_fair.model.action_settings import ActionModelSettings
from recbole_fair.model.layers import FeedForward, _dropout


# ---------------------------------------------------------------------------- masks
def causal_mask(
    length: int, device: torch.device | None = None, strict: bool = False
) -> torch.Tensor:
    r"""Boolean causal mask, ``True`` where query ``n`` may attend key ``j``.

    Args:
        length (int): sequence length ``T``.
        device (torch.device, optional): device of the mask.
        strict (bool): ``j < n`` (diagonal excluded) instead of ``j <= n``.

    Returns:
        torch.BoolTensor: ``[T, T]``.
    """
    return torch.ones(length, length, dtype=torch.bool, device=device).tril(-1 if strict else 0)


# ---------------------------------------------------------------------------- attention
def attention_weights(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor, attention_type: str
) -> torch.Tensor:
    r"""Explicit attention weights.

    * ``softmax``: :math:`\mathrm{softmax}_j(q_n\cdot k_j/\sqrt{d_h})` over the allowed keys.
    * ``silu`` (HSTU-style pointwise attention): :math:`\mathrm{SiLU}(q_n\cdot k_j/\sqrt{d_h})`
      divided by the number of keys query ``n`` may attend (HSTU divides by the sequence
      length; dividing by the causal count keeps the scale independent of padding).

    Args:
        q (torch.Tensor): queries ``[B, h, T, d_h]``.
        k (torch.Tensor): keys ``[B, h, S, d_h]``.
        mask (torch.BoolTensor): ``[T, S]``, ``True`` = allowed. Every row must allow at least
            one key for ``softmax``.
        attention_type (str): ``softmax`` or ``silu``.

    Returns:
        torch.Tensor: weights ``[B, h, T, S]``, exactly 0 where ``mask`` is ``False``.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # [B, h, T, S]
    if attention_type == "softmax":
        return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    count = mask.sum(dim=-1, keepdim=True).clamp(min=1)  # [T, 1]
    return F.silu(scores).masked_fill(~mask, 0.0) / count


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    attention_type: str,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    r"""Attention output ``weights @ v``; softmax goes through
    :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels where available).

    Args:
        q (torch.Tensor): ``[B, h, T, d_h]``.
        k (torch.Tensor): ``[B, h, S, d_h]``.
        v (torch.Tensor): ``[B, h, S, d_v]``.
        mask (torch.BoolTensor): ``[T, S]``, ``True`` = allowed.
        attention_type (str): ``softmax`` or ``silu``.
        dropout_p (float): dropout on the attention weights (pass 0 in eval mode).

    Returns:
        torch.Tensor: ``[B, h, T, d_v]``.
    """
    if attention_type == "softmax":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    weights = attention_weights(q, k, mask, attention_type)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    r"""``[B, T, d]`` -> ``[B, h, T, d / h]``."""
    batch, length, width = x.shape
    return x.view(batch, length, n_heads, width // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    r"""``[B, h, T, d_h]`` -> ``[B, T, h * d_h]``."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


class CausalSelfAttention(nn.Module):
    r"""Multi-head causal self-attention, optionally with AttnMVP's mixed values.

    Plain: :math:`O_n=\sum_{j\le n}\alpha_{nj}V_j`. Mixed (``mixed_values=True``): the same
    weights also pool a second value stream projected from the action embeddings, with the
    diagonal masked, :math:`O_n=\sum_{j\le n}\alpha_{nj}V^{item}_j+\sum_{j<n}\alpha_{nj}V^{act}_j`,
    so no layer ever carries ``a_n`` to position ``n``.

    Args:
        hidden_size (int): model width ``d``.
        n_heads (int): number of heads (divides ``d``).
        attention_type (str): ``softmax`` or ``silu``.
        attn_dropout_prob (float): dropout on the attention weights.
        mixed_values (bool): add the action value stream (AttnMVP).
    """

    def __init__(
        self,
        hidden_size: int,
        n_heads: int,
        attention_type: str,
        attn_dropout_prob: float,
        mixed_values: bool = False,
    ):
        super().__init__()
        self.n_heads = n_heads
        self.attention_type = attention_type
        self.attn_dropout_prob = attn_dropout_prob
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.action_value = nn.Linear(hidden_size, hidden_size) if mixed_values else None
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        Args:
            x (torch.Tensor): hidden states ``[B, T, d]`` (queries, keys and item values).
            mask (torch.BoolTensor): ``[T, T]`` for the item values.
            actions (torch.Tensor, optional): action embeddings ``[B, T, d]`` (mixed values only).
            action_mask (torch.BoolTensor, optional): ``[T, T]`` for the action values (strict).

        Returns:
            torch.Tensor: ``[B, T, d]``.
        """
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        dropout_p = self.attn_dropout_prob if self.training else 0.0
        if self.action_value is None:
            o = attend(q, k, v, mask, self.attention_type, dropout_p)  # [B, h, T, d_h]
        else:
            weights = attention_weights(q, k, mask, self.attention_type)  # [B, h, T, T]
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            va = split_heads(self.action_value(actions), self.n_heads)  # [B, h, T, d_h]
            o = weights @ v + weights.masked_fill(~action_mask, 0.0) @ va  # [B, h, T, d_h]
        return self.out(merge_heads(o))  # [B, T, d]


@dataclass(frozen=True)
class BlockSettings:
    r"""Hyper-parameters of one :class:`TransformerBlock`, shared by every block of a
    :class:`CausalEncoder`.

    Attributes:
        hidden_size (int): model width.
        n_heads (int): attention heads.
        inner_size (int): MLP width.
        attention_type (str): ``softmax`` or ``silu``.
        hidden_dropout_prob (float): dropout on both residual branches.
        attn_dropout_prob (float): dropout on the attention weights.
        layer_norm_eps (float): LayerNorm epsilon.
        mixed_values (bool): AttnMVP's action value stream in the attention.
    """

    hidden_size: int
    n_heads: int
    inner_size: int
    attention_type: str
    hidden_dropout_prob: float
    attn_dropout_prob: float
    layer_norm_eps: float
    mixed_values: bool = False


class TransformerBlock(nn.Module):
    r"""Pre-LayerNorm block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``.

    Args:
        settings (BlockSettings): the block's hyper-parameters.
    """

    def __init__(self, settings: BlockSettings):
        super().__init__()
        width, eps = settings.hidden_size, settings.layer_norm_eps
        self.ln_attn = nn.LayerNorm(width, eps=eps)
        self.attn = CausalSelfAttention(
            width,
            settings.n_heads,
            settings.attention_type,
            settings.attn_dropout_prob,
            settings.mixed_values,
        )
        self.ln_mlp = nn.LayerNorm(width, eps=eps)
        self.mlp = FeedForward(width, settings.inner_size)
        self.dropout = _dropout(settings.hidden_dropout_prob)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.ln_attn(x), mask, actions, action_mask))
        return x + self.dropout(self.mlp(self.ln_mlp(x)))  # [B, T, d]


class CausalEncoder(nn.Module):
    r"""A stack of :class:`TransformerBlock` with a final LayerNorm.

    Args:
        n_layers (int): number of blocks.
        settings (BlockSettings): hyper-parameters of every block.
    """

    def __init__(self, n_layers: int, settings: BlockSettings):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(settings) for _ in range(n_layers))
        self.ln_final = nn.LayerNorm(settings.hidden_size, eps=settings.layer_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        Args:
            x (torch.Tensor): input embeddings ``[B, T, d]``.
            mask (torch.BoolTensor): ``[T, T]`` self-attention mask.
            actions (torch.Tensor, optional): action embeddings ``[B, T, d]``, mixed into the
                values of every layer (AttnMVP).
            action_mask (torch.BoolTensor, optional): ``[T, T]`` mask of the action values.

        Returns:
            torch.Tensor: ``[B, T, d]``.
        """
        for block in self.blocks:
            x = block(x, mask, actions, action_mask)
        return self.ln_final(x)


# ---------------------------------------------------------------------------- embeddings
class ActionEmbedding(nn.Module):
    r"""Item, position and action embeddings shared by the three models.

    The action embedding is affine in the multi-hot vector (``Linear(K, d)`` with bias), so
    "no action of any type" is a learned vector distinct from padding.

    Args:
        n_items (int): item vocabulary size (id 0 = padding).
        num_action_types (int): K.
        hidden_size (int): d.
        max_positions (int): number of learned positions.
        hidden_dropout_prob (float): dropout on the summed embeddings.
    """

    def __init__(
        self,
        n_items: int,
        num_action_types: int,
        hidden_size: int,
        max_positions: int,
        hidden_dropout_prob: float,
    ):
        super().__init__()
        self.item = nn.Embedding(n_items, hidden_size, padding_idx=0)
        self.position = nn.Embedding(max_positions, hidden_size)
        self.action = nn.Linear(num_action_types, hidden_size)
        self.dropout = _dropout(hidden_dropout_prob)

    def positions(self, length: int, device: torch.device) -> torch.Tensor:
        r"""Position embeddings ``[1, T, d]`` for ``0..T-1``."""
        return self.position(torch.arange(length, device=device)).unsqueeze(0)

    def items(self, items: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        r"""Item + position (+ ``extra``) embeddings ``[B, T, d]`` of ``items [B, T]``."""
        x = self.item(items) + self.positions(items.size(1), items.device)
        return self.dropout(x if extra is None else x + extra)

    def actions(
        self, actions: torch.Tensor, positions: bool = False, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Action embeddings ``[B, T, d]`` of multi-hot ``actions [B, T, K]``, with position
        embeddings when ``positions`` (action tokens of the interleaved sequence), plus ``extra``."""
        x = self.action(actions)
        if positions:
            x = x + self.positions(actions.size(1), actions.device)
        return self.dropout(x if extra is None else x + extra)


def prediction_head(in_size: int, hidden_size: int, num_action_types: int) -> nn.Module:
    r"""``in -> d -> K`` MLP giving one logit per action type."""
    return nn.Sequential(
        nn.Linear(in_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, num_action_types)
    )


# ---------------------------------------------------------------------------- RecBole base
class ActionSequenceRecommender(SequentialRecommender):
    r"""RecBole base of the action-prediction models.

    Batch layout (from :class:`recbole_fair.data.action_dataset.ActionSequenceDataset`): the
    history ``item_id_list [B, L]`` / ``<LABEL_FIELD>_list [B, L, K]`` (right-padded,
    ``item_length`` valid entries), and the last position ``item_id [B]`` / ``LABEL_FIELD
    [B, K]``. The model sees the joined sequence of ``item_length + 1`` positions, padded to
    ``T = L + 1``. Training rows are loss-bearing at every position; evaluation rows are scored
    at their last position only.

    Subclasses implement :meth:`forward` (``items [B, T]``, ``actions [B, T, K]`` ->
    ``logits [B, T, K]``).

    Raises:
        ValueError: the dataset is not an action dataset.
        ConfigError: a config key is missing or out of range
            (:class:`~recbole_fair.model.action_settings.ActionModelSettings`).
    """

    input_type = InputType.POINTWISE
    #: The settings class of the model's config keys (AttnLFA adds ``lfa_pooling``).
    settings_class: type[ActionModelSettings] = ActionModelSettings

    def __init__(self, config: Any, dataset: Any):
        super().__init__(config, dataset)

        # load parameters info
        self.settings = s = self.settings_class.from_config(config, type(self).__name__)
        self.hidden_size, self.n_heads = s.hidden_size, s.n_heads
        self.attention_type, self.attn_dropout_prob = s.attention_type, s.attn_dropout_prob
        self.LABEL = config["LABEL_FIELD"]
        self.LABEL_SEQ = self.LABEL + config["LIST_SUFFIX"]
        action_names = getattr(dataset, "action_names", None)
        if not action_names:
            raise ValueError(
                f"{type(self).__name__} needs an action dataset (recbole_fair.data."
                f"{type(self).__name__}Dataset, built from `action_field` and `action_types`); "
                f"got {type(dataset).__name__}. Create it with recbole_fair.utils.create_dataset."
            )
        self.action_names: list[str] = list(action_names)
        self.num_action_types = len(self.action_names)

    # ------------------------------------------------------------------ shared building blocks
    def _encoder(self, mixed_values: bool = False) -> CausalEncoder:
        s = self.settings
        block = BlockSettings(
            s.hidden_size,
            s.n_heads,
            s.inner_size,
            s.attention_type,
            s.hidden_dropout_prob,
            s.attn_dropout_prob,
            s.layer_norm_eps,
            mixed_values,
        )
        return CausalEncoder(s.n_layers, block)

    def _embedding(self, max_positions: int) -> ActionEmbedding:
        return ActionEmbedding(
            self.n_items,
            self.num_action_types,
            self.hidden_size,
            max_positions,
            self.settings.hidden_dropout_prob,
        )

    def _init_weights(self, module: nn.Module) -> None:
        r"""RecBole's Transformer initialisation (normal(0, initializer_range), LN = identity)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.settings.initializer_range)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    # ------------------------------------------------------------------ batch layout
    def full_sequence(self, interaction: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Join history and last position into one right-padded sequence.

        Args:
            interaction (Interaction): a batch of an action dataset.

        Returns:
            tuple:
                - items (torch.LongTensor): ``[B, T]``, ``T = max(item_length) + 1``.
                - actions (torch.Tensor): ``[B, T, K]`` (the last position holds the label).
                - lengths (torch.LongTensor): ``[B]`` valid positions, ``item_length + 1``.
        """
        seq_len = interaction[self.ITEM_SEQ_LEN]  # [B]
        length = int(seq_len.max()) + 1
        items = interaction[self.ITEM_SEQ][:, :length]  # [B, <=T]
        actions = interaction[self.LABEL_SEQ][:, :length].float()  # [B, <=T, K]
        if items.size(1) < length:  # the history is full: make room for the last position
            items = F.pad(items, (0, 1))
            actions = F.pad(actions, (0, 0, 0, 1))
        rows = torch.arange(items.size(0), device=items.device)
        items = items.clone()
        actions = actions.clone()
        items[rows, seq_len] = interaction[self.ITEM_ID]
        actions[rows, seq_len] = interaction[self.LABEL].float()
        return items, actions, seq_len + 1

    def forward(self, items: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        r"""Logits of every action type at every position.

        Args:
            items (torch.LongTensor): ``[B, T]`` item ids (0 = padding, right-padded).
            actions (torch.Tensor): ``[B, T, K]`` multi-hot actions; ``actions[:, n]`` is the
                label at position ``n`` and is never used to predict it.

        Returns:
            torch.Tensor: ``[B, T, K]`` logits.
        """
        raise NotImplementedError

    def calculate_loss(self, interaction: Any) -> torch.Tensor:
        r"""Mean binary cross-entropy over every valid position and action type."""
        items, actions, lengths = self.full_sequence(interaction)
        logits = self.forward(items, actions)  # [B, T, K]
        valid = torch.arange(items.size(1), device=items.device) < lengths.unsqueeze(1)  # [B, T]
        return F.binary_cross_entropy_with_logits(logits[valid], actions[valid])

    def predict(self, interaction: Any) -> torch.Tensor:
        r"""Probabilities of each action type at the last position (the evaluation target).

        Returns:
            torch.Tensor: ``[B, K]``.
        """
        items, actions, lengths = self.full_sequence(interaction)
        rows = torch.arange(items.size(0), device=items.device)
        actions[rows, lengths - 1] = 0.0  # the label is never an input (belt and braces)
        logits = self.forward(items, actions)  # [B, T, K]
        return torch.sigmoid(logits[rows, lengths - 1])  # [B, K]

    def full_sort_predict(self, interaction: Any) -> torch.Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} predicts action labels, not a ranking over all items: use "
            "eval_args.mode 'labeled' with metrics [BCE, NE, AUROC]."
        )
