r"""recbole_fair.tokenizer.text
############################

Rebuild each item's text from the item features a RecBole dataset loaded.

RecBole splits ``token_seq`` fields on ``seq_separator`` and remaps every token to an integer id;
``token`` fields become one id. :func:`build_item_texts` maps the ids back through
``dataset.field2id_token`` and joins the tokens with the separator again, so an item's field text
equals the ``.item`` file's text (up to runs of the separator). ``float`` fields are read back from
the ``.item`` file itself: RecBole fills their missing values with the column mean and, with
``normalize_all: True`` (its default), rescales them to [0, 1], so the loaded values are not the
item's price any more.
"""

from __future__ import annotations

import os
from logging import getLogger
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from recbole.utils import FeatureType

from recbole_fair.errors import DataError

DEFAULT_TEXT_FIELDS = ["title", "price", "brand", "feature", "categories", "description"]
TEXT_TEMPLATES = ("join", "field_value")
#: separator of the field values in the ``join`` template (RPG style: raw values, no labels).
JOIN_SEPARATOR = " "
PAD_TOKEN = "[PAD]"


def item_file_path(dataset: Any) -> str:
    r"""Path of the dataset's ``.item`` atomic file (it may not exist)."""
    return os.path.join(dataset.dataset_path, f"{dataset.dataset_name}.item")


def item_file_fields(dataset: Any) -> list[str]:
    r"""Field names in the header of the dataset's ``.item`` file ([] when there is none)."""
    path = item_file_path(dataset)
    if not os.path.isfile(path):
        return []
    encoding = dataset.config["encoding"] or "utf-8"
    separator = dataset.config["field_separator"] or "\t"
    with open(path, encoding=encoding) as f:
        header = f.readline().rstrip("\r\n")
    return [column.split(":")[0] for column in header.split(separator)]


def _loaded_item_fields(dataset: Any) -> list[str]:
    item_feat = getattr(dataset, "item_feat", None)
    if item_feat is None:
        return []
    columns = list(item_feat.columns) if isinstance(item_feat, pd.DataFrame) else item_feat.columns
    return [c for c in columns if c != dataset.iid_field]


def resolve_text_fields(dataset: Any, text_fields: Sequence[str] | None = None) -> list[str]:
    r"""The fields of ``text_fields`` that the dataset loaded as item features, in that order.

    Args:
        dataset: a RecBole ``Dataset`` (before or after ``build()``).
        text_fields: wanted fields; ``None`` means :data:`DEFAULT_TEXT_FIELDS`.

    Returns:
        list of str: the loaded text fields.

    :data:`DEFAULT_TEXT_FIELDS` is a list of candidates: those the file has are used. Any other
    list is the user's choice, so a field of it that the ``.item`` file does not have is an
    error, as is a field of ``text_fields`` that ``load_col['item']`` names but the file lacks
    (RecBole would skip it without a word, and the semantic IDs would silently be built from the
    other fields).

    Raises:
        DataError: a chosen text field is not a column of the ``.item`` file; the message names
            the file, the field and the file's columns.
        ValueError: none of ``text_fields`` is loaded; the message names the fields looked for,
            the ``.item`` file and its fields, and the ``load_col`` entry to change.
    """
    if text_fields is None:
        text_fields = DEFAULT_TEXT_FIELDS
    wanted = [text_fields] if isinstance(text_fields, str) else list(text_fields)
    loaded = _loaded_item_fields(dataset)
    in_file = item_file_fields(dataset)
    present = [f for f in wanted if f in loaded]
    not_loaded = [f for f in wanted if f not in loaded and f in in_file]
    path = item_file_path(dataset)
    load_col = dataset.config["load_col"]
    item_load_col = load_col.get("item") if isinstance(load_col, dict) else None
    listed = item_load_col if isinstance(item_load_col, (list, tuple)) else []
    chosen = wanted != list(DEFAULT_TEXT_FIELDS)
    absent = [f for f in wanted if f not in loaded and f not in in_file and (chosen or f in listed)]
    if absent and os.path.isfile(path):
        raise DataError(
            f"text_fields={wanted} names {absent}, but the item file [{path}] has no such "
            f"column (its columns: {in_file}). Remove {absent} from text_fields"
            + (" and load_col['item']" if any(f in listed for f in absent) else "")
            + ", or add the column to the file.",
            path=path,
            column=absent[0],
        )
    if present and not_loaded:
        getLogger().warning(
            f"text_fields {not_loaded} are in [{path}] but not loaded, so they are not part of "
            f"the item text; add them to load_col['item'] (now {load_col})."
        )
    if present:
        return present
    if not os.path.isfile(path):
        raise ValueError(
            f"Semantic IDs need item text, but the item file [{path}] does not exist. Provide a "
            f"'.item' atomic file with some of the fields text_fields={wanted}."
        )
    if not_loaded:
        raise ValueError(
            f"No text field is loaded: text_fields={wanted}; the item file [{path}] has "
            f"{not_loaded} but load_col (now {load_col}) does not load them. Add them to "
            f"load_col, e.g. load_col: {{item: [{dataset.iid_field}, {', '.join(not_loaded)}]}}."
        )
    raise ValueError(
        f"No text field found: looked for text_fields={wanted}, but the item file [{path}] has "
        f"the fields {in_file}. Set text_fields (and load_col['item']) to the fields holding "
        f"the item text."
    )


