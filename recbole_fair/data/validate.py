r"""recbole_fair.data.validate
###########################

Checks of RecBole atomic files, run before RecBole reads them (by every dataset class of
recbole-fair, see :mod:`recbole_fair.data.checked`), so that a bad file stops the run with a
:class:`~recbole_fair.errors.DataError` naming the file, the column, the first bad line and
its value and what to do, instead of a pandas traceback or a silently different dataset.

What is checked, per file RecBole will read (``.inter`` or the ``benchmark_filename`` files,
``.user`` and ``.item`` when ``load_col`` loads them, ``additional_feat_suffix`` files, the
``.kg`` / ``.link`` files of knowledge-aware datasets):

* the bytes decode with ``encoding`` (no byte-order mark under ``utf-8``: RecBole would read it
  as part of the first column's name);
* the header: one ``name:type`` per column, ``type`` one of ``token``, ``token_seq``,
  ``float``, ``float_seq``, no empty or repeated names, a hint when the columns look separated
  by something other than ``field_separator``;
* the required columns exist, are loaded (``load_col`` / ``unload_col``) and have the right
  type: ``USER_ID_FIELD`` and ``ITEM_ID_FIELD`` (``token``) in ``.inter``, ``ITEM_ID_FIELD`` in
  ``.item``, ``USER_ID_FIELD`` in ``.user``, and ``TIME_FIELD`` (``float``, no empty value)
  when the dataset is sequential (RecBole orders each user's history by it) or
  ``eval_args.order`` is ``TO``. ``load_col`` fields that a file lacks are only warned about:
  RecBole's own default ``load_col`` names ``rating``, which many files do not have;
* the rows, as ``pandas.read_csv`` (RecBole's reader, python engine) will see them: no row
  with more fields than the header, even empty ones (on the first row pandas takes the first
  column as the index and shifts every column; on later rows it can empty or lose whole rows),
  no field starting with a double quote that does not close as CSV quoting requires (pandas
  would merge lines or fail without a line number), and every value of a loaded ``float``
  column parses as a number (``float(value)``, as pandas converts it; each space-separated
  value of a ``float_seq`` column). Blank lines are skipped, as pandas skips them; shorter rows
  are allowed (the missing values are empty). ``tests/test_data_fuzz.py`` checks that a file
  these checks accept is read by RecBole's reader with the number of rows counted here.

Empty user or item ids are not errors here: RecBole drops those rows, and the drop accounting of
:mod:`recbole_fair.data.checked` counts them. The checks read each file once, as text
(about 0.3 s for the 198,502 rows of Amazon_Beauty.inter).

This module holds the dataset-level checks (which files, which columns they need); the checks of
one file are in :mod:`recbole_fair.data.atomic` (re-exported here).
"""

from __future__ import annotations

import os
import time
from logging import getLogger
from typing import Any, Iterator

from recbole_fair.data.atomic import (
    FEATURE_TYPES,
    NA_VALUES,
    AtomicFile,
    Requirement,
    Where,
    parse_header,
    read_header,
    split_quoted,
    validate_atomic_file,
)
from recbole_fair.data.download import recbole_url
from recbole_fair.errors import UserInputError
from recbole_fair.paths import DATA_PATH_ENV


def load_and_unload(config: Any, source: str) -> tuple[set | None, set | None]:
    r"""RecBole's reading of ``load_col`` / ``unload_col`` for one file suffix: ``(load,
    unload)``, ``load`` ``None`` = every column, ``set()`` = the file is not read."""
    load_col = config["load_col"]
    if load_col is None:
        load = None
    elif source not in load_col:
        load = set()
    elif load_col[source] == "*":
        load = None
    else:
        load = set(load_col[source])
    unload_col = config["unload_col"]
    unload = set(unload_col[source]) if unload_col and source in unload_col else None
    return load, unload


