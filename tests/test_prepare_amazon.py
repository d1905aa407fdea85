"""Raw Amazon review downloads (2014 / 2018, .json / .json.gz) -> RecBole atomic files."""

import gzip
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbole_fair.data import prepare_amazon as pa
from recbole_fair.data.amazon import files, text

REPO_ROOT = Path(__file__).resolve().parents[1]
DAY = 86400
T0 = 1388534400  # 2014-01-01 00:00 UTC
I1, I2, I3, I4, I5, X, Z = (f"B0000000{k}" for k in "1234567")

# user -> [(item, day)] in chronological order (ties: the order written here). Each user's block is
# written to the file in REVERSED order, so the file is anti-chronological per user.
SEQS = {
    "U01": [(I3, 1), (I1, 2), (I5, 3), (I2, 4), (I4, 5), (I1, 9)],  # (I1, 9): later duplicate
    "U02": [(I1, 1), (I2, 2), (I3, 3), (I4, 3), (I5, 4)],  # I3/I4 tie: I4 comes first in the file
    "U03": [(I5, 1), (I4, 2), (I3, 3), (I2, 4), (I1, 5)],  # (I5, 1) only has reviewTime
    "U04": [(I2, 1), (I1, 2), (I3, 3), (I4, 4), (I5, 5)],  # (I2, 1) has no rating
    "U05": [(I1, 1), (I2, 2), (I3, 3), (I4, 4), (I5, 5)],
    "U06": [(I1, 1), (I2, 2), (I3, 3), (I4, 4), (X, 5)],  # 5, then 4 once X goes (round 3)
    "U07": [(X, 1), (I1, 2), (I2, 3), (I3, 4)],  # 4: removed in round 1, so X has 4 (round 2)
    "U08": [(I1, 1), (I2, 2), (I3, 3), (I4, 4), (I5, 5), (X, 6)],
    "U09": [(I1, 1), (I2, 2), (I3, 3), (I4, 4), (I5, 5), (X, 6)],
    "U10": [(I1, 1), (I2, 2), (I3, 3), (I4, 4), (I5, 5), (X, 6)],
    "U11": [(I1, 1), (I2, 2), (I3, 3), (I3, 4), (I4, 5)],  # 5 lines, 4 distinct items
}
EXPECTED_SEQS = {
    "U01": [I3, I1, I5, I2, I4],
    "U02": [I1, I2, I4, I3, I5],
    "U03": [I5, I4, I3, I2, I1],
    "U04": [I2, I1, I3, I4, I5],
    "U05": [I1, I2, I3, I4, I5],
    "U08": [I1, I2, I3, I4, I5],
    "U09": [I1, I2, I3, I4, I5],
    "U10": [I1, I2, I3, I4, I5],
}
NOISE = [
    "{this is not json",
    "[1, 2, 3]",
    "",
    "   ",
    json.dumps({"asin": I1, "overall": 5.0, "unixReviewTime": T0}),  # no reviewerID
    json.dumps({"reviewerID": "U01", "overall": 5.0, "unixReviewTime": T0}),  # no asin
    json.dumps({"reviewerID": "U05", "asin": I1, "unixReviewTime": "abc"}),  # no usable time
]


def _review_lines(fmt):
    lines = list(NOISE[:4])
    for user, seq in SEQS.items():
        for item, day in reversed(seq):
            rec = {
                "reviewerID": user,
                "asin": item,
                "overall": 4.0,
                "unixReviewTime": T0 + day * DAY,
            }
            rec["reviewTime"] = f"01 {1 + day}, 2014"
            if fmt == "2018":
                rec["verified"] = True
            if (user, item) == ("U03", I5):
                del rec["unixReviewTime"]
            if (user, item) == ("U04", I2):
                del rec["overall"]
            lines.append(json.dumps(rec))
    lines += NOISE[4:]
    return lines


