r"""recbole_fair.leaderboard.cells
################################

A leaderboard *cell* is one (model, dataset, seed) run with the user's settings. Its key names it
in the results file; its config hash (of the settings, not of the seed) tells two configurations
of one model apart; its slug names its checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from logging import getLogger
from typing import Any, Iterable

from recbole_fair.leaderboard.results import jsonable


@dataclass
class CellSpec:
    r"""One leaderboard cell: what :func:`~.runner.execute_cell` passes to ``run_recbole_fair``.

    ``argv`` is what RecBole's Config sees as ``sys.argv`` while the cell runs (the user's
    ``--key=value`` overrides, without the leaderboard's own flags).
    """

    model: str
    dataset: str
    seed: int | None = None
    config_file_list: list[str] = field(default_factory=list)
    config_dict: dict[str, Any] = field(default_factory=dict)
    argv: list[str] = field(default_factory=lambda: ["run_recbole_fair.py"])
    config_hash: str = ""

    def __post_init__(self) -> None:
        if not self.config_hash:  # the seed is part of the key, not of the hash
            settings = {
                k: v for k, v in self.config_dict.items() if k != "seed" or self.seed is None
            }
            self.config_hash = config_hash(self.config_file_list, settings, self.argv[1:])

    @property
    def key(self) -> str:
        seed = "default" if self.seed is None else self.seed
        return f"{self.model}|{self.dataset}|seed={seed}|{self.config_hash}"

    @property
    def slug(self) -> str:
        seed = "default" if self.seed is None else self.seed
        raw = f"{self.model}-{self.dataset}-seed{seed}-{self.config_hash}"
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", raw)


def config_hash(
    config_files: Iterable[str], config_dict: dict[str, Any], cmd: Iterable[str]
) -> str:
    r"""Short hash of a cell's user settings: the content of its config files, its config dict
    (global and per-model overrides) and its command-line overrides."""
    files = []
    for path in config_files:
        try:
            with open(path, "rb") as f:
                files.append(hashlib.sha1(f.read()).hexdigest())
        except OSError:
            files.append(f"missing:{path}")
    payload = json.dumps(
        {"files": files, "dict": jsonable(config_dict), "cmd": sorted(cmd)}, sort_keys=True
    )
    return hashlib.sha1(payload.encode()).hexdigest()[:10]


def build_cells(
    models: list[str],
    datasets: list[str],
    seeds: list[int] | None = None,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    model_overrides: dict[str, dict[str, Any]] | None = None,
    argv: list[str] | None = None,
) -> list[CellSpec]:
    r"""Cells in run order: datasets, then models, then seeds. ``model_overrides[model]``
    (``--model_config``) updates ``config_dict`` for that model's cells; the seed goes in
    ``config_dict['seed']``."""
    model_overrides = model_overrides or {}
    unknown = sorted(set(model_overrides) - set(models))
    if unknown:
        getLogger().warning(f"model_config: no cell runs the model(s) {unknown}")
    cells = []
    for dataset in datasets:
        for model in models:
            base = dict(config_dict or {})
            base.update(model_overrides.get(model) or {})
            for seed in seeds or [None]:
                cd = dict(base)
                if seed is not None:
                    cd["seed"] = int(seed)
                cells.append(
                    CellSpec(
                        model=model,
                        dataset=dataset,
                        seed=None if seed is None else int(seed),
                        config_file_list=list(config_file_list or []),
                        config_dict=cd,
                        argv=list(argv or ["run_recbole_fair.py"]),
                    )
                )
    return cells


def checkpoint_paths(spec: CellSpec, checkpoint_dir: str) -> tuple[str, str]:
    r"""``(last, best)`` checkpoint paths of a cell."""
    return (
        os.path.join(checkpoint_dir, f"{spec.slug}-last.pth"),
        os.path.join(checkpoint_dir, f"{spec.slug}-best.pth"),
    )
