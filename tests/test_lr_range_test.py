"""benchmarks/lr_range_test.py: the geometric schedule, the smoothing, the reading of the curve
and the early stop against independent computations; end-to-end runs of FAIR (AdamW through its
SemanticIDTrainer) and SASRec (RecBole's Adam) on a tiny synthetic dataset; and that the test
leaves no checkpoint behind, so no later run starts from the weights it trained."""

from __future__ import annotations

import csv
import json
import math
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import stand_in_encoder
from synthetic import write_item_texts, write_walk_dataset

from recbole_fair.config import Config
from recbole_fair.data import SemanticIDDataset
from recbole_fair.errors import UserInputError

FAIR_YAML = Path(__file__).resolve().parents[1] / "properties" / "model" / "FAIR.yaml"
N_USERS, N_ITEMS, SEQ_LEN = 200, 60, 8
SMALL = {
    "hidden_size": 16,
    "inner_size": 32,
    "n_heads": 2,
    "MAX_ITEM_LIST_LENGTH": 5,
    "train_batch_size": 64,
    "show_progress": False,
    "state": "WARNING",
}
MODEL_FILES = {
    "FAIR": {
        **SMALL,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]},
        "text_fields": ["title"],
        "n_codes": 4,
        "codebook_size": 16,
        "sid_opq_iterations": 3,
    },
    "SASRec": {
        **SMALL,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "loss_type": "CE",
        "train_neg_sample_args": None,
    },
}

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def lrt(benchmark_script):
    return benchmark_script("lr_range_test")


@pytest.fixture
def tiny_run(in_tmp_dir, monkeypatch):
    """A synthetic walk dataset with item texts under ./data, a YAML per model, the stand-in
    text encoder; returns a function giving the Config of a model (as the script builds it)."""
    monkeypatch.setattr(
        SemanticIDDataset, "encoder_fn", staticmethod(partial(stand_in_encoder, dim=16))
    )
    write_walk_dataset(in_tmp_dir / "data", N_USERS, N_ITEMS, SEQ_LEN)
    write_item_texts(in_tmp_dir / "data", N_ITEMS)
    for model, settings in MODEL_FILES.items():
        (in_tmp_dir / f"{model}.yaml").write_text(yaml.safe_dump(settings))

    def config(model: str) -> Config:
        return Config(
            model=model,
            dataset="syn",
            config_file_list=[str(in_tmp_dir / f"{model}.yaml")],
            config_dict={"data_path": "data", "sid_cache_dir": "sid"},
        )

    return config


# ------------------------------------------------------------------------------- the curve
def test_the_schedule_is_geometric_and_hits_both_ends(lrt):
    lrs = lrt.lr_schedule(1e-5, 1e-1, 9)
    assert len(lrs) == 9 and lrs[0] == 1e-5 and lrs[-1] == 1e-1
    # 4 decades over 8 intervals: every ratio is 10 ** 0.5
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert ratios == pytest.approx([10**0.5] * 8, rel=1e-12)
    assert lrs[4] == pytest.approx(1e-3, rel=1e-12)
    odd = lrt.lr_schedule(3e-4, 0.7, 5)
    assert odd[0] == 3e-4 and odd[-1] == 0.7 and odd == sorted(odd)


def test_the_smoothing_matches_an_independent_computation(lrt):
    losses = [5.0, 4.0, 6.0, 3.0, 3.5, 2.0, 8.0, 1.0]
    beta = 0.9
    # closed form: the (1 - beta) beta^(k-j) weighted mean of losses[0..k], weights normalised
    expected = []
    for k in range(len(losses)):
        weights = [(1 - beta) * beta ** (k - j) for j in range(k + 1)]
        expected.append(sum(w * x for w, x in zip(weights, losses)) / sum(weights))
    assert lrt.smooth(losses, beta) == pytest.approx(expected, rel=1e-12)
    assert lrt.smooth(losses, beta)[0] == losses[0]  # bias-corrected: no pull towards 0
    assert lrt.smooth(losses, 0.0) == losses


