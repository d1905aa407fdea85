r"""recbole_fair.model.losses
##########################

FAIR's three training objectives as plain functions, and :class:`FAIRLoss`, the terms of a batch:

* :func:`mtp_loss` -- multi-token prediction: all ``L`` codes of the next item in parallel,
  mean over digits of the cross-entropy.
* :func:`perturb_code_tokens` and :func:`nrt_triplet_loss` -- noise robustness: a randomly
  masked/substituted copy of the input codes must map close to the clean hidden state and farther
  than another sequence's.
* :func:`mim_info_nce` -- mutual information maximisation: InfoNCE between the pooled sequence
  representation and its target item's embedding, in-batch negatives.
* :func:`item_softmax_loss` -- a recbole-fair extension (``item_loss_weight``): cross-entropy over
  all items of the ranking score, the digit logits summed along each item's codes.

Reference:
    Longtao Xiao et al. "FAIR: Focused Attention Is All You Need for Generative Recommendation."
    arXiv 2512.11254, 2025.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

NRT_DISTANCES = ("squared_l2", "cosine")


class FAIRLoss(NamedTuple):
    r"""The weighted loss terms of a FAIR/RPG batch, always these four (RecBole's trainer sums a
    tuple and logs each part). A term that is switched off is an exact zero, so the sum is the
    same, bit for bit, as without it.

    Attributes:
        mtp (torch.Tensor): ``L_MTP``, multi-token prediction.
        nrt (torch.Tensor): ``α·L_NRT``, noise robustness (``nrt_weight = α``).
        mim (torch.Tensor): ``β·L_MIM``, mutual information maximisation (``mim_weight = β``).
        item (torch.Tensor): ``w·L_item``, the item-level loss (``item_loss_weight = w``, a
            recbole-fair extension).
    """

    mtp: torch.Tensor
    nrt: torch.Tensor
    mim: torch.Tensor
    item: torch.Tensor


def mtp_loss(logits: torch.Tensor, target_codes: torch.Tensor) -> torch.Tensor:
    r"""Multi-token prediction loss: mean over digits of the per-digit cross-entropy.

    Args:
        logits (torch.Tensor): digit logits, shape ``[N, L, K]``.
        target_codes (torch.Tensor): target code of each digit in ``[0, K)``, shape ``[N, L]``.

    Returns:
        torch.Tensor: scalar loss, ``(1/L) Σ_l mean_n CE(logits[n, l], target_codes[n, l])``.
    """
    N, L, K = logits.shape
    # Every digit has the same N examples, so the mean over (n, l) is the mean over digits.
    return F.cross_entropy(logits.reshape(N * L, K), target_codes.reshape(N * L))


def item_softmax_loss(code_sums: torch.Tensor, targets: torch.Tensor, n_codes: int) -> torch.Tensor:
    r"""Item-level softmax cross-entropy over the ranking score.

    The logit of item ``i`` is ``(1/L) Σ_l logit_l(c_l(i))``, the mean over digits of the digit
    logits along its codes: the score FAIR ranks items by, up to a per-row constant. The mean
    (not the sum) keeps the logits on the scale of one digit's (``cos/τ``). The padding item 0
    is left out of the softmax.

    Args:
        code_sums (torch.Tensor): ``Σ_l logit_l(c_l(i))`` for every item, shape ``[N, n_items]``.
        targets (torch.Tensor): target item ids in ``[1, n_items)``, shape ``[N]``.
        n_codes (int): ``L``.

    Returns:
        torch.Tensor: scalar loss, mean over the ``N`` rows.
    """
    if code_sums.size(1) < 2:
        raise ValueError("item_softmax_loss needs at least one item besides the padding item 0.")
    # the softmax over items 1..n-1; target i becomes column i - 1
    return F.cross_entropy(code_sums[:, 1:] / n_codes, targets - 1)


def perturb_code_tokens(
    tokens: torch.Tensor,
    codebook_size: int,
    mask_token: int,
    mask_prob: float,
    sub_prob: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Perturbed copy of a code-token sequence for the noise-robustness task.

    Each non-padding token is, independently, replaced by ``mask_token`` with probability
    ``mask_prob``, else substituted by a uniformly drawn code of the same digit with probability
    ``sub_prob`` (it may draw the original code), else kept. Padding (token 0) is untouched.

    Args:
        tokens (torch.Tensor): code tokens ``1 + l*K + c`` (0 = padding), shape ``[..., L]``.
        codebook_size (int): ``K``.
        mask_token (int): id of the mask token.
        mask_prob (float): masking probability.
        sub_prob (float): substitution probability.
        generator (torch.Generator, optional): random generator (on ``tokens.device``).

    Returns:
        torch.Tensor: perturbed tokens, same shape and dtype as ``tokens``.
    """
    if mask_prob < 0 or sub_prob < 0 or mask_prob + sub_prob > 1:
        raise ValueError(
            f"nrt_mask_prob [{mask_prob}] and nrt_sub_prob [{sub_prob}] must be >= 0 "
            f"and sum to at most 1."
        )
    L = tokens.size(-1)
    u = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    digit = torch.arange(L, device=tokens.device)  # [L]
    random_codes = torch.randint(
        codebook_size, tokens.shape, generator=generator, device=tokens.device
    )
    substitutes = 1 + digit * codebook_size + random_codes  # [..., L]
    out = torch.where(u < mask_prob, torch.full_like(tokens, mask_token), tokens)
    out = torch.where((u >= mask_prob) & (u < mask_prob + sub_prob), substitutes, out)
    return torch.where(tokens == 0, tokens, out)


