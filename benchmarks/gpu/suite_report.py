r"""Report of the one-window GPU suite (benchmarks/gpu/device_run.sh, RUNS=suite).

    python benchmarks/gpu/suite_report.py OUT_FOLDER

reads ``OUT/suite/<model>/results.jsonl`` (one leaderboard cell per model), ``OUT/gpu_util.csv``
(``nvidia-smi`` every second), ``OUT/gpu_pmon.txt`` (per-process utilisation) and ``OUT/ps.txt``
(which process is which model), and writes ``OUT/suite_report.md`` and ``OUT/suite_report.json``
(also printed): per model the epochs trained against the cap and what stopped them, the training
seconds per epoch (median: the first epoch carries the start-up), validation seconds, the
training FLOPs per epoch (``costs.train_flops_per_epoch``, counted on one batch by
``recbole_fair.flops``), the achieved TFLOP/s and the model FLOP utilisation (MFU): achieved over
the device's dense peak at the precision the cell trained in (bfloat16 tensor cores under
``autocast_dtype: bfloat16``, else float32: PyTorch does not use TF32 for float32 matrix products
by default), the host synchronisations of one training step, the test metrics; and the GPU's
utilisation over the run (the share of each second some kernel ran: not a FLOP rate).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from typing import Any

# (part of the device name, dense bfloat16 tensor TFLOP/s, float32 TFLOP/s), first match wins;
# vendor data sheets (dense, i.e. without structured sparsity)
PEAK_TFLOPS = [
    ("H100 PCIe", 756.0, 51.2),
    ("H100 NVL", 835.0, 60.0),
    ("H200 NVL", 835.0, 60.0),
    ("H100", 989.4, 66.9),
    ("H200", 989.4, 66.9),
    ("A100", 312.0, 19.5),
]


def peak_tflops(device_name: str | None, dtype: str) -> float | None:
    r"""Dense peak TFLOP/s of ``device_name`` at ``dtype`` (``bfloat16`` or ``float32``); None for
    an unknown device (or the CPU)."""
    for part, bf16, fp32 in PEAK_TFLOPS:
        if device_name and part in device_name:
            return bf16 if dtype == "bfloat16" else fp32
    return None


def last_record(path: str) -> dict[str, Any] | None:
    r"""The last complete cell record of a results file, None when there is none."""
    record = None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and item.get("record") == "cell":
                    record = item
    except OSError:
        return None
    return record


def cell_summary(record: dict[str, Any]) -> dict[str, Any]:
    r"""The report's numbers of one cell record."""
    costs = record.get("costs") or {}
    config = record.get("config") or {}
    test = record.get("test_result") or {}
    out: dict[str, Any] = {
        "model": record.get("model"),
        "status": record.get("status"),
        "error": (record.get("error") or {}).get("type"),
        "epochs": costs.get("epochs"),
        "epoch_cap": config.get("epochs"),
        "best_epoch": None if costs.get("best_epoch") is None else costs["best_epoch"] + 1,
        "autocast_dtype": costs.get("autocast_dtype"),
        "device_name": costs.get("device_name"),
        "host_syncs_per_step": costs.get("host_syncs_per_step"),
        "train_flops_per_epoch": costs.get("train_flops_per_epoch"),
        "peak_cuda_mb": costs.get("peak_cuda_mb"),
        "ndcg@10": test.get("ndcg@10"),
        "recall@10": test.get("recall@10"),
        "fit_seconds": costs.get("fit_seconds"),
        "wall_seconds": record.get("wall_seconds"),
    }
    train = costs.get("train_epoch_seconds") or []
    valid = costs.get("valid_epoch_seconds") or []
    out["train_s_per_epoch"] = statistics.median(train) if train else None
    out["first_epoch_s"] = train[0] if train else None
    out["valid_s_per_epoch"] = statistics.median(valid) if valid else None
    if record.get("status") != "ok":
        out["stopped_by"] = "error"
    elif costs.get("stopped_at_deadline"):
        out["stopped_by"] = "deadline"
    elif out["epochs"] is not None and out["epoch_cap"] is not None:
        out["stopped_by"] = "cap" if out["epochs"] >= out["epoch_cap"] else "early stopping"
    else:
        out["stopped_by"] = None
    flops, seconds = out["train_flops_per_epoch"], out["train_s_per_epoch"]
    out["achieved_tflops"] = flops / seconds / 1e12 if flops and seconds else None
    peak = peak_tflops(out["device_name"], out["autocast_dtype"] or "float32")
    out["peak_tflops"] = peak
    out["mfu"] = out["achieved_tflops"] / peak if peak and out["achieved_tflops"] else None
    return out


def gpu_utilisation(path: str) -> dict[str, Any] | None:
    r"""Mean / median / max of ``utilization.gpu`` and the largest ``memory.used`` sampled by
    ``nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,...``."""
    util, memory = [], []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = [p.strip() for p in line.split(",")]
                if len(parts) < 4 or not parts[1].endswith("%"):
                    continue
                try:
                    util.append(float(parts[1].rstrip(" %")))
                    memory.append(float(parts[3].split()[0]))
                except ValueError:
                    continue
    except OSError:
        return None
    if not util:
        return None
    return {
        "samples": len(util),
        "mean": statistics.fmean(util),
        "median": statistics.median(util),
        "max": max(util),
        "busy_share": sum(u > 0 for u in util) / len(util),
        "max_memory_mib": max(memory) if memory else None,
    }


