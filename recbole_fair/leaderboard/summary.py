r"""recbole_fair.leaderboard.summary
##################################

The rows of a leaderboard: the latest record of each cell grouped by (dataset, model, config
hash), one row per group with the mean ± std over seeds of the test metrics, the costs, the
semantic-ID report and the published figure; the row label tells variants of one model apart by
the settings that differ.
"""

from __future__ import annotations

import json
from typing import Any

from recbole_fair.leaderboard.results import jsonable, latest_records
from recbole_fair.leaderboard.stats import PER_USER_METRIC, mean, mean_std
from recbole_fair.published import published_number

# (RecBole metric key, column header) of the quality columns.
QUALITY = [("recall@5", "R@5"), ("ndcg@5", "N@5"), ("recall@10", "R@10"), ("ndcg@10", "N@10")]
CSV_METRICS = [m for m, _ in QUALITY] + ["mrr@10"]

# Settings that say where files are, not what was trained: never part of a row label (a label
# shows what sets a variant apart, and a machine's paths are not that).
LOCATION_KEYS = frozenset(
    {
        "data_path",
        "sid_cache_dir",
        "checkpoint_dir",
        "leaderboard_dir",
        "dataset_save_path",
        "dataloaders_save_path",
    }
)

Groups = dict[tuple[str, str, str], list[dict[str, Any]]]


def _cell_settings(record: dict[str, Any]) -> set[str]:
    r"""A cell's user settings as ``key=value`` strings: its command-line overrides and its
    config dict (per-model overrides), without the seed and the file locations
    (:data:`LOCATION_KEYS`)."""
    spec = record.get("spec") or {}
    settings = {a[2:] for a in (spec.get("argv") or [])[1:] if a.startswith("--")}
    settings |= {
        f"{k}={json.dumps(jsonable(v), sort_keys=True)}"
        for k, v in (spec.get("config_dict") or {}).items()
        if k != "seed"
    }
    return {s for s in settings if s.split("=", 1)[0] not in LOCATION_KEYS}


def variant_labels(groups: Groups) -> dict:
    r"""Row label per (dataset, model, config hash): the model name, and where one model has
    several configurations in a dataset, the settings that set each apart (``FAIR
    [score_prior_correction=1.0]``); the config hash where the settings do not tell them apart
    (e.g. an edited config file)."""
    variants: dict[tuple[str, str], dict[str, set[str]]] = {}
    for (dataset, model, chash), group in groups.items():
        variants.setdefault((dataset, model), {})[chash] = _cell_settings(group[0])
    labels = {}
    for (dataset, model), by_hash in variants.items():
        if len(by_hash) == 1:
            labels[(dataset, model, next(iter(by_hash)))] = model
            continue
        common = set.intersection(*by_hash.values())
        distinct = {h: tuple(sorted(v - common)) for h, v in by_hash.items()}
        for chash, own in distinct.items():
            unique = list(distinct.values()).count(own) == 1
            if unique and own:
                labels[(dataset, model, chash)] = f"{model} [{', '.join(own)}]"
            elif unique:  # the one variant without extra settings: the model's own config
                labels[(dataset, model, chash)] = model
            else:
                labels[(dataset, model, chash)] = f"{model} [{chash}]"
    return labels


def group_cells(records: list[dict[str, Any]]) -> Groups:
    r"""``records`` grouped by (dataset, model, config hash), in order of first appearance."""
    groups: Groups = {}
    for record in records:
        groups.setdefault((record["dataset"], record["model"], record["config_hash"]), []).append(
            record
        )
    return groups


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r"""One row per (dataset, model, config hash) of the latest record of each cell."""
    groups = group_cells(latest_records(records))
    labels = variant_labels(groups)
    return [_row(key, group, labels[key]) for key, group in groups.items()]


