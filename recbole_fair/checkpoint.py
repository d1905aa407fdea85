r"""recbole_fair.checkpoint
#######################

Rebuild a trained model from its RecBole checkpoint, for inspection: :func:`load_checkpoint`
recreates the checkpoint's dataset with its own config (:func:`recbole_fair.utils.create_dataset`),
RecBole's split and the model, loads the weights and returns a :class:`LoadedModel`; the analyses
of :mod:`recbole_fair.analysis` and the benchmark scripts start from one, and so does ``recbole-fair evaluate`` (:mod:`recbole_fair.cli.evaluate`).

``overrides`` change how the rebuilt model ranks and is evaluated (graph decoding for FAIR/RPG,
TIGER's beam search, the metrics, the batch size, the device), never what was trained: only the
keys of :data:`EVALUATION_SETTINGS` are accepted (:func:`check_overrides`).

Only checkpoints written by this installation are fully unpickled (signed, see
:mod:`recbole_fair.compat`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import pickle
from typing import Any, Mapping

import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_fair.compat import trusted_torch_load
from recbole_fair.errors import ConfigError
from recbole_fair.paths import get_properties_dir
from recbole_fair.utils import create_dataset, get_model

# The settings a rebuilt checkpoint may change (``load_checkpoint(overrides=...)``): how the
# trained model ranks or generates and how it is evaluated. Everything else (the architecture,
# hence the parameters' shapes, the semantic IDs, the data and its split, the seed) is what was
# trained and stays the checkpoint's.
MODEL_EVALUATION_SETTINGS = (
    # FAIR, RPG: exact or graph-constrained ranking (properties/model/FAIR.yaml, RPG.yaml)
    "decoding",
    "graph_num_neighbors",
    "graph_num_beams",
    "graph_beam_size",
    "graph_steps",
    "graph_embedding",
    "graph_start",
    # TIGER: the constrained beam search and its beam-vs-exact check (properties/model/TIGER.yaml)
    "beam_size",
    "tiger_exact_check_users",
    "tiger_exact_check_mode",
    "tiger_decode_chunk",
)
# RecBole's evaluation settings, which every model has.
GENERAL_EVALUATION_SETTINGS = (
    "eval_batch_size",
    "topk",
    "metrics",
    "metric_decimal_place",
    "device",
)
EVALUATION_SETTINGS = MODEL_EVALUATION_SETTINGS + GENERAL_EVALUATION_SETTINGS


@dataclasses.dataclass
class LoadedModel:
    r"""A checkpoint rebuilt for inspection.

    Attributes:
        path (str): the checkpoint file.
        label (str): a short name for plots and tables (model and attention type).
        config: the checkpoint's RecBole ``Config``.
        model: the model, in eval mode, with the checkpoint's weights.
        test_data: RecBole's test data loader (full ranking, one row per test user).
        dataset: the test split's dataset.
        valid_data: RecBole's validation data loader (same layout as ``test_data``).
        overridden (dict): the checkpoint's own values of the settings ``overrides`` changed.
        epoch (int or None): the checkpoint's epoch, 1-based (RecBole stores it from 0).
    """

    path: str
    label: str
    config: Any
    model: Any
    test_data: Any
    dataset: Any
    valid_data: Any = None
    overridden: dict = dataclasses.field(default_factory=dict)
    epoch: int | None = None

    @property
    def focused(self) -> bool:
        return getattr(self.model, "attention", "standard") == "focused"


def load_checkpoint(
    path: str | os.PathLike,
    device: str = "cpu",
    data_path: str | None = None,
    require_attention_maps: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedModel:
    r"""Rebuild dataset, split and model of a RecBole checkpoint and load its weights.

    Args:
        path: checkpoint written by RecBole's trainer through recbole-fair (signed, see
            :mod:`recbole_fair.compat`).
        device: device to run the model on.
        data_path: folder holding the dataset folder, when it moved since training.
        require_attention_maps: refuse models without ``attention_maps`` (the visualisation
            needs them; other inspections of any model pass False).
        overrides: settings of :data:`EVALUATION_SETTINGS` that replace the checkpoint's before
            the dataset and the model are built (e.g. ``{"decoding": "graph"}``); a ``device``
            among them wins over ``device``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a signed RecBole checkpoint, or a model without ``attention_maps``.
        ConfigError: an override that is not an evaluation setting of the model, or a bad value.
    """
    checkpoint = _read_checkpoint(str(path))
    config = checkpoint["config"]
    # RecBole's Config.__init__ puts back numpy's removed aliases (np.float...) that its metrics
    # use; an unpickled Config never ran it, so a fresh process evaluating one needs this call
    config.compatibility_settings()
    settings = check_overrides(config, overrides or {})
    overridden = {key: config[key] for key in settings}
    config["device"] = _torch_device(settings.pop("device", device))
    for key, value in settings.items():
        config[key] = value
    config["show_progress"] = False
    if data_path:
        config["data_path"] = os.path.join(data_path, config["dataset"])
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if require_attention_maps and not hasattr(model, "attention_maps"):
        raise ValueError(
            f"model {config['model']} has no attention_maps(); only FAIR-style models "
            f"(FAIR, RPG) can be visualised."
        )
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    model.eval()
    label = f"{config['model']} ({getattr(model, 'attention', 'standard')})"
    epoch = checkpoint.get("epoch")
    return LoadedModel(
        str(path),
        label,
        config,
        model,
        test_data,
        test_data._dataset,
        valid_data,
        overridden=overridden,
        epoch=None if epoch is None else int(epoch) + 1,
    )


def _read_checkpoint(path: str) -> dict:
    r"""The checkpoint dict of ``path``, refused unless RecBole's trainer wrote it through this
    installation (signed: only then is its pickled ``Config`` unpickled)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = trusted_torch_load(path, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError) as err:
        raise ValueError(
            f"{path} could not be loaded as a checkpoint written by this installation "
            f"(only checkpoints signed by recbole_fair.compat are fully unpickled): {err}"
        ) from err
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= set(checkpoint):
        raise ValueError(f"{path} is not a RecBole checkpoint (keys 'config', 'state_dict').")
    if not isinstance(checkpoint["config"], RecBoleConfig):
        # an unsigned file is read with torch's weights_only loader, which never gives a Config
        raise ValueError(
            f"{path} is not a checkpoint written by RecBole's trainer through this installation: "
            f"its 'config' is a {type(checkpoint['config']).__name__}, not RecBole's Config (a "
            f"signed checkpoint of this installation holds one)."
        )
    return checkpoint


