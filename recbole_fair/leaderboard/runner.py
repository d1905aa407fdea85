r"""recbole_fair.leaderboard.runner
#################################

Running a leaderboard (:func:`run_leaderboard`): every cell not finished yet, each record
appended to the results file before the next cell starts.

* **Where a cell runs.** By default each in a fresh process (:func:`execute_cell_isolated`): a
  hard crash (out of memory, segfault) is recorded too and the peak memory is the cell's own; a
  ``cell_timeout`` kills a cell's process that runs too long. ``isolate=False`` runs them in this
  process (:func:`execute_cell`), where a time limit cannot be enforced safely: a Python signal
  handler does not run while native code (e.g. faiss) hangs, and an exception raised at any
  point of training leaves the process in an unknown state.
* **Stopping.** A file ``<leaderboard_dir>/STOP`` (``touch`` it) stops the run after the current
  epoch's checkpoint, or before the next cell; the file is then removed and ``resume=True``
  continues where it stopped. A ``STOP`` file already there when the run starts is stale and is
  removed.
* **Resuming.** ``resume=True`` skips the finished cells and continues an interrupted one from
  its last-epoch checkpoint (:class:`~.hook.CellHook`). A cell whose training stopped at the
  deadline (``RECBOLE_FAIR_FIT_DEADLINE``) with epochs left is recorded and keeps its last-epoch
  checkpoint: ``resume=True`` continues it and appends its new record, which supersedes the
  earlier one; without that checkpoint it stays finished.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict
from logging import getLogger
from typing import Any, Callable

from recbole_fair.config import command_line as argv_as  # sys.argv inside a block
from recbole_fair.leaderboard.cells import CellSpec, build_cells, checkpoint_paths
from recbole_fair.leaderboard.hook import CellHook, StopRequested
from recbole_fair.leaderboard.results import (
    RESULTS_FILE,
    append_record,
    config_subset,
    failure_record,
    finished_records,
    git_commit,
    jsonable,
    record_head,
    stopped_at_deadline,
    versions,
)
from recbole_fair.leaderboard.tables import render_file
from recbole_fair.quick_start import run_recbole_fair

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


# ----------------------------------------------------------------------------- one cell
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
    record: dict[str, Any] = record_head(spec)
    record["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    start = time.time()
    config_dict = dict(spec.config_dict)
    config_dict.setdefault("checkpoint_dir", checkpoint_dir)
    try:
        with argv_as(spec.argv):
            result = run_recbole_fair(
                model=spec.model,
                dataset=spec.dataset,
                config_file_list=spec.config_file_list or None,
                config_dict=config_dict,
                saved=True,
                trainer_hook=hook,
            )
    except Exception as err:
        record.update(status="error", error=_error(err))
    else:
        record.update(_finished(result, hook))
        # its last-epoch checkpoint is discarded by run_leaderboard once the record is on disk
        # (kept after a deadline stop with epochs left, for --resume)
    record["wall_seconds"] = time.time() - start
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    record["config"] = config_subset(hook.config)
    if record["config"] and spec.seed is None:
        record["seed"] = record["config"].get("seed")
    record["versions"] = versions()
    record["git_commit"] = git_commit()
    del hook
    _release_memory()
    return jsonable(record)


def _error(err: Exception) -> dict[str, str]:
    r"""The ``error`` field of a failed cell's record (call it while handling ``err``)."""
    return {"type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc()}


def _finished(result: dict[str, Any], hook: CellHook) -> dict[str, Any]:
    r"""The fields of a finished cell's record: ``run_recbole_fair``'s results, the fit seconds
    of every part of the cell (across interruptions) and the per-user test values."""
    costs = dict(result.get("costs") or {})
    costs["fit_seconds"] = costs.get("fit_seconds", 0.0) + hook.prior_fit_seconds
    costs["resumed_from_epoch"] = hook.resumed_from_epoch
    return {
        "status": "ok",
        "test_result": result.get("test_result"),
        "best_valid_result": result.get("best_valid_result"),
        "best_valid_score": result.get("best_valid_score"),
        "semantic_ids": result.get("semantic_ids"),
        # beam-search guards of generative decoders (TIGER: invalid generations, beam-vs-exact
        # overlap of the test pass), None for the others
        "generation": result.get("generation"),
        # interactions read, kept and dropped with their reasons
        "data": result.get("data"),
        "costs": costs,
        "paths": relative_paths(result.get("paths")),
        "per_user": hook.per_user(),
    }


def relative_paths(paths: dict[str, Any] | None) -> dict[str, Any] | None:
    r"""``paths`` with every file under the working directory written relative to it, so that a
    committed record names no machine (files elsewhere keep their absolute path)."""
    if not paths:
        return paths
    here = os.path.abspath(os.getcwd())
    out = {}
    for key, value in paths.items():
        if isinstance(value, str) and os.path.isabs(value):
            rel = os.path.relpath(value, here)
            value = value if rel.startswith("..") else rel
        out[key] = value
    return out


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass


# ----------------------------------------------------------------------------- one process per cell
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
    try:
        record, timed_out = _wait_for_record(process, receiver, deadline)
    except KeyboardInterrupt:
        process.terminate()
        process.join()
        raise
    if timed_out:
        limit = f"{float(time_limit):g}"
        return failure_record(
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
        record = failure_record(
            spec,
            start,
            "ProcessDied",
            f"the cell's process exited with code {process.exitcode} without a result",
        )
    return record


def _wait_for_record(
    process: Any, receiver: Any, deadline: float | None
) -> tuple[dict[str, Any] | None, bool]:
    r"""The record a cell's process sends (None if it dies without one) and whether it ran past
    ``deadline`` (then it was ended); the process has exited when this returns."""
    record = None
    timed_out = False
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
    return record, timed_out


# ----------------------------------------------------------------------------- the leaderboard
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
    ``<leaderboard_dir>/results.jsonl``, then render the leaderboard (:func:`~.tables.render`).

    Args:
        models, datasets, seeds: the grid (``seeds`` None: the config's seed).
        leaderboard_dir: output folder (default ``./leaderboards/<timestamp>``).
        resume: continue the results file in ``leaderboard_dir``: finished cells are skipped,
            a cell interrupted during training resumes from its last-epoch checkpoint.
        reference, significance: see :func:`~.tables.render`.
        isolate: run each cell in its own process (per-cell peak memory, hard crashes recorded).
        cell_timeout: seconds a cell may run (None: no limit); a cell's process running longer
            is killed and the cell recorded as failed (``CellTimeout``), then the next cell
            runs. ``ValueError`` with ``isolate=False``: a cell running in this process cannot
            be stopped safely (see the module docstring).
        epoch_callback: in-process only (``isolate=False``), called as ``(cell, epoch)`` after
            each epoch's checkpoint.
        **cell_settings: the keyword arguments of :func:`~.cells.build_cells` that every cell
            shares: ``config_file_list``, ``config_dict``, ``model_overrides`` (per-model
            ``config_dict`` updates, ``--model_config``) and ``argv`` (``sys.argv`` as RecBole's
            Config should see it in every cell: the user's ``--key=value`` overrides).

    Returns:
        dict: ``dir``, ``results``, ``markdown``, ``csv``, ``png`` paths, ``table`` (Markdown
        text), ``rows``, ``ran`` (keys of the cells run now), ``failed`` (those of them recorded
        as failed) and ``stopped`` (the key of the cell a ``STOP`` file interrupted, or of the
        next one; else None). A stopped run renders the cells finished so far (with none, only
        ``dir``, ``results``, ``ran``, ``failed`` and ``stopped`` are set).
    """
    check_cell_timeout(cell_timeout, isolate)
    cells = build_cells(models, datasets, seeds, **cell_settings)
    leaderboard_dir = _prepare_dir(leaderboard_dir, resume, verbose)
    results_path = os.path.join(leaderboard_dir, RESULTS_FILE)
    checkpoint_dir = os.path.join(leaderboard_dir, "checkpoints")
    stop_file = os.path.join(leaderboard_dir, STOP_FILE)
    run_cell = _cell_runner(isolate, checkpoint_dir, stop_file, cell_timeout, epoch_callback)
    ran, failed, stopped = _run_cells(cells, run_cell, leaderboard_dir, resume, verbose)
    out = {"dir": leaderboard_dir, "results": results_path}
    if stopped is None or (os.path.isfile(results_path) and os.path.getsize(results_path) > 0):
        # else stopped before any cell finished: nothing to render
        out = render_file(results_path, leaderboard_dir, reference, significance)
    out["ran"], out["failed"], out["stopped"] = ran, failed, stopped
    return out


def _cell_runner(
    isolate: bool,
    checkpoint_dir: str,
    stop_file: str,
    cell_timeout: float | None,
    epoch_callback: Callable[[CellSpec, int], None] | None,
) -> Callable[[CellSpec], dict[str, Any]]:
    r"""How :func:`run_leaderboard` runs a cell: in its own process or in this one."""

    def run_cell(spec: CellSpec) -> dict[str, Any]:
        if isolate:
            return execute_cell_isolated(spec, checkpoint_dir, stop_file, cell_timeout)
        callback = (lambda e, s=spec: epoch_callback(s, e)) if epoch_callback else None
        return execute_cell(spec, checkpoint_dir, callback, stop_file)

    return run_cell


def _prepare_dir(leaderboard_dir: str | None, resume: bool, verbose: bool) -> str:
    r"""The leaderboard folder (created; default ``./leaderboards/<timestamp>``), refused when
    it holds results and ``resume`` is off; a stale ``STOP`` file there is removed."""
    if leaderboard_dir is None:
        leaderboard_dir = os.path.join("leaderboards", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(leaderboard_dir, exist_ok=True)
    results_path = os.path.join(leaderboard_dir, RESULTS_FILE)
    if not resume and os.path.isfile(results_path) and os.path.getsize(results_path) > 0:
        raise FileExistsError(
            f"{results_path} already holds results: pass --resume to continue it, or another "
            "--leaderboard_dir"
        )
    stop_file = os.path.join(leaderboard_dir, STOP_FILE)
    if os.path.exists(stop_file):
        os.remove(stop_file)
        _say(verbose, f"removed a stale {stop_file} (it stops a running leaderboard)")
    return leaderboard_dir


def _run_cells(
    cells: list[CellSpec],
    run_cell: Callable[[CellSpec], dict[str, Any]],
    leaderboard_dir: str,
    resume: bool,
    verbose: bool,
) -> tuple[list[str], list[str], str | None]:
    r"""Run the cells not finished yet, each record appended to the results file before the
    next cell; return the keys of the cells run, of those that failed, and of the cell a
    ``STOP`` file stopped (None)."""
    results_path = os.path.join(leaderboard_dir, RESULTS_FILE)
    checkpoint_dir = os.path.join(leaderboard_dir, "checkpoints")
    stop_file = os.path.join(leaderboard_dir, STOP_FILE)
    done = finished_records(results_path) if resume else {}
    ran, failed = [], []
    for index, spec in enumerate(cells, 1):
        where = f"[{index}/{len(cells)}] {spec.key}"
        hook = CellHook(*checkpoint_paths(spec, checkpoint_dir))
        if spec.key in done and not hook.continues(done[spec.key]):
            _say(verbose, f"{where}: {_finished_text(done[spec.key])}, skipped")
            continue
        try:
            if os.path.exists(stop_file):
                raise StopRequested(f"{stop_file} exists")
            _say(verbose, f"{where}: " + ("continuing" if spec.key in done else "running"))
            if not resume:
                hook.discard()
            record = run_cell(spec)
        except StopRequested:
            with contextlib.suppress(FileNotFoundError):
                os.remove(stop_file)
            _say(
                verbose,
                f"{where}: stopped as {stop_file} asked (removed); "
                "run the same command with --resume to continue",
            )
            return ran, failed, spec.key
        append_record(results_path, record)
        if record.get("status") == "ok" and hook.continues(record):
            _say(verbose, f"{where}: stopped at its training deadline; --resume continues it")
        elif record.get("status") == "ok":
            # only now (a kill before the record was written resumes from this checkpoint):
            # the cell is done, only its best checkpoint stays
            hook.discard()
        ran.append(spec.key)
        if record.get("status") != "ok":
            failed.append(spec.key)
            error = record.get("error") or {}
            message = (str(error.get("message", "")).splitlines() or [""])[0]
            _say(verbose, f"{where}: FAILED ({error.get('type')}: {message})")
    return ran, failed, None


def _finished_text(record: dict[str, Any]) -> str:
    r"""How ``--resume`` calls the finished cell of ``record`` it skips."""
    if stopped_at_deadline(record):
        return "finished at its deadline; no last-epoch checkpoint to continue from"
    return "finished"


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
