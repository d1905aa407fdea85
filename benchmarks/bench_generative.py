r"""Training and ranking cost of the generative recommenders vs RecBole's ID-based ones (issue #4).

Runs back to back in one process, so that every run sees the same machine load, on one dataset:

========== ========================================================================
FAIR       exact ranking (every item scored from its semantic-ID digits)
RPG        exact ranking
RPG:graph  RPG with ``decoding: graph`` (RPG's graph-constrained decoding)
TIGER      trie-constrained beam search, ``beam_size: 20``
SASRec     RecBole built-in (``loss_type: CE``)
GRU4Rec    RecBole built-in (``loss_type: CE``)
BERT4Rec   RecBole built-in (``loss_type: CE``)
========== ========================================================================

For each run:

* **training**: seconds per optimizer step (``calculate_loss`` + backward + Adam step at lr
  1e-3, as ``bench_train_step.py``) averaged over ``--steps`` steps after 2 warm-up steps,
  steps per epoch (``len(train_data)``) and their product, the estimated seconds per epoch;
* **evaluation**: users per second of ``model.full_sort_predict`` (``model.eval()``,
  ``torch.no_grad()``) on RecBole's full-sort test loader at the same ``eval_batch_size`` for
  every model (``--eval_batch_size``, default 256), over the first ``--eval_users`` test users
  (TIGER: ``--tiger_eval_users``), after one untimed warm-up call on the first batch. Only the
  ``full_sort_predict`` calls are timed (score masking and top-k happen outside). A batch is cut
  at the user cap, so when the cap is below ``--eval_batch_size`` that run's batch is smaller
  (the ``batch`` column says so). RPG:graph builds its item graph once per weights: that build
  is excluded from users/s and reported as ``graph_build_seconds``. TIGER runs with
  ``tiger_exact_check_users: 0`` (the beam-vs-exact overlap check is off while timed); its
  decoder splits each batch into chunks of ``tiger_decode_chunk // beam_size`` users.

Model settings: ``--model_config`` (default ``docs/leaderboards/cpu_budget.yaml``, the CPU
leaderboard's per-model overrides) over each model's ``properties/model/<Model>.yaml``.

``--checkpoints DIR`` (a leaderboard checkpoint folder, files ``<Model>-<dataset>-seed<s>-<hash>-
best.pth``): when a run's model has a best checkpoint there (newest first; the first one whose
``state_dict`` loads), its weights replace the random ones, and the table adds Recall@10 and
NDCG@10 computed from the top-10 of ``full_sort_predict`` (RecBole's masking: padding item only
for sequential models) on the **first N test users only** (N = that run's user cap), so they
are not the leaderboard's full-test figures. Whenever RPG and RPG:graph both run, the share of
users whose graph and exact top-10 sets are identical and the top-1 agreement are reported
(meaningful only with trained weights). The training steps never change the weights that are
evaluated: they are restored after timing.

Results go to ``--out`` (default ``benchmarks/results/bench_generative_<dataset>.json``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_generative.py --dataset Amazon_Beauty
    python benchmarks/bench_generative.py --dataset ml-100k --eval_users 256 \
        --tiger_eval_users 64 --steps 2                      # a quick smoke run
    python benchmarks/bench_generative.py --dataset ml-100k --runs FAIR RPG RPG:graph SASRec \
        --checkpoints leaderboards/ml-100k-cap5/checkpoints
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# run name -> (model, extra config, table label)
RUNS: dict[str, tuple[str, dict[str, Any], str]] = {
    "FAIR": ("FAIR", {}, "FAIR (exact)"),
    "RPG": ("RPG", {}, "RPG (exact)"),
    "RPG:graph": ("RPG", {"decoding": "graph"}, "RPG (graph)"),
    "TIGER": ("TIGER", {"beam_size": 20, "tiger_exact_check_users": 0}, "TIGER (beam 20)"),
    "SASRec": ("SASRec", {}, "SASRec"),
    "GRU4Rec": ("GRU4Rec", {}, "GRU4Rec"),
    "BERT4Rec": ("BERT4Rec", {}, "BERT4Rec"),
}
TOPK = 10
WARMUP_STEPS = 2


# ----------------------------------------------------------------------------- helpers
def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def _dataset_key(config: Any) -> str:
    r"""What decides the dataset object of a run: the class ``create_dataset`` picks and every
    dataset, split and semantic-ID setting (runs with the same key share one loaded dataset)."""
    import recbole.data.dataset as recbole_datasets

    import recbole_fair.data as fair_datasets

    name = config["model"] + "Dataset"
    cls = getattr(fair_datasets, name, None) or getattr(recbole_datasets, name, None)
    cls_name = cls.__name__ if cls is not None else f"recbole:{config['MODEL_TYPE']}"
    keys = set(config.parameters["Dataset"]) | {"eval_args", "seed", "train_mode"}
    keys |= {"n_codes", "codebook_size"}
    keys |= {k for k in config.final_config_dict if k.startswith(("sid_", "rqvae_", "text_"))}
    return repr((cls_name, sorted((k, repr(config[k])) for k in keys)))


def _find_checkpoints(folder: str | None, model: str, dataset: str) -> list[Path]:
    if not folder:
        return []
    found = Path(folder).glob(f"{model}-{dataset}-seed*-best.pth")
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _load_checkpoint(model: Any, paths: list[Path], device: Any) -> dict[str, Any]:
    r"""Load the first checkpoint of ``paths`` whose ``state_dict`` fits ``model`` (strict)."""
    from recbole_fair.compat import trusted_torch_load

    errors = []
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    codes_before = initial.get("item_codes")
    for path in paths:
        try:
            checkpoint = trusted_torch_load(str(path), map_location=device)
            model.load_state_dict(checkpoint["state_dict"])
        except Exception as err:  # untrusted file, other config (shapes), ...
            errors.append(f"{path.name}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
            model.load_state_dict(initial)  # a failed strict load may have copied some tensors
            continue
        info: dict[str, Any] = {"checkpoint": str(path), "checkpoint_errors": errors}
        if codes_before is not None:  # the checkpoint brings the codes it was trained with
            same = codes_before.shape == model.item_codes.shape and bool(
                (codes_before == model.item_codes).all()
            )
            info["checkpoint_item_codes_match_dataset"] = same
        return info
    return {"checkpoint": None, "checkpoint_errors": errors}


def time_train_steps(model: Any, train_data: Any, device: Any, steps: int) -> float:
    r"""Mean seconds per optimizer step (Adam, lr 1e-3) after ``WARMUP_STEPS`` steps that warm up
    allocators and caches, on an existing model and loader (also ``bench_train_step.py``'s)."""
    import torch

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = iter(train_data)
    seconds = []
    for _ in range(steps + WARMUP_STEPS):
        try:
            batch = next(batches)
        except StopIteration:  # an epoch shorter than the steps asked for
            batches = iter(train_data)
            batch = next(batches)
        batch = batch.to(device)
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss = sum(loss) if isinstance(loss, tuple) else loss
        loss.backward()
        optimizer.step()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return sum(seconds[WARMUP_STEPS:]) / steps


def _eval_batches(test_data: Any, n_users: int):
    r"""RecBole's full-sort test batches ``(interaction, history_index, positive_u, positive_i)``
    cut to the first ``n_users`` users (sequential loaders: one row per user)."""
    seen = 0
    for interaction, history_index, positive_u, positive_i in test_data:
        n = min(len(interaction), n_users - seen)
        if n <= 0:
            return
        if n < len(interaction):
            keep = positive_u < n
            positive_u, positive_i = positive_u[keep], positive_i[keep]
            interaction = interaction[:n]
            if history_index is not None:
                rows, cols = history_index
                keep = rows < n
                history_index = (rows[keep], cols[keep])
        yield interaction, history_index, positive_u, positive_i
        seen += n


def topk_metrics(top: Any, positive_u: Any, positive_i: Any, n_items: int) -> tuple[float, float]:
    r"""Sums over the batch's users of Recall@k and NDCG@k (RecBole's definitions) of ``top``
    (``[B, k]`` ranked item ids) against the positives ``(positive_u, positive_i)``."""
    import torch

    B, k = top.shape
    positive = torch.zeros(B, n_items, dtype=torch.bool)
    positive[positive_u.cpu(), positive_i.cpu()] = True
    hits = positive.gather(1, top).float()  # [B, k]
    n_pos = positive.sum(1)  # [B]
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float))  # [k]
    ideal = discount.cumsum(0)[(n_pos.clamp(1, k) - 1)]  # [B]
    recall = hits.sum(1) / n_pos.clamp_min(1)
    ndcg = (hits * discount).sum(1) / ideal
    return float(recall.sum()), float(ndcg.sum())


