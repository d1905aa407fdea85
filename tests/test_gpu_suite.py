"""The one-window GPU suite, checked on the CPU before any GPU time is spent: the sync-free
training loop (the same updates as RecBole's), bfloat16 autocast against float32, float32
ranking scores under autocast, the FLOP count of one batch against its closed form, the training
deadline, the recipe file, and the suite's device script end to end on a tiny slice of ml-100k
(benchmarks/gpu/device_run.sh, RUNS=suite, SUITE_DEVICE=cpu)."""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_FAIR, TINY_TIGER, stand_in_encoder
from recbole.data import data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_fair.config import Config
from recbole_fair.data import SemanticIDDataset
from recbole_fair.flops import profile_train_step, representative_batch
from recbole_fair.quick_start import FIT_DEADLINE_ENV, run_recbole_fair, trainer_class
from recbole_fair.trainer.sync_free import SyncFreeTrainer, autocast_dtype
from recbole_fair.utils import create_dataset, get_model

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "benchmarks" / "gpu"
SUITE_YAML = REPO / "docs" / "leaderboards" / "gpu_suite.yaml"
SUITE_MODELS = ["FAIR", "RPG", "TIGER", "SASRec"]
# the same tiny sizes for RPG as for FAIR (RPG.yaml's recipe otherwise)
TINY_RPG = dict(TINY_FAIR)


@pytest.fixture(autouse=True)
def _stand_in_encoder(monkeypatch):
    monkeypatch.setattr(SemanticIDDataset, "encoder_fn", staticmethod(stand_in_encoder))
    monkeypatch.delenv(FIT_DEADLINE_ENV, raising=False)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    """This module's semantic-ID caches (built with the stand-in encoder, kept apart from the
    session's cache of real text embeddings under the same keys)."""
    return str(tmp_path_factory.mktemp("gpu_suite_sid"))


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny(model: str, cache_dir: str, **extra) -> tuple:
    """Config, training data and a fresh model with its trainer (seeded) on the ml-100k slice."""
    settings = {**TINY_FAIR, "sid_cache_dir": cache_dir, "state": "WARNING", **extra}
    config = Config(model=model, dataset="ml-100k", config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(model)(config, train_data._dataset)
    return config, train_data, test_data, net, trainer_class(config)(config, net)


# ----------------------------------------------------------------------------- training loop
@pytest.mark.parametrize("nrt_positions", ["last", "all"])
def test_sync_free_loop_updates_like_recboles_loop(
    in_tmp_dir, cache_dir, single_thread, nrt_positions
):
    """recbole-fair's loop (host-side trimming and valid positions, losses summed on the device)
    gives RecBole's loop's losses and parameters exactly, NRT's noise included."""
    results = []
    for loop in (SyncFreeTrainer._train_epoch, Trainer._train_epoch):
        config, train_data, _, net, trainer = tiny("FAIR", cache_dir, nrt_positions=nrt_positions)
        train_data.generator.manual_seed(config["seed"])  # the same batches
        init_seed(config["seed"], config["reproducibility"])  # the same NRT noise
        loss = loop(trainer, train_data, 0)
        results.append((loss, {k: v.clone() for k, v in net.state_dict().items()}))
    (ours, state), (recbole, reference) = results
    assert isinstance(ours, tuple) and len(ours) == 4 and ours == recbole  # FAIRLoss
    assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_the_loop_checks_for_nan_once_per_epoch(in_tmp_dir, cache_dir, single_thread):
    _, train_data, _, net, trainer = tiny("FAIR", cache_dir)
    with torch.no_grad():
        net.code_embedding.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="Training loss is nan"):
        trainer._train_epoch(train_data, 0)


def test_recbole_models_get_the_loop_only_when_asked(in_tmp_dir, cache_dir):
    base = {**TINY_FAIR, "sid_cache_dir": cache_dir}
    assert trainer_class(Config(model="SASRec", dataset="ml-100k", config_dict=base)) is Trainer
    config = Config(
        model="SASRec", dataset="ml-100k", config_dict={**base, "sync_free_train_loop": True}
    )
    assert trainer_class(config) is SyncFreeTrainer


# ----------------------------------------------------------------------------- autocast
def test_autocast_dtype_values():
    assert autocast_dtype(None) is None and autocast_dtype("float32") is None
    assert autocast_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="float16 needs a gradient scaler"):
        autocast_dtype("float16")


def test_autocast_is_refused_for_a_model_that_ranks_in_bfloat16(in_tmp_dir, cache_dir):
    with pytest.raises(ValueError, match="does not keep its ranking scores in float32"):
        tiny("SASRec", cache_dir, autocast_dtype="bfloat16", sync_free_train_loop=True)


