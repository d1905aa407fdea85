"""FAIR as a RecBole model: contract, losses, exact ranking and learning on synthetic data.

The dataset is a small synthetic RecBole ``SequentialDataset`` in which item ``i`` is always
followed by item ``i + 1 (mod N)``; semantic IDs are random distinct codes (L=4, K=16) set on
``dataset.item_codes`` as recbole-fair's ``FAIRDataset`` would.
"""

import copy
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer
from recbole.utils import init_seed
from synthetic import write_walk_dataset

from recbole_fair.errors import ConfigError
from recbole_fair.model import eval_encoder, ranking
from recbole_fair.model.eval_encoder import MAX_GROUPS, MIN_GROUP_ROWS, length_groups
from recbole_fair.model.fair_settings import FAIRSettings
from recbole_fair.model.losses import mtp_loss
from recbole_fair.model.sequential_recommender import fair as fair_module
from recbole_fair.model.sequential_recommender.fair import FAIR

FAIR_YAML = Path(__file__).resolve().parents[1] / "properties" / "model" / "FAIR.yaml"
N_ITEMS, N_USERS, SEQ_LEN, L, K = 100, 400, 8, 4, 16


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    write_walk_dataset(root, N_USERS, N_ITEMS, SEQ_LEN, rng=rng)
    config = Config(
        model=FAIR,
        dataset="syn",
        config_file_list=[str(FAIR_YAML)],
        config_dict={
            "data_path": str(root),
            "checkpoint_dir": str(root / "saved"),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {
                "split": {"LS": "valid_and_test"},
                "order": "TO",
                "group_by": "user",
                "mode": "full",
            },
            "MAX_ITEM_LIST_LENGTH": 10,
            "n_codes": L,
            "codebook_size": K,
            "hidden_size": 32,
            "inner_size": 64,
            "n_heads": 2,
            "metrics": ["Recall", "MRR"],
            "topk": [10],
            "valid_metric": "Recall@10",
            "show_progress": False,
            "state": "WARNING",
        },
    )
    dataset = create_dataset(config)
    # distinct random codes per item; row 0 (padding) all zeros
    flat = torch.as_tensor(rng.permutation(K**L)[: dataset.item_num])
    codes = torch.stack([(flat // K**j) % K for j in range(L)], dim=1)
    codes[0] = 0
    dataset.item_codes = codes
    return SimpleNamespace(config=config, dataset=dataset, root=root)


def make_model(syn, **overrides) -> FAIR:
    config = copy.deepcopy(syn.config)
    for key, value in overrides.items():
        config[key] = value
    torch.manual_seed(0)
    return FAIR(config, syn.dataset)


def batch(model: FAIR, seqs, lens, items=None) -> Interaction:
    data = {
        model.ITEM_SEQ: torch.as_tensor(seqs),
        model.ITEM_SEQ_LEN: torch.as_tensor(lens),
    }
    if items is not None:
        data[model.ITEM_ID] = torch.as_tensor(items)
    return Interaction(data)


def random_batch(model: FAIR, B: int = 5, T: int = 10, seed: int = 1) -> Interaction:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    lens[0] = T - 3  # keep T' < T so trimming has something to drop
    seqs = torch.randint(1, model.n_items, (B, T), generator=g)
    seqs[torch.arange(T).unsqueeze(0) >= lens.unsqueeze(1)] = 0
    items = torch.randint(1, model.n_items, (B,), generator=g)
    return batch(model, seqs, lens, items)


# ------------------------------------------------------------------------------- contract
def test_yaml_keys_are_commented_and_read_by_the_model():
    text = FAIR_YAML.read_text()
    keys = yaml.safe_load(text)
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            assert "# (" in line, f"key without '# (type) meaning.' comment: {line}"
    assert keys["loss_type"] == "CE" and keys["train_neg_sample_args"] is None
    assert keys["n_codes"] == 32 and keys["codebook_size"] == 256
    assert keys["nrt_weight"] == 1.0 and keys["mim_weight"] == 0.01


def test_missing_item_codes_raises(syn):
    class NoCodes:
        def num(self, field):
            return syn.dataset.num(field)

    with pytest.raises(ValueError, match="semantic-ID dataset.*FAIRDataset"):
        FAIR(syn.config, NoCodes())


@pytest.mark.parametrize(
    "key, value, match",
    [("n_codes", 5, "n_codes"), ("codebook_size", 8, "codebook_size")],
)
def test_item_codes_must_match_config(syn, key, value, match):
    with pytest.raises(ValueError, match=match):
        make_model(syn, **{key: value})


@pytest.mark.parametrize(
    "key, value",
    [
        ("attention", "linear"),
        ("fam_norm", "layernorm"),
        ("fam_lambda1", "two"),
        ("head_logits", "bilinear"),
        ("train_mode", "windows"),
        ("nrt_positions", "first"),
        ("nrt_distance", "l1"),
        ("loss_type", "BPR"),
        ("head_temperature", 0.0),
        ("nrt_weight", -1.0),
        ("nrt_sub_prob", 0.95),
    ],
)
def test_invalid_config_values_raise_naming_the_key(syn, key, value):
    with pytest.raises(ValueError, match=key):
        make_model(syn, **{key: value})


def test_settings_are_read_in_one_place_and_name_the_key(syn):
    values = dict(syn.config.final_config_dict)
    settings = FAIRSettings.from_config(values)
    assert settings.n_codes == L and settings.graph.decoding == "exact"
    assert settings.input_dropout_prob == settings.hidden_dropout_prob  # absent: the same
    assert not settings.item_id_embedding and settings.item_loss_weight == 0  # the paper's
    del values["nrt_margin"]
    with pytest.raises(ConfigError, match=r"\[nrt_margin\] is missing.*model/FAIR\.yaml"):
        FAIRSettings.from_config(values)
    # a switched-off part's keys may be absent: they are never used
    assert FAIRSettings.from_config({**values, "nrt_weight": 0}).nrt_margin == 0
    for key, value in [("n_codes", 4.5), ("nrt_weight", "1"), ("input_layer_norm", "yes")]:
        with pytest.raises(ConfigError, match=key):
            FAIRSettings.from_config({**values, key: value})
    rpg = {"attention": "standard", "nrt_weight": 0.0, "mim_weight": 0.0}
    with pytest.raises(ConfigError, match=r"attention \[focused\] is fixed to \[standard\]"):
        FAIRSettings.from_config({**values, "nrt_weight": 0, "mim_weight": 0}, "RPG", rpg)


def test_item_id_checkpoints_of_earlier_versions_load(syn):
    model = make_model(syn, item_id_embedding=True)
    legacy = {
        key.replace("item_id.embedding.", "item_embedding.").replace(
            "item_id.head.", "item_head."
        ): v
        for key, v in model.state_dict().items()
    }
    assert {"item_embedding.weight", "item_head.weight", "item_head.bias"} <= set(legacy)
    other = make_model(syn, item_id_embedding=True)
    with torch.no_grad():
        other.item_id.embedding.weight.zero_()
    other.load_state_dict(legacy)  # strict: every key found
    assert torch.equal(other.item_id.embedding.weight, model.item_id.embedding.weight)


def test_item_tokens_and_input_embedding(syn):
    model = make_model(syn)
    assert "item_codes" in model.state_dict()
    assert model.vocab_size == L * K + 2 and model.mask_token == L * K + 1
    items = torch.tensor([[3, 7], [0, 1]])
    tokens = model.item_tokens(items)
    codes = syn.dataset.item_codes
    assert torch.equal(tokens[0, 0], 1 + torch.arange(L) * K + codes[3])
    assert torch.all(tokens[1, 0] == 0)  # padding item
    emb = model.embed_tokens(tokens)  # [2, 2, d]
    table = model.code_embedding.weight
    assert torch.allclose(emb[0, 1], table[tokens[0, 1]].mean(0), atol=1e-6)
    assert torch.all(emb[1, 0] == 0)


# ------------------------------------------------------------------------------- encoder
def test_hidden_states_are_causal(syn):
    model = make_model(syn).eval()
    inter = random_batch(model)
    seq, lens = inter[model.ITEM_SEQ].clone(), inter[model.ITEM_SEQ_LEN]
    hidden = model.encode(seq, lens)
    seq2 = seq.clone()
    seq2[0, 4:7] = (seq2[0, 4:7] % (model.n_items - 1)) + 1  # change later items of row 0
    hidden2 = model.encode(seq2, lens)
    assert torch.allclose(hidden[0, :4], hidden2[0, :4], atol=1e-5)
    assert not torch.allclose(hidden[0, 4], hidden2[0, 4], atol=1e-4)


@pytest.mark.parametrize("attention", ["focused", "standard"])
def test_trimming_padding_changes_nothing(syn, attention):
    model = make_model(syn, attention=attention).eval()
    inter = random_batch(model, T=6)
    seq, lens = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
    padded = torch.cat([seq, torch.zeros(seq.size(0), 4, dtype=seq.dtype)], dim=1)  # T = 10
    wide = batch(model, padded, lens, inter[model.ITEM_ID])
    assert torch.allclose(model.full_sort_predict(inter), model.full_sort_predict(wide), atol=1e-5)
    model.train()
    torch.manual_seed(3)
    loss_narrow = model.calculate_loss(inter)
    torch.manual_seed(3)
    loss_wide = model.calculate_loss(wide)
    for a, b in zip(loss_narrow, loss_wide):
        assert torch.allclose(a, b, atol=1e-5)


def test_an_empty_history_is_a_clear_error(syn):
    model = make_model(syn).eval()
    inter = random_batch(model, B=3)
    inter[model.ITEM_SEQ_LEN][1] = 0
    with pytest.raises(ValueError, match="1 of 3 rows have an empty history"):
        model.full_sort_predict(inter)
    with pytest.raises(ValueError, match="item_seq_len >= 1"):
        model.train().calculate_loss(inter)


def test_attention_maps_for_visualisation(syn):
    model = make_model(syn, n_layers=2)
    inter = random_batch(model, B=3)
    lens = inter[model.ITEM_SEQ_LEN]
    maps = model.attention_maps(inter[model.ITEM_SEQ], lens)
    T = int(lens.max())
    assert len(maps) == 2
    for layer in maps:
        for key in ("A1", "A2", "A"):
            assert layer[key].shape == (3, model.settings.n_heads, T, T)
        heads = model.settings.n_heads
        assert torch.allclose(layer["A1"].sum(-1), torch.ones(3, heads, T), atol=1e-5)
    std = make_model(syn, attention="standard")
    assert set(std.attention_maps(inter[model.ITEM_SEQ], lens)[0]) == {"A"}


# ------------------------------------------------------------------------------- losses
def _manual_mtp(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean over digits (and examples) of -log softmax at the target code, written out."""
    total = 0.0
    for n in range(logits.size(0)):
        for digit in range(logits.size(1)):
            row = logits[n, digit]
            total = total - (row[codes[n, digit]] - torch.logsumexp(row, 0))
    return total / (logits.size(0) * logits.size(1))


def test_all_positions_loss_predicts_the_next_item_at_every_position(syn):
    model = make_model(syn, nrt_weight=0.0, mim_weight=0.0, train_mode="all_positions")
    with torch.no_grad():  # non-identity heads, so every position's logits differ
        model.heads.weight.normal_(0, 0.2)
    a, b, c, d, e, f, g = 11, 12, 13, 14, 50, 51, 52
    inter = batch(model, [[a, b, c, 0, 0, 0], [e, f, 0, 0, 0, 0]], [3, 2], [d, g])
    loss = model.calculate_loss(inter)[0]

    hidden = model.encode(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])  # [2, 3, d]
    h = torch.stack([hidden[0, 0], hidden[0, 1], hidden[0, 2], hidden[1, 0], hidden[1, 1]])
    logits = model.heads(h, model.code_table())
    targets = torch.tensor([b, c, d, f, g])  # item_seq[t + 1], last valid position -> target
    expected = _manual_mtp(logits, model.item_codes[targets])
    assert torch.allclose(loss, expected, atol=1e-5)
    # off by one (predicting the current item) is a different loss
    wrong = _manual_mtp(logits, model.item_codes[torch.tensor([a, b, c, e, f])])
    assert not torch.allclose(loss, wrong, atol=1e-3)

    model.settings = dataclasses.replace(model.settings, train_mode="prefix")
    prefix = model.calculate_loss(inter)[0]
    expected_prefix = _manual_mtp(logits[[2, 4]], model.item_codes[torch.tensor([d, g])])
    assert torch.allclose(prefix, expected_prefix, atol=1e-5)
    assert torch.allclose(prefix, mtp_loss(logits[[2, 4]], model.item_codes[[d, g]]), atol=1e-5)


def _count_encoder_calls(model: FAIR) -> list:
    calls = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_zero_weights_give_exactly_mtp_without_extra_passes(syn):
    inter = random_batch(make_model(syn), B=8)
    plain = make_model(syn, nrt_weight=0.0, mim_weight=0.0)
    calls = _count_encoder_calls(plain)
    loss = plain.calculate_loss(inter)
    mtp, nrt, mim, item = loss
    assert loss._fields == ("mtp", "nrt", "mim", "item")  # always the same four terms
    assert len(calls) == 1  # no second (perturbed) forward pass
    assert nrt.item() == 0.0 and mim.item() == 0.0 and item.item() == 0.0
    assert torch.equal(sum(loss), mtp)  # switched-off terms change the total not one bit

    full = make_model(syn, nrt_margin=1000.0)  # same seed -> same weights; hinge active
    calls = _count_encoder_calls(full)
    torch.manual_seed(0)
    mtp_full, nrt_full, mim_full, _ = full.calculate_loss(inter)
    assert len(calls) == 2
    assert torch.equal(mtp_full, mtp)  # MTP does not depend on the auxiliary losses
    assert nrt_full.item() > 0 and mim_full.item() > 0


@pytest.mark.parametrize("nrt_positions", ["last", "all"])
@pytest.mark.parametrize("nrt_distance", ["squared_l2", "cosine"])
def test_nrt_and_mim_are_finite_and_have_gradients(syn, nrt_positions, nrt_distance):
    model = make_model(syn, nrt_positions=nrt_positions, nrt_distance=nrt_distance, nrt_margin=10.0)
    inter = random_batch(model, B=8)
    torch.manual_seed(0)
    _, nrt, mim, _ = model.calculate_loss(inter)
    assert torch.isfinite(nrt) and torch.isfinite(mim) and nrt.item() > 0
    for part in (nrt, mim):
        model.zero_grad()
        part.backward(retain_graph=True)
        grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
        assert model.code_embedding.weight.grad.abs().sum() > 0


def test_a_batch_of_one_sequence_has_no_in_batch_terms(syn):
    # NRT's negative (batch rolled by one) and MIM's negatives would be the anchor itself
    model = make_model(syn, nrt_margin=1e4)
    calls = _count_encoder_calls(model)
    inter = random_batch(model, B=2)
    _, nrt, mim, _ = model.calculate_loss(inter)
    assert nrt.item() > 0 and mim.item() != 0 and len(calls) == 2
    calls.clear()
    mtp, nrt, mim, _ = model.calculate_loss(inter[torch.tensor([0])])
    assert nrt.item() == 0 and mim.item() == 0 and len(calls) == 1  # no NRT pass
    assert torch.isfinite(mtp) and mtp.item() > 0


def test_item_loss_is_the_softmax_over_items_of_the_ranking_score(syn):
    inter = random_batch(make_model(syn), B=8)
    off = {"nrt_weight": 0.0, "mim_weight": 0.0, "train_mode": "prefix"}
    plain, model = make_model(syn, **off), make_model(syn, **off, item_loss_weight=0.5)
    for m in (plain, model):
        torch.manual_seed(1)
        with torch.no_grad():
            m.heads.weight.normal_(0, 0.2)
    assert plain.calculate_loss(inter).item.item() == 0  # default: the paper's three terms
    mtp, _, _, item = model.calculate_loss(inter)
    assert torch.equal(mtp, plain.calculate_loss(inter)[0])  # the extra term leaves MTP alone
    # reference: item logits = mean over digits of the digit logits along the item's codes,
    # i.e. the full-ranking score (log-probabilities summed) up to a per-row constant
    seq, lens = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
    logits = model.heads(model.forward(seq, lens), model.code_table())  # [B, L, K]
    ref = torch.stack(
        [logits[:, torch.arange(L), model.item_codes[i]].mean(-1) for i in range(1, model.n_items)],
        dim=1,
    )  # [B, n_items - 1], item 0 left out
    expected = torch.nn.functional.cross_entropy(ref, inter[model.POS_ITEM_ID] - 1)
    assert torch.allclose(item, 0.5 * expected, atol=1e-5)
    # same ordering as full_sort_predict
    model.eval()
    with torch.no_grad():
        ranked = model.full_sort_predict(inter)[:, 1:]
    assert torch.equal(
        ranked.argsort(1, descending=True)[:, :5], ref.argsort(1, descending=True)[:, :5]
    )


def test_item_loss_trains_and_rejects_negative_weights(syn):
    with pytest.raises(ValueError, match="item_loss_weight"):
        make_model(syn, item_loss_weight=-1.0)
    model = make_model(syn, nrt_weight=0.0, mim_weight=0.0, item_loss_weight=1.0)
    inter = random_batch(model, B=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.calculate_loss(inter)[3].item()
    for _ in range(10):
        optimizer.zero_grad()
        sum(model.calculate_loss(inter)).backward()
        assert model.code_embedding.weight.grad.abs().sum() > 0
        optimizer.step()
    assert model.calculate_loss(inter)[3].item() < before


def test_item_id_embedding_is_off_by_default_and_checked(syn):
    plain = make_model(syn, item_loss_weight=1.0)
    assert plain.item_id is None  # the paper's model: checkpoints unchanged
    assert set(plain.state_dict()) == set(make_model(syn).state_dict())
    with pytest.raises(ValueError, match="item_id_embedding"):
        make_model(syn, item_id_embedding="yes")
    model = make_model(syn, item_id_embedding=True)
    assert model.item_id.embedding.weight.shape == (model.n_items, 32)
    assert torch.all(model.item_id.embedding.weight[0] == 0)


def test_item_id_digit_is_tied_trained_and_scored_as_documented(syn):
    off = {"nrt_weight": 0.0, "mim_weight": 0.0, "train_mode": "prefix"}
    model = make_model(syn, **off, item_id_embedding=True, item_loss_weight=0.5).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        model.heads.weight.normal_(0, 0.2)
        model.item_id.head.weight.normal_(0, 0.2)
        model.item_id.head.bias.normal_(0, 0.2)
    inter = random_batch(model, B=6)
    seq, lens = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
    # reference, by hand: z = h + SiLU(W h + b); item logit cos(z, e_i) / tau
    h = model(seq, lens)  # [B, d]
    head = model.item_id.head
    z = h + torch.nn.functional.silu(h @ head.weight[0].T + head.bias[0])
    cos = (
        torch.nn.functional.normalize(z, dim=-1)
        @ torch.nn.functional.normalize(model.item_id.embedding.weight, dim=-1).T
    )  # [B, n_items]
    item_logit = cos / model.settings.head_temperature
    logits = model.heads(h, model.code_table())  # [B, L, K]
    codes = model.item_codes
    digit_sum = torch.stack(
        [logits[:, torch.arange(L), codes[i]].sum(-1) for i in range(model.n_items)], dim=1
    )  # [B, n_items]
    log_z = torch.logsumexp(logits, -1).sum(-1, keepdim=True)  # [B, 1]
    log_p_item = item_logit[:, 1:].log_softmax(-1)  # the padding item is no candidate
    expected_scores = digit_sum[:, 1:] - log_z + log_p_item
    with torch.no_grad():
        scores = model.full_sort_predict(inter)
        single = model.predict(inter)
    assert torch.allclose(scores[:, 1:], expected_scores, atol=1e-3)
    assert torch.all(scores[:, 0] == float("-inf"))
    assert torch.allclose(single, scores[torch.arange(6), inter[model.ITEM_ID]], atol=1e-4)
    # MTP: mean over the L digits and the item-ID digit; the item loss: softmax over items of
    # (digit sum + item logit) / L, item 0 left out
    model.train()
    loss_mtp, _, _, item_loss = model.calculate_loss(inter)
    target = inter[model.POS_ITEM_ID]
    ce_digits = mtp_loss(logits, codes[target])
    ce_item = torch.nn.functional.cross_entropy(item_logit[:, 1:], target - 1)
    assert torch.allclose(loss_mtp, (L * ce_digits + ce_item) / (L + 1), atol=1e-4)
    ref = ((digit_sum + item_logit) / L)[:, 1:]
    expected = torch.nn.functional.cross_entropy(ref, target - 1)
    assert torch.allclose(item_loss, 0.5 * expected, atol=1e-4)
    # input side: e_i is added to the item's pooled codes, and attention stays causal
    model.eval()
    row, position = 0, 2
    item = int(seq[row, position])
    with torch.no_grad():
        before = model.encode(seq, lens)
        model.item_id.embedding.weight[item] += torch.randn(32)  # (a constant: LayerNorm)
        after = model.encode(seq, lens)
    earlier = (seq[row, :position] == item).any()
    assert earlier or torch.allclose(before[row, :position], after[row, :position], atol=1e-5)
    assert not torch.allclose(before[row, position], after[row, position], atol=1e-4)
    untouched = ~(seq == item).any(1)  # rows whose history does not contain the item
    assert torch.allclose(before[untouched], after[untouched], atol=1e-5)


def test_item_id_digit_under_graph_decoding_scores_the_visited_items_in_full(syn):
    graph = {"decoding": "graph", "graph_num_neighbors": 5, "graph_num_beams": 3}
    graph.update({"graph_beam_size": 3, "graph_steps": 2})
    exact = make_model(syn, item_id_embedding=True).eval()
    decoded = make_model(syn, item_id_embedding=True, **graph).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        exact.item_id.embedding.weight.normal_(0, 1.0)
        exact.item_id.head.weight.normal_(0, 0.2)
    decoded.load_state_dict(exact.state_dict())
    inter = random_batch(exact, B=4)
    with torch.no_grad():
        full, visited = exact.full_sort_predict(inter), decoded.full_sort_predict(inter)
    seen = torch.isfinite(visited)
    assert 0 < seen.sum() < seen.numel()  # decoding visits some items, not all
    assert torch.allclose(visited[seen], full[seen], atol=1e-4)  # codes + item-ID digit


def _fit_next_item(model: FAIR, steps: int = 150) -> float:
    """Full-batch Adam on "item i -> item i+1" from one-item histories; returns top-1 accuracy."""
    n = model.n_items - 1
    items = torch.arange(1, n + 1)
    inter = batch(model, items.unsqueeze(1), torch.ones(n, dtype=torch.long), items % n + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        sum(model.calculate_loss(inter)).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        top1 = model.full_sort_predict(inter).argmax(1)
    return (top1 == inter[model.POS_ITEM_ID]).float().mean().item()


def test_item_id_embedding_tells_apart_items_that_share_all_codes(syn):
    """Items 2k-1 and 2k get identical codes: scored by codes only, each pair ties (and looks the
    same as input), so at most about half the next items can be ranked first; the item-ID digit
    separates them (the paper's loss plus that digit, no item-level loss)."""
    off = {"nrt_weight": 0.0, "mim_weight": 0.0, "train_mode": "prefix"}
    accuracy = {}
    for flag in (False, True):
        model = make_model(syn, **off, item_id_embedding=flag)
        twins = model.item_codes.clone()
        twins[2::2] = twins[1:-1:2][: len(twins[2::2])]  # item 2k copies item 2k-1's codes
        with torch.no_grad():
            model.item_codes.copy_(twins)
        torch.manual_seed(0)
        accuracy[flag] = _fit_next_item(model)
    assert accuracy[False] <= 0.6, accuracy
    assert accuracy[True] >= 0.95, accuracy


@pytest.mark.parametrize("fam_norm", ["output_rmsnorm", "scores", "none"])
@pytest.mark.parametrize("head_logits", ["cosine", "dot"])
def test_every_variant_trains_one_step(syn, fam_norm, head_logits):
    model = make_model(
        syn,
        fam_norm=fam_norm,
        head_logits=head_logits,
        fam_lambda1="learnable",
        hidden_dropout_prob=0.1,
        attn_dropout_prob=0.1,
    )
    inter = random_batch(model, B=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = sum(model.calculate_loss(inter)).item()
    for _ in range(5):
        optimizer.zero_grad()
        loss = sum(model.calculate_loss(inter))
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    assert sum(model.calculate_loss(inter)).item() < before


# ------------------------------------------------------------------------------- ranking
def test_full_sort_predict_equals_brute_force(syn):
    model = make_model(syn).eval()
    with torch.no_grad():
        model.heads.weight.normal_(0, 0.2)
    inter = random_batch(model, B=4)
    scores = model.full_sort_predict(inter)
    assert scores.shape == (4, model.n_items)

    h = model(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])  # [B, d]
    logits = model.heads(h, model.code_table())  # [B, L, K]
    codes = syn.dataset.item_codes
    for b in range(4):
        for item in range(1, model.n_items):
            expected = sum(
                logits[b, j, codes[item, j]] - torch.logsumexp(logits[b, j], 0) for j in range(L)
            )
            assert torch.allclose(scores[b, item], expected, atol=1e-4)
    assert torch.all(scores[:, 0] == float("-inf"))


def test_sparse_exact_scores_equal_gather_and_follow_code_changes(syn):
    model = make_model(syn).eval()
    log_probs = torch.randn(5, L, K).log_softmax(-1)
    sparse = model.exact_scores(log_probs)
    gather = model.ranker.exact_scores_gather
    assert torch.allclose(sparse, gather(log_probs, model.item_codes), atol=1e-5)
    with torch.no_grad():  # new codes (e.g. a loaded checkpoint): the cached matrix is rebuilt
        model.item_codes.copy_(model.item_codes.roll(1, dims=0))
    assert torch.allclose(
        model.exact_scores(log_probs), gather(log_probs, model.item_codes), atol=1e-5
    )
    assert not torch.allclose(model.exact_scores(log_probs), sparse)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])  # users per table: 7 rows in 3s cross chunks
def test_bag_scores_equal_reference_at_chunk_boundaries(syn, monkeypatch, chunk):
    """Evaluation's scoring (no autograd, CPU: embedding_bag over user chunks) gives the
    reference's L gathers and the CSR product's floats, whatever the chunk boundaries."""
    model = make_model(syn).eval()
    monkeypatch.setattr(ranking, "SCORE_TABLE_BYTES", chunk * L * K * 4)
    log_probs = torch.randn(7, L, K, generator=torch.Generator().manual_seed(5)).log_softmax(-1)
    reference = model.ranker.exact_scores_gather(log_probs, model.item_codes)
    bags = model.ranker.exact_scores_by_bags(log_probs, model.item_codes)
    assert bags.shape == (7, model.n_items)
    assert torch.allclose(bags, reference, rtol=0, atol=1e-5)
    csr = model.ranker.exact_scores_csr(log_probs, model.item_codes)
    assert torch.allclose(bags, csr, rtol=0, atol=1e-5)  # (equal floats here: digits in order)
    with torch.no_grad():  # the dispatch: the bags without autograd ...
        assert torch.equal(model.exact_scores(log_probs), bags)
    differentiable = model.exact_scores(log_probs.requires_grad_())  # ... the CSR product with
    assert differentiable.grad_fn is not None
    assert torch.allclose(differentiable, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("grad", [False, True])
def test_full_sort_predict_pads_item_0_and_equals_reference_with_and_without_grad(syn, grad):
    model = make_model(syn).eval()
    with torch.no_grad():
        model.heads.weight.normal_(0, 0.2)
    inter = random_batch(model, B=9)
    seq, lens = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
    with torch.set_grad_enabled(grad):
        scores = model.full_sort_predict(inter)
    h = model.gather_indexes(model.encode(seq, lens), lens - 1)  # the full encoder
    reference = model.ranker.exact_scores_gather(model.code_log_probs(h), model.item_codes)
    assert torch.all(scores[:, 0] == float("-inf"))
    assert torch.allclose(scores[:, 1:], reference[:, 1:], rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------- eval encoder
def test_length_groups_cover_every_row_once_in_order_of_length():
    lengths = torch.randint(1, 21, (300,), generator=torch.Generator().manual_seed(0))
    groups = length_groups(lengths)
    assert len(groups) == min(MAX_GROUPS, 300 // MIN_GROUP_ROWS) > 1
    rows = torch.cat([g for g, _ in groups])
    assert torch.equal(rows.sort().values, torch.arange(300))
    for (group, longest), (after, _) in zip(groups, groups[1:] + [(None, None)]):
        assert longest == int(lengths[group].max())
        if after is not None:
            assert longest <= int(lengths[after].min())
    assert length_groups(lengths[: MIN_GROUP_ROWS * 2 - 1]) is None  # too few rows to split


@pytest.mark.parametrize(
    "attention,fam_norm",
    [
        ("focused", "output_rmsnorm"),
        ("focused", "scores"),
        ("focused", "none"),
        ("standard", "none"),
    ],
)
def test_eval_encoder_equals_full_encoder(syn, monkeypatch, attention, fam_norm):
    """Eval mode reads the last positions only, rows grouped by length (here groups of 4 rows
    of 13), and gives the full encoder's states; training mode runs the full encoder."""
    monkeypatch.setattr(eval_encoder, "MIN_GROUP_ROWS", 4)
    model = make_model(syn, attention=attention, fam_norm=fam_norm, n_layers=2).eval()
    inter = random_batch(model, B=13, seed=4)
    seq, lens = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]
    assert len(length_groups(lens)) == 3
    full = model.gather_indexes(model.encode(seq, lens), lens - 1)  # [B, d]
    with_grad = model(seq, lens)
    assert torch.allclose(with_grad, full, rtol=0, atol=1e-5)
    with torch.no_grad():  # the input embeddings from the table of every item's: same floats
        assert torch.equal(model(seq, lens), with_grad.detach())
    calls = []
    monkeypatch.setattr(model, "last_states", lambda *args: calls.append(args))
    assert torch.equal(model.train()(seq, lens), full) and not calls  # no dropout: the same


@pytest.mark.parametrize("item_id_embedding", [False, True])
def test_eval_input_table_follows_weight_and_code_changes(syn, item_id_embedding):
    model = make_model(syn, item_id_embedding=item_id_embedding).eval()
    inter = random_batch(model, B=6, seed=2)
    seq, lens = inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN]

    def check():
        with torch.no_grad():
            full = model.gather_indexes(model.encode(seq, lens), lens - 1)
            assert torch.allclose(model(seq, lens), full, rtol=0, atol=1e-5)
            return full

    before = check()
    with torch.no_grad():  # an optimizer step, load_state_dict: in-place updates
        model.code_embedding.weight.mul_(1.5)
    check()
    with torch.no_grad():
        model.item_codes.copy_(model.item_codes.roll(1, dims=0))
    after = check()
    if item_id_embedding:
        with torch.no_grad():
            model.item_id.embedding.weight.add_(0.5)
        after = check()
    assert not torch.allclose(before, after, atol=1e-3)


@pytest.mark.parametrize("item_id_embedding", [False, True])
def test_large_batches_are_ranked_in_chunks_with_the_same_scores(
    syn, monkeypatch, item_id_embedding
):
    model = make_model(syn, item_id_embedding=item_id_embedding).eval()
    inter = random_batch(model, B=7, seed=3)
    with torch.no_grad():
        whole = model.full_sort_predict(inter)
        monkeypatch.setattr(fair_module, "RANK_CHUNK_USERS", 3)  # chunks of 3, 3, 1 users
        chunked = model.full_sort_predict(inter)
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-4)
    assert torch.all(chunked[:, 0] == float("-inf"))


def test_padding_item_never_ranks_first(syn, monkeypatch):
    model = make_model(syn).eval()
    codes = model.item_codes.clone()
    codes[1] = 0  # item 1 shares the padding row's codes (all zeros)
    model.item_codes.copy_(codes)
    # a distribution that puts almost all mass on code 0 of every digit: item 1 is the best item
    log_probs = torch.full((3, L, K), -20.0)
    log_probs[:, :, 0] = 0.0
    monkeypatch.setattr(model, "code_log_probs", lambda h: log_probs)
    inter = random_batch(model, B=3)
    scores = model.full_sort_predict(inter)
    assert torch.all(scores.argmax(1) == 1)
    assert torch.all(scores[:, 0] == float("-inf"))
    assert 0 not in scores.topk(10, dim=1).indices


def test_predict_agrees_with_full_sort_predict(syn):
    model = make_model(syn).eval()
    inter = random_batch(model, B=6)
    full = model.full_sort_predict(inter)
    items = inter[model.ITEM_ID]
    assert torch.allclose(model.predict(inter), full[torch.arange(6), items], atol=1e-5)
    padding = batch(model, inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN], torch.zeros(6).long())
    assert torch.all(model.predict(padding) == float("-inf"))


# ------------------------------------------------------------------------------- learning
def test_learns_a_deterministic_next_item_rule(syn, tmp_path, monkeypatch):
    """Item i is always followed by item i+1: a few epochs reach near-perfect test Recall@10."""
    monkeypatch.chdir(tmp_path)  # RecBole's trainer writes log_tensorboard/ into the cwd
    config = copy.deepcopy(syn.config)
    for key, value in {
        "epochs": 10,
        "eval_step": 10,
        "learning_rate": 0.005,
        "train_batch_size": 128,
        "checkpoint_dir": str(tmp_path / "saved"),
    }.items():
        config[key] = value
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, syn.dataset)
    model = FAIR(config, train_data.dataset)
    trainer = Trainer(config, model)
    untrained = trainer.evaluate(test_data, load_best_model=False)
    assert untrained["recall@10"] < 0.3  # 10 of 100 items by chance

    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    result = trainer.evaluate(test_data, load_best_model=False)
    assert result["recall@10"] > 0.9, result
    assert result["mrr@10"] > 0.5, result
