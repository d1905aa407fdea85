"""End to end: the CLI and the Python entry point on ml-100k (inside the recbole wheel)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_FAIR

from recbole_fair.quick_start import run_recbole_fair

REPO = Path(__file__).resolve().parents[1]
METRIC_KEYS = {f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in (5, 10)}


def _cli(args, cwd, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, str(REPO / "run_recbole_fair.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def test_default_cli_runs_fair_on_ml100k(in_tmp_dir, sid_cache_dir):
    """No --model/--dataset: the quick-start preset (FAIR on ml-100k); CLI overrides still win."""
    overrides = [f"--{k}={v}" for k, v in TINY_FAIR.items()]
    log = _cli(["--epochs=1", f"--sid_cache_dir={sid_cache_dir}", *overrides], in_tmp_dir)
    assert "FAIR" in log and "ml-100k" in log
    # the end-of-run summary: one line per metric with plain numbers, then the run's files
    assert re.search(r"^recall@5 +\d\.\d{4} +\d\.\d{4}$", log, re.M), log[-2000:]
    assert re.search(r"^ndcg@10 +\d\.\d{4} +\d\.\d{4}$", log, re.M)
    assert "OrderedDict" not in log and "np.float64" not in log
    assert "SID cache: " in log and "checkpoint: " in log and "log file: " in log
    assert "stopping_step = 3" in log  # quick-start preset applied (FAIR.yaml: 20)
    assert "hidden_size = 32" in log  # ... and command-line overrides win over it
    assert list((in_tmp_dir / "saved").glob("FAIR-*.pth"))


def test_cli_runs_a_recbole_builtin_model(in_tmp_dir):
    log = _cli(
        [
            "--model=SASRec",
            "--dataset=ml-100k",
            "--epochs=1",
            "--MAX_ITEM_LIST_LENGTH=10",
            "--user_inter_num_interval=[5,50]",
            "--hidden_size=16",
            "--inner_size=32",
            "--train_batch_size=4096",
            "--show_progress=False",
        ],
        in_tmp_dir,
    )
    assert re.search(r"^recall@10 +\d\.\d{4} +\d\.\d{4}$", log, re.M), log[-2000:]
    # RecBole's dependency deprecations are filtered (recbole_fair.compat)
    assert "FutureWarning" not in log


def test_python_entry_point_returns_recbole_result(in_tmp_dir, sid_cache_dir):
    result = run_recbole_fair(
        model="FAIR",
        dataset="ml-100k",
        config_dict={**TINY_FAIR, "epochs": 2, "sid_cache_dir": sid_cache_dir},
    )
    assert set(result["test_result"]) == METRIC_KEYS
    assert set(result["best_valid_result"]) == METRIC_KEYS
    assert result["best_valid_score"] == result["best_valid_result"]["ndcg@10"]
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
    # checkpoint written, signed and reloaded for the test evaluation
    checkpoint = Path(result["paths"]["checkpoint"])
    assert checkpoint.is_file() and Path(str(checkpoint) + ".sig").is_file()
    # a name no other run picks, even one started in the same second
    assert re.fullmatch(r"FAIR-ml-100k-.*-[0-9a-f]{6}\.pth", checkpoint.name)
    # semantic-ID report travels with the result
    report = result["semantic_ids"]
    assert report["cache_key"] and 0.0 <= report["collision_rate"] <= 1.0
    assert result["costs"]["epochs"] == 2 and result["costs"]["parameters"] > 0


def test_missing_dataset_gives_a_clear_error(in_tmp_dir):
    with pytest.raises(FileNotFoundError, match="--data_path"):
        run_recbole_fair(
            model="SASRec",
            dataset="Amazon_Beauty",
            config_dict={"data_path": str(in_tmp_dir / "nowhere"), "show_progress": False},
        )


def test_unknown_model_on_cli_lists_models(in_tmp_dir):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, str(REPO / "run_recbole_fair.py"), "--model=NoSuchModel"],
        cwd=in_tmp_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    assert "Unknown model 'NoSuchModel'" in out.stderr and "FAIR" in out.stderr