def process_models(path: str) -> dict[int, str]:
    r"""pid -> model of the leaderboards (``--model=X`` in their command line) and of their cells
    (whose parent is a leaderboard), from ``ps.txt``."""
    leaders: dict[int, str] = {}
    children: list[tuple[int, int]] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split(None, 5)
                if len(fields) < 6 or not fields[0].isdigit():
                    continue
                pid, ppid, args = int(fields[0]), int(fields[1]), fields[5]
                match = re.search(r"--model=(\S+)", args)
                if "run_recbole_fair" in args and match:
                    leaders[pid] = match.group(1)
                else:
                    children.append((pid, ppid))
    except OSError:
        return {}
    models = dict(leaders)
    for pid, ppid in children:
        if ppid in leaders:
            models[pid] = leaders[ppid]
    return models


def per_process_sm(path: str, models: dict[int, str]) -> dict[str, float]:
    r"""Mean SM utilisation (%) per model from ``nvidia-smi pmon -s um`` (samples of its pids)."""
    samples: dict[str, list[float]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#"):
                    continue
                fields = line.split()
                if len(fields) < 4 or not fields[1].isdigit():
                    continue
                model = models.get(int(fields[1]))
                if model is None:
                    continue
                try:
                    samples.setdefault(model, []).append(float(fields[3]))
                except ValueError:  # '-': no sample
                    continue
    except OSError:
        return {}
    return {model: statistics.fmean(values) for model, values in samples.items() if values}


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return str(value)


def render(cells: list[dict[str, Any]], gpu: dict[str, Any] | None, sm: dict[str, float]) -> str:
    lines = [
        "| model | status | epochs / cap | stopped by | best epoch | train s/epoch (first) | "
        "valid s/epoch | TFLOP/epoch | TFLOP/s | precision | MFU | host syncs/step | "
        "SM % (pmon) | N@10 | R@10 | peak GPU MB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        flops = c["train_flops_per_epoch"]
        lines.append(
            "| "
            + " | ".join(
                [
                    _fmt(c["model"]),
                    _fmt(c["status"]) + (f" ({c['error']})" if c["error"] else ""),
                    f"{_fmt(c['epochs'])} / {_fmt(c['epoch_cap'])}",
                    _fmt(c["stopped_by"]),
                    _fmt(c["best_epoch"]),
                    f"{_fmt(c['train_s_per_epoch'], '.2f')} ({_fmt(c['first_epoch_s'], '.1f')})",
                    _fmt(c["valid_s_per_epoch"], ".2f"),
                    _fmt(flops / 1e12 if flops else None, ".2f"),
                    _fmt(c["achieved_tflops"], ".2f"),
                    _fmt(c["autocast_dtype"]),
                    _fmt(100 * c["mfu"] if c["mfu"] is not None else None, ".2f")
                    + ("%" if c["mfu"] is not None else ""),
                    _fmt(c["host_syncs_per_step"]),
                    _fmt(sm.get(c["model"]), ".0f"),
                    _fmt(c["ndcg@10"], ".4f"),
                    _fmt(c["recall@10"], ".4f"),
                    _fmt(c["peak_cuda_mb"], ".0f"),
                ]
            )
            + " |"
        )
    device = next((c["device_name"] for c in cells if c.get("device_name")), None)
    lines.append("")
    lines.append(f"Device: {device or 'no CUDA device (CPU run)'}; MFU = TFLOP/s over the dense")
    lines.append("peak at the cell's precision (TFLOP/s from the median training epoch).")
    if gpu:
        lines.append(
            f"GPU utilisation (nvidia-smi, {gpu['samples']} samples of 1 s): mean "
            f"{gpu['mean']:.0f}%, median {gpu['median']:.0f}%, max {gpu['max']:.0f}%, busy in "
            f"{100 * gpu['busy_share']:.0f}% of the samples; most memory used "
            f"{_fmt(gpu['max_memory_mib'], '.0f')} MiB."
        )
    return "\n".join(lines) + "\n"


def report(out_dir: str) -> dict[str, Any]:
    r"""Build, write and return the report of the suite's output folder ``out_dir``."""
    suite = os.path.join(out_dir, "suite")
    cells = []
    models = sorted(os.listdir(suite)) if os.path.isdir(suite) else []
    for model in [m for m in models if os.path.isdir(os.path.join(suite, m))]:
        record = last_record(os.path.join(suite, model, "results.jsonl"))
        if record is None:
            cells.append({"model": model, "status": "no record"} | dict.fromkeys(_KEYS))
            continue
        cells.append(cell_summary(record))
    gpu = gpu_utilisation(os.path.join(out_dir, "gpu_util.csv"))
    sm = per_process_sm(
        os.path.join(out_dir, "gpu_pmon.txt"), process_models(os.path.join(out_dir, "ps.txt"))
    )
    text = render(cells, gpu, sm)
    with open(os.path.join(out_dir, "suite_report.md"), "w", encoding="utf-8") as f:
        f.write(text)
    result = {"cells": cells, "gpu_utilisation": gpu, "sm_percent_by_model": sm}
    with open(os.path.join(out_dir, "suite_report.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(text, end="")
    return result


_KEYS = [
    "error",
    "epochs",
    "epoch_cap",
    "stopped_by",
    "best_epoch",
    "train_s_per_epoch",
    "first_epoch_s",
    "valid_s_per_epoch",
    "train_flops_per_epoch",
    "achieved_tflops",
    "autocast_dtype",
    "mfu",
    "host_syncs_per_step",
    "ndcg@10",
    "recall@10",
    "peak_cuda_mb",
    "device_name",
]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: suite_report.py OUT_FOLDER")
    report(sys.argv[1])