def time_evaluation(model: Any, test_data: Any, device: Any, n_users: int) -> dict[str, Any]:
    r"""Users/s of ``full_sort_predict`` over the first ``n_users`` test users (one untimed
    warm-up call on the first batch), plus their top-``TOPK`` items and metrics."""
    import torch

    from recbole_fair.analysis.popularity import masked_topk

    n_items = test_data._dataset.item_num
    model.eval()
    with torch.no_grad():
        first = next(_eval_batches(test_data, n_users))[0]
        model.full_sort_predict(first.to(device))  # warm-up
        model.eval()  # TIGER: restarts its generation report, which then covers the timed users
        seconds, users, recall, ndcg, tops, batch_sizes = 0.0, 0, 0.0, 0.0, [], set()
        for interaction, history_index, positive_u, positive_i in _eval_batches(test_data, n_users):
            interaction = interaction.to(device)
            _sync(device)
            start = time.perf_counter()
            scores = model.full_sort_predict(interaction)
            _sync(device)
            seconds += time.perf_counter() - start
            top = masked_topk(scores, history_index, TOPK)
            r, n = topk_metrics(top, positive_u, positive_i, n_items)
            recall, ndcg, users = recall + r, ndcg + n, users + len(interaction)
            batch_sizes.add(len(interaction))
            tops.append(top)
    return {
        "eval_users": users,
        "eval_batch_sizes": sorted(batch_sizes, reverse=True),
        "eval_seconds": seconds,
        "eval_users_per_second": users / seconds,
        f"recall@{TOPK}": recall / users,
        f"ndcg@{TOPK}": ndcg / users,
        "top": torch.cat(tops),  # [users, TOPK], dropped before saving
    }


