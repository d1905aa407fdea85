r"""Tests of recbole_fair.tokenizer: item texts, encoder, quantizer, cache and report."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from recbole.config import Config
from recbole.data.dataset import SequentialDataset

import recbole_fair  # noqa: F401  (compatibility shims)
from recbole_fair.errors import DataError, UserInputError
from recbole_fair.tokenizer import (
    OPQProductQuantizer,
    SemanticIDSettings,
    build_semantic_ids,
    quality_report,
    quantize,
    random_codes,
    separate_collisions,
)
from recbole_fair.tokenizer.cache import save_npz_atomic
from recbole_fair.tokenizer.quantizer import (
    check_quantizer_args,
    default_threads,
    min_training_items,
)
from recbole_fair.tokenizer.text import build_item_texts, field_texts, resolve_text_fields

DIM = 32
REPO = Path(__file__).resolve().parents[1]


def fake_encoder(calls: list | None = None, dim: int = DIM):
    r"""Deterministic fake text encoder: a unit vector seeded by the text's hash."""

    def encode(texts: list[str]) -> np.ndarray:
        if calls is not None:
            calls.append(list(texts))
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).standard_normal(dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return encode


# ------------------------------------------------------------------------- synthetic dataset
ITEMS = {
    # token: (title, brand, categories, price); "" = empty field
    "a1": ("Red Matte Lipstick", "Acme", "Makeup, Lips", "12.5"),
    "a2": ("Hydrating Face Cream 50ml", "", "Skin Care, Face", "30"),
    "a3": ("Hair Dryer Pro 2000", "Blowco", "Hair, Tools", ""),
    "a4": ("", "", "", ""),  # an item without any text
    "a5": ("Nail Polish Set (12 colours)", "Acme", "Nails", "8.99"),
    "zz": ("Only In The Item File", "Ghost", "Misc", "1"),  # never in .inter
}


def write_dataset(root, name="syn", item_header=None, items=ITEMS):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    seqs = {
        "u1": ["a1", "a2", "a3", "a5"],
        "u2": ["a2", "a4", "a1"],
        "u3": ["a5", "a3", "a4", "a2"],
    }
    for user, seq in seqs.items():
        rows += [f"{user}\t{item}\t{t}" for t, item in enumerate(seq)]
    (folder / f"{name}.inter").write_text("\n".join(rows) + "\n")
    header = item_header or [
        "item_id:token",
        "title:token_seq",
        "brand:token",
        "categories:token_seq",
        "price:float",
    ]
    lines = ["\t".join(header)]
    for token, values in items.items():
        lines.append("\t".join([token, *values[: len(header) - 1]]))
    (folder / f"{name}.item").write_text("\n".join(lines) + "\n")
    return folder


def load_dataset(
    root, name="syn", item_cols=("item_id", "title", "brand", "categories", "price"), **extra
):
    config = Config(
        model="SASRec",
        dataset=name,
        config_dict={
            "data_path": str(root),
            "train_neg_sample_args": None,
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": list(item_cols)},
            "eval_args": {
                "split": {"LS": "valid_and_test"},
                "order": "TO",
                "group_by": "user",
                "mode": "full",
            },
            "show_progress": False,
            **extra,
        },
    )
    return SequentialDataset(config)


@pytest.fixture(scope="module")
def syn_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset(root)
    return load_dataset(root)


# -------------------------------------------------------------------------------- item text
def test_rebuilt_field_text_equals_item_file(syn_dataset):
    ds = syn_dataset
    assert ds.item_num == len(ITEMS) + 1  # items only in .item are kept, plus [PAD]
    columns = {"title": 0, "brand": 1, "categories": 2}
    for field, col in columns.items():
        texts = field_texts(ds, field)
        assert texts[0] == ""
        for item in range(1, ds.item_num):
            token = ds.id2token(ds.iid_field, item)
            assert texts[item] == ITEMS[token][col], (field, token)
    prices = field_texts(ds, "price")  # read back raw: RecBole normalised/mean-filled them
    for item in range(1, ds.item_num):
        raw = ITEMS[ds.id2token(ds.iid_field, item)][3]
        assert prices[item] == (
            "" if raw == "" else np.format_float_positional(float(raw), trim="-")
        )


def test_build_item_texts_templates(syn_dataset):
    ds = syn_dataset
    texts, n_empty = build_item_texts(ds, ["title", "brand", "price"], "join")
    assert len(texts) == ds.item_num and texts[0] == ""
    a1 = ds.token2id(ds.iid_field, "a1")
    assert texts[a1] == "Red Matte Lipstick Acme 12.5"
    assert n_empty == 1 and texts[ds.token2id(ds.iid_field, "a4")] == ""
    texts, _ = build_item_texts(ds, ["title", "brand"], "field_value")
    assert texts[a1] == "title: Red Matte Lipstick; brand: Acme"
    a2 = ds.token2id(ds.iid_field, "a2")
    assert texts[a2] == "title: Hydrating Face Cream 50ml"  # empty brand skipped
    with pytest.raises(ValueError, match="text_template"):
        build_item_texts(ds, ["title"], "bogus")
    # a chosen text field that the .item file lacks is an error, not silently skipped
    with pytest.raises(DataError, match=r"names \['missing_field'\].*syn.item\] has no such"):
        build_item_texts(ds, ["title", "brand", "missing_field"], "field_value")


def test_no_text_field_errors(tmp_path):
    write_dataset(tmp_path)
    ds = load_dataset(tmp_path)
    with pytest.raises(ValueError) as err:
        resolve_text_fields(ds, ["description", "feature"])
    message = str(err.value)
    assert "description" in message and "syn.item" in message and "categories" in message
    # text fields present in the file but not loaded: point at load_col
    ds = load_dataset(tmp_path, item_cols=("item_id", "price"))
    assert resolve_text_fields(ds, ["title", "price"]) == ["price"]
    with pytest.raises(ValueError, match="load_col") as err:
        resolve_text_fields(ds, ["title", "brand"])
    assert "title" in str(err.value)


# -------------------------------------------------------------------------------- quantizer
def _data(n=300, dim=DIM, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    mask = np.ones(n, dtype=bool)
    mask[0] = False
    mask[-40:] = False  # "test-only" items
    return x, mask


def test_quantize_shape_range_determinism():
    x, mask = _data()
    codes = quantize(x, mask, n_digits=4, codebook_size=16, seed=3, opq_iterations=5)
    assert codes.shape == (300, 4) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 16 and (codes[0] == 0).all()
    assert len(np.unique(codes[1:, 0])) == 16  # every centroid is used by some item
    again = quantize(x, mask, n_digits=4, codebook_size=16, seed=3, opq_iterations=5)
    np.testing.assert_array_equal(codes, again)
    other = quantize(x, mask, n_digits=4, codebook_size=16, seed=4, opq_iterations=5)
    assert (other != codes).any()
    pca = quantize(
        x, mask, n_digits=4, codebook_size=16, seed=3, pca_dim=16, pca_whiten=True, opq_iterations=5
    )
    assert pca.shape == (300, 4) and pca.max() < 16


def test_quantizer_is_fitted_on_training_rows_only():
    x, mask = _data()
    codes = quantize(x, mask, n_digits=4, codebook_size=16, seed=3, opq_iterations=5)
    y = x.copy()
    y[~mask] = 100.0 * np.random.default_rng(9).standard_normal(((~mask).sum(), DIM))
    moved = quantize(y, mask, n_digits=4, codebook_size=16, seed=3, opq_iterations=5)
    np.testing.assert_array_equal(codes[mask], moved[mask])  # non-training rows: no influence
    assert (codes[~mask][1:] != moved[~mask][1:]).any()  # ... but they are encoded


def test_quantizer_nearest_centroid_matches_faiss_pq():
    import faiss

    x, mask = _data(n=600)
    q = OPQProductQuantizer(4, 16, seed=1, opq_iterations=3).fit(x[mask])
    z = q.transform(x)
    pq = faiss.ProductQuantizer(DIM, 4, 4)
    faiss.copy_array_to_vector(q.centroids.ravel(), pq.centroids)
    packed = pq.compute_codes(z)  # 4 codes x 4 bits, packed little-endian
    unpacked = np.stack([packed & 15, packed >> 4], axis=-1).reshape(len(x), 4)
    np.testing.assert_array_equal(q.encode(x), unpacked.astype(np.int64))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"n_digits": 5}, r"not divisible by n_codes \[5\].*sid_pca_dim"),
        ({"n_digits": 4, "pca_dim": 18}, r"after PCA \[18\].*n_codes"),
        ({"n_digits": 4, "codebook_size": 512}, r"Only 259 items.*codebook_size \[512\]"),
        ({"n_digits": 4, "codebook_size": 24}, r"power of two"),
        ({"n_digits": 4, "pca_dim": 64}, r"sid_pca_dim \[64\] is larger"),
    ],
)
def test_quantizer_errors(kwargs, pattern):
    x, mask = _data()
    with pytest.raises(ValueError, match=pattern):
        quantize(x, mask, **{"codebook_size": 16, **kwargs})


