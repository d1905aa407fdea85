r"""Property-based tests of the atomic-file checks (recbole_fair.data.validate) on malformed
files: random headers, missing columns, wrong types, garbage bytes, empty files, ragged rows,
other separators, quotes, other line endings and encodings.

1. The checks never fail with anything but a :class:`~recbole_fair.errors.UserInputError`
   (``DataError`` for the files).
2. A file the checks accept is one RecBole's own reader (``Dataset._load_feat``, i.e.
   ``pandas.read_csv``) reads without an error, with the number of rows the checks counted.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from recbole.data.dataset import Dataset  # noqa: E402
from recbole.utils import FeatureSource  # noqa: E402

import recbole_fair  # noqa: E402, F401  (compatibility shims)
from recbole_fair.data.validate import (  # noqa: E402
    Requirement,
    read_header,
    validate_atomic_file,
)
from recbole_fair.errors import UserInputError  # noqa: E402

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,  # the same examples on every run: a failure is reproducible
)

GOOD_NAMES = ["user_id", "item_id", "timestamp", "rating", "title", "tags"]
BAD_NAMES = ["", "uid", "a b", "x:y", '"q"', "é", " user_id", "user_id "]
GOOD_TYPES = ["token", "token_seq", "float", "float_seq"]
BAD_TYPES = ["", "int", "string", "float ", "TOKEN", "token:token"]
CELLS = st.one_of(
    st.sampled_from(
        [
            "",
            "NA",
            "null",
            "None",
            "1",
            "-2.5",
            "1e3",
            "nan",
            "inf",
            "1_0",
            " 1",
            "1,5",
            "abc",
            "a b",
            "1 2 3",
            "1 x",
            '"',
            '"x"',
            '"x',
            'x"y',
            '""',
            '"a""b"',
            '"x" y',
            "é",
            "\x00",
            "١",
            "  ",
            "\\N",
            "#",
        ]
    ),  # fmt: skip
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6),
)
NEWLINES = st.sampled_from(["\n", "\r\n", "\r"])
REQUIREMENTS = [
    Requirement("user_id", "token", "USER_ID_FIELD", "names the user"),
    Requirement("item_id", "token", "ITEM_ID_FIELD", "names the item"),
    Requirement("timestamp", "float", "TIME_FIELD", "orders the history", non_empty=True),
]


@st.composite
def headers(draw, valid: bool):
    n = draw(st.integers(1, 4))
    if valid:
        names = draw(st.lists(st.sampled_from(GOOD_NAMES), min_size=n, max_size=n, unique=True))
        return [f"{name}:{draw(st.sampled_from(GOOD_TYPES))}" for name in names]
    cells = []
    for _ in range(n):
        name = draw(st.sampled_from(GOOD_NAMES + BAD_NAMES))
        ftype = draw(st.sampled_from(GOOD_TYPES + BAD_TYPES))
        cells.append(draw(st.sampled_from([f"{name}:{ftype}", name, f"{name}:{ftype}:"])))
    return cells


NUMBERS = st.one_of(
    st.sampled_from(["", "NA", "nan", "inf", "-0", "1e3", "1_0", " 1", "٣", "1,5", "x"]),
    st.floats(allow_nan=False).map(repr),
    st.integers(-(10**20), 10**20).map(str),
)


@st.composite
def rows_for(draw, header: list[str]) -> list[str]:
    r"""A row of mostly fitting cells: numbers for float columns, anything for tokens; now
    and then a cell short or one too many."""
    cells = []
    for column in header:
        ftype = column.rpartition(":")[2]
        if ftype == "float":
            cells.append(draw(NUMBERS))
        elif ftype == "float_seq":
            cells.append(" ".join(draw(st.lists(NUMBERS, max_size=3))))
        else:
            cells.append(draw(CELLS))
    shape = draw(st.sampled_from(["fit"] * 6 + ["short", "long"]))
    if shape == "short":
        return cells[:-1]
    return cells + [draw(CELLS)] if shape == "long" else cells


@st.composite
def atomic_files(draw, valid_header: bool = False) -> bytes:
    r"""The bytes of an atomic file: a header, rows, a separator, line endings, an encoding
    and an optional byte-order mark. ``valid_header``: a RecBole header, tab-separated UTF-8,
    rows of mostly fitting cells (so that many files pass the checks)."""
    header = draw(headers(valid_header))
    newline = draw(NEWLINES)
    if valid_header:
        rows = draw(st.lists(rows_for(header), min_size=1, max_size=8))
        lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
        return (newline.join(lines) + draw(st.sampled_from(["", newline]))).encode("utf-8")
    separator = draw(st.sampled_from(["\t", "\t", ",", " ", ";"]))
    rows = draw(st.lists(st.lists(CELLS, max_size=6), max_size=8))
    lines = [separator.join(header)] + [separator.join(row) for row in rows]
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]))
    data = text.encode(encoding, errors="replace")
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + data


class _Reader(Dataset):
    r"""RecBole's ``Dataset`` with nothing loaded, to call its file reader ``_load_feat``."""

    def __init__(self):
        config = {
            "load_col": None,
            "unload_col": None,
            "field_separator": "\t",
            "encoding": "utf-8",
            "seq_separator": " ",
            "seq_len": None,
        }
        self.config = config
        self.logger = logging.getLogger()
        self.field2source, self.field2type, self.field2seqlen = {}, {}, {}
        self.field2bucketnum = {}


def _write(data: bytes, folder: str) -> str:
    path = os.path.join(folder, "fuzz.inter")
    with open(path, "wb") as f:
        f.write(data)
    return path


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=300), atomic_files(), atomic_files(valid_header=True)),
    required=st.booleans(),
)
def test_checks_only_raise_user_input_errors(data, required):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(data, folder)
        try:
            read_header(path)
        except UserInputError:
            pass
        try:
            found = validate_atomic_file(path, requirements=REQUIREMENTS if required else ())
        except UserInputError as err:
            assert str(err) and os.path.basename(path) in str(err)
            return
        assert found.n_rows >= 1 and found.fields


@FUZZ
@given(data=atomic_files(valid_header=True))
def test_accepted_files_are_read_by_recbole_as_counted(data):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(data, folder)
        try:
            found = validate_atomic_file(path)
        except UserInputError:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = _Reader()._load_feat(path, FeatureSource.INTERACTION)
        assert len(frame) == found.n_rows
        assert list(frame.columns) == found.fields
