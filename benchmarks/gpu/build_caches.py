r"""Build, on this (CPU) machine, the semantic-ID caches that the GPU suite's cells will look up
on the device machine, and copy each, compressed, into the bundle.

The device machine has neither faiss (FAIR/RPG's OPQ codes, the RQ-VAE's k-means) nor the text
encoder's weights: every semantic-ID model of the suite must find its cache there, under the key
its own config gives. So the caches are built here with the suite's settings
(``--model_config``, e.g. docs/leaderboards/gpu_suite.yaml, plus any ``--key=value`` the suite
passes to every cell): FAIR and RPG share one OPQ cache (``sid-<key>.npz``), TIGER has its
RQ-VAE cache (``rqvae-<key>.npz``, trained here on the CPU). Models without semantic IDs
(SASRec) are skipped.

    python benchmarks/gpu/build_caches.py --dataset=Amazon_Beauty --data_path=../shared/datasets \
        --sid_cache_dir=benchmarks/results/sid_cache --out=.devrun/sid \
        --model_config=docs/leaderboards/gpu_suite.yaml --models=FAIR,RPG,TIGER,SASRec

``np.load`` reads the compressed copy as it reads the original (the cache's checksum covers the
arrays, not the file). The copies leave out the item text embeddings (``--keep_embeddings`` keeps
them): 12,101 x 384 float32 are 17 MiB per cache compressed, a quarter of what one device call
carries, and no run needs them there (the cache check wants a ``[n_items, d]`` array: it gets
``d = 0``, with the checksum recomputed; ``dataset.item_text_embeddings`` is then empty, which
only ``recbole_fair.analysis.attention``'s text similarity reads). Used by
benchmarks/gpu/prepare_bundle.sh and by the suite's CPU dry run (tests/test_gpu_suite.py, with a
stand-in text encoder).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# run as a script, this folder leads sys.path: its faiss.py (the device's stand-in) must not
# shadow the real faiss here
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import recbole_fair  # noqa: E402,F401  (its compatibility shims, before RecBole is imported)


def merged_model_config(path: str, overlay: str | None = None) -> dict[str, dict[str, Any]]:
    r"""Per-model overrides of ``path`` (a ``--model_config`` file), each updated by the same
    model's entry of ``overlay`` (for the dry run's small sizes)."""
    from recbole_fair.leaderboard import load_model_config

    merged = load_model_config(path)
    if overlay:
        for model, settings in load_model_config(overlay).items():
            merged.setdefault(model, {}).update(settings)
    return merged


def parse_overrides(args: list[str]) -> dict[str, Any]:
    r"""``--key=value`` pairs, values read as YAML (as RecBole reads its command line)."""
    out = {}
    for arg in args:
        if not (arg.startswith("--") and "=" in arg):
            raise SystemExit(f"build_caches.py: expected --key=value, got {arg!r}")
        key, value = arg[2:].split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def without_embeddings(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    r"""A cache's arrays with ``embeddings`` emptied to ``[n_items, 0]`` and the checksum
    recomputed (what :func:`recbole_fair.tokenizer.cache.load_npz_checked` verifies)."""
    from recbole_fair.tokenizer.cache import checksum

    out = {name: array for name, array in arrays.items() if name != "checksum"}
    out["embeddings"] = np.zeros((len(out["embeddings"]), 0), dtype=np.float32)
    out["checksum"] = np.array(checksum(out))
    return out


def build_caches(
    dataset: str,
    data_path: str,
    sid_cache_dir: str,
    out_dir: str,
    models: list[str],
    model_config: dict[str, dict[str, Any]] | None = None,
    overrides: dict[str, Any] | None = None,
    keep_embeddings: bool = False,
) -> list[str]:
    r"""Build (or reuse) the semantic-ID cache of each model in ``models`` that uses semantic IDs
    and save a compressed copy of it into ``out_dir`` (without the text embeddings unless
    ``keep_embeddings``).

    Returns:
        list of str: the files written into ``out_dir`` (one per distinct cache).
    """
    from recbole_fair.config import Config
    from recbole_fair.utils import create_dataset, get_model

    os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []
    for model in models:
        if not getattr(get_model(model), "uses_semantic_ids", False):
            print(f"{model}: no semantic IDs, nothing to build")
            continue
        config_dict = {
            **(model_config or {}).get(model, {}),
            **(overrides or {}),
            "data_path": data_path,
            "sid_cache_dir": sid_cache_dir,
            "use_gpu": False,
        }
        config = Config(model=model, dataset=dataset, config_dict=config_dict)
        data = create_dataset(config)
        data.build()
        path = data.semantic_id_cache_path
        target = os.path.join(out_dir, os.path.basename(path))
        if target not in written:
            with np.load(path) as cached:
                arrays = {name: cached[name] for name in cached.files}
            if not keep_embeddings:
                arrays = without_embeddings(arrays)
            np.savez_compressed(target, **arrays)
            written.append(target)
        report = data.semantic_id_report or {}
        print(
            f"{model}: cache {os.path.basename(path)} (codes {report.get('codes_fingerprint')}, "
            f"hit {report.get('cache_hit')}) -> {target} ({os.path.getsize(target) / 2**20:.1f} MiB)"
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Amazon_Beauty")
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--sid_cache_dir", required=True)
    parser.add_argument("--out", required=True, help="folder of the compressed copies")
    parser.add_argument("--model_config", default="docs/leaderboards/gpu_suite.yaml")
    parser.add_argument("--overlay", default=None, help="YAML of per-model updates")
    parser.add_argument("--models", default="FAIR,RPG,TIGER,SASRec")
    parser.add_argument(
        "--keep_embeddings", action="store_true", help="keep the text embeddings in the copies"
    )
    args, rest = parser.parse_known_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config also reads --key=value from sys.argv
    build_caches(
        args.dataset,
        os.path.abspath(args.data_path),
        os.path.abspath(args.sid_cache_dir),
        args.out,
        [m.strip() for m in args.models.split(",") if m.strip()],
        merged_model_config(args.model_config, args.overlay),
        parse_overrides(rest),
        args.keep_embeddings,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
