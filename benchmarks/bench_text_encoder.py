r"""Text-encoding speed of the semantic-ID build: FLOPs, the machine's matmul rate, variants.

The cold semantic-ID build spends most of its time encoding the item texts with the
sentence-transformers encoder (``text_encoder``, default all-MiniLM-L6-v2). This script

1. builds the item texts exactly as the pipeline does (a FAIR ``SemanticIDDataset`` of the
   dataset: :func:`recbole_fair.tokenizer.text.build_item_texts` with the dataset's config),
2. counts each text's tokens with the model's tokenizer (truncated at ``max_seq_length``),
3. counts the encoding FLOPs: per token ``2 x`` the encoder's non-embedding parameters, plus
   ``4·n·d`` per layer for the attention scores and the weighted sum at the text's length ``n``;
   once at the real lengths (the work) and once at the lengths sentence-transformers pads each
   batch to (it sorts the texts by character length, then pads a batch to its longest text),
4. measures the fp32 and bf16 matmul rate of encoder-like shapes in this process, at each thread
   count, right before each timing,
5. times the encoding of a fixed sample (``--sample`` texts drawn with ``--seed``; the whole
   catalogue with ``--full``) under several variants, interleaved and repeated (the minimum is
   kept), and compares each variant's embeddings with the fp32 reference (cosine, max abs
   difference) and, with ``--sid``, the 32-code OPQ semantic IDs fitted as the pipeline does.

Times are wall-clock (``s``) and process CPU time (``cpu_s``, all threads together): on a
machine shared with other work the wall time depends on the load, the CPU time much less. The
ratio ``limit/s`` is the FLOP limit (FLOPs at the real lengths / fp32 matmul rate at the same
thread count, measured just before) over the time taken: 1.0 = encoding at the matmul rate.

``--cold_build`` instead times what a user waits for: the cold semantic-ID build of the dataset
with the pipeline's settings (an empty temporary cache: model loading, encoding, OPQ fit, codes
of every item), then the cache hit that follows, in wall and CPU seconds, against the FLOP limit
of the encoding in CPU seconds (FLOPs / fp32 matmul GFLOP per CPU-second at the encoder's
thread count).

Usage::

    python benchmarks/bench_text_encoder.py --dataset Amazon_Beauty --data_path ../shared/datasets
    python benchmarks/bench_text_encoder.py --sample 0 --full --sid --reference old-t1-b64 \
        --variants old-t1-b64 fp32-t1-b64 bf16-t1-b64
    python benchmarks/bench_text_encoder.py --cold_build --dataset Amazon_Beauty

Prints a table and saves JSON to ``benchmarks/results/text_encoder-<dataset>.json``
(``--cold_build``: ``semantic_id_build-<dataset>.json``; ``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from recbole_fair.tokenizer.encoder import length_sorted_batches, token_lengths

REPO = Path(__file__).resolve().parents[1]

#: name -> (threads, batch size, how, batching). how: fp32; bf16 (autocast, what
#: text_encode_dtype: bfloat16 does); bf16w (the model's weights in bf16); int8 (dynamic int8
#: Linear layers); eager (fp32, eager attention instead of SDPA). batching: "chars" =
#: SentenceTransformer.encode on the whole list (the pipeline before this benchmark: batches by
#: character length), "tokens" = recbole_fair's encode_with_model (batches by token length).
VARIANTS = {
    "old-t2-b64": (2, 64, "fp32", "chars"),  # the pipeline's settings before this benchmark
    "old-t1-b64": (1, 64, "fp32", "chars"),
    "fp32-t2-b64": (2, 64, "fp32", "tokens"),
    "fp32-t1-b64": (1, 64, "fp32", "tokens"),
    "fp32-t1-b16": (1, 16, "fp32", "tokens"),
    "fp32-t1-b32": (1, 32, "fp32", "tokens"),
    "fp32-t2-b32": (2, 32, "fp32", "tokens"),
    "fp32-t1-b128": (1, 128, "fp32", "tokens"),
    "eager-t1-b64": (1, 64, "eager", "tokens"),
    "bf16-t2-b64": (2, 64, "bf16", "tokens"),
    "bf16-t1-b64": (1, 64, "bf16", "tokens"),
    "bf16-t1-b32": (1, 32, "bf16", "tokens"),
    "bf16-t2-b32": (2, 32, "bf16", "tokens"),
    "bf16w-t1-b64": (1, 64, "bf16w", "tokens"),
    "int8-t1-b64": (1, 64, "int8", "tokens"),
}
REFERENCE = "old-t2-b64"  # the embeddings the others are compared with (--reference)


# ------------------------------------------------------------------------------------ texts
def pipeline_texts(dataset: str, data_path: str, cache_dir: Path) -> list[str]:
    r"""The item texts the pipeline encodes (index 0 = padding item ``""``), built by a FAIR
    dataset with the repository's config; cached under ``cache_dir`` keyed by the ``.item``
    file's size and modification time (building the dataset takes a minute)."""
    item_file = Path(data_path) / dataset / f"{dataset}.item"
    stat = item_file.stat()
    tag = hashlib.sha256(f"{dataset}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    path = cache_dir / f"texts-{dataset}-{tag[:12]}.json"
    if path.is_file():
        return json.loads(path.read_text())["texts"]
    from recbole_fair.config import Config
    from recbole_fair.utils import create_dataset

    config_dict = {"data_path": data_path, "show_progress": False, "state": "WARNING"}
    config = Config(model="FAIR", dataset=dataset, config_dict=config_dict)
    texts = list(create_dataset(config).item_texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": dataset, "texts": texts}))
    return texts


def texts_sha(texts: list[str]) -> str:
    from recbole_fair.tokenizer.cache import texts_hash

    return texts_hash(texts)[:16]


# ------------------------------------------------------------------------------------ FLOPs
def encoder_shape(model) -> dict:
    bert = model[0].auto_model
    return {
        "non_embedding_params": int(sum(p.numel() for p in bert.encoder.parameters())),
        "layers": int(bert.config.num_hidden_layers),
        "hidden": int(bert.config.hidden_size),
        "intermediate": int(bert.config.intermediate_size),
    }


def sequence_flops(lengths: np.ndarray, shape: dict) -> np.ndarray:
    r"""FLOPs of encoding one sequence of each length: dense layers + attention."""
    n = lengths.astype(np.float64)
    return 2.0 * shape["non_embedding_params"] * n + shape["layers"] * 4.0 * n * n * shape["hidden"]


def padded_lengths(texts: list[str], lengths: np.ndarray, batch_size: int) -> np.ndarray:
    r"""The length each text is padded to by ``SentenceTransformer.encode``: sorted by
    decreasing character length (its ``np.argsort`` of ``-len(text)``), batches of
    ``batch_size`` padded to their longest tokenisation."""
    order = np.argsort([-len(t) for t in texts])
    padded = np.empty_like(lengths)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        padded[batch] = lengths[batch].max()
    return padded


def token_sorted_padding(lengths: np.ndarray, batch_size: int) -> np.ndarray:
    r"""Padded lengths with the batches of :func:`recbole_fair.tokenizer.encoder.encode_texts`
    (formed by token length: the least padding)."""
    padded = np.empty_like(lengths)
    for batch in length_sorted_batches(lengths, batch_size):
        padded[batch] = lengths[batch].max()
    return padded


def flop_summary(texts: list[str], lengths: np.ndarray, shape: dict, batch_sizes) -> dict:
    out = {
        "texts": len(texts),
        "tokens": int(lengths.sum()),
        "tokens_per_text": {
            q: float(np.percentile(lengths, p))
            for q, p in (("min", 0), ("median", 50), ("p90", 90), ("max", 100))
        },
        "flops": float(sequence_flops(lengths, shape).sum()),
        # a shorter max_seq_length: FLOPs and share of texts cut
        "truncated": {
            cap: {
                "flops": float(sequence_flops(np.minimum(lengths, cap), shape).sum()),
                "texts_cut": float((lengths > cap).mean()),
            }
            for cap in (128, 64, 32)
        },
        "padded": {},
    }
    for bs in batch_sizes:
        st = padded_lengths(texts, lengths, bs)
        tok = token_sorted_padding(lengths, bs)
        out["padded"][bs] = {
            "tokens": int(st.sum()),
            "flops": float(sequence_flops(st, shape).sum()),
            "token_sorted_flops": float(sequence_flops(tok, shape).sum()),
        }
    return out


# ---------------------------------------------------------------------------- matmul rate
def matmul_rate(threads: int, dtype_name: str, rows: int = 2048, reps: int = 2) -> dict:
    r"""GFLOP/s (wall and per CPU-second) of the encoder's three Linear shapes ``[rows, d] x
    [d, 4d]``, ``[rows, 4d] x [4d, d]``, ``[rows, d] x [d, d]`` (d = 384), best of ``reps``."""
    import torch

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    gen = torch.Generator().manual_seed(0)
    d = 384
    pairs = [
        (torch.randn(rows, a, generator=gen).to(dtype), torch.randn(a, b, generator=gen).to(dtype))
        for a, b in ((d, 4 * d), (4 * d, d), (d, d))
    ]
    flops = sum(2.0 * rows * a.shape[1] * b.shape[1] for a, b in pairs) * 3
    for a, b in pairs:
        a @ b  # warm-up
    wall = cpu = float("inf")
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(3):
            for a, b in pairs:
                a @ b
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return {"gflops_wall": flops / wall / 1e9, "gflops_cpu": flops / cpu / 1e9}


# --------------------------------------------------------------------------------- variants
def variant_model(base, how: str):
    r"""The model a variant encodes with (a copy where the variant modifies it)."""
    import torch

    if how in ("fp32", "bf16"):
        return base
    model = copy.deepcopy(base)
    if how == "bf16w":
        return model.to(torch.bfloat16)
    if how == "eager":
        model[0].auto_model.set_attn_implementation("eager")
        return model
    if how == "int8":
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    raise ValueError(how)


def encode(model, texts: list[str], spec: tuple) -> np.ndarray:
    import torch

    from recbole_fair.tokenizer.encoder import encode_with_model

    threads, batch_size, how, batching = spec
    torch.set_num_threads(threads)
    if batching == "tokens":
        dtype = "bfloat16" if how == "bf16" else "float32"
        return encode_with_model(model, texts, batch_size, dtype, False, threads)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if how == "bf16" else nullcontext()
    with autocast:
        emb = model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=False,
            convert_to_tensor=True,
            normalize_embeddings=True,
        )
    return emb.float().numpy()


def time_variant(model, texts: list[str], spec: tuple) -> tuple[dict, np.ndarray]:
    rate = matmul_rate(spec[0], "fp32")
    t, c = time.perf_counter(), time.process_time()
    emb = encode(model, texts, spec)
    return {
        "s": time.perf_counter() - t,
        "cpu_s": time.process_time() - c,
        "matmul_fp32": rate,
        "loadavg": os.getloadavg()[0],
    }, emb


def compare(emb: np.ndarray, ref: np.ndarray) -> dict:
    cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
    return {
        "max_abs_diff": float(np.abs(emb - ref).max()),
        "cos_min": float(cos.min()),
        "cos_mean": float(cos.mean()),
    }


def sid_codes(emb: np.ndarray, seed: int = 2020) -> np.ndarray:
    r"""32 x 256 OPQ codes of ``emb`` fitted on all its rows, as the pipeline fits (row 0 = the
    padding item, added here)."""
    from recbole_fair.tokenizer.quantizer import quantize

    full = np.vstack([np.zeros((1, emb.shape[1]), np.float32), emb]).astype(np.float32)
    mask = np.ones(len(full), dtype=bool)
    mask[0] = False
    return quantize(full, mask, n_digits=32, codebook_size=256, seed=seed)[1:]


def sid_change(codes: np.ndarray, ref: np.ndarray) -> dict:
    return {
        "sid_changed_items": float((codes != ref).any(1).mean()),
        "sid_changed_digits": float((codes != ref).mean()),
    }


# ------------------------------------------------------------------------------------ runs
def run_variants(base, texts: list[str], names: list[str], repeats: int) -> dict:
    r"""Time every variant ``repeats`` times, interleaved (the order rotates each round)."""
    models = {name: variant_model(base, VARIANTS[name][2]) for name in names}
    encode(base, texts[:8], (1, 8, "fp32", "chars"))  # warm-up (first-call allocations)
    rows: dict = {name: {"runs": []} for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            run, emb = time_variant(models[name], texts, VARIANTS[name])
            rows[name]["runs"].append(run)
            rows[name]["embeddings"] = emb
            print(f"  round {r + 1} {name}: {run['s']:.1f}s (cpu {run['cpu_s']:.1f}s)", flush=True)
    return rows


def summarise(rows: dict, flops: float, tokens: int, reference: np.ndarray | None) -> None:
    for row in rows.values():
        best = min(row["runs"], key=lambda run: run["s"])
        best_cpu = min(run["cpu_s"] for run in row["runs"])
        rate = best["matmul_fp32"]
        row.update(
            s=best["s"],
            cpu_s=best_cpu,
            tokens_per_s=tokens / best["s"],
            gflops=flops / best["s"] / 1e9,
            gflops_per_cpu_s=flops / best_cpu / 1e9,
            limit_s=flops / (rate["gflops_wall"] * 1e9),
            limit_ratio=flops / (rate["gflops_wall"] * 1e9) / best["s"],
            cpu_limit_ratio=flops / (rate["gflops_cpu"] * 1e9) / best_cpu,
        )
        if reference is not None:
            row.update(compare(row["embeddings"], reference))


def print_table(rows: dict, title: str) -> None:
    print(f"\n{title}")
    head = (
        f"{'variant':<14}{'s':>8}{'cpu_s':>8}{'tok/s':>8}{'GFLOP/s':>9}{'/cpu_s':>8}"
        f"{'limit_s':>9}{'limit/s':>8}{'cpu':>6}{'cat_s':>8}{'cos_min':>10}{'max|d|':>9}{'sid_chg':>8}"
    )
    print(head)
    for name, r in rows.items():
        sid = r.get("sid_changed_items")
        print(
            f"{name:<14}{r['s']:>8.1f}{r['cpu_s']:>8.1f}{r['tokens_per_s']:>8.0f}"
            f"{r['gflops']:>9.1f}{r['gflops_per_cpu_s']:>8.1f}{r['limit_s']:>9.1f}"
            f"{r['limit_ratio']:>8.2f}{r['cpu_limit_ratio']:>6.2f}{r['catalogue_s']:>8.0f}{r.get('cos_min', 1):>10.6f}"
            f"{r.get('max_abs_diff', 0):>9.1e}" + (f"{sid:>8.3f}" if sid is not None else "")
        )


def add_sid_changes(rows: dict, reference: str, controls: bool = True) -> dict:
    r"""Fraction of items whose OPQ semantic ID changes against the reference variant; with
    ``controls``, the same for the reference refitted (determinism) and for the reference's
    embeddings nudged by Gaussian noise of 1e-6 (how chaotic the codes are in the embeddings)."""
    ref_emb = rows[reference]["embeddings"]
    ref_codes = sid_codes(ref_emb)
    checks = {}
    if controls:
        checks["refit"] = sid_change(sid_codes(ref_emb), ref_codes)
        noise = np.random.default_rng(0).normal(0, 1e-6, ref_emb.shape).astype(np.float32)
        checks["nudged_1e-6"] = sid_change(sid_codes(ref_emb + noise), ref_codes)
    for name, row in rows.items():
        if name == reference:
            row.update(sid_changed_items=0.0, sid_changed_digits=0.0)
        elif row["max_abs_diff"] == 0.0:
            row.update(sid_change(ref_codes, ref_codes))
        else:
            row.update(sid_change(sid_codes(row["embeddings"]), ref_codes))
    return checks


def measure_set(base, texts, names, args, shape, title: str, catalogue_flops: float) -> dict:
    r"""Time ``names`` on ``texts``; ``catalogue_s`` scales each time to the whole catalogue by
    the FLOPs at the real lengths."""
    lengths = token_lengths(base, texts)
    flops = flop_summary(texts, lengths, shape, sorted({VARIANTS[n][1] for n in names}))
    rows = run_variants(base, texts, names, args.repeats)
    reference = rows[args.reference]["embeddings"]
    summarise(rows, flops["flops"], flops["tokens"], reference)
    for row in rows.values():
        row["catalogue_s"] = row["s"] * catalogue_flops / flops["flops"]
    checks = add_sid_changes(rows, args.reference, not args.no_sid_controls) if args.sid else None
    print_table(rows, title)
    for row in rows.values():
        del row["embeddings"]
    return {"flops": flops, "variants": rows, "sid_checks": checks}


def machine_state() -> dict:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0]
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags,
        "uptime": uptime,
        "nice": os.nice(0),
    }


