r"""recbole_fair.errors
####################

Exceptions for problems in what the user gave us (data files, configuration), as opposed to
bugs. Their message is a complete paragraph (which file, which column, which line, what to do),
so a command-line front end can print it without a traceback::

    try:
        run_recbole_fair(...)
    except UserInputError as err:
        sys.exit(f"error: {err}")

Both derive from ``ValueError``, so code that caught RecBole's ``ValueError`` still catches them.
"""

from __future__ import annotations

from typing import Any


class UserInputError(ValueError):
    r"""A problem with the user's input (a data file or a configuration value) whose message
    says what is wrong and how to fix it."""


class ConfigError(UserInputError):
    r"""A setting the user gave cannot work (a value out of range, a config file that is not
    YAML, an unknown key under ``strict_config``): the message names the key or file and the fix."""


class DataError(UserInputError):
    r"""A RecBole atomic file (``.inter``, ``.item``, ``.user``, ...) that cannot be used as it is.

    Attributes:
        path (str or None): the file.
        line (int or None): 1-based line number in the file (the header is line 1).
        column (str or None): the column, as written in the header (``timestamp:float``).
        value (str or None): the offending value.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: str | None = None,
        value: Any = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column
        self.value = value


__all__ = ["UserInputError", "ConfigError", "DataError"]
