r"""recbole_fair.leaderboard.stats
################################

Means over seeds and the significance test of each leaderboard row against a reference row of
its dataset: a paired test (Wilcoxon signed-rank or t-test) on per-user NDCG@10, averaged over
seeds, when both rows kept per-user values on the same users; else a paired t-test across the
common seeds. Imports nothing else of the leaderboard.
"""

from __future__ import annotations

import math
from logging import getLogger
from typing import Any

import numpy as np

DEFAULT_REFERENCE = "SASRec"
SIGNIFICANCE_LEVEL = 0.05
PER_USER_METRIC = "ndcg@10"


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


def _per_user_matrix(row: dict[str, Any]) -> tuple[np.ndarray, str] | None:
    r"""A row's per-user values averaged over its seeds, and the hash of their users; None
    unless every seed kept them, on the same users."""
    per_user = row.get("per_user") or []
    if not per_user or any(p is None or not p.get("users_sha1") for p in per_user):
        return None
    shas = {p["users_sha1"] for p in per_user}
    if len(shas) != 1:
        return None
    values = np.asarray([p["values"] for p in per_user], dtype=float)
    return values.mean(axis=0), shas.pop()


def add_significance(
    rows: list[dict[str, Any]], reference: str | None = None, method: str = "wilcoxon"
) -> str | None:
    r"""Set ``p_value``, ``test`` and ``significant`` on each row against the reference model's
    row of the same dataset: per-user paired test (``method``) on NDCG@10 averaged over seeds
    when both rows have per-user values on the same users, else a paired t-test over the common
    seeds (two or more). Returns the reference model used (``reference``, else SASRec when
    present, else None: no test).

    ``reference`` names a row label (``SASRec``, or a variant's ``SASRec [learning_rate=0.002]``)
    or a model: where a model has several configurations in a dataset, its reference row is the
    one labelled by the bare model name (the configuration without extra settings); a dataset
    with no such single row gets no test, and a warning says why."""
    models = {r["model"] for r in rows}
    if reference is None:
        reference = DEFAULT_REFERENCE if DEFAULT_REFERENCE in models else None
    for row in rows:
        row.update(p_value=None, test=None, significant=False, is_reference=False)
    if reference is None:
        return None
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        ref = _reference_row(rows, dataset, reference)
        if ref is None:
            continue
        ref["is_reference"] = True
        ref_users = _per_user_matrix(ref)
        for row in rows:
            if row is ref or row["dataset"] != dataset or not row["n"]:
                continue
            _test_row(row, ref, ref_users, method)
    return reference


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
