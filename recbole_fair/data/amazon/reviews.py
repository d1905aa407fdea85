r"""Reviews -> interactions: reading into arrays, deduplicating (user, item) pairs, the iterated
k-core and the chronological order (steps 1-4 of :mod:`recbole_fair.data.prepare_amazon`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from recbole_fair.data.amazon.files import iter_lines, parse_object
from recbole_fair.data.amazon.text import clean_token_id, parse_number, parse_review_time

Arrays = dict[str, np.ndarray]


def _review(rec: dict[str, Any], counts: Counter) -> tuple[str, str, float, float] | None:
    r"""``(user, item, time, rating)`` of one review, or ``None`` (counted) when unusable."""
    user = clean_token_id(rec.get("reviewerID"), counts)
    item = clean_token_id(rec.get("asin"), counts)
    if user is None:
        counts["missing_user"] += 1
        return None
    if item is None:
        counts["missing_item"] += 1
        return None
    when = parse_number(rec.get("unixReviewTime"))
    if when is None:
        when = parse_review_time(rec.get("reviewTime"))
        if when is None:
            counts["missing_time"] += 1
            return None
        counts["time_from_reviewTime"] += 1
    rating = parse_number(rec.get("overall"))
    if rating is None:
        counts["missing_rating"] += 1
        rating = float("nan")
    return user, item, when, rating


def read_reviews(
    path: str, python_first: bool, progress: bool
) -> tuple[Arrays, list[str], list[str], Counter]:
    r"""``(arrays, user names, item names, counts)``: ``arrays`` holds the ``user`` / ``item``
    indices (into the names, in order of first appearance), ``time``, ``rating`` and file
    ``line`` of every usable review; ``counts`` what was skipped or repaired."""
    counts: Counter = Counter()
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    columns: dict[str, list] = {"user": [], "item": [], "time": [], "rating": [], "line": []}
    for lineno, text in iter_lines(path, "reviews", counts, progress):
        rec, how = parse_object(text, python_first)
        if rec is None:
            counts[how] += 1
            continue
        review = _review(rec, counts)
        if review is None:
            continue
        user, item, when, rating = review
        columns["user"].append(users.setdefault(user, len(users)))
        columns["item"].append(items.setdefault(item, len(items)))
        columns["time"].append(when)
        columns["rating"].append(rating)
        columns["line"].append(lineno)
    counts["valid"] = len(columns["user"])
    dtypes = {"user": np.int64, "item": np.int64, "time": np.float64, "rating": np.float64}
    arrays = {k: np.asarray(v, dtype=dtypes.get(k, np.int64)) for k, v in columns.items()}
    return arrays, list(users), list(items), counts


def take(arrays: Arrays, index: np.ndarray) -> Arrays:
    r"""Every array indexed by ``index`` (positions, in the order wanted)."""
    return {k: v[index] for k, v in arrays.items()}


def dedupe(arrays: Arrays) -> tuple[Arrays, int]:
    r"""Keep the earliest review of each (user, item) pair, ties by file order."""
    n = len(arrays["user"])
    if n == 0:
        return arrays, 0
    order = np.lexsort((arrays["line"], arrays["time"], arrays["item"], arrays["user"]))
    u, i = arrays["user"][order], arrays["item"][order]
    first = np.ones(n, dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    keep = np.sort(order[first])
    return take(arrays, keep), int(n - len(keep))


def k_core(
    user: np.ndarray, item: np.ndarray, min_user: int, min_item: int
) -> tuple[np.ndarray, list[dict[str, int]]]:
    r"""Boolean mask of the iterated k-core and one record per round that removed something."""
    keep = np.ones(len(user), dtype=bool)
    rounds: list[dict[str, int]] = []
    n_users = int(user.max()) + 1 if len(user) else 0
    n_items = int(item.max()) + 1 if len(item) else 0
    while True:
        u, i = user[keep], item[keep]
        uc = np.bincount(u, minlength=n_users)
        ic = np.bincount(i, minlength=n_items)
        ok = (uc[u] >= min_user) & (ic[i] >= min_item)
        if ok.all():
            return keep, rounds
        rounds.append(
            {
                "round": len(rounds) + 1,
                "users_removed": int(((uc > 0) & (uc < min_user)).sum()),
                "items_removed": int(((ic > 0) & (ic < min_item)).sum()),
                "interactions_removed": int((~ok).sum()),
            }
        )
        idx = np.flatnonzero(keep)
        keep[idx[~ok]] = False


def counts_of(arrays: Arrays) -> dict[str, int]:
    r"""``{"users", "items", "interactions"}`` of the interaction arrays."""
    return {
        "users": int(len(np.unique(arrays["user"]))),
        "items": int(len(np.unique(arrays["item"]))),
        "interactions": int(len(arrays["user"])),
    }


def filter_and_order(
    arrays: Arrays, min_user: int, min_item: int
) -> tuple[Arrays, int, dict[str, int], list[dict[str, int]]]:
    r"""Deduplicate, keep the iterated k-core, order by user, time and file line.

    Returns:
        ``(arrays, duplicate pairs dropped, counts before the k-core, k-core rounds)``.
    """
    arrays, duplicates = dedupe(arrays)
    before = counts_of(arrays)
    keep, rounds = k_core(arrays["user"], arrays["item"], min_user, min_item)
    arrays = take(arrays, np.flatnonzero(keep))
    order = np.lexsort((arrays["line"], arrays["time"], arrays["user"]))
    return take(arrays, order), duplicates, before, rounds