def test_the_suggestion_on_a_hand_made_u_curve(lrt):
    lrs = lrt.lr_schedule(1e-5, 1e-1, 12)
    smoothed = [10, 9.5, 8, 5, 3, 2.5, 2.2, 2.1, 2.4, 3, 5, 9]
    # minimum at step 7; central differences up to it: -2.5 at step 3 is the steepest
    # (steps 1..6: -1, -2.25, -2.5, -1.25, -0.4, -0.2; ends one-sided: -0.5, -0.05)
    s = lrt.suggest(lrs, smoothed)
    assert s["min_loss_step"] == 7 and s["min_loss_lr"] == lrs[7]
    assert s["steepest_step"] == 3 and s["steepest_lr"] == lrs[3]
    assert s["suggested_lr"] == pytest.approx(lrs[7] / 10)
    assert not s["minimum_at_last_point"]
    assert lrt.suggest(lrs, sorted(smoothed, reverse=True))["minimum_at_last_point"]
    falling_first = lrt.suggest(lrs, [1.0] + [2.0] * 11)
    assert falling_first["min_loss_step"] == 0 and falling_first["steepest_lr"] is None


def test_the_suggestion_on_an_analytic_u_curve(lrt):
    # loss(x), x = log10(lr): a tanh step down centred at x = -3.5 (its steepest point), then a
    # quadratic rise past x = -2.5; grid x = -5, -4.9, ..., -1
    def loss(lr: float) -> float:
        x = math.log10(lr)
        return 2.0 - math.tanh(3 * (x + 3.5)) + 2 * max(0.0, x + 2.5) ** 2

    lrs = lrt.lr_schedule(1e-5, 1e-1, 41)
    points, stopped = lrt.run_steps(
        lambda lr: (loss(lr), [loss(lr)]), lrs, beta=0.0, diverge=100.0, progress=None
    )
    assert stopped is None and len(points) == 41
    values = [loss(lr) for lr in lrs]
    best = min(range(41), key=values.__getitem__)  # brute force over the grid
    slopes = [  # the analytic derivative d loss / dx on the grid, up to the minimum
        -3 / math.cosh(3 * (math.log10(lr) + 3.5)) ** 2 + 4 * max(0.0, math.log10(lr) + 2.5)
        for lr in lrs[: best + 1]
    ]
    steepest = min(range(best + 1), key=slopes.__getitem__)
    assert steepest == 15  # x = -3.5
    s = lrt.suggest([p["lr"] for p in points], [p["smoothed"] for p in points])
    assert s["min_loss_step"] == best and s["min_loss_lr"] == pytest.approx(lrs[best])
    assert s["steepest_step"] == steepest
    assert s["suggested_lr"] == pytest.approx(lrs[best] / 10)
    configured = lrt.place_configured(0.01, s)  # 10^-2 lies past the minimum (10^-2.4..)
    assert configured["past_minimum"] and configured["verdict"].startswith("unsafe")
    assert configured["ratio_to_suggested"] == pytest.approx(0.01 / s["suggested_lr"])
    assert not lrt.place_configured(s["suggested_lr"], s)["past_minimum"]


