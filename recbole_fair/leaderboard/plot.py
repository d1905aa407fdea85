r"""recbole_fair.leaderboard.plot
###############################

``leaderboard.png``: per dataset, the quality metrics of each row (bars, ± std over seeds) and
its test NDCG@10 against its total training seconds (cost vs quality).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recbole_fair.leaderboard.summary import QUALITY


def to_png(rows: list[dict[str, Any]], path: str) -> None:
    r"""Per dataset: the quality metrics of each model (bars, ± std) and NDCG@10 against the
    total training seconds (cost vs quality)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows)) or ["(no results)"]
    fig, axes = plt.subplots(len(datasets), 2, figsize=(13, 4.2 * len(datasets)), squeeze=False)
    for (ax_bar, ax_cost), dataset in zip(axes, datasets):
        group = [r for r in rows if r["dataset"] == dataset and r["n"]]
        _quality_bars(ax_bar, group, dataset)
        _cost_quality(ax_cost, group, dataset)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _quality_bars(ax: Any, group: list[dict[str, Any]], dataset: str) -> None:
    width = 0.8 / max(len(group), 1)
    x = np.arange(len(QUALITY))
    for i, row in enumerate(group):
        means = [(row[m][0] or 0.0) for m, _ in QUALITY]
        stds = [(row[m][1] or 0.0) for m, _ in QUALITY]
        ax.bar(
            x + (i - (len(group) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=row["label"],
        )
    ax.set_xticks(x)
    ax.set_xticklabels([h for _, h in QUALITY])
    ax.set_title(f"{dataset}: test metrics (mean ± std over seeds)")
    if group:
        ax.legend(fontsize=8)


def _cost_quality(ax: Any, group: list[dict[str, Any]], dataset: str) -> None:
    points = [r for r in group if r["total_train_s"] is not None and r["ndcg@10"][0] is not None]
    for row in points:
        ax.errorbar(
            row["total_train_s"],
            row["ndcg@10"][0],
            yerr=row["ndcg@10"][1] or 0.0,
            fmt="o",
            capsize=3,
        )
        ax.annotate(
            row["label"],
            (row["total_train_s"], row["ndcg@10"][0]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    times = [r["total_train_s"] for r in points if r["total_train_s"] > 0]
    if times and max(times) / min(times) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("total train seconds (fit, per seed)")
    ax.set_ylabel("test NDCG@10")
    ax.set_title(f"{dataset}: cost vs quality")
    ax.grid(alpha=0.3)
