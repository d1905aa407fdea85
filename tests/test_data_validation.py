r"""Tests of the data checks: recbole_fair.data.validate (the atomic files, before RecBole reads
them), recbole_fair.data.checked (interactions dropped by RecBole's filtering, counted with their
reason; too many dropped by data problems stop the run) and the item-text checks of the
semantic-ID datasets."""

from __future__ import annotations

import logging
import os
import time
from functools import partial

import pytest
import recbole
from conftest import stand_in_encoder

import recbole_fair  # noqa: F401  (compatibility shims)
from recbole_fair.config import Config
from recbole_fair.data import SemanticIDDataset
from recbole_fair.data.validate import (
    Requirement,
    split_quoted,
    validate_atomic_file,
    validate_dataset_files,
)
from recbole_fair.errors import DataError, UserInputError
from recbole_fair.utils import create_dataset

ML100K_PATH = os.path.join(os.path.dirname(recbole.__file__), "dataset_example")
INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float"
LOAD_COL = {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}


def write(root, name, inter_rows, item_rows=None, inter_header=INTER_HEADER, item_header=None):
    r"""``<root>/<name>/<name>.inter`` (and ``.item``) from rows of fields (joined by tabs)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = [inter_header] + ["\t".join(map(str, r)) for r in inter_rows]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    if item_rows is not None:
        lines = [item_header or "item_id:token\ttitle:token_seq"]
        lines += ["\t".join(map(str, r)) for r in item_rows]
        (folder / f"{name}.item").write_text("\n".join(lines) + "\n")
    return root


def walk_rows(n_users=300, per_user=12, n_items=600):
    r"""Each user's k-th interaction is item ``(u * per_user + k) % n_items``: every item occurs
    ``n_users * per_user / n_items`` times."""
    return [
        (f"u{u}", f"i{(u * per_user + k) % n_items}", k)
        for u in range(n_users)
        for k in range(per_user)
    ]


def config(root, name, model="SASRec", **extra):
    config_dict = {"data_path": str(root), "load_col": LOAD_COL, "show_progress": False}
    config_dict.update(extra)
    return Config(model=model, dataset=name, config_dict=config_dict)


@pytest.fixture
def fake_text_encoder(monkeypatch):
    monkeypatch.setattr(
        SemanticIDDataset, "encoder_fn", staticmethod(partial(stand_in_encoder, dim=16))
    )


def fair_config(root, name, **extra):
    small = {
        "n_codes": 4,
        "codebook_size": 16,
        "sid_opq_iterations": 3,
        "sid_cache_dir": str(root / "sid_cache"),
        "text_fields": ["title"],
        "MAX_ITEM_LIST_LENGTH": 5,
    }
    return config(root, name, model="FAIR", **{**small, **extra})


# ------------------------------------------------------------- 1. interactions dropped silently
@pytest.fixture
def missing_items(tmp_path):
    r"""600 items, every 4th without a .item row: 900 of the 3,600 interactions."""
    items = [(f"i{j}", f"Product {j} colour {j % 7}") for j in range(600) if j % 4]
    return write(tmp_path, "miss", walk_rows(), items)


def test_items_without_item_row_stop_the_run(missing_items):
    with pytest.raises(DataError) as info:
        create_dataset(config(missing_items, "miss"))
    message = str(info.value)
    inter = os.path.join(str(missing_items), "miss", "miss.inter")
    assert f"900 of the 3,600 interactions in [{inter}]" in message
    assert "the item has no row in [" in message and "miss.item]: 150 items" in message
    assert "'i0', 'i4'" in message and "max_dropped_interactions" in message
    assert isinstance(info.value, UserInputError) and isinstance(info.value, ValueError)


def test_drops_allowed_by_the_user_are_counted_and_logged(missing_items, caplog):
    with caplog.at_level(logging.INFO):
        dataset = create_dataset(config(missing_items, "miss", max_dropped_interactions=1.0))
    report = dataset.drop_report
    assert report["rows_read"] == 3600 and report["rows_kept"] == 2700 == len(dataset.inter_feat)
    assert [(d["reason"], d["count"], d["data_problem"]) for d in report["drops"]] == [
        ("no_item_row", 900, True)
    ]
    assert report["items_without_item_row"] == 150
    assert report["interactions_without_item_row"] == 900
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("900 of the 3,600 interactions" in m for m in warnings)


def test_every_filter_is_counted_with_its_reason(tmp_path, caplog):
    rows = walk_rows(n_users=40, per_user=12, n_items=60)
    rows += [("u_short", "i1", 0), ("u_short", "i2", 1)]  # 2 interactions: k-core drops them
    rows += [("", "i3", 5)]  # no user id
    rows += [("u1", "i12", 99)]  # u1 had i12 at time 0: a repeated pair (rm_dup_inter)
    items = [(f"i{j}", f"Product {j}") for j in range(60)]
    write(tmp_path, "mix", rows, items)
    cfg = config(
        tmp_path,
        "mix",
        user_inter_num_interval="[5,inf)",
        rm_dup_inter="first",
        max_dropped_interactions=0.05,
    )
    with caplog.at_level(logging.INFO):
        dataset = create_dataset(cfg)
    drops = {d["reason"]: (d["count"], d["data_problem"]) for d in dataset.drop_report["drops"]}
    assert drops == {
        "missing_id": (1, True),
        "duplicate": (1, False),
        "inter_num_interval": (2, False),
    }
    assert dataset.drop_report["rows_kept"] == 480 == len(rows) - 4
    info = [r.getMessage() for r in caplog.records if "read from" in r.getMessage()]
    assert "user_inter_num_interval: [5,inf)" in info[-1] and "lines 484" in info[-1]


def test_users_own_filters_never_trip_the_check(tmp_path):
    rows = walk_rows(n_users=40, per_user=12, n_items=60)
    rows += [(f"x{u}", f"i{u % 60}", 0) for u in range(200)]  # 200 one-interaction users
    write(tmp_path, "kcore", rows, [(f"i{j}", f"P {j}") for j in range(60)])
    dataset = create_dataset(config(tmp_path, "kcore", user_inter_num_interval="[5,inf)"))
    assert dataset.drop_report["data_problem_rows"] == 0
    assert dataset.drop_report["rows_kept"] == 480


def test_empty_ids_over_the_limit_stop_the_run(tmp_path):
    rows = walk_rows(n_users=20, per_user=10, n_items=50)
    rows += [("NA", "i1", 11), ("u2", "", 12), ("u3", "null", 13)]  # read as missing by pandas
    write(tmp_path, "na", rows, [(f"i{j}", f"P {j}") for j in range(50)])
    path = tmp_path / "na" / "na.inter"  # two blank lines: the line numbers still hold
    lines = path.read_text().split("\n")
    path.write_text("\n".join(lines[:10] + ["", ""] + lines[10:]))
    with pytest.raises(DataError, match=r"(?s)3 of the 203 interactions .* lines 204, 205, 206"):
        create_dataset(config(tmp_path, "na"))


def test_rows_with_missing_ids_are_the_rows_dropped(tmp_path):
    # RecBole 1.2.1 drops the item-id pass by position after the user-id pass dropped a row:
    # here it would drop line 102 (u10's first row) and keep line 101 (no item id)
    rows = walk_rows(n_users=20, per_user=10, n_items=50)
    rows[3] = ("", rows[3][1], rows[3][2])  # line 5
    rows[99] = (rows[99][0], "", rows[99][2])  # line 101
    write(tmp_path, "na2", rows, [(f"i{j}", f"P {j}") for j in range(50)])
    dataset = create_dataset(config(tmp_path, "na2", max_dropped_interactions=0.02))
    assert dataset.drop_report["drops"][0]["count"] == 2
    assert "lines 5, 101" in dataset.drop_report["drops"][0]["detail"]
    kept = {
        (u, i)
        for u, i in zip(
            dataset.id2token("user_id", dataset.inter_feat["user_id"].to_numpy()),
            dataset.id2token("item_id", dataset.inter_feat["item_id"].to_numpy()),
        )
    }
    expected = {(u, i) for u, i, _ in rows if u and i}
    assert kept == expected and len(expected) == 198


def test_a_saved_dataset_is_checked_against_the_loading_runs_limit(
    missing_items, monkeypatch, caplog
):
    """A dataset saved by a run that allowed its drops (save_dataset) is reused by a later run
    only within that run's max_dropped_interactions: the same error as a rebuild."""
    from recbole_fair.data import checked

    monkeypatch.setenv("RECBOLE_FAIR_KEY_DIR", str(missing_items / "keys"))
    saving = {"checkpoint_dir": str(missing_items / "saved"), "save_dataset": True}
    create_dataset(config(missing_items, "miss", max_dropped_interactions=1.0, **saving))
    assert (missing_items / "saved" / "miss-SequentialDataset.pth.sig").is_file()
    with pytest.raises(DataError) as rebuilt:  # no cache there: built from the files
        create_dataset(config(missing_items, "miss", checkpoint_dir=str(missing_items / "x")))

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the saved dataset was rebuilt instead of loaded")

    monkeypatch.setattr(checked.SequentialDataset, "__init__", no_rebuild)
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(DataError) as loaded:
        create_dataset(config(missing_items, "miss", checkpoint_dir=saving["checkpoint_dir"]))
    assert "Load filtered dataset from" in caplog.text
    assert str(loaded.value) == str(rebuilt.value) and "900 of the 3,600" in str(loaded.value)
    dataset = create_dataset(config(missing_items, "miss", max_dropped_interactions=0.3, **saving))
    assert dataset.drop_report["max_dropped_interactions"] == 0.3
    assert dataset.drop_report["rows_kept"] == 2700


