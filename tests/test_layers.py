"""Building blocks of FAIR: focused attention, the Transformer stack, per-digit heads, losses."""

import math

import pytest
import torch
import torch.nn.functional as F

from recbole_fair.model.layers import (
    CausalSelfAttention,
    DigitHeads,
    FocusedAttention,
    TransformerStack,
    lambda_init_schedule,
)
from recbole_fair.model.losses import (
    mim_info_nce,
    mtp_loss,
    nrt_triplet_loss,
    perturb_code_tokens,
)

B, T, D, H = 3, 6, 16, 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _x(requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(B, T, D, requires_grad=requires_grad)


def _reference_attention(q, k, v):
    """Hand-written causal softmax attention, one query at a time (no masking tricks)."""
    out = torch.zeros_like(q)
    for t in range(q.size(-2)):
        scores = (q[..., t : t + 1, :] @ k[..., : t + 1, :].transpose(-2, -1)) / math.sqrt(
            q.size(-1)
        )  # [B, H, 1, t+1]
        out[..., t : t + 1, :] = scores.softmax(-1) @ v[..., : t + 1, :]
    return out


def _merge_heads(o):
    return o.transpose(1, 2).reshape(o.size(0), o.size(2), -1)


# ------------------------------------------------------------------------------- lambda
def test_lambda_init_schedule_follows_differential_transformer():
    assert lambda_init_schedule(0) == pytest.approx(0.2)
    assert lambda_init_schedule(1) == pytest.approx(0.8 - 0.6 * math.exp(-0.3))
    assert FocusedAttention(D, H, layer_index=1).lambda_init == pytest.approx(
        lambda_init_schedule(1)
    )
    assert FocusedAttention(D, H, layer_index=1, lambda_init=0.5).lambda_init == 0.5


def test_lambda2_formula():
    attn = FocusedAttention(D, H, layer_index=2)
    lam1, lam2 = attn.lambdas()
    expected = (
        torch.exp((attn.lambda_q1 * attn.lambda_k1).sum())
        - torch.exp((attn.lambda_q2 * attn.lambda_k2).sum())
        + lambda_init_schedule(2)
    )
    assert lam1.item() == 1.0
    assert torch.allclose(lam2, expected)


# ------------------------------------------------------------------------------- focused attention
@pytest.mark.parametrize("norm", ["output_rmsnorm", "scores", "none"])
def test_focused_attention_shapes(norm):
    attn = FocusedAttention(D, H, norm=norm)
    out, maps = attn(_x())
    assert out.shape == (B, T, D) and maps is None
    out, maps = attn(_x(), return_maps=True)
    assert out.shape == (B, T, D)
    for key in ("A1", "A2", "A"):
        assert maps[key].shape == (B, H, T, T)
    # softmax maps are causal distributions
    assert torch.allclose(maps["A1"].sum(-1), torch.ones(B, H, T))
    assert torch.all(maps["A1"].triu(1) == 0) and torch.all(maps["A"].triu(1) == 0)


@pytest.mark.parametrize("norm", ["output_rmsnorm", "scores", "none"])
@pytest.mark.parametrize("return_maps", [False, True])
def test_focused_attention_is_causal(norm, return_maps):
    attn = FocusedAttention(D, H, norm=norm).eval()
    x = _x()
    t0 = 3
    x2 = x.clone()
    x2[:, t0:] += torch.randn(B, T - t0, D)
    out1, _ = attn(x, return_maps=return_maps)
    out2, _ = attn(x2, return_maps=return_maps)
    assert torch.allclose(out1[:, :t0], out2[:, :t0], atol=1e-6)
    assert not torch.allclose(out1[:, t0], out2[:, t0], atol=1e-4)


def _zero_lambda2(attn: FocusedAttention) -> None:
    with torch.no_grad():
        for p in (attn.lambda_q1, attn.lambda_k1, attn.lambda_q2, attn.lambda_k2):
            p.zero_()


@pytest.mark.parametrize("return_maps", [False, True])
def test_focused_equals_standard_attention_when_lambda2_is_zero(return_maps):
    attn = FocusedAttention(D, H, norm="none", lambda_init=0.0).eval()
    _zero_lambda2(attn)
    assert attn.lambdas()[1].item() == 0.0
    x = _x()
    out, _ = attn(x, return_maps=return_maps)

    q1, k1, _, _, v = attn.project(x)
    reference = attn.out_proj(_merge_heads(_reference_attention(q1, k1, v)))
    assert torch.allclose(out, reference, atol=1e-5)

    # and the library's standard attention with the same Q1/K1/V/out weights
    std = CausalSelfAttention(D, H).eval()
    with torch.no_grad():
        std.q_proj.weight.copy_(attn.q_proj.weight[:D])
        std.q_proj.bias.copy_(attn.q_proj.bias[:D])
        std.k_proj.weight.copy_(attn.k_proj.weight[:D])
        std.k_proj.bias.copy_(attn.k_proj.bias[:D])
        std.v_proj.load_state_dict(attn.v_proj.state_dict())
        std.out_proj.load_state_dict(attn.out_proj.state_dict())
    assert torch.allclose(std(x)[0], reference, atol=1e-5)
    assert torch.allclose(std(x, return_maps=True)[0], reference, atol=1e-5)


def test_focused_differs_from_standard_when_lambda2_is_not_zero():
    attn = FocusedAttention(D, H, norm="none", lambda_init=0.5).eval()
    x = _x()
    q1, k1, _, _, v = attn.project(x)
    reference = attn.out_proj(_merge_heads(_reference_attention(q1, k1, v)))
    assert not torch.allclose(attn(x)[0], reference, atol=1e-3)


def test_scores_norm_keeps_a_softmax_row_when_lambda2_is_zero():
    """The L1 row normalisation leaves A1 unchanged (its rows already have unit mass)."""
    attn = FocusedAttention(D, H, norm="scores", lambda_init=0.0).eval()
    _zero_lambda2(attn)
    x = _x()
    q1, k1, _, _, v = attn.project(x)
    reference = attn.out_proj(_merge_heads(_reference_attention(q1, k1, v)))
    assert torch.allclose(attn(x)[0], reference, atol=1e-5)
    # in general each row of A has unit absolute mass
    attn = FocusedAttention(D, H, norm="scores", lambda_init=0.6).eval()
    _, maps = attn(x, return_maps=True)
    assert torch.allclose(maps["A"].abs().sum(-1), torch.ones(B, H, T), atol=1e-5)


@pytest.mark.parametrize("norm", ["output_rmsnorm", "none"])
@pytest.mark.parametrize("lambda1", ["fixed_one", "learnable"])
def test_sdpa_path_equals_explicit_maps_path(norm, lambda1):
    attn = FocusedAttention(D, H, layer_index=1, norm=norm, lambda1=lambda1).eval()
    if lambda1 == "learnable":
        with torch.no_grad():
            attn.lambda1.fill_(1.3)
    x = _x()
    fast, _ = attn(x)
    explicit, maps = attn(x, return_maps=True)
    assert torch.allclose(fast, explicit, atol=1e-5)
    lam1, lam2 = attn.lambdas()
    assert torch.allclose(maps["A"], lam1 * maps["A1"] - lam2 * maps["A2"])
    # maps really are the softmaxes of the two Q/K sets
    q1, k1, q2, k2, _ = attn.project(x)
    ones = torch.ones(B, H, T, 1)
    assert torch.allclose(maps["A1"] @ ones, ones, atol=1e-6)
    assert torch.allclose(
        maps["A2"][..., 2, :3],
        ((q2[..., 2:3, :] @ k2[..., :3, :].transpose(-2, -1)) / math.sqrt(D // H)).softmax(-1)[
            ..., 0, :
        ],
        atol=1e-6,
    )


@pytest.mark.parametrize("return_maps", [False, True])
def test_gradients_reach_both_qk_sets_and_lambdas(return_maps):
    attn = FocusedAttention(D, H, lambda1="learnable")
    out, _ = attn(_x(), return_maps=return_maps)
    (out * torch.randn_like(out)).sum().backward()
    for w in (attn.q_proj.weight, attn.k_proj.weight):
        assert w.grad[:D].abs().sum() > 0, "Q1/K1 get no gradient"
        assert w.grad[D:].abs().sum() > 0, "Q2/K2 get no gradient"
    for p in (attn.lambda_q1, attn.lambda_k1, attn.lambda_q2, attn.lambda_k2, attn.lambda1):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_invalid_attention_options_raise():
    with pytest.raises(ValueError, match="fam_norm"):
        FocusedAttention(D, H, norm="layernorm")
    with pytest.raises(ValueError, match="fam_lambda1"):
        FocusedAttention(D, H, lambda1="two")
    with pytest.raises(ValueError, match="n_heads"):
        FocusedAttention(D, 5)
    with pytest.raises(ValueError, match="attention"):
        TransformerStack(1, D, H, 32, attention="linear")


# ------------------------------------------------------------------------------- stack
@pytest.mark.parametrize("attention", ["focused", "standard"])
def test_transformer_stack_is_causal_and_returns_maps(attention):
    stack = TransformerStack(2, D, H, 32, attention=attention).eval()
    x = _x()
    x2 = x.clone()
    x2[:, 4:] = torch.randn(B, T - 4, D)
    out1, maps = stack(x, return_maps=True)
    out2, _ = stack(x2)
    assert out1.shape == (B, T, D)
    assert torch.allclose(out1[:, :4], out2[:, :4], atol=1e-5)
    assert not torch.allclose(out1[:, 4], out2[:, 4], atol=1e-4)
    assert len(maps) == 2 and maps[0]["A"].shape == (B, H, T, T)
    assert ("A1" in maps[0]) == (attention == "focused")
    lambdas = [blk.attn.lambda_init for blk in stack.blocks] if attention == "focused" else []
    assert lambdas == sorted(lambdas)  # the schedule rises with depth


@pytest.mark.parametrize("fam_norm", ["output_rmsnorm", "scores"])
def test_layer_norm_eps_reaches_the_focused_attention(fam_norm):
    stack = TransformerStack(2, D, H, 32, layer_norm_eps=1e-3, fam_norm=fam_norm)
    for blk in stack.blocks:
        assert blk.attn.norm_eps == 1e-3 and blk.ln1.eps == 1e-3
        if fam_norm == "output_rmsnorm":
            assert blk.attn.head_norm.eps == 1e-3


def test_zero_dropout_adds_no_dropout_modules():
    stack = TransformerStack(2, D, H, 32, hidden_dropout_prob=0.0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in stack.modules())
    stack = TransformerStack(2, D, H, 32, hidden_dropout_prob=0.1)
    assert any(isinstance(m, torch.nn.Dropout) for m in stack.modules())


# ------------------------------------------------------------------------------- heads
def test_digit_heads_start_as_identity_and_match_a_per_digit_loop():
    L, K = 5, 7
    heads = DigitHeads(L, D, logits="cosine", temperature=0.03)
    h = torch.randn(4, D)
    table = torch.randn(L, K, D)
    assert torch.equal(heads.transform(h), h.unsqueeze(1).expand(4, L, D))
    with torch.no_grad():
        heads.weight.normal_()
        heads.bias.normal_()
    logits = heads(h, table)
    assert logits.shape == (4, L, K)
    for digit in range(L):
        z = h + F.silu(h @ heads.weight[digit].T + heads.bias[digit])
        expected = F.cosine_similarity(z.unsqueeze(1), table[digit].unsqueeze(0), dim=-1) / 0.03
        assert torch.allclose(logits[:, digit], expected, atol=1e-4)
    dot = DigitHeads(L, D, logits="dot")
    assert torch.allclose(dot(h, table), torch.einsum("nd,lkd->nlk", h, table), atol=1e-5)
    with pytest.raises(ValueError, match="head_logits"):
        DigitHeads(L, D, logits="bilinear")


# ------------------------------------------------------------------------------- losses
def test_mtp_loss_equals_hand_computed_cross_entropy():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]])  # [N=1, L=2, K=3]
    target = torch.tensor([[0, 2]])
    ce0 = -(2.0 - math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-1.0)))
    ce1 = -(0.0 - math.log(2 * math.exp(0.5) + math.exp(0.0)))
    assert mtp_loss(logits, target).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)


