r"""Files that recbole-fair unpickles only when this installation wrote and signed them.

Unpickling a file runs whatever code it names, and RecBole 1.2.1 unpickles its checkpoints (with
``torch.load(weights_only=False)``: they hold the whole ``Config``) and its dataset and
dataloader caches (plain pickles, read whenever the file exists). So every such file written
through recbole-fair is *signed*: its SHA-256 is remembered in-process and an HMAC of it is
written next to it (``<file>.sig``) with a per-user secret key
(``~/.cache/recbole_fair/checkpoint.key``, mode 0600, or ``$RECBOLE_FAIR_KEY_DIR``). A file is
fully unpickled only when its bytes are signed; the bytes checked are the bytes unpickled.

* signing and checking: :func:`sign_checkpoint`, :func:`is_trusted_checkpoint`,
  :func:`read_trusted_bytes`, :func:`write_signed` (written aside, signed, renamed into place);
* loading: :func:`trusted_torch_load` (``weights_only=True`` for anything unsigned),
  :func:`guarded_pickle_load` (:class:`UntrustedFileError` for anything unsigned);
* RecBole 1.2.1's dataset and dataloader caches, signed: :func:`recbole_dataset_class_name`,
  :func:`dataset_cache_file`, :func:`load_dataset_cache`, :func:`create_dataset`,
  :func:`save_split_dataloaders`, :func:`save_dataset`.

:mod:`recbole_fair.compat` installs them in RecBole's modules (why and when each can go: there).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import pickle
import secrets
from logging import getLogger
from pathlib import Path
from typing import IO, Any, Callable

import torch

# Content hashes of the checkpoints written by this process.
_TRUSTED_DIGESTS: set[str] = set()
_ORIGINAL_TORCH_LOAD = torch.load


def _key_path() -> Path:
    root = os.environ.get("RECBOLE_FAIR_KEY_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "recbole_fair"
    )
    return Path(root) / "checkpoint.key"


def _secret_key() -> bytes:
    r"""The per-user key that signs checkpoints; created (mode 0600) on first use."""
    path = _key_path()
    if path.is_file():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(str(path) + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.replace(str(path) + ".tmp", path)
    return key


def file_digest(path: str | os.PathLike) -> str:
    r"""The SHA-256 (hex) of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _signature(digest: str) -> str:
    return hmac.new(_secret_key(), digest.encode(), hashlib.sha256).hexdigest()


def sign_checkpoint(path: str | os.PathLike) -> None:
    r"""Mark a file written by this installation (a checkpoint, a dataset or dataloader cache)
    as trusted, in-process and on disk (``<path>.sig``)."""
    digest = file_digest(path)
    _TRUSTED_DIGESTS.add(digest)
    Path(str(path) + ".sig").write_text(_signature(digest))


def _is_signed(path: str | os.PathLike, digest: str) -> bool:
    r"""True when content of SHA-256 ``digest``, found at ``path``, was signed by this
    installation (in this process, or by the key through ``<path>.sig``)."""
    if digest in _TRUSTED_DIGESTS:
        return True
    sig_file = Path(str(path) + ".sig")
    if not sig_file.is_file():
        return False
    return hmac.compare_digest(sig_file.read_text().strip(), _signature(digest))


def is_trusted_checkpoint(path: str | os.PathLike) -> bool:
    r"""True when ``path`` holds exactly the bytes of a file this installation signed."""
    if not os.path.isfile(path):
        return False
    return _is_signed(path, file_digest(path))


def read_trusted_bytes(path: str | os.PathLike) -> bytes | None:
    r"""The content of ``path`` when this installation signed exactly these bytes, else None.

    The file is read once: the bytes checked are the bytes the caller gets (a file swapped
    between a check and a second read cannot slip through)."""
    with open(path, "rb") as f:
        data = f.read()
    return data if _is_signed(path, hashlib.sha256(data).hexdigest()) else None


