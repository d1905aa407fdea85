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

This module holds the pipeline and the command line; each step is a module of
:mod:`recbole_fair.data.amazon` (files, text, reviews, meta, write).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections import Counter, OrderedDict
from typing import Any

from recbole_fair.data.amazon.files import category_from_filename, detect_format
from recbole_fair.data.amazon.meta import ITEM_FIELDS, TEXT_FIELDS, read_meta
from recbole_fair.data.amazon.reviews import filter_and_order, k_core, read_reviews
from recbole_fair.data.amazon.text import clean_text, norm_category
from recbole_fair.data.amazon.write import (
    INTER_HEADER,
    ITEM_HEADER,
    counts_dict,
    format_summary,
    interaction_statistics,
    output_paths,
    text_coverage,
    write_inter,
    write_items,
    write_stats,
)


class PrepareError(RuntimeError):
    r"""An input problem that stops the preparation (reported without a traceback by the CLI)."""


def _check_arguments(reviews: str, meta: str, name: str, min_user: int, min_item: int) -> None:
    for label, path in (("reviews", reviews), ("meta", meta)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{label} file not found: {path}")
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise PrepareError(f"--name must be a plain folder name, got {name!r}")
    if min_user < 0 or min_item < 0:
        raise PrepareError(f"--min_user / --min_item must be >= 0, got {min_user} / {min_item}")


def _resolve_format(fmt: str, reviews: str, meta: str) -> tuple[str, str]:
    r"""``(format, reason)`` for ``--format`` ``fmt``."""
    if fmt == "auto":
        return detect_format(reviews, meta)
    if fmt in ("2014", "2018"):
        return fmt, "given (--format)"
    raise PrepareError(f"--format must be auto, 2014 or 2018, got {fmt!r}")


def _root_categories(root_category: str, reviews: str, meta: str, name: str) -> set[str]:
    r"""The (normalised) top-level categories to drop, for ``--root_category``."""
    if root_category == "auto":
        candidates = [category_from_filename(reviews), category_from_filename(meta)]
        candidates.append(name[len("Amazon_") :] if name.startswith("Amazon_") else name)
        roots = {norm_category(c) for c in candidates if c}
    elif root_category in ("keep", "none", ""):
        roots = set()
    else:
        roots = {norm_category(root_category)}
    roots.discard("")
    return roots


def _filter(
    arrays: dict[str, Any], rev_counts: Counter, reviews: str, min_user: int, min_item: int
) -> tuple[dict[str, Any], dict[str, int], list[dict[str, int]]]:
    r"""Steps 2-4 (:func:`~recbole_fair.data.amazon.reviews.filter_and_order`): ``(arrays,
    counts before the k-core, k-core rounds)``; the duplicates are counted in ``rev_counts``.

    Raises:
        PrepareError: no interaction survives.
    """
    arrays, duplicates, before, rounds = filter_and_order(arrays, min_user, min_item)
    rev_counts["duplicate_pairs"] = duplicates
    if len(arrays["user"]) == 0:
        raise PrepareError(
            f"no interaction left after the {min_user}/{min_item}-core filter "
            f"({before['interactions']} unique (user, item) pairs read from {reviews}, "
            f"{rev_counts['valid']} valid reviews); check the input or lower --min_user/--min_item"
        )
    return arrays, before, rounds


def _item_meta(
    meta: str, asins: list[str], roots: set[str], python_first: bool, progress: bool
) -> tuple[dict[str, dict[str, Any]], Counter, dict[str, Counter], list[str]]:
    r"""Step 5 (:func:`~recbole_fair.data.amazon.meta.read_meta`) for the items kept (``asins``,
    in output order): ``(rows, counts, repairs, asins without a row)``."""
    meta_rows, meta_counts, repairs = read_meta(meta, set(asins), roots, python_first, progress)
    missing_meta = [asin for asin in asins if asin not in meta_rows]
    meta_counts["items_without_meta"] = len(missing_meta)
    return meta_rows, meta_counts, repairs, missing_meta


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
    _check_arguments(reviews, meta, name, min_user, min_item)
    fmt, reason = _resolve_format(fmt, reviews, meta)
    python_first = fmt == "2014"
    roots = _root_categories(root_category, reviews, meta, name)

    arrays, user_names, item_names, rev_counts = read_reviews(reviews, python_first, progress)
    arrays, before, rounds = _filter(arrays, rev_counts, reviews, min_user, min_item)
    item_order = list(OrderedDict.fromkeys(arrays["item"].tolist()))
    meta_rows, meta_counts, repairs, missing_meta = _item_meta(
        meta, [item_names[i] for i in item_order], roots, python_first, progress
    )

    paths = output_paths(out, name)
    write_inter(paths["inter"], arrays, user_names, item_names)
    coverage = write_items(paths["item"], item_order, item_names, meta_rows)
    stats: dict[str, Any] = {
        "name": name,
        "format": fmt,
        "format_reason": reason,
        "inputs": {"reviews": os.path.abspath(reviews), "meta": os.path.abspath(meta)},
        "outputs": paths,
        "min_user": min_user,
        "min_item": min_item,
        "root_categories_dropped": sorted(roots),
        **interaction_statistics(arrays, len(item_order)),
    }
    stats.update(reviews=counts_dict(rev_counts), before_filtering=before, filter_rounds=rounds)
    stats.update(meta=counts_dict(meta_counts), items_without_meta_examples=missing_meta[:10])
    stats["text_coverage"] = text_coverage(coverage, len(item_order))
    stats["text_repairs"] = {f: counts_dict(c) for f, c in repairs.items() if c}
    write_stats(paths["stats"], stats)
    if verbose:
        print(format_summary(stats))
    return stats


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


def _parser(prog: str) -> argparse.ArgumentParser:
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
    return parser


def _check_with_recbole(out: str, name: str, stats: dict[str, Any]) -> int:
    r"""``--check``: 0 when RecBole loads the written files with the counts written, else 1."""
    from recbole_fair.errors import DataError

    try:
        counts = check_recbole_load(out, name)
    except DataError as err:
        print(f"error: RecBole's check of the written files failed: {err}", file=sys.stderr)
        return 1
    print(
        f"RecBole loads it: {counts['users']:,} users, {counts['items']:,} items "
        f"(both with [PAD]), {counts['interactions']:,} interactions"
    )
    expected = (stats["users"] + 1, stats["items"] + 1, stats["interactions"])
    if (counts["users"], counts["items"], counts["interactions"]) != expected:
        print(f"error: RecBole's counts differ from the written files {expected}", file=sys.stderr)
        return 1
    return 0


def main(
    argv: list[str] | None = None, prog: str = "python -m recbole_fair.data.prepare_amazon"
) -> int:
    r"""The command line (``python -m recbole_fair.data.prepare_amazon --help``): 0 done, 1
    nothing left after filtering or a failed ``--check``; a bad argument exits with 2."""
    parser = _parser(prog)
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
    return _check_with_recbole(args.out, args.name, stats) if args.check else 0


__all__ = [
    "INTER_HEADER",
    "ITEM_FIELDS",
    "ITEM_HEADER",
    "TEXT_FIELDS",
    "PrepareError",
    "check_recbole_load",
    "clean_text",
    "detect_format",
    "format_summary",
    "k_core",
    "main",
    "prepare_amazon",
]


if __name__ == "__main__":
    sys.exit(main())
