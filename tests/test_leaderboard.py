"""Leaderboards (recbole_fair.leaderboard): rows, files, resume, crashes, significance, CLI.

Cells train Pop and a tiny SASRec on a synthetic 60-user dataset (atomic files in tmp), in this
process unless a test checks the one-process-per-cell mode.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recbole_fair import leaderboard as lb
from recbole_fair.leaderboard import command, runner
from recbole_fair.quick_start import FIT_DEADLINE_ENV

REPO = Path(__file__).resolve().parents[1]
N_USERS = 60


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> str:
    """``<root>/toy/toy.inter``: 60 users x 10 interactions over 40 items, in time order."""
    root = tmp_path_factory.mktemp("toy_data")
    rng = np.random.default_rng(0)
    (root / "toy").mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(1, N_USERS + 1):
        for t, item in enumerate(rng.choice(np.arange(1, 41), size=10, replace=False)):
            lines.append(f"u{user}\ti{item}\t{t}")
    (root / "toy" / "toy.inter").write_text("\n".join(lines) + "\n")
    return str(root)


@pytest.fixture()
def toy_config(toy_data) -> dict:
    return {
        "data_path": toy_data,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "epochs": 2,
        "hidden_size": 8,
        "inner_size": 16,
        "n_layers": 1,
        "n_heads": 1,
        "MAX_ITEM_LIST_LENGTH": 5,
        "train_batch_size": 256,
        "stopping_step": 100,
        "show_progress": False,
    }


def _run(models, seeds, config, directory, **kwargs):
    kwargs.setdefault("isolate", False)
    kwargs.setdefault("verbose", False)
    return lb.run_leaderboard(
        models, ["toy"], seeds, config_dict=config, leaderboard_dir=str(directory), **kwargs
    )


def _resume_sasrec(config, directory):
    """Resume the SASRec cell of seed 1; returns the leaderboard's output and the epochs trained."""
    seen = []
    out = _run(
        ["SASRec"], [1], config, directory, resume=True, epoch_callback=lambda c, e: seen.append(e)
    )
    return out, seen


def _md_rows(table: str) -> list[list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[1:]
    ]


def _records(directory) -> list[dict]:
    return lb.load_results(os.path.join(directory, lb.RESULTS_FILE))


