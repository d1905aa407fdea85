r"""recbole_fair.trainer.instrument
################################

What :func:`recbole_fair.quick_start.run_recbole_fair` adds to any trainer (recbole-fair's or
RecBole's) without subclassing it: per-epoch seconds, training losses and validation scores, the
best epoch (:func:`instrument`); a wall-clock training deadline (:func:`stop_at_deadline`); the
FLOPs of one training step (:func:`profile_flops`).
"""

from __future__ import annotations

import os
import time
from logging import getLogger
from typing import Any

from recbole.utils import set_color

# Environment variable: a wall-clock deadline (UNIX time, seconds) for every run's training. After
# each validated epoch, a run whose next epoch would end past it stops training there (its best
# checkpoint so far is tested as usual; costs.stopped_at_deadline says so; a leaderboard cell
# keeps its last-epoch checkpoint, so that --resume continues it). The GPU suite
# (benchmarks/gpu/device_run.sh) sets it so that cells sharing one lent window all finish in it.
# An operating limit, not a setting of the model: it is not part of the config (nor of a
# leaderboard cell's config hash).
FIT_DEADLINE_ENV = "RECBOLE_FAIR_FIT_DEADLINE"


def fit_deadline() -> float | None:
    r"""The training deadline of :data:`FIT_DEADLINE_ENV` (UNIX seconds), None when unset.

    Raises:
        ValueError: a value that is not a number.
    """
    text = os.environ.get(FIT_DEADLINE_ENV, "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as err:
        raise ValueError(
            f"{FIT_DEADLINE_ENV} must be a UNIX time in seconds (e.g. $(($(date +%s) + 600))), "
            f"got {text!r}"
        ) from err


class _DeadlineReached(Exception):
    r"""Raised after an epoch's callback when the next epoch would end past the deadline."""


def stop_at_deadline(trainer: Any, deadline: float, stopped: dict[str, Any]) -> None:
    r"""Make ``trainer.fit`` stop after the validated epoch past which another epoch (as long as
    the longest of the last one and the mean so far) would end after ``deadline``; ``fit`` then
    returns its best score and result so far, as after early stopping. At least one epoch runs.
    Sets ``stopped['stopped']`` (and ``stopped['epoch']``) when it stops a run: never after the
    last epoch of the cap nor after the validation that triggered early stopping (no other epoch
    would run: the run is not cut short)."""
    fit = trainer.fit

    def fit_until(train_data, valid_data=None, *args, **kwargs):
        user_callback = kwargs.pop("callback_fn", None)
        marks = [time.time()]

        def callback(epoch_idx, valid_score):
            if user_callback is not None:
                user_callback(epoch_idx, valid_score)
            now = time.time()
            marks.append(now)
            last = marks[-1] - marks[-2]
            mean = (marks[-1] - marks[0]) / (len(marks) - 1)
            if now + max(last, mean) > deadline and another_epoch(trainer, epoch_idx):
                stopped.update(stopped=True, epoch=epoch_idx)
                raise _DeadlineReached

        try:
            return fit(train_data, valid_data, *args, callback_fn=callback, **kwargs)
        except _DeadlineReached:
            getLogger().warning(
                set_color("deadline", "red")
                + f": stopped after epoch {stopped['epoch']} of {trainer.epochs} "
                f"({FIT_DEADLINE_ENV}: another epoch would end after it); testing the best "
                f"checkpoint so far (epoch {trainer.best_epoch})"
            )
            return trainer.best_valid_score, trainer.best_valid_result

    trainer.fit = fit_until


def another_epoch(trainer: Any, epoch_idx: int) -> bool:
    r"""Whether RecBole's ``fit`` trains another epoch after the validation of ``epoch_idx``:
    not at the epoch cap, and early stopping not triggered (``fit`` breaks after this epoch's
    callback once the counter ``cur_step`` has passed ``stopping_step``)."""
    stopping_step = getattr(trainer, "stopping_step", None)
    stopped_early = stopping_step is not None and trainer.cur_step > stopping_step
    return epoch_idx + 1 < trainer.epochs and not stopped_early


def profile_flops(trainer: Any, train_data: Any) -> dict[str, Any] | None:
    r""":func:`recbole_fair.flops.profile_train_step`, logged; None (with a warning) when the
    FLOP counter fails on this model (the run goes on without the numbers)."""
    from recbole_fair.flops import profile_train_step

    try:
        flops = profile_train_step(trainer, train_data)
    except Exception as err:  # noqa: BLE001 - a measurement must not end the run
        getLogger().warning(f"count_train_flops: could not count this model's FLOPs ({err})")
        return None
    getLogger().info(
        set_color("training FLOPs", "pink")
        + f": {flops['train_flops_per_batch'] / 1e9:.1f} GFLOP per batch of "
        f"{flops['train_flops_batch_rows']}, {flops['train_flops_per_epoch'] / 1e12:.2f} TFLOP "
        f"per epoch; host synchronisations per step: {flops['host_syncs_per_step']}"
    )
    return flops


def total_loss(loss: Any) -> float:
    r"""An epoch's training loss as one number: trainers return a float or a tuple of losses,
    which may nest (KGAT); anything else is recorded as NaN rather than failing the run."""
    if isinstance(loss, (tuple, list)):
        return float(sum(total_loss(part) for part in loss))
    try:
        return float(loss)
    except (TypeError, ValueError):
        return float("nan")


def instrument(trainer: Any) -> dict[str, list[float]]:
    r"""Record, on the trainer instance, the best epoch and the seconds of each training and
    validation epoch (RecBole's ``fit`` reports neither separately).

    RecBole's trainer saves a checkpoint exactly when the validation score improves (or once at
    the end when it never validates), so the epoch of the last save is the best epoch.
    """
    timings: dict[str, list[float]] = {
        "train": [],
        "valid": [],
        "valid_score": [],
        "train_loss": [],
    }
    save, train_epoch, valid_epoch = (
        trainer._save_checkpoint,
        trainer._train_epoch,
        trainer._valid_epoch,
    )

    def _save_checkpoint(epoch, *args, **kwargs):
        trainer.best_epoch = epoch
        return save(epoch, *args, **kwargs)

    def _timed(fn, bucket, curve, value):
        def wrapper(*args, **kwargs):
            start = time.time()
            out = fn(*args, **kwargs)
            timings[bucket].append(time.time() - start)
            timings[curve].append(value(out))
            return out

        return wrapper

    trainer.best_epoch = None
    trainer._save_checkpoint = _save_checkpoint
    # _train_epoch returns the loss (a tuple of losses for multi-part losses), _valid_epoch
    # (valid_score, valid_result)
    trainer._train_epoch = _timed(train_epoch, "train", "train_loss", total_loss)
    trainer._valid_epoch = _timed(valid_epoch, "valid", "valid_score", lambda out: float(out[0]))
    return timings
