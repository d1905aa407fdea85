r"""recbole_fair.flops
###################

Training FLOPs of a model, measured on one batch: one forward and backward pass of a
representative training batch under :class:`torch.utils.flop_counter.FlopCounterMode` (which
counts the matrix products and attention kernels: ``2·m·n·k`` per product, backward included),
scaled to the epoch. Measured rather than derived from the config, so that it follows the model's
actual code path (FAIR's focused attention runs two attention kernels, its NRT loss a second
encoder pass, its digit heads a batched product over 32 digits); elementwise work (norms,
activations, softmax) is not counted, as is usual for model FLOP utilisation. Attention is
counted in full (causal masks not halved) on the CPU as on CUDA
(:func:`cpu_attention_formulas`).

:func:`profile_train_step` is what a leaderboard cell records in its costs with
``count_train_flops: True`` (:func:`recbole_fair.quick_start.run_recbole_fair`): the FLOPs of
one batch and of an epoch; ``train_flops_per_epoch / train_seconds_per_epoch`` is the achieved
rate, and over the device's peak the model FLOP utilisation (``benchmarks/gpu/suite_report.py``).
On CUDA it also counts the host synchronisations of one training step
(``torch.cuda.set_sync_debug_mode``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch


def representative_batch(train_data: Any) -> Any:
    r"""A full training batch of ``train_data`` (RecBole's training dataloader) without drawing
    from its shuffling generator: rows evenly spaced over the training set, collated by the
    dataloader's own ``collate_fn`` (so the run's data order is untouched).

    Returns:
        Interaction: the batch, on the host.
    """
    n = int(train_data.sample_size)
    rows = max(1, min(int(train_data.step), n))
    index = np.unique(np.linspace(0, n - 1, rows).round().astype(np.int64))
    return train_data.collate_fn(index.tolist())


def _raw_formula(formula: Any) -> Any:
    def count(*args: Any, **kwargs: Any) -> int:
        return formula(*args, **kwargs)

    count._get_raw = True  # FlopCounterMode: the formula takes the op's arguments as they are
    return count


def cpu_attention_formulas() -> dict[Any, Any]:
    r"""FLOP formulas of the CPU's fused attention kernels, which ``FlopCounterMode`` does not
    count (it knows the CUDA ones: flash, efficient, cuDNN): the same formulas as those, so that
    a count on the CPU equals one on a GPU (causal attention counted in full, as there)."""
    from torch.utils import flop_counter

    aten = torch.ops.aten
    pairs = [
        ("_scaled_dot_product_flash_attention_for_cpu", flop_counter.sdpa_flop),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", flop_counter.sdpa_backward_flop),
    ]
    return {getattr(aten, name): _raw_formula(f) for name, f in pairs if hasattr(aten, name)}


def _one_step(trainer: Any, batch: Any) -> None:
    r"""Forward and backward of ``batch`` as the trainer's own loop would run it (its host-side
    preparation, copy and autocast when it has them), without an optimizer step."""
    model = trainer.model
    to_device = getattr(trainer, "batch_to_device", None)
    interaction = to_device(batch) if to_device is not None else batch.to(trainer.device)
    step = getattr(trainer, "train_step", None)
    if step is not None:
        step(interaction, model.calculate_loss)
        return
    losses = model.calculate_loss(interaction)
    loss = sum(losses) if isinstance(losses, tuple) else losses
    loss.backward()


def _clone_batch(batch: Any) -> Any:
    from recbole.data.interaction import Interaction

    return Interaction({key: value.clone() for key, value in batch.interaction.items()})


def profile_train_step(trainer: Any, train_data: Any) -> dict[str, Any]:
    r"""FLOPs of one training step on a representative batch, and of an epoch.

    Runs one forward and backward pass (no optimizer step) with the random number generators
    forked and the gradients cleared afterwards, so training continues exactly as without it.

    Args:
        trainer: the run's trainer (its ``model``, ``device`` and, for recbole-fair's trainers,
            ``batch_to_device``/``train_step``).
        train_data: the training dataloader.

    Returns:
        dict: ``train_flops_per_batch`` (FLOPs of one forward + backward of a full batch),
        ``train_flops_per_epoch`` (that times ``rows per epoch / rows per batch``: the last,
        partial batch counted pro rata), ``train_flops_batch_rows``, ``train_rows_per_epoch``,
        ``train_flops_by_op`` (the largest operators' share of the batch's FLOPs),
        ``host_syncs_per_step`` (CUDA only, else None: host synchronisations of one training
        step, copy included) and ``flops_profile_seconds``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    start = time.time()
    model = trainer.model
    device = torch.device(trainer.device)
    batch = representative_batch(train_data)
    rows = len(batch)
    cuda = device.type == "cuda"
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    )
    was_training = model.training
    syncs = None
    with torch.random.fork_rng(devices=devices):
        model.train()
        counter = FlopCounterMode(display=False, custom_mapping=cpu_attention_formulas())
        with counter:
            _one_step(trainer, _clone_batch(batch))
        model.zero_grad(set_to_none=True)
        if cuda:
            syncs = count_host_syncs(lambda: _one_step(trainer, _clone_batch(batch)), device)
            model.zero_grad(set_to_none=True)
    model.train(was_training)
    total = int(counter.get_total_flops())
    by_op = {
        str(op): int(count)
        for op, count in sorted(
            counter.get_flop_counts().get("Global", {}).items(), key=lambda kv: -kv[1]
        )[:8]
    }
    epoch_rows = int(train_data.sample_size)
    return {
        "train_flops_per_batch": total,
        "train_flops_per_epoch": total * epoch_rows / rows if rows else None,
        "train_flops_batch_rows": rows,
        "train_rows_per_epoch": epoch_rows,
        "train_flops_by_op": by_op,
        "host_syncs_per_step": syncs,
        "flops_profile_seconds": time.time() - start,
    }


def count_host_syncs(step: Any, device: torch.device) -> int:
    r"""Host synchronisations ``step()`` causes on a CUDA ``device`` (each blocking copy, read-back
    or ``nonzero``), counted by ``torch.cuda.set_sync_debug_mode('warn')``."""
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize(device)
    return sum("synchroniz" in str(w.message) for w in caught)


__all__ = [
    "count_host_syncs",
    "cpu_attention_formulas",
    "profile_train_step",
    "representative_batch",
]