def test_rows_files_agree_best_marked_and_rerender(in_tmp_dir, toy_config):
    out = _run(["Pop", "SASRec"], [1, 2], toy_config, in_tmp_dir / "lb")
    for key in ("markdown", "csv", "png", "results"):
        assert os.path.getsize(out[key]) > 0
    records = _records(in_tmp_dir / "lb")
    assert [(r["model"], r["seed"], r["status"]) for r in records] == [
        ("Pop", 1, "ok"),
        ("Pop", 2, "ok"),
        ("SASRec", 1, "ok"),
        ("SASRec", 2, "ok"),
    ]
    for r in records:  # provenance and per-user values travel with every record
        assert r["config"]["MAX_ITEM_LIST_LENGTH"] == 5 and r["config"]["seed"] == r["seed"]
        assert {"python", "torch", "recbole", "recbole_fair"} <= set(r["versions"])
        assert r["costs"]["epochs"] >= 1 and r["costs"]["parameters"] >= 1
        # RecBole's SASRec import switches anomaly mode on unless compat restores it (~2x slower)
        assert r["costs"]["autograd_anomaly_mode"] is False
        per_user = r["per_user"]
        assert per_user["n_users"] == N_USERS == len(per_user["values"])
        assert abs(np.mean(per_user["values"]) - r["test_result"]["ndcg@10"]) < 1e-3
    assert len({r["per_user"]["users_sha1"] for r in records}) == 1

    md = _md_rows(out["table"])
    with open(out["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in md] == [r["model"] for r in rows] == ["Pop", "SASRec"]
    headers = {"recall@5": "R@5", "ndcg@5": "N@5", "recall@10": "R@10", "ndcg@10": "N@10"}
    for metric, header in headers.items():
        for md_row, csv_row in zip(md, rows):
            seeds = [r["test_result"][metric] for r in records if r["model"] == csv_row["model"]]
            assert float(csv_row[f"{metric}_mean"]) == pytest.approx(np.mean(seeds))
            assert float(csv_row[f"{metric}_std"]) == pytest.approx(np.std(seeds, ddof=1))
            text = f"{float(csv_row[f'{metric}_mean']):.4f} ± {float(csv_row[f'{metric}_std']):.4f}"
            assert md_row[header].replace(" †", "").strip("*") == text
        means = [float(r[f"{metric}_mean"]) for r in rows]
        for md_row, csv_row, mean in zip(md, rows, means):
            best = mean == max(means)
            assert md_row[header].startswith("**") == best
            assert (metric in csv_row["best_columns"].split(";")) == best
    assert all(r["seeds"] == "1,2" and r["max len"] == "5" for r in md)
    assert md[1]["p (N@10 vs SASRec)"] == "ref"

    # --leaderboard-only: the same tables from the results file, without training
    again = lb.render_file(out["results"], str(in_tmp_dir / "again"))
    assert Path(again["markdown"]).read_text() == Path(out["markdown"]).read_text()
    assert Path(again["csv"]).read_text() == Path(out["csv"]).read_text()
    assert os.path.getsize(again["png"]) > 0


def test_crashing_cell_is_recorded_and_the_others_run(in_tmp_dir, toy_config):
    overrides = {"GRU4Rec": {"embedding_size": 8, "loss_type": "NoSuchLoss"}}
    out = _run(
        ["Pop", "NoSuchModel", "GRU4Rec"],
        None,
        toy_config,
        in_tmp_dir / "lb",
        model_overrides=overrides,
    )
    records = {r["model"]: r for r in _records(in_tmp_dir / "lb")}
    assert records["Pop"]["status"] == "ok"
    for model in ("NoSuchModel", "GRU4Rec"):
        assert records[model]["status"] == "error"
        assert "Traceback" in records[model]["error"]["traceback"]
    assert records["GRU4Rec"]["error"]["type"] == "ValueError"  # the config raises
    assert "Failed cells" in out["table"] and "NoSuchModel" in out["table"]
    assert records["Pop"]["seed"] == 2020  # no --seeds: the config's seed


def test_resume_skips_finished_cells(in_tmp_dir, toy_config, monkeypatch):
    _run(["Pop"], [1, 2], toy_config, in_tmp_dir / "lb")
    with pytest.raises(FileExistsError):
        _run(["Pop"], [1, 2], toy_config, in_tmp_dir / "lb")
    calls = []
    real = runner.run_recbole_fair

    def counting(*args, **kwargs):
        calls.append(kwargs["model"])
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_recbole_fair", counting)
    out = _run(["Pop", "SASRec"], [1, 2], toy_config, in_tmp_dir / "lb", resume=True)
    assert calls == ["SASRec", "SASRec"]
    assert [k.split("|")[0] for k in out["ran"]] == ["SASRec", "SASRec"]
    assert len(_records(in_tmp_dir / "lb")) == 4 and len(out["rows"]) == 2
    # changed settings make new cells (another config hash): they run
    calls.clear()
    toy_config["eval_batch_size"] = 512
    _run(["Pop"], [1], toy_config, in_tmp_dir / "lb", resume=True)
    assert calls == ["Pop"]


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_interrupted_cell_resumes_from_last_epoch_checkpoint(in_tmp_dir, toy_config, interruption):
    toy_config["epochs"] = 3
    directory = in_tmp_dir / "lb"
    seen = []

    def stop_after_epoch_0(cell, epoch):
        seen.append(epoch)
        if epoch == 0:
            raise interruption("simulated interruption")

    if interruption is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt):
            _run(["SASRec"], [1], toy_config, directory, epoch_callback=stop_after_epoch_0)
        assert not os.path.exists(directory / lb.RESULTS_FILE)
    else:  # a crash is recorded, with its traceback
        _run(["SASRec"], [1], toy_config, directory, epoch_callback=stop_after_epoch_0)
        (record,) = _records(directory)
        assert (
            record["status"] == "error" and "simulated interruption" in record["error"]["traceback"]
        )
    last = list((directory / "checkpoints").glob("*-last.pth"))
    assert len(last) == 1 and Path(f"{last[0]}.sig").is_file() and Path(f"{last[0]}.json").is_file()

    out, resumed = _resume_sasrec(toy_config, directory)
    seen += resumed
    assert seen == [0, 1, 2]  # epoch 0 before the interruption, then 1 and 2 after resuming
    record = _records(directory)[-1]
    assert record["status"] == "ok" and out["ran"] == [record["cell"]]
    assert record["costs"]["resumed_from_epoch"] == 1
    costs = record["costs"]
    assert costs["epochs"] == 3 and len(costs["train_epoch_seconds"]) == 3
    # the learning curves carry across the interruption: one value per epoch, the best
    # validation score among them
    assert len(costs["valid_scores"]) == 3 and len(costs["train_losses"]) == 3
    assert max(costs["valid_scores"]) == pytest.approx(record["best_valid_score"])
    assert all(loss > 0 for loss in costs["train_losses"])
    assert not list((directory / "checkpoints").glob("*-last.pth*"))  # done: only best stays
    assert list((directory / "checkpoints").glob("*-best.pth"))


def test_a_stop_file_stops_after_the_epoch_and_resume_continues(in_tmp_dir, toy_config):
    toy_config["epochs"] = 3
    directory = in_tmp_dir / "lb"
    stop = directory / lb.STOP_FILE
    seen = []

    def ask_to_stop_in_epoch_0(cell, epoch):
        seen.append(epoch)
        if epoch == 0:
            stop.touch()  # what a user does while the epoch trains

    out = _run(["SASRec"], [1], toy_config, directory, epoch_callback=ask_to_stop_in_epoch_0)
    assert seen == [0] and out["stopped"] and out["ran"] == [] and "table" not in out
    assert not stop.exists()  # honoured once, then removed
    assert not os.path.exists(directory / lb.RESULTS_FILE)  # the cell is not recorded
    state = json.loads(next((directory / "checkpoints").glob("*-last.pth.json")).read_text())
    assert state["epoch"] == 0 and not state["finished"]

    out, resumed = _resume_sasrec(toy_config, directory)
    assert resumed == [1, 2] and out["stopped"] is None
    (record,) = _records(directory)
    assert record["status"] == "ok" and record["costs"]["resumed_from_epoch"] == 1


def test_a_stale_stop_file_is_removed_and_one_between_cells_stops_before_the_next(
    in_tmp_dir, toy_config, monkeypatch
):
    directory = in_tmp_dir / "lb"
    directory.mkdir()
    stop = directory / lb.STOP_FILE
    stop.touch()  # left from an earlier run
    real_append = lb.append_record

    def append_then_ask_to_stop(path, record):
        real_append(path, record)
        stop.touch()

    monkeypatch.setattr(runner, "append_record", append_then_ask_to_stop)
    out = _run(["Pop", "SASRec"], [1], toy_config, directory)
    assert len(out["ran"]) == 1 and out["ran"][0].startswith("Pop|")
    assert out["stopped"].startswith("SASRec|") and not stop.exists()
    assert [r["model"] for r in _records(directory)] == ["Pop"]
    assert len(out["rows"]) == 1  # the finished cell is rendered
    assert not list((directory / "checkpoints").glob("SASRec-*"))  # SASRec never started


def test_a_stop_file_stops_an_isolated_cell(in_tmp_dir, toy_config):
    (spec,) = lb.build_cells(["SASRec"], ["toy"], [1], config_dict=toy_config)
    stop = in_tmp_dir / lb.STOP_FILE
    stop.touch()
    checkpoints = in_tmp_dir / "checkpoints"
    with pytest.raises(lb.StopRequested):
        lb.execute_cell_isolated(spec, str(checkpoints), str(stop))
    state = json.loads(next(checkpoints.glob("*-last.pth.json")).read_text())
    assert state["epoch"] == 0 and not state["finished"]  # stopped after its first epoch


def test_killed_before_its_record_is_written_a_finished_cell_is_not_retrained(
    in_tmp_dir, toy_config, monkeypatch
):
    toy_config["epochs"] = 2
    directory = in_tmp_dir / "lb"
    real_append = lb.append_record

    def killed(path, record):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "append_record", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(["SASRec"], [1], toy_config, directory)
    assert list((directory / "checkpoints").glob("*-last.pth"))  # kept until the record is on disk
    monkeypatch.setattr(runner, "append_record", real_append)
    _, seen = _resume_sasrec(toy_config, directory)
    (record,) = _records(directory)
    assert seen == [] and record["status"] == "ok"  # restored, evaluated, not trained again
    assert not list((directory / "checkpoints").glob("*-last.pth*"))


def test_cell_killed_after_early_stopping_is_not_trained_on(in_tmp_dir, toy_config, monkeypatch):
    from recbole.trainer import trainer as recbole_trainer

    toy_config.update(epochs=5, stopping_step=0)
    directory = in_tmp_dir / "lb"
    validations = []

    def stop_at_the_second_validation(value, best, cur_step, max_step, bigger=True):
        validations.append(value)
        if len(validations) == 1:
            return value, 0, False, True
        return best, max_step + 1, True, False  # no improvement: counter past stopping_step

    def killed_at_epoch_1(cell, epoch):
        if epoch == 1:  # after the epoch's state is written, before fit breaks and says finished
            raise KeyboardInterrupt

    monkeypatch.setattr(recbole_trainer, "early_stopping", stop_at_the_second_validation)
    with pytest.raises(KeyboardInterrupt):
        _run(["SASRec"], [1], toy_config, directory, epoch_callback=killed_at_epoch_1)
    state = json.loads(next((directory / "checkpoints").glob("*-last.pth.json")).read_text())
    assert state["epoch"] == 1 and not state["finished"]
    _, seen = _resume_sasrec(toy_config, directory)
    (record,) = _records(directory)
    assert seen == [] and len(validations) == 2  # resumed as stopped: no epoch 2
    assert record["status"] == "ok" and record["costs"]["best_epoch"] == 0


# ----------------------------------------------------------------------------- training deadline
def _stopped_at_deadline(config, directory, monkeypatch, resume=False):
    """Run (or resume) the SASRec cell of seed 1 with a training deadline already past (at least
    one epoch runs, then it stops); returns the leaderboard's output and the epochs trained."""
    seen = []
    monkeypatch.setenv(FIT_DEADLINE_ENV, str(time.time()))
    out = _run(
        ["SASRec"],
        [1],
        config,
        directory,
        resume=resume,
        epoch_callback=lambda c, e: seen.append(e),
    )
    monkeypatch.delenv(FIT_DEADLINE_ENV)
    return out, seen


def test_a_cell_stopped_at_its_deadline_is_recorded_and_resume_continues_it(
    in_tmp_dir, toy_config, monkeypatch
):
    toy_config["epochs"] = 3
    directory = in_tmp_dir / "lb"
    out, seen = _stopped_at_deadline(toy_config, directory, monkeypatch)
    (first,) = _records(directory)
    assert seen == [0] and first["status"] == "ok" and first["test_result"]
    assert first["costs"]["stopped_at_deadline"] and first["costs"]["epochs"] == 1
    assert [row["epochs"] for row in out["rows"]] == [[1]]  # rendered in the meantime
    state = json.loads(next((directory / "checkpoints").glob("*-last.pth.json")).read_text())
    assert state["epoch"] == 0 and not state["finished"]  # kept, unfinished
    # resumed under a deadline again: one more epoch, stopped again, another record
    _, resumed = _stopped_at_deadline(toy_config, directory, monkeypatch, resume=True)
    second = _records(directory)[-1]
    assert resumed == [1] and second["costs"]["stopped_at_deadline"]
    assert second["costs"]["epochs"] == 2 and second["costs"]["resumed_from_epoch"] == 1

    out, resumed = _resume_sasrec(toy_config, directory)
    assert resumed == [2] and out["ran"] == [first["cell"]]
    earlier, _, final = _records(directory)
    assert earlier == first and final["cell"] == first["cell"] and final["status"] == "ok"
    costs = final["costs"]
    assert costs["resumed_from_epoch"] == 2 and not costs["stopped_at_deadline"]
    # the timings and curves cover the epochs before and after the deadline
    assert costs["epochs"] == 3 and len(costs["train_epoch_seconds"]) == 3
    assert len(costs["valid_scores"]) == 3 and len(costs["train_losses"]) == 3
    for key in ("train_epoch_seconds", "valid_scores", "train_losses"):
        assert costs[key][:2] == second["costs"][key] and costs[key][0] == first["costs"][key][0]
    assert costs["fit_seconds"] > second["costs"]["fit_seconds"] > first["costs"]["fit_seconds"]
    assert not list((directory / "checkpoints").glob("*-last.pth*"))  # done: only best stays
    # one row for the cell, of its final record; --leaderboard-only renders the same
    (row,) = out["rows"]
    assert row["n"] == 1 and row["epochs"] == [3]
    assert row["ndcg@10"][0] == pytest.approx(final["test_result"]["ndcg@10"])
    assert lb.render_file(str(directory / lb.RESULTS_FILE))["table"] == out["table"]
    _, again = _resume_sasrec(toy_config, directory)
    assert again == [] and len(_records(directory)) == 3  # finished now


def test_a_deadline_stopped_cell_without_its_last_epoch_checkpoint_stays_finished(
    in_tmp_dir, toy_config, monkeypatch, capsys
):
    toy_config["epochs"] = 3
    directory = in_tmp_dir / "lb"
    _stopped_at_deadline(toy_config, directory, monkeypatch)
    next((directory / "checkpoints").glob("*-last.pth")).unlink()  # the side file stays
    capsys.readouterr()
    seen = []
    out = _run(
        ["SASRec"],
        [1],
        toy_config,
        directory,
        resume=True,
        verbose=True,
        epoch_callback=lambda c, e: seen.append(e),
    )
    assert seen == [] and out["ran"] == [] and len(_records(directory)) == 1
    assert (
        "finished at its deadline; no last-epoch checkpoint to continue from, skipped"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize("end", ["epoch cap", "early stopping"])
def test_a_deadline_after_the_last_epoch_stops_nothing(in_tmp_dir, toy_config, monkeypatch, end):
    """The deadline stops a run only before an epoch that would run: a run that ends at its cap
    or by early stopping at that point is finished, its last-epoch files removed."""
    from recbole.trainer import trainer as recbole_trainer

    toy_config.update(epochs=1 if end == "epoch cap" else 3, stopping_step=0)
    if end == "early stopping":  # triggered at the first validation
        monkeypatch.setattr(
            recbole_trainer, "early_stopping", lambda value, best, *a, **k: (value, 1, True, True)
        )
    directory = in_tmp_dir / "lb"
    _, seen = _stopped_at_deadline(toy_config, directory, monkeypatch)
    (record,) = _records(directory)
    assert seen == [0] and record["status"] == "ok" and record["costs"]["epochs"] == 1
    assert not record["costs"]["stopped_at_deadline"]
    assert not list((directory / "checkpoints").glob("*-last.pth*"))


def test_a_later_ok_record_of_a_cell_supersedes_the_earlier_one(tmp_path):
    path = tmp_path / lb.RESULTS_FILE
    stopped = _fake_record("A", "toy", 1, 0.1)
    stopped["costs"]["stopped_at_deadline"] = True
    for record in (stopped, _fake_record("A", "toy", 1, 0.3), _fake_record("B", "toy", 1, 0.2)):
        lb.append_record(str(path), record)
    assert lb.finished_records(str(path))["A|toy|seed=1|h"]["test_result"]["ndcg@10"] == 0.3
    rows = {row["model"]: row for row in lb.render_file(str(path))["rows"]}
    assert rows["A"]["n"] == 1 and rows["A"]["ndcg@10"][0] == pytest.approx(0.3)


def _fake_record(model, dataset, seed, ndcg, per_user=None, **extra):
    record = {
        "record": "cell",
        "cell": f"{model}|{dataset}|seed={seed}|h",
        "model": model,
        "dataset": dataset,
        "seed": seed,
        "config_hash": "h",
        "status": "ok",
        "test_result": {
            "recall@5": ndcg * 1.5,
            "ndcg@5": ndcg * 0.8,
            "recall@10": ndcg * 2,
            "ndcg@10": ndcg,
        },
        "costs": {
            "best_epoch": 3,
            "epochs": 5,
            "fit_seconds": 10.0,
            "train_seconds_per_epoch": 2.0,
            "eval_users_per_second": 100.0,
            "parameters": 1000,
            "peak_rss_mb": 500.0,
            "device": "cpu",
        },
        "config": {"MAX_ITEM_LIST_LENGTH": 20},
        "per_user": None,
    }
    if per_user is not None:
        record["per_user"] = {
            "metric": "ndcg@10",
            "values": [round(float(v), 4) for v in per_user],
            "n_users": len(per_user),
            "users_sha1": "same-users",
        }
    record.update(extra)
    return record


def test_record_after_a_cut_off_line_is_kept(tmp_path):
    # a run killed while writing leaves a partial last line; the next record must stay whole
    path = tmp_path / lb.RESULTS_FILE
    first = _fake_record("A", "toy", 1, 0.1)
    lb.append_record(str(path), first)
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"record": "cell", "ce')  # killed here
    second = _fake_record("B", "toy", 1, 0.2)
    lb.append_record(str(path), second)
    assert [r["model"] for r in lb.load_results(str(path))] == ["A", "B"]
    assert len(path.read_text().splitlines()) == 3  # the fragment stays its own (skipped) line


def test_significance_marks_a_clear_difference_and_not_an_identical_model(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for seed in (1, 2, 3):
        ref = rng.random(500) * 0.3
        better = np.clip(ref + 0.1 + 0.02 * rng.standard_normal(500), 0, 1)
        records += [
            _fake_record("SASRec", "toy", seed, ref.mean(), ref),
            _fake_record("Better", "toy", seed, better.mean(), better),
            _fake_record("Same", "toy", seed, ref.mean(), ref),
            # no per-user values: the seed-level t-test
            _fake_record("SeedOnly", "toy", seed, ref.mean() + 0.05 + 0.001 * seed),
        ]
    out = lb.render(records, str(tmp_path))
    rows = {r["model"]: r for r in out["rows"]}
    assert out["reference"] == "SASRec" and rows["SASRec"]["is_reference"]
    assert rows["Better"]["significant"] and rows["Better"]["test"] == "per-user wilcoxon"
    assert rows["Better"]["p_value"] < 1e-6
    assert not rows["Same"]["significant"] and rows["Same"]["p_value"] == 1.0
    assert rows["SeedOnly"]["test"] == "seed ttest" and rows["SeedOnly"]["significant"]
    md = {r["model"]: r for r in _md_rows(out["table"])}
    assert md["Better"]["N@10"].endswith("†") and "†" not in md["Same"]["N@10"]
    assert lb.paired_test(np.ones(5), np.ones(5), "ttest") == 1.0
    # another reference model, and the t-test
    out = lb.render(records, str(tmp_path), reference="Same", significance="ttest")
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["Same"]["is_reference"] and rows["Better"]["test"] == "per-user ttest"
    assert rows["Better"]["significant"] and not rows["SASRec"]["significant"]


def test_leaderboards_run_side_by_side_merge_into_one(tmp_path):
    # two leaderboards on disjoint model lists (one per core), merged by --leaderboard-only
    gen, seq = tmp_path / "gen" / lb.RESULTS_FILE, tmp_path / "seq" / lb.RESULTS_FILE
    for path in (gen, seq):
        path.parent.mkdir()
    failed = dict(_fake_record("FAIR", "toy", 1, 0.0), status="error")
    for record in (failed, _fake_record("FAIR", "toy", 1, 0.05)):
        lb.append_record(str(gen), record)
    for model, ndcg in (("SASRec", 0.04), ("GRU4Rec", 0.02)):
        lb.append_record(str(seq), _fake_record(model, "toy", 1, ndcg))
    out = lb.render_file(f"{gen},{seq}", str(tmp_path / "all"))
    assert [r["model"] for r in out["rows"]] == ["FAIR", "SASRec", "GRU4Rec"]
    assert out["rows"][0]["ndcg@10"][0] == pytest.approx(0.05)  # the ok record wins
    merged = lb.load_results(str(tmp_path / "all" / lb.RESULTS_FILE))
    assert out["results"] == str(tmp_path / "all" / lb.RESULTS_FILE)
    assert merged == lb.load_results(str(gen)) + lb.load_results(str(seq))
    # the merged folder re-renders alone to the same table
    again = lb.render_file(str(tmp_path / "all" / lb.RESULTS_FILE), str(tmp_path / "again"))
    assert again["table"] == out["table"]
    # ... and is copied there, so that folder is self-contained too (one input file)
    copied = tmp_path / "again" / lb.RESULTS_FILE
    assert again["results"] == str(copied) and lb.load_results(str(copied)) == merged
    before = copied.read_bytes()
    assert lb.render_file(str(copied))["results"] == str(copied)  # in place: left as it is
    assert copied.read_bytes() == before
    with pytest.raises(ValueError, match="--leaderboard_dir"):
        lb.render_file([str(gen), str(seq)])
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        lb.render_file(f"{gen},{tmp_path / 'nope.jsonl'}", str(tmp_path / "x"))
    # the CLI turns both into one-line errors
    for args in ([f"{gen},{seq}"], [f"{gen},{tmp_path / 'nope.jsonl'}", "--leaderboard_dir=x"]):
        cli = subprocess.run(
            [sys.executable, str(REPO / "run_recbole_fair.py"), "--leaderboard-only", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert cli.returncode == 1 and cli.stderr.startswith("error: --leaderboard-only")
        assert "Traceback" not in cli.stderr


def test_variants_of_one_model_are_labelled_by_their_settings():
    def variant(chash, argv, config_dict, seed=1):
        spec = {"argv": ["run.py", *argv], "config_dict": {"seed": seed, **config_dict}}
        cell = f"FAIR|toy|seed={seed}|{chash}"
        return _fake_record("FAIR", "toy", seed, 0.1, cell=cell, config_hash=chash, spec=spec)

    common = ["--epochs=40", "--data_path=/d"]
    records = [
        variant("a", common, {"hidden_size": 128}),
        variant("a", common, {"hidden_size": 128}, seed=2),
        variant("b", [*common, "--score_prior_correction=1.0"], {"hidden_size": 128}),
        variant("c", common, {"hidden_size": 256}),
        # same settings as "a" (an edited config file): only the hash tells them apart
        variant("d", common, {"hidden_size": 128}),
        _fake_record("SASRec", "toy", 1, 0.1),
    ]
    labels = {(r["model"], r["config_hash"]): r["label"] for r in lb.summarise(records)}
    # every setting that not all variants share
    assert labels[("FAIR", "b")] == "FAIR [hidden_size=128, score_prior_correction=1.0]"
    assert labels[("FAIR", "c")] == "FAIR [hidden_size=256]"
    assert labels[("FAIR", "a")] == "FAIR [a]" and labels[("FAIR", "d")] == "FAIR [d]"
    assert labels[("SASRec", "h")] == "SASRec"
    # two variants, one with an extra setting: the other is the plain model
    labels = {r["config_hash"]: r["label"] for r in lb.summarise(records[:3])}
    assert labels == {"a": "FAIR", "b": "FAIR [score_prior_correction=1.0]"}
    # where the files were is no setting: a variant run from another checkout, with another
    # data path and cache folder, is labelled by what it trained, never by a machine's paths
    moved = ["--epochs=40", "--data_path=/elsewhere/data", "--sid_cache_dir=/elsewhere/sid"]
    records = [records[0], variant("e", [*moved, "--item_loss_weight=1.0"], {"hidden_size": 128})]
    labels = {r["config_hash"]: r["label"] for r in lb.summarise(records)}
    assert labels == {"a": "FAIR", "e": "FAIR [item_loss_weight=1.0]"}


def test_reference_among_variants_is_the_plain_row_or_a_named_label(tmp_path, caplog):
    rng = np.random.default_rng(1)
    base = rng.random(400) * 0.3
    better = np.clip(base + 0.1, 0, 1)

    def sasrec(chash, argv, values):
        spec = {"argv": ["run.py", "--epochs=40", *argv], "config_dict": {"seed": 1}}
        return _fake_record(
            "SASRec",
            "toy",
            1,
            values.mean(),
            values,
            cell=f"SASRec|toy|seed=1|{chash}",
            config_hash=chash,
            spec=spec,
        )

    plain = sasrec("p", [], base)
    variant = sasrec("v", ["--learning_rate=0.002"], better)
    fair = _fake_record("FAIR", "toy", 1, better.mean(), better)
    rows = {r["label"]: r for r in lb.render([plain, variant, fair], str(tmp_path))["rows"]}
    # the configuration without extra settings is the reference, not "no test at all"
    assert rows["SASRec"]["is_reference"]
    assert rows["SASRec [learning_rate=0.002]"]["significant"] and rows["FAIR"]["significant"]
    # a variant's label can be the reference
    out = lb.render([plain, variant, fair], str(tmp_path), reference="SASRec [learning_rate=0.002]")
    rows = {r["label"]: r for r in out["rows"]}
    assert rows["SASRec [learning_rate=0.002]"]["is_reference"]
    assert rows["SASRec"]["significant"] and rows["FAIR"]["p_value"] == 1.0
    # two variants and no plain row: no test, and the warning names the labels to choose from
    other = sasrec("w", ["--learning_rate=0.003"], base)
    with caplog.at_level("WARNING"):
        rows = lb.render([variant, other, fair], str(tmp_path))["rows"]
    assert all(r["p_value"] is None and not r["is_reference"] for r in rows)
    assert "2 rows of SASRec" in caplog.text and "SASRec [learning_rate=0.003]" in caplog.text


def test_published_numbers_and_semantic_id_columns(tmp_path):
    sid = {"cache_key": "sid-abc123", "collision_rate": 0.0125, "mean_entropy_bits": 7.5}
    records = [
        _fake_record("FAIR", "Amazon_Beauty", 1, 0.04, semantic_ids=sid),
        _fake_record("SASRec", "Amazon_Beauty", 1, 0.0405),
        _fake_record("SASRec", "ml-100k", 1, 0.05),
    ]
    out = lb.render(records, str(tmp_path))
    md = _md_rows(out["table"])
    fair, sasrec, ml = md
    assert fair["SID cache key"] == "`sid-abc123`" and fair["SID collisions"] == "1.25%"
    assert fair["SID entropy"] == "7.500" and sasrec["SID entropy"] == ""
    assert "SID entropy: bits per digit" in out["table"]
    assert fair["published"] == "R@5 0.0563 (FAIR paper)" and fair["gap to published"] == "+6.6%"
    # SASRec is compared with RecBole's SASRec-CE (the model it runs), not the TIGER paper's
    assert sasrec["published"] == "N@10 0.0405 (RecBole SASRec-CE, LETTER issue #20)"
    assert sasrec["gap to published"] == "+0.0%"
    assert ml["published"] == "" and sasrec["SID cache key"] == ""
    with open(out["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["sid_cache_key"] == "sid-abc123" and rows[0]["published_source"] == "FAIR paper"
    assert rows[0]["sid_mean_entropy_bits"] == "7.5" and rows[1]["sid_mean_entropy_bits"] == ""
    assert rows[0]["ndcg@10_mean"] == "0.04" and rows[0]["ndcg@10_std"] == ""  # one seed: no std


def test_cli_flags_are_kept_from_recbole_config():
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--model")
    parser.add_argument("--dataset")
    parser.add_argument("--config_files")
    lb.add_arguments(parser)
    args, unknown = parser.parse_known_args(["--model=SASRec", "--seed=5", "--epochs=3"])
    assert unknown == ["--seed=5", "--epochs=3"] and not lb.wants_leaderboard(args)
    args, unknown = parser.parse_known_args(["--model=FAIR,SASRec", "--hidden_size=8"])
    assert lb.wants_leaderboard(args) and unknown == ["--hidden_size=8"]
    args, _ = parser.parse_known_args(["--model=SASRec", "--seeds=1,2"])
    assert lb.wants_leaderboard(args)
    # every flag of the leaderboard group starts a leaderboard (none is silently ignored)
    for flag in (
        "--significance=ttest",
        "--in_process",
        "--reference=SASRec",
        "--resume",
        "--cell_timeout=60",
    ):
        args, unknown = parser.parse_known_args(["--model=SASRec", flag])
        assert lb.wants_leaderboard(args) and unknown == [], flag


def test_cli_leaderboard_and_leaderboard_only(in_tmp_dir, toy_data):
    (in_tmp_dir / "toy.yaml").write_text(
        f"data_path: {toy_data}\nload_col: {{inter: [user_id, item_id, timestamp]}}\n"
        "MAX_ITEM_LIST_LENGTH: 5\nn_layers: 1\nn_heads: 1\ntrain_batch_size: 256\n"
        "show_progress: False\n"
    )
    (in_tmp_dir / "models.yaml").write_text("SASRec: {hidden_size: 16, inner_size: 16}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args):
        out = subprocess.run(
            [sys.executable, str(REPO / "run_recbole_fair.py"), *args],
            cwd=in_tmp_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout

    stdout = cli(
        "--model=Pop,SASRec",
        "--dataset=toy",
        "--seeds=1,2",
        "--config_files=toy.yaml",
        "--model_config=models.yaml",
        "--leaderboard_dir=lb",
        "--in_process",
        "--epochs=1",
        "--seed=99",
    )
    assert "| model | dataset |" in stdout and "| SASRec | toy | 1,2 |" in stdout
    records = _records(in_tmp_dir / "lb")
    assert [(r["model"], r["seed"], r["status"]) for r in records] == [
        ("Pop", 1, "ok"),
        ("Pop", 2, "ok"),
        ("SASRec", 1, "ok"),
        ("SASRec", 2, "ok"),
    ]
    for r in records:  # each cell's Config saw its own model and seed, and the CLI overrides
        assert r["config"]["model"] == r["model"] and r["config"]["seed"] == r["seed"]
        assert r["config"]["epochs"] == 1
    assert records[2]["config"]["hidden_size"] == 16
    assert "Pop,SASRec" not in json.dumps([r["config"] for r in records])

    stdout = cli("--leaderboard-only", "lb/results.jsonl", "--leaderboard_dir=again")
    assert (in_tmp_dir / "again" / "leaderboard.md").read_text() == (
        in_tmp_dir / "lb" / "leaderboard.md"
    ).read_text()
    assert (in_tmp_dir / "again" / "leaderboard.csv").read_text() == (
        in_tmp_dir / "lb" / "leaderboard.csv"
    ).read_text()
    assert "| SASRec | toy | 1,2 |" in stdout


def test_isolated_cells_run_in_their_own_process(in_tmp_dir, toy_config):
    out = _run(["Pop"], [7], toy_config, in_tmp_dir / "lb", isolate=True)
    (record,) = _records(in_tmp_dir / "lb")
    assert (
        record["status"] == "ok"
        and record["seed"] == 7
        and record["per_user"]["n_users"] == N_USERS
    )
    assert len(out["rows"]) == 1


def test_a_cell_over_its_time_limit_is_killed_recorded_failed_and_the_next_runs(
    in_tmp_dir, toy_config, monkeypatch
):
    """A hung cell process (SIGTERM ignored: SIGKILL after the grace period) is killed at the
    limit, recorded as failed with the reason, listed under the table; the next cell runs."""
    import leaderboard_cells

    monkeypatch.setattr(runner, "_cell_worker", leaderboard_cells.hanging_or_quick_cell)
    monkeypatch.setattr(runner, "KILL_GRACE_SECONDS", 0.5)
    directory = in_tmp_dir / "lb"
    started = time.time()
    out = _run(["Hang", "Pop"], [1], toy_config, directory, isolate=True, cell_timeout=6)
    assert time.time() - started < 60
    hang, pop = _records(directory)
    assert [hang["model"], pop["model"]] == ["Hang", "Pop"] and pop["status"] == "ok"
    assert pop["cell"] == out["ran"][1]  # the stand-in's record is keyed as CellSpec.key
    assert hang["status"] == "error" and hang["error"]["type"] == "CellTimeout"
    assert hang["error"]["message"].startswith("exceeded the cell time limit of 6 s")
    assert hang["error"]["time_limit_seconds"] == 6 and 6 <= hang["wall_seconds"] < 30
    assert out["failed"] == [hang["cell"]] and out["ran"] == [hang["cell"], pop["cell"]]
    assert "Failed cells" in out["table"]
    assert "CellTimeout: exceeded the cell time limit of 6 s" in out["table"]
    pid = int(next((directory / "checkpoints").glob("hang.pid")).read_text())
    with pytest.raises(ProcessLookupError):  # killed (SIGTERM was ignored) and reaped
        os.kill(pid, 0)


def test_cell_timeout_is_refused_in_process_and_must_be_positive(in_tmp_dir, toy_config):
    with pytest.raises(ValueError, match=r"--cell_timeout.*--in_process"):
        _run(["Pop"], [1], toy_config, in_tmp_dir / "lb", cell_timeout=5)  # isolate=False
    with pytest.raises(ValueError, match=r"positive number of seconds"):
        _run(["Pop"], [1], toy_config, in_tmp_dir / "lb", isolate=True, cell_timeout=0)
    assert not (in_tmp_dir / "lb").exists()  # refused before anything ran
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--model")
    parser.add_argument("--dataset")
    parser.add_argument("--config_files")
    lb.add_arguments(parser)
    args = parser.parse_args(["--model=Pop", "--cell_timeout=2.5"])
    assert args.cell_timeout == 2.5 and lb.wants_leaderboard(args)
    lb.check_arguments(args)
    with pytest.raises(ValueError, match=r"--in_process"):
        lb.check_arguments(parser.parse_args(["--cell_timeout=5", "--in_process"]))
    for bad in ("0", "-3", "soon", "nan"):
        with pytest.raises(SystemExit):
            parser.parse_args([f"--cell_timeout={bad}"])


def test_exit_status_stopped_failed_or_ok():
    assert lb.exit_status({"stopped": "a", "failed": ["b"]}) == lb.STOPPED_EXIT_CODE == 75
    assert lb.exit_status({"stopped": None, "failed": ["b"]}) == lb.FAILED_EXIT_CODE == 3
    assert lb.exit_status({"stopped": None, "failed": []}) == 0


def test_the_cli_exits_non_zero_when_a_cell_failed(in_tmp_dir, toy_data, monkeypatch, capsys):
    """run_recbole_fair.py's __main__ (run here, with --in_process cells): status 3 and the failed
    cells named when a cell failed; --cell_timeout with --in_process is a usage error (2)."""
    import runpy

    (in_tmp_dir / "toy.yaml").write_text(
        f"data_path: {toy_data}\nload_col: {{inter: [user_id, item_id, timestamp]}}\n"
        "show_progress: False\n"
    )

    def cli(*args) -> int:
        monkeypatch.setattr(sys, "argv", ["run_recbole_fair.py", *args])
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(REPO / "run_recbole_fair.py"), run_name="__main__")
        return stop.value.code

    common = ["--dataset=toy", "--seeds=1", "--config_files=toy.yaml", "--in_process"]
    assert cli("--model=NoSuchModel,Pop", *common, "--leaderboard_dir=lb") == 3
    out = capsys.readouterr()
    assert "1 cell(s) of this run failed" in out.err and "NoSuchModel|toy|seed=1|" in out.err
    assert "Failed cells" in out.out and "| Pop | toy | 1 |" in out.out
    assert [r["status"] for r in _records(in_tmp_dir / "lb")] == ["error", "ok"]
    # --resume reruns the failed cell only: it fails again, so the status stays 3
    assert cli("--model=NoSuchModel,Pop", *common, "--leaderboard_dir=lb", "--resume") == 3
    assert [r["status"] for r in _records(in_tmp_dir / "lb")] == ["error", "ok", "error"]
    assert cli("--model=Pop", *common, "--leaderboard_dir=lb", "--resume") == 0  # all finished
    capsys.readouterr()
    assert cli("--model=Pop", *common, "--cell_timeout=5", "--leaderboard_dir=lb2") == 2
    assert "--cell_timeout" in capsys.readouterr().err and not (in_tmp_dir / "lb2").exists()


def test_a_cell_process_notices_when_its_leaderboard_is_gone():
    """An orphaned cell stops (it would otherwise train on and write checkpoints)."""
    import threading

    from recbole_fair.leaderboard import watch_parent

    orphaned = threading.Event()
    watch_parent(os.getppid(), interval=0.01, on_orphan=orphaned.set)
    assert not orphaned.wait(0.1)  # our parent is alive: nothing happens
    watch_parent(-1, interval=0.01, on_orphan=orphaned.set)  # "parent" -1 is never ours
    assert orphaned.wait(2)


def test_killing_the_leaderboard_stops_its_cell(tmp_path):
    """End to end: SIGKILL the process that started a cell; the cell process exits too."""
    import signal
    import textwrap

    script = textwrap.dedent(
        f"""
        import multiprocessing as mp, os, time
        from recbole_fair.leaderboard import watch_parent

        def cell(parent_pid):
            watch_parent(parent_pid, interval=0.05)
            open({str(tmp_path / "cell.pid")!r}, "w").write(str(os.getpid()))
            time.sleep(60)

        if __name__ == "__main__":
            p = mp.get_context("spawn").Process(target=cell, args=(os.getpid(),))
            p.start()
            p.join()
        """
    )
    (tmp_path / "parent.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], cwd=tmp_path, env=env)
    pid_file = tmp_path / "cell.pid"
    for _ in range(600):
        if pid_file.is_file() and pid_file.read_text():
            break
        time.sleep(0.05)
    cell_pid = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(cell_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(cell_pid, signal.SIGKILL)
        raise AssertionError("the cell process outlived its leaderboard")


def test_per_user_buckets_align_users_and_split_them(tmp_path, toy_data, benchmark_script):
    from recbole_fair.analysis.user_buckets import bucket_table, split_statistics, users_sha1
    from recbole_fair.data.item_counts import recent_target_counts

    buckets = benchmark_script("per_user_buckets")  # the script: tables of a results file
    config = {
        "data_path": toy_data,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 5,
    }
    users = split_statistics(config, "toy")
    assert len(users["uid"]) == N_USERS and np.all(np.diff(users["uid"]) > 0)
    assert np.all(users["history"] == 5)  # 9 earlier items, capped at 5
    # leave-one-out: 8 training items per user, 7 of them training targets
    assert users["item_popularity"].sum() == 7 * N_USERS
    assert np.array_equal(users["popularity"], users["item_popularity"][users["target"]])
    # one training row per target: histories 1..7 of every user (uncapped lengths: capped at 5)
    assert np.array_equal(
        np.bincount(users["train_target"], minlength=len(users["item_popularity"])),
        users["item_popularity"],
    )
    assert np.array_equal(np.bincount(users["train_uid"])[1:], np.full(N_USERS, 7))
    assert sorted(set(users["train_history"].tolist())) == [1, 2, 3, 4, 5]
    # each user's latest training target (its 8th item; histories 5-7 are all capped at 5)
    n_items = len(users["item_popularity"])
    recent = recent_target_counts(
        users["train_uid"], users["train_history"], users["train_target"], n_items, 1
    )
    rows = [line.split("\t") for line in open(os.path.join(toy_data, "toy", "toy.inter"))][1:]
    eighth = [item for _, item, t in rows if int(float(t)) == 7]
    token_id = {token: i for i, token in enumerate(users["item_tokens"])}
    assert recent.tolist() == np.bincount([token_id[t] for t in eighth], minlength=n_items).tolist()

    rng = np.random.default_rng(1)
    ref, other = rng.random(N_USERS), rng.random(N_USERS)
    feature = np.arange(N_USERS)  # buckets 0-9, 10-29, 30+
    rows = bucket_table({"SASRec": ref, "X": other}, feature, (9, 29, np.inf), "SASRec")
    assert [(r["bucket"], r["users"]) for r in rows] == [("0–9", 10), ("10–29", 20), ("30+", 30)]
    for row, part in zip(rows, (slice(0, 10), slice(10, 30), slice(30, None))):
        assert row["X"] == pytest.approx(other[part].mean())
        assert row["X Δ%"] == pytest.approx(100 * (other[part].mean() / ref[part].mean() - 1))
        assert row["X p"] == pytest.approx(lb.paired_test(other[part], ref[part]))
    assert [r["bucket"] for r in bucket_table({"SASRec": ref}, feature, (9, 99), "SASRec")] == [
        "0–9",
        "10–99",
    ]

    # the script on a results file: values aligned by the users' hash, or a clear error
    sha1 = users_sha1(users["uid"])
    results = tmp_path / "results.jsonl"
    for model, values in (("SASRec", ref), ("X", other)):
        record = _fake_record(model, "toy", 1, float(values.mean()))
        record["per_user"] = {"values": list(values), "users_sha1": sha1, "n_users": N_USERS}
        lb.append_record(str(results), record)
    argv = ["--results", str(results), "--dataset", "toy", "--data_path", toy_data]
    with pytest.MonkeyPatch.context() as mp:  # the toy dataset's columns come from its config
        real = buckets.split_statistics
        mp.setattr(buckets, "split_statistics", lambda c, d: real({**config, **c}, d))
        tables = buckets.main(argv + ["--out", str(tmp_path / "b.md")])
        assert tables["history"] == [
            {
                "bucket": "5–7",
                "users": N_USERS,
                "SASRec": pytest.approx(ref.mean()),
                "X": pytest.approx(other.mean()),
                "X Δ%": pytest.approx(100 * (other.mean() / ref.mean() - 1)),
                "X p": pytest.approx(lb.paired_test(other, ref)),
            }
        ]
        assert "| 5–7 | 60 |" in (tmp_path / "b.md").read_text()
        # a second configuration of X (another hash and setting) is a column of its own
        variant = dict(record, cell="X|toy|seed=1|v", config_hash="v")
        variant["per_user"] = dict(record["per_user"], values=list(ref))
        variant["spec"] = {"argv": ["run.py", "--score_prior_correction=1.0"], "config_dict": {}}
        lb.append_record(str(results), variant)
        row = buckets.main(argv)["history"][0]
        assert row["X"] == pytest.approx(other.mean())
        assert row["X [score_prior_correction=1.0]"] == pytest.approx(ref.mean())
        # --row keeps the rows asked for, and the reference
        only = buckets.main(argv + ["--row", "X [score_prior_correction=1.0]"])["history"][0]
        assert "X" not in only and only["SASRec"] == pytest.approx(ref.mean())
        assert only["X [score_prior_correction=1.0]"] == pytest.approx(ref.mean())
        with pytest.raises(SystemExit, match=r"--row 'Z': no such row .*rows there: SASRec; X"):
            buckets.main(argv + ["--row", "Z"])
        with pytest.raises(SystemExit, match="no finished BERT4Rec"):
            buckets.main(argv + ["--reference", "BERT4Rec"])
        # a second seed of X: its first seed by default, both averaged per user with --all_seeds
        third = rng.random(N_USERS)
        second = dict(record, seed=2, cell="X|toy|seed=2|h")
        second["per_user"] = dict(record["per_user"], values=list(third))
        lb.append_record(str(results), second)
        assert buckets.main(argv)["history"][0]["X"] == pytest.approx(other.mean())
        averaged = buckets.main(argv + ["--all_seeds", "--out", str(tmp_path / "a.md")])
        assert averaged["history"][0]["X"] == pytest.approx(((other + third) / 2).mean())
        assert averaged["history"][0]["X p"] == pytest.approx(
            lb.paired_test((other + third) / 2, ref)
        )
        assert (
            "(SASRec 1, X 2, X [score_prior_correction=1.0] 1)" in (tmp_path / "a.md").read_text()
        )
        with pytest.raises(SystemExit):  # argparse: the two exclude each other
            buckets.main(argv + ["--all_seeds", "--seed", "1"])
        bad = dict(record, model="Y", cell="Y|toy|seed=1|h")
        bad["per_user"] = dict(bad["per_user"], users_sha1="0" * 40)
        lb.append_record(str(results), bad)
        with pytest.raises(SystemExit, match="user-id hash differs"):
            buckets.main(argv)


def test_per_user_buckets_collision_groups_align_items_by_token(toy_data):
    import torch

    from recbole_fair.analysis import user_buckets as buckets

    class Built:  # FAIR's training split: codes in its own item order
        field2id_token = {"item_id": np.array(["[PAD]", "b", "a", "d", "c"])}
        item_codes = torch.tensor([[0, 0], [1, 2], [3, 3], [1, 2], [1, 2]])

    class Dataset:
        def build(self):
            return [Built()]

    config = {"data_path": toy_data, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(buckets, "create_dataset", lambda config: Dataset())
        sizes = buckets.collision_group_sizes(
            config, "toy", np.array(["[PAD]", "a", "b", "c", "d"])
        )
        np.testing.assert_array_equal(sizes, [0, 1, 3, 3, 3])  # b, c, d share [1, 2]
        with pytest.raises(ValueError, match=r"1 items of toy's split have no semantic ID"):
            buckets.collision_group_sizes(config, "toy", np.array(["[PAD]", "a", "e"]))
    rows = buckets.bucket_table(
        {"SASRec": np.array([0.5, 0.2, 0.1]), "X": np.array([0.4, 0.2, 0.3])},
        sizes[[1, 2, 3]],
        buckets.COLLISION_EDGES,
        "SASRec",
        low=1,
    )
    assert [(r["bucket"], r["users"]) for r in rows] == [("1", 1), ("2–3", 2)]


def test_cpu_lane_script_merges_every_run_folder_and_seeds_a_new_checkout(tmp_path):
    """benchmarks/run_cpu_leaderboards.sh: `merge` takes both lanes and any variant folder of a
    dataset; a lane without results starts from the committed (merged) results."""
    out, docs = tmp_path / "out", tmp_path / "docs"
    for lane, model, chash in (
        ("gen", "FAIR", "a"),
        ("seq", "SASRec", "s"),
        ("fair-nb", "FAIR", "b"),
    ):
        argv = ["run.py", "--epochs=7"] + (["--score_prior_correction=1.0"] if chash == "b" else [])
        record = _fake_record(
            model,
            "toy",
            2020,
            0.1,
            cell=f"{model}|toy|seed=2020|{chash}",
            config_hash=chash,
            spec={"argv": argv, "config_dict": {}},
        )
        (out / f"toy-e7-{lane}").mkdir(parents=True)
        lb.append_record(str(out / f"toy-e7-{lane}" / "results.jsonl"), record)
    env = {
        **os.environ,
        "OUT": str(out),
        "DOCS": str(docs),
        "EPOCHS": "7",
        "DATASETS": "toy",
        "DATA_PATH": str(tmp_path),
        "SID_CACHE": str(tmp_path),
        "PYTHON": sys.executable,
    }
    script = str(REPO / "benchmarks" / "run_cpu_leaderboards.sh")
    subprocess.run(["bash", script, "merge"], env=env, check=True, capture_output=True)
    table = (docs / "toy-e7" / "leaderboard.md").read_text()
    for label in ("| FAIR |", "| FAIR [score_prior_correction=1.0] |", "| SASRec |"):
        assert label in table
    merged = (docs / "toy-e7" / "results.jsonl").read_text()
    assert len(merged.splitlines()) == 3
    # merging again reads the committed file too: no row lost, no record doubled
    subprocess.run(["bash", script, "merge"], env=env, check=True, capture_output=True)
    assert (docs / "toy-e7" / "results.jsonl").read_text() == merged

    # a new checkout: no run folders; the lane starts from the committed results and resumes
    fake = tmp_path / "fake_python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    fake.chmod(0o755)
    env.update(OUT=str(tmp_path / "new"), PYTHON=str(fake))
    run = subprocess.run(["bash", script, "gen"], env=env, check=True, capture_output=True)
    assert "seeded from" in run.stdout.decode()
    assert (tmp_path / "new" / "toy-e7-gen" / "results.jsonl").read_text() == merged
    call = (tmp_path / "calls").read_text()
    assert "--model=FAIR,RPG" in call and "--resume" in call and "--epochs=7" in call
    run = subprocess.run(["bash", script, "nope"], env=env, capture_output=True)
    assert run.returncode == 2 and b"unknown lane" in run.stderr


@pytest.mark.parametrize("status, calls", [(3, 2), (75, 1), (1, 1)])
def test_cpu_lane_goes_on_after_failed_cells_and_ends_on_a_stop(tmp_path, status, calls):
    """A leaderboard exiting 3 (a cell failed, recorded) lets the lane run the next dataset;
    75 (STOP file) or another failure (1: the command failed) ends the lane with that status."""
    fake = tmp_path / "fake_python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\nexit {status}\n')
    fake.chmod(0o755)
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "DOCS": str(tmp_path / "docs"),
        "DATASETS": "one two",
        "DATA_PATH": str(tmp_path),
        "PYTHON": str(fake),
    }
    script = str(REPO / "benchmarks" / "run_cpu_leaderboards.sh")
    run = subprocess.run(["bash", script, "seq"], env=env, capture_output=True)
    assert run.returncode == (0 if status == 3 else status), run.stderr
    assert len((tmp_path / "calls").read_text().splitlines()) == calls


def test_the_cli_reports_a_stopped_run_without_a_table(monkeypatch, capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--dataset")
    parser.add_argument("--config_files")
    lb.add_arguments(parser)
    args = parser.parse_args(["--model=SASRec", "--dataset=toy", "--leaderboard_dir=d"])
    stopped = {"dir": "d", "results": "d/results.jsonl", "ran": [], "stopped": "SASRec|toy|x"}
    monkeypatch.setattr(command, "run_leaderboard", lambda *a, **k: dict(stopped))
    assert lb.cli(args, [])["stopped"] == "SASRec|toy|x"
    assert "stopped at SASRec|toy|x" in capsys.readouterr().out


# the modules of recbole_fair/leaderboard/, lowest first: each may import only those before it
LEADERBOARD_LAYERS = [
    "results",
    "cells",
    "stats",
    "summary",
    "plot",
    "tables",
    "hook",
    "runner",
    "command",
]


def _leaderboard_imports(path: Path) -> set[str]:
    """The modules of recbole_fair.leaderboard that the module at ``path`` imports (the package
    itself as ``"__init__"``), at its top level or inside a function."""
    import ast

    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            names = [node.module] if node.module else [a.name for a in node.names]
            imported |= {f"recbole_fair.leaderboard.{name}" for name in names}
        elif isinstance(node, ast.ImportFrom) and node.module == "recbole_fair":
            imported |= {f"recbole_fair.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    parts = [m.split(".") for m in imported if m.split(".")[:2] == ["recbole_fair", "leaderboard"]]
    return {p[2] if len(p) > 2 else "__init__" for p in parts}


def test_leaderboard_modules_import_only_lower_ones():
    """No module of the package imports one above it, nor the package (no import cycle)."""
    folder = REPO / "recbole_fair" / "leaderboard"
    modules = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    assert modules == sorted(LEADERBOARD_LAYERS)
    for rank, name in enumerate(LEADERBOARD_LAYERS):
        imported = _leaderboard_imports(folder / f"{name}.py")
        above = {m for m in imported if m == "__init__" or LEADERBOARD_LAYERS.index(m) >= rank}
        assert not above, f"{name} imports {sorted(above)}: a module above it, or the package"
    # and the check sees an import: the runner imports the hook and the tables
    assert {"hook", "tables"} <= _leaderboard_imports(folder / "runner.py")


def test_no_leaderboard_name_hides_a_module():
    """``lb.<module>`` is the module: no re-exported name (``render``, ``cli``) shadows one, so
    ``import recbole_fair.leaderboard.<module> as m`` and ``monkeypatch`` paths reach it."""
    import importlib
    import types

    for name in LEADERBOARD_LAYERS:
        module = importlib.import_module(f"recbole_fair.leaderboard.{name}")
        assert isinstance(getattr(lb, name), types.ModuleType) and getattr(lb, name) is module
    assert callable(lb.cli) and callable(lb.render)  # the functions the CLI and tests use


def test_recorded_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    from recbole_fair.leaderboard.runner import relative_paths

    monkeypatch.chdir(tmp_path)
    inside = str(tmp_path / "leaderboards" / "x" / "checkpoints" / "a.pth")
    outside = os.path.abspath(os.path.join(str(tmp_path), "..", "elsewhere", "b.log"))
    got = relative_paths({"checkpoint": inside, "log_file": outside, "semantic_id_cache": None})
    assert got["checkpoint"] == os.path.join("leaderboards", "x", "checkpoints", "a.pth")
    assert got["log_file"] == outside  # outside the working directory: kept as it is
    assert got["semantic_id_cache"] is None
    assert relative_paths(None) is None


def test_a_finished_record_keeps_the_generation_and_data_reports():
    from types import SimpleNamespace

    from recbole_fair.leaderboard.runner import _finished

    hook = SimpleNamespace(prior_fit_seconds=2.0, resumed_from_epoch=None, per_user=lambda: None)
    generation = {"invalid_generation_rate": 0.0, "beam_exact_overlap@10": 0.85}
    data = {"interactions_read": 10, "interactions_kept": 10}
    result = {"costs": {"fit_seconds": 1.0}, "generation": generation, "data": data}
    record = _finished(result, hook)
    assert record["generation"] == generation and record["data"] == data
    assert record["costs"]["fit_seconds"] == 3.0
    assert _finished({"costs": {}}, hook)["generation"] is None


@pytest.fixture
def recbole_numpy_aliases(monkeypatch):
    # RecBole's metrics use np.float, which RecBole's Config aliases (compatibility_settings)
    monkeypatch.setattr(np, "float", float, raising=False)


def _recbole_per_user(
    ranks: np.ndarray, n_targets: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-user R@k and N@k (k = 5, 10) by RecBole's own metric classes, from each user's
    target ranks (0: not in the top 10); ``n_targets`` > 1 adds targets beyond the top 10."""
    from recbole.evaluator.metrics import NDCG, Recall

    config = {"topk": [5, 10], "metric_decimal_place": 4}
    pos_index = np.zeros((len(ranks), 10), dtype=bool)
    for user, rank in enumerate(ranks):
        if rank:
            pos_index[user, rank - 1] = True
    pos_len = (
        np.ones(len(ranks), dtype=np.int64) if n_targets is None else n_targets.astype(np.int64)
    )
    ndcg = NDCG(config).metric_info(pos_index, pos_len)
    recall = Recall(config).metric_info(pos_index, pos_len)
    return {
        "ndcg@10": ndcg[:, 9],
        "ndcg@5": ndcg[:, 4],
        "recall@5": recall[:, 4],
        "recall@10": recall[:, 9],
    }


def test_per_user_recall_and_ndcg_at_5_follow_from_ndcg_at_10_of_one_target(recbole_numpy_aliases):
    from recbole_fair.leaderboard.stats import per_user_metric, target_ranks

    rng = np.random.default_rng(3)
    ranks = rng.integers(0, 11, size=2000)  # every rank of the top 10, and beyond it
    truth = _recbole_per_user(ranks)
    kept = np.round(truth["ndcg@10"], 4)  # what a record keeps
    np.testing.assert_array_equal(target_ranks(kept), ranks)
    for metric in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        np.testing.assert_allclose(per_user_metric(kept, metric), truth[metric], atol=1e-4)
    # users with two targets: NDCG@10 gives no rank, so nothing is derived
    two = _recbole_per_user(ranks, n_targets=np.full(len(ranks), 2))
    assert target_ranks(np.round(two["ndcg@10"], 4)) is None
    assert per_user_metric(np.round(two["ndcg@10"], 4), "recall@5") is None
    assert per_user_metric(kept, "recall@20") is None  # beyond the kept top 10


def test_p_values_of_recall_and_ndcg_at_5_in_the_csv(tmp_path, recbole_numpy_aliases):
    rng = np.random.default_rng(4)
    records = []
    for seed in (1, 2):
        ref = rng.integers(0, 11, size=600)
        # the same users; "Top" moves every hit at rank 6-10 to rank 1-5: R@5 and N@5 differ,
        # R@10 does not
        top = np.where(ref > 5, ref - 5, ref)
        for model, ranks in (("SASRec", ref), ("Top", top), ("Same", ref)):
            values = _recbole_per_user(ranks)["ndcg@10"]
            records.append(_fake_record(model, "toy", seed, values.mean(), values))
    records.append(_fake_record("NoUsers", "toy", 1, 0.1))
    out = lb.render(records, str(tmp_path))
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["Top"]["p_values"]["recall@5"] < 1e-6
    assert rows["Top"]["p_values"]["ndcg@5"] < 1e-6
    assert rows["Top"]["p_values"]["recall@10"] == 1.0  # the same hits in the top 10
    assert rows["Same"]["p_values"] == {"recall@5": 1.0, "ndcg@5": 1.0, "recall@10": 1.0}
    assert all(v is None for v in rows["NoUsers"]["p_values"].values())
    with open(tmp_path / "leaderboard.csv", newline="") as f:
        csv_rows = {r["model"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["Top"]["p_ndcg@5"]) == pytest.approx(rows["Top"]["p_values"]["ndcg@5"])
    assert csv_rows["NoUsers"]["p_recall@5"] == "" and csv_rows["SASRec"]["p_ndcg@5"] == ""
