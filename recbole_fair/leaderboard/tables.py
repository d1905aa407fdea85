r"""recbole_fair.leaderboard.tables
#################################

The leaderboard's files: ``leaderboard.md`` (one row per model configuration and dataset, the
best value of each column in bold, † where NDCG@10 differs significantly from the reference),
``leaderboard.csv`` (every figure, unrounded) and ``leaderboard.png`` (:mod:`.plot`), rendered
from the records of one or several results files.
"""

from __future__ import annotations

import csv
import io
import os
from logging import getLogger
from typing import Any

import numpy as np

from recbole_fair.leaderboard.plot import to_png
from recbole_fair.leaderboard.results import (
    RESULTS_FILE,
    atomic_write_text,
    load_results,
    record_line,
    split_commas,
)
from recbole_fair.leaderboard.stats import (
    DERIVED_METRICS,
    PER_USER_METRIC,
    SIGNIFICANCE_LEVEL,
    add_significance,
)
from recbole_fair.leaderboard.summary import CSV_METRICS, QUALITY, summarise

# (key, header, direction of "best": 'max', 'min' or None)
_COLUMNS = [
    ("label", "model", None),
    ("dataset", "dataset", None),
    ("seeds", "seeds", None),
    ("recall@5", "R@5", "max"),
    ("ndcg@5", "N@5", "max"),
    ("recall@10", "R@10", "max"),
    ("ndcg@10", "N@10", "max"),
    ("p_value", "p", None),
    ("best_epochs", "best epoch", None),
    ("train_s_per_epoch", "train s/epoch", "min"),
    ("total_train_s", "total train s", "min"),
    ("eval_users_per_s", "eval users/s", "max"),
    ("parameters", "parameters", "min"),
    ("peak_rss_mb", "peak RSS MB", "min"),
    ("peak_cuda_mb", "peak CUDA MB", "min"),
    ("device", "device", None),
    ("max_len", "max len", None),
    ("sid_cache_key", "SID cache key", None),
    ("sid_codes", "SID codes", None),
    ("collision_rate", "SID collisions", "min"),
    ("sid_entropy_bits", "SID entropy", None),
    ("published", "published", None),
    ("published_gap", "gap to published", None),
]
_OPTIONAL = {
    "peak_cuda_mb",
    "sid_cache_key",
    "sid_codes",
    "collision_rate",
    "sid_entropy_bits",
    "published",
    "published_gap",
    "p_value",
}
# columns shown as _num's rounded numbers
_NUMBERS = ("train_s_per_epoch", "total_train_s", "eval_users_per_s", "peak_rss_mb", "peak_cuda_mb")


# ----------------------------------------------------------------------------- files
def render(
    records: list[dict[str, Any]],
    out_dir: str,
    reference: str | None = None,
    significance: str = "wilcoxon",
) -> dict[str, Any]:
    r"""Write ``leaderboard.md``, ``leaderboard.csv`` and ``leaderboard.png`` into ``out_dir``.

    Args:
        records: cell records (:func:`~.results.load_results`).
        reference: model the significance test compares with (default SASRec when present).
        significance: per-user test, ``'wilcoxon'`` (signed-rank) or ``'ttest'`` (paired t).
    """
    os.makedirs(out_dir, exist_ok=True)
    rows = summarise(records)
    reference = add_significance(rows, reference, significance)
    mark_best(rows)
    table = to_markdown(rows, reference, significance)
    paths = {
        "markdown": os.path.join(out_dir, "leaderboard.md"),
        "csv": os.path.join(out_dir, "leaderboard.csv"),
        "png": os.path.join(out_dir, "leaderboard.png"),
    }
    atomic_write_text(paths["markdown"], table)
    atomic_write_text(paths["csv"], to_csv(rows, reference))
    to_png(rows, paths["png"])
    return {**paths, "dir": out_dir, "table": table, "rows": rows, "reference": reference}


def render_file(
    results_path: str | list[str],
    out_dir: str | None = None,
    reference: str | None = None,
    significance: str = "wilcoxon",
) -> dict[str, Any]:
    r"""Re-render a results file (``--leaderboard-only``), by default next to it.

    ``results_path`` may also be several results files (a list, or one comma-separated string):
    leaderboards run side by side, e.g. one process per CPU core on disjoint model lists, merge
    into one. Their records are concatenated in the order given, identical records once (a cell
    present in several files keeps its last ``ok`` record, as within one file) and written to
    ``<out_dir>/results.jsonl``, so the merged folder is self-contained; ``out_dir`` is then
    required. One file rendered into another folder is copied there the same way.
    """
    paths = split_commas(results_path) if isinstance(results_path, str) else list(results_path)
    if not paths:
        raise ValueError("--leaderboard-only: no results file given")
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--leaderboard-only: results file {path!r} does not exist")
    if len(paths) > 1 and not out_dir:
        raise ValueError(
            f"--leaderboard-only: {len(paths)} results files are merged into one leaderboard; "
            "pass --leaderboard_dir=<folder> for it"
        )
    out_dir = out_dir or os.path.dirname(os.path.abspath(paths[0]))
    records = [record for path in paths for record in load_results(path)]
    merged = os.path.join(out_dir, RESULTS_FILE)
    if len(paths) > 1 or os.path.abspath(merged) != os.path.abspath(paths[0]):
        # a record present in several files (a lane seeded from the merged file) is kept once
        unique: dict[str, dict[str, Any]] = {}
        for record in records:
            unique.setdefault(record_line(record), record)
        records = list(unique.values())
        os.makedirs(out_dir, exist_ok=True)
        atomic_write_text(merged, "".join(unique))
        getLogger().info(f"merged {len(records)} records of {len(paths)} files into {merged}")
    out = render(records, out_dir, reference, significance)
    out["results"] = merged
    return out


