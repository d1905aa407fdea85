"""The prior correction of factorised semantic-ID scores (recbole_fair.analysis.score_calibration)
and its recency prior (recbole_fair.data.item_counts): an analysis of trained checkpoints
(benchmarks/score_calibration.py), checked against brute force."""

import numpy as np
import pytest
import torch

from recbole_fair.analysis.score_calibration import prior_correction
from recbole_fair.data.item_counts import recent_target_counts


def test_prior_correction_equals_brute_force():
    g = torch.Generator().manual_seed(3)
    n_items, n_codes, k = 9, 3, 4
    codes = torch.randint(0, k, (n_items, n_codes), generator=g)
    popularity = torch.randint(0, 20, (n_items,), generator=g)
    popularity[0] = 1000  # the padding row's count is ignored
    bias = prior_correction(popularity, codes, k)
    total = sum(int(popularity[j]) + 1 for j in range(1, n_items))
    q = {j: (int(popularity[j]) + 1) / total for j in range(1, n_items)}
    for i in range(1, n_items):
        code_prior = [
            sum(q[j] for j in range(1, n_items) if codes[j, d] == codes[i, d])
            for d in range(n_codes)
        ]
        expected = np.log(q[i]) - sum(np.log(c) for c in code_prior)
        assert bias[i].item() == pytest.approx(expected, rel=1e-5)
    assert bias[0] == 0


def test_prior_correction_counts_the_item_prior_once():
    """Digit distributions equal to the code priors (a history-free model): the paper's sum
    favours items whose codes are shared with popular items; weight 1 ranks by popularity."""
    g = torch.Generator().manual_seed(0)
    n_items, L, K = 60, 4, 8
    codes = torch.randint(0, K, (n_items, L), generator=g)
    codes[0] = 0
    popularity = torch.zeros(n_items, dtype=torch.long)
    popularity[1:] = torch.randint(0, 50, (n_items - 1,), generator=g)
    q = (popularity[1:].double() + 1) / (popularity[1:].double() + 1).sum()
    code_prior = torch.zeros(L, K, dtype=torch.float64)
    code_prior.scatter_add_(1, codes[1:].T, q.expand(L, -1))
    log_probs = code_prior.log()  # [L, K]
    plain = log_probs.gather(1, codes[1:].T).sum(0)  # Σ_l log p_l(c_l(i)), [n_items - 1]
    corrected = plain + prior_correction(popularity, codes, K)[1:].double()
    assert torch.allclose(corrected, q.log(), atol=1e-4)
    assert not torch.allclose(plain - plain.mean(), q.log() - q.log().mean(), atol=1e-2)


def test_recent_target_counts_keep_each_users_latest_targets():
    uid = torch.tensor([1, 1, 1, 2, 2, 3])
    history = torch.tensor([1, 2, 3, 1, 2, 1])  # a longer history is a later target
    target = torch.tensor([5, 6, 7, 5, 7, 8])
    assert recent_target_counts(uid, history, target, 10, 1).tolist() == [0] * 7 + [2, 1, 0]
    assert recent_target_counts(uid, history, target, 10, 2).tolist() == [
        0, 0, 0, 0, 0, 1, 1, 2, 1, 0
    ]  # fmt: skip
    every = torch.bincount(target, minlength=10)
    assert torch.equal(recent_target_counts(uid, history, target, 10, 99), every)
    # capped histories (equal lengths): the later row is the later target
    capped = torch.tensor([1, 2, 2, 1, 2, 1])
    assert recent_target_counts(uid, capped, target, 10, 1).tolist() == [0] * 7 + [2, 1, 0]
    shuffled = torch.randperm(len(uid), generator=torch.Generator().manual_seed(0))
    assert torch.equal(  # uncapped lengths: the row order is free
        recent_target_counts(uid[shuffled], history[shuffled], target[shuffled], 10, 2),
        recent_target_counts(uid, history, target, 10, 2),
    )
    # the padding item 0 and the out-of-range id 12 are not counted
    latest = recent_target_counts(uid, history, torch.tensor([0, 6, 12, 5, 7, 8]), 10, 1)
    assert latest.tolist() == [0] * 7 + [1, 1, 0]
    with pytest.raises(ValueError, match="one entry per training row"):
        recent_target_counts(uid, history[:3], target, 10, 1)


def test_prior_correction_rejects_mismatched_popularity():
    with pytest.raises(ValueError, match="popularity has 3 entries"):
        prior_correction(torch.ones(3), torch.zeros(5, 2, dtype=torch.long), 4)
