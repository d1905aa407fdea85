r"""recbole_fair.data.action_dataset
#################################

Dataset of the action-prediction models (``Interleaved``, ``AttnLFA``, ``AttnMVP``).

From a numeric rating or label column (``action_field``) it derives K binary action types
(``action_types``, e.g. on ml-100k ``like: ">= 4"``, ``love: "== 5"``, ``dislike: "<= 2"``) and
stores them as one multi-hot ``LABEL_FIELD`` of length K per interaction. Histories are sorted
chronologically per user, then cut into rows:

* **train**: every training position is loss-bearing exactly once, in one causal pass: the
  user's training interactions are cut, from the most recent backwards, into windows of up to
  ``MAX_ITEM_LIST_LENGTH + 1`` positions (one row per window, one window per user unless the
  history is longer than that);
* **valid / test**: RecBole's leave-one-out targets (``eval_args.split: {LS: valid_and_test}``:
  the second last and the last interaction of each user), each with its preceding history
  (up to ``MAX_ITEM_LIST_LENGTH`` items and their actions).

A row holds the history ``item_id_list [L]``, ``<LABEL_FIELD>_list [L, K]``, ``item_length`` and
the row's last position ``item_id`` / ``LABEL_FIELD [K]`` (the evaluation target). Users with
fewer interactions than the leave-one-out split needs (3 for ``valid_and_test``) are train-only.

Reference:
    "Beyond Interleaving: Causal Attention Reformulations for Generative Recommender Systems",
    arXiv 2603.10369 (task and protocol).
"""

from __future__ import annotations

import operator
import os
import re
import warnings
from typing import Any, Callable

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType, set_color

from recbole_fair.data.checked import SequentialDataset

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")

# Row roles of the built rows.
TRAIN, VALID, TEST = 0, 1, 2
_EVAL_ROLES = {"valid_and_test": (VALID, TEST), "valid_only": (VALID,), "test_only": (TEST,)}


class ActionTypeWarning(UserWarning):
    r"""An action type is degenerate on the data: no positives (or no negatives)."""


def parse_action_types(action_types: Any) -> list[tuple[str, list[tuple[str, float]]]]:
    r"""Parse the ``action_types`` mapping.

    Each value is a condition on the ``action_field`` value: ``"<op> <number>"`` with op in
    ``>= <= == != > <``, several joined by ``and`` (``">= 2 and <= 3"``), or a bare number
    (meaning ``== number``).

    Args:
        action_types (dict): ``{type name: condition}``, in output order.

    Returns:
        list: ``[(name, [(op, value), ...]), ...]``.

    Raises:
        ValueError: not a non-empty mapping, or a condition that does not parse.
    """
    if not isinstance(action_types, dict) or not action_types:
        raise ValueError(
            f"action_types must be a non-empty mapping {{type name: condition}}, e.g. "
            f'{{like: ">= 4", love: "== 5", dislike: "<= 2"}}; got [{action_types!r}].'
        )
    parsed = []
    for name, condition in action_types.items():
        if isinstance(condition, (int, float)) and not isinstance(condition, bool):
            parsed.append((str(name), [("==", float(condition))]))
            continue
        clauses = []
        for part in str(condition).split(" and "):
            match = _CONDITION.match(part)
            if match is None:
                raise ValueError(
                    f"action_types.{name}: cannot parse condition [{condition!r}]. Use "
                    f'"<op> <number>" with op in {list(_OPERATORS)}, joined by "and" '
                    f'(e.g. ">= 4" or ">= 2 and <= 3"), or a number.'
                )
            clauses.append((match.group(1), float(match.group(2))))
        parsed.append((str(name), clauses))
    return parsed


def derive_actions(
    values: np.ndarray, rules: list[tuple[str, list[tuple[str, float]]]]
) -> np.ndarray:
    r"""Multi-hot actions from raw field values.

    Args:
        values (numpy.ndarray): the ``action_field`` column, ``[N]``.
        rules (list): output of :func:`parse_action_types`.

    Returns:
        numpy.ndarray: ``[N, K]`` float32 0/1.
    """
    values = np.asarray(values, dtype=np.float64)
    columns = []
    for _, clauses in rules:
        hit = np.ones(len(values), dtype=bool)
        for op, threshold in clauses:
            hit &= _OPERATORS[op](values, threshold)
        columns.append(hit)
    return np.stack(columns, axis=1).astype(np.float32)


