r"""Checks of an atomic file's header: each column ``name:type`` (:func:`parse_header`), and the
columns a run needs present, loaded and of the right type (:func:`check_requirements`)."""

from __future__ import annotations

import difflib
from typing import Iterable, Sequence

from recbole_fair.data.atomic.base import (
    FEATURE_TYPES,
    Requirement,
    Where,
    read_text,
    separator_name,
    show,
    split_lines,
)

#: header names users often give the id and time columns (suggested when the configured
#: field is missing).
_ALIASES = {
    "USER_ID_FIELD": ("uid", "user", "userid", "user_id", "reviewerid", "customer_id", "u"),
    "ITEM_ID_FIELD": ("iid", "item", "itemid", "item_id", "asin", "movie_id", "product_id", "i"),
    "TIME_FIELD": ("timestamp", "time", "ts", "date", "datetime", "unixreviewtime", "t"),
}
_TYPE_HINTS = {
    "int": "float",
    "integer": "float",
    "long": "float",
    "double": "float",
    "number": "float",
    "numeric": "float",
    "str": "token",
    "string": "token",
    "text": "token_seq",
    "category": "token",
    "categorical": "token",
    "id": "token",
}


def _check_separator(header: str, path: str, separator: str) -> None:
    r"""A header that is one column for RecBole but looks separated by another separator."""
    others = [s for s in ("\t", ",", ";", "|", " ") if s != separator and s in header]
    if others and header.count(":") != 1:
        raise Where(path, line=1, column=header).error(
            f"[{path}] line 1: the header {show(header)} is one column for RecBole, whose "
            f"field_separator is the {separator_name(separator)}; the columns look separated by "
            f"the {separator_name(others[0])}. Separate the columns (header and rows) with "
            f"{separator_name(separator)}s, or set field_separator.",
        )


def _parse_column(
    cell: str, index: int, path: str, separator: str, columns: list[tuple[str, str]]
) -> tuple[str, str]:
    r"""``(name, type)`` of header cell ``index`` (1-based); ``columns``: the ones before it."""
    where = f"[{path}] line 1 (the header), column {index}"
    if not cell:
        raise Where(path, line=1).error(
            f"{where} is empty (a {separator_name(separator)} at the start or end of the "
            f"header, or two in a row). Remove it: each column is 'name:type'.",
        )
    at = Where(path, line=1, column=cell)
    if cell.startswith('"'):
        raise at.error(
            f"{where} {show(cell)} is quoted; RecBole reads the header without CSV "
            f"quoting. Remove the quotes.",
        )
    parts = cell.split(":")
    if len(parts) != 2:
        fix = (
            f"write it as '{cell}:token' (ids, categories) or '{cell}:float' (numbers)"
            if len(parts) == 1
            else "a column is written 'name:type' with a single ':'"
        )
        raise at.error(
            f"{where} {show(cell)} is not 'name:type': {fix}. Types: {', '.join(FEATURE_TYPES)}."
        )
    name, ftype = parts
    if ftype not in FEATURE_TYPES:
        hint = _TYPE_HINTS.get(ftype.strip().lower(), ftype.strip())
        fix = f" Use '{name}:{hint}'." if hint in FEATURE_TYPES else ""
        raise at.error(
            f"{where} {show(cell)}: type {show(ftype)} is not one of RecBole's types "
            f"{', '.join(FEATURE_TYPES)} (token: an id or category; token_seq: "
            f"space-separated words; float: a number; float_seq: space-separated "
            f"numbers).{fix}",
        )
    if not name.strip():
        raise at.error(f"{where} {show(cell)} has no name.")
    if any(name == other for other, _ in columns):
        raise at.error(
            f"{where}: the column name {show(name)} appears twice in the header; "
            f"rename or remove one.",
        )
    return name, ftype


def parse_header(header: str, path: str, separator: str = "\t") -> list[tuple[str, str]]:
    r"""``[(name, type), ...]`` of an atomic file's header line, as RecBole splits it.

    Raises:
        DataError: an empty, untyped or repeated column, or a type RecBole does not know; the
            message suggests the fix (and the separator, when the columns look separated by
            another one).
    """
    cells = header.split(separator)
    if len(cells) == 1:
        _check_separator(header, path, separator)
    columns: list[tuple[str, str]] = []
    for i, cell in enumerate(cells, start=1):
        columns.append(_parse_column(cell, i, path, separator, columns))
    return columns


def read_header(path: str, separator: str = "\t", encoding: str = "utf-8") -> list[tuple[str, str]]:
    r"""``[(name, type), ...]`` of an atomic file's header (the whole file is decoded, so a
    bad byte anywhere is reported; see :func:`parse_header` for the errors)."""
    lines = split_lines(read_text(path, encoding))
    return parse_header(lines[0] if lines else "", path, separator)


def _closest_column(
    requirement: Requirement, columns: list[tuple[str, str]], taken: Iterable[str]
) -> str | None:
    names = [n for n, _ in columns if n not in set(taken)]
    lowered = {n.lower().replace("-", "_").strip(): n for n in names}
    close = difflib.get_close_matches(requirement.field, names, n=1, cutoff=0.6)
    if close:
        return close[0]
    for alias in _ALIASES.get(requirement.key, ()):
        if alias in lowered:
            return lowered[alias]
    return None


def _missing_column_fix(
    req: Requirement, columns: list[tuple[str, str]], taken: list[str], source: str
) -> str:
    r"""How to give the file the column ``req`` names: rename the closest column, or add one."""
    close = _closest_column(req, columns, taken)
    if close is None:
        return (
            f"add a column '{req.field}:{req.ftype}', or set {req.key} to the name of "
            f"the column that holds it"
        )
    return (
        f"rename the column header '{close}:{dict(columns)[close]}' to "
        f"'{req.field}:{req.ftype}', or set {req.key}: {close} (and name {close} "
        f"in load_col['{source}'] if you set load_col)"
    )


def check_requirements(
    path: str,
    columns: list[tuple[str, str]],
    loaded: list[str],
    requirements: Sequence[Requirement],
    source: str,
) -> None:
    r"""Each required column is in the header, loaded, and declared with its type.

    Raises:
        DataError: the first requirement not met, with the fix.
    """
    types = dict(columns)
    header = "\t".join(f"{n}:{t}" for n, t in columns)
    taken = [r.field for r in requirements]
    for req in requirements:
        at = Where(path, line=1, column=req.field)
        if req.field not in types:
            raise at.error(
                f"[{path}] has no column '{req.field}' ({req.key}), which {req.why}. Its header "
                f"is {show(header, 200)}. To fix it, "
                f"{_missing_column_fix(req, columns, taken, source)}.",
            )
        if req.field not in loaded:
            raise at.error(
                f"[{path}] has the column '{req.field}' ({req.key}), which {req.why}, but "
                f"load_col / unload_col do not load it (loaded: {loaded}). Add it to "
                f"load_col['{source}'].",
            )
        if types[req.field] != req.ftype:
            extra = (
                " A token column would be ordered by its remapped id, not by time: write "
                "numbers (a Unix time, or each interaction's position 0, 1, 2, ... in the "
                "user's sequence)."
                if req.key == "TIME_FIELD"
                else ""
            )
            raise Where(path, line=1, column=f"{req.field}:{types[req.field]}").error(
                f"[{path}] declares '{req.field}:{types[req.field]}', but {req.field} "
                f"({req.key}) must be of type {req.ftype}, since it {req.why}. Change the "
                f"header to '{req.field}:{req.ftype}'.{extra}",
            )
