"""The compatibility shims: signed checkpoints, refused foreign pickles, pinned stack."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from recbole_fair import compat, trusted_files


class _NotATensor:
    """A pickled object that ``weights_only=True`` refuses (like RecBole's Config)."""

    def __init__(self, value):
        self.value = value


@pytest.fixture(autouse=True)
def _private_key_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RECBOLE_FAIR_KEY_DIR", str(tmp_path / "keys"))
    trusted_files._TRUSTED_DIGESTS.clear()


def _write_checkpoint(path):
    torch.save({"config": _NotATensor(3), "state_dict": {"w": torch.ones(2)}}, path)


def test_signed_checkpoint_loads_fully(tmp_path):
    path = tmp_path / "ours.pth"
    _write_checkpoint(path)
    trusted_files.sign_checkpoint(path)
    loaded = trusted_files.trusted_torch_load(str(path))
    assert loaded["config"].value == 3
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_signature_survives_a_new_process(tmp_path):
    path = tmp_path / "ours.pth"
    _write_checkpoint(path)
    trusted_files.sign_checkpoint(path)
    trusted_files._TRUSTED_DIGESTS.clear()  # as if another process: only the .sig file remains
    assert trusted_files.is_trusted_checkpoint(path)


def test_foreign_pickle_is_refused(tmp_path):
    path = tmp_path / "foreign.pth"
    _write_checkpoint(path)  # never signed
    with pytest.raises(pickle.UnpicklingError):
        trusted_files.trusted_torch_load(str(path))


def test_modified_checkpoint_is_refused(tmp_path):
    path = tmp_path / "ours.pth"
    _write_checkpoint(path)
    trusted_files.sign_checkpoint(path)
    torch.save({"config": _NotATensor(4)}, path)  # replaced after signing
    trusted_files._TRUSTED_DIGESTS.clear()
    assert not trusted_files.is_trusted_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        trusted_files.trusted_torch_load(str(path))


def test_forged_signature_is_refused(tmp_path):
    path = tmp_path / "forged.pth"
    _write_checkpoint(path)
    (tmp_path / "forged.pth.sig").write_text("0" * 64)
    assert not trusted_files.is_trusted_checkpoint(path)


def test_plain_weights_still_load_without_signature(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.arange(3)}, path)
    assert torch.equal(trusted_files.trusted_torch_load(str(path))["w"], torch.arange(3))


def test_names_moved_to_trusted_files_stay_importable_from_compat():
    # callers (benchmarks, visualize_attention, leaderboard) import them from compat
    for name in ["trusted_torch_load", "sign_checkpoint", "is_trusted_checkpoint",
                 "read_trusted_bytes", "write_signed", "UntrustedFileError",
                 "load_dataset_cache", "recbole_dataset_class_name"]:  # fmt: skip
        assert getattr(compat, name) is getattr(trusted_files, name), name


def test_only_recbole_trainer_sees_the_shim():
    import recbole.trainer.trainer as trainer_module

    assert trainer_module.torch.load is trusted_files.trusted_torch_load
    assert torch.load is trusted_files._ORIGINAL_TORCH_LOAD  # global torch.load untouched
    assert trainer_module.torch.no_grad is torch.no_grad  # everything else delegates


class _FakeTrainer:
    """What RecBole's ``Trainer._save_checkpoint`` reads from its trainer."""

    def __init__(self, path, local_rank=0):
        import logging

        self.config = {"single_spec": True, "local_rank": local_rank}
        self.saved_model_file = str(path)
        self.cur_step, self.best_valid_score = 2, 0.5
        self.model = torch.nn.Linear(2, 1)
        self.model.other_parameter = lambda: None
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.logger = logging.getLogger("test_compat")


def test_trainer_save_is_signed_and_atomic(tmp_path, monkeypatch):
    import recbole.trainer.trainer as trainer_module

    path = tmp_path / "best.pth"
    trainer = _FakeTrainer(path)
    trainer_module.Trainer._save_checkpoint(trainer, 1)
    assert trainer_module.torch.load(str(path))["epoch"] == 1  # signed: unpickled in full
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "best.pth",
        "best.pth.sig",
    ]
    real_save = torch.save

    def killed_mid_save(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_mid_save)
    with pytest.raises(KeyboardInterrupt):
        trainer_module.Trainer._save_checkpoint(trainer, 2)
    monkeypatch.setattr(torch, "save", real_save)
    trusted_files._TRUSTED_DIGESTS.clear()  # as in a new process: only the .sig file vouches for it
    assert trainer_module.torch.load(str(path))["epoch"] == 1  # the previous checkpoint intact


def test_only_rank_zero_writes_and_signs_checkpoints(tmp_path):
    import recbole.trainer.trainer as trainer_module

    trainer = _FakeTrainer(tmp_path / "best.pth", local_rank=1)
    trainer.config["single_spec"] = False
    trainer_module.Trainer._save_checkpoint(trainer, 1)
    assert list(tmp_path.glob("best.pth*")) == []