def test_item_file_without_any_item_id_is_a_data_error(tmp_path):
    # RecBole drops every row and then stops with "Some feat is empty" (a bare ValueError)
    write(tmp_path, "noid", walk_rows(20, 6, 30), [("", "a"), ("NA", "b")])
    with pytest.raises(DataError, match=r"No row of \[.*noid.item\] has an id in item_id"):
        create_dataset(config(tmp_path, "noid", max_dropped_interactions=1.0))


def test_item_file_emptied_by_the_item_filter_is_a_data_error(tmp_path):
    rows = walk_rows(20, 6, 30) + [("u0", "rare", 99)]
    write(tmp_path, "kc", rows, [("rare", "only one interaction")])
    cfg = config(
        tmp_path, "kc", filter_inter_by_user_or_item=False, item_inter_num_interval="[2,inf)"
    )
    with pytest.raises(DataError, match=r"kc.item\] is left .*item_inter_num_interval"):
        create_dataset(cfg)


def test_bad_max_dropped_interactions_is_a_user_error(missing_items):
    with pytest.raises(UserInputError, match="max_dropped_interactions.*share"):
        create_dataset(config(missing_items, "miss", max_dropped_interactions=5))


def test_shipped_ml100k_default_setup_drops_nothing():
    cfg = Config(model="SASRec", dataset="ml-100k", config_dict={"data_path": ML100K_PATH})
    dataset = create_dataset(cfg)
    assert type(dataset).__module__ == "recbole_fair.data.checked"
    assert dataset.drop_report["rows_read"] == 100000 == dataset.drop_report["rows_kept"]
    assert dataset.drop_report["drops"] == []


