r"""Sweep the prior-correction weight of a trained FAIR or RPG checkpoint (no retraining).

FAIR ranks by a sum of 32 independently predicted digit log-probabilities, which counts the
codes' prior 32 times and favours the head of the catalogue (docs/notes/investigation.md).
The prior correction of weight γ adds ``γ · (log q(i) − Σ_l log q_l(c_l(i)))`` to every item's
score (:mod:`recbole_fair.analysis.score_calibration`, which also runs the sweep; γ = 1 is the
naive-Bayes combination of the digits). The models do not carry it (it measured no significant
gain when trained with it): this script adds it to a checkpoint's scores.

For every γ of ``--weights`` this script ranks all items for every validation and test user
(RecBole's full-sort protocol: padding item masked, leave-one-out, one target per user) and
reports R@5, N@5, R@10, N@10, the popularity profile of the test top-10 lists
(:mod:`recbole_fair.analysis.popularity`) and test N@10 by the target's training popularity.
The weight to use is the one with the best *validation* N@10 (``selected``); the test row of
γ = 0 is the checkpoint's own leaderboard result.

    python benchmarks/score_calibration.py --checkpoint saved/FAIR-....pth \
        [--weights 0,0.25,0.5,0.75,1,1.25,1.5] [--data_path ../shared/datasets] [--prior last:1] \
        [--out docs/leaderboards/Amazon_Beauty-e40/score_calibration.md]

``--prior last:N`` replaces the item prior ``q`` of that correction (every training target) by
the items of each user's ``N`` most recent training targets, a recency-weighted popularity.
"""

from __future__ import annotations

import argparse
from typing import Any

from recbole_fair.analysis.popularity import training_statistics
from recbole_fair.analysis.report import save_report
from recbole_fair.analysis.score_calibration import item_counts, item_prior, select, sweep
from recbole_fair.checkpoint import load_checkpoint

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


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
    popularity, recent = item_counts(loaded, training_statistics(loaded), args.prior)
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
