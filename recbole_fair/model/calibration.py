r"""Prior correction of factorised semantic-ID scores: an analysis of trained FAIR/RPG checkpoints.

FAIR and RPG rank item ``i`` with codes ``c_1..c_L`` by ``Σ_l log p_l(c_l | h)``: ``L``
independently predicted digit distributions. Each ``p_l`` carries the prior of its codes (how
often any item sharing code ``c`` at digit ``l`` is a target), so the sum counts a prior ``L``
times, and items whose codes are shared with popular items rank high whatever their own
popularity (measured on Amazon_Beauty: FAIR's top-10 lists cover 33% of the catalogue, SASRec's
95%; docs/notes/investigation.md).

The naive-Bayes combination of the digit predictions counts the item prior once:

    log p(i | h) ≈ log q(i) + Σ_l [log p_l(c_l(i) | h) − log q_l(c_l(i))] + const(h)

with ``q(i)`` the item prior and ``q_l(c) = Σ_{j: c_l(j) = c} q(j)`` the code prior it induces at
digit ``l``. :func:`prior_correction` returns the per-item term
``b(i) = log q(i) − Σ_l log q_l(c_l(i))``; ``benchmarks/score_calibration.py`` adds ``γ · b`` to a
checkpoint's scores for a sweep of ``γ`` (0 = the paper's score, 1 = naive Bayes).

``q`` counts every training target, or each user's ``N`` most recent training targets only
(:func:`recent_target_counts`): a recency-weighted popularity, closer in time to the held-out
targets (docs/notes/investigation.md, section 0c).

The models no longer carry the correction (the config keys ``score_prior_correction`` and
``score_prior_recent`` are gone): trained with it, FAIR measured no significant gain on the
committed leaderboards (Amazon_Beauty, γ = 1: test N@10 .0397 -> .0403, per-user Wilcoxon
p = 0.34). This module is analysis code, used by that script only.
"""

from __future__ import annotations

from typing import Any

import torch

from recbole_fair.model.graph_decoding import count_items


def prior_correction(
    popularity: torch.Tensor, item_codes: torch.Tensor, codebook_size: int
) -> torch.Tensor:
    r"""``b(i) = log q(i) − Σ_l log q_l(c_l(i))`` for every item, ``FloatTensor [n_items]``.

    Args:
        popularity: training-target count per item ``[n_items]`` (row 0 = padding, ignored).
        item_codes: codes per item ``[n_items, L]`` in ``[0, codebook_size)``.
        codebook_size: codewords per digit ``K``.

    The item prior is add-one smoothed, ``q(i) ∝ count(i) + 1`` over the real items, so an item
    never seen in training keeps a finite score. The padding item gets ``b = 0``.
    """
    n_items = item_codes.size(0)
    if popularity.numel() != n_items:
        raise ValueError(
            f"popularity has {popularity.numel()} entries but item_codes {n_items} rows: "
            f"both must cover every item id (row 0 = padding)."
        )
    bias = torch.zeros(n_items, dtype=torch.float64)
    if n_items < 2:
        return bias.float()
    counts = popularity[1:].to(torch.float64).clamp_min(0) + 1.0
    prior = counts / counts.sum()  # q(i), [N]
    codes = item_codes[1:].to(torch.long).T  # [L, N]
    code_prior = torch.zeros(codes.size(0), codebook_size, dtype=torch.float64)
    code_prior.scatter_add_(1, codes, prior.expand_as(codes))  # q_l(c), [L, K]
    log_code_prior = code_prior.log().gather(1, codes).sum(0)  # Σ_l log q_l(c_l(i)), [N]
    bias[1:] = prior.log() - log_code_prior
    return bias.float()


def recent_target_counts(
    users: Any, history: Any, targets: Any, n_items: int, last: int
) -> torch.Tensor:
    r"""How often each item id is one of its users' ``last`` most recent training targets,
    ``LongTensor [n_items]`` (the padding item 0 and ids out of range are not counted).

    One entry per training row of RecBole's sequential split (one row per prefix, per user in
    chronological order): a row with a longer history is a later target, and among histories
    capped at ``MAX_ITEM_LIST_LENGTH`` (equal lengths) the later row is.
    """
    users, history, targets = (
        torch.as_tensor(x).long().reshape(-1) for x in (users, history, targets)
    )
    if not users.numel() == history.numel() == targets.numel():
        raise ValueError(
            f"users, history and targets need one entry per training row, got "
            f"{users.numel()}, {history.numel()} and {targets.numel()}."
        )
    if users.numel() == 0 or last < 1:
        return torch.zeros(n_items, dtype=torch.long, device=users.device)
    row = torch.arange(users.numel(), device=users.device)
    # per user, latest first: stable sorts from the least significant key (later row) up
    order = torch.argsort(-row, stable=True)
    order = order[torch.argsort(-history[order], stable=True)]
    order = order[torch.argsort(users[order], stable=True)]
    sorted_users = users[order]
    starts = torch.ones_like(sorted_users, dtype=torch.bool)
    starts[1:] = sorted_users[1:] != sorted_users[:-1]
    first = torch.cummax(torch.where(starts, row, torch.zeros_like(row)), 0).values
    return count_items(targets[order[row - first < last]], n_items)