@pytest.mark.parametrize("name", ["Amazon_Beauty", "Amazon_Scientific"])
def test_shipped_amazon_files_pass_the_checks_quickly(shared_datasets, name):
    cfg = Config(model="FAIR", dataset=name, config_dict={"data_path": str(shared_datasets)})
    start = time.perf_counter()
    files = validate_dataset_files(cfg, sequential=True)
    assert time.perf_counter() - start < 2.0  # measured 0.4 s for Beauty's 198,502 rows
    rows = sum(1 for _ in open(shared_datasets / name / f"{name}.inter")) - 1
    assert files["inter"].n_rows == rows and set(files) == {"inter", "item"}


def test_shipped_beauty_default_setup_drops_nothing(shared_datasets):
    cfg = Config(
        model="SASRec", dataset="Amazon_Beauty", config_dict={"data_path": str(shared_datasets)}
    )
    report = create_dataset(cfg).drop_report
    assert report["rows_read"] == report["rows_kept"] == 198502 and report["drops"] == []


# --------------------------------------------------------------------------- 2. items without text
def test_sid_report_counts_items_without_item_row(missing_items, fake_text_encoder):
    cfg = fair_config(missing_items, "miss", max_dropped_interactions=0.3)
    dataset = create_dataset(cfg)
    dataset.build()
    report = dataset.semantic_id_report
    assert report["items_without_item_row"] == 150
    assert report["interactions_without_item_row"] == 900
    assert report["items_without_text"] == 0  # the 450 kept items all have a title


