r"""Train and evaluate a recbole-fair or RecBole model: ``python run_recbole_fair.py --model=FAIR``.

Any other ``--key=value`` reaches RecBole's Config (e.g. ``--epochs=5 --hidden_size=128``).
With no ``--model`` and no ``--dataset`` it runs the quick-start preset: FAIR on ml-100k
(``properties/quick_start.yaml``), small enough for a 2-core CPU.

``--nproc=N`` trains on N local GPUs with RecBole's distributed (DDP) path; the semantic-ID cache
is built once, by rank 0 (``recbole_fair.distributed``).

Comma-separated ``--model``/``--dataset`` lists, ``--seeds`` or any other leaderboard flag run a
leaderboard instead (``recbole_fair.leaderboard``, see docs/leaderboard.md), e.g.
``--model=FAIR,SASRec --dataset=ml-100k --seeds=2020,2021,2022``.
"""

import argparse
import os
import sys

from recbole_fair import leaderboard
from recbole_fair.distributed import check_gpus, run_distributed
from recbole_fair.quick_start import run_recbole_fair
from recbole_fair.utils import get_properties_dir

if __name__ == "__main__":
    # allow_abbrev=False: RecBole's --seed=N must not be taken for --seeds.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (default FAIR)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset (default ml-100k)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
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
    leaderboard.add_arguments(parser)
    args, unknown = parser.parse_known_args()

    quick_start = []
    if args.model is None and args.dataset is None:
        quick_start = [os.path.join(get_properties_dir(), "quick_start.yaml")]
    distributed = args.nproc != 1 or args.world_size > 0
    if leaderboard.wants_leaderboard(args):
        if distributed:
            parser.error(
                "--nproc/--world_size run a single model on one dataset, not a leaderboard"
            )
        if args.leaderboard_only:  # no training: a bad file list is a usage error
            try:
                leaderboard.cli(args, unknown)
            except (FileNotFoundError, ValueError) as err:
                sys.exit(f"error: {err}")
            sys.exit(0)
        out = leaderboard.cli(args, unknown, default_config_files=quick_start)
        # a run stopped by its STOP file is unfinished: a non-zero status ends scripts chaining it
        sys.exit(leaderboard.STOPPED_EXIT_CODE if out.get("stopped") else 0)

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
    try:
        if distributed:
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
    except FileNotFoundError as err:  # missing data: the message says where and what to do
        sys.exit(f"error: {err}")
