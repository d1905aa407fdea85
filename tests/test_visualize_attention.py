"""The attention visualisation command on tiny trained checkpoints, its measures, and the
analyses of benchmarks/ that start from a checkpoint.

A tiny FAIR (focused attention) and a tiny RPG (standard attention) are trained for one epoch by
RecBole's trainer on a synthetic dataset with item titles (a fake text encoder stands in for
sentence-transformers) and saved; ``recbole-fair attention`` then rebuilds both from their
checkpoints.
"""

import argparse
import json
import math
from functools import partial

import numpy as np
import pytest
import torch
from conftest import stand_in_encoder
from recbole.data import data_preparation
from recbole.utils import init_seed
from synthetic import write_walk_dataset

from recbole_fair.analysis import popularity
from recbole_fair.analysis import score_calibration as calibration
from recbole_fair.analysis.attention import last_row_weights, normalised_entropy, topk_share
from recbole_fair.checkpoint import load_checkpoint
from recbole_fair.cli.attention import build_parser, draw_and_measure, main
from recbole_fair.config import Config
from recbole_fair.data.dataset import SemanticIDDataset
from recbole_fair.utils import create_dataset, get_model, get_trainer

N_ITEMS, N_USERS, SEQ_LEN = 40, 60, 7


def attention(argv: list[str]) -> dict:
    """``recbole-fair attention`` on ``argv``, returning its report (errors raised)."""
    return draw_and_measure(build_parser().parse_args(argv))


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz")
    rng = np.random.default_rng(0)
    data = root / "data" / "viz"
    write_walk_dataset(root / "data", N_USERS, N_ITEMS, SEQ_LEN, rng=rng, name="viz")
    items = ["item_id:token\ttitle:token_seq"]
    items += [f"i{n}\tshelf {n // 8} product {n}" for n in range(N_ITEMS)]
    (data / "viz.item").write_text("\n".join(items) + "\n")

    mp = pytest.MonkeyPatch()
    mp.setattr(SemanticIDDataset, "encoder_fn", staticmethod(partial(stand_in_encoder, dim=16)))
    mp.chdir(root)  # RecBole's trainer writes log_tensorboard/ into the cwd
    paths = {}
    for model_name in ("FAIR", "RPG"):
        config = Config(
            model=model_name,
            dataset="viz",
            config_dict={
                "data_path": str(root / "data"),
                "checkpoint_dir": str(root / "saved"),
                "sid_cache_dir": str(root / "sid_cache"),
                "load_col": {
                    "inter": ["user_id", "item_id", "timestamp"],
                    "item": ["item_id", "title"],
                },
                "n_codes": 4,
                "codebook_size": 16,
                "sid_opq_iterations": 5,
                "hidden_size": 16,
                "inner_size": 32,
                "n_heads": 2,
                "MAX_ITEM_LIST_LENGTH": 8,
                "epochs": 1,
                "train_batch_size": 64,
                "learning_rate": 0.01,
                "warmup_steps": 0,
                "show_progress": False,
                "state": "WARNING",
            },
        )
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train, valid, _ = data_preparation(config, dataset)
        model = get_model(model_name)(config, train.dataset)
        trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
        trainer.fit(train, valid, saved=True, show_progress=False)
        paths[model_name] = trainer.saved_model_file
    yield paths, root
    mp.undo()


def test_main_draws_and_measures_both_models(checkpoints, capsys):
    paths, root = checkpoints
    out = root / "attention"
    report = attention(
        f"--checkpoint {paths['FAIR']} --compare {paths['RPG']} --users 3 --out {out}".split()
    )
    assert len(report["users_drawn"]) == 3
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 4  # 3 users + summary
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    saved = json.loads((out / "attention_metrics.json").read_text())
    assert saved == json.loads(json.dumps(report))
    fair, rpg = saved["models"]
    assert (fair["model"], fair["attention"]) == ("FAIR", "focused")
    assert (rpg["model"], rpg["attention"]) == ("RPG", "standard")
    for result in (fair, rpg):
        assert result["n_users"] == N_USERS and result["n_users_topk"] == N_USERS
        assert len(result["entropy_per_layer"]) == 2 == len(result["topk_share_per_layer"])
        for key in ("entropy", "topk_share", "uniform_topk_share"):
            assert 0.0 <= result[key] <= 1.0, (key, result)
        for value in result["entropy_per_layer"] + result["topk_share_per_layer"]:
            assert 0.0 <= value <= 1.0
    printed = capsys.readouterr().out
    assert "entropy" in printed and "FAIR (focused)" in printed and "RPG (standard)" in printed


