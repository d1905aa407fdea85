r"""The output of :mod:`recbole_fair.data.prepare_amazon`: ``<name>.inter`` and ``<name>.item``
(RecBole atomic files, written atomically), the statistics and the printed summary."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from typing import Any, Iterator

import numpy as np

from recbole_fair.data.amazon.meta import ITEM_FIELDS, TEXT_FIELDS

INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
ITEM_HEADER = [
    "item_id:token",
    "title:token_seq",
    "brand:token",
    "categories:token_seq",
    "description:token_seq",
    "price:float",
]
_EMPTY_ROW = {"title": "", "brand": "", "categories": "", "description": "", "price": None}


def fmt_number(value: float) -> str:
    r"""A number as written to the files: an integer without ``.0``, ``""`` when missing."""
    if value is None or not math.isfinite(value):
        return ""
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _write_atomic(path: str, lines: Iterator[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for line in lines:
            fh.write(line)
    os.replace(tmp, path)


def output_paths(out: str, name: str) -> dict[str, str]:
    r"""``{"inter", "item", "stats"}`` file paths in ``<out>/<name>/`` (the folder is created)."""
    folder = os.path.abspath(os.path.join(out, name))
    os.makedirs(folder, exist_ok=True)
    return {
        "inter": os.path.join(folder, f"{name}.inter"),
        "item": os.path.join(folder, f"{name}.item"),
        "stats": os.path.join(folder, f"{name}.stats.json"),
    }


def write_inter(
    path: str, arrays: dict[str, np.ndarray], user_names: list[str], item_names: list[str]
) -> None:
    r"""The ``.inter`` file: one row per interaction, in the order of ``arrays``."""

    def lines() -> Iterator[str]:
        yield "\t".join(INTER_HEADER) + "\n"
        for u, i, r, t in zip(
            arrays["user"].tolist(),
            arrays["item"].tolist(),
            arrays["rating"].tolist(),
            arrays["time"].tolist(),
        ):
            yield f"{user_names[u]}\t{item_names[i]}\t{fmt_number(r)}\t{fmt_number(t)}\n"

    _write_atomic(path, lines())


def write_items(
    path: str, item_order: list[int], item_names: list[str], meta_rows: dict[str, dict]
) -> Counter:
    r"""The ``.item`` file: one row per item of ``item_order`` (an empty text row for an item
    without metadata). Returns how many rows have each field non-empty."""
    coverage: Counter = Counter()

    def lines() -> Iterator[str]:
        yield "\t".join(ITEM_HEADER) + "\n"
        for i in item_order:
            asin = item_names[i]
            row = meta_rows.get(asin, _EMPTY_ROW)
            for field in ITEM_FIELDS:
                coverage[field] += row[field] not in ("", None)
            price = "" if row["price"] is None else fmt_number(row["price"])
            yield "\t".join([asin] + [row[f] for f in TEXT_FIELDS] + [price]) + "\n"

    _write_atomic(path, lines())
    return coverage


def counts_dict(counts: Counter) -> dict[str, Any]:
    r"""The counts for the statistics: sorted, private keys left out but a read error's message."""
    out: dict[str, Any] = {k: int(v) for k, v in sorted(counts.items()) if not k.startswith("_")}
    if "_read_error_message" in counts:
        out["read_error_message"] = counts["_read_error_message"]
    return out


def interaction_statistics(arrays: dict[str, np.ndarray], n_items: int) -> dict[str, Any]:
    r"""Sizes, density, the smallest user and item counts and the time range of the output."""
    n_users = int(len(np.unique(arrays["user"])))
    n_inter = int(len(arrays["user"]))
    uc = np.bincount(arrays["user"])
    ic = np.bincount(arrays["item"])
    return {
        "users": n_users,
        "items": n_items,
        "interactions": n_inter,
        "avg_seq_len": round(n_inter / n_users, 4),
        "density": n_inter / (n_users * n_items),
        "min_interactions_per_user": int(uc[uc > 0].min()),
        "min_interactions_per_item": int(ic[ic > 0].min()),
        "time_range": [fmt_number(arrays["time"].min()), fmt_number(arrays["time"].max())],
    }


