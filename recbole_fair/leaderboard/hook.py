r"""recbole_fair.leaderboard.hook
###############################

:class:`CellHook`, the ``trainer_hook`` a leaderboard cell passes to
:func:`recbole_fair.quick_start.run_recbole_fair`: a last-epoch checkpoint after every epoch,
resuming from it, stopping on the leaderboard's ``STOP`` file, and the per-user test metrics
(:class:`PerUserCapture`). Training stopped by the training deadline
(``RECBOLE_FAIR_FIT_DEADLINE``) before its epoch cap and early stopping leaves its side file
unfinished, so that ``--resume`` continues it from the epoch after its last one.

Why wrappers on the trainer instance rather than a trainer mixin: ``run_recbole_fair`` builds
the trainer of the model's own class (RecBole's ``Trainer``, ``SyncFreeTrainer``, the FAIR, RPG
and TIGER trainers, any other RecBole trainer) and hands the built instance to the hook only
after wrapping ``_train_epoch``, ``_valid_epoch`` and ``_save_checkpoint`` on it to time each
epoch (and ``fit``, with a training deadline). A mixin's ``fit`` and ``_train_epoch`` would run
*inside* those wrappers: the last-epoch checkpoint would count as training time and be written
before the epoch's seconds and loss are recorded (a resumed cell would lose them), and a deadline
stop would unwind through the mixin's ``fit`` before it marks the cell finished. RecBole's own
callback, ``fit(callback_fn=...)``, runs only after validated epochs, and ``Trainer.evaluate``
has none for what it collects (``Collector.get_data_struct`` hands the top-k to
``Evaluator.evaluate`` and clears it). So the hook uses that callback where it exists and
wraps, on the one trainer instance it is given, only:

* ``fit``: to pass the callback and mark the cell finished once ``fit`` returns, unless another
  epoch would have run (a deadline stop), or, for a cell that had finished training, to skip
  training;
* ``_train_epoch``: the epochs without validation, where RecBole calls no callback;
* ``evaluate``, ``eval_collector.eval_batch_collect`` and ``evaluator.evaluate``: a new per-user
  capture per evaluation, the user id of each row, the top-k of the evaluation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from logging import getLogger
from typing import Any, Callable

import numpy as np

from recbole_fair.leaderboard.results import (
    atomic_write_text,
    finite_or_none,
    jsonable,
    stopped_at_deadline,
)
from recbole_fair.trainer.instrument import another_epoch


class StopRequested(KeyboardInterrupt):
    r"""Raised after an epoch's checkpoint when the leaderboard's ``STOP`` file exists. A
    ``KeyboardInterrupt``, so RecBole's ``fit`` and the cell's ``except Exception`` let it
    through: the cell is not recorded and ``--resume`` continues it at the next epoch."""


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
      ``fit`` and goes straight to the test evaluation of the best checkpoint. ``fit`` stopped
      with epochs left (by the training deadline) is not finished: resumed, it trains on.
    * Keeps the per-user NDCG@10 of the last ``trainer.evaluate`` (the test one):
      :meth:`per_user`.
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
        self.capture = PerUserCapture()
        self._fit_start: float | None = None
        self._valid_data: Any = None
        self._last_epoch: int | None = None

    # -- hook entry point
    def __call__(self, trainer: Any, timings: dict[str, list[float]]) -> None:
        self.trainer, self.config, self.timings = trainer, trainer.config, timings
        trainer.saved_model_file = self.best_path
        self.capture.attach(trainer)
        state = self._load_state()
        if state is not None and state.get("finished") and not os.path.isfile(self.best_path):
            getLogger().warning(f"{self.best_path} is missing: the cell is trained afresh")
            state = None
        if state is not None and state.get("finished"):
            self._restore(state)
            self._skip_fit(state)
        elif state is not None and self._consistent(state):
            self._resume(state)
        else:
            self.discard()
        if not self.skipped_fit:
            self._attach(trainer)

    def per_user(self, k: int = 10) -> dict[str, Any] | None:
        r"""Per-user NDCG@k of the last evaluation (the test): :meth:`PerUserCapture.per_user`."""
        return self.capture.per_user(self.config, k)

    def discard(self) -> None:
        r"""Delete the last-epoch checkpoint, its signature and its side file."""
        for path in (self.last_path, self.last_path + ".sig", self.state_path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def last_epoch_state(self) -> dict[str, Any] | None:
        r"""The side file of a consistent last-epoch checkpoint (the checkpoint's SHA-256 is the
        one the side file names), None without one: what a resumed cell continues from."""
        state = self._load_state()
        return state if state is not None and self._consistent(state) else None

    def continues(self, record: dict[str, Any]) -> bool:
        r"""Whether ``--resume`` continues the cell whose last 'ok' record is ``record``: its
        training stopped at the deadline with epochs left and its last-epoch checkpoint is
        still there (:meth:`last_epoch_state`)."""
        return stopped_at_deadline(record) and self.last_epoch_state() is not None

    # -- resume
    def _load_state(self) -> dict[str, Any] | None:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _consistent(self, state: dict[str, Any]) -> bool:
        from recbole_fair.trusted_files import file_digest

        if not os.path.isfile(self.last_path) or not state.get("sha256"):
            return False
        return file_digest(self.last_path) == state["sha256"]

    def _resume(self, state: dict[str, Any]) -> None:
        r"""Continue from the last-epoch checkpoint (RecBole's ``resume_checkpoint``)."""
        trainer = self.trainer
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
        # a cell killed between the epoch callback that triggered early stopping and the
        # `finished` write must not train on past its stopping point
        if not another_epoch(trainer, trainer.start_epoch - 1):
            self._skip_fit(state)

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

    def _skip_fit(self, state: dict[str, Any]) -> None:
        r"""Replace ``fit`` by the result the side file kept (training had finished)."""
        trainer = self.trainer
        self.skipped_fit = True

        def fit(train_data, valid_data=None, *args, **kwargs):
            trainer.eval_collector.data_collect(train_data)
            return state.get("best_valid_score"), state.get("best_valid_result")

        trainer.fit = fit

    # -- per-epoch checkpoint (see the module docstring for why these two wrappers)
    def _attach(self, trainer: Any) -> None:
        r"""Call :meth:`_after_epoch` after every epoch: through RecBole's ``fit`` callback after
        validated epochs, after ``_train_epoch`` for the others; mark the state finished once
        ``fit`` returns, unless it returned with epochs left (stopped at the training deadline:
        ``--resume`` continues it)."""
        fit, train_epoch = trainer.fit, trainer._train_epoch

        def fit_with_checkpoints(train_data, valid_data=None, *args, **kwargs):
            user_callback = kwargs.pop("callback_fn", None)

            def callback(epoch_idx, valid_score):
                if user_callback is not None:
                    user_callback(epoch_idx, valid_score)
                self._after_epoch(epoch_idx)

            self._fit_start, self._valid_data = time.time(), valid_data
            out = fit(train_data, valid_data, *args, callback_fn=callback, **kwargs)
            last = self._last_epoch
            self._write_state(finished=last is None or not another_epoch(trainer, last))
            return out

        def train_epoch_with_checkpoint(train_data, epoch_idx, *args, **kwargs):
            out = train_epoch(train_data, epoch_idx, *args, **kwargs)
            step = trainer.eval_step
            if step <= 0 or not self._valid_data or (epoch_idx + 1) % step != 0:
                self._after_epoch(epoch_idx)  # no validation this epoch: the state is final
            return out

        trainer.fit = fit_with_checkpoints
        trainer._train_epoch = train_epoch_with_checkpoint

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
        from recbole_fair.trusted_files import file_digest

        trainer = self.trainer
        elapsed = time.time() - self._fit_start if self._fit_start else 0.0
        state = {
            "epoch": self._last_epoch if self._last_epoch is not None else -1,
            "finished": finished,
            "best_epoch": getattr(trainer, "best_epoch", None),
            "best_valid_score": finite_or_none(trainer.best_valid_score),
            "best_valid_result": jsonable(trainer.best_valid_result),
            "train_epoch_seconds": list(self.timings["train"]),
            "valid_epoch_seconds": list(self.timings["valid"]),
            "valid_scores": list(self.timings["valid_score"]),
            "train_losses": list(self.timings["train_loss"]),
            "fit_seconds": self.prior_fit_seconds + elapsed,
            "sha256": file_digest(self.last_path) if os.path.isfile(self.last_path) else None,
        }
        atomic_write_text(self.state_path, json.dumps(state))


class PerUserCapture:
    r"""The per-user results of a trainer's last ``evaluate``: the top-k positions of each
    evaluated row (``rec.topk`` of RecBole's data struct) and, where every batch gave one user
    id per row, those ids, so that per-user values of two runs can be paired by user."""

    def __init__(self) -> None:
        self.last_topk: Any = None
        self._uids: list[Any] | None = []

    def attach(self, trainer: Any) -> None:
        r"""Start a capture at each ``trainer.evaluate``; keep each batch's user ids
        (``eval_collector.eval_batch_collect``) and the evaluation's top-k
        (``evaluator.evaluate``)."""
        evaluator, collector = trainer.evaluator, trainer.eval_collector
        evaluate, collect, trainer_evaluate = (
            evaluator.evaluate,
            collector.eval_batch_collect,
            trainer.evaluate,
        )
        uid_field = trainer.config["USER_ID_FIELD"]

        def evaluate_with_capture(*args, **kwargs):
            self._uids, self.last_topk = [], None
            return trainer_evaluate(*args, **kwargs)

        def collect_with_users(scores_tensor, interaction, positive_u, positive_i):
            self._keep_users(scores_tensor, interaction, uid_field)
            return collect(scores_tensor, interaction, positive_u, positive_i)

        def evaluate_struct(struct):
            try:
                self.last_topk = struct.get("rec.topk").clone()
            except (KeyError, AttributeError):
                self.last_topk = None
            return evaluate(struct)

        trainer.evaluate = evaluate_with_capture
        collector.eval_batch_collect = collect_with_users
        evaluator.evaluate = evaluate_struct

    def _keep_users(self, scores_tensor: Any, interaction: Any, uid_field: str) -> None:
        r"""Keep a batch's user ids, or give up on them for this evaluation (None) when the
        batch does not have one per row of scores."""
        if self._uids is None:
            return
        try:
            uid = interaction[uid_field]
            rows = scores_tensor.shape[0] if scores_tensor.dim() > 1 else None
            if rows is not None and len(uid) == rows:
                self._uids.append(uid.detach().cpu().numpy())
            else:
                self._uids = None
        except (KeyError, AttributeError, TypeError):
            self._uids = None

    def per_user(self, config: Any, k: int = 10) -> dict[str, Any] | None:
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
        values = NDCG(config).metric_info(pos_index, pos_len)[:, k - 1]
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
