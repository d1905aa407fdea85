r"""How popular are the items a trained model recommends? Popularity bias of top-10 lists.

For each checkpoint (any model of a leaderboard: FAIR, SASRec, ...), ranks every item for every
test user exactly as RecBole's full-sort evaluation does (padding item and, where the loader
has one, the user's history masked), takes the top-10 and reports:

* the mean and median training popularity of the recommended items (how often an item is a
  training target in RecBole's sequential split, the same counts for every model, whatever its
  own training layout),
* the share of recommendations falling in each popularity bucket next to the share of the
  *test targets* in that bucket (a model without popularity bias recommends the tail about as
  often as the tail is the answer),
* catalogue coverage: distinct items recommended to at least one user / all items.

    python benchmarks/rec_popularity.py --checkpoints A-best.pth B-best.pth \
        [--data_path ../shared/datasets] [--out docs/leaderboards/Amazon_Beauty-e40/rec_popularity.md] \
        [--labels "FAIR,SASRec"]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # the other benchmark scripts, and the package

from bench_generative import _masked_topk  # noqa: E402
from per_user_buckets import (  # noqa: E402
    POPULARITY_EDGES,
    _bucket_labels,
    save_report,
    split_statistics,
)

from recbole_fair.visualize_attention import load_checkpoint  # noqa: E402

K = 10


@torch.no_grad()
def top_k(
    loaded, k: int = K, data: Any = None, score_bias: Any = None
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
        tops.append(_masked_topk(scores, history_index, k).numpy())
        targets.append(positive_i.cpu().numpy())
    return np.concatenate(tops), np.concatenate(targets)


def training_statistics(loaded) -> dict[str, np.ndarray]:
    r"""RecBole's sequential split of a checkpoint's dataset, whatever the model
    (:func:`per_user_buckets.split_statistics`)."""
    config = {"data_path": os.path.dirname(os.path.normpath(loaded.config["data_path"]))}
    return split_statistics(config, loaded.config["dataset"])


def item_popularity(loaded) -> np.ndarray:
    r"""Training-target count per internal item id of a checkpoint's dataset."""
    return training_statistics(loaded)["item_popularity"]


def measure(loaded, popularity: np.ndarray) -> dict[str, Any]:
    r"""Popularity figures of one loaded checkpoint's top-10 lists."""
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
            for b, label in enumerate(_bucket_labels(POPULARITY_EDGES))
        },
    }


def to_markdown(reports: list[dict[str, Any]]) -> str:
    labels = list(reports[0]["buckets"])
    head = ["model", "mean pop.", "median pop.", "coverage"] + [f"pop. {b}" for b in labels]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    targets = reports[0]
    lines.append(
        "| test targets | "
        + f"{targets['target_mean_popularity']:.1f} | | | "
        + " | ".join(f"{targets['buckets'][b]['targets']:.1%}" for b in labels)
        + " |"
    )
    for r in reports:
        cells = [
            r["model"],
            f"{r['mean_popularity']:.1f}",
            f"{r['median_popularity']:.0f}",
            f"{r['coverage']:.1%}",
        ] + [f"{r['buckets'][b]['recommended']:.1%}" for b in labels]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Top-{K} lists of {reports[0]['users']:,} test users on {reports[0]['dataset']}. pop.: "
        "times an item is a training target; bucket columns: share of all recommended items "
        "(test targets row: share of the test targets); coverage: distinct recommended items / "
        "all items.\n\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--data_path", default=None, help="folder holding the dataset folder")
    parser.add_argument("--out", default=None, help="Markdown output (and .json beside it)")
    parser.add_argument(
        "--labels",
        default=None,
        help="comma-separated row names, one per checkpoint (default: the model names)",
    )
    args = parser.parse_args(argv)
    labels = [t.strip() for t in args.labels.split(",")] if args.labels else None
    if labels is not None and len(labels) != len(args.checkpoints):
        parser.error(f"--labels: {len(labels)} names for {len(args.checkpoints)} checkpoints")
    popularity, reports = None, []
    for path in args.checkpoints:
        loaded = load_checkpoint(path, data_path=args.data_path, require_attention_maps=False)
        if popularity is None:
            popularity = item_popularity(loaded)
        reports.append(measure(loaded, popularity))
    if len({r["dataset"] for r in reports}) > 1:
        sys.exit("error: the checkpoints are from different datasets")
    for report, label in zip(reports, labels or []):
        report["model"] = label
    text = to_markdown(reports)
    save_report(args.out, text, reports)
    return reports


if __name__ == "__main__":
    main()
