r"""recbole_fair.config
####################

:class:`Config`, RecBole's configurator extended to know recbole-fair's models and YAML files.

Priority, lowest first: RecBole's ``overall.yaml`` < RecBole's model YAML < RecBole's dataset
YAML and quick-start presets < ours (``properties/overall.yaml`` < ``properties/semantic_ids.yaml``
for semantic-ID models < ``properties/model/<Model>.yaml`` < ``properties/dataset/<dataset>.yaml``)
< ``config_file_list`` < ``config_dict`` < command line.
"""

from __future__ import annotations

import contextlib
import difflib
import glob
import os
import sys
from logging import getLogger
from typing import Any, Iterator

import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import (
    ModelType,
    dataset_arguments,
    evaluation_arguments,
    general_arguments,
    training_arguments,
)

from recbole_fair.errors import ConfigError
from recbole_fair.paths import DATA_PATH_ENV, get_properties_dir
from recbole_fair.utils import get_model


# Settings checked once the configuration is final: key -> (test, what a valid value is). A key
# that is absent or None is not checked (RecBole's own default applies, or the model ignores it).
def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _share(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _probability(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1


_SETTING_RULES: dict[str, tuple[Any, str]] = {
    "epochs": (_positive_int, "an integer >= 1 (the number of training epochs)"),
    "train_batch_size": (_positive_int, "an integer >= 1"),
    "eval_batch_size": (_positive_int, "an integer >= 1"),
    "MAX_ITEM_LIST_LENGTH": (
        _positive_int,
        "an integer >= 1 (how many earlier items of a user's history the model sees)",
    ),
    # 0 is RecBole's "stop at the first evaluation that does not improve"
    "stopping_step": (
        _non_negative_int,
        "an integer >= 0 (early-stopping patience, in evaluations)",
    ),
    "learning_rate": (_positive_number, "a number > 0"),
    "hidden_size": (_positive_int, "an integer >= 1"),
    "n_layers": (_non_negative_int, "an integer >= 0"),  # LightGCN with 0 layers is MF
    "n_heads": (_positive_int, "an integer >= 1"),
    "hidden_dropout_prob": (_probability, "a probability in [0, 1)"),
    "attn_dropout_prob": (_probability, "a probability in [0, 1)"),
    "max_dropped_interactions": (
        _share,
        "a share in [0, 1] (of the interactions a run may lose to data problems; 1 = no check)",
    ),
}

# Keys RecBole sets or reads that appear in none of its YAML files.
_RUNTIME_KEYS = {
    "model",
    "dataset",
    "config_files",
    "nproc",
    "world_size",
    "ip",
    "port",
    "offset",
    "group_offset",
    "local_rank",
    "single_spec",
    "device",
    "MODEL_TYPE",
    "MODEL_INPUT_TYPE",
    "eval_type",
    "benchmark_filename",
    "strict_config",
    "seeds",
    "data_path",
    "gpu_id",
    "use_gpu",
}


@contextlib.contextmanager
def command_line(argv: list[str]) -> Iterator[None]:
    r"""Run the block with ``sys.argv = argv``. RecBole's Config reads ``--key=value`` overrides
    from ``sys.argv``: code that builds a :class:`Config` under a command line of its own (an
    analysis script's flags) hides that command line from it."""
    saved = sys.argv
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = saved


class Config(RecBoleConfig):
    r"""RecBole ``Config`` that resolves recbole-fair models and loads our YAML files.

    Args:
        model (str or type, optional): model name or class; recbole-fair's models are looked up
            first, then RecBole's.
        dataset (str, optional): dataset name.
        config_file_list (list of str, optional): user YAML files.
        config_dict (dict, optional): parameter overrides.

    Unknown keys given by the user (files, dict or command line) are reported with the closest
    known key; ``strict_config: True`` turns that warning into a ``ValueError``. Keys of another
    model family (e.g. ``text_fields`` for SASRec) are accepted silently, so one file can
    configure several models. Settings that cannot work (``epochs: -1``,
    ``MAX_ITEM_LIST_LENGTH: 0``, ...) raise :class:`ConfigError`; so does a YAML file that does
    not parse, naming the file.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._check_settings()

    def _load_config_files(self, file_list):
        file_config_dict: dict = {}
        for file in file_list or []:
            if not os.path.isfile(file):
                raise ConfigError(
                    f"Config file {file} does not exist (looked for {os.path.abspath(file)}); "
                    "check the path given to --config_files / config_file_list."
                )
            try:
                with open(file, encoding="utf-8") as f:
                    content = yaml.load(f.read(), Loader=self.yaml_loader)
            except yaml.YAMLError as err:
                raise ConfigError(
                    f"Config file {file} is not valid YAML: "
                    + str(err).replace('"<unicode string>"', str(file))
                    + ". Each line of a config file "
                    "is 'key: value' (see properties/overall.yaml for examples)."
                ) from err
            except UnicodeDecodeError as err:
                raise ConfigError(f"Config file {file} is not UTF-8 text: {err}.") from err
            if content is None:  # an empty file
                continue
            if not isinstance(content, dict):
                raise ConfigError(
                    f"Config file {file} holds a {type(content).__name__}, not a mapping of "
                    "'key: value' lines."
                )
            file_config_dict.update(content)
        return file_config_dict

    def _check_settings(self) -> None:
        for key, (valid, expected) in _SETTING_RULES.items():
            value = self.final_config_dict.get(key)
            if value is not None and not valid(value):
                raise ConfigError(
                    f"Setting '{key}' is {value!r}; it must be {expected}. Change it where it "
                    f"was set (--{key}=..., a config file or config_dict)."
                )

    def _get_model_and_dataset(self, model: Any, dataset: str | None):
        if model is None:
            try:
                model = self.external_config_dict["model"]
            except KeyError as err:
                raise KeyError(
                    "model needs to be specified in at least one of these ways: "
                    "[model argument, config file, config dict, command line --model=NAME]"
                ) from err
        if isinstance(model, str):
            model_name, model_class = model, get_model(model)
        else:
            model_name, model_class = model.__name__, model
        if dataset is None:
            try:
                dataset = self.external_config_dict["dataset"]
            except KeyError as err:
                raise KeyError(
                    "dataset needs to be specified in at least one of these ways: "
                    "[dataset argument, config file, config dict, command line --dataset=NAME]"
                ) from err
        return model_name, model_class, dataset

    def _plugin_yaml_files(self, model: str, model_class: type, dataset: str) -> list[str]:
        root = get_properties_dir()
        files = [os.path.join(root, "overall.yaml")]
        if getattr(model_class, "uses_semantic_ids", False):
            files.append(os.path.join(root, "semantic_ids.yaml"))
        files.append(os.path.join(root, "model", f"{model}.yaml"))
        files.append(os.path.join(root, "dataset", f"{dataset}.yaml"))
        return [f for f in files if os.path.isfile(f)]

    def _load_internal_config_dict(self, model: str, model_class: type, dataset: str) -> None:
        super()._load_internal_config_dict(model, model_class, dataset)
        dataset_yaml = os.path.join(get_properties_dir(), "dataset", f"{dataset}.yaml")
        for file in self._plugin_yaml_files(model, model_class, dataset):
            config_dict = self._update_internal_config_dict(file)
            if file == dataset_yaml and config_dict:
                self.parameters["Dataset"] += [
                    k for k in config_dict if k not in self.parameters["Dataset"]
                ]
        self._check_unknown_keys(model, model_class, dataset)

    def _get_final_config_dict(self) -> dict:
        final = super()._get_final_config_dict()
        if "data_path" not in self.external_config_dict and os.environ.get(DATA_PATH_ENV):
            final["data_path"] = os.environ[DATA_PATH_ENV]
        # RecBole's overall.yaml asks for uniform negative sampling, which its own config check
        # then rejects for sequential models trained with cross-entropy: switch it off there
        # unless the user set it.
        if (
            final.get("MODEL_TYPE") == ModelType.SEQUENTIAL
            and final.get("loss_type") == "CE"
            and "train_neg_sample_args" not in self.external_config_dict
        ):
            final["train_neg_sample_args"] = None
        return final

    # ------------------------------------------------------------------ key validation
    def _known_keys(self, model: str, model_class: type, dataset: str) -> set[str]:
        import recbole

        known = set(self.internal_config_dict) | _RUNTIME_KEYS
        known |= set(general_arguments + training_arguments)
        known |= set(evaluation_arguments + dataset_arguments)
        recbole_props = os.path.join(os.path.dirname(recbole.__file__), "properties")
        candidates = glob.glob(os.path.join(recbole_props, "dataset", "*.yaml"))
        candidates += glob.glob(os.path.join(recbole_props, "quick_start_config", "*.yaml"))
        candidates += self._plugin_yaml_files(model, model_class, dataset)
        for file in candidates:
            with open(file, encoding="utf-8") as f:
                content = yaml.load(f.read(), Loader=self.yaml_loader) or {}
            known |= set(content)
        # Keys a model reads with config[...] but does not list in its YAML.
        known |= set(getattr(model_class, "extra_config_keys", ()))
        return known

    @staticmethod
    def _other_family_keys() -> set[str]:
        r"""Keys of every model's YAML (recbole-fair's and RecBole's) and of the semantic-ID
        settings: valid in a config file shared by several models, ignored by the others."""
        import recbole

        recbole_props = os.path.join(os.path.dirname(recbole.__file__), "properties")
        files = glob.glob(os.path.join(recbole_props, "model", "*.yaml"))
        files += glob.glob(os.path.join(get_properties_dir(), "model", "*.yaml"))
        files.append(os.path.join(get_properties_dir(), "semantic_ids.yaml"))
        keys: set[str] = set()
        for file in files:
            with open(file, encoding="utf-8") as f:
                content = yaml.safe_load(f.read()) or {}
            if isinstance(content, dict):
                keys |= set(content)
        return keys

    def _check_unknown_keys(self, model: str, model_class: type, dataset: str) -> None:
        known = self._known_keys(model, model_class, dataset)
        unknown = sorted(k for k in self.external_config_dict if k not in known)
        if unknown:
            other_family = self._other_family_keys()
            unknown = [k for k in unknown if k not in other_family]
        if not unknown:
            return
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        message = (
            f"Unknown config key(s) for model [{model}] on dataset [{dataset}]: "
            f"{', '.join(hints)}. They are passed to the model but nothing in RecBole or "
            f"recbole-fair reads them; check the spelling (config files, config_dict or "
            f"--key=value)."
        )
        if self.external_config_dict.get("strict_config", False):
            raise ConfigError(message + " (strict_config: True)")
        getLogger().warning(message)