def time_field_reason(config: Any, sequential: bool) -> str | None:
    r"""Why the run needs ``TIME_FIELD`` (``None``: it does not): a sequential dataset orders
    each user's history by it, ``eval_args.order: TO`` sorts the interactions by it."""
    reasons = []
    if sequential and not config["benchmark_filename"]:
        reasons.append("sequential models order each user's history by it")
    eval_args = config["eval_args"] or {}
    if isinstance(eval_args, dict) and eval_args.get("order") == "TO":
        reasons.append(
            "eval_args.order is TO (the split is in time order; set eval_args: {order: RO} "
            "for a random order with a non-sequential model)"
        )
    return " and ".join(reasons) or None


def missing_dataset_message(dataset: str, inter_path: str) -> str:
    r"""What to say when the dataset's ``.inter`` file ``inter_path`` is missing: where we
    looked, how to point ``--data_path`` at the files, how to prepare or download them. Raised
    by :func:`recbole_fair.quick_start.check_data_files` before a run and by
    :func:`validate_dataset_files` for a dataset created without it."""
    url = recbole_url(dataset)
    hint = (
        f" Or pass --download=True to fetch RecBole's own copy ({url}): not the papers' split, "
        "see docs/prepare_amazon.md."
        if url
        else ""
    )
    return (
        f"Dataset [{dataset}] not found: looked for {os.path.abspath(inter_path)}. Point "
        f"--data_path (or the environment variable {DATA_PATH_ENV}) at the folder that contains "
        f"a '{dataset}/' folder of RecBole atomic files ({dataset}.inter, {dataset}.item with "
        "item text), e.g. --data_path=../shared/datasets for the prepared Amazon benchmarks, or "
        "prepare them from the raw Amazon review downloads with python -m "
        "recbole_fair.data.prepare_amazon (docs/prepare_amazon.md)." + hint
    )


def _inter_requirements(config: Any, sequential: bool) -> list[Requirement]:
    r"""The columns the ``.inter`` file(s) must have: the user and item ids, and the time when
    the run needs it (:func:`time_field_reason`).

    Raises:
        UserInputError: ``TIME_FIELD`` unset although the run needs it.
    """
    uid, iid, time_field = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]
    required = []
    if uid:
        required.append(
            Requirement(uid, "token", "USER_ID_FIELD", "names the user of each interaction")
        )
    if iid:
        required.append(
            Requirement(iid, "token", "ITEM_ID_FIELD", "names the item of each interaction")
        )
    reason = time_field_reason(config, sequential)
    if reason:
        if not time_field:
            raise UserInputError(
                f"TIME_FIELD is not set, but {reason}. Set TIME_FIELD to the name of the "
                f".inter column holding each interaction's time (e.g. TIME_FIELD: timestamp)."
            )
        required.append(Requirement(time_field, "float", "TIME_FIELD", reason, True))
    return required


def _inter_files(config: Any, dataset_path: str, token: str) -> Iterator[tuple[str, str]]:
    r"""``(key, path)`` of each interaction file, checked to exist just before it is yielded:
    ``inter``, or ``inter.<name>`` per ``benchmark_filename``.

    Raises:
        DataError: the next one is missing.
    """
    benchmark = config["benchmark_filename"]
    if not benchmark:
        path = os.path.join(dataset_path, f"{token}.inter")
        if not os.path.isfile(path):
            # a run checked this first (quick_start.check_data_files): the same message for a
            # dataset created without it
            raise Where(path).error(missing_dataset_message(token, path))
        yield "inter", path
        return
    for b in benchmark:
        path = os.path.join(dataset_path, f"{token}.{b}.inter")
        if not os.path.isfile(path):
            raise Where(path).error(
                f"The interaction file [{path}] does not exist, but benchmark_filename "
                f"{list(benchmark)} names it. Put the split files "
                f"({', '.join(f'{token}.{b}.inter' for b in benchmark)}) in [{dataset_path}], "
                f"or fix benchmark_filename.",
            )
        yield f"inter.{b}", path


