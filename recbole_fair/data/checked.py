r"""recbole_fair.data.checked
##########################

RecBole's dataset classes with two additions, shared by every dataset recbole-fair creates
(its own, which derive from :class:`SequentialDataset` here, and RecBole's, which
:func:`recbole_fair.utils.create_dataset` builds through :func:`create_recbole_dataset`):

* **file checks** before RecBole reads the atomic files
  (:func:`recbole_fair.data.validate.validate_dataset_files`);
* **drop accounting**: every interaction that RecBole's filtering removes is counted with its
  reason, logged, and kept in ``dataset.drop_report``. Reasons that are problems in the data:

  - ``missing_id``: an empty user or item id (or one pandas reads as missing: ``NA``,
    ``null``, ``None``, ``nan``, ...);
  - ``no_item_row`` / ``no_user_row``: the item (user) has no row in the ``.item``
    (``.user``) file, so RecBole's ``filter_inter_by_user_or_item`` (default ``True``) drops
    the interaction.

  Reasons that are the user's own settings: ``duplicate`` (``rm_dup_inter``),
  ``val_interval``, ``inter_num_interval`` (``user_inter_num_interval`` /
  ``item_inter_num_interval``, the k-core filter), and ``other`` (whatever else changed the
  count). When the data problems remove more than ``max_dropped_interactions`` (a share of the
  interactions read, default 0.01; 1.0 disables the check) of the ``.inter`` file, or when no
  interaction is left, the run stops with a :class:`~recbole_fair.errors.DataError` listing
  the reasons. A dataset loaded from a ``save_dataset`` cache is checked again against the
  ``max_dropped_interactions`` of the run that loads it.
"""

from __future__ import annotations

import os
from logging import getLogger
from typing import Any

import pandas as pd
from recbole.data import dataset as recbole_datasets
from recbole.utils import set_color

from recbole_fair.data.validate import validate_dataset_files
from recbole_fair.errors import DataError, UserInputError
from recbole_fair.trusted_files import load_dataset_cache, recbole_dataset_class_name

#: default of the ``max_dropped_interactions`` key (``properties/overall.yaml``).
DEFAULT_MAX_DROPPED = 0.01
_EXAMPLES = 5


def max_dropped_share(config: Any) -> float:
    r"""``max_dropped_interactions`` of the config (default :data:`DEFAULT_MAX_DROPPED`).

    Raises:
        UserInputError: not a number in [0, 1].
    """
    value = config["max_dropped_interactions"]
    if value is None:
        return DEFAULT_MAX_DROPPED
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = float("nan")
    if isinstance(value, bool) or not 0.0 <= share <= 1.0:
        raise UserInputError(
            f"max_dropped_interactions must be a share between 0 and 1 (0.01 = 1% of the "
            f"interactions; 1.0 disables the check), got [{value!r}]."
        )
    return share


def _examples(values: Any) -> str:
    shown = [repr(str(v)) for v in list(values)[:_EXAMPLES]]
    more = ", ..." if len(values) > _EXAMPLES else ""
    return ", ".join(shown) + more


