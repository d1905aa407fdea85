r"""recbole_fair.tokenizer.rqvae
#############################

TIGER's semantic IDs: a residual-quantized VAE (RQ-VAE) on the item text embeddings, plus one
extra digit that makes colliding IDs unique, with a content-keyed cache.

* :class:`RQVAE`: MLP encoder ``dim -> hidden_sizes -> code_dim``, ``levels`` residual
  codebooks of ``codebook_size`` codewords, MLP decoder back to ``dim``. Loss =
  ``||x - x̂||² + Σ_l ||sg[r_l] - e_l||² + β ||r_l - sg[e_l]||²`` (squared norms, batch means), straight-through gradients to the
  encoder, codebooks initialised by k-means (faiss) on the residuals of the first batch.
* :func:`train_rqvae`: Adam/AdamW on the training-split items only.
* :func:`add_collision_digit`: digit ``levels + 1`` = rank of the item among the items sharing
  its first ``levels`` codes (``0..n-1`` in item-id order).
* :func:`build_rqvae_semantic_ids`: text -> embeddings (the tokenizer's cached encoder step,
  shared with FAIR) -> RQ-VAE codes -> unique IDs, cached in ``sid_cache_dir`` as
  ``rqvae-<key>.npz`` under the same rules as :mod:`recbole_fair.tokenizer.semantic_ids` (atomic
  writes, checksums, key = hash of the texts, text settings, training items, every RQ-VAE
  setting and the seed; a corrupt or stale file is reported with a warning and rebuilt).

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." in NeurIPS 2023.

Reference:
    Neil Zeghidour et al. "SoundStream: An End-to-End Neural Audio Codec." TASLP 2021
    (residual vector quantisation); Doyup Lee et al. "Autoregressive Image Generation using
    Residual Quantization." in CVPR 2022.
"""

from __future__ import annotations

import dataclasses
import os
import time
from logging import getLogger
from typing import Any, Sequence

import faiss
import numpy as np
import torch
from recbole.utils import set_color
from torch import nn

from recbole_fair.tokenizer.encoder import EncoderFn
from recbole_fair.tokenizer.quantizer import faiss_threads
from recbole_fair.tokenizer.semantic_ids import (
    CACHE_FORMAT_VERSION,
    SemanticIDs,
    SemanticIDSettings,
    _embeddings,
    _sha256,
    duplicate_text_items,
    embedding_cache_key,
    load_cached_semantic_ids,
    quality_report,
    save_semantic_ids,
)

#: bump when the RQ-VAE training or the meaning of its cache entries changes
RQVAE_FORMAT_VERSION = 1
OPTIMIZERS = ("adam", "adamw")


