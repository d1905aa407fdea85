"""Behaviour pinned for refactoring: fixed-seed tiny runs of FAIR, RPG, TIGER, SASRec and AttnMVP
and a leaderboard render give exactly the results recorded in ``tests/golden/behaviour.json``.

A change that should not change behaviour (moving code, splitting modules, renaming) keeps this
test green bit for bit on CPU. A change meant to change results re-records the file, and says so
in its commit:

    RECBOLE_FAIR_RECORD_GOLDEN=1 python -m pytest -q tests/test_behaviour_unchanged.py

The semantic-ID models use a deterministic stand-in text encoder (a unit vector seeded by each
text's hash) so that the runs do not depend on the packaged encoder's float rounding.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import TINY_FAIR, TINY_TIGER, stand_in_encoder

from recbole_fair import leaderboard as lb
from recbole_fair.data import SemanticIDDataset
from recbole_fair.quick_start import run_recbole_fair

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "behaviour.json"
RECORD = os.environ.get("RECBOLE_FAIR_RECORD_GOLDEN") == "1"

SLICE = {"user_inter_num_interval": "[5,50]", "show_progress": False, "epochs": 1, "seed": 2020}
RUNS = {
    "FAIR": dict(TINY_FAIR),
    "RPG": {**TINY_FAIR},
    "TIGER": {**TINY_TIGER, "rqvae_epochs": 2, "train_batch_size": 1024},
    "SASRec": {
        "loss_type": "CE",
        "hidden_size": 16,
        "inner_size": 32,
        "MAX_ITEM_LIST_LENGTH": 10,
        "train_batch_size": 1024,
    },
    "AttnMVP": {
        "hidden_size": 16,
        "inner_size": 32,
        "n_layers": 1,
        "MAX_ITEM_LIST_LENGTH": 10,
        "train_batch_size": 1024,
        "attention_type": "silu",
    },
}


def _golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}


def _check(key: str, observed) -> None:
    golden = _golden()
    if RECORD:
        golden[key] = observed
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    assert key in golden, f"no recorded behaviour for {key}: record it (see the module docstring)"
    assert observed == golden[key], f"{key} changed: {observed} != {golden[key]}"


@pytest.mark.parametrize("model", list(RUNS))
def test_tiny_runs_are_unchanged(model, in_tmp_dir, single_thread, monkeypatch):
    monkeypatch.setattr(SemanticIDDataset, "encoder_fn", staticmethod(stand_in_encoder))
    config = {**SLICE, **RUNS[model], "sid_cache_dir": str(in_tmp_dir / "sid")}
    result = run_recbole_fair(model=model, dataset="ml-100k", config_dict=config)
    observed = {
        "test": {k: float(v) for k, v in result["test_result"].items()},
        "valid": {k: float(v) for k, v in result["best_valid_result"].items()},
    }
    if result.get("semantic_ids"):
        observed["codes"] = result["semantic_ids"].get("codes_fingerprint")
    _check(f"run:{model}", observed)


def test_a_leaderboard_render_is_unchanged(tmp_path):
    results = REPO / "docs" / "leaderboards" / "ml-100k-e40" / "results.jsonl"
    out = lb.render_file(str(results), str(tmp_path), reference="FAIR")
    observed = {}
    for name in ("leaderboard.md", "leaderboard.csv"):
        observed[name] = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    assert out["results"]
    _check("render:ml-100k-e40", observed)
