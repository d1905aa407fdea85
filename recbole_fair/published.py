r"""recbole_fair.published
#######################

Published test numbers (leave-one-out, full ranking over all items) that a leaderboard row can be
compared with, as collected in the project's benchmark notes (BENCHMARK.md, kept outside the
repository, "Published numbers on Amazon Beauty"); each entry names its source. Only
Amazon_Beauty has published numbers under our protocol.

``PUBLISHED[dataset][model]`` is a list of entries, the first being the one the leaderboard shows
(the number the model's own paper reports; for SASRec, RecBole's SASRec with cross-entropy
loss, the model our SASRec rows run, rather than the weaker SASRec of the generative-
recommendation papers, which follows as the second entry). Metric
keys are RecBole's (``recall@5``, ``ndcg@10``...); an entry carries only the metrics its source
reports.
"""

from __future__ import annotations

from typing import Any

PUBLISHED: dict[str, dict[str, list[dict[str, Any]]]] = {
    "Amazon_Beauty": {
        "SASRec": [
            {
                "source": "RecBole SASRec-CE, LETTER issue #20",
                "recall@5": 0.0543,
                "ndcg@5": 0.0315,
                "recall@10": 0.0821,
                "ndcg@10": 0.0405,
            },
            {
                "source": "TIGER paper",
                "recall@5": 0.0387,
                "ndcg@5": 0.0249,
                "recall@10": 0.0605,
                "ndcg@10": 0.0318,
            },
            {
                "source": "cornac reproduction (tuned)",
                "recall@5": 0.0508,
                "ndcg@5": 0.0348,
                "recall@10": 0.0740,
                "ndcg@10": 0.0423,
            },
        ],
        "TIGER": [
            {
                "source": "TIGER paper",
                "recall@5": 0.0454,
                "ndcg@5": 0.0321,
                "recall@10": 0.0648,
                "ndcg@10": 0.0384,
            },
            {
                "source": "cornac reproduction",
                "recall@5": 0.0419,
                "ndcg@5": 0.0270,
                "recall@10": 0.0634,
                "ndcg@10": 0.0338,
            },
        ],
        "RPG": [
            {
                "source": "RPG paper",
                "recall@5": 0.0550,
                "ndcg@5": 0.0381,
                "recall@10": 0.0809,
                "ndcg@10": 0.0464,
            },
            {
                "source": "cornac reproduction",
                "recall@5": 0.0533,
                "ndcg@5": 0.0372,
                "recall@10": 0.0789,
                "ndcg@10": 0.0454,
            },
        ],
        "FAIR": [{"source": "FAIR paper", "recall@5": 0.0563}],
    },
}

# Metric compared in the leaderboard's "published" column: the first one the entry reports.
COMPARED_METRICS = ("ndcg@10", "recall@10", "ndcg@5", "recall@5")


def published_entries(model: str, dataset: str) -> list[dict[str, Any]]:
    r"""All published entries for ``model`` on ``dataset`` (empty when there are none)."""
    return list(PUBLISHED.get(dataset, {}).get(model, []))


def published_number(model: str, dataset: str) -> tuple[str, float, str] | None:
    r"""``(metric, value, source)`` of the number the leaderboard compares the row with: the
    primary entry's NDCG@10, else its first reported metric of :data:`COMPARED_METRICS`."""
    entries = published_entries(model, dataset)
    if not entries:
        return None
    entry = entries[0]
    for metric in COMPARED_METRICS:
        if metric in entry:
            return metric, float(entry[metric]), str(entry["source"])
    return None
