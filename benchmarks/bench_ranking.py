r"""FAIR's exact ranking vs SASRec's full sort at equal evaluation batch size (issue #31, item 3).

One process, both models on the same dataset (default Amazon_Beauty), untrained (the cost of
ranking does not depend on the weights): FAIR with ``--model_config``'s FAIR settings (default
the CPU leaderboards' ``docs/leaderboards/cpu_budget.yaml``: d=128, inner 256, the rest
``properties/model/FAIR.yaml``), SASRec with RecBole's defaults (``loss_type: CE``, d=64).

For every torch thread count (``--threads``) and evaluation batch size (``--batch_sizes``),
``--repeats`` times, the variants interleaved so that each sees the same machine load, it times
on the first ``--users`` test users (RecBole's full-sort test batches, built before timing):

* ``forward``: history -> what is scored. SASRec: its final hidden state. FAIR, split in
  ``encoder`` (``model.forward``, the last position's hidden state) and ``heads`` (the digit
  log-probabilities ``[B, L, K]``); the encoder both as now (``encoder``: the last positions
  only, rows grouped by history length) and as before (``encoder_full``: every position of the
  batch's longest history, then the last one read, as in commit 149c7ee);
* ``scoring``: the scores ``[B, n_items]``. SASRec: ``h @ item_embedding.T``. FAIR: its ranker
  (``bags``: ``embedding_bag`` per user chunk, now), the CSR product (``csr``, before) and the
  reference ``L`` gathers (``gather``); ``checks`` records whether their floats are equal;
* ``rank``: RecBole's part of a batch: the padding and history masks and
  ``Collector.eval_batch_collect`` (top-k, positives);
* ``evaluate``: the whole ``trainer.evaluate`` over every test user (``--no_evaluate``: skip):
  data loader, the above, the metrics; its users/s. FAIR twice: now and with commit 149c7ee's
  ``full_sort_predict`` (full encoder + CSR product) patched in (``evaluate_before``).

Each figure is timed as CPU time of the process (``time.process_time``: the machine is shared, and
CPU time is what the work costs) and as wall time; the minimum over the repeats is reported. With
2 threads on a loaded machine, CPU time includes OpenMP's spin-waiting. Inside each evaluate,
the time in ``full_sort_predict`` and in RecBole's collector is measured too; the rest is the
data loader, the masks and the metrics.

The limit of the scoring step: ``B * n_items * L`` gathered float adds, the bytes it must move
(the ``[B, L*K]`` log-probabilities read, the ``[B, n_items]`` scores written, the ``[n_items,
L]`` code tokens read once per user chunk), against this machine's measured rates (an in-cache
add, a large copy, a matrix product), next to the achieved rate.

Results (JSON, with the command and the commit) go to ``--out`` (default
``docs/performance/ranking-<dataset>.json``).

``--sid_cache_dir`` is only read: its files are linked into a temporary folder, which takes any
cache write (a key that does not match builds the semantic IDs there, minutes, and drops them).

Usage::

    python benchmarks/bench_ranking.py --sid_cache_dir benchmarks/results/sid_cache
    python benchmarks/bench_ranking.py --batch_sizes 256 --threads 1 --repeats 1 --users 1024 \
        --no_evaluate                                            # a quick run
"""

from __future__ import annotations

import argparse
import atexit
import copy
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
TOPK = 10
PATH_ARGS = ("data_path", "sid_cache_dir", "model_config")  # saved relative to the repository


# ----------------------------------------------------------------------------- timing
class Clock:
    r"""Sums of CPU and wall seconds of timed calls."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        out = fn(*args)
        self.cpu += time.process_time() - cpu
        self.wall += time.perf_counter() - wall
        return out


def keep_min(store: dict, key: str, clock: Clock, users: int) -> None:
    r"""Record ``clock`` as milliseconds per 1,000 users under ``key``, keeping the minimum."""
    cpu, wall = 1e6 * clock.cpu / users, 1e6 * clock.wall / users
    old = store.get(key)
    store[key] = {
        "cpu_ms_per_1000_users": min(cpu, old["cpu_ms_per_1000_users"]) if old else cpu,
        "wall_ms_per_1000_users": min(wall, old["wall_ms_per_1000_users"]) if old else wall,
    }


# ----------------------------------------------------------------------------- setup
def read_only_cache(folder: str) -> str:
    r"""A temporary folder of links to ``folder``'s cache files (writes land in the copy)."""
    temp = tempfile.mkdtemp(prefix="bench_ranking_sid_")
    atexit.register(shutil.rmtree, temp, ignore_errors=True)  # removes the links, not the files
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.endswith(".npz"):
            os.symlink(os.path.abspath(os.path.join(folder, name)), os.path.join(temp, name))
    return temp


