"""RPG: a preset of FAIR's modules (standard attention, MTP only), its YAML and its trainer."""

import copy
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import ModelType, init_seed
from synthetic import write_walk_dataset

from recbole_fair import utils
from recbole_fair.config import Config
from recbole_fair.model.layers import CausalSelfAttention
from recbole_fair.model.sequential_recommender.fair import FAIR
from recbole_fair.model.sequential_recommender.rpg import RPG
from recbole_fair.trainer.semantic_trainer import RPGTrainer, SemanticIDTrainer, lr_factor

RPG_YAML = Path(__file__).resolve().parents[1] / "properties" / "model" / "RPG.yaml"
N_ITEMS, N_USERS, SEQ_LEN, L, K = 60, 120, 6, 4, 16
TINY = {
    "n_codes": L,
    "codebook_size": K,
    "hidden_size": 32,
    "inner_size": 64,
    "n_heads": 2,
    "MAX_ITEM_LIST_LENGTH": 10,
    "show_progress": False,
    "state": "WARNING",
}


GRAPH = {"decoding": "graph", "graph_steps": 2, "input_dropout_prob": 0.1}


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("rpg_data")
    rng = np.random.default_rng(0)
    write_walk_dataset(root, N_USERS, N_ITEMS, SEQ_LEN, rng=rng)
    config = Config(
        model="RPG",
        dataset="syn",
        config_dict={
            "data_path": str(root),
            "checkpoint_dir": str(root / "saved"),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            **TINY,
        },
    )
    dataset = create_dataset(config)
    flat = torch.as_tensor(rng.permutation(K**L)[: dataset.item_num])
    codes = torch.stack([(flat // K**j) % K for j in range(L)], dim=1)
    codes[0] = 0
    dataset.item_codes = codes
    return SimpleNamespace(config=config, dataset=dataset, root=root)


def make(cls, syn, **overrides):
    config = copy.deepcopy(syn.config)
    for key, value in overrides.items():
        config[key] = value
    torch.manual_seed(0)
    return cls(config, syn.dataset)


def random_batch(model, B=6, T=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    seqs = torch.randint(1, model.n_items, (B, T), generator=g)
    seqs[torch.arange(T).unsqueeze(0) >= lens.unsqueeze(1)] = 0
    items = torch.randint(1, model.n_items, (B,), generator=g)
    return Interaction({model.ITEM_SEQ: seqs, model.ITEM_SEQ_LEN: lens, model.ITEM_ID: items})


# ------------------------------------------------------------------------------- config
def test_yaml_is_documented_and_holds_the_rpg_recipe():
    text = RPG_YAML.read_text()
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            assert "# (" in line, f"key without '# (type) meaning.' comment: {line}"
            assert "[" in line.split("#", 1)[1], f"key without provenance: {line}"
    keys = yaml.safe_load(text)
    assert keys["attention"] == "standard" and keys["nrt_weight"] == keys["mim_weight"] == 0
    assert keys["n_codes"] == 32 and keys["n_layers"] == 2 and keys["head_temperature"] == 0.03
    assert keys["learner"] == "adamw" and keys["learning_rate"] == 0.01
    assert keys["lr_scheduler"] == "cosine" and keys["train_batch_size"] == 256
    assert keys["stopping_step"] == 20 and keys["valid_metric"] == "NDCG@10"
    assert keys["decoding"] == "exact"
    # no FAIR-only keys: RPG does not read them
    assert not [k for k in keys if k.startswith(("fam_", "nrt_", "mim_")) and "weight" not in k]


def test_config_dataset_and_trainer_lookups(syn, caplog):
    from recbole_fair.data import RPGDataset, SemanticIDDataset

    assert utils.get_model("RPG") is RPG and issubclass(RPG, FAIR)
    assert utils.get_trainer(ModelType.SEQUENTIAL, "RPG") is RPGTrainer
    assert issubclass(RPGDataset, SemanticIDDataset)
    with caplog.at_level(logging.WARNING):
        config = Config(
            model="RPG",
            dataset="syn",
            config_dict={"data_path": str(syn.root), "decoding": "graph", **TINY},
        )
    assert "Unknown config key" not in caplog.text
    assert config["hidden_size"] == 32  # config_dict over RPG.yaml
    assert config["inner_size"] == 64 and config["learner"] == "adamw"
    assert config["graph_num_neighbors"] == 200 and config["warmup_steps"] == 10000
    assert config["text_fields"] is not None  # semantic_ids.yaml is loaded for RPG
    assert config["train_neg_sample_args"]["distribution"] == "none"
    # FAIR accepts the decoding keys too (they are optional, not in FAIR.yaml)
    with caplog.at_level(logging.WARNING):
        Config(model="FAIR", dataset="syn", config_dict={"data_path": str(syn.root), **GRAPH})
    assert "Unknown config key" not in caplog.text


@pytest.mark.parametrize(
    "key, value", [("attention", "focused"), ("nrt_weight", 1.0), ("mim_weight", 0.01)]
)
def test_rpg_refuses_fair_switches(syn, key, value):
    with pytest.raises(ValueError, match=key):
        make(RPG, syn, **{key: value})


def test_rpg_is_standard_attention_and_mtp_only(syn):
    model = make(RPG, syn)
    assert all(isinstance(b.attn, CausalSelfAttention) for b in model.encoder.blocks)
    assert not any("lambda" in name for name in model.state_dict())
    # RPG's dropouts: 0.5 on the input embedding and the attention, none on residuals
    assert model.input_dropout.p == 0.5 and model.encoder.blocks[0].attn.attn_dropout_prob == 0.5
    assert isinstance(model.encoder.blocks[0].drop1, torch.nn.Identity)
    calls = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    mtp, nrt, mim, item = model.calculate_loss(random_batch(model))
    assert len(calls) == 1 and nrt.item() == mim.item() == item.item() == 0 and mtp.item() > 0


# ------------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("decoding", ["exact", "graph"])
def test_fair_with_rpg_switches_and_rpg_weights_gives_rpg_scores(syn, decoding):
    extra = {"decoding": decoding, "graph_num_neighbors": 5, "graph_num_beams": 3}
    rpg = make(RPG, syn, **extra)
    with torch.no_grad():
        rpg.heads.weight.normal_(0, 0.2)  # non-identity heads
    fair = make(FAIR, syn, attention="standard", nrt_weight=0.0, mim_weight=0.0, **extra)
    rpg.eval()
    fair.eval()
    inter = random_batch(rpg)
    assert not torch.equal(rpg.full_sort_predict(inter), fair.full_sort_predict(inter))
    fair.load_state_dict(rpg.state_dict())  # strict: the very same parameters
    assert torch.equal(rpg.full_sort_predict(inter), fair.full_sort_predict(inter))
    assert torch.equal(rpg.predict(inter), fair.predict(inter))
    torch.manual_seed(0)
    rpg_loss = rpg.calculate_loss(inter)
    torch.manual_seed(0)
    assert torch.equal(rpg_loss[0], fair.calculate_loss(inter)[0])
    # and FAIR's own default (focused attention) is a different model
    focused = make(
        FAIR,
        syn,
        attention="focused",
        fam_lambda1="fixed_one",
        fam_norm="output_rmsnorm",
        fam_lambda_std=0.1,
    )
    with pytest.raises(RuntimeError):
        focused.load_state_dict(rpg.state_dict())


# ------------------------------------------------------------------------------- trainer
def test_lr_factor_warmup_then_cosine():
    total, warmup = 100, 10
    factors = [lr_factor(s, total, warmup, "cosine") for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:9], factors[1:10]))  # linear rise
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # cosine decay
    assert factors[55] == pytest.approx(0.5) and factors[-1] < 0.001
    assert lr_factor(total + 5, total, warmup, "cosine") == 0.0
    assert [lr_factor(s, total, warmup, "none") for s in (0, 50, 99)] == [0.1, 1.0, 1.0]
    assert lr_factor(0, total, 0, "none") == 1.0


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"lr_scheduler": "linear"}, "lr_scheduler"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"warmup_steps": 5, "warmup_epochs": 1.0}, "warmup_epochs"),
    ],
)
def test_trainer_config_errors_name_the_key(syn, overrides, match):
    model = make(RPG, syn)
    config = copy.deepcopy(syn.config)
    for key, value in overrides.items():
        config[key] = value
    with pytest.raises(ValueError, match=match):
        SemanticIDTrainer(config, model)


def test_rpg_trainer_runs_adamw_with_warmup_and_cosine(syn, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole writes log_tensorboard/ into the cwd
    config = copy.deepcopy(syn.config)
    for key, value in {
        "epochs": 2,
        "train_batch_size": 32,
        "warmup_steps": 0,
        "warmup_epochs": 0.5,
        "checkpoint_dir": str(tmp_path / "saved"),
    }.items():
        config[key] = value
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, syn.dataset)
    model = RPG(config, train_data.dataset)
    trainer = RPGTrainer(config, model)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    steps = len(train_data)
    lrs = trainer.lr_history
    assert len(lrs) == 2 * steps
    warmup = round(0.5 * steps)
    assert lrs[warmup - 1] == pytest.approx(0.01)  # peak = learning_rate at the end of warm-up
    assert all(a < b for a, b in zip(lrs[: warmup - 1], lrs[1:warmup]))
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1 :]))
    assert lrs[-1] < 0.01 * 0.05
