r"""recbole_fair.leaderboard
#########################

Leaderboards: every (model, dataset, seed) *cell* trained and evaluated with the same protocol
(:func:`recbole_fair.quick_start.run_recbole_fair`), one JSON line per finished cell in
``results.jsonl``, rendered as Markdown, CSV and PNG.

* **Resumable.** A cell's record (config, metrics, costs, per-user test NDCG@10, versions, git
  commit) is appended before the next cell starts; ``resume=True`` skips finished cells. While a
  cell trains, a *last-epoch* checkpoint is written every epoch (through
  ``Trainer._save_checkpoint``, so it is signed, see :mod:`recbole_fair.compat`) next to the
  cell's best checkpoint, at paths derived from the cell (model, dataset, seed, config hash); a
  resumed cell continues from the epoch after it with RecBole's ``Trainer.resume_checkpoint``.
* **Crash-tolerant.** An exception in a cell is recorded with its traceback and the next cell
  runs. By default each cell runs in its own process (``isolate=True``): a hard crash (out of
  memory, segfault) is recorded too, and the peak RSS reported is that cell's own; with a
  ``cell_timeout``, a cell's process running longer is killed and recorded as failed too (a
  hang in native code no longer blocks the leaderboard).
* **Significance.** Against a reference model (SASRec by default when present): a paired test
  (Wilcoxon signed-rank or t-test) on per-user NDCG@10, averaged over seeds, when every cell kept
  its per-user values on the same users; else a paired t-test across seeds.

CLI: ``python run_recbole_fair.py --model=FAIR,SASRec --dataset=ml-100k --seeds=2020,2021``
(see ``docs/leaderboard.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import hashlib
import io
import json
import math
import os
import platform
import re
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from logging import getLogger
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from recbole_fair.published import published_number
from recbole_fair.quick_start import run_recbole_fair

RESULTS_FILE = "results.jsonl"
# a file of this name in the leaderboard folder asks a running leaderboard to stop at the next
# epoch boundary (after the epoch's checkpoint), so that nothing trained is lost
STOP_FILE = "STOP"
# exit status of a cell's process, and of the CLI, that stopped on that request (EX_TEMPFAIL)
STOPPED_EXIT_CODE = 75
# exit status of the CLI when a cell of this run failed (recorded with status 'error'); distinct
# from 1 (the command itself failed, e.g. a bad flag value) and 2 (usage error)
FAILED_EXIT_CODE = 3
# seconds a cell's process gets to exit after SIGTERM (past its time limit) before SIGKILL
KILL_GRACE_SECONDS = 10.0


class StopRequested(KeyboardInterrupt):
    r"""Raised after an epoch's checkpoint when the leaderboard's ``STOP`` file exists. A
    ``KeyboardInterrupt``, so RecBole's ``fit`` and the cell's ``except Exception`` let it
    through: the cell is not recorded and ``--resume`` continues it at the next epoch."""


DEFAULT_REFERENCE = "SASRec"
SIGNIFICANCE_LEVEL = 0.05
PER_USER_METRIC = "ndcg@10"
# (RecBole metric key, column header) of the quality columns.
QUALITY = [("recall@5", "R@5"), ("ndcg@5", "N@5"), ("recall@10", "R@10"), ("ndcg@10", "N@10")]
CSV_METRICS = [m for m, _ in QUALITY] + ["mrr@10"]


# ----------------------------------------------------------------------------- cells
@dataclass
class CellSpec:
    r"""One leaderboard cell: what :func:`execute_cell` passes to ``run_recbole_fair``.

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
        {"files": files, "dict": _jsonable(config_dict), "cmd": sorted(cmd)}, sort_keys=True
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


