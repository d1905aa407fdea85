"""Interleaved / AttnLFA / AttnMVP: causality, construction, reference maths, data pipeline,
learning on synthetic data with a known answer, and end-to-end runs on ml-100k."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import recbole
import torch
import torch.nn.functional as F
from recbole.data import data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_fair.config import Config
from recbole_fair.data.action_dataset import ActionTypeWarning, parse_action_types
from recbole_fair.errors import ConfigError
from recbole_fair.model.action_layers import causal_mask
from recbole_fair.model.action_settings import ActionModelSettings, AttnLFASettings
from recbole_fair.quick_start import run_recbole_fair
from recbole_fair.utils import create_dataset, get_model, get_trainer

MODELS = ["Interleaved", "AttnLFA", "AttnMVP"]
ML100K_PATH = os.path.join(os.path.dirname(recbole.__file__), "dataset_example")
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


# ---------------------------------------------------------------------------- helpers
def write_inter(root: Path, name: str, rows: list[tuple], header: str = HEADER) -> str:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header] + ["\t".join(str(v) for v in row) for row in rows]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return str(root)


def synthetic_rows(n_users=300, n_items=16, n_clusters=2, length=20, noise=0.1, seed=0):
    r"""Each user has two hidden bits per item cluster; ``like`` = bit 1 and ``love`` =
    bit 1 and bit 2, each flipped with prob. ``noise``. The action on an item is therefore
    predictable only from the actions the user took on earlier items of the same cluster."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        like_bit = rng.random(n_clusters) < 0.5
        love_bit = rng.random(n_clusters) < 0.5
        for t, item in enumerate(rng.integers(0, n_items, size=length)):
            c = item % n_clusters
            like = like_bit[c] ^ (rng.random() < noise)
            love = love_bit[c] ^ (rng.random() < noise)
            rating = (5 if love else 4) if like else 2
            rows.append((f"u{u}", f"i{item}", rating, 1000 * u + t))
    return rows


SYNTH_TYPES = {"like": ">= 4", "love": "== 5"}


def make_config(model: str, dataset: str, data_path: str, **overrides) -> Config:
    config_dict = dict(
        data_path=data_path,
        load_col={"inter": ["user_id", "item_id", "rating", "timestamp"]},
        show_progress=False,
        state="WARNING",
    )
    config_dict.update(overrides)
    return Config(model=model, dataset=dataset, config_dict=config_dict)


def small_model(
    hidden_size: int, n_layers: int, max_len: int, initializer_range: float, **extra
) -> dict:
    r"""Settings of a small model without dropout: 2 heads, FFN width ``2 * hidden_size``."""
    return dict(
        hidden_size=hidden_size,
        inner_size=2 * hidden_size,
        n_layers=n_layers,
        n_heads=2,
        hidden_dropout_prob=0.0,
        attn_dropout_prob=0.0,
        initializer_range=initializer_range,
        MAX_ITEM_LIST_LENGTH=max_len,
        **extra,
    )


TINY = small_model(16, n_layers=2, max_len=12, initializer_range=0.2)


@pytest.fixture(scope="module")
def synth_path(tmp_path_factory) -> str:
    return write_inter(tmp_path_factory.mktemp("data"), "synth", synthetic_rows())


@pytest.fixture(scope="module")
def synth_dataset(synth_path):
    config = make_config("AttnLFA", "synth", synth_path, action_types=SYNTH_TYPES, **TINY)
    return create_dataset(config)


def build(name: str, synth_path: str, synth_dataset, **overrides):
    params = dict(TINY, action_types=SYNTH_TYPES)
    params.update(overrides)
    config = make_config(name, "synth", synth_path, **params)
    init_seed(0, True)
    return get_model(name)(config, synth_dataset).eval()