def _run_isolated(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    r"""Run ``code`` in a fresh Python process: a faiss call that corrupts the heap (the bug the
    checks below prevent) kills that process, never pytest."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def test_too_few_training_items_for_the_opq_dimension_names_the_numbers_and_ways_out():
    # 300 training items, 384 dimensions (MiniLM), 32 x 256 codes: faiss' OPQ writes past its
    # buffer (exit 134/139 or a hang in free()); the check refuses first
    with pytest.raises(ValueError) as err:
        check_quantizer_args(384, 300, 32, 256)
    message = str(err.value)
    for part in ("300 items", "at least 384", "384-dimensional", "codebook_size [256]"):
        assert part in message, part
    assert "sid_pca_dim to at most 299" in message and "sid_pca_dim: 288" in message
    assert "user_inter_num_interval" in message and "item_inter_num_interval" in message
    # with too few items for the codebook too, both changes are asked for
    with pytest.raises(ValueError, match=r"sid_pca_dim: 96 and use a smaller codebook_size"):
        check_quantizer_args(384, 100, 32, 256)
    assert min_training_items(384, 256) == 384 and min_training_items(64, 256) == 256


def test_pca_to_at_most_the_allowed_dimension_passes_the_check():
    assert check_quantizer_args(384, 300, 32, 256, pca_dim=288) == 288
    assert check_quantizer_args(384, 257, 32, 256, pca_dim=256) == 256  # n = sid_pca_dim + 1
    # n = sid_pca_dim: the last PCA component has eigenvalue ~0 (NaN when whitened)
    with pytest.raises(ValueError, match=r"Only 256 items.*at least 257.*sid_pca_dim \[256\]"):
        check_quantizer_args(384, 256, 32, 256, pca_dim=256)
    with pytest.raises(ValueError, match=r"at least 321.*sid_pca_dim to at most 299"):
        check_quantizer_args(384, 300, 32, 256, pca_dim=320)
    # the early check of build_semantic_ids (dimension not known yet) knows the PCA's needs
    assert check_quantizer_args(None, 300, 32, 256) is None
    with pytest.raises(ValueError, match=r"at least 385"):
        check_quantizer_args(None, 300, 32, 256, pca_dim=384)
    # too few for the codebook, dimension not known yet: the message says what OPQ will need
    # once it is (no "None-dimensional")
    with pytest.raises(UserInputError) as err:
        check_quantizer_args(None, 100, 32, 256)
    assert "None" not in str(err.value) and "as many training items as their dimension" in str(
        err.value
    )


def test_the_fit_and_the_semantic_ids_refuse_too_few_items_before_faiss_runs(tmp_path):
    # in a subprocess: without the check this would crash the process that runs it
    out = _run_isolated(
        f"""
        import numpy as np
        from recbole_fair.tokenizer.quantizer import OPQProductQuantizer
        from recbole_fair.tokenizer import SemanticIDSettings, build_semantic_ids

        x = np.random.default_rng(0).standard_normal((300, 384)).astype("float32")
        try:
            OPQProductQuantizer(n_digits=32, codebook_size=256, opq_iterations=2).fit(x)
        except ValueError as err:
            print("fit:", err)
        texts = [""] + [f"item {{i}}" for i in range(1, 41)]
        settings = SemanticIDSettings(n_codes=8, codebook_size=16, sid_cache_dir={str(tmp_path)!r})
        try:
            build_semantic_ids(texts, np.ones(41, bool), settings, lambda t: x[: len(t), :64])
        except ValueError as err:
            print("build:", err)
        """
    )
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    fit = next(line for line in out.stdout.splitlines() if line.startswith("fit:"))
    assert "Only 300 items" in fit and "at least 384" in fit and "sid_pca_dim: 288" in fit
    build = next(line for line in out.stdout.splitlines() if line.startswith("build:"))
    assert "Only 40 items" in build and "64-dimensional" in build and "sid_pca_dim: 32" in build


def test_fits_at_the_smallest_allowed_number_of_items():
    # exactly at the threshold (n = dimension; with PCA n = sid_pca_dim + 1), whitened PCA
    # included: a clean fit and finite, in-range codes (in a subprocess, in case faiss crashes)
    out = _run_isolated(
        """
        import numpy as np
        from recbole_fair.tokenizer.quantizer import OPQProductQuantizer

        rng = np.random.default_rng(0)
        for n, dim, pca, whiten in [(384, 384, 0, False), (257, 384, 256, True)]:
            x = rng.standard_normal((n, dim)).astype("float32")
            q = OPQProductQuantizer(32, 256, pca_dim=pca, pca_whiten=whiten, opq_iterations=2)
            codes = q.fit(x).encode(x)
            assert codes.shape == (n, 32) and 0 <= codes.min() and codes.max() < 256
            assert np.isfinite(q.transform(x)).all()
            print("ok", n, dim, pca)
        """
    )
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    assert out.stdout.count("ok ") == 2


# ----------------------------------------------------------------------- collision separation
def test_separate_collisions_moves_one_digit_at_least_cost():
    rng = np.random.default_rng(0)
    L, K = 3, 5
    codes = np.array(
        [[0, 0, 0], [1, 2, 3], [1, 2, 3], [1, 2, 3], [4, 4, 4], [1, 2, 3], [2, 2, 2], [2, 2, 2]]
    )
    dist = rng.uniform(0.0, 10.0, size=(len(codes), L, K))
    # items 2 and 3 have the same embedding (duplicate texts); item 5 has the smallest error
    dist[3] = dist[2]
    dist[7] = dist[6]  # a tie on the quantization error
    dist[5, np.arange(L), codes[5]] = 0.0
    # the cheapest change of item 2 (and 3) is digit 1 -> centroid 4, which item 4's tuple
    # does not block; the second cheapest is digit 0 -> centroid 4
    for row in (2, 3):
        dist[row, np.arange(L), codes[row]] = 1.0
        dist[row, 1, 4] = 1.1
        dist[row, 0, 4] = 1.2
    new, moved, unresolved = separate_collisions(codes, lambda rows: dist[rows])
    assert moved == 4 and unresolved == 0  # groups {1,2,3,5} -> 3 moved, {6,7} -> 1 moved
    np.testing.assert_array_equal(new[0], codes[0])
    np.testing.assert_array_equal(new[5], codes[5])  # smallest quantization error keeps it
    np.testing.assert_array_equal(new[4], codes[4])  # not in a group: untouched
    assert len({tuple(r) for r in new[1:]}) == len(new) - 1  # every tuple is unique
    np.testing.assert_array_equal(new[2], [1, 4, 3])  # cheapest free change
    np.testing.assert_array_equal(new[3], [4, 2, 3])  # same embedding: the next one
    for row in (1, 2, 3, 7):
        assert (new[row] != codes[row]).sum() == 1
    np.testing.assert_array_equal(new[6], codes[6])  # tie on the error: lowest row keeps it
    # brute force: item 1's change is the least-cost one among all free one-digit changes
    taken = {tuple(new[r]) for r in range(1, len(new)) if r != 1}
    best = min(
        (dist[1, d, c] - dist[1, d, codes[1, d]], d, c)
        for d in range(L)
        for c in range(K)
        if c != codes[1, d] and tuple(np.where(np.arange(L) == d, c, codes[1])) not in taken
    )
    changed = int(np.flatnonzero(new[1] != codes[1])[0])
    assert (changed, new[1, changed]) == (best[1], best[2])
    np.testing.assert_array_equal(new, separate_collisions(codes, lambda rows: dist[rows])[0])
    np.testing.assert_array_equal(codes[1], [1, 2, 3])  # the input is not modified


def test_separate_collisions_counts_unresolvable_items():
    codes = np.array([[0], [1], [1], [1], [0]])  # L=1, K=2: only two tuples exist
    dist = np.ones((5, 1, 2))
    new, moved, unresolved = separate_collisions(codes, lambda rows: dist[rows])
    assert moved == 0 and unresolved == 2  # {1,2,3} share [1]; [0] is item 4's


def test_quantize_separate_removes_collisions_and_changes_nothing_else():
    x, mask = _data()
    x[10] = x[11] = x[12] = x[13]  # four items with the same embedding
    keep = quantize(x, mask, n_digits=4, codebook_size=16, seed=3, opq_iterations=5)
    stats: dict = {}
    sep = quantize(
        x,
        mask,
        n_digits=4,
        codebook_size=16,
        seed=3,
        opq_iterations=5,
        collisions="separate",
        stats=stats,
    )
    before = quality_report(keep, 16)
    assert before["n_colliding_items"] >= 4
    assert quality_report(sep, 16)["collision_rate"] == 0.0
    changed = (sep != keep).any(1)
    assert changed.sum() == before["n_colliding_items"] - before["n_collision_groups"]
    assert ((sep != keep).sum(1) <= 1).all()
    assert stats["n_separated_items"] == changed.sum() and stats["n_unresolved_collisions"] == 0
    assert stats["collision_rate_before_separation"] == pytest.approx(before["collision_rate"])
    with pytest.raises(ValueError, match=r"sid_collisions must be one of .*\[merge\]"):
        quantize(x, mask, n_digits=4, codebook_size=16, collisions="merge")
    with pytest.raises(ValueError, match=r"\[merge\] \(properties/semantic_ids.yaml\)"):
        SemanticIDSettings.from_config({"sid_collisions": "merge"})
    assert SemanticIDSettings.from_config({}).sid_collisions == "keep"


def test_random_codes_distinct_seeded_and_uniform():
    codes = random_codes(2001, n_digits=3, codebook_size=16, seed=5)
    assert codes.shape == (2001, 3) and codes.dtype == np.int64
    assert (codes[0] == 0).all() and codes.min() >= 0 and codes.max() < 16
    # 2000 items in 4096 tuples: a plain draw collides (birthday), the redraws make them unique
    assert quality_report(codes, 16)["n_colliding_items"] == 0
    plain = np.random.default_rng(5).integers(0, 16, size=(2000, 3))
    assert quality_report(np.vstack([codes[:1], plain]), 16)["n_colliding_items"] > 0
    np.testing.assert_array_equal(codes, random_codes(2001, 3, 16, seed=5))
    assert (codes != random_codes(2001, 3, 16, seed=6)).any()
    # no content: every code about equally used, per digit
    hist = np.stack([np.bincount(codes[1:, d], minlength=16) for d in range(3)])
    assert hist.min() > 0.6 * 2000 / 16 and hist.max() < 1.4 * 2000 / 16
    # exactly as many tuples as items: all of them used once
    full = random_codes(17, n_digits=2, codebook_size=4, seed=0)
    assert len(np.unique(full[1:], axis=0)) == 16
    with pytest.raises(ValueError, match=r"4\^2 tuples of random digits cannot give 17 items"):
        random_codes(18, n_digits=2, codebook_size=4, seed=0)


def test_random_digits_after_a_semantic_prefix():
    prefix = np.zeros((41, 3), dtype=np.int64)
    prefix[1:] = np.arange(40)[:, None] // 8  # 5 groups of 8 items sharing all 3 codes
    codes = random_codes(41, n_digits=2, codebook_size=4, seed=1, prefix=prefix)
    assert codes.shape == (41, 5) and (codes[0] == 0).all()
    np.testing.assert_array_equal(codes[:, :3], prefix)  # the semantic digits are kept
    assert quality_report(codes, 8)["n_colliding_items"] == 0  # the random ones tell them apart
    without = random_codes(41, n_digits=2, codebook_size=8, seed=1)
    assert without.shape == (41, 2)
    # 8 items share a prefix, 2^2 = 4 random tuples: impossible, said with the setting to change
    with pytest.raises(ValueError, match=r"cannot give 8 items sharing one semantic prefix.*sid_"):
        random_codes(41, n_digits=2, codebook_size=2, seed=1, prefix=prefix)


def test_random_sid_method_builds_cached_random_ids(tmp_path, caplog):
    texts = _texts()
    mask = np.zeros(len(texts), dtype=bool)
    mask[1:6] = True  # far fewer training items than centroids: fine without a quantiser
    settings = SemanticIDSettings(
        n_codes=4, codebook_size=16, sid_cache_dir=str(tmp_path), text_fields=["t"]
    )
    rand = SemanticIDSettings(**{**settings.__dict__, "sid_method": "random", "sid_seed": 9})
    calls = []
    with caplog.at_level(logging.INFO):
        built = build_semantic_ids(texts, mask, rand, encoder_fn=fake_encoder(calls))
    assert "sid_method=random" in caplog.text
    np.testing.assert_array_equal(built.codes, random_codes(len(texts), 4, 16, seed=9))
    assert built.report["sid_method"] == "random" and built.report["collision_rate"] == 0.0
    assert built.report["faiss_threads"] is None  # no quantizer ran
    assert built.embeddings.shape[0] == len(texts)
    again = build_semantic_ids(texts, mask, rand, encoder_fn=fake_encoder(calls))
    assert again.report["cache_hit"] and again.cache_key == built.cache_key
    np.testing.assert_array_equal(again.codes, built.codes)
    # the OPQ path refuses 5 training items for 16 centroids; its key differs from random's
    with pytest.raises(ValueError):
        build_semantic_ids(texts, mask, settings, encoder_fn=fake_encoder(calls))
    mask[:] = True
    mask[0] = False
    opq = build_semantic_ids(texts, mask, settings, encoder_fn=fake_encoder(calls))
    assert opq.report["sid_method"] == "opq"
    assert build_semantic_ids(texts, mask, rand, encoder_fn=fake_encoder(calls)).cache_key not in (
        opq.cache_key,
        built.cache_key,
    )
    with pytest.raises(ValueError, match=r"sid_method must be one of .*\[text\] \(properties"):
        SemanticIDSettings.from_config({"sid_method": "text"})
    assert SemanticIDSettings.from_config({}).sid_method == "opq"

    # sid_random_digits: OPQ on the first L - N digits, N random ones after them
    half = SemanticIDSettings(**{**settings.__dict__, "sid_random_digits": 2, "sid_seed": 4})
    mixed = build_semantic_ids(texts, mask, half, encoder_fn=fake_encoder(calls))
    two = SemanticIDSettings(**{**settings.__dict__, "n_codes": 2, "sid_seed": 4})
    semantic = build_semantic_ids(texts, mask, two, encoder_fn=fake_encoder(calls))
    np.testing.assert_array_equal(mixed.codes[:, :2], semantic.codes)
    assert mixed.codes.shape == (len(texts), 4) and mixed.report["collision_rate"] == 0.0
    assert mixed.report["sid_random_digits"] == 2 and mixed.cache_key != opq.cache_key
    assert mixed.report["collision_rate_of_semantic_digits"] == pytest.approx(
        semantic.report["collision_rate"]
    )
    for bad, match in (
        ({"sid_random_digits": 32}, r"in \[0, n_codes=32\) .*got \[32\].*sid_method: random"),
        ({"sid_random_digits": 2, "sid_method": "random"}, r"applies to sid_method opq"),
    ):
        with pytest.raises(ValueError, match=match + r".*\(properties/semantic_ids.yaml\)"):
            SemanticIDSettings.from_config(bad)
    with pytest.raises(ValueError, match=r"sid_random_digits must be in \[0, n_codes=4\)"):
        build_semantic_ids(
            texts, mask, SemanticIDSettings(**{**settings.__dict__, "sid_random_digits": 4})
        )


def test_distances_agree_with_encode():
    x, mask = _data()
    q = OPQProductQuantizer(4, 16, seed=1, opq_iterations=3).fit(x[mask])
    d = q.distances(x[:50])
    assert d.shape == (50, 4, 16)
    np.testing.assert_array_equal(d.argmin(-1), q.encode(x[:50]))
    z = q.transform(x[:1]).reshape(4, -1)
    assert d[0, 2, 7] == pytest.approx(((z[2] - q.centroids[2, 7]) ** 2).sum(), rel=1e-4)


# --------------------------------------------------------------------------- report and cache
def test_quality_report_counts():
    codes = np.array([[0, 0], [1, 2], [1, 2], [3, 0], [1, 2], [3, 1], [3, 0]], dtype=np.int64)
    r = quality_report(codes, codebook_size=4)
    assert r["n_colliding_items"] == 5 and r["n_collision_groups"] == 2
    assert r["collision_rate"] == pytest.approx(5 / 6)
    assert r["codebook_usage"] == [0.5, 0.75]
    p = np.array([3, 3]) / 6
    assert r["entropy_bits"][0] == pytest.approx(1.0)
    assert r["entropy_bits"][1] == pytest.approx(
        -(np.array([2, 1, 3]) / 6 * np.log2(np.array([2, 1, 3]) / 6)).sum()
    )
    assert r["mean_codebook_usage"] == pytest.approx(0.625) and p.sum() == 1


def _texts(n=120):
    return [""] + [f"item number {i} colour {i % 7}" for i in range(1, n)]


def test_cache_hit_key_changes_and_corruption(tmp_path, caplog):
    texts = _texts()
    mask = np.ones(len(texts), dtype=bool)
    mask[-10:] = False
    settings = SemanticIDSettings(
        n_codes=4,
        codebook_size=16,
        sid_cache_dir=str(tmp_path),
        sid_opq_iterations=5,
        text_fields=["t"],
    )
    calls = []
    first = build_semantic_ids(texts, mask, settings, encoder_fn=fake_encoder(calls))
    assert len(calls) == 1 and not first.report["cache_hit"]
    assert first.report["n_items"] == 119 and first.report["n_train_items"] == 109
    assert first.report["items_without_text"] == 0 and os.path.isfile(first.cache_path)
    assert first.report["faiss_threads"] == default_threads()

    second = build_semantic_ids(texts, mask, settings, encoder_fn=fake_encoder(calls))
    assert len(calls) == 1 and second.report["cache_hit"]
    np.testing.assert_array_equal(first.codes, second.codes)
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert second.cache_key == first.cache_key

    # another L: new semantic-ID key, embeddings come from the embedding cache
    settings8 = SemanticIDSettings(**{**settings.__dict__, "n_codes": 8})
    eight = build_semantic_ids(texts, mask, settings8, encoder_fn=fake_encoder(calls))
    assert len(calls) == 1 and eight.codes.shape == (120, 8) and eight.cache_key != first.cache_key
    # another training set or text: new key
    mask2 = mask.copy()
    mask2[5] = False
    assert (
        build_semantic_ids(texts, mask2, settings, encoder_fn=fake_encoder(calls)).cache_key
        != first.cache_key
    )
    # separating collisions: another key (the default's key is unchanged), reported
    separate = SemanticIDSettings(**{**settings.__dict__, "sid_collisions": "separate"})
    sep = build_semantic_ids(texts, mask, separate, encoder_fn=fake_encoder(calls))
    assert sep.cache_key != first.cache_key and sep.report["sid_collisions"] == "separate"
    assert sep.report["collision_rate"] == 0.0 and "n_separated_items" in sep.report
    assert "n_separated_items" not in first.report
    changed = texts[:3] + ["something else"] + texts[4:]
    build_semantic_ids(changed, mask, settings, encoder_fn=fake_encoder(calls))
    assert len(calls) == 2

    # truncated file: warning, rebuilt (not used), file valid again afterwards
    data = open(first.cache_path, "rb").read()
    with open(first.cache_path, "wb") as f:
        f.write(data[: len(data) // 2])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rebuilt = build_semantic_ids(texts, mask, settings, encoder_fn=fake_encoder(calls))
    assert "corrupt or truncated" in caplog.text and not rebuilt.report["cache_hit"]
    np.testing.assert_array_equal(rebuilt.codes, first.codes)
    assert build_semantic_ids(texts, mask, settings, encoder_fn=fake_encoder(calls)).report[
        "cache_hit"
    ]

    # a readable file whose content was altered fails the checksum
    with np.load(first.cache_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["codes"] = (arrays["codes"] + 1) % 16
    with open(first.cache_path, "wb") as f:
        np.savez(f, **arrays)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = build_semantic_ids(texts, mask, settings, encoder_fn=fake_encoder(calls))
    assert "checksum" in caplog.text and not again.report["cache_hit"]
    np.testing.assert_array_equal(again.codes, first.codes)

    # a stale file (right name, wrong shape, valid checksum) is rebuilt too
    arrays = {k: v for k, v in arrays.items() if k != "checksum"}
    arrays["codes"] = arrays["codes"][:50]
    save_npz_atomic(first.cache_path, arrays)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        stale = build_semantic_ids(texts, mask, settings, encoder_fn=fake_encoder(calls))
    assert "stale" in caplog.text and stale.codes.shape == (120, 4)
    assert len(calls) == 2  # the embedding cache stayed valid throughout


# ---------------------------------------------------------------------------- real encoder
def test_offline_minilm_encoder():
    from recbole_fair.tokenizer.encoder import encode_texts

    texts = ["red matte lipstick", "matte lipstick in red", "garden hose 50 ft", ""]
    emb = encode_texts(texts, "all-MiniLM-L6-v2", batch_size=2, device="cpu", show_progress=False)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.8 > sim[0, 2] + 0.3


def test_encoder_load_error_names_the_key(tmp_path):
    from recbole_fair.tokenizer.encoder import load_sentence_encoder

    empty = tmp_path / "not_a_model"
    empty.mkdir()  # a local directory without a model: loaded offline, fails fast
    with pytest.raises(ValueError, match=r"text_encoder \[.*not_a_model\].*all-MiniLM-L6-v2"):
        load_sentence_encoder(str(empty))


def test_unwritable_cache_dir_warns_and_continues(tmp_path, caplog):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    texts = _texts(60)
    settings = SemanticIDSettings(
        n_codes=4, codebook_size=16, sid_cache_dir=str(not_a_dir), sid_opq_iterations=2
    )
    with caplog.at_level(logging.WARNING):
        sids = build_semantic_ids(texts, np.ones(60, dtype=bool), settings, fake_encoder())
    assert sids.codes.shape == (60, 4) and "could not write" in caplog.text
    no_cache = SemanticIDSettings(**{**settings.__dict__, "sid_cache_dir": None})
    assert (
        build_semantic_ids(texts, np.ones(60, dtype=bool), no_cache, fake_encoder()).cache_path
        is None
    )