def load_model(name: str, args: argparse.Namespace, overrides: dict, batch_sizes: list) -> dict:
    r"""Config, model (eval mode) and a test loader per evaluation batch size."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_fair.config import Config
    from recbole_fair.utils import create_dataset, get_model

    config_dict = {
        **overrides.get(name, {}),
        "data_path": args.data_path,
        "show_progress": False,
        "state": "WARNING",
    }
    if getattr(get_model(name), "uses_semantic_ids", False):
        config_dict["sid_cache_dir"] = args.sid_cache_copy
    config = Config(model=name, dataset=args.dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    loaders = {}
    for batch_size in batch_sizes:
        config_b = copy.deepcopy(config)
        config_b["eval_batch_size"] = batch_size
        train_data, _, test_data = data_preparation(config_b, copy.deepcopy(dataset))
        loaders[batch_size] = (config_b, test_data)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(name)(config, train_data._dataset).eval()
    return {"config": config, "model": model, "loaders": loaders}


def first_batches(test_data: Any, n_users: int) -> list:
    r"""RecBole's full-sort test batches covering the first ``n_users`` users (whole batches)."""
    batches, users = [], 0
    for batch in test_data:
        batches.append(batch)
        users += len(batch[0])
        if users >= n_users:
            break
    return batches


# ----------------------------------------------------------------------------- FAIR before
def full_sort_predict_before(self: Any, interaction: Any) -> Any:
    r"""``FAIR.full_sort_predict`` as of commit 149c7ee: every position of the batch's longest
    history encoded, the last one read, the CSR product (item-ID digit off)."""
    item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
    h = self.gather_indexes(self.encode(item_seq, item_seq_len), item_seq_len - 1)  # [B, d]
    scores = self.ranker.exact_scores_csr(self.code_log_probs(h), self.item_codes)
    scores[:, 0] = float("-inf")
    return scores


def encoder_full(model: Any, item_seq: Any, item_seq_len: Any) -> Any:
    return model.gather_indexes(model.encode(item_seq, item_seq_len), item_seq_len - 1)


# ----------------------------------------------------------------------------- components
def rank_part(collector: Any, scores: Any, batch: tuple) -> None:
    r"""RecBole's masking and collection of a batch (``Trainer._full_sort_batch_eval`` after
    ``full_sort_predict``, then ``Collector.eval_batch_collect``)."""
    interaction, history_index, positive_u, positive_i = batch
    scores = scores.view(-1, scores.size(-1))
    scores[:, 0] = float("-inf")
    if history_index is not None:
        scores[history_index] = float("-inf")
    collector.eval_batch_collect(scores, interaction, positive_u, positive_i)


def time_fair(run: dict, batches: list, store: dict, check: dict) -> None:
    r"""FAIR's parts on ``batches``: now (``encoder``; ``heads`` and ``bags`` per chunk of
    ``RANK_CHUNK_USERS`` users, as ``full_sort_predict``), before (``encoder_full``,
    ``heads_full`` on the whole batch, ``csr``), the reference ``gather``, ``rank``, and
    ``full_sort_predict`` itself (= encoder + heads + bags, up to the Python around them)."""
    from recbole.evaluator import Collector

    keys = ("encoder", "heads", "bags", "encoder_full", "heads_full", "csr", "gather", "rank")
    clocks = {k: Clock() for k in (*keys, "full_sort_predict")}
    model, collector, codes = run["model"], Collector(run["config"]), run["model"].item_codes
    for batch in batches:
        seq, lens = batch[0][model.ITEM_SEQ], batch[0][model.ITEM_SEQ_LEN]
        h = clocks["encoder"](model.forward, seq, lens)
        scores = scores_now(model, h, clocks)
        h_full = clocks["encoder_full"](encoder_full, model, seq, lens)
        log_probs = clocks["heads_full"](model.code_log_probs, h_full)
        csr = clocks["csr"](model.ranker.exact_scores_csr, log_probs, codes)
        gather = clocks["gather"](model.ranker.exact_scores_gather, log_probs, codes)
        ranked = clocks["full_sort_predict"](model.full_sort_predict, batch[0])
        bags = model.ranker.exact_scores(log_probs, codes)  # on the same log-probabilities
        check["bags_equal_csr"] &= bool((bags == csr).all())
        check["bags_equal_gather"] &= bool((bags == gather).all())
        check["full_sort_predict_equals_parts"] &= bool((ranked[:, 1:] == scores[:, 1:]).all())
        check["scores_now_vs_before_max_abs_diff"] = max(
            check["scores_now_vs_before_max_abs_diff"],
            float((scores[:, 1:] - csr[:, 1:]).abs().max()),
        )
        scores[:, 0] = float("-inf")
        clocks["rank"](rank_part, collector, scores, batch)
    users = sum(len(b[0]) for b in batches)
    for key, clock in clocks.items():
        keep_min(store, key, clock, users)