def test_perturb_code_tokens_masks_substitutes_and_keeps_padding():
    L, K = 8, 16
    codes = torch.randint(K, (64, 10, L))
    tokens = 1 + torch.arange(L) * K + codes
    tokens[:, 7:] = 0  # padding
    mask_token = L * K + 1
    g = torch.Generator().manual_seed(0)
    noisy = perturb_code_tokens(tokens, K, mask_token, 0.1, 0.1, generator=g)
    valid = tokens != 0
    assert torch.equal(noisy[~valid], tokens[~valid])
    masked = noisy == mask_token
    assert 0.07 < masked[valid].float().mean() < 0.13
    changed = (noisy != tokens) & ~masked
    assert 0.05 < changed[valid].float().mean() < 0.11  # 0.1 * 15/16 of codes really change
    # substitutes stay in their digit's range
    digit = torch.arange(L).expand_as(tokens)
    sub = noisy[valid & ~masked]
    assert torch.all((sub - 1) // K == digit[valid & ~masked])
    assert torch.equal(perturb_code_tokens(tokens, K, mask_token, 0.0, 0.0), tokens)
    with pytest.raises(ValueError, match="nrt_mask_prob"):
        perturb_code_tokens(tokens, K, mask_token, 0.7, 0.5)


def test_nrt_triplet_loss_value_and_gradient():
    a = torch.tensor([[0.0, 0.0]], requires_grad=True)
    p = torch.tensor([[1.0, 0.0]])
    n = torch.tensor([[0.0, 2.0]])
    # max(0, 1 - 4 + 0.5) = 0 ; with margin 4: 1 - 4 + 4 = 1
    assert nrt_triplet_loss(a, p, n, 0.5).item() == 0.0
    loss = nrt_triplet_loss(a, p, n, 4.0)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    cos = nrt_triplet_loss(a.detach() + 1, p, n, 1.0, distance="cosine")
    assert torch.isfinite(cos)
    with pytest.raises(ValueError, match="nrt_distance"):
        nrt_triplet_loss(a, p, n, 1.0, distance="l1")


def test_mim_info_nce_value_gradient_and_duplicate_masking():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    loss = mim_info_nce(s, t, tau)
    c = 1 / math.sqrt(2)
    row0 = -(1 / tau - math.log(math.exp(1 / tau) + math.exp(c / tau)))
    row1 = -(c / tau - math.log(math.exp(0.0) + math.exp(c / tau)))
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    # same target item in both rows: the other column is no negative -> loss 0
    same = mim_info_nce(s.detach(), t, tau, target_ids=torch.tensor([5, 5]))
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="mim_temperature"):
        mim_info_nce(s, t, 0.0)
