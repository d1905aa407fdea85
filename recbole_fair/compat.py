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

import hashlib
import hmac
import os
import secrets
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

_APPLIED = False
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


def _file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _signature(digest: str) -> str:
    return hmac.new(_secret_key(), digest.encode(), hashlib.sha256).hexdigest()


def sign_checkpoint(path: str | os.PathLike) -> None:
    r"""Mark a checkpoint written by this installation as trusted (in-process and on disk)."""
    digest = _file_digest(path)
    _TRUSTED_DIGESTS.add(digest)
    Path(str(path) + ".sig").write_text(_signature(digest))


def is_trusted_checkpoint(path: str | os.PathLike) -> bool:
    r"""True when ``path`` holds exactly the bytes of a checkpoint this installation signed."""
    if not os.path.isfile(path):
        return False
    digest = _file_digest(path)
    if digest in _TRUSTED_DIGESTS:
        return True
    sig_file = Path(str(path) + ".sig")
    if not sig_file.is_file():
        return False
    return hmac.compare_digest(sig_file.read_text().strip(), _signature(digest))


def trusted_torch_load(f: Any, *args: Any, **kwargs: Any) -> Any:
    r"""``torch.load`` that fully unpickles only checkpoints this installation wrote.

    Anything else (a foreign file, a modified checkpoint, a file-like object) is loaded with
    torch's own default (``weights_only=True``), which refuses arbitrary pickles.
    """
    if "weights_only" not in kwargs and isinstance(f, (str, os.PathLike)):
        if is_trusted_checkpoint(f):
            kwargs["weights_only"] = False
    return _ORIGINAL_TORCH_LOAD(f, *args, **kwargs)


def _torch_proxy() -> types.ModuleType:
    r"""A stand-in for the ``torch`` module inside RecBole's trainer module: identical except
    that ``load`` is :func:`trusted_torch_load` (``torch.load`` itself stays untouched)."""
    proxy = types.ModuleType("torch")

    def __getattr__(name: str) -> Any:
        return getattr(torch, name)

    proxy.__getattr__ = __getattr__  # type: ignore[attr-defined]
    proxy.load = trusted_torch_load  # type: ignore[attr-defined]
    return proxy


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

    # RecBole's SINE switches autograd anomaly mode on at import (see module docstring).
    anomaly = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        import recbole.model.sequential_recommender  # noqa: F401  (imports sine.py)
    except ImportError:  # a model's optional dependency: RecBole's get_model reports it later
        pass
    finally:
        torch.autograd.set_detect_anomaly(anomaly[0], check_nan=anomaly[1])
    _APPLIED = True
