r"""recbole_fair.trainer.sync_free
###############################

RecBole's :class:`~recbole.trainer.Trainer` with a training loop that never waits for the GPU
inside an epoch, and optional bfloat16 autocast.

RecBole's loop synchronises the host with the GPU several times per step: the batch is copied
from pageable memory with a blocking copy, every loss is read back (``loss.item()``) and checked
for NaN (``if torch.isnan(loss)``). Each wait empties the GPU's queue: the host cannot prepare
and launch the next step while the GPU runs this one, so a small model leaves the GPU idle most
of the time (and, with several processes sharing one GPU, each wait also waits for the others'
time slices). This loop:

* copies each batch from pinned memory without blocking (CUDA only), after the model's
  ``prepare_batch`` (when it has one) did on the host what it would otherwise ask the device
  for (:mod:`recbole_fair.model.host_batch`);
* sums the losses on the device, in float64 (the same sums as RecBole's Python floats), and
  reads them back once per epoch;
* checks for NaN once per epoch (RecBole: every step), raising the same ``ValueError``.

The parameters it trains are the same, step for step (tested against RecBole's loop).

Config keys:

* ``autocast_dtype`` [~]: ``bfloat16`` runs the training loss and the evaluation forward passes
  under ``torch.autocast(device_type, dtype=torch.bfloat16)`` (CPU and CUDA); ``~`` (or
  ``float32``) = off, float32 throughout. Only for models that keep their ranking scores in
  float32 under autocast (class attribute ``autocast_ranks_in_float32``: FAIR, RPG, TIGER; see
  :func:`recbole_fair.model.layers.full_precision`); a RecBole model (SASRec: bfloat16 dot
  products would be its scores) is refused. RecBole's own float16 switch
  (``enable_amp``, with ``enable_scaler``) keeps RecBole's loop and cannot be combined with it.
* ``sync_free_train_loop`` [False]: for RecBole's own models (e.g. SASRec), run them with this
  trainer instead of RecBole's (see :func:`recbole_fair.quick_start.run_recbole_fair`);
  recbole-fair's trainers always use this loop.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer
from recbole.utils import get_gpu_usage, set_color
from torch.nn.utils.clip_grad import clip_grad_norm_
from tqdm import tqdm

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16}
FLOAT32 = (None, "", "none", "float32")


def autocast_dtype(value: Any) -> torch.dtype | None:
    r"""The dtype of ``autocast_dtype``: None for float32 (``~``, ``none``, ``float32``).

    Raises:
        ValueError: any other value (float16 needs a gradient scaler: RecBole's ``enable_amp``).
    """
    if value in FLOAT32:
        return None
    if value not in AUTOCAST_DTYPES:
        raise ValueError(
            f"autocast_dtype must be one of {sorted(AUTOCAST_DTYPES)} or ~ (float32), got "
            f"[{value}]; float16 needs a gradient scaler: RecBole's enable_amp/enable_scaler."
        )
    return AUTOCAST_DTYPES[value]


class SyncFreeTrainer(Trainer):
    r"""RecBole's trainer whose training loop does not synchronise the host with the device
    inside an epoch, with optional bfloat16 autocast (see the module docstring).

    Attributes:
        autocast_dtype (torch.dtype or None): the autocast dtype, None for float32.
    """

    def __init__(self, config: Any, model: Any) -> None:
        super().__init__(config, model)
        self.autocast_dtype = autocast_dtype(config["autocast_dtype"])
        if self.autocast_dtype is not None and not getattr(model, "autocast_ranks_in_float32", 0):
            raise ValueError(
                f"autocast_dtype [{config['autocast_dtype']}]: model [{config['model']}] does "
                "not keep its ranking scores in float32 under autocast (FAIR, RPG and TIGER "
                "do); drop the key for it."
            )
        if self.autocast_dtype is not None and (self.enable_amp or self.enable_scaler):
            raise ValueError(
                f"autocast_dtype [{config['autocast_dtype']}] and RecBole's enable_amp/"
                "enable_scaler (float16 autocast) exclude each other: set one of them."
            )

    # ------------------------------------------------------------------------------ helpers
    def autocast(self) -> contextlib.AbstractContextManager:
        r"""``torch.autocast`` in :attr:`autocast_dtype` on the trainer's device, or nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def batch_to_device(self, interaction: Interaction) -> Interaction:
        r"""The model's ``prepare_batch`` (on the host), then the batch on the trainer's device:
        on CUDA from pinned memory without blocking the host; the model's host-side facts
        (``host_batch``) travel with it."""
        prepare = getattr(self.model, "prepare_batch", None)
        if prepare is not None:
            interaction = prepare(interaction)
        host_batch = getattr(interaction, "host_batch", None)
        if self.device.type == "cuda":
            moved = Interaction(
                {
                    key: value.pin_memory().to(self.device, non_blocking=True)
                    for key, value in interaction.interaction.items()
                }
            )
        else:
            moved = interaction.to(self.device)
        if host_batch is not None:
            moved.host_batch = host_batch.to(self.device, non_blocking=True)
        return moved

    def train_step(self, interaction: Interaction, loss_func: Any) -> tuple[torch.Tensor, Any]:
        r"""Forward and backward of one batch already on the device (no optimizer step).

        Returns:
            tuple: the total loss (a tensor) and the loss parts as the model returned them.
        """
        sync_loss = 0
        if not self.config["single_spec"]:
            self.set_reduce_hook()
            sync_loss = self.sync_grad_loss()
        with self.autocast():
            losses = loss_func(interaction)
        loss = sum(losses) if isinstance(losses, tuple) else losses
        (loss + sync_loss).backward()
        return loss, losses

    # ------------------------------------------------------------------------------ training
    def _train_epoch(
        self, train_data: Any, epoch_idx: int, loss_func: Any = None, show_progress: bool = False
    ) -> Any:
        r"""One training epoch; returns the sum of the batches' losses (a tuple per loss part
        when the model returns several), as RecBole's ``_train_epoch``."""
        if self.enable_amp or self.enable_scaler:  # RecBole's float16 autocast and its scaler
            return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        self.model.train()
        loss_func = loss_func or self.model.calculate_loss
        iter_data = (
            tqdm(
                train_data,
                total=len(train_data),
                ncols=100,
                desc=set_color(f"Train {epoch_idx:>5}", "pink"),
            )
            if show_progress
            else train_data
        )
        if not self.config["single_spec"] and train_data.shuffle:
            train_data.sampler.set_epoch(epoch_idx)

        total: torch.Tensor | None = None  # float64 on the device: one entry per loss part
        parts = False
        nan: torch.Tensor | None = None
        for interaction in iter_data:
            interaction = self.batch_to_device(interaction)
            self.optimizer.zero_grad()
            loss, losses = self.train_step(interaction, loss_func)
            parts = isinstance(losses, tuple)
            step = (
                torch.stack([part.detach().to(torch.float64) for part in losses])
                if parts
                else losses.detach().to(torch.float64).reshape(1)
            )
            total = step if total is None else total + step
            is_nan = torch.isnan(loss.detach())
            nan = is_nan if nan is None else nan | is_nan
            if self.clip_grad_norm:
                clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
            self.optimizer.step()
            if self.gpu_available and show_progress:
                iter_data.set_postfix_str(
                    set_color("GPU RAM: " + get_gpu_usage(self.device), "yellow")
                )
        if total is None:
            return None
        if bool(nan):  # the epoch's one wait for the device, with the read-back below
            raise ValueError("Training loss is nan")
        sums = total.tolist()
        return tuple(sums) if parts else sums[0]

    # ------------------------------------------------------------------------------ evaluation
    def evaluate(self, eval_data: Any, *args: Any, **kwargs: Any) -> Any:
        r"""RecBole's ``evaluate`` under :meth:`autocast` (the models score in float32)."""
        with self.autocast():
            return super().evaluate(eval_data, *args, **kwargs)


__all__ = ["AUTOCAST_DTYPES", "SyncFreeTrainer", "autocast_dtype"]
