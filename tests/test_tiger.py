"""TIGER: RQ-VAE semantic IDs, the trie-constrained beam search, the model and its checks.

Synthetic data: item ``i`` is always followed by item ``i + 1 (mod N)``; the model's semantic
IDs are random distinct codes (3 levels x 8 + collision digit) set on ``dataset.item_codes`` as
``TIGERDataset`` would. The RQ-VAE is tested on its own (clustered embeddings), the dataset with
a fake text encoder, and the whole pipeline once on ml-100k (inside the recbole wheel).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer
from recbole.utils import init_seed
from synthetic import write_walk_dataset

import recbole_fair  # noqa: F401  (compatibility shims)
from recbole_fair.errors import ConfigError
from recbole_fair.model.beam_search import ItemTrie, constrained_beam_search, count_invalid
from recbole_fair.model.host_batch import length_groups
from recbole_fair.model.sequential_recommender.tiger import TIGER
from recbole_fair.model.t5_decoder import DecoderContext
from recbole_fair.model.tiger_settings import TIGERSettings
from recbole_fair.tokenizer import (
    RQVAESettings,
    SemanticIDSettings,
    add_collision_digit,
    build_rqvae_semantic_ids,
    collision_report,
    train_rqvae,
)

TIGER_YAML = Path(__file__).resolve().parents[1] / "properties" / "model" / "TIGER.yaml"
N_ITEMS, N_USERS, SEQ_LEN, M, K = 100, 400, 8, 3, 8


pytestmark = pytest.mark.usefixtures("single_thread")


def random_codes(n_items: int, rng: np.random.Generator, collide: int = 0) -> torch.Tensor:
    r"""Distinct random ``M``-digit codes, the first ``collide`` items sharing one, + the
    collision digit; row 0 zeros."""
    flat = rng.permutation(K**M)[: n_items - 1]
    flat[:collide] = flat[0]
    codes = np.stack([(flat // K**j) % K for j in range(M)], axis=1)
    return torch.as_tensor(add_collision_digit(np.r_[np.zeros((1, M), np.int64), codes]))


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    write_walk_dataset(root, N_USERS, N_ITEMS, SEQ_LEN, rng=rng)
    config = Config(
        model=TIGER,
        dataset="syn",
        config_file_list=[str(TIGER_YAML)],
        config_dict={
            "data_path": str(root),
            "checkpoint_dir": str(root / "saved"),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {
                "split": {"LS": "valid_and_test"},
                "order": "TO",
                "group_by": "user",
                "mode": "full",
            },
            "MAX_ITEM_LIST_LENGTH": 5,
            "rqvae_levels": M,
            "rqvae_codebook_size": K,
            "hidden_size": 32,
            "inner_size": 64,
            "n_layers": 1,
            "n_decoder_layers": 1,
            "n_heads": 2,
            "head_dim": 16,
            "dropout_prob": 0.0,
            "n_user_tokens": 0,
            "beam_size": 10,
            "tiger_exact_check_users": 16,
            "metrics": ["Recall", "MRR"],
            "topk": [10],
            "valid_metric": "Recall@10",
            "train_batch_size": 64,
            "learning_rate": 0.005,
            "show_progress": False,
            "state": "WARNING",
        },
    )
    dataset = create_dataset(config)
    dataset.item_codes = random_codes(dataset.item_num, rng, collide=3)
    return SimpleNamespace(config=config, dataset=dataset, root=root)


def make_model(syn, **overrides) -> TIGER:
    config = copy.deepcopy(syn.config)
    for key, value in overrides.items():
        config[key] = value
    torch.manual_seed(0)
    return TIGER(config, syn.dataset).eval()


def random_batch(model: TIGER, B: int, T: int = 5, seed: int = 1) -> Interaction:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    seqs = torch.randint(1, model.n_items, (B, T), generator=g)
    seqs[torch.arange(T).unsqueeze(0) >= lens.unsqueeze(1)] = 0
    return Interaction(
        {
            model.ITEM_SEQ: seqs,
            model.ITEM_SEQ_LEN: lens,
            model.ITEM_ID: torch.randint(1, model.n_items, (B,), generator=g),
            model.USER_ID: torch.arange(1, B + 1),
        }
    )


def context_of(model: TIGER, interaction: Interaction) -> DecoderContext:
    hidden, mask = model.encode(interaction)
    return model.decoder_context(hidden, mask)


# ------------------------------------------------------------------------------- contract
def test_yaml_keys_are_commented_and_paper_sized():
    text = TIGER_YAML.read_text()
    keys = yaml.safe_load(text)
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            assert "# (" in line, f"key without '# (type) meaning.' comment: {line}"
    assert (keys["rqvae_levels"], keys["rqvae_codebook_size"], keys["rqvae_code_dim"]) == (
        3,
        256,
        32,
    )
    assert (keys["n_layers"], keys["n_decoder_layers"], keys["n_heads"], keys["head_dim"]) == (
        4,
        4,
        6,
        64,
    )
    assert (keys["hidden_size"], keys["inner_size"], keys["dropout_prob"]) == (128, 1024, 0.1)
    assert keys["beam_size"] == 20 and keys["train_mode"] == "prefix"
    assert keys["rqvae_beta"] == 0.25


def test_beam_size_smaller_than_topk_raises(syn):
    with pytest.raises(ValueError, match=r"beam_size \[5\].*topk"):
        make_model(syn, beam_size=5, topk=[5, 10])


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("rqvae_levels", 2, "rqvae_levels"),
        ("rqvae_codebook_size", 4, "rqvae_codebook_size"),
        ("train_mode", "all_positions", "train_mode"),
        ("feed_forward_proj", "tanh", "feed_forward_proj"),
    ],
)
def test_bad_config_raises_naming_the_key(syn, key, value, match):
    with pytest.raises(ValueError, match=match):
        make_model(syn, **{key: value})


def test_settings_cover_the_yaml_with_its_paper_defaults():
    """Every key TIGERSettings reads (but RecBole's topk) is in TIGER.yaml, with the same value
    as the dataclass default (the paper's)."""
    keys = yaml.safe_load(TIGER_YAML.read_text())
    defaults = TIGERSettings()
    for field in dataclasses.fields(TIGERSettings):
        if field.name == "topk":
            continue
        assert field.name in keys, f"{field.name} is read by TIGER but not in TIGER.yaml"
        assert keys[field.name] == getattr(defaults, field.name), field.name
    settings = TIGERSettings.from_config({**keys, "topk": [5, 10]})
    assert settings == TIGERSettings(topk=[10, 5])
    assert settings.topk == [5, 10] and isinstance(settings.n_heads, int)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"hidden_size": None}, r"config key \[hidden_size\] is missing"),
        ({"layer_norm_eps": 0}, r"layer_norm_eps must be > 0"),
        ({"n_heads": 0}, r"n_heads must be >= 1"),
        ({"dropout_prob": "high"}, r"dropout_prob must be a number"),
        ({"attn_implementation": "flash"}, "attn_implementation must be one of"),
        ({"tiger_exact_check_mode": "some"}, "tiger_exact_check_mode must be one of"),
        ({"loss_type": "BPR"}, "loss_type must be CE"),
    ],
)
def test_settings_errors_name_the_key(values, match):
    keys = {**yaml.safe_load(TIGER_YAML.read_text()), **values}
    with pytest.raises(ConfigError, match=match):
        TIGERSettings.from_config(keys)


