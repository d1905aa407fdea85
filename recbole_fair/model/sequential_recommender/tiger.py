r"""TIGER
################################################

Generative retrieval with semantic IDs: every item is ``C = M + 1`` code tokens (``M`` RQ-VAE
codes and one collision digit, built by :class:`~recbole_fair.data.tiger_dataset.TIGERDataset`);
a T5 encoder reads the history's code tokens (optionally after a hashed user token) and a T5
decoder generates the next item's ``C`` codes. Training is teacher-forced cross-entropy; ranking
is beam search constrained by the trie of existing items, whose finished beams are scored by
their sequence log-probabilities.

Code tokens: ``1 + l * V + c`` for digit ``l`` and code ``c`` (``V`` = ``rqvae_codebook_size``,
or more when a collision group is larger), 0 = padding and decoder start, then the user tokens.
Each digit's softmax runs over that digit's ``V`` tokens only.

Inference runs its own incremental pass over the T5 decoder's weights (same arithmetic as
``transformers``' ``T5Stack``, checked by the tests): the encoder output is projected to keys and
values once per user and shared by all of the user's beams (or candidate items), and
self-attention keys/values are cached per beam and reordered with the beams.

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." in NeurIPS 2023.

Reference:
    Colin Raffel et al. "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
    Transformer." JMLR 2020 (T5).
"""

from __future__ import annotations

import time
from logging import getLogger
from typing import Any

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import set_color
from transformers import T5Config, T5ForConditionalGeneration

from recbole_fair.model.beam_search import ItemTrie, constrained_beam_search, count_invalid
from recbole_fair.model.host_batch import HostBatch, host_batch_of
from recbole_fair.model.layers import full_precision

FEED_FORWARD = ("relu", "gelu", "gated-gelu", "gated-silu")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
EXACT_CHECK_MODES = ("bound", "full")


def _number(config: Any, key: str, low: float = 0.0, strict: bool = False) -> float:
    value = config[key]
    if value is None:
        raise ValueError(
            f"config key [{key}] is missing; TIGER reads it from properties/model/TIGER.yaml."
        )
    if value < low or (strict and value == low):
        raise ValueError(f"{key} must be {'>' if strict else '>='} {low}, got [{value}].")
    return value


