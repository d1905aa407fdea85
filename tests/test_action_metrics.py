"""BCE / NE / AUROC: hand computations, a brute-force AUC, undefined cases, and registration
with RecBole's evaluator."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from recbole.evaluator import Evaluator, metric_types, metrics_dict, smaller_metrics
from recbole.evaluator.collector import DataStruct
from recbole.evaluator.metrics import AUC as RecBoleAUC
from recbole.utils import EvaluatorType

from recbole_fair.evaluator.action_metrics import (
    AUROC,
    BCE,
    NE,
    auroc,
    binary_cross_entropy,
    normalized_entropy,
)

TYPES = {"like": ">= 4", "love": "== 5", "dislike": "<= 2"}


class FakeConfig(dict):
    def __getitem__(self, key):
        return self.get(key)


def config(**kw) -> FakeConfig:
    return FakeConfig(
        metric_decimal_place=10, action_types=TYPES, metrics=["BCE", "NE", "AUROC"], **kw
    )


def struct(scores, labels) -> DataStruct:
    data = DataStruct()
    data.set("rec.score", torch.as_tensor(scores, dtype=torch.float32))
    data.set("data.label", torch.as_tensor(labels, dtype=torch.float32))
    return data


def brute_force_auc(scores, labels) -> float:
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_ne_equals_a_hand_computation():
    probs = [0.9, 0.2, 0.6, 0.4]
    labels = [1, 0, 1, 1]
    bce = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.4)) / 4
    p = 0.75
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert binary_cross_entropy(np.array(probs), np.array(labels)) == pytest.approx(bce, abs=1e-12)
    out = NE(config()).calculate_metric(struct(probs, labels))  # one label column
    assert out == {"ne": pytest.approx(bce / entropy, abs=1e-6)}
    # Predicting the base rate everywhere scores exactly 1.
    assert normalized_entropy(np.full(4, 0.75), np.array(labels)) == pytest.approx(1.0, abs=1e-6)


def test_auroc_agrees_with_a_brute_force_pairwise_count():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((200, 3)), 1)  # many ties
    labels = (rng.random((200, 3)) < [[0.5, 0.2, 0.1]]).astype(float)
    labels[:, 0] = (scores[:, 0] + rng.normal(0, 0.3, 200) > 0.5).astype(float)  # informative
    out = AUROC(config()).calculate_metric(struct(scores, labels))
    expected = [brute_force_auc(scores[:, k], labels[:, k]) for k in range(3)]
    for name, value in zip(TYPES, expected):
        assert out[f"auroc@{name}"] == pytest.approx(value, abs=1e-9)
    assert out["auroc"] == pytest.approx(np.mean(expected), abs=1e-9)
    assert expected[0] > 0.7  # the informative column is recognised
    # And with RecBole's own AUC on a single column.
    recbole_auc = RecBoleAUC(config()).metric_info(scores[:, 1], labels[:, 1])
    assert auroc(scores[:, 1], labels[:, 1]) == pytest.approx(recbole_auc, abs=1e-9)


def test_per_type_keys_and_undefined_types_are_nan_not_zero():
    scores = [[0.9, 0.1, 0.2], [0.3, 0.2, 0.4], [0.6, 0.3, 0.1]]
    labels = [[1, 0, 0], [0, 0, 0], [1, 0, 1]]  # love: no positives
    ne = NE(config()).calculate_metric(struct(scores, labels))
    au = AUROC(config()).calculate_metric(struct(scores, labels))
    bce = BCE(config()).calculate_metric(struct(scores, labels))
    assert set(ne) == {"ne", "ne@like", "ne@love", "ne@dislike"}
    assert math.isnan(ne["ne@love"]) and math.isnan(au["auroc@love"])
    assert not math.isnan(bce["bce@love"])
    assert ne["ne"] == pytest.approx((ne["ne@like"] + ne["ne@dislike"]) / 2)
    assert au["auroc@like"] == 1.0 and au["auroc@dislike"] == 0.0 and au["auroc"] == 0.5
    everything_undefined = NE(config()).calculate_metric(struct([[0.5]], [[1]]))
    assert math.isnan(everything_undefined["ne"])


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="predict"):
        NE(config()).calculate_metric(struct([[0.5, 0.5]], [[1, 0, 1]]))


def test_registered_with_recboles_evaluator():
    for name, cls, smaller in (("bce", BCE, True), ("ne", NE, True), ("auroc", AUROC, False)):
        assert metrics_dict[name] is cls
        assert metric_types[name] == EvaluatorType.VALUE
        assert (name in smaller_metrics) is smaller
    assert metrics_dict["auc"] is RecBoleAUC  # RecBole's AUC untouched
    evaluator = Evaluator(config())
    result = evaluator.evaluate(struct([[0.8, 0.1, 0.3], [0.4, 0.6, 0.2]], [[1, 0, 0], [0, 1, 1]]))
    assert {"bce", "ne", "auroc", "ne@dislike", "auroc@love"} <= set(result)
