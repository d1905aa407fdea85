"""Plugin plumbing: model/dataset/trainer look-ups, config layering, properties lookup."""

import logging
import os
import subprocess
import sys
import zipfile

import pytest

from recbole_fair import paths, utils
from recbole_fair.config import Config

TINY = {"show_progress": False}


def test_builtin_models_fall_back_to_recbole():
    from recbole.model.sequential_recommender import GRU4Rec, SASRec

    assert utils.get_model("SASRec") is SASRec
    assert utils.get_model("GRU4Rec") is GRU4Rec


def test_plugin_model_found_first():
    from recbole_fair.model.sequential_recommender.fair import FAIR

    assert utils.get_model("FAIR") is FAIR


def test_unknown_model_lists_models_and_suggests():
    with pytest.raises(ValueError) as err:
        utils.get_model("fair")
    message = str(err.value)
    assert "Did you mean 'FAIR'" in message
    assert "SASRec" in message and "BERT4Rec" in message
    with pytest.raises(ValueError, match="Unknown model 'NoSuchModel'"):
        utils.get_model("NoSuchModel")


def test_trainer_lookup_falls_back():
    from recbole.trainer import Trainer
    from recbole.utils import ModelType

    assert utils.get_trainer(ModelType.SEQUENTIAL, "SASRec") is Trainer


def test_properties_dir_from_checkout():
    root = paths.get_properties_dir()
    assert os.path.isfile(os.path.join(root, "overall.yaml"))
    assert os.path.isfile(os.path.join(root, "model", "FAIR.yaml"))


def test_config_layers_in_priority_order(tmp_path):
    # ours (overall.yaml) over RecBole's defaults
    config = Config(model="SASRec", dataset="ml-100k", config_dict=TINY)
    assert config["topk"] == [5, 10]
    assert config["valid_metric"] == "NDCG@10"
    assert config["eval_args"]["order"] == "TO"
    # dataset YAML of ours
    assert "movie_title" in config["load_col"]["item"]
    # CE sequential models get no negative sampling without the user asking
    assert config["train_neg_sample_args"]["distribution"] == "none"
    # model YAML of ours over overall; config file over YAML; config_dict over file
    fair = Config(model="FAIR", dataset="ml-100k", config_dict=TINY)
    assert fair["n_codes"] == 32
    user_file = tmp_path / "user.yaml"
    user_file.write_text("n_codes: 16\nhidden_size: 96\n")
    fair = Config(
        model="FAIR",
        dataset="ml-100k",
        config_file_list=[str(user_file)],
        config_dict={"hidden_size": 64, **TINY},
    )
    assert fair["n_codes"] == 16 and fair["hidden_size"] == 64


def test_bpr_sequential_model_keeps_negative_sampling():
    config = Config(model="SASRec", dataset="ml-100k", config_dict={"loss_type": "BPR", **TINY})
    assert config["train_neg_sample_args"]["distribution"] == "uniform"


def test_unknown_config_key_warns_with_suggestion(caplog):
    with caplog.at_level(logging.WARNING):
        Config(model="SASRec", dataset="ml-100k", config_dict={"hiden_size": 8, **TINY})
    assert "hiden_size" in caplog.text and "did you mean 'hidden_size'" in caplog.text


def test_unknown_config_key_is_an_error_when_strict():
    with pytest.raises(ValueError, match="learnig_rate"):
        Config(
            model="SASRec",
            dataset="ml-100k",
            config_dict={"learnig_rate": 0.1, "strict_config": True, **TINY},
        )


def test_known_keys_do_not_warn(caplog):
    with caplog.at_level(logging.WARNING):
        Config(
            model="FAIR",
            dataset="ml-100k",
            config_dict={"nrt_weight": 0.0, "epochs": 1, "learning_rate": 0.1, **TINY},
        )
    assert "Unknown config key" not in caplog.text


def test_dataset_lookup():
    from recbole_fair.data import FAIRDataset

    config = Config(model="SASRec", dataset="ml-100k", config_dict=TINY)
    from recbole.data.dataset import SequentialDataset

    from recbole_fair.data import checked

    # RecBole's class, with recbole-fair's file checks and drop accounting
    dataset = utils.create_dataset(config)
    assert type(dataset) is checked.SequentialDataset and isinstance(dataset, SequentialDataset)
    assert dataset.drop_report["rows_kept"] == dataset.drop_report["rows_read"]
    assert utils.create_dataset.__module__ == "recbole_fair.utils"
    assert issubclass(FAIRDataset, SequentialDataset)


def test_wheel_ships_properties(tmp_path):
    """A normal (non-editable) install must find properties/: they travel as data files."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            root,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("recbole_fair-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    expected = [
        "share/recbole_fair/properties/overall.yaml",
        "share/recbole_fair/properties/model/FAIR.yaml",
        "share/recbole_fair/properties/dataset/ml-100k.yaml",
    ]
    for item in expected:
        assert any(n.endswith(".data/data/" + item) for n in names), item
    # the recbole-fair command is installed as a console script
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "recbole-fair = recbole_fair.cli:main" in scripts


def test_properties_dir_after_install(tmp_path):
    """Without a source checkout, the installed data-files location is used."""
    share = tmp_path / "prefix" / "share" / "recbole_fair" / "properties"
    share.mkdir(parents=True)
    (share / "overall.yaml").write_text("{}\n")
    package_file = tmp_path / "site-packages" / "recbole_fair" / "paths.py"
    found = paths.find_properties_dir(str(package_file), [str(tmp_path / "prefix")])
    assert found == str(share)
    with pytest.raises(FileNotFoundError, match="properties"):
        paths.find_properties_dir(str(package_file), [str(tmp_path / "elsewhere")])
