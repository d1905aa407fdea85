r"""recbole_fair.cli.run
####################

``recbole-fair run`` (also ``python run_recbole_fair.py``): train and evaluate a recbole-fair or
RecBole model, e.g. ``recbole-fair run --model=FAIR --dataset=ml-100k``.

Any other ``--key=value`` reaches RecBole's Config (e.g. ``--epochs=5 --hidden_size=128``).
With no ``--model`` and no ``--dataset`` it runs the quick-start preset: FAIR on ml-100k
(``properties/quick_start.yaml``), small enough for a 2-core CPU.

``--nproc=N`` trains on N local GPUs with RecBole's distributed (DDP) path; the semantic-ID cache
is built once, by rank 0 (:mod:`recbole_fair.cli.launch`, :mod:`recbole_fair.parallel`).

Comma-separated ``--model``/``--dataset`` lists, ``--seeds`` or any other leaderboard flag run a
leaderboard instead (as ``recbole-fair leaderboard`` does; see docs/leaderboard.md), e.g.
``--model=FAIR,SASRec --dataset=ml-100k --seeds=2020,2021,2022``.

Exit status: 0 done, 1 an error (one paragraph on stderr), 2 a usage error, 3 a leaderboard cell
failed, 75 a leaderboard stopped by its STOP file, 130 interrupted.
"""

from __future__ import annotations

import argparse

from recbole_fair.cli.common import (
    add_run_arguments,
    debug_requested,
    hide_debug_flag,
    preset_files,
    report_errors,
)
from recbole_fair.cli.launch import check_gpus, run_distributed
from recbole_fair.cli.leaderboard import run_board
from recbole_fair.leaderboard import add_arguments as add_leaderboard_arguments
from recbole_fair.leaderboard import wants_leaderboard
from recbole_fair.quick_start import run_recbole_fair


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    r"""The flags of ``run``: what to train, DDP, and the leaderboard flags."""
    # allow_abbrev=False: RecBole's --seed=N must not be taken for --seeds.
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train and evaluate a recbole-fair or RecBole model, or run a leaderboard; "
        "any other --key=value reaches RecBole's Config.",
        allow_abbrev=False,
    )
    add_run_arguments(parser)
    ddp = parser.add_argument_group(
        "distributed training (RecBole's DDP path, one process per GPU)"
    )
    ddp.add_argument("--nproc", type=int, default=1, help="processes (GPUs) on this machine")
    ddp.add_argument("--world_size", type=int, default=-1, help="all processes (default nproc)")
    ddp.add_argument("--ip", type=str, default="localhost", help="address of the rank-0 machine")
    ddp.add_argument("--port", type=str, default="5678", help="port of the rank-0 machine")
    ddp.add_argument(
        "--group_offset", type=int, default=0, help="rank of this machine's first process"
    )
    add_leaderboard_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    r"""Run the command on ``argv`` (default: the command line); returns the exit status."""
    parser = build_parser(prog)
    args, unknown = parser.parse_known_args(argv)
    hide_debug_flag()
    return report_errors(lambda: _run(parser, args, unknown), debug_requested(args))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]) -> int:
    quick_start = preset_files(args)
    distributed = args.nproc != 1 or args.world_size > 0
    if wants_leaderboard(args):
        if distributed:
            parser.error(
                "--nproc/--world_size run a single model on one dataset, not a leaderboard"
            )
        return run_board(parser, args, unknown, quick_start)

    config_files = args.config_files.strip().split(" ") if args.config_files else []
    run_args = dict(
        model=args.model or "FAIR",
        dataset=args.dataset or "ml-100k",
        config_file_list=quick_start + config_files or None,
    )
    if distributed:
        try:
            check_gpus(args.nproc, args.world_size)
        except ValueError as err:
            parser.error(str(err))
        run_distributed(
            **run_args,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    else:
        run_recbole_fair(**run_args)
    return 0
