r"""Interleaved vs AttnLFA vs AttnMVP (and RecBole's DIN as a reference) on one dataset.

Quality and cost from the same runs, as in "Beyond Interleaving" (arXiv 2603.10369): test BCE,
NE and AUROC per action type and averaged (mean ± std over seeds), their relative change vs
the interleaved baseline, training seconds per epoch, peak memory, parameters, at each maximum
history length (default 50 and 200), with equal width and depth for the three models.

Every (model, length, seed) runs in a fresh subprocess so that the peak RSS belongs to that run
alone; ``activation_mb`` (tensors saved for backward on one full training batch) is a
device-independent view of the activation memory, where the 2N-token interleaved sequence shows.

DIN (RecBole built-in, single label) is trained on ``label = rating >= 4`` (``like``) with
RecBole's own sequential dataset (one row per prefix) and the same leave-one-out targets; its
figures compare with the ``@like`` columns only, and its history holds items, not actions.

Examples::

    # smallest setting (a smoke run, numbers are not meaningful)
    python benchmarks/bench_action_models.py --epochs 1 --seeds 1 --lengths 50 --max-users 100
    # the full comparison (hours on a 2-core CPU); rerun the same command after an
    # interruption: finished runs are read back from <workdir>/runs/
    python benchmarks/bench_action_models.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# mean ± std over seeds, skips nan (private: to become the leaderboard package's public statistic)
from recbole_fair.leaderboard.stats import mean_std

REPO = Path(__file__).resolve().parents[1]

MODELS = ["Interleaved", "AttnLFA", "AttnMVP"]
METRICS = ["bce", "ne", "auroc"]
TYPES = ["like", "love", "dislike"]


def default_data_path() -> str:
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example")


# ---------------------------------------------------------------------------- one run
def activation_megabytes(model: Any, batch: Any) -> float:
    r"""MiB of the tensors autograd saves for backward on one training batch (unique storages)."""
    import torch

    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model.calculate_loss(batch)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values()) / 2**20


def single_run(spec: dict[str, Any]) -> dict[str, Any]:
    r"""Train and test one model (runs inside the worker subprocess)."""
    import recbole_fair  # noqa: F401  (compatibility shims)
    from recbole_fair.quick_start import run_recbole_fair

    config_dict = dict(spec["config"])
    captured: dict[str, Any] = {}
    if spec["model"] != "DIN":
        # Measure activations on the first (full) training batch after the run.
        import recbole_fair.quick_start as qs

        original = qs.get_trainer

        def get_trainer(model_type, model_name):
            trainer_class = original(model_type, model_name)

            class Recording(trainer_class):
                def fit(self, train_data, *args, **kwargs):
                    out = super().fit(train_data, *args, **kwargs)
                    batch = next(iter(train_data)).to(self.device)
                    captured["activation_mb"] = activation_megabytes(self.model, batch)
                    return out

            return Recording

        qs.get_trainer = get_trainer
    result = run_recbole_fair(
        model=spec["model"], dataset=spec["dataset"], config_dict=config_dict, saved=True
    )
    costs = result["costs"]
    test = {k: float(v) for k, v in result["test_result"].items()}
    if spec["model"] == "DIN":  # one label (like): its figures belong in the @like columns
        test = {f"{k}@like": v for k, v in test.items()}
    return {
        "model": spec["model"],
        "length": spec["length"],
        "seed": spec["seed"],
        "test": test,
        "best_epoch": costs.get("best_epoch"),
        "epochs": costs.get("epochs"),
        "train_s_per_epoch": costs.get("train_seconds_per_epoch"),
        "peak_rss_mb": costs.get("peak_rss_mb"),
        "peak_cuda_mb": costs.get("peak_cuda_mb"),
        "activation_mb": captured.get("activation_mb"),
        "parameters": costs.get("parameters"),
        "device": costs.get("device"),
    }


# ---------------------------------------------------------------------------- orchestration
def run_config(args: argparse.Namespace, model: str, length: int, seed: int) -> dict[str, Any]:
    config: dict[str, Any] = dict(
        data_path=args.data_path,
        seed=seed,
        epochs=args.epochs,
        stopping_step=args.stopping_step,
        MAX_ITEM_LIST_LENGTH=length,
        show_progress=False,
        checkpoint_dir=os.path.join(args.workdir, "saved"),
        # Interactions only, for every model (DIN would otherwise also get user/item features).
        load_col={"inter": ["user_id", "item_id", "rating", "timestamp"]},
    )
    if model == "DIN":
        config.update(
            threshold={"rating": 4},
            train_neg_sample_args=None,
            eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "labeled"},
            metrics=["BCE", "NE", "AUROC"],
            valid_metric="NE",
            metric_decimal_place=6,
            train_batch_size=args.din_batch_size,
        )
    else:
        config.update(
            hidden_size=args.hidden_size,
            inner_size=4 * args.hidden_size,
            n_layers=args.n_layers,
            n_heads=args.n_heads,
            attention_type=args.attention_type,
            train_batch_size=args.batch_size,
        )
    dataset = args.dataset
    if args.max_users:
        dataset = subsample(args, args.max_users)
        config["data_path"] = os.path.join(args.workdir, "data")
    spec = {"model": model, "dataset": dataset, "length": length, "seed": seed, "config": config}
    # Resumable: each finished run is kept as runs/<model>-L<length>-seed<seed>-<hash>.json (the
    # hash covers the whole spec), so rerunning the same command only runs what is missing.
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    done = Path(args.workdir) / "runs" / f"{model}-L{length}-seed{seed}-{key}.json"
    if done.is_file():
        print(f"    (finished before: {done.name})", flush=True)
        return json.loads(done.read_text(encoding="utf-8"))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, __file__, "--_single", json.dumps(spec)],
        cwd=args.workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    for line in out.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            done.parent.mkdir(parents=True, exist_ok=True)
            tmp = done.with_suffix(".tmp")
            tmp.write_text(line[len("RESULT ") :], encoding="utf-8")
            os.replace(tmp, done)
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(
        f"{model} L={length} seed={seed} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )


def subsample(args: argparse.Namespace, max_users: int) -> str:
    r"""The first ``max_users`` users of the dataset, written next to the runs (smoke runs)."""
    name = f"{args.dataset}-{max_users}u"
    folder = Path(args.workdir) / "data" / name
    target = folder / f"{name}.inter"
    if target.is_file():
        return name
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(args.data_path) / args.dataset / f"{args.dataset}.inter"
    with open(source, encoding="utf-8") as f:
        header, *lines = f.read().splitlines()
    keep_users: set[str] = set()
    kept = [header]
    for line in lines:
        user = line.split("\t", 1)[0]
        if user not in keep_users:
            if len(keep_users) >= max_users:
                continue
            keep_users.add(user)
        kept.append(line)
    target.write_text("\n".join(kept) + "\n")
    return name


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    r"""Mean ± std over seeds per (length, model), and relative change vs Interleaved."""
    summary: dict[str, Any] = {}
    for length in sorted({r["length"] for r in runs}):
        rows: dict[str, Any] = {}
        for model in dict.fromkeys(r["model"] for r in runs):
            group = [r for r in runs if r["length"] == length and r["model"] == model]
            if not group:
                continue
            keys = sorted({k for r in group for k in r["test"]})
            row = {k: mean_std([r["test"].get(k) for r in group]) for k in keys}
            for cost in ("train_s_per_epoch", "peak_rss_mb", "peak_cuda_mb", "activation_mb"):
                row[cost] = mean_std([r[cost] for r in group if r[cost] is not None])
            row["parameters"] = group[0]["parameters"]
            row["seeds"] = [r["seed"] for r in group]
            rows[model] = row
        base = rows.get("Interleaved")
        if base:
            for model, row in rows.items():
                if model in ("Interleaved", "DIN"):
                    continue
                row["rel_vs_interleaved_pct"] = {
                    k: 100.0 * (row[k][0] - base[k][0]) / base[k][0]
                    for k in base
                    if k in row
                    and isinstance(base[k], tuple)
                    and base[k][0]
                    and row[k][0] is not None
                }
        summary[str(length)] = rows
    return summary


def fmt(pair: Any, digits: int = 4) -> str:
    if not isinstance(pair, tuple) or pair[0] is None:
        return "—"
    return f"{pair[0]:.{digits}f}±{pair[1]:.{digits}f}"


def print_tables(summary: dict[str, Any], label: str) -> None:
    columns = [m for m in METRICS] + [f"{m}@{t}" for m in METRICS for t in TYPES]
    for length, rows in summary.items():
        print(f"\n## {label} — max history length {length}")
        print("| model | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for model, row in rows.items():
            print(f"| {model} | " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
        print(
            "\n| model | train s/epoch | peak RSS MiB | peak CUDA MiB | activations MiB | params | Δ BCE % | Δ NE % | Δ AUROC % | Δ s/epoch % | Δ activations % |"
        )
        print("|---" * 11 + "|")
        for model, row in rows.items():
            rel = row.get("rel_vs_interleaved_pct", {})

            def delta(key: str, rel: dict = rel) -> str:
                return f"{rel[key]:+.2f}" if key in rel else "—"

            print(
                f"| {model} | {fmt(row['train_s_per_epoch'], 2)} | {fmt(row['peak_rss_mb'], 0)} | "
                f"{fmt(row['peak_cuda_mb'], 0)} | {fmt(row['activation_mb'], 1)} | {row['parameters']} | "
                f"{delta('bce')} | {delta('ne')} | {delta('auroc')} | {delta('train_s_per_epoch')} | "
                f"{delta('activation_mb')} |"
            )


def to_json(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, tuple):
        return {"mean": to_json(obj[0]), "std": to_json(obj[1])}
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_json(v) for v in obj]
    return obj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument(
        "--data-path",
        default=None,
        help="folder holding <dataset>/ (default: the recbole wheel's examples)",
    )
    parser.add_argument("--models", nargs="+", default=MODELS + ["DIN"])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (2020, 2021, ...)")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--stopping-step", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=2)
    parser.add_argument("--attention-type", default="softmax", choices=["softmax", "silu"])
    parser.add_argument("--batch-size", type=int, default=128, help="training windows per batch")
    parser.add_argument("--din-batch-size", type=int, default=2048, help="DIN prefixes per batch")
    parser.add_argument(
        "--max-users", type=int, default=0, help="keep the first N users (smoke runs)"
    )
    parser.add_argument("--workdir", default=str(REPO / "benchmarks" / "results" / "action_models"))
    parser.add_argument("--out", default=None, help="JSON output (default: <workdir>/results.json)")
    parser.add_argument("--label", default=None, help="title of the tables (e.g. 'TINY smoke run')")
    parser.add_argument("--_single", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._single:
        print("RESULT " + json.dumps(single_run(json.loads(args._single))), flush=True)
        return

    args.data_path = args.data_path or default_data_path()
    os.makedirs(args.workdir, exist_ok=True)
    seeds = [2020 + i for i in range(args.seeds)]
    runs = []
    start = time.time()
    for length in args.lengths:
        for model in args.models:
            for seed in seeds:
                print(f"[{time.time() - start:7.1f}s] {model} L={length} seed={seed}", flush=True)
                runs.append(run_config(args, model, length, seed))
    summary = summarise(runs)
    label = args.label or (
        f"{args.dataset}, {len(seeds)} seed(s), ≤{args.epochs} epochs, d={args.hidden_size}, "
        f"{args.n_layers} layers, {args.attention_type}"
        + (f", first {args.max_users} users" if args.max_users else "")
    )
    print_tables(summary, label)
    out = args.out or os.path.join(args.workdir, "results.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(
            to_json({"label": label, "args": vars(args), "runs": runs, "summary": summary}),
            f,
            indent=2,
        )
    print(f"\nsaved {out} ({time.time() - start:.0f}s)")


if __name__ == "__main__":
    main()