def test_incremental_decoder_matches_transformers(syn):
    """Our decoder pass over the T5 weights gives transformers' teacher-forced scores."""
    model = make_model(syn, n_user_tokens=50, n_layers=2, n_decoder_layers=2)
    interaction = random_batch(model, B=6)
    with torch.no_grad():
        logits = model(
            interaction[model.ITEM_SEQ],
            interaction[model.ITEM_SEQ_LEN],
            interaction[model.ITEM_ID],
            interaction[model.USER_ID],
        ).log_softmax(-1)  # [B, C, V]
        codes = model.item_codes[interaction[model.ITEM_ID]]
        expected = logits.gather(2, codes.unsqueeze(-1)).squeeze(-1).sum(-1)
        got = model.predict(interaction)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_length_groups_are_the_fewest_padded_positions():
    """The dynamic programme's split equals the best of every split into at most G contiguous
    groups (brute force), with the fewest groups among the best."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = np.sort(rng.integers(1, 12, rng.integers(1, 30)))
        max_groups = int(rng.integers(1, 6))
        groups = length_groups(lengths, max_groups)
        cost, start = 0, 0
        for end, longest in groups:
            assert lengths[start:end].max() == longest
            cost, start = cost + (end - start) * longest, end
        assert start == len(lengths)
        best = None
        n = len(lengths)
        for k in range(1, max_groups + 1):
            for cuts in itertools.combinations(range(1, n), k - 1):
                bounds = [0, *cuts, n]
                split = sum((b - a) * lengths[b - 1] for a, b in zip(bounds, bounds[1:]))
                best = min(best or (split, k), (split, k))
        assert (cost, len(groups)) == best
    assert length_groups(np.array([1, 1, 2, 2, 2, 9]), 2) == ((5, 2), (6, 9))
    assert length_groups(np.array([3, 3, 3]), 4) == ((3, 3),)


def plain_t5_loss(model: TIGER, interaction: Interaction) -> torch.Tensor:
    """The training loss as T5's own forward computes it on the untrimmed batch: every padding
    column kept, logits over the whole vocabulary, then each digit's codes gathered."""
    tokens = model.item_tokens(interaction[model.ITEM_SEQ]).flatten(1)  # [B, T * C]
    user = model.user_token_offset + interaction[model.USER_ID] % model.n_user_tokens
    tokens = torch.cat([user.unsqueeze(1), tokens], 1)
    target = interaction[model.POS_ITEM_ID]
    labels = model.item_tokens(target)
    decoder_input_ids = torch.cat([labels.new_zeros(len(labels), 1), labels[:, :-1]], 1)
    logits = model.t5(
        input_ids=tokens, attention_mask=tokens != 0, decoder_input_ids=decoder_input_ids
    ).logits  # [B, C, vocab]
    logits = logits.gather(2, model.level_tokens.unsqueeze(0).expand(len(target), -1, -1))
    codes = model.item_codes[target]
    return F.cross_entropy(logits.reshape(-1, model.code_vocab), codes.reshape(-1))


