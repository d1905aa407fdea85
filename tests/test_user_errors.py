"""Bad settings and bad config files: a clean one-paragraph error naming the key or file, a
non-zero exit, a traceback only on request; and the run's output a user reads."""

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from recbole_fair.compat import filter_recbole_warnings
from recbole_fair.config import Config, ConfigError
from recbole_fair.quick_start import format_results, unique_checkpoint_file

REPO = Path(__file__).resolve().parents[1]


def _cli(args, cwd, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, str(REPO / "run_recbole_fair.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "key, value",
    [
        ("epochs", -1),
        ("epochs", 0),
        ("MAX_ITEM_LIST_LENGTH", 0),
        ("train_batch_size", 0),
        ("learning_rate", -0.1),
        ("stopping_step", -1),
        ("hidden_dropout_prob", 1.5),
        ("eval_batch_size", 2.5),
        ("max_dropped_interactions", 1.5),
        ("n_layers", -1),
    ],
)
def test_invalid_settings_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"Setting '{key}' is .*must be .*--{key}="):
        Config(model="SASRec", dataset="ml-100k", config_dict={key: value})


def test_valid_settings_pass():
    config = Config(
        model="SASRec",
        dataset="ml-100k",
        config_dict={"epochs": 1, "MAX_ITEM_LIST_LENGTH": 1, "topk": [1, 5], "learning_rate": 1},
    )
    assert config["epochs"] == 1 and config["MAX_ITEM_LIST_LENGTH"] == 1
    # RecBole's own edge values stay valid: no patience, a 0-layer LightGCN (plain MF)
    assert Config(model="SASRec", dataset="ml-100k", config_dict={"stopping_step": 0})
    assert Config(model="LightGCN", dataset="ml-100k", config_dict={"n_layers": 0})


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"Config file nope\.yaml does not exist"):
        Config(model="SASRec", dataset="ml-100k", config_file_list=["nope.yaml"])


def test_config_errors_are_user_input_errors():
    from recbole_fair.errors import UserInputError

    assert issubclass(ConfigError, UserInputError) and issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "text, match",
    [
        ("epochs: 3\n  hidden_size: [1\n", r"(?s)is not valid YAML: .*line 2"),
        ("- epochs\n- 3\n", r"holds a list, not a mapping"),
    ],
)
def test_a_bad_config_file_is_named(tmp_path, text, match):
    path = tmp_path / "my_settings.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        Config(model="SASRec", dataset="ml-100k", config_file_list=[str(path)])
    assert str(path) in str(err.value) and "<unicode string>" not in str(err.value)


