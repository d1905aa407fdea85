r"""Learning curves of leaderboard runs: validation score and training loss per epoch.

Every finished cell records its curves (``costs.valid_scores``, ``costs.train_losses``); a cell
still training or stopped by its STOP file has them in its last-epoch side file
(``checkpoints/*-last.pth.json``). This script reads both from leaderboard folders and writes a
PNG (validation score and training loss against the epoch), a JSON of the curves and a Markdown
table (one row per run: the score after each epoch, the best, and the test N@10 where the run
finished).

    python benchmarks/plot_curves.py leaderboards/recipe/recipe-e10-* \
        --out docs/leaderboards/Amazon_Scientific-recipe-e10/curves

Each run is labelled by its folder name (e.g. ``recipe-e10-d512-lr0.0025``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from typing import Any


def _record_curves(record: dict[str, Any]) -> dict[str, Any]:
    costs = record.get("costs") or {}
    return {
        "valid_scores": costs.get("valid_scores") or [],
        "train_losses": costs.get("train_losses") or [],
        "finished": True,
        "best_epoch": costs.get("best_epoch"),
        "test_ndcg@10": (record.get("test_result") or {}).get("ndcg@10"),
        "test_recall@5": (record.get("test_result") or {}).get("recall@5"),
        "train_seconds_per_epoch": costs.get("train_seconds_per_epoch"),
    }


def run_curves(folder: str) -> dict[str, Any] | None:
    r"""The curves of the one run in a leaderboard folder: its latest finished record, else the
    side file of its last-epoch checkpoint (a run still training or stopped); None if neither."""
    results = os.path.join(folder, "results.jsonl")
    if os.path.isfile(results):
        records = [json.loads(line) for line in open(results, encoding="utf-8") if line.strip()]
        done = [r for r in records if r.get("record") == "cell" and r.get("status") == "ok"]
        if done:
            return _record_curves(done[-1])
    sides = sorted(glob.glob(os.path.join(folder, "checkpoints", "*-last.pth.json")))
    if not sides:
        return None
    with open(sides[-1], encoding="utf-8") as f:
        state = json.load(f)
    seconds = state.get("train_epoch_seconds") or []
    return {
        "valid_scores": state.get("valid_scores") or [],
        "train_losses": state.get("train_losses") or [],
        "finished": False,
        "best_epoch": state.get("best_epoch"),
        "test_ndcg@10": None,
        "test_recall@5": None,
        "train_seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
    }


def to_markdown(curves: dict[str, dict[str, Any]], metric: str) -> str:
    width = max((len(c["valid_scores"]) for c in curves.values()), default=0)
    head = ["run", *[f"ep {e + 1}" for e in range(width)], f"best valid {metric}", "test N@10"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, c in curves.items():
        scores = [f"{v:.4f}" for v in c["valid_scores"]] + [""] * (width - len(c["valid_scores"]))
        best = f"{max(c['valid_scores']):.4f}" if c["valid_scores"] else ""
        test = "" if c["test_ndcg@10"] is None else f"{c['test_ndcg@10']:.4f}"
        if not c["finished"]:
            test = f"(stopped after {len(c['valid_scores'])} epoch(s))"
        lines.append("| " + " | ".join([name, *scores, best, test]) + " |")
    return "\n".join(lines)


def plot(curves: dict[str, dict[str, Any]], path: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    for name, c in curves.items():
        epochs = range(1, len(c["valid_scores"]) + 1)
        top.plot(epochs, c["valid_scores"], marker="o", label=name)
        bottom.plot(range(1, len(c["train_losses"]) + 1), c["train_losses"], marker=".", label=name)
    top.set_ylabel(f"validation {metric}")
    bottom.set_ylabel("training loss (sum of terms)")
    bottom.set_xlabel("epoch")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="leaderboard folders, one run each")
    parser.add_argument("--out", required=True, help="output prefix (.png, .json, .md added)")
    parser.add_argument("--metric", default="NDCG@10", help="name of the validation metric")
    args = parser.parse_args(argv)
    curves = {}
    for folder in sorted(f for f in args.folders if os.path.isdir(f)):  # a shell glob's logs
        found = run_curves(folder)
        if found is None:
            print(f"{folder}: no finished record and no last-epoch checkpoint, skipped")
            continue
        curves[os.path.basename(os.path.normpath(folder))] = found
    if not curves:
        raise SystemExit("no curves found")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(curves, f, indent=1)
    table = to_markdown(curves, args.metric)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(f"Validation {args.metric} after each epoch (`benchmarks/plot_curves.py`).\n\n")
        f.write(table + "\n")
    plot(curves, args.out + ".png", args.metric)
    print(table)


if __name__ == "__main__":
    main()