@pytest.mark.parametrize("groups", [1, 3, 8])
def test_trimmed_length_groups_give_the_untrimmed_loss_and_gradients(syn, groups):
    """Training's speed paths (rows sorted into length groups, each trimmed to its own longest
    history; the LM head restricted to each digit's codes) give the loss and gradients of T5's
    plain forward on the untrimmed batch (dropout off: the same arithmetic up to rounding)."""
    model = make_model(syn, n_user_tokens=50, n_layers=2, n_decoder_layers=2).train()
    model.settings.tiger_length_groups = groups
    batch = random_batch(model, B=48, T=5, seed=7)
    padded = torch.cat([batch[model.ITEM_SEQ], torch.zeros(48, 3, dtype=torch.long)], 1)
    batch.interaction[model.ITEM_SEQ] = padded  # 3 padding columns beyond every history

    def loss_and_grads(compute, *args):
        model.zero_grad()
        loss = compute(*args)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    def copy_of(interaction):
        return Interaction({k: v.clone() for k, v in interaction.interaction.items()})

    expected, expected_grads = loss_and_grads(plain_t5_loss, model, batch)
    prepared = model.prepare_batch(copy_of(batch))  # on the host, as recbole-fair's trainer
    hint = prepared.host_batch
    assert hint.longest == int(batch[model.ITEM_SEQ_LEN].max()) < padded.size(1)
    if groups == 1:
        assert hint.groups is None
    else:
        assert 1 < len(hint.groups) <= groups and hint.groups[-1] == (48, hint.longest)
        assert (prepared[model.ITEM_SEQ_LEN].diff() >= 0).all()  # rows sorted by length
    for interaction in (prepared, copy_of(batch)):  # with the host's hint, and without
        loss, grads = loss_and_grads(model.calculate_loss, interaction)
        assert abs(float(loss) - float(expected)) < 1e-5
        for grad, expected_grad in zip(grads, expected_grads):
            torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------- trie
