r"""recbole_fair.checkpoint
#######################

Rebuild a trained model from its RecBole checkpoint, for inspection: :func:`load_checkpoint`
recreates the checkpoint's dataset with its own config (:func:`recbole_fair.utils.create_dataset`),
RecBole's split and the model, loads the weights and returns a :class:`LoadedModel`; the analyses
of :mod:`recbole_fair.analysis` and the benchmark scripts start from one.

Only checkpoints written by this installation are fully unpickled (signed, see
:mod:`recbole_fair.compat`).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from typing import Any

import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_fair.compat import trusted_torch_load
from recbole_fair.utils import create_dataset, get_model


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
    """

    path: str
    label: str
    config: Any
    model: Any
    test_data: Any
    dataset: Any
    valid_data: Any = None

    @property
    def focused(self) -> bool:
        return getattr(self.model, "attention", "standard") == "focused"


def load_checkpoint(
    path: str | os.PathLike,
    device: str = "cpu",
    data_path: str | None = None,
    require_attention_maps: bool = True,
) -> LoadedModel:
    r"""Rebuild dataset, split and model of a RecBole checkpoint and load its weights.

    Args:
        path: checkpoint written by RecBole's trainer through recbole-fair (signed, see
            :mod:`recbole_fair.compat`).
        device: device to run the model on.
        data_path: folder holding the dataset folder, when it moved since training.
        require_attention_maps: refuse models without ``attention_maps`` (the visualisation
            needs them; other inspections of any model pass False).

    Raises:
        ValueError: not a signed RecBole checkpoint, or a model without ``attention_maps``.
    """
    path = str(path)
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
    config = checkpoint["config"]
    config["device"] = torch.device(device)
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
    return LoadedModel(path, label, config, model, test_data, test_data._dataset, valid_data)


def iter_test_batches(loaded: LoadedModel):
    r"""Yield the test interactions (user, history, length, target), moved to the model's device."""
    for batch in loaded.test_data:
        interaction = batch[0] if isinstance(batch, tuple) else batch
        yield interaction.to(loaded.config["device"])
