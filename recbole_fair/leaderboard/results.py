r"""recbole_fair.leaderboard.results
##################################

The results file ``results.jsonl``: one JSON line per cell record, appended and synced before the
next cell starts, so that a killed run loses at most the line it was writing (skipped when read
back). Also what every record carries besides its metrics: what the cell is
(:func:`record_head`), the versions and the git commit it ran with, and the JSON conversion of
numpy/torch values. Imports nothing else of the leaderboard.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict
from logging import getLogger
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_FILE = "results.jsonl"


# ----------------------------------------------------------------------------- JSON
def finite_or_none(value: Any) -> Any:
    r"""``value`` as a float, None when it is not a finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def jsonable(obj: Any) -> Any:
    r"""A JSON-serialisable copy (numpy/torch scalars to numbers, non-finite floats to None,
    anything else unknown to its ``str``)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if hasattr(obj, "tolist") and hasattr(obj, "dim"):  # torch tensor
        return jsonable(obj.tolist())
    return str(obj)


def atomic_write_text(path: str, text: str) -> None:
    r"""Write ``text`` to a temporary file, sync it and rename it to ``path``."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def split_commas(text: str | None) -> list[str]:
    r"""The non-empty items of a comma-separated list (``--model=FAIR,SASRec``)."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


# ----------------------------------------------------------------------------- results file
def record_line(record: dict[str, Any]) -> str:
    r"""One record as a results-file line (strict JSON: a NaN is an error, not ``NaN``)."""
    return json.dumps(jsonable(record), allow_nan=False) + "\n"


def append_record(path: str, record: dict[str, Any]) -> None:
    r"""Append one record as a JSON line and sync it to disk.

    A file whose last line was cut off (a run killed while writing) first gets its newline, so the
    fragment stays a line of its own (skipped by :func:`load_results`) and the record stays whole.
    """
    cut_off = False
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut_off = f.read(1) != b"\n"
    with open(path, "a", encoding="utf-8") as f:
        if cut_off:
            f.write("\n")
        f.write(record_line(record))
        f.flush()
        os.fsync(f.fileno())


def load_results(path: str) -> list[dict[str, Any]]:
    r"""Records of a results file (a truncated last line, from a killed run, is skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                getLogger().warning(f"{path}:{number}: unreadable line skipped")
                continue
            if isinstance(record, dict) and record.get("record") == "cell":
                records.append(record)
    return records


def latest_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r"""One record per cell: its last 'ok' record, else its last record; in first-seen order."""
    chosen: dict[str, dict[str, Any]] = {}
    for record in records:
        key = record["cell"]
        if key not in chosen or record.get("status") == "ok" or chosen[key].get("status") != "ok":
            chosen[key] = record
    return list(chosen.values())


def finished_cells(path: str) -> set[str]:
    r"""Keys of the cells with an 'ok' record in the results file ``path`` (none if absent)."""
    return set(finished_records(path))


def finished_records(path: str) -> dict[str, dict[str, Any]]:
    r"""The last 'ok' record of each cell of the results file ``path`` (none if absent), by
    cell key: a cell continued after its training deadline has two, the later one supersedes."""
    if not os.path.isfile(path):
        return {}
    return {r["cell"]: r for r in load_results(path) if r.get("status") == "ok"}


def stopped_at_deadline(record: dict[str, Any]) -> bool:
    r"""Whether the record's training stopped at ``RECBOLE_FAIR_FIT_DEADLINE`` with epochs left
    (``costs.stopped_at_deadline``)."""
    return bool((record.get("costs") or {}).get("stopped_at_deadline"))


# ----------------------------------------------------------------------------- records
def record_head(spec: Any) -> dict[str, Any]:
    r"""The fields every record of the cell ``spec`` (a :class:`~.cells.CellSpec`) starts with:
    what the cell is."""
    return {
        "record": "cell",
        "cell": spec.key,
        "model": spec.model,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "config_hash": spec.config_hash,
        "spec": jsonable(asdict(spec)),
    }


def failure_record(
    spec: Any, start: float, error_type: str, message: str, **error: Any
) -> dict[str, Any]:
    r"""The 'error' record of a cell whose process gave no record of its own."""
    return {
        **record_head(spec),
        "status": "error",
        "error": {"type": error_type, "message": message, "traceback": "", **error},
        "wall_seconds": time.time() - start,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "versions": versions(),
        "git_commit": git_commit(),
    }


def config_subset(config: Any) -> dict[str, Any] | None:
    r"""The final settings of a RecBole ``Config`` as JSON values (None without a config)."""
    if config is None:
        return None
    final = getattr(config, "final_config_dict", None)
    return jsonable(dict(final)) if final is not None else None


# ----------------------------------------------------------------------------- provenance
def versions() -> dict[str, str]:
    r"""Versions of Python, torch, RecBole, recbole-fair and numpy, and the platform."""
    import recbole
    import torch

    import recbole_fair

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "recbole": recbole.__version__,
        "recbole_fair": recbole_fair.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def git_commit(start: str | None = None) -> str | None:
    r"""Commit of the checkout holding recbole_fair, read from ``.git`` (no git process)."""
    here = Path(start or os.path.dirname(os.path.abspath(__file__))).resolve()
    for folder in [here, *here.parents]:
        git = folder / ".git"
        try:
            if git.is_file():
                content = git.read_text().strip()
                if not content.startswith("gitdir:"):
                    return None
                git = (folder / content[len("gitdir:") :].strip()).resolve()
            if not git.is_dir():
                continue
            return _head_commit(git)
        except OSError:
            return None
    return None


def _head_commit(git: Path) -> str | None:
    r"""The commit ``HEAD`` of the git folder ``git`` points at (a worktree's refs may live in
    its common folder, or in ``packed-refs``)."""
    head = (git / "HEAD").read_text().strip()
    if not head.startswith("ref:"):
        return head or None
    ref = head[len("ref:") :].strip()
    common = git
    if (git / "commondir").is_file():
        common = (git / (git / "commondir").read_text().strip()).resolve()
    for base in (git, common):
        if (base / ref).is_file():
            return (base / ref).read_text().strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None
