r"""Tests of recbole_fair.data.dataset: semantic IDs on a RecBole dataset and train_mode."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

import numpy as np
import pytest
import torch
from recbole.config import Config

import recbole_fair  # noqa: F401  (compatibility shims)
from recbole_fair.data import FAIRDataset, SemanticIDDataset
from recbole_fair.data.dataset import all_positions_row_index
from recbole_fair.tokenizer import quantizer as quantizer_module

DIM = 32
N_ITEMS = 60


def fake_encoder(calls: list):
    r"""Deterministic fake encoder (unit vector seeded by the text hash) recording its calls."""

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).standard_normal(DIM)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return encode


@pytest.fixture
def calls(monkeypatch):
    record: list = []
    monkeypatch.setattr(SemanticIDDataset, "encoder_fn", fake_encoder(record))
    return record


def write_dataset(root, name="syn", seq_lengths=None, seed=0):
    r"""Users with random item sequences; items i90..i94 occur only as test targets, i99 only in
    the .item file. Returns the sequences."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    seq_lengths = seq_lengths or [int(rng.integers(4, 9)) for _ in range(40)]
    seqs = {}
    for u, length in enumerate(seq_lengths):
        seq = [f"i{j}" for j in rng.choice(N_ITEMS, size=length - 1, replace=False)]
        seqs[f"u{u}"] = seq + [f"i{90 + u % 5}"]  # test target never seen in training
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user, seq in seqs.items():
        rows += [f"{user}\t{item}\t{t}" for t, item in enumerate(seq)]
    (folder / f"{name}.inter").write_text("\n".join(rows) + "\n")
    lines = ["item_id:token\ttitle:token_seq\tbrand:token\tyear:float"]
    for j in [*range(N_ITEMS), 90, 91, 92, 93, 94, 99]:
        lines.append(f"i{j}\tProduct {j} in colour {j % 7}\tbrand{j % 3}\t{2000 + j}")
    (folder / f"{name}.item").write_text("\n".join(lines) + "\n")
    return seqs


def make_config(root, name="syn", **extra):
    config_dict = {
        "data_path": str(root),
        "train_neg_sample_args": None,
        "load_col": {
            "inter": ["user_id", "item_id", "timestamp"],
            "item": ["item_id", "title", "brand"],
        },
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "text_fields": ["title"],
        "n_codes": 4,
        "codebook_size": 16,
        "sid_opq_iterations": 5,
        "sid_cache_dir": str(root / "sid_cache"),
        "MAX_ITEM_LIST_LENGTH": 5,
        "show_progress": False,
    }
    config_dict.update(extra)
    return Config(model="SASRec", dataset=name, config_dict=config_dict)


def build(root, **extra):
    dataset = FAIRDataset(make_config(root, **extra))
    return dataset, dataset.build()


@pytest.fixture
def data_root(tmp_path):
    write_dataset(tmp_path)
    return tmp_path


def test_codes_attached_to_dataset_and_splits(data_root, calls):
    dataset, splits = build(data_root)
    codes = dataset.item_codes
    assert isinstance(codes, torch.Tensor) and codes.dtype == torch.int64
    assert codes.shape == (dataset.item_num, 4) and dataset.item_num == N_ITEMS + 5 + 1 + 1
    assert codes.min() >= 0 and codes.max() < 16 and (codes[0] == 0).all()
    for split in splits:
        assert split.item_codes is codes and split.semantic_id_report is dataset.semantic_id_report
        assert split.semantic_id_cache_key == dataset.semantic_id_cache_key
    report = dataset.semantic_id_report
    assert report["n_items"] == dataset.item_num - 1 and not report["cache_hit"]
    assert report["cache_key"] in dataset.semantic_id_cache_path
    # texts are in internal-id order: the text encoded for item id k is the title of token k
    texts = calls[0]
    for k in range(1, dataset.item_num):
        j = dataset.id2token(dataset.iid_field, k)[1:]
        assert texts[k] == f"Product {j} in colour {int(j) % 7}"
    # the text fields left item_feat (RecBole would join them into every batch)
    assert "title" not in dataset.item_feat and "title" not in dataset.field2type