class CheckedDatasetMixin:
    r"""File checks and drop accounting for a RecBole ``Dataset`` subclass (see the module
    docstring); put it first among the bases.

    Attributes:
        atomic_files (dict): ``{suffix: AtomicFile}`` of the checked files.
        drop_report (dict): after loading: ``inter_file``, ``rows_read``, ``rows_kept``,
            ``drops`` (list of ``{reason, count, data_problem, detail}``),
            ``data_problem_rows``, ``max_dropped_interactions``, ``items_without_item_row``
            and ``interactions_without_item_row``. ``None`` when RecBole did not filter
            (``benchmark_filename``).
    """

    atomic_files: dict | None = None
    drop_report: dict | None = None

    # --------------------------------------------------------------------------- checks
    def _load_data(self, token: str, dataset_path: str) -> None:
        if not os.path.exists(dataset_path):
            self._download()  # what RecBole's _load_data does first
        self.atomic_files = validate_dataset_files(
            self.config,
            dataset_path=dataset_path,
            token=token,
            sequential=isinstance(self, recbole_datasets.SequentialDataset),
            knowledge=isinstance(self, recbole_datasets.KnowledgeBasedDataset),
        )
        super()._load_data(token, dataset_path)

    # ------------------------------------------------------------------- drop accounting
    def _data_filtering(self) -> None:
        self._drops: list[dict] = []
        self._rows_read = len(self.inter_feat)
        super()._data_filtering()

    def _file_line(self, label: int) -> int:
        r"""The ``.inter`` file line of a row label of the loaded ``inter_feat`` (RecBole's
        label + 2 when the checks did not record the lines, e.g. with blank lines it is off)."""
        found = (self.atomic_files or {}).get("inter")
        rows = getattr(found, "row_lines", None)
        if rows is not None and 0 <= int(label) < len(rows):
            return int(rows[int(label)])
        return int(label) + 2

    def _note(self, reason: str, dropped: pd.Index, detail: str, data_problem: bool) -> None:
        if len(dropped):
            self._drops.append(
                {
                    "reason": reason,
                    "count": int(len(dropped)),
                    "data_problem": data_problem,
                    "detail": detail,
                }
            )

    def _filter_nan_user_or_item(self) -> None:
        r"""RecBole's step, dropping by index label: RecBole 1.2.1 passes the labels of the
        rows with a missing id to ``index[...]``, i.e. as positions, which after the user-id
        pass (or after ``drop_duplicates`` on a ``.item`` / ``.user`` file) drops other rows
        than the ones with a missing id, or fails with an ``IndexError``."""
        before = self.inter_feat.index.copy()
        for field, name in zip([self.uid_field, self.iid_field], ["user", "item"]):
            feat = getattr(self, name + "_feat")
            if feat is not None and field in feat:
                missing = feat.index[feat[field].isnull()]
                if len(missing):
                    self.logger.warning(
                        f"In {name}_feat, line {list(missing + 2)}, {field} do not exist, so "
                        f"they will be removed."
                    )
                    feat.drop(missing, inplace=True)
                if feat.empty:  # RecBole would stop with "Some feat is empty" after filtering
                    path = os.path.join(self.dataset_path, f"{self.dataset_name}.{name}")
                    raise DataError(
                        f"No row of [{path}] has an id in {field}: it is empty or a value "
                        f"pandas reads as missing (NA, null, None, nan, N/A, ...) on every "
                        f"line, so RecBole would drop the whole file. Give each row its {name} "
                        f"id, or remove the file (or leave '{name}' out of load_col).",
                        path=path,
                        column=field,
                    )
            if field is not None and field in self.inter_feat:
                missing = self.inter_feat.index[self.inter_feat[field].isnull()]
                if len(missing):
                    self.logger.warning(
                        f"In inter_feat, line {list(missing + 2)}, {field} do not exist, so "
                        f"they will be removed."
                    )
                    self.inter_feat.drop(missing, inplace=True)
        dropped = before.difference(self.inter_feat.index)
        lines = [str(self._file_line(i)) for i in dropped[:_EXAMPLES]]
        more = ", ..." if len(dropped) > _EXAMPLES else ""
        self._note(
            "missing_id",
            dropped,
            f"{self.uid_field} or {self.iid_field} empty, or a value pandas reads as missing "
            f"(NA, null, None, nan, N/A, ...): lines {', '.join(lines)}{more}",
            True,
        )

    def _remove_duplication(self) -> None:
        before = self.inter_feat.index.copy()
        super()._remove_duplication()
        keep = self.config["rm_dup_inter"]
        self._note(
            "duplicate",
            before.difference(self.inter_feat.index),
            f"repeated ({self.uid_field}, {self.iid_field}) pairs, rm_dup_inter: {keep}",
            False,
        )

    def _filter_by_field_value(self) -> None:
        before = self.inter_feat.index.copy()
        super()._filter_by_field_value()
        self._note(
            "val_interval",
            before.difference(self.inter_feat.index),
            f"val_interval: {self.config['val_interval']}",
            False,
        )

    def _filter_inter_by_user_or_item(self) -> None:
        columns = [f for f in (self.uid_field, self.iid_field) if f in self.inter_feat]
        before = self.inter_feat[columns].copy()
        super()._filter_inter_by_user_or_item()
        dropped = before.loc[before.index.difference(self.inter_feat.index)]
        if not len(dropped):
            return
        no_item = pd.Series(False, index=dropped.index)
        if self.item_feat is not None and self.iid_field in dropped:
            no_item = ~dropped[self.iid_field].isin(self.item_feat[self.iid_field].values)
        for reason, rows, source in (
            ("no_item_row", dropped[no_item], "item"),
            ("no_user_row", dropped[~no_item], "user"),
        ):
            if not len(rows):
                continue
            field = self.iid_field if source == "item" else self.uid_field
            ids = pd.unique(rows[field])
            path = os.path.join(self.dataset_path, f"{self.dataset_name}.{source}")
            self._drops.append(
                {
                    "reason": reason,
                    "count": int(len(rows)),
                    "data_problem": True,
                    "detail": f"the {source} has no row in [{path}]: {len(ids)} "
                    f"{source}s, e.g. {_examples(ids)}",
                    "ids": int(len(ids)),
                }
            )

    def _filter_by_inter_num(self) -> None:
        before = self.inter_feat.index.copy()
        super()._filter_by_inter_num()
        self._note(
            "inter_num_interval",
            before.difference(self.inter_feat.index),
            f"user_inter_num_interval: {self.config['user_inter_num_interval']}, "
            f"item_inter_num_interval: {self.config['item_inter_num_interval']} "
            f"(interactions per user / item)",
            False,
        )

    def _reset_index(self) -> None:
        if getattr(self, "_drops", None) is not None:
            self._finish_drop_accounting()  # stops the run when no interaction is left
        for source in ("user", "item"):
            feat = getattr(self, f"{source}_feat", None)
            if feat is not None and feat.empty:  # RecBole: a bare "Some feat is empty"
                key = f"{source}_inter_num_interval"
                path = os.path.join(self.dataset_path, f"{self.dataset_name}.{source}")
                raise DataError(
                    f"No row of [{path}] is left after RecBole's filtering: {key} "
                    f"({self.config[key]}) dropped every {source} of the file (one without "
                    f"interactions has 0). Relax {key} or fix the data.",
                    path=path,
                )
        super()._reset_index()

    def _finish_drop_accounting(self) -> None:
        drops, rows_read = self._drops, self._rows_read
        self._drops = None
        for found in (self.atomic_files or {}).values():
            found.row_lines = None  # only needed for the line numbers above
        kept = len(self.inter_feat)
        other = rows_read - kept - sum(d["count"] for d in drops)
        if other:
            drops.append(
                {
                    "reason": "other",
                    "count": int(other),
                    "data_problem": False,
                    "detail": f"{type(self).__name__}'s own filtering",
                }
            )
        data_rows = sum(d["count"] for d in drops if d["data_problem"])
        no_item = next((d for d in drops if d["reason"] == "no_item_row"), None)
        inter_file = os.path.join(self.dataset_path, f"{self.dataset_name}.inter")
        self.drop_report = {
            "inter_file": inter_file,
            "rows_read": int(rows_read),
            "rows_kept": int(kept),
            "drops": drops,
            "data_problem_rows": int(data_rows),
            "max_dropped_interactions": max_dropped_share(self.config),
            "items_without_item_row": no_item["ids"] if no_item else 0,
            "interactions_without_item_row": no_item["count"] if no_item else 0,
        }
        listing = "; ".join(f"{d['count']:,} dropped: {d['detail']}" for d in drops)
        getLogger().info(
            set_color("interactions", "pink")
            + f": {rows_read:,} read from [{inter_file}], {kept:,} kept"
            + (f" ({listing})" if drops else "")
        )
        check_drop_report(self.drop_report)


