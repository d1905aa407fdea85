r"""How cost grows with the catalogue size (issue #31, item 1).

For each catalogue size ``N`` (``--sizes``, default 10k, 100k, 1M items) a synthetic catalogue is
generated (``benchmarks/scale_catalogue.py``: item texts built from category, brand and attribute
words drawn from Zipf-like vocabularies; ``N`` users with about 10 interactions each, skewed to
popular items) as RecBole atomic files under ``--out``, and measured stage by stage, each stage
in a process of its own (forked from this one, so the peak memory is the stage's):

==================  =============================================================================
``data``            generate the atomic files (reused when the same catalogue is there)
``sid``             the semantic-ID build of recbole-fair's pipeline (``build_semantic_ids``,
                    cold, into a fresh cache) and its parts as it runs them: text encoding
                    (``--encoder``: ``minilm``, the packaged all-MiniLM-L6-v2, or ``stand-in``, a
                    hashed bag of words of the same dimension), the quantizer's fit and its
                    encoding of all items (``OPQProductQuantizer.fit`` / ``.encode``); then
                    the cache-hit load
``train:FAIR``      training seconds per 1,000 targets: FAIR (FAIR.yaml, ``hidden_size`` 128,
``train:SASRec``    ``inner_size`` 256) and SASRec-CE at the same width, over ``--train_steps``
                    optimizer steps after ``--train_warmup_steps``, with the trainer's own step
``eval:FAIR-exact`` users/s of ``full_sort_predict`` + top-10 over ``--eval_users`` test users:
``eval:FAIR-graph`` FAIR's exact ranking, FAIR's graph decoding (the item-graph build timed
``eval:SASRec``     apart) and SASRec's full sort
==================  =============================================================================

(``train``/``eval`` for every history cap ``H`` of ``--histories``, default 20 and 200.) The
quantizer is fitted on every training item the pipeline passes it (all of them); faiss then draws
its own samples (OPQ: 65,536 items; k-means: 256 per centroid): the ``sid`` records state both.

A stage that runs past ``--stage_timeout`` seconds (of wall-clock time, or with
``--timeout_clock=cpu`` of its process' CPU time, which other work on the machine does not
lengthen), or whose process grows past
``--mem_limit_gb`` (or leaves the machine less than ``--min_free_gb``), is stopped and recorded
as ``timeout`` / ``out_of_memory`` with the step it was in; the same stage is then skipped at the
larger sizes (every training and evaluation stage of that ``H`` when the stop came while loading
the data), and the run goes on. Models have random weights: the costs, not the quality, are
measured.

Every time is recorded twice: wall-clock seconds and the CPU seconds of the stage process (all
threads; at ``--threads=1`` the wall time an idle machine would take: use ``--clock=cpu`` to
render those when the machine was shared).

Results: one JSON line per measurement in ``--results`` (default ``<out>/results.jsonl``), with
the git commit and the command line; ``--resume`` skips the (N, H, stage, encoder) entries
finished there (ok, timeout or out of memory; without it every measurement runs again and its
record is appended: the render uses the last record of each); a file named ``STOP`` in ``--out``
stops the run after the current stage.
``--render`` writes ``docs/performance/scale.md`` (tables, fitted exponents ``k`` of time ∝
``N^k``) and ``scale.png`` (log-log curves) from the results.

    python benchmarks/bench_scale.py --sizes=10000,100000,1000000 --encoder=stand-in \
        --out=saved/bench_scale --resume
    python benchmarks/bench_scale.py --render --results=saved/bench_scale/results.jsonl

Linux only (``fork``, ``/proc``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

from recbole_fair.paths import portable_argv

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _sibling(name: str) -> Any:
    r"""The benchmark module ``benchmarks/<name>.py`` (this script's own helpers), loaded by path
    and registered under ``name`` so that the others' ``from <name> import ...`` find it."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


scale_catalogue = _sibling("scale_catalogue")
scale_stages = _sibling("scale_stages")

TRAIN_EVAL_STAGES = (
    "train:FAIR",
    "train:SASRec",
    "eval:FAIR-exact",
    "eval:FAIR-graph",
    "eval:SASRec",
)
ALL_STAGES = ("data", "sid", *TRAIN_EVAL_STAGES)
FINISHED = ("ok", "timeout", "out_of_memory")  # --resume does not run these again
STOPPED = ("timeout", "out_of_memory")
# steps whose cost does not depend on the history cap H (a stop there rules out every H)
H_INDEPENDENT_STEPS = ("build the item graph",)
ENCODERS = {"minilm": "all-MiniLM-L6-v2", "stand-in": "stand-in:hashed-bag-of-words"}
POLL_SECONDS = 0.2


def uses_codes(stage: str) -> bool:
    r"""Stages whose result depends on the text encoder (through the semantic IDs)."""
    return stage == "sid" or "FAIR" in stage


# ------------------------------------------------------------------------------------ plan
def plan(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    r"""The measurements in run order: sizes ascending; per size the data, the semantic IDs,
    then the training and evaluation stages of each history cap."""
    wanted = set(args.stages)
    for n in sorted(args.sizes):
        yield {"stage": "data", "n_items": n, "history": None, "encoder": None}
        if "sid" in wanted:
            yield {"stage": "sid", "n_items": n, "history": None, "encoder": args.encoder}
        for history in args.histories:
            for stage in TRAIN_EVAL_STAGES:
                if stage in wanted:
                    encoder = args.encoder if uses_codes(stage) else None
                    yield {"stage": stage, "n_items": n, "history": history, "encoder": encoder}


def key_of(item: dict[str, Any]) -> tuple:
    return (item["n_items"], item["history"], item["stage"], item["encoder"])


def stage_spec(args: argparse.Namespace, item: dict[str, Any]) -> dict[str, Any]:
    r"""Everything the stage process needs (see ``scale_stages``)."""
    out = os.path.abspath(args.out)
    stage, n = item["stage"], item["n_items"]
    kind, _, variant = stage.partition(":")
    model, _, decoding = variant.partition("-")
    return {
        "kind": kind,
        "model": model or None,
        "decoding": decoding or None,
        "n_items": n,
        "history": item["history"] or args.histories[0],
        "encoder": args.encoder,
        "text_encoder": ENCODERS[args.encoder],
        "dataset": f"scale_n{n}",
        "data_path": os.path.join(out, "data"),
        "sid_cache_dir": os.path.join(out, "sid_cache"),
        "work_dir": os.path.join(out, "work"),
        **{key: getattr(args, key) for key in SETTINGS},
    }


SETTINGS = (
    "threads",
    "seed",
    "users_per_item",
    "mean_length",
    "n_codes",
    "codebook_size",
    "hidden_size",
    "inner_size",
    "train_batch_size",
    "train_steps",
    "train_warmup_steps",
    "eval_batch_size",
    "eval_users",
    "standin_dim",
    "encode_batch_size",
    "stage_timeout",
    "timeout_clock",
    "mem_limit_gb",
)


# ------------------------------------------------------------------------- stage processes
def _meminfo_available_mb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def process_cpu_seconds(pid: int) -> float | None:
    r"""CPU seconds (user + system, all threads) of a running process, from ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _elapsed(pid: int, start: float, clock: str) -> float:
    if clock == "cpu":
        return process_cpu_seconds(pid) or 0.0
    return time.monotonic() - start


def _child(spec: dict[str, Any], log_path: str, step_path: str, result_path: str) -> None:
    r"""The forked stage process: output into the log, result (or error) into a JSON file."""
    code = 1
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ[scale_stages.STEP_FILE_ENV] = step_path
        outcome: dict[str, Any] = {"ok": True, "metrics": scale_stages.run(spec)}
        code = 0
    except BaseException as err:  # noqa: BLE001 - every failure is a record, not a crash
        text = f"{type(err).__name__}: {err}"
        outcome = {
            "ok": False,
            "error": text[:2000],
            "memory_error": isinstance(err, MemoryError) or "not enough memory" in text,
            "traceback": traceback.format_exc()[-4000:],
        }
        traceback.print_exc()
    try:
        with open(result_path, "w", encoding="utf-8") as f:
            json.dump(outcome, f, default=str)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _watch(pid: int, args: argparse.Namespace) -> tuple[int, str | None, float, float]:
    r"""Wait for the stage process, stopping it at the time or memory limit; return its wait
    status, the reason it was stopped (None), the peak resident memory seen (MiB) and its CPU
    seconds."""
    start, stopped, seen = time.monotonic(), None, 0.0
    limit_mb, floor_mb = args.mem_limit_gb * 1024.0, args.min_free_gb * 1024.0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, stopped, seen, usage.ru_utime + usage.ru_stime
        rss = scale_stages.rss_mb(pid) or 0.0
        seen = max(seen, rss, scale_stages.peak_mb(pid) or 0.0)
        available = _meminfo_available_mb()
        if stopped is None:
            if rss > limit_mb:
                stopped = f"out_of_memory: resident memory {rss:.0f} MiB > --mem_limit_gb"
            elif available is not None and available < floor_mb:
                stopped = f"out_of_memory: the machine had {available:.0f} MiB left"
            elif _elapsed(pid, start, args.timeout_clock) > args.stage_timeout:
                stopped = (
                    f"timeout: {args.stage_timeout:.0f} {args.timeout_clock} s (--stage_timeout)"
                )
            if stopped:
                os.kill(pid, signal.SIGKILL)
        time.sleep(POLL_SECONDS)


def _last_step(step_path: str) -> str | None:
    try:
        with open(step_path, encoding="utf-8") as f:
            lines = [line.rstrip("\n").split("\t", 1)[-1] for line in f if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def run_stage(args: argparse.Namespace, spec: dict[str, Any], name: str) -> dict[str, Any]:
    r"""Run one stage in a forked process; the record's status, metrics and memory."""
    logs = os.path.join(os.path.abspath(args.out), "logs")
    os.makedirs(logs, exist_ok=True)
    paths = [os.path.join(logs, f"{name}.{ext}") for ext in ("log", "steps", "result.json")]
    for path in paths[1:]:
        if os.path.exists(path):
            os.remove(path)
    start = time.time()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(spec, *paths)
    status, stopped, seen, cpu = _watch(pid, args)
    record: dict[str, Any] = {"wall_seconds": time.time() - start, "cpu_seconds": cpu}
    record["stopped_in"] = None
    outcome = None
    if os.path.isfile(paths[2]):
        with open(paths[2], encoding="utf-8") as f:
            outcome = json.load(f)
    if stopped:
        record.update(status=stopped.split(":")[0], reason=stopped)
    elif outcome is None:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        record.update(
            status="out_of_memory" if sig == signal.SIGKILL else "error",
            reason=f"the stage process ended by signal {sig} (SIGKILL: the kernel's OOM killer?)"
            if sig
            else f"the stage process exited with {os.waitstatus_to_exitcode(status)}",
        )
    elif outcome["ok"]:
        record.update(status="ok", reason=None, metrics=outcome["metrics"])
    else:
        record.update(
            status="out_of_memory" if outcome["memory_error"] else "error",
            reason=outcome["error"],
        )
    if record["status"] != "ok":
        record["stopped_in"] = _last_step(paths[1])
    metrics = record.get("metrics") or {}
    record["peak_rss_mb"] = metrics.get("process_peak_mb") or (seen or None)
    return record


# ----------------------------------------------------------------------------- bookkeeping
def git_commit() -> dict[str, Any]:
    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *cmd], capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "git_commit": git("rev-parse", "HEAD") or None,
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def load_records(path: str) -> list[dict[str, Any]]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Blocks:
    r"""What earlier stops rule out: a stage stopped for time or memory at ``N`` is skipped at
    larger sizes (at every history cap from ``N`` on when it stopped in a step that does not
    depend on the cap, :data:`H_INDEPENDENT_STEPS`: the item-graph build); a stop while loading the data rules out the other stages of that model and
    history cap at that size and every training/evaluation stage of that history cap at larger
    ones; a failed ``data`` or ``sid`` stage rules out the stages that need it."""

    def __init__(self) -> None:
        self.failed: dict[tuple, str] = {}  # ("data", N) / ("sid", N, encoder) -> why
        self.stages: dict[tuple, tuple[int, str]] = {}  # (stage, H, encoder) -> (N, why)
        self.loads: dict[tuple, tuple[int, str]] = {}  # (H, model) -> (N, why)

    def note(self, item: dict[str, Any], record: dict[str, Any]) -> None:
        status, n, stage = record["status"], item["n_items"], item["stage"]
        if status == "ok":
            return
        where = f"{stage} stopped at N={n:,} ({status}"
        where += f", in: {record['stopped_in']})" if record.get("stopped_in") else ")"
        if record.get("status") == "skipped":
            where = record.get("reason") or where
        if stage == "data":
            self.failed[("data", n)] = where
        elif stage == "sid":
            self.failed[("sid", n, item["encoder"])] = where
        if status in STOPPED:
            self.stages.setdefault((stage, item["history"], item["encoder"]), (n, where))
            if (record.get("stopped_in") or "").startswith(H_INDEPENDENT_STEPS):
                # the step does not depend on the history cap: it stops at every cap from N on
                self.stages.setdefault((stage, None, item["encoder"]), (n, where))
            if (record.get("stopped_in") or "").startswith("load and split"):
                self.loads.setdefault((item["history"], _model(stage)), (n, where))

    def reason(self, item: dict[str, Any]) -> str | None:
        r"""Why ``item`` is skipped, or None when it runs."""
        n, stage, history = item["n_items"], item["stage"], item["history"]
        if stage != "data" and ("data", n) in self.failed:
            return self.failed[("data", n)]
        if "FAIR" in stage and ("sid", n, item["encoder"]) in self.failed:
            return "no semantic IDs: " + self.failed[("sid", n, item["encoder"])]
        hit = self.stages.get((stage, history, item["encoder"]))
        if hit is not None and hit[0] < n:
            return hit[1]
        hit = self.stages.get((stage, None, item["encoder"]))
        if hit is not None and hit[0] <= n:
            return hit[1]
        for (h, model), (n0, why) in self.loads.items():
            if h == history and (n0 < n or (n0 == n and model == _model(stage))):
                return why
        return None


def _model(stage: str) -> str:
    return "FAIR" if "FAIR" in stage else "SASRec"


# ------------------------------------------------------------------------------------ run
def _summary(record: dict[str, Any]) -> str:
    m = record.get("metrics") or {}
    if record["status"] != "ok":
        return f"{record['status']}: {record.get('reason')}" + (
            f" (in: {record['stopped_in']})" if record.get("stopped_in") else ""
        )
    if record["stage"] == "data":
        return f"{m['n_interactions']:,} interactions of {m['n_users']:,} users"
    if record["stage"] == "sid":
        return (
            f"encode {m['encode_seconds']:.1f} s, fit {m['fit_seconds']:.1f} s, encode all "
            f"{m['encode_all_seconds']:.1f} s, build {m['build_seconds']:.1f} s"
        )
    if record["stage"].startswith("train"):
        return f"{m['seconds_per_1k_targets']:.3f} s / 1k targets"
    extra = f", graph build {m['graph_build_seconds']:.1f} s" if "graph_build_seconds" in m else ""
    return f"{m['users_per_second']:.1f} users/s{extra}"


def _record(item: dict[str, Any], result: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    return {
        "record": "bench_scale",
        **item,
        "status": result["status"],
        "reason": result.get("reason"),
        "stopped_in": result.get("stopped_in"),
        "wall_seconds": result.get("wall_seconds"),
        "cpu_seconds": result.get("cpu_seconds"),
        "peak_rss_mb": result.get("peak_rss_mb"),
        "metrics": result.get("metrics"),
        **run,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_all(args: argparse.Namespace, argv: list[str]) -> list[dict[str, Any]]:
    r"""Run the plan, appending one record per measurement to ``args.results``."""
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    done = {}
    for record in load_records(args.results) if args.resume else []:
        if record.get("status") in FINISHED:
            done[key_of(record)] = record
    items = list(plan(args))
    run = {
        **git_commit(),
        "argv": portable_argv(argv),
        "settings": {key: getattr(args, key) for key in SETTINGS},
        "cpu_count": os.cpu_count(),
    }
    blocks, written = Blocks(), []
    scale_stages.preload()
    for index, item in enumerate(items, 1):
        label = f"[{index}/{len(items)}] N={item['n_items']:,} H={item['history'] or '-'} {item['stage']}"
        if key_of(item) in done:
            blocks.note(item, done[key_of(item)])
            print(f"{label}: done before ({done[key_of(item)]['status']})", flush=True)
            continue
        if os.path.exists(os.path.join(args.out, "STOP")):
            print(f"STOP file in {args.out}: stopping before {label}", flush=True)
            break
        why = blocks.reason(item)
        if why is not None:
            result = {"status": "skipped", "reason": why}
        else:
            print(f"{label} ...", flush=True)
            name = "_".join(str(v) for v in key_of(item)).replace(":", "-")
            result = run_stage(args, stage_spec(args, item), name)
        record = _record(item, result, run)
        blocks.note(item, record)
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
        written.append(record)
        wall = f" in {result['wall_seconds']:.0f} s" if result.get("wall_seconds") else ""
        print(f"{label}: {_summary(record)}{wall}", flush=True)
    return written


def parse_args(argv: list[str]) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(float(v)) for v in text.split(",") if v.strip()]

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a = p.add_argument
    a("--sizes", type=ints, default=[10_000, 100_000, 1_000_000], help="catalogue sizes N")
    a("--histories", type=ints, default=[20, 200], help="history caps H (MAX_ITEM_LIST_LENGTH)")
    a("--stages", type=lambda t: t.split(","), default=list(ALL_STAGES), help="stages to run")
    a("--encoder", choices=sorted(ENCODERS), default="minilm", help="text encoder of the sid stage")
    a("--out", default=os.path.join("saved", "bench_scale"), help="data, caches, logs, results")
    a("--results", default=None, help="JSONL of the records (default <out>/results.jsonl)")
    a("--resume", action="store_true", help="skip the measurements finished in --results")
    a("--render", action="store_true", help="write the docs from --results and exit")
    a("--docs_dir", default=str(REPO / "docs" / "performance"), help="where --render writes")
    a("--clock", choices=("wall", "cpu"), default="wall", help="times --render shows")
    a("--stage_timeout", type=float, default=3600.0, help="seconds per stage")
    a("--timeout_clock", choices=("wall", "cpu"), default="wall", help="clock of --stage_timeout")
    a("--mem_limit_gb", type=float, default=20.0, help="resident memory limit of a stage (GiB)")
    a("--min_free_gb", type=float, default=1.0, help="stop a stage below this free memory (GiB)")
    a("--threads", type=int, default=1, help="torch and faiss threads of every stage")
    a("--seed", type=int, default=2020)
    a("--users_per_item", type=float, default=1.0, help="users = users_per_item * N")
    a("--mean_length", type=float, default=10.0, help="mean interactions per user")
    a("--n_codes", type=int, default=32, help="FAIR's codes per item (FAIR.yaml)")
    a("--codebook_size", type=int, default=256, help="FAIR's codebook size (FAIR.yaml)")
    a("--hidden_size", type=int, default=128, help="width d of FAIR and SASRec")
    a("--inner_size", type=int, default=256, help="feed-forward size of FAIR and SASRec")
    a("--train_batch_size", type=int, default=256, help="rows per step (FAIR.yaml's 256)")
    a("--train_steps", type=int, default=20, help="timed optimizer steps")
    a("--train_warmup_steps", type=int, default=3, help="untimed steps before them")
    a("--eval_batch_size", type=int, default=256, help="users per ranking batch")
    a("--eval_users", type=int, default=2048, help="users ranked per evaluation stage")
    a("--standin_dim", type=int, default=384, help="dimension of the stand-in encoder")
    a("--encode_batch_size", type=int, default=64, help="MiniLM batch (text_encode_batch_size)")
    args = p.parse_args(argv)
    args.results = args.results or os.path.join(args.out, "results.jsonl")
    unknown = set(args.stages) - set(ALL_STAGES)
    if unknown:
        p.error(f"unknown stages {sorted(unknown)}; choose from {list(ALL_STAGES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    scale_report = _sibling("scale_report")

    if args.render:
        paths = scale_report.render(load_records(args.results), args.docs_dir, args.clock)
        print("wrote " + ", ".join(paths))
        return
    run_all(args, argv)
    print(scale_report.exponents_text(load_records(args.results), args.clock))


if __name__ == "__main__":
    main()