def test_divergence_stops_early(lrt):
    lrs = lrt.lr_schedule(1e-5, 1e-1, 50)

    def step(lr):  # flat, then growing tenfold per step past lr 1e-3
        loss = 1.0 if lr < 1e-3 else 10.0 ** (math.log10(lr) + 3) * 10
        return loss, [loss]

    points, stopped = lrt.run_steps(step, lrs, beta=0.9, diverge=4.0, progress=None)
    assert stopped and "4 x its minimum" in stopped
    assert 20 < len(points) < 50
    smoothed = [p["smoothed"] for p in points]
    assert smoothed == pytest.approx(lrt.smooth([p["loss"] for p in points], 0.9))
    assert smoothed[-1] > 4 * min(smoothed)
    assert all(s <= 4 * min(smoothed[: i + 1]) for i, s in enumerate(smoothed[:-1]))

    calls = []

    def nan_step(lr):  # a loss that is not finite ends the test; that point is not recorded
        calls.append(lr)
        return (float("nan") if len(calls) == 7 else 2.0), [2.0]

    points, stopped = lrt.run_steps(nan_step, lrs, progress=None)
    assert len(points) == 6 and len(calls) == 7 and "not finite" in stopped

    def interrupted_step(lr):  # Ctrl-C keeps the points so far
        if lr > 1e-3:
            raise KeyboardInterrupt
        return 1.0, [1.0]

    points, stopped = lrt.run_steps(interrupted_step, lrs, progress=None)
    assert stopped.startswith("interrupted at step") and points[-1]["lr"] < 1e-3 < lrs[len(points)]


