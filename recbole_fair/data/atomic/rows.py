r"""Checks of an atomic file's rows, as ``pandas.read_csv`` (RecBole's reader, python engine)
will see them, and :func:`validate_atomic_file`, the checks of one file in order: text, header,
required columns, rows, values."""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np

from recbole_fair.data.atomic.base import (
    NA_VALUES,
    AtomicFile,
    Requirement,
    Where,
    read_text,
    separator_name,
    show,
    split_lines,
)
from recbole_fair.data.atomic.header import check_requirements, parse_header
from recbole_fair.errors import DataError


class _QuoteError(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def _quoted_field(line: str, start: int, index: int) -> tuple[str, int]:
    r"""The value of the quoted field opening at ``line[start]`` and the position after its
    closing quote (``index``: the 0-based field, for the error)."""
    out = []
    j = start + 1
    while True:
        k = line.find('"', j)
        if k < 0:
            raise _QuoteError(index, "is not closed on the same line")
        out.append(line[j:k])
        if not line.startswith('"', k + 1):
            return "".join(out), k + 1
        out.append('"')  # "" = a literal quote
        j = k + 2


def split_quoted(line: str, separator: str) -> list[str]:
    r"""Split a line as Python's ``csv`` module does with ``strict=True`` (pandas' python
    engine): a field starting with ``"`` is quoted up to the next lone ``"`` (``""`` is a
    literal quote), which must be followed by the separator or the end of the line; a ``"``
    elsewhere is an ordinary character.

    Raises:
        _QuoteError: a quoted field that does not close on this line, or closes before other
            characters (``index``: the 0-based field).
    """
    cells: list[str] = []
    i, n = 0, len(line)
    while True:
        if i < n and line[i] == '"':
            cell, i = _quoted_field(line, i, len(cells))
            cells.append(cell)
            if i == n:
                return cells
            if not line.startswith(separator, i):
                raise _QuoteError(len(cells) - 1, "is followed by other characters")
            i += len(separator)
        else:
            k = line.find(separator, i)
            if k < 0:
                cells.append(line[i:])
                return cells
            cells.append(line[i:k])
            i = k + len(separator)
            if i == n:
                cells.append("")
                return cells


def _first_bad_float(values: Sequence[str | None]) -> int | None:
    r"""Index of the first value that is not missing and not a number as ``read_csv(dtype=
    float64)`` converts it (``float(value)``), or ``None``."""
    present = [v for v in values if v is not None and v not in NA_VALUES]
    try:
        np.array(present, dtype=object).astype(np.float64)
        return None
    except (ValueError, TypeError, OverflowError):
        pass
    for i, value in enumerate(values):
        if value is None or value in NA_VALUES:
            continue
        try:
            float(value)
        except (ValueError, TypeError, OverflowError):
            return i
    return None  # pragma: no cover - numpy and float() disagree


def _first_bad_float_seq(values: Sequence[str | None], seq_separator: str) -> int | None:
    r"""Index of the first ``float_seq`` value with a piece ``float()`` rejects (RecBole
    splits on ``seq_separator`` and maps ``float`` over the non-empty pieces)."""
    for i, value in enumerate(values):
        if value is None or value in NA_VALUES:
            continue
        for piece in value.split(seq_separator) if seq_separator else [value]:
            if piece:
                try:
                    float(piece)
                except (ValueError, TypeError, OverflowError):
                    return i
    return None


def _quote_error(
    error: _QuoteError, path: str, lineno: int, line: str, columns: list[tuple[str, str]]
) -> DataError:
    name = columns[error.index][0] if error.index < len(columns) else f"field {error.index + 1}"
    return Where(path, line=lineno, column=name, value=line).error(
        f"[{path}] line {lineno}, column {name}: the value starts with a double "
        f'quote (") that {error.reason}. RecBole reads atomic files with '
        f"pandas.read_csv, which takes a leading quote as CSV quoting: it would "
        f"merge lines or fail. Replace the leading quote (e.g. by “), or quote the "
        f'whole value and double the quotes inside it ("a ""b"" c").',
    )


def _extra_fields_error(
    path: str,
    lineno: int,
    line: str,
    cells: list[str],
    columns: list[tuple[str, str]],
    separator: str,
    first_row: bool,
) -> DataError:
    # pandas' python engine does not just ignore extra fields, even empty ones: on the first row
    # they become the row index (every column shifts), on later rows whole rows can come out
    # empty or go missing
    extra = "" if any(c.strip() for c in cells[len(columns) :]) else " empty"
    effect = (
        "pandas would take the first column as the row index and shift every column "
        "of the file by one"
        if first_row
        else f"pandas misreads rows with{extra} extra fields (it can drop the extra "
        f"values, or empty or lose whole rows)"
    )
    sep = separator_name(separator)
    return Where(path, line=lineno, value=line).error(
        f"[{path}] line {lineno} has {len(cells)} fields but the header has "
        f"{len(columns)} ({', '.join(f'{n}:{t}' for n, t in columns)}): {effect}. Remove "
        f"the extra {sep}s (e.g. replace {sep}s inside text by spaces, drop a trailing one). "
        f"The line starts {show(line[:80])}.",
    )


def _read_rows(
    path: str, lines: list[str], columns: list[tuple[str, str]], checked: list[int], separator: str
) -> tuple[dict[int, list], list[int]]:
    r"""``(values, row lines)``: the values of the ``checked`` columns of every data row
    (``None`` where a row is short) and the file line of each row.

    Raises:
        DataError: a row pandas would misread (a bad leading quote, more fields than the header).
    """
    n_columns = len(columns)
    values: dict[int, list] = {i: [] for i in checked}
    row_lines: list[int] = []
    regex = re.compile(separator) if len(separator) > 1 else None
    for lineno, line in enumerate(lines[1:], start=2):
        cells = regex.split(line) if regex is not None else line.split(separator)
        if regex is None and '"' in line and any(c.startswith('"') for c in cells):
            try:
                cells = split_quoted(line, separator)
            except _QuoteError as e:
                raise _quote_error(e, path, lineno, line, columns) from None
        if len(cells) == 1 and not cells[0].strip():
            continue  # pandas skips blank lines (one field, nothing but white space)
        if len(cells) > n_columns:
            first_row = not row_lines
            raise _extra_fields_error(path, lineno, line, cells, columns, separator, first_row)
        for i in checked:
            values[i].append(cells[i] if i < len(cells) else None)
        row_lines.append(lineno)
    if not row_lines:
        raise Where(path, line=1).error(f"[{path}] has a header but no rows.")
    return values, row_lines


def _number_fix(name: str, ftype: str, is_time: bool, seq_separator: str) -> str:
    r"""How to fix a value of column ``name`` that is not a number."""
    if is_time:
        return (
            "Write a number: a Unix time (e.g. 1389052800) or each interaction's "
            "position 0, 1, 2, ... in the user's sequence; convert dates such as "
            "'2014-01-07' first."
        )
    if ftype == "float_seq":
        return (
            f"Write numbers separated by seq_separator {show(seq_separator)}, or "
            f"declare the column '{name}:token_seq' if it holds words."
        )
    return (
        f"Write a number (or leave it empty), or declare the column "
        f"'{name}:token' if it holds a category or an id, '{name}:token_seq' "
        f"if it holds words."
    )


def _check_values(
    path: str,
    name: str,
    ftype: str,
    values: list,
    row_lines: list[int],
    requirements: Sequence[Requirement],
    seq_separator: str,
) -> None:
    r"""The values of one loaded column: present when a requirement says so, numbers in a
    ``float`` / ``float_seq`` column."""
    column = f"{name}:{ftype}"
    if any(r.field == name and r.non_empty for r in requirements):
        bad = next((k for k, v in enumerate(values) if v is None or v in NA_VALUES), None)
        if bad is not None:
            req = next(r for r in requirements if r.field == name)
            raise Where(path, row_lines[bad], column, values[bad]).error(
                f"[{path}] line {row_lines[bad]}, column {column}: the value is missing "
                f"({show(values[bad] or '')}), but {name} ({req.key}) {req.why}. "
                f"Give every row a value (or remove the row).",
            )
    if ftype == "float":
        bad = _first_bad_float(values)
    elif ftype == "float_seq":
        bad = _first_bad_float_seq(values, seq_separator)
    else:
        return
    if bad is not None:
        is_time = any(r.field == name and r.key == "TIME_FIELD" for r in requirements)
        raise Where(path, row_lines[bad], column, values[bad]).error(
            f"[{path}] line {row_lines[bad]}, column {column}: {show(values[bad])} is not a "
            f"number. {_number_fix(name, ftype, is_time, seq_separator)}",
        )


def validate_atomic_file(
    path: str,
    *,
    separator: str = "\t",
    encoding: str = "utf-8",
    seq_separator: str = " ",
    load: set | None = None,
    unload: set | None = None,
    requirements: Sequence[Requirement] = (),
    source: str = "inter",
) -> AtomicFile:
    r"""Check one atomic file as RecBole will read it (see :mod:`recbole_fair.data.validate`).

    Args:
        path: the file.
        separator, encoding, seq_separator: RecBole's ``field_separator``, ``encoding`` and
            ``seq_separator``.
        load: the fields ``load_col`` loads (``None``: all).
        unload: the fields ``unload_col`` leaves out (``None``: none).
        requirements: the columns the file must have (:class:`Requirement`).
        source: the file's suffix (``inter``, ``item``, ...), for the messages.

    Returns:
        AtomicFile: its columns, loaded columns and row count.

    Raises:
        DataError: the first problem found, with the file, the line, the column and the fix.
    """
    if not os.path.isfile(path):
        raise Where(path).error(f"The atomic file [{path}] does not exist.")
    lines = split_lines(read_text(path, encoding, f".{source} file"))
    columns = parse_header(lines[0], path, separator)
    loaded = [
        n for n, _ in columns if (load is None or n in load) and (unload is None or n not in unload)
    ]
    check_requirements(path, columns, loaded, requirements, source)
    non_empty = {r.field for r in requirements if r.non_empty}
    checked = [
        i
        for i, (name, ftype) in enumerate(columns)
        if name in loaded and (ftype in ("float", "float_seq") or name in non_empty)
    ]
    values, row_lines = _read_rows(path, lines, columns, checked, separator)
    for i in checked:
        name, ftype = columns[i]
        _check_values(path, name, ftype, values[i], row_lines, requirements, seq_separator)
    return AtomicFile(path, columns, loaded, len(row_lines), np.asarray(row_lines, dtype=np.int64))