def scores_now(model: Any, h: Any, clocks: dict) -> Any:
    r"""``full_sort_predict``'s heads and exact scores after the encoder, timed apart."""
    import torch

    from recbole_fair.model.ranking import RANK_CHUNK_USERS

    parts = []
    for start in range(0, h.size(0), RANK_CHUNK_USERS):
        log_probs = clocks["heads"](model.code_log_probs, h[start : start + RANK_CHUNK_USERS])
        parts.append(clocks["bags"](model.ranker.exact_scores, log_probs, model.item_codes))
    return clocks["bags"](torch.cat, parts) if len(parts) > 1 else parts[0]


def time_sasrec(run: dict, batches: list, store: dict) -> None:
    r"""SASRec's parts on ``batches``: forward (final hidden state), scoring, rank."""
    import torch
    from recbole.evaluator import Collector

    model, users = run["model"], sum(len(b[0]) for b in batches)
    clocks = {k: Clock() for k in ("forward", "scoring", "rank")}
    collector = Collector(run["config"])
    for batch in batches:
        seq, lens = batch[0][model.ITEM_SEQ], batch[0][model.ITEM_SEQ_LEN]
        h = clocks["forward"](model.forward, seq, lens)
        scores = clocks["scoring"](torch.matmul, h, model.item_embedding.weight.T)
        clocks["rank"](rank_part, collector, scores, batch)
    for key, clock in clocks.items():
        keep_min(store, key, clock, users)


def time_evaluate(run: dict, batch_size: int, store: dict, key: str) -> dict[str, float]:
    r"""``trainer.evaluate`` over every test user, with the time spent in the model's
    ``full_sort_predict`` (``<key>:predict``) and in RecBole's ``eval_batch_collect``
    (``<key>:collect``) measured inside it; the rest is the loader, the masks, the metrics.
    Returns its metrics (the variants of one model must agree)."""
    from recbole_fair.utils import get_trainer

    config, test_data = run["loaders"][batch_size]
    model = run["model"]
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    clocks = {key: Clock(), f"{key}:predict": Clock(), f"{key}:collect": Clock()}
    patched = model.__dict__.get("full_sort_predict")  # FAIR before: an instance attribute
    predict, collect = model.full_sort_predict, trainer.eval_collector.eval_batch_collect
    model.full_sort_predict = functools.partial(clocks[f"{key}:predict"], predict)
    trainer.eval_collector.eval_batch_collect = functools.partial(clocks[f"{key}:collect"], collect)
    try:
        result = clocks[key](trainer.evaluate, test_data, False)  # load_best_model=False
    finally:
        if patched is None:
            del model.full_sort_predict
        else:
            model.full_sort_predict = patched
    users = len(test_data._dataset)  # one test row per user
    if key not in store or clocks[key].cpu * 1e6 / users < store[key]["cpu_ms_per_1000_users"]:
        for name, clock in clocks.items():  # the three of the fastest repeat, together
            store.pop(name, None)
            keep_min(store, name, clock, users)
    store[key]["users"] = users
    return {k: float(v) for k, v in result.items()}


