r"""Compatibility shims that let RecBole 1.2.1 run on today's Python stack.

RecBole 1.2.1 (2023) predates numpy 2, pandas 3 and torch >= 2.6. Every workaround lives here,
one comment each saying which upstream behaviour it works around and when it can go.
:func:`apply` is idempotent and runs on ``import recbole_fair``. The signing of checkpoints and
caches, and RecBole's cache functions rewritten to read only signed files, live in
:mod:`recbole_fair.trusted_files`; this module installs them.

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
  :func:`~recbole_fair.trusted_files.trusted_torch_load` passes ``weights_only=True`` explicitly
  for anything unsigned, so foreign files stay refused under torch 2.4/2.5 (whose default is
  ``False``) and under ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``; a signed file is read once, and the
  bytes checked are the bytes unpickled. The RecBole models that ``torch.load`` a pre-trained
  checkpoint named in their config (ConvNCF, NAIS, NeuMF, RaCT, KD_DAGFM, S3Rec) see the same
  loader.
* RecBole's dataset and dataloader caches are plain pickles, and RecBole 1.2.1 unpickles them
  whenever the file exists, whatever ``save_dataset``/``save_dataloaders`` say:
  ``create_dataset`` reads ``<checkpoint_dir>/<dataset>-<DatasetClass>.pth`` (or
  ``dataset_save_path``) and ``data_preparation`` (``load_split_dataloaders``) reads
  ``<checkpoint_dir>/<dataset>-for-<model>-dataloader.pth`` (or ``dataloaders_save_path``). A
  pickle planted there (a copied ``saved/`` folder) runs its code on the next ordinary run.
  The same signing rule applies: ``Dataset.save`` and ``save_split_dataloaders`` write to a
  temporary file, sign it and rename both into place; the ``pickle`` module RecBole's data utils
  see only unpickles signed bytes (:class:`~recbole_fair.trusted_files.UntrustedFileError`
  otherwise), and ``load_split_dataloaders`` turns that refusal into a warning naming the file
  and a rebuild from the atomic files (the cache is only an optimisation). ``create_dataset`` is
  RecBole's rule rewritten on two helpers that recbole-fair's own dataset factory
  (:func:`recbole_fair.data.checked.create_recbole_dataset`, called by
  :func:`recbole_fair.utils.create_dataset`) uses too:
  :func:`~recbole_fair.trusted_files.recbole_dataset_class_name` (which class) and
  :func:`~recbole_fair.trusted_files.load_dataset_cache` (a signed cache of that class built with
  the same dataset arguments, else a warning and a rebuild; a signed cache that no longer
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

import os
import pickle
import types
import warnings
from typing import Any, Callable

import numpy as np
import torch

from recbole_fair.trusted_files import (
    UntrustedFileError,
    create_dataset,
    dataset_cache_file,
    guarded_pickle_load,
    is_trusted_checkpoint,
    load_dataset_cache,
    read_trusted_bytes,
    recbole_dataset_class_name,
    save_dataset,
    save_split_dataloaders,
    sign_checkpoint,
    trusted_torch_load,
    warn_untrusted_cache,
    write_signed,
)

_APPLIED = False
_ORIGINAL_NP_LOAD = np.load
# The functions that replace RecBole's cache readers and writers, by their RecBole name.
_CACHE_SHIMS: dict[str, Callable[..., Any]] = {}
# RecBole's own dataloader cache reader, called by its shim.
_UPSTREAM: dict[str, Callable[..., Any]] = {}


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


def _load_split_dataloaders(config: Any) -> Any:
    r"""RecBole's ``load_split_dataloaders``; None (rebuild) for an unsigned cache, with a
    warning."""
    try:
        return _UPSTREAM["load_split_dataloaders"](config)
    except UntrustedFileError as err:
        warn_untrusted_cache(err.path, "split dataloaders", "save_dataloaders")
        return None


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
    data_utils.pickle = _module_proxy(pickle, load=guarded_pickle_load)
    _CACHE_SHIMS.update(
        create_dataset=create_dataset,
        load_split_dataloaders=_load_split_dataloaders,
        save_split_dataloaders=save_split_dataloaders,
    )
    for name, shim in _CACHE_SHIMS.items():
        setattr(data_utils, name, shim)  # data_preparation looks them up here
        setattr(recbole.data, name, shim)  # ``from recbole.data import create_dataset``
    dataset_module.Dataset.save = save_dataset


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


def _install_checkpoint_shims() -> None:
    r"""Signed, atomically written checkpoints and the trusted loader in RecBole's trainer (torch
    >= 2.6 ``weights_only`` default vs RecBole's pickled Config, see the module docstring)."""
    import recbole.trainer.trainer as trainer_module

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


def _import_sequential_models() -> None:
    r"""Import RecBole's sequential models, keeping the process's autograd anomaly mode (SINE
    switches it on at import, see the module docstring)."""
    anomaly = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        import recbole.model.sequential_recommender  # noqa: F401  (imports sine.py)
    except ImportError:  # a model's optional dependency: RecBole's get_model reports it later
        pass
    finally:
        torch.autograd.set_detect_anomaly(anomaly[0], check_nan=anomaly[1])


def apply() -> None:
    r"""Install the shims (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    # numpy 2 vs RecBole's Config (see module docstring).
    restore_numpy_aliases()
    # deprecation warnings of RecBole's dependencies that a user cannot act on (module docstring)
    filter_recbole_warnings()
    # torch >= 2.6 weights_only default vs RecBole's pickled Config (see module docstring).
    _install_checkpoint_shims()
    # RecBole 1.2.1 unpickles any dataset/dataloader cache it finds (see module docstring).
    _install_cache_shims()
    # RecBole's SINE switches autograd anomaly mode on at import (see module docstring).
    _import_sequential_models()
    # The RecBole models that torch.load a pre-trained checkpoint, and LDiffRec's np.load with
    # allow_pickle=True (see module docstring). After the import above: S3Rec is a sequential
    # model, and importing one imports sine.py.
    _install_model_file_shims()
    _APPLIED = True


__all__ = [
    "apply",
    "filter_recbole_warnings",
    "restore_numpy_aliases",
    # defined in recbole_fair.trusted_files, kept importable from here where they were before
    "UntrustedFileError",
    "dataset_cache_file",
    "is_trusted_checkpoint",
    "load_dataset_cache",
    "read_trusted_bytes",
    "recbole_dataset_class_name",
    "sign_checkpoint",
    "trusted_torch_load",
    "write_signed",
]