def write_signed(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    r"""``write(f)`` into a temporary file next to ``path``, sign it, then rename file and
    signature into place.

    A write that fails (or is interrupted) leaves the previous file and signature untouched and
    no temporary file behind. The temporary name carries the process id: under DDP every rank
    runs RecBole's data preparation and so writes the same cache."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
        sign_checkpoint(tmp)
        os.replace(tmp, path)
        os.replace(f"{tmp}.sig", f"{path}.sig")
    except BaseException:
        for leftover in (tmp, f"{tmp}.sig"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)
        raise


class UntrustedFileError(pickle.UnpicklingError):
    r"""A pickle on disk that this installation did not sign: it was not unpickled."""

    def __init__(self, path: Any):
        self.path = path
        super().__init__(
            f"{path} is not signed by this installation's key ({_key_path()}); "
            "it was not unpickled (unpickling a file can run arbitrary code)"
        )


def trusted_torch_load(f: Any, *args: Any, **kwargs: Any) -> Any:
    r"""``torch.load`` that fully unpickles only checkpoints this installation wrote.

    Anything else (a foreign file, a modified checkpoint, a file-like object) is loaded with
    ``weights_only=True``, which refuses arbitrary pickles; it is passed explicitly, so that
    neither torch < 2.6 (default ``False``) nor ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` turn it off.
    A caller that passes ``weights_only`` itself decides.
    """
    if "weights_only" in kwargs:
        return _ORIGINAL_TORCH_LOAD(f, *args, **kwargs)
    if isinstance(f, (str, os.PathLike)) and os.path.isfile(f):
        data = read_trusted_bytes(f)
        if data is not None:
            return _ORIGINAL_TORCH_LOAD(io.BytesIO(data), *args, weights_only=False, **kwargs)
    return _ORIGINAL_TORCH_LOAD(f, *args, weights_only=True, **kwargs)


def guarded_pickle_load(file: IO[bytes], **kwargs: Any) -> Any:
    r"""``pickle.load`` for RecBole's cache readers: unpickles only bytes this installation
    signed (the file is identified by its ``name``), raises :class:`UntrustedFileError` else."""
    path = getattr(file, "name", None)
    data = file.read()
    if not isinstance(path, (str, os.PathLike)) or not _is_signed(
        path, hashlib.sha256(data).hexdigest()
    ):
        raise UntrustedFileError(path)
    return pickle.loads(data, **kwargs)


# ------------------------------------------------------------ RecBole 1.2.1's caches, signed


def warn_untrusted_cache(path: Any, what: str, option: str) -> None:
    r"""Say that the RecBole ``what`` cache at ``path`` was not signed, so not unpickled, and
    how to re-create it (``option``: the RecBole setting that saves it)."""
    getLogger().warning(
        f"RecBole {what} cache [{path}] is not signed by this installation's key "
        f"({_key_path()}): it was not unpickled (unpickling a file can run arbitrary code) and "
        f"is ignored, the {what} being rebuilt from the atomic files instead. Delete it, or "
        f"re-create it on this machine with {option}=True (caches this installation writes "
        "are signed and reused)."
    )


def recbole_dataset_class_name(config: Any) -> str:
    r"""The name of the class of ``recbole.data.dataset`` that RecBole 1.2.1's
    ``create_dataset`` builds for ``config``: ``<model>Dataset`` when RecBole has one, else the
    class of the model's ``MODEL_TYPE`` (``SequentialDataset``, ``KnowledgeBasedDataset`` or
    ``Dataset``). A ``MODEL_TYPE`` that is not one of RecBole's (a third-party model's), on
    which RecBole fails with a ``KeyError``, gets ``Dataset``, as it gets RecBole's generic
    ``Trainer`` from ``get_trainer``."""
    from recbole.data import dataset as dataset_module
    from recbole.utils import ModelType

    name = f"{config['model']}Dataset"
    if hasattr(dataset_module, name):
        return name
    by_type = {  # RecBole 1.2.1's table; GENERAL, CONTEXT, TRADITIONAL, DECISIONTREE: Dataset
        ModelType.SEQUENTIAL: "SequentialDataset",
        ModelType.KNOWLEDGE: "KnowledgeBasedDataset",
    }
    return by_type.get(config["MODEL_TYPE"], "Dataset")


def dataset_cache_file(config: Any, class_name: str) -> str:
    r"""Where RecBole 1.2.1 saves and looks for the filtered dataset of ``config``:
    ``dataset_save_path``, else ``<checkpoint_dir>/<dataset>-<class_name>.pth``."""
    default = os.path.join(config["checkpoint_dir"], f"{config['dataset']}-{class_name}.pth")
    return config["dataset_save_path"] or default


def load_dataset_cache(config: Any, dataset_class: type) -> Any:
    r"""The filtered dataset that ``save_dataset`` saved for ``config``, or None (rebuild it).

    RecBole 1.2.1's rule, signed: the file (:func:`dataset_cache_file`, named after
    ``dataset_class``) is used when this installation signed it, it unpickles to a
    ``dataset_class``, and it was built with the same dataset arguments
    (``recbole.utils.dataset_arguments``, ``seed``, ``repeatable``). Otherwise a warning says
    why and None is returned: an unsigned file is not unpickled (:func:`warn_untrusted_cache`);
    a signed one that does not unpickle (e.g. written by another version whose classes moved),
    holds another class or was built with other arguments is ignored. No file: None, silently.
    """
    from recbole.utils import dataset_arguments, set_color

    file = dataset_cache_file(config, dataset_class.__name__)
    if not os.path.isfile(file):
        return None
    data = read_trusted_bytes(file)
    if data is None:
        warn_untrusted_cache(file, "filtered dataset", "save_dataset")
        return None
    logger = getLogger()
    ignored = (
        f"RecBole filtered dataset cache [{file}] is ignored and the dataset rebuilt from the "
        "atomic files"
    )
    try:
        dataset = pickle.loads(data)
    except Exception as err:  # noqa: BLE001 - any unpickling failure: the cache is only a cache
        logger.warning(
            f"{ignored}: it does not unpickle here ({type(err).__name__}: {err}; written by "
            "another version of RecBole or recbole-fair?). Delete it, or re-create it with "
            "save_dataset=True."
        )
        return None
    if not isinstance(dataset, dataset_class):
        logger.warning(
            f"{ignored}: it holds a {type(dataset).__module__}.{type(dataset).__qualname__}, "
            f"not a {dataset_class.__module__}.{dataset_class.__qualname__}."
        )
        return None
    for arg in [*dataset_arguments, "seed", "repeatable"]:
        if config[arg] != dataset.config[arg]:
            logger.warning(
                f"{ignored}: it was built with other dataset arguments ({arg}: "
                f"{dataset.config[arg]!r} there, {config[arg]!r} now)."
            )
            return None
    logger.info(set_color("Load filtered dataset from", "pink") + f": [{file}]")
    return dataset


def create_dataset(config: Any) -> Any:
    r"""RecBole 1.2.1's ``create_dataset``, reading only a signed cache
    (:func:`load_dataset_cache`)."""
    from recbole.data import dataset as dataset_module

    dataset_class = getattr(dataset_module, recbole_dataset_class_name(config))
    dataset = load_dataset_cache(config, dataset_class)
    if dataset is None:
        dataset = dataset_class(config)
        if config["save_dataset"]:
            dataset.save()
    return dataset


def save_split_dataloaders(config: Any, dataloaders: Any) -> None:
    r"""RecBole 1.2.1's ``save_split_dataloaders``, written aside, signed and renamed into
    place (:func:`write_signed`)."""
    from recbole.utils import ensure_dir, set_color

    ensure_dir(config["checkpoint_dir"])
    file_path = os.path.join(
        config["checkpoint_dir"], f"{config['dataset']}-for-{config['model']}-dataloader.pth"
    )
    getLogger().info(set_color("Saving split dataloaders into", "pink") + f": [{file_path}]")
    serialized = []
    for dataloader in dataloaders:  # RecBole's own rule: generators travel as their state
        generator_state = dataloader.generator.get_state()
        dataloader.generator = None
        dataloader.sampler.generator = None
        serialized.append((dataloader, generator_state))
    write_signed(file_path, lambda f: pickle.dump(serialized, f))


def save_dataset(self: Any) -> None:
    r"""RecBole 1.2.1's ``Dataset.save``, written aside, signed and renamed into place."""
    from recbole.utils import ensure_dir, set_color

    save_dir = self.config["checkpoint_dir"]
    ensure_dir(save_dir)
    file = os.path.join(save_dir, f"{self.config['dataset']}-{self.__class__.__name__}.pth")
    self.logger.info(set_color("Saving filtered dataset into ", "pink") + f"[{file}]")
    write_signed(file, lambda f: pickle.dump(self, f))