def _row(key: tuple[str, str, str], group: list[dict[str, Any]], label: str) -> dict[str, Any]:
    r"""The row of one (dataset, model, config hash) group of records."""
    dataset, model, chash = key
    ok = [r for r in group if r.get("status") == "ok"]
    ok.sort(key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
    failed = [r for r in group if r.get("status") != "ok"]
    row: dict[str, Any] = {
        "model": model,
        "label": label,
        "dataset": dataset,
        "config_hash": chash,
        "seeds": [r.get("seed") for r in ok],
        "failed_seeds": [r.get("seed") for r in failed],
        "errors": [
            {"seed": r.get("seed"), **(r.get("error") or {"type": "unknown", "message": ""})}
            for r in failed
        ],
        "n": len(ok),
    }
    for metric in CSV_METRICS:
        row[metric] = mean_std([(r.get("test_result") or {}).get(metric) for r in ok])
    _add_costs(row, [r.get("costs") or {} for r in ok])
    lengths = {(r.get("config") or {}).get("MAX_ITEM_LIST_LENGTH") for r in ok}
    lengths.discard(None)
    row["max_len"] = ",".join(str(v) for v in sorted(lengths)) or None
    _add_semantic_ids(
        row, [r["semantic_ids"] for r in ok if isinstance(r.get("semantic_ids"), dict)]
    )
    row["published"] = _published(row, model, dataset)
    row["per_user"] = [r.get("per_user") for r in ok]
    row["seed_ndcg10"] = {
        r.get("seed"): (r.get("test_result") or {}).get(PER_USER_METRIC) for r in ok
    }
    return row


def _add_costs(row: dict[str, Any], costs: list[dict[str, Any]]) -> None:
    r"""The cost columns of a row from the ``costs`` of its finished cells."""
    row["best_epochs"] = [c.get("best_epoch") for c in costs]
    row["epochs"] = [c.get("epochs") for c in costs]
    row["train_s_per_epoch"] = mean([c.get("train_seconds_per_epoch") for c in costs])
    row["total_train_s"] = mean([c.get("fit_seconds") for c in costs])
    row["eval_users_per_s"] = mean([c.get("eval_users_per_second") for c in costs])
    params = [c.get("parameters") for c in costs if c.get("parameters") is not None]
    row["parameters"] = int(max(params)) if params else None
    rss = [c.get("peak_rss_mb") for c in costs if c.get("peak_rss_mb") is not None]
    cuda = [c.get("peak_cuda_mb") for c in costs if c.get("peak_cuda_mb") is not None]
    row["peak_rss_mb"] = float(max(rss)) if rss else None
    row["peak_cuda_mb"] = float(max(cuda)) if cuda else None
    row["device"] = ",".join(sorted({str(c.get("device")) for c in costs if c.get("device")}))


def _add_semantic_ids(row: dict[str, Any], sids: list[dict[str, Any]]) -> None:
    r"""The semantic-ID columns of a row from the reports of its finished cells."""
    keys = sorted({str(s.get("cache_key")) for s in sids if s.get("cache_key")})
    row["sid_cache_key"] = ",".join(keys) or None
    # the codes themselves: one cache key can name different codes built on two machines
    prints = sorted({str(s["codes_fingerprint"]) for s in sids if s.get("codes_fingerprint")})
    row["sid_codes"] = ",".join(prints) or None
    row["collision_rate"] = mean([s.get("collision_rate") for s in sids])
    # code usage: the entropy of each digit's codes over the items, averaged over the digits
    # (log2 of the codebook size when every code is used equally often)
    row["sid_entropy_bits"] = mean([s.get("mean_entropy_bits") for s in sids])


def _published(row: dict[str, Any], model: str, dataset: str) -> dict[str, Any] | None:
    r"""The published figure of ``model`` on ``dataset`` and the row's gap to it (None when
    there is none)."""
    published = published_number(model, dataset)
    if published is None:
        return None
    metric, value, source = published
    ours = row.get(metric, (None, None))[0] if metric in row else None
    return {
        "metric": metric,
        "value": value,
        "source": source,
        "gap": (ours - value) if ours is not None else None,
        "gap_rel": ((ours - value) / value) if ours is not None and value else None,
    }