@dataclasses.dataclass
class RQVAESettings:
    r"""Every setting of the RQ-VAE (the config keys of the same name, ``properties/model/
    TIGER.yaml``). All of them, and the seed, enter the cache key.

    Attributes:
        rqvae_levels (int): residual quantisation levels (codes per item before the extra digit).
        rqvae_codebook_size (int): codewords per level.
        rqvae_code_dim (int): dimension of the latent and of the codewords.
        rqvae_hidden_sizes (list of int): hidden widths of the MLP encoder (decoder: reversed).
        rqvae_beta (float): commitment weight β.
        rqvae_epochs (int): training epochs over the training-split items.
        rqvae_batch_size (int): items per batch.
        rqvae_learning_rate (float): learning rate.
        rqvae_weight_decay (float): weight decay.
        rqvae_optimizer (str): ``adamw`` or ``adam``.
        rqvae_kmeans_init (bool): initialise each codebook by k-means on the first batch.
        rqvae_kmeans_iters (int): k-means iterations of that initialisation.
        rqvae_reset_dead_codes (bool): after each epoch, move the codewords no item chose to
            random residuals of the last batch (codebook expiry, as SoundStream/Jukebox).
        rqvae_seed (int or None): seed of the weights, batches and k-means; ``None`` = ``sid_seed``.
    """

    rqvae_levels: int = 3
    rqvae_codebook_size: int = 256
    rqvae_code_dim: int = 32
    rqvae_hidden_sizes: list = dataclasses.field(default_factory=lambda: [512, 256, 128])
    rqvae_beta: float = 0.25
    rqvae_epochs: int = 200
    rqvae_batch_size: int = 1024
    rqvae_learning_rate: float = 1e-3
    rqvae_weight_decay: float = 1e-4
    rqvae_optimizer: str = "adamw"
    rqvae_kmeans_init: bool = True
    rqvae_kmeans_iters: int = 25
    rqvae_reset_dead_codes: bool = True
    rqvae_seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rqvae_hidden_sizes, int):
            self.rqvae_hidden_sizes = [self.rqvae_hidden_sizes]
        self.rqvae_hidden_sizes = [int(h) for h in (self.rqvae_hidden_sizes or [])]
        for key in (
            "rqvae_levels",
            "rqvae_codebook_size",
            "rqvae_code_dim",
            "rqvae_epochs",
            "rqvae_batch_size",
            "rqvae_kmeans_iters",
        ):
            setattr(self, key, int(getattr(self, key)))
        for key in ("rqvae_beta", "rqvae_learning_rate", "rqvae_weight_decay"):
            setattr(self, key, float(getattr(self, key)))
        self.rqvae_kmeans_init = bool(self.rqvae_kmeans_init)
        self.rqvae_reset_dead_codes = bool(self.rqvae_reset_dead_codes)
        self.rqvae_optimizer = str(self.rqvae_optimizer).lower()
        if self.rqvae_seed is not None:
            self.rqvae_seed = int(self.rqvae_seed)
        self.validate()

    def validate(self) -> None:
        r"""Raise a ``ValueError`` naming the key of the first invalid setting."""
        positive = {
            "rqvae_levels": 1,
            "rqvae_codebook_size": 2,
            "rqvae_code_dim": 1,
            "rqvae_batch_size": 1,
            "rqvae_kmeans_iters": 1,
        }
        for key, low in positive.items():
            if getattr(self, key) < low:
                raise ValueError(f"{key} must be >= {low}, got [{getattr(self, key)}].")
        if self.rqvae_epochs < 0:
            raise ValueError(f"rqvae_epochs must be >= 0, got [{self.rqvae_epochs}].")
        if any(h < 1 for h in self.rqvae_hidden_sizes):
            raise ValueError(
                f"rqvae_hidden_sizes must be positive widths, got {self.rqvae_hidden_sizes}."
            )
        for key in ("rqvae_beta", "rqvae_weight_decay"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got [{getattr(self, key)}].")
        if self.rqvae_learning_rate <= 0:
            raise ValueError(f"rqvae_learning_rate must be > 0, got [{self.rqvae_learning_rate}].")
        if self.rqvae_optimizer not in OPTIMIZERS:
            raise ValueError(
                f"rqvae_optimizer must be one of {list(OPTIMIZERS)}, got [{self.rqvae_optimizer}]."
            )

    @classmethod
    def from_config(cls, config: Any) -> RQVAESettings:
        r"""Read the settings from a RecBole ``Config``; missing keys take the defaults."""
        values = {}
        for field in dataclasses.fields(cls):
            value = config[field.name] if field.name in config else None
            if value is not None:
                values[field.name] = value
        return cls(**values)

    def seed(self, sid_seed: int) -> int:
        r"""The effective seed: ``rqvae_seed``, else ``sid_seed``."""
        return int(self.rqvae_seed if self.rqvae_seed is not None else sid_seed)


# ------------------------------------------------------------------------------------ model
def squared_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""``||x - y||²`` summed over the last dimension, averaged over the rows (the paper's
    norms; a per-element mean would shrink the reconstruction term by the embedding dimension
    and let the quantisation terms collapse the latent)."""
    return (x - y).pow(2).sum(-1).mean()


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    r"""``Linear -> ReLU -> ... -> Linear`` through ``sizes`` (no activation at the end)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    r"""Residual-quantized autoencoder of item embeddings.

    Args:
        in_dim (int): dimension of the text embeddings.
        hidden_sizes (list of int): encoder widths (the decoder uses them reversed).
        code_dim (int): latent / codeword dimension.
        levels (int): residual codebooks.
        codebook_size (int): codewords per codebook.
        beta (float): commitment weight.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_sizes: Sequence[int] = (512, 256, 128),
        code_dim: int = 32,
        levels: int = 3,
        codebook_size: int = 256,
        beta: float = 0.25,
    ) -> None:
        super().__init__()
        self.levels = int(levels)
        self.codebook_size = int(codebook_size)
        self.beta = float(beta)
        self.encoder = mlp([in_dim, *hidden_sizes, code_dim])
        self.decoder = mlp([code_dim, *reversed(list(hidden_sizes)), in_dim])
        self.codebooks = nn.Parameter(torch.empty(levels, codebook_size, code_dim))  # [M, K, D]
        nn.init.uniform_(self.codebooks, -1.0 / codebook_size, 1.0 / codebook_size)
        self.register_buffer("initialised", torch.tensor(False))

    @staticmethod
    def nearest(residual: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        r"""Index of the nearest codeword of every row.

        Args:
            residual (torch.Tensor): shape ``[N, D]``.
            codebook (torch.Tensor): shape ``[K, D]``.

        Returns:
            torch.Tensor: LongTensor ``[N]``.
        """
        # ||r - e||^2 up to the constant ||r||^2
        dist = (codebook**2).sum(-1).unsqueeze(0) - 2.0 * residual @ codebook.t()  # [N, K]
        return dist.argmin(dim=-1)

    @torch.no_grad()
    def kmeans_init(self, x: torch.Tensor, seed: int, n_iter: int = 25) -> None:
        r"""Initialise every codebook with faiss k-means on the residuals of ``x`` (one batch of
        inputs), level by level.

        Args:
            x (torch.Tensor): input embeddings, shape ``[N, in_dim]`` with ``N >= codebook_size``.
            seed (int): k-means seed (``seed + level``).
            n_iter (int): k-means iterations.
        """
        residual = self.encoder(x).float()  # [N, D]
        for level in range(self.levels):
            data = np.ascontiguousarray(residual.cpu().numpy(), dtype=np.float32)
            kmeans = faiss.Kmeans(
                data.shape[1],
                self.codebook_size,
                niter=int(n_iter),
                seed=int(seed) + level,
                min_points_per_centroid=1,
                max_points_per_centroid=1 << 20,
                verbose=False,
            )
            with faiss_threads():
                kmeans.train(data)
            centroids = torch.from_numpy(kmeans.centroids).to(self.codebooks)  # [K, D]
            self.codebooks.data[level] = centroids
            residual = residual - centroids[self.nearest(residual, centroids)]
        self.initialised.fill_(True)

    @torch.no_grad()
    def reset_dead_codes(
        self, x: torch.Tensor, used: torch.Tensor, generator: torch.Generator
    ) -> int:
        r"""Move every unused codeword onto a random residual of ``x`` at its level.

        Args:
            x (torch.Tensor): a batch of inputs, shape ``[N, in_dim]``.
            used (torch.Tensor): bool ``[M, K]``, codewords chosen during the epoch.
            generator (torch.Generator): CPU generator drawing the residuals.

        Returns:
            int: codewords moved.
        """
        residual = self.encoder(x)  # [N, D]
        moved = 0
        for level in range(self.levels):
            codebook = self.codebooks.data[level]  # [K, D]
            dead = torch.nonzero(~used[level]).flatten()
            if len(dead):
                pick = torch.randint(len(residual), (len(dead),), generator=generator)
                codebook[dead] = residual[pick.to(residual.device)]
                moved += len(dead)
            residual = residual - codebook[self.nearest(residual, codebook)]
        return moved

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Residual quantisation of latents.

        Args:
            z (torch.Tensor): encoder outputs, shape ``[N, D]``.

        Returns:
            tuple: ``z_q`` (sum of the chosen codewords, ``[N, D]``), ``codes`` (``[N, M]``) and the
            quantisation loss ``Σ_l ||sg[r_l] - e_l||² + β ||r_l - sg[e_l]||²`` (batch mean).
        """
        residual = z
        z_q = torch.zeros_like(z)
        codes, loss = [], z.new_zeros(())
        for level in range(self.levels):
            codebook = self.codebooks[level]  # [K, D]
            index = self.nearest(residual.detach(), codebook.detach())  # [N]
            e = codebook[index]  # [N, D]
            loss = loss + squared_error(e, residual.detach())
            loss = loss + self.beta * squared_error(residual, e.detach())
            z_q = z_q + e
            residual = residual - e.detach()
            codes.append(index)
        return z_q, torch.stack(codes, dim=1), loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Encode, quantise (straight-through), decode.

        Args:
            x (torch.Tensor): embeddings, shape ``[N, in_dim]``.

        Returns:
            tuple: reconstruction ``[N, in_dim]``, codes ``[N, M]``, quantisation loss (scalar).
        """
        z = self.encoder(x)  # [N, D]
        z_q, codes, quant_loss = self.quantize(z)
        z_st = z + (z_q - z).detach()  # straight-through estimator
        return self.decoder(z_st), codes, quant_loss

    @torch.no_grad()
    def encode(self, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        r"""Codes of every row, shape ``[N, M]`` (LongTensor), computed in chunks."""
        out = []
        for start in range(0, x.size(0), chunk):
            _, codes, _ = self.quantize(self.encoder(x[start : start + chunk]))
            out.append(codes)
        return torch.cat(out, 0) if out else x.new_zeros((0, self.levels), dtype=torch.long)


def train_rqvae(
    embeddings: np.ndarray,
    settings: RQVAESettings,
    seed: int,
    device: str | torch.device = "cpu",
    log_every: int = 0,
) -> tuple[RQVAE, dict]:
    r"""Train an :class:`RQVAE` on the given (training-split) embeddings.

    Runs under :func:`torch.random.fork_rng`, so the global RNG state is left untouched.

    Args:
        embeddings: float32 ``[n_train, dim]``.
        settings: see :class:`RQVAESettings`.
        seed: weights, batch order and k-means seed.
        device: training device.
        log_every: log the losses every ``log_every`` epochs (0 = first and last only).

    Returns:
        tuple: the trained model (eval mode, on ``device``) and a history dict with
        ``recon_loss``/``quant_loss`` (epoch means) and ``codebook_usage`` (share of each level's
        codewords chosen) per epoch.

    Raises:
        ValueError: fewer training items than ``rqvae_codebook_size``.
    """
    n, dim = embeddings.shape
    K = settings.rqvae_codebook_size
    if settings.rqvae_kmeans_init and n < K:
        raise ValueError(
            f"Only {n} items occur in the training split, fewer than rqvae_codebook_size [{K}]: "
            f"the k-means initialisation cannot place {K} codewords. Lower rqvae_codebook_size "
            f"(<= {n}) or use more data."
        )
    device = torch.device(device)
    logger = getLogger()
    history: dict[str, list] = {"recon_loss": [], "quant_loss": [], "codebook_usage": []}
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = RQVAE(
            dim,
            settings.rqvae_hidden_sizes,
            settings.rqvae_code_dim,
            settings.rqvae_levels,
            K,
            settings.rqvae_beta,
        ).to(device)
        x = torch.as_tensor(np.ascontiguousarray(embeddings), dtype=torch.float32, device=device)
        opt_class = torch.optim.AdamW if settings.rqvae_optimizer == "adamw" else torch.optim.Adam
        optimizer = opt_class(
            model.parameters(),
            lr=settings.rqvae_learning_rate,
            weight_decay=settings.rqvae_weight_decay,
        )
        generator = torch.Generator().manual_seed(seed)
        batch_size = min(settings.rqvae_batch_size, n)
        if settings.rqvae_kmeans_init:
            first = torch.randperm(n, generator=generator)[: max(batch_size, K)].to(device)
            model.kmeans_init(x[first], seed, settings.rqvae_kmeans_iters)
        model.train()
        for epoch in range(settings.rqvae_epochs):
            order = torch.randperm(n, generator=generator).to(device)
            recon_sum = quant_sum = 0.0
            used = torch.zeros(model.levels, K, dtype=torch.bool, device=device)
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
            history["recon_loss"].append(recon_sum / n)
            history["quant_loss"].append(quant_sum / n)
            history["codebook_usage"].append(used.float().mean(1).tolist())
            if settings.rqvae_reset_dead_codes and epoch < settings.rqvae_epochs - 1:
                model.reset_dead_codes(x[order[:batch_size]], used, generator)
            last = epoch == settings.rqvae_epochs - 1
            if epoch == 0 or last or (log_every and (epoch + 1) % log_every == 0):
                logger.info(
                    set_color("RQ-VAE", "green")
                    + f" epoch {epoch + 1}/{settings.rqvae_epochs}: reconstruction "
                    f"{history['recon_loss'][-1]:.6f}, quantisation {history['quant_loss'][-1]:.6f}"
                )
    model.eval()
    return model, history


# ------------------------------------------------------------------------------- collisions
def add_collision_digit(codes: np.ndarray) -> np.ndarray:
    r"""Append a digit that makes the code tuples of the real items unique.

    Items sharing their first ``M`` codes get ``0, 1, ..., n-1`` in item-id order; an item
    without a twin gets 0. Row 0 (the padding item) stays all zeros and is ignored.

    Args:
        codes: int64 ``[n_items, M]``.

    Returns:
        numpy.ndarray: int64 ``[n_items, M + 1]``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_items = codes.shape[0]
    extra = np.zeros(n_items, dtype=np.int64)
    if n_items > 1:
        _, group = np.unique(codes[1:], axis=0, return_inverse=True)
        group = group.reshape(-1)
        order = np.argsort(group, kind="stable")  # by group, then item id
        sorted_group = group[order]
        starts = np.r_[0, np.flatnonzero(sorted_group[1:] != sorted_group[:-1]) + 1]
        first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        extra[1:][order] = np.arange(len(order)) - first
    out = np.concatenate([codes, extra[:, None]], axis=1)
    out[0] = 0
    return out


def collision_report(codes: np.ndarray, codebook_size: int) -> dict:
    r"""Collision statistics before and after the extra digit.

    Args:
        codes: int64 ``[n_items, M + 1]`` (the last column is the collision digit).
        codebook_size: codewords per RQ level.

    Returns:
        dict: ``quality_report`` of the full IDs (``collision_rate`` ... ; 0 collisions by
        construction) plus ``*_before_extra_digit`` counts of the ``M`` RQ-VAE codes, the
        per-level ``codebook_usage``/``entropy_bits`` of the RQ codes and ``max_collision_group``.
    """
    before = quality_report(codes[:, :-1], codebook_size)
    after = quality_report(codes, max(codebook_size, int(codes[:, -1].max()) + 1))
    return {
        "collision_rate": after["collision_rate"],
        "n_collision_groups": after["n_collision_groups"],
        "n_colliding_items": after["n_colliding_items"],
        "collision_rate_before_extra_digit": before["collision_rate"],
        "n_collision_groups_before_extra_digit": before["n_collision_groups"],
        "n_colliding_items_before_extra_digit": before["n_colliding_items"],
        "max_collision_group": int(codes[1:, -1].max()) + 1 if len(codes) > 1 else 0,
        "codebook_usage": before["codebook_usage"],
        "entropy_bits": before["entropy_bits"],
        "mean_codebook_usage": before["mean_codebook_usage"],
        "mean_entropy_bits": before["mean_entropy_bits"],
        "max_entropy_bits": before["max_entropy_bits"],
    }


# ------------------------------------------------------------------------------------ cache
def rqvae_cache_key(
    texts: Sequence[str],
    train_mask: np.ndarray,
    settings: SemanticIDSettings,
    rqvae: RQVAESettings,
) -> str:
    r"""Key of the RQ-VAE semantic-ID cache: the embedding key (texts, text fields, template,
    encoder), the training items, every RQ-VAE setting and the effective seed."""
    return _sha256(
        "rqvae",
        CACHE_FORMAT_VERSION,
        RQVAE_FORMAT_VERSION,
        embedding_cache_key(texts, settings),
        np.flatnonzero(np.asarray(train_mask, dtype=bool)).astype(np.int64),
        dataclasses.asdict(rqvae),
        rqvae.seed(settings.sid_seed),
    )[:16]


def _valid_codes(codes: np.ndarray, n_items: int, levels: int, codebook_size: int) -> bool:
    if codes.shape != (n_items, levels + 1) or codes.dtype != np.int64:
        return False
    if codes.size and (codes.min() < 0 or codes[:, :levels].max() >= codebook_size):
        return False
    if n_items > 1 and len(np.unique(codes[1:], axis=0)) != n_items - 1:
        return False  # the IDs must be unique
    return not codes[0].any()


def log_rqvae_report(report: dict) -> None:
    r"""Log the RQ-VAE semantic-ID report in RecBole's style."""
    logger = getLogger()
    logger.info(
        set_color("TIGER semantic IDs", "pink")
        + f": {report['n_items']} items x {report['rqvae_levels']} RQ-VAE codes "
        f"(codebook {report['codebook_size']}) + 1 collision digit, fitted on "
        f"{report['n_train_items']} training items, "
        + set_color("cache", "blue")
        + f" [{report['cache_key']}] {'hit' if report['cache_hit'] else 'built'} in "
        f"{report['build_seconds']:.2f}s"
    )
    logger.info(
        set_color("TIGER semantic ID quality", "pink")
        + f": collisions before the extra digit {report['collision_rate_before_extra_digit']:.4%} "
        f"({report['n_colliding_items_before_extra_digit']} items in "
        f"{report['n_collision_groups_before_extra_digit']} groups, largest "
        f"{report['max_collision_group']}), after {report['collision_rate']:.4%}; "
        f"codebook usage per level {[round(u, 3) for u in report['codebook_usage']]}, mean "
        f"entropy {report['mean_entropy_bits']:.2f}/{report['max_entropy_bits']:.0f} bits"
    )


def build_rqvae_semantic_ids(
    texts: Sequence[str],
    train_item_mask: np.ndarray,
    settings: SemanticIDSettings | None = None,
    rqvae: RQVAESettings | None = None,
    encoder_fn: EncoderFn | None = None,
    items_without_text: int | None = None,
) -> SemanticIDs:
    r"""TIGER semantic IDs of every item, from the cache when a valid one exists.

    Args:
        texts: ``n_items`` texts in internal item-id order (index 0 = padding item, ``""``).
        train_item_mask: bool ``[n_items]``: items of the training split; the RQ-VAE is trained
            on those rows only, then every item is encoded.
        settings: text and cache settings (:class:`SemanticIDSettings`; its quantiser fields
            are not used).
        rqvae: see :class:`RQVAESettings`.
        encoder_fn: ``list[str] -> [n, d]`` float32; ``None`` loads ``settings.text_encoder``.
        items_without_text: count for the report (default: empty texts among items 1..).

    Returns:
        SemanticIDs: ``codes`` int64 ``[n_items, rqvae_levels + 1]`` (unique rows for the real
        items, row 0 zeros), embeddings, report, cache key and path.
    """
    start = time.time()
    settings = settings or SemanticIDSettings()
    rqvae = rqvae or RQVAESettings()
    texts = list(texts)
    n_items = len(texts)
    mask = np.asarray(train_item_mask, dtype=bool).copy()
    if mask.shape != (n_items,):
        raise ValueError(
            f"train_item_mask has shape {mask.shape}, expected ({n_items},) (one per text)."
        )
    mask[0] = False
    if items_without_text is None:
        items_without_text = sum(1 for t in texts[1:] if not t.strip())
    if settings.sid_collisions != "keep":
        getLogger().warning(
            f"sid_collisions [{settings.sid_collisions}] applies to the OPQ codes of FAIR/RPG; "
            "TIGER's semantic IDs are unique by construction (a last digit numbers the items "
            "sharing a prefix), so it is not used here."
        )
    if settings.sid_method != "opq" or settings.sid_random_digits:
        getLogger().warning(
            f"sid_method [{settings.sid_method}] and sid_random_digits "
            f"[{settings.sid_random_digits}] apply to the OPQ codes of FAIR/RPG; TIGER's "
            "semantic IDs come from its RQ-VAE, so they are not used here."
        )
    M, K = rqvae.rqvae_levels, rqvae.rqvae_codebook_size
    seed = rqvae.seed(settings.sid_seed)
    cache_dir = settings.sid_cache_dir or None
    key = rqvae_cache_key(texts, mask, settings, rqvae)
    path = os.path.join(cache_dir, f"rqvae-{key}.npz") if cache_dir else None

    cached = load_cached_semantic_ids(
        path, key, n_items, lambda a: _valid_codes(a, n_items, M, K), start, log_rqvae_report
    )
    if cached is not None:
        return cached

    embeddings, embedding_hit = _embeddings(texts, settings, encoder_fn, cache_dir)
    encode_seconds = time.time() - start
    getLogger().info(
        set_color("training RQ-VAE", "green")
        + f": {M} levels x {K} codewords, dim {rqvae.rqvae_code_dim}, MLP "
        f"{rqvae.rqvae_hidden_sizes}, {rqvae.rqvae_epochs} epochs on {int(mask.sum())} "
        f"training items"
    )
    train_start = time.time()
    model, history = train_rqvae(embeddings[mask], rqvae, seed, settings.device)
    train_seconds = time.time() - train_start
    x = torch.as_tensor(embeddings, dtype=torch.float32, device=next(model.parameters()).device)
    rq_codes = model.encode(x).cpu().numpy().astype(np.int64)  # [n_items, M]
    rq_codes[0] = 0
    codes = add_collision_digit(rq_codes)  # [n_items, M + 1]
    report = {
        "tokenizer": "rqvae",
        "n_items": n_items - 1,
        "n_train_items": int(mask.sum()),
        "items_without_text": int(items_without_text),
        "n_codes": M + 1,
        "rqvae_levels": M,
        "codebook_size": K,
        "embedding_dim": int(embeddings.shape[1]),
        "text_fields": list(settings.text_fields),
        "text_template": settings.text_template,
        "text_encoder": settings.text_encoder,
        "rqvae_settings": dataclasses.asdict(rqvae),
        "rqvae_seed": seed,
        "rqvae_first_recon_loss": history["recon_loss"][0] if history["recon_loss"] else None,
        "rqvae_final_recon_loss": history["recon_loss"][-1] if history["recon_loss"] else None,
        "rqvae_final_quant_loss": history["quant_loss"][-1] if history["quant_loss"] else None,
        "rqvae_train_seconds": train_seconds,
        "n_duplicate_text_items": duplicate_text_items(texts),
        **collision_report(codes, K),
        "cache_key": key,
        "embedding_cache_hit": embedding_hit,
        "encode_seconds": encode_seconds,
        "build_seconds": time.time() - start,
        "cache_hit": False,
    }
    save_semantic_ids(path, key, codes, embeddings, report)
    log_rqvae_report(report)
    return SemanticIDs(codes, embeddings, report, key, path)


__all__ = [
    "RQVAE",
    "RQVAESettings",
    "RQVAE_FORMAT_VERSION",
    "add_collision_digit",
    "build_rqvae_semantic_ids",
    "collision_report",
    "rqvae_cache_key",
    "train_rqvae",
]