# ----------------------------------------------------------------------------- limits
def machine_rates() -> dict[str, float]:
    r"""This machine's rates on one thread: float adds reading an L2-resident table (GFLOP/s),
    ``embedding_bag`` on consecutive rows of it, a large copy (GB/s read + written), a float32
    matrix product (GFLOP/s)."""
    import torch
    import torch.nn.functional as F

    def best(fn: Callable[[], Any], n: int = 5) -> float:
        fn()
        return min(_cpu(fn) for _ in range(n))

    table = torch.randn(8192, 32)  # 1 MiB, as one user chunk of the scoring: in L2
    add = best(lambda: [table.sum(0) for _ in range(100)])
    bags = torch.arange(8192).view(256, 32)  # consecutive rows: the kernel at its best
    kernel = best(lambda: [F.embedding_bag(bags, table, mode="sum") for _ in range(100)])
    big = torch.randn(64 << 20 >> 2)  # 64 MiB
    out = torch.empty_like(big)
    copy = best(lambda: out.copy_(big))
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    mm = best(lambda: a @ b)
    return {
        "add_gflops_in_cache": 100 * table.numel() / add / 1e9,
        "embedding_bag_gflops_consecutive_rows": 100 * table.numel() / kernel / 1e9,
        "copy_gbytes_per_s": 2 * big.numel() * 4 / copy / 1e9,
        "matmul_gflops": 2 * 1024**3 / mm / 1e9,
    }


