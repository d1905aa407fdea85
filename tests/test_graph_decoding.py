"""Graph-constrained decoding (recbole_fair.model.graph_decoding) and FAIR's ``decoding: graph``.

Synthetic data: 1000 items, each user walks ``i, i+7, i+14, ...``; item ``i``'s semantic ID is
the base-16 digits of ``i`` (L=4, K=16), so that, as with real semantic IDs, nearby items share
codes. A tiny FAIR is trained for a few epochs; graph decoding (10 edges, 5 beams, 3 steps,
visiting ~9% of the items) must then find the exact top-1 item for most test users, with exact
scores for every item it returns and never an invalid item.
"""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_seed
from synthetic import write_walk_dataset

import recbole_fair.model.graph_decoding as gd
from recbole_fair.data.item_counts import item_popularity
from recbole_fair.model.graph_decoding import (
    GraphDecodingSettings,
    build_item_graph,
    graph_decode,
    graph_item_vectors,
    popular_items,
    score_items,
    start_items,
)
from recbole_fair.model.sequential_recommender.fair import FAIR
from recbole_fair.paths import get_properties_dir

N_ITEMS, N_USERS, SEQ_LEN, STRIDE, L, K = 1000, 600, 8, 7, 4, 16
EPOCHS, LR = 6, 0.005
GRAPH = {
    "decoding": "graph",
    "graph_num_neighbors": 10,
    "graph_num_beams": 5,
    "graph_beam_size": 5,
    "graph_steps": 3,
}


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph_data")
    rng = np.random.default_rng(0)
    write_walk_dataset(root, N_USERS, N_ITEMS, SEQ_LEN, stride=STRIDE, rng=rng)
    config = Config(
        model=FAIR,
        dataset="syn",
        config_file_list=[f"{get_properties_dir()}/model/FAIR.yaml"],
        config_dict={
            "data_path": str(root),
            "checkpoint_dir": str(root / "saved"),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": 10,
            "n_codes": L,
            "codebook_size": K,
            "hidden_size": 32,
            "inner_size": 64,
            "n_heads": 2,
            "train_batch_size": 128,
            "metrics": ["Recall", "MRR"],
            "topk": [10],
            "valid_metric": "MRR@10",
            "show_progress": False,
            "state": "WARNING",
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    # item token "i<n>" has the base-K digits of n as its codes: neighbours share codes
    tokens = dataset.field2id_token[dataset.iid_field]
    n = torch.tensor([int(t[1:]) if t.startswith("i") else 0 for t in tokens])
    codes = torch.stack([(n // K**j) % K for j in range(L)], dim=1)
    codes[0] = 0
    dataset.item_codes = codes
    train, valid, test = data_preparation(config, dataset)
    for split in (train, valid, test):
        split.dataset.item_codes = codes

    torch.manual_seed(0)
    model = FAIR(config, train.dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(EPOCHS):
        model.train()
        for inter in train:
            optimizer.zero_grad()
            sum(model.calculate_loss(inter)).backward()
            optimizer.step()
    model.eval()
    for key, value in GRAPH.items():
        config[key] = value
    graph_model = FAIR(config, train.dataset)
    graph_model.load_state_dict(model.state_dict())
    graph_model.eval()
    return SimpleNamespace(
        config=config, model=model, graph_model=graph_model, test=test, dataset=dataset
    )


def _test_batches(trained):
    return [batch[0] for batch in trained.test]


# ------------------------------------------------------------------------------ the building blocks
class _Missing(dict):
    def __getitem__(self, key):  # RecBole's Config returns None for a missing key
        return self.get(key)


def test_settings_defaults_and_errors_name_the_key():
    settings = GraphDecodingSettings.from_config(_Missing(graph_steps=2))
    assert settings.graph_steps == 2
    assert settings.decoding == "exact" and settings.graph_embedding == "pooled"
    for key, value in [
        ("decoding", "beam"),
        ("graph_embedding", "text"),
        ("graph_start", "random"),
        ("graph_num_neighbors", 0),
        ("graph_num_beams", 1.5),
        ("graph_beam_size", True),
        ("graph_steps", -1),
    ]:
        with pytest.raises(ValueError, match=key):
            GraphDecodingSettings(**{key: value})


def test_build_item_graph_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(40, 6, generator=g), dim=-1)
    vectors[7] = vectors[5]  # a duplicate: each is the other's nearest neighbour
    graph = build_item_graph(vectors, 4)
    assert graph.shape == (40, 4) and torch.all(graph[0] == 0)
    sims = vectors[1:] @ vectors[1:].T  # [39, 39], real items only
    sims.fill_diagonal_(-float("inf"))
    expected = sims.topk(4, dim=1).indices + 1
    for item in range(1, 40):
        assert item not in graph[item] and 0 not in graph[item]
        assert set(graph[item].tolist()) == set(expected[item - 1].tolist())
    assert graph[5, 0] == 7 and graph[7, 0] == 5
    # more edges than items: clipped to the other real items
    small = build_item_graph(vectors[:4], 10)
    assert small.shape == (4, 2) and set(small[1].tolist()) == {2, 3}


def test_graph_vectors_inner_products():
    g = torch.Generator().manual_seed(1)
    table = torch.randn(3, 5, 8, generator=g)  # [L, K, d]
    codes = torch.randint(5, (6, 3), generator=g)
    pooled = graph_item_vectors(table, codes, "pooled")
    per_digit = graph_item_vectors(table, codes, "codes")
    assert pooled.shape == (6, 8) and per_digit.shape == (6, 24)
    cos = torch.nn.functional.cosine_similarity
    i, j = 1, 4
    mean_i = table[torch.arange(3), codes[i]].mean(0)
    mean_j = table[torch.arange(3), codes[j]].mean(0)
    assert torch.allclose(pooled[i] @ pooled[j], cos(mean_i, mean_j, dim=0), atol=1e-5)
    rpg = sum(cos(table[d, codes[i, d]], table[d, codes[j, d]], dim=0) for d in range(3)) / 3
    assert torch.allclose(per_digit[i] @ per_digit[j], rpg, atol=1e-5)


def test_pooled_graph_vectors_in_chunks_are_the_same_floats(monkeypatch):
    import recbole_fair.model.graph_decoding as gd

    g = torch.Generator().manual_seed(2)
    table = torch.randn(4, 7, 16, generator=g)  # [L, K, d]
    codes = torch.randint(7, (50, 4), generator=g)
    whole = graph_item_vectors(table, codes, "pooled")  # one chunk (50 rows fit the budget)
    # a budget of 3 rows per chunk (3 x L x d floats): 17 chunks, the last one shorter
    monkeypatch.setattr(gd, "GRAPH_GATHER_BUDGET", 3 * 4 * 16 * 4)
    chunked = graph_item_vectors(table, codes, "pooled")
    assert torch.equal(chunked, whole)
    # the reference, written out: normalise(mean over digits of each item's code embeddings)
    reference = torch.stack([table[torch.arange(4), c].mean(0) for c in codes])
    assert torch.allclose(whole, torch.nn.functional.normalize(reference, dim=-1), atol=1e-6)
    assert graph_item_vectors(table, codes[:0], "pooled").shape == (0, 16)


def test_start_items_and_popularity():
    seq = torch.tensor([[4, 5, 6, 0], [9, 0, 0, 0]])
    lens = torch.tensor([3, 1])
    popular = torch.tensor([2, 3])
    assert start_items(seq, lens, popular, "history", 2).tolist() == [[6, 5], [9, 0]]
    assert start_items(seq, lens, popular, "popular", 2).tolist() == [[2, 3], [2, 3]]
    assert start_items(seq, lens, popular, "both", 2).tolist() == [[6, 5, 2, 3], [9, 0, 2, 3]]
    counts = torch.tensor([100, 1, 5, 5, 0])  # item 0 (padding) is never popular
    assert popular_items(counts, 3).tolist() == [2, 3, 1]
    ds = SimpleNamespace(inter_feat={"iid": torch.tensor([1, 1, 3, 0])}, iid_field="iid")
    assert item_popularity(ds, 5).tolist() == [0, 2, 0, 1, 0]
    assert item_popularity(object(), 3).tolist() == [0, 0, 0]


def test_graph_decode_on_a_chain_walks_to_the_best_item():
    # items 1..9 on a chain; the score increases towards item 9; start at item 1
    N = 10
    neighbors = torch.zeros(N, 2, dtype=torch.long)
    for i in range(1, N):
        neighbors[i] = torch.tensor([max(1, i - 1), min(N - 1, i + 1)])
    codes = torch.arange(N).unsqueeze(1)  # L=1, code = item id
    log_probs = torch.arange(N, dtype=torch.float).log_softmax(0).view(1, 1, N)  # [B, L, K]
    start = torch.tensor([[1]])
    out = graph_decode(log_probs, codes, neighbors, start, beam_size=1, steps=3)
    visited = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert visited == [1, 2, 3, 4]  # one new item per step along the chain
    assert torch.equal(out[0, visited], log_probs[0, 0, visited])
    full = graph_decode(log_probs, codes, neighbors, start, beam_size=1, steps=8)
    assert full[0].argmax() == 9 and full[0, 0] == float("-inf")


# ------------------------------------------------------------------------------ FAIR in graph mode
def test_graph_decoding_finds_the_exact_top1_for_most_users(trained):
    agree, visited, n = 0, 0, 0
    for inter in _test_batches(trained):
        with torch.no_grad():
            exact = trained.model.full_sort_predict(inter)
            graph = trained.graph_model.full_sort_predict(inter)
        assert graph.shape == exact.shape == (inter.length, trained.model.n_items)
        seen = torch.isfinite(graph)
        assert not seen[:, 0].any()  # the padding item is never returned
        assert seen.sum(1).min() >= 1
        assert torch.allclose(graph[seen], exact[seen], atol=1e-6)  # exact scores
        top = graph.argmax(1)
        assert torch.all((top > 0) & (top < trained.model.n_items))
        agree += int((top == exact.argmax(1)).sum())
        visited += int(seen.sum())
        n += inter.length
    share_visited = visited / (n * trained.model.n_items)
    print(f"graph vs exact top-1 agreement {agree / n:.3f}, items visited {share_visited:.3f}")
    assert share_visited < 0.25  # a real search, not an exhaustive one
    assert agree / n >= 0.7


def test_graph_is_built_once_and_rebuilt_when_weights_change(trained, monkeypatch):
    model = copy.deepcopy(trained.graph_model).eval()
    builds = []
    original = gd.build_item_graph
    monkeypatch.setattr(gd, "build_item_graph", lambda *a: builds.append(1) or original(*a))
    inter = _test_batches(trained)[0]
    first = model.full_sort_predict(inter)
    model.full_sort_predict(inter)
    assert len(builds) == 1  # cached across batches
    model.train()
    model.eval()
    model.full_sort_predict(inter)
    assert len(builds) == 2  # training mode drops it
    model.load_state_dict(trained.model.state_dict())
    model.full_sort_predict(inter)
    assert len(builds) == 3  # new weights (in-place copy) are noticed without train()
    with torch.no_grad():
        model.code_embedding.weight.mul_(1.0)
    assert torch.equal(model.full_sort_predict(inter), first)
    assert len(builds) == 4


def test_graph_decoding_in_recbole_evaluation(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = copy.deepcopy(trained.config)
    exact = Trainer(config, trained.model).evaluate(trained.test, load_best_model=False)
    graph = Trainer(config, trained.graph_model).evaluate(trained.test, load_best_model=False)
    print(f"exact {dict(exact)}, graph {dict(graph)}")
    assert exact["recall@10"] > 0.5  # the model learned the walk
    assert abs(graph["recall@10"] - exact["recall@10"]) <= 0.1
    assert abs(graph["mrr@10"] - exact["mrr@10"]) <= 0.1


def test_score_items_equals_the_exact_ranking(trained):
    inter = _test_batches(trained)[0]
    model = trained.model
    with torch.no_grad():
        log_probs = model.digit_log_probs(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
        exact = model.full_sort_predict(inter)
    items = torch.randint(0, model.n_items, (inter.length, 30))
    scores = score_items(log_probs, model.item_codes, items)
    real = items > 0
    assert torch.equal(scores[real], exact.gather(1, items)[real])
    assert torch.all(scores[~real] == float("-inf"))