# ------------------------------------------------------------------------------- one run
def bench_run(run: str, args: argparse.Namespace, overrides: dict, cache: dict) -> dict[str, Any]:
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_fair.config import Config
    from recbole_fair.utils import create_dataset, get_model

    model_name, extra, label = RUNS[run]
    config_dict: dict[str, Any] = {
        **overrides.get(model_name, {}),
        "show_progress": False,
        "state": "WARNING",
        "eval_batch_size": args.eval_batch_size,
        **extra,
    }
    if args.dataset != "ml-100k":  # RecBole always reads ml-100k from its wheel
        config_dict["data_path"] = args.data_path
    if getattr(get_model(model_name), "uses_semantic_ids", False):
        config_dict["sid_cache_dir"] = args.sid_cache_dir
    config = Config(model=model_name, dataset=args.dataset, config_dict=config_dict)
    device = config["device"]

    start = time.perf_counter()
    key = _dataset_key(config)
    if key not in cache:
        init_seed(config["seed"], config["reproducibility"])
        cache[key] = create_dataset(config)
    # build() turns the loaded frames into tensors in place: every run splits its own copy
    train_data, _, test_data = data_preparation(config, copy.deepcopy(cache[key]))
    data_seconds = time.perf_counter() - start

    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset).to(device)
    result: dict[str, Any] = {
        "run": run,
        "label": label,
        "model": model_name,
        "config": {k: v for k, v in config_dict.items() if k not in ("show_progress", "state")},
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "data_seconds": data_seconds,
    }
    paths = _find_checkpoints(args.checkpoints, model_name, args.dataset)
    if args.checkpoints:
        result.update(_load_checkpoint(model, paths, device))
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    per_step = time_train_steps(model, train_data, device, args.steps)
    result.update(
        steps_per_epoch=len(train_data),
        train_batch_size=config["train_batch_size"],
        seconds_per_step=per_step,
        estimated_seconds_per_epoch=per_step * len(train_data),
    )

    model.load_state_dict(weights)  # evaluate the loaded (or initial) weights, not the steps'
    model.eval()
    if config["decoding"] == "graph":
        _sync(device)
        start = time.perf_counter()
        model.item_graph()  # built once per weights: excluded from users/s
        _sync(device)
        result["graph_build_seconds"] = time.perf_counter() - start
    n_users = args.tiger_eval_users if model_name == "TIGER" else args.eval_users
    result.update(time_evaluation(model, test_data, device, n_users))
    if model_name == "TIGER":
        report = model.generation_report
        result["generation_report"] = {k: report[k] for k in sorted(report) if "@" not in k}
    return result


