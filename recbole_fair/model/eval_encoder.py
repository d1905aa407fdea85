r"""recbole_fair.model.eval_encoder
###############################

FAIR's and RPG's encoder at evaluation, where only the hidden state at the last position of each
history is read (``FAIR.forward`` in eval mode, what ``predict`` and ``full_sort_predict`` rank
from):

* :func:`length_groups`: on CPU, a batch is split into groups of rows of similar history length
  (sorted by length, equal counts), each trimmed to its own longest history, so that a batch of
  mostly short histories (Amazon_Beauty: 9.6 items on average, at most 20) stops paying for its
  longest one in every row;
* without autograd, the input embedding of a history item (the mean of its code embeddings) is
  a row of a table of every item's, built once per weights
  (:class:`~recbole_fair.model.weights_cache.WeightsCache`;
  ``n_items x d`` floats, the size of an ID model's item table);
* :func:`last_position_states`: every block but the last runs as in training; the last computes
  its keys and values at every position but its query, attention output, feed-forward and the
  final LayerNorm only at the last position of each history (the other positions feed nothing
  that is read).

The function is the full encoder's: causal attention makes position ``t`` independent of the
positions after it, so neither the trimming nor the unread positions change it. The floats may
differ in the last bits (CPU attention kernels round differently for another sequence length, as
they already did with the batch's longest history); ``tests/test_fair_model.py`` compares both
paths, ``benchmarks/bench_ranking.py`` measures them.

Evaluation only: no dropout is applied here (``FAIR.forward`` takes the full encoder in
training mode).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from recbole_fair.model.layers import Block, FocusedAttention, TransformerStack

#: Most groups of one batch, and the fewest rows per group (smaller groups lose more to the
#: per-call overhead than they save; measured on Amazon_Beauty, ``benchmarks/bench_ranking.py``).
MAX_GROUPS = 8
MIN_GROUP_ROWS = 64


def length_groups(lengths: torch.Tensor) -> list[tuple[torch.Tensor, int]] | None:
    r"""Rows of similar history length: ``(row indices, longest history)`` per group, or
    ``None`` for one group (small batches, accelerators: padding costs little in parallel).

    Args:
        lengths (torch.Tensor): history lengths ``[B]``.
    """
    n_groups = min(MAX_GROUPS, lengths.numel() // MIN_GROUP_ROWS)
    if n_groups < 2 or lengths.device.type != "cpu":
        return None
    sorted_lengths, order = torch.sort(lengths, stable=True)
    groups = order.tensor_split(n_groups)
    ends = torch.tensor([len(g) for g in groups]).cumsum(0) - 1
    return list(zip(groups, sorted_lengths[ends].tolist()))


def by_length_groups(
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    item_seq: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    r"""``encode(item_seq, lengths)`` ``[B, d]`` run on :func:`length_groups`, each group's
    histories trimmed to its longest, the rows put back in order."""
    groups = length_groups(lengths)
    if groups is None:
        return encode(item_seq, lengths)
    rows = torch.cat([group for group, _ in groups])  # [B], the groups' order
    h = torch.cat([encode(item_seq[g, :longest], lengths[g]) for g, longest in groups])
    return torch.empty_like(h).index_copy_(0, rows, h)  # [B, d]


def last_position_states(
    stack: TransformerStack, x: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    r"""The stack's output at the last position of each history.

    Args:
        stack (TransformerStack): the encoder.
        x (torch.Tensor): its input ``[B, T, d]``, histories left-aligned.
        lengths (torch.Tensor): history lengths ``[B]``, in ``[1, T]``.

    Returns:
        torch.Tensor: ``stack(x)[b, lengths[b] - 1]``, shape ``[B, d]``.
    """
    for block in stack.blocks[:-1]:
        x, _ = block(x)
    return stack.ln_f(_last_block(stack.blocks[-1], x, lengths))


def _last_block(block: Block, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    r""":class:`Block` read at the last positions: ``[B, T, d] -> [B, d]``."""
    B, T, d = x.shape
    last = (lengths - 1).view(B, 1, 1).expand(B, 1, d)
    y = block.ln1(x)  # [B, T, d]
    visible = torch.arange(T, device=x.device) < lengths.unsqueeze(1)  # [B, T]
    y_last = y.gather(1, last).squeeze(1)  # [B, d]
    x_last = x.gather(1, last).squeeze(1) + block.drop1(_attend(block.attn, y, y_last, visible))
    return x_last + block.drop2(block.mlp(block.ln2(x_last)))  # [B, d]


def _attend(
    attn: torch.nn.Module, y: torch.Tensor, y_last: torch.Tensor, visible: torch.Tensor
) -> torch.Tensor:
    r"""The attention output of the last positions only, ``[B, d]``: queries ``y_last [B, d]``
    over the keys and values of ``y [B, T, d]`` where ``visible [B, T]``."""
    B, T, d = y.shape
    H, dh = attn.n_heads, attn.head_dim
    mask = visible.view(B, 1, 1, T)
    if isinstance(attn, FocusedAttention):
        q = attn.q_proj(y_last).view(B, 1, 2, H, dh).permute(2, 0, 3, 1, 4)  # [2, B, H, 1, dh]
        k = attn.k_proj(y).view(B, T, 2, H, dh).permute(2, 0, 3, 1, 4)  # [2, B, H, T, dh]
        v = attn.v_proj(y).view(B, T, H, dh).transpose(1, 2)  # [B, H, T, dh]
        out = _focused_mix(attn, q, k, v, mask)  # [B, H, 1, dh]
    else:  # CausalSelfAttention
        q = attn.q_proj(y_last).view(B, 1, H, dh).transpose(1, 2)  # [B, H, 1, dh]
        k = attn.k_proj(y).view(B, T, H, dh).transpose(1, 2)
        v = attn.v_proj(y).view(B, T, H, dh).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, 1, dh]
    return attn.out_proj(out.transpose(1, 2).reshape(B, d))  # [B, d]


def _focused_mix(
    attn: FocusedAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    r""":class:`FocusedAttention`'s ``Norm(λ1·A1 − λ2·A2)·V`` for one query per row (``q``, ``k``:
    the two maps' stacked, ``mask [B, 1, 1, T]``), shape ``[B, H, 1, dh]``."""
    lambda1, lambda2 = attn.lambdas()
    if attn.norm == "scores":
        a1, a2 = (
            (q[i] @ k[i].transpose(-2, -1) / math.sqrt(q.size(-1)))
            .masked_fill(~mask, float("-inf"))
            .softmax(dim=-1)
            for i in (0, 1)
        )  # [B, H, 1, T] each
        a = lambda1 * a1 - lambda2 * a2
        out = (a / a.abs().sum(dim=-1, keepdim=True).clamp_min(attn.norm_eps)) @ v
    else:
        o1 = F.scaled_dot_product_attention(q[0], k[0], v, attn_mask=mask)
        o2 = F.scaled_dot_product_attention(q[1], k[1], v, attn_mask=mask)
        out = lambda1 * o1 - lambda2 * o2  # [B, H, 1, dh]
    if attn.head_norm is not None:
        out = attn.head_norm(out.to(attn.head_norm.weight.dtype)) * (1.0 - attn.lambda_init)
    return out


__all__ = [
    "MAX_GROUPS",
    "MIN_GROUP_ROWS",
    "by_length_groups",
    "last_position_states",
    "length_groups",
]