def check_overrides(config: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    r"""``overrides`` checked against the checkpoint's ``config`` and normalised as RecBole's
    Config would (``topk: 10`` -> ``[10]``, ``metrics: NDCG`` -> ``["NDCG"]``).

    A key must be one of :data:`EVALUATION_SETTINGS` and, for the model-specific ones
    (:data:`MODEL_EVALUATION_SETTINGS`), a setting of the checkpoint's model (in its config or in
    ``properties/model/<model>.yaml``). The values of the model's settings are checked when the
    model is built (:class:`~recbole_fair.errors.ConfigError` naming the key).

    Raises:
        ConfigError: a key that changes what was trained, an unknown key, a key of another model
            or a bad evaluation value; the message names the key and the keys allowed.
    """
    known = _model_keys(config)
    allowed = [k for k in MODEL_EVALUATION_SETTINGS if k in known] + list(
        GENERAL_EVALUATION_SETTINGS
    )
    checked = {}
    for key, value in overrides.items():
        if key not in allowed:
            raise ConfigError(_refusal(key, config, known, allowed))
        checked[key] = _normalised(key, value, config)
    return checked


def _model_keys(config: Any) -> set[str]:
    r"""The settings of the checkpoint's model: its config's keys and those of its YAML in this
    installation (a checkpoint trained before a key existed still has it, with its default)."""
    keys = set(config.final_config_dict)
    yaml_file = os.path.join(get_properties_dir(), "model", f"{config['model']}.yaml")
    if os.path.isfile(yaml_file):
        with open(yaml_file, encoding="utf-8") as f:
            keys |= set(yaml.safe_load(f) or {})
    return keys


def _refusal(key: str, config: Any, known: set[str], allowed: list[str]) -> str:
    r"""Why ``key`` cannot be overridden (see :func:`check_overrides`)."""
    model = config["model"]
    can = f"The settings of {model} an evaluation can change: {', '.join(allowed)}."
    if key in known:
        return (
            f"setting '{key}' cannot be overridden when evaluating a checkpoint: it is part of "
            f"what was trained (the model's architecture and parameters, its semantic IDs, the "
            f"data or its split; the checkpoint has {key}={config[key]!r}). Train a model with "
            f"the value you want instead. {can}"
        )
    if key in MODEL_EVALUATION_SETTINGS:
        return f"setting '{key}' does not apply to model {model} (it has no such setting). {can}"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown setting '{key}'{hint}: model {model} has no such setting. {can}"


def _normalised(key: str, value: Any, config: Any) -> Any:
    r"""An evaluation setting's value as RecBole's Config stores it (checked where RecBole
    checks it when its Config is built, which a checkpoint's Config no longer is)."""
    if key == "device":
        return str(_torch_device(value))
    if key in ("eval_batch_size", "metric_decimal_place"):
        low = 1 if key == "eval_batch_size" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{key} must be an integer >= {low}, got [{value!r}].")
    if key == "topk":
        value = [value] if isinstance(value, int) else value
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in value)
        ):
            raise ConfigError(
                f"topk must be a positive integer or a list of them, got [{value!r}]."
            )
        return list(value)
    if key == "metrics":
        return _checked_metrics(value, config["eval_type"])
    return value


def _checked_metrics(value: Any, eval_type: Any) -> list[str]:
    from recbole.evaluator.register import metric_types

    metrics = [value] if isinstance(value, str) else value
    if not isinstance(metrics, (list, tuple)) or not metrics:
        raise ConfigError(f"metrics must be a metric name or a list of them, got [{value!r}].")
    for metric in metrics:
        kind = metric_types.get(str(metric).lower())
        if kind is None:
            raise ConfigError(
                f"metrics: there is no metric named '{metric}' (RecBole's metrics: "
                f"{', '.join(sorted(metric_types))})."
            )
        if kind != eval_type:
            raise ConfigError(
                f"metrics: '{metric}' is a {kind.name.lower()} metric; the checkpoint's "
                f"evaluation computes {eval_type.name.lower()} metrics only."
            )
    return list(metrics)


def _torch_device(value: Any) -> torch.device:
    r"""``value`` as a ``torch.device`` this machine has."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"device must be a torch device such as cpu or cuda:0, got [{value}]."
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device [{value}]: this machine has no CUDA device; use cpu.")
    return device


def iter_test_batches(loaded: LoadedModel):
    r"""Yield the test interactions (user, history, length, target), moved to the model's device."""
    for batch in loaded.test_data:
        interaction = batch[0] if isinstance(batch, tuple) else batch
        yield interaction.to(loaded.config["device"])
