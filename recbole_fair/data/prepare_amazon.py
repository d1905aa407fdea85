r"""Raw Amazon review downloads -> RecBole atomic files (5-core, chronological order, item text).

Usage::

    python -m recbole_fair.data.prepare_amazon --reviews reviews_Beauty_5.json.gz \
        --meta meta_Beauty.json.gz --name Amazon_Beauty --out ./dataset

Inputs (gzipped or plain, detected from the content, not the extension):

* 2014 (He & McAuley): ``reviews_<Category>_5.json.gz`` (JSON lines) and ``meta_<Category>.json.gz``
  (one Python dict literal per line, read with :func:`ast.literal_eval`; fields ``asin``, ``title``,
  ``brand``, ``categories`` (list of lists), ``description`` (str), ``price`` (float)).
* 2018 (Ni, Li & McAuley): ``<Category>_5.json.gz`` (JSON lines) and ``meta_<Category>.json.gz``
  (JSON lines; ``category`` (list), ``description`` (list of str), ``price`` (str, ``"$12.99"``)).

Both parsers accept either layout; ``--format`` (or the auto-detection) only picks which parser
is tried first and is reported in the statistics.

Processing, in this order:

1. Read the reviews. A line that is blank, not JSON (nor a Python literal), not an object, or lacks
   ``reviewerID`` / ``asin`` / a time is skipped and counted. A missing ``unixReviewTime`` is
   repaired from ``reviewTime`` (``"MM DD, YYYY"``, UTC midnight) when that parses; a missing or
   non-numeric ``overall`` keeps the row with an empty rating (both counted).
2. Deduplicate (user, item) pairs: keep the earliest review (ties: the first in the file).
3. Iterated k-core filter (``--min_user`` / ``--min_item``, default 5) until nothing changes.
   The fixed point (the largest sub-graph meeting both thresholds) does not depend on the order of
   removal.
4. Order each user's interactions by ``unixReviewTime``, ties in file order. Users appear in the
   order of their first review in the file. RecBole's own sort (``eval_args.order: TO``) is stable,
   so it keeps this order for equal timestamps.
5. Read the metadata of the surviving items only. Text cleaning: HTML tags stripped, HTML entities
   unescaped, control characters removed, tabs / newlines / runs of white space -> one space, a
   leading ``"`` -> ``“`` (RecBole reads with ``pandas.read_csv``, which would take a leading quote
   as CSV quoting). ``categories``: 2014 nested lists are flattened (duplicates dropped, order kept);
   a top-level entry equal to the dataset's own category (``Beauty`` for ``reviews_Beauty_5``) is
   dropped (``--root_category``); joined with ``", "``. ``description``: lists joined with a space.
   ``price``: a number, or a string such as ``"$1,299.00"``; anything else (ranges, HTML) is left
   empty and counted.

Outputs ``<out>/<name>/<name>.inter``, ``<name>.item`` and ``<name>.stats.json`` (also printed).
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import gzip
import html
import json
import math
import os
import re
import sys
import warnings
import zlib
from collections import Counter, OrderedDict
from typing import Any, Iterator

import numpy as np

INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
ITEM_HEADER = [
    "item_id:token",
    "title:token_seq",
    "brand:token",
    "categories:token_seq",
    "description:token_seq",
    "price:float",
]
TEXT_FIELDS = ["title", "brand", "categories", "description"]
ITEM_FIELDS = TEXT_FIELDS + ["price"]

_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")  # \s below covers \t\n\v\f\r and \x1c-\x1f
_SPACE = re.compile(r"\s+")
_UNUSUAL_SPACE = re.compile(r"[^\S ]| {2}")  # any white space but a single plain space
_ASIN_KEY = re.compile(r"""["']asin["']\s*:\s*["']([^"'\\]*)["']""")
_PRICE = re.compile(r"^[$£€¥]?\s*([0-9][0-9,]*(?:\.[0-9]+)?|\.[0-9]+)$")


class PrepareError(RuntimeError):
    r"""An input problem that stops the preparation (reported without a traceback by the CLI)."""


# ----------------------------------------------------------------------------------------------
# Reading


def _open_binary(path: str):
    r"""(stream, raw file): a gzip stream when the file starts with the gzip magic, else the file."""
    raw = open(path, "rb")  # closed by the caller
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def _iter_lines(path: str, desc: str, counts: Counter, progress: bool) -> Iterator[tuple[int, str]]:
    r"""Yield ``(line number, decoded text)`` of non-blank lines; count blank/undecodable lines.

    A truncated or corrupt gzip stops the reading with ``counts['read_error']`` set (and a warning
    in the summary) instead of an exception: the lines read so far are kept.
    """
    from tqdm import tqdm

    stream, raw = _open_binary(path)
    size = os.path.getsize(path)
    bar = tqdm(
        total=size, unit="B", unit_scale=True, desc=desc, disable=not progress, file=sys.stderr
    )
    done = 0
    lineno = 0
    try:
        for lineno, line in enumerate(stream, 1):  # noqa: B007 (used after the loop)
            if lineno % 4096 == 0:
                pos = raw.tell()
                bar.update(pos - done)
                done = pos
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = line.decode("utf-8", "replace")
                counts["encoding_repaired"] += 1
            if lineno == 1:
                text = text.lstrip("\ufeff")
            if not text.strip():
                counts["blank_lines"] += 1
                continue
            yield lineno, text
    except (EOFError, OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        counts["read_error"] = 1
        counts.setdefault("_read_error_message", f"{type(err).__name__}: {err} after line {lineno}")
    finally:
        bar.update(size - done)
        bar.close()
        stream.close()
        raw.close()
    counts["lines"] = lineno


def _parse_object(text: str, python_first: bool) -> tuple[dict | None, str]:
    r"""Parse one line as a JSON object or a Python dict literal: ``(obj, how)``.

    ``how`` is ``json`` / ``python`` on success, ``malformed`` or ``not_an_object`` otherwise.
    """

    def _json(s):
        return json.loads(s)

    def _python(s):
        return ast.literal_eval(s.strip())

    parsers = (
        [("python", _python), ("json", _json)]
        if python_first
        else [
            ("json", _json),
            ("python", _python),
        ]
    )
    for how, parse in parsers:
        try:
            obj = parse(text)
        except Exception:  # noqa: BLE001  (ValueError, SyntaxError, RecursionError, MemoryError...)
            continue
        if not isinstance(obj, dict):
            return None, "not_an_object"
        return obj, how
    return None, "malformed"


def _peek_objects(path: str, n: int = 20) -> tuple[list[dict], int]:
    r"""The first ``n`` parseable objects of a file and how many of them were Python literals."""
    objs: list[dict] = []
    python = 0
    try:
        stream, raw = _open_binary(path)
        with raw, stream:
            for i, line in enumerate(stream):
                if i >= 200 or len(objs) >= n:
                    break
                text = line.decode("utf-8", "replace").lstrip("\ufeff")
                if not text.strip():
                    continue
                obj, how = _parse_object(text, python_first=False)
                if obj is not None:
                    objs.append(obj)
                    python += how == "python"
    except (EOFError, OSError, zlib.error):
        pass
    return objs, python


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for suffix in (".gz", ".json", ".jsonl"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return base


def detect_format(reviews: str, meta: str) -> tuple[str, str]:
    r"""``("2014" | "2018", reason)`` from the metadata content, else from the file names."""
    objs, python = _peek_objects(meta)
    if python:
        return "2014", "meta lines are Python dict literals"
    if any(isinstance(o.get("categories"), list) for o in objs):
        return "2014", "meta has 'categories'"
    if any("category" in o for o in objs):
        return "2018", "meta has 'category'"
    rev_objs, _ = _peek_objects(reviews)
    if any(k in o for o in rev_objs for k in ("verified", "vote", "style")):
        return "2018", "reviews have 'verified'/'vote'/'style'"
    if _stem(reviews).startswith("reviews_"):
        return "2014", "file name reviews_<Category>"
    return "2018", "default (file name <Category>_5)"


def _category_from_filename(path: str) -> str | None:
    stem = _stem(path)
    for prefix in ("reviews_", "meta_"):
        if stem.startswith(prefix):
            stem = stem[len(prefix) :]
    stem = re.sub(r"_5$", "", stem)
    return stem or None


def _norm_category(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("&", "and"))


# ----------------------------------------------------------------------------------------------
# Cleaning


def _clean_id(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, dict, list, tuple)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            value = int(value)
    text = str(value).strip()
    return text or None


def _parse_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _parse_review_time(value: Any) -> float | None:
    r"""``reviewTime`` (``"01 30, 2014"``) as a UTC-midnight unix time."""
    if not isinstance(value, str):
        return None
    try:
        day = _dt.datetime.strptime(value.strip(), "%m %d, %Y")
    except ValueError:
        return None
    return float(day.replace(tzinfo=_dt.timezone.utc).timestamp())


def _parse_price(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if isinstance(value, str):
        match = _PRICE.match(value.strip())
        if match:
            return float(match.group(1).replace(",", ""))
    return None


def _flatten_text(value: Any) -> Iterator[str]:
    for v in value:
        if isinstance(v, (list, tuple)):
            yield from _flatten_text(v)
        elif v is not None and not isinstance(v, bool):
            yield str(v)


def clean_text(value: Any, repairs: Counter | None = None) -> str:
    r"""One cleaned text field (see the module docstring); ``repairs`` counts what was changed."""
    if value is None or isinstance(value, bool):
        return ""
    text = " ".join(_flatten_text(value)) if isinstance(value, (list, tuple)) else str(value)
    counts = repairs if repairs is not None else Counter()
    if "<" in text:
        stripped = _TAG.sub(" ", text)
        if stripped != text:
            counts["html_tags_stripped"] += 1
            text = stripped
    if "&" in text:
        text = html.unescape(text)
    if _CONTROL.search(text):
        counts["control_chars_removed"] += 1
        text = _CONTROL.sub("", text)
    if _UNUSUAL_SPACE.search(text.strip()):
        counts["whitespace_normalized"] += 1
    text = _SPACE.sub(" ", text).strip()
    if text.startswith('"'):
        counts["leading_quote_replaced"] += 1
        text = "\u201c" + text[1:]
    return text


def _clean_token_id(value: Any, counts: Counter) -> str | None:
    r"""A user / item id, or ``None`` when missing; an id that would break the file is repaired."""
    text = _clean_id(value)
    if text is None:
        return None
    if _UNUSUAL_SPACE.search(text) or text.startswith('"'):
        counts["ids_repaired"] += 1
        text = clean_text(text) or None
    return text


def _categories(value: Any, roots: set[str], repairs: Counter) -> str:
    r"""Flatten 2014 ``[[root, a, b], [root, c]]`` / 2018 ``[root, a, b]`` into ``"a, b, c"``."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        value = [value]
    paths = value if any(isinstance(v, (list, tuple)) for v in value) else [value]
    out: list[str] = []
    seen: set[str] = set()
    for path in paths:
        if not isinstance(path, (list, tuple)):
            path = [path]
        for depth, entry in enumerate(path):
            text = clean_text(entry, repairs)
            if not text or (depth == 0 and _norm_category(text) in roots):
                continue
            if text not in seen:
                seen.add(text)
                out.append(text)
    return ", ".join(out)


# ----------------------------------------------------------------------------------------------
# Processing


def _read_reviews(path: str, python_first: bool, progress: bool):
    counts: Counter = Counter()
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    u_idx: list[int] = []
    i_idx: list[int] = []
    times: list[float] = []
    ratings: list[float] = []
    lines: list[int] = []
    for lineno, text in _iter_lines(path, "reviews", counts, progress):
        rec, how = _parse_object(text, python_first)
        if rec is None:
            counts[how] += 1
            continue
        user = _clean_token_id(rec.get("reviewerID"), counts)
        item = _clean_token_id(rec.get("asin"), counts)
        if user is None:
            counts["missing_user"] += 1
            continue
        if item is None:
            counts["missing_item"] += 1
            continue
        when = _parse_number(rec.get("unixReviewTime"))
        if when is None:
            when = _parse_review_time(rec.get("reviewTime"))
            if when is None:
                counts["missing_time"] += 1
                continue
            counts["time_from_reviewTime"] += 1
        rating = _parse_number(rec.get("overall"))
        if rating is None:
            counts["missing_rating"] += 1
            rating = float("nan")
        u_idx.append(users.setdefault(user, len(users)))
        i_idx.append(items.setdefault(item, len(items)))
        times.append(when)
        ratings.append(rating)
        lines.append(lineno)
    counts["valid"] = len(u_idx)
    arrays = {
        "user": np.asarray(u_idx, dtype=np.int64),
        "item": np.asarray(i_idx, dtype=np.int64),
        "time": np.asarray(times, dtype=np.float64),
        "rating": np.asarray(ratings, dtype=np.float64),
        "line": np.asarray(lines, dtype=np.int64),
    }
    return arrays, list(users), list(items), counts


def _take(arrays: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in arrays.items()}


def _dedupe(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    r"""Keep the earliest review of each (user, item) pair, ties by file order."""
    n = len(arrays["user"])
    if n == 0:
        return arrays, 0
    order = np.lexsort((arrays["line"], arrays["time"], arrays["item"], arrays["user"]))
    u, i = arrays["user"][order], arrays["item"][order]
    first = np.ones(n, dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    keep = np.sort(order[first])
    return _take(arrays, keep), int(n - len(keep))


def k_core(
    user: np.ndarray, item: np.ndarray, min_user: int, min_item: int
) -> tuple[np.ndarray, list[dict[str, int]]]:
    r"""Boolean mask of the iterated k-core and one record per round that removed something."""
    keep = np.ones(len(user), dtype=bool)
    rounds: list[dict[str, int]] = []
    n_users = int(user.max()) + 1 if len(user) else 0
    n_items = int(item.max()) + 1 if len(item) else 0
    while True:
        u, i = user[keep], item[keep]
        uc = np.bincount(u, minlength=n_users)
        ic = np.bincount(i, minlength=n_items)
        ok = (uc[u] >= min_user) & (ic[i] >= min_item)
        if ok.all():
            return keep, rounds
        rounds.append(
            {
                "round": len(rounds) + 1,
                "users_removed": int(((uc > 0) & (uc < min_user)).sum()),
                "items_removed": int(((ic > 0) & (ic < min_item)).sum()),
                "interactions_removed": int((~ok).sum()),
            }
        )
        idx = np.flatnonzero(keep)
        keep[idx[~ok]] = False


def _read_meta(path: str, wanted: set[str], roots: set[str], python_first: bool, progress: bool):
    counts: Counter = Counter()
    repairs: dict[str, Counter] = {f: Counter() for f in ITEM_FIELDS}
    rows: dict[str, dict[str, Any]] = {}
    for _lineno, text in _iter_lines(path, "meta", counts, progress):
        # Fast path: most meta rows are for items not kept; skip them without a full parse (the
        # 2014 Python literals are slow to parse). Only when every "asin" key found is unwanted.
        found = _ASIN_KEY.findall(text)
        if found and not any(a.strip() in wanted for a in found):
            counts["rows_for_other_items"] += 1
            continue
        rec, how = _parse_object(text, python_first)
        if rec is None:
            counts[how] += 1
            continue
        counts[f"parsed_as_{how}"] += 1
        asin = _clean_token_id(rec.get("asin"), counts)
        if asin is None:
            counts["missing_asin"] += 1
            continue
        if asin not in wanted:
            counts["rows_for_other_items"] += 1
            continue
        if asin in rows:
            counts["duplicate_rows"] += 1
            continue
        cats = rec.get("categories", rec.get("category"))
        price_raw = rec.get("price")
        price = _parse_price(price_raw)
        if price is None and price_raw not in (None, ""):
            repairs["price"]["unparseable_left_empty"] += 1
        rows[asin] = {
            "title": clean_text(rec.get("title"), repairs["title"]),
            "brand": clean_text(rec.get("brand"), repairs["brand"]),
            "categories": _categories(cats, roots, repairs["categories"]),
            "description": clean_text(rec.get("description"), repairs["description"]),
            "price": price,
        }
    return rows, counts, repairs


def _fmt_number(value: float) -> str:
    if value is None or not math.isfinite(value):
        return ""
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _write_atomic(path: str, lines: Iterator[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for line in lines:
            fh.write(line)
    os.replace(tmp, path)


def _counts_dict(counts: Counter) -> dict[str, Any]:
    out: dict[str, Any] = {k: int(v) for k, v in sorted(counts.items()) if not k.startswith("_")}
    if "_read_error_message" in counts:
        out["read_error_message"] = counts["_read_error_message"]
    return out


def prepare_amazon(
    reviews: str,
    meta: str,
    name: str,
    out: str,
    min_user: int = 5,
    min_item: int = 5,
    fmt: str = "auto",
    root_category: str = "auto",
    progress: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    r"""Convert raw Amazon reviews + metadata into ``<out>/<name>/<name>.{inter,item,stats.json}``.

    Args:
        reviews: reviews file (``reviews_<Cat>_5.json[.gz]`` 2014 or ``<Cat>_5.json[.gz]`` 2018).
        meta: metadata file (``meta_<Cat>.json[.gz]``).
        name: dataset name (folder and file names; the ``--dataset`` to pass to RecBole).
        out: parent folder (the ``data_path`` to pass to RecBole).
        min_user, min_item: k-core thresholds (iterated until stable).
        fmt: ``"auto"``, ``"2014"`` or ``"2018"``.
        root_category: ``"auto"`` (drop a top-level category equal to the category in the file
            names or in ``name`` minus ``Amazon_``), ``"keep"``, or the category to drop.
        progress: show tqdm progress bars while reading.
        verbose: print the summary.

    Returns:
        The statistics (also written to ``<name>.stats.json``).

    Raises:
        FileNotFoundError: an input file is missing.
        PrepareError: bad arguments, or no interaction survives.
    """
    for label, path in (("reviews", reviews), ("meta", meta)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{label} file not found: {path}")
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise PrepareError(f"--name must be a plain folder name, got {name!r}")
    if min_user < 0 or min_item < 0:
        raise PrepareError(f"--min_user / --min_item must be >= 0, got {min_user} / {min_item}")
    if fmt == "auto":
        fmt, reason = detect_format(reviews, meta)
    elif fmt in ("2014", "2018"):
        reason = "given (--format)"
    else:
        raise PrepareError(f"--format must be auto, 2014 or 2018, got {fmt!r}")
    python_first = fmt == "2014"

    if root_category == "auto":
        candidates = [_category_from_filename(reviews), _category_from_filename(meta)]
        candidates.append(name[len("Amazon_") :] if name.startswith("Amazon_") else name)
        roots = {_norm_category(c) for c in candidates if c}
    elif root_category in ("keep", "none", ""):
        roots = set()
    else:
        roots = {_norm_category(root_category)}
    roots.discard("")

    arrays, user_names, item_names, rev_counts = _read_reviews(reviews, python_first, progress)
    arrays, duplicates = _dedupe(arrays)
    rev_counts["duplicate_pairs"] = duplicates
    before = {
        "users": int(len(np.unique(arrays["user"]))),
        "items": int(len(np.unique(arrays["item"]))),
        "interactions": int(len(arrays["user"])),
    }
    keep, rounds = k_core(arrays["user"], arrays["item"], min_user, min_item)
    arrays = _take(arrays, np.flatnonzero(keep))
    if len(arrays["user"]) == 0:
        raise PrepareError(
            f"no interaction left after the {min_user}/{min_item}-core filter "
            f"({before['interactions']} unique (user, item) pairs read from {reviews}, "
            f"{rev_counts['valid']} valid reviews); check the input or lower --min_user/--min_item"
        )
    order = np.lexsort((arrays["line"], arrays["time"], arrays["user"]))
    arrays = _take(arrays, order)

    item_order = list(OrderedDict.fromkeys(arrays["item"].tolist()))
    wanted = {item_names[i] for i in item_order}
    meta_rows, meta_counts, repairs = _read_meta(meta, wanted, roots, python_first, progress)
    missing_meta = [item_names[i] for i in item_order if item_names[i] not in meta_rows]
    meta_counts["items_without_meta"] = len(missing_meta)

    folder = os.path.abspath(os.path.join(out, name))
    os.makedirs(folder, exist_ok=True)
    inter_path = os.path.join(folder, f"{name}.inter")
    item_path = os.path.join(folder, f"{name}.item")
    stats_path = os.path.join(folder, f"{name}.stats.json")

    def inter_lines():
        yield "\t".join(INTER_HEADER) + "\n"
        for u, i, r, t in zip(
            arrays["user"].tolist(),
            arrays["item"].tolist(),
            arrays["rating"].tolist(),
            arrays["time"].tolist(),
        ):
            yield f"{user_names[u]}\t{item_names[i]}\t{_fmt_number(r)}\t{_fmt_number(t)}\n"

    empty = {"title": "", "brand": "", "categories": "", "description": "", "price": None}
    coverage = Counter()

    def item_lines():
        yield "\t".join(ITEM_HEADER) + "\n"
        for i in item_order:
            asin = item_names[i]
            row = meta_rows.get(asin, empty)
            for field in ITEM_FIELDS:
                coverage[field] += row[field] not in ("", None)
            price = "" if row["price"] is None else _fmt_number(row["price"])
            yield "\t".join([asin] + [row[f] for f in TEXT_FIELDS] + [price]) + "\n"

    _write_atomic(inter_path, inter_lines())
    _write_atomic(item_path, item_lines())

    n_users = int(len(np.unique(arrays["user"])))
    n_items = len(item_order)
    n_inter = int(len(arrays["user"]))
    uc = np.bincount(arrays["user"])
    ic = np.bincount(arrays["item"])
    stats: dict[str, Any] = {
        "name": name,
        "format": fmt,
        "format_reason": reason,
        "inputs": {"reviews": os.path.abspath(reviews), "meta": os.path.abspath(meta)},
        "outputs": {"inter": inter_path, "item": item_path, "stats": stats_path},
        "min_user": min_user,
        "min_item": min_item,
        "root_categories_dropped": sorted(roots),
        "users": n_users,
        "items": n_items,
        "interactions": n_inter,
        "avg_seq_len": round(n_inter / n_users, 4),
        "density": n_inter / (n_users * n_items),
        "min_interactions_per_user": int(uc[uc > 0].min()),
        "min_interactions_per_item": int(ic[ic > 0].min()),
        "time_range": [_fmt_number(arrays["time"].min()), _fmt_number(arrays["time"].max())],
        "reviews": _counts_dict(rev_counts),
        "before_filtering": before,
        "filter_rounds": rounds,
        "meta": _counts_dict(meta_counts),
        "items_without_meta_examples": missing_meta[:10],
        "text_coverage": {
            f: {"non_empty": int(coverage[f]), "share": round(coverage[f] / n_items, 6)}
            for f in ITEM_FIELDS
        },
        "text_repairs": {f: _counts_dict(c) for f, c in repairs.items() if c},
    }
    with open(stats_path, "w", encoding="utf-8") as fh:
        json.dump(stats, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    if verbose:
        print(format_summary(stats))
    return stats


_REVIEW_SKIPS = [
    "blank_lines",
    "malformed",
    "not_an_object",
    "missing_user",
    "missing_item",
    "missing_time",
]
_REVIEW_REPAIRS = ["time_from_reviewTime", "missing_rating", "encoding_repaired", "ids_repaired"]
_META_SKIPS = ["blank_lines", "malformed", "not_an_object", "missing_asin", "duplicate_rows"]


def format_summary(stats: dict[str, Any]) -> str:
    r"""The human-readable summary printed at the end of :func:`prepare_amazon`."""
    rev, meta = stats["reviews"], stats["meta"]
    before = stats["before_filtering"]
    lines = [
        f"== {stats['name']} (Amazon {stats['format']} format: {stats['format_reason']}) ==",
        f"users {stats['users']:,}  items {stats['items']:,}  interactions {stats['interactions']:,}"
        f"  avg seq len {stats['avg_seq_len']:.2f}  density {stats['density'] * 100:.4f} %",
        f"reviews: {rev.get('lines', 0):,} lines, {rev.get('valid', 0):,} valid, "
        f"{rev.get('duplicate_pairs', 0):,} duplicate (user, item) pairs dropped (earliest kept)",
        "  skipped: " + ", ".join(f"{k} {rev.get(k, 0):,}" for k in _REVIEW_SKIPS),
        "  repaired/kept: " + ", ".join(f"{k} {rev.get(k, 0):,}" for k in _REVIEW_REPAIRS),
        f"{stats['min_user']}/{stats['min_item']}-core: {before['users']:,} users / "
        f"{before['items']:,} items / {before['interactions']:,} interactions before, "
        f"{len(stats['filter_rounds'])} filtering round(s) until stable",
    ]
    for r in stats["filter_rounds"]:
        lines.append(
            f"  round {r['round']}: -{r['users_removed']:,} users, -{r['items_removed']:,} items, "
            f"-{r['interactions_removed']:,} interactions"
        )
    lines += [
        f"meta: {meta.get('lines', 0):,} lines, {meta.get('rows_for_other_items', 0):,} rows for "
        f"items not kept, {meta.get('items_without_meta', 0):,} kept items without meta "
        f"(empty text row)",
        "  skipped: " + ", ".join(f"{k} {meta.get(k, 0):,}" for k in _META_SKIPS),
        "text coverage: "
        + ", ".join(
            f"{f} {c['share'] * 100:.2f} % ({c['non_empty']:,})"
            for f, c in stats["text_coverage"].items()
        ),
    ]
    if stats["text_repairs"]:
        lines.append(
            "text repairs: "
            + "; ".join(
                f"{f}: " + ", ".join(f"{k} {v:,}" for k, v in c.items())
                for f, c in stats["text_repairs"].items()
            )
        )
    for label, counts in (("reviews", rev), ("meta", meta)):
        if counts.get("read_error"):
            lines.append(
                f"WARNING: the {label} file could not be read to its end "
                f"({counts.get('read_error_message')}); the rows before were used."
            )
    lines.append(
        f"wrote {stats['outputs']['inter']}, {stats['outputs']['item']}, "
        f"{stats['outputs']['stats']}"
    )
    return "\n".join(lines)


def check_recbole_load(out: str, name: str) -> dict[str, int]:
    r"""Load the output with RecBole 1.2.1 (SASRec config) as a run would, through
    :func:`recbole_fair.data.checked.create_recbole_dataset` (what
    :func:`recbole_fair.utils.create_dataset` picks for SASRec: RecBole's reader and filtering, with
    recbole-fair's file checks and drop accounting); return its user/item/interaction counts.

    RecBole's counts include the ``[PAD]`` user and item.

    Raises:
        recbole_fair.errors.DataError: a file RecBole would misread, or interactions dropped
            because of problems in the data (an item without a ``.item`` row, ...).
    """
    # recbole_fair (this package) is imported already: its compatibility shims are installed.
    from recbole.config import Config

    from recbole_fair.data.checked import create_recbole_dataset

    argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config also parses the command line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # RecBole 1.2.1 on pandas 2.x
            config = Config(
                model="SASRec",
                dataset=name,
                config_dict={
                    "data_path": out,
                    "train_neg_sample_args": None,
                    "load_col": {
                        "inter": ["user_id", "item_id", "rating", "timestamp"],
                        "item": ["item_id"] + ITEM_FIELDS,
                    },
                    "show_progress": False,
                },
            )
            dataset = create_recbole_dataset(config)
    finally:
        sys.argv = argv
    return {"users": dataset.user_num, "items": dataset.item_num, "interactions": dataset.inter_num}


def main(
    argv: list[str] | None = None, prog: str = "python -m recbole_fair.data.prepare_amazon"
) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Raw Amazon review downloads (2014 or 2018, .json or .json.gz) -> RecBole "
        "atomic files <out>/<name>/<name>.inter/.item (+ .stats.json): dedup, iterated k-core, "
        "chronological order, cleaned item text.",
    )
    parser.add_argument(
        "--reviews", required=True, help="reviews_<Cat>_5.json.gz or <Cat>_5.json.gz"
    )
    parser.add_argument("--meta", required=True, help="meta_<Cat>.json.gz")
    parser.add_argument("--name", required=True, help="dataset name, e.g. Amazon_Beauty")
    parser.add_argument(
        "--out", default="./dataset", help="output parent folder (RecBole data_path)"
    )
    parser.add_argument("--min_user", type=int, default=5, help="min interactions per user")
    parser.add_argument("--min_item", type=int, default=5, help="min interactions per item")
    parser.add_argument("--format", default="auto", choices=["auto", "2014", "2018"])
    parser.add_argument(
        "--root_category",
        default="auto",
        help="top-level category to drop from categories: auto (from the file names / --name), "
        "keep, or a category name",
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.add_argument("--check", action="store_true", help="load the result with RecBole")
    args = parser.parse_args(argv)
    for label, path in (("--reviews", args.reviews), ("--meta", args.meta)):
        if not os.path.isfile(path):
            parser.error(f"{label} file not found: {path}")
    try:
        stats = prepare_amazon(
            args.reviews,
            args.meta,
            args.name,
            args.out,
            min_user=args.min_user,
            min_item=args.min_item,
            fmt=args.format,
            root_category=args.root_category,
            progress=not args.no_progress,
        )
    except (PrepareError, OSError) as err:  # FileNotFoundError, PermissionError, ...
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.check:
        from recbole_fair.errors import DataError

        try:
            counts = check_recbole_load(args.out, args.name)
        except DataError as err:
            print(f"error: RecBole's check of the written files failed: {err}", file=sys.stderr)
            return 1
        print(
            f"RecBole loads it: {counts['users']:,} users, {counts['items']:,} items "
            f"(both with [PAD]), {counts['interactions']:,} interactions"
        )
        expected = (stats["users"] + 1, stats["items"] + 1, stats["interactions"])
        if (counts["users"], counts["items"], counts["interactions"]) != expected:
            print(
                f"error: RecBole's counts differ from the written files {expected}", file=sys.stderr
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
