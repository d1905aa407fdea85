r"""recbole_fair.paths
###################

Where recbole-fair finds its files: its YAML ``properties/`` directory (from a source checkout
or after an install) and the environment variable that gives the default ``data_path``; and how a
result file names a path without naming the machine (:func:`portable_path`). Imports nothing of
recbole-fair: the configuration and the data layer both read it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from functools import lru_cache
from typing import Any

# Environment variable giving the default data_path (the folder holding one folder per dataset).
DATA_PATH_ENV = "RECBOLE_FAIR_DATA_PATH"


def find_properties_dir(package_file: str, prefixes: list[str]) -> str:
    r"""First ``properties/`` holding ``overall.yaml``: next to the package directory of
    ``package_file`` (source checkout, editable install), else ``<prefix>/share/recbole_fair/
    properties`` for each install prefix (where a normal install puts the ``data_files``)."""
    package_dir = os.path.dirname(os.path.abspath(package_file))
    candidates = [os.path.join(os.path.dirname(package_dir), "properties")]
    candidates += [os.path.join(p, "share", "recbole_fair", "properties") for p in prefixes]
    for path in candidates:
        if os.path.isfile(os.path.join(path, "overall.yaml")):
            return path
    raise FileNotFoundError(
        "recbole-fair's properties/ directory (overall.yaml) was not found; looked in: "
        + ", ".join(candidates)
        + ". Reinstall the package (pip install .) or run from a source checkout."
    )


@lru_cache(maxsize=1)
def get_properties_dir() -> str:
    r"""Directory of recbole-fair's YAML ``properties/`` (see :func:`find_properties_dir`)."""
    prefixes = [sysconfig.get_path("data"), sys.prefix, sys.base_prefix]
    return find_properties_dir(__file__, list(dict.fromkeys(prefixes)))


def portable_path(value: Any) -> Any:
    r"""A path as a committed result file may name it: relative to the working directory when
    under it, ``<recbole package>/...`` under the installed RecBole (its ``dataset_example``),
    else ``<elsewhere>/<name>``. Anything but an absolute path is returned as it is."""
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    rel = os.path.relpath(value, os.getcwd())
    if not rel.startswith(".."):
        return rel
    import recbole

    package = os.path.dirname(os.path.abspath(recbole.__file__))
    if os.path.commonpath([package, os.path.abspath(value)]) == package:
        return "<recbole package>/" + os.path.relpath(value, package)
    return "<elsewhere>/" + os.path.basename(os.path.normpath(value))


def portable_argv(argv: list[str]) -> list[str]:
    r"""A command line with its machine paths (``--key=/abs/path`` or a bare absolute path) made
    portable (:func:`portable_path`)."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        out.append(f"{key}={portable_path(value)}" if eq else str(portable_path(arg)))
    return out
