r"""recbole_fair.evaluator.action_metrics
#####################################

Label-prediction metrics for multi-type action prediction (generative ranking): binary
cross-entropy (BCE), normalized entropy (NE) and the area under the ROC curve (AUROC), each per
action type and averaged over the types.

The three metrics are registered into RecBole's metric tables on import (see
:func:`register_action_metrics`), so ``metrics: [BCE, NE, AUROC]`` and ``valid_metric: NE`` work
in any RecBole config and the values land in RecBole's result dict:

* ``bce``, ``ne``, ``auroc``: the mean over the action types whose value is defined;
* ``bce@<type>``, ``ne@<type>``, ``auroc@<type>``: one value per action type, named after the
  keys of ``config["action_types"]`` (lower-cased), e.g. ``ne@like``.

``valid_metric: NE@like`` therefore selects on one type; RecBole reads the part before ``@`` to
know that smaller is better.

Scores are probabilities (what ``model.predict`` returns), labels are 0/1. Both may be
``[N, K]`` (K action types) or ``[N]`` (one label, e.g. RecBole's DIN on a thresholded rating).

Undefined values are ``nan``, never ``0``: NE of a type whose evaluation labels are all equal
(the entropy of the base rate is 0) and AUROC of a type without positives or without negatives.
Means skip undefined types (``nan`` only when no type is defined).

Reference:
    Xinran He et al. "Practical Lessons from Predicting Clicks on Ads at Facebook." ADKDD 2014
    (normalized entropy).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType
from scipy.stats import rankdata

# Probabilities are clipped away from 0 and 1 before taking logs.
_EPS = 1e-7


# ---------------------------------------------------------------------------- plain functions
def binary_cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    r"""Mean binary cross-entropy (natural log) of probabilities against 0/1 labels.

    Args:
        probs (numpy.ndarray): predicted probabilities, shape ``[N]``.
        labels (numpy.ndarray): 0/1 labels, shape ``[N]``.

    Returns:
        float: :math:`-\frac{1}{N}\sum_i y_i\log p_i + (1-y_i)\log(1-p_i)`; ``nan`` when ``N = 0``.
    """
    if len(labels) == 0:
        return math.nan
    p = np.clip(probs.astype(np.float64), _EPS, 1.0 - _EPS)
    y = labels.astype(np.float64)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def base_rate_entropy(labels: np.ndarray) -> float:
    r"""Entropy (natural log) of a Bernoulli with the labels' positive rate.

    Args:
        labels (numpy.ndarray): 0/1 labels, shape ``[N]``.

    Returns:
        float: :math:`-p\log p - (1-p)\log(1-p)` with :math:`p` the mean label; ``0`` when all
        labels are equal, ``nan`` when ``N = 0``.
    """
    if len(labels) == 0:
        return math.nan
    p = float(np.mean(labels.astype(np.float64)))
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log(p) - (1.0 - p) * math.log(1.0 - p)


def normalized_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    r"""Normalized entropy: BCE divided by the entropy of the evaluation set's base rate.

    ``1.0`` is the loss of always predicting the evaluation set's own positive rate; lower is
    better.

    Args:
        probs (numpy.ndarray): predicted probabilities, shape ``[N]``.
        labels (numpy.ndarray): 0/1 labels, shape ``[N]``.

    Returns:
        float: the NE; ``nan`` when the labels are all equal (the normaliser is 0) or empty.
    """
    entropy = base_rate_entropy(labels)
    if not entropy > 0.0:  # 0 or nan
        return math.nan
    return binary_cross_entropy(probs, labels) / entropy


def auroc(probs: np.ndarray, labels: np.ndarray) -> float:
    r"""Area under the ROC curve by the rank-sum (Mann-Whitney U) formula, ties counting 1/2.

    Equals the fraction of (positive, negative) pairs in which the positive scores higher.

    Args:
        probs (numpy.ndarray): scores, shape ``[N]``.
        labels (numpy.ndarray): 0/1 labels, shape ``[N]``.

    Returns:
        float: the AUROC; ``nan`` without positives or without negatives.
    """
    pos = labels.astype(bool)
    n_pos = int(pos.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(probs.astype(np.float64))  # average ranks for ties
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def nanmean(values: Sequence[float]) -> float:
    r"""Mean of the defined (non-nan) values; ``nan`` when none is defined."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def action_type_names(config: Any, num_types: int) -> list[str]:
    r"""Lower-cased action type names for result keys.

    Args:
        config (Config): RecBole config; ``config["action_types"]`` (a mapping) names the types.
        num_types (int): number of label columns actually evaluated.

    Returns:
        list of str: the mapping's keys when their count matches ``num_types``, else
        ``type0, type1, ...``.
    """
    mapping = config["action_types"] if config is not None else None
    if isinstance(mapping, dict) and len(mapping) == num_types:
        return [str(name).lower() for name in mapping]
    return [f"type{k}" for k in range(num_types)]


