r"""recbole_fair.leaderboard.stats
################################

Means over seeds and the significance test of each leaderboard row against a reference row of
its dataset: a paired test (Wilcoxon signed-rank or t-test) on per-user NDCG@10, averaged over
seeds, when both rows kept per-user values on the same users; else a paired t-test across the
common seeds. The same per-user test on R@5, N@5 and R@10 (:data:`DERIVED_METRICS`), whose
per-user values follow from the kept NDCG@10 when every user has one test target
(:func:`per_user_metric`). Imports nothing else of the leaderboard.
"""

from __future__ import annotations

import math
from logging import getLogger
from typing import Any

import numpy as np

DEFAULT_REFERENCE = "SASRec"
SIGNIFICANCE_LEVEL = 0.05
PER_USER_METRIC = "ndcg@10"
# metrics whose per-user values follow from the per-user NDCG@10 of a single-target test
DERIVED_METRICS = ("recall@5", "ndcg@5", "recall@10")
_CUTOFF = 10  # the k of PER_USER_METRIC
_RANK_NDCG = 1.0 / np.log2(np.arange(2, _CUTOFF + 2))  # NDCG@10 of one target at rank 1..10
_ROUNDING = 5e-5  # the records keep 4 decimals


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    r"""Mean and sample standard deviation of the finite values (None, None without any; the
    std is None for a single value, which has no sample std)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    # one value has no sample std: None (an empty CSV cell), not 0
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else None


def mean(values: list[Any]) -> float | None:
    r"""Mean of the finite values, None without any."""
    return mean_std(values)[0]


def paired_test(a: np.ndarray, b: np.ndarray, method: str = "wilcoxon") -> float:
    r"""Two-sided p-value of a paired test between ``a`` and ``b`` (1.0 when identical)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    if len(diff) < 2 or np.allclose(diff, 0.0):
        return 1.0
    if method == "ttest":
        if np.allclose(diff, diff[0]):  # constant non-zero difference: no variance
            return 0.0
        p = stats.ttest_rel(a, b).pvalue
    elif method == "wilcoxon":
        p = stats.wilcoxon(a, b).pvalue
    else:
        raise ValueError(f"unknown significance test '{method}' (wilcoxon or ttest)")
    return float(p) if p is not None and math.isfinite(p) else 1.0


def target_ranks(ndcg10: np.ndarray) -> np.ndarray | None:
    r"""Rank (1 to 10) of each user's test target, 0 beyond the top 10, from per-user NDCG@10
    values of a test with one target per user (leave-one-out): there NDCG@10 is
    ``1 / log2(rank + 1)`` within the top 10 and 0 beyond it, one value per rank. None when a
    value is none of these 11 (to the records' 4 decimals): a user with several targets, whose
    NDCG does not give a rank."""
    values = np.asarray(ndcg10, dtype=float)
    gaps = np.abs(values[:, None] - _RANK_NDCG[None, :])  # [n_users, 10]
    ranks = gaps.argmin(axis=1) + 1
    in_top = gaps.min(axis=1) <= _ROUNDING
    beyond = np.abs(values) <= _ROUNDING
    if not np.all(in_top | beyond):
        return None
    return np.where(beyond, 0, ranks)


def per_user_metric(ndcg10: np.ndarray, metric: str) -> np.ndarray | None:
    r"""Per-user ``metric`` (``ndcg@10`` itself, or one of :data:`DERIVED_METRICS`) from per-user
    NDCG@10 of a single-target test; None where :func:`target_ranks` finds no ranks."""
    if metric == PER_USER_METRIC:
        return np.asarray(ndcg10, dtype=float)
    name, k = metric.split("@")
    ranks = target_ranks(ndcg10)
    if ranks is None or name not in ("recall", "ndcg") or not 0 < int(k) <= _CUTOFF:
        return None
    hit = (ranks > 0) & (ranks <= int(k))
    if name == "recall":
        return hit.astype(float)
    return np.where(hit, _RANK_NDCG[np.maximum(ranks, 1) - 1], 0.0)


def _per_user_matrix(
    row: dict[str, Any], metric: str = PER_USER_METRIC
) -> tuple[np.ndarray, str] | None:
    r"""A row's per-user ``metric`` averaged over its seeds, and the hash of their users; None
    unless every seed kept per-user values, on the same users (and, for a derived metric, with
    one target per user)."""
    per_user = row.get("per_user") or []
    if not per_user or any(p is None or not p.get("users_sha1") for p in per_user):
        return None
    shas = {p["users_sha1"] for p in per_user}
    if len(shas) != 1 or any(p.get("metric", PER_USER_METRIC) != PER_USER_METRIC for p in per_user):
        return None
    seeds = [per_user_metric(np.asarray(p["values"], dtype=float), metric) for p in per_user]
    if any(v is None for v in seeds):
        return None
    return np.mean(seeds, axis=0), shas.pop()


