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

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from recbole_fair import leaderboard
from recbole_fair.distributed import check_gpus, run_distributed
from recbole_fair.errors import UserInputError
from recbole_fair.quick_start import run_recbole_fair
from recbole_fair.utils import get_properties_dir

# Environment variable that makes the CLI print tracebacks (as --debug does).
DEBUG_ENV = "RECBOLE_FAIR_DEBUG"

# Errors a user can fix from the message alone: printed as one paragraph, no traceback.
# ValueError: recbole-fair's and RecBole's checks of settings raise it with a message that says
# what to change; RecBole reports a malformed command line (e.g. a key given twice) as a
# SyntaxError.
USER_ERRORS = (UserInputError, FileNotFoundError, PermissionError, IsADirectoryError, ValueError)


def _is_user_error(err: BaseException) -> bool:
    if isinstance(err, USER_ERRORS):
        return True
    return isinstance(err, SyntaxError) and "commend arg" in str(err)  # RecBole's wording


def _print_error(err: BaseException, debug: bool) -> int:
    # into the run's log file too (when one is open), with the traceback; never to the console
    root = logging.getLogger()
    record = root.makeRecord(
        root.name, logging.ERROR, __file__, 0, f"{type(err).__name__}: {err}", (), None
    )
    record.exc_info = (type(err), err, err.__traceback__)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__)
    if _is_user_error(err):
        print(f"error: {err}", file=sys.stderr)
    else:
        print(
            f"error: {type(err).__name__}: {err}\n"
            "This looks like a bug rather than a problem with your data or settings: please "
            "report it with the run's log file (log/<model>/) and the traceback (--debug).",
            file=sys.stderr,
        )
    if not debug:
        print(f"(--debug or {DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    # allow_abbrev=False: RecBole's --seed=N must not be taken for --seeds.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (default FAIR)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset (default ml-100k)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error (also: environment variable {DEBUG_ENV}=1)",
    )
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
    args, unknown = parser.parse_known_args(argv)
    # RecBole's Config reads --key=value pairs from sys.argv itself: hide our own flag from it
    sys.argv = [a for a in sys.argv if a != "--debug"]
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return _run(parser, args, unknown)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI's last line: one paragraph, not a traceback
        return _print_error(err, debug)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]) -> int:
    quick_start = []
    if args.model is None and args.dataset is None:
        quick_start = [os.path.join(get_properties_dir(), "quick_start.yaml")]
    distributed = args.nproc != 1 or args.world_size > 0
    if leaderboard.wants_leaderboard(args):
        if distributed:
            parser.error(
                "--nproc/--world_size run a single model on one dataset, not a leaderboard"
            )
        try:
            leaderboard.check_arguments(args)
        except ValueError as err:
            parser.error(str(err))
        if args.leaderboard_only:  # no training
            leaderboard.cli(args, unknown)
            return 0
        out = leaderboard.cli(args, unknown, default_config_files=quick_start)
        # non-zero ends scripts chaining runs: STOPPED_EXIT_CODE (75) for a run stopped by its
        # STOP file (unfinished), FAILED_EXIT_CODE (3) when a cell of this run failed
        return leaderboard.exit_status(out)

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


if __name__ == "__main__":
    sys.exit(main())
