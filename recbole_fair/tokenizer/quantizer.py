r"""recbole_fair.tokenizer.quantizer
#################################

Item embeddings -> ``L`` discrete codes per item with faiss: optional PCA (with optional
whitening), then an OPQ rotation (``faiss.OPQMatrix``) and a product quantizer of ``L``
sub-quantizers with ``codebook_size`` centroids each (one faiss k-means per digit). This is what
RPG's ``faiss.index_factory(d, f"OPQ{L},IVF1,PQ{L}x8", METRIC_INNER_PRODUCT)`` computes (its
single IVF centroid only shifts the data, which k-means is invariant to), built from the parts so
that ``codebook_size`` other than 256 and the seeds can be set.

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
    dim: int | None, n_train: int, n_codes: int, codebook_size: int, pca_dim: int | None
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
        best = (n_train - 1) // n_codes * n_codes  # PCA needs n > sid_pca_dim, a multiple of L
        if best >= n_codes:
            changes.append(
                f"set sid_pca_dim to at most {n_train - 1} and a multiple of n_codes "
                f"[{n_codes}], e.g. sid_pca_dim: {best}"
            )
        else:
            changes.append(
                f"lower n_codes [{n_codes}] and set sid_pca_dim to a multiple of it below {n_train}"
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
    dim: int | None, n_train: int, n_codes: int, codebook_size: int, pca_dim: int | None = None
) -> int | None:
    r"""Validate the settings before training: every check that faiss needs is made here,
    before faiss is called (some bad inputs crash faiss instead of raising, see
    :func:`min_training_items`).

    Args:
        dim: text embedding dimension (``None``: not known yet, skip the checks needing it).
        n_train: number of training items.
        n_codes, codebook_size, pca_dim: see :class:`OPQProductQuantizer`.

    Returns:
        int or None: the dimension the product quantizer sees (after PCA).

    Raises:
        ValueError: naming the numbers and the config keys to change.
    """
    codebook_bits(codebook_size)
    if n_codes < 1:
        raise UserInputError(f"n_codes must be >= 1, got [{n_codes}].")
    if pca_dim and dim is not None and pca_dim > dim:
        raise UserInputError(
            f"sid_pca_dim [{pca_dim}] is larger than the text embedding dimension [{dim}]; "
            f"use a smaller sid_pca_dim or 0 (no PCA)."
        )
    if n_train < min_training_items(dim, codebook_size, pca_dim):
        raise UserInputError(_too_few_items_message(dim, n_train, n_codes, codebook_size, pca_dim))
    d = int(pca_dim) if pca_dim else dim
    if d is not None and d % n_codes:
        where = "sid_pca_dim" if pca_dim else "the text embedding dimension"
        divisors = [k for k in range(2, d + 1) if d % k == 0]
        raise UserInputError(
            f"The embedding dimension after PCA [{d}] ({where}) is not divisible by "
            f"n_codes [{n_codes}]: each of the n_codes sub-quantizers takes d / n_codes "
            f"dimensions. Change n_codes (divisors of {d}: {divisors[:12]}) or sid_pca_dim "
            f"(a multiple of n_codes)."
        )
    return d


class OPQProductQuantizer:
    r"""PCA (optional) -> OPQ rotation -> product quantizer, fitted once, then encoding.

    Args:
        n_codes (int): ``L``, the number of sub-quantizers (codes per item).
        codebook_size (int): centroids per sub-quantizer (power of two; 256 = ``PQ{L}x8``).
        seed (int): seed of the k-means runs.
        pca_dim (int, optional): PCA output dimension; ``0``/``None`` disables PCA.
        pca_whiten (bool): whiten the PCA output (eigenvalue power -0.5).
        opq_iterations (int): alternating OPQ iterations (faiss default 50).
        kmeans_iterations (int): k-means iterations of the final codebooks (faiss PQ default 25).
        n_threads (int, optional): faiss OpenMP threads.
    """

    def __init__(
        self,
        n_codes: int = 32,
        codebook_size: int = 256,
        seed: int = 2020,
        pca_dim: int | None = None,
        pca_whiten: bool = False,
        opq_iterations: int = 50,
        kmeans_iterations: int = 25,
        n_threads: int | None = None,
    ) -> None:
        self.n_codes = int(n_codes)
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
        d = check_quantizer_args(dim, n, self.n_codes, self.codebook_size, self.pca_dim)
        if n < 39 * self.codebook_size:
            getLogger().warning(
                f"Product quantizer: {n} training items for {self.codebook_size} centroids per "
                f"sub-quantizer (faiss recommends >= {39 * self.codebook_size}); codes may be "
                f"less balanced. A smaller codebook_size trains better on small datasets."
            )
        dsub = d // self.n_codes
        with faiss_threads(self.threads):
            if self.pca_dim:
                self.pca = faiss.PCAMatrix(dim, d, -0.5 if self.pca_whiten else 0.0, False)
                self.pca.train(x)
                x = self.pca.apply(x)  # [n, d]
            self.opq = faiss.OPQMatrix(d, self.n_codes)
            self.opq.niter = self.opq_iterations
            opq_pq = faiss.ProductQuantizer(d, self.n_codes, self.nbits)
            opq_pq.cp.seed = self.seed
            opq_pq.cp.min_points_per_centroid = 1  # one warning above, not one per k-means
            self.opq.pq = opq_pq  # not owned by the OPQMatrix: keep the Python reference
            self.opq.train(x)
            self.opq.pq = None
            z = self.opq.apply(x).reshape(n, self.n_codes, dsub)  # [n, L, d / L], rotated
            centroids = []
            for digit in range(self.n_codes):
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
        r"""Squared distance of every sub-vector to every centroid of its digit.

        Args:
            x: float32 ``[n, dim]`` embeddings.

        Returns:
            numpy.ndarray: float32 ``[n, L, codebook_size]``.
        """
        z = self.transform(x).reshape(len(x), self.n_codes, -1)  # [n, L, d / L]
        cross = np.einsum("nld,lkd->nlk", z, self.centroids)  # [n, L, K]
        z_sq = (z**2).sum(-1)[:, :, None]  # [n, L, 1]
        c_sq = (self.centroids**2).sum(-1)[None]  # [1, L, K]
        return np.maximum(z_sq + c_sq - 2.0 * cross, 0.0)

    def encode(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        r"""Nearest centroid of every sub-vector.

        Args:
            x: float32 ``[n, dim]`` embeddings (all items).
            chunk: rows per block (bounds the ``[chunk, K]`` distance matrix).

        Returns:
            numpy.ndarray: int64 ``[n, L]`` codes in ``[0, codebook_size)``.
        """
        z = self.transform(x)  # [n, d]
        n = z.shape[0]
        dsub = self.centroids.shape[2]
        codes = np.empty((n, self.n_codes), dtype=np.int64)
        c_sq = (self.centroids**2).sum(-1)  # [L, K]
        for start in range(0, n, chunk):
            block = z[start : start + chunk].reshape(-1, self.n_codes, dsub)  # [b, L, dsub]
            for digit in range(self.n_codes):
                sub = block[:, digit, :]  # [b, dsub]
                # ||x - c||^2 up to the constant ||x||^2
                dist = c_sq[digit][None, :] - 2.0 * sub @ self.centroids[digit].T  # [b, K]
                codes[start : start + chunk, digit] = dist.argmin(axis=1)
        return codes


#: values of the ``sid_collisions`` setting
COLLISION_MODES = ("keep", "separate")
#: values of the ``sid_method`` setting
SID_METHODS = ("opq", "random")


def _check_choice(key: str, value: str, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise UserInputError(f"{key} must be one of {list(choices)}, got [{value}]{where}.")
    return value


def check_collision_mode(mode: str, where: str = "") -> str:
    r"""``mode`` if it is a value of ``sid_collisions``, else a ``ValueError`` (``where``: what to
    append to the message, e.g. the YAML file)."""
    return _check_choice("sid_collisions", mode, COLLISION_MODES, where)


def check_sid_method(method: str, where: str = "") -> str:
    r"""``method`` if it is a value of ``sid_method``, else a ``ValueError``."""
    return _check_choice("sid_method", method, SID_METHODS, where)


def random_codes(
    n_items: int,
    n_codes: int,
    codebook_size: int,
    seed: int,
    prefix: np.ndarray | None = None,
) -> np.ndarray:
    r"""Uniformly drawn codes: the random-ID ablation, or random digits after semantic ones.

    Without ``prefix``: a code tuple for every real item, all distinct. Same shape and
    vocabulary as the semantic IDs (``L`` digits of ``codebook_size`` codes), but no content:
    two items share a code only by chance (probability ``1/codebook_size`` per digit), so
    whatever a model gains from semantic IDs over these is what the text carries.
    With ``prefix`` (``[n_items, P]`` semantic codes): ``n_codes`` random digits are appended,
    so that items with the same semantic prefix still get distinct tuples (each item keeps its
    content digits plus item-specific ones).
    Rows whose full tuple an earlier row holds draw their random digits again until every tuple
    is unique.

    Args:
        n_items: rows, including the padding row 0 (all zeros).
        n_codes: random digits per item; ``codebook_size``: codes per digit.
        seed: seed of the draw (``sid_seed``).
        prefix: optional int64 ``[n_items, P]`` codes to put before the random digits.

    Returns:
        numpy.ndarray: int64 ``[n_items, P + n_codes]``.

    Raises:
        ValueError: more items share one prefix (all items, without one) than there are
            random tuples (``codebook_size ** n_codes``).
    """
    n_real = max(int(n_items) - 1, 0)
    if prefix is None:
        prefix = np.zeros((n_items, 0), dtype=np.int64)
    prefix = np.asarray(prefix, dtype=np.int64)
    width = prefix.shape[1]
    largest = int(np.unique(prefix[1:], axis=0, return_counts=True)[1].max()) if n_real else 0
    if int(codebook_size) ** int(n_codes) < largest:
        raise ValueError(
            f"random codes: {codebook_size}^{n_codes} tuples of random digits cannot give "
            f"{largest} items {'sharing one semantic prefix ' if width else ''}a tuple each; "
            f"raise n_codes or codebook_size{' or sid_random_digits' if width else ''}."
        )
    rng = np.random.default_rng(seed)
    codes = np.zeros((n_items, width + n_codes), dtype=np.int64)
    codes[:, :width] = prefix
    codes[1:, width:] = rng.integers(0, codebook_size, size=(n_real, n_codes))
    while True:
        _, first = np.unique(codes[1:], axis=0, return_index=True)
        repeat = np.setdiff1d(np.arange(n_real), first) + 1  # rows holding an earlier tuple
        if not len(repeat):
            return codes
        codes[repeat, width:] = rng.integers(0, codebook_size, size=(len(repeat), n_codes))


def collision_counts(codes: np.ndarray) -> tuple[int, int]:
    r"""Among the real items (rows 1.. of ``[n_items, L]`` codes): how many share their full
    code tuple with another item, and in how many groups."""
    _, counts = np.unique(codes[1:], axis=0, return_counts=True)
    return int(counts[counts > 1].sum()), int((counts > 1).sum())


def collision_rate(codes: np.ndarray) -> float:
    r"""Share of the real items (rows 1..) whose full code tuple another item also has."""
    return collision_counts(codes)[0] / max(len(codes) - 1, 1)


def separate_collisions(
    codes: np.ndarray, distances_of: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, int, int]:
    r"""Give every real item (rows 1..) a code tuple of its own, at the least quantization cost.

    Items sharing a full code tuple form a group. Its member with the smallest quantization
    error (sum over digits of the squared distance to its centroids; ties: lowest row) keeps the
    tuple. Every other member, in that order, moves **one** digit to another centroid: the
    (digit, centroid) change that increases its quantization error least among the changes
    giving a tuple no item has. Items with identical embeddings (duplicate texts) thus get
    distinct tuples, one digit apart, nearest first. Nothing else changes, so a model still
    sees 31 of the 32 codes it would have seen.

    Args:
        codes: int64 ``[n_items, L]`` (row 0 = padding, left alone).
        distances_of: rows ``[m]`` -> float ``[m, L, K]`` squared distances to the centroids.

    Returns:
        tuple: the new codes (a copy), the number of items moved, the number left colliding
        (only when every one-digit change of an item is taken: not reachable in practice).
    """
    codes = np.array(codes, dtype=np.int64, copy=True)
    n_codes = codes.shape[1]
    groups: dict[bytes, list[int]] = {}
    for row in range(1, len(codes)):
        groups.setdefault(codes[row].tobytes(), []).append(row)
    used = set(groups)
    moved = unresolved = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        rows = np.asarray(members)
        dist = distances_of(rows)  # [m, L, K]
        current = np.take_along_axis(dist, codes[rows][:, :, None], axis=2)[..., 0]  # [m, L]
        order = np.lexsort((rows, current.sum(1)))  # smallest error first, then lowest row
        for i in order[1:]:
            row = rows[i]
            cost = dist[i] - current[i][:, None]  # [L, K], 0 at the current codes
            cost[np.arange(n_codes), codes[row]] = np.inf
            for flat in np.argsort(cost, axis=None, kind="stable"):
                if not np.isfinite(cost.flat[flat]):
                    unresolved += 1
                    break
                digit, centroid = divmod(int(flat), cost.shape[1])
                candidate = codes[row].copy()
                candidate[digit] = centroid
                key = candidate.tobytes()
                if key not in used:
                    used.add(key)
                    codes[row] = candidate
                    moved += 1
                    break
    return codes, moved, unresolved


def quantize(
    embeddings: np.ndarray,
    train_mask: np.ndarray,
    n_codes: int = 32,
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
        n_codes, codebook_size, seed, pca_dim, pca_whiten, opq_iterations, n_threads: see
            :class:`OPQProductQuantizer`.
        collisions: ``keep`` (the paper: items with the same codes share them) or ``separate``
            (:func:`separate_collisions`).
        stats: when given, receives ``faiss_threads`` (the threads the quantizer ran with) and,
            with ``separate`` only, ``n_separated_items``, ``n_unresolved_collisions`` and
            ``collision_rate_before_separation``.

    Returns:
        numpy.ndarray: int64 ``[n_items, L]``; row 0 is all zeros.
    """
    check_collision_mode(collisions)
    train_mask = np.asarray(train_mask, dtype=bool)
    quantizer = OPQProductQuantizer(
        n_codes,
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
        before = collision_rate(codes)
        codes, moved, unresolved = separate_collisions(
            codes, lambda rows: quantizer.distances(embeddings[rows])
        )
        log = getLogger().warning if unresolved else getLogger().info
        log(
            f"sid_collisions=separate: {moved} items moved one digit to a tuple of their own "
            f"(collision rate before {before:.4%})"
            + (
                f", {unresolved} items still collide (no free one-digit change)"
                if unresolved
                else ""
            )
        )
        if stats is not None:
            stats.update(
                n_separated_items=moved,
                n_unresolved_collisions=unresolved,
                collision_rate_before_separation=before,
            )
    return codes