def test_main_one_user_and_errors(checkpoints, tmp_path, capsys):
    paths, _ = checkpoints
    options = "--similarity codes --top_k 2 --head 1 --max_users 10"
    argv = f"--checkpoint {paths['RPG']} --user_id u5 --out {tmp_path} {options}".split()
    report = attention(argv)
    assert report["users_drawn"] == ["u5"] and (tmp_path / "user_u5.png").stat().st_size > 0
    assert report["models"][0]["n_users"] == 10
    assert main(argv) == 0  # the command: exit status 0
    nobody = ["--checkpoint", paths["RPG"], "--user_id", "nobody", "--out", str(tmp_path)]
    with pytest.raises(ValueError, match="user_id"):
        attention(nobody)
    capsys.readouterr()
    assert main(nobody) == 1  # the command: one paragraph, no traceback
    err = capsys.readouterr().err
    assert err.startswith("error: user_id [nobody]") and "Traceback" not in err
    tampered = tmp_path / "tampered.pth"
    tampered.write_bytes(open(paths["RPG"], "rb").read() + b"\0")  # not signed: refused
    with pytest.raises(ValueError, match="signed"):
        attention(["--checkpoint", str(tampered), "--out", str(tmp_path)])


# ------------------------------------------------------------------------------- the measures
def test_measures_by_hand():
    # one user, history of 3, one head; focused-style map with a negative entry
    A = torch.zeros(1, 1, 4, 4)
    A[0, 0, 2, :3] = torch.tensor([0.6, -0.2, 0.2])
    lens = torch.tensor([3])
    w = last_row_weights(A, lens)
    assert torch.allclose(w[0, 0], torch.tensor([0.6, 0.2, 0.2, 0.0]))
    expected = -(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2)) / math.log(3)
    assert normalised_entropy(w, lens).item() == pytest.approx(expected, rel=1e-5)
    uniform = torch.full((1, 1, 3), 1 / 3)
    assert normalised_entropy(uniform, lens).item() == pytest.approx(1.0, rel=1e-5)
    one_hot = torch.tensor([[[0.0, 1.0, 0.0]]])
    assert normalised_entropy(one_hot, lens).item() == pytest.approx(0.0, abs=1e-7)
    sims = torch.tensor([[0.1, 0.9, 0.5, 5.0]])  # position 3 is padding: never chosen
    assert topk_share(w, sims, lens, 1).item() == pytest.approx(0.2)
    assert topk_share(w, sims, lens, 2).item() == pytest.approx(0.4)


def test_nrt_diagnostic_on_checkpoints(checkpoints, tmp_path, capsys, benchmark_script):
    diag = benchmark_script("diag_nrt")
    paths, _ = checkpoints
    report = diag.main(["--checkpoint", paths["FAIR"], "--out", str(tmp_path / "fair.json")])
    assert json.loads((tmp_path / "fair.json").read_text())["dataset"] == "viz"
    assert "triplets active" in capsys.readouterr().out
    for kind in ("squared_l2", "cosine"):
        r = report[kind]
        assert r["triplets"] == 3 * N_USERS  # 3 perturbations of every test history
        active = [r["active_share"][str(m)] for m in diag.MARGINS]
        losses = [r["mean_loss"][str(m)] for m in diag.MARGINS]
        assert active == sorted(active) and losses == sorted(losses)
        assert all(0 <= a <= 1 for a in active)
        for q in ("pos_quantiles", "neg_quantiles"):
            values = list(r[q].values())
            assert values == sorted(values) and values[0] >= -1e-6
        if kind == "cosine":
            assert r["neg_quantiles"]["0.95"] <= 2 + 1e-6
    c = report["configured"]  # FAIR's defaults: squared L2, margin 1.0 (on the grid)
    assert (c["distance"], c["margin"]) == ("squared_l2", 1.0)
    assert c["active_share"] == report["squared_l2"]["active_share"]["1.0"]
    assert report["nrt_mask_prob"] == 0.1 and report["nrt_sub_prob"] == 0.1
    # the FAIR input is really perturbed: h~ differs from h
    assert report["squared_l2"]["pos_quantiles"]["0.95"] > 1e-6

    # RPG trains without NRT: no perturbation, so D(h, h~) is exactly 0 and every triplet of
    # margin m is active exactly when D(h, h-) < m
    report = diag.main(["--checkpoint", paths["RPG"], "--out", str(tmp_path / "rpg.json")])
    assert report["nrt_mask_prob"] == 0 and report["nrt_sub_prob"] == 0
    for kind in ("squared_l2", "cosine"):
        assert max(report[kind]["pos_quantiles"].values()) < 1e-5