def nrt_triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float,
    distance: str = "squared_l2",
) -> torch.Tensor:
    r"""Triplet loss ``mean(max(0, D(h, h̃) − D(h, h⁻) + margin))``.

    Args:
        anchor (torch.Tensor): clean hidden states ``h``, shape ``[N, d]``.
        positive (torch.Tensor): hidden states of the perturbed input ``h̃``, shape ``[N, d]``.
        negative (torch.Tensor): hidden states of other sequences ``h⁻``, shape ``[N, d]``.
        margin (float): the margin.
        distance (str): ``squared_l2`` (``‖a − b‖²``) or ``cosine`` (``1 − cos(a, b)``).

    Returns:
        torch.Tensor: scalar loss.
    """
    d_pos = nrt_distance(anchor, positive, distance)  # [N]
    d_neg = nrt_distance(anchor, negative, distance)  # [N]
    return F.relu(d_pos - d_neg + margin).mean()


def nrt_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "squared_l2") -> torch.Tensor:
    r"""Row-wise distance of the NRT triplet loss: ``squared_l2`` (``‖a − b‖²``) or ``cosine``
    (``1 − cos(a, b)``), shape ``[N]`` for inputs ``[N, d]``."""
    if distance == "squared_l2":
        return (a - b).pow(2).sum(-1)
    if distance == "cosine":
        return 1 - F.cosine_similarity(a, b, dim=-1)
    raise ValueError(f"nrt_distance must be one of {NRT_DISTANCES}, got [{distance}].")


def mim_info_nce(
    seq_repr: torch.Tensor,
    target_repr: torch.Tensor,
    temperature: float,
    target_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""InfoNCE between sequence and target-item representations with in-batch negatives.

    ``logits[i, j] = cos(seq_repr[i], target_repr[j]) / temperature``; row ``i``'s positive is
    column ``i``. With ``target_ids``, columns ``j != i`` whose target item equals row ``i``'s
    (false negatives: the same item twice in a batch) are left out of the softmax.

    Args:
        seq_repr (torch.Tensor): pooled sequence representations, shape ``[B, d]``.
        target_repr (torch.Tensor): target item representations, shape ``[B, d]``.
        temperature (float): softmax temperature (> 0).
        target_ids (torch.Tensor, optional): target item ids, shape ``[B]``.

    Returns:
        torch.Tensor: scalar loss.
    """
    if temperature <= 0:
        raise ValueError(f"mim_temperature must be > 0, got [{temperature}].")
    logits = F.normalize(seq_repr, dim=-1) @ F.normalize(target_repr, dim=-1).T  # [B, B]
    logits = logits / temperature
    labels = torch.arange(logits.size(0), device=logits.device)
    if target_ids is not None:
        same = target_ids.unsqueeze(1) == target_ids.unsqueeze(0)  # [B, B]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, labels)
