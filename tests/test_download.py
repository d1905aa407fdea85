"""``--download=True``: RecBole's own copy of a dataset, renamed, 5-core filtered and reported.

No network here: the fetch itself is replaced by a function that writes what RecBole's zip holds
(atomic files under RecBole's base name); everything after it is the real code path.
"""

from __future__ import annotations

import logging
import os

import pytest

from recbole_fair.data import download
from recbole_fair.quick_start import run_recbole_fair

TINY_SASREC = {
    "hidden_size": 16,
    "inner_size": 32,
    "n_layers": 1,
    "n_heads": 1,
    "epochs": 1,
    "train_batch_size": 256,
    "eval_batch_size": 256,
    "show_progress": False,
    "MAX_ITEM_LIST_LENGTH": 10,
}


def _write_recbole_zip_contents(folder: str, basename: str) -> None:
    """30 users with 8 interactions on 20 items, and 10 users with 2 (gone after 5-core)."""
    rows = []
    for u in range(40):
        n = 8 if u < 30 else 2
        rows += [f"u{u}\ti{(u + k) % 20}\t5.0\t{1000 * u + k}" for k in range(n)]
    with open(os.path.join(folder, f"{basename}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        f.write("\n".join(rows) + "\n")
    with open(os.path.join(folder, f"{basename}.item"), "w") as f:
        f.write("item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\n")
        f.write("\n".join(f"i{i}\tthing {i}\tacme\tBeauty" for i in range(20)) + "\n")


def test_download_is_renamed_filtered_and_reported(tmp_path, monkeypatch, caplog, single_thread):
    fetched = []

    def fake_fetch(url: str, folder: str) -> str:
        fetched.append(url)
        _write_recbole_zip_contents(folder, "Amazon_Beauty_ratings")
        return "Amazon_Beauty_ratings"

    monkeypatch.setattr(download, "_fetch", fake_fetch)
    caplog.set_level(logging.WARNING)
    result = run_recbole_fair(
        "SASRec",
        "Amazon_Beauty",
        config_dict={**TINY_SASREC, "data_path": str(tmp_path), "download": True},
        saved=False,
    )
    assert fetched == [download.recbole_url("Amazon_Beauty")]
    assert fetched[0].endswith("Amazon_Beauty.zip")
    folder = tmp_path / "Amazon_Beauty"
    assert (folder / "Amazon_Beauty.inter").is_file() and (folder / download.MARKER).is_file()
    stats = result["downloaded_dataset"]
    # the dataset YAML's 5-core filter removed the 10 users with 2 interactions
    assert (stats["users"], stats["items"], stats["interactions"]) == (30, 20, 240)
    assert "22,363 users" in stats["published_split"]
    assert "do not compare the two" in caplog.text
    assert "NOT the split of the published results" in caplog.text
    assert result["test_result"]["recall@10"] >= 0

    # the second run finds the files: no second download
    result = run_recbole_fair(
        "SASRec",
        "Amazon_Beauty",
        config_dict={**TINY_SASREC, "data_path": str(tmp_path), "download": True},
        saved=False,
    )
    assert len(fetched) == 1 and result["downloaded_dataset"]["users"] == 30


def test_missing_data_names_the_path_and_the_ways_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        run_recbole_fair("SASRec", "Amazon_Beauty", config_dict={"data_path": str(tmp_path)})
    message = str(err.value)
    assert str(tmp_path / "Amazon_Beauty" / "Amazon_Beauty.inter") in message
    assert "prepare_amazon" in message and "--download=True" in message
    assert download.recbole_url("Amazon_Beauty") in message


def test_failed_or_impossible_download_is_a_clear_error(tmp_path, monkeypatch):
    def offline(url: str, folder: str) -> str:
        raise OSError("network unreachable")

    monkeypatch.setattr(download, "_fetch", offline)
    with pytest.raises(FileNotFoundError, match="failed .*network unreachable.*prepare_amazon"):
        run_recbole_fair(
            "SASRec", "Amazon_Beauty", config_dict={"data_path": str(tmp_path), "download": True}
        )
    assert download.recbole_url("No_Such_Set") is None
    with pytest.raises(FileNotFoundError, match=r"RecBole hosts no dataset named \[No_Such_Set\]"):
        run_recbole_fair(
            "SASRec", "No_Such_Set", config_dict={"data_path": str(tmp_path), "download": True}
        )


def _cli(tmp_path, *args: str):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "run_recbole_fair.py"
    env = {k: v for k, v in os.environ.items() if k != "RECBOLE_FAIR_DATA_PATH"}
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )


def test_headline_command_without_data_stops_with_a_message_not_a_traceback(tmp_path):
    out = _cli(tmp_path, "--dataset=Amazon_Beauty")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"looked for {tmp_path / 'dataset' / 'Amazon_Beauty' / 'Amazon_Beauty.inter'}" in (
        out.stderr
    )
    assert "RECBOLE_FAIR_DATA_PATH" in out.stderr and "--download=True" in out.stderr


def test_nproc_beyond_the_gpus_is_refused_by_the_cli(tmp_path):
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has the GPUs")
    out = _cli(tmp_path, "--model=FAIR", "--nproc=2")
    assert out.returncode == 2 and "needs 2 CUDA GPUs" in out.stderr
    out = _cli(tmp_path, "--model=FAIR,SASRec", "--nproc=2")
    assert out.returncode == 2 and "not a leaderboard" in out.stderr
