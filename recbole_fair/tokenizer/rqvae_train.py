r"""recbole_fair.tokenizer.rqvae_train
###################################

Training of TIGER's :class:`~recbole_fair.tokenizer.rqvae.RQVAE` on the training-split items
(Adam/AdamW, optional k-means initialisation and dead-codeword reset), and the encoding of every
item with the trained model.
"""

from __future__ import annotations

from logging import getLogger

import numpy as np
import torch
from recbole.utils import set_color

from recbole_fair.tokenizer.rqvae import RQVAE, squared_error
from recbole_fair.tokenizer.settings import RQVAESettings


def _optimizer(model: RQVAE, settings: RQVAESettings) -> torch.optim.Optimizer:
    opt_class = torch.optim.AdamW if settings.rqvae_optimizer == "adamw" else torch.optim.Adam
    return opt_class(
        model.parameters(),
        lr=settings.rqvae_learning_rate,
        weight_decay=settings.rqvae_weight_decay,
    )


def _train_epoch(
    model: RQVAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
) -> tuple[float, float, torch.Tensor]:
    r"""One pass over ``x`` in the batches of ``order``.

    Returns:
        tuple: the mean reconstruction and quantisation losses per item, and bool ``[M, K]``:
        the codes chosen at each digit.
    """
    n = len(x)
    recon_sum = quant_sum = 0.0
    used = torch.zeros(model.levels, model.codebook_size, dtype=torch.bool, device=x.device)
    for start in range(0, n, batch_size):
        batch = x[order[start : start + batch_size]]  # [b, dim]
        recon, codes, quant_loss = model(batch)
        used.scatter_(1, codes.t(), True)
        recon_loss = squared_error(recon, batch)
        loss = recon_loss + quant_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recon_sum += recon_loss.item() * len(batch)
        quant_sum += quant_loss.item() * len(batch)
    return recon_sum / n, quant_sum / n, used


def _new_model(dim: int, settings: RQVAESettings) -> RQVAE:
    return RQVAE(
        dim,
        settings.rqvae_hidden_sizes,
        settings.rqvae_code_dim,
        settings.rqvae_levels,
        settings.rqvae_codebook_size,
        settings.rqvae_beta,
    )


def _log_epoch(epoch: int, epochs: int, recon: float, quant: float) -> None:
    getLogger().info(
        set_color("RQ-VAE", "green")
        + f" epoch {epoch + 1}/{epochs}: reconstruction {recon:.6f}, quantisation {quant:.6f}"
    )


def _check_training_items(n: int, settings: RQVAESettings) -> None:
    K = settings.rqvae_codebook_size
    if settings.rqvae_kmeans_init and n < K:
        raise ValueError(
            f"Only {n} items occur in the training split, fewer than rqvae_codebook_size [{K}]: "
            f"the k-means initialisation cannot place {K} codewords. Lower rqvae_codebook_size "
            f"(<= {n}) or use more data."
        )


def train_rqvae(
    embeddings: np.ndarray,
    settings: RQVAESettings,
    seed: int,
    device: str | torch.device = "cpu",
    log_every: int = 0,
) -> tuple[RQVAE, dict]:
    r"""Train an :class:`~recbole_fair.tokenizer.rqvae.RQVAE` on the given (training-split)
    embeddings.

    Runs under :func:`torch.random.fork_rng`, so the global RNG state is left untouched.

    Args:
        embeddings: float32 ``[n_train, dim]``.
        settings: see :class:`~recbole_fair.tokenizer.settings.RQVAESettings`.
        seed: weights, batch order and k-means seed.
        device: training device.
        log_every: log the losses every ``log_every`` epochs (0 = first and last only).

    Returns:
        tuple: the trained model (eval mode, on ``device``) and a history dict with
        ``recon_loss``/``quant_loss`` (epoch means) and ``codebook_usage`` (share of each
        digit's codes chosen) per epoch.

    Raises:
        ValueError: fewer training items than ``rqvae_codebook_size``.
    """
    n, dim = embeddings.shape
    _check_training_items(n, settings)
    K, epochs = settings.rqvae_codebook_size, settings.rqvae_epochs
    device = torch.device(device)
    history: dict[str, list] = {"recon_loss": [], "quant_loss": [], "codebook_usage": []}
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = _new_model(dim, settings).to(device)
        x = torch.as_tensor(np.ascontiguousarray(embeddings), dtype=torch.float32, device=device)
        optimizer = _optimizer(model, settings)
        generator = torch.Generator().manual_seed(seed)
        batch_size = min(settings.rqvae_batch_size, n)
        if settings.rqvae_kmeans_init:
            first = torch.randperm(n, generator=generator)[: max(batch_size, K)].to(device)
            model.kmeans_init(x[first], seed, settings.rqvae_kmeans_iters)
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator).to(device)
            recon, quant, used = _train_epoch(model, optimizer, x, order, batch_size)
            history["recon_loss"].append(recon)
            history["quant_loss"].append(quant)
            history["codebook_usage"].append(used.float().mean(1).tolist())
            if settings.rqvae_reset_dead_codes and epoch < epochs - 1:
                model.reset_dead_codes(x[order[:batch_size]], used, generator)
            if epoch in (0, epochs - 1) or (log_every and (epoch + 1) % log_every == 0):
                _log_epoch(epoch, epochs, recon, quant)
    model.eval()
    return model, history


def rqvae_encode(model: RQVAE, embeddings: np.ndarray) -> np.ndarray:
    r"""The RQ-VAE codes of every item.

    Args:
        model: a trained :class:`~recbole_fair.tokenizer.rqvae.RQVAE`.
        embeddings: float32 ``[n_items, dim]`` (row 0 = padding item).

    Returns:
        numpy.ndarray: int64 ``[n_items, M]``, row 0 zeros.
    """
    x = torch.as_tensor(embeddings, dtype=torch.float32, device=next(model.parameters()).device)
    codes = model.encode(x).cpu().numpy().astype(np.int64)  # [n_items, M]
    codes[0] = 0
    return codes


__all__ = ["rqvae_encode", "train_rqvae"]
