r"""Sweep the prior-correction weight of a trained FAIR or RPG checkpoint (no retraining).

FAIR ranks by a sum of 32 independently predicted digit log-probabilities, which counts the
codes' prior 32 times and favours the head of the catalogue (docs/notes/investigation.md).
The prior correction of weight γ adds ``γ · (log q(i) − Σ_l log q_l(c_l(i)))`` to every item's
score (:mod:`recbole_fair.model.calibration`; γ = 1 is the naive-Bayes combination of the
digits). The models do not carry it (it measured no significant gain when trained with it): this
script adds it to a checkpoint's scores.

For every γ of ``--weights`` this script ranks all items for every validation and test user
(RecBole's full-sort protocol: padding item masked, leave-one-out, one target per user) and
reports R@5, N@5, R@10, N@10, the popularity profile of the test top-10 lists
(:mod:`rec_popularity`) and test N@10 by the target's training popularity. The weight to use is
the one with the best *validation* N@10 (``selected``); the test row of γ = 0 is the checkpoint's
own leaderboard result.

    python benchmarks/score_calibration.py --checkpoint saved/FAIR-....pth \
        [--weights 0,0.25,0.5,0.75,1,1.25,1.5] [--data_path ../shared/datasets] [--prior last:1] \
        [--out docs/leaderboards/Amazon_Beauty-e40/score_calibration.md]

``--prior last:N`` replaces the item prior ``q`` of that correction (every training target) by
the items of each user's ``N`` most recent training targets, a recency-weighted popularity.
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

from per_user_buckets import POPULARITY_EDGES, _bucket_labels, save_report  # noqa: E402
from rec_popularity import profile, top_k, training_statistics  # noqa: E402

from recbole_fair.model.calibration import prior_correction, recent_target_counts  # noqa: E402
from recbole_fair.model.sequential_recommender.fair import FAIR  # noqa: E402
from recbole_fair.visualize_attention import load_checkpoint  # noqa: E402

K = 10
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def item_prior(model, counts: np.ndarray) -> torch.Tensor:
    r"""The prior-correction term ``b`` ``[n_items]`` of a FAIR/RPG model's codes from item
    counts ``[n_items]``."""
    codes = model.item_codes.detach().cpu()
    if len(counts) != codes.size(0):
        raise ValueError(
            f"{len(counts)} item counts for a model of {codes.size(0)} item ids: not the "
            f"checkpoint's dataset"
        )
    return prior_correction(torch.as_tensor(counts), codes, model.codebook_size)


def item_counts(loaded, prior: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Training-target count per item (the popularity of the report's profile columns) and,
    with ``prior = N``, the counts of each user's ``N`` most recent training targets."""
    stats = training_statistics(loaded)
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