def _meta_lines(fmt):
    title1 = '"Quoted" Lipstick\tRed'
    desc2 = "<p>Great <b>stuff</b></p>\n\nreally"
    if fmt == "2014":
        rows = [
            {"asin": I1, "title": title1, "brand": "Acme", "price": 5.5, "description": "Nice &amp; red",
             "categories": [["Beauty", "Makeup", "Lips"], ["Beauty", "Makeup", "Lips", "Lipstick"]]},
            {"asin": I1, "title": "Duplicate row"},
            {"asin": I2, "title": "Face Cream", "price": 12.99, "description": desc2,
             "categories": [["Beauty", "Skin Care", "Face"]]},
            {"asin": I3, "title": "Shampoo", "brand": "  Acme \n Corp ",
             "categories": [["Beauty", "Hair Care"], ["Health & Personal Care", "Hair"]]},
            {"asin": X, "title": "Filtered out"},
            {"asin": Z, "title": "Never reviewed"},
            {"title": "No asin"},
        ]  # fmt: skip
        lines = [repr(r) for r in rows]  # Python dict literals, as the 2014 meta files
        # A strict-JSON line (``true``) in a 2014 file: read by the JSON fallback.
        lines.insert(
            4,
            json.dumps({"asin": I4, "title": "Nail Polish", "categories": [["Beauty"]], "x": True}),
        )
    else:
        rows = [
            {"asin": I1, "title": title1, "brand": "Acme", "price": "$5.50", "description": ["Nice &amp; red"],
             "category": ["Beauty", "Makeup", "Lips", "Lipstick"]},
            {"asin": I1, "title": "Duplicate row"},
            {"asin": I2, "title": "Face Cream", "price": "$12.99", "description": ["<p>Great <b>stuff</b></p>", "\n\nreally"],
             "category": ["Beauty", "Skin Care", "Face"]},
            {"asin": I3, "title": "Shampoo", "brand": "  Acme \n Corp ", "price": "$1.00 - $2.00",
             "category": ["Beauty", "Hair Care"]},
            {"asin": I4, "title": "Nail Polish", "category": ["Beauty"], "price": ""},
            {"asin": X, "title": "Filtered out"},
            {"asin": Z, "title": "Never reviewed"},
            {"title": "No asin"},
        ]  # fmt: skip
        lines = [json.dumps(r) for r in rows]
    # A truncated line for a kept item (I5: counted as malformed, I5 gets an empty row), a truncated
    # line for an item not kept (not parsed at all: counted with the rows for other items), blank.
    lines += [f"{{'asin': '{I5}', 'title': ", "{'asin': 'B99', 'title': ", ""]
    return lines


def _write(path: Path, lines, gz: bool) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _raw_files(tmp_path: Path, fmt: str, gz: bool):
    ext = ".json.gz" if gz else ".json"
    stem = "reviews_Beauty_5" if fmt == "2014" else "Beauty_5"
    reviews = _write(tmp_path / f"{stem}{ext}", _review_lines(fmt), gz)
    meta = _write(tmp_path / f"meta_Beauty{ext}", _meta_lines(fmt), gz)
    return reviews, meta


def _read_tsv(path: Path):
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:-1]]


