"""The one cache rule of evaluation (recbole_fair.model.weights_cache): a value derived from
tensors is recomputed exactly when one of them may have changed (in-place update, new storage,
another device) or an extra key part changes, and never otherwise."""

from __future__ import annotations

import torch
from torch import nn

from recbole_fair.model.graph_decoding import GraphDecodingSettings, ItemGraphCache
from recbole_fair.model.weights_cache import WeightsCache


def counting(cache: WeightsCache, tensors, extra=()):
    calls = []

    def compute():
        calls.append(1)
        return sum(t.sum() for t in tensors).reshape(1)

    return calls, (lambda: cache.get(tensors, compute, extra))


def test_computed_once_while_nothing_changes():
    w = torch.randn(4, 3)
    cache = WeightsCache()
    calls, get = counting(cache, [w])
    first = get()
    assert get() is first and len(calls) == 1
    assert torch.allclose(first, w.sum().reshape(1))


def test_in_place_update_load_state_dict_and_new_storage_recompute():
    layer = nn.Linear(3, 2)
    cache = WeightsCache()
    values = []

    def get():
        values.append(cache.get([layer.weight], lambda: layer.weight.sum().reshape(1).clone()))
        return values[-1]

    get()
    with torch.no_grad():
        layer.weight.add_(1.0)  # an optimizer step: same storage, new version
    assert torch.allclose(get(), layer.weight.sum().reshape(1))
    layer.load_state_dict({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)})
    assert float(get()) == 0.0
    layer.weight = nn.Parameter(torch.ones(2, 3))  # new storage
    assert float(get()) == 6.0


def test_any_of_several_tensors_and_extra_key_parts():
    a, b = torch.ones(2), torch.ones(3)
    cache = WeightsCache()
    calls, get_plain = counting(cache, [a, b])
    get_plain()
    b.mul_(2)
    assert float(get_plain()) == 2 + 6 and len(calls) == 2
    _, get_float64 = counting(cache, [a, b], extra=("float64",))
    get_float64()  # another extra part: recomputed
    assert cache.key[-1] == "float64"
    calls3, get_again = counting(cache, [a, b], extra=("float64",))
    get_again()
    assert calls3 == []  # same tensors, same extra part: cached


def test_clear_forces_a_recompute():
    w = torch.randn(3)
    cache = WeightsCache()
    calls, get = counting(cache, [w])
    get()
    cache.clear()
    get()
    assert len(calls) == 2


def test_item_graph_follows_settings_and_codes():
    g = torch.Generator().manual_seed(0)
    n_items, L, K, d = 40, 4, 8, 6
    weight = torch.randn(L * K, d, generator=g)
    codes = torch.randint(0, K, (n_items, L), generator=g)
    cache = ItemGraphCache()
    settings = GraphDecodingSettings(decoding="graph", graph_num_neighbors=5)

    def get(s):
        return cache.get(weight, weight.view(L, K, d), codes, s)

    five = get(settings)
    assert five.shape == (n_items, 5) and get(settings) is five
    three = get(GraphDecodingSettings(decoding="graph", graph_num_neighbors=3))
    assert three.shape == (n_items, 3)  # another neighbour count: rebuilt, not the cached graph
    codes.copy_(codes.roll(1, dims=0))  # new codes (a loaded checkpoint's buffer): rebuilt
    rolled = get(settings)
    assert rolled is not five
    assert torch.equal(rolled, get(settings))