def test_no_item_text_at_all_is_an_error(tmp_path, fake_text_encoder):
    items = [(f"i{j}", "") for j in range(60)]
    write(tmp_path, "notext", walk_rows(40, 12, 60), items)
    with pytest.raises(DataError) as info:
        create_dataset(fair_config(tmp_path, "notext"))
    message = str(info.value)
    assert "None of the 60 items has any text" in message and "['title']" in message
    assert os.path.join(str(tmp_path), "notext", "notext.item") in message


def test_no_item_text_is_only_a_warning_for_random_ids(tmp_path, fake_text_encoder):
    write(tmp_path, "notext", walk_rows(40, 12, 60), [(f"i{j}", "") for j in range(60)])
    dataset = create_dataset(fair_config(tmp_path, "notext", sid_method="random"))
    assert dataset.items_without_text == 60


def test_text_field_missing_from_the_item_file_is_an_error(tmp_path, fake_text_encoder):
    write(tmp_path, "nodesc", walk_rows(40, 12, 60), [(f"i{j}", f"P {j}") for j in range(60)])
    cfg = fair_config(
        tmp_path,
        "nodesc",
        text_fields=["title", "description"],
        load_col={**LOAD_COL, "item": ["item_id", "title", "description"]},
    )
    with pytest.raises(DataError) as info:
        create_dataset(cfg)
    message = str(info.value)
    path = os.path.join(str(tmp_path), "nodesc", "nodesc.item")
    assert f"names ['description'], but the item file [{path}] has no such column" in message
    assert "(its columns: ['item_id', 'title'])" in message


def test_default_text_fields_are_candidates(tmp_path, fake_text_encoder):
    # the default text_fields (title, price, brand, ...) use those the file has, no error
    write(tmp_path, "dflt", walk_rows(40, 12, 60), [(f"i{j}", f"P {j}") for j in range(60)])
    default = ["title", "price", "brand", "feature", "categories", "description"]
    cfg = fair_config(tmp_path, "dflt", text_fields=default)
    dataset = create_dataset(cfg)
    assert dataset.text_fields == ["title"]


# ------------------------------------------------------------------- 3. errors naming file and fix
def test_missing_timestamp_column(tmp_path):
    write(tmp_path, "notime", [(u, i) for u, i, _ in walk_rows(20, 6, 30)], None,
          inter_header="user_id:token\titem_id:token")  # fmt: skip
    with pytest.raises(DataError) as info:
        create_dataset(config(tmp_path, "notime", load_col={"inter": ["user_id", "item_id"]}))
    message = str(info.value)
    assert os.path.join(str(tmp_path), "notime", "notime.inter") in message
    assert "no column 'timestamp' (TIME_FIELD)" in message
    assert "sequential models order each user's history by it" in message
    assert "add a column 'timestamp:float'" in message


