r"""recbole_fair.tokenizer.cache
#############################

The content-keyed cache of the semantic IDs (directory ``sid_cache_dir``). All files are
``.npz`` archives loaded with ``allow_pickle=False`` (nothing in them is ever unpickled, so a
planted file cannot run code) and written atomically (temporary file + ``os.replace``):

* ``emb-<key>.npz``: the text embeddings. The key hashes the item texts (one per internal item
  id, so it also covers the id mapping), the text fields, template and encoder; changing
  ``n_codes``, ``codebook_size``, PCA or the seed re-quantises without re-encoding.
* ``sid-<key>.npz``: embeddings + OPQ/PQ (or random) codes + quality report. The key hashes the
  embedding key, the training-item set and every quantiser setting.
* ``rqvae-<key>.npz``: the same for TIGER's RQ-VAE codes; the key hashes the embedding key, the
  training items, every RQ-VAE setting and the effective seed.

Every file carries its own key and a SHA-256 checksum of its arrays. A file that is truncated,
corrupt, or whose key or shapes do not match the current dataset is reported with a warning and
rebuilt, never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from logging import getLogger
from typing import Any, Callable, Sequence

import numpy as np
from recbole.utils import set_color

from recbole_fair.tokenizer.report import codes_fingerprint
from recbole_fair.tokenizer.settings import RQVAESettings, SemanticIDSettings

#: bump when the cache content or the meaning of a key changes
CACHE_FORMAT_VERSION = 1
#: bump when the RQ-VAE training or the meaning of its cache entries changes
RQVAE_FORMAT_VERSION = 1


@dataclasses.dataclass
class SemanticIDs:
    r"""Semantic IDs as built or read from the cache
    (:func:`recbole_fair.tokenizer.build.build_semantic_ids`,
    :func:`recbole_fair.tokenizer.build.build_rqvae_semantic_ids`).

    Attributes:
        codes (numpy.ndarray): int64 ``[n_items, L]``: the code at each digit of every item,
            in ``[0, codebook_size)``, row 0 zeros.
        embeddings (numpy.ndarray): float32 ``[n_items, d]`` text embeddings.
        report (dict): the quality report (see
            :func:`recbole_fair.tokenizer.report.quality_report`).
        cache_key (str): 16 hex digits naming the cache file.
        cache_path (str or None): that file (``None`` when caching is off).
    """

    codes: np.ndarray
    embeddings: np.ndarray
    report: dict
    cache_key: str
    cache_path: str | None


# ---------------------------------------------------------------------------------- hashing
def _sha256(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def texts_hash(texts: Sequence[str]) -> str:
    r"""SHA-256 of the item texts in internal-id order (lengths included, so no ambiguity)."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _train_items(train_mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(train_mask, dtype=bool)).astype(np.int64)


def embedding_cache_key(texts: Sequence[str], settings: SemanticIDSettings) -> str:
    r"""Key of the embedding cache: texts, text fields, template, encoder, format version."""
    return _sha256(
        "emb",
        CACHE_FORMAT_VERSION,
        texts_hash(texts),
        list(settings.text_fields),
        settings.text_template,
        settings.text_encoder,
    )[:16]


def semantic_id_cache_key(
    texts: Sequence[str], train_mask: np.ndarray, settings: SemanticIDSettings
) -> str:
    r"""Key of the semantic-ID cache: the embedding key plus training items and quantiser."""
    return _sha256(
        "sid",
        CACHE_FORMAT_VERSION,
        embedding_cache_key(texts, settings),
        _train_items(train_mask),
        settings.sid_pca_dim,
        settings.sid_pca_whiten,
        settings.sid_opq_iterations,
        settings.n_codes,
        settings.codebook_size,
        settings.sid_seed,
        # only when not the default, so that the keys of existing caches stay valid
        *([f"collisions={settings.sid_collisions}"] if settings.sid_collisions != "keep" else []),
        *([f"method={settings.sid_method}"] if settings.sid_method != "opq" else []),
        *([f"random_digits={settings.sid_random_digits}"] if settings.sid_random_digits else []),
    )[:16]


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
        _train_items(train_mask),
        dataclasses.asdict(rqvae),
        rqvae.seed(settings.sid_seed),
    )[:16]


def cache_file(cache_dir: str | None, prefix: str, key: str) -> str | None:
    r"""``<cache_dir>/<prefix>-<key>.npz``, or ``None`` when caching is off."""
    return os.path.join(cache_dir, f"{prefix}-{key}.npz") if cache_dir else None


# ---------------------------------------------------------------------------- checked files
def checksum(arrays: dict[str, np.ndarray]) -> str:
    r"""The SHA-256 of named arrays that :func:`save_npz_atomic` stores as ``checksum``."""
    return _sha256(*[x for name in sorted(arrays) for x in (name, arrays[name])])


