r"""recbole_fair.tokenizer.semantic_ids
####################################

Item texts -> sentence embeddings -> ``L`` semantic-ID codes per item, with a content-keyed cache
and a quality report.

Cache layout (directory ``sid_cache_dir``), all ``.npz`` files loadable with
``allow_pickle=False`` and written atomically (temporary file + ``os.replace``):

* ``emb-<key>.npz``: the text embeddings. The key hashes the item texts (one per internal item
  id, so it also covers the id mapping), the text fields, template and encoder; changing
  ``n_codes``, ``codebook_size``, PCA or the seed re-quantises without re-encoding.
* ``sid-<key>.npz``: embeddings + codes + quality report. The key hashes the embedding key, the
  training-item set and every quantiser setting.

Both files carry their own key and a SHA-256 checksum of their arrays. A file that is truncated,
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

from recbole_fair.tokenizer.encoder import DEFAULT_TEXT_ENCODER, EncoderFn, make_encoder_fn
from recbole_fair.tokenizer.quantizer import (
    check_collision_mode,
    check_quantizer_args,
    check_sid_method,
    collision_counts,
    collision_rate,
    quantize,
    random_codes,
)
from recbole_fair.tokenizer.text import DEFAULT_TEXT_FIELDS

#: bump when the cache content or the meaning of a key changes
CACHE_FORMAT_VERSION = 1


@dataclasses.dataclass
class SemanticIDSettings:
    r"""Every setting that decides the semantic IDs (the config keys of the same name).

    Attributes:
        text_fields (list of str): item fields making up the text.
        text_template (str): ``join`` or ``field_value``.
        text_encoder (str): sentence-transformers model name or path.
        text_encode_batch_size (int): encoding batch size.
        sid_pca_dim (int): PCA output dimension, 0 = no PCA.
        sid_pca_whiten (bool): whiten the PCA output.
        sid_opq_iterations (int): OPQ training rounds (faiss default 50).
        n_codes (int): codes per item (``L``).
        codebook_size (int): centroids per code position.
        sid_seed (int): k-means seed (``random``: the seed of the draw).
        sid_method (str): ``opq`` (the paper: text embeddings quantised by OPQ/PQ) or
            ``random`` (ablation: distinct random code tuples, no content,
            :func:`recbole_fair.tokenizer.quantizer.random_codes`).
        sid_random_digits (int): with ``opq``, the last ``N`` of the ``n_codes`` digits are
            drawn at random instead: OPQ/PQ quantises the embeddings into ``n_codes - N``
            semantic digits and every item gets ``N`` item-specific ones (0 = the paper).
        sid_collisions (str): ``keep`` (paper) or ``separate`` (items sharing all codes are
            moved one digit apart, :func:`recbole_fair.tokenizer.quantizer.separate_collisions`).
        sid_cache_dir (str): cache directory; ``None``/empty disables the cache (in a config,
            a missing key means the default, an explicit ``~`` or ``''`` disables it).
        device (str): device of the text encoder.
        show_progress (bool): progress bar while encoding.
    """

    text_fields: list = dataclasses.field(default_factory=lambda: list(DEFAULT_TEXT_FIELDS))
    text_template: str = "join"
    text_encoder: str = DEFAULT_TEXT_ENCODER
    text_encode_batch_size: int = 64
    sid_pca_dim: int = 0
    sid_pca_whiten: bool = False
    sid_opq_iterations: int = 50
    n_codes: int = 32
    codebook_size: int = 256
    sid_seed: int = 2020
    sid_collisions: str = "keep"
    sid_method: str = "opq"
    sid_random_digits: int = 0
    sid_cache_dir: str | None = os.path.join(".", "saved", "sid_cache")
    device: str = "cpu"
    show_progress: bool = True

    @classmethod
    def from_config(cls, config: Any) -> SemanticIDSettings:
        r"""Read the settings from a RecBole ``Config``; missing keys take the defaults above
        (``sid_seed`` falls back to ``seed``)."""

        def get(key: str) -> Any:
            return config[key] if key in config else None

        default = cls()
        values = {}
        for field in dataclasses.fields(cls):
            value = get(field.name)
            values[field.name] = getattr(default, field.name) if value is None else value
        if "sid_cache_dir" in config and not config["sid_cache_dir"]:
            values["sid_cache_dir"] = None  # explicitly ~ or '': no cache
        if get("sid_seed") is None and get("seed") is not None:
            values["sid_seed"] = get("seed")
        if get("device") is not None:
            values["device"] = str(get("device"))
        if get("show_progress") is not None:
            values["show_progress"] = bool(get("show_progress"))
        if isinstance(values["text_fields"], str):
            values["text_fields"] = [values["text_fields"]]
        values["text_fields"] = list(values["text_fields"])
        values["sid_pca_dim"] = int(values["sid_pca_dim"] or 0)
        for key in (
            "n_codes",
            "codebook_size",
            "sid_seed",
            "text_encode_batch_size",
            "sid_opq_iterations",
            "sid_random_digits",
        ):
            values[key] = int(values[key])
        values["sid_pca_whiten"] = bool(values["sid_pca_whiten"])
        values["sid_collisions"] = check_collision_mode(
            str(values["sid_collisions"]), " (properties/semantic_ids.yaml)"
        )
        values["sid_method"] = check_sid_method(
            str(values["sid_method"]), " (properties/semantic_ids.yaml)"
        )
        return check_random_digits(cls(**values), " (properties/semantic_ids.yaml)")


def check_random_digits(settings: SemanticIDSettings, where: str = "") -> SemanticIDSettings:
    r"""``settings`` if ``sid_random_digits`` fits ``sid_method`` and ``n_codes``, else a
    ``ValueError`` naming the keys."""
    n, L = settings.sid_random_digits, settings.n_codes
    if settings.sid_method == "random" and n:
        raise ValueError(
            f"sid_random_digits [{n}] applies to sid_method opq (with sid_method random every "
            f"digit is random); set it to 0{where}."
        )
    if settings.sid_method == "opq" and not 0 <= n < L:
        raise ValueError(
            f"sid_random_digits must be in [0, n_codes={L}) with sid_method opq, got [{n}] "
            f"(all {L} digits random: sid_method: random){where}."
        )
    return settings


@dataclasses.dataclass
class SemanticIDs:
    r"""The result of :func:`build_semantic_ids`.

    Attributes:
        codes (numpy.ndarray): int64 ``[n_items, L]`` in ``[0, codebook_size)``, row 0 zeros.
        embeddings (numpy.ndarray): float32 ``[n_items, d]`` text embeddings.
        report (dict): the quality report (see :func:`quality_report`).
        cache_key (str): 16 hex digits naming the ``sid-<key>.npz`` cache file.
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
        np.flatnonzero(np.asarray(train_mask, dtype=bool)).astype(np.int64),
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


