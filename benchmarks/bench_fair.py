r"""FAIR speed, memory and quality figures (a benchmark that prints, never a timed test).

Measures, each cell in its own process (so peak RSS is per cell), results appended to a JSON-lines
file as each cell finishes (re-running skips finished cells, so an interrupted run resumes):

* semantic-ID build time, cold (empty cache) and cached, for ml-100k and Amazon_Beauty;
* seconds per training epoch of FAIR in ``all_positions`` vs ``prefix`` mode and of SASRec on the
  same data, evaluation users/second, peak RSS;
* test metrics of FAIR (quick-start preset) and SASRec on ml-100k (``--quality``).

Usage::

    python benchmarks/bench_fair.py                       # speed cells, ml-100k + Amazon_Beauty
    python benchmarks/bench_fair.py --quality             # + full quality runs on ml-100k
    python benchmarks/bench_fair.py --datasets ml-100k --epochs 1

Amazon_Beauty is read from ``--data_path`` (default ``../shared/datasets``) and skipped when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- cells
def _cells(args) -> list[dict]:
    cells = []
    for ds in args.datasets:
        cells.append({"name": f"sid/{ds}", "kind": "sid", "dataset": ds})
        base = {"epochs": args.epochs, "stopping_step": 1000, "show_progress": False}
        fair = {**base, "hidden_size": 128, "inner_size": 256, "train_batch_size": 256}
        cells.append(
            {
                "name": f"train/{ds}/FAIR-all_positions",
                "kind": "train",
                "model": "FAIR",
                "dataset": ds,
                "config": {**fair, "train_mode": "all_positions"},
            }
        )
        cells.append(
            {
                "name": f"train/{ds}/FAIR-prefix",
                "kind": "train",
                "model": "FAIR",
                "dataset": ds,
                "config": {**fair, "train_mode": "prefix"},
            }
        )
        cells.append(
            {
                "name": f"train/{ds}/SASRec",
                "kind": "train",
                "model": "SASRec",
                "dataset": ds,
                "config": dict(base),
            }
        )
    if args.quality:
        preset = str(REPO / "properties" / "quick_start.yaml")
        cells.append(
            {
                "name": "quality/ml-100k/FAIR",
                "kind": "train",
                "model": "FAIR",
                "dataset": "ml-100k",
                "config_files": [preset],
                "config": {"show_progress": False},
            }
        )
        cells.append(
            {
                "name": "quality/ml-100k/SASRec",
                "kind": "train",
                "model": "SASRec",
                "dataset": "ml-100k",
                "config": {"show_progress": False, "epochs": args.sasrec_epochs},
            }
        )
    return cells


def _run_sid(cell: dict, args) -> dict:
    r"""Cold build into an empty cache, then a cached load; the cache is then kept in
    ``args.sid_cache`` for the training cells."""
    from recbole_fair.config import Config
    from recbole_fair.data import FAIRDataset

    cold_cache = tempfile.mkdtemp(prefix="sid_bench_")
    out = {}
    try:
        for phase, cache in (("cold", cold_cache), ("cached", cold_cache)):
            config = Config(
                model="FAIR",
                dataset=cell["dataset"],
                config_dict={
                    "sid_cache_dir": cache,
                    "data_path": args.data_path,
                    "show_progress": False,
                },
            )
            dataset = FAIRDataset(config)
            start = time.time()
            dataset.build()
            out[f"{phase}_build_seconds"] = time.time() - start
            out[f"{phase}_report"] = dataset.semantic_id_report
        os.makedirs(args.sid_cache, exist_ok=True)
        for name in os.listdir(cold_cache):
            shutil.copy(os.path.join(cold_cache, name), args.sid_cache)
    finally:
        shutil.rmtree(cold_cache, ignore_errors=True)
    return out


def _run_train(cell: dict, args) -> dict:
    from recbole_fair.quick_start import run_recbole_fair

    config = dict(cell["config"])
    config["data_path"] = args.data_path
    config.setdefault("sid_cache_dir", args.sid_cache)
    result = run_recbole_fair(
        model=cell["model"],
        dataset=cell["dataset"],
        config_file_list=cell.get("config_files"),
        config_dict=config,
    )
    return {k: result[k] for k in ("test_result", "best_valid_result", "costs", "semantic_ids")}


# --------------------------------------------------------------------------- driver
def _dataset_available(ds: str, data_path: str) -> bool:
    return ds == "ml-100k" or os.path.isfile(os.path.join(data_path, ds, f"{ds}.inter"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "Amazon_Beauty"])
    parser.add_argument("--data_path", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--epochs", type=int, default=2, help="epochs per speed cell")
    parser.add_argument("--quality", action="store_true", help="also run the quality cells")
    parser.add_argument("--sasrec_epochs", type=int, default=30, help="SASRec epoch cap (quality)")
    parser.add_argument(
        "--results", default=str(REPO / "benchmarks" / "results" / "bench_fair.jsonl")
    )
    parser.add_argument(
        "--sid_cache",
        default=str(REPO / "benchmarks" / "results" / "sid_cache"),
        help="semantic-ID cache shared by the training cells",
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell in-process
    args = parser.parse_args()
    args.data_path = os.path.abspath(args.data_path)

    cells = _cells(args)
    if args.cell:  # child process
        cell = next(c for c in cells if c["name"] == args.cell)
        runner = _run_sid if cell["kind"] == "sid" else _run_train
        start = time.time()
        payload = runner(cell, args)
        from recbole_fair.quick_start import peak_rss_mb

        payload.update(
            name=cell["name"], wall_seconds=time.time() - start, peak_rss_mb=peak_rss_mb()
        )
        print("BENCH_RESULT " + json.dumps(payload, default=str))
        return

    results_path = Path(args.results)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if results_path.is_file():
        records = [json.loads(line) for line in results_path.read_text().splitlines() if line]
        done = {r["name"] for r in records if "error" not in r}  # failed cells run again
    work_dir = Path(tempfile.mkdtemp(prefix="bench_fair_"))
    for cell in cells:
        if cell["name"] in done:
            print(f"[skip] {cell['name']} (in {results_path})")
            continue
        if not _dataset_available(cell["dataset"], args.data_path):
            print(f"[skip] {cell['name']}: no data under {args.data_path}")
            continue
        print(f"[run ] {cell['name']}", flush=True)
        cmd = [
            sys.executable,
            __file__,
            "--cell",
            cell["name"],
            "--data_path",
            args.data_path,
            "--epochs",
            str(args.epochs),
            "--sasrec_epochs",
            str(args.sasrec_epochs),
            "--sid_cache",
            args.sid_cache,
        ]
        cmd += ["--datasets", *args.datasets] + (["--quality"] if args.quality else [])
        proc = subprocess.run(cmd, cwd=work_dir, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
        if proc.returncode != 0 or not lines:
            record = {"name": cell["name"], "error": proc.stderr[-2000:]}
            print(f"[fail] {cell['name']}\n{proc.stderr[-2000:]}")
        else:
            record = json.loads(lines[-1][len("BENCH_RESULT ") :])
        with results_path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        _print_record(record)
    print(f"\nresults: {results_path}")
    _print_summary(results_path)


def _print_record(r: dict) -> None:
    if "error" in r:
        return
    if r["name"].startswith("sid/"):
        print(f"  cold {r['cold_build_seconds']:.2f}s  cached {r['cached_build_seconds']:.2f}s")
        return
    c = r["costs"]
    print(
        f"  train {c.get('train_seconds_per_epoch', float('nan')):.2f}s/epoch  "
        f"eval {c['eval_users_per_second']:.0f} users/s  peak RSS {r['peak_rss_mb']:.0f} MiB  "
        f"test {dict(r['test_result'])}"
    )


def _print_summary(path: Path) -> None:
    records = {}
    for line in path.read_text().splitlines():
        if line:
            r = json.loads(line)
            records[r["name"]] = r
    print("\n| cell | train s/epoch | eval users/s | peak RSS MiB | R@5 | N@5 | R@10 | N@10 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in records.items():
        if "error" in r:
            print(f"| {name} | failed | | | | | | |")
        elif name.startswith("sid/"):
            print(
                f"| {name} (cold / cached build s) | {r['cold_build_seconds']:.2f} / "
                f"{r['cached_build_seconds']:.2f} | | {r['peak_rss_mb']:.0f} | | | | |"
            )
        else:
            c, t = r["costs"], r["test_result"]
            print(
                f"| {name} | {c.get('train_seconds_per_epoch', float('nan')):.2f} | "
                f"{c['eval_users_per_second']:.0f} | {r['peak_rss_mb']:.0f} | "
                f"{t['recall@5']:.4f} | {t['ndcg@5']:.4f} | {t['recall@10']:.4f} | "
                f"{t['ndcg@10']:.4f} |"
            )
    for ds in ("ml-100k", "Amazon_Beauty"):
        a, p = records.get(f"train/{ds}/FAIR-all_positions"), records.get(f"train/{ds}/FAIR-prefix")
        if a and p and "costs" in a and "costs" in p:
            speedup = p["costs"]["train_seconds_per_epoch"] / a["costs"]["train_seconds_per_epoch"]
            print(f"{ds}: all_positions is {speedup:.1f}x faster per epoch than prefix")


if __name__ == "__main__":
    main()