def test_quantizer_fit_sees_exactly_the_training_items(data_root, calls, monkeypatch):
    seen = {}
    original_fit = quantizer_module.OPQProductQuantizer.fit

    def spy_fit(self, x):
        seen["x"] = np.array(x)
        return original_fit(self, x)

    monkeypatch.setattr(quantizer_module.OPQProductQuantizer, "fit", spy_fit)
    dataset, splits = build(data_root)
    # independent expectation from the raw file: each user's items except the last two
    lines = (data_root / "syn" / "syn.inter").read_text().splitlines()[1:]
    per_user: dict = {}
    for line in lines:
        user, item, t = line.split("\t")
        per_user.setdefault(user, []).append((float(t), item))
    expected = set()
    for seq in per_user.values():
        expected |= {item for _, item in sorted(seq)[:-2]}
    mask = dataset.train_item_mask
    got = {dataset.id2token(dataset.iid_field, k) for k in np.flatnonzero(mask)}
    assert got == expected and not mask[0]
    assert not {"i90", "i91", "i92", "i93", "i94", "i99"} & got
    embeddings = dataset.item_text_embeddings.numpy()
    np.testing.assert_array_equal(seen["x"], embeddings[mask])
    assert dataset.semantic_id_report["n_train_items"] == len(expected)


def test_cache_hit_and_rebuild_on_changes(data_root, calls, caplog):
    first, _ = build(data_root)
    assert len(calls) == 1
    second, _ = build(data_root)
    assert len(calls) == 1 and second.semantic_id_report["cache_hit"]
    assert torch.equal(first.item_codes, second.item_codes)
    # more text fields: new texts, re-encoded, new key
    more, _ = build(data_root, text_fields=["title", "brand"])
    assert len(calls) == 2 and more.semantic_id_cache_key != first.semantic_id_cache_key
    # another L: new key, the embeddings come from the embedding cache
    eight, _ = build(data_root, n_codes=8)
    assert len(calls) == 2 and eight.item_codes.shape == (first.item_num, 8)
    assert eight.semantic_id_cache_key != first.semantic_id_cache_key
    # a truncated cache file is detected (warning) and rebuilt
    path = first.semantic_id_cache_path
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:100])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rebuilt, _ = build(data_root)
    assert "truncated" in caplog.text and not rebuilt.semantic_id_report["cache_hit"]
    assert torch.equal(rebuilt.item_codes, first.item_codes)
    third, _ = build(data_root)
    assert third.semantic_id_report["cache_hit"]


def test_bad_inputs_raise_clear_errors(data_root, calls):
    with pytest.raises(ValueError, match=r"load_col"):
        FAIRDataset(
            make_config(
                data_root,
                load_col={
                    "inter": ["user_id", "item_id", "timestamp"],
                    "item": ["item_id", "year"],
                },
            )
        )
    with pytest.raises(
        ValueError, match=r"text_fields=\['description'\].*'title', 'brand', 'year'"
    ):
        FAIRDataset(make_config(data_root, text_fields=["description"]))
    with pytest.raises(ValueError, match=r"train_mode"):
        FAIRDataset(make_config(data_root, train_mode="windows"))
    with pytest.raises(ValueError, match=r"Only \d+ items.*at least 256: codebook_size \[256\]"):
        build(data_root, codebook_size=256)
    with pytest.raises(
        ValueError, match=r"after PCA \[30\] \(sid_pca_dim\) is not divisible by n_codes \[4\]"
    ):
        build(data_root, sid_pca_dim=30)
    assert calls == []  # known before encoding: nothing was encoded
    with pytest.raises(
        ValueError, match=r"dimension after PCA \[32\].*not divisible by n_codes \[5\]"
    ):
        build(data_root, n_codes=5)


# ------------------------------------------------------------------------------- train_mode
def _prefix_pairs(split):
    inter = split.inter_feat
    hist, length = inter["item_id_list"].numpy(), inter["item_length"].numpy()
    return Counter(
        (int(u), tuple(h[:n]), int(t))
        for u, h, n, t in zip(inter["user_id"].numpy(), hist, length, inter["item_id"].numpy())
    )


def _expanded_pairs(split):
    r"""Every (user, history, target) pair an all-position pass over the rows trains."""
    inter = split.inter_feat
    pairs = Counter()
    for u, h, n, t in zip(
        inter["user_id"].numpy(),
        inter["item_id_list"].numpy(),
        inter["item_length"].numpy(),
        inter["item_id"].numpy(),
    ):
        seq = list(h[:n]) + [t]
        for pos in range(n):
            pairs[(int(u), tuple(int(x) for x in seq[: pos + 1]), int(seq[pos + 1]))] += 1
    return pairs