# ------------------------------------------------------------------------------ cold build
def pipeline_split(dataset: str, data_path: str) -> tuple:
    r"""The item texts, the training-item mask (RecBole's split, the semantic-ID build left out)
    and the :class:`~recbole_fair.tokenizer.SemanticIDSettings` of a FAIR run on ``dataset``
    with the repository's config."""
    from recbole_fair.config import Config
    from recbole_fair.data import SemanticIDDataset
    from recbole_fair.tokenizer import SemanticIDSettings
    from recbole_fair.utils import create_dataset

    config_dict = {"data_path": data_path, "show_progress": False, "state": "WARNING"}
    config = Config(model="FAIR", dataset=dataset, config_dict=config_dict)
    data = create_dataset(config)
    train = super(SemanticIDDataset, data).build()[0]  # the split only, no semantic IDs
    return (
        list(data.item_texts),
        data.training_item_mask(train),
        SemanticIDSettings.from_config(config),
    )


def clocked(fn, clock: dict):
    r"""``fn`` that adds its wall and CPU seconds (all threads) to ``clock``."""

    def timed(*args):
        t, c = time.perf_counter(), time.process_time()
        try:
            return fn(*args)
        finally:
            clock["s"] = clock.get("s", 0.0) + time.perf_counter() - t
            clock["cpu_s"] = clock.get("cpu_s", 0.0) + time.process_time() - c

    return timed


