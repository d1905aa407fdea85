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

Where the parts live: the settings in :mod:`recbole_fair.model.tiger_settings`; the T5 and the
incremental decoder pass used at inference (the encoder output projected to keys and values
once per user and shared by its beams, self-attention keys/values cached per beam) in
:mod:`recbole_fair.model.t5_decoder`; the trie, the beam search and the exact branch-and-bound
top-k in :mod:`recbole_fair.model.beam_search`; the checks of each evaluation pass in
:mod:`recbole_fair.model.generation_report`.

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." in NeurIPS 2023.

Reference:
    Colin Raffel et al. "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
    Transformer." JMLR 2020 (T5).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender

from recbole_fair.model import t5_decoder
from recbole_fair.model.beam_search import (
    ItemTrie,
    StepFn,
    branch_and_bound_topk,
    constrained_beam_search,
)
from recbole_fair.model.generation_report import GenerationReport
from recbole_fair.model.host_batch import HostBatch, host_batch_of, length_groups
from recbole_fair.model.layers import full_precision
from recbole_fair.model.t5_decoder import DecoderContext
from recbole_fair.model.tiger_settings import TIGERSettings


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
        self.settings = TIGERSettings.from_config(config)
        self.levels = self.settings.rqvae_levels
        self.codebook_size = self.settings.rqvae_codebook_size
        self.n_user_tokens = self.settings.n_user_tokens
        self.beam_size = self.settings.beam_size
        self.topk = self.settings.topk

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
        self.t5 = t5_decoder.build_t5(self.settings, self.vocab_size)
        self.report = GenerationReport(self.beam_size, self.topk)

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
        hidden = self.t5.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        out = self.t5.decoder(
            input_ids=decoder_input_ids, encoder_hidden_states=hidden, encoder_attention_mask=mask
        ).last_hidden_state  # [B, C, d]
        out = out * t5_decoder.decoder_output_scale(self.t5.config)
        # T5's LM head restricted to each digit's own V tokens (the logits it would gather)
        weight = self.t5.lm_head.weight[self.level_tokens]  # [C, V, d]
        return torch.einsum("bcd,cvd->bcv", out, weight)  # [B, C, V]

    def prepare_batch(self, interaction: Any) -> Any:
        r"""Trim a training batch to its longest history on the host, before its copy to the
        device, and note that length (``interaction.host_batch``), so that
        :meth:`calculate_loss` need not read it back from the device
        (:mod:`recbole_fair.model.host_batch`); with ``tiger_length_groups > 1`` sort its rows by
        history length first and note the groups of rows to trim separately. Called by
        recbole-fair's trainer; a batch already on an accelerator is returned as is."""
        if interaction[self.ITEM_SEQ_LEN].device.type != "cpu":
            return interaction
        return self._sort_and_trim(interaction)

    def _sort_and_trim(self, interaction: Any) -> Any:
        r"""The batch trimmed to its longest history, with its :class:`HostBatch`; with
        ``tiger_length_groups > 1`` a copy whose rows are sorted by history length (stable) and
        split into the groups of :func:`~recbole_fair.model.host_batch.length_groups`."""
        lengths = interaction[self.ITEM_SEQ_LEN]
        groups = None
        if self.settings.tiger_length_groups > 1:
            interaction = interaction[torch.argsort(lengths, stable=True)]  # a copy
            lengths = interaction[self.ITEM_SEQ_LEN]
            groups = length_groups(lengths.cpu().numpy(), self.settings.tiger_length_groups)
        longest = int(lengths.max())
        item_seq = interaction[self.ITEM_SEQ][:, :longest].contiguous()
        interaction.interaction[self.ITEM_SEQ] = item_seq
        interaction.host_batch = HostBatch(item_seq.size(0), longest, groups=groups)
        return interaction

    def calculate_loss(self, interaction: Any) -> torch.Tensor:
        r"""Teacher-forced cross-entropy over the ``C`` digits of the next item, the mean over the
        batch's rows and digits. Rows grouped by history length (``tiger_length_groups``) run
        through T5 group by group, each trimmed to its own longest history: the same loss up to
        float rounding (padding is masked), on fewer padded positions."""
        host = host_batch_of(interaction, interaction[self.ITEM_SEQ])
        if host is None and self.settings.tiger_length_groups > 1:
            interaction = self._sort_and_trim(interaction)  # (reads the lengths back from a GPU)
            host = interaction.host_batch
        item_seq, lengths = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        target, users = interaction[self.POS_ITEM_ID], self._user_ids(interaction)  # [B]
        if host is None:
            groups: tuple = ((len(target), None),)  # forward reads the longest history
        else:
            groups = host.groups or ((host.rows, host.longest),)
        logits, start = [], 0
        for end, longest in groups:
            rows = slice(start, end)
            user_rows = None if users is None else users[rows]
            logits.append(
                self.forward(item_seq[rows], lengths[rows], target[rows], user_rows, longest)
            )  # [b, C, V]
            start = end
        logits = torch.cat(logits) if len(logits) > 1 else logits[0]  # [B, C, V]
        codes = self.item_codes[target]  # [B, C]
        return F.cross_entropy(logits.reshape(-1, self.code_vocab), codes.reshape(-1))

    # ------------------------------------------------------------------ incremental decoder
    def decoder_context(self, hidden: torch.Tensor, mask: torch.Tensor) -> DecoderContext:
        r"""What every decoding step needs from the encoder output ``[B, S, d]`` (bool mask
        ``[B, S]``), computed once per user (:func:`~recbole_fair.model.t5_decoder.decoder_context`)."""
        return t5_decoder.decoder_context(self.t5, hidden, mask, self.n_codes)

    def decode(
        self, tokens: torch.Tensor, context: DecoderContext, cache: list | None = None
    ) -> tuple[torch.Tensor, list]:
        r"""The T5 decoder on ``[B, N, t]`` tokens per user, incrementally
        (:func:`~recbole_fair.model.t5_decoder.decode`): hidden ``[B, N, t, d]`` and the cache."""
        return t5_decoder.decode(self.t5, tokens, context, cache)

    def digit_logits(self, hidden: torch.Tensor, level: int) -> torch.Tensor:
        r"""Logits of digit ``level`` over its ``V`` codes: ``[..., d] -> [..., V]``, in float32
        also under autocast (they make the ranking scores; see
        :func:`~recbole_fair.model.layers.full_precision`)."""
        weight = self.t5.lm_head.weight[self.level_tokens[level]]  # [V, d]
        with full_precision(hidden):
            return hidden.float() @ weight.float().t()

    def decoder_step(self, context: DecoderContext) -> StepFn:
        r"""The :data:`~recbole_fair.model.beam_search.StepFn` of the users of ``context``: the
        log-probabilities of the next digit of every beam, with the decoder's self-attention
        cache following the beams (gathered by parent index at every step)."""
        b = context.users
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

        return step

    # ---------------------------------------------------------------------------- ranking
    @torch.no_grad()
    def score_items(self, context: DecoderContext, items: torch.Tensor) -> torch.Tensor:
        r"""Exact sequence log-probabilities of candidate items (teacher forced).

        Args:
            context (DecoderContext): from :meth:`decoder_context`, ``B`` users.
            items (torch.Tensor): item ids, shape ``[B, N]`` or ``[N]`` (the same for all).

        Returns:
            torch.Tensor: ``Σ_l log p(code_l | code_<l, history)``, shape ``[B, N]``.
        """
        B = context.users
        if items.dim() == 1:
            items = items.unsqueeze(0).expand(B, -1)
        scores = []
        chunk = max(1, self.settings.tiger_decode_chunk // max(B, 1))
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
        self, context: DecoderContext, beam_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Trie-constrained beam search for ``B`` users, in chunks of ``tiger_decode_chunk``
        beams.

        Args:
            context (DecoderContext): from :meth:`decoder_context`.
            beam_size (int, optional): default ``beam_size``.

        Returns:
            tuple: items ``[B, W]`` and their sequence log-probabilities ``[B, W]``, best first
            (item 0 / ``-inf`` where fewer than ``W`` items exist).
        """
        W = int(beam_size or self.beam_size)
        B = context.users
        users = max(1, self.settings.tiger_decode_chunk // W)
        items, scores = [], []
        for start in range(0, B, users):
            part = context.slice(start, start + users)
            chunk_items, chunk_scores = constrained_beam_search(
                self.decoder_step(part), self.trie, part.users, W
            )
            items.append(chunk_items)
            scores.append(chunk_scores)
        return torch.cat(items, 0), torch.cat(scores, 0)

    @torch.no_grad()
    def exact_topk(
        self, context: DecoderContext, k: int, lower_bound: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Exact top-k items of each user by branch and bound over the trie
        (:func:`~recbole_fair.model.beam_search.branch_and_bound_topk`).

        Args:
            context (DecoderContext): from :meth:`decoder_context`, ``B`` users.
            k (int): items to return.
            lower_bound (torch.Tensor, optional): ``[B]``, a score at least ``k`` items reach
                (e.g. a beam search's k-th score; ``-inf``/``None``: no pruning).

        Returns:
            tuple: items ``[B, k]`` and scores ``[B, k]``, best first (0 / ``-inf`` padding when
            fewer than ``k`` items exist).
        """
        items, scores = [], []
        for user in range(context.users):
            bound = float("-inf") if lower_bound is None else float(lower_bound[user])
            step = self.decoder_step(context.slice(user, user + 1))
            user_items, user_scores = branch_and_bound_topk(step, self.trie, k, bound)
            items.append(user_items)
            scores.append(user_scores)
        if not items:
            device = self.item_codes.device
            empty = torch.zeros(0, k, device=device)
            return empty.long(), empty
        return torch.stack(items), torch.stack(scores)

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
        users = max(1, self.settings.tiger_decode_chunk // self.beam_size)  # bounds memory
        checked = 0
        for first in range(0, B, users):
            part = interaction[first : first + users]
            start = time.time()
            hidden, mask = self.encode(part)
            context = self.decoder_context(hidden, mask)
            items, beam_scores = self.beam_search(context)  # [b, W]
            scores[first : first + users].scatter_(1, items, beam_scores)
            self.report.add_beams(items, beam_scores, time.time() - start)
            checked += self._exact_check(part, context, items, beam_scores)
        scores[:, 0] = float("-inf")
        if checked or (self.settings.tiger_exact_check_users == 0 and not self.report.logged):
            self.report.log()
        return scores

    # ------------------------------------------------------------------- evaluation guards
    @torch.no_grad()
    def _exact_check(
        self,
        interaction: Any,
        context: DecoderContext,
        items: torch.Tensor,
        beam_scores: torch.Tensor,
    ) -> int:
        r"""Compare beam top-k with exact top-k on the next users of the sample; returns how many
        users were checked in this batch."""
        n = min(self.settings.tiger_exact_check_users - self.report.exact_users, items.size(0))
        if n <= 0 or not self.topk:
            return 0
        start = time.time()
        K = max(self.topk)
        if self.settings.tiger_exact_check_mode == "full":
            all_items = torch.arange(1, self.n_items, device=items.device)  # [n_items - 1]
            exact = self.score_items(context.slice(0, n), all_items)  # [n, N]
            exact_top = all_items[exact.topk(min(K, exact.size(1)), dim=1).indices]  # [n, K]
        else:
            exact_top, _ = self.exact_topk(context.slice(0, n), K, beam_scores[:n, K - 1])
        target = interaction[self.POS_ITEM_ID][:n] if self.POS_ITEM_ID in interaction else None
        self.report.add_exact_check(
            items[:n, :K], beam_scores[:n, :K], exact_top, target, time.time() - start
        )
        return n

    def reset_generation_report(self) -> None:
        r"""Start a new evaluation pass (called on ``model.eval()``)."""
        self.report.reset()

    @property
    def generation_report(self) -> dict:
        r"""The checks of the current (or last) evaluation pass
        (:meth:`~recbole_fair.model.generation_report.GenerationReport.as_dict`)."""
        return self.report.as_dict()

    def train(self, mode: bool = True) -> TIGER:
        r"""``nn.Module.train``; switching to eval mode starts a new generation report."""
        if not mode:
            self.reset_generation_report()
        return super().train(mode)