def test_an_empty_config_file_is_fine(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert Config(model="SASRec", dataset="ml-100k", config_file_list=[str(path)])["epochs"]


def test_semantic_id_keys_are_accepted_silently_by_other_models(caplog):
    """One config file serves FAIR and SASRec: FAIR's keys are no 'unknown key' for SASRec, even
    under strict_config; a misspelt key still is."""
    shared = {"text_fields": ["title"], "n_codes": 32, "nrt_weight": 1.0, "strict_config": True}
    with caplog.at_level(logging.WARNING):
        Config(model="SASRec", dataset="ml-100k", config_dict=shared)
    assert "Unknown config key" not in caplog.text
    with pytest.raises(ConfigError, match="'text_feilds' .*did you mean 'text_fields'"):
        Config(model="SASRec", dataset="ml-100k", config_dict={**shared, "text_feilds": ["t"]})


def test_cli_prints_one_clean_paragraph_and_exits_non_zero(tmp_path):
    out = _cli(["--model=SASRec", "--dataset=ml-100k", "--epochs=-1"], tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "error: Setting 'epochs' is -1" in out.stderr and "--debug" in out.stderr
    assert not (tmp_path / "saved").exists()  # nothing trained, no checkpoint written


def test_cli_names_the_bad_config_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("epochs: 3\n  hidden_size: [1\n")
    out = _cli(["--model=SASRec", "--dataset=ml-100k", "--config_files=bad.yaml"], tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert re.search(r"error: Config file bad\.yaml is not valid YAML", out.stderr)


@pytest.mark.parametrize("how", [["--debug"], []])
def test_debug_shows_the_traceback(tmp_path, how):
    env = {} if how else {"RECBOLE_FAIR_DEBUG": "1"}
    out = _cli(
        ["--model=SASRec", "--dataset=ml-100k", "--MAX_ITEM_LIST_LENGTH=0", *how], tmp_path, env
    )
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "ConfigError" in out.stderr
    assert "error: Setting 'MAX_ITEM_LIST_LENGTH' is 0" in out.stderr


def test_a_malformed_command_line_is_the_users_error(tmp_path):
    out = _cli(["--model=SASRec", "--dataset=ml-100k", "--epochs=1", "--epochs=2"], tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "duplicate" in out.stderr and "looks like a bug" not in out.stderr


def test_an_unexpected_error_is_reported_as_a_bug(tmp_path, monkeypatch, capsys):
    from recbole_fair.cli.common import print_error

    assert print_error(KeyError("x"), debug=False) == 1
    err = capsys.readouterr().err
    assert "error: KeyError: 'x'" in err and "looks like a bug" in err and "Traceback" not in err
    assert print_error(ConfigError("bad key"), debug=False) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: bad key\n") and "looks like a bug" not in err


def test_missing_data_is_a_clean_error(tmp_path):
    out = _cli(
        ["--model=SASRec", "--dataset=Amazon_Beauty", f"--data_path={tmp_path / 'nowhere'}"],
        tmp_path,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error: Dataset [Amazon_Beauty] not found" in out.stderr


def test_results_are_a_table_of_plain_numbers():
    import numpy as np

    valid = {"recall@5": np.float64(0.12345), "ndcg@10": np.float64(0.05)}
    test = {"recall@5": np.float64(0.1), "ndcg@10": np.float64(0.04)}
    text = format_results(valid, test, {"log_file": "/x/run.log", "checkpoint": None}, "FAIR")
    lines = text.splitlines()
    assert lines[0] == "FAIR"
    assert lines[1].split() == ["metric", "valid", "test"]
    assert lines[2].split() == ["recall@5", "0.1235", "0.1000"]  # rounded to 4 decimals
    assert lines[3].split() == ["ndcg@10", "0.0500", "0.0400"]
    assert lines[4] == "log file: /x/run.log" and len(lines) == 5  # no line for a missing path
    assert "np.float64" not in text and "OrderedDict" not in text


def test_learning_curve_losses_of_any_trainer():
    from recbole_fair.trainer.instrument import total_loss as _total_loss

    assert _total_loss(2.5) == 2.5
    assert _total_loss((1.0, 2.0)) == 3.0
    assert _total_loss(((1.0, 2.0), 0.5)) == 3.5  # KGAT: (rs_loss, kg_loss), rs_loss a tuple
    assert _total_loss(None) != _total_loss(None)  # NaN, not a crash


def test_checkpoint_names_differ_within_one_second(tmp_path):
    names = {unique_checkpoint_file(str(tmp_path), "FAIR", "ml-100k") for _ in range(50)}
    assert len(names) == 50
    assert all(re.fullmatch(r"FAIR-ml-100k-.*-[0-9a-f]{6}\.pth", Path(n).name) for n in names)


def test_recbole_deprecation_warnings_are_filtered_only_from_recbole():
    message = "`torch.cuda.amp.GradScaler(args...)` is deprecated. Please use ..."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filter_recbole_warnings()
        # raised from a RecBole module: ignored
        warnings.warn_explicit(message, FutureWarning, "trainer.py", 1, module="recbole.trainer")
        # the same warning from the user's own code: still shown
        warnings.warn_explicit(message, FutureWarning, "mine.py", 1, module="my_project")
        # another warning from RecBole: still shown
        warnings.warn_explicit("something else", FutureWarning, "x.py", 1, module="recbole.data")
    shown = [(str(w.message)[:14], w.filename) for w in caught]
    assert shown == [(message[:14], "mine.py"), ("something else", "x.py")]


def test_ddp_checkpoint_names_are_shared_by_the_ranks(tmp_path):
    a = unique_checkpoint_file(str(tmp_path), "FAIR", "ml-100k", run_id="abc123")
    assert a == unique_checkpoint_file(str(tmp_path), "FAIR", "ml-100k", run_id="abc123")
    assert Path(a).name == "FAIR-ml-100k-abc123.pth"


def test_a_user_error_in_a_ddp_rank_reaches_the_cli_as_one():
    import torch.multiprocessing as mp

    from recbole_fair.cli.launch import user_error_of
    from recbole_fair.errors import UserInputError

    text = (
        "\n\n-- Process 0 terminated with the following error:\nTraceback (most recent call "
        'last):\n  File "x.py", line 1, in f\nrecbole_fair.errors.DataError: [a.inter] line 3, '
        "column timestamp:float: 'x' is not a number\n"
    )
    err = user_error_of(mp.ProcessRaisedException(text, 0, 1234))
    assert isinstance(err, UserInputError)
    assert str(err) == "[a.inter] line 3, column timestamp:float: 'x' is not a number"
    bug = mp.ProcessRaisedException(text.replace("recbole_fair.errors.DataError", "KeyError"), 0, 1)
    assert user_error_of(bug) is bug