def text_coverage(coverage: Counter, n_items: int) -> dict[str, dict[str, Any]]:
    r"""Per item field: how many ``.item`` rows have it, and their share."""
    return {
        f: {"non_empty": int(coverage[f]), "share": round(coverage[f] / n_items, 6)}
        for f in ITEM_FIELDS
    }


def write_stats(path: str, stats: dict[str, Any]) -> None:
    r"""``<name>.stats.json``."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(stats, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


_REVIEW_SKIPS = [
    "blank_lines",
    "malformed",
    "not_an_object",
    "missing_user",
    "missing_item",
    "missing_time",
]
_REVIEW_REPAIRS = ["time_from_reviewTime", "missing_rating", "encoding_repaired", "ids_repaired"]
_META_SKIPS = ["blank_lines", "malformed", "not_an_object", "missing_asin", "duplicate_rows"]


def _listed(counts: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k} {counts.get(k, 0):,}" for k in keys)


def _reading_lines(stats: dict[str, Any]) -> list[str]:
    r"""The summary's lines about the reviews, the k-core rounds and the metadata."""
    rev, meta = stats["reviews"], stats["meta"]
    before = stats["before_filtering"]
    lines = [
        f"reviews: {rev.get('lines', 0):,} lines, {rev.get('valid', 0):,} valid, "
        f"{rev.get('duplicate_pairs', 0):,} duplicate (user, item) pairs dropped (earliest kept)",
        "  skipped: " + _listed(rev, _REVIEW_SKIPS),
        "  repaired/kept: " + _listed(rev, _REVIEW_REPAIRS),
        f"{stats['min_user']}/{stats['min_item']}-core: {before['users']:,} users / "
        f"{before['items']:,} items / {before['interactions']:,} interactions before, "
        f"{len(stats['filter_rounds'])} filtering round(s) until stable",
    ]
    for r in stats["filter_rounds"]:
        lines.append(
            f"  round {r['round']}: -{r['users_removed']:,} users, -{r['items_removed']:,} items, "
            f"-{r['interactions_removed']:,} interactions"
        )
    lines += [
        f"meta: {meta.get('lines', 0):,} lines, {meta.get('rows_for_other_items', 0):,} rows for "
        f"items not kept, {meta.get('items_without_meta', 0):,} kept items without meta "
        f"(empty text row)",
        "  skipped: " + _listed(meta, _META_SKIPS),
    ]
    return lines


def _text_lines(stats: dict[str, Any]) -> list[str]:
    r"""The summary's lines about the item text: coverage, then repairs (when any)."""
    lines = [
        "text coverage: "
        + ", ".join(
            f"{f} {c['share'] * 100:.2f} % ({c['non_empty']:,})"
            for f, c in stats["text_coverage"].items()
        )
    ]
    if stats["text_repairs"]:
        lines.append(
            "text repairs: "
            + "; ".join(
                f"{f}: " + ", ".join(f"{k} {v:,}" for k, v in c.items())
                for f, c in stats["text_repairs"].items()
            )
        )
    return lines


def format_summary(stats: dict[str, Any]) -> str:
    r"""The human-readable summary printed at the end of
    :func:`recbole_fair.data.prepare_amazon.prepare_amazon`."""
    lines = [
        f"== {stats['name']} (Amazon {stats['format']} format: {stats['format_reason']}) ==",
        f"users {stats['users']:,}  items {stats['items']:,}  interactions {stats['interactions']:,}"
        f"  avg seq len {stats['avg_seq_len']:.2f}  density {stats['density'] * 100:.4f} %",
    ]
    lines += _reading_lines(stats) + _text_lines(stats)
    for label, counts in (("reviews", stats["reviews"]), ("meta", stats["meta"])):
        if counts.get("read_error"):
            lines.append(
                f"WARNING: the {label} file could not be read to its end "
                f"({counts.get('read_error_message')}); the rows before were used."
            )
    lines.append(
        f"wrote {stats['outputs']['inter']}, {stats['outputs']['item']}, "
        f"{stats['outputs']['stats']}"
    )
    return "\n".join(lines)
