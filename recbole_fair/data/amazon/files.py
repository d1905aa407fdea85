r"""Reading the raw Amazon files: gzipped or plain lines, each a JSON object or a Python dict
literal, and the 2014 / 2018 format detection (see :mod:`recbole_fair.data.prepare_amazon`)."""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import sys
import zlib
from collections import Counter
from typing import Iterator


def open_binary(path: str):
    r"""(stream, raw file): a gzip stream when the file starts with the gzip magic, else the file."""
    raw = open(path, "rb")  # closed by the caller
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def iter_lines(path: str, desc: str, counts: Counter, progress: bool) -> Iterator[tuple[int, str]]:
    r"""Yield ``(line number, decoded text)`` of non-blank lines; count blank/undecodable lines.

    A truncated or corrupt gzip stops the reading with ``counts['read_error']`` set (and a warning
    in the summary) instead of an exception: the lines read so far are kept.
    """
    from tqdm import tqdm

    stream, raw = open_binary(path)
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


def _parse_json(text: str):
    return json.loads(text)


def _parse_python(text: str):
    return ast.literal_eval(text.strip())


def parse_object(text: str, python_first: bool) -> tuple[dict | None, str]:
    r"""Parse one line as a JSON object or a Python dict literal: ``(obj, how)``.

    ``how`` is ``json`` / ``python`` on success, ``malformed`` or ``not_an_object`` otherwise.
    """
    parsers = [("json", _parse_json), ("python", _parse_python)]
    if python_first:
        parsers.reverse()
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
        stream, raw = open_binary(path)
        with raw, stream:
            for i, line in enumerate(stream):
                if i >= 200 or len(objs) >= n:
                    break
                text = line.decode("utf-8", "replace").lstrip("\ufeff")
                if not text.strip():
                    continue
                obj, how = parse_object(text, python_first=False)
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


def category_from_filename(path: str) -> str | None:
    r"""The category in a file name: ``Beauty`` for ``reviews_Beauty_5.json.gz``,
    ``Beauty_5.json`` or ``meta_Beauty.json.gz``."""
    stem = _stem(path)
    for prefix in ("reviews_", "meta_"):
        if stem.startswith(prefix):
            stem = stem[len(prefix) :]
    stem = re.sub(r"_5$", "", stem)
    return stem or None
