"""Stand-ins for a leaderboard cell's process (``recbole_fair.leaderboard.runner._cell_worker``)
for the tests of the cell time limit. A spawned process imports this module to run them: it
imports neither torch nor RecBole, so that a cell starts in a fraction of a second."""

from __future__ import annotations

import os
import signal
import time


def hanging_or_quick_cell(
    spec: dict, checkpoint_dir: str, conn, parent_pid: int, stop_file: str | None = None
) -> None:
    r"""A ``Hang`` cell writes its pid to ``<checkpoint_dir>/hang.pid`` and hangs with SIGTERM
    ignored (as a process stuck in native code, where a Python handler never runs); any other
    cell sends an 'ok' record at once."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    try:
        if spec["model"] == "Hang":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open(os.path.join(checkpoint_dir, "hang.pid"), "w") as f:
                f.write(str(os.getpid()))
            time.sleep(600)
        seed = "default" if spec["seed"] is None else spec["seed"]
        conn.send(
            {
                "record": "cell",
                # CellSpec.key
                "cell": f"{spec['model']}|{spec['dataset']}|seed={seed}|{spec['config_hash']}",
                "model": spec["model"],
                "dataset": spec["dataset"],
                "seed": spec["seed"],
                "config_hash": spec["config_hash"],
                "status": "ok",
                "test_result": {"recall@10": 0.5, "ndcg@10": 0.25},
            }
        )
    finally:
        conn.close()