def test_rec_popularity_of_top10_lists(checkpoints, benchmark_script):
    rec = benchmark_script("rec_popularity")
    paths, _ = checkpoints
    loaded = load_checkpoint(paths["FAIR"], require_attention_maps=False)
    top, targets = popularity.top_k(loaded)
    assert top.shape == (N_USERS, 10) and len(targets) == N_USERS
    assert (top > 0).all()  # the padding item is never recommended
    for row in top:
        assert len(set(row.tolist())) == 10
    by_id = np.arange(loaded.dataset.item_num)  # item id as a stand-in "popularity"
    report = popularity.measure(loaded, by_id)
    assert report["mean_popularity"] == pytest.approx(top.mean())
    assert report["target_mean_popularity"] == pytest.approx(targets.mean())
    assert report["coverage"] == pytest.approx(len(np.unique(top)) / (N_ITEMS))
    for key in ("recommended", "targets"):
        assert sum(b[key] for b in report["buckets"].values()) == pytest.approx(1.0)
    assert "| FAIR |" in rec.to_markdown([report])
    with pytest.raises(ValueError, match="not the same dataset"):
        popularity.measure(loaded, by_id[:-1])
    with pytest.MonkeyPatch.context() as mp:  # a stand-in popularity (see the sweep's test)
        mp.setattr(rec, "training_popularity", lambda loaded: np.arange(loaded.dataset.item_num))
        reports = rec.main(
            ["--checkpoints", paths["FAIR"], paths["RPG"], "--labels", "FAIR (a),RPG (b)"]
        )
        assert [r["model"] for r in reports] == ["FAIR (a)", "RPG (b)"]
        with pytest.raises(SystemExit):
            rec.main(["--checkpoints", paths["FAIR"], "--labels", "a,b"])


def _stand_in_statistics(loaded):
    r"""RecBole's split of the synthetic set needs its own load_col: a stand-in popularity (item
    id) for the profile columns and random training rows for the recency prior."""
    n = loaded.dataset.item_num
    rng = np.random.default_rng(1)
    uid = rng.integers(1, 20, 200)
    return {
        "item_popularity": np.arange(n),
        "item_tokens": np.asarray(loaded.dataset.field2id_token[loaded.dataset.iid_field]),
        "train_uid": uid,
        "train_history": rng.permutation(200) + 1,
        "train_target": rng.integers(1, n, 200),
    }


def test_score_calibration_prior_flag(benchmark_script):
    cal = benchmark_script("score_calibration")
    assert cal._prior("all") is None and cal._prior("last:3") == 3
    for bad in ("last", "last:0", "last:x", "recent:2"):
        with pytest.raises(argparse.ArgumentTypeError, match="--prior"):
            cal._prior(bad)