def test_trie_allowed_step_and_lookup():
    codes = torch.tensor([[0, 0, 0], [1, 2, 0], [1, 2, 1], [1, 3, 0], [4, 0, 0]])
    trie = ItemTrie(codes, vocab_size=5)
    assert trie.allowed(0, torch.tensor([0])).nonzero()[:, 1].tolist() == [1, 4]
    node = trie.step(0, torch.tensor([0, 0, 0]), torch.tensor([1, 4, 2]))
    assert node[2] == -1 and node[0] >= 0 and node[1] >= 0
    assert trie.allowed(1, node[:1]).nonzero()[:, 1].tolist() == [2, 3]
    assert trie.lookup(codes).tolist() == [-1, 1, 2, 3, 4]  # row 0 (padding) is not an item
    assert trie.lookup(torch.tensor([[1, 3, 1], [2, 0, 0]])).tolist() == [-1, -1]
    with pytest.raises(ValueError, match="unique semantic IDs"):
        ItemTrie(torch.tensor([[0, 0], [1, 1], [1, 1]]))


def test_beam_search_with_adversarial_scores_only_yields_valid_distinct_items():
    """Log-probs that favour codes outside the trie: still only existing, distinct items."""
    rng = np.random.default_rng(3)
    codes = random_codes(40, rng, collide=5)
    trie = ItemTrie(codes)
    V, B, W = trie.vocab_size, 50, 12
    allowed_any = torch.zeros(codes.size(1), V, dtype=torch.bool)
    for level in range(codes.size(1)):
        allowed_any[level, codes[1:, level]] = True
    g = torch.Generator().manual_seed(0)

    def step(level, prev, parent):
        w = 1 if parent is None else parent.size(1)
        scores = torch.randn(B, w, V, generator=g)
        scores[:, :, ~allowed_any[level]] += 50.0  # invalid codes are the most likely
        return scores.log_softmax(-1)

    items, scores = constrained_beam_search(step, trie, B, W)
    assert items.shape == (B, W) and torch.isfinite(scores).all()
    assert ((items >= 1) & (items < 40)).all()
    assert count_invalid(items, scores) == (B * W, 0, 0)
    assert (scores[:, 1:] <= scores[:, :-1]).all()


def test_trie_decoder_yields_valid_distinct_items_random_model(syn):
    model = make_model(syn, beam_size=20, topk=[5, 10, 20])
    interaction = random_batch(model, B=300, seed=2)
    with torch.no_grad():
        context = context_of(model, interaction)
        items, scores = model.beam_search(context)  # [300, 20]
        exact = model.score_items(context, items)  # their teacher-forced log-probs
    assert items.shape == (300, 20) and torch.isfinite(scores).all()
    assert ((items >= 1) & (items < model.n_items)).all()
    assert count_invalid(items, scores) == (300 * 20, 0, 0)
    assert (scores[:, 1:] <= scores[:, :-1] + 1e-6).all()
    torch.testing.assert_close(scores, exact, atol=1e-4, rtol=1e-4)
    # full_sort_predict: the beam items with their scores, everything else -inf
    model.eval()
    full = model.full_sort_predict(interaction)
    assert full.shape == (300, model.n_items)
    assert (torch.isfinite(full).sum(1) == 20).all()
    report = model.generation_report
    assert report["invalid_generations"] == 0 and report["duplicate_generations"] == 0
    assert report["invalid_generation_rate"] == 0.0 and report["users"] == 300
    assert report["exact_check_users"] == 16 and 0.0 <= report["beam_exact_overlap@10"] <= 1.0


def test_full_sort_predict_is_the_same_in_small_chunks(syn):
    interaction = random_batch(make_model(syn), B=23, seed=6)
    with torch.no_grad():
        whole = make_model(syn).full_sort_predict(interaction)
        chunked = make_model(syn, tiger_decode_chunk=30).full_sort_predict(interaction)  # 3 users
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


