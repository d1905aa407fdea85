r"""recbole_fair.analysis.popularity
################################

How popular are the items a trained model recommends? Popularity bias of top-k lists
(``benchmarks/rec_popularity.py`` prints the table).

For a checkpoint (any model: FAIR, SASRec, ...) :func:`top_k` ranks every item for every test
user exactly as RecBole's full-sort evaluation does (padding item and, where the loader has one,
the user's history masked); :func:`profile` reports

* the mean and median training popularity of the recommended items (how often an item is a
  training target in RecBole's sequential split, the same counts for every model, whatever its
  own training layout: :func:`training_statistics`),
* the share of recommendations falling in each popularity bucket next to the share of the
  *test targets* in that bucket (a model without popularity bias recommends the tail about as
  often as the tail is the answer),
* catalogue coverage: distinct items recommended to at least one user / all items.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from recbole_fair.analysis.user_buckets import POPULARITY_EDGES, bucket_labels, split_statistics
from recbole_fair.checkpoint import LoadedModel

K = 10


def masked_topk(scores: torch.Tensor, history_index: Any, k: int) -> torch.Tensor:
    r"""``Trainer._full_sort_batch_eval``'s masking (padding item, history if any), then the
    top-``k`` item ids ``[B, k]`` (on the CPU). ``scores`` is masked in place."""
    scores = scores.view(scores.size(0), -1)
    scores[:, 0] = -np.inf
    if history_index is not None:
        scores[history_index] = -np.inf
    return scores.topk(k, dim=1).indices.cpu()  # [B, k]


@torch.no_grad()
def top_k(
    loaded: LoadedModel, k: int = K, data: Any = None, score_bias: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Top-k item ids per user ``[users, k]`` and the targets ``[targets]`` of an evaluation
    loader (default: the test loader; leave-one-out, so one target per user, in user order).
    ``score_bias`` (``[n_items]``, optional) is added to every user's scores first."""
    tops, targets = [], []
    for interaction, history_index, _, positive_i in loaded.test_data if data is None else data:
        interaction = interaction.to(loaded.config["device"])
        scores = loaded.model.full_sort_predict(interaction)
        if score_bias is not None:
            scores = scores + score_bias.to(scores.device)  # -inf (padding item) stays -inf
        tops.append(masked_topk(scores, history_index, k).numpy())
        targets.append(positive_i.cpu().numpy())
    return np.concatenate(tops), np.concatenate(targets)


def training_statistics(loaded: LoadedModel) -> dict[str, np.ndarray]:
    r"""RecBole's sequential split of a checkpoint's dataset, whatever the model
    (:func:`~recbole_fair.analysis.user_buckets.split_statistics`)."""
    config = {"data_path": os.path.dirname(os.path.normpath(loaded.config["data_path"]))}
    return split_statistics(config, loaded.config["dataset"])


def training_popularity(loaded: LoadedModel) -> np.ndarray:
    r"""Training-target count per internal item id of a checkpoint's dataset."""
    return training_statistics(loaded)["item_popularity"]


def measure(loaded: LoadedModel, popularity: np.ndarray) -> dict[str, Any]:
    r"""Popularity figures (:func:`profile`) of one loaded checkpoint's top-10 lists.

    Raises:
        ValueError: ``popularity`` does not count this checkpoint's items.
    """
    if len(popularity) != loaded.dataset.item_num:
        raise ValueError(
            f"{loaded.path}: {loaded.dataset.item_num} item ids, but the popularity counts "
            f"have {len(popularity)}: not the same dataset"
        )
    top, targets = top_k(loaded)
    return {
        "checkpoint": loaded.path,
        "model": loaded.config["model"],
        "dataset": loaded.config["dataset"],
        **profile(top, targets, popularity),
    }


def profile(top: np.ndarray, targets: np.ndarray, popularity: np.ndarray) -> dict[str, Any]:
    r"""Popularity figures of top-k lists ``top`` ``[users, k]`` against their ``targets``;
    ``popularity`` ``[n_items]`` counts training targets per item id (0 = padding)."""
    rec_pop, target_pop = popularity[top.ravel()], popularity[targets]
    edges = np.asarray(POPULARITY_EDGES)
    rec_bucket = np.searchsorted(edges, rec_pop, side="left")
    target_bucket = np.searchsorted(edges, target_pop, side="left")
    n_items = len(popularity) - 1  # without the padding item
    return {
        "users": int(top.shape[0]),
        "mean_popularity": float(rec_pop.mean()),
        "median_popularity": float(np.median(rec_pop)),
        "target_mean_popularity": float(target_pop.mean()),
        "coverage": float(len(np.unique(top)) / n_items),
        "buckets": {
            label: {
                "recommended": float((rec_bucket == b).mean()),
                "targets": float((target_bucket == b).mean()),
            }
            for b, label in enumerate(bucket_labels(POPULARITY_EDGES))
        },
    }
