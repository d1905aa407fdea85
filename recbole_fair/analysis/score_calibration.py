r"""recbole_fair.analysis.score_calibration
#######################################

Sweep the prior-correction weight of a trained FAIR or RPG checkpoint, without retraining
(``benchmarks/score_calibration.py`` prints the table).

FAIR ranks by a sum of independently predicted digit log-probabilities, which counts the codes'
prior once per digit and favours the head of the catalogue (docs/notes/investigation.md).
``score_prior_correction = γ`` adds ``γ · (log q(i) − Σ_l log q_l(c_l(i)))`` to every item's score
(:mod:`recbole_fair.model.calibration`; γ = 1 is the naive-Bayes combination of the digits).

For every γ :func:`sweep` ranks all items for every validation and test user (RecBole's
full-sort protocol: padding item masked, leave-one-out, one target per user) and reports R@5,
N@5, R@10, N@10, the popularity profile of the test top-10 lists
(:func:`recbole_fair.analysis.popularity.profile`) and test N@10 by the target's training
popularity. The weight to use is the one with the best *validation* N@10 (:func:`select`).

The item prior ``q`` counts every training target, or, with ``prior = N``, the items of each
user's ``N`` most recent training targets (what the model option ``score_prior_recent: N``
counts): :func:`item_counts`, :func:`set_item_prior`.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from recbole_fair.analysis.popularity import K, profile, top_k
from recbole_fair.analysis.user_buckets import POPULARITY_EDGES, bucket_labels
from recbole_fair.checkpoint import LoadedModel
from recbole_fair.data.item_counts import recent_target_counts
from recbole_fair.model.calibration import prior_correction


def set_item_prior(model: Any, counts: np.ndarray) -> None:
    r"""Recompute a FAIR/RPG model's prior-correction term from item counts ``[n_items]``.

    Raises:
        ValueError: ``counts`` does not have one entry per item id of the model.
    """
    codes = model.item_codes.detach().cpu()
    if len(counts) != codes.size(0):
        raise ValueError(
            f"{len(counts)} item counts for a model of {codes.size(0)} item ids: not the "
            f"checkpoint's dataset"
        )
    bias = prior_correction(torch.as_tensor(counts), codes, model.codebook_size)
    model.item_prior_bias = bias.to(model.item_prior_bias.device)


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
    loaded: LoadedModel, weights: Iterable[float], popularity: np.ndarray
) -> list[dict[str, Any]]:
    r"""One row per weight: validation and test metrics, test popularity profile.

    Raises:
        ValueError: a model without ``score_prior_correction``, or no validation split.
    """
    if not hasattr(loaded.model, "score_prior_correction"):
        raise ValueError(
            f"{loaded.path}: model {loaded.config['model']} has no score_prior_correction "
            f"(only semantic-ID models with factorised scores, FAIR and RPG, have one)"
        )
    if loaded.valid_data is None:
        raise ValueError(f"{loaded.path}: the checkpoint was loaded without a validation split")
    rows = []
    for weight in weights:
        loaded.model.score_prior_correction = float(weight)
        row: dict[str, Any] = {"weight": float(weight)}
        for split, data in (("valid", loaded.valid_data), ("test", loaded.test_data)):
            top, targets = top_k(loaded, K, data)
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