def test_score_calibration_recency_prior_on_a_checkpoint(checkpoints, tmp_path, benchmark_script):
    cal = benchmark_script("score_calibration")
    paths, _ = checkpoints
    loaded = load_checkpoint(paths["FAIR"], require_attention_maps=False)
    model = loaded.model
    # equal counts: q(i) = 1/N and q_l(c) = (items with code c at digit l) / N
    codes = model.item_codes[1:].numpy()
    n = len(codes)
    shared = np.stack([np.bincount(col, minlength=model.codebook_size)[col] for col in codes.T], 1)
    expected = -np.log(n) - np.log(shared / n).sum(1)
    bias = calibration.item_prior(model, np.full(n + 1, 7))
    assert bias[0] == 0
    assert np.allclose(bias[1:].numpy(), expected, atol=1e-4)
    with pytest.raises(ValueError, match="not the checkpoint's dataset"):
        calibration.item_prior(model, np.ones(n))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cal, "training_statistics", _stand_in_statistics)
        args = ["--checkpoint", paths["FAIR"], "--weights", "0,1"]
        every = cal.main(args)
        recent = cal.main([*args, "--prior", "last:1", "--out", str(tmp_path / "r.md")])
    assert recent["prior"] == "last:1"
    assert "1 most recent training target" in (tmp_path / "r.md").read_text()
    # γ = 0 is the model's own score whatever the prior; γ = 1 ranks with the other prior
    assert recent["rows"][0]["test"] == every["rows"][0]["test"]
    assert recent["rows"][1]["test_popularity"] != every["rows"][1]["test_popularity"]

    with pytest.MonkeyPatch.context() as mp:
        # counts of a split that numbers the items differently are refused
        def shuffled_tokens(loaded):
            stats = _stand_in_statistics(loaded)
            stats["item_tokens"] = stats["item_tokens"][::-1].copy()
            return stats

        mp.setattr(cal, "training_statistics", shuffled_tokens)
        with pytest.raises(ValueError, match="does not number the items"):
            cal.main(args)


def test_score_calibration_sweep_on_a_checkpoint(checkpoints, tmp_path, benchmark_script):
    cal = benchmark_script("score_calibration")
    paths, root = checkpoints
    out = tmp_path / "cal.md"
    # RecBole's sequential split of this synthetic set needs its own load_col; a stand-in
    # popularity (item id) is enough for the profile columns
    mp = pytest.MonkeyPatch()
    mp.setattr(cal, "training_statistics", _stand_in_statistics)
    report = cal.main(["--checkpoint", paths["FAIR"], "--weights", "0,0.5,1000", "--out", str(out)])
    assert report["prior"] == "all"
    assert out.read_text().startswith("FAIR on viz")
    assert json.loads(out.with_suffix(".json").read_text())["selected_weight"] in (0, 0.5, 1000)
    rows = report["rows"]
    assert [r["weight"] for r in rows] == [0, 0.5, 1000]
    best = max(r["valid"]["ndcg@10"] for r in rows)
    assert calibration.select(rows)["valid"]["ndcg@10"] == best
    for r in rows:
        for split in ("valid", "test"):
            m = r[split]
            assert 0 <= m["ndcg@5"] <= m["ndcg@10"] <= m["recall@10"] <= 1
            assert m["recall@5"] <= m["recall@10"]

    # weight 0 is the model's own ranking: RecBole's trainer gives the same test metrics
    loaded = load_checkpoint(paths["FAIR"], require_attention_maps=False)
    loaded.config["metrics"], loaded.config["topk"] = ["Recall", "NDCG"], [5, 10]
    trainer = get_trainer(loaded.config["MODEL_TYPE"], "FAIR")(loaded.config, loaded.model)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        recbole = trainer.evaluate(loaded.test_data, load_best_model=False, show_progress=False)
    for metric in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        assert rows[0]["test"][metric] == pytest.approx(recbole[metric], abs=1e-4)

    # a huge weight ranks by the prior correction alone: every user gets the same top-10
    top, _ = popularity.top_k(loaded, 10)  # weight 0
    bias = calibration.item_prior(loaded.model, _stand_in_statistics(loaded)["item_popularity"])
    top_huge, _ = popularity.top_k(loaded, 10, None, 1e6 * bias)
    bias[0] = -float("inf")
    assert set(top_huge[0].tolist()) == set(bias.topk(10).indices.tolist())
    assert (top_huge == top_huge[0]).all() and not (top == top[0]).all()

    ranks = calibration.ranks_of_targets(np.array([[3, 1, 2], [4, 5, 6]]), np.array([1, 9]))
    assert ranks.tolist() == [1, float("inf")]
    assert calibration.ranking_metrics(ranks)["ndcg@10"] == pytest.approx(0.5 / math.log2(3))
    with pytest.raises(SystemExit):
        cal.main(["--checkpoint", paths["FAIR"], "--weights", "0,-1"])
    mp.undo()
