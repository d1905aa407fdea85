r"""recbole_fair.cli.attention
##########################

``recbole-fair attention``: attention maps and attention-focus numbers of trained FAIR/RPG
checkpoints (the measures: :mod:`recbole_fair.analysis.attention`)::

    recbole-fair attention --checkpoint saved/FAIR-xxx.pth \
        [--compare saved/RPG-xxx.pth] [--users 5 | --user_id TOKEN] --out attention/

Writes one PNG per drawn user, ``summary.png`` and ``attention_metrics.json`` into ``--out`` and
prints the numbers of every model.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Sequence

import torch

from recbole_fair.analysis.attention import (
    SIMILARITIES,
    attention_metrics,
    plot_summary,
    plot_user,
    sample_users,
)
from recbole_fair.checkpoint import load_checkpoint
from recbole_fair.cli.common import add_debug_argument, debug_requested, report_errors


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Attention maps and attention-focus numbers of trained FAIR/RPG checkpoints.",
    )
    parser.add_argument("--checkpoint", required=True, help="RecBole checkpoint (e.g. FAIR).")
    parser.add_argument("--compare", help="a second checkpoint drawn beside it (e.g. RPG).")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--users", type=int, default=5, help="number of test users to draw.")
    who.add_argument("--user_id", help="draw this user (token of the user_id field).")
    parser.add_argument("--out", default="attention", help="output folder.")
    parser.add_argument("--top_k", type=int, default=1, help="most similar history items.")
    parser.add_argument("--similarity", choices=SIMILARITIES, default="text")
    parser.add_argument("--head", default="mean", help="'mean' over heads or a head index.")
    parser.add_argument("--max_users", type=int, help="measure at most this many test users.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data_path", help="folder holding the dataset folder, if it moved.")
    add_debug_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    r"""Run the command on ``argv`` (default: the command line); returns the exit status (an
    error: 1, with one paragraph on stderr)."""
    args = build_parser(prog).parse_args(argv)

    def command() -> int:
        draw_and_measure(args)
        return 0

    return report_errors(command, debug_requested(args))


def draw_and_measure(args: argparse.Namespace) -> dict:
    r"""What the command does with parsed flags (see the module docstring).

    Returns:
        dict: what ``attention_metrics.json`` holds: the settings, ``models`` (one
        :func:`~recbole_fair.analysis.attention.attention_metrics` dict each), ``users_drawn``
        and ``figures`` (the PNG paths).

    Raises:
        ValueError: a bad ``--top_k``/``--head``, an unknown ``--user_id``, or a checkpoint that
            cannot be loaded.
    """
    if args.top_k < 1:
        raise ValueError(f"top_k must be >= 1, got [{args.top_k}].")
    if args.head != "mean" and not args.head.isdigit():
        raise ValueError(f"head must be 'mean' or a head index, got [{args.head}].")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [args.checkpoint] + ([args.compare] if args.compare else [])
    models = [load_checkpoint(p, args.device, args.data_path) for p in paths]
    if len(models) == 2 and models[0].label == models[1].label:
        for loaded in models:
            loaded.label += f"\n{Path(loaded.path).stem}"

    with torch.no_grad():
        results = [
            attention_metrics(m, args.similarity, args.top_k, args.max_users) for m in models
        ]
        tokens = sample_users(models[0], args.users, args.user_id)
        figures = [
            plot_user(models, token, out_dir, args.similarity, args.top_k, args.head)
            for token in tokens
        ]
    figures = [str(f) for f in figures if f is not None]
    figures.append(str(plot_summary(results, out_dir)))

    report = {
        "similarity": args.similarity,
        "top_k": args.top_k,
        "models": results,
        "users_drawn": tokens,
        "figures": figures,
    }
    with open(out_dir / "attention_metrics.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    _print_numbers(results, args.top_k)
    print(f"figures and attention_metrics.json written to {out_dir}")
    return report


def _print_numbers(results: list[dict], top_k: int) -> None:
    print(f"{'model':<32} {'users':>6} {'entropy':>8} {f'top{top_k}_share':>11} {'uniform':>8}")
    for r in results:
        label = r["label"].replace("\n", " ")
        print(
            f"{label:<32} {r['n_users']:>6} {_fmt(r['entropy']):>8} "
            f"{_fmt(r['topk_share']):>11} {_fmt(r['uniform_topk_share']):>8}"
        )


def _fmt(value: float | None) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.4f}"
    )