def test_non_numeric_timestamp_names_line_and_value(tmp_path):
    rows = walk_rows(20, 6, 30)
    rows[7] = (rows[7][0], rows[7][1], "2014-01-07")
    write(tmp_path, "badtime", rows, None)
    with pytest.raises(DataError) as info:
        create_dataset(config(tmp_path, "badtime", load_col={"inter": LOAD_COL["inter"]}))
    err = info.value
    assert err.line == 9 and err.column == "timestamp:float" and err.value == "2014-01-07"
    assert "badtime.inter] line 9, column timestamp:float: '2014-01-07' is not a number" in str(err)
    assert "Unix time" in str(err)


def test_missing_interaction_file_has_one_message(tmp_path):
    """A dataset created without run_recbole_fair's check_data_files (which runs first) gets
    the same message for a missing .inter file."""
    from recbole_fair.quick_start import check_data_files

    (tmp_path / "noint").mkdir()
    (tmp_path / "noint" / "noint.item").write_text("item_id:token\ttitle:token_seq\ni1\ta\n")
    cfg = config(tmp_path, "noint")
    with pytest.raises(FileNotFoundError) as before_run:
        check_data_files(cfg)
    with pytest.raises(DataError) as direct:
        create_dataset(cfg)
    inter = os.path.join(str(tmp_path), "noint", "noint.inter")
    assert str(direct.value) == str(before_run.value) and direct.value.path == inter
    assert str(direct.value).startswith(f"Dataset [noint] not found: looked for {inter}.")
    assert "--data_path" in str(direct.value)
    cfg = config(tmp_path, "noint", benchmark_filename=["train", "valid", "test"])
    with pytest.raises(DataError, match=r"noint.train.inter\] does not exist, but "):
        validate_dataset_files(cfg)


def test_uid_instead_of_user_id(tmp_path):
    write(tmp_path, "uid", walk_rows(20, 6, 30), None,
          inter_header="uid:token\titem_id:token\ttimestamp:float")  # fmt: skip
    with pytest.raises(DataError) as info:
        create_dataset(config(tmp_path, "uid", load_col=None))
    message = str(info.value)
    assert "uid.inter] has no column 'user_id' (USER_ID_FIELD)" in message
    assert "rename the column header 'uid:token' to 'user_id:token'" in message
    assert "or set USER_ID_FIELD: uid" in message


def test_recbole_general_model_is_checked_too(tmp_path):
    # BPR goes through RecBole's own Dataset class: eval_args.order TO (our default) needs time
    write(tmp_path, "bpr", [(u, i) for u, i, _ in walk_rows(20, 6, 30)], None,
          inter_header="user_id:token\titem_id:token")  # fmt: skip
    with pytest.raises(DataError, match=r"eval_args.order is TO"):
        create_dataset(config(tmp_path, "bpr", model="BPR", load_col=None))
    random_order = {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "mode": "full"}
    cfg = config(tmp_path, "bpr", model="BPR", load_col=None, eval_args=random_order)
    assert create_dataset(cfg).drop_report["rows_kept"] == 120


def test_required_column_not_loaded(tmp_path):
    write(tmp_path, "nl", walk_rows(20, 6, 30), None)
    with pytest.raises(DataError, match=r"load_col / unload_col do not load it"):
        create_dataset(config(tmp_path, "nl", load_col={"inter": ["user_id", "item_id"]}))


def test_time_declared_as_token(tmp_path):
    write(tmp_path, "tok", walk_rows(20, 6, 30), None,
          inter_header="user_id:token\titem_id:token\ttimestamp:token")  # fmt: skip
    with pytest.raises(DataError, match=r"Change the header to 'timestamp:float'"):
        create_dataset(config(tmp_path, "tok", load_col=None))