def test_recbole_config_numpy_aliases_work():
    from recbole.config import Config

    Config(model="Pop", dataset="ml-100k", config_dict={"show_progress": False})
    assert np.float is np.float_  # RecBole's alias (np.float_ itself put back under numpy 2)


def test_numpy_aliases_restored_when_missing(monkeypatch):
    """As under numpy 2, where the three names are gone: restore_numpy_aliases puts them back
    as the numpy 1 aliases, and a RecBole Config can be built again."""
    from recbole.config import Config

    for name in ("float_", "complex_", "unicode_"):
        monkeypatch.delattr(np, name, raising=False)
    assert "float_" not in np.__dict__
    compat.restore_numpy_aliases()
    assert np.float_ is np.float64 and np.complex_ is np.complex128 and np.unicode_ is np.str_
    Config(model="Pop", dataset="ml-100k", config_dict={"show_progress": False})
    assert np.float is np.float64


def test_numpy_aliases_leave_existing_names_alone(monkeypatch):
    sentinel = object()
    monkeypatch.setattr(np, "float_", sentinel, raising=False)
    compat.restore_numpy_aliases()
    assert np.float_ is sentinel


def test_pandas_fillna_fills_missing_values(tmp_path):
    """RecBole's chained fillna(inplace=True) must really fill (pandas<3)."""
    from recbole.config import Config
    from recbole.data import create_dataset

    ds = tmp_path / "nan_ds"
    ds.mkdir()
    rows = ["user_id:token\titem_id:token\ttimestamp:float\tscore:float"]
    for u in range(6):
        for i in range(6):
            score = "" if (u + i) % 4 == 0 else str(float(u + i))
            rows.append(f"u{u}\ti{i}\t{i}\t{score}")
    (ds / "nan_ds.inter").write_text("\n".join(rows) + "\n")
    config = Config(
        model="Pop",
        dataset="nan_ds",
        config_dict={
            "data_path": str(tmp_path),
            "load_col": {"inter": ["user_id", "item_id", "timestamp", "score"]},
            "normalize_all": False,
        },
    )
    dataset = create_dataset(config)
    assert not dataset.inter_feat["score"].isna().any()


@pytest.mark.parametrize(
    "model,model_type,expected",
    [
        ("KSR", "SEQUENTIAL", "KSRDataset"),  # RecBole's <model>Dataset first
        ("GRU4RecKG", "SEQUENTIAL", "GRU4RecKGDataset"),
        ("SASRec", "SEQUENTIAL", "SequentialDataset"),
        ("CKE", "KNOWLEDGE", "KnowledgeBasedDataset"),
        ("BPR", "GENERAL", "Dataset"),
        ("DeepFM", "CONTEXT", "Dataset"),
        ("Pop", "TRADITIONAL", "Dataset"),
        ("LightGBM", "DECISIONTREE", "Dataset"),
        ("Plugin", "not a RecBole type", "Dataset"),  # RecBole: KeyError
    ],
)
def test_dataset_class_is_recboles_choice(model, model_type, expected):
    """One rule for RecBole's create_dataset (trusted_files) and recbole-fair's (checked)."""
    from recbole.data import dataset as recbole_datasets
    from recbole.utils import ModelType

    from recbole_fair.data import checked

    config = {"model": model, "MODEL_TYPE": getattr(ModelType, model_type, model_type)}
    assert trusted_files.recbole_dataset_class_name(config) == expected
    cls = checked.recbole_dataset_class(config)
    assert cls is checked.CHECKED_CLASSES[expected]
    assert cls.__name__ == expected and issubclass(cls, getattr(recbole_datasets, expected))


def test_every_recbole_dataset_class_has_a_checked_one():
    from recbole.data import dataset as recbole_datasets

    from recbole_fair.data import checked

    base = recbole_datasets.Dataset
    names = {
        n for n, c in vars(recbole_datasets).items() if isinstance(c, type) and issubclass(c, base)
    }
    assert names == set(checked.CHECKED_CLASSES)


_ANOMALY_PROBE = """
import torch
{before}
import recbole_fair
from recbole_fair.utils import get_model
for name in ("SASRec", "GRU4Rec", "BERT4Rec", "SINE"):
    get_model(name)
import recbole.model.sequential_recommender.sine  # the module that switches it on
print(torch.is_anomaly_enabled())
"""


@pytest.mark.parametrize(
    "before,expected",
    [("", "False"), ("torch.autograd.set_detect_anomaly(True)", "True")],
    ids=["off-stays-off", "user-setting-kept"],
)
def test_recbole_models_leave_anomaly_mode_as_it_was(before, expected):
    """RecBole's sine.py turns autograd anomaly mode on at import (a ~2x slowdown of SASRec)."""
    out = subprocess.run(
        [sys.executable, "-c", _ANOMALY_PROBE.format(before=before)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == expected


def test_pip_check_is_clean():
    out = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
