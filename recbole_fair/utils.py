r"""recbole_fair.utils
###################

Plugin look-ups in the RecBole-GNN pattern: models, datasets and trainers are searched in
``recbole_fair`` first and fall back to RecBole, so every built-in RecBole model runs through
recbole-fair's CLI unchanged.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from logging import getLogger

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer
from recbole.utils import set_color

_PLUGIN_MODEL_PACKAGES = ["recbole_fair.model.sequential_recommender"]
_RECBOLE_MODEL_PACKAGES = [
    "recbole.model.general_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.sequential_recommender",
    "recbole.model.knowledge_aware_recommender",
    "recbole.model.exlib_recommender",
]


def _model_names(packages: list[str]) -> list[str]:
    names = []
    for package in packages:
        try:
            module = importlib.import_module(package)
        except ImportError:  # an optional RecBole sub-package with missing extras
            continue
        names += [n for n, obj in vars(module).items() if isinstance(obj, type)]
    return names


def available_models() -> dict[str, list[str]]:
    r"""Names of the models recbole-fair provides and of RecBole's built-in models."""
    return {
        "recbole_fair": sorted(_model_names(_PLUGIN_MODEL_PACKAGES)),
        "recbole": sorted(set(_model_names(_RECBOLE_MODEL_PACKAGES))),
    }


def get_model(model_name: str) -> type:
    r"""Model class by name: recbole-fair's models first, then RecBole's.

    Raises:
        ValueError: unknown name; the message lists the available models and the closest match.
    """
    module_name = model_name.lower()
    for package in _PLUGIN_MODEL_PACKAGES:
        path = f"{package}.{module_name}"
        if importlib.util.find_spec(path) is not None:
            module = importlib.import_module(path)
            if hasattr(module, model_name):
                return getattr(module, model_name)
    try:
        return recbole_get_model(model_name)
    # RecBole raises ValueError for an unknown name, but its search first imports
    # exlib_recommender, whose optional dependencies (lightgbm, xgboost) may be missing.
    except (ValueError, AttributeError, ImportError):
        pass
    models = available_models()
    everything = models["recbole_fair"] + models["recbole"]
    close = difflib.get_close_matches(model_name, everything, n=1, cutoff=0.6)
    close += [m for m in everything if m.lower() == module_name]
    hint = f" Did you mean '{close[-1]}'?" if close else ""
    raise ValueError(
        f"Unknown model '{model_name}'.{hint} recbole-fair models: "
        f"{', '.join(models['recbole_fair'])}. RecBole models: {', '.join(models['recbole'])}."
    )


def create_dataset(config):
    r"""``recbole_fair.data.<Model>Dataset`` when it exists, else the class RecBole's
    ``create_dataset`` would pick, with recbole-fair's file checks and drop accounting
    (:mod:`recbole_fair.data.checked`).

    Raises:
        recbole_fair.errors.DataError: a problem in the atomic files, or too many interactions
            dropped because of one (``max_dropped_interactions``).
    """
    module = importlib.import_module("recbole_fair.data")
    dataset_class = getattr(module, config["model"] + "Dataset", None)
    if dataset_class is None:
        from recbole_fair.data.checked import create_recbole_dataset

        return create_recbole_dataset(config)
    dataset = dataset_class(config)
    getLogger().info(set_color("dataset class", "pink") + f": {dataset_class.__name__}")
    return dataset


def get_trainer(model_type, model_name: str) -> type:
    r"""``recbole_fair.trainer.<Model>Trainer`` when it exists, else RecBole's trainer."""
    module = importlib.import_module("recbole_fair.trainer")
    trainer = getattr(module, model_name + "Trainer", None)
    if trainer is not None:
        return trainer
    return recbole_get_trainer(model_type, model_name)
