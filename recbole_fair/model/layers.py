r"""recbole_fair.model.layers
##########################

The Transformer pieces shared by the semantic-ID recommenders, in reading order:

1. :class:`FocusedAttention` -- FAIR's focused attention (two softmax maps per head, subtracted).
2. :class:`CausalSelfAttention` -- ordinary causal multi-head attention (ablation / baselines).
3. :class:`FeedForward` -- the position-wise MLP (GELU).
4. :class:`Block` -- a pre-norm Transformer block: ``x + attn(ln(x))``, ``x + mlp(ln(x))``.
5. :class:`TransformerStack` -- ``n_layers`` blocks and a final LayerNorm.
6. :class:`DigitHeads` -- ``L`` residual per-digit heads scoring each digit's codebook, batched.

Every attention module returns ``(output, maps)``; ``maps`` is ``None`` unless asked for with
``return_maps=True``, in which case the attention maps are materialised (``[B, H, T, T]`` each)
for inspection or visualisation. Otherwise the fast path uses
:func:`torch.nn.functional.scaled_dot_product_attention` and never builds a ``[T, T]`` map.

Sequences are left-aligned (padding after the last item, as RecBole builds them), so a causal mask
is the only mask needed: a valid position never attends to a later (padding) position.

Reference:
    Longtao Xiao et al. "FAIR: Focused Attention Is All You Need for Generative Recommendation."
    arXiv 2512.11254, 2025.

    Tianzhu Ye et al. "Differential Transformer." in ICLR 2025.

    Yupeng Hou et al. "Generating Long Semantic IDs in Parallel for Recommendation." in KDD 2025.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

Maps = Optional[dict[str, torch.Tensor]]

FAM_NORMS = ("output_rmsnorm", "scores", "none")
FAM_LAMBDA1 = ("fixed_one", "learnable")
ATTENTIONS = ("focused", "standard")
HEAD_LOGITS = ("cosine", "dot")


def full_precision(tensor: torch.Tensor) -> torch.autocast:
    r"""A region where autocast (``autocast_dtype``, recbole_fair.trainer) is off on
    ``tensor``'s device: what runs in it runs in the inputs' own dtype, so with float32 inputs
    in float32. Used for the digit logits and the ranking scores, whose bfloat16 rounding
    (8 bits of mantissa: +-0.1 on a cosine logit of 30 at tau 0.03) would blur the ranking."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def _dropout(p: float) -> nn.Module:
    r"""``nn.Dropout(p)``, or an identity (no op at all) when ``p == 0``."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def lambda_init_schedule(layer_index: int) -> float:
    r"""Differential Transformer's initial ``λ`` of a layer: ``0.8 - 0.6 * exp(-0.3 * layer_index)``.

    Args:
        layer_index (int): 0-based index of the layer (the paper's ``l - 1`` for ``l in [1, L]``).

    Returns:
        float: ``λ_init`` of that layer (0.2 for the first layer, rising towards 0.8).
    """
    return 0.8 - 0.6 * math.exp(-0.3 * layer_index)


def _causal_softmax(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""Causal softmax attention map ``softmax(q kᵀ / sqrt(d_h) + causal mask)``.

    Args:
        q (torch.Tensor): queries, shape ``[B, H, T, d_h]``.
        k (torch.Tensor): keys, shape ``[B, H, T, d_h]``.

    Returns:
        torch.Tensor: the map, shape ``[B, H, T, T]``; entries above the diagonal are exactly 0.
    """
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # [B, H, T, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    return scores.softmax(dim=-1)


# ---------------------------------------------------------------------------------------------
# 1. Focused attention
# ---------------------------------------------------------------------------------------------
class FocusedAttention(nn.Module):
    r"""FAIR's focused attention mechanism (FAM), a causal differential attention.

    Each head has two query/key projections and one value projection::

        A1 = softmax(Q1 K1ᵀ / sqrt(d_h) + causal),  A2 = softmax(Q2 K2ᵀ / sqrt(d_h) + causal)
        head = Norm(λ1 · A1 − λ2 · A2) · V

    with ``λ2 = exp(λq1·λk1) − exp(λq2·λk2) + λ_init`` (learned vectors ``λq*``, ``λk*`` of size
    ``d_h``, shared by the heads of the layer) and ``λ1 = 1`` (or a learned scalar).

    ``norm`` picks where the normalisation goes:

    * ``output_rmsnorm`` (Differential Transformer): ``head = RMSNorm(λ1·A1·V − λ2·A2·V) · (1 − λ_init)``,
      a per-head RMSNorm (learned gain of size ``d_h``, shared by the heads) of the head output.
    * ``scores`` (the FAIR paper's ``Norm`` of the score difference): each row of
      ``λ1·A1 − λ2·A2`` is divided by its L1 norm (sum of absolute values over the visible keys),
      so the row keeps its signs and has unit absolute mass like a softmax row; then ``· V``.
      No output scaling. Needs the maps, so it always takes the explicit path.
    * ``none``: ``head = (λ1·A1 − λ2·A2) · V``.

    Attention dropout is applied to each softmax map (``A1`` and ``A2``) separately.

    Args:
        hidden_size (int): model width ``d``.
        n_heads (int): number of heads; ``d_h = d / n_heads``.
        layer_index (int): 0-based layer index, for the ``λ_init`` schedule.
        attn_dropout_prob (float): dropout on the attention maps.
        lambda_init (float, optional): fixed ``λ_init``; ``None`` uses :func:`lambda_init_schedule`.
        lambda1 (str): ``fixed_one`` (``λ1 = 1``) or ``learnable`` (a scalar initialised to 1).
        norm (str): ``output_rmsnorm``, ``scores`` or ``none``.
        lambda_std (float): standard deviation of the normal initialisation of ``λq*``, ``λk*``.
        norm_eps (float): epsilon of the RMSNorm / the row normalisation.
    """

    def __init__(
        self,
        hidden_size: int,
        n_heads: int,
        layer_index: int = 0,
        attn_dropout_prob: float = 0.0,
        lambda_init: float | None = None,
        lambda1: str = "fixed_one",
        norm: str = "output_rmsnorm",
        lambda_std: float = 0.1,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if hidden_size % n_heads != 0:
            raise ValueError(
                f"hidden_size [{hidden_size}] must be a multiple of n_heads [{n_heads}]."
            )
        if norm not in FAM_NORMS:
            raise ValueError(f"fam_norm must be one of {FAM_NORMS}, got [{norm}].")
        if lambda1 not in FAM_LAMBDA1:
            raise ValueError(f"fam_lambda1 must be one of {FAM_LAMBDA1}, got [{lambda1}].")
        self.n_heads = n_heads
        self.head_dim = hidden_size // n_heads
        self.attn_dropout_prob = attn_dropout_prob
        self.norm = norm
        self.norm_eps = norm_eps
        self.lambda_init = (
            lambda_init_schedule(layer_index) if lambda_init is None else float(lambda_init)
        )

        self.q_proj = nn.Linear(hidden_size, 2 * hidden_size)  # Q1 | Q2
        self.k_proj = nn.Linear(hidden_size, 2 * hidden_size)  # K1 | K2
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

        self.lambda_q1 = nn.Parameter(torch.randn(self.head_dim) * lambda_std)
        self.lambda_k1 = nn.Parameter(torch.randn(self.head_dim) * lambda_std)
        self.lambda_q2 = nn.Parameter(torch.randn(self.head_dim) * lambda_std)
        self.lambda_k2 = nn.Parameter(torch.randn(self.head_dim) * lambda_std)
        self.lambda1 = nn.Parameter(torch.ones(())) if lambda1 == "learnable" else None
        self.head_norm = (
            nn.RMSNorm(self.head_dim, eps=norm_eps) if norm == "output_rmsnorm" else None
        )

    def lambdas(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The current ``(λ1, λ2)`` of the layer, as 0-dim tensors."""
        lambda2 = (
            torch.exp(torch.dot(self.lambda_q1, self.lambda_k1))
            - torch.exp(torch.dot(self.lambda_q2, self.lambda_k2))
            + self.lambda_init
        )
        lambda1 = self.lambda1 if self.lambda1 is not None else lambda2.new_ones(())
        return lambda1, lambda2

    def project(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Per-head projections of ``x``.

        Args:
            x (torch.Tensor): input, shape ``[B, T, d]``.

        Returns:
            tuple: ``(q1, k1, q2, k2, v)``, each of shape ``[B, H, T, d_h]``.
        """
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k = self.k_proj(x).view(B, T, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        v = self.v_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        return q[0], k[0], q[1], k[1], v  # [B, H, T, d_h] each

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> tuple[torch.Tensor, Maps]:
        r"""Apply focused attention.

        Args:
            x (torch.Tensor): input, shape ``[B, T, d]``.
            return_maps (bool): also return ``{"A1", "A2", "A"}`` (each ``[B, H, T, T]``; ``A``
                is ``λ1·A1 − λ2·A2``, row-normalised when ``norm == "scores"``) and the scalars
                ``lambda1``, ``lambda2``.

        Returns:
            tuple: output ``[B, T, d]`` and the maps (``None`` unless requested).
        """
        B, T, d = x.shape
        q1, k1, q2, k2, v = self.project(x)
        lambda1, lambda2 = self.lambdas()
        p = self.attn_dropout_prob if self.training else 0.0

        maps = None
        if return_maps or self.norm == "scores":
            a1 = _causal_softmax(q1, k1)  # [B, H, T, T]
            a2 = _causal_softmax(q2, k2)  # [B, H, T, T]
            if p > 0:
                a1, a2 = F.dropout(a1, p), F.dropout(a2, p)
            a = lambda1 * a1 - lambda2 * a2  # [B, H, T, T]
            if self.norm == "scores":
                a = a / a.abs().sum(dim=-1, keepdim=True).clamp_min(self.norm_eps)
            out = a @ v  # [B, H, T, d_h]
            if return_maps:
                maps = {"A1": a1, "A2": a2, "A": a, "lambda1": lambda1, "lambda2": lambda2}
        else:
            o1 = F.scaled_dot_product_attention(q1, k1, v, dropout_p=p, is_causal=True)
            o2 = F.scaled_dot_product_attention(q2, k2, v, dropout_p=p, is_causal=True)
            out = lambda1 * o1 - lambda2 * o2  # [B, H, T, d_h]

        if self.head_norm is not None:
            # in the norm's dtype: under bfloat16 autocast, float32 (fused kernel, exact norm)
            out = self.head_norm(out.to(self.head_norm.weight.dtype)) * (1.0 - self.lambda_init)
        out = out.transpose(1, 2).reshape(B, T, d)  # [B, T, d]
        return self.out_proj(out), maps


# ---------------------------------------------------------------------------------------------
# 2. Standard causal attention
# ---------------------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    r"""Ordinary causal multi-head self-attention, ``softmax(Q Kᵀ / sqrt(d_h) + causal) · V``.

    Args:
        hidden_size (int): model width ``d``.
        n_heads (int): number of heads.
        attn_dropout_prob (float): dropout on the attention map.
    """

    def __init__(self, hidden_size: int, n_heads: int, attn_dropout_prob: float = 0.0) -> None:
        super().__init__()
        if hidden_size % n_heads != 0:
            raise ValueError(
                f"hidden_size [{hidden_size}] must be a multiple of n_heads [{n_heads}]."
            )
        self.n_heads = n_heads
        self.head_dim = hidden_size // n_heads
        self.attn_dropout_prob = attn_dropout_prob
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> tuple[torch.Tensor, Maps]:
        r"""Apply causal attention.

        Args:
            x (torch.Tensor): input, shape ``[B, T, d]``.
            return_maps (bool): also return ``{"A": [B, H, T, T]}``.

        Returns:
            tuple: output ``[B, T, d]`` and the maps (``None`` unless requested).
        """
        B, T, d = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        p = self.attn_dropout_prob if self.training else 0.0

        maps = None
        if return_maps:
            a = _causal_softmax(q, k)  # [B, H, T, T]
            out = (F.dropout(a, p) if p > 0 else a) @ v  # [B, H, T, d_h]
            maps = {"A": a}
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        out = out.transpose(1, 2).reshape(B, T, d)  # [B, T, d]
        return self.out_proj(out), maps


# ---------------------------------------------------------------------------------------------
# 3. Feed-forward, 4. block, 5. stack
# ---------------------------------------------------------------------------------------------
class FeedForward(nn.Module):
    r"""Position-wise MLP ``W2 · GELU(W1 · x)``.

    Args:
        hidden_size (int): model width ``d``.
        inner_size (int): width of the hidden layer.
    """

    def __init__(self, hidden_size: int, inner_size: int) -> None:
        super().__init__()
        self.fc_in = nn.Linear(hidden_size, inner_size)
        self.fc_out = nn.Linear(inner_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(F.gelu(self.fc_in(x)))  # [B, T, d]


class Block(nn.Module):
    r"""Pre-norm Transformer block: ``x += drop(attn(ln1(x)))``; ``x += drop(mlp(ln2(x)))``.

    Args:
        attention (nn.Module): a :class:`FocusedAttention` or :class:`CausalSelfAttention`.
        hidden_size (int): model width ``d``.
        inner_size (int): FFN width.
        hidden_dropout_prob (float): dropout on each residual branch.
        layer_norm_eps (float): LayerNorm epsilon.
    """

    def __init__(
        self,
        attention: nn.Module,
        hidden_size: int,
        inner_size: int,
        hidden_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attn = attention
        self.drop1 = _dropout(hidden_dropout_prob)
        self.ln2 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = FeedForward(hidden_size, inner_size)
        self.drop2 = _dropout(hidden_dropout_prob)

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> tuple[torch.Tensor, Maps]:
        a, maps = self.attn(self.ln1(x), return_maps=return_maps)
        x = x + self.drop1(a)
        x = x + self.drop2(self.mlp(self.ln2(x)))
        return x, maps  # [B, T, d]


class TransformerStack(nn.Module):
    r"""``n_layers`` pre-norm blocks with focused or standard causal attention, then a LayerNorm.

    Args:
        n_layers (int): number of blocks.
        hidden_size (int): model width ``d``.
        n_heads (int): attention heads.
        inner_size (int): FFN width.
        hidden_dropout_prob (float): residual dropout.
        attn_dropout_prob (float): attention-map dropout.
        layer_norm_eps (float): LayerNorm epsilon, also the focused attention's RMSNorm / row
            normalisation epsilon.
        attention (str): ``focused`` or ``standard``.
        fam_lambda_init (float, optional): fixed ``λ_init``; ``None`` = the per-layer schedule.
        fam_lambda1 (str): ``fixed_one`` or ``learnable``.
        fam_norm (str): ``output_rmsnorm``, ``scores`` or ``none``.
        fam_lambda_std (float): init standard deviation of the ``λ`` vectors.
    """

    def __init__(
        self,
        n_layers: int,
        hidden_size: int,
        n_heads: int,
        inner_size: int,
        hidden_dropout_prob: float = 0.0,
        attn_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-5,
        attention: str = "focused",
        fam_lambda_init: float | None = None,
        fam_lambda1: str = "fixed_one",
        fam_norm: str = "output_rmsnorm",
        fam_lambda_std: float = 0.1,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got [{attention}].")

        def make_attention(layer_index: int) -> nn.Module:
            if attention == "standard":
                return CausalSelfAttention(hidden_size, n_heads, attn_dropout_prob)
            return FocusedAttention(
                hidden_size,
                n_heads,
                layer_index=layer_index,
                attn_dropout_prob=attn_dropout_prob,
                lambda_init=fam_lambda_init,
                lambda1=fam_lambda1,
                norm=fam_norm,
                lambda_std=fam_lambda_std,
                norm_eps=layer_norm_eps,
            )

        self.blocks = nn.ModuleList(
            Block(make_attention(i), hidden_size, inner_size, hidden_dropout_prob, layer_norm_eps)
            for i in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(
        self, x: torch.Tensor, return_maps: bool = False
    ) -> tuple[torch.Tensor, list[Maps] | None]:
        r"""Run the blocks.

        Args:
            x (torch.Tensor): input embeddings, shape ``[B, T, d]``.
            return_maps (bool): also return each layer's attention maps.

        Returns:
            tuple: final hidden states ``[B, T, d]`` (after the final LayerNorm) and the list of
            per-layer maps (``None`` unless requested).
        """
        all_maps = [] if return_maps else None
        for block in self.blocks:
            x, maps = block(x, return_maps=return_maps)
            if return_maps:
                all_maps.append(maps)
        return self.ln_f(x), all_maps


# ---------------------------------------------------------------------------------------------
# 6. Per-digit prediction heads
# ---------------------------------------------------------------------------------------------
class DigitHeads(nn.Module):
    r"""``L`` residual heads, one per code digit, scoring each digit's codebook in one batched op.

    Head ``l`` maps a hidden state ``h`` to ``z_l = h + SiLU(W_l h + b_l)`` (``W_l``, ``b_l``
    zero-initialised, so every head starts as the identity). The digit-``l`` logits over its ``K``
    codes are ``cos(z_l, E_l) / τ`` (``cosine``) or ``z_l · E_l`` (``dot``), where ``E_l`` is the
    ``[K, d]`` table of digit ``l``'s code embeddings (tied with the input embedding).

    Args:
        n_digits (int): ``L``, the number of codes per item.
        hidden_size (int): model width ``d``.
        logits (str): ``cosine`` or ``dot``.
        temperature (float): ``τ`` of the cosine logits (unused for ``dot``).
    """

    def __init__(
        self, n_digits: int, hidden_size: int, logits: str = "cosine", temperature: float = 0.03
    ) -> None:
        super().__init__()
        if logits not in HEAD_LOGITS:
            raise ValueError(f"head_logits must be one of {HEAD_LOGITS}, got [{logits}].")
        if logits == "cosine" and temperature <= 0:
            raise ValueError(f"head_temperature must be > 0, got [{temperature}].")
        self.logits = logits
        self.temperature = temperature
        # [L, d_out, d_in]: W_l of every head, stacked
        self.weight = nn.Parameter(torch.zeros(n_digits, hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(n_digits, hidden_size))  # [L, d]

    def transform(self, h: torch.Tensor) -> torch.Tensor:
        r"""All heads at once: ``[N, d] -> [N, L, d]``."""
        z = torch.einsum("nd,led->nle", h, self.weight) + self.bias  # [N, L, d]
        return h.unsqueeze(1) + F.silu(z)  # [N, L, d]

    def forward(self, h: torch.Tensor, code_table: torch.Tensor) -> torch.Tensor:
        r"""Digit logits.

        Args:
            h (torch.Tensor): hidden states, shape ``[N, d]``.
            code_table (torch.Tensor): code embeddings per digit, shape ``[L, K, d]``.

        Returns:
            torch.Tensor: float32 logits, shape ``[N, L, K]`` (under autocast too: the heads'
            residual transform runs in the autocast dtype, the normalised products in float32).
        """
        z = self.transform(h)  # [N, L, d]
        # the logits in float32 even under bfloat16 autocast (see full_precision)
        with full_precision(z):
            z, code_table = z.float(), code_table.float()
            if self.logits == "cosine":
                z = F.normalize(z, dim=-1)
                code_table = F.normalize(code_table, dim=-1)
                return torch.einsum("nld,lkd->nlk", z, code_table) / self.temperature
            return torch.einsum("nld,lkd->nlk", z, code_table)  # [N, L, K]