def check_drop_report(report: dict) -> None:
    r"""Stop the run when a ``drop_report`` (see :class:`CheckedDatasetMixin`) is over its
    ``max_dropped_interactions`` or keeps no interaction; warn about the interactions dropped
    because of problems in the data within it.

    Run when the filtering ends, and again on a dataset loaded from a ``save_dataset`` cache
    (:func:`create_recbole_dataset`), whose report then holds the current
    ``max_dropped_interactions``: the cache may have been built under another one.

    Raises:
        DataError: more interactions dropped by problems in the data than
            ``max_dropped_interactions`` allows, or none left.
    """
    drops, rows_read, kept = report["drops"], report["rows_read"], report["rows_kept"]
    data_rows, share = report["data_problem_rows"], report["max_dropped_interactions"]
    inter_file = report["inter_file"]
    reasons = "\n".join(f"  - {d['count']:,}: {d['detail']}" for d in drops if d["data_problem"])
    if rows_read and data_rows / rows_read > share:
        fix = "Fix the data"
        if report["interactions_without_item_row"]:
            fix += (
                " (add rows for the missing items to the .item file, or set "
                "filter_inter_by_user_or_item: False to keep their interactions, the items "
                "then having no features or text)"
            )
        raise DataError(
            f"{data_rows:,} of the {rows_read:,} interactions in [{inter_file}] "
            f"({data_rows / rows_read:.1%}) would be dropped because of problems in the "
            f"data:\n{reasons}\nThat is more than max_dropped_interactions = {share:g} "
            f"allows. {fix}, or set max_dropped_interactions: "
            f"{min(1.0, data_rows / rows_read + 0.005):.2f} to drop them knowingly (1.0 "
            f"disables this check).",
            path=inter_file,
        )
    if data_rows:
        getLogger().warning(
            f"{data_rows:,} of the {rows_read:,} interactions in [{inter_file}] "
            f"({data_rows / rows_read:.2%}) were dropped because of problems in the data "
            f"(within max_dropped_interactions = {share:g}):\n{reasons}"
        )
    if kept == 0:
        everything = "\n".join(f"  - {d['count']:,}: {d['detail']}" for d in drops)
        raise DataError(
            f"No interaction of [{inter_file}] is left after RecBole's filtering "
            f"({rows_read:,} read):\n{everything}\nRelax these filters (e.g. "
            f"user_inter_num_interval / item_inter_num_interval) or fix the data.",
            path=inter_file,
        )


