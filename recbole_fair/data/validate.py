r"""recbole_fair.data.validate
###########################

Checks of RecBole atomic files, run before RecBole reads them (by every dataset class of
recbole-fair, see :mod:`recbole_fair.data.checked`), so that a bad file stops the run with a
:class:`~recbole_fair.errors.DataError` naming the file, the column, the first bad line and
its value and what to do, instead of a pandas traceback or a silently different dataset.

What is checked, per file RecBole will read (``.inter`` or the ``benchmark_filename`` files,
``.user`` and ``.item`` when ``load_col`` loads them, ``additional_feat_suffix`` files, the
``.kg`` / ``.link`` files of knowledge-aware datasets):

* the bytes decode with ``encoding`` (no byte-order mark under ``utf-8``: RecBole would read it
  as part of the first column's name);
* the header: one ``name:type`` per column, ``type`` one of ``token``, ``token_seq``,
  ``float``, ``float_seq``, no empty or repeated names, a hint when the columns look separated
  by something other than ``field_separator``;
* the required columns exist, are loaded (``load_col`` / ``unload_col``) and have the right
  type: ``USER_ID_FIELD`` and ``ITEM_ID_FIELD`` (``token``) in ``.inter``, ``ITEM_ID_FIELD`` in
  ``.item``, ``USER_ID_FIELD`` in ``.user``, and ``TIME_FIELD`` (``float``, no empty value)
  when the dataset is sequential (RecBole orders each user's history by it) or
  ``eval_args.order`` is ``TO``. ``load_col`` fields that a file lacks are only warned about:
  RecBole's own default ``load_col`` names ``rating``, which many files do not have;
* the rows, as ``pandas.read_csv`` (RecBole's reader, python engine) will see them: no row
  with more fields than the header, even empty ones (on the first row pandas takes the first
  column as the index and shifts every column; on later rows it can empty or lose whole rows),
  no field starting with a double quote that does not close as CSV quoting requires (pandas
  would merge lines or fail without a line number), and every value of a loaded ``float``
  column parses as a number (``float(value)``, as pandas converts it; each space-separated
  value of a ``float_seq`` column). Blank lines are skipped, as pandas skips them; shorter rows
  are allowed (the missing values are empty). ``tests/test_data_fuzz.py`` checks that a file
  these checks accept is read by RecBole's reader with the number of rows counted here.

Empty user or item ids are not errors here: RecBole drops those rows, and the drop accounting of
:mod:`recbole_fair.data.checked` counts them. The checks read each file once, as text
(about 0.3 s for the 198,502 rows of Amazon_Beauty.inter).
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import os
import re
import time
from logging import getLogger
from typing import Any, Iterable, Sequence

import numpy as np

from recbole_fair.data.download import recbole_url
from recbole_fair.errors import DataError, UserInputError
from recbole_fair.paths import DATA_PATH_ENV

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
_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", " ": "space", "|": "pipe"}


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _sep_name(separator: str) -> str:
    return _SEPARATOR_NAMES.get(separator, repr(separator))


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


# ------------------------------------------------------------------------------------ reading
def _read_text(path: str, encoding: str, what: str = "file") -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"Cannot read the {what} [{path}]: {e}.", path=path) from e
    if not data.strip():
        raise DataError(
            f"The {what} [{path}] is empty. An atomic file starts with a header line naming "
            f"each column and its type, e.g. 'user_id:token<TAB>item_id:token<TAB>"
            f"timestamp:float', followed by one row per line.",
            path=path,
            line=1,
        )
    try:
        codec = codecs.lookup(encoding).name
    except LookupError as e:
        raise UserInputError(
            f"encoding [{encoding}] is not a text encoding Python knows (e.g. utf-8, "
            f"latin-1, cp1252); fix the 'encoding' setting."
        ) from e
    if data.startswith(codecs.BOM_UTF8) and codec == "utf-8":
        raise DataError(
            f"[{path}] starts with a byte-order mark (BOM), which RecBole would read as part "
            f"of the first column's name. Save the file as UTF-8 without BOM, or set "
            f"encoding: utf-8-sig.",
            path=path,
            line=1,
        )
    try:
        return data.decode(encoding)
    except UnicodeError as e:
        begin = getattr(e, "start", 0)
        end = getattr(e, "end", begin + 1)
        line = data.count(b"\n", 0, begin) + 1
        raise DataError(
            f"[{path}] line {line} is not valid {encoding} text (bytes {data[begin:end]!r} "
            f"at byte offset {begin}). Re-save the file as {encoding} (e.g. iconv -f latin1 "
            f"-t utf-8), or set encoding to the file's encoding (e.g. encoding: latin-1).",
            path=path,
            line=line,
        ) from e


def _lines(text: str) -> list[str]:
    r"""Lines as RecBole (universal newlines) and pandas read them: ``\r\n``, ``\r``, ``\n``."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_header(header: str, path: str, separator: str = "\t") -> list[tuple[str, str]]:
    r"""``[(name, type), ...]`` of an atomic file's header line, as RecBole splits it.

    Raises:
        DataError: an empty, untyped or repeated column, or a type RecBole does not know; the
            message suggests the fix (and the separator, when the columns look separated by
            another one).
    """
    cells = header.split(separator)
    if len(cells) == 1:
        others = [s for s in ("\t", ",", ";", "|", " ") if s != separator and s in header]
        if others and header.count(":") != 1:
            raise DataError(
                f"[{path}] line 1: the header {_show(header)} is one column for RecBole, whose "
                f"field_separator is the {_sep_name(separator)}; the columns look separated by "
                f"the {_sep_name(others[0])}. Separate the columns (header and rows) with "
                f"{_sep_name(separator)}s, or set field_separator.",
                path=path,
                line=1,
                column=header,
            )
    columns: list[tuple[str, str]] = []
    for i, cell in enumerate(cells, start=1):
        where = f"[{path}] line 1 (the header), column {i}"
        if not cell:
            raise DataError(
                f"{where} is empty (a {_sep_name(separator)} at the start or end of the "
                f"header, or two in a row). Remove it: each column is 'name:type'.",
                path=path,
                line=1,
            )
        if cell.startswith('"'):
            raise DataError(
                f"{where} {_show(cell)} is quoted; RecBole reads the header without CSV "
                f"quoting. Remove the quotes.",
                path=path,
                line=1,
                column=cell,
            )
        parts = cell.split(":")
        if len(parts) != 2:
            fix = (
                f"write it as '{cell}:token' (ids, categories) or '{cell}:float' (numbers)"
                if len(parts) == 1
                else "a column is written 'name:type' with a single ':'"
            )
            raise DataError(
                f"{where} {_show(cell)} is not 'name:type': {fix}. Types: "
                f"{', '.join(FEATURE_TYPES)}.",
                path=path,
                line=1,
                column=cell,
            )
        name, ftype = parts
        if ftype not in FEATURE_TYPES:
            hint = _TYPE_HINTS.get(ftype.strip().lower(), ftype.strip())
            fix = f" Use '{name}:{hint}'." if hint in FEATURE_TYPES else ""
            raise DataError(
                f"{where} {_show(cell)}: type {_show(ftype)} is not one of RecBole's types "
                f"{', '.join(FEATURE_TYPES)} (token: an id or category; token_seq: "
                f"space-separated words; float: a number; float_seq: space-separated "
                f"numbers).{fix}",
                path=path,
                line=1,
                column=cell,
            )
        if not name.strip():
            raise DataError(f"{where} {_show(cell)} has no name.", path=path, line=1, column=cell)
        if any(name == other for other, _ in columns):
            raise DataError(
                f"{where}: the column name {_show(name)} appears twice in the header; "
                f"rename or remove one.",
                path=path,
                line=1,
                column=cell,
            )
        columns.append((name, ftype))
    return columns