# ----------------------------------------------------------------------------- cells
def _value(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, tuple):
        value = value[0]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def mark_best(rows: list[dict[str, Any]]) -> None:
    r"""``row['best']``: the columns where the row holds the best value of its dataset (only
    among two or more rows with a value)."""
    for row in rows:
        row["best"] = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == dataset]
        for key, _, direction in _COLUMNS:
            if direction is None:
                continue
            values = [(r, _value(r, key)) for r in group]
            values = [(r, v) for r, v in values if v is not None]
            if len(values) < 2:
                continue
            best = max(v for _, v in values) if direction == "max" else min(v for _, v in values)
            for r, v in values:
                if v == best:
                    r["best"].append(key)


def _num(x: float | None) -> str:
    if x is None:
        return ""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _seed_text(seeds: list[Any]) -> str:
    return ",".join("default" if s is None else str(s) for s in seeds)


def cell_text(row: dict[str, Any], key: str) -> str:
    r"""The text of one Markdown cell (without the bold and significance markers)."""
    value = row.get(key)
    if key in dict(QUALITY):
        mean, std = value if value else (None, None)
        if mean is None:
            return ""
        return f"{mean:.4f}" if row["n"] < 2 else f"{mean:.4f} ± {std:.4f}"
    if key == "seeds":
        text = _seed_text(row["seeds"])
        if row["failed_seeds"]:
            text += (" " if text else "") + f"({_seed_text(row['failed_seeds'])} failed)"
        return text
    if key == "p_value":
        if row.get("is_reference"):
            return "ref"
        return "" if value is None else f"{value:.3g}"
    if key == "best_epochs":
        epochs = [e for e in value if e is not None]
        return "/".join(str(e) for e in epochs) if len(epochs) <= 5 else f"{np.mean(epochs):.1f}"
    if key in _NUMBERS:
        return _num(value)
    if key == "parameters":
        return "" if value is None else f"{value:,}"
    if key == "collision_rate":
        return "" if value is None else f"{100 * value:.2f}%"
    if key == "sid_entropy_bits":
        return "" if value is None else f"{value:.3f}"
    if key in ("sid_cache_key", "sid_codes"):
        return "" if not value else f"`{value}`"
    if key in ("published", "published_gap"):
        return _published_text(row, key)
    return "" if value is None else str(value)


def _published_text(row: dict[str, Any], key: str) -> str:
    r"""The ``published`` cell (metric, value, source) or the ``published_gap`` one (%)."""
    published = row.get("published")
    if key == "published":
        if not published:
            return ""
        label = dict(QUALITY).get(published["metric"], published["metric"])
        return f"{label} {published['value']:.4f} ({published['source']})"
    if not published or published.get("gap_rel") is None:
        return ""
    return f"{100 * published['gap_rel']:+.1f}%"


# ----------------------------------------------------------------------------- Markdown
def _active_columns(
    rows: list[dict[str, Any]], reference: str | None
) -> list[tuple[str, str, str | None]]:
    columns = []
    for key, header, direction in _COLUMNS:
        if key in _OPTIONAL:
            if key == "p_value":
                if reference is None:
                    continue
                header = f"p (N@10 vs {reference})"
            elif key == "published_gap":
                if not any(r.get("published") for r in rows):
                    continue
            elif not any(row.get(key) for row in rows):
                continue
        columns.append((key, header, direction))
    return columns


def to_markdown(rows: list[dict[str, Any]], reference: str | None, significance: str) -> str:
    r"""The Markdown table of ``rows`` and its notes (and the failed cells, if any)."""
    columns = _active_columns(rows, reference)
    lines = [
        "| " + " | ".join(h for _, h, _ in columns) + " |",
        "|"
        + "|".join(
            "---" if d is None and k in ("label", "dataset", "device", "seeds") else "---:"
            for k, _, d in columns
        )
        + "|",
    ]
    for row in rows:
        cells = []
        for key, _, _ in columns:
            text = cell_text(row, key)
            if text and key in row.get("best", []):
                text = f"**{text}**"
            if key == PER_USER_METRIC and row.get("significant"):
                text += " †"
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _notes(rows, reference, significance)) + "\n"