# ----------------------------------------------------------------- validate_atomic_file, one file
def check(tmp_path, content: bytes | str, **kwargs):
    path = tmp_path / "f.inter"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return validate_atomic_file(str(path), **kwargs)


@pytest.mark.parametrize(
    "content, line, match",
    [
        (b"", 1, "is empty"),
        ("user_id,item_id,timestamp\nu1,i1,1\n", 1, "look separated by the comma"),
        ("user_id:token item_id:token\nu1 i1\n", 1, "look separated by the space"),
        ("user_id\titem_id:token\nu1\ti1\n", 1, "write it as 'user_id:token'"),
        ("user_id:int\titem_id:token\nu1\ti1\n", 1, "Use 'user_id:float'"),
        ("user_id:token\tuser_id:token\nu1\ti1\n", 1, "appears twice"),
        ("user_id:token\titem_id:token\t\nu1\ti1\n", 1, "column 3 is empty"),
        ('"user_id:token"\titem_id:token\nu1\ti1\n', 1, "is quoted"),
        ("user_id:token\titem_id:token\n", 1, "has a header but no rows"),
        (b"\xef\xbb\xbfuser_id:token\titem_id:token\nu1\ti1\n", 1, "byte-order mark"),
        (b"user_id:token\titem_id:token\nu1\ti1\nu\xe9\ti2\n", 3, "not valid utf-8"),
        ("user_id:token\titem_id:token\nu1\ti1\t\nu2\ti2\n", 2, "shift every column"),
        ("user_id:token\titem_id:token\nu1\ti1\nu2\ti2\tx\n", 3, "misreads rows with extra fields"),
        ('user_id:token\titem_id:token\nu1\t"i1\nu2\ti2\n', 2, "not closed on the same line"),
        ('user_id:token\titem_id:token\nu1\t"i1" x\n', 2, "followed by other characters"),
        ("user_id:token\tr:float\nu1\t1.5\nu2\t1,5\n", 3, "'1,5' is not a number"),
        ("user_id:token\tv:float_seq\nu1\t1 2\nu2\t1 x\n", 3, "'1 x' is not a number"),
    ],
)
def test_file_problems_name_the_line(tmp_path, content, line, match):
    with pytest.raises(DataError, match=match) as info:
        check(tmp_path, content)
    assert info.value.line == line and info.value.path == str(tmp_path / "f.inter")


def test_what_pandas_reads_is_accepted(tmp_path):
    content = (
        "user_id:token\titem_id:token\tr:float\ttitle:token_seq\r\n"
        'u1\ti1\t 1.5\t"quoted, with a ""quote"" and a \ttab"\r\n'
        "\r\n"  # blank line: skipped by pandas
        'u2\ti2\tNA\ta 12" ruler\r\n'  # missing value; a quote inside a value is literal
        "u3\t\t1e3\t\r\n"  # an empty id is counted by the drop accounting, not an error here
        "u4\ti4\n"  # a short row: the rest is missing
    )
    found = check(tmp_path, content)
    assert found.n_rows == 4 and found.fields == ["user_id", "item_id", "r", "title"]


def test_required_non_empty_value(tmp_path):
    req = [Requirement("t", "float", "TIME_FIELD", "orders the history", non_empty=True)]
    with pytest.raises(DataError, match=r"line 3, column t:float: the value is missing"):
        check(tmp_path, "u:token\tt:float\nu1\t1\nu2\t\n", requirements=req)


def test_unknown_encoding_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="not a text encoding"):
        check(tmp_path, "u:token\nu1\n", encoding="no-such-codec")


def test_split_quoted_matches_csv():
    assert split_quoted('a\t"b\tc"\t"d""e"\t', "\t") == ["a", "b\tc", 'd"e', ""]
    assert split_quoted('"x"', "\t") == ["x"]
