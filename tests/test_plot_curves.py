"""benchmarks/plot_curves.py: curves of finished and of stopped runs, table and files."""

import json
import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
plot_curves = runpy.run_path(str(REPO / "benchmarks" / "plot_curves.py"))


def test_curves_of_finished_and_stopped_runs(tmp_path):
    done = tmp_path / "run-a"
    done.mkdir()
    record = {
        "record": "cell",
        "status": "ok",
        "costs": {"valid_scores": [0.01, 0.03], "train_losses": [5.0, 4.0], "best_epoch": 1},
        "test_result": {"ndcg@10": 0.025, "recall@5": 0.04},
    }
    failed = {**record, "status": "error", "costs": {"valid_scores": [0.9]}}
    (done / "results.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(failed) + "\n")
    stopped = tmp_path / "run-b" / "checkpoints"
    stopped.mkdir(parents=True)
    state = {"valid_scores": [0.02], "train_losses": [6.0], "train_epoch_seconds": [10.0, 20.0]}
    (stopped / "FAIR-x-last.pth.json").write_text(json.dumps(state))
    (tmp_path / "run-c").mkdir()  # nothing yet: skipped
    out = tmp_path / "out" / "curves"
    plot_curves["main"](
        [str(tmp_path / n) for n in ("run-a", "run-b", "run-c")] + ["--out", str(out)]
    )
    curves = json.loads(Path(f"{out}.json").read_text())
    assert list(curves) == ["run-a", "run-b"]
    assert curves["run-a"]["valid_scores"] == [0.01, 0.03] and curves["run-a"]["finished"]
    assert curves["run-b"]["valid_scores"] == [0.02] and not curves["run-b"]["finished"]
    assert curves["run-b"]["train_seconds_per_epoch"] == 15.0
    table = Path(f"{out}.md").read_text()
    assert "| run-a | 0.0100 | 0.0300 | 0.0300 | 0.0250 |" in table
    assert "| run-b | 0.0200 |  | 0.0200 | (stopped after 1 epoch(s)) |" in table
    assert Path(f"{out}.png").stat().st_size > 0