# ------------------------------------------------------------------------------------ cache
def _checksum(arrays: dict[str, np.ndarray]) -> str:
    return _sha256(*[x for name in sorted(arrays) for x in (name, arrays[name])])


def save_npz_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
    r"""Write ``arrays`` plus a ``checksum`` entry to ``path`` atomically (temp file +
    ``os.replace``), so a crash never leaves a half-written cache under the final name."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = dict(arrays)
    payload["checksum"] = np.array(_checksum(arrays))
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
    logger = getLogger()
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as e:  # noqa: BLE001 - truncated zip, bad header, CRC error ...
        logger.warning(
            set_color("semantic-ID cache", "red")
            + f": [{path}] is corrupt or truncated ({type(e).__name__}: {e}); rebuilding it."
        )
        return None
    checksum = arrays.pop("checksum", None)
    if checksum is None or str(checksum) != _checksum(arrays):
        logger.warning(
            set_color("semantic-ID cache", "red")
            + f": [{path}] fails its checksum (corrupt or modified); rebuilding it."
        )
        return None
    for name, want in expected.items():
        if name not in arrays:
            ok = False
        elif callable(want):
            ok = bool(want(arrays[name]))
        else:
            ok = arrays[name].shape == () and arrays[name].item() == want
        if not ok:
            logger.warning(
                set_color("semantic-ID cache", "red")
                + f": [{path}] is stale (entry '{name}' does not match the current dataset "
                f"and settings); rebuilding it."
            )
            return None
    return arrays


def _save_or_warn(path: str, arrays: dict[str, np.ndarray]) -> None:
    r"""Write a cache file; an unwritable cache directory costs a rebuild next time, not the run."""
    try:
        save_npz_atomic(path, arrays)
    except OSError as e:
        getLogger().warning(
            set_color("semantic-ID cache", "red")
            + f": could not write [{path}] ({e}); continuing without caching it "
            f"(set sid_cache_dir to a writable directory)."
        )


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
        _save_or_warn(
            path,
            {
                "key": np.array(key),
                "codes": codes,
                "embeddings": embeddings,
                "report": np.array(json.dumps(report)),
            },
        )


# ----------------------------------------------------------------------------------- report
def quality_report(codes: np.ndarray, codebook_size: int) -> dict:
    r"""Collision and code-usage statistics of the real items (rows 1..).

    Args:
        codes: int64 ``[n_items, L]`` (row 0 = padding, ignored).
        codebook_size: centroids per digit.

    Returns:
        dict: ``collision_rate`` (share of real items whose full code tuple another item also
        has), ``n_collision_groups``, ``n_colliding_items``, ``codebook_usage`` (per digit,
        distinct codes / codebook_size), ``entropy_bits`` (per digit), and their means.
    """
    real = codes[1:]
    n = len(real)
    colliding, groups = collision_counts(codes)
    usage, entropy = [], []
    for digit in range(real.shape[1]):
        hist = np.bincount(real[:, digit], minlength=codebook_size)
        usage.append(float((hist > 0).sum() / codebook_size))
        p = hist[hist > 0] / max(n, 1)
        entropy.append(float(-(p * np.log2(p)).sum()))
    return {
        "collision_rate": colliding / n if n else 0.0,
        "n_collision_groups": groups,
        "n_colliding_items": colliding,
        "codebook_usage": usage,
        "entropy_bits": entropy,
        "mean_codebook_usage": float(np.mean(usage)) if usage else 0.0,
        "mean_entropy_bits": float(np.mean(entropy)) if entropy else 0.0,
        "max_entropy_bits": float(np.log2(codebook_size)),
    }


def codes_fingerprint(codes: np.ndarray) -> str:
    r"""12 hex digits identifying a code matrix itself (its shape and every code, row 0
    included), unlike the cache key, which names the inputs: the same key rebuilt on another
    machine (another faiss thread count or BLAS) can give other codes, and a different
    fingerprint says so."""
    array = np.ascontiguousarray(codes, dtype=np.int64)
    digest = hashlib.sha256(str(array.shape).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:12]


def duplicate_text_items(texts: Sequence[str]) -> int:
    r"""Real items (1..) whose non-empty text another item also has: they get identical
    embeddings, hence identical codes, whatever the quantiser."""
    counts: dict[str, int] = {}
    for text in texts[1:]:
        if text.strip():
            counts[text] = counts.get(text, 0) + 1
    return sum(c for c in counts.values() if c > 1)


def log_report(report: dict) -> None:
    r"""Log the quality report in RecBole's style."""
    logger = getLogger()
    logger.info(
        set_color("semantic IDs", "pink")
        + f": {report['n_items']} items x {report['n_codes']} codes "
        f"(codebook {report['codebook_size']}), fitted on {report['n_train_items']} training "
        f"items, {report['items_without_text']} items without text, "
        + set_color("cache", "blue")
        + f" [{report['cache_key']}] {'hit' if report['cache_hit'] else 'built'} in "
        f"{report['build_seconds']:.2f}s, "
        + set_color("codes", "blue")
        + f" [{report.get('codes_fingerprint')}]"
    )
    logger.info(
        set_color("semantic ID quality", "pink")
        + f": collision rate {report['collision_rate']:.4%} "
        f"({report['n_colliding_items']} items in {report['n_collision_groups']} groups; "
        f"{report.get('n_duplicate_text_items', 0)} items share their text with another), "
        f"mean codebook usage {report['mean_codebook_usage']:.3f}, mean entropy "
        f"{report['mean_entropy_bits']:.2f}/{report['max_entropy_bits']:.0f} bits"
    )
    if report["items_without_text"]:
        logger.warning(
            f"{report['items_without_text']} items have no text in {report['text_fields']}; "
            f"they are encoded as the empty string."
        )


