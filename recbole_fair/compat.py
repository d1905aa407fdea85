r"""Compatibility shims that let RecBole 1.2.1 run on today's Python stack.

RecBole 1.2.1 (2023) predates numpy 2, pandas 3 and torch >= 2.6. Every workaround lives here,
one comment each saying which upstream behaviour it works around and when it can go.
:func:`apply` is idempotent and runs on ``import recbole_fair``.

What is pinned instead of shimmed (``setup.cfg``):

* ``pandas<3``: RecBole's ``Dataset._fill_nan`` / ``_load_feat`` call
  ``df[field].fillna(..., inplace=True)``; under pandas 3 copy-on-write that chained call is a
  silent no-op, leaving NaNs in token/float fields. Can go when RecBole assigns the result.

What is shimmed:

* numpy 2 removed ``np.float_``, ``np.complex_`` and ``np.unicode_``, and RecBole's
  ``Config.compatibility_settings`` reads them (to alias ``np.float`` and friends, which its code
  uses) on every Config, so under numpy 2 no RecBole run starts. :func:`apply` puts the three back
  as the numpy 1 aliases they were (``float64``, ``complex128``, ``str_``) when they are missing;
  under numpy 1 it changes nothing. With it the test suite passes under numpy 1.26 and 2.x, and
  FAIR and SASRec trained on a GPU image whose scipy requires numpy 2 (docs/leaderboards,
  section 0e). This replaced a ``numpy<2`` pin. Can go when RecBole stops reading those names.
* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and RecBole checkpoints pickle
  the whole ``Config``, so ``Trainer.evaluate(load_best_model=True)`` and
  ``Trainer.resume_checkpoint`` fail. Switching ``weights_only`` off globally would unpickle (i.e.
  execute) any file a user is handed. Instead, every checkpoint RecBole's trainer writes through
  this process is *signed*: its SHA-256 is remembered in-process and an HMAC of it is written next
  to it (``<file>.sig``) with a per-user secret key (``~/.cache/recbole_fair/checkpoint.key``,
  mode 0600). RecBole's trainer module then loads with ``weights_only=False`` only a file whose
  content is signed; anything else goes through torch's safe default and is refused.
  Can go when RecBole saves checkpoints that load with ``weights_only=True``.
  :func:`trusted_torch_load` passes ``weights_only=True`` explicitly for anything unsigned, so
  foreign files stay refused under torch 2.4/2.5 (whose default is ``False``) and under
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``; a signed file is read once, and the bytes checked are the
  bytes unpickled. The RecBole models that ``torch.load`` a pre-trained checkpoint named in their
  config (ConvNCF, NAIS, NeuMF, RaCT, KD_DAGFM, S3Rec) see the same loader.
* RecBole's dataset and dataloader caches are plain pickles, and RecBole 1.2.1 unpickles them
  whenever the file exists, whatever ``save_dataset``/``save_dataloaders`` say:
  ``create_dataset`` reads ``<checkpoint_dir>/<dataset>-<DatasetClass>.pth`` (or
  ``dataset_save_path``) and ``data_preparation`` (``load_split_dataloaders``) reads
  ``<checkpoint_dir>/<dataset>-for-<model>-dataloader.pth`` (or ``dataloaders_save_path``). A
  pickle planted there (a copied ``saved/`` folder) runs its code on the next ordinary run.
  The same signing rule applies: ``Dataset.save`` and ``save_split_dataloaders`` write to a
  temporary file, sign it and rename both into place; the ``pickle`` module RecBole's data utils
  see only unpickles signed bytes (:class:`UntrustedFileError` otherwise), and
  ``load_split_dataloaders`` turns that refusal into a warning naming the file and a rebuild
  from the atomic files (the cache is only an optimisation). ``create_dataset`` is RecBole's
  rule rewritten on two helpers that recbole-fair's own dataset factory
  (:func:`recbole_fair.data.checked.create_recbole_dataset`, called by
  :func:`recbole_fair.utils.create_dataset`) uses too: :func:`recbole_dataset_class_name`
  (which class) and :func:`load_dataset_cache` (a signed cache of that class built with the
  same dataset arguments, else a warning and a rebuild; a signed cache that no longer
  unpickles, e.g. written by another version, is rebuilt too). The three functions are replaced
  in ``recbole.data.utils`` (where ``data_preparation`` looks them up at call time) and in
  ``recbole.data``'s re-exports (``from recbole.data import create_dataset``, as RecBole's own
  quick start and scripts written for RecBole do). Can go when RecBole verifies its caches or
  stops pickling them.
* LDiffRec reads ``<dataset>/item_emb.npy`` with ``np.load(allow_pickle=True)``: an object
  array there would be unpickled. Item embeddings are a float matrix, so its ``np.load`` runs
  with ``allow_pickle=False``. Can go when RecBole drops ``allow_pickle=True``.
* ``recbole.quick_start`` imports ``ray`` (for hyper-parameter tuning) at module import, and ray
  2.x imports ``pkg_resources``, which setuptools >= 81 no longer ships. Our own quick start
  (:mod:`recbole_fair.quick_start`) never imports ``recbole.quick_start``, so nothing is pinned
  for it; only users of RecBole's own ``run_recbole`` need ``setuptools<81``.
* ``recbole/model/sequential_recommender/sine.py`` calls ``torch.autograd.set_detect_anomaly(True)``
  at import, and the package's ``__init__`` imports every sequential model, so looking up *any*
  RecBole sequential model (SASRec, GRU4Rec, BERT4Rec ...) switched autograd's anomaly mode on
  for the whole process: a NaN check of every gradient and a stack trace per forward op, about
  half of a SASRec training step on ml-100k here (7.8 s -> 3.7 s per batch of 2048, measured by
  ``benchmarks/bench_train_step.py --anomaly_mode both``). Results are
  unchanged by it. :func:`apply` imports the package once and restores the mode the process had
  (a user who enabled anomaly mode keeps it). Can go when RecBole drops that line.
* RecBole 1.2.1 triggers deprecation warnings of its dependencies on every run, which tell a user
  nothing they can act on: pandas' chained-assignment ``FutureWarning`` (``df[f].fillna(...,
  inplace=True)`` in ``Dataset``; harmless under pandas 2, and pandas 3 is pinned away, see
  above), pandas' ``Series.agg(len)`` ``FutureWarning`` (``Dataset``'s ``_get_field_from_...``
  counting), and torch's ``torch.cuda.amp.GradScaler(...)`` ``FutureWarning`` (``Trainer``).
  :func:`filter_recbole_warnings` ignores exactly these three messages, and only when the warning
  is raised from RecBole's own modules (the same warning from a user's code still shows). Can go
  with RecBole's next release (these calls are rewritten on its main branch).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import pickle
import secrets
import types
import warnings
from logging import getLogger
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
import torch

_APPLIED = False
# Content hashes of the checkpoints written by this process.
_TRUSTED_DIGESTS: set[str] = set()
_ORIGINAL_TORCH_LOAD = torch.load
_ORIGINAL_NP_LOAD = np.load
# The functions that replace RecBole's cache readers and writers, by their RecBole name.
_CACHE_SHIMS: dict[str, Callable[..., Any]] = {}
# RecBole's own dataloader cache reader, called by its shim.
_UPSTREAM: dict[str, Callable[..., Any]] = {}


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


def _file_digest(path: str | os.PathLike) -> str:
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
    digest = _file_digest(path)
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
    return _is_signed(path, _file_digest(path))


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


def _guarded_pickle_load(file: IO[bytes], **kwargs: Any) -> Any:
    r"""``pickle.load`` for RecBole's cache readers: unpickles only bytes this installation
    signed (the file is identified by its ``name``), raises :class:`UntrustedFileError` else."""
    path = getattr(file, "name", None)
    data = file.read()
    if not isinstance(path, (str, os.PathLike)) or not _is_signed(
        path, hashlib.sha256(data).hexdigest()
    ):
        raise UntrustedFileError(path)
    return pickle.loads(data, **kwargs)


def _module_proxy(module: types.ModuleType, **overrides: Any) -> types.ModuleType:
    r"""A stand-in for ``module`` inside one RecBole module: identical except for
    ``overrides`` (the real module stays untouched for everyone else)."""
    proxy = types.ModuleType(module.__name__)

    def __getattr__(name: str) -> Any:
        return getattr(module, name)

    proxy.__getattr__ = __getattr__  # type: ignore[attr-defined]
    for name, value in overrides.items():
        setattr(proxy, name, value)
    return proxy


def _torch_proxy() -> types.ModuleType:
    r"""``torch`` with ``load`` = :func:`trusted_torch_load`, for RecBole's modules."""
    return _module_proxy(torch, load=trusted_torch_load)