# ----------------------------------------------------------------------------- one cell
def _atomic_write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CellHook:
    r"""``trainer_hook`` of a leaderboard cell (see ``run_recbole_fair``).

    * Sets the trainer's best-checkpoint path to ``best_path`` (deterministic per cell).
    * After every epoch (after validation and early stopping), writes the *last-epoch*
      checkpoint ``last_path`` through ``trainer._save_checkpoint`` (signed) and a JSON side file
      (``last_path + '.json'``: epoch, best epoch/score/result, epoch timings, the checkpoint's
      SHA-256). ``epoch_callback(epoch)`` runs after that (tests use it to interrupt).
    * When a consistent last-epoch checkpoint exists, resumes from it
      (``Trainer.resume_checkpoint``: epoch, early-stopping state, model, optimizer) and
      restores the rest from the side file; when the side file says ``fit`` had finished, skips
      ``fit`` and goes straight to the test evaluation of the best checkpoint.
    * Keeps the evaluation data struct of the last ``trainer.evaluate`` (the test one) and the
      user id of each row, for per-user metrics (:meth:`per_user`).
    * When ``stop_file`` exists after an epoch's checkpoint, raises :class:`StopRequested`.
    """

    def __init__(
        self,
        last_path: str,
        best_path: str,
        epoch_callback: Callable[[int], None] | None = None,
        stop_file: str | None = None,
    ):
        self.last_path = last_path
        self.stop_file = stop_file
        self.state_path = last_path + ".json"
        self.best_path = best_path
        self.epoch_callback = epoch_callback
        self.trainer: Any = None
        self.config: Any = None
        self.timings: dict[str, list[float]] = {
            "train": [],
            "valid": [],
            "valid_score": [],
            "train_loss": [],
        }
        self.resumed_from_epoch: int | None = None
        self.skipped_fit = False
        self.prior_fit_seconds = 0.0
        self.last_topk: Any = None
        self._uids: list[Any] | None = []
        self._fit_start: float | None = None
        self._valid_data: Any = None
        self._last_epoch: int | None = None

    # -- hook entry point
    def __call__(self, trainer: Any, timings: dict[str, list[float]]) -> None:
        self.trainer, self.config, self.timings = trainer, trainer.config, timings
        trainer.saved_model_file = self.best_path
        self._capture_evaluation(trainer)
        state = self._load_state()
        if state is not None and state.get("finished") and not os.path.isfile(self.best_path):
            getLogger().warning(f"{self.best_path} is missing: the cell is trained afresh")
            state = None
        if state is not None and state.get("finished"):
            self._restore(state)
            self._skip_fit(state)
        elif state is not None and self._consistent(state):
            try:
                trainer.resume_checkpoint(self.last_path)
            except Exception as err:
                self.discard()
                raise RuntimeError(
                    f"cannot resume from {self.last_path} ({err}); the last-epoch checkpoint was "
                    "deleted, run again to start this cell afresh"
                ) from err
            trainer.saved_model_file = self.best_path  # resume_checkpoint points it at last_path
            self._restore(state)
            if trainer.start_epoch >= trainer.epochs or self._stopped_early(trainer):
                self._skip_fit(state)
        else:
            self.discard()
        self._wrap_fit(trainer)

    # -- resume
    def _load_state(self) -> dict[str, Any] | None:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _consistent(self, state: dict[str, Any]) -> bool:
        from recbole_fair.compat import _file_digest

        if not os.path.isfile(self.last_path) or not state.get("sha256"):
            return False
        return _file_digest(self.last_path) == state["sha256"]

    def _restore(self, state: dict[str, Any]) -> None:
        trainer = self.trainer
        trainer.best_epoch = state.get("best_epoch")
        trainer.best_valid_result = state.get("best_valid_result")
        if state.get("best_valid_score") is not None:
            trainer.best_valid_score = state["best_valid_score"]
        self.timings["train"][:0] = state.get("train_epoch_seconds", [])
        self.timings["valid"][:0] = state.get("valid_epoch_seconds", [])
        self.timings["valid_score"][:0] = state.get("valid_scores", [])
        self.timings["train_loss"][:0] = state.get("train_losses", [])
        self.prior_fit_seconds = float(state.get("fit_seconds", 0.0))
        self.resumed_from_epoch = int(state["epoch"]) + 1
        self._last_epoch = int(state["epoch"])
        getLogger().info(f"leaderboard: resuming the cell at epoch {self.resumed_from_epoch}")

    @staticmethod
    def _stopped_early(trainer: Any) -> bool:
        # RecBole's fit breaks right after the epoch callback once early stopping's counter has
        # passed stopping_step: a cell killed between that callback and the `finished` write
        # must not train on past its stopping point when resumed
        stopping_step = getattr(trainer, "stopping_step", None)
        return stopping_step is not None and trainer.cur_step > stopping_step

    def _skip_fit(self, state: dict[str, Any]) -> None:
        trainer = self.trainer
        self.skipped_fit = True

        def fit(train_data, valid_data=None, *args, **kwargs):
            trainer.eval_collector.data_collect(train_data)
            return state.get("best_valid_score"), state.get("best_valid_result")

        trainer.fit = fit

    def discard(self) -> None:
        r"""Delete the last-epoch checkpoint, its signature and its side file."""
        for path in (self.last_path, self.last_path + ".sig", self.state_path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    # -- per-epoch checkpoint
    def _wrap_fit(self, trainer: Any) -> None:
        if self.skipped_fit:
            return
        fit, train_epoch = trainer.fit, trainer._train_epoch

        def wrapped_fit(train_data, valid_data=None, *args, **kwargs):
            user_callback = kwargs.pop("callback_fn", None)

            def callback(epoch_idx, valid_score):
                if user_callback is not None:
                    user_callback(epoch_idx, valid_score)
                self._after_epoch(epoch_idx)

            self._fit_start, self._valid_data = time.time(), valid_data
            out = fit(train_data, valid_data, *args, callback_fn=callback, **kwargs)
            self._write_state(finished=True)
            return out

        def wrapped_train_epoch(train_data, epoch_idx, *args, **kwargs):
            out = train_epoch(train_data, epoch_idx, *args, **kwargs)
            step = trainer.eval_step
            if step <= 0 or not self._valid_data or (epoch_idx + 1) % step != 0:
                self._after_epoch(epoch_idx)  # no validation this epoch: the state is final
            return out

        trainer.fit = wrapped_fit
        trainer._train_epoch = wrapped_train_epoch

    def _after_epoch(self, epoch_idx: int) -> None:
        trainer = self.trainer
        best_epoch = getattr(trainer, "best_epoch", None)
        # signed, and written to a temporary file renamed into place (recbole_fair.compat)
        trainer._save_checkpoint(epoch_idx, verbose=False, saved_model_file=self.last_path)
        trainer.best_epoch = best_epoch  # the instrumented save marks every save as the best
        self._last_epoch = epoch_idx
        self._write_state(finished=False)
        if self.epoch_callback is not None:
            self.epoch_callback(epoch_idx)
        if self.stop_file is not None and os.path.exists(self.stop_file):
            raise StopRequested(f"{self.stop_file} exists: stopped after epoch {epoch_idx}")

    def _write_state(self, finished: bool) -> None:
        from recbole_fair.compat import _file_digest

        trainer = self.trainer
        elapsed = time.time() - self._fit_start if self._fit_start else 0.0
        state = {
            "epoch": self._last_epoch if self._last_epoch is not None else -1,
            "finished": finished,
            "best_epoch": getattr(trainer, "best_epoch", None),
            "best_valid_score": _finite_or_none(trainer.best_valid_score),
            "best_valid_result": _jsonable(trainer.best_valid_result),
            "train_epoch_seconds": list(self.timings["train"]),
            "valid_epoch_seconds": list(self.timings["valid"]),
            "valid_scores": list(self.timings["valid_score"]),
            "train_losses": list(self.timings["train_loss"]),
            "fit_seconds": self.prior_fit_seconds + elapsed,
            "sha256": _file_digest(self.last_path) if os.path.isfile(self.last_path) else None,
        }
        _atomic_write_text(self.state_path, json.dumps(state))

    # -- per-user capture
    def _capture_evaluation(self, trainer: Any) -> None:
        evaluator, collector = trainer.evaluator, trainer.eval_collector
        evaluate, collect, trainer_evaluate = (
            evaluator.evaluate,
            collector.eval_batch_collect,
            trainer.evaluate,
        )
        uid_field = trainer.config["USER_ID_FIELD"]

        def wrapped_trainer_evaluate(*args, **kwargs):
            self._uids, self.last_topk = [], None
            return trainer_evaluate(*args, **kwargs)

        def wrapped_collect(scores_tensor, interaction, positive_u, positive_i):
            if self._uids is not None:
                try:
                    uid = interaction[uid_field]
                    rows = scores_tensor.shape[0] if scores_tensor.dim() > 1 else None
                    if rows is not None and len(uid) == rows:
                        self._uids.append(uid.detach().cpu().numpy())
                    else:
                        self._uids = None
                except (KeyError, AttributeError, TypeError):
                    self._uids = None
            return collect(scores_tensor, interaction, positive_u, positive_i)

        def wrapped_evaluate(struct):
            try:
                self.last_topk = struct.get("rec.topk").clone()
            except (KeyError, AttributeError):
                self.last_topk = None
            return evaluate(struct)

        trainer.evaluate = wrapped_trainer_evaluate
        collector.eval_batch_collect = wrapped_collect
        evaluator.evaluate = wrapped_evaluate

    def per_user(self, k: int = 10) -> dict[str, Any] | None:
        r"""Per-user NDCG@k of the last evaluation (the test), sorted by internal user id:
        ``{metric, values (4 decimals), n_users, users_sha1}``; None when unavailable."""
        if self.last_topk is None:
            return None
        from recbole.evaluator.metrics import NDCG

        topk = self.last_topk.cpu()
        max_k = topk.shape[1] - 1
        if max_k < k:
            return None
        pos_index = topk[:, :max_k].to(dtype=bool).numpy()
        pos_len = topk[:, max_k].numpy()
        values = NDCG(self.config).metric_info(pos_index, pos_len)[:, k - 1]
        users_sha1 = None
        if self._uids:
            uids = np.concatenate(self._uids).astype(np.int64)
            if len(uids) == len(values):
                order = np.argsort(uids, kind="stable")
                values, uids = values[order], uids[order]
                users_sha1 = hashlib.sha1(uids.tobytes()).hexdigest()
        return {
            "metric": f"ndcg@{k}",
            "values": [round(float(v), 4) for v in values],
            "n_users": len(values),
            "users_sha1": users_sha1,
        }


@contextlib.contextmanager
def _argv(argv: list[str]):
    saved = sys.argv
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = saved


def checkpoint_paths(spec: CellSpec, checkpoint_dir: str) -> tuple[str, str]:
    r"""``(last, best)`` checkpoint paths of a cell."""
    return (
        os.path.join(checkpoint_dir, f"{spec.slug}-last.pth"),
        os.path.join(checkpoint_dir, f"{spec.slug}-best.pth"),
    )


def execute_cell(
    spec: CellSpec,
    checkpoint_dir: str,
    epoch_callback: Callable[[int], None] | None = None,
    stop_file: str | None = None,
) -> dict[str, Any]:
    r"""Run one cell in this process; return its results record (``status`` 'ok' or 'error',
    with the traceback). ``KeyboardInterrupt`` (and :class:`StopRequested`, once ``stop_file``
    exists after an epoch) propagates: the cell is not recorded and resumes from its last-epoch
    checkpoint next time."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    last_path, best_path = checkpoint_paths(spec, checkpoint_dir)
    hook = CellHook(last_path, best_path, epoch_callback, stop_file)
    record: dict[str, Any] = _record_head(spec)
    record["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    start = time.time()
    config_dict = dict(spec.config_dict)
    config_dict.setdefault("checkpoint_dir", checkpoint_dir)
    try:
        with _argv(spec.argv):
            result = run_recbole_fair(
                model=spec.model,
                dataset=spec.dataset,
                config_file_list=spec.config_file_list or None,
                config_dict=config_dict,
                saved=True,
                trainer_hook=hook,
            )
    except Exception as err:
        record.update(
            status="error",
            error={
                "type": type(err).__name__,
                "message": str(err),
                "traceback": traceback.format_exc(),
            },
        )
    else:
        costs = dict(result.get("costs") or {})
        costs["fit_seconds"] = costs.get("fit_seconds", 0.0) + hook.prior_fit_seconds
        costs["resumed_from_epoch"] = hook.resumed_from_epoch
        record.update(
            status="ok",
            test_result=result.get("test_result"),
            best_valid_result=result.get("best_valid_result"),
            best_valid_score=result.get("best_valid_score"),
            semantic_ids=result.get("semantic_ids"),
            costs=costs,
            paths=result.get("paths"),
            per_user=hook.per_user(),
        )
        # its last-epoch checkpoint is discarded by run_leaderboard once the record is on disk
    record["wall_seconds"] = time.time() - start
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    record["config"] = _config_subset(hook.config)
    if record["config"] and spec.seed is None:
        record["seed"] = record["config"].get("seed")
    record["versions"] = versions()
    record["git_commit"] = git_commit()
    del hook
    _release_memory()
    return _jsonable(record)


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass


def watch_parent(
    parent_pid: int, interval: float = 2.0, on_orphan: Callable[[], None] | None = None
) -> threading.Thread:
    r"""Call ``on_orphan`` (default: exit at once) when this process's parent is no longer
    ``parent_pid``: a cell must not go on training, and writing checkpoints, after the
    leaderboard that started it was killed (``kill``, a closed terminal, a job time limit)."""
    on_orphan = on_orphan or (lambda: os._exit(1))

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        on_orphan()

    thread = threading.Thread(target=watch, name="leaderboard-parent-watch", daemon=True)
    thread.start()
    return thread


def _cell_worker(
    spec: dict[str, Any],
    checkpoint_dir: str,
    conn: Any,
    parent_pid: int,
    stop_file: str | None = None,
) -> None:
    r"""Entry point of a cell's own process (``isolate=True``)."""
    import recbole_fair  # noqa: F401  (compatibility shims)

    watch_parent(parent_pid)
    try:
        conn.send(execute_cell(CellSpec(**spec), checkpoint_dir, stop_file=stop_file))
    except StopRequested:
        sys.exit(STOPPED_EXIT_CODE)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        conn.close()


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g}"


