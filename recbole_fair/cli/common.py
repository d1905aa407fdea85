r"""recbole_fair.cli.common
#######################

What every command of the CLI shares: the ``--debug`` flag and the way an error ends a command.
An error the user can fix from its message alone (a :class:`~recbole_fair.errors.UserInputError`,
a missing file, a refused setting) is printed as one paragraph without a traceback; anything
else is reported as a probable bug. Either way the command exits with status 1 (130 when
interrupted), and the traceback goes into the run's log file when one is open.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Callable

from recbole_fair.errors import UserInputError
from recbole_fair.paths import get_properties_dir

# Environment variable that makes the CLI print tracebacks (as --debug does).
DEBUG_ENV = "RECBOLE_FAIR_DEBUG"

# Errors a user can fix from the message alone: printed as one paragraph, no traceback.
# ValueError: recbole-fair's and RecBole's checks of settings raise it with a message that says
# what to change; RecBole reports a malformed command line (e.g. a key given twice) as a
# SyntaxError.
USER_ERRORS = (UserInputError, FileNotFoundError, PermissionError, IsADirectoryError, ValueError)


def is_user_error(err: BaseException) -> bool:
    r"""Whether ``err`` is a problem with the user's input rather than a bug."""
    if isinstance(err, USER_ERRORS):
        return True
    return isinstance(err, SyntaxError) and "commend arg" in str(err)  # RecBole's wording


def print_error(err: BaseException, debug: bool) -> int:
    r"""Report ``err`` as the CLI's last word (see the module docstring); returns the status 1."""
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
    if is_user_error(err):
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


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    r"""The ``--debug`` flag of every command."""
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error (also: environment variable {DEBUG_ENV}=1)",
    )


def debug_requested(args: argparse.Namespace) -> bool:
    r"""``--debug`` or the environment variable :data:`DEBUG_ENV`."""
    return args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def report_errors(command: Callable[[], int], debug: bool) -> int:
    r"""Run ``command`` and return its exit status; an error becomes status 1 with one
    paragraph on stderr (:func:`print_error`), an interruption status 130."""
    try:
        return command()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI's last line: one paragraph, not a traceback
        return print_error(err, debug)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    r"""What to train: ``--model``, ``--dataset``, ``--config_files`` (and ``--debug``), the
    flags of ``run`` and ``leaderboard``. Any other ``--key=value`` reaches RecBole's Config."""
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (default FAIR)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset (default ml-100k)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    add_debug_argument(parser)


def preset_files(args: argparse.Namespace) -> list[str]:
    r"""The quick-start preset (``properties/quick_start.yaml``: FAIR on ml-100k, small enough
    for a 2-core CPU) when neither ``--model`` nor ``--dataset`` is given, else nothing."""
    if args.model is None and args.dataset is None:
        return [os.path.join(get_properties_dir(), "quick_start.yaml")]
    return []


def hide_debug_flag() -> None:
    r"""RecBole's Config reads ``--key=value`` pairs from ``sys.argv`` itself: hide our own
    ``--debug`` from it."""
    sys.argv = [a for a in sys.argv if a != "--debug"]