def _notes(rows: list[dict[str, Any]], reference: str | None, significance: str) -> list[str]:
    r"""The lines under the Markdown table: what the columns mean, the test, failed cells."""
    notes = [
        "",
        "Test metrics of the best validation epoch (NDCG@10), leave-one-out, full ranking; "
        "mean ± sample std over seeds. **Bold**: best value of the column on that dataset. "
        "total train s: the whole fit (training and validation epochs). peak RSS: peak resident "
        "memory of the process that ran the cell (one process per cell unless --in_process).",
    ]
    if any(row.get("sid_entropy_bits") is not None for row in rows):
        notes[-1] += (
            " SID collisions: share of items whose semantic ID another item also has. SID "
            "entropy: bits per digit of the codes' distribution over the items, averaged over "
            "the digits (at most log2 of the codebook size, 8 for 256 codes)."
        )
    if reference is not None:
        notes.append(
            f"† NDCG@10 differs from {reference} (p < {SIGNIFICANCE_LEVEL}, two-sided): "
            f"paired {significance} test over per-user NDCG@10 (averaged over seeds) where both "
            "rows have per-user values on the same users, else a paired t-test over the common "
            "seeds; no correction for multiple comparisons. leaderboard.csv also has the "
            "per-user test of R@5, N@5 and R@10 (p_recall@5, p_ndcg@5, p_recall@10), whose "
            "per-user values follow from the per-user NDCG@10 when each user has one test "
            "target (the target's rank within the top 10)."
        )
    failures = [(row, e) for row in rows for e in row["errors"]]
    if failures:
        notes += ["", "Failed cells:", ""]
        for row, error in failures:
            message = str(error.get("message", "")).strip().splitlines()
            notes.append(
                f"- {row['label']} / {row['dataset']} / seed {_seed_text([error.get('seed')])}: "
                f"{error.get('type')}: {message[0] if message else ''}"
            )
    return notes


# ----------------------------------------------------------------------------- CSV
_CSV_TAIL = [
    "significant",
    "p_value",
    "test",
    *(f"p_{metric}" for metric in DERIVED_METRICS),
    "reference",
    "best_epochs",
    "epochs",
    "train_s_per_epoch",
    "total_train_s",
    "eval_users_per_s",
    "parameters",
    "peak_rss_mb",
    "peak_cuda_mb",
    "device",
    "max_item_list_length",
    "sid_cache_key",
    "sid_codes_fingerprint",
    "sid_collision_rate",
    "sid_mean_entropy_bits",
    "published_metric",
    "published_value",
    "published_source",
    "published_gap_rel",
    "best_columns",
]


def to_csv(rows: list[dict[str, Any]], reference: str | None) -> str:
    r"""The CSV of ``rows``: every figure, unrounded (8 decimals)."""
    header = ["model", "dataset", "config_hash", "seeds", "failed_seeds", "n_seeds"]
    for metric in CSV_METRICS:
        header += [f"{metric}_mean", f"{metric}_std"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header + _CSV_TAIL)
    for row in rows:
        writer.writerow(_csv_line(row, reference))
    return buffer.getvalue()


def _csv_line(row: dict[str, Any], reference: str | None) -> list[Any]:
    line = [
        row["label"],
        row["dataset"],
        row["config_hash"],
        _seed_text(row["seeds"]),
        _seed_text(row["failed_seeds"]),
        row["n"],
    ]
    for metric in CSV_METRICS:
        mean, std = row.get(metric) or (None, None)
        line += [_csv(mean), _csv(std)]
    published = row.get("published") or {}
    return line + [
        row.get("significant", False),
        _csv(row.get("p_value")),
        row.get("test") or "",
        *(_csv((row.get("p_values") or {}).get(metric)) for metric in DERIVED_METRICS),
        "ref" if row.get("is_reference") else (reference or ""),
        "/".join(str(e) for e in row["best_epochs"]),
        "/".join(str(e) for e in row["epochs"]),
        _csv(row["train_s_per_epoch"]),
        _csv(row["total_train_s"]),
        _csv(row["eval_users_per_s"]),
        _csv(row["parameters"]),
        _csv(row["peak_rss_mb"]),
        _csv(row["peak_cuda_mb"]),
        row["device"],
        row["max_len"] or "",
        row["sid_cache_key"] or "",
        row.get("sid_codes") or "",
        _csv(row["collision_rate"]),
        _csv(row.get("sid_entropy_bits")),
        published.get("metric", ""),
        _csv(published.get("value")),
        published.get("source", ""),
        _csv(published.get("gap_rel")),
        ";".join(row.get("best", [])),
    ]


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 8))
    return str(value)