def random_batch(model, batch=3, length=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    items = torch.randint(1, model.n_items, (batch, length), generator=gen)
    actions = torch.randint(0, 2, (batch, length, model.num_action_types), generator=gen).float()
    return items, actions


# ---------------------------------------------------------------------------- settings
def test_settings_are_read_in_one_place_and_name_the_key(synth_path, synth_dataset):
    model = build("AttnLFA", synth_path, synth_dataset)
    assert isinstance(model.settings, AttnLFASettings) and model.settings.lfa_pooling is True
    assert model.settings.hidden_size == model.hidden_size == 16
    assert type(build("AttnMVP", synth_path, synth_dataset).settings) is ActionModelSettings
    values = dict(make_config("AttnMVP", "synth", synth_path, **TINY).final_config_dict)
    for key, value, match in [
        ("attention_type", "linear", "attention_type must be one of"),
        ("n_heads", 3, r"hidden_size \[16\] must be divisible by n_heads \[3\]"),
        ("layer_norm_eps", 0.0, "layer_norm_eps must be > 0"),
        ("attn_dropout_prob", None, r"\[attn_dropout_prob\] is missing.*model/AttnMVP\.yaml"),
    ]:
        with pytest.raises(ConfigError, match=match):
            ActionModelSettings.from_config({**values, key: value}, "AttnMVP")
    with pytest.raises(ConfigError, match=r"\[lfa_pooling\] is missing.*AttnLFA\.yaml"):
        AttnLFASettings.from_config(values, "AttnLFA")


# ---------------------------------------------------------------------------- causality
@pytest.mark.parametrize("attention_type", ["softmax", "silu"])
@pytest.mark.parametrize("name", MODELS)
def test_no_leakage(name, attention_type, synth_path, synth_dataset):
    """Perturbing a_n, or any later item or action, never changes the prediction at n; the
    perturbation of a_n does reach position n + 1 (so the check has teeth)."""
    model = build(name, synth_path, synth_dataset, attention_type=attention_type)
    items, actions = random_batch(model)
    with torch.no_grad():
        logits = model(items, actions)  # [B, T, K]
        for n in (0, 4, 10):
            only_a_n = actions.clone()
            only_a_n[:, n] = 1.0 - only_a_n[:, n]
            out = model(items, only_a_n)
            torch.testing.assert_close(out[:, : n + 1], logits[:, : n + 1], rtol=0, atol=1e-6)
            assert (out[:, n + 1] - logits[:, n + 1]).abs().max() > 1e-4

            later_items = items.clone()
            later_items[:, n + 1 :] = torch.randint(1, model.n_items, later_items[:, n + 1 :].shape)
            later_actions = actions.clone()
            later_actions[:, n:] = torch.rand_like(later_actions[:, n:])
            out = model(later_items, later_actions)
            torch.testing.assert_close(out[:, : n + 1], logits[:, : n + 1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_predict_scores_the_last_position_without_its_label(name, synth_path, synth_dataset):
    model = build(name, synth_path, synth_dataset)
    length = model.max_seq_length  # a full history: the joined sequence is L + 1 long
    items, actions = random_batch(model, batch=2, length=length + 1)
    seq_len = torch.tensor([length, 3])
    hist_items = items[:, :length].clone()
    hist_actions = actions[:, :length].clone()
    hist_items[1, 3:] = 0
    hist_actions[1, 3:] = 0.0
    target = items[torch.arange(2), seq_len]
    label = actions[torch.arange(2), seq_len]
    batch = Interaction(
        {
            "item_id_list": hist_items,
            "label_list": hist_actions,
            "item_length": seq_len,
            "item_id": target,
            "label": label,
        }
    )
    with torch.no_grad():
        probs = model.predict(batch)  # [B, K]
        flipped = model.predict(Interaction({**batch.interaction, "label": 1.0 - label}))
        full = torch.sigmoid(model(items, actions))
    assert probs.shape == (2, model.num_action_types)
    torch.testing.assert_close(probs, flipped, rtol=0, atol=0)
    torch.testing.assert_close(probs[0], full[0, length], rtol=0, atol=1e-6)
    torch.testing.assert_close(probs[1], full[1, 3], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- Interleaved
def test_interleaved_sequence_and_readout_on_a_hand_made_example(synth_path, synth_dataset):
    model = build("Interleaved", synth_path, synth_dataset)
    # The two token streams: item token n carries 10n + 1, action token n carries 10n + 2.
    item_tok = torch.tensor([[[1.0], [11.0], [21.0]]])
    action_tok = torch.tensor([[[2.0], [12.0], [22.0]]])
    assert model.interleave(item_tok, action_tok).flatten().tolist() == [1, 2, 11, 12, 21, 22]
    assert model.item_positions(3).tolist() == [0, 2, 4]

    items = torch.tensor([[3, 5, 7]])
    actions = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    seen = {}
    hook = model.encoder.register_forward_hook(
        lambda mod, args, out: seen.update(tokens=args[0], mask=args[1], out=out)
    )
    with torch.no_grad():
        logits = model(items, actions)
        hook.remove()
        emb = model.embedding
        pos = emb.position.weight[:3]
        type_item, type_action = model.token_type.weight
        expected_items = emb.item(items)[0] + pos + type_item
        expected_actions = emb.action(actions)[0] + pos + type_action
        tokens = seen["tokens"][0]
        assert tokens.shape == (6, model.hidden_size)
        torch.testing.assert_close(tokens[0::2], expected_items)  # i_n at 2n
        torch.testing.assert_close(tokens[1::2], expected_actions)  # a_n right after i_n
        assert torch.equal(seen["mask"], causal_mask(6))
        torch.testing.assert_close(logits, model.head(seen["out"][:, 0::2]))  # read at i_n


# ---------------------------------------------------------------------------- AttnMVP
def test_attnmvp_masks_the_action_diagonal_in_every_layer(synth_path, synth_dataset):
    model = build("AttnMVP", synth_path, synth_dataset, n_layers=3)
    items, actions = random_batch(model)
    length = items.size(1)
    masks = []
    hooks = [
        block.attn.register_forward_pre_hook(lambda mod, args: masks.append(args[3]))
        for block in model.encoder.blocks
    ]
    with torch.no_grad():
        model(items, actions)
    for h in hooks:
        h.remove()
    assert len(masks) == 3
    for mask in masks:
        assert torch.equal(mask, causal_mask(length, strict=True))

    n = 5
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, length, model.hidden_size, generator=gen)
    a = torch.randn(2, length, model.hidden_size, generator=gen)
    a_perturbed = a.clone()
    a_perturbed[:, n] += 1.0
    causal = causal_mask(length)
    with torch.no_grad():
        for block in model.encoder.blocks:
            strict = causal_mask(length, strict=True)
            out = block.attn(x, causal, a, strict)
            out_p = block.attn(x, causal, a_perturbed, strict)
            torch.testing.assert_close(out_p[:, : n + 1], out[:, : n + 1], rtol=0, atol=1e-6)
            assert (out_p[:, n + 1 :] - out[:, n + 1 :]).abs().max() > 1e-4  # actions do flow
            # Control: with the diagonal kept, a_n would reach position n.
            leaky = block.attn(x, causal, a_perturbed, causal)
            assert (leaky[:, n] - block.attn(x, causal, a, causal)[:, n]).abs().max() > 1e-4


# ---------------------------------------------------------------------------- AttnLFA
def reference_encoder(encoder, x: torch.Tensor, attention_type: str) -> torch.Tensor:
    """Brute-force pre-LN causal Transformer: one query position at a time, no masks."""
    for block in encoder.blocks:
        h = block.ln_attn(x)
        qkv = h @ block.attn.qkv.weight.T + block.attn.qkv.bias
        q, k, v = qkv.split(h.size(-1), dim=-1)
        heads = block.attn.n_heads
        d_h = h.size(-1) // heads
        out = torch.zeros_like(h)
        for n in range(x.size(1)):
            for hd in range(heads):
                sl = slice(hd * d_h, (hd + 1) * d_h)
                scores = (k[:, : n + 1, sl] @ q[:, n, sl].unsqueeze(-1)).squeeze(-1) / math.sqrt(
                    d_h
                )
                if attention_type == "softmax":
                    w = scores.softmax(dim=-1)
                else:
                    w = F.silu(scores) / (n + 1)
                out[:, n, sl] = (w.unsqueeze(-1) * v[:, : n + 1, sl]).sum(dim=1)
        x = x + block.attn.out(out)
        x = x + block.mlp.fc_out(F.gelu(block.mlp.fc_in(block.ln_mlp(x))))
    return encoder.ln_final(x)


@pytest.mark.parametrize("attention_type", ["softmax", "silu"])
def test_attnlfa_without_pooling_equals_the_item_only_encoder(
    attention_type, synth_path, synth_dataset
):
    no_pool = build(
        "AttnLFA", synth_path, synth_dataset, attention_type=attention_type, lfa_pooling=False
    )
    items, actions = random_batch(no_pool)
    with torch.no_grad():
        hidden = reference_encoder(no_pool.encoder, no_pool.embedding.items(items), attention_type)
        torch.testing.assert_close(no_pool.item_representations(items), hidden, rtol=0, atol=1e-5)
        logits = no_pool(items, actions)
        expected = no_pool.head(torch.cat((hidden, torch.zeros_like(hidden)), dim=-1))
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(no_pool(items, torch.rand_like(actions)), logits, rtol=0, atol=0)

        # Same weights with the late fusion on: position 1 pools the null vector, later
        # positions pool past actions by item similarity.
        pool = build("AttnLFA", synth_path, synth_dataset, attention_type=attention_type)
        pool.load_state_dict(no_pool.state_dict())
        pooled = pool.pool_actions(hidden, actions)
        torch.testing.assert_close(pooled[:, 0], pool.null_action.expand(3, -1))
        q = pool.fusion_query(hidden)
        k = pool.fusion_key(hidden)
        v = pool.fusion_value(pool.embedding.actions(actions))
        heads, d_h = pool.n_heads, pool.hidden_size // pool.n_heads
        for n in range(1, items.size(1)):
            ref = torch.zeros_like(hidden[:, n])
            for hd in range(heads):
                sl = slice(hd * d_h, (hd + 1) * d_h)
                scores = (k[:, :n, sl] @ q[:, n, sl].unsqueeze(-1)).squeeze(-1) / math.sqrt(d_h)
                w = scores.softmax(-1) if attention_type == "softmax" else F.silu(scores) / n
                ref[:, sl] = (w.unsqueeze(-1) * v[:, :n, sl]).sum(dim=1)
            torch.testing.assert_close(pooled[:, n], pool.fusion_out(ref), rtol=0, atol=1e-5)
        assert (pool(items, actions) - logits)[:, 1:].abs().max() > 1e-4


# ---------------------------------------------------------------------------- data pipeline
def test_rows_are_chronological_windows_and_leave_one_out_targets(tmp_path):
    # user a, in time order: i1..i6 rated 5 1 4 3 2 5; written to the file out of order.
    a_rows = [("a", f"i{t + 1}", r, 100 + t) for t, r in enumerate([5, 1, 4, 3, 2, 5])]
    b_rows = [("b", "j1", 4, 7), ("b", "j2", 2, 8)]  # too short for valid/test: train only
    rows = [a_rows[i] for i in (3, 0, 5, 1, 4, 2)] + b_rows[::-1]
    path = write_inter(tmp_path, "tiny", rows)
    config = make_config("AttnLFA", "tiny", path, MAX_ITEM_LIST_LENGTH=2)
    dataset = create_dataset(config)
    assert dataset.action_names == ["like", "love", "dislike"]
    train, valid, test = dataset.build()

    def decode(ds):
        out = []
        for r in range(len(ds.inter_feat)):
            row = ds.inter_feat[r]
            n = int(row["item_length"])
            hist = [dataset.id2token("item_id", int(i)) for i in row["item_id_list"][:n]]
            out.append(
                (
                    dataset.id2token("user_id", int(row["user_id"])),
                    hist,
                    dataset.id2token("item_id", int(row["item_id"])),
                    row["label_list"][:n].int().tolist(),
                    row["label"].int().tolist(),
                )
            )
        return sorted(out)

    lab = {5: [1, 1, 0], 1: [0, 0, 1], 4: [1, 0, 0], 3: [0, 0, 0], 2: [0, 0, 1]}
    # Training windows of L + 1 = 3 positions, from the most recent backwards: [i2 i3 | i4], [| i1].
    assert decode(train) == sorted(
        [
            ("a", [], "i1", [], lab[5]),
            ("a", ["i2", "i3"], "i4", [lab[1], lab[4]], lab[3]),
            ("b", ["j1"], "j2", [lab[4]], lab[2]),
        ]
    )
    assert decode(valid) == [("a", ["i3", "i4"], "i5", [lab[4], lab[3]], lab[2])]
    assert decode(test) == [("a", ["i4", "i5"], "i6", [lab[3], lab[2]], lab[5])]


def test_missing_action_field_names_the_field_and_the_file(tmp_path):
    path = write_inter(tmp_path, "noscore", [("a", "i1", 3, 1), ("a", "i2", 4, 2)])
    config = make_config(
        "AttnMVP",
        "noscore",
        path,
        action_field="score",
        load_col={"inter": ["user_id", "item_id", "timestamp"]},
    )
    inter = os.path.join(path, "noscore", "noscore.inter")
    with pytest.raises(
        ValueError, match=r"action_field \[score\] not found in \[.*noscore\.inter\]"
    ) as err:
        create_dataset(config)
    assert inter in str(err.value) and "rating" in str(err.value)  # lists the file's columns


def test_ranking_protocol_is_refused_with_the_key_to_change(synth_path):
    config = make_config(
        "AttnLFA",
        "synth",
        synth_path,
        eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        metrics=["Recall", "NDCG"],
        valid_metric="NDCG@10",
    )
    with pytest.raises(ValueError, match=r"eval_args\.mode to labeled"):
        create_dataset(config)


def test_bad_condition_names_the_action_type():
    with pytest.raises(ValueError, match=r"action_types\.meh"):
        parse_action_types({"like": ">= 4", "meh": "about 3"})
    assert parse_action_types({"mid": ">= 2 and <= 3", "five": 5}) == [
        ("mid", [(">=", 2.0), ("<=", 3.0)]),
        ("five", [("==", 5.0)]),
    ]


def test_action_type_without_positives_warns_and_reports_nan(synth_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    types = {"like": ">= 4", "never": "> 5"}
    config = make_config("AttnLFA", "synth", synth_path, action_types=types, **TINY)
    with pytest.warns(ActionTypeWarning, match=r"\[never\].*0 positives out of 6000") as record:
        dataset = create_dataset(config)
    (warning,) = [w for w in record if w.category is ActionTypeWarning]
    assert re.search(r"like: \d+/6000, never: 0/6000", str(warning.message))  # all counts
    _, _, test_data = data_preparation(config, dataset)
    model = get_model("AttnLFA")(config, test_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "AttnLFA")(config, model)
    result = trainer.evaluate(test_data, load_best_model=False)
    assert math.isnan(result["ne@never"]) and math.isnan(result["auroc@never"])
    assert result["bce@never"] >= 0.0 and not math.isnan(result["bce@never"])
    assert result["ne"] == result["ne@like"]  # the mean skips the undefined type


# ---------------------------------------------------------------------------- learning
LEARN = small_model(
    32,
    n_layers=1,
    max_len=30,
    initializer_range=0.1,  # RecBole's 0.02 makes the similarity attention start very flat
    train_batch_size=32,
    learning_rate=0.01,
    epochs=10,
    eval_step=10,  # validate once, at the end
    action_types=SYNTH_TYPES,
)


def _train_and_test(name: str, synth_path: str, **overrides) -> dict:
    config = make_config(name, "synth", synth_path, **dict(LEARN, **overrides))
    init_seed(2020, True)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(name)(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
    trainer.fit(train_data, valid_data, saved=False, verbose=False)
    return trainer.evaluate(test_data, load_best_model=False)


@pytest.mark.parametrize("name", MODELS)
def test_learns_actions_from_actions_on_similar_items(name, synth_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _train_and_test(name, synth_path)
    assert result["ne@like"] < 0.9 and result["ne@love"] < 0.9, result


def test_synthetic_actions_are_not_predictable_from_items_alone(synth_path, tmp_path, monkeypatch):
    """Control for the test above: the item-only encoder stays at the base rate."""
    monkeypatch.chdir(tmp_path)
    result = _train_and_test("AttnLFA", synth_path, lfa_pooling=False)
    assert result["ne"] > 0.95, result


# ---------------------------------------------------------------------------- end to end
@pytest.mark.parametrize(
    "name, attention_type",
    [("Interleaved", "softmax"), ("AttnLFA", "softmax"), ("AttnMVP", "silu")],
)
def test_end_to_end_on_ml100k(name, attention_type, in_tmp_dir):
    result = run_recbole_fair(
        model=name,
        dataset="ml-100k",
        config_dict=dict(
            data_path=ML100K_PATH,
            epochs=1,
            hidden_size=16,
            inner_size=32,
            n_layers=1,
            MAX_ITEM_LIST_LENGTH=10,
            train_batch_size=1024,
            attention_type=attention_type,
            show_progress=False,
        ),
    )
    test = result["test_result"]
    for metric in ("bce", "ne", "auroc"):
        for key in [metric] + [f"{metric}@{t}" for t in ("like", "love", "dislike")]:
            assert math.isfinite(test[key]), (key, test)
    assert 0.0 < test["ne"] < 1.5 and 0.0 <= test["auroc"] <= 1.0
    assert result["best_valid_result"]["ne"] == result["best_valid_score"]
    assert result["valid_score_bigger"] is False  # NE: smaller is better
    assert len(result["costs"]["train_epoch_seconds"]) == 1
