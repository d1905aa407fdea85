r"""Property-based tests of the atomic-file checks (recbole_fair.data.validate) on malformed
files: random headers, missing columns, wrong types, garbage bytes, empty files, ragged rows,
other separators, quotes, other line endings and encodings.

1. The checks never fail with anything but a :class:`~recbole_fair.errors.UserInputError`
   (``DataError`` for the files), for ``.inter`` and ``.item`` files.
2. A file the checks accept is one RecBole's own reader (``Dataset._load_feat``, i.e.
   ``pandas.read_csv``) reads without an error, with the number of rows the checks counted.
3. An ``.item`` file the checks accept goes through a dataset and the item-text reading
   (:func:`~recbole_fair.tokenizer.text.resolve_text_fields`,
   :func:`~recbole_fair.tokenizer.text.build_item_texts`) with nothing but a
   ``UserInputError``, and each ``token`` / ``token_seq`` field's text is the file's.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from recbole.data.dataset import Dataset
from recbole.utils import FeatureSource

import recbole_fair  # noqa: F401  (compatibility shims)
from recbole_fair.data.validate import (
    NA_VALUES,
    Requirement,
    read_header,
    split_quoted,
    validate_atomic_file,
)
from recbole_fair.errors import UserInputError

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


# ------------------------------------------------------------------------------- .item files
ITEM_REQUIREMENTS = [
    Requirement("item_id", "token", "ITEM_ID_FIELD", "identifies the rows of the .item file")
]
TEXT_NAMES = ["title", "brand", "categories", "price", "description"]


CLEAN_NUMBERS = st.one_of(
    st.sampled_from(["", "NA", "nan", "inf", "-0", "1e3", "1_0", " 1", "7"]),
    st.floats(allow_nan=False).map(repr),
)
IDS = st.one_of(st.sampled_from(["a", "b", "1", "x", "a b", " a", '"b"', "é"]), CELLS)


@st.composite
def item_files(draw, clean: bool = False) -> tuple[list[str], bytes]:
    r"""``(header, bytes)`` of a tab-separated UTF-8 ``.item`` file: ``item_id:token`` (now and
    then missing or of another type) at any position among up to three text columns of any
    type, rows of mostly fitting cells (ids missing, repeated, quoted, shared with the
    ``.inter`` file). ``clean``: an ``item_id:token`` column, numbers in the float columns and
    no row longer than the header, so that most files pass the checks."""
    names = draw(st.lists(st.sampled_from(TEXT_NAMES), min_size=clean, max_size=3, unique=True))
    header = [f"{name}:{draw(st.sampled_from(GOOD_TYPES))}" for name in names]
    id_type = "token" if clean else draw(st.sampled_from(["token"] * 8 + ["float", None]))
    if id_type is not None:
        header.insert(draw(st.integers(0, len(header))), f"item_id:{id_type}")
    if not header:
        header = ["title:token_seq"]
    rows = []
    for _ in range(draw(st.integers(1, 8))):
        if not clean:
            rows.append(draw(rows_for(header)))
            continue
        row = []
        for column in header:
            name, ftype = column.split(":")
            if name == "item_id":
                row.append(draw(IDS))
            elif ftype == "float":
                row.append(draw(CLEAN_NUMBERS))
            elif ftype == "float_seq":
                row.append(" ".join(draw(st.lists(CLEAN_NUMBERS, max_size=3))))
            else:
                row.append(draw(CELLS))
        rows.append(row[: draw(st.integers(len(row) - 1, len(row)))])
    newline = draw(NEWLINES)
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    return header, text.encode("utf-8")


@FUZZ
@given(data=st.one_of(item_files().map(lambda f: f[1]), atomic_files()))
def test_item_file_checks_only_raise_user_input_errors(data):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzz.item")
        with open(path, "wb") as f:
            f.write(data)
        try:
            found = validate_atomic_file(path, requirements=ITEM_REQUIREMENTS, source="item")
        except UserInputError as err:
            assert str(err) and "fuzz.item" in str(err)
            return
        assert ("item_id", "token") in found.columns and "item_id" in found.loaded


def _file_rows(data: bytes) -> tuple[list[str], list[list[str | None]]]:
    r"""Header names and the cells of each row of an accepted tab-separated UTF-8 file, as
    ``pandas.read_csv`` reads them (quotes resolved, short rows padded with None)."""
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    names = [cell.split(":")[0] for cell in lines[0].split("\t")]
    rows = []
    for line in lines[1:]:
        cells = line.split("\t")
        if '"' in line and any(c.startswith('"') for c in cells):
            cells = split_quoted(line, "\t")
        if len(cells) == 1 and not cells[0].strip():
            continue  # a blank line
        rows.append(cells + [None] * (len(names) - len(cells)))
    return names, rows


def _expected_token_texts(data: bytes, field: str, ftype: str) -> dict[str, str]:
    r"""``{item id: text}`` of a ``token`` / ``token_seq`` field, from the file: RecBole drops
    rows without an id, keeps the first row of a repeated id, reads the missing-value strings
    as empty and splits a ``token_seq`` on spaces (runs of them count as one). Its vocabularies
    are numpy string arrays, which drop a token's trailing NUL characters."""
    names, rows = _file_rows(data)
    id_at, at = names.index("item_id"), names.index(field)
    texts: dict[str, str] = {}
    for cells in rows:
        item, value = cells[id_at], cells[at]
        if item is None or item in NA_VALUES or item.rstrip("\0") in texts:
            continue
        if value is None or value in NA_VALUES:
            value = ""
        pieces = [p for p in value.split(" ") if p] if ftype == "token_seq" else [value]
        texts[item.rstrip("\0")] = " ".join(p.rstrip("\0") for p in pieces)
    return texts


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    r"""One Config (about 2 s to build) for every example: a SASRec dataset ``fz`` whose
    ``.item`` file each example writes, nothing filtered away, no cache."""
    from recbole_fair.config import Config

    root = tmp_path_factory.mktemp("fuzz")
    (root / "fz").mkdir()
    inter = ["user_id:token\titem_id:token\ttimestamp:float"]
    inter += [f"u{u}\t{item}\t{t}" for u in range(3) for t, item in enumerate("ab1xy")]
    (root / "fz" / "fz.inter").write_text("\n".join(inter) + "\n")
    config = Config(
        model="SASRec",
        dataset="fz",
        config_dict={
            "data_path": str(root),
            "checkpoint_dir": str(root / "saved"),
            "load_col": None,
            "filter_inter_by_user_or_item": False,
            "user_inter_num_interval": None,
            "item_inter_num_interval": None,
            "show_progress": False,
        },
    )
    return config, str(root / "fz" / "fz.item")


