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

(:mod:`recbole_fair.analysis.popularity` computes them.)

    python benchmarks/rec_popularity.py --checkpoints A-best.pth B-best.pth \
        [--data_path ../shared/datasets] [--out docs/leaderboards/Amazon_Beauty-e40/rec_popularity.md] \
        [--labels "FAIR,SASRec"]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from recbole_fair.analysis.popularity import K, measure, training_popularity
from recbole_fair.analysis.report import save_report
from recbole_fair.checkpoint import load_checkpoint


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
            popularity = training_popularity(loaded)
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