def test_ranking_scores_stay_float32_under_autocast(in_tmp_dir, cache_dir, single_thread):
    """Under bfloat16 autocast FAIR's encoder runs in bfloat16, but its digit logits, log-probs
    and item scores (sums of 32 log-probs) are float32, and the scores are those sums."""
    _, _, test_data, net, _ = tiny("FAIR", cache_dir)
    net.eval()
    batch = next(iter(test_data))[0]
    seq, lengths = batch[net.ITEM_SEQ], batch[net.ITEM_SEQ_LEN]
    with torch.no_grad():
        exact = net.full_sort_predict(batch)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            scores = net.full_sort_predict(batch)
            log_probs = net.digit_log_probs(seq, lengths)
    assert scores.dtype == log_probs.dtype == torch.float32
    # the scores are the float32 sums of the autocast log-probs ...
    codes = net.item_codes[1:]  # [n_items - 1, L]
    sums = log_probs.double()[:, torch.arange(net.n_codes), codes].sum(-1)  # [B, n_items - 1]
    assert torch.allclose(scores[:, 1:].double(), sums, rtol=0, atol=1e-3)
    # ... and only the encoder's rounding separates them from float32's
    assert (scores[:, 1:] - exact[:, 1:]).abs().max() < 0.05 * exact[:, 1:].abs().max()


def test_bfloat16_autocast_matches_float32(in_tmp_dir, cache_dir, single_thread):
    """FAIR trained for 6 epochs with bfloat16 autocast and in float32 (same seed and data): the
    losses agree within 0.2% at every epoch, the test NDCG@10 within 0.01 and Recall@10 within
    0.02 (~8 of the slice's 380 test users). Measured: losses within 0.013% (1.3e-4), NDCG@10
    .0365 against .0362, Recall@10 .0868 against .0842 (one user)."""
    runs = {}
    for dtype in (None, "bfloat16"):
        runs[dtype] = run_recbole_fair(
            model="FAIR",
            dataset="ml-100k",
            config_dict={
                **TINY_FAIR,
                "epochs": 6,
                "learning_rate": 0.005,
                "stopping_step": 10,
                "sid_cache_dir": cache_dir,
                "autocast_dtype": dtype,
            },
        )
    fp32, bf16 = runs[None], runs["bfloat16"]
    assert bf16["costs"]["autocast_dtype"] == "bfloat16"
    assert fp32["costs"]["autocast_dtype"] == "float32"
    losses32, losses16 = fp32["costs"]["train_losses"], bf16["costs"]["train_losses"]
    assert len(losses16) == len(losses32) == 6 and all(map(math.isfinite, losses16))
    relative = [abs(a - b) / abs(a) for a, b in zip(losses32, losses16)]
    print("bf16 vs fp32: loss relative differences", [f"{r:.2e}" for r in relative])
    print("test fp32", dict(fp32["test_result"]), "bf16", dict(bf16["test_result"]))
    assert max(relative) < 2e-3
    assert fp32["test_result"]["ndcg@10"] > 0.02  # the model learned something to compare
    assert abs(fp32["test_result"]["ndcg@10"] - bf16["test_result"]["ndcg@10"]) < 0.01
    assert abs(fp32["test_result"]["recall@10"] - bf16["test_result"]["recall@10"]) < 0.02


# ----------------------------------------------------------------------------- FLOPs, deadline
@pytest.mark.parametrize("model", ["RPG", "FAIR"])
def test_flops_of_one_batch_match_the_closed_form(in_tmp_dir, cache_dir, single_thread, model):
    _, train_data, _, net, trainer = tiny(model, cache_dir)
    flops = profile_train_step(trainer, train_data)
    closed = load_script("paper_flops").closed_form_flops(net, train_data)
    hint = net.prepare_batch(representative_batch(train_data)).host_batch
    # FAIR's MIM loss (a [B, B] product of pooled states) is the only term left out
    assert flops["train_flops_per_batch"] == pytest.approx(closed, rel=0.02)
    assert flops["train_flops_per_epoch"] == pytest.approx(
        flops["train_flops_per_batch"] * train_data.sample_size / hint.rows
    )
    assert flops["host_syncs_per_step"] is None  # counted on CUDA only
    assert all(p.grad is None for p in net.parameters())  # no gradient left behind


def test_deadline_stops_training_and_flop_count_changes_nothing(in_tmp_dir, cache_dir, monkeypatch):
    """A deadline already past stops training after the first epoch, whose best checkpoint is
    tested; counting FLOPs before training leaves the run as it was (same first-epoch loss)."""
    settings = {**TINY_FAIR, "epochs": 3, "sid_cache_dir": cache_dir}
    free = run_recbole_fair(model="FAIR", dataset="ml-100k", config_dict=settings)
    monkeypatch.setenv(FIT_DEADLINE_ENV, str(time.time()))
    cut = run_recbole_fair(
        model="FAIR", dataset="ml-100k", config_dict={**settings, "count_train_flops": True}
    )
    assert free["costs"]["epochs"] == 3 and not free["costs"]["stopped_at_deadline"]
    assert cut["costs"]["epochs"] == 1 and cut["costs"]["stopped_at_deadline"]
    assert cut["costs"]["train_losses"][0] == free["costs"]["train_losses"][0]
    assert cut["test_result"] and cut["costs"]["train_flops_per_epoch"] > 0
    assert cut["costs"]["train_tflops_per_second"] > 0
    monkeypatch.setenv(FIT_DEADLINE_ENV, "soon")
    with pytest.raises(ValueError, match=FIT_DEADLINE_ENV):
        run_recbole_fair(model="FAIR", dataset="ml-100k", config_dict=settings)


