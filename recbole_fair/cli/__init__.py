r"""recbole_fair.cli
################

The ``recbole-fair`` command (a console script; also ``python -m recbole_fair.cli``)::

    recbole-fair run --model=FAIR --dataset=ml-100k      # train and evaluate one model
    recbole-fair leaderboard --model=FAIR,SASRec --dataset=ml-100k --seeds=2020,2021
    recbole-fair attention --checkpoint saved/FAIR-xxx.pth --out attention/
    recbole-fair evaluate --checkpoint saved/RPG-xxx.pth --set decoding=graph --valid
    recbole-fair prepare-amazon --reviews ... --meta ... --name Amazon_Beauty

``recbole-fair COMMAND --help`` lists the flags of a command. ``python run_recbole_fair.py`` is
``recbole-fair run``. Each command lives in a module of this package (``run``, ``leaderboard``,
``attention``, ``evaluate``; the DDP launcher in ``launch``); ``prepare-amazon`` is
:func:`recbole_fair.data.prepare_amazon.main`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

PROG = "recbole-fair"

# command -> one line of help (the order of ``recbole-fair --help``)
COMMANDS = {
    "run": "train and evaluate a model (also DDP on several GPUs, or a leaderboard)",
    "leaderboard": "run a leaderboard of models x datasets x seeds, or re-render its tables",
    "attention": "attention maps and focus numbers of trained FAIR/RPG checkpoints",
    "evaluate": "evaluate a saved checkpoint on the test split again (other decoding settings)",
    "prepare-amazon": "raw Amazon review downloads -> RecBole atomic files",
}


def command_main(name: str) -> Callable[..., int]:
    r"""The ``main(argv, prog)`` of a command (imported on demand: ``--help`` stays quick)."""
    if name == "run":
        from recbole_fair.cli.run import main
    elif name == "leaderboard":
        from recbole_fair.cli.leaderboard import main
    elif name == "attention":
        from recbole_fair.cli.attention import main
    elif name == "evaluate":
        from recbole_fair.cli.evaluate import main
    elif name == "prepare-amazon":
        from recbole_fair.data.prepare_amazon import main
    else:
        raise KeyError(name)
    return main


def build_parser() -> argparse.ArgumentParser:
    r"""The parser of the command's name (the command parses its own flags)."""
    commands = "\n".join(f"  {name:<16}{text}" for name, text in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [-h] COMMAND [flags]",
        description="Generative recommendation with semantic IDs (FAIR, RPG, TIGER) on RecBole.",
        epilog=f"commands:\n{commands}\n\n'{PROG} COMMAND --help' lists the flags of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="see below")
    return parser


def main(argv: list[str] | None = None) -> int:
    r"""``recbole-fair COMMAND [flags]``; returns the command's exit status."""
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    command = build_parser().parse_args(argv[:1]).command
    flags = argv[1:]
    if from_command_line:
        # RecBole's Config reads --key=value pairs from sys.argv: it sees the command's flags
        # as it does under run_recbole_fair.py, without the command's name
        sys.argv = [sys.argv[0], *flags]
    return command_main(command)(flags, prog=f"{PROG} {command}")