def _record_head(spec: CellSpec) -> dict[str, Any]:
    r"""The fields every cell record starts with: what the cell is."""
    return {
        "record": "cell",
        "cell": spec.key,
        "model": spec.model,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "config_hash": spec.config_hash,
        "spec": _jsonable(asdict(spec)),
    }


def _failure_record(
    spec: CellSpec, start: float, error_type: str, message: str, **error: Any
) -> dict[str, Any]:
    r"""The 'error' record of a cell whose process gave no record of its own."""
    return {
        **_record_head(spec),
        "status": "error",
        "error": {"type": error_type, "message": message, "traceback": "", **error},
        "wall_seconds": time.time() - start,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "versions": versions(),
        "git_commit": git_commit(),
    }


def _end_process(process: Any, grace: float) -> None:
    r"""SIGTERM, then SIGKILL if the process is still there after ``grace`` seconds (a process
    stuck in native code never runs a Python SIGTERM handler, nor exits through one)."""
    process.terminate()
    process.join(grace)
    if process.is_alive():
        process.kill()
        process.join()


def execute_cell_isolated(
    spec: CellSpec,
    checkpoint_dir: str,
    stop_file: str | None = None,
    time_limit: float | None = None,
) -> dict[str, Any]:
    r"""Run one cell in a fresh (spawned) process; a process that dies without a record (out of
    memory, segfault) gives an 'error' record; one that stopped on ``stop_file`` raises
    :class:`StopRequested` here.

    ``time_limit`` (seconds, None: none): a process still running after it is killed (SIGTERM,
    SIGKILL :data:`KILL_GRACE_SECONDS` later) and the cell gets an 'error' record of type
    ``CellTimeout``, "exceeded the cell time limit of N s". Its last-epoch checkpoint stays, so
    that ``--resume`` continues from it.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_cell_worker, args=(asdict(spec), checkpoint_dir, sender, os.getpid(), stop_file)
    )
    start = time.time()
    deadline = None if time_limit is None else start + float(time_limit)
    process.start()
    sender.close()
    record = None
    timed_out = False
    try:
        while True:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.time()))
            if receiver.poll(wait):
                try:
                    record = receiver.recv()
                except EOFError:
                    pass
                break
            if not process.is_alive() and not receiver.poll(0.1):
                break
            if deadline is not None and time.time() >= deadline:
                timed_out = True
                _end_process(process, KILL_GRACE_SECONDS)
                break
        # the record arrived (or the process died): a process that then hangs at exit (native
        # threads, atexit handlers) gets the rest of the time limit, then the same end
        rest = None if deadline is None else max(deadline - time.time(), KILL_GRACE_SECONDS)
        process.join(rest)
        if process.is_alive():
            _end_process(process, KILL_GRACE_SECONDS)
    except KeyboardInterrupt:
        process.terminate()
        process.join()
        raise
    if timed_out:
        limit = _seconds_text(float(time_limit))
        return _failure_record(
            spec,
            start,
            "CellTimeout",
            f"exceeded the cell time limit of {limit} s (--cell_timeout): its process was "
            f"killed (exit code {process.exitcode})",
            time_limit_seconds=float(time_limit),
        )
    if process.exitcode == STOPPED_EXIT_CODE:
        raise StopRequested(f"{stop_file} exists: the cell stopped after an epoch")
    if process.exitcode == 130:
        raise KeyboardInterrupt
    if record is None:
        record = _failure_record(
            spec,
            start,
            "ProcessDied",
            f"the cell's process exited with code {process.exitcode} without a result",
        )
    return record


# ----------------------------------------------------------------------------- results file
def _record_line(record: dict[str, Any]) -> str:
    r"""One record as a results-file line (strict JSON: a NaN is an error, not ``NaN``)."""
    return json.dumps(_jsonable(record), allow_nan=False) + "\n"


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
        f.write(_record_line(record))
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
    if not os.path.isfile(path):
        return set()
    return {r["cell"] for r in load_results(path) if r.get("status") == "ok"}


# ----------------------------------------------------------------------------- runner
def run_leaderboard(
    models: list[str],
    datasets: list[str],
    seeds: list[int] | None = None,
    *,
    leaderboard_dir: str | None = None,
    resume: bool = False,
    reference: str | None = None,
    significance: str = "wilcoxon",
    isolate: bool = True,
    cell_timeout: float | None = None,
    epoch_callback: Callable[[CellSpec, int], None] | None = None,
    verbose: bool = True,
    **cell_settings: Any,
) -> dict[str, Any]:
    r"""Run every (dataset, model, seed) cell not finished yet, appending each record to
    ``<leaderboard_dir>/results.jsonl``, then render the leaderboard (see :func:`render`).

    Args:
        models, datasets, seeds: the grid (``seeds`` None: the config's seed).
        leaderboard_dir: output folder (default ``./leaderboards/<timestamp>``).
        resume: continue the results file in ``leaderboard_dir``: finished cells are skipped,
            a cell interrupted during training resumes from its last-epoch checkpoint.
        reference, significance: see :func:`render`.
        isolate: run each cell in its own process (per-cell peak memory, hard crashes recorded).
        cell_timeout: seconds a cell may run (None: no limit); a cell's process running longer
            is killed and the cell recorded as failed (``CellTimeout``), then the next cell
            runs. Only with ``isolate=True``: a cell running in this process cannot be stopped
            safely (a Python signal handler does not run while native code, e.g. faiss, hangs,
            and an exception raised at any point of training leaves the process in an unknown
            state), so it raises ``ValueError`` with ``isolate=False``.
        epoch_callback: in-process only (``isolate=False``), called as ``(cell, epoch)`` after
            each epoch's checkpoint.
        **cell_settings: the keyword arguments of :func:`build_cells` that every cell shares:
            ``config_file_list``, ``config_dict`` (settings of every cell), ``model_overrides``
            (per-model ``config_dict`` updates, ``--model_config``) and ``argv`` (``sys.argv``
            as RecBole's Config should see it in every cell: the user's ``--key=value``
            overrides; default: none).

    Stopping: a file ``<leaderboard_dir>/STOP`` (``touch`` it) stops the run after the current
    epoch's checkpoint, or before the next cell; the file is then removed and ``resume=True``
    continues where it stopped. A ``STOP`` file already there when the run starts is stale and
    is removed.

    Returns:
        dict: ``dir``, ``results``, ``markdown``, ``csv``, ``png`` paths, ``table`` (Markdown
        text), ``rows``, ``ran`` (keys of the cells run now), ``failed`` (those of them recorded
        as failed) and ``stopped`` (the key of the cell a ``STOP`` file interrupted, or of the
        next one; else None). A stopped run renders the cells finished so far (with none, only
        ``dir``, ``results``, ``ran``, ``failed`` and ``stopped`` are set).
    """
    check_cell_timeout(cell_timeout, isolate)
    cells = build_cells(models, datasets, seeds, **cell_settings)
    if leaderboard_dir is None:
        leaderboard_dir = os.path.join("leaderboards", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(leaderboard_dir, exist_ok=True)
    results_path = os.path.join(leaderboard_dir, RESULTS_FILE)
    if not resume and os.path.isfile(results_path) and os.path.getsize(results_path) > 0:
        raise FileExistsError(
            f"{results_path} already holds results: pass --resume to continue it, or another "
            "--leaderboard_dir"
        )
    checkpoint_dir = os.path.join(leaderboard_dir, "checkpoints")
    stop_file = os.path.join(leaderboard_dir, STOP_FILE)
    if os.path.exists(stop_file):
        os.remove(stop_file)
        _say(verbose, f"removed a stale {stop_file} (it stops a running leaderboard)")
    done = finished_cells(results_path) if resume else set()
    ran, failed, stopped = [], [], None
    for index, spec in enumerate(cells, 1):
        if spec.key in done:
            _say(verbose, f"[{index}/{len(cells)}] {spec.key}: finished, skipped")
            continue
        try:
            if os.path.exists(stop_file):
                raise StopRequested(f"{stop_file} exists")
            _say(verbose, f"[{index}/{len(cells)}] {spec.key}: running")
            if not resume:
                CellHook(*checkpoint_paths(spec, checkpoint_dir)).discard()
            if isolate:
                record = execute_cell_isolated(spec, checkpoint_dir, stop_file, cell_timeout)
            else:
                callback = (lambda e, s=spec: epoch_callback(s, e)) if epoch_callback else None
                record = execute_cell(spec, checkpoint_dir, callback, stop_file)
        except StopRequested:
            with contextlib.suppress(FileNotFoundError):
                os.remove(stop_file)
            _say(
                verbose,
                f"[{index}/{len(cells)}] {spec.key}: stopped as {stop_file} asked (removed); "
                "run the same command with --resume to continue",
            )
            stopped = spec.key
            break
        append_record(results_path, record)
        if record.get("status") == "ok":
            # only now (a kill before the record was written resumes from this checkpoint):
            # the cell is done, only its best checkpoint stays
            CellHook(*checkpoint_paths(spec, checkpoint_dir)).discard()
        ran.append(spec.key)
        if record.get("status") != "ok":
            failed.append(spec.key)
            error = record.get("error") or {}
            message = (str(error.get("message", "")).splitlines() or [""])[0]
            _say(
                verbose,
                f"[{index}/{len(cells)}] {spec.key}: FAILED ({error.get('type')}: {message})",
            )
    if stopped is not None and not (
        os.path.isfile(results_path) and os.path.getsize(results_path) > 0
    ):  # stopped before any cell finished: nothing to render
        return {
            "dir": leaderboard_dir,
            "results": results_path,
            "ran": ran,
            "failed": failed,
            "stopped": stopped,
        }
    out = render_file(results_path, leaderboard_dir, reference=reference, significance=significance)
    out["ran"], out["failed"], out["stopped"] = ran, failed, stopped
    return out


def check_cell_timeout(cell_timeout: float | None, isolate: bool = True) -> None:
    r"""``ValueError`` unless ``cell_timeout`` is None or a positive number of seconds for cells
    run in their own process (see :func:`run_leaderboard`)."""
    if cell_timeout is None:
        return
    if not (isinstance(cell_timeout, (int, float)) and math.isfinite(cell_timeout)) or (
        cell_timeout <= 0
    ):
        raise ValueError(f"--cell_timeout must be a positive number of seconds, got {cell_timeout}")
    if not isolate:
        raise ValueError(
            "--cell_timeout applies to cells run in their own process: a cell run with "
            "--in_process (isolate=False) cannot be stopped safely, drop one of the two"
        )


def exit_status(out: dict[str, Any]) -> int:
    r"""Exit status of the CLI after :func:`run_leaderboard`: :data:`STOPPED_EXIT_CODE` (75) for a
    run stopped by its ``STOP`` file (unfinished: ``--resume`` continues it), else
    :data:`FAILED_EXIT_CODE` (3) when a cell of this run failed, else 0."""
    if out.get("stopped"):
        return STOPPED_EXIT_CODE
    if out.get("failed"):
        return FAILED_EXIT_CODE
    return 0


def _say(verbose: bool, message: str) -> None:
    getLogger().info(f"leaderboard: {message}")
    if verbose:
        print(f"leaderboard: {message}", flush=True)


# ----------------------------------------------------------------------------- summary rows
def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    # one value has no sample std: None (an empty CSV cell), not 0
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else None


def _mean(values: list[Any]) -> float | None:
    return _mean_std(values)[0]


# Settings that say where files are, not what was trained: never part of a row label (a label
# shows what sets a variant apart, and a machine's paths are not that).
LOCATION_KEYS = frozenset(
    {
        "data_path",
        "sid_cache_dir",
        "checkpoint_dir",
        "leaderboard_dir",
        "dataset_save_path",
        "dataloaders_save_path",
    }
)


def _cell_settings(record: dict[str, Any]) -> set[str]:
    r"""A cell's user settings as ``key=value`` strings: its command-line overrides and its
    config dict (per-model overrides), without the seed and the file locations
    (:data:`LOCATION_KEYS`)."""
    spec = record.get("spec") or {}
    settings = {a[2:] for a in (spec.get("argv") or [])[1:] if a.startswith("--")}
    settings |= {
        f"{k}={json.dumps(_jsonable(v), sort_keys=True)}"
        for k, v in (spec.get("config_dict") or {}).items()
        if k != "seed"
    }
    return {s for s in settings if s.split("=", 1)[0] not in LOCATION_KEYS}


def variant_labels(groups: dict[tuple[str, str, str], list[dict[str, Any]]]) -> dict:
    r"""Row label per (dataset, model, config hash): the model name, and where one model has
    several configurations in a dataset, the settings that set each apart (``FAIR
    [score_prior_correction=1.0]``); the config hash where the settings do not tell them apart
    (e.g. an edited config file)."""
    variants: dict[tuple[str, str], dict[str, set[str]]] = {}
    for (dataset, model, chash), group in groups.items():
        variants.setdefault((dataset, model), {})[chash] = _cell_settings(group[0])
    labels = {}
    for (dataset, model), by_hash in variants.items():
        if len(by_hash) == 1:
            labels[(dataset, model, next(iter(by_hash)))] = model
            continue
        common = set.intersection(*by_hash.values())
        distinct = {h: tuple(sorted(v - common)) for h, v in by_hash.items()}
        for chash, own in distinct.items():
            unique = list(distinct.values()).count(own) == 1
            if unique and own:
                labels[(dataset, model, chash)] = f"{model} [{', '.join(own)}]"
            elif unique:  # the one variant without extra settings: the model's own config
                labels[(dataset, model, chash)] = model
            else:
                labels[(dataset, model, chash)] = f"{model} [{chash}]"
    return labels


def group_cells(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    r"""``records`` grouped by (dataset, model, config hash), in order of first appearance."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["model"], record["config_hash"]), []).append(
            record
        )
    return groups


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r"""One row per (dataset, model, config hash) of the latest record of each cell."""
    groups = group_cells(latest_records(records))
    labels = variant_labels(groups)
    rows = []
    for (dataset, model, chash), group in groups.items():
        ok = [r for r in group if r.get("status") == "ok"]
        ok.sort(key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
        failed = [r for r in group if r.get("status") != "ok"]
        label = labels[(dataset, model, chash)]
        row: dict[str, Any] = {
            "model": model,
            "label": label,
            "dataset": dataset,
            "config_hash": chash,
            "seeds": [r.get("seed") for r in ok],
            "failed_seeds": [r.get("seed") for r in failed],
            "errors": [
                {"seed": r.get("seed"), **(r.get("error") or {"type": "unknown", "message": ""})}
                for r in failed
            ],
            "n": len(ok),
        }
        for metric in CSV_METRICS:
            row[metric] = _mean_std([(r.get("test_result") or {}).get(metric) for r in ok])
        costs = [r.get("costs") or {} for r in ok]
        row["best_epochs"] = [c.get("best_epoch") for c in costs]
        row["epochs"] = [c.get("epochs") for c in costs]
        row["train_s_per_epoch"] = _mean([c.get("train_seconds_per_epoch") for c in costs])
        row["total_train_s"] = _mean([c.get("fit_seconds") for c in costs])
        row["eval_users_per_s"] = _mean([c.get("eval_users_per_second") for c in costs])
        params = [c.get("parameters") for c in costs if c.get("parameters") is not None]
        row["parameters"] = int(max(params)) if params else None
        rss = [c.get("peak_rss_mb") for c in costs if c.get("peak_rss_mb") is not None]
        cuda = [c.get("peak_cuda_mb") for c in costs if c.get("peak_cuda_mb") is not None]
        row["peak_rss_mb"] = float(max(rss)) if rss else None
        row["peak_cuda_mb"] = float(max(cuda)) if cuda else None
        row["device"] = ",".join(sorted({str(c.get("device")) for c in costs if c.get("device")}))
        lengths = {(r.get("config") or {}).get("MAX_ITEM_LIST_LENGTH") for r in ok}
        lengths.discard(None)
        row["max_len"] = ",".join(str(v) for v in sorted(lengths)) or None
        sids = [r["semantic_ids"] for r in ok if isinstance(r.get("semantic_ids"), dict)]
        keys = sorted({str(s.get("cache_key")) for s in sids if s.get("cache_key")})
        row["sid_cache_key"] = ",".join(keys) or None
        # the codes themselves: one cache key can name different codes built on two machines
        prints = sorted({str(s["codes_fingerprint"]) for s in sids if s.get("codes_fingerprint")})
        row["sid_codes"] = ",".join(prints) or None
        row["collision_rate"] = _mean([s.get("collision_rate") for s in sids])
        published = published_number(model, dataset)
        row["published"] = None
        if published is not None:
            metric, value, source = published
            ours = row.get(metric, (None, None))[0] if metric in row else None
            row["published"] = {
                "metric": metric,
                "value": value,
                "source": source,
                "gap": (ours - value) if ours is not None else None,
                "gap_rel": ((ours - value) / value) if ours is not None and value else None,
            }
        row["per_user"] = [r.get("per_user") for r in ok]
        row["seed_ndcg10"] = {
            r.get("seed"): (r.get("test_result") or {}).get(PER_USER_METRIC) for r in ok
        }
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- significance
def paired_test(a: np.ndarray, b: np.ndarray, method: str = "wilcoxon") -> float:
    r"""Two-sided p-value of a paired test between ``a`` and ``b`` (1.0 when identical)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    if len(diff) < 2 or np.allclose(diff, 0.0):
        return 1.0
    if method == "ttest":
        if np.allclose(diff, diff[0]):  # constant non-zero difference: no variance
            return 0.0
        p = stats.ttest_rel(a, b).pvalue
    elif method == "wilcoxon":
        p = stats.wilcoxon(a, b).pvalue
    else:
        raise ValueError(f"unknown significance test '{method}' (wilcoxon or ttest)")
    return float(p) if p is not None and math.isfinite(p) else 1.0


def _per_user_matrix(row: dict[str, Any]) -> tuple[np.ndarray, str] | None:
    per_user = row.get("per_user") or []
    if not per_user or any(p is None or not p.get("users_sha1") for p in per_user):
        return None
    shas = {p["users_sha1"] for p in per_user}
    if len(shas) != 1:
        return None
    values = np.asarray([p["values"] for p in per_user], dtype=float)
    return values.mean(axis=0), shas.pop()


def add_significance(
    rows: list[dict[str, Any]], reference: str | None = None, method: str = "wilcoxon"
) -> str | None:
    r"""Set ``p_value``, ``test`` and ``significant`` on each row against the reference model's
    row of the same dataset: per-user paired test (``method``) on NDCG@10 averaged over seeds
    when both rows have per-user values on the same users, else a paired t-test over the common
    seeds (two or more). Returns the reference model used (``reference``, else SASRec when
    present, else None: no test).

    ``reference`` names a row label (``SASRec``, or a variant's ``SASRec [learning_rate=0.002]``)
    or a model: where a model has several configurations in a dataset, its reference row is the
    one labelled by the bare model name (the configuration without extra settings); a dataset
    with no such single row gets no test, and a warning says why."""
    models = {r["model"] for r in rows}
    if reference is None:
        reference = DEFAULT_REFERENCE if DEFAULT_REFERENCE in models else None
    for row in rows:
        row.update(p_value=None, test=None, significant=False, is_reference=False)
    if reference is None:
        return None
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        candidates = [r for r in rows if r["dataset"] == dataset and r["n"]]
        refs = [r for r in candidates if r["label"] == reference]
        if not refs:
            refs = [r for r in candidates if r["model"] == reference]
        if len(refs) != 1:
            if refs:
                getLogger().warning(
                    f"{dataset}: {len(refs)} rows of {reference} ("
                    + ", ".join(r["label"] for r in refs)
                    + "); no significance test there: pass --reference with one of these labels"
                )
            continue
        ref = refs[0]
        ref["is_reference"] = True
        ref_users = _per_user_matrix(ref)
        for row in rows:
            if row is ref or row["dataset"] != dataset or not row["n"]:
                continue
            users = _per_user_matrix(row)
            if users is not None and ref_users is not None and users[1] == ref_users[1]:
                row["p_value"] = paired_test(users[0], ref_users[0], method)
                row["test"] = f"per-user {method}"
            else:
                seeds = [s for s in row["seed_ndcg10"] if s in ref["seed_ndcg10"]]
                pairs = [
                    (row["seed_ndcg10"][s], ref["seed_ndcg10"][s])
                    for s in seeds
                    if row["seed_ndcg10"][s] is not None and ref["seed_ndcg10"][s] is not None
                ]
                if len(pairs) < 2:
                    continue
                a, b = zip(*pairs)
                row["p_value"] = paired_test(np.array(a), np.array(b), "ttest")
                row["test"] = "seed ttest"
            row["significant"] = row["p_value"] < SIGNIFICANCE_LEVEL
    return reference


# ----------------------------------------------------------------------------- rendering
# (key, header, direction of "best": 'max', 'min' or None)
_COLUMNS = [
    ("label", "model", None),
    ("dataset", "dataset", None),
    ("seeds", "seeds", None),
    ("recall@5", "R@5", "max"),
    ("ndcg@5", "N@5", "max"),
    ("recall@10", "R@10", "max"),
    ("ndcg@10", "N@10", "max"),
    ("p_value", "p", None),
    ("best_epochs", "best epoch", None),
    ("train_s_per_epoch", "train s/epoch", "min"),
    ("total_train_s", "total train s", "min"),
    ("eval_users_per_s", "eval users/s", "max"),
    ("parameters", "parameters", "min"),
    ("peak_rss_mb", "peak RSS MB", "min"),
    ("peak_cuda_mb", "peak CUDA MB", "min"),
    ("device", "device", None),
    ("max_len", "max len", None),
    ("sid_cache_key", "SID cache key", None),
    ("sid_codes", "SID codes", None),
    ("collision_rate", "SID collisions", "min"),
    ("published", "published", None),
    ("published_gap", "gap to published", None),
]
_OPTIONAL = {
    "peak_cuda_mb",
    "sid_cache_key",
    "sid_codes",
    "collision_rate",
    "published",
    "published_gap",
    "p_value",
}


def _value(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, tuple):
        value = value[0]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def mark_best(rows: list[dict[str, Any]]) -> None:
    r"""``row['best']``: the columns where the row holds the best value of its dataset (only
    among two or more rows with a value)."""
    for row in rows:
        row["best"] = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == dataset]
        for key, _, direction in _COLUMNS:
            if direction is None:
                continue
            values = [(r, _value(r, key)) for r in group]
            values = [(r, v) for r, v in values if v is not None]
            if len(values) < 2:
                continue
            best = max(v for _, v in values) if direction == "max" else min(v for _, v in values)
            for r, v in values:
                if v == best:
                    r["best"].append(key)


def _num(x: float | None) -> str:
    if x is None:
        return ""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _seed_text(seeds: list[Any]) -> str:
    return ",".join("default" if s is None else str(s) for s in seeds)


def cell_text(row: dict[str, Any], key: str) -> str:
    r"""The text of one Markdown cell (without the bold and significance markers)."""
    value = row.get(key)
    if key in dict(QUALITY):
        mean, std = value if value else (None, None)
        if mean is None:
            return ""
        return f"{mean:.4f}" if row["n"] < 2 else f"{mean:.4f} ± {std:.4f}"
    if key == "seeds":
        text = _seed_text(row["seeds"])
        if row["failed_seeds"]:
            text += (" " if text else "") + f"({_seed_text(row['failed_seeds'])} failed)"
        return text
    if key == "p_value":
        if row.get("is_reference"):
            return "ref"
        return "" if value is None else f"{value:.3g}"
    if key == "best_epochs":
        epochs = [e for e in value if e is not None]
        return "/".join(str(e) for e in epochs) if len(epochs) <= 5 else f"{np.mean(epochs):.1f}"
    if key in (
        "train_s_per_epoch",
        "total_train_s",
        "eval_users_per_s",
        "peak_rss_mb",
        "peak_cuda_mb",
    ):
        return _num(value)
    if key == "parameters":
        return "" if value is None else f"{value:,}"
    if key == "collision_rate":
        return "" if value is None else f"{100 * value:.2f}%"
    if key in ("sid_cache_key", "sid_codes"):
        return "" if not value else f"`{value}`"
    if key == "published":
        if not value:
            return ""
        label = dict(QUALITY).get(value["metric"], value["metric"])
        return f"{label} {value['value']:.4f} ({value['source']})"
    if key == "published_gap":
        published = row.get("published")
        if not published or published.get("gap_rel") is None:
            return ""
        return f"{100 * published['gap_rel']:+.1f}%"
    return "" if value is None else str(value)


def _active_columns(
    rows: list[dict[str, Any]], reference: str | None
) -> list[tuple[str, str, str | None]]:
    columns = []
    for key, header, direction in _COLUMNS:
        if key in _OPTIONAL:
            if key == "p_value":
                if reference is None:
                    continue
                header = f"p (N@10 vs {reference})"
            elif key == "published_gap":
                if not any(r.get("published") for r in rows):
                    continue
            elif not any(row.get(key) for row in rows):
                continue
        columns.append((key, header, direction))
    return columns


def to_markdown(rows: list[dict[str, Any]], reference: str | None, significance: str) -> str:
    columns = _active_columns(rows, reference)
    lines = [
        "| " + " | ".join(h for _, h, _ in columns) + " |",
        "|"
        + "|".join(
            "---" if d is None and k in ("label", "dataset", "device", "seeds") else "---:"
            for k, _, d in columns
        )
        + "|",
    ]
    for row in rows:
        cells = []
        for key, _, _ in columns:
            text = cell_text(row, key)
            if text and key in row.get("best", []):
                text = f"**{text}**"
            if key == PER_USER_METRIC and row.get("significant"):
                text += " †"
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        "Test metrics of the best validation epoch (NDCG@10), leave-one-out, full ranking; "
        "mean ± sample std over seeds. **Bold**: best value of the column on that dataset. "
        "total train s: the whole fit (training and validation epochs). peak RSS: peak resident "
        "memory of the process that ran the cell (one process per cell unless --in_process).",
    ]
    if reference is not None:
        notes.append(
            f"† NDCG@10 differs from {reference} (p < {SIGNIFICANCE_LEVEL}, two-sided): "
            f"paired {significance} test over per-user NDCG@10 (averaged over seeds) where both "
            "rows have per-user values on the same users, else a paired t-test over the common "
            "seeds; no correction for multiple comparisons."
        )
    failures = [(row, e) for row in rows for e in row["errors"]]
    if failures:
        notes += ["", "Failed cells:", ""]
        for row, error in failures:
            message = str(error.get("message", "")).strip().splitlines()
            notes.append(
                f"- {row['label']} / {row['dataset']} / seed {_seed_text([error.get('seed')])}: "
                f"{error.get('type')}: {message[0] if message else ''}"
            )
    return "\n".join(lines + notes) + "\n"


def to_csv(rows: list[dict[str, Any]], reference: str | None) -> str:
    header = ["model", "dataset", "config_hash", "seeds", "failed_seeds", "n_seeds"]
    for metric in CSV_METRICS:
        header += [f"{metric}_mean", f"{metric}_std"]
    header += [
        "significant",
        "p_value",
        "test",
        "reference",
        "best_epochs",
        "epochs",
        "train_s_per_epoch",
        "total_train_s",
        "eval_users_per_s",
        "parameters",
        "peak_rss_mb",
        "peak_cuda_mb",
        "device",
        "max_item_list_length",
        "sid_cache_key",
        "sid_codes_fingerprint",
        "sid_collision_rate",
        "published_metric",
        "published_value",
        "published_source",
        "published_gap_rel",
        "best_columns",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        line = [
            row["label"],
            row["dataset"],
            row["config_hash"],
            _seed_text(row["seeds"]),
            _seed_text(row["failed_seeds"]),
            row["n"],
        ]
        for metric in CSV_METRICS:
            mean, std = row.get(metric) or (None, None)
            line += [_csv(mean), _csv(std)]
        published = row.get("published") or {}
        line += [
            row.get("significant", False),
            _csv(row.get("p_value")),
            row.get("test") or "",
            "ref" if row.get("is_reference") else (reference or ""),
            "/".join(str(e) for e in row["best_epochs"]),
            "/".join(str(e) for e in row["epochs"]),
            _csv(row["train_s_per_epoch"]),
            _csv(row["total_train_s"]),
            _csv(row["eval_users_per_s"]),
            _csv(row["parameters"]),
            _csv(row["peak_rss_mb"]),
            _csv(row["peak_cuda_mb"]),
            row["device"],
            row["max_len"] or "",
            row["sid_cache_key"] or "",
            row.get("sid_codes") or "",
            _csv(row["collision_rate"]),
            published.get("metric", ""),
            _csv(published.get("value")),
            published.get("source", ""),
            _csv(published.get("gap_rel")),
            ";".join(row.get("best", [])),
        ]
        writer.writerow(line)
    return buffer.getvalue()


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 8))
    return str(value)


def to_png(rows: list[dict[str, Any]], path: str) -> None:
    r"""Per dataset: the quality metrics of each model (bars, ± std) and NDCG@10 against the
    total training seconds (cost vs quality)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows)) or ["(no results)"]
    fig, axes = plt.subplots(len(datasets), 2, figsize=(13, 4.2 * len(datasets)), squeeze=False)
    for (ax_bar, ax_cost), dataset in zip(axes, datasets):
        group = [r for r in rows if r["dataset"] == dataset and r["n"]]
        width = 0.8 / max(len(group), 1)
        x = np.arange(len(QUALITY))
        for i, row in enumerate(group):
            means = [(row[m][0] or 0.0) for m, _ in QUALITY]
            stds = [(row[m][1] or 0.0) for m, _ in QUALITY]
            ax_bar.bar(
                x + (i - (len(group) - 1) / 2) * width,
                means,
                width,
                yerr=stds,
                capsize=2,
                label=row["label"],
            )
        ax_bar.set_xticks(x)
        ax_bar.set_xticklabels([h for _, h in QUALITY])
        ax_bar.set_title(f"{dataset}: test metrics (mean ± std over seeds)")
        if group:
            ax_bar.legend(fontsize=8)
        points = [
            r for r in group if r["total_train_s"] is not None and r["ndcg@10"][0] is not None
        ]
        for row in points:
            ax_cost.errorbar(
                row["total_train_s"],
                row["ndcg@10"][0],
                yerr=row["ndcg@10"][1] or 0.0,
                fmt="o",
                capsize=3,
            )
            ax_cost.annotate(
                row["label"],
                (row["total_train_s"], row["ndcg@10"][0]),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
        times = [r["total_train_s"] for r in points if r["total_train_s"] > 0]
        if times and max(times) / min(times) > 20:
            ax_cost.set_xscale("log")
        ax_cost.set_xlabel("total train seconds (fit, per seed)")
        ax_cost.set_ylabel("test NDCG@10")
        ax_cost.set_title(f"{dataset}: cost vs quality")
        ax_cost.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(
    records: list[dict[str, Any]],
    out_dir: str,
    reference: str | None = None,
    significance: str = "wilcoxon",
) -> dict[str, Any]:
    r"""Write ``leaderboard.md``, ``leaderboard.csv`` and ``leaderboard.png`` into ``out_dir``.

    Args:
        records: cell records (:func:`load_results`).
        reference: model the significance test compares with (default SASRec when present).
        significance: per-user test, ``'wilcoxon'`` (signed-rank) or ``'ttest'`` (paired t).
    """
    os.makedirs(out_dir, exist_ok=True)
    rows = summarise(records)
    reference = add_significance(rows, reference, significance)
    mark_best(rows)
    table = to_markdown(rows, reference, significance)
    paths = {
        "markdown": os.path.join(out_dir, "leaderboard.md"),
        "csv": os.path.join(out_dir, "leaderboard.csv"),
        "png": os.path.join(out_dir, "leaderboard.png"),
    }
    _atomic_write_text(paths["markdown"], table)
    _atomic_write_text(paths["csv"], to_csv(rows, reference))
    to_png(rows, paths["png"])
    return {**paths, "dir": out_dir, "table": table, "rows": rows, "reference": reference}


def render_file(
    results_path: str | list[str],
    out_dir: str | None = None,
    reference: str | None = None,
    significance: str = "wilcoxon",
) -> dict[str, Any]:
    r"""Re-render a results file (``--leaderboard-only``), by default next to it.

    ``results_path`` may also be several results files (a list, or one comma-separated string):
    leaderboards run side by side, e.g. one process per CPU core on disjoint model lists, merge
    into one. Their records are concatenated in the order given, identical records once (a cell
    present in several files keeps its last ``ok`` record, as within one file) and written to
    ``<out_dir>/results.jsonl``, so the merged folder is self-contained; ``out_dir`` is then
    required. One file rendered into another folder is copied there the same way.
    """
    paths = _split(results_path) if isinstance(results_path, str) else list(results_path)
    if not paths:
        raise ValueError("--leaderboard-only: no results file given")
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--leaderboard-only: results file {path!r} does not exist")
    if len(paths) > 1 and not out_dir:
        raise ValueError(
            f"--leaderboard-only: {len(paths)} results files are merged into one leaderboard; "
            "pass --leaderboard_dir=<folder> for it"
        )
    out_dir = out_dir or os.path.dirname(os.path.abspath(paths[0]))
    records = [record for path in paths for record in load_results(path)]
    merged = os.path.join(out_dir, RESULTS_FILE)
    if len(paths) > 1 or os.path.abspath(merged) != os.path.abspath(paths[0]):
        # a record present in several files (a lane seeded from the merged file) is kept once
        unique: dict[str, dict[str, Any]] = {}
        for record in records:
            unique.setdefault(_record_line(record), record)
        records = list(unique.values())
        os.makedirs(out_dir, exist_ok=True)
        _atomic_write_text(merged, "".join(unique))
        getLogger().info(f"merged {len(records)} records of {len(paths)} files into {merged}")
    out = render(records, out_dir, reference, significance)
    out["results"] = merged
    return out


# ----------------------------------------------------------------------------- provenance
def versions() -> dict[str, str]:
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
        except OSError:
            return None
    return None


# ----------------------------------------------------------------------------- helpers
def _finite_or_none(value: Any) -> Any:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _jsonable(obj: Any) -> Any:
    r"""A JSON-serialisable copy (numpy/torch scalars to numbers, non-finite floats to None,
    anything else unknown to its ``str``)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if hasattr(obj, "tolist") and hasattr(obj, "dim"):  # torch tensor
        return _jsonable(obj.tolist())
    return str(obj)


def _config_subset(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    final = getattr(config, "final_config_dict", None)
    return _jsonable(dict(final)) if final is not None else None


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    r"""The leaderboard flags of ``run_recbole_fair.py``."""
    group = parser.add_argument_group("leaderboard (any of these, or a comma in --model/--dataset)")
    group.add_argument(
        "--seeds", type=str, default=None, help="comma-separated seeds, e.g. 2020,2021,2022"
    )
    group.add_argument(
        "--leaderboard_dir",
        type=str,
        default=None,
        help="output folder (default ./leaderboards/<timestamp>)",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the results file of --leaderboard_dir (default: the latest ./leaderboards/*)",
    )
    group.add_argument(
        "--leaderboard-only",
        "--leaderboard_only",
        dest="leaderboard_only",
        default=None,
        metavar="RESULTS_FILE[,RESULTS_FILE...]",
        help="re-render tables and plots from a results file, no training; several "
        "comma-separated files are merged into --leaderboard_dir",
    )
    group.add_argument(
        "--reference",
        type=str,
        default=None,
        help="model or row label of the significance test (default SASRec when present)",
    )
    group.add_argument(
        "--significance",
        choices=["wilcoxon", "ttest"],
        default=None,
        help="per-user paired test on NDCG@10 (default wilcoxon)",
    )
    group.add_argument(
        "--model_config",
        type=str,
        default=None,
        help="YAML whose top-level keys are model names mapping to per-model overrides",
    )
    group.add_argument(
        "--in_process",
        action="store_true",
        help="run the cells in this process instead of one process per cell",
    )
    group.add_argument(
        "--cell_timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="kill a cell's process that runs longer than SECONDS, record the cell as failed "
        "and go on with the next one (one process per cell only: a cell run with --in_process "
        "cannot be stopped, the two flags together are refused)",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a positive number of seconds, got {text!r}")
    return value


def check_arguments(args: argparse.Namespace) -> None:
    r"""``ValueError`` for leaderboard flags that cannot go together (a usage error)."""
    check_cell_timeout(getattr(args, "cell_timeout", None), not args.in_process)


def wants_leaderboard(args: argparse.Namespace) -> bool:
    r"""Whether the command line asks for a leaderboard rather than a single run."""
    lists = any("," in (v or "") for v in (args.model, args.dataset))
    flags = (
        args.seeds,
        args.leaderboard_dir,
        args.leaderboard_only,
        args.model_config,
        args.reference,
        args.significance,
        args.cell_timeout,
    )
    return lists or args.resume or args.in_process or any(f is not None for f in flags)


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _latest_leaderboard_dir(root: str = "leaderboards") -> str | None:
    if not os.path.isdir(root):
        return None
    candidates = [os.path.join(root, d) for d in os.listdir(root)]
    candidates = [d for d in candidates if os.path.isfile(os.path.join(d, RESULTS_FILE))]
    return (
        max(candidates, key=lambda d: os.path.getmtime(os.path.join(d, RESULTS_FILE)))
        if candidates
        else None
    )


def load_model_config(path: str) -> dict[str, dict[str, Any]]:
    import yaml

    with open(path, encoding="utf-8") as f:
        content = yaml.safe_load(f) or {}
    if not isinstance(content, dict) or not all(
        isinstance(v, dict) or v is None for v in content.values()
    ):
        raise ValueError(
            f"{path}: expected top-level model names, each mapping to a dict of overrides"
        )
    return {str(k): dict(v or {}) for k, v in content.items()}


def cli(
    args: argparse.Namespace, unknown: list[str], default_config_files: list[str] | None = None
) -> dict[str, Any]:
    r"""Run (or, with ``--leaderboard-only``, re-render) a leaderboard from parsed CLI flags.

    ``unknown`` are the arguments the CLI parser did not consume (RecBole ``--key=value``
    overrides): they become every cell's ``sys.argv``, so RecBole's Config never sees the
    leaderboard's flags nor the model/dataset lists.
    """
    significance = args.significance or "wilcoxon"
    check_arguments(args)
    if args.leaderboard_only:
        out = render_file(args.leaderboard_only, args.leaderboard_dir, args.reference, significance)
        print(out["table"])
        return out
    seeds = [int(s) for s in _split(args.seeds)] or None
    cell_argv = [sys.argv[0]] + [
        a for a in unknown if not (seeds and (a.startswith("--seed=") or a == "--seed"))
    ]
    config_files = args.config_files.strip().split(" ") if args.config_files else []
    config_files = list(default_config_files or []) + config_files
    leaderboard_dir = args.leaderboard_dir
    if args.resume and leaderboard_dir is None:
        leaderboard_dir = _latest_leaderboard_dir()
        if leaderboard_dir is None:
            raise FileNotFoundError(
                "--resume: no ./leaderboards/*/results.jsonl; pass --leaderboard_dir"
            )
        print(f"leaderboard: resuming {leaderboard_dir}", flush=True)
    out = run_leaderboard(
        _split(args.model) or ["FAIR"],
        _split(args.dataset) or ["ml-100k"],
        seeds,
        config_file_list=config_files,
        model_overrides=load_model_config(args.model_config) if args.model_config else None,
        argv=cell_argv,
        leaderboard_dir=leaderboard_dir,
        resume=args.resume,
        reference=args.reference,
        significance=significance,
        isolate=not args.in_process,
        cell_timeout=args.cell_timeout,
    )
    if out.get("stopped"):
        print(f"leaderboard: stopped at {out['stopped']} (results so far: {out['results']})")
    if "table" in out:
        print(out["table"])
        print(
            f"leaderboard: {out['markdown']}, {out['csv']}, {out['png']} "
            f"(results: {out['results']})"
        )
    if out.get("failed"):  # last, where a script's log ends
        print(
            f"leaderboard: {len(out['failed'])} cell(s) of this run failed (see "
            f"{out['results']}): " + ", ".join(out["failed"]),
            file=sys.stderr,
            flush=True,
        )
    return out