def _other_files(config: Any, knowledge: bool) -> list[tuple[str, list[str]]]:
    r"""``[(suffix, id fields), ...]`` of the other files RecBole reads when they exist."""
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    files = [("user", [uid] if uid else []), ("item", [iid] if iid else [])]
    if knowledge:
        files += [("kg", []), ("link", [])]
    return files + [(suffix, []) for suffix in config["additional_feat_suffix"] or []]


def _warn_unloaded_columns(config: Any, checked: dict[str, AtomicFile]) -> None:
    r"""A warning per file whose ``load_col`` names columns it does not have."""
    for source, found in checked.items():
        load, _ = load_and_unload(config, source.split(".")[0])
        missing = sorted(f for f in load or () if f not in found.fields)
        if missing:
            getLogger().warning(
                f"load_col['{source.split('.')[0]}'] names {missing}, which [{found.path}] does "
                f"not have (its columns: {found.fields}); {'they are' if len(missing) > 1 else 'it is'} "
                f"not loaded."
            )


def validate_dataset_files(
    config: Any,
    dataset_path: str | None = None,
    token: str | None = None,
    sequential: bool = False,
    knowledge: bool = False,
) -> dict[str, AtomicFile]:
    r"""Check every atomic file RecBole will read for this config (see the module docstring).

    Args:
        config: a RecBole ``Config``.
        dataset_path: the folder of the files (default ``config['data_path']``).
        token: the dataset name (default ``config['dataset']``).
        sequential: the dataset is a ``SequentialDataset`` (needs ``TIME_FIELD``).
        knowledge: the dataset reads ``.kg`` and ``.link`` files too.

    Returns:
        dict: ``{file suffix: AtomicFile}`` of the files checked (``inter`` for the
        ``.inter`` file; ``inter.<name>`` for ``benchmark_filename`` files).

    Raises:
        DataError: a file problem (see :func:`validate_atomic_file`).
        UserInputError: ``TIME_FIELD`` unset although the run needs it.
    """
    start = time.perf_counter()
    dataset_path = dataset_path or config["data_path"]
    token = token or config["dataset"]
    options = dict(
        separator=config["field_separator"] or "\t",
        encoding=config["encoding"] or "utf-8",
        seq_separator=config["seq_separator"] if config["seq_separator"] is not None else " ",
    )
    inter_required = _inter_requirements(config, sequential)
    checked: dict[str, AtomicFile] = {}
    load, unload = load_and_unload(config, "inter")
    for key, path in _inter_files(config, dataset_path, token):
        checked[key] = validate_atomic_file(
            path, **options, load=load, unload=unload, requirements=inter_required,
            source="inter",
        )  # fmt: skip
    for source, ids in _other_files(config, knowledge):
        path = os.path.join(dataset_path, f"{token}.{source}")
        load, unload = load_and_unload(config, source)
        if load == set() or not os.path.isfile(path):
            continue
        key = "USER_ID_FIELD" if source == "user" else "ITEM_ID_FIELD"
        requirements = [
            Requirement(f, "token", key, f"identifies the rows of the .{source} file") for f in ids
        ]
        checked[source] = validate_atomic_file(
            path, **options, load=load, unload=unload, requirements=requirements,
            source=source,
        )  # fmt: skip
    _warn_unloaded_columns(config, checked)
    getLogger().debug(
        f"checked the atomic files {[f.path for f in checked.values()]} in "
        f"{time.perf_counter() - start:.2f}s"
    )
    return checked


__all__ = [
    "FEATURE_TYPES",
    "NA_VALUES",
    "AtomicFile",
    "Requirement",
    "load_and_unload",
    "missing_dataset_message",
    "parse_header",
    "read_header",
    "split_quoted",
    "time_field_reason",
    "validate_atomic_file",
    "validate_dataset_files",
]