def _row_index(dataset: Any) -> np.ndarray:
    r"""Row of ``item_feat`` holding each internal item id ([item_num], -1 where none)."""
    ids = dataset.item_feat[dataset.iid_field]
    ids = ids.numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    rows = np.full(dataset.item_num, -1, dtype=np.int64)
    rows[ids.astype(np.int64)] = np.arange(len(ids))
    return rows


def _format_number(value: float) -> str:
    if value is None or not np.isfinite(value):
        return ""
    return np.format_float_positional(float(value), trim="-")


def _raw_float_column(dataset: Any, field: str) -> dict[str, str]:
    r"""``{item token: formatted value}`` of a float field, read from the ``.item`` file."""
    path = item_file_path(dataset)
    separator = dataset.config["field_separator"] or "\t"
    encoding = dataset.config["encoding"] or "utf-8"
    with open(path, encoding=encoding) as f:
        header = f.readline().rstrip("\r\n").split(separator)
    names = {c.split(":")[0]: c for c in header}
    df = pd.read_csv(
        path,
        delimiter=separator,
        usecols=[names[dataset.iid_field], names[field]],
        dtype={names[dataset.iid_field]: str, names[field]: str},
        keep_default_na=False,
        encoding=encoding,
        engine="python",
    )
    out = {}
    for token, raw in zip(df[names[dataset.iid_field]].values, df[names[field]].values):
        values = [v for v in str(raw).split(dataset.config["seq_separator"] or " ") if v]
        formatted = []
        for v in values:
            try:
                formatted.append(_format_number(float(v)))
            except ValueError:
                formatted.append(v)
        out[token] = " ".join(f for f in formatted if f)
    return out


def field_texts(dataset: Any, field: str) -> list[str]:
    r"""The text of one item field for every internal item id.

    Args:
        dataset: a RecBole ``Dataset`` whose ``item_feat`` holds ``field``
            (a ``pandas.DataFrame`` before ``build()``, an ``Interaction`` after).
        field: a ``token``, ``token_seq``, ``float`` or ``float_seq`` item field.

    Returns:
        list of str: ``item_num`` strings; index 0 (padding item) and items without a value are
        ``""``.
    """
    n_items = dataset.item_num
    rows = _row_index(dataset)
    ftype = dataset.field2type[field]
    texts = [""] * n_items
    if ftype in (FeatureType.FLOAT, FeatureType.FLOAT_SEQ):
        if os.path.isfile(item_file_path(dataset)):
            raw = _raw_float_column(dataset, field)
            tokens = dataset.field2id_token[dataset.iid_field]
            for item in range(1, n_items):
                texts[item] = raw.get(str(tokens[item]), "")
            return texts
        column = dataset.item_feat[field]  # fallback: values as loaded
        for item in range(1, n_items):
            if rows[item] >= 0:
                value = np.asarray(column[rows[item]]).reshape(-1)
                texts[item] = " ".join(_format_number(v) for v in value)
        return texts

    id2token = dataset.field2id_token[field]
    separator = dataset.config["seq_separator"] or " "
    column = dataset.item_feat[field]
    if isinstance(column, torch.Tensor):
        column = column.numpy()
    elif isinstance(column, pd.Series):
        column = column.values
    empty = np.zeros(0, dtype=np.int64)
    per_item = [
        np.asarray(column[rows[item]]).reshape(-1) if rows[item] >= 0 else empty
        for item in range(1, n_items)
    ]
    # one vectorised look-up for all tokens, then a slice per item
    flat = np.concatenate([empty, *per_item]).astype(np.int64)
    offsets = np.r_[0, np.cumsum([len(ids) for ids in per_item])]
    keep = flat > 0  # 0 is [PAD]: padding of token_seq rows and missing tokens
    kept_offsets = np.r_[0, np.cumsum(keep)][offsets]
    vocabulary = np.asarray(id2token).astype(object)  # str objects, not fixed-width unicode
    tokens = vocabulary[flat[keep]].tolist()
    for item in range(1, n_items):
        start, end = kept_offsets[item - 1], kept_offsets[item]
        texts[item] = separator.join(tokens[start:end])
    return texts


def build_item_texts(
    dataset: Any,
    text_fields: Sequence[str] | None = None,
    template: str = "join",
) -> tuple[list[str], int]:
    r"""One text per internal item id, built from the item's text fields.

    Args:
        dataset: a RecBole ``Dataset`` with the item text fields loaded.
        text_fields: fields to use, in order (those the dataset loaded are used);
            ``None`` = :data:`DEFAULT_TEXT_FIELDS`.
        template: ``join`` (field values joined with a space, no labels, as RPG) or
            ``field_value`` (``"title: ...; brand: ..."``). Empty fields are skipped.

    Returns:
        tuple: ``texts`` (list of ``item_num`` str, index 0 = padding item = ``""``) and the
        number of real items (ids 1..item_num-1) whose text is empty.

    Raises:
        ValueError: unknown ``template``, or no text field loaded (see :func:`resolve_text_fields`).
    """
    if template not in TEXT_TEMPLATES:
        raise ValueError(f"text_template must be one of {list(TEXT_TEMPLATES)}, got [{template}].")
    fields = resolve_text_fields(dataset, text_fields)
    per_field = {field: field_texts(dataset, field) for field in fields}
    texts = [""]
    for item in range(1, dataset.item_num):
        values = [(f, per_field[f][item]) for f in fields if per_field[f][item]]
        if template == "join":
            texts.append(JOIN_SEPARATOR.join(v for _, v in values))
        else:
            texts.append("; ".join(f"{f}: {v}" for f, v in values))
    n_empty = sum(1 for t in texts[1:] if not t.strip())
    return texts, n_empty
