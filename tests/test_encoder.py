r"""Tests of recbole_fair.tokenizer.encoder's speed-ups: token-length-sorted batches (the same
embeddings as ``SentenceTransformer.encode``), the thread count, ``text_encode_dtype`` (reaches
the encoder, the embedding cache key and the report; ``float32`` keys unchanged) and the FLOP
count of ``benchmarks/bench_text_encoder.py``."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import stand_in_encoder

import recbole_fair  # noqa: F401  (compatibility shims)
from recbole_fair.errors import UserInputError
from recbole_fair.tokenizer import build as build_module
from recbole_fair.tokenizer import encoder as encoder_module
from recbole_fair.tokenizer.build import build_semantic_ids
from recbole_fair.tokenizer.cache import (
    CACHE_FORMAT_VERSION,
    _sha256,
    checksum,
    embedding_cache_key,
    rqvae_cache_key,
    semantic_id_cache_key,
    texts_hash,
)
from recbole_fair.tokenizer.encoder import (
    SentenceEncoder,
    assemble_batches,
    check_encode_dtype,
    encode_with_model,
    length_sorted_batches,
    load_sentence_encoder,
    torch_threads,
)
from recbole_fair.tokenizer.settings import RQVAESettings, SemanticIDSettings

# lengths far apart in characters and in tokens, so that batches of 2 formed by character
# length (SentenceTransformer.encode) and by token length differ
TEXTS = [
    "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce OPI Makeup, Nails, Nail Polish",
    "x" * 60,  # one word of 60 characters: few tokens for its length
    "red matte lipstick",
    "",
    "garden hose 50 ft, green, with a brass nozzle and a wall mount",
    "1 2 3 4 5 6 7 8 9 10 11 12",  # short in characters, many tokens
    "matte lipstick in red",
]


# ------------------------------------------------------------------------------ batching
def test_length_sorted_batches_partition_longest_first():
    lengths = np.random.default_rng(0).integers(1, 50, size=103)
    batches = length_sorted_batches(lengths, 8)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(103))  # every text exactly once
    assert [len(b) for b in batches] == [8] * 12 + [7]
    # batch after batch the lengths never increase: the least padding for the batch size
    for first, second in zip(batches, batches[1:]):
        assert lengths[first].min() >= lengths[second].max()
    # stable: equal lengths keep their input order
    ties = np.array([3, 5, 3, 5, 3])
    assert np.concatenate(length_sorted_batches(ties, 2)).tolist() == [1, 3, 0, 2, 4]


def test_encode_dtype_is_checked():
    assert check_encode_dtype("bfloat16") == "bfloat16"
    with pytest.raises(UserInputError, match=r"text_encode_dtype .*float16"):
        check_encode_dtype("float16")
    with pytest.raises(UserInputError, match="text_encode_dtype"):
        SemanticIDSettings.from_config({"text_encode_dtype": "int8"})
    assert SemanticIDSettings.from_config({}).text_encode_dtype == "float32"


def test_torch_threads_sets_and_restores():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def minilm():
    return load_sentence_encoder("all-MiniLM-L6-v2")


def test_sorted_batches_give_the_embeddings_of_encode(minilm):
    # the pipeline before: SentenceTransformer.encode batches by character length
    before = minilm.encode(TEXTS, batch_size=2, show_progress_bar=False, normalize_embeddings=True)
    after = encode_with_model(minilm, TEXTS, batch_size=2, show_progress=False, threads=1)
    assert after.shape == (len(TEXTS), 384) and after.dtype == np.float32
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    # the thread count gives the same floats
    two = encode_with_model(minilm, TEXTS, batch_size=2, show_progress=False, threads=2)
    np.testing.assert_array_equal(two, after)


def test_batches_encoded_apart_give_the_same_floats(minilm):
    # what a process group does (recbole_fair.tokenizer.sharded): the batches of the one-process
    # encode, dealt out in turn, encoded apart and put back: the same matrix, bit for bit
    encoder = SentenceEncoder(batch_size=2, show_progress=False)
    whole = encoder(TEXTS)
    batches = length_sorted_batches(encoder.lengths(TEXTS), 2)
    odd, even = batches[1::2], batches[0::2]
    parts = encoder.encode_batches(TEXTS, odd) + encoder.encode_batches(TEXTS, even)
    assert assemble_batches(len(TEXTS), odd + even, parts).tobytes() == whole.tobytes()


def test_bfloat16_is_close_but_not_equal(minilm):
    fp32 = encode_with_model(minilm, TEXTS, batch_size=4, show_progress=False, threads=1)
    bf16 = encode_with_model(minilm, TEXTS, 4, "bfloat16", show_progress=False, threads=1)
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    cosine = (fp32 * bf16).sum(1)
    assert cosine.min() > 0.999 and np.abs(fp32 - bf16).max() > 1e-5


# -------------------------------------------------------------------- settings and cache
def test_float32_embedding_key_is_unchanged():
    settings = SemanticIDSettings()
    texts = ["", "a", "b"]
    # the key as it was built before text_encode_dtype existed: float32 caches stay valid
    old = _sha256(
        "emb",
        CACHE_FORMAT_VERSION,
        texts_hash(texts),
        list(settings.text_fields),
        settings.text_template,
        settings.text_encoder,
    )[:16]
    assert embedding_cache_key(texts, settings) == old
    settings.text_encode_dtype = "bfloat16"
    assert embedding_cache_key(texts, settings) != old


def test_default_cache_keys_are_those_of_before_text_encode_dtype():
    # computed by the code before text_encode_dtype and the batch size 32 (main at 149c7ee):
    # the caches built then are still found
    texts = ["", "red matte lipstick", "garden hose 50 ft", "OPI nail lacquer"]
    mask = np.array([False, True, True, False])
    settings = SemanticIDSettings()
    assert settings.text_encode_batch_size == 32  # not part of any key
    assert embedding_cache_key(texts, settings) == "f5dab496ad64a0a0"
    assert semantic_id_cache_key(texts, mask, settings) == "f25a623f4a6a5e48"
    assert rqvae_cache_key(texts, mask, settings, RQVAESettings()) == "d1a46153b8240e80"
    settings.text_encode_dtype = "bfloat16"
    assert semantic_id_cache_key(texts, mask, settings) != "f25a623f4a6a5e48"
    assert rqvae_cache_key(texts, mask, settings, RQVAESettings()) != "d1a46153b8240e80"


def test_cache_file_checksums_are_unchanged():
    # computed by main (149c7ee): the arrays are hashed without a copy now, the same bytes
    arrays = {
        "key": np.array("0123456789abcdef"),
        "codes": np.arange(12, dtype=np.int64).reshape(3, 4),
        "embeddings": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
        "report": np.array('{"a": 1}'),
    }
    assert checksum(arrays) == "2f5b9296dbc13af1ea7b98991d98efc9df8069b9966e62ff36c9d899f3ec1755"
    transposed = np.arange(12, dtype=np.int64).reshape(4, 3).T  # not contiguous
    assert checksum({"codes": transposed}) == checksum({"codes": transposed.copy()})


def test_encode_dtype_reaches_the_encoder_the_cache_and_the_report(tmp_path, monkeypatch):
    calls = []

    def fake_make_encoder_fn(name, batch_size, device, show_progress, dtype):
        def encoder_fn(texts):
            calls.append(dtype)
            return stand_in_encoder(texts)

        return encoder_fn

    monkeypatch.setattr(build_module, "make_encoder_fn", fake_make_encoder_fn)
    texts = [""] + [f"item {i}" for i in range(1, 40)]
    mask = np.ones(len(texts), dtype=bool)
    cache = str(tmp_path / "cache")
    reports = {}
    for dtype in ("float32", "bfloat16", "float32", "bfloat16"):
        settings = SemanticIDSettings(
            text_encode_dtype=dtype,
            sid_method="random",  # no quantizer fit; the embeddings are built all the same
            n_codes=4,
            codebook_size=16,
            sid_cache_dir=cache,
            show_progress=False,
        )
        reports[dtype] = build_semantic_ids(texts, mask, settings).report
        assert (tmp_path / "cache" / f"emb-{embedding_cache_key(texts, settings)}.npz").is_file()
    # each dtype encoded once, then served from its own cache entry
    assert calls == ["float32", "bfloat16"]
    assert reports["bfloat16"]["text_encode_dtype"] == "bfloat16"
    assert reports["float32"]["text_encode_dtype"] == "float32"
    assert reports["float32"]["cache_key"] != reports["bfloat16"]["cache_key"]


def test_make_encoder_fn_passes_the_dtype(monkeypatch):
    seen = {}

    def fake_encode_texts(texts, name, batch_size, device, show_progress, dtype):
        seen.update(name=name, batch_size=batch_size, dtype=dtype)
        return np.zeros((len(texts), 3), dtype=np.float32)

    monkeypatch.setattr(encoder_module, "encode_texts", fake_encode_texts)
    fn = encoder_module.make_encoder_fn("enc", 7, "cpu", False, "bfloat16")
    assert fn(["a", "b"]).shape == (2, 3)
    assert seen == {"name": "enc", "batch_size": 7, "dtype": "bfloat16"}


# ---------------------------------------------------------------------- the benchmark
def test_benchmark_flops_and_padding(benchmark_script):
    bench = benchmark_script("bench_text_encoder")
    shape = {"non_embedding_params": 1000, "layers": 2, "hidden": 8}
    lengths = np.array([3, 10, 9])
    flops = bench.sequence_flops(lengths, shape)
    np.testing.assert_allclose(flops, [2 * 1000 * n + 2 * 4 * n * n * 8 for n in (3, 10, 9)])
    # encode orders by characters: the longest text (9 characters, 3 tokens) shares a batch
    # with the 10-token one, and the 2-character text of 9 tokens is alone
    texts = ["aaaaaaaaa", "bbbbbbb", "cc"]
    assert bench.padded_lengths(texts, lengths, 2).tolist() == [10, 10, 9]
    assert bench.token_sorted_padding(lengths, 2).tolist() == [3, 10, 10]


# ------------------------------------------------------------------------- encoder names
@pytest.mark.parametrize("hub", [True, False])
def test_hub_names_go_to_the_hub_local_folders_load_offline(hub, tmp_path, monkeypatch):
    """A hub name (the paper's sentence-transformers/sentence-t5-base, for users with hub
    access) reaches SentenceTransformer unchanged, with the hub allowed; a local folder loads
    with HF_HUB_OFFLINE=1 (no network attempt)."""
    import sentence_transformers

    from recbole_fair.tokenizer import encoder as enc

    seen = []

    class FakeModel:
        def __init__(self, path, device):
            seen.append((path, device, os.environ.get("HF_HUB_OFFLINE")))

        def eval(self):
            return self

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", FakeModel)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    name = "sentence-transformers/sentence-t5-base" if hub else str(tmp_path)
    model = load_sentence_encoder(name)
    enc._MODELS.pop((name, "cpu"))
    assert isinstance(model, FakeModel)
    assert seen == [(name, "cpu", None if hub else "1")]
    assert "HF_HUB_OFFLINE" not in os.environ  # restored after loading
