r"""recbole_fair.analysis.user_buckets
##################################

Where does one model win and another lose? Per-user test NDCG@10 of leaderboard records, by user
bucket (``benchmarks/per_user_buckets.py`` prints the tables).

Every leaderboard record keeps the per-user test NDCG@10 of its cell (sorted by RecBole's
internal user id, with a SHA-1 of those ids). :func:`split_statistics` rebuilds the dataset's
test split (no model is needed) with the length of each test user's history and the training
popularity of its test target; :func:`per_user_values` checks that the records' users hash to
the same ids and aligns them; :func:`bucket_table` gives the mean NDCG@10 per model and bucket,
each model's difference to a reference model and a per-user Wilcoxon test per bucket.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_fair.config import Config, command_line
from recbole_fair.leaderboard import (
    group_cells,
    latest_records,
    load_results,
    paired_test,
    variant_labels,
)
from recbole_fair.utils import create_dataset

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
    with command_line(["per_user_buckets"]):  # RecBole's Config must not parse a script's flags
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

    Raises:
        ValueError: an item of ``item_tokens`` has no semantic ID (other data).
    """
    with command_line(["per_user_buckets"]):
        config = Config(model=model, dataset=dataset, config_dict=config_dict)
    built = create_dataset(config).build()[0]
    codes = built.item_codes.numpy()
    tokens = np.asarray(built.field2id_token[config["ITEM_ID_FIELD"]])
    _, inverse, counts = np.unique(codes[1:], axis=0, return_inverse=True, return_counts=True)
    size_of = dict(zip(tokens[1:], counts[inverse.reshape(-1)]))
    missing = [t for t in item_tokens[1:] if t not in size_of]
    if missing:
        raise ValueError(
            f"{len(missing)} items of {dataset}'s split have no semantic ID under "
            f"{model} (e.g. {missing[:3]}): were they built from other data?"
        )
    return np.asarray([0] + [size_of[t] for t in item_tokens[1:]], dtype=np.int64)


def users_sha1(uid: np.ndarray) -> str:
    r"""SHA-1 of internal user ids (int64), as a leaderboard record's ``per_user`` keeps it."""
    return hashlib.sha1(np.asarray(uid, dtype=np.int64).tobytes()).hexdigest()


def labelled_records(
    results: str,
    dataset: str,
    reference: str,
    seed: int | None = None,
    rows: list[str] | None = None,
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    r"""The finished records of ``dataset`` with per-user values in the results file
    ``results``, each with its row label as the leaderboard gives it (variants of one model,
    ``FAIR`` and ``FAIR [setting=...]``, apart), and the row labels in order.

    Args:
        results: a leaderboard ``results.jsonl``.
        dataset: the dataset whose records are kept.
        reference: the row the others are compared with (always kept).
        seed: keep only this seed's records (default: every seed).
        rows: keep only these rows and the reference (default: every row).

    Raises:
        ValueError: no record of ``reference``, or a row of ``rows`` that is not there.
    """
    records = [
        r
        for r in latest_records(load_results(results))
        if r["dataset"] == dataset
        and r.get("status") == "ok"
        and (r.get("per_user") or {}).get("values")
        and (seed is None or r.get("seed") == seed)
    ]
    groups = group_cells(records)
    labels = variant_labels(groups)
    label_of = {id(r): labels[key] for key, group in groups.items() for r in group}
    models = list(dict.fromkeys(label_of[id(r)] for r in records))
    if reference not in models:
        raise ValueError(
            f"{results}: no finished {reference} cell on {dataset} "
            f"with per-user values (models there: {', '.join(models) or 'none'})"
        )
    if rows:
        unknown = [row for row in rows if row not in models]
        if unknown:
            raise ValueError(
                f"--row {', '.join(map(repr, unknown))}: no such row in {results} "
                f"on {dataset} (rows there: {'; '.join(models)})"
            )
        models = [m for m in models if m == reference or m in rows]
    labelled = [(label_of[id(r)], r) for r in records if label_of[id(r)] in models]
    return labelled, models


def per_user_values(
    labelled: list[tuple[str, dict[str, Any]]], uid: np.ndarray, source: str, all_seeds: bool
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    r"""Each row's per-user values over the test users ``uid``: its first finished seed in the
    order of ``labelled`` (:func:`labelled_records`), or with ``all_seeds`` the mean over all its
    seeds (as the leaderboard's significance test does); and the seeds behind each row.

    Raises:
        ValueError: a record's values are over other users (their hash differs); ``source``
            names the results file in the message.
    """
    sha1 = users_sha1(uid)
    seeds: dict[str, list[np.ndarray]] = {}
    for label, record in labelled:  # each row's finished seeds, in the results' order
        if seeds.get(label) and not all_seeds:
            continue  # the first finished seed of each row
        values = np.asarray(record["per_user"]["values"], dtype=float)
        if record["per_user"].get("users_sha1") != sha1 or len(values) != len(uid):
            raise ValueError(
                f"{source}: the per-user values of {record['cell']} are not over "
                f"this dataset's {len(uid)} test users (user-id hash differs): was it "
                "run on other data or filtering?"
            )
        seeds.setdefault(label, []).append(values)
    per_user = {label: np.mean(values, axis=0) for label, values in seeds.items()}
    return per_user, {label: len(values) for label, values in seeds.items()}


def bucket_labels(edges: tuple[float, ...], low: int = 0) -> list[str]:
    r"""``0–2``, ``3``, ``20+``, ...: the labels of the buckets with inclusive upper bounds
    ``edges``, the first starting at ``low``."""
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
    for b, label in enumerate(bucket_labels(edges, low)):
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
                row[f"{model} p"] = paired_test(values[mask], ref)
        rows.append(row)
    return rows
