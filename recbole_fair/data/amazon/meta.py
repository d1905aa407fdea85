r"""The metadata of the items kept: one cleaned text row per item (step 5 of
:mod:`recbole_fair.data.prepare_amazon`)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from recbole_fair.data.amazon.files import iter_lines, parse_object
from recbole_fair.data.amazon.text import categories, clean_text, clean_token_id, parse_price

TEXT_FIELDS = ["title", "brand", "categories", "description"]
ITEM_FIELDS = TEXT_FIELDS + ["price"]

_ASIN_KEY = re.compile(r"""["']asin["']\s*:\s*["']([^"'\\]*)["']""")


def _item_row(rec: dict[str, Any], roots: set[str], repairs: dict[str, Counter]) -> dict[str, Any]:
    r"""The ``.item`` fields of one metadata record, cleaned; ``repairs`` counts per field."""
    cats = rec.get("categories", rec.get("category"))
    price_raw = rec.get("price")
    price = parse_price(price_raw)
    if price is None and price_raw not in (None, ""):
        repairs["price"]["unparseable_left_empty"] += 1
    return {
        "title": clean_text(rec.get("title"), repairs["title"]),
        "brand": clean_text(rec.get("brand"), repairs["brand"]),
        "categories": categories(cats, roots, repairs["categories"]),
        "description": clean_text(rec.get("description"), repairs["description"]),
        "price": price,
    }


def read_meta(
    path: str, wanted: set[str], roots: set[str], python_first: bool, progress: bool
) -> tuple[dict[str, dict[str, Any]], Counter, dict[str, Counter]]:
    r"""``(rows, counts, repairs)``: the first metadata row of each ``wanted`` item (by asin),
    what was skipped, and the text repairs per field (``roots``: categories dropped)."""
    counts: Counter = Counter()
    repairs: dict[str, Counter] = {f: Counter() for f in ITEM_FIELDS}
    rows: dict[str, dict[str, Any]] = {}
    for _lineno, text in iter_lines(path, "meta", counts, progress):
        # Fast path: most meta rows are for items not kept; skip them without a full parse (the
        # 2014 Python literals are slow to parse). Only when every "asin" key found is unwanted.
        found = _ASIN_KEY.findall(text)
        if found and not any(a.strip() in wanted for a in found):
            counts["rows_for_other_items"] += 1
            continue
        rec, how = parse_object(text, python_first)
        if rec is None:
            counts[how] += 1
            continue
        counts[f"parsed_as_{how}"] += 1
        asin = clean_token_id(rec.get("asin"), counts)
        if asin is None:
            counts["missing_asin"] += 1
        elif asin not in wanted:
            counts["rows_for_other_items"] += 1
        elif asin in rows:
            counts["duplicate_rows"] += 1
        else:
            rows[asin] = _item_row(rec, roots, repairs)
    return rows, counts, repairs