# --------------------------------------------------------------------- RecBole's classes
class Dataset(CheckedDatasetMixin, recbole_datasets.Dataset):
    r"""RecBole's ``Dataset`` with file checks and drop accounting."""


class SequentialDataset(CheckedDatasetMixin, recbole_datasets.SequentialDataset):
    r"""RecBole's ``SequentialDataset`` with file checks and drop accounting."""


class KnowledgeBasedDataset(CheckedDatasetMixin, recbole_datasets.KnowledgeBasedDataset):
    r"""RecBole's ``KnowledgeBasedDataset`` with file checks and drop accounting."""


class KGSeqDataset(CheckedDatasetMixin, recbole_datasets.KGSeqDataset):
    r"""RecBole's ``KGSeqDataset`` with file checks and drop accounting."""


class DecisionTreeDataset(CheckedDatasetMixin, recbole_datasets.DecisionTreeDataset):
    r"""RecBole's ``DecisionTreeDataset`` with file checks and drop accounting."""


class GRU4RecKGDataset(CheckedDatasetMixin, recbole_datasets.GRU4RecKGDataset):
    r"""RecBole's ``GRU4RecKGDataset`` with file checks and drop accounting."""


class KSRDataset(CheckedDatasetMixin, recbole_datasets.KSRDataset):
    r"""RecBole's ``KSRDataset`` with file checks and drop accounting."""


class DIENDataset(CheckedDatasetMixin, recbole_datasets.DIENDataset):
    r"""RecBole's ``DIENDataset`` with file checks and drop accounting."""


CHECKED_CLASSES = {
    cls.__name__: cls
    for cls in (
        Dataset,
        SequentialDataset,
        KnowledgeBasedDataset,
        KGSeqDataset,
        DecisionTreeDataset,
        GRU4RecKGDataset,
        KSRDataset,
        DIENDataset,
    )
}


def recbole_dataset_class(config: Any) -> type:
    r"""The class RecBole's ``create_dataset`` picks for ``config``
    (:func:`recbole_fair.trusted_files.recbole_dataset_class_name`), as its checked subclass here
    (RecBole's own class for one this module does not know)."""
    name = recbole_dataset_class_name(config)
    return CHECKED_CLASSES.get(name) or getattr(recbole_datasets, name)


def create_recbole_dataset(config: Any) -> Any:
    r"""RecBole's ``create_dataset`` (1.2.1) with the checked classes: a dataset saved by
    ``save_dataset`` is loaded when this installation signed it and its dataset arguments are
    unchanged (:func:`recbole_fair.trusted_files.load_dataset_cache`), and its ``drop_report`` is
    checked against the current ``max_dropped_interactions`` (:func:`check_drop_report`), as
    a rebuilt one would be.

    Raises:
        recbole_fair.errors.DataError: see :class:`CheckedDatasetMixin`.
        recbole_fair.errors.UserInputError: a bad ``max_dropped_interactions``.
    """
    dataset_class = recbole_dataset_class(config)
    share = max_dropped_share(config)
    dataset = load_dataset_cache(config, dataset_class)
    if dataset is not None:
        report = getattr(dataset, "drop_report", None)
        if report is not None:
            report["max_dropped_interactions"] = share
            check_drop_report(report)
        return dataset
    dataset = dataset_class(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


__all__ = [
    "DEFAULT_MAX_DROPPED",
    "CheckedDatasetMixin",
    "CHECKED_CLASSES",
    "check_drop_report",
    "max_dropped_share",
    "recbole_dataset_class",
    "create_recbole_dataset",
    *CHECKED_CLASSES,
]
