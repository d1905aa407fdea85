r"""recbole_fair.tokenizer.rqvae
#############################

TIGER's residual-quantized VAE (RQ-VAE) of item text embeddings: an MLP encoder
``dim -> hidden_sizes -> code_dim``, ``levels`` residual codebooks of ``codebook_size``
codewords (level ``l`` gives the code of digit ``l``), an MLP decoder back to ``dim``.
Loss = ``||x - x̂||² + Σ_l ||sg[r_l] - e_l||² + β ||r_l - sg[e_l]||²`` (squared norms, batch
means), straight-through gradients to the encoder, codebooks initialised by k-means (faiss) on
the residuals of the first batch.

Its training loop is :mod:`recbole_fair.tokenizer.rqvae_train`; the semantic IDs built from it
(plus a collision digit, cached) are
:func:`recbole_fair.tokenizer.build.build_rqvae_semantic_ids`.

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." in NeurIPS 2023.

Reference:
    Neil Zeghidour et al. "SoundStream: An End-to-End Neural Audio Codec." TASLP 2021
    (residual vector quantisation); Doyup Lee et al. "Autoregressive Image Generation using
    Residual Quantization." in CVPR 2022.
"""

from __future__ import annotations

from typing import Sequence

import faiss
import numpy as np
import torch
from torch import nn

from recbole_fair.tokenizer.quantizer import faiss_threads


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
        levels (int): residual codebooks, one per digit (``M``).
        codebook_size (int): codes per digit (``K``), one codeword each.
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
        r"""The code of every row: the index of its nearest codeword.

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
        inputs), digit by digit (level by level).

        Args:
            x (torch.Tensor): input embeddings, shape ``[N, in_dim]`` with ``N >= codebook_size``.
            seed (int): k-means seed (``seed + digit``).
            n_iter (int): k-means iterations.
        """
        residual = self.encoder(x).float()  # [N, D]
        for digit in range(self.levels):
            data = np.ascontiguousarray(residual.cpu().numpy(), dtype=np.float32)
            kmeans = faiss.Kmeans(
                data.shape[1],
                self.codebook_size,
                niter=int(n_iter),
                seed=int(seed) + digit,
                min_points_per_centroid=1,
                max_points_per_centroid=1 << 20,
                verbose=False,
            )
            with faiss_threads():
                kmeans.train(data)
            centroids = torch.from_numpy(kmeans.centroids).to(self.codebooks)  # [K, D]
            self.codebooks.data[digit] = centroids
            residual = residual - centroids[self.nearest(residual, centroids)]
        self.initialised.fill_(True)

    @torch.no_grad()
    def reset_dead_codes(
        self, x: torch.Tensor, used: torch.Tensor, generator: torch.Generator
    ) -> int:
        r"""Move every unused codeword onto a random residual of ``x`` at its digit.

        Args:
            x (torch.Tensor): a batch of inputs, shape ``[N, in_dim]``.
            used (torch.Tensor): bool ``[M, K]``, the codes chosen at each digit during the
                epoch.
            generator (torch.Generator): CPU generator drawing the residuals.

        Returns:
            int: codewords moved.
        """
        residual = self.encoder(x)  # [N, D]
        moved = 0
        for digit in range(self.levels):
            codebook = self.codebooks.data[digit]  # [K, D]
            dead = torch.nonzero(~used[digit]).flatten()
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
        for digit in range(self.levels):
            codebook = self.codebooks[digit]  # [K, D]
            code = self.nearest(residual.detach(), codebook.detach())  # [N]
            e = codebook[code]  # [N, D]
            loss = loss + squared_error(e, residual.detach())
            loss = loss + self.beta * squared_error(residual, e.detach())
            z_q = z_q + e
            residual = residual - e.detach()
            codes.append(code)
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


__all__ = ["RQVAE", "mlp", "squared_error"]