def read_header(path: str, separator: str = "\t", encoding: str = "utf-8") -> list[tuple[str, str]]:
    r"""``[(name, type), ...]`` of an atomic file's header (the whole file is decoded, so a
    bad byte anywhere is reported; see :func:`parse_header` for the errors)."""
    lines = _lines(_read_text(path, encoding))
    return parse_header(lines[0] if lines else "", path, separator)


class _QuoteError(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


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
            out = []
            j = i + 1
            while True:
                k = line.find('"', j)
                if k < 0:
                    raise _QuoteError(len(cells), "is not closed on the same line")
                out.append(line[j:k])
                if line.startswith('"', k + 1):  # "" = a literal quote
                    out.append('"')
                    j = k + 2
                    continue
                break
            i = k + 1
            cells.append("".join(out))
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


# --------------------------------------------------------------------------------- one file
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


def _check_requirements(
    path: str,
    columns: list[tuple[str, str]],
    loaded: list[str],
    requirements: Sequence[Requirement],
    source: str,
) -> None:
    types = dict(columns)
    header = "\t".join(f"{n}:{t}" for n, t in columns)
    taken = [r.field for r in requirements]
    for req in requirements:
        if req.field not in types:
            close = _closest_column(req, columns, taken)
            if close is not None:
                fix = (
                    f"rename the column header '{close}:{types[close]}' to "
                    f"'{req.field}:{req.ftype}', or set {req.key}: {close} (and name {close} "
                    f"in load_col['{source}'] if you set load_col)"
                )
            else:
                fix = (
                    f"add a column '{req.field}:{req.ftype}', or set {req.key} to the name of "
                    f"the column that holds it"
                )
            raise DataError(
                f"[{path}] has no column '{req.field}' ({req.key}), which {req.why}. Its header "
                f"is {_show(header, 200)}. To fix it, {fix}.",
                path=path,
                line=1,
                column=req.field,
            )
        if req.field not in loaded:
            raise DataError(
                f"[{path}] has the column '{req.field}' ({req.key}), which {req.why}, but "
                f"load_col / unload_col do not load it (loaded: {loaded}). Add it to "
                f"load_col['{source}'].",
                path=path,
                line=1,
                column=req.field,
            )
        if types[req.field] != req.ftype:
            extra = (
                " A token column would be ordered by its remapped id, not by time: write "
                "numbers (a Unix time, or each interaction's position 0, 1, 2, ... in the "
                "user's sequence)."
                if req.key == "TIME_FIELD"
                else ""
            )
            raise DataError(
                f"[{path}] declares '{req.field}:{types[req.field]}', but {req.field} "
                f"({req.key}) must be of type {req.ftype}, since it {req.why}. Change the "
                f"header to '{req.field}:{req.ftype}'.{extra}",
                path=path,
                line=1,
                column=f"{req.field}:{types[req.field]}",
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
    r"""Check one atomic file as RecBole will read it (see the module docstring).

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
        raise DataError(f"The atomic file [{path}] does not exist.", path=path)
    lines = _lines(_read_text(path, encoding, f".{source} file"))
    columns = parse_header(lines[0], path, separator)
    loaded = [
        n for n, _ in columns if (load is None or n in load) and (unload is None or n not in unload)
    ]
    _check_requirements(path, columns, loaded, requirements, source)

    n_columns = len(columns)
    non_empty = {r.field for r in requirements if r.non_empty}
    checked = [
        i
        for i, (name, ftype) in enumerate(columns)
        if name in loaded and (ftype in ("float", "float_seq") or name in non_empty)
    ]
    values: dict[int, list] = {i: [] for i in checked}
    row_lines: list[int] = []
    regex = re.compile(separator) if len(separator) > 1 else None
    for lineno, line in enumerate(lines[1:], start=2):
        cells = regex.split(line) if regex is not None else line.split(separator)
        if regex is None and '"' in line and any(c.startswith('"') for c in cells):
            try:
                cells = split_quoted(line, separator)
            except _QuoteError as e:
                name = columns[e.index][0] if e.index < n_columns else f"field {e.index + 1}"
                raise DataError(
                    f"[{path}] line {lineno}, column {name}: the value starts with a double "
                    f'quote (") that {e.reason}. RecBole reads atomic files with '
                    f"pandas.read_csv, which takes a leading quote as CSV quoting: it would "
                    f"merge lines or fail. Replace the leading quote (e.g. by “), or quote the "
                    f'whole value and double the quotes inside it ("a ""b"" c").',
                    path=path,
                    line=lineno,
                    column=name,
                    value=line,
                ) from None
        if len(cells) == 1 and not cells[0].strip():
            continue  # pandas skips blank lines (one field, nothing but white space)
        if len(cells) > n_columns:
            # pandas' python engine does not just ignore extra fields, even empty ones: on the
            # first row they become the row index (every column shifts), on later rows whole
            # rows can come out empty or go missing
            extra = "" if any(c.strip() for c in cells[n_columns:]) else " empty"
            effect = (
                "pandas would take the first column as the row index and shift every column "
                "of the file by one"
                if not row_lines
                else f"pandas misreads rows with{extra} extra fields (it can drop the extra "
                f"values, or empty or lose whole rows)"
            )
            raise DataError(
                f"[{path}] line {lineno} has {len(cells)} fields but the header has "
                f"{n_columns} ({', '.join(f'{n}:{t}' for n, t in columns)}): {effect}. Remove "
                f"the extra {_sep_name(separator)}s (e.g. replace {_sep_name(separator)}s "
                f"inside text by spaces, drop a trailing one). The line starts "
                f"{_show(line[:80])}.",
                path=path,
                line=lineno,
                value=line,
            )
        for i in checked:
            values[i].append(cells[i] if i < len(cells) else None)
        row_lines.append(lineno)
    if not row_lines:
        raise DataError(
            f"[{path}] has a header but no rows.",
            path=path,
            line=1,
        )

    for i in checked:
        name, ftype = columns[i]
        column = f"{name}:{ftype}"
        column_values = values[i]
        if name in non_empty:
            bad = next(
                (k for k, v in enumerate(column_values) if v is None or v in NA_VALUES), None
            )
            if bad is not None:
                req = next(r for r in requirements if r.field == name)
                raise DataError(
                    f"[{path}] line {row_lines[bad]}, column {column}: the value is missing "
                    f"({_show(column_values[bad] or '')}), but {name} ({req.key}) {req.why}. "
                    f"Give every row a value (or remove the row).",
                    path=path,
                    line=row_lines[bad],
                    column=column,
                    value=column_values[bad],
                )
        if ftype == "float":
            bad = _first_bad_float(column_values)
        elif ftype == "float_seq":
            bad = _first_bad_float_seq(column_values, seq_separator)
        else:
            continue
        if bad is not None:
            if any(r.field == name and r.key == "TIME_FIELD" for r in requirements):
                fix = (
                    "Write a number: a Unix time (e.g. 1389052800) or each interaction's "
                    "position 0, 1, 2, ... in the user's sequence; convert dates such as "
                    "'2014-01-07' first."
                )
            elif ftype == "float_seq":
                fix = (
                    f"Write numbers separated by seq_separator {_show(seq_separator)}, or "
                    f"declare the column '{name}:token_seq' if it holds words."
                )
            else:
                fix = (
                    f"Write a number (or leave it empty), or declare the column "
                    f"'{name}:token' if it holds a category or an id, '{name}:token_seq' "
                    f"if it holds words."
                )
            raise DataError(
                f"[{path}] line {row_lines[bad]}, column {column}: "
                f"{_show(column_values[bad])} is not a number. {fix}",
                path=path,
                line=row_lines[bad],
                column=column,
                value=column_values[bad],
            )
    return AtomicFile(
        path,
        columns,
        loaded,
        len(row_lines),
        np.asarray(row_lines, dtype=np.int64),
    )


# ------------------------------------------------------------------------------ a dataset
def load_and_unload(config: Any, source: str) -> tuple[set | None, set | None]:
    r"""RecBole's reading of ``load_col`` / ``unload_col`` for one file suffix: ``(load,
    unload)``, ``load`` ``None`` = every column, ``set()`` = the file is not read."""
    load_col = config["load_col"]
    if load_col is None:
        load = None
    elif source not in load_col:
        load = set()
    elif load_col[source] == "*":
        load = None
    else:
        load = set(load_col[source])
    unload_col = config["unload_col"]
    unload = set(unload_col[source]) if unload_col and source in unload_col else None
    return load, unload


def time_field_reason(config: Any, sequential: bool) -> str | None:
    r"""Why the run needs ``TIME_FIELD`` (``None``: it does not): a sequential dataset orders
    each user's history by it, ``eval_args.order: TO`` sorts the interactions by it."""
    reasons = []
    if sequential and not config["benchmark_filename"]:
        reasons.append("sequential models order each user's history by it")
    eval_args = config["eval_args"] or {}
    if isinstance(eval_args, dict) and eval_args.get("order") == "TO":
        reasons.append(
            "eval_args.order is TO (the split is in time order; set eval_args: {order: RO} "
            "for a random order with a non-sequential model)"
        )
    return " and ".join(reasons) or None


def missing_dataset_message(dataset: str, inter_path: str) -> str:
    r"""What to say when the dataset's ``.inter`` file ``inter_path`` is missing: where we
    looked, how to point ``--data_path`` at the files, how to prepare or download them. Raised
    by :func:`recbole_fair.quick_start.check_data_files` before a run and by
    :func:`validate_dataset_files` for a dataset created without it."""
    url = recbole_url(dataset)
    hint = (
        f" Or pass --download=True to fetch RecBole's own copy ({url}): not the papers' split, "
        "see docs/prepare_amazon.md."
        if url
        else ""
    )
    return (
        f"Dataset [{dataset}] not found: looked for {os.path.abspath(inter_path)}. Point "
        f"--data_path (or the environment variable {DATA_PATH_ENV}) at the folder that contains "
        f"a '{dataset}/' folder of RecBole atomic files ({dataset}.inter, {dataset}.item with "
        "item text), e.g. --data_path=../shared/datasets for the prepared Amazon benchmarks, or "
        "prepare them from the raw Amazon review downloads with python -m "
        "recbole_fair.data.prepare_amazon (docs/prepare_amazon.md)." + hint
    )


def validate_dataset_files(
    config: Any,
    dataset_path: str | None = None,
    token: str | None = None,
    sequential: bool = False,
    knowledge: bool = False,
) -> dict[str, AtomicFile]:
    r"""Check every atomic file RecBole will read for this config (see the module docstring).

    Args:
        config: a RecBole ``Config``.
        dataset_path: the folder of the files (default ``config['data_path']``).
        token: the dataset name (default ``config['dataset']``).
        sequential: the dataset is a ``SequentialDataset`` (needs ``TIME_FIELD``).
        knowledge: the dataset reads ``.kg`` and ``.link`` files too.

    Returns:
        dict: ``{file suffix: AtomicFile}`` of the files checked (``inter`` for the
        ``.inter`` file; ``inter.<name>`` for ``benchmark_filename`` files).

    Raises:
        DataError: a file problem (see :func:`validate_atomic_file`).
        UserInputError: ``TIME_FIELD`` unset although the run needs it.
    """
    logger = getLogger()
    start = time.perf_counter()
    dataset_path = dataset_path or config["data_path"]
    token = token or config["dataset"]
    options = dict(
        separator=config["field_separator"] or "\t",
        encoding=config["encoding"] or "utf-8",
        seq_separator=config["seq_separator"] if config["seq_separator"] is not None else " ",
    )
    uid, iid, time_field = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]
    inter_required = []
    if uid:
        inter_required.append(
            Requirement(uid, "token", "USER_ID_FIELD", "names the user of each interaction")
        )
    if iid:
        inter_required.append(
            Requirement(iid, "token", "ITEM_ID_FIELD", "names the item of each interaction")
        )
    reason = time_field_reason(config, sequential)
    if reason:
        if not time_field:
            raise UserInputError(
                f"TIME_FIELD is not set, but {reason}. Set TIME_FIELD to the name of the "
                f".inter column holding each interaction's time (e.g. TIME_FIELD: timestamp)."
            )
        inter_required.append(Requirement(time_field, "float", "TIME_FIELD", reason, True))

    checked: dict[str, AtomicFile] = {}
    benchmark = config["benchmark_filename"]
    if benchmark:
        inter_files = {
            f"inter.{b}": os.path.join(dataset_path, f"{token}.{b}.inter") for b in benchmark
        }
    else:
        inter_files = {"inter": os.path.join(dataset_path, f"{token}.inter")}
    load, unload = load_and_unload(config, "inter")
    for key, path in inter_files.items():
        if not os.path.isfile(path) and not benchmark:
            # a run checked this first (quick_start.check_data_files): the same message for a
            # dataset created without it
            raise DataError(missing_dataset_message(token, path), path=path)
        if not os.path.isfile(path):
            raise DataError(
                f"The interaction file [{path}] does not exist, but benchmark_filename "
                f"{list(benchmark)} names it. Put the split files "
                f"({', '.join(f'{token}.{b}.inter' for b in benchmark)}) in [{dataset_path}], "
                f"or fix benchmark_filename.",
                path=path,
            )
        checked[key] = validate_atomic_file(
            path, **options, load=load, unload=unload, requirements=inter_required,
            source="inter",
        )  # fmt: skip

    optional = [("user", [uid] if uid else []), ("item", [iid] if iid else [])]
    if knowledge:
        optional += [("kg", []), ("link", [])]
    optional += [(suffix, []) for suffix in config["additional_feat_suffix"] or []]
    for source, ids in optional:
        path = os.path.join(dataset_path, f"{token}.{source}")
        load, unload = load_and_unload(config, source)
        if load == set() or not os.path.isfile(path):
            continue
        key = "USER_ID_FIELD" if source == "user" else "ITEM_ID_FIELD"
        requirements = [
            Requirement(f, "token", key, f"identifies the rows of the .{source} file") for f in ids
        ]
        checked[source] = validate_atomic_file(
            path, **options, load=load, unload=unload, requirements=requirements,
            source=source,
        )  # fmt: skip

    for source, found in checked.items():
        load, _ = load_and_unload(config, source.split(".")[0])
        missing = sorted(f for f in load or () if f not in found.fields)
        if missing:
            logger.warning(
                f"load_col['{source.split('.')[0]}'] names {missing}, which [{found.path}] does "
                f"not have (its columns: {found.fields}); {'they are' if len(missing) > 1 else 'it is'} "
                f"not loaded."
            )
    logger.debug(
        f"checked the atomic files {[f.path for f in checked.values()]} in "
        f"{time.perf_counter() - start:.2f}s"
    )
    return checked


__all__ = [
    "FEATURE_TYPES",
    "NA_VALUES",
    "AtomicFile",
    "Requirement",
    "load_and_unload",
    "missing_dataset_message",
    "parse_header",
    "read_header",
    "split_quoted",
    "time_field_reason",
    "validate_atomic_file",
    "validate_dataset_files",
]
