r"""recbole_fair.trainer.semantic_trainer
######################################

RecBole's :class:`~recbole.trainer.Trainer` plus a per-step learning-rate schedule: linear
warm-up, then cosine decay to 0 at the last step of ``epochs`` (or a constant rate), as in RPG's
training recipe. RecBole's trainer already builds AdamW (``learner: adamw``) and clips gradients
(``clip_grad_norm``); it has no schedule. The training loop is
:class:`~recbole_fair.trainer.sync_free.SyncFreeTrainer`'s (no host synchronisation inside an
epoch; ``autocast_dtype: bfloat16`` for bfloat16 autocast), the same updates as RecBole's.

Config keys (``properties/model/RPG.yaml``; a missing key takes the default in brackets):

* ``lr_scheduler`` [``none``]: ``cosine`` or ``none`` (constant rate after the warm-up).
* ``warmup_steps`` [0]: optimizer steps of linear warm-up.
* ``warmup_epochs`` [~]: warm-up in epochs instead (``round(warmup_epochs * batches per
  epoch)`` steps); setting both to non-zero values is an error.

With ``lr_scheduler: none`` and no warm-up the trainer is RecBole's exactly. The schedule is a
function of the global step, so a resumed run (``resume_checkpoint``) continues it.

Reference:
    Yupeng Hou et al. "Generating Long Semantic IDs in Parallel for Recommendation." in KDD 2025.
"""

from __future__ import annotations

import math
from typing import Any

from recbole.utils import set_color

from recbole_fair.trainer.sync_free import SyncFreeTrainer

LR_SCHEDULERS = ("cosine", "none")


def lr_factor(step: int, total_steps: int, warmup_steps: int, scheduler: str) -> float:
    r"""Multiplier of the base learning rate for optimizer step ``step`` (0-based).

    Args:
        step (int): number of optimizer steps taken so far.
        total_steps (int): steps of the whole run (``epochs * batches per epoch``).
        warmup_steps (int): linear warm-up steps: step ``s < warmup_steps`` uses
            ``(s + 1) / warmup_steps``.
        scheduler (str): ``cosine``: ``0.5 * (1 + cos(pi * progress))`` after the warm-up,
            ``progress`` going from 0 to 1 at ``total_steps``; ``none``: 1 after the warm-up.

    Returns:
        float: the factor, in ``(0, 1]`` during the warm-up and ``[0, 1]`` after.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == "none":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class SemanticIDTrainer(SyncFreeTrainer):
    r"""RecBole's trainer with linear warm-up and cosine learning-rate decay (per step).

    Attributes:
        lr_history (list of float): the learning rate used by each optimizer step of this run.
    """

    def __init__(self, config: Any, model: Any) -> None:
        super().__init__(config, model)
        self.lr_scheduler = config["lr_scheduler"] or "none"
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(
                f"lr_scheduler must be one of {LR_SCHEDULERS}, got [{self.lr_scheduler}]."
            )
        self.warmup_steps = config["warmup_steps"] or 0
        self.warmup_epochs = config["warmup_epochs"] or 0
        for key, value in (
            ("warmup_steps", self.warmup_steps),
            ("warmup_epochs", self.warmup_epochs),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{key} must be a number >= 0, got [{value}].")
        if self.warmup_steps and self.warmup_epochs:
            raise ValueError(
                f"set warmup_steps [{self.warmup_steps}] or warmup_epochs "
                f"[{self.warmup_epochs}], not both."
            )
        self.global_step = 0
        self.total_steps = 0
        self.lr_history: list[float] = []
        self._warmup = int(self.warmup_steps)
        self.optimizer.register_step_post_hook(lambda *args: self._after_step())

    def _set_lr(self) -> float:
        factor = lr_factor(self.global_step, self.total_steps, self._warmup, self.lr_scheduler)
        lr = self.learning_rate * factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _after_step(self) -> None:
        self.lr_history.append(self.optimizer.param_groups[0]["lr"])
        self.global_step += 1
        self._set_lr()

    def fit(self, train_data: Any, valid_data: Any = None, *args: Any, **kwargs: Any) -> Any:
        r"""RecBole's ``fit``, with the schedule laid out over ``epochs * len(train_data)`` steps
        (continued from ``start_epoch`` when resuming)."""
        steps_per_epoch = len(train_data)
        self.total_steps = self.epochs * steps_per_epoch
        if self.warmup_epochs:
            self._warmup = round(self.warmup_epochs * steps_per_epoch)
        self.global_step = self.start_epoch * steps_per_epoch
        lr = self._set_lr()
        if self._warmup >= self.total_steps > 0:
            self.logger.warning(
                f"the warm-up ({self._warmup} steps) is as long as the whole run "
                f"({self.total_steps} steps): the learning rate never reaches learning_rate; "
                f"lower warmup_steps or use warmup_epochs."
            )
        self.logger.info(
            set_color("lr schedule", "pink")
            + f": {self.lr_scheduler}, {self._warmup} warm-up steps of {self.total_steps}, "
            f"start lr {lr:.3g}"
        )
        return super().fit(train_data, valid_data, *args, **kwargs)


class RPGTrainer(SemanticIDTrainer):
    r"""The trainer of model RPG (found by name by :func:`recbole_fair.utils.get_trainer`)."""


class FAIRTrainer(SemanticIDTrainer):
    r"""The trainer of model FAIR: RPG's recipe (warm-up + cosine), see properties/model/FAIR.yaml."""


class TIGERTrainer(SemanticIDTrainer):
    r"""The trainer of model TIGER: RecBole's (TIGER.yaml sets no schedule: a constant rate) with
    the sync-free loop and ``autocast_dtype``."""