# ---------------------------------------------------------------------------- RecBole metrics
class _ActionMetric(AbstractMetric):
    r"""Base of the per-type value metrics: ``[N, K]`` (or ``[N]``) scores and labels in,
    ``{name: mean, name@type: value, ...}`` out."""

    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label"]

    def __init__(self, config: Any):
        super().__init__(config)
        self.config = config

    @staticmethod
    def compute(probs: np.ndarray, labels: np.ndarray) -> float:
        raise NotImplementedError

    def per_type(self, probs: torch.Tensor, labels: torch.Tensor) -> list[float]:
        r"""The metric for each label column.

        Args:
            probs (torch.Tensor): scores, ``[N, K]`` or ``[N]``.
            labels (torch.Tensor): labels, same shape as ``probs``.

        Returns:
            list of float: ``K`` values (``nan`` where undefined).
        """
        probs = probs.detach().cpu().double().numpy()
        labels = labels.detach().cpu().double().numpy()
        if probs.ndim == 1:
            probs, labels = probs[:, None], labels[:, None]
        if probs.shape != labels.shape:
            raise ValueError(
                f"{type(self).__name__}: scores of shape {tuple(probs.shape)} do not match labels "
                f"of shape {tuple(labels.shape)}; the model's predict() must return one "
                "probability per action type ([batch, K])."
            )
        return [self.compute(probs[:, k], labels[:, k]) for k in range(probs.shape[1])]

    def calculate_metric(self, dataobject: Any) -> dict[str, float]:
        name = type(self).__name__.lower()
        values = self.per_type(dataobject.get("rec.score"), dataobject.get("data.label"))
        result = {name: round(nanmean(values), self.decimal_place)}
        if len(values) > 1:
            for type_name, value in zip(action_type_names(self.config, len(values)), values):
                result[f"{name}@{type_name}"] = round(value, self.decimal_place)
        return result


class BCE(_ActionMetric):
    r"""Binary cross-entropy (evaluation loss) per action type and averaged. Smaller is better."""

    smaller = True
    compute = staticmethod(binary_cross_entropy)


class NE(_ActionMetric):
    r"""Normalized entropy (BCE / entropy of the base rate) per action type and averaged.
    Smaller is better; ``1.0`` equals predicting the base rate."""

    smaller = True
    compute = staticmethod(normalized_entropy)


class AUROC(_ActionMetric):
    r"""Area under the ROC curve per action type and averaged. Bigger is better.

    Named ``AUROC`` because RecBole's own ``AUC`` metric (one label column) keeps its name.
    """

    smaller = False
    compute = staticmethod(auroc)


ACTION_METRICS = (BCE, NE, AUROC)


def register_action_metrics() -> None:
    r"""Add :data:`ACTION_METRICS` to RecBole's metric tables (idempotent).

    RecBole builds its tables (``metrics_dict``, ``metric_information``, ``metric_types``,
    ``smaller_metrics`` in :mod:`recbole.evaluator.register`) once from the classes defined in
    :mod:`recbole.evaluator.metrics`; ``Config``, ``Evaluator`` and ``Collector`` read those very
    objects, so adding entries in place is enough.

    Raises:
        ValueError: RecBole already has a different metric of the same name.
    """
    from recbole.evaluator import register

    for metric in ACTION_METRICS:
        name = metric.__name__.lower()
        existing = register.metrics_dict.get(name)
        qualified = f"{metric.__module__}.{metric.__qualname__}"
        # The same class may come back from a reloaded module; anything else is a clash.
        if existing is not None and f"{existing.__module__}.{existing.__qualname__}" != qualified:
            raise ValueError(
                f"Cannot register metric '{metric.__name__}': RecBole already has "
                f"{existing.__module__}.{existing.__qualname__} under that name."
            )
        register.metrics_dict[name] = metric
        register.metric_information[name] = metric.metric_need
        register.metric_types[name] = metric.metric_type
        if metric.smaller and name not in register.smaller_metrics:
            register.smaller_metrics.append(name)


register_action_metrics()
