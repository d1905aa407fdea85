r"""recbole_fair.leaderboard.command
##################################

The leaderboard's command line: its flags (:func:`add_arguments`, added to
``run_recbole_fair.py``'s parser), whether a command line asks for a leaderboard
(:func:`wants_leaderboard`), and :func:`cli`, which runs or re-renders one from the parsed flags.
(Not named ``cli.py``: the package exports the function :func:`cli`, which a module of that name
would shadow.)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

from recbole_fair.leaderboard.results import RESULTS_FILE, split_commas
from recbole_fair.leaderboard.runner import check_cell_timeout, run_leaderboard
from recbole_fair.leaderboard.tables import render_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    r"""The leaderboard flags of ``run_recbole_fair.py``."""
    group = parser.add_argument_group("leaderboard (any of these, or a comma in --model/--dataset)")
    group.add_argument(
        "--seeds", type=str, default=None, help="comma-separated seeds, e.g. 2020,2021,2022"
    )
    group.add_argument(
        "--leaderboard_dir",
        type=str,
        default=None,
        help="output folder (default ./leaderboards/<timestamp>)",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the results file of --leaderboard_dir (default: the latest ./leaderboards/*)",
    )
    group.add_argument(
        "--leaderboard-only",
        "--leaderboard_only",
        dest="leaderboard_only",
        default=None,
        metavar="RESULTS_FILE[,RESULTS_FILE...]",
        help="re-render tables and plots from a results file, no training; several "
        "comma-separated files are merged into --leaderboard_dir",
    )
    group.add_argument(
        "--reference",
        type=str,
        default=None,
        help="model or row label of the significance test (default SASRec when present)",
    )
    group.add_argument(
        "--significance",
        choices=["wilcoxon", "ttest"],
        default=None,
        help="per-user paired test on NDCG@10 (default wilcoxon)",
    )
    _add_run_arguments(group)


def _add_run_arguments(group: Any) -> None:
    r"""The flags of how the cells run."""
    group.add_argument(
        "--model_config",
        type=str,
        default=None,
        help="YAML whose top-level keys are model names mapping to per-model overrides",
    )
    group.add_argument(
        "--in_process",
        action="store_true",
        help="run the cells in this process instead of one process per cell",
    )
    group.add_argument(
        "--cell_timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="kill a cell's process that runs longer than SECONDS, record the cell as failed "
        "and go on with the next one (one process per cell only: a cell run with --in_process "
        "cannot be stopped, the two flags together are refused)",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a positive number of seconds, got {text!r}")
    return value


def check_arguments(args: argparse.Namespace) -> None:
    r"""``ValueError`` for leaderboard flags that cannot go together (a usage error)."""
    check_cell_timeout(getattr(args, "cell_timeout", None), not args.in_process)


def wants_leaderboard(args: argparse.Namespace) -> bool:
    r"""Whether the command line asks for a leaderboard rather than a single run."""
    lists = any("," in (v or "") for v in (args.model, args.dataset))
    flags = (
        args.seeds,
        args.leaderboard_dir,
        args.leaderboard_only,
        args.model_config,
        args.reference,
        args.significance,
        args.cell_timeout,
    )
    return lists or args.resume or args.in_process or any(f is not None for f in flags)


def _latest_leaderboard_dir(root: str = "leaderboards") -> str | None:
    if not os.path.isdir(root):
        return None
    candidates = [os.path.join(root, d) for d in os.listdir(root)]
    candidates = [d for d in candidates if os.path.isfile(os.path.join(d, RESULTS_FILE))]
    return (
        max(candidates, key=lambda d: os.path.getmtime(os.path.join(d, RESULTS_FILE)))
        if candidates
        else None
    )


def load_model_config(path: str) -> dict[str, dict[str, Any]]:
    r"""``--model_config``: a YAML file mapping model names to their settings."""
    import yaml

    with open(path, encoding="utf-8") as f:
        content = yaml.safe_load(f) or {}
    if not isinstance(content, dict) or not all(
        isinstance(v, dict) or v is None for v in content.values()
    ):
        raise ValueError(
            f"{path}: expected top-level model names, each mapping to a dict of overrides"
        )
    return {str(k): dict(v or {}) for k, v in content.items()}


def cli(
    args: argparse.Namespace, unknown: list[str], default_config_files: list[str] | None = None
) -> dict[str, Any]:
    r"""Run (or, with ``--leaderboard-only``, re-render) a leaderboard from parsed CLI flags.

    ``unknown`` are the arguments the CLI parser did not consume (RecBole ``--key=value``
    overrides): they become every cell's ``sys.argv``, so RecBole's Config never sees the
    leaderboard's flags nor the model/dataset lists.
    """
    significance = args.significance or "wilcoxon"
    check_arguments(args)
    if args.leaderboard_only:
        out = render_file(args.leaderboard_only, args.leaderboard_dir, args.reference, significance)
        print(out["table"])
        return out
    out = run_leaderboard(
        **_run_settings(args, unknown, default_config_files),
        reference=args.reference,
        significance=significance,
        isolate=not args.in_process,
        cell_timeout=args.cell_timeout,
    )
    _report(out)
    return out


def _run_settings(
    args: argparse.Namespace, unknown: list[str], default_config_files: list[str] | None
) -> dict[str, Any]:
    r"""The grid, the cells' settings and the folder of :func:`run_leaderboard` from the
    flags; with ``--resume`` and no folder, the latest ``./leaderboards/*``."""
    seeds = [int(s) for s in split_commas(args.seeds)] or None
    cell_argv = [sys.argv[0]] + [
        a for a in unknown if not (seeds and (a.startswith("--seed=") or a == "--seed"))
    ]
    config_files = args.config_files.strip().split(" ") if args.config_files else []
    config_files = list(default_config_files or []) + config_files
    leaderboard_dir = args.leaderboard_dir
    if args.resume and leaderboard_dir is None:
        leaderboard_dir = _latest_leaderboard_dir()
        if leaderboard_dir is None:
            raise FileNotFoundError(
                "--resume: no ./leaderboards/*/results.jsonl; pass --leaderboard_dir"
            )
        print(f"leaderboard: resuming {leaderboard_dir}", flush=True)
    return {
        "models": split_commas(args.model) or ["FAIR"],
        "datasets": split_commas(args.dataset) or ["ml-100k"],
        "seeds": seeds,
        "config_file_list": config_files,
        "model_overrides": load_model_config(args.model_config) if args.model_config else None,
        "argv": cell_argv,
        "leaderboard_dir": leaderboard_dir,
        "resume": args.resume,
    }


def _report(out: dict[str, Any]) -> None:
    r"""Print how the run ended: stopped, the table and its files, the failed cells (last, on
    stderr, where a script's log ends)."""
    if out.get("stopped"):
        print(f"leaderboard: stopped at {out['stopped']} (results so far: {out['results']})")
    if "table" in out:
        print(out["table"])
        print(
            f"leaderboard: {out['markdown']}, {out['csv']}, {out['png']} "
            f"(results: {out['results']})"
        )
    if out.get("failed"):  # last, where a script's log ends
        print(
            f"leaderboard: {len(out['failed'])} cell(s) of this run failed (see "
            f"{out['results']}): " + ", ".join(out["failed"]),
            file=sys.stderr,
            flush=True,
        )