def test_beam_topk_equals_exact_topk_when_beam_covers_all_items(syn):
    model = make_model(syn, beam_size=N_ITEMS + 5, topk=[5, 10])
    interaction = random_batch(model, B=8, seed=4)
    with torch.no_grad():
        context = context_of(model, interaction)
        items, scores = model.beam_search(context)
        all_items = torch.arange(1, model.n_items)
        exact = model.score_items(context, all_items)  # [B, n_items - 1]
    order = exact.argsort(dim=1, descending=True)
    n = model.n_items - 1
    assert torch.equal(items[:, :n], all_items[order])
    torch.testing.assert_close(scores[:, :n], exact.gather(1, order), atol=1e-4, rtol=1e-4)
    assert (items[:, n:] == 0).all() and torch.isinf(scores[:, n:]).all()
    # the run-time check reports full overlap
    model.eval()
    model.full_sort_predict(interaction)
    assert model.generation_report["beam_exact_overlap@10"] == pytest.approx(1.0)


def test_branch_and_bound_exact_topk_equals_scoring_every_item(syn):
    model = make_model(syn, beam_size=10, topk=[5, 10])
    interaction = random_batch(model, B=12, seed=5)
    with torch.no_grad():
        context = context_of(model, interaction)
        items, scores = model.beam_search(context)  # a narrow beam: not exact
        all_items = torch.arange(1, model.n_items)
        exact = model.score_items(context, all_items)
        top = exact.topk(10, dim=1)
        bound_items, bound_scores = model.exact_topk(context, 10, scores[:, 9])
        free_items, _ = model.exact_topk(context, 10)  # no bound: every prefix expanded
    assert torch.equal(bound_items, all_items[top.indices])
    assert torch.equal(free_items, all_items[top.indices])
    torch.testing.assert_close(bound_scores, top.values, atol=1e-4, rtol=1e-4)


# -------------------------------------------------------------------------------- learning
def test_learns_next_item_rule_with_recbole_trainer(syn, in_tmp_dir):
    config = copy.deepcopy(syn.config)
    config["epochs"] = 8
    config["eval_step"] = 100  # no validation during fit
    init_seed(2020, True)
    train_data, valid_data, test_data = data_preparation(config, syn.dataset)
    torch.manual_seed(0)
    model = TIGER(config, train_data._dataset)
    trainer = Trainer(config, model)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    result = trainer.evaluate(test_data, load_best_model=False)
    report = model.generation_report
    print(f"synthetic rule: {dict(result)}; generation report: {report}")
    assert result["recall@10"] >= 0.9
    assert report["invalid_generations"] == 0 and report["users"] == N_USERS
    assert report["beam_exact_overlap@10"] >= 0.8