def provenance() -> dict:
    r"""The command (``--out`` left out: a path of this machine) and the commit it ran."""
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg.startswith("--out"):
            skip = arg == "--out"
            continue
        argv.append(arg)
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run([*git, "status", "--porcelain", "-uno"], capture_output=True, text=True)
    return {
        "command": " ".join(["python", "benchmarks/bench_text_encoder.py", *argv]),
        "commit": head.strip() + ("-dirty" if dirty.stdout.strip() else ""),
    }


def timed_builds(texts: list[str], mask: np.ndarray, settings) -> dict:
    r"""A cold semantic-ID build (empty cache: encoding, quantizer fit, codes of every item),
    then the cache hit that follows; the encoder's share of the first clocked on its own."""
    from recbole_fair.tokenizer import build_semantic_ids, make_encoder_fn

    encode: dict = {}
    encoder = make_encoder_fn(
        settings.text_encoder,
        settings.text_encode_batch_size,
        settings.device,
        False,
        settings.text_encode_dtype,
    )
    out: dict = {}
    with tempfile.TemporaryDirectory() as cache:
        settings = dataclasses.replace(settings, sid_cache_dir=cache, show_progress=False)
        for step in ("cold", "cache_hit"):
            clock: dict = {}
            sids = clocked(build_semantic_ids, clock)(
                texts, mask, settings, clocked(encoder, encode)
            )
            out[step] = {**clock, "cache_hit": sids.report["cache_hit"]}
    out["encode"] = encode  # model loading included
    out["quantize"] = {k: out["cold"][k] - encode[k] for k in ("s", "cpu_s")}
    out["codes_fingerprint"] = sids.report["codes_fingerprint"]
    return out


