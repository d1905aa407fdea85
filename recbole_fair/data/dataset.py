r"""recbole_fair.data.dataset
##########################

RecBole sequential datasets that carry semantic IDs.

:class:`SemanticIDDataset` is RecBole's :class:`~recbole.data.dataset.SequentialDataset` plus

* the item texts, rebuilt from the loaded item text fields when the dataset is created;
* after :meth:`build`, the semantic IDs of every item, fitted on the training-split items only
  and attached to the dataset and to each split: ``item_codes`` (LongTensor
  ``[item_num, n_codes]``: the code at each digit of every item, row 0 = padding item; see the
  glossary of :mod:`recbole_fair.tokenizer`), ``semantic_id_report``,
  ``semantic_id_cache_key``, ``semantic_id_cache_path``, ``item_text_embeddings``,
  ``train_item_mask`` and ``train_target_counts`` (LongTensor ``[item_num]``: how often each item
  is a training target, counted before ``all_positions`` keeps one row per window);
* ``train_mode: all_positions``: the training split keeps one row per window of
  ``MAX_ITEM_LIST_LENGTH`` targets, which the model trains at every position in one causal pass
  (``train_mode: prefix`` keeps RecBole's one row per prefix). Under leave-one-out in time order
  (the default ``eval_args``) the dropped training rows are never built
  (:mod:`recbole_fair.data.window_rows`): the splits are the same, at a fraction of the memory.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType, set_color

from recbole_fair.data.checked import SequentialDataset
from recbole_fair.data.item_counts import count_items
from recbole_fair.data.window_rows import (
    WindowRows,
    all_positions_row_index,
    gather_lists,
    plan_window_rows,
)
from recbole_fair.errors import DataError
from recbole_fair.parallel import build_once
from recbole_fair.tokenizer import (
    SemanticIDs,
    SemanticIDSettings,
    build_semantic_ids,
    sharded_encoder_fn,
)
from recbole_fair.tokenizer.cache import cache_file, semantic_id_cache_key
from recbole_fair.tokenizer.text import (
    build_item_texts,
    item_file_fields,
    item_file_path,
    resolve_text_fields,
)

TRAIN_MODES = ("all_positions", "prefix")


class SemanticIDDataset(SequentialDataset):
    r"""Sequential dataset with item semantic IDs (see the module docstring).

    Config keys (``properties/semantic_ids.yaml``): ``text_fields``, ``text_template``,
    ``text_encoder``, ``text_encode_batch_size``, ``text_encode_dtype``, ``sid_pca_dim``,
    ``sid_pca_whiten``, ``sid_opq_iterations``, ``sid_seed``, ``sid_cache_dir``,
    ``sid_drop_text_fields``, ``train_mode``; ``n_codes`` (digits ``L``) and ``codebook_size``
    (codes per digit ``K``), in the model YAML. The item text fields must be in
    ``load_col['item']``.

    Attributes:
        encoder_fn (callable, optional): class-level hook ``list[str] -> [n, d] float32``
            replacing the sentence-transformers encoder (tests set a fast fake with
            ``monkeypatch.setattr(SemanticIDDataset, "encoder_fn", fake)``).
        item_texts (list of str): one text per internal item id (index 0 = padding item).
        items_without_text (int): real items with empty text.
        items_without_item_row (int), interactions_without_item_row (int): items of the
            ``.inter`` file that have no ``.item`` row, and their interactions, which RecBole
            dropped (``drop_report``; also in ``semantic_id_report``).
        text_fields (list of str): the text fields in use.
        item_codes (torch.LongTensor): ``[item_num, n_codes]`` after :meth:`build`.
        item_text_embeddings (torch.FloatTensor): ``[item_num, d]`` after :meth:`build`.
        train_item_mask (numpy.ndarray): bool ``[item_num]`` after :meth:`build`.
        semantic_id_report (dict): quality report after :meth:`build`.
        semantic_id_cache_key (str), semantic_id_cache_path (str): the cache file.
        window_rows_only (bool): class-level switch, ``True``: ``train_mode: all_positions``
            under leave-one-out in time order builds only the rows it keeps
            (:meth:`data_augmentation`); ``False``: RecBole's one row per prefix, thinned
            after the split (tests compare the two).
        window_rows (WindowRows, optional): between :meth:`data_augmentation` and the end of
            :meth:`build`, the plan of the rows built (``None`` when RecBole built them all).
    """

    encoder_fn: Callable[[list], np.ndarray] | None = None
    window_rows_only: bool = True
    window_rows: WindowRows | None = None

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.train_mode = config["train_mode"] or "all_positions"
        if self.train_mode not in TRAIN_MODES:
            raise ValueError(
                f"train_mode must be one of {list(TRAIN_MODES)}, got [{self.train_mode}]."
            )
        self.sid_settings = SemanticIDSettings.from_config(config)
        self.text_fields = resolve_text_fields(self, self.sid_settings.text_fields)
        self.sid_settings.text_fields = list(self.text_fields)
        self.item_texts, self.items_without_text = build_item_texts(
            self, self.text_fields, self.sid_settings.text_template
        )
        drops = self.drop_report or {}
        self.items_without_item_row = int(drops.get("items_without_item_row", 0))
        self.interactions_without_item_row = int(drops.get("interactions_without_item_row", 0))
        no_row = (
            f"; {self.items_without_item_row} more items of the .inter file have no row in "
            f"[{item_file_path(self)}]: they and their {self.interactions_without_item_row} "
            f"interactions were dropped"
            if self.items_without_item_row
            else ""
        )
        self.logger.info(
            set_color("item texts", "pink")
            + f": {self.item_num - 1} items from fields {self.text_fields} "
            f"({self.items_without_text} without text{no_row})"
        )
        self._check_some_text()
        if config["sid_drop_text_fields"] is not False:
            # RecBole joins every item feature into every batch; the texts are kept above.
            for field in self.text_fields:
                if self.field2source.get(field) == FeatureSource.ITEM:
                    self._del_col(self.item_feat, field)
        self.item_codes: torch.Tensor | None = None
        self.semantic_id_report: dict | None = None
        self.semantic_id_cache_key: str | None = None
        self.semantic_id_cache_path: str | None = None

    # ----------------------------------------------------------------------------- helpers
    def _check_some_text(self) -> None:
        r"""Stop when no item has any text: every item would get the embedding of the empty
        string, hence the same codes (``sid_method: random`` draws codes without the text, so
        there it is only the warning of the semantic-ID report)."""
        n_items = self.item_num - 1
        if n_items <= 0 or self.items_without_text < n_items:
            return
        if self.sid_settings.sid_method == "random":
            self.logger.warning(
                f"None of the {n_items} items has text in {self.text_fields}; sid_method "
                f"random does not use it."
            )
            return
        path = item_file_path(self)
        raise DataError(
            f"None of the {n_items} items has any text in the text fields {self.text_fields} "
            f"of [{path}] (columns: {item_file_fields(self)}): every item would get the "
            f"embedding of the empty string, hence the same semantic ID. Fill these columns, "
            f"or name the columns that hold the item text in text_fields and load_col['item'].",
            path=path,
        )

    def _item_list_field(self) -> str:
        return getattr(
            self, f"{self.iid_field}_list_field", self.iid_field + self.config["LIST_SUFFIX"]
        )

    def training_item_mask(self, train_dataset: SequentialDataset) -> np.ndarray:
        r"""Items that occur in the training split, as target or in a history.

        Args:
            train_dataset: the training split returned by ``build()``.

        Returns:
            numpy.ndarray: bool ``[item_num]``; the padding item 0 is False.
        """
        inter = train_dataset.inter_feat
        mask = np.zeros(self.item_num, dtype=bool)
        mask[inter[self.iid_field].numpy()] = True
        list_field = self._item_list_field()
        if list_field in inter:
            mask[inter[list_field].numpy().reshape(-1)] = True
        mask[0] = False
        return mask

    # ------------------------------------------------------------------ all-position rows
    def _builds_window_rows_only(self) -> bool:
        r"""Whether :meth:`data_augmentation` builds only the rows ``train_mode:
        all_positions`` keeps: under RecBole's leave-one-out split in time order, without
        benchmark files (elsewhere RecBole builds one row per prefix)."""
        args = self.config["eval_args"] or {}
        return (
            self.window_rows_only
            and self.train_mode == "all_positions"
            and self.config["benchmark_filename"] is None
            and args.get("order") == "TO"
            and dict(args.get("split") or {}) == {"LS": "valid_and_test"}
        )

    def data_augmentation(self) -> None:
        r"""RecBole's augmentation (one row per prefix), or, where
        :meth:`_builds_window_rows_only`, the same rows less the training rows that
        ``all_positions`` drops, which are never built (:mod:`recbole_fair.data.window_rows`);
        :meth:`build` then splits them as RecBole splits all of them."""
        self.window_rows = None
        if not self._builds_window_rows_only():
            super().data_augmentation()
            return
        self._aug_presets()
        self._check_field("uid_field", "time_field")
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        inter = self.inter_feat
        plan = plan_window_rows(
            inter[self.uid_field].numpy(), inter[self.time_field].numpy(), self.max_item_list_len
        )
        self.train_target_counts = count_items(
            inter[self.iid_field][torch.from_numpy(plan.train_targets)], self.item_num
        )
        rows = inter[torch.from_numpy(plan.target)]
        lists = {self.item_list_length_field: torch.from_numpy(plan.length)}
        for field in inter:
            if field == self.uid_field:
                continue
            list_field = getattr(self, f"{field}_list_field")
            list_len = self.field2seqlen[list_field]
            shape = (len(rows),) + (list_len if isinstance(list_len, tuple) else (list_len,))
            if (
                self.field2type[field] in (FeatureType.FLOAT, FeatureType.FLOAT_SEQ)
                and field in self.config["numerical_features"]
            ):
                shape += (2,)
            lists[list_field] = gather_lists(inter[field], plan.start, plan.length, shape)
        rows.update(Interaction(lists))
        self.inter_feat = rows
        self.window_rows = plan

    def _grouped_index(self, group_by_list: Any) -> Any:
        # the users in the order RecBole's split of every prefix row would list them
        if self.window_rows is None:
            return super()._grouped_index(group_by_list)
        return self.window_rows.grouped_index(group_by_list)

    def _all_positions_split(self, train_dataset: SequentialDataset) -> SequentialDataset:
        inter = train_dataset.inter_feat
        time = inter[self.time_field].numpy() if self.time_field in inter else None
        index = all_positions_row_index(inter[self.uid_field].numpy(), time, self.max_item_list_len)
        self._log_kept_rows(len(index), len(inter))
        return train_dataset.copy(inter[torch.as_tensor(index)])

    def _log_kept_rows(self, kept: int, train_rows: int, plan: WindowRows | None = None) -> None:
        r"""The log line of the training rows ``all_positions`` keeps (and, when only those were
        built, how many prefix rows never were)."""
        never = (
            f"; {plan.prefix_rows - len(plan.target)} of the {plan.prefix_rows} prefix rows "
            f"were never built"
            if plan is not None
            else ""
        )
        self.logger.info(
            set_color("train_mode", "pink")
            + f": all_positions keeps {kept} of {train_rows} training rows (windows of "
            f"MAX_ITEM_LIST_LENGTH={self.max_item_list_len}, every position trained){never}"
        )

    # ------------------------------------------------------------------------------- build
    def semantic_id_cache_file(self, train_item_mask: np.ndarray) -> str | None:
        r"""The cache file of :meth:`build_item_semantic_ids` (``None`` without a cache);
        subclasses with another quantiser override both."""
        key = semantic_id_cache_key(self.item_texts, train_item_mask, self.sid_settings)
        return cache_file(self.sid_settings.sid_cache_dir or None, "sid", key)

    def build_item_semantic_ids(
        self, train_item_mask: np.ndarray, encoder_fn: Callable | None = None
    ) -> SemanticIDs:
        r"""The quantiser step of :meth:`build` (subclasses override it, e.g. ``TIGERDataset``).

        Args:
            train_item_mask: bool ``[item_num]``, the items of the training split.
            encoder_fn: the text encoder; ``None`` = the class hook :attr:`encoder_fn`, else
                ``text_encoder`` (under a process group :meth:`build` passes the embeddings
                the ranks encoded together).

        Returns:
            SemanticIDs: codes ``[item_num, n_codes]``, embeddings, report, cache key and path.
        """
        return build_semantic_ids(
            self.item_texts,
            train_item_mask,
            self.sid_settings,
            encoder_fn=encoder_fn or type(self).encoder_fn,
            items_without_text=self.items_without_text,
        )

    def build(self) -> list:
        r"""RecBole's split, then the semantic IDs (fitted on the training items).

        Returns:
            list: ``[train, valid, test]`` datasets, each carrying ``item_codes``,
            ``semantic_id_report`` and ``semantic_id_cache_key``.
        """
        datasets = super().build()
        # the kept windows hold every training item (their histories tile the training part of
        # each sequence), so the mask is the same with or without the dropped rows
        train_item_mask = self.training_item_mask(datasets[0])
        plan = self.window_rows
        if plan is not None:  # built without the dropped rows: counted in data_augmentation
            train_target_counts = self.train_target_counts
            self._log_kept_rows(len(datasets[0]), plan.train_rows, plan)
            for dataset in [self, *datasets]:
                dataset.window_rows = None  # the split is done
        else:
            # every training target, one row per prefix: the all_positions split keeps only the
            # last target of each window, so the item popularity (graph decoding's start items)
            # must be counted here
            train_target_counts = count_items(datasets[0].inter_feat[self.iid_field], self.item_num)
            if self.train_mode == "all_positions":
                datasets[0] = self._all_positions_split(datasets[0])
        # under DDP the ranks encode the texts together (unless rank 0 has them cached), then
        # rank 0 builds (or loads) the cache while the other ranks wait, then load it
        encoder_fn = sharded_encoder_fn(
            self.item_texts,
            self.sid_settings,
            type(self).encoder_fn,
            lambda: [self.semantic_id_cache_file(train_item_mask)],
        )
        sids = build_once(lambda: self.build_item_semantic_ids(train_item_mask, encoder_fn))
        item_codes = torch.from_numpy(sids.codes)  # [item_num, n_codes]
        embeddings = torch.from_numpy(sids.embeddings)  # [item_num, d]
        # items of the .inter file without a .item row were dropped before the build (the
        # cached report cannot know them): counted here, for this dataset
        report = dict(sids.report)
        report["items_without_item_row"] = self.items_without_item_row
        report["interactions_without_item_row"] = self.interactions_without_item_row
        if self.items_without_item_row:
            self.logger.warning(
                f"semantic IDs: {self.items_without_item_row} items of the .inter file have no "
                f"row (so no text) in [{item_file_path(self)}]; they were dropped with their "
                f"{self.interactions_without_item_row} interactions before the build."
            )
        for dataset in [self, *datasets]:
            dataset.item_codes = item_codes
            dataset.item_text_embeddings = embeddings
            dataset.train_item_mask = train_item_mask
            dataset.train_target_counts = train_target_counts
            dataset.semantic_id_report = report
            dataset.semantic_id_cache_key = sids.cache_key
            dataset.semantic_id_cache_path = sids.cache_path
        return datasets


class FAIRDataset(SemanticIDDataset):
    r"""The dataset of :class:`~recbole_fair.model.sequential_recommender.fair.FAIR` (found by
    name by :func:`recbole_fair.utils.create_dataset`)."""
