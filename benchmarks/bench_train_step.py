r"""Seconds per training step and estimated seconds per epoch, several configurations back to back.

Whole-epoch timings of ``bench_fair.py`` are only comparable when the machine is equally loaded
during every cell; this script times a few optimizer steps of each configuration one right after
the other (same process conditions), then scales by the number of steps per epoch.

Usage::

    python benchmarks/bench_train_step.py --dataset Amazon_Beauty \
        --runs FAIR:all_positions FAIR:prefix SASRec

``--anomaly_mode both`` times every run with autograd's anomaly mode off (what recbole-fair runs)
and on (what importing RecBole 1.2.1's sequential models switched on for the whole process before
``recbole_fair.compat`` restored it), one right after the other.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bench_generative import time_train_steps  # the step timer of both scripts (benchmarks/)

REPO = Path(__file__).resolve().parents[1]


def time_steps(
    model_name: str, dataset: str, config_dict: dict, steps: int, anomaly_modes: list[bool]
) -> list[dict]:
    import torch
    from recbole.data import data_preparation

    from recbole_fair.config import Config
    from recbole_fair.utils import create_dataset, get_model

    config = Config(model=model_name, dataset=dataset, config_dict=config_dict)
    train, _, _ = data_preparation(config, create_dataset(config))
    model = get_model(model_name)(config, train._dataset).to(config["device"])
    results = []
    for anomaly in anomaly_modes:
        with torch.autograd.set_detect_anomaly(anomaly):
            per_step = time_train_steps(model, train, config["device"], steps)
        results.append(
            {
                "model": model_name,
                "train_mode": config_dict.get("train_mode"),
                "anomaly_mode": anomaly,
                "steps_per_epoch": len(train),
                "seconds_per_step": per_step,
                "estimated_seconds_per_epoch": per_step * len(train),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Amazon_Beauty")
    parser.add_argument("--data_path", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument(
        "--runs", nargs="+", default=["FAIR:all_positions", "FAIR:prefix", "SASRec"]
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument(
        "--anomaly_mode",
        choices=["off", "on", "both"],
        default="off",
        help="autograd anomaly mode while timing (on: as RecBole 1.2.1's sine.py import left it)",
    )
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument(
        "--sid_cache_dir", default=str(REPO / "benchmarks" / "results" / "sid_cache")
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_step.json"))
    args = parser.parse_args()

    from recbole_fair.utils import available_models

    anomaly_modes = {"off": [False], "on": [True], "both": [False, True]}[args.anomaly_mode]
    # the width flags are for recbole-fair's models; RecBole's run with their own YAML defaults
    own_models = set(available_models()["recbole_fair"])
    results = []
    for run in args.runs:
        model_name, _, mode = run.partition(":")
        config_dict = {"data_path": args.data_path, "show_progress": False, "state": "WARNING"}
        if model_name in own_models:
            config_dict.update(
                hidden_size=args.hidden_size,
                inner_size=2 * args.hidden_size,
                train_batch_size=256,
                sid_cache_dir=args.sid_cache_dir,
                train_mode=mode or "all_positions",
            )
        for r in time_steps(model_name, args.dataset, config_dict, args.steps, anomaly_modes):
            results.append(r)
            label = run + (" (anomaly on)" if r["anomaly_mode"] else "")
            print(
                f"{label:36s} {r['steps_per_epoch']:5d} steps/epoch"
                f"  {r['seconds_per_step']:.3f} s/step"
                f"  ~{r['estimated_seconds_per_epoch']:.0f} s/epoch",
                flush=True,
            )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    Path(args.out).write_text(json.dumps({"dataset": args.dataset, "runs": results}, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
