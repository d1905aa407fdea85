r"""recbole_fair.cli.leaderboard
############################

``recbole-fair leaderboard``: train every model × dataset × seed cell of a leaderboard and render
its tables (:mod:`recbole_fair.leaderboard`, docs/leaderboard.md), or, with
``--leaderboard-only RESULTS_FILE``, re-render tables and plots from a results file without
training, e.g.::

    recbole-fair leaderboard --model=FAIR,SASRec --dataset=ml-100k --seeds=2020,2021,2022
    recbole-fair leaderboard --leaderboard-only leaderboards/x/results.jsonl

``recbole-fair run`` runs the same leaderboard when it is given a model or dataset list or a
leaderboard flag. Exit status: 0 done, 1 an error, 2 a usage error, 3 a cell of this run failed,
75 the run was stopped by its STOP file (unfinished), 130 interrupted.
"""

from __future__ import annotations

import argparse

from recbole_fair import leaderboard
from recbole_fair.cli.common import (
    add_run_arguments,
    debug_requested,
    hide_debug_flag,
    preset_files,
    report_errors,
)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    r"""What to train (``--model``, ``--dataset``, lists allowed) and the leaderboard flags."""
    # allow_abbrev=False: RecBole's --seed=N must not be taken for --seeds.
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a leaderboard (models x datasets x seeds) or re-render one from its "
        "results file; any other --key=value reaches RecBole's Config in every cell.",
        allow_abbrev=False,
    )
    add_run_arguments(parser)
    leaderboard.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    r"""Run the command on ``argv`` (default: the command line); returns the exit status."""
    parser = build_parser(prog)
    args, unknown = parser.parse_known_args(argv)
    hide_debug_flag()
    return report_errors(
        lambda: run_board(parser, args, unknown, preset_files(args)), debug_requested(args)
    )


def run_board(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    unknown: list[str],
    default_config_files: list[str],
) -> int:
    r"""Run (or re-render) the leaderboard of parsed flags; returns the exit status.

    Args:
        parser: the command's parser (flags that cannot go together are its usage errors).
        args: the parsed flags.
        unknown: the rest of the command line (RecBole ``--key=value`` overrides of every cell).
        default_config_files: config files every cell reads before ``--config_files``.
    """
    try:
        leaderboard.check_arguments(args)
    except ValueError as err:
        parser.error(str(err))
    if args.leaderboard_only:  # no training
        leaderboard.cli(args, unknown)
        return 0
    out = leaderboard.cli(args, unknown, default_config_files=default_config_files)
    # non-zero ends scripts chaining runs: STOPPED_EXIT_CODE (75) for a run stopped by its
    # STOP file (unfinished), FAILED_EXIT_CODE (3) when a cell of this run failed
    return leaderboard.exit_status(out)
