r"""Cleaning of the raw Amazon values: ids, text fields, numbers, review times, prices and
categories (the rules are listed in :mod:`recbole_fair.data.prepare_amazon`)."""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
from collections import Counter
from typing import Any, Iterator

_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")  # \s below covers \t\n\v\f\r and \x1c-\x1f
_SPACE = re.compile(r"\s+")
_UNUSUAL_SPACE = re.compile(r"[^\S ]| {2}")  # any white space but a single plain space
_PRICE = re.compile(r"^[$£€¥]?\s*([0-9][0-9,]*(?:\.[0-9]+)?|\.[0-9]+)$")


def norm_category(text: str) -> str:
    r"""A category name compared loosely: lower case, ``&`` = ``and``, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("&", "and"))


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


def parse_number(value: Any) -> float | None:
    r"""A finite number from a number or a numeric string, else ``None``."""
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


def parse_review_time(value: Any) -> float | None:
    r"""``reviewTime`` (``"01 30, 2014"``) as a UTC-midnight unix time."""
    if not isinstance(value, str):
        return None
    try:
        day = _dt.datetime.strptime(value.strip(), "%m %d, %Y")
    except ValueError:
        return None
    return float(day.replace(tzinfo=_dt.timezone.utc).timestamp())


def parse_price(value: Any) -> float | None:
    r"""A price from a number or a string such as ``"$1,299.00"``, else ``None``."""
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
    r"""One cleaned text field (see :mod:`recbole_fair.data.prepare_amazon`); ``repairs``
    counts what was changed."""
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


def clean_token_id(value: Any, counts: Counter) -> str | None:
    r"""A user / item id, or ``None`` when missing; an id that would break the file is repaired."""
    text = _clean_id(value)
    if text is None:
        return None
    if _UNUSUAL_SPACE.search(text) or text.startswith('"'):
        counts["ids_repaired"] += 1
        text = clean_text(text) or None
    return text


def categories(value: Any, roots: set[str], repairs: Counter) -> str:
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
            if not text or (depth == 0 and norm_category(text) in roots):
                continue
            if text not in seen:
                seen.add(text)
                out.append(text)
    return ", ".join(out)