# ------------------------------------------------------------------------------ report
def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def summarise(results: list[dict[str, Any]], with_metrics: bool) -> tuple[str, dict[str, Any]]:
    r"""The printed table and the cross-run figures (ratios to SASRec, FAIR/TIGER, RPG graph
    vs exact agreement)."""
    by_run = {r["run"]: r for r in results}
    base = by_run.get("SASRec")
    head = (
        f"{'run':16s} {'params':>10s} {'steps/ep':>8s} {'s/step':>7s} {'est s/ep':>9s} "
        f"{'xSASRec':>7s} {'batch':>5s} {'users':>5s} {'users/s':>8s} {'xSASRec':>7s}"
    )
    if with_metrics:
        head += f" {'R@10':>6s} {'N@10':>6s}  checkpoint"
    lines = [head, "-" * len(head)]
    for r in results:
        epoch_ratio = speed_ratio = None
        if base is not None:
            epoch_ratio = r["estimated_seconds_per_epoch"] / base["estimated_seconds_per_epoch"]
            speed_ratio = r["eval_users_per_second"] / base["eval_users_per_second"]
            r["epoch_seconds_vs_sasrec"], r["users_per_second_vs_sasrec"] = (
                epoch_ratio,
                speed_ratio,
            )
        line = (
            f"{r['label']:16s} {r['parameters']:10,d} {r['steps_per_epoch']:8d} "
            f"{r['seconds_per_step']:7.3f} {r['estimated_seconds_per_epoch']:9.1f} "
            f"{_fmt(epoch_ratio, '7.2f'):>7s} {r['eval_batch_sizes'][0]:5d} {r['eval_users']:5d} "
            f"{r['eval_users_per_second']:8.1f} {_fmt(speed_ratio, '7.3f'):>7s}"
        )
        if with_metrics:
            loaded = r.get("checkpoint")
            line += (
                f" {r['recall@10']:6.4f} {r['ndcg@10']:6.4f}  {Path(loaded).name}"
                if loaded
                else f" {'-':>6s} {'-':>6s}  none (random weights)"
            )
        lines.append(line)
    extra: dict[str, Any] = {}
    if "FAIR" in by_run and "TIGER" in by_run:
        ratio = by_run["FAIR"]["eval_users_per_second"] / by_run["TIGER"]["eval_users_per_second"]
        extra["fair_exact_over_tiger_beam_users_per_second"] = ratio
        lines.append(f"FAIR exact / TIGER beam eval users/s = {ratio:.1f}")
    if "RPG" in by_run and "RPG:graph" in by_run:
        exact, graph = by_run["RPG"]["top"], by_run["RPG:graph"]["top"]
        n = min(len(exact), len(graph))
        same_set = (exact[:n].sort(1).values == graph[:n].sort(1).values).all(1)
        agreement = {
            "users": n,
            "top10_set_identical_share": float(same_set.float().mean()),
            "top1_agreement": float((exact[:n, 0] == graph[:n, 0]).float().mean()),
            "weights": "checkpoint"
            if by_run["RPG"].get("checkpoint") and by_run["RPG:graph"].get("checkpoint")
            else "random init",
        }
        extra["rpg_graph_vs_exact"] = agreement
        lines.append(
            f"RPG graph vs exact ({agreement['weights']}, first {n} users): identical top-10 "
            f"sets {agreement['top10_set_identical_share']:.3f}, top-1 agreement "
            f"{agreement['top1_agreement']:.3f}; graph build "
            f"{by_run['RPG:graph']['graph_build_seconds']:.2f}s (not in users/s)"
        )
    if "TIGER" in by_run:
        lines.append(
            "TIGER timed with tiger_exact_check_users: 0 (beam-vs-exact overlap check off); "
            f"invalid generation rate "
            f"{by_run['TIGER']['generation_report'].get('invalid_generation_rate', 0):.4f}"
        )
    return "\n".join(lines), extra