def _cpu(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return max(time.process_time() - start, 1e-9)


def scoring_limit(n_items: int, L: int, K: int, rates: dict, chunk: int) -> dict[str, float]:
    r"""Lower bounds of FAIR's scoring per 1,000 users (ms): its adds at the in-cache add rate,
    the bytes it must move at the copy rate; SASRec's product at the matmul rate."""
    adds = 1000 * n_items * L
    moved = 1000 * (L * K * 4 + n_items * 4) + (1000 / chunk) * n_items * L * 8
    return {
        "fair_adds_per_user": n_items * L,
        "fair_bytes_per_user": moved / 1000,
        "fair_add_bound_ms": 1000 * adds / (rates["add_gflops_in_cache"] * 1e9),
        "fair_byte_bound_ms": 1000 * moved / (rates["copy_gbytes_per_s"] * 1e9),
    }


def encoder_work(run_fair: dict, run_sasrec: dict, batches: dict) -> dict[str, float]:
    r"""Encoder FLOPs per token of a block's linear layers (2 * in * out summed), and the
    positions encoded per user: FAIR before (every row to the batch's longest history), FAIR now
    (each length group to its longest; the last block's query, output and feed-forward at one
    position), SASRec (RecBole: every row to ``MAX_ITEM_LIST_LENGTH``)."""
    from torch import nn

    from recbole_fair.model.eval_encoder import length_groups

    def flops_per_token(block: nn.Module) -> int:
        return sum(
            2 * m.in_features * m.out_features for m in block.modules() if isinstance(m, nn.Linear)
        )

    fair, sasrec = run_fair["model"], run_sasrec["model"]
    users = full = grouped = 0
    for batch in batches["FAIR"]:
        lens = batch[0][fair.ITEM_SEQ_LEN]
        users += len(lens)
        full += len(lens) * int(lens.max())
        groups = length_groups(lens)
        grouped += (
            len(lens) * int(lens.max()) if groups is None else sum(len(g) * t for g, t in groups)
        )
    T = batches["SASRec"][0][0][sasrec.ITEM_SEQ].size(1)
    return {
        "fair_block_flops_per_token": flops_per_token(fair.encoder.blocks[0]),
        "fair_layers": len(fair.encoder.blocks),
        "sasrec_block_flops_per_token": flops_per_token(sasrec.trm_encoder.layer[0]),
        "sasrec_layers": len(sasrec.trm_encoder.layer),
        "fair_positions_per_user_before": full / users,
        "fair_positions_per_user_now": grouped / users,
        "sasrec_positions_per_user": T,
    }


def head_and_score_flops(fair: Any, sasrec: Any) -> dict[str, int]:
    r"""Per user: FAIR's heads (residual transforms and the ``L*K`` logits) and scoring adds,
    SASRec's scoring product."""
    L, K, d = fair.n_codes, fair.codebook_size, fair.hidden_size
    return {
        "fair_heads_flops_per_user": 2 * (L * d * d + L * K * d),
        "fair_scoring_adds_per_user": fair.n_items * L,
        "sasrec_scoring_flops_per_user": 2 * sasrec.n_items * sasrec.hidden_size,
    }


# ----------------------------------------------------------------------------- main
def one_round(
    runs: dict, batches: dict, batch_size: int, args: argparse.Namespace, out: dict
) -> None:
    r"""One repeat at one batch size and thread count: components, then the evaluates."""
    check = out.setdefault(
        "checks",
        {
            "bags_equal_csr": True,
            "bags_equal_gather": True,
            "full_sort_predict_equals_parts": True,
            "scores_now_vs_before_max_abs_diff": 0.0,
        },
    )
    time_sasrec(runs["SASRec"], batches["SASRec"], out.setdefault("SASRec", {}))
    time_fair(runs["FAIR"], batches["FAIR"], out.setdefault("FAIR", {}), check)
    if args.no_evaluate:
        return
    metrics = out.setdefault("metrics", {})
    metrics["SASRec"] = time_evaluate(runs["SASRec"], batch_size, out["SASRec"], "evaluate")
    metrics["FAIR"] = time_evaluate(runs["FAIR"], batch_size, out["FAIR"], "evaluate")
    fair = runs["FAIR"]["model"]
    fair.full_sort_predict = types.MethodType(full_sort_predict_before, fair)
    try:
        metrics["FAIR before"] = time_evaluate(
            runs["FAIR"], batch_size, out["FAIR"], "evaluate_before"
        )
    finally:
        del fair.full_sort_predict
    check["evaluate_metrics_now_equal_before"] = metrics["FAIR"] == metrics["FAIR before"]


def derived(cell: dict) -> dict[str, float]:
    r"""Users/s (CPU time and wall time) of each variant's full sort and evaluate."""

    def per_s(*keys: str, model: str, clock: str = "cpu") -> float:
        ms = sum(cell[model][k][f"{clock}_ms_per_1000_users"] for k in keys)
        return 1e6 / ms

    rows = {}
    for clock in ("cpu", "wall"):
        rows[f"users_per_{clock}_s"] = {
            "SASRec full sort": per_s("forward", "scoring", model="SASRec", clock=clock),
            "FAIR full sort now": per_s("encoder", "heads", "bags", model="FAIR", clock=clock),
            "FAIR full sort before": per_s(
                "encoder_full", "heads_full", "csr", model="FAIR", clock=clock
            ),
            "FAIR full_sort_predict now": per_s("full_sort_predict", model="FAIR", clock=clock),
            "SASRec scoring": per_s("scoring", model="SASRec", clock=clock),
            "FAIR scoring now (bags)": per_s("bags", model="FAIR", clock=clock),
            "FAIR scoring before (csr)": per_s("csr", model="FAIR", clock=clock),
        }
        if "evaluate" in cell["FAIR"]:
            rows[f"users_per_{clock}_s"].update(
                {
                    "SASRec evaluate": per_s("evaluate", model="SASRec", clock=clock),
                    "FAIR evaluate now": per_s("evaluate", model="FAIR", clock=clock),
                    "FAIR evaluate before": per_s("evaluate_before", model="FAIR", clock=clock),
                }
            )
    if "evaluate" in cell["FAIR"]:
        rows["evaluate_split_cpu_ms_per_1000_users"] = {
            name: _split(cell[model], key)
            for name, model, key in (
                ("SASRec", "SASRec", "evaluate"),
                ("FAIR now", "FAIR", "evaluate"),
                ("FAIR before", "FAIR", "evaluate_before"),
            )
        }
    return rows


def _split(parts: dict, key: str) -> dict[str, float]:
    r"""CPU ms per 1,000 users of an evaluate: ``full_sort_predict``, RecBole's collect, the
    rest (loader, masks, metrics)."""
    cpu = "cpu_ms_per_1000_users"
    total, predict, collect = (parts[k][cpu] for k in (key, f"{key}:predict", f"{key}:collect"))
    return {"predict": predict, "collect": collect, "rest": total - predict - collect}


def print_cell(threads: int, batch_size: int, cell: dict) -> None:
    rows = cell["derived"]
    print(f"\n== torch threads {threads}, eval batch {batch_size}: users/s (CPU time | wall)")
    for name, cpu in rows["users_per_cpu_s"].items():
        print(f"  {name:28s} {cpu:9.0f} | {rows['users_per_wall_s'][name]:9.0f}")
    parts = " ".join(
        f"{k}={v['cpu_ms_per_1000_users']:.1f}" for k, v in cell["FAIR"].items() if ":" not in k
    )
    print(f"  FAIR ms/1000 users (CPU): {parts}")
    parts = " ".join(
        f"{k}={v['cpu_ms_per_1000_users']:.1f}" for k, v in cell["SASRec"].items() if ":" not in k
    )
    print(f"  SASRec ms/1000 users (CPU): {parts}")
    for name, split in rows.get("evaluate_split_cpu_ms_per_1000_users", {}).items():
        parts = " ".join(f"{k}={v:.1f}" for k, v in split.items())
        print(f"  {name} evaluate, CPU ms/1000 users: {parts}")
    print(f"  checks: {cell['checks']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Amazon_Beauty")
    parser.add_argument("--data_path", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument(
        "--sid_cache_dir",
        default=str(REPO / "benchmarks" / "results" / "sid_cache"),
        help="semantic-ID cache to read (never written)",
    )
    parser.add_argument(
        "--model_config", default=str(REPO / "docs" / "leaderboards" / "cpu_budget.yaml")
    )
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--users", type=int, default=4096, help="test users of the part timings")
    parser.add_argument("--no_evaluate", action="store_true", help="skip trainer.evaluate")
    parser.add_argument("--out", default=None)
    return parser.parse_args()


def main() -> None:
    import torch
    import yaml

    args = parse_args()
    command = " ".join(["python", *sys.argv])
    sys.argv[1:] = []  # RecBole's Config would read this script's --key=value flags as its own
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    out_path = Path(args.out or REPO / "docs" / "performance" / f"ranking-{args.dataset}.json")
    overrides = yaml.safe_load(Path(args.model_config).read_text()) or {}
    args.sid_cache_copy = read_only_cache(args.sid_cache_dir)
    torch.set_num_threads(1)
    runs = {m: load_model(m, args, overrides, args.batch_sizes) for m in ("SASRec", "FAIR")}
    fair = runs["FAIR"]["model"]
    if fair.item_id is not None or fair.settings.graph.decoding != "exact":
        raise SystemExit("bench_ranking times FAIR's exact ranking without the item-ID digit")
    batches = {
        bs: {m: first_batches(runs[m]["loaders"][bs][1], args.users) for m in runs}
        for bs in args.batch_sizes
    }
    for bs in args.batch_sizes:  # the loaders' batches are the batch sizes asked for
        assert all(len(batches[bs][m][0][0]) == bs for m in runs), bs
    rates = machine_rates()
    cells: dict = {}
    for repeat in range(args.repeats):
        for threads in args.threads:
            torch.set_num_threads(threads)
            for bs in args.batch_sizes:
                cell = cells.setdefault(f"threads={threads} batch={bs}", {})
                start = time.perf_counter()
                with torch.no_grad():
                    one_round(runs, batches[bs], bs, args, cell)
                cell["derived"] = derived(cell)
                print(
                    f"[repeat {repeat + 1}/{args.repeats}, {time.perf_counter() - start:.0f}s]",
                    end="",
                )
                print_cell(threads, bs, cell)
    torch.set_num_threads(1)
    L, K = fair.n_codes, fair.codebook_size
    from recbole_fair.model.ranking import SCORE_TABLE_BYTES

    chunk = max(1, SCORE_TABLE_BYTES // (L * K * 4))
    payload = {
        "command": command,
        "commit": _commit(),
        "dataset": args.dataset,
        "n_items": fair.n_items,
        "n_codes": L,
        "codebook_size": K,
        "fair_config": overrides.get("FAIR", {}),
        "sasrec_config": overrides.get("SASRec", {}),
        "settings": {
            k: os.path.relpath(v, REPO) if k in PATH_ARGS else v
            for k, v in vars(args).items()
            if k not in ("out", "sid_cache_copy")
        },
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "score_chunk_users": chunk,
        "machine_rates_one_thread": rates,
        "scoring_limit_per_1000_users": scoring_limit(fair.n_items, L, K, rates, chunk),
        "flops": {
            **head_and_score_flops(fair, runs["SASRec"]["model"]),
            **encoder_work(runs["FAIR"], runs["SASRec"], batches[args.batch_sizes[0]]),
        },
        "results": cells,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(f"\nlimits: {json.dumps(payload['scoring_limit_per_1000_users'])}")
    print(f"rates: {json.dumps(rates)}\nflops: {json.dumps(payload['flops'])}\nsaved {out_path}")


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "recbole_fair"],
            capture_output=True,
            text=True,
        )
        return head.stdout.strip() + (" (recbole_fair modified)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
