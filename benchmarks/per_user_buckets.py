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
import hashlib
import json
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_fair import leaderboard as lb  # noqa: E402

# bucket edges: a value v falls in the first bucket whose upper bound is >= v
HISTORY_EDGES = (2, 4, 7, 12, 19, float("inf"))
POPULARITY_EDGES = (4, 9, 19, 49, 99, float("inf"))
COLLISION_EDGES = (1, 3, float("inf"))  # items sharing the test target's semantic ID


def split_statistics(config_dict: dict[str, Any], dataset: str) -> dict[str, np.ndarray]:
    r"""The split of ``dataset`` as RecBole's sequential models see it (one training row per
    training target), independent of any model's own data layout.

    Returns:
        ``uid`` (test users sorted by internal id), ``history`` (their test history length,
        capped at ``MAX_ITEM_LIST_LENGTH``), ``target`` (their test item), ``popularity`` (their
        test item's count as a training target), ``item_popularity`` (that count for every
        internal item id), ``item_tokens`` (the item token of every internal id) and, one entry
        per training row, ``train_uid``, ``train_history`` and ``train_target``.
    """
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_fair.config import Config
    from recbole_fair.utils import create_dataset

    with lb.argv_as(["per_user_buckets"]):  # RecBole's Config must not parse this script's flags
        config = Config(model="SASRec", dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    iid = config["ITEM_ID_FIELD"]
    train_feat = train_data.dataset.inter_feat
    train_targets = train_feat[iid].numpy()
    counts = np.bincount(train_targets, minlength=train_data.dataset.item_num)
    uids, lengths, targets = [], [], []
    for batch in test_data:
        interaction = batch[0]
        uids.append(interaction[config["USER_ID_FIELD"]].numpy())
        lengths.append(interaction[config["ITEM_LIST_LENGTH_FIELD"]].numpy())
        targets.append(interaction[iid].numpy())
    uid, history, target = (np.concatenate(x) for x in (uids, lengths, targets))
    order = np.argsort(uid, kind="stable")
    return {
        "uid": uid[order].astype(np.int64),
        "history": history[order],
        "target": target[order],
        "popularity": counts[target[order]],
        "item_popularity": counts,
        "item_tokens": np.asarray(train_data.dataset.field2id_token[iid]),
        # one entry per training row (prefix): its user, history length and target
        "train_uid": train_feat[config["USER_ID_FIELD"]].numpy(),
        "train_history": train_feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy(),
        "train_target": train_targets,
    }


def collision_group_sizes(
    config_dict: dict[str, Any], dataset: str, item_tokens: np.ndarray, model: str = "FAIR"
) -> np.ndarray:
    r"""For every item (in the order of ``item_tokens``), how many items share its full
    semantic ID (1 = its tuple is its own), under ``model``'s semantic-ID settings (FAIR's
    OPQ codes with ``sid_collisions: keep`` unless ``config_dict`` says otherwise).

    The semantic-ID dataset is built through RecBole (its cache makes it quick when the
    leaderboard's ``sid_cache_dir`` is given) and aligned with ``item_tokens`` by item token.
    """
    from recbole_fair.config import Config
    from recbole_fair.utils import create_dataset

    with lb.argv_as(["per_user_buckets"]):
        config = Config(model=model, dataset=dataset, config_dict=config_dict)
    built = create_dataset(config).build()[0]
    codes = built.item_codes.numpy()
    tokens = np.asarray(built.field2id_token[config["ITEM_ID_FIELD"]])
    _, inverse, counts = np.unique(codes[1:], axis=0, return_inverse=True, return_counts=True)
    size_of = dict(zip(tokens[1:], counts[inverse.reshape(-1)]))
    missing = [t for t in item_tokens[1:] if t not in size_of]
    if missing:
        sys.exit(
            f"error: {len(missing)} items of {dataset}'s split have no semantic ID under "
            f"{model} (e.g. {missing[:3]}): were they built from other data?"
        )
    return np.asarray([0] + [size_of[t] for t in item_tokens[1:]], dtype=np.int64)


def users_sha1(uid: np.ndarray) -> str:
    return hashlib.sha1(np.asarray(uid, dtype=np.int64).tobytes()).hexdigest()


def _bucket_labels(edges: tuple[float, ...], low: int = 0) -> list[str]:
    labels = []
    for high in edges:
        if high == float("inf"):
            labels.append(f"{low}+")
        else:
            labels.append(str(low) if low == int(high) else f"{low}–{int(high)}")
        low = int(high) + 1 if high != float("inf") else low
    return labels


def bucket_table(
    per_user: dict[str, np.ndarray],
    feature: np.ndarray,
    edges: tuple[float, ...],
    reference: str,
    low: int = 0,
) -> list[dict[str, Any]]:
    r"""Rows ``{bucket, users, <model>: mean NDCG@10, <model> Δ%, <model> p}`` per bucket.

    Args:
        per_user: model -> per-user NDCG@10, all aligned with ``feature``.
        feature: the bucketed quantity per user (history length or target popularity).
        edges: inclusive upper bounds of the buckets, increasing.
        reference: the model the others are compared with (Δ% and Wilcoxon p per bucket).
        low: the smallest possible value (the first bucket's label starts there).

    Buckets without users are left out.
    """
    index = np.searchsorted(np.asarray(edges), feature, side="left")
    rows = []
    for b, label in enumerate(_bucket_labels(edges, low)):
        mask = index == b
        if not mask.any():
            continue  # an empty bucket has no row
        row: dict[str, Any] = {"bucket": label, "users": int(mask.sum())}
        ref = per_user[reference][mask]
        for model, values in per_user.items():
            row[model] = float(values[mask].mean())
            if model != reference:
                base = float(ref.mean())
                row[f"{model} Δ%"] = 100 * (row[model] / base - 1) if base > 0 else None
                row[f"{model} p"] = lb.paired_test(values[mask], ref)
        rows.append(row)
    return rows


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
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
    args = parser.parse_args(argv)
    if args.all_seeds and args.seed is not None:
        parser.error("--seed and --all_seeds exclude each other")

    records = [
        r
        for r in lb.latest_records(lb.load_results(args.results))
        if r["dataset"] == args.dataset
        and r.get("status") == "ok"
        and (r.get("per_user") or {}).get("values")
        and (args.seed is None or r.get("seed") == args.seed)
    ]
    # rows as the leaderboard labels them: variants of one model (FAIR, FAIR [setting=...]) apart
    groups = lb.group_cells(records)
    labels = lb.variant_labels(groups)
    label_of = {id(r): labels[key] for key, group in groups.items() for r in group}
    models = list(dict.fromkeys(label_of[id(r)] for r in records))
    if args.reference not in models:
        sys.exit(
            f"error: {args.results}: no finished {args.reference} cell on {args.dataset} "
            f"with per-user values (models there: {', '.join(models) or 'none'})"
        )
    if args.row:
        unknown = [row for row in args.row if row not in models]
        if unknown:
            sys.exit(
                f"error: --row {', '.join(map(repr, unknown))}: no such row in {args.results} "
                f"on {args.dataset} (rows there: {'; '.join(models)})"
            )
        models = [m for m in models if m == args.reference or m in args.row]
        records = [r for r in records if label_of[id(r)] in models]
    config_dict = {"data_path": os.path.abspath(args.data_path)} if args.data_path else {}
    users = split_statistics(config_dict, args.dataset)
    sha1 = users_sha1(users["uid"])
    seeds: dict[str, list[np.ndarray]] = {}
    for record in records:  # each row's finished seeds, in the results' order
        label = label_of[id(record)]
        if seeds.get(label) and not args.all_seeds:
            continue  # the first finished seed of each row
        values = np.asarray(record["per_user"]["values"], dtype=float)
        if record["per_user"].get("users_sha1") != sha1 or len(values) != len(users["uid"]):
            sys.exit(
                f"error: {args.results}: the per-user values of {record['cell']} are not over "
                f"this dataset's {len(users['uid'])} test users (user-id hash differs): was it "
                "run on other data or filtering?"
            )
        seeds.setdefault(label, []).append(values)
    per_user = {label: np.mean(values, axis=0) for label, values in seeds.items()}
    tables = {
        "history": bucket_table(per_user, users["history"], HISTORY_EDGES, args.reference),
        "popularity": bucket_table(per_user, users["popularity"], POPULARITY_EDGES, args.reference),
    }
    titles = {
        "history": "By test-history length (items, capped at MAX_ITEM_LIST_LENGTH)",
        "popularity": "By test-target popularity (times the item is a training target)",
    }
    if args.collisions:
        sid_config = dict(config_dict)
        if args.sid_cache_dir:
            sid_config["sid_cache_dir"] = os.path.abspath(args.sid_cache_dir)
        sizes = collision_group_sizes(sid_config, args.dataset, users["item_tokens"])
        tables["collision_group"] = bucket_table(
            per_user, sizes[users["target"]], COLLISION_EDGES, args.reference, low=1
        )
        titles["collision_group"] = (
            "By the test target's semantic-ID collision group (items sharing its 32 codes, "
            "FAIR's codes with sid_collisions: keep; 1 = a tuple of its own)"
        )
    averaged = ""
    if args.all_seeds:
        n_seeds = ", ".join(f"{label} {len(values)}" for label, values in seeds.items())
        averaged = f" Per-user values averaged over each row's seeds ({n_seeds})."
    text = (
        f"## Per-user test NDCG@10 by bucket: {args.dataset}\n\nFrom `{args.results}` "
        f"({len(users['uid']):,} test users).{averaged} Δ: relative to {args.reference} in the bucket; "
        "p: per-user Wilcoxon signed-rank test. Best mean per bucket in bold.\n\n"
        + "\n".join(to_markdown(titles[k], tables[k], models, args.reference) for k in tables)
    )
    save_report(args.out, text, {"dataset": args.dataset, "reference": args.reference, **tables})
    return tables


def save_report(out: str | None, text: str, data: Any) -> None:
    r"""Print the Markdown ``text``; write it to ``out`` and ``data`` as JSON beside it
    (``.json``) when ``out`` is given."""
    print(text)
    if not out:
        return
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.splitext(out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
