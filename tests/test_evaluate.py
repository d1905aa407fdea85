"""``recbole-fair evaluate``: a saved checkpoint evaluated again, with other decoding settings.

A tiny RPG and a tiny TIGER are trained for one epoch through the package's run path
(``run_recbole_fair``, which writes signed checkpoints) on a slice of ml-100k with a stand-in
text encoder; the command then rebuilds them from their checkpoints. The runs' own test and
validation results are the independent reference.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_FAIR, TINY_TIGER, stand_in_encoder

from recbole_fair.checkpoint import iter_test_batches, load_checkpoint
from recbole_fair.cli import main
from recbole_fair.cli.evaluate import default_out, parse_settings, parse_value
from recbole_fair.data import SemanticIDDataset
from recbole_fair.errors import ConfigError, UserInputError
from recbole_fair.paths import portable_argv, portable_path
from recbole_fair.quick_start import run_recbole_fair

REPO = Path(__file__).resolve().parents[1]
SLICE = {"user_inter_num_interval": "[5,50]", "show_progress": False, "epochs": 1, "seed": 2020}
RUNS = {
    "RPG": dict(TINY_FAIR),
    "TIGER": {**TINY_TIGER, "rqvae_epochs": 2, "train_batch_size": 1024},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """One-epoch RPG and TIGER runs in a directory of their own (the working directory of the
    module's tests, so that relative output paths land there)."""
    root = tmp_path_factory.mktemp("evaluate")
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", [sys.argv[0]])  # RecBole's Config reads --key=value from sys.argv
    mp.setattr(SemanticIDDataset, "encoder_fn", staticmethod(stand_in_encoder))
    mp.chdir(root)
    results = {}
    for model, settings in RUNS.items():
        config = {**SLICE, **settings, "sid_cache_dir": str(root / "sid")}
        results[model] = run_recbole_fair(model=model, dataset="ml-100k", config_dict=config)
    yield root, results
    mp.undo()


def _evaluate(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["evaluate", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _floats(result: dict) -> dict:
    return {metric: float(value) for metric, value in result.items()}


# ------------------------------------------------------------------------------- end to end
def test_evaluate_gives_the_runs_own_results(runs):
    root, results = runs
    run = results["RPG"]
    checkpoint = run["paths"]["checkpoint"]
    # the command in a process of its own, as a user runs it (nothing of the training process:
    # RecBole's numpy aliases, the stand-in encoder; the semantic IDs come from the run's cache)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "recbole_fair.cli",
            "evaluate",
            "--checkpoint",
            checkpoint,
            "--valid",
        ],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout

    written = root / "saved" / "evaluate" / f"{Path(checkpoint).stem}.json"  # the default
    text = written.read_text()
    record = json.loads(text)
    assert record["test"]["result"] == _floats(run["test_result"])
    # one epoch: the checkpoint is that epoch's, whose validation result is the best one
    assert record["valid"]["result"] == _floats(run["best_valid_result"])
    relative = os.path.relpath(checkpoint, root)
    assert record["checkpoint"] == relative and not relative.startswith("..")
    assert record["checkpoint_sha256"] == hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    assert record["checkpoint_epoch"] == 1
    assert (record["model"], record["dataset"], record["seed"]) == ("RPG", "ml-100k", 2020)
    assert record["overrides"] == {} and record["overridden"] == {}
    assert record["settings"]["decoding"] == "exact" and record["settings"]["device"] == "cpu"
    assert record["command"] == ["recbole-fair", "evaluate", "--checkpoint", relative, "--valid"]
    for split in ("test", "valid"):
        numbers = record[split]
        assert numbers["users"] > 100 and numbers["generation_report"] is None
        assert numbers["users_per_second"] == pytest.approx(numbers["users"] / numbers["seconds"])
        assert numbers["seconds"] > 0 and numbers["cpu_seconds"] > 0
    assert record["test"]["users"] == record["valid"]["users"]  # leave-one-out: every user
    fingerprint = run["semantic_ids"]["codes_fingerprint"]
    assert record["sid_codes_fingerprint"] == fingerprint
    assert record["checkpoint_codes_fingerprint"] == fingerprint
    assert record["codes_match_checkpoint"] is True
    assert record["git_commit"] is None or len(record["git_commit"]) == 40
    assert str(root) not in text and '"/' not in text  # no machine path
    assert "users/s" in out and f"written to {os.path.relpath(written, root)}" in out
    assert f"{float(run['test_result']['ndcg@10']):.4f}" in out


def test_graph_decoding_on_an_exact_checkpoint(runs, capsys, tmp_path):
    root, results = runs
    checkpoint = results["RPG"]["paths"]["checkpoint"]
    out_file = tmp_path / "graph.json"
    argv = ["--checkpoint", checkpoint, "--set", "decoding=graph", "graph_steps=1"]
    status, out, err = _evaluate(argv + ["--out", str(out_file)], capsys)
    assert status == 0, err
    record = json.loads(out_file.read_text())
    assert record["overrides"] == {"decoding": "graph", "graph_steps": 1}
    assert record["overridden"] == {"decoding": "exact", "graph_steps": 3}  # RPG.yaml's
    assert record["settings"]["decoding"] == "graph" and record["settings"]["graph_steps"] == 1
    assert "overrides: decoding=graph, graph_steps=1" in out

    # the model built with the override ranks the graph's items only (-inf elsewhere), the
    # checkpoint's own model every item
    graph = load_checkpoint(checkpoint, overrides={"decoding": "graph", "graph_steps": 0})
    exact = load_checkpoint(checkpoint)
    with torch.no_grad():
        batch = next(iter_test_batches(graph))
        graph_scores = graph.model.full_sort_predict(batch)[:, 1:]
        exact_scores = exact.model.full_sort_predict(batch)[:, 1:]
    assert torch.isinf(graph_scores).any(dim=1).all()
    assert torch.isfinite(exact_scores).all()
    assert graph.overridden == {"decoding": "exact", "graph_steps": 3}


def test_settings_that_change_the_trained_model_are_refused(runs, capsys):
    _, results = runs
    checkpoint = results["RPG"]["paths"]["checkpoint"]
    cases = {
        "hidden_size=8": "error: setting 'hidden_size' cannot be overridden",
        "MAX_ITEM_LIST_LENGTH=5": "error: setting 'MAX_ITEM_LIST_LENGTH' cannot be overridden",
        "decodng=graph": "error: unknown setting 'decodng' (did you mean 'decoding'?)",
        "beam_size=5": "error: setting 'beam_size' does not apply to model RPG",
        "topk=0": "error: topk must be a positive integer",
        "device=gpu0": "error: device must be a torch device",
        "metrics=['NDCG','AUC']": "error: metrics: 'AUC' is a value metric",
        "metrics=Foo": "error: metrics: there is no metric named 'Foo'",
        "decoding": "error: --set takes KEY=VALUE",
    }
    for pair, message in cases.items():
        status, _, err = _evaluate(["--checkpoint", checkpoint, "--set", pair], capsys)
        assert status == 1 and err.startswith(message), (pair, err)
        assert "looks like a bug" not in err and "Traceback" not in err
    assert "graph_num_beams" in err or "decoding" in err  # the settings that can change
    with pytest.raises(ConfigError, match="hidden_size=32"):  # the checkpoint's value
        load_checkpoint(checkpoint, overrides={"hidden_size": 8})


def test_tiger_checkpoint_keeps_its_generation_report(runs, capsys, tmp_path):
    _, results = runs
    run = results["TIGER"]
    checkpoint = run["paths"]["checkpoint"]
    status, out, err = _evaluate(
        ["--checkpoint", checkpoint, "--out", f"{tmp_path}/a.json"], capsys
    )
    assert status == 0, err
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["test"]["result"] == _floats(run["test_result"])
    report = record["test"]["generation_report"]
    assert report["invalid_generation_rate"] == 0.0 and report["exact_check_users"] == 8
    for key in ("beam_size", "users", "invalid_generations", "beam_exact_overlap@10"):
        assert report[key] == run["generation"][key], key  # the run's own test pass
    assert "test generation: beam 20, invalid generation rate 0.0000" in out
    assert record["valid"] is None

    argv = ["--checkpoint", checkpoint, "--set", "tiger_exact_check_users=4", "beam_size=10"]
    status, _, err = _evaluate(argv + ["--out", f"{tmp_path}/b.json"], capsys)
    assert status == 0, err
    report = json.loads((tmp_path / "b.json").read_text())["test"]["generation_report"]
    assert (report["exact_check_users"], report["beam_size"]) == (4, 10)


# ------------------------------------------------------------------------------- error paths
def test_missing_and_unsigned_checkpoints_are_user_errors(runs, capsys, tmp_path):
    _, results = runs
    checkpoint = results["RPG"]["paths"]["checkpoint"]
    plain = tmp_path / "plain.pth"
    torch.save({"config": {"model": "RPG", "seed": 1}, "state_dict": {}}, plain)
    tampered = tmp_path / "tampered.pth"
    tampered.write_bytes(Path(checkpoint).read_bytes() + b"\0")  # not the signed bytes
    cases = {
        tmp_path / "missing.pth": "error: checkpoint not found",
        plain: "is not a checkpoint written by RecBole's trainer",
        tampered: "could not be loaded as a checkpoint written by this installation",
    }
    for path, message in cases.items():
        status, _, err = _evaluate(["--checkpoint", str(path)], capsys)
        assert status == 1 and err.startswith("error: ") and message in err, err
        assert "looks like a bug" not in err and "Traceback" not in err
    assert not (tmp_path / "saved").exists()


# ------------------------------------------------------------------------------- the parts
def test_set_values_are_read_as_recbole_reads_the_command_line():
    assert parse_value("graph") == "graph"
    assert parse_value("10") == 10 and parse_value("0.5") == 0.5 and parse_value("1e-3") == 1e-3
    assert parse_value("[5,10]") == [5, 10] and parse_value("['NDCG', 'MRR']") == ["NDCG", "MRR"]
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("None") is None
    assert parse_value("__import__('os')") == "__import__('os')"  # a literal or the text
    assert parse_settings(["decoding=graph", "topk=[5,20]"]) == {
        "decoding": "graph",
        "topk": [5, 20],
    }
    with pytest.raises(UserInputError, match="two values"):
        parse_settings(["topk=5", "topk=10"])
    with pytest.raises(UserInputError, match="KEY=VALUE"):
        parse_settings(["=graph"])


def test_default_result_name_and_portable_paths(tmp_path, monkeypatch):
    name = default_out("/x/RPG-ml-100k-1.pth", {"decoding": "graph", "topk": [5, 10]})
    assert name == os.path.join("saved", "evaluate", "RPG-ml-100k-1-decoding=graph-topk=5,10.json")
    assert default_out("a.pth", {"metrics": "N D"}) == os.path.join(
        "saved", "evaluate", "a-metrics=N_D.json"
    )
    monkeypatch.chdir(tmp_path)
    assert portable_path(str(tmp_path / "saved" / "a.pth")) == os.path.join("saved", "a.pth")
    assert portable_path("/elsewhere/on/disk/b.pth") == "<elsewhere>/b.pth"
    assert portable_path("relative/c.pth") == "relative/c.pth"
    assert portable_argv(["--out=/far/away/d.json", str(tmp_path / "e")]) == [
        "--out=<elsewhere>/d.json",
        "e",
    ]