def main() -> None:
    import torch
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Amazon_Beauty")
    parser.add_argument(
        "--data_path",
        default=str(REPO.parent / "shared" / "datasets"),
        help="folder holding one folder per dataset (ignored for ml-100k: RecBole's bundled copy)",
    )
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per run")
    parser.add_argument("--eval_batch_size", type=int, default=256)
    parser.add_argument("--eval_users", type=int, default=1024)
    parser.add_argument("--tiger_eval_users", type=int, default=256)
    parser.add_argument(
        "--model_config", default=str(REPO / "docs" / "leaderboards" / "cpu_budget.yaml")
    )
    parser.add_argument(
        "--sid_cache_dir", default=str(REPO / "benchmarks" / "results" / "sid_cache")
    )
    parser.add_argument("--checkpoints", default=None, help="leaderboard checkpoint folder")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sys.argv[1:] = []  # RecBole's Config would read this script's --key=value flags as its own
    # RecBole 1.2.1's pandas idioms warn on every dataset load (see recbole_fair/compat.py)
    warnings.filterwarnings("ignore", category=FutureWarning, module="recbole")
    out = args.out or str(REPO / "benchmarks" / "results" / f"bench_generative_{args.dataset}.json")
    overrides = yaml.safe_load(Path(args.model_config).read_text()) or {}

    results, cache = [], {}
    for run in args.runs:
        start = time.perf_counter()
        r = bench_run(run, args, overrides, cache)
        results.append(r)
        print(
            f"[{time.perf_counter() - start:6.0f}s] {r['label']:16s} "
            f"{r['seconds_per_step']:.3f} s/step x {r['steps_per_epoch']} steps  "
            f"{r['eval_users_per_second']:.1f} users/s over {r['eval_users']} users"
            + (
                f"  (graph build {r['graph_build_seconds']:.2f}s)"
                if "graph_build_seconds" in r
                else ""
            )
            + (f"  [{Path(r['checkpoint']).name}]" if r.get("checkpoint") else ""),
            flush=True,
        )
    table, extra = summarise(results, with_metrics=bool(args.checkpoints))
    print()
    print(
        f"dataset {args.dataset}, eval_batch_size {args.eval_batch_size}, torch threads "
        f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    )
    print(table)
    if args.checkpoints:
        print(
            f"R@10 / N@10: first {args.eval_users} test users ({args.tiger_eval_users} for "
            f"TIGER) only, not the full test set."
        )

    for r in results:
        r.pop("top")
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings.update(
        torch_threads=torch.get_num_threads(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        ld_preload=os.environ.get("LD_PRELOAD"),
        warmup_steps=WARMUP_STEPS,
        optimizer="Adam lr 1e-3 (every model)",
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    payload = {"dataset": args.dataset, "settings": settings, **extra, "runs": results}
    Path(out).write_text(json.dumps(payload, indent=2, default=str))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