EXPECTED_ITEMS = {
    "2014": {
        I1: ['\u201cQuoted" Lipstick Red', "Acme", "Makeup, Lips, Lipstick", "Nice & red", "5.5"],
        I2: ["Face Cream", "", "Skin Care, Face", "Great stuff really", "12.99"],
        I3: ["Shampoo", "Acme Corp", "Hair Care, Health & Personal Care, Hair", "", ""],
        I4: ["Nail Polish", "", "", "", ""],
        I5: ["", "", "", "", ""],
    },
    "2018": {
        I1: ['\u201cQuoted" Lipstick Red', "Acme", "Makeup, Lips, Lipstick", "Nice & red", "5.5"],
        I2: ["Face Cream", "", "Skin Care, Face", "Great stuff really", "12.99"],
        I3: ["Shampoo", "Acme Corp", "Hair Care", "", ""],
        I4: ["Nail Polish", "", "", "", ""],
        I5: ["", "", "", "", ""],
    },
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    r"""Both formats prepared once: {(fmt, gz): (out dir, stats)}."""
    results = {}
    for fmt, gz in (("2014", True), ("2018", False), ("2018", True)):
        tmp = tmp_path_factory.mktemp(f"raw{fmt}{'gz' if gz else ''}")
        reviews, meta = _raw_files(tmp, fmt, gz)
        out = tmp / "dataset"
        stats = pa.prepare_amazon(
            str(reviews), str(meta), "Synth_Beauty", str(out), progress=False, verbose=False
        )
        results[fmt, gz] = (out, stats)
    return results


@pytest.mark.parametrize("fmt,gz", [("2014", True), ("2018", False)])
def test_counts_and_skips_are_exact(prepared, fmt, gz):
    out, stats = prepared[fmt, gz]
    assert stats["format"] == fmt
    assert (stats["users"], stats["items"], stats["interactions"]) == (8, 5, 40)
    assert stats["avg_seq_len"] == 5.0 and stats["density"] == 1.0
    assert stats["reviews"] == {
        "lines": 65, "blank_lines": 2, "malformed": 1, "not_an_object": 1, "missing_user": 1,
        "missing_item": 1, "missing_time": 1, "valid": 58, "duplicate_pairs": 2,
        "time_from_reviewTime": 1, "missing_rating": 1,
    }  # fmt: skip
    assert stats["before_filtering"] == {"users": 11, "items": 6, "interactions": 56}
    meta = stats["meta"]
    assert meta["lines"] == 11
    assert (meta["malformed"], meta["blank_lines"], meta["missing_asin"]) == (1, 1, 1)
    assert meta["duplicate_rows"] == 1 and meta["items_without_meta"] == 1
    assert meta["rows_for_other_items"] == 3  # X, Z and the truncated B99 line
    if fmt == "2014":
        assert (meta["parsed_as_python"], meta["parsed_as_json"]) == (5, 1)
    cov = {f: c["non_empty"] for f, c in stats["text_coverage"].items()}
    assert cov == {"title": 4, "brand": 2, "categories": 3, "description": 2, "price": 2}
    repairs = stats["text_repairs"]
    assert repairs["title"] == {"leading_quote_replaced": 1, "whitespace_normalized": 1}
    assert repairs["brand"] == {"whitespace_normalized": 1}
    assert repairs["description"]["html_tags_stripped"] == 1
    assert repairs.get("price", {}).get("unparseable_left_empty", 0) == (1 if fmt == "2018" else 0)
    saved = json.loads((out / "Synth_Beauty" / "Synth_Beauty.stats.json").read_text())
    assert saved["reviews"] == stats["reviews"] and saved["interactions"] == 40


def test_k_core_needs_several_rounds(prepared):
    _, stats = prepared["2014", True]
    # Round 1 drops U07 (4 reviews) and U11 (5 lines, 4 distinct items); only then is X below 5
    # (round 2), and only then U06 (round 3): a single pass would leave X, U06 in the output.
    assert stats["filter_rounds"] == [
        {"round": 1, "users_removed": 2, "items_removed": 0, "interactions_removed": 8},
        {"round": 2, "users_removed": 0, "items_removed": 1, "interactions_removed": 4},
        {"round": 3, "users_removed": 1, "items_removed": 0, "interactions_removed": 4},
    ]
    # min_item 3 drops items 0 and 2 (2 each); then every user has 1 < 2: all goes in round 2.
    user = np.array([0, 0, 1, 1, 1, 2, 2])
    item = np.array([0, 1, 0, 1, 2, 1, 2])
    keep, rounds = pa.k_core(user, item, min_user=2, min_item=3)
    assert keep.tolist() == [False] * 7 and len(rounds) >= 2
    keep, rounds = pa.k_core(user, item, min_user=2, min_item=2)
    assert keep.all() and rounds == []


@pytest.mark.parametrize("fmt,gz", [("2014", True), ("2018", False)])
def test_inter_file_order_dedup_and_core(prepared, fmt, gz):
    out, _ = prepared[fmt, gz]
    header, rows = _read_tsv(out / "Synth_Beauty" / "Synth_Beauty.inter")
    assert header == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    seqs, times = defaultdict(list), defaultdict(list)
    for user, item, _rating, ts in rows:
        seqs[user].append(item)
        times[user].append(int(ts))
    assert list(seqs) == list(EXPECTED_SEQS)  # grouped by user, in order of first appearance
    assert dict(seqs) == EXPECTED_SEQS
    for user, ts in times.items():
        assert ts == sorted(ts), user
    day = {u: {it: d for it, d in reversed(s)} for u, s in SEQS.items()}  # earliest per pair
    for user, item, _rating, ts in rows:
        assert int(ts) == T0 + day[user][item] * DAY  # real unixReviewTime, earliest duplicate
    assert len({(r[0], r[1]) for r in rows}) == len(rows) == 40
    assert min(Counter(r[0] for r in rows).values()) >= 5
    assert min(Counter(r[1] for r in rows).values()) >= 5
    ratings = {(r[0], r[1]): r[2] for r in rows}
    assert ratings["U04", I2] == "" and ratings["U05", I1] == "4"


@pytest.mark.parametrize("fmt,gz", [("2014", True), ("2018", False)])
def test_item_file_text_cleaning(prepared, fmt, gz):
    out, _ = prepared[fmt, gz]
    header, rows = _read_tsv(out / "Synth_Beauty" / "Synth_Beauty.item")
    assert header == [
        "item_id:token", "title:token_seq", "brand:token", "categories:token_seq",
        "description:token_seq", "price:float",
    ]  # fmt: skip
    assert {r[0]: r[1:] for r in rows} == EXPECTED_ITEMS[fmt]
    assert [r[0] for r in rows] == [I3, I1, I5, I2, I4]  # first appearance in .inter
    # RecBole reads with pandas (python engine): same fields as a plain split on tabs.
    frame = pd.read_csv(
        out / "Synth_Beauty" / "Synth_Beauty.item", sep="\t", engine="python", dtype=str
    ).fillna("")
    assert frame.values.tolist() == rows


def test_gzip_and_plain_give_identical_files(prepared):
    plain, gz = prepared["2018", False][0], prepared["2018", True][0]
    for ext in ("inter", "item"):
        name = f"Synth_Beauty/Synth_Beauty.{ext}"
        assert (plain / name).read_bytes() == (gz / name).read_bytes()


def test_recbole_loads_the_output(prepared, in_tmp_dir):
    out, _ = prepared["2014", True]
    counts = pa.check_recbole_load(str(out), "Synth_Beauty")
    assert counts == {"users": 9, "items": 6, "interactions": 40}  # + [PAD] user and item
    from recbole.config import Config
    from recbole.data import create_dataset

    load_col = {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title", "price"]}
    config = Config(
        model="SASRec",
        dataset="Synth_Beauty",
        config_dict={"data_path": str(out), "train_neg_sample_args": None, "load_col": load_col},
    )
    dataset = create_dataset(config)
    assert '\u201cQuoted"' in dataset.field2id_token["title"]  # the leading quote survived
    prices = dataset.item_feat["price"].tolist()[1:]  # [PAD] first; NaN filled by RecBole
    assert pytest.approx(5.5) in prices and pytest.approx(12.99) in prices


def test_clean_text_and_parsers():
    assert pa.clean_text('"a\tb\n\n  c  ') == "\u201ca b c"
    assert pa.clean_text(["<div>x</div>", None, "y &amp; z"]) == "x y & z"
    assert pa.clean_text("size <5 cm> & a<b") == "size <5 cm> & a<b"  # not tags
    assert pa.clean_text("a\x00b\x1fc") == "ab c" and pa.clean_text(None) == ""
    assert [text.parse_price(p) for p in ("$1,299.00", 3, "$1 - $2", "", None)] == [
        1299.0, 3.0, None, None, None,
    ]  # fmt: skip
    assert text.parse_review_time("01 2, 2014") == T0 + DAY
    obj, how = files.parse_object("{'a': 1, 'b': [u'x']}", python_first=False)
    assert obj == {"a": 1, "b": ["x"]} and how == "python"
    assert files.parse_object("[" * 100000, python_first=True) == (None, "malformed")


def test_detect_format(tmp_path):
    r14, m14 = _raw_files(tmp_path, "2014", gz=True)
    r18, m18 = _raw_files(tmp_path, "2018", gz=False)
    assert pa.detect_format(str(r14), str(m14))[0] == "2014"
    assert pa.detect_format(str(r18), str(m18))[0] == "2018"


def test_truncated_gzip_is_reported_not_fatal(tmp_path):
    lines = [json.dumps({"reviewerID": f"U{i}", "asin": f"A{i * 7919 % 100003}", "x": os.urandom(8).hex()}) for i in range(3000)]  # fmt: skip
    path = tmp_path / "cut.json.gz"
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path.write_bytes(data[: len(data) // 2])
    counts = Counter()
    read = list(files.iter_lines(str(path), "cut", counts, progress=False))
    assert counts["read_error"] == 1 and 0 < len(read) < 3000
    assert read[0] == (1, lines[0] + "\n")


def test_main_errors_in_process(tmp_path, capsys):
    reviews, meta = _raw_files(tmp_path, "2018", gz=False)
    args = ["--reviews", str(reviews), "--meta", str(meta), "--name", "S", "--out", str(tmp_path)]
    assert pa.main(args + ["--no_progress", "--min_user", "100"]) == 1
    assert "no interaction left after the 100/5-core filter" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        pa.main(
            ["--reviews", str(reviews), "--meta", str(tmp_path / "nope.json.gz"), "--name", "S"]
        )
    assert exit_info.value.code == 2
    assert "--meta file not found" in capsys.readouterr().err


def test_cli_subprocess(tmp_path):
    reviews, meta = _raw_files(tmp_path, "2014", gz=True)
    cmd = [sys.executable, "-m", "recbole_fair.data.prepare_amazon", "--meta", str(meta)]
    cmd += ["--name", "Amazon_Beauty", "--out", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    ok = subprocess.run(cmd + ["--reviews", str(reviews)], capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "users 8  items 5  interactions 40" in ok.stdout
    assert "3 filtering round(s)" in ok.stdout and "missing_time 1" in ok.stdout
    assert (tmp_path / "out" / "Amazon_Beauty" / "Amazon_Beauty.stats.json").is_file()
    bad = subprocess.run(cmd + ["--reviews", str(tmp_path / "missing.json.gz")], capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2
    assert f"--reviews file not found: {tmp_path / 'missing.json.gz'}" in bad.stderr