def test_progress_is_printed_every_ten_steps(lrt):
    lines = []
    lrt.run_steps(lambda lr: (1.0, [1.0]), lrt.lr_schedule(1e-4, 1e-2, 25), progress=lines.append)
    assert [line.split()[1] for line in lines] == ["1/25", "10/25", "20/25"]


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--lr_min=0.1", "--lr_max=0.01"], "--lr_min (0.1) must be below --lr_max (0.01)"),
        (["--lr_min=0.1", "--lr_max=0.1"], "must be below --lr_max"),
        (["--steps=4"], "--steps must be at least 5"),
        (["--lr_min=0"], "--lr_min must be a number > 0"),
        (["--diverge=1"], "--diverge must be > 1"),
        (["--beta=1"], "--beta"),
    ],
)
def test_bad_arguments_are_clear_user_errors(lrt, flags, words, capsys, in_tmp_dir):
    parser = lrt.build_parser()
    args, _ = parser.parse_known_args(flags)
    with pytest.raises(UserInputError, match=re.escape(words)):
        lrt.check_arguments(args.lr_min, args.lr_max, args.steps, args.diverge, args.beta)
    assert lrt.main(["--model=SASRec", "--dataset=nowhere", *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "looks like a bug" not in err
    assert not list(in_tmp_dir.rglob("*"))  # refused before anything was built


def test_the_table_reads_each_result(lrt, in_tmp_dir, capsys):
    # a hand-made result: the raw loss is lowest at step 2 (noise), the smoothed one at step 3
    points = [
        {"step": k, "lr": lr, "loss": loss, "smoothed": smoothed}
        for k, (lr, loss, smoothed) in enumerate(
            [
                (1e-4, 5.0, 5.0),
                (1e-3, 4.0, 4.5),
                (1e-2, 2.0, 3.6),
                (1e-1, 3.0, 3.5),
                (1.0, 9.0, 6.0),
            ]
        )
    ]
    result = {
        "model": "FAIR",
        "dataset": "syn",
        "parameters": 1234567,
        "batches_per_epoch": 7,
        "steps": 5,
        "steps_run": 5,
        "seconds": 12.5,
        "suggestion": {"min_loss_step": 3, "min_loss_lr": 0.1, "suggested_lr": 0.01},
        "configured": {"learning_rate": 0.025, "ratio_to_suggested": 2.5, "verdict": "between"},
        "config": {"hidden_size": 64},
        "points": points,
    }
    path = in_tmp_dir / "lr_range.json"
    path.write_text(json.dumps(result))
    assert lrt.main(["--table", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0] == lrt.TABLE_HEADER
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells == [
        "FAIR", "syn", "64", "1,234,567", "7", "5 of 5", "2.5",  # 12.5 s / 5 steps
        "0.01 (step 2)", "0.1 (step 3)", "0.01", "0.025", "2.50", "between",
    ]  # fmt: skip
    # a file that is not a result is a clear error naming it
    other = in_tmp_dir / "other.json"
    other.write_text("[1, 2]")
    assert lrt.main(["--table", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "other.json" in err and "looks like a bug" not in err


def test_the_committed_table_is_the_generated_one(lrt):
    # docs/performance/lr_range/README.md pastes --table of the committed JSONs between markers
    folder = Path(__file__).resolve().parents[1] / "docs" / "performance" / "lr_range"
    text = (folder / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- lr-range table: [^>]*-->\n(.*?)\n<!-- /lr-range table -->", text, re.S)
    assert block, "the lr-range table markers are missing"
    files = sorted(folder.glob("FAIR-*-d512.json"))
    assert len(files) >= 5
    results = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    assert block[1].splitlines() == lrt.table(results)


# ------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("model, optimizer", [("FAIR", "AdamW"), ("SASRec", "Adam")])
def test_a_tiny_run_writes_its_curve(lrt, tiny_run, in_tmp_dir, model, optimizer, capsys):
    argv = [
        f"--model={model}",
        "--dataset=syn",
        "--data_path=data",
        f"--config_files={in_tmp_dir / f'{model}.yaml'}",
        "--sid_cache_dir=sid",  # reaches the Config as a run's --key=value
        "--steps=12",
        "--lr_min=1e-4",
        "--lr_max=0.5",
        "--out=out",
    ]
    assert lrt.main(argv) == 0
    printed = capsys.readouterr().out
    assert "suggested peak lr" in printed and "step    1/12" in printed
    text = (in_tmp_dir / "out" / "lr_range.json").read_text()
    result = json.loads(text)
    assert result["optimizer"] == optimizer and result["model"] == model
    points = result["points"]
    lrs = [p["lr"] for p in points]
    assert 1 <= len(points) == result["steps_run"] <= 12
    assert lrs == pytest.approx(lrt.lr_schedule(1e-4, 0.5, 12)[: len(points)], rel=1e-12)
    assert all(b > a for a, b in zip(lrs, lrs[1:]))
    assert all(math.isfinite(p["loss"]) and math.isfinite(p["smoothed"]) for p in points)
    assert all(p["loss"] == pytest.approx(sum(p["parts"])) for p in points)
    # FAIR.yaml's learning rate (the YAML above sets none), RecBole's 0.001 for SASRec
    expected_lr = (
        yaml.safe_load(FAIR_YAML.read_text())["learning_rate"] if model == "FAIR" else 1e-3
    )
    assert result["configured"]["learning_rate"] == expected_lr
    assert result["config"]["hidden_size"] == 16 and result["command"][1] == f"--model={model}"
    assert str(in_tmp_dir) not in text  # no machine path in the record
    rows = list(csv.DictReader(open(in_tmp_dir / "out" / "lr_range.csv")))
    assert [float(r["lr"]) for r in rows] == lrs
    assert (in_tmp_dir / "out" / "lr_range.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(in_tmp_dir.rglob("*.pth"))  # never a checkpoint


def test_a_later_run_does_not_start_from_the_tested_weights(lrt, tiny_run, in_tmp_dir):
    trainer, train_data = lrt.build(tiny_run("FAIR"))
    assert type(trainer).__name__ == "FAIRTrainer"
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    lrs = lrt.lr_schedule(1e-3, 1e-1, 6)
    points, _ = lrt.run_steps(lrt.trainer_step(trainer, train_data), lrs, progress=None)
    assert len(points) == 6
    assert trainer.lr_history == lrs  # each step ran at its lr (the trainer's own record)
    trained = trainer.model.state_dict()
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)  # the test trained
    assert not list(in_tmp_dir.rglob("*.pth"))
    # a run built afterwards from the same config starts from the seeded initialisation
    later, _ = lrt.build(tiny_run("FAIR"))
    fresh = later.model.state_dict()
    assert all(torch.equal(initial[k], fresh[k]) for k in initial)
    assert np.isfinite([p["loss"] for p in points]).all()
