r"""Where does one model win and another lose? Per-user NDCG@10 of a leaderboard, by user bucket.

Every leaderboard record keeps the per-user test NDCG@10 of its cell (sorted by RecBole's
internal user id, with a SHA-1 of those ids). This script rebuilds the dataset's test split (no
model is needed), attaches to each test user the length of its test history and the training
popularity of its test target (how often the item is a training target), checks that the user
ids hash to the records' ``users_sha1``, and reports mean NDCG@10 per model in buckets of both,
with each model's difference to a reference model and a per-user Wilcoxon test per bucket.

    python benchmarks/per_user_buckets.py --results docs/leaderboards/Amazon_Beauty-e40/results.jsonl \
        --dataset Amazon_Beauty --data_path ../shared/datasets [--reference SASRec] \
        [--out docs/leaderboards/Amazon_Beauty-e40/per_user_buckets.md]

Each row takes its first finished seed, or one seed (``--seed``); ``--all_seeds`` averages each
row's per-user values over all its finished seeds, as the leaderboard's significance test does.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from recbole_fair.analysis.report import save_report
from recbole_fair.analysis.user_buckets import (
    COLLISION_EDGES,
    HISTORY_EDGES,
    POPULARITY_EDGES,
    bucket_table,
    collision_group_sizes,
    labelled_records,
    per_user_values,
    split_statistics,
)

TITLES = {
    "history": "By test-history length (items, capped at MAX_ITEM_LIST_LENGTH)",
    "popularity": "By test-target popularity (times the item is a training target)",
    "collision_group": (
        "By the test target's semantic-ID collision group (items sharing its 32 codes, "
        "FAIR's codes with sid_collisions: keep; 1 = a tuple of its own)"
    ),
}


def to_markdown(title: str, rows: list[dict[str, Any]], models: list[str], reference: str) -> str:
    others = [m for m in models if m != reference]
    head = ["bucket", "users"] + models + [f"{m} vs {reference}" for m in others]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for row in rows:
        cells = [row["bucket"], f"{row['users']:,}"]
        best = max(row[m] for m in models)
        for m in models:
            cells.append(f"**{row[m]:.4f}**" if row[m] == best else f"{row[m]:.4f}")
        for m in others:
            delta, p = row.get(f"{m} Δ%"), row.get(f"{m} p")
            cells.append("" if delta is None else f"{delta:+.0f}% (p={p:.2g})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="leaderboard results.jsonl")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default=None, help="folder holding the dataset folder")
    parser.add_argument("--reference", default="SASRec")
    parser.add_argument("--seed", type=int, default=None, help="which seed's cells (default: any)")
    parser.add_argument(
        "--all_seeds",
        action="store_true",
        help="average each row's per-user values over all its finished seeds (as the "
        "leaderboard's significance test does) instead of taking its first finished seed",
    )
    parser.add_argument("--out", default=None, help="Markdown output (and .json beside it)")
    parser.add_argument(
        "--collisions",
        action="store_true",
        help="also bucket by the size of the test target's semantic-ID collision group (FAIR's "
        "codes with sid_collisions: keep; builds FAIR's dataset, use --sid_cache_dir)",
    )
    parser.add_argument("--sid_cache_dir", default=None, help="semantic-ID cache of the runs")
    parser.add_argument(
        "--row",
        action="append",
        default=None,
        help="only this row, as the leaderboard labels it (e.g. 'FAIR [sid_method=random]'); "
        "repeat for several; the reference is always kept (default: every row)",
    )
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.all_seeds and args.seed is not None:
        parser.error("--seed and --all_seeds exclude each other")
    try:
        return _main(args)
    except ValueError as err:
        sys.exit(f"error: {err}")


def _main(args: argparse.Namespace) -> dict[str, Any]:
    labelled, models = labelled_records(
        args.results, args.dataset, args.reference, args.seed, args.row
    )
    config_dict = {"data_path": os.path.abspath(args.data_path)} if args.data_path else {}
    users = split_statistics(config_dict, args.dataset)
    per_user, seeds = per_user_values(labelled, users["uid"], args.results, args.all_seeds)
    tables = {
        "history": bucket_table(per_user, users["history"], HISTORY_EDGES, args.reference),
        "popularity": bucket_table(per_user, users["popularity"], POPULARITY_EDGES, args.reference),
    }
    if args.collisions:
        sid_config = dict(config_dict)
        if args.sid_cache_dir:
            sid_config["sid_cache_dir"] = os.path.abspath(args.sid_cache_dir)
        sizes = collision_group_sizes(sid_config, args.dataset, users["item_tokens"])
        tables["collision_group"] = bucket_table(
            per_user, sizes[users["target"]], COLLISION_EDGES, args.reference, low=1
        )
    averaged = ""
    if args.all_seeds:
        n_seeds = ", ".join(f"{label} {n}" for label, n in seeds.items())
        averaged = f" Per-user values averaged over each row's seeds ({n_seeds})."
    text = (
        f"## Per-user test NDCG@10 by bucket: {args.dataset}\n\nFrom `{args.results}` "
        f"({len(users['uid']):,} test users).{averaged} Δ: relative to {args.reference} in the bucket; "
        "p: per-user Wilcoxon signed-rank test. Best mean per bucket in bold.\n\n"
        + "\n".join(to_markdown(TITLES[k], tables[k], models, args.reference) for k in tables)
    )
    save_report(args.out, text, {"dataset": args.dataset, "reference": args.reference, **tables})
    return tables


if __name__ == "__main__":
    main()