class TIGER(SequentialRecommender):
    r"""TIGER: a T5 encoder-decoder generating the next item's semantic ID.

    The dataset must carry ``dataset.item_codes`` (``LongTensor [n_items, rqvae_levels + 1]``,
    unique rows for the real items, row 0 = padding item), as ``TIGERDataset`` does.

    After (or during) an evaluation, :attr:`generation_report` holds the beam-search checks of
    the current pass: beam size, invalid and duplicate generations (0 with the trie), users per
    second, and on the first ``tiger_exact_check_users`` users the overlap between the beam
    top-k and the exact top-k (the k best items over every item's full code sequence, found by
    branch and bound over the trie, or by scoring every item with ``tiger_exact_check_mode:
    full``).
    """

    # recbole_fair.config.Config loads properties/semantic_ids.yaml for models with this flag.
    uses_semantic_ids = True
    # Digit logits and ranking scores stay float32 under autocast (autocast_dtype, see
    # recbole_fair.trainer.sync_free and recbole_fair.model.layers.full_precision).
    autocast_ranks_in_float32 = True

    def __init__(self, config: Any, dataset: Any) -> None:
        super().__init__(config, dataset)

        # load parameters info
        self.levels = int(_number(config, "rqvae_levels", 1))
        self.codebook_size = int(_number(config, "rqvae_codebook_size", 2))
        self.hidden_size = int(_number(config, "hidden_size", 1))
        self.inner_size = int(_number(config, "inner_size", 1))
        self.n_layers = int(_number(config, "n_layers", 1))
        self.n_decoder_layers = int(_number(config, "n_decoder_layers", 1))
        self.n_heads = int(_number(config, "n_heads", 1))
        self.head_dim = int(_number(config, "head_dim", 1))
        self.dropout_prob = float(_number(config, "dropout_prob"))
        self.layer_norm_eps = float(_number(config, "layer_norm_eps", strict=True))
        self.feed_forward_proj = config["feed_forward_proj"] or "relu"
        if self.feed_forward_proj not in FEED_FORWARD:
            raise ValueError(
                f"feed_forward_proj must be one of {FEED_FORWARD}, got [{self.feed_forward_proj}]."
            )
        self.attn_implementation = config["attn_implementation"] or "sdpa"
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got "
                f"[{self.attn_implementation}]."
            )
        self.n_user_tokens = int(_number(config, "n_user_tokens"))
        self.beam_size = int(_number(config, "beam_size", 1))
        self.exact_check_users = int(_number(config, "tiger_exact_check_users"))
        self.decode_chunk = int(_number(config, "tiger_decode_chunk", 1))
        self.exact_check_mode = config["tiger_exact_check_mode"] or "bound"
        if self.exact_check_mode not in EXACT_CHECK_MODES:
            raise ValueError(
                f"tiger_exact_check_mode must be one of {EXACT_CHECK_MODES}, got "
                f"[{self.exact_check_mode}]."
            )
        topk = config["topk"]
        self.topk = sorted({int(k) for k in ([topk] if isinstance(topk, int) else topk or [])})
        if self.topk and self.beam_size < max(self.topk):
            raise ValueError(
                f"beam_size [{self.beam_size}] is smaller than the largest topk "
                f"[{max(self.topk)}] (topk = {self.topk}): beam search returns beam_size items "
                f"per user, so top-{max(self.topk)} metrics would be computed on fewer items. "
                f"Set beam_size >= {max(self.topk)}."
            )
        if config["loss_type"] not in (None, "CE"):
            raise ValueError(f"loss_type must be CE for TIGER, got [{config['loss_type']}].")
        if (config["train_mode"] or "prefix") != "prefix":
            raise ValueError(
                f"TIGER trains one (history, next item) pair per row: set train_mode: prefix, "
                f"got [{config['train_mode']}]."
            )

        # semantic IDs of the items
        item_codes = self._check_item_codes(getattr(dataset, "item_codes", None))
        self.n_codes = item_codes.size(1)  # C = levels + 1
        self.code_vocab = max(self.codebook_size, int(item_codes[1:, -1].max()) + 1)  # V
        self.register_buffer("item_codes", item_codes)  # [n_items, C]
        level_tokens = 1 + torch.arange(self.n_codes).unsqueeze(1) * self.code_vocab
        level_tokens = level_tokens + torch.arange(self.code_vocab).unsqueeze(0)  # [C, V]
        self.register_buffer("level_tokens", level_tokens, persistent=False)
        self.user_token_offset = 1 + self.n_codes * self.code_vocab
        self.vocab_size = self.user_token_offset + self.n_user_tokens
        self.trie = ItemTrie(item_codes, self.code_vocab)

        # define layers and loss (T5's own initialisation)
        t5_config = T5Config(
            vocab_size=self.vocab_size,
            d_model=self.hidden_size,
            d_kv=self.head_dim,
            d_ff=self.inner_size,
            num_layers=self.n_layers,
            num_decoder_layers=self.n_decoder_layers,
            num_heads=self.n_heads,
            dropout_rate=self.dropout_prob,
            layer_norm_epsilon=self.layer_norm_eps,
            feed_forward_proj=self.feed_forward_proj,
            pad_token_id=0,
            eos_token_id=None,
            decoder_start_token_id=0,
            use_cache=False,
        )
        t5_config._attn_implementation = self.attn_implementation
        self.t5 = T5ForConditionalGeneration(t5_config)

        self.reset_generation_report()

    def _check_item_codes(self, item_codes: torch.Tensor | None) -> torch.Tensor:
        if item_codes is None:
            raise ValueError(
                "TIGER needs its semantic-ID dataset: `dataset.item_codes` is missing. Use "
                "recbole_fair's create_dataset (it builds a TIGERDataset for model TIGER)."
            )
        item_codes = torch.as_tensor(item_codes).long().cpu().clone()
        if item_codes.dim() != 2 or item_codes.size(0) != self.n_items:
            raise ValueError(
                f"dataset.item_codes must have shape [n_items={self.n_items}, rqvae_levels + 1], "
                f"got {tuple(item_codes.shape)}."
            )
        if item_codes.size(1) != self.levels + 1:
            raise ValueError(
                f"rqvae_levels [{self.levels}] does not match dataset.item_codes "
                f"({item_codes.size(1)} codes per item = rqvae_levels + 1 collision digit)."
            )
        head = item_codes[1:, : self.levels]
        if head.numel() and (head.min() < 0 or head.max() >= self.codebook_size):
            raise ValueError(
                f"dataset.item_codes must lie in [0, rqvae_codebook_size={self.codebook_size}), "
                f"got range [{int(head.min())}, {int(head.max())}]."
            )
        return item_codes

    # ----------------------------------------------------------------------------- encoder
    def item_tokens(self, items: torch.Tensor) -> torch.Tensor:
        r"""Code tokens ``1 + l*V + code_l(item)`` of items, shape ``[..., C]``; 0 for item 0."""
        codes = self.item_codes[items]  # [..., C]
        tokens = codes + self.level_tokens[:, 0]  # [..., C]
        return tokens.masked_fill((items == 0).unsqueeze(-1), 0)

    def encoder_inputs(
        self,
        item_seq: torch.Tensor,
        item_seq_len: torch.Tensor,
        user_ids: torch.Tensor | None,
        longest: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Encoder tokens of a batch, trimmed to its longest history.

        Args:
            item_seq (torch.Tensor): item ids, left-aligned, shape ``[B, T]``.
            item_seq_len (torch.Tensor): history lengths, shape ``[B]``.
            user_ids (torch.Tensor, optional): user ids ``[B]``, hashed into ``n_user_tokens``
                tokens put in front (ignored when ``n_user_tokens`` is 0).
            longest (int, optional): the longest history when the host knows it
                (:meth:`prepare_batch`); else read from ``item_seq_len`` (a host
                synchronisation on a GPU).

        Returns:
            tuple: ``input_ids`` ``[B, S]`` (``S = T' * C`` (+1)) and the bool ``attention_mask``.
        """
        if longest is None:
            longest = int(item_seq_len.max())
        item_seq = item_seq[:, :longest]  # [B, T']
        tokens = self.item_tokens(item_seq).flatten(1)  # [B, T' * C]
        if self.n_user_tokens > 0 and user_ids is not None:
            user = self.user_token_offset + user_ids.long() % self.n_user_tokens  # [B]
            tokens = torch.cat([user.unsqueeze(1), tokens], dim=1)  # [B, 1 + T' * C]
        return tokens, tokens != 0

    def _user_ids(self, interaction: Any) -> torch.Tensor | None:
        if self.n_user_tokens > 0 and self.USER_ID in interaction:
            return interaction[self.USER_ID]
        return None

    def encode(self, interaction: Any) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Encoder output of a batch: hidden ``[B, S, d]`` and bool mask ``[B, S]``."""
        input_ids, mask = self.encoder_inputs(
            interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], self._user_ids(interaction)
        )
        hidden = self.t5.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return hidden, mask

    def forward(
        self,
        item_seq: torch.Tensor,
        item_seq_len: torch.Tensor,
        target_items: torch.Tensor,
        user_ids: torch.Tensor | None = None,
        longest: int | None = None,
    ) -> torch.Tensor:
        r"""Teacher-forced logits of the target items' digits.

        Args:
            item_seq (torch.Tensor): item ids, left-aligned, shape ``[B, T]``.
            item_seq_len (torch.Tensor): history lengths, shape ``[B]``.
            target_items (torch.Tensor): next items, shape ``[B]``.
            user_ids (torch.Tensor, optional): user ids, shape ``[B]``.
            longest (int, optional): see :meth:`encoder_inputs`.

        Returns:
            torch.Tensor: logits over each digit's codes, shape ``[B, C, V]``.
        """
        input_ids, mask = self.encoder_inputs(item_seq, item_seq_len, user_ids, longest)
        labels = self.item_tokens(target_items)  # [B, C]
        decoder_input_ids = torch.cat([labels.new_zeros(labels.size(0), 1), labels[:, :-1]], 1)
        logits = self.t5(
            input_ids=input_ids, attention_mask=mask, decoder_input_ids=decoder_input_ids
        ).logits  # [B, C, vocab]
        B = logits.size(0)
        index = self.level_tokens.unsqueeze(0).expand(B, -1, -1)  # [B, C, V]
        return logits.gather(2, index)

    def prepare_batch(self, interaction: Any) -> Any:
        r"""Trim a training batch to its longest history on the host, before its copy to the
        device, and note that length (``interaction.host_batch``), so that
        :meth:`calculate_loss` need not read it back from the device
        (:mod:`recbole_fair.model.host_batch`). Called by recbole-fair's trainer; a batch
        already on an accelerator is returned as is."""
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        if item_seq_len.device.type != "cpu":
            return interaction
        longest = int(item_seq_len.max())
        item_seq = interaction[self.ITEM_SEQ][:, :longest].contiguous()
        interaction.interaction[self.ITEM_SEQ] = item_seq
        interaction.host_batch = HostBatch(item_seq.size(0), longest)
        return interaction

    def calculate_loss(self, interaction: Any) -> torch.Tensor:
        r"""Teacher-forced cross-entropy over the ``C`` digits of the next item."""
        target = interaction[self.POS_ITEM_ID]  # [B]
        item_seq = interaction[self.ITEM_SEQ]
        host = host_batch_of(interaction, item_seq)
        logits = self.forward(
            item_seq,
            interaction[self.ITEM_SEQ_LEN],
            target,
            self._user_ids(interaction),
            longest=host.longest if host is not None else None,
        )  # [B, C, V]
        codes = self.item_codes[target]  # [B, C]
        return F.cross_entropy(logits.reshape(-1, self.code_vocab), codes.reshape(-1))

    # ------------------------------------------------------------------ incremental decoder
    def _output_scale(self) -> float:
        cfg = self.t5.config
        scale = getattr(cfg, "scale_decoder_outputs", None)
        if scale is None:  # transformers < 5: decoder outputs are scaled when embeddings are tied
            scale = getattr(cfg, "tie_word_embeddings", True)
        return self.hidden_size**-0.5 if scale else 1.0

    def _self_attention_bias(self, device: torch.device) -> torch.Tensor:
        r"""Relative position bias of the decoder plus the causal mask, ``[H, C, C]``."""
        attention = self.t5.decoder.block[0].layer[0].SelfAttention
        position = torch.arange(self.n_codes, device=device)
        relative = position.unsqueeze(0) - position.unsqueeze(1)  # [q, k]: k - q
        bucket = attention._relative_position_bucket(
            relative,
            bidirectional=False,
            num_buckets=attention.relative_attention_num_buckets,
            max_distance=attention.relative_attention_max_distance,
        )
        bias = attention.relative_attention_bias(bucket).permute(2, 0, 1)  # [H, C, C]
        causal = relative > 0
        return bias.masked_fill(causal.unsqueeze(0), torch.finfo(bias.dtype).min)

    def decoder_context(self, hidden: torch.Tensor, mask: torch.Tensor) -> dict:
        r"""What every decoding step needs from the encoder, computed once per user.

        Args:
            hidden (torch.Tensor): encoder output, shape ``[B, S, d]``.
            mask (torch.Tensor): bool encoder mask, shape ``[B, S]``.

        Returns:
            dict: ``cross`` (per layer ``(K, V)``, each ``[B, H, S, dk]``), ``cross_bias``
            (``[B, 1, 1, S]``, 0 or the dtype minimum), ``self_bias`` (``[H, C, C]``).
        """
        B, S, _ = hidden.shape
        cross = []
        for block in self.t5.decoder.block:
            attention = block.layer[1].EncDecAttention
            k = attention.k(hidden).view(B, S, self.n_heads, self.head_dim).transpose(1, 2)
            v = attention.v(hidden).view(B, S, self.n_heads, self.head_dim).transpose(1, 2)
            cross.append((k, v))  # [B, H, S, dk] each
        cross_bias = torch.zeros(B, 1, 1, S, dtype=hidden.dtype, device=hidden.device)
        cross_bias = cross_bias.masked_fill(~mask.view(B, 1, 1, S), torch.finfo(hidden.dtype).min)
        return {
            "cross": cross,
            "cross_bias": cross_bias,
            "self_bias": self._self_attention_bias(hidden.device),
        }

    @staticmethod
    def slice_context(context: dict, start: int, end: int) -> dict:
        r"""The context of users ``start..end-1``."""
        return {
            "cross": [(k[start:end], v[start:end]) for k, v in context["cross"]],
            "cross_bias": context["cross_bias"][start:end],
            "self_bias": context["self_bias"],
        }

    def decode(
        self, tokens: torch.Tensor, context: dict, cache: list | None = None
    ) -> tuple[torch.Tensor, list]:
        r"""Run the T5 decoder on ``N`` sequences per user sharing the user's encoder output.

        Args:
            tokens (torch.Tensor): decoder input tokens at positions ``P..P+t-1``, shape
                ``[B, N, t]``.
            context (dict): from :meth:`decoder_context`.
            cache (list, optional): per layer ``(K, V)`` of the ``P`` earlier positions, each
                ``[B, N, P, H, dk]`` (``None``: ``P = 0``).

        Returns:
            tuple: final hidden states ``[B, N, t, d]`` (final norm and output scale applied)
            and the cache extended to ``P + t`` positions.
        """
        B, N, t = tokens.shape
        H, dk = self.n_heads, self.head_dim
        P = cache[0][0].size(2) if cache else 0
        self_bias = context["self_bias"][:, P : P + t, : P + t]  # [H, t, P + t]
        x = self.t5.decoder.embed_tokens(tokens)  # [B, N, t, d]
        new_cache = []
        for i, block in enumerate(self.t5.decoder.block):
            # causal self-attention within each sequence
            layer = block.layer[0]
            h = layer.layer_norm(x)
            q = layer.SelfAttention.q(h).view(B, N, t, H, dk)
            k = layer.SelfAttention.k(h).view(B, N, t, H, dk)
            v = layer.SelfAttention.v(h).view(B, N, t, H, dk)
            if cache:
                k = torch.cat([cache[i][0], k], dim=2)  # [B, N, P + t, H, dk]
                v = torch.cat([cache[i][1], v], dim=2)
            new_cache.append((k, v))
            scores = torch.einsum("bnqhd,bnkhd->bnhqk", q, k) + self_bias  # [B, N, H, t, P + t]
            attn = scores.float().softmax(dim=-1).to(v.dtype)
            out = torch.einsum("bnhqk,bnkhd->bnqhd", attn, v).reshape(B, N, t, H * dk)
            x = x + layer.SelfAttention.o(out)
            # cross-attention to the user's encoder output (shared by the N sequences)
            layer = block.layer[1]
            h = layer.layer_norm(x)
            q = layer.EncDecAttention.q(h).view(B, N * t, H, dk).transpose(1, 2)  # [B, H, Nt, dk]
            k, v = context["cross"][i]  # [B, H, S, dk]
            scores = q @ k.transpose(-1, -2) + context["cross_bias"]  # [B, H, N * t, S]
            attn = scores.float().softmax(dim=-1).to(v.dtype)
            out = (attn @ v).transpose(1, 2).reshape(B, N, t, H * dk)
            x = x + layer.EncDecAttention.o(out)
            # feed-forward
            x = block.layer[2](x)
        x = self.t5.decoder.final_layer_norm(x) * self._output_scale()
        return x, new_cache

    def digit_logits(self, hidden: torch.Tensor, level: int) -> torch.Tensor:
        r"""Logits of digit ``level`` over its ``V`` codes: ``[..., d] -> [..., V]``, in float32
        also under autocast (they make the ranking scores; see
        :func:`~recbole_fair.model.layers.full_precision`)."""
        weight = self.t5.lm_head.weight[self.level_tokens[level]]  # [V, d]
        with full_precision(hidden):
            return hidden.float() @ weight.float().t()

    # ---------------------------------------------------------------------------- ranking
    @torch.no_grad()
    def score_items(self, context: dict, items: torch.Tensor) -> torch.Tensor:
        r"""Exact sequence log-probabilities of candidate items (teacher forced).

        Args:
            context (dict): from :meth:`decoder_context`, ``B`` users.
            items (torch.Tensor): item ids, shape ``[B, N]`` or ``[N]`` (the same for all).

        Returns:
            torch.Tensor: ``Σ_l log p(code_l | code_<l, history)``, shape ``[B, N]``.
        """
        B = context["cross_bias"].size(0)
        if items.dim() == 1:
            items = items.unsqueeze(0).expand(B, -1)
        scores = []
        chunk = max(1, self.decode_chunk // max(B, 1))
        for start in range(0, items.size(1), chunk):
            block = items[:, start : start + chunk]  # [B, n]
            labels = self.item_tokens(block)  # [B, n, C]
            tokens = torch.cat([labels.new_zeros(*block.shape, 1), labels[..., :-1]], -1)
            hidden, _ = self.decode(tokens, context)  # [B, n, C, d]
            codes = self.item_codes[block]  # [B, n, C]
            total = hidden.new_zeros(block.shape, dtype=torch.float32)
            for level in range(self.n_codes):
                log_probs = self.digit_logits(hidden[:, :, level], level).log_softmax(-1)
                total = total + log_probs.gather(-1, codes[..., level : level + 1]).squeeze(-1)
            scores.append(total)
        return torch.cat(scores, 1)

    @torch.no_grad()
    def beam_search(
        self, context: dict, beam_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Trie-constrained beam search for ``B`` users, in chunks of ``tiger_decode_chunk``
        beams.

        Args:
            context (dict): from :meth:`decoder_context`.
            beam_size (int, optional): default ``beam_size``.

        Returns:
            tuple: items ``[B, W]`` and their sequence log-probabilities ``[B, W]``, best first
            (item 0 / ``-inf`` where fewer than ``W`` items exist).
        """
        W = int(beam_size or self.beam_size)
        B = context["cross_bias"].size(0)
        users = max(1, self.decode_chunk // W)
        items, scores = [], []
        for start in range(0, B, users):
            chunk_items, chunk_scores = self._beam_search_chunk(
                self.slice_context(context, start, start + users), W
            )
            items.append(chunk_items)
            scores.append(chunk_scores)
        return torch.cat(items, 0), torch.cat(scores, 0)

    def _beam_search_chunk(self, context: dict, W: int) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Beam search of one chunk of users; the decoder's self-attention cache follows the
        beams (gathered by parent index at every step)."""
        b = context["cross_bias"].size(0)
        cache: list | None = None

        def step(level: int, codes: torch.Tensor | None, parent: torch.Tensor | None):
            nonlocal cache
            if level == 0:
                tokens = torch.zeros(b, 1, 1, dtype=torch.long, device=self.item_codes.device)
            else:
                index = parent.view(b, -1, 1, 1, 1)  # [b, w, 1, 1, 1]
                cache = [
                    tuple(c.gather(1, index.expand(-1, -1, *c.shape[2:])) for c in layer_cache)
                    for layer_cache in cache
                ]  # per layer [b, w, P, H, dk]
                tokens = self.level_tokens[level - 1][codes].unsqueeze(-1)  # [b, w, 1]
            hidden, cache = self.decode(tokens, context, cache)  # [b, w, 1, d]
            return self.digit_logits(hidden[:, :, 0], level).log_softmax(-1)  # [b, w, V]

        return constrained_beam_search(step, self.trie, b, W)

    @torch.no_grad()
    def exact_topk(
        self, context: dict, k: int, lower_bound: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Exact top-k items by branch and bound over the trie (no beam limit).

        A prefix's log-probability bounds those of all items below it (each digit adds a
        log-probability <= 0), so every item scoring at least ``lower_bound`` is reached by
        expanding, level by level, only the prefixes scoring at least ``lower_bound``. With
        ``lower_bound`` = the k-th score of a beam search (an achieved score, hence <= the true
        k-th score) the result equals scoring every item (:meth:`score_items`) and taking the
        top k, at a fraction of the cost when the model is confident.

        Args:
            context (dict): from :meth:`decoder_context`, ``B`` users.
            k (int): items to return.
            lower_bound (torch.Tensor, optional): ``[B]``, a score at least ``k`` items reach
                (``-inf``/``None``: no pruning).

        Returns:
            tuple: items ``[B, k]`` and scores ``[B, k]``, best first (0 / ``-inf`` padding when
            fewer than ``k`` items exist).
        """
        B = context["cross_bias"].size(0)
        device = self.item_codes.device
        out_items = torch.zeros(B, k, dtype=torch.long, device=device)
        out_scores = torch.full((B, k), float("-inf"), device=device)
        for user in range(B):
            ctx = self.slice_context(context, user, user + 1)
            bound = float("-inf") if lower_bound is None else float(lower_bound[user])
            bound -= 1e-4 * max(1.0, abs(bound)) if bound > float("-inf") else 0.0  # float slack
            nodes = torch.zeros(1, dtype=torch.long, device=device)  # [n], the root
            scores = torch.zeros(1, device=device)  # [n]
            tokens = torch.zeros(1, 1, 1, dtype=torch.long, device=device)
            cache = None
            for level in range(self.n_codes):
                hidden, cache = self.decode(tokens, ctx, cache)  # [1, n, 1, d]
                log_probs = self.digit_logits(hidden[0, :, 0], level).log_softmax(-1)  # [n, V]
                allowed = self.trie.allowed(level, nodes)  # [n, V]
                candidates = scores.unsqueeze(1) + log_probs.masked_fill(~allowed, float("-inf"))
                keep = (candidates >= bound) & torch.isfinite(candidates)  # [n, V]
                parent, code = torch.nonzero(keep, as_tuple=True)  # the surviving prefixes
                scores = candidates[parent, code]
                nodes = self.trie.step(level, nodes[parent], code)
                cache = [tuple(c[:, parent] for c in layer_cache) for layer_cache in cache]
                tokens = self.level_tokens[level][code].view(1, -1, 1)
            top = scores.topk(min(k, scores.numel()))
            out_items[user, : top.indices.numel()] = nodes[top.indices]
            out_scores[user, : top.indices.numel()] = top.values
        return out_items, out_scores

    def predict(self, interaction: Any) -> torch.Tensor:
        r"""Exact sequence log-probability of the given item, shape ``[B]``."""
        hidden, mask = self.encode(interaction)
        context = self.decoder_context(hidden, mask)
        items = interaction[self.ITEM_ID]  # [B]
        scores = self.score_items(context, items.unsqueeze(1)).squeeze(1)
        return scores.masked_fill(items == 0, float("-inf"))

    def full_sort_predict(self, interaction: Any) -> torch.Tensor:
        r"""Scores of all items from the constrained beam search, shape ``[B, n_items]``.

        The ``beam_size`` generated items get their sequence log-probabilities (so their order is
        the beam order); every other item gets ``-inf``. Updates :attr:`generation_report`.
        """
        if self.topk and self.beam_size < max(self.topk):
            raise ValueError(
                f"beam_size [{self.beam_size}] is smaller than the largest topk [{max(self.topk)}]."
            )
        B = len(interaction)
        scores = torch.full((B, self.n_items), float("-inf"), device=self.item_codes.device)
        users = max(1, self.decode_chunk // self.beam_size)  # users per chunk: bounds memory
        checked = 0
        for first in range(0, B, users):
            part = interaction[first : first + users]
            start = time.time()
            hidden, mask = self.encode(part)
            context = self.decoder_context(hidden, mask)
            items, beam_scores = self.beam_search(context)  # [b, W]
            scores[first : first + users].scatter_(1, items, beam_scores)
            self._stats["beam_seconds"] += time.time() - start
            self._count(items, beam_scores)
            checked += self._exact_check(part, context, items, beam_scores)
        scores[:, 0] = float("-inf")
        if checked or (self.exact_check_users == 0 and not self._stats["logged"]):
            self._stats["logged"] = True
            self._log_generation_report()
        return scores

    def _count(self, items: torch.Tensor, beam_scores: torch.Tensor) -> None:
        r"""Add a chunk's users, returned, invalid and duplicate generations to the report."""
        stats = self._stats
        returned, invalid, duplicates = count_invalid(items, beam_scores)
        stats["users"] += items.size(0)
        stats["returned"] += returned
        stats["invalid"] += invalid
        stats["duplicates"] += duplicates
        if self.topk:
            short = torch.isfinite(beam_scores).sum(1) < max(self.topk)
            stats["short_users"] += int(short.sum())
        if invalid or duplicates:
            getLogger().error(
                f"TIGER beam search returned {invalid} invalid and {duplicates} duplicate items; "
                f"the item trie should make both impossible."
            )

    # ------------------------------------------------------------------- evaluation guards
    def reset_generation_report(self) -> None:
        r"""Start a new evaluation pass (called on ``model.eval()``)."""
        self._stats = {
            "users": 0,
            "returned": 0,
            "invalid": 0,
            "duplicates": 0,
            "short_users": 0,
            "beam_seconds": 0.0,
            "exact_users": 0,
            "exact_seconds": 0.0,
            "overlap": {k: 0.0 for k in self.topk},
            "beam_hits": {k: 0 for k in self.topk},
            "exact_hits": {k: 0 for k in self.topk},
            "labelled": 0,
            "logged": False,
        }

    @property
    def generation_report(self) -> dict:
        r"""The checks of the current (or last) evaluation pass: ``beam_size``, ``topk``,
        ``users``, ``returned_items``, ``invalid_generations``, ``duplicate_generations``,
        ``invalid_generation_rate``, ``users_with_fewer_items_than_topk``,
        ``beam_search_seconds``, ``users_per_second``, ``exact_check_users``,
        ``exact_check_seconds``, ``beam_exact_overlap@k`` (mean share of the exact top-k found
        by the beam top-k) and ``sample_recall@k_beam`` / ``sample_recall@k_exact`` (recall of
        both rankings on the checked users)."""
        return self._report()

    def train(self, mode: bool = True) -> TIGER:
        r"""``nn.Module.train``; switching to eval mode starts a new generation report."""
        if not mode:
            self.reset_generation_report()
        return super().train(mode)

    @torch.no_grad()
    def _exact_check(
        self, interaction: Any, context: dict, items: torch.Tensor, beam_scores: torch.Tensor
    ) -> int:
        r"""Compare beam top-k with exact top-k on the next users of the sample; returns how many
        users were checked in this batch."""
        stats = self._stats
        n = min(self.exact_check_users - stats["exact_users"], items.size(0))
        if n <= 0 or not self.topk:
            return 0
        start = time.time()
        K = max(self.topk)
        if self.exact_check_mode == "full":
            all_items = torch.arange(1, self.n_items, device=items.device)  # [n_items - 1]
            exact = self.score_items(self.slice_context(context, 0, n), all_items)  # [n, N]
            exact_top = all_items[exact.topk(min(K, exact.size(1)), dim=1).indices]  # [n, K]
        else:
            exact_top, _ = self.exact_topk(
                self.slice_context(context, 0, n), K, beam_scores[:n, K - 1]
            )  # [n, K]
        beam_top = items[:n, :K]  # [n, K], best first
        beam_alive = torch.isfinite(beam_scores[:n, :K])
        target = interaction[self.POS_ITEM_ID][:n] if self.POS_ITEM_ID in interaction else None
        for k in self.topk:
            b, e = beam_top[:, :k], exact_top[:, :k]
            hit = (b.unsqueeze(2) == e.unsqueeze(1)).any(2) & beam_alive[:, :k]  # [n, k]
            stats["overlap"][k] += float((hit.sum(1).float() / e.size(1)).sum())
            if target is not None:
                stats["beam_hits"][k] += int(
                    ((b == target.unsqueeze(1)) & beam_alive[:, :k]).any(1).sum()
                )
                stats["exact_hits"][k] += int((e == target.unsqueeze(1)).any(1).sum())
        if target is not None:
            stats["labelled"] += n
        stats["exact_users"] += n
        stats["exact_seconds"] += time.time() - start
        return n

    def _report(self) -> dict:
        s = self._stats
        report = {
            "beam_size": self.beam_size,
            "topk": list(self.topk),
            "users": s["users"],
            "returned_items": s["returned"],
            "invalid_generations": s["invalid"],
            "duplicate_generations": s["duplicates"],
            "invalid_generation_rate": s["invalid"] / s["returned"] if s["returned"] else 0.0,
            "users_with_fewer_items_than_topk": s["short_users"],
            "beam_search_seconds": s["beam_seconds"],
            "users_per_second": s["users"] / s["beam_seconds"] if s["beam_seconds"] else None,
            "exact_check_users": s["exact_users"],
            "exact_check_seconds": s["exact_seconds"],
        }
        if s["exact_users"]:
            for k in self.topk:
                report[f"beam_exact_overlap@{k}"] = s["overlap"][k] / s["exact_users"]
        if s["labelled"]:
            for k in self.topk:
                report[f"sample_recall@{k}_beam"] = s["beam_hits"][k] / s["labelled"]
                report[f"sample_recall@{k}_exact"] = s["exact_hits"][k] / s["labelled"]
        return report

    def _log_generation_report(self) -> None:
        report = self._report()
        overlap = ", ".join(
            f"@{k} {report[f'beam_exact_overlap@{k}']:.3f}"
            for k in self.topk
            if f"beam_exact_overlap@{k}" in report
        )
        recall = ", ".join(
            f"@{k} {report[f'sample_recall@{k}_beam']:.3f}/{report[f'sample_recall@{k}_exact']:.3f}"
            for k in self.topk
            if f"sample_recall@{k}_beam" in report
        )
        getLogger().info(
            set_color("TIGER generation", "pink")
            + f": beam {self.beam_size}, {report['users']} users so far, invalid generation rate "
            f"{report['invalid_generation_rate']:.4f} ({report['invalid_generations']} invalid, "
            f"{report['duplicate_generations']} duplicates)"
            + (
                f"; beam vs exact top-k overlap on {report['exact_check_users']} users: "
                f"{overlap}; their recall beam/exact: {recall} "
                f"(exact check {report['exact_check_seconds']:.1f}s)"
                if report["exact_check_users"]
                else ""
            )
        )