# ----------------------------------------------------------------------------- the suite
def test_the_recipe_file_holds_known_keys_for_the_four_models(in_tmp_dir, cache_dir):
    """docs/leaderboards/gpu_suite.yaml: one entry per suite model, every key known to its
    model (strict_config), FAIR's recipe as the issue states it, an epoch cap for each."""
    recipe = yaml.safe_load(SUITE_YAML.read_text())
    assert list(recipe) == SUITE_MODELS
    assert recipe["FAIR"]["learning_rate"] == 0.0025 and recipe["FAIR"]["warmup_epochs"] == 1
    for model, overrides in recipe.items():
        config = Config(
            model=model,
            dataset="ml-100k",
            config_dict={**overrides, "strict_config": True, "sid_cache_dir": cache_dir},
        )
        assert config["epochs"] >= 1
        semantic = getattr(get_model(model), "uses_semantic_ids", False)
        assert (config["autocast_dtype"] == "bfloat16") == semantic


def test_device_scripts_are_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    scripts = sorted(str(p) for p in GPU.glob("*.sh"))
    out = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_suite_dry_run_on_the_cpu(tmp_path, cache_dir):
    """The device script's suite mode end to end on the CPU: the bundle's cache step
    (build_caches.py, here with the stand-in encoder) for the four models on a tiny slice, then
    `RUNS=suite bash benchmarks/gpu/device_run.sh` with faiss's stand-in on the path (as on the
    device): four leaderboard cells side by side, each with a results.jsonl whose cell is ok, and
    the report."""
    start = time.time()
    overlay = {
        "FAIR": {**TINY_FAIR, "epochs": 1},
        "RPG": {**TINY_RPG, "epochs": 1},
        "TIGER": {**TINY_TIGER, "epochs": 1, "eval_batch_size": 256},
        "SASRec": {"hidden_size": 16, "inner_size": 32, "epochs": 1},
    }
    overlay_file = tmp_path / "overlay.yaml"
    overlay_file.write_text(yaml.safe_dump(overlay))
    # 137 users of 20 to 25 ratings, 562 items
    common = ["--user_inter_num_interval=[20,25]", "--MAX_ITEM_LIST_LENGTH=10"]
    data_path = Path(sys.modules["recbole"].__file__).parent / "dataset_example"
    sid = tmp_path / "sid"
    build = load_script("build_caches")
    written = build.build_caches(
        "ml-100k",
        str(data_path),
        cache_dir,
        str(sid),
        SUITE_MODELS,
        build.merged_model_config(str(SUITE_YAML), str(overlay_file)),
        build.parse_overrides(common),
    )
    assert sorted(Path(w).name[:4] for w in written) == ["rqva", "sid-"]  # FAIR+RPG, TIGER
    for copy in written:  # carried without the text embeddings (the device needs none)
        with np.load(copy) as cached:
            assert cached["embeddings"].shape[1] == 0 and cached["codes"].shape[1] > 1

    out = tmp_path / "out"
    env = {
        **os.environ,
        "RUNS": "suite",
        "OUT": str(out),
        "PYTHON": sys.executable,
        "SUITE_DEVICE": "cpu",
        "SUITE_DATASET": "ml-100k",
        "SUITE_DATA_PATH": str(data_path),
        "SUITE_SID_CACHE": str(sid),
        "SUITE_OVERLAY": str(overlay_file),
        "SUITE_ARGS": " ".join(common),
        "SUITE_THREADS": "1",
        "SUITE_BUDGET": "300",
        "SUITE_WORK": str(tmp_path / "w"),
        "SITE": str(tmp_path / "site"),
        "SKIP_WHEELS": "1",  # the bundle's wheels (if built) are for the device's Python
    }
    run = subprocess.run(
        ["bash", str(GPU / "device_run.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.time() - start
    print(f"dry run: {wall:.0f} s\n{run.stdout[-4000:]}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    for model in SUITE_MODELS:
        lines = (out / "suite" / model / "results.jsonl").read_text().splitlines()
        record = json.loads(lines[-1])
        assert record["status"] == "ok", (model, record.get("error"))
        costs = record["costs"]
        assert costs["epochs"] == 1 and costs["train_flops_per_epoch"] > 0
        assert costs["autocast_dtype"] == ("float32" if model == "SASRec" else "bfloat16")
        assert costs["fit_deadline"] is not None and not costs["stopped_at_deadline"]
        assert (out / "suite" / model / "run.log").is_file()
        # the semantic-ID caches were hits: no faiss, no encoder on the device
        if model != "SASRec":
            assert record["semantic_ids"]["cache_hit"] is True
    report = json.loads((out / "suite_report.json").read_text())
    assert [c["model"] for c in report["cells"]] == sorted(SUITE_MODELS)
    assert all(c["stopped_by"] == "cap" for c in report["cells"])
    assert "| FAIR | ok | 1 / 1 | cap |" in (out / "suite_report.md").read_text()
