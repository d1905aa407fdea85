"""The ``recbole-fair`` command: its commands, their help, what reaches RecBole, exit status.

``run_recbole_fair.py`` (``recbole-fair run``) is exercised by test_user_errors.py,
test_end_to_end.py and test_leaderboard.py; ``attention`` by test_visualize_attention.py;
``evaluate`` by test_evaluate.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_fair.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def _command(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "recbole_fair.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: recbole-fair [-h] COMMAND [flags]")
    for name in ("run", "leaderboard", "attention", "evaluate", "prepare-amazon"):
        assert f"\n  {name} " in out
    assert list(COMMANDS) == ["run", "leaderboard", "attention", "evaluate", "prepare-amazon"]


@pytest.mark.parametrize("name", ["run", "leaderboard", "attention", "evaluate", "prepare-amazon"])
def test_each_command_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: recbole-fair {name} ")


def test_no_command_or_an_unknown_one_is_a_usage_error(capsys):
    for argv in ([], ["train"], ["--model=FAIR"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err


def test_run_reports_a_user_error_in_one_paragraph(tmp_path):
    out = _command(["run", "--model=NoSuchModle", "--dataset=ml-100k", "--epochs=1"], tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error: Unknown model 'NoSuchModle'" in out.stderr
    # the command's name does not reach RecBole's Config as a command-line argument
    assert "will not be used in RecBole" not in out.stderr + out.stdout
    usage = _command(["run", "--nproc=0"], tmp_path)
    assert (
        usage.returncode == 2
        and "recbole-fair run: error: --nproc must be at least 1" in usage.stderr
    )


def _record(model: str, ndcg: float) -> dict:
    return {
        "record": "cell",
        "cell": f"{model}|toy|seed=1|h",
        "model": model,
        "dataset": "toy",
        "seed": 1,
        "config_hash": "h",
        "status": "ok",
        "test_result": {"recall@10": 2 * ndcg, "ndcg@10": ndcg},
        "per_user": None,
    }


def test_leaderboard_renders_a_results_file(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    results.write_text(
        "".join(json.dumps(_record(m, n)) + "\n" for m, n in [("A", 0.1), ("B", 0.2)])
    )
    out = tmp_path / "rendered"
    assert (
        main(["leaderboard", "--leaderboard-only", str(results), f"--leaderboard_dir={out}"]) == 0
    )
    printed = capsys.readouterr().out
    assert "| A | toy |" in printed and "| B | toy |" in printed
    assert (out / "results.jsonl").read_text() == results.read_text()
    assert any(p.suffix == ".md" for p in out.iterdir())
    missing = str(tmp_path / "nope.jsonl")
    assert main(["leaderboard", "--leaderboard-only", missing]) == 1  # one paragraph, status 1
    err = capsys.readouterr().err
    assert err.startswith("error: --leaderboard-only: results file") and "Traceback" not in err
    with pytest.raises(SystemExit) as done:  # flags that cannot go together: a usage error
        main(["leaderboard", "--model=A", "--in_process", "--cell_timeout=5"])
    assert done.value.code == 2


def test_prepare_amazon_is_the_data_preparation(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(
            ["prepare-amazon", "--reviews", str(tmp_path / "r.json"), "--meta", "m", "--name", "x"]
        )
    assert done.value.code == 2
    assert "recbole-fair prepare-amazon: error: --reviews file not found" in capsys.readouterr().err
