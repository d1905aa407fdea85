r"""recbole_fair.analysis.score_calibration
#######################################

Sweep the prior-correction weight of a trained FAIR or RPG checkpoint, without retraining
(``benchmarks/score_calibration.py`` prints the table).

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
``b(i) = log q(i) − Σ_l log q_l(c_l(i))``; :func:`sweep` adds ``γ · b`` to a checkpoint's scores
for each ``γ`` (0 = the paper's score, 1 = naive Bayes).

The models do not carry the correction (the config keys ``score_prior_correction`` and
``score_prior_recent`` are gone): trained with it, FAIR measured no significant gain on the
committed leaderboards (Amazon_Beauty, γ = 1: test N@10 .0397 -> .0403, per-user Wilcoxon
p = 0.34). This is analysis code.

For every γ :func:`sweep` ranks all items for every validation and test user (RecBole's
full-sort protocol: padding item masked, leave-one-out, one target per user) and reports R@5,
N@5, R@10, N@10, the popularity profile of the test top-10 lists
(:func:`recbole_fair.analysis.popularity.profile`) and test N@10 by the target's training
popularity. The weight to use is the one with the best *validation* N@10 (:func:`select`).

The item prior ``q`` counts every training target, or, with ``prior = N``, the items of each
user's ``N`` most recent training targets
(:func:`recbole_fair.data.item_counts.recent_target_counts`): a recency-weighted popularity,
closer in time to the held-out targets (docs/notes/investigation.md, section 0c):
:func:`item_counts`, :func:`item_prior`.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from recbole_fair.analysis.popularity import K, profile, top_k
from recbole_fair.analysis.user_buckets import POPULARITY_EDGES, bucket_labels
from recbole_fair.checkpoint import LoadedModel
from recbole_fair.data.item_counts import recent_target_counts
from recbole_fair.model.sequential_recommender.fair import FAIR


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


def item_prior(model: Any, counts: np.ndarray) -> torch.Tensor:
    r"""The prior-correction term ``b`` ``[n_items]`` of a FAIR/RPG model's codes from item
    counts ``[n_items]`` (:func:`prior_correction`).

    Raises:
        ValueError: ``counts`` does not have one entry per item id of the model.
    """
    codes = model.item_codes.detach().cpu()
    if len(counts) != codes.size(0):
        raise ValueError(
            f"{len(counts)} item counts for a model of {codes.size(0)} item ids: not the "
            f"checkpoint's dataset"
        )
    return prior_correction(torch.as_tensor(counts), codes, model.codebook_size)


def item_counts(
    loaded: LoadedModel, stats: dict[str, np.ndarray], prior: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Training-target count per item (the popularity of the report's profile columns) and,
    with ``prior = N``, the counts of each user's ``N`` most recent training targets.

    Args:
        loaded: the checkpoint.
        stats: its dataset's split
            (:func:`~recbole_fair.analysis.popularity.training_statistics`).
        prior: ``None`` (every training target) or ``N``.

    Raises:
        ValueError: ``stats`` numbers the items differently from the checkpoint's dataset.
    """
    dataset = loaded.dataset
    own_tokens = np.asarray(dataset.field2id_token[dataset.iid_field])
    if not np.array_equal(stats["item_tokens"], own_tokens):
        raise ValueError(
            f"{loaded.path}: the training split rebuilt from {loaded.config['dataset']}'s files "
            f"does not number the items as the checkpoint's dataset does ({len(own_tokens)} vs "
            f"{len(stats['item_tokens'])} ids): pass the --data_path it was trained on"
        )
    popularity = stats["item_popularity"]
    if prior is None:
        return popularity, None
    recent = recent_target_counts(
        stats["train_uid"], stats["train_history"], stats["train_target"], len(popularity), prior
    )
    return popularity, recent.numpy()


def ranks_of_targets(top: np.ndarray, targets: np.ndarray) -> np.ndarray:
    r"""0-based rank of each user's target in its top-k list, ``inf`` where it is not there."""
    hit = top == targets[:, None]  # [users, k]
    return np.where(hit.any(1), hit.argmax(1), np.inf)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    r"""Per-user NDCG@k of one target at 0-based rank ``ranks`` (``inf``: not in the list)."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ranking_metrics(ranks: np.ndarray) -> dict[str, float]:
    r"""Recall@5/10 and NDCG@5/10 of one target per user (RecBole's definitions)."""
    out = {}
    for k in (5, 10):
        out[f"recall@{k}"] = float((ranks < k).mean())
        out[f"ndcg@{k}"] = float(ndcg(ranks, k).mean())
    return out


def ndcg_by_target_popularity(ranks: np.ndarray, target_pop: np.ndarray) -> dict[str, float]:
    r"""Mean N@10 of the users whose target's training popularity falls in each bucket."""
    bucket = np.searchsorted(np.asarray(POPULARITY_EDGES), target_pop, side="left")
    per_user = ndcg(ranks, K)
    return {
        label: float(per_user[bucket == b].mean()) if (bucket == b).any() else float("nan")
        for b, label in enumerate(bucket_labels(POPULARITY_EDGES))
    }


def sweep(
    loaded: LoadedModel, weights: Iterable[float], popularity: np.ndarray, bias: torch.Tensor
) -> list[dict[str, Any]]:
    r"""One row per weight ``γ`` (scores + ``γ · bias``, ``bias`` from :func:`item_prior`):
    validation and test metrics, test popularity profile.

    Raises:
        ValueError: a model without a factorised score (not FAIR or RPG), or no validation split.
    """
    if not isinstance(loaded.model, FAIR):
        raise ValueError(
            f"{loaded.path}: model {loaded.config['model']} has no factorised score to correct "
            f"(only the semantic-ID models FAIR and RPG have one)"
        )
    if loaded.valid_data is None:
        raise ValueError(f"{loaded.path}: the checkpoint was loaded without a validation split")
    rows = []
    for weight in weights:
        row: dict[str, Any] = {"weight": float(weight)}
        score_bias = float(weight) * bias if weight else None
        for split, data in (("valid", loaded.valid_data), ("test", loaded.test_data)):
            top, targets = top_k(loaded, K, data, score_bias)
            ranks = ranks_of_targets(top, targets)
            row[split] = ranking_metrics(ranks)
        row["test_popularity"] = profile(top, targets, popularity)
        row["test_ndcg@10_by_target_popularity"] = ndcg_by_target_popularity(
            ranks, popularity[targets]
        )
        rows.append(row)
        print(
            f"gamma {weight:g}: valid N@10 {row['valid']['ndcg@10']:.4f}, "
            f"test R@5 {row['test']['recall@5']:.4f} N@10 {row['test']['ndcg@10']:.4f}, "
            f"coverage {row['test_popularity']['coverage']:.1%}",
            flush=True,
        )
    return rows


def select(rows: list[dict[str, Any]]) -> dict[str, Any]:
    r"""The row with the best validation N@10 (the smallest weight on ties)."""
    return max(rows, key=lambda r: (r["valid"]["ndcg@10"], -r["weight"]))
