r"""recbole_fair.tokenizer.quantizer
#################################

Item embeddings -> a code at each of ``L`` digits per item with faiss: optional PCA (with
optional whitening), then an OPQ rotation (``faiss.OPQMatrix``) and a product quantizer of ``L``
sub-quantizers, one per digit, with ``codebook_size`` centroids (codes) each (one faiss k-means
per digit). This is what RPG's ``faiss.index_factory(d, f"OPQ{L},IVF1,PQ{L}x8",
METRIC_INNER_PRODUCT)`` computes (its single IVF centroid only shifts the data, which k-means is
invariant to), built from the parts so that ``codebook_size`` other than 256 and the seeds can
be set.

Everything is fitted on the training-split items only, then all items are encoded.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from logging import getLogger
from typing import Callable, Iterator

import faiss
import numpy as np

from recbole_fair.errors import UserInputError
from recbole_fair.tokenizer.codes import collision_rate, separate_collisions
from recbole_fair.tokenizer.settings import check_collision_mode


def default_threads() -> int:
    r"""Half the cores (at most 16): faiss' OpenMP threads busy-wait, and on a machine shared
    with other work (or with a data loader) using every core makes k-means several times
    slower."""
    return max(1, min(16, (os.cpu_count() or 2) // 2))


@contextmanager
def faiss_threads(n_threads: int | None = None) -> Iterator[None]:
    r"""Run faiss with ``n_threads`` OpenMP threads (default :func:`default_threads`)."""
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(n_threads or default_threads()))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def codebook_bits(codebook_size: int) -> int:
    r"""``log2(codebook_size)``; raises ``ValueError`` unless it is a power of two in [2, 2^16]."""
    size = int(codebook_size)
    if size < 2 or size & (size - 1) or size > 1 << 16:
        raise UserInputError(
            f"codebook_size must be a power of two between 2 and 65536 (faiss PQ uses "
            f"log2(codebook_size) bits per code), got [{codebook_size}]."
        )
    return size.bit_length() - 1


# The fewest training items faiss can fit on, measured with faiss-cpu 1.15.1 (recorded here so
# that a faiss upgrade can be checked against it):
#
# * ``OPQMatrix.train`` on ``n`` items of dimension ``d`` needs ``n >= d``. Below, it writes past
#   a buffer of ``d * n`` floats (its ``X^T * reconstruction`` product is ``d * d``) and corrupts
#   the heap: exit 139 (segfault), 134 ("double free or corruption", "free(): invalid size") or
#   a hang in ``free()``, never a Python exception. Measured by a binary search on ``n`` of a
#   plain faiss PCA/OPQ/PQ fit under valgrind memcheck (an invalid write in
#   ``OPQMatrix::train``'s ``sgemm`` counts as a failure): smallest clean ``n`` = ``d`` for
#   ``d`` = 48, 64, 96, 128 (``n = d - 1`` invalid every time) and for OPQ after a PCA 256 -> 32
#   (``d`` = 32); without valgrind, 300 and 383 items of dimension 384 crash, 384 do not.
# * ``PCAMatrix.train`` to ``d_out`` dimensions raises a RuntimeError ("PCA matrix cannot output
#   ...") for ``n < d_out``; at ``n == d_out`` the last component has eigenvalue ~0 (the centred
#   data have rank ``n - 1``), so whitening (``sid_pca_whiten``) gives NaN codes. ``n >= d_out + 1``
#   fits (measured for 384 -> 32, 256, 384 and 64 -> 16, with and without whitening).
# * The product quantizer's k-means needs ``n >= codebook_size`` (else a RuntimeError); it has
#   no dimension limit (16 items of dimension 384 into 16 centroids: valgrind-clean).
def min_training_items(dim: int | None, codebook_size: int, pca_dim: int | None = None) -> int:
    r"""The fewest training items the PCA -> OPQ -> PQ fit can take: ``codebook_size``, the
    dimension the OPQ rotates (``dim`` without PCA, ``pca_dim`` with it) and, with PCA,
    ``pca_dim + 1`` (see the measurements above). ``dim`` None (not known yet): that term is
    left out."""
    needs = [int(codebook_size)]
    if pca_dim:
        needs.append(int(pca_dim) + 1)  # PCA; the OPQ then rotates pca_dim <= n - 1 dimensions
    elif dim is not None:
        needs.append(int(dim))  # OPQ
    return max(needs)


def _too_few_items_message(
    dim: int | None, n_train: int, n_digits: int, codebook_size: int, pca_dim: int | None
) -> str:
    need = min_training_items(dim, codebook_size, pca_dim)
    if pca_dim:
        what = (
            f"PCA to sid_pca_dim [{pca_dim}] dimensions (it needs sid_pca_dim + 1 items) and "
            f"OPQ on them"
        )
        dim_short = n_train <= pca_dim
        why = (
            " (faiss' PCA fails with fewer items than output dimensions and is degenerate, NaN "
            "when whitened, with as many)"
        )
    else:
        what = (
            f"OPQ on the {dim}-dimensional text embeddings (text_encoder)"
            if dim is not None
            else "OPQ on the text embeddings, which needs at least as many training items as "
            "their dimension (e.g. 384 for all-MiniLM-L6-v2) unless sid_pca_dim is below the "
            "number of training items"
        )
        dim_short = dim is not None and n_train < dim
        why = (
            " (faiss' OPQ corrupts memory, a crash or a hang, with fewer training items than "
            "dimensions)"
        )
    changes = []  # settings that, all together, make the data enough
    if dim_short:
        best = (n_train - 1) // n_digits * n_digits  # PCA needs n > sid_pca_dim, a multiple of L
        if best >= n_digits:
            changes.append(
                f"set sid_pca_dim to at most {n_train - 1} and a multiple of n_codes "
                f"[{n_digits}], e.g. sid_pca_dim: {best}"
            )
        else:
            changes.append(
                f"lower n_codes [{n_digits}] and set sid_pca_dim to a multiple of it below "
                f"{n_train}"
            )
    if n_train < codebook_size:
        smaller = 1 << (max(n_train, 2).bit_length() - 1)
        changes.append(f"use a smaller codebook_size (a power of two <= {n_train}, e.g. {smaller})")
    ways = [" and ".join(changes)] if changes else []
    ways.append(
        "use more data (looser user_inter_num_interval / item_inter_num_interval filters, "
        "or a larger dataset)"
    )
    return (
        f"Only {n_train} items occur in the training split, but the semantic-ID quantizer "
        f"needs at least {need}: codebook_size [{codebook_size}] centroids per sub-quantizer "
        f"and {what}" + (why if dim_short else "") + ". Ways out: " + "; or ".join(ways) + "."
    )


def check_quantizer_args(
    dim: int | None, n_train: int, n_digits: int, codebook_size: int, pca_dim: int | None = None
) -> int | None:
    r"""Validate the settings before training: every check that faiss needs is made here,
    before faiss is called (some bad inputs crash faiss instead of raising, see
    :func:`min_training_items`).

    Args:
        dim: text embedding dimension (``None``: not known yet, skip the checks needing it).
        n_train: number of training items.
        n_digits, codebook_size, pca_dim: see :class:`OPQProductQuantizer`.

    Returns:
        int or None: the dimension the product quantizer sees (after PCA).

    Raises:
        ValueError: naming the numbers and the config keys to change.
    """
    codebook_bits(codebook_size)
    if n_digits < 1:
        raise UserInputError(f"n_codes must be >= 1, got [{n_digits}].")
    if pca_dim and dim is not None and pca_dim > dim:
        raise UserInputError(
            f"sid_pca_dim [{pca_dim}] is larger than the text embedding dimension [{dim}]; "
            f"use a smaller sid_pca_dim or 0 (no PCA)."
        )
    if n_train < min_training_items(dim, codebook_size, pca_dim):
        raise UserInputError(_too_few_items_message(dim, n_train, n_digits, codebook_size, pca_dim))
    d = int(pca_dim) if pca_dim else dim
    if d is not None and d % n_digits:
        where = "sid_pca_dim" if pca_dim else "the text embedding dimension"
        divisors = [k for k in range(2, d + 1) if d % k == 0]
        raise UserInputError(
            f"The embedding dimension after PCA [{d}] ({where}) is not divisible by "
            f"n_codes [{n_digits}]: each of the n_codes sub-quantizers takes d / n_codes "
            f"dimensions. Change n_codes (divisors of {d}: {divisors[:12]}) or sid_pca_dim "
            f"(a multiple of n_codes)."
        )
    return d


class OPQProductQuantizer:
    r"""PCA (optional) -> OPQ rotation -> product quantizer, fitted once, then encoding.

    Args:
        n_digits (int): ``L``, the number of digits, one sub-quantizer each (config key
            ``n_codes``).
        codebook_size (int): ``K``, the codes of each digit, one centroid each (power of two;
            256 = ``PQ{L}x8``).
        seed (int): seed of the k-means runs.
        pca_dim (int, optional): PCA output dimension; ``0``/``None`` disables PCA.
        pca_whiten (bool): whiten the PCA output (eigenvalue power -0.5).
        opq_iterations (int): alternating OPQ iterations (faiss default 50).
        kmeans_iterations (int): k-means iterations of the final codebooks (faiss PQ default 25).
        n_threads (int, optional): faiss OpenMP threads.
    """

    def __init__(
        self,
        n_digits: int = 32,
        codebook_size: int = 256,
        seed: int = 2020,
        pca_dim: int | None = None,
        pca_whiten: bool = False,
        opq_iterations: int = 50,
        kmeans_iterations: int = 25,
        n_threads: int | None = None,
    ) -> None:
        self.n_digits = int(n_digits)
        self.codebook_size = int(codebook_size)
        self.nbits = codebook_bits(codebook_size)
        self.seed = int(seed)
        self.pca_dim = int(pca_dim) if pca_dim else 0
        self.pca_whiten = bool(pca_whiten)
        self.opq_iterations = int(opq_iterations)
        self.kmeans_iterations = int(kmeans_iterations)
        self.n_threads = n_threads
        self.pca: faiss.PCAMatrix | None = None
        self.opq: faiss.OPQMatrix | None = None
        self.centroids: np.ndarray | None = None  # [L, K, d / L]

    @property
    def threads(self) -> int:
        r"""The faiss OpenMP threads it runs with: ``n_threads``, else :func:`default_threads`
        (the codes depend on it: faiss' k-means sums in a thread-dependent order)."""
        return int(self.n_threads or default_threads())

    def fit(self, x: np.ndarray) -> OPQProductQuantizer:
        r"""Fit PCA, OPQ and PQ on the training items.

        The OPQ rotation is trained by faiss' ``OPQMatrix`` (alternating PQ k-means and
        Procrustes rotation, ``opq_iterations`` rounds). The final codebooks are then trained on
        the rotated data, one faiss k-means per digit seeded ``seed + digit`` (faiss'
        ``ProductQuantizer.train`` seeds every digit alike, so the items drawn as initial
        centroids would get the same code at every digit).

        Args:
            x: float32 ``[n_train, dim]`` embeddings of the training-split items.

        Returns:
            OPQProductQuantizer: ``self``.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, dim = x.shape
        d = check_quantizer_args(dim, n, self.n_digits, self.codebook_size, self.pca_dim)
        if n < 39 * self.codebook_size:
            getLogger().warning(
                f"Product quantizer: {n} training items for {self.codebook_size} centroids per "
                f"sub-quantizer (faiss recommends >= {39 * self.codebook_size}); codes may be "
                f"less balanced. A smaller codebook_size trains better on small datasets."
            )
        dsub = d // self.n_digits
        with faiss_threads(self.threads):
            if self.pca_dim:
                self.pca = faiss.PCAMatrix(dim, d, -0.5 if self.pca_whiten else 0.0, False)
                self.pca.train(x)
                x = self.pca.apply(x)  # [n, d]
            self.opq = faiss.OPQMatrix(d, self.n_digits)
            self.opq.niter = self.opq_iterations
            opq_pq = faiss.ProductQuantizer(d, self.n_digits, self.nbits)
            opq_pq.cp.seed = self.seed
            opq_pq.cp.min_points_per_centroid = 1  # one warning above, not one per k-means
            self.opq.pq = opq_pq  # not owned by the OPQMatrix: keep the Python reference
            self.opq.train(x)
            self.opq.pq = None
            z = self.opq.apply(x).reshape(n, self.n_digits, dsub)  # [n, L, d / L], rotated
            centroids = []
            for digit in range(self.n_digits):
                kmeans = faiss.Kmeans(
                    dsub,
                    self.codebook_size,
                    niter=self.kmeans_iterations,
                    seed=self.seed + digit,
                    min_points_per_centroid=1,
                    verbose=False,
                )
                kmeans.train(np.ascontiguousarray(z[:, digit, :]))
                centroids.append(kmeans.centroids)  # [K, d / L]
        self.centroids = np.stack(centroids).astype(np.float32)  # [L, K, d / L]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        r"""PCA + OPQ rotation of embeddings: ``[n, dim] -> [n, d]``."""
        if self.opq is None:
            raise RuntimeError("OPQProductQuantizer.fit must be called before encode.")
        x = np.ascontiguousarray(x, dtype=np.float32)
        with faiss_threads(self.threads):
            if self.pca is not None:
                x = self.pca.apply(x)
            return self.opq.apply(x)

    def distances(self, x: np.ndarray) -> np.ndarray:
        r"""Squared distance of every sub-vector to the centroid of every code of its digit.

        Args:
            x: float32 ``[n, dim]`` embeddings.

        Returns:
            numpy.ndarray: float32 ``[n, L, codebook_size]``.
        """
        z = self.transform(x).reshape(len(x), self.n_digits, -1)  # [n, L, d / L]
        cross = np.einsum("nld,lkd->nlk", z, self.centroids)  # [n, L, K]
        z_sq = (z**2).sum(-1)[:, :, None]  # [n, L, 1]
        c_sq = (self.centroids**2).sum(-1)[None]  # [1, L, K]
        return np.maximum(z_sq + c_sq - 2.0 * cross, 0.0)

    def encode(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        r"""The code of every digit: the nearest centroid of its sub-vector.

        Args:
            x: float32 ``[n, dim]`` embeddings (all items).
            chunk: rows per block (bounds the ``[chunk, K]`` distance matrix).

        Returns:
            numpy.ndarray: int64 ``[n, L]`` codes in ``[0, codebook_size)``.
        """
        z = self.transform(x)  # [n, d]
        n = z.shape[0]
        dsub = self.centroids.shape[2]
        codes = np.empty((n, self.n_digits), dtype=np.int64)
        c_sq = (self.centroids**2).sum(-1)  # [L, K]
        for start in range(0, n, chunk):
            block = z[start : start + chunk].reshape(-1, self.n_digits, dsub)  # [b, L, dsub]
            for digit in range(self.n_digits):
                sub = block[:, digit, :]  # [b, dsub]
                # ||x - c||^2 up to the constant ||x||^2
                dist = c_sq[digit][None, :] - 2.0 * sub @ self.centroids[digit].T  # [b, K]
                codes[start : start + chunk, digit] = dist.argmin(axis=1)
        return codes


def quantize(
    embeddings: np.ndarray,
    train_mask: np.ndarray,
    n_digits: int = 32,
    codebook_size: int = 256,
    seed: int = 2020,
    pca_dim: int | None = None,
    pca_whiten: bool = False,
    opq_iterations: int = 50,
    n_threads: int | None = None,
    collisions: str = "keep",
    stats: dict | None = None,
) -> np.ndarray:
    r"""Fit on the masked (training) rows, encode every row.

    Args:
        embeddings: float32 ``[n_items, dim]`` (row 0 = padding item).
        train_mask: bool ``[n_items]``, True for the items of the training split.
        n_digits, codebook_size, seed, pca_dim, pca_whiten, opq_iterations, n_threads: see
            :class:`OPQProductQuantizer`.
        collisions: ``keep`` (the paper: items with the same codes share them) or ``separate``
            (:func:`~recbole_fair.tokenizer.codes.separate_collisions`).
        stats: when given, receives ``faiss_threads`` (the threads the quantizer ran with) and,
            with ``separate`` only, ``n_separated_items``, ``n_unresolved_collisions`` and
            ``collision_rate_before_separation``.

    Returns:
        numpy.ndarray: int64 ``[n_items, L]``; row 0 is all zeros.
    """
    check_collision_mode(collisions)
    train_mask = np.asarray(train_mask, dtype=bool)
    quantizer = OPQProductQuantizer(
        n_digits,
        codebook_size,
        seed,
        pca_dim,
        pca_whiten,
        opq_iterations=opq_iterations,
        n_threads=n_threads,
    )
    quantizer.fit(embeddings[train_mask])
    if stats is not None:
        stats["faiss_threads"] = quantizer.threads
    codes = quantizer.encode(embeddings)  # [n_items, L]
    codes[0] = 0
    if collisions == "separate":
        codes = _separate(codes, lambda rows: quantizer.distances(embeddings[rows]), stats)
    return codes


def _separate(
    codes: np.ndarray, distances_of: Callable[[np.ndarray], np.ndarray], stats: dict | None
) -> np.ndarray:
    r""":func:`~recbole_fair.tokenizer.codes.separate_collisions`, logged and counted in
    ``stats`` (see :func:`quantize`)."""
    before = collision_rate(codes)
    codes, moved, unresolved = separate_collisions(codes, distances_of)
    log = getLogger().warning if unresolved else getLogger().info
    log(
        f"sid_collisions=separate: {moved} items moved one digit to a tuple of their own "
        f"(collision rate before {before:.4%})"
        + (f", {unresolved} items still collide (no free one-digit change)" if unresolved else "")
    )
    if stats is not None:
        stats.update(
            n_separated_items=moved,
            n_unresolved_collisions=unresolved,
            collision_rate_before_separation=before,
        )
    return codes


__all__ = [
    "OPQProductQuantizer",
    "check_quantizer_args",
    "codebook_bits",
    "default_threads",
    "faiss_threads",
    "min_training_items",
    "quantize",
]