# --------------------------------------------------------------------------------- RQ-VAE
def clustered(n=600, dim=32, clusters=12, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def small_rqvae(**overrides) -> RQVAESettings:
    values = dict(
        rqvae_levels=3,
        rqvae_codebook_size=16,
        rqvae_code_dim=8,
        rqvae_hidden_sizes=[32],
        rqvae_epochs=40,
        rqvae_batch_size=128,
        rqvae_learning_rate=3e-3,
    )
    values.update(overrides)
    return RQVAESettings(**values)


def test_rqvae_loss_decreases_and_ids_are_unique_after_extra_digit():
    x = clustered()
    model, history = train_rqvae(x, small_rqvae(), seed=0)
    total = np.add(history["recon_loss"], history["quant_loss"])
    assert history["recon_loss"][-1] < 0.5 * history["recon_loss"][0]
    assert total[-5:].mean() < 0.6 * total[:5].mean()
    codes = model.encode(torch.from_numpy(x)).numpy()  # [n, 3]
    assert codes.shape == (600, 3) and codes.min() >= 0 and codes.max() < 16
    full = add_collision_digit(np.r_[np.zeros((1, 3), np.int64), codes])
    assert len(np.unique(full[1:], axis=0)) == 600 and not full[0].any()
    report = collision_report(full, 16)
    assert report["collision_rate"] == 0.0
    assert (
        report["n_colliding_items_before_extra_digit"]
        == len(codes)
        - len(np.unique(codes, axis=0))
        + report["n_collision_groups_before_extra_digit"]
    )


def test_collision_digit_counts_within_groups_in_item_order():
    codes = np.array([[0, 0], [1, 2], [3, 4], [1, 2], [5, 5], [1, 2], [3, 4]])
    full = add_collision_digit(codes)
    assert full[:, -1].tolist() == [0, 0, 0, 1, 0, 2, 1]
    report = collision_report(full, 8)
    assert report["n_collision_groups_before_extra_digit"] == 2
    assert report["n_colliding_items_before_extra_digit"] == 5
    assert report["max_collision_group"] == 3 and report["collision_rate"] == 0.0


def test_rqvae_settings_validate():
    with pytest.raises(ValueError, match="rqvae_optimizer"):
        RQVAESettings(rqvae_optimizer="sgd")
    with pytest.raises(ValueError, match="rqvae_codebook_size"):
        train_rqvae(clustered(n=10), small_rqvae(rqvae_codebook_size=16), seed=0)


def fake_encoder(calls: list | None = None, dim: int = 32):
    r"""Deterministic fake text encoder: a unit vector seeded by the text's hash."""

    def encode(texts: list[str]) -> np.ndarray:
        if calls is not None:
            calls.append(len(texts))
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).standard_normal(dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return encode


def test_rqvae_cache_hit_key_changes_and_corruption(tmp_path, caplog):
    texts = [""] + [f"item {i} colour {i % 7}" for i in range(1, 120)]
    mask = np.ones(len(texts), dtype=bool)
    mask[-10:] = False
    settings = SemanticIDSettings(sid_cache_dir=str(tmp_path), text_fields=["t"], sid_seed=1)
    rq = small_rqvae(rqvae_epochs=3)
    calls: list = []
    first = build_rqvae_semantic_ids(texts, mask, settings, rq, encoder_fn=fake_encoder(calls))
    assert calls == [120] and not first.report["cache_hit"] and os.path.isfile(first.cache_path)
    assert first.codes.shape == (120, 4) and len(np.unique(first.codes[1:], axis=0)) == 119
    assert first.report["collision_rate"] == 0.0 and first.report["n_train_items"] == 109
    assert "collision_rate_before_extra_digit" in first.report
    assert os.path.basename(first.cache_path).startswith("rqvae-")

    second = build_rqvae_semantic_ids(texts, mask, settings, rq, encoder_fn=fake_encoder(calls))
    assert calls == [120] and second.report["cache_hit"]
    np.testing.assert_array_equal(first.codes, second.codes)

    # FAIR's collision separation does not apply to TIGER's codes: said, not silently ignored
    # (nor does the random-ID ablation)
    separate = SemanticIDSettings(
        **{**settings.__dict__, "sid_collisions": "separate", "sid_method": "random"}
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        third = build_rqvae_semantic_ids(texts, mask, separate, rq, encoder_fn=fake_encoder(calls))
    assert "sid_collisions [separate] applies to the OPQ codes" in caplog.text
    assert "sid_method [random] and sid_random_digits [0] apply to the OPQ codes" in caplog.text
    np.testing.assert_array_equal(first.codes, third.codes)

    # every RQ-VAE setting and the seed are in the key; embeddings come from their cache
    for other_rq, other_settings in [
        (small_rqvae(rqvae_epochs=3, rqvae_code_dim=4), settings),
        (small_rqvae(rqvae_epochs=3, rqvae_beta=0.5), settings),
        (rq, SemanticIDSettings(**{**settings.__dict__, "sid_seed": 2})),
    ]:
        other = build_rqvae_semantic_ids(
            texts, mask, other_settings, other_rq, encoder_fn=fake_encoder(calls)
        )
        assert other.cache_key != first.cache_key and not other.report["cache_hit"]
    assert calls == [120]

    # truncated file: warning, rebuilt identically (same seed), valid afterwards
    data = open(first.cache_path, "rb").read()
    with open(first.cache_path, "wb") as f:
        f.write(data[: len(data) // 2])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rebuilt = build_rqvae_semantic_ids(texts, mask, settings, rq, encoder_fn=fake_encoder())
    assert "corrupt or truncated" in caplog.text and not rebuilt.report["cache_hit"]
    np.testing.assert_array_equal(rebuilt.codes, first.codes)

    # a file whose IDs are not unique any more (re-signed, so only the content check fails)
    from recbole_fair.tokenizer.cache import save_npz_atomic

    with np.load(first.cache_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "checksum"}
    arrays["codes"][2] = arrays["codes"][1]
    save_npz_atomic(first.cache_path, arrays)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        stale = build_rqvae_semantic_ids(texts, mask, settings, rq, encoder_fn=fake_encoder())
    assert "stale" in caplog.text and not stale.report["cache_hit"]


def test_tiger_dataset_builds_unique_codes(tmp_path, monkeypatch):
    from recbole_fair.config import Config as PluginConfig
    from recbole_fair.data import TIGERDataset
    from recbole_fair.utils import create_dataset as plugin_create_dataset

    folder = tmp_path / "txt"
    folder.mkdir()
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(60):
        rows += [f"u{u}\ti{(u + t) % 40}\t{t}" for t in range(6)]
    (folder / "txt.inter").write_text("\n".join(rows) + "\n")
    items = ["item_id:token\ttitle:token_seq"] + [f"i{i}\tthing {i % 13}" for i in range(40)]
    (folder / "txt.item").write_text("\n".join(items) + "\n")
    monkeypatch.setattr(TIGERDataset, "encoder_fn", staticmethod(fake_encoder()))
    config_dict = {
        "data_path": str(tmp_path),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]},
        "text_fields": ["title"],
        "sid_cache_dir": str(tmp_path / "cache"),
        "rqvae_codebook_size": 8,
        "rqvae_epochs": 2,
        "rqvae_hidden_sizes": [16],
        "show_progress": False,
        "state": "WARNING",
    }
    config = PluginConfig(model="TIGER", dataset="txt", config_dict=config_dict)
    dataset = plugin_create_dataset(config)
    assert isinstance(dataset, TIGERDataset)
    train, _, _ = dataset.build()
    codes = train.item_codes
    assert codes.shape == (dataset.item_num, 4)
    assert len(torch.unique(codes[1:], dim=0)) == dataset.item_num - 1
    report = train.semantic_id_report
    # 40 items share 13 texts, hence 13 embeddings: at least 27 items collide before the digit
    assert report["n_colliding_items_before_extra_digit"] >= 27 and report["collision_rate"] == 0
    config = PluginConfig(
        model="TIGER", dataset="txt", config_dict={**config_dict, "train_mode": "all_positions"}
    )
    with pytest.raises(ValueError, match="train_mode"):
        plugin_create_dataset(config)


# ----------------------------------------------------------------------------- end to end
def test_end_to_end_ml100k(in_tmp_dir, sid_cache_dir):
    from recbole_fair.quick_start import run_recbole_fair

    result = run_recbole_fair(
        model="TIGER",
        dataset="ml-100k",
        config_dict={
            "epochs": 1,
            "hidden_size": 16,
            "inner_size": 32,
            "n_layers": 1,
            "n_decoder_layers": 1,
            "n_heads": 2,
            "head_dim": 8,
            "dropout_prob": 0.0,
            "n_user_tokens": 100,
            "MAX_ITEM_LIST_LENGTH": 3,
            "train_batch_size": 4096,
            "rqvae_epochs": 3,
            "beam_size": 10,
            "topk": [5, 10],
            "tiger_exact_check_users": 8,
            "sid_cache_dir": sid_cache_dir,
            "show_progress": False,
        },
    )
    assert {"recall@5", "recall@10", "ndcg@10"} <= set(result["test_result"])
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
    report = result["semantic_ids"]
    assert report["tokenizer"] == "rqvae" and report["collision_rate"] == 0.0
    assert "collision_rate_before_extra_digit" in report and report["n_codes"] == 4
    assert os.path.basename(result["paths"]["semantic_id_cache"]).startswith("rqvae-")