def test_all_positions_equals_prefix_on_short_sequences(tmp_path, calls):
    # train part of each user <= MAX_ITEM_LIST_LENGTH + 1 = 6 interactions (+ valid + test)
    write_dataset(tmp_path, seq_lengths=[3 + (u % 6) for u in range(40)])
    _, (prefix_train, prefix_valid, prefix_test) = build(tmp_path, train_mode="prefix")
    _, (all_train, all_valid, all_test) = build(tmp_path, train_mode="all_positions")
    assert len(all_train) < len(prefix_train)
    assert _expanded_pairs(all_train) == _prefix_pairs(prefix_train)
    assert _prefix_pairs(all_valid) == _prefix_pairs(prefix_valid)
    assert _prefix_pairs(all_test) == _prefix_pairs(prefix_test)


def test_all_positions_long_sequences_same_targets(tmp_path, calls):
    write_dataset(tmp_path, seq_lengths=[4 + (u * 7) % 30 for u in range(40)])
    _, (prefix_train, _, _) = build(tmp_path, train_mode="prefix")
    _, (all_train, _, _) = build(tmp_path, train_mode="all_positions")
    targets = Counter((u, t) for u, _, t in _expanded_pairs(all_train).elements())
    assert targets == Counter((u, t) for u, _, t in _prefix_pairs(prefix_train).elements())
    assert sum(_expanded_pairs(all_train).values()) == len(prefix_train)
    assert len(all_train) < len(prefix_train) / 2


def test_training_popularity_counts_every_target_not_only_window_ends(tmp_path, calls):
    # the all_positions split keeps one row per window: its inter_feat holds only each window's
    # last target, so popularity (prior correction, graph start items) is counted before thinning
    from recbole_fair.data.item_counts import item_popularity

    write_dataset(tmp_path, seq_lengths=[4 + (u * 7) % 30 for u in range(40)])
    _, (prefix_train, _, _) = build(tmp_path, train_mode="prefix")
    _, (all_train, all_valid, _) = build(tmp_path, train_mode="all_positions")
    n = all_train.item_num
    expected = torch.bincount(prefix_train.inter_feat["item_id"].long(), minlength=n)
    expected[0] = 0
    window_ends = torch.bincount(all_train.inter_feat["item_id"].long(), minlength=n)
    assert not torch.equal(window_ends, expected)  # thinning drops targets: the old count
    assert torch.equal(item_popularity(all_train, n), expected)
    assert torch.equal(item_popularity(prefix_train, n), expected)
    assert torch.equal(all_valid.train_target_counts, all_train.train_target_counts)
    # sum = every training pair an all-position pass trains
    assert int(expected.sum()) == sum(_expanded_pairs(all_train).values())


def test_all_positions_row_index_windows():
    # one user with m = 12 rows, W = 5: keep k = 11, 6, 1; ties in time keep the current order
    uid = np.array([7] * 12 + [3] * 2)
    time = np.array([0, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0])
    index = all_positions_row_index(uid, time, 5)
    assert index.tolist() == [1, 6, 11, 13]
    # distinct times: the kept rows do not depend on the global row order
    time = np.r_[np.arange(12), 0, 1]
    perm = np.random.default_rng(0).permutation(14)
    kept = all_positions_row_index(uid[perm], time[perm], 5)
    assert sorted(perm[kept].tolist()) == [1, 6, 11, 13]