@FUZZ
@given(item_file=st.one_of(item_files(clean=True), item_files()), choice=st.data())
def test_accepted_item_files_give_item_texts_or_a_user_input_error(round_trip, item_file, choice):
    from recbole_fair.tokenizer.text import build_item_texts, field_texts, resolve_text_fields
    from recbole_fair.utils import create_dataset

    header, data = item_file
    config, path = round_trip
    with open(path, "wb") as f:
        f.write(data)
    try:
        validate_atomic_file(path, requirements=ITEM_REQUIREMENTS, source="item")
    except UserInputError:
        event("refused by the checks")
        return
    types = dict(column.split(":") for column in header)
    text_columns = [name for name in types if name != "item_id"]
    some = st.lists(st.sampled_from(text_columns), min_size=1, unique=True)
    wanted = choice.draw(some) if text_columns else []
    if not wanted or choice.draw(st.sampled_from([False] * 5 + [True])):  # not in the file
        wanted.append(choice.draw(st.sampled_from([n for n in TEXT_NAMES if n not in wanted])))
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # every row without an id: the file is refused
                dataset = create_dataset(config)
            except UserInputError as err:
                assert "fz.item" in str(err)
                event("refused by the dataset")
                return
            try:
                fields = resolve_text_fields(dataset, wanted)
                texts, n_empty = build_item_texts(dataset, wanted)
            except UserInputError as err:
                assert "fz.item" in str(err) and set(wanted) - set(text_columns)
                event("a text field not in the file")
                return
    finally:
        logger.setLevel(level)
    event("item texts built")
    assert fields == [f for f in wanted if f in text_columns]
    assert len(texts) == dataset.item_num and texts[0] == ""
    assert all(isinstance(t, str) for t in texts)
    assert n_empty == sum(1 for t in texts[1:] if not t.strip())
    tokens = [str(t) for t in dataset.field2id_token["item_id"]]
    for field in fields:
        if types[field] not in ("token", "token_seq"):
            continue
        expected = _expected_token_texts(data, field, types[field])
        got = field_texts(dataset, field)
        assert {tokens[i]: got[i] for i in range(1, len(tokens))} == {
            token: expected.get(token, "") for token in tokens[1:]
        }, field
