r"""recbole_fair.model.ranking
###########################

:class:`CodeSumRanker`: how FAIR and RPG turn digit log-probabilities into item scores. The
paper's score of item ``i`` with codes ``c_1..c_L`` is ``Σ_l log p_l(c_l)``:

* ``decoding: exact`` (default) scores every item. Without autograd on the CPU (evaluation):
  ``F.embedding_bag`` (mode sum) of each item's ``L`` code tokens over the transposed
  log-probabilities ``[L*K, b]`` of ``b`` users at a time (:data:`SCORE_TABLE_BYTES`: the table
  stays in the core's cache), each item a sum of ``L`` contiguous rows; otherwise (the item-level
  loss's gradient, accelerators) one sparse-dense product ``C · P^T`` with ``C`` the
  ``[n_items, L*K]`` one-hot CSR matrix of the items' code tokens. Both add the digits in order,
  as the reference ``L`` gathers of ``[B, n_items]`` (the fallback where CSR is unsupported) do
  (the same floats on Amazon_Beauty here); the bags are about 4x faster than the CSR product on CPU
  (``benchmarks/bench_ranking.py``, ``docs/performance/ranking.md``);
* ``decoding: graph`` scores only the items RPG's graph-constrained decoding visits
  (:mod:`recbole_fair.model.graph_decoding`), the others ``-inf``.

An extra per-item term (the item-ID digit's ``log p_item``) is added to whatever is scored. The
padding item 0 always gets ``-inf``.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from recbole_fair.model.graph_decoding import (
    GraphDecodingSettings,
    ItemGraphCache,
    graph_decode,
    popular_items,
    start_items,
)
from recbole_fair.model.layers import full_precision
from recbole_fair.model.weights_cache import WeightsCache

#: Bytes of one user chunk's log-probability table in the CPU scoring: ``1 MiB`` (the L2 cache of
#: one core here) is 32 users at ``L*K = 8192`` (measured fastest among 8-64 users on Beauty).
SCORE_TABLE_BYTES = 1 << 20
#: Users whose heads and scores FAIR computes together on CPU (``full_sort_predict``): larger
#: batches are ranked in chunks of this size (measured fastest among 32-2048 on Beauty).
RANK_CHUNK_USERS = 256


class CodeSumRanker(nn.Module):
    r"""Scores of all items from the digit log-probabilities, exact or graph-decoded.

    Args:
        settings (GraphDecodingSettings): ``decoding`` and the graph's settings.
        codebook_size (int): ``K``.
        popularity (torch.Tensor): training-target count per item ``[n_items]`` (graph
            decoding's popular start items).
    """

    def __init__(
        self, settings: GraphDecodingSettings, codebook_size: int, popularity: torch.Tensor
    ) -> None:
        super().__init__()
        self.settings = settings
        self.codebook_size = codebook_size
        popular = popular_items(popularity, settings.graph_num_beams)
        self.register_buffer("popular_items", popular, persistent=False)  # [S]
        self.graph_cache = ItemGraphCache()
        self._code_tokens = WeightsCache()  # [n_items, L] code tokens, per device
        self._code_matrix = WeightsCache()  # CSR one-hot of the code tokens, per device and dtype

    def train(self, mode: bool = True) -> CodeSumRanker:
        r"""``nn.Module.train``; entering training mode drops the cached decoding graph."""
        if mode:
            self.graph_cache.clear()
        return super().train(mode)

    def forward(
        self,
        log_probs: torch.Tensor,
        item_codes: torch.Tensor,
        item_seq: torch.Tensor,
        item_seq_len: torch.Tensor,
        item_graph: Callable[[], torch.Tensor],
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""Item scores ``[B, n_items]`` (float32, also under autocast).

        Args:
            log_probs (torch.Tensor): digit log-probabilities ``[B, L, K]``.
            item_codes (torch.Tensor): codes of every item ``[n_items, L]``.
            item_seq (torch.Tensor): the histories ``[B, T]`` (graph decoding's start beams).
            item_seq_len (torch.Tensor): their lengths ``[B]``.
            item_graph (callable): returns the item-neighbour graph (graph decoding only).
            extra (torch.Tensor, optional): a per-item term ``[B, n_items]`` added to the scores.
        """
        # the scores (sums of float32 log-probabilities) in float32, also under autocast
        with full_precision(log_probs):
            if self.settings.decoding == "graph":
                scores = self.graph_scores(
                    log_probs, item_codes, item_seq, item_seq_len, item_graph()
                )
            else:
                scores = self.exact_scores(log_probs, item_codes)  # [B, n_items]
            if extra is not None:
                scores += extra  # graph decoding: visited by code scores, ranked by the full one
            scores[:, 0] = float("-inf")
            return scores

    def graph_scores(
        self,
        log_probs: torch.Tensor,
        item_codes: torch.Tensor,
        item_seq: torch.Tensor,
        item_seq_len: torch.Tensor,
        graph: torch.Tensor,
    ) -> torch.Tensor:
        r"""Graph-constrained decoding: exact scores of the visited items, ``-inf`` elsewhere."""
        s = self.settings
        start = start_items(
            item_seq, item_seq_len, self.popular_items, s.graph_start, s.graph_num_beams
        )  # [B, M]
        return graph_decode(log_probs, item_codes, graph, start, s.graph_beam_size, s.graph_steps)

    def exact_scores(self, log_probs: torch.Tensor, item_codes: torch.Tensor) -> torch.Tensor:
        r"""``Σ_l log_probs[b, l, code_l(item)]`` for every item, shape ``[B, n_items]``
        (differentiable: the item-level loss uses it on the digit logits)."""
        with full_precision(log_probs):  # a sparse product autocast would run in bfloat16
            if log_probs.device.type == "cpu" and not log_probs.requires_grad:
                return self.exact_scores_by_bags(log_probs, item_codes)
            try:
                return self.exact_scores_csr(log_probs, item_codes)
            except (RuntimeError, NotImplementedError):
                return self.exact_scores_gather(log_probs, item_codes)

    def exact_scores_csr(self, log_probs: torch.Tensor, item_codes: torch.Tensor) -> torch.Tensor:
        r""":meth:`exact_scores` as one product of the CSR one-hot code matrix ``[n_items, L*K]``
        and ``log_probs [B, L*K]ᵀ`` (differentiable; raises where CSR products are unsupported)."""
        B = log_probs.size(0)
        codes = self.code_matrix(item_codes, log_probs.device, log_probs.dtype)
        return (codes @ log_probs.reshape(B, -1).T).T.contiguous()  # [B, n_items]

    def exact_scores_by_bags(
        self, log_probs: torch.Tensor, item_codes: torch.Tensor
    ) -> torch.Tensor:
        r""":meth:`exact_scores` without autograd on CPU: for ``b`` users at a time, the table
        ``[L*K, b]`` of their log-probabilities (one contiguous row per code token) and one
        ``embedding_bag`` sum of each item's ``L`` rows, ``[n_items, b]``, written transposed
        into the ``[B, n_items]`` scores. A Python loop over user chunks, none over digits."""
        B = log_probs.size(0)
        flat = log_probs.reshape(B, -1)  # [B, L*K]
        tokens = self.code_tokens(item_codes, log_probs.device)  # [n_items, L]
        chunk = max(1, SCORE_TABLE_BYTES // (flat.size(1) * flat.element_size()))
        scores = flat.new_empty(B, tokens.size(0))  # [B, n_items]
        for start in range(0, B, chunk):
            table = flat[start : start + chunk].T.contiguous()  # [L*K, b]
            scores[start : start + chunk] = F.embedding_bag(tokens, table, mode="sum").T
        return scores

    @staticmethod
    def exact_scores_gather(log_probs: torch.Tensor, item_codes: torch.Tensor) -> torch.Tensor:
        r""":meth:`exact_scores` by ``L`` gathers (where sparse CSR products are not supported)."""
        scores = log_probs.new_zeros(log_probs.size(0), item_codes.size(0))  # [B, n_items]
        for digit in range(item_codes.size(1)):
            scores += log_probs[:, digit].index_select(1, item_codes[:, digit])
        return scores

    def code_tokens(self, item_codes: torch.Tensor, device: torch.device) -> torch.Tensor:
        r"""The items' code tokens ``l*K + code_l`` ``[n_items, L]``, rows of the ``[L*K, ...]``
        tables, built once per device and codes."""

        def build() -> torch.Tensor:
            offsets = torch.arange(item_codes.size(1), device=device) * self.codebook_size  # [L]
            return (item_codes.to(device) + offsets).contiguous()  # [n_items, L]

        return self._code_tokens.get([item_codes], build, (str(device),))

    def code_matrix(
        self, item_codes: torch.Tensor, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        r"""The CSR one-hot matrix ``[n_items, L*K]`` of the items' code tokens (32 non-zeros a
        row), built once per device, dtype and codes."""

        def build() -> torch.Tensor:
            n_items, n_codes = item_codes.shape
            columns = self.code_tokens(item_codes, device).reshape(-1)  # [n_items * L]
            rows = torch.arange(0, n_items * n_codes + 1, n_codes, device=device)  # row pointers
            values = torch.ones(n_items * n_codes, device=device, dtype=dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                return torch.sparse_csr_tensor(
                    rows, columns, values, size=(n_items, n_codes * self.codebook_size)
                )

        return self._code_matrix.get([item_codes], build, (str(device), dtype))