def cold_build(args, out: Path) -> None:
    r"""``--cold_build``: time the cold semantic-ID build of the dataset in CPU seconds and
    compare it with the FLOP limit of its encoding (FLOPs at the real token lengths / the fp32
    matmul rate per CPU-second at the encoder's thread count, measured just before)."""
    from recbole_fair.parallel import default_threads
    from recbole_fair.tokenizer.encoder import load_sentence_encoder

    texts, mask, settings = pipeline_split(args.dataset, os.path.abspath(args.data_path))
    threads = default_threads()  # the encoder's and faiss' threads
    rate = matmul_rate(threads, "fp32")
    builds = timed_builds(texts, mask, settings)
    model = load_sentence_encoder(settings.text_encoder, settings.device)
    lengths = token_lengths(model, texts)
    flops = float(sequence_flops(lengths, encoder_shape(model)).sum())
    limit = flops / (rate["gflops_cpu"] * 1e9)
    result = {
        **provenance(),
        "machine": machine_state(),
        "dataset": args.dataset,
        "texts_sha": texts_sha(texts),
        "texts": len(texts),
        "train_items": int(mask.sum()),
        "threads": threads,
        "settings": {
            k: getattr(settings, k)
            for k in ("text_encoder", "text_encode_batch_size", "text_encode_dtype", "n_codes")
            + ("codebook_size", "sid_opq_iterations", "sid_pca_dim")
        },
        "tokens": int(lengths.sum()),
        "flops": flops,
        "matmul_fp32": rate,
        "limit_cpu_s": limit,
        **builds,
        "encode_cpu_s_over_limit": builds["encode"]["cpu_s"] / limit,
        "cold_cpu_s_over_limit": builds["cold"]["cpu_s"] / limit,
    }
    print(json.dumps(result, indent=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nsaved {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Amazon_Beauty")
    parser.add_argument("--data_path", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--sample", type=int, default=1500, help="0: no sample (with --full)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--full", action="store_true", help="also time the whole catalogue")
    parser.add_argument("--full_variants", nargs="+", default=None, choices=list(VARIANTS))
    parser.add_argument("--reference", default=REFERENCE, choices=list(VARIANTS))
    parser.add_argument("--sid", action="store_true", help="semantic-ID changes (OPQ fits)")
    parser.add_argument(
        "--no_sid_controls", action="store_true", help="skip the refit and 1e-6 nudge controls"
    )
    parser.add_argument("--cold_build", action="store_true", help="time a cold semantic-ID build")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results_dir = REPO / "benchmarks" / "results"
    name = "semantic_id_build" if args.cold_build else "text_encoder"
    out = Path(args.out or results_dir / f"{name}-{args.dataset}.json")
    if args.cold_build:
        return cold_build(args, out)
    names = list(dict.fromkeys([args.reference, *args.variants]))

    from recbole_fair.tokenizer.encoder import load_sentence_encoder

    start = time.time()
    texts = pipeline_texts(args.dataset, os.path.abspath(args.data_path), results_dir)
    base = load_sentence_encoder()
    shape = encoder_shape(base)
    full_lengths = token_lengths(base, texts)
    result = {
        "machine_before": machine_state(),
        "dataset": args.dataset,
        "texts_sha": texts_sha(texts),
        "encoder": shape,
        "max_seq_length": base.max_seq_length,
        "catalogue": flop_summary(texts, full_lengths, shape, [16, 32, 64, 128]),
        "matmul": {f"{dt}-t{th}": matmul_rate(th, dt) for th in (1, 2) for dt in ("fp32", "bf16")},
    }
    print(json.dumps({k: result[k] for k in ("machine_before", "encoder", "matmul")}, indent=1))
    print(json.dumps(result["catalogue"], indent=1))
    total = result["catalogue"]["flops"]
    if args.sample > 0:
        sample = random.Random(args.seed).sample(texts[1:], min(args.sample, len(texts) - 1))
        title = f"{len(sample)} texts"
        result["sample"] = measure_set(base, sample, names, args, shape, title, total)
    if args.full:
        args.repeats = 1
        full_names = list(dict.fromkeys([args.reference, *(args.full_variants or names)]))
        result["full"] = measure_set(base, texts, full_names, args, shape, "the catalogue", total)
    result["machine_after"] = machine_state()
    result["seconds"] = time.time() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nsaved {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