def _ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    r"""Per-user NDCG@k of one target at 0-based rank ``ranks`` (``inf``: not in the list)."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ranking_metrics(ranks: np.ndarray) -> dict[str, float]:
    r"""Recall@5/10 and NDCG@5/10 of one target per user (RecBole's definitions)."""
    out = {}
    for k in (5, 10):
        out[f"recall@{k}"] = float((ranks < k).mean())
        out[f"ndcg@{k}"] = float(_ndcg(ranks, k).mean())
    return out


def ndcg_by_target_popularity(ranks: np.ndarray, target_pop: np.ndarray) -> dict[str, float]:
    r"""Mean N@10 of the users whose target's training popularity falls in each bucket."""
    bucket = np.searchsorted(np.asarray(POPULARITY_EDGES), target_pop, side="left")
    ndcg = _ndcg(ranks, K)
    return {
        label: float(ndcg[bucket == b].mean()) if (bucket == b).any() else float("nan")
        for b, label in enumerate(_bucket_labels(POPULARITY_EDGES))
    }


def sweep(loaded, weights, popularity: np.ndarray, bias: torch.Tensor) -> list[dict[str, Any]]:
    r"""One row per weight ``γ`` (scores + ``γ · bias``): validation and test metrics, test
    popularity profile."""
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


def _prior_words(report: dict[str, Any]) -> str:
    prior = report.get("prior", "all")
    if prior == "all":
        words = "item prior: every training target"
    else:
        words = f"item prior: each user's {prior.split(':')[1]} most recent training target(s)"
    trained = report.get("trained_score_prior_recent") or 0
    if trained:  # the checkpoint's own prior differs from the swept one when --prior differs
        words += f"; the checkpoint was trained with score_prior_recent: {trained}"
    return words


def to_markdown(report: dict[str, Any]) -> str:
    rows, best = report["rows"], report["selected_weight"]
    labels = list(rows[0]["test_ndcg@10_by_target_popularity"])
    head = ["γ", "valid N@10", "test R@5", "N@5", "R@10", "N@10", "mean pop.", "coverage"]
    head += [f"N@10 pop. {b}" for b in labels]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        mark = "**" if r["weight"] == best else ""
        t, p = r["test"], r["test_popularity"]
        cells = [f"{mark}{r['weight']:g}{mark}", f"{r['valid']['ndcg@10']:.4f}"]
        cells += [f"{t[m]:.4f}" for m in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")]
        cells += [f"{p['mean_popularity']:.1f}", f"{p['coverage']:.1%}"]
        cells += [f"{r['test_ndcg@10_by_target_popularity'][b]:.4f}" for b in labels]
        lines.append("| " + " | ".join(cells) + " |")
    target_pop = rows[0]["test_popularity"]["target_mean_popularity"]
    return (
        f"{report['model']} on {report['dataset']} ({report['checkpoint']}): prior-correction "
        f"weight γ swept on the trained checkpoint ({_prior_words(report)}), "
        f"{rows[0]['test_popularity']['users']:,} test users. Bold: the weight with the best "
        f"validation N@10 (selected). mean pop.: mean training popularity of the test top-10 items (test targets: {target_pop:.1f}); "
        f"coverage: distinct recommended items / all items; last columns: test N@10 of the users "
        f"whose target was a training target that many times.\n\n" + "\n".join(lines) + "\n"
    )


def _weights(text: str) -> list[float]:
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--weights: comma-separated numbers ({err})") from err
    if not weights or min(weights) < 0:
        raise argparse.ArgumentTypeError("--weights: one or more numbers >= 0")
    return weights


def _prior(text: str) -> int | None:
    r"""``all`` -> ``None`` (every training target); ``last:N`` -> ``N``."""
    if text == "all":
        return None
    name, _, number = text.partition(":")
    if name == "last" and number.isdigit() and int(number) > 0:
        return int(number)
    raise argparse.ArgumentTypeError(f"--prior: 'all' or 'last:N' with N >= 1, got {text!r}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="FAIR or RPG checkpoint (.pth)")
    parser.add_argument("--weights", type=_weights, default=list(WEIGHTS))
    parser.add_argument("--data_path", default=None, help="folder holding the dataset folder")
    parser.add_argument(
        "--prior",
        type=_prior,
        default=None,
        help="item prior of the correction: 'all' (every training target, the models' own) or "
        "'last:N' (each user's N most recent training targets)",
    )
    parser.add_argument("--out", default=None, help="Markdown output (and .json beside it)")
    args = parser.parse_args(argv)
    loaded = load_checkpoint(
        args.checkpoint, data_path=args.data_path, require_attention_maps=False
    )
    popularity, recent = item_counts(loaded, args.prior)
    bias = item_prior(loaded.model, popularity if recent is None else recent)
    rows = sweep(loaded, args.weights, popularity, bias)
    report = {
        "checkpoint": loaded.path,
        "model": loaded.config["model"],
        "dataset": loaded.config["dataset"],
        "prior": "all" if args.prior is None else f"last:{args.prior}",
        # checkpoints of earlier versions may have been trained with the model option
        "trained_score_prior_recent": loaded.config["score_prior_recent"] or 0,
        "selected_weight": select(rows)["weight"],
        "rows": rows,
    }
    text = to_markdown(report)
    save_report(args.out, text, report)
    return report


if __name__ == "__main__":
    main()