def write_tied_dataset(root, seed=1):
    r"""Users of 1..20 interactions (longer and shorter than MAX_ITEM_LIST_LENGTH = 5), times
    with ties inside and across users, rows shuffled, and a float and a token_seq field.
    Returns the number of interactions and of users."""
    lengths = [1, 2, 3, 3, 4, 5, 6, 7] + [8 + (u * 5) % 13 for u in range(24)]
    seqs = write_dataset(root, seq_lengths=lengths, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for user, seq in seqs.items():
        times = np.sort(rng.integers(0, 6, size=len(seq)))  # ties within and across users
        for item, t in zip(seq, times):
            tags = " ".join(f"t{x}" for x in rng.integers(0, 4, size=int(rng.integers(1, 4))))
            rows.append(f"{user}\t{item}\t{t}\t{rng.integers(1, 6)}.5\t{tags}")
    rows = [rows[i] for i in rng.permutation(len(rows))]
    header = "user_id:token\titem_id:token\ttimestamp:float\trating:float\ttags:token_seq"
    (root / "syn" / "syn.inter").write_text("\n".join([header, *rows]) + "\n")
    return len(rows), len(seqs)


TIED_LOAD_COL = {
    "inter": ["user_id", "item_id", "timestamp", "rating", "tags"],
    "item": ["item_id", "title", "brand"],
}


def _spy_augmented_rows(monkeypatch):
    r"""Records the rows (and item-list shape) each ``data_augmentation`` built."""
    built = []
    original = SemanticIDDataset.data_augmentation

    def spy(self):
        original(self)
        built.append((len(self.inter_feat), tuple(self.inter_feat["item_id_list"].shape)))

    monkeypatch.setattr(SemanticIDDataset, "data_augmentation", spy)
    return built


def test_window_rows_build_the_same_splits_as_every_prefix_row(
    tmp_path, calls, monkeypatch, caplog
):
    n_inter, n_users = write_tied_dataset(tmp_path)
    built = _spy_augmented_rows(monkeypatch)
    with caplog.at_level(logging.INFO):
        new, new_splits = build(tmp_path, load_col=TIED_LOAD_COL)
    monkeypatch.setattr(SemanticIDDataset, "window_rows_only", False)
    old, old_splits = build(tmp_path, load_col=TIED_LOAD_COL)
    prefix_rows = n_inter - n_users
    kept_rows = sum(len(split) for split in new_splits)
    assert built == [(kept_rows, (kept_rows, 5)), (prefix_rows, (prefix_rows, 5))]
    assert kept_rows < prefix_rows * 0.6  # 128 of 336 prefix rows on this data
    assert f"{prefix_rows - kept_rows} of the {prefix_rows} prefix rows were never built" in (
        caplog.text
    )
    assert "tags_list" in new_splits[0].inter_feat and "rating_list" in new_splits[0].inter_feat
    for new_split, old_split in zip(new_splits, old_splits):
        assert len(new_split) == len(old_split) > 0
        assert set(new_split.inter_feat.columns) == set(old_split.inter_feat.columns)
        for field in old_split.inter_feat.columns:
            assert torch.equal(new_split.inter_feat[field], old_split.inter_feat[field]), field
    assert torch.equal(new.train_target_counts, old.train_target_counts)
    assert int(new.train_target_counts.sum()) > len(new_splits[0])  # every target, not windows
    np.testing.assert_array_equal(new.train_item_mask, old.train_item_mask)
    np.testing.assert_array_equal(new.train_item_mask, old.training_item_mask(old_splits[0]))
    assert new.semantic_id_cache_key == old.semantic_id_cache_key
    assert torch.equal(new.item_codes, old.item_codes)
    assert new.window_rows is None and new_splits[0].window_rows is None


@pytest.mark.parametrize(
    "extra",
    [
        {"train_mode": "prefix"},
        {"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user"}},
        {"eval_args": {"split": {"LS": "test_only"}, "order": "TO", "mode": "full"}},
    ],
)
def test_other_modes_and_splits_build_every_prefix_row(tmp_path, calls, monkeypatch, extra):
    n_inter, n_users = write_tied_dataset(tmp_path)
    built = _spy_augmented_rows(monkeypatch)
    dataset, _ = build(tmp_path, load_col=TIED_LOAD_COL, **extra)
    assert built == [(n_inter - n_users, (n_inter - n_users, 5))]
    assert dataset.window_rows is None


def test_semantic_id_yaml_defaults_reach_the_settings():
    from recbole_fair.config import Config as FairConfig
    from recbole_fair.tokenizer import SemanticIDSettings

    config = FairConfig(model="FAIR", dataset="ml-100k", config_dict={"sid_pca_dim": 64})
    settings = SemanticIDSettings.from_config(config)
    assert settings.text_encoder == "all-MiniLM-L6-v2" and settings.text_template == "join"
    assert settings.text_fields == ["movie_title", "release_year", "class"]  # dataset YAML
    assert (settings.n_codes, settings.codebook_size) == (32, 256)  # model YAML
    assert settings.sid_pca_dim == 64 and settings.sid_seed == config["seed"]
    assert settings.sid_cache_dir == "./saved/sid_cache" and config["train_mode"] == "all_positions"
