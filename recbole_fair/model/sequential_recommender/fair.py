r"""FAIR
################################################

A generative recommender over semantic IDs: every item is ``L`` codes (``L = 32`` codebooks of
``K = 256`` codewords); a causal Transformer with focused attention reads the history (one pooled
vector per item) and predicts all ``L`` codes of the next item in parallel. Training combines
multi-token prediction (MTP), noise robustness (NRT) and mutual information maximisation (MIM);
ranking scores every item exactly by the sum of its digits' log-probabilities.

Reference:
    Longtao Xiao et al. "FAIR: Focused Attention Is All You Need for Generative Recommendation."
    arXiv 2512.11254, 2025.

Reference:
    Yupeng Hou et al. "Generating Long Semantic IDs in Parallel for Recommendation." in KDD 2025.
    Tianzhu Ye et al. "Differential Transformer." in ICLR 2025.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_fair.data.item_counts import item_popularity
from recbole_fair.model.eval_encoder import by_length_groups, last_position_states
from recbole_fair.model.fair_settings import FAIRSettings, check_item_codes
from recbole_fair.model.host_batch import HostBatch, host_batch_of
from recbole_fair.model.item_id_digit import ItemIDDigit, rename_legacy_keys
from recbole_fair.model.layers import DigitHeads, TransformerStack, _dropout
from recbole_fair.model.losses import (
    FAIRLoss,
    item_softmax_loss,
    mim_info_nce,
    mtp_loss,
    nrt_triplet_loss,
    perturb_code_tokens,
)
from recbole_fair.model.ranking import RANK_CHUNK_USERS, CodeSumRanker
from recbole_fair.model.weights_cache import WeightsCache


class FAIR(SequentialRecommender):
    r"""FAIR: focused-attention generative recommendation over semantic IDs.

    Input: item ``i`` with codes ``c_1..c_L`` is embedded as the mean of its code-token embeddings
    (token ``1 + l*K + c_l``; 0 = padding, ``L*K + 1`` = mask), plus a learned position embedding.
    Encoder: ``n_layers`` pre-norm blocks with focused (or standard) causal attention. Output: ``L``
    residual heads, digit-``l`` logits = ``cos(head_l(h), E_l) / τ`` over the tied code table.
    Training: ``L_MTP + α·L_NRT + β·L_MIM``. Ranking: item scores ``Σ_l log p_l(c_l)``, exact
    over all items or by RPG's graph-constrained decoding (:class:`CodeSumRanker`).

    recbole-fair extensions, off by default (the paper's model): the item-ID digit
    (``item_id_embedding``, :class:`~recbole_fair.model.item_id_digit.ItemIDDigit`) and the
    item-level loss (``item_loss_weight = w``: ``w·L_item``, a softmax cross-entropy over all items
    whose logit is the ranking score ``(1/L) Σ_l logit_l(c_l(item))``, which trains the score the
    evaluation ranks by, where the per-digit loss treats the digits independently).

    Settings: :class:`~recbole_fair.model.fair_settings.FAIRSettings` (``properties/model/
    FAIR.yaml``). The dataset must carry ``dataset.item_codes`` (``LongTensor [n_items,
    n_codes]``, row 0 = the padding item), as recbole-fair's ``FAIRDataset`` does.
    """

    # recbole_fair.config.Config loads properties/semantic_ids.yaml for models with this flag.
    uses_semantic_ids = True
    # Digit logits and ranking scores stay float32 under autocast (autocast_dtype, see
    # recbole_fair.trainer.sync_free and recbole_fair.model.layers.full_precision).
    autocast_ranks_in_float32 = True
    #: Settings a subclass fixes (RPG: standard attention, MTP only): an absent key takes the
    #: value, another value is an error.
    preset: dict[str, Any] = {}

    def __init__(self, config: Any, dataset: Any) -> None:
        super().__init__(config, dataset)

        # load parameters info
        self.settings = s = FAIRSettings.from_config(config, type(self).__name__, self.preset)
        self.n_codes, self.codebook_size = s.n_codes, s.codebook_size  # L, K
        self.hidden_size = s.hidden_size
        self.attention = s.attention  # focused or standard (read by the attention-map tools)
        item_codes = check_item_codes(getattr(dataset, "item_codes", None), self.n_items, s)
        self.register_buffer("item_codes", item_codes)  # [n_items, L], codes in [0, K)
        digit_offset = 1 + torch.arange(self.n_codes) * self.codebook_size  # [L]
        self.register_buffer("digit_offset", digit_offset, persistent=False)
        self.mask_token = self.n_codes * self.codebook_size + 1  # NRT's masked code
        self.vocab_size = self.n_codes * self.codebook_size + 2  # the codes, padding and mask

        # define layers and loss
        d = self.hidden_size
        self.code_embedding = nn.Embedding(self.vocab_size, d, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, d)
        self.input_norm = (
            nn.LayerNorm(d, eps=s.layer_norm_eps) if s.input_layer_norm else nn.Identity()
        )
        self.input_dropout = _dropout(s.input_dropout_prob)
        self.encoder = TransformerStack(**s.transformer_args())
        self.heads = DigitHeads(self.n_codes, d, s.head_logits, s.head_temperature)
        self.item_id = (  # None: the paper's codes-only items
            ItemIDDigit(self.n_items, d, s.head_logits, s.head_temperature)
            if s.item_id_embedding
            else None
        )
        popularity = item_popularity(dataset, self.n_items)  # graph decoding's start items
        self.ranker = CodeSumRanker(s.graph, self.codebook_size, popularity)
        self.item_inputs = WeightsCache()  # evaluation's input embedding of every item
        self._register_load_state_dict_pre_hook(rename_legacy_keys)

        # parameters initialization
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        r"""RecBole's initialisation: normal(0, initializer_range) weights, zero biases, zero
        padding rows."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.settings.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    # ----------------------------------------------------------------------------- encoder
    def code_table(self) -> torch.Tensor:
        r"""The code embeddings per digit (tied with the input), shape ``[L, K, d]``."""
        n = self.n_codes * self.codebook_size
        return self.code_embedding.weight[1 : n + 1].view(
            self.n_codes, self.codebook_size, self.hidden_size
        )

    def item_tokens(self, items: torch.Tensor) -> torch.Tensor:
        r"""Code tokens ``1 + l*K + code_l(item)`` of items, shape ``[..., L]``; 0 for item 0."""
        tokens = self.item_codes[items] + self.digit_offset  # [..., L]
        return tokens.masked_fill((items == 0).unsqueeze(-1), 0)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        r"""Mean of the code-token embeddings of each item (padding tokens excluded).

        Args:
            tokens (torch.Tensor): code tokens, shape ``[..., L]``.

        Returns:
            torch.Tensor: item embeddings, shape ``[..., d]`` (zeros for the padding item).
        """
        flat = tokens.reshape(-1, self.n_codes)  # [N, L]
        emb = F.embedding_bag(flat, self.code_embedding.weight, mode="mean", padding_idx=0)
        return emb.view(*tokens.shape[:-1], self.hidden_size)  # [..., d]

    def embed_items(self, items: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        r"""Input embedding of items, ``[..., d]``: the mean of their code-token embeddings
        (``tokens``, default the items' own codes), plus ``e_i`` with the item-ID digit."""
        emb = self.embed_tokens(self.item_tokens(items) if tokens is None else tokens)
        if self.item_id is not None:
            emb = emb + self.item_id.embed(items)
        return emb

    def encode_tokens(
        self,
        tokens: torch.Tensor,
        return_maps: bool = False,
        items: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list | None]:
        r"""Run the Transformer on a batch of code-token sequences.

        Args:
            tokens (torch.Tensor): code tokens of the (left-aligned) history, shape ``[B, T, L]``.
            return_maps (bool): also return the per-layer attention maps.
            items (torch.Tensor, optional): the items of the history ``[B, T]``, whose own
                embeddings are added with the item-ID digit (required then).

        Returns:
            tuple: hidden states ``[B, T, d]`` and the maps (``None`` unless requested).
        """
        T = tokens.size(1)
        position_ids = torch.arange(T, device=tokens.device)  # [T]
        if self.item_id is not None and items is None:
            raise ValueError("encode_tokens needs the history's items with item_id_embedding.")
        emb = self.embed_tokens(tokens) if items is None else self.embed_items(items, tokens)
        x = emb + self.position_embedding(position_ids)  # [B, T, d]
        x = self.input_dropout(self.input_norm(x))
        return self.encoder(x, return_maps=return_maps)

    def last_states(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        r"""Evaluation's :meth:`forward`: the hidden states at the last positions only, ``[B, d]``;
        rows of similar length encoded together, each group trimmed to its longest history;
        without autograd the input embeddings are rows of a table of every item's, built once
        per weights (:mod:`recbole_fair.model.eval_encoder`). The full encoder's function."""
        item_seq = self.trim(item_seq, item_seq_len)  # [B, T']
        return by_length_groups(self._last_states, item_seq, item_seq_len)

    def _last_states(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            emb = self.embed_items(item_seq)  # [B, T, d]
        else:  # the same floats: rows of every item's embed_items, computed once per weights
            weights = [self.code_embedding.weight, self.item_codes]
            if self.item_id is not None:
                weights.append(self.item_id.embedding.weight)
            items = torch.arange(self.n_items, device=item_seq.device)
            emb = F.embedding(
                item_seq, self.item_inputs.get(weights, lambda: self.embed_items(items))
            )
        x = emb + self.position_embedding.weight[: item_seq.size(1)]
        x = self.input_dropout(self.input_norm(x))
        return last_position_states(self.encoder, x, item_seq_len)  # [B, d]

    @staticmethod
    def trim(item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        r"""Drop the padding columns beyond the longest history of the batch: ``[B, T']``.

        Every row needs at least one history item: its last position is the one read out
        (RecBole's sequential datasets never build an empty history; hand-made batches can).
        """
        shortest, longest = torch.stack(torch.aminmax(item_seq_len)).tolist()  # one sync
        if shortest < 1:
            empty = int((item_seq_len < 1).sum())
            raise ValueError(
                f"{empty} of {item_seq_len.numel()} rows have an empty history "
                f"(item_seq_len {shortest}): FAIR/RPG predict from the last history item, so "
                f"every row needs item_seq_len >= 1 (drop cold-start users from the batch)."
            )
        return item_seq[:, :longest]

    def prepare_batch(self, interaction: Any) -> Any:
        r"""Trim a training batch on the host, before its copy to the device, and attach what
        :meth:`calculate_loss` would otherwise ask the device for (a host synchronisation
        each): the longest history and the flat indices of the valid positions
        (:mod:`recbole_fair.model.host_batch`). Called by recbole-fair's trainer; a batch
        already on an accelerator is returned as is. Same batch, same loss.
        """
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        if item_seq_len.device.type != "cpu":
            return interaction
        item_seq = self.trim(interaction[self.ITEM_SEQ], item_seq_len).contiguous()  # [B, T']
        valid = self._valid_mask(item_seq_len, item_seq.size(1))  # [B, T']
        valid_index = valid.reshape(-1).nonzero().squeeze(1)  # [N]
        interaction.interaction[self.ITEM_SEQ] = item_seq
        interaction.host_batch = HostBatch(item_seq.size(0), item_seq.size(1), valid_index)
        return interaction

    @staticmethod
    def _select_valid(
        x: torch.Tensor, valid: torch.Tensor | None, valid_index: torch.Tensor | None
    ) -> torch.Tensor:
        r"""``x[valid]`` for ``x`` of shape ``[B, T, ...]``: by the host's flat indices when
        given (no host synchronisation), else by the boolean mask ``valid`` ``[B, T]``."""
        if valid_index is not None:
            return x.reshape(-1, *x.shape[2:]).index_select(0, valid_index)
        return x[valid]

    def encode(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        r"""Hidden states at every position of the trimmed batch, shape ``[B, T', d]``."""
        item_seq = self.trim(item_seq, item_seq_len)
        hidden, _ = self.encode_tokens(self.item_tokens(item_seq), items=item_seq)
        return hidden

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        r"""Hidden state at the last valid position of each history: pooled code embeddings and
        positions through the focused-attention blocks.

        Args:
            item_seq (torch.Tensor): item ids, left-aligned, shape ``[B, T]``.
            item_seq_len (torch.Tensor): history lengths, shape ``[B]``.

        Returns:
            torch.Tensor: shape ``[B, d]``.
        """
        if not self.training:  # only the last positions are read (eval_encoder)
            return self.last_states(item_seq, item_seq_len)
        hidden = self.encode(item_seq, item_seq_len)  # [B, T', d]
        return self.gather_indexes(hidden, item_seq_len - 1)  # [B, d]

    def code_log_probs(self, h: torch.Tensor) -> torch.Tensor:
        r"""Log-probabilities of every code of every digit from hidden states ``h [B, d]``:
        the per-digit heads, ``[B, L, K]``."""
        return self.heads(h, self.code_table()).log_softmax(dim=-1)

    def digit_log_probs(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        r"""Log-probabilities of every code of every digit of the next item, ``[B, L, K]``."""
        return self.code_log_probs(self.forward(item_seq, item_seq_len))

    @torch.no_grad()
    def attention_maps(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> list[dict]:
        r"""Per-layer attention maps of a batch, for inspection and visualisation.

        Args:
            item_seq (torch.Tensor): item ids, shape ``[B, T]``.
            item_seq_len (torch.Tensor): history lengths, shape ``[B]``.

        Returns:
            list of dict: one dict per layer. Focused attention: ``A1``, ``A2``, ``A``
            (``[B, H, T', T']`` each, ``T'`` = longest history) and the scalars ``lambda1``,
            ``lambda2``; standard attention: ``A``. Rows/columns past a history's length belong
            to padding.
        """
        item_seq = self.trim(item_seq, item_seq_len)
        _, maps = self.encode_tokens(self.item_tokens(item_seq), return_maps=True, items=item_seq)
        return maps

    # ----------------------------------------------------------------------------- training
    def calculate_loss(self, interaction: Any) -> FAIRLoss:
        r"""Training losses of a batch, always the four terms of :class:`FAIRLoss`.

        Every valid position predicts the codes of the next item (``train_mode:
        all_positions``; ``prefix``: the last position only); a term whose weight is 0 is an
        exact zero and is not computed (no second forward pass for NRT); so are NRT and MIM on a
        batch of one sequence (they need the batch's other sequences as negatives).
        """
        s = self.settings
        item_seq, item_seq_len, valid_index = self._training_batch(interaction)  # [B, T]
        pos_items = interaction[self.POS_ITEM_ID]  # [B]
        tokens = self.item_tokens(item_seq)  # [B, T, L]
        hidden, _ = self.encode_tokens(tokens, items=item_seq)  # [B, T, d]
        h, targets = self._predicting_states(hidden, item_seq, item_seq_len, pos_items, valid_index)
        logits = self.heads(h, self.code_table())  # [N, L, K]
        item_logits = None if self.item_id is None else self.item_id.logits(h)  # [N, n_items]

        zero = logits.new_zeros(())
        # NRT's and MIM's negatives are the batch's other sequences: none in a batch of one
        in_batch = item_seq.size(0) > 1
        loss_mtp = self._mtp_loss(logits, item_logits, targets)
        loss_nrt = loss_mim = loss_item = zero
        if s.nrt_weight > 0 and in_batch:
            loss_nrt = s.nrt_weight * self._nrt_loss(
                tokens, hidden, item_seq_len, item_seq, valid_index
            )
        if s.mim_weight > 0 and in_batch:
            loss_mim = s.mim_weight * self._mim_loss(hidden, item_seq_len, pos_items)
        if s.item_loss_weight > 0:
            loss_item = s.item_loss_weight * self._item_loss(logits, item_logits, targets)
        return FAIRLoss(loss_mtp, loss_nrt, loss_mim, loss_item)

    def _training_batch(
        self, interaction: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        r"""The histories ``[B, T']`` trimmed of padding columns, their lengths ``[B]`` and the
        host's flat indices of the valid positions (``None`` unless :meth:`prepare_batch`, called
        by recbole-fair's trainer, trimmed the batch on the host already)."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        host = host_batch_of(interaction, item_seq)
        if host is None:
            return self.trim(item_seq, item_seq_len), item_seq_len, None
        return item_seq, item_seq_len, host.valid_index

    def _predicting_states(
        self,
        hidden: torch.Tensor,
        item_seq: torch.Tensor,
        item_seq_len: torch.Tensor,
        pos_items: torch.Tensor,
        valid_index: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The hidden states that predict an item and the items they predict, ``[N, d]`` and
        ``[N]``: with ``all_positions`` position ``t`` predicts ``item_seq[t + 1]`` and the last
        valid position the target; with ``prefix`` only the last position, the target."""
        if self.settings.train_mode == "prefix":
            return self.gather_indexes(hidden, item_seq_len - 1), pos_items  # [B, d], [B]
        valid = None
        if valid_index is None:
            valid = self._valid_mask(item_seq_len, item_seq.size(1))  # [B, T]
        targets = torch.cat([item_seq[:, 1:], item_seq.new_zeros(item_seq.size(0), 1)], 1)
        targets = targets.scatter(1, (item_seq_len - 1).unsqueeze(1), pos_items.unsqueeze(1))
        h = self._select_valid(hidden, valid, valid_index)  # [N, d]
        return h, self._select_valid(targets, valid, valid_index)  # [N, d], [N]

    @staticmethod
    def _valid_mask(item_seq_len: torch.Tensor, T: int) -> torch.Tensor:
        positions = torch.arange(T, device=item_seq_len.device)
        return positions.unsqueeze(0) < item_seq_len.unsqueeze(1)  # [B, T]

    def _mtp_loss(
        self, logits: torch.Tensor, item_logits: torch.Tensor | None, targets: torch.Tensor
    ) -> torch.Tensor:
        r"""Multi-token prediction: the mean over the ``L`` digits of the cross-entropy (over
        ``L + 1`` digits with the item-ID digit, whose logits are ``item_logits``)."""
        loss = mtp_loss(logits, self.item_codes[targets])
        if self.item_id is None:
            return loss
        return self.item_id.mtp_loss(loss, item_logits, targets, self.n_codes)

    def _nrt_loss(
        self,
        tokens: torch.Tensor,
        hidden: torch.Tensor,
        item_seq_len: torch.Tensor,
        item_seq: torch.Tensor,
        valid_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""Noise-robustness triplet loss (unweighted).

        Anchor ``h``: clean hidden state; positive ``h̃``: hidden state of a perturbed copy of the
        input codes (item embeddings, with ``item_id_embedding``, unperturbed); negative ``h⁻``:
        the clean last-position state of the next sequence in the batch (batch rolled by one).
        ``nrt_positions: last`` uses each history's last valid position; ``all`` uses every valid
        position, each against the same ``h⁻``.
        """
        s = self.settings
        noisy = perturb_code_tokens(
            tokens, self.codebook_size, self.mask_token, s.nrt_mask_prob, s.nrt_sub_prob
        )
        hidden_noisy, _ = self.encode_tokens(noisy, items=item_seq)  # [B, T, d]
        last = item_seq_len - 1
        h_last = self.gather_indexes(hidden, last)  # [B, d]
        negative = h_last.roll(1, dims=0)  # [B, d]
        if s.nrt_positions == "last":
            anchor, positive = h_last, self.gather_indexes(hidden_noisy, last)
        else:
            valid = None
            if valid_index is None:
                valid = self._valid_mask(item_seq_len, hidden.size(1))  # [B, T]
            anchor = self._select_valid(hidden, valid, valid_index)  # [N, d]
            positive = self._select_valid(hidden_noisy, valid, valid_index)  # [N, d]
            negative = self._select_valid(
                negative.unsqueeze(1).expand_as(hidden), valid, valid_index
            )  # [N, d]
        return nrt_triplet_loss(anchor, positive, negative, s.nrt_margin, s.nrt_distance)

    def _mim_loss(
        self, hidden: torch.Tensor, item_seq_len: torch.Tensor, pos_items: torch.Tensor
    ) -> torch.Tensor:
        r"""InfoNCE between the mean-pooled history states and the target's input embedding."""
        valid = self._valid_mask(item_seq_len, hidden.size(1)).unsqueeze(-1)  # [B, T, 1]
        pooled = (hidden * valid).sum(1) / item_seq_len.unsqueeze(1).to(hidden.dtype)  # [B, d]
        target = self.embed_items(pos_items)  # [B, d]
        same_item = pos_items if self.settings.mim_mask_same_item else None
        return mim_info_nce(pooled, target, self.settings.mim_temperature, same_item)

    def _item_loss(
        self, logits: torch.Tensor, item_logits: torch.Tensor | None, targets: torch.Tensor
    ) -> torch.Tensor:
        r"""The item-level loss (unweighted): a softmax over all items of the digit logits summed
        along each item's codes (plus the item-ID digit's logit), divided by ``L``."""
        code_sums = self.exact_scores(logits)  # [N, n_items]
        if item_logits is not None:
            code_sums = code_sums + item_logits
        return item_softmax_loss(code_sums, targets, self.n_codes)

    # ----------------------------------------------------------------------------- ranking
    def predict(self, interaction: Any) -> torch.Tensor:
        r"""Score of the given item: ``Σ_l log p_l(code_l(item))`` (plus ``log p_item(item)``
        with the item-ID digit), shape ``[B]``."""
        h = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # [B, d]
        log_probs = self.code_log_probs(h)  # [B, L, K]
        test_item = interaction[self.ITEM_ID]  # [B]
        codes = self.item_codes[test_item]  # [B, L]
        scores = log_probs.gather(2, codes.unsqueeze(-1)).squeeze(-1).sum(-1)  # [B]
        if self.item_id is not None:
            log_p_item = self.item_id.log_probs(h)  # [B, n_items]
            scores = scores + log_p_item.gather(1, test_item.unsqueeze(1)).squeeze(1)
        return scores.masked_fill(test_item == 0, float("-inf"))

    def full_sort_predict(self, interaction: Any) -> torch.Tensor:
        r"""Scores of all items, ``Σ_l log p_l(code_l(item))`` (plus ``log p_item(item)`` with
        the item-ID digit), shape ``[B, n_items]``; the padding item 0 gets ``-inf``.

        ``decoding: exact`` scores every item; ``decoding: graph`` only the items
        graph-constrained decoding visits, the others ``-inf`` (:class:`CodeSumRanker`). On CPU
        the heads and the scores run ``RANK_CHUNK_USERS`` users at a time (their ``[B, L, K]``
        log-probabilities stay in cache; the same floats on Beauty, last bits elsewhere).
        """
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        h = self.forward(item_seq, item_seq_len)  # [B, d]
        step = RANK_CHUNK_USERS if h.device.type == "cpu" else h.size(0)
        if h.size(0) <= step:
            return self._rank(h, item_seq, item_seq_len)
        chunks = [slice(start, start + step) for start in range(0, h.size(0), step)]
        return torch.cat([self._rank(h[c], item_seq[c], item_seq_len[c]) for c in chunks])

    def _rank(
        self, h: torch.Tensor, item_seq: torch.Tensor, item_seq_len: torch.Tensor
    ) -> torch.Tensor:
        r""":meth:`full_sort_predict` of the hidden states ``h [B, d]``."""
        log_probs = self.code_log_probs(h)  # [B, L, K]
        item_term = None if self.item_id is None else self.item_id.log_probs(h)  # [B, n_items]
        codes = self.item_codes
        return self.ranker(log_probs, codes, item_seq, item_seq_len, self.item_graph, item_term)

    def exact_scores(self, log_probs: torch.Tensor) -> torch.Tensor:
        r"""``Σ_l log_probs[b, l, code_l(item)]`` for every item, ``[B, n_items]``
        (differentiable; :meth:`CodeSumRanker.exact_scores`)."""
        return self.ranker.exact_scores(log_probs, self.item_codes)

    def item_graph(self) -> torch.Tensor:
        r"""The item-neighbour graph of graph decoding, ``[n_items, graph_num_neighbors]``, built
        once per set of weights (see :class:`~recbole_fair.model.graph_decoding.ItemGraphCache`)."""
        return self.ranker.graph_cache.get(
            self.code_embedding.weight, self.code_table(), self.item_codes, self.settings.graph
        )