def _np_load_without_pickle(file: Any, *args: Any, **kwargs: Any) -> Any:
    kwargs["allow_pickle"] = False
    return _ORIGINAL_NP_LOAD(file, *args, **kwargs)


def warn_untrusted_cache(path: Any, what: str, option: str) -> None:
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


def _create_dataset(config: Any) -> Any:
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


def _load_split_dataloaders(config: Any) -> Any:
    r"""RecBole's ``load_split_dataloaders``; None (rebuild) for an unsigned cache, with a
    warning."""
    try:
        return _UPSTREAM["load_split_dataloaders"](config)
    except UntrustedFileError as err:
        warn_untrusted_cache(err.path, "split dataloaders", "save_dataloaders")
        return None


def _save_split_dataloaders(config: Any, dataloaders: Any) -> None:
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


def _save_dataset(self: Any) -> None:
    r"""RecBole 1.2.1's ``Dataset.save``, written aside, signed and renamed into place."""
    from recbole.utils import ensure_dir, set_color

    save_dir = self.config["checkpoint_dir"]
    ensure_dir(save_dir)
    file = os.path.join(save_dir, f"{self.config['dataset']}-{self.__class__.__name__}.pth")
    self.logger.info(set_color("Saving filtered dataset into ", "pink") + f"[{file}]")
    write_signed(file, lambda f: pickle.dump(self, f))