# ------------------------------------------------------------------------------ orchestration
def _embeddings(
    texts: Sequence[str],
    settings: SemanticIDSettings,
    encoder_fn: EncoderFn | None,
    cache_dir: str | None,
) -> tuple[np.ndarray, bool]:
    r"""Text embeddings ``[n_items, d]`` from the embedding cache or the encoder."""
    key = embedding_cache_key(texts, settings)
    path = os.path.join(cache_dir, f"emb-{key}.npz") if cache_dir else None
    if path:
        cached = load_npz_checked(
            path,
            {
                "key": key,
                "embeddings": lambda a: a.ndim == 2 and a.shape[0] == len(texts),
            },
        )
        if cached is not None:
            return cached["embeddings"], True
    if encoder_fn is None:
        encoder_fn = make_encoder_fn(
            settings.text_encoder,
            settings.text_encode_batch_size,
            settings.device,
            settings.show_progress,
        )
    getLogger().info(set_color("encoding item texts", "green") + f": {len(texts)} texts")
    embeddings = np.ascontiguousarray(encoder_fn(list(texts)), dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(texts):
        raise ValueError(
            f"The text encoder returned shape {embeddings.shape} for {len(texts)} texts; "
            f"expected [n_texts, dim]."
        )
    if path:
        _save_or_warn(path, {"key": np.array(key), "embeddings": embeddings})
    return embeddings, False


def build_semantic_ids(
    texts: Sequence[str],
    train_item_mask: np.ndarray,
    settings: SemanticIDSettings | None = None,
    encoder_fn: EncoderFn | None = None,
    items_without_text: int | None = None,
) -> SemanticIDs:
    r"""Semantic IDs of every item, from the cache when a valid one exists.

    Args:
        texts: ``n_items`` texts in internal item-id order (index 0 = padding item, ``""``).
        train_item_mask: bool ``[n_items]``: items occurring in the training split; the PCA,
            OPQ and PQ are fitted on those rows only.
        settings: see :class:`SemanticIDSettings`.
        encoder_fn: ``list[str] -> [n, d]`` float32; ``None`` loads ``settings.text_encoder``.
        items_without_text: count for the report (default: empty texts among items 1..).

    Returns:
        SemanticIDs: codes, embeddings, report, cache key and path.

    Raises:
        ValueError: bad shapes or settings (see :func:`recbole_fair.tokenizer.quantizer.check_quantizer_args`).
    """
    start = time.time()
    settings = settings or SemanticIDSettings()
    texts = list(texts)
    n_items = len(texts)
    mask = np.asarray(train_item_mask, dtype=bool).copy()
    if mask.shape != (n_items,):
        raise ValueError(
            f"train_item_mask has shape {mask.shape}, expected ({n_items},) (one per text)."
        )
    mask[0] = False  # the padding item is never a training item
    if items_without_text is None:
        items_without_text = sum(1 for t in texts[1:] if not t.strip())
    cache_dir = settings.sid_cache_dir or None
    key = semantic_id_cache_key(texts, mask, settings)
    path = os.path.join(cache_dir, f"sid-{key}.npz") if cache_dir else None
    L, K = settings.n_codes, settings.codebook_size

    cached = load_cached_semantic_ids(
        path,
        key,
        n_items,
        lambda a: (
            a.shape == (n_items, L)
            and a.dtype == np.int64
            and (a.size == 0 or (a.min() >= 0 and a.max() < K))
        ),
        start,
        log_report,
    )
    if cached is not None:
        return cached

    check_random_digits(settings)
    random_ids = settings.sid_method == "random"
    n_random = settings.sid_random_digits
    if not random_ids:  # fail before a (possibly long) encoding on what is known already
        check_quantizer_args(None, int(mask.sum()), L - n_random, K, settings.sid_pca_dim)
    # the random IDs do not use them, but the report and the attention maps' text similarity do
    embeddings, embedding_hit = _embeddings(texts, settings, encoder_fn, cache_dir)
    encode_seconds = time.time() - start
    quantizer_stats: dict = {}
    if random_ids:
        getLogger().info(
            set_color("random IDs", "green")
            + f": {L} codes x {K} drawn at random (seed {settings.sid_seed}), one distinct "
            f"tuple per item, no content (sid_method=random, an ablation)"
            + (
                ", sid_collisions has nothing to separate"
                if settings.sid_collisions != "keep"
                else ""
            )
        )
        codes = random_codes(n_items, L, K, settings.sid_seed)
    else:
        getLogger().info(
            set_color("quantizing", "green")
            + f": OPQ + PQ, {L - n_random} codes x {K} on {int(mask.sum())} training items"
            + (f", PCA to {settings.sid_pca_dim}" if settings.sid_pca_dim else "")
            + (f", then {n_random} random digits per item" if n_random else "")
        )
        codes = quantize(
            embeddings,
            mask,
            n_codes=L - n_random,
            codebook_size=K,
            seed=settings.sid_seed,
            pca_dim=settings.sid_pca_dim,
            pca_whiten=settings.sid_pca_whiten,
            opq_iterations=settings.sid_opq_iterations,
            collisions=settings.sid_collisions,
            stats=quantizer_stats,
        )
        if n_random:
            quantizer_stats["collision_rate_of_semantic_digits"] = collision_rate(codes)
            codes = random_codes(n_items, n_random, K, settings.sid_seed, prefix=codes)
    report = {
        "n_items": n_items - 1,
        "n_train_items": int(mask.sum()),
        "items_without_text": int(items_without_text),
        "n_codes": L,
        "codebook_size": K,
        "embedding_dim": int(embeddings.shape[1]),
        "text_fields": list(settings.text_fields),
        "text_template": settings.text_template,
        "text_encoder": settings.text_encoder,
        "sid_pca_dim": settings.sid_pca_dim,
        "sid_pca_whiten": settings.sid_pca_whiten,
        "sid_seed": settings.sid_seed,
        "sid_opq_iterations": settings.sid_opq_iterations,
        "sid_collisions": settings.sid_collisions,
        "sid_method": settings.sid_method,
        "sid_random_digits": n_random,
        # provenance: faiss' k-means sums in a thread-dependent order, and the codes are a
        # chaotic function of the embeddings (another thread count changes most items' codes);
        # quantize reports the threads it ran with, random IDs use none
        "faiss_threads": None,
        **quantizer_stats,
        "n_duplicate_text_items": duplicate_text_items(texts),
        **quality_report(codes, K),
        "cache_key": key,
        "codes_fingerprint": codes_fingerprint(codes),
        "embedding_cache_hit": embedding_hit,
        "encode_seconds": encode_seconds,
        "build_seconds": time.time() - start,
        "cache_hit": False,
    }
    save_semantic_ids(path, key, codes, embeddings, report)
    log_report(report)
    return SemanticIDs(codes, embeddings, report, key, path)


__all__ = [
    "CACHE_FORMAT_VERSION",
    "SemanticIDSettings",
    "SemanticIDs",
    "build_semantic_ids",
    "codes_fingerprint",
    "embedding_cache_key",
    "semantic_id_cache_key",
    "quality_report",
    "save_npz_atomic",
    "load_npz_checked",
    "load_cached_semantic_ids",
    "save_semantic_ids",
]