def add_significance(
    rows: list[dict[str, Any]], reference: str | None = None, method: str = "wilcoxon"
) -> str | None:
    r"""Set ``p_value``, ``test`` and ``significant`` on each row against the reference model's
    row of the same dataset: per-user paired test (``method``) on NDCG@10 averaged over seeds
    when both rows have per-user values on the same users, else a paired t-test over the common
    seeds (two or more). ``p_values`` maps each of :data:`DERIVED_METRICS` to the per-user test
    of that metric (None without per-user values of both rows). Returns the reference model used
    (``reference``, else SASRec when present, else None: no test).

    ``reference`` names a row label (``SASRec``, or a variant's ``SASRec [learning_rate=0.002]``)
    or a model: where a model has several configurations in a dataset, its reference row is the
    one labelled by the bare model name (the configuration without extra settings); a dataset
    with no such single row gets no test, and a warning says why."""
    models = {r["model"] for r in rows}
    if reference is None:
        reference = DEFAULT_REFERENCE if DEFAULT_REFERENCE in models else None
    for row in rows:
        row.update(
            p_value=None,
            test=None,
            significant=False,
            is_reference=False,
            p_values=dict.fromkeys(DERIVED_METRICS),
        )
    if reference is None:
        return None
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        ref = _reference_row(rows, dataset, reference)
        if ref is None:
            continue
        ref["is_reference"] = True
        ref_users = _per_user_matrix(ref)
        # the reference's derived per-user values, once for every row it is tested against
        ref_derived = {m: _per_user_matrix(ref, m) for m in DERIVED_METRICS} if ref_users else {}
        for row in rows:
            if row is ref or row["dataset"] != dataset or not row["n"]:
                continue
            _test_row(row, ref, ref_users, method)
            _test_derived(row, ref_derived, method)
    return reference


def _test_derived(
    row: dict[str, Any], ref_derived: dict[str, tuple[np.ndarray, str] | None], method: str
) -> None:
    r"""``row['p_values']``: the per-user test of each derived metric that the row and the
    reference (``ref_derived``: metric -> its per-user values and users' hash) have on the same
    users."""
    for metric, theirs in ref_derived.items():
        ours = _per_user_matrix(row, metric)
        if ours is not None and theirs is not None and ours[1] == theirs[1]:
            row["p_values"][metric] = paired_test(ours[0], theirs[0], method)


def _reference_row(
    rows: list[dict[str, Any]], dataset: str, reference: str
) -> dict[str, Any] | None:
    r"""The one row of ``dataset`` labelled ``reference``, else the one row of that model; None
    (with a warning when there are several) otherwise."""
    candidates = [r for r in rows if r["dataset"] == dataset and r["n"]]
    refs = [r for r in candidates if r["label"] == reference]
    if not refs:
        refs = [r for r in candidates if r["model"] == reference]
    if len(refs) == 1:
        return refs[0]
    if refs:
        getLogger().warning(
            f"{dataset}: {len(refs)} rows of {reference} ("
            + ", ".join(r["label"] for r in refs)
            + "); no significance test there: pass --reference with one of these labels"
        )
    return None


def _test_row(
    row: dict[str, Any],
    ref: dict[str, Any],
    ref_users: tuple[np.ndarray, str] | None,
    method: str,
) -> None:
    r"""Set ``row``'s p-value and test against ``ref`` (nothing with fewer than two common
    seeds and no common per-user values)."""
    users = _per_user_matrix(row)
    if users is not None and ref_users is not None and users[1] == ref_users[1]:
        row["p_value"] = paired_test(users[0], ref_users[0], method)
        row["test"] = f"per-user {method}"
    else:
        seeds = [s for s in row["seed_ndcg10"] if s in ref["seed_ndcg10"]]
        pairs = [
            (row["seed_ndcg10"][s], ref["seed_ndcg10"][s])
            for s in seeds
            if row["seed_ndcg10"][s] is not None and ref["seed_ndcg10"][s] is not None
        ]
        if len(pairs) < 2:
            return
        a, b = zip(*pairs)
        row["p_value"] = paired_test(np.array(a), np.array(b), "ttest")
        row["test"] = "seed ttest"
    row["significant"] = row["p_value"] < SIGNIFICANCE_LEVEL