# RecBole modules that torch.load a pre-trained checkpoint named in the model's config.
_PRETRAINED_LOADERS = [
    "recbole.model.general_recommender.convncf",
    "recbole.model.general_recommender.nais",
    "recbole.model.general_recommender.neumf",
    "recbole.model.general_recommender.ract",
    "recbole.model.context_aware_recommender.kd_dagfm",
    "recbole.model.sequential_recommender.s3rec",
]


def _install_cache_shims() -> None:
    r"""Signed dataset and dataloader caches (see the module docstring)."""
    import recbole.data
    import recbole.data.dataset.dataset as dataset_module
    import recbole.data.utils as data_utils

    _UPSTREAM["load_split_dataloaders"] = data_utils.load_split_dataloaders
    # What RecBole's data utils unpickle with, whoever holds a reference to their functions.
    data_utils.pickle = _module_proxy(pickle, load=_guarded_pickle_load)
    _CACHE_SHIMS.update(
        create_dataset=_create_dataset,
        load_split_dataloaders=_load_split_dataloaders,
        save_split_dataloaders=_save_split_dataloaders,
    )
    for name, shim in _CACHE_SHIMS.items():
        setattr(data_utils, name, shim)  # data_preparation looks them up here
        setattr(recbole.data, name, shim)  # ``from recbole.data import create_dataset``
    dataset_module.Dataset.save = _save_dataset


def _install_model_file_shims() -> None:
    r"""Pre-trained checkpoints and LDiffRec's item embeddings (see the module docstring)."""
    import importlib

    for name in _PRETRAINED_LOADERS:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a model's optional dependency: RecBole's get_model reports it
            continue
        module.torch = _torch_proxy()
    try:
        from recbole.model.general_recommender import ldiffrec
    except ImportError:
        return
    ldiffrec.np = _module_proxy(np, load=_np_load_without_pickle)


def restore_numpy_aliases() -> None:
    r"""Put back ``np.float_``, ``np.complex_`` and ``np.unicode_`` where numpy 2 removed them
    (RecBole's Config reads them; see the module docstring). No-op under numpy 1."""
    for old, new in (("float_", "float64"), ("complex_", "complex128"), ("unicode_", "str_")):
        if old not in np.__dict__:
            setattr(np, old, getattr(np, new))


# (message regex, category) of RecBole 1.2.1's dependency deprecations (see the module docstring)
_RECBOLE_WARNINGS = (
    (
        r"A value is trying to be set on a copy of a DataFrame or Series through chained",
        FutureWarning,
    ),
    (r"using <built-in function len> in Series\.agg cannot aggregate", FutureWarning),
    (r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", FutureWarning),
)


def filter_recbole_warnings() -> None:
    r"""Ignore RecBole 1.2.1's dependency deprecation warnings, raised from its own modules only."""
    for message, category in _RECBOLE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=r"recbole\.")


def apply() -> None:
    r"""Install the shims (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    # numpy 2 vs RecBole's Config (see module docstring).
    restore_numpy_aliases()
    # deprecation warnings of RecBole's dependencies that a user cannot act on (module docstring)
    filter_recbole_warnings()
    import recbole.trainer.trainer as trainer_module

    # torch >= 2.6 weights_only default vs RecBole's pickled Config (see module docstring).
    original_save = trainer_module.Trainer._save_checkpoint

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return  # RecBole's own rule: only rank 0 writes (and so signs) checkpoints
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        # Written next to its destination, signed, then renamed into place (RecBole's torch.save
        # writes in place: a run killed mid-save would leave a truncated best checkpoint).
        tmp = f"{saved_model_file}.tmp"
        original_save(self, epoch, verbose=False, saved_model_file=tmp, **kwargs)
        sign_checkpoint(tmp)
        os.replace(tmp, saved_model_file)
        os.replace(tmp + ".sig", f"{saved_model_file}.sig")
        if verbose:
            from recbole.utils import set_color

            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    trainer_module.Trainer._save_checkpoint = _save_checkpoint
    trainer_module.torch = _torch_proxy()
    # RecBole 1.2.1 unpickles any dataset/dataloader cache it finds (see module docstring).
    _install_cache_shims()

    # RecBole's SINE switches autograd anomaly mode on at import (see module docstring).
    anomaly = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        import recbole.model.sequential_recommender  # noqa: F401  (imports sine.py)
    except ImportError:  # a model's optional dependency: RecBole's get_model reports it later
        pass
    finally:
        torch.autograd.set_detect_anomaly(anomaly[0], check_nan=anomaly[1])
    # The RecBole models that torch.load a pre-trained checkpoint, and LDiffRec's np.load with
    # allow_pickle=True (see module docstring). After the import above: S3Rec is a sequential
    # model, and importing one imports sine.py.
    _install_model_file_shims()
    _APPLIED = True
