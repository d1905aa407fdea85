r"""The check framework of the atomic-file checks: what a check knows about a file
(:class:`Requirement`, :class:`AtomicFile`), where a problem is (:class:`Where`, which builds the
:class:`~recbole_fair.errors.DataError`), and reading a file as RecBole will (bytes -> text ->
lines)."""

from __future__ import annotations

import codecs
import dataclasses
from typing import Any

import numpy as np

from recbole_fair.errors import DataError, UserInputError

#: RecBole's feature types (``recbole.utils.FeatureType`` values).
FEATURE_TYPES = ("token", "token_seq", "float", "float_seq")

try:  # the strings pandas.read_csv reads as missing by default
    from pandas._libs.parsers import STR_NA_VALUES as _PANDAS_NA
except ImportError:  # pragma: no cover - a future pandas moving it
    _PANDAS_NA = {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }  # fmt: skip
NA_VALUES = frozenset(_PANDAS_NA)

_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", " ": "space", "|": "pipe"}


def show(value: Any, limit: int = 80) -> str:
    r"""``repr(value)``, cut to ``limit`` characters, for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def separator_name(separator: str) -> str:
    r"""``tab``, ``comma``, ... (or the repr) of a field separator, for a message."""
    return _SEPARATOR_NAMES.get(separator, repr(separator))


@dataclasses.dataclass(frozen=True)
class Where:
    r"""The place in an atomic file a check points at. A failed check raises
    ``where.error(message)``, so that each check reads as one condition and one message::

        at = Where(path, line=1, column=cell)
        if cell.startswith('"'):
            raise at.error(f"... is quoted; ...")

    Attributes:
        path (str): the file.
        line (int or None): 1-based line number (the header is line 1).
        column (str or None): the column, as the message names it.
        value (Any): the offending value.
    """

    path: str
    line: int | None = None
    column: str | None = None
    value: Any = None

    def error(self, message: str) -> DataError:
        r"""The :class:`DataError` saying ``message`` about this place."""
        return DataError(
            message, path=self.path, line=self.line, column=self.column, value=self.value
        )


@dataclasses.dataclass
class Requirement:
    r"""A column a file must have.

    Attributes:
        field (str): the column name (``user_id``).
        ftype (str): the type it must be declared with.
        key (str): the config key naming it (``USER_ID_FIELD``), for the messages.
        why (str): why it is needed, for the messages.
        non_empty (bool): every row must have a value.
    """

    field: str
    ftype: str
    key: str
    why: str
    non_empty: bool = False


@dataclasses.dataclass
class AtomicFile:
    r"""What the checks learned about one atomic file.

    Attributes:
        path (str): the file.
        columns (list of tuple): ``(name, type)`` per header column, in order.
        loaded (list of str): the columns RecBole loads (``load_col`` / ``unload_col``).
        n_rows (int): data rows as ``pandas.read_csv`` counts them (blank lines skipped).
        row_lines (numpy.ndarray): int64 ``[n_rows]``, the file line (1-based, header = 1) of
            each data row, i.e. of each row label of the ``DataFrame`` RecBole reads.
    """

    path: str
    columns: list
    loaded: list
    n_rows: int
    row_lines: np.ndarray | None = None

    @property
    def fields(self) -> list[str]:
        return [name for name, _ in self.columns]


def _codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError as e:
        raise UserInputError(
            f"encoding [{encoding}] is not a text encoding Python knows (e.g. utf-8, "
            f"latin-1, cp1252); fix the 'encoding' setting."
        ) from e


def _decode(data: bytes, path: str, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeError as e:
        begin = getattr(e, "start", 0)
        end = getattr(e, "end", begin + 1)
        line = data.count(b"\n", 0, begin) + 1
        raise Where(path, line=line).error(
            f"[{path}] line {line} is not valid {encoding} text (bytes {data[begin:end]!r} "
            f"at byte offset {begin}). Re-save the file as {encoding} (e.g. iconv -f latin1 "
            f"-t utf-8), or set encoding to the file's encoding (e.g. encoding: latin-1).",
        ) from e


def read_text(path: str, encoding: str, what: str = "file") -> str:
    r"""The text of an atomic file (``what`` names it in the messages).

    Raises:
        DataError: the file cannot be read, is empty, starts with a byte-order mark under
            ``utf-8`` or does not decode.
        UserInputError: ``encoding`` is not an encoding Python knows.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Where(path).error(f"Cannot read the {what} [{path}]: {e}.") from e
    if not data.strip():
        raise Where(path, line=1).error(
            f"The {what} [{path}] is empty. An atomic file starts with a header line naming "
            f"each column and its type, e.g. 'user_id:token<TAB>item_id:token<TAB>"
            f"timestamp:float', followed by one row per line.",
        )
    codec = _codec_name(encoding)
    if data.startswith(codecs.BOM_UTF8) and codec == "utf-8":
        raise Where(path, line=1).error(
            f"[{path}] starts with a byte-order mark (BOM), which RecBole would read as part "
            f"of the first column's name. Save the file as UTF-8 without BOM, or set "
            f"encoding: utf-8-sig.",
        )
    return _decode(data, path, encoding)


def split_lines(text: str) -> list[str]:
    r"""Lines as RecBole (universal newlines) and pandas read them: ``\r\n``, ``\r``, ``\n``."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines
