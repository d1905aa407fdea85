"""RecBole's dataset and dataloader caches (``saved/*.pth``) are pickles: only files signed by
this installation's key are unpickled; anything else is ignored (with a warning) and rebuilt."""

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_FAIR

from recbole_fair import compat, trusted_files
from recbole_fair.quick_start import run_recbole_fair

SASREC = {
    "epochs": 1,
    "MAX_ITEM_LIST_LENGTH": 10,
    "user_inter_num_interval": "[5,50]",
    "hidden_size": 16,
    "inner_size": 32,
    "train_batch_size": 4096,
    "show_progress": False,
}
DATASET_CACHE = "saved/ml-100k-SequentialDataset.pth"


class _Payload:
    """A pickle that, when unpickled, creates ``marker`` (stands for any shell command)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(autouse=True)
def _private_key_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RECBOLE_FAIR_KEY_DIR", str(tmp_path / "keys"))
    trusted_files._TRUSTED_DIGESTS.clear()


def _plant(path, marker):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_Payload(marker)))


def _new_process():
    """What a later run sees: only the ``.sig`` files vouch for what an earlier run wrote."""
    trusted_files._TRUSTED_DIGESTS.clear()


def _warned_about(caplog, path):
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and str(path) in r.getMessage()
    ]


def _assert_refusal_message(message, option):
    assert "not signed by this installation's key" in message
    assert "ignored" in message and "rebuilt" in message
    assert "Delete it" in message and f"{option}=True" in message


def test_foreign_dataloader_cache_is_not_unpickled_by_a_fair_run(
    in_tmp_dir, sid_cache_dir, single_thread, caplog
):
    """A normal FAIR run (save_dataloaders off) finds a planted split-dataloader pickle."""
    marker = in_tmp_dir / "PWNED"
    _plant(in_tmp_dir / "saved" / "ml-100k-for-FAIR-dataloader.pth", marker)
    with caplog.at_level(logging.INFO):
        result = run_recbole_fair(
            model="FAIR",
            dataset="ml-100k",
            config_dict={**TINY_FAIR, "epochs": 1, "sid_cache_dir": sid_cache_dir},
        )
    assert not marker.exists()
    (message,) = _warned_about(caplog, "saved/ml-100k-for-FAIR-dataloader.pth")
    _assert_refusal_message(message, "save_dataloaders")
    assert "Load split dataloaders from" not in caplog.text
    assert set(result["test_result"]) and result["costs"]["epochs"] == 1


def test_foreign_dataset_and_dataloader_caches_are_not_unpickled_by_sasrec(
    in_tmp_dir, single_thread, caplog
):
    """SASRec goes through RecBole's create_dataset, which reads the filtered-dataset cache."""
    markers = in_tmp_dir / "PWNED_dataset", in_tmp_dir / "PWNED_dataloader"
    _plant(in_tmp_dir / DATASET_CACHE, markers[0])
    _plant(in_tmp_dir / "saved" / "ml-100k-for-SASRec-dataloader.pth", markers[1])
    with caplog.at_level(logging.INFO):
        result = run_recbole_fair(model="SASRec", dataset="ml-100k", config_dict=SASREC)
    assert not markers[0].exists() and not markers[1].exists()
    (message,) = _warned_about(caplog, DATASET_CACHE)
    _assert_refusal_message(message, "save_dataset")
    (message,) = _warned_about(caplog, "saved/ml-100k-for-SASRec-dataloader.pth")
    _assert_refusal_message(message, "save_dataloaders")
    assert "Load filtered dataset from" not in caplog.text
    assert set(result["test_result"]) and result["costs"]["epochs"] == 1


def test_signed_caches_are_reused_and_tampered_ones_refused(
    in_tmp_dir, single_thread, caplog, monkeypatch
):
    from recbole.data.dataset import SequentialDataset

    saving = {**SASREC, "save_dataset": True, "save_dataloaders": True}
    dataloader_cache = in_tmp_dir / "saved" / "ml-100k-for-SASRec-dataloader.pth"
    first = run_recbole_fair(model="SASRec", dataset="ml-100k", config_dict=saving)
    for path in (in_tmp_dir / DATASET_CACHE, dataloader_cache):
        assert path.is_file() and Path(f"{path}.sig").is_file()
    assert not list((in_tmp_dir / "saved").glob("*.tmp*"))  # written aside, renamed into place

    # Next run (a new process as far as trust goes): both caches loaded, nothing rebuilt.
    _new_process()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a signed cache was rebuilt instead of loaded")

    with monkeypatch.context() as patch:
        patch.setattr(SequentialDataset, "__init__", no_rebuild)
        patch.setattr(SequentialDataset, "build", no_rebuild)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            second = run_recbole_fair(model="SASRec", dataset="ml-100k", config_dict=SASREC)
    assert "Load filtered dataset from" in caplog.text
    assert "Load split dataloaders from" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and ".pth" in r.msg]
    assert second["test_result"] == first["test_result"]

    # A signed file replaced afterwards (its .sig kept) is refused, and the run still finishes.
    _new_process()
    markers = in_tmp_dir / "PWNED_dataset", in_tmp_dir / "PWNED_dataloader"
    _plant(in_tmp_dir / DATASET_CACHE, markers[0])
    _plant(dataloader_cache, markers[1])
    caplog.clear()
    with caplog.at_level(logging.INFO):
        third = run_recbole_fair(model="SASRec", dataset="ml-100k", config_dict=SASREC)
    assert not markers[0].exists() and not markers[1].exists()
    assert _warned_about(caplog, DATASET_CACHE)
    assert _warned_about(caplog, "saved/ml-100k-for-SASRec-dataloader.pth")
    assert "Load filtered dataset from" not in caplog.text
    assert third["test_result"] == first["test_result"]


def _tiny_dataset(root, name="tiny"):
    """``<root>/<name>/<name>.inter``: 40 users with 6 interactions each over 30 items."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    rows += [f"u{u}\ti{(u + k) % 30}\t{k}" for u in range(40) for k in range(6)]
    (folder / f"{name}.inter").write_text("\n".join(rows) + "\n")


def _config(root, model="SASRec", name="tiny", **extra):
    from recbole_fair.config import Config

    config_dict = {
        "data_path": str(root),
        "checkpoint_dir": str(root / "saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "show_progress": False,
        **extra,
    }
    return Config(model=model, dataset=name, config_dict=config_dict)


def _no_rebuild(*args, **kwargs):
    raise AssertionError("a usable cache was rebuilt instead of loaded")


def test_a_run_uses_the_guarded_loaders(tmp_path, monkeypatch, caplog):
    """A run creates RecBole models' datasets with recbole_fair.utils.create_dataset, i.e.
    checked.create_recbole_dataset: it never unpickles an unsigned cache, and RecBole's
    data_preparation looks the dataloader-cache shims up at call time."""
    import recbole.data
    import recbole.data.utils as data_utils

    from recbole_fair.data import checked
    from recbole_fair.utils import create_dataset

    for name in ("create_dataset", "load_split_dataloaders", "save_split_dataloaders"):
        assert getattr(data_utils, name) is compat._CACHE_SHIMS[name]
        assert getattr(recbole.data, name) is compat._CACHE_SHIMS[name]

    calls = []
    real = checked.create_recbole_dataset
    monkeypatch.setattr(
        checked, "create_recbole_dataset", lambda config: calls.append(config) or real(config)
    )
    _tiny_dataset(tmp_path)
    config = _config(tmp_path)
    cache = tmp_path / "saved" / "tiny-SequentialDataset.pth"
    marker = tmp_path / "PWNED"
    _plant(cache, marker)
    with caplog.at_level(logging.INFO):
        dataset = create_dataset(config)
    assert calls == [config]
    assert not marker.exists()
    (message,) = _warned_about(caplog, cache)
    _assert_refusal_message(message, "save_dataset")
    assert type(dataset) is checked.SequentialDataset and dataset.drop_report["rows_kept"] == 240


def test_recbole_fair_create_dataset_reuses_only_its_own_signed_caches(
    tmp_path, monkeypatch, caplog
):
    from recbole.data import create_dataset as recbole_create_dataset

    from recbole_fair.data import checked
    from recbole_fair.utils import create_dataset

    _tiny_dataset(tmp_path)
    cache = tmp_path / "saved" / "tiny-SequentialDataset.pth"
    # RecBole's own create_dataset writes (and signs) a cache of RecBole's unchecked class under
    # the same name: it is not what recbole-fair's factory builds, so it is rebuilt.
    recbole_create_dataset(_config(tmp_path, save_dataset=True))
    assert cache.is_file() and Path(f"{cache}.sig").is_file()
    _new_process()
    with caplog.at_level(logging.INFO):
        dataset = create_dataset(_config(tmp_path, save_dataset=True))
    (message,) = _warned_about(caplog, cache)
    assert "recbole.data.dataset.sequential_dataset.SequentialDataset" in message
    assert type(dataset) is checked.SequentialDataset

    # The checked dataset it saved instead is reused by the next run, without a warning.
    _new_process()
    monkeypatch.setattr(checked.SequentialDataset, "__init__", _no_rebuild)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        loaded = create_dataset(_config(tmp_path))
    assert type(loaded) is checked.SequentialDataset
    assert loaded.drop_report == dataset.drop_report
    assert "Load filtered dataset from" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_recboles_own_create_dataset_is_guarded_too(tmp_path, caplog):
    """``from recbole.data import create_dataset`` (RecBole's quick start, scripts written for
    RecBole) reaches the same signed-cache loader, with RecBole's own classes."""
    import recbole.data
    from recbole.data.dataset import SequentialDataset

    from recbole_fair.data import checked

    _tiny_dataset(tmp_path)
    cache = tmp_path / "saved" / "tiny-SequentialDataset.pth"
    marker = tmp_path / "PWNED"
    _plant(cache, marker)
    with caplog.at_level(logging.INFO):
        dataset = recbole.data.create_dataset(_config(tmp_path))
    assert not marker.exists()
    (message,) = _warned_about(caplog, cache)
    _assert_refusal_message(message, "save_dataset")
    assert type(dataset) is SequentialDataset and not isinstance(dataset, checked.Dataset)


def test_signed_dataset_cache_that_does_not_unpickle_is_rebuilt(tmp_path, caplog):
    """A signed cache whose classes are gone (written by another version): a warning, no
    traceback, and the dataset rebuilt."""
    from recbole_fair.data import checked
    from recbole_fair.utils import create_dataset

    _tiny_dataset(tmp_path)
    cache = tmp_path / "saved" / "tiny-SequentialDataset.pth"
    cache.parent.mkdir()
    # GLOBAL recbole_fair_gone.Moved, EMPTY_TUPLE, NEWOBJ, STOP
    trusted_files.write_signed(cache, lambda f: f.write(b"crecbole_fair_gone\nMoved\n)\x81."))
    _new_process()
    with caplog.at_level(logging.INFO):
        dataset = create_dataset(_config(tmp_path))
    (message,) = _warned_about(caplog, cache)
    assert "does not unpickle" in message and "ModuleNotFoundError" in message
    assert "rebuilt" in message
    assert not [r for r in caplog.records if r.exc_info]
    assert type(dataset) is checked.SequentialDataset and dataset.drop_report["rows_kept"] == 240


