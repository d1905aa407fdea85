r"""Prior correction of factorised semantic-ID scores (recbole-fair's extension, not in FAIR).

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
``b(i) = log q(i) − Σ_l log q_l(c_l(i))``; a model adds ``γ · b`` to its scores (config key
``score_prior_correction = γ``: 0 = the paper's score, 1 = naive Bayes). ``b`` depends on the
training split only, so it is computed once, at model construction.

``q`` counts every training target by default. With ``score_prior_recent = N > 0`` it counts
each user's ``N`` most recent training targets only
(:func:`recbole_fair.data.item_counts.recent_target_counts`): a
recency-weighted popularity, closer in time to the held-out targets. That is no longer the
naive-Bayes prior but an empirical choice: on Amazon_Scientific it is the prior that validation
selects (docs/notes/investigation.md, section 0c).
"""

from __future__ import annotations

import torch


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