def save_npz_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
    r"""Write ``arrays`` plus a ``checksum`` entry to ``path`` atomically (temp file +
    ``os.replace``), so a crash never leaves a half-written cache under the final name."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = dict(arrays)
    payload["checksum"] = np.array(checksum(arrays))
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _warn(message: str) -> None:
    getLogger().warning(set_color("semantic-ID cache", "red") + f": {message}")


def _matches(array: np.ndarray, want: Any) -> bool:
    if callable(want):
        return bool(want(array))
    return array.shape == () and array.item() == want


def load_npz_checked(path: str, expected: dict[str, Any]) -> dict[str, np.ndarray] | None:
    r"""Load a cache file written by :func:`save_npz_atomic` and validate it.

    Args:
        path: the ``.npz`` file.
        expected: entries that must match: ``{name: value}`` for scalars/strings, or
            ``{name: callable(array) -> bool}`` for checks such as shapes.

    Returns:
        dict or None: the arrays; ``None`` when the file does not exist. A file that exists
        but is unreadable, fails its checksum or a check is reported with a warning and ``None``
        is returned (the caller rebuilds it).
    """
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as e:  # noqa: BLE001 - truncated zip, bad header, CRC error ...
        _warn(f"[{path}] is corrupt or truncated ({type(e).__name__}: {e}); rebuilding it.")
        return None
    stored = arrays.pop("checksum", None)
    if stored is None or str(stored) != checksum(arrays):
        _warn(f"[{path}] fails its checksum (corrupt or modified); rebuilding it.")
        return None
    for name, want in expected.items():
        if name not in arrays or not _matches(arrays[name], want):
            _warn(
                f"[{path}] is stale (entry '{name}' does not match the current dataset "
                f"and settings); rebuilding it."
            )
            return None
    return arrays


def save_or_warn(path: str, arrays: dict[str, np.ndarray]) -> None:
    r"""Write a cache file; an unwritable cache directory costs a rebuild next time, not the run."""
    try:
        save_npz_atomic(path, arrays)
    except OSError as e:
        _warn(
            f"could not write [{path}] ({e}); continuing without caching it "
            f"(set sid_cache_dir to a writable directory)."
        )


# ------------------------------------------------------------------------ the cached entries
def load_cached_embeddings(path: str | None, key: str, n_texts: int) -> np.ndarray | None:
    r"""Text embeddings ``[n_texts, d]`` from a checked ``emb-<key>.npz``, or ``None``."""
    if not path:
        return None
    cached = load_npz_checked(
        path, {"key": key, "embeddings": lambda a: a.ndim == 2 and a.shape[0] == n_texts}
    )
    return None if cached is None else cached["embeddings"]


def save_embeddings(path: str | None, key: str, embeddings: np.ndarray) -> None:
    r"""Cache the text embeddings (no-op without a cache)."""
    if path:
        save_or_warn(path, {"key": np.array(key), "embeddings": embeddings})


def load_cached_semantic_ids(
    path: str | None,
    key: str,
    n_items: int,
    codes_valid: Callable[[np.ndarray], bool],
    start: float,
    log: Callable[[dict], None],
) -> SemanticIDs | None:
    r"""Semantic IDs from a checked cache file (codes, embeddings, report), or ``None`` when
    there is no cache, or it is missing, stale or corrupt (warned by :func:`load_npz_checked`).
    The returned report records the cache hit and the original build time."""
    if not path:
        return None
    cached = load_npz_checked(
        path,
        {
            "key": key,
            "codes": codes_valid,
            "embeddings": lambda a: a.ndim == 2 and a.shape[0] == n_items,
            "report": lambda a: a.shape == (),
        },
    )
    if cached is None:
        return None
    report = json.loads(str(cached["report"]))
    report["codes_fingerprint"] = codes_fingerprint(cached["codes"])  # older caches lack it
    report["cold_build_seconds"] = report.get("build_seconds")
    report.update(cache_hit=True, build_seconds=time.time() - start)
    log(report)
    return SemanticIDs(cached["codes"], cached["embeddings"], report, key, path)


def save_semantic_ids(
    path: str | None, key: str, codes: np.ndarray, embeddings: np.ndarray, report: dict
) -> None:
    r"""Cache codes, embeddings and report in one checked file (no-op without a cache)."""
    if path:
        save_or_warn(
            path,
            {
                "key": np.array(key),
                "codes": codes,
                "embeddings": embeddings,
                "report": np.array(json.dumps(report)),
            },
        )


__all__ = [
    "CACHE_FORMAT_VERSION",
    "RQVAE_FORMAT_VERSION",
    "SemanticIDs",
    "cache_file",
    "checksum",
    "embedding_cache_key",
    "load_cached_embeddings",
    "load_cached_semantic_ids",
    "load_npz_checked",
    "rqvae_cache_key",
    "save_embeddings",
    "save_npz_atomic",
    "save_or_warn",
    "save_semantic_ids",
    "semantic_id_cache_key",
    "texts_hash",
]