def test_dataset_cache_built_with_other_arguments_is_rebuilt(tmp_path, monkeypatch, caplog):
    from recbole_fair.data import checked
    from recbole_fair.utils import create_dataset

    _tiny_dataset(tmp_path)
    cache = tmp_path / "saved" / "tiny-SequentialDataset.pth"
    create_dataset(_config(tmp_path, save_dataset=True))
    _new_process()
    with caplog.at_level(logging.INFO):
        dataset = create_dataset(_config(tmp_path, rm_dup_inter="first"))
    (message,) = _warned_about(caplog, cache)
    assert "other dataset arguments (rm_dup_inter: None there, 'first' now)" in message
    assert "Load filtered dataset from" not in caplog.text
    assert dataset.config["rm_dup_inter"] == "first"
    # the same arguments: loaded
    monkeypatch.setattr(checked.SequentialDataset, "__init__", _no_rebuild)
    assert create_dataset(_config(tmp_path)).drop_report["rows_kept"] == 240


def test_upstream_functions_held_elsewhere_still_refuse(tmp_path):
    """A reference to RecBole's own create_dataset taken before the shims were installed still
    never unpickles a foreign file: the pickle module RecBole's data utils see is guarded."""
    import recbole.data.utils as data_utils

    marker = tmp_path / "PWNED"
    cache = tmp_path / "foreign.pth"
    _plant(cache, marker)
    with (
        open(cache, "rb") as f,
        pytest.raises(trusted_files.UntrustedFileError, match="foreign.pth"),
    ):
        data_utils.pickle.load(f)
    assert not marker.exists()


def test_saved_caches_are_signed_and_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "cache.pth"
    trusted_files.write_signed(path, lambda f: pickle.dump({"n": 1}, f))
    _new_process()
    assert trusted_files.read_trusted_bytes(path) == path.read_bytes()

    def interrupted(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trusted_files.write_signed(path, interrupted)
    assert pickle.loads(trusted_files.read_trusted_bytes(path)) == {"n": 1}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "cache.pth",
        "cache.pth.sig",
    ]


def test_untrusted_torch_loads_stay_safe_whatever_the_environment(tmp_path, monkeypatch):
    """torch < 2.6 (allowed by setup.cfg) and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD default to full
    unpickling: trusted_torch_load asks for weights_only=True explicitly on foreign files."""
    marker = tmp_path / "PWNED"
    _plant(tmp_path / "foreign.pth", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(pickle.UnpicklingError):
        trusted_files.trusted_torch_load(str(tmp_path / "foreign.pth"))
    with open(tmp_path / "foreign.pth", "rb") as f, pytest.raises(pickle.UnpicklingError):
        trusted_files.trusted_torch_load(f)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module",
    [
        "recbole.model.general_recommender.convncf",
        "recbole.model.general_recommender.nais",
        "recbole.model.general_recommender.neumf",
        "recbole.model.general_recommender.ract",
        "recbole.model.context_aware_recommender.kd_dagfm",
        "recbole.model.sequential_recommender.s3rec",
    ],
)
def test_recbole_pretrained_model_loads_are_guarded(module):
    """RecBole models that torch.load a pre-trained checkpoint named in the config."""
    import importlib

    assert importlib.import_module(module).torch.load is trusted_files.trusted_torch_load


def test_ldiffrec_item_embeddings_load_without_pickle(tmp_path):
    from recbole.model.general_recommender import ldiffrec

    np.save(tmp_path / "floats.npy", np.ones((3, 2), dtype=np.float32))
    assert ldiffrec.np.load(tmp_path / "floats.npy", allow_pickle=True).shape == (3, 2)
    marker = tmp_path / "PWNED"
    np.save(tmp_path / "objects.npy", np.array([_Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        ldiffrec.np.load(tmp_path / "objects.npy", allow_pickle=True)
    assert not marker.exists()
    assert np.load is not ldiffrec.np.load and torch.load is trusted_files._ORIGINAL_TORCH_LOAD
    assert os.path.isfile(tmp_path / "objects.npy")
