"""Shared fixtures: paths to the benchmark data and a per-session semantic-ID cache."""

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import recbole_fair  # noqa: F401  (installs the compatibility shims)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(
    os.environ.get("RECBOLE_FAIR_DATASETS", REPO_ROOT.parent / "shared" / "datasets")
)


@pytest.fixture(autouse=True)
def _recbole_sees_no_pytest_arguments(monkeypatch):
    """RecBole's Config reads ``--key=value`` pairs from sys.argv: hide pytest's own flags."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])


# A small FAIR on a 5..50-interaction slice of ml-100k (the slice keeps ~1/8 of the training
# targets). Every end-to-end FAIR test uses the same data and code settings, so the
# semantic-ID cache is built once per session.
TINY_FAIR = {
    "hidden_size": 32,
    "inner_size": 64,
    "n_codes": 8,
    "user_inter_num_interval": "[5,50]",
    "train_batch_size": 256,
    "show_progress": False,
    # RecBole's plain Adam at a constant rate: FAIR.yaml's recipe warms up for 10,000 steps.
    "learner": "adam",
    "learning_rate": 0.001,
    "lr_scheduler": "none",
    "warmup_steps": 0,
}


# A tiny TIGER: a 2-level RQ-VAE trained for a few epochs, a 1+1-layer T5.
TINY_TIGER = {
    "rqvae_levels": 2,
    "rqvae_codebook_size": 16,
    "rqvae_code_dim": 8,
    "rqvae_hidden_sizes": [32],
    "rqvae_epochs": 3,
    "rqvae_kmeans_iters": 5,
    "hidden_size": 16,
    "inner_size": 32,
    "n_layers": 1,
    "n_decoder_layers": 1,
    "n_heads": 2,
    "head_dim": 8,
    "n_user_tokens": 16,
    "tiger_exact_check_users": 8,
}


def stand_in_encoder(texts, dim: int = 32) -> np.ndarray:
    """Deterministic stand-in for the text encoder: a unit vector seeded by each text's hash."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        out[i] = np.random.default_rng(seed).standard_normal(dim)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models run fastest single-threaded (and do not fight other processes for cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` (or $RECBOLE_FAIR_DATASETS); tests using it skip when absent."""
    if not (SHARED_DATASETS / "Amazon_Beauty" / "Amazon_Beauty.inter").is_file():
        pytest.skip(f"benchmark data not found under {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def sid_cache_dir(tmp_path_factory) -> str:
    """One semantic-ID cache for the whole test session (the text encoder runs once)."""
    return str(tmp_path_factory.mktemp("sid_cache"))


@pytest.fixture()
def in_tmp_dir(tmp_path, monkeypatch):
    """Run in a fresh directory so logs, checkpoints and caches land in tmp."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def benchmark_script():
    """Import a script of ``benchmarks/`` by name (they are scripts, not a package)."""
    import importlib.util

    def load(name: str):
        path = REPO_ROOT / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