class ActionSequenceDataset(SequentialDataset):
    r""":class:`~recbole.data.dataset.SequentialDataset` for multi-type action prediction.

    Config keys: ``action_field`` (numeric column, default ``RATING_FIELD``), ``action_types``
    (see :func:`parse_action_types`), RecBole's ``MAX_ITEM_LIST_LENGTH`` and ``eval_args``
    (``split: {LS: ...}``, ``order: TO``, ``mode: labeled``).

    Attributes:
        action_names (list of str): the K action type names, in label column order.
        action_counts (dict): ``{name: (positives, interactions)}`` on the whole dataset.

    Raises:
        ValueError: the field is missing from the atomic file or not numeric, the mapping does
            not parse, or the evaluation protocol is not leave-one-out label prediction.
    """

    def __init__(self, config: Any):
        self.action_field: str = config["action_field"] or config["RATING_FIELD"]
        if not self.action_field:
            raise ValueError(
                "action_field is not set (nor RATING_FIELD): name the rating or label column "
                "the action types are derived from."
            )
        self._action_rules = parse_action_types(config["action_types"])
        self.action_names: list[str] = [name for name, _ in self._action_rules]
        self.action_counts: dict[str, tuple[int, int]] = {}
        self._row_split: torch.Tensor | None = None
        self._check_protocol(config)
        self._require_columns(config)
        super().__init__(config)

    # ------------------------------------------------------------------ config checks
    @staticmethod
    def _check_protocol(config: Any) -> None:
        name = config["model"]
        eval_args = config["eval_args"]
        split = eval_args["split"]
        if not (isinstance(split, dict) and list(split) == ["LS"] and split["LS"] in _EVAL_ROLES):
            raise ValueError(
                f"{name} evaluates on leave-one-out targets: set eval_args.split to "
                f"{{LS: valid_and_test}} (or valid_only / test_only); got [{split}]."
            )
        if eval_args["order"] != "TO":
            raise ValueError(
                f"{name} needs chronological histories: set eval_args.order to TO; got "
                f"[{eval_args['order']}]."
            )
        modes = eval_args["mode"]
        modes = modes.values() if isinstance(modes, dict) else [modes]
        if any(mode != "labeled" for mode in modes):
            raise ValueError(
                f"{name} predicts action labels, not rankings: set eval_args.mode to labeled "
                f"and metrics to [BCE, NE, AUROC]; got mode [{eval_args['mode']}]."
            )
        neg = config["train_neg_sample_args"]
        if neg is not None and neg.get("distribution", "none") != "none":
            raise ValueError(
                f"{name} trains on observed action labels: set train_neg_sample_args to ~ "
                f"(None); got [{neg}]."
            )
        if config["threshold"] is not None:
            raise ValueError(
                f"{name} derives its labels from action_types; remove threshold "
                f"[{config['threshold']}] from the config."
            )
        if config["benchmark_filename"] is not None:
            raise ValueError(
                f"{name} builds its own leave-one-out rows; benchmark_filename is not supported."
            )

    def _require_columns(self, config: Any) -> None:
        r"""Make sure ``load_col`` loads the action and time fields the model needs."""
        load_col = config["load_col"]
        if isinstance(load_col, dict) and isinstance(load_col.get("inter"), list):
            needed = [self.action_field, config["TIME_FIELD"]]
            missing = [f for f in needed if f and f not in load_col["inter"]]
            if missing:
                load_col["inter"] = list(load_col["inter"]) + missing

    # ------------------------------------------------------------------ loading
    def _load_data(self, token: str, dataset_path: str) -> None:
        super()._load_data(token, dataset_path)
        path = os.path.join(dataset_path, f"{token}.inter")
        if self.inter_feat is None or self.action_field not in self.inter_feat.columns:
            columns = self._file_columns(path)
            hint = (
                " The file has it but it was not loaded: check load_col / unload_col."
                if self.action_field in columns
                else " Set action_field to this dataset's rating or label column."
            )
            raise ValueError(
                f"action_field [{self.action_field}] not found in [{path}] (columns: "
                f"{columns}).{hint}"
            )
        if self.field2type[self.action_field] != FeatureType.FLOAT:
            raise ValueError(
                f"action_field [{self.action_field}] in [{path}] is of type "
                f"[{self.field2type[self.action_field].value}]; it must be numeric "
                f"(declared `{self.action_field}:float` in the header)."
            )

    def _file_columns(self, path: str) -> list[str]:
        try:
            with open(path, encoding=self.config["encoding"]) as f:
                header = f.readline().rstrip("\n")
        except OSError:
            return []
        return [c.split(":")[0] for c in header.split(self.config["field_separator"])]

    def _normalize(self) -> None:
        r"""Derive the multi-hot actions from the raw values, then let RecBole normalise the
        float fields (``normalize_all`` would otherwise rescale the ratings first)."""
        actions = derive_actions(self.inter_feat[self.action_field].to_numpy(), self._action_rules)
        self._report_action_counts(actions)
        super()._normalize()
        if self.label_field in self.inter_feat.columns and self.label_field != self.action_field:
            self.logger.warning(
                f"Column [{self.label_field}] (LABEL_FIELD) is replaced by the derived actions."
            )
        self.inter_feat[self.label_field] = list(actions)
        self.set_field_property(
            self.label_field,
            FeatureType.FLOAT_SEQ,
            FeatureSource.INTERACTION,
            len(self.action_names),
        )

    def _report_action_counts(self, actions: np.ndarray) -> None:
        total = len(actions)
        positives = actions.sum(axis=0).astype(int)
        self.action_counts = {
            name: (int(p), total) for name, p in zip(self.action_names, positives)
        }
        summary = ", ".join(f"{n}: {p}/{t}" for n, (p, t) in self.action_counts.items())
        self.logger.info(
            set_color("action types (positives/interactions)", "pink") + f": {summary}"
        )
        conditions = dict(self._action_rules)
        for name, (p, t) in self.action_counts.items():
            if p == 0 or p == t:
                message = (
                    f"Action type [{name}] ({' and '.join(f'{o} {v:g}' for o, v in conditions[name])} "
                    f"on [{self.action_field}]) has {p} positives out of {t} interactions "
                    f"(counts: {summary}); its NE and AUROC are undefined and reported as nan."
                )
                self.logger.warning(message)
                warnings.warn(message, ActionTypeWarning, stacklevel=2)

    # ------------------------------------------------------------------ rows
    def _aug_presets(self) -> None:
        list_suffix = self.config["LIST_SUFFIX"]
        length = self.max_item_list_len
        self.item_id_list_field = self.iid_field + list_suffix
        self.label_list_field = self.label_field + list_suffix
        self.set_field_property(
            self.item_id_list_field, FeatureType.TOKEN_SEQ, FeatureSource.INTERACTION, length
        )
        self.set_field_property(
            self.label_list_field,
            FeatureType.FLOAT_SEQ,
            FeatureSource.INTERACTION,
            (length, len(self.action_names)),
        )
        self.set_field_property(
            self.item_list_length_field, FeatureType.TOKEN, FeatureSource.INTERACTION, 1
        )

    def row_plan(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""Which rows to build from user-sorted, chronological interactions.

        Args:
            user_ids (numpy.ndarray): ``[N]`` user id per interaction, grouped by user and in time
                order within a user.

        Returns:
            tuple of numpy.ndarray: per row, the index of its last position (``target``), of its
            first history position (``first``, the history is ``[first, target)``) and its role
            (``TRAIN``, ``VALID``, ``TEST``).
        """
        window = self.max_item_list_len + 1
        eval_roles = _EVAL_ROLES[self.config["eval_args"]["split"]["LS"]]
        n = len(user_ids)
        starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]]) if n else np.zeros(0)
        ends = np.r_[starts[1:], n].astype(np.int64)
        targets, roles = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for start, end in zip(starts.astype(np.int64), ends):
            n_eval = len(eval_roles) if end - start > len(eval_roles) else 0
            train_end = end - n_eval  # training positions: [start, train_end)
            window_ends = np.arange(train_end - 1, start - 1, -window)[::-1]  # chronological
            targets += [window_ends, np.arange(train_end, end)]
            roles += [np.full(len(window_ends), TRAIN), np.array(eval_roles[:n_eval])]
        target = np.concatenate(targets).astype(np.int64)
        role = np.concatenate(roles).astype(np.int64)
        user_start = starts.astype(np.int64)[np.searchsorted(starts, target, side="right") - 1]
        first = np.maximum(user_start, target - self.max_item_list_len)
        return target, first, role

    def data_augmentation(self) -> None:
        r"""Replace RecBole's one-row-per-prefix augmentation by the rows of :meth:`row_plan`
        (one causal pass per training window, one row per evaluation target)."""
        self.logger.debug("action data_augmentation")
        self._aug_presets()
        self._check_field("uid_field", "time_field")
        # Stable sort: interactions with equal timestamps keep their file order.
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        target, first, role = self.row_plan(self.inter_feat[self.uid_field].numpy())

        length = target - first  # [R]
        offsets = np.arange(self.max_item_list_len)  # [L]
        valid = offsets[None, :] < length[:, None]  # [R, L]
        index = torch.from_numpy(np.where(valid, first[:, None] + offsets[None, :], 0))
        valid = torch.from_numpy(valid)
        items = self.inter_feat[self.iid_field][index] * valid  # [R, L]
        labels = self.inter_feat[self.label_field][index] * valid.unsqueeze(-1)  # [R, L, K]

        new_data = self.inter_feat[torch.from_numpy(target)]
        new_data.update(
            Interaction(
                {
                    self.item_id_list_field: items,
                    self.label_list_field: labels,
                    self.item_list_length_field: torch.from_numpy(length),
                }
            )
        )
        self.inter_feat = new_data
        self._row_split = torch.from_numpy(role)

    def build(self) -> list[ActionSequenceDataset]:
        r"""Train / valid / test datasets (rows from :meth:`data_augmentation`).

        Returns:
            list: ``[train, valid, test]``.
        """
        self._change_feat_format()
        self._drop_unused_col()
        return [self.copy(self.inter_feat[self._row_split == r]) for r in (TRAIN, VALID, TEST)]


class InterleavedDataset(ActionSequenceDataset):
    r""":class:`ActionSequenceDataset` for :class:`~recbole_fair.model.sequential_recommender.Interleaved`."""


class AttnLFADataset(ActionSequenceDataset):
    r""":class:`ActionSequenceDataset` for :class:`~recbole_fair.model.sequential_recommender.AttnLFA`."""


class AttnMVPDataset(ActionSequenceDataset):
    r""":class:`ActionSequenceDataset` for :class:`~recbole_fair.model.sequential_recommender.AttnMVP`."""
