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

import warnings
from logging import getLogger
from typing import Any

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_fair.data.item_counts import item_popularity, recent_prior_size
from recbole_fair.model.calibration import prior_correction
from recbole_fair.model.graph_decoding import (
    GRAPH_DECODING_KEYS,
    GraphDecodingSettings,
    ItemGraphCache,
    graph_decode,
    popular_items,
    start_items,
)
from recbole_fair.model.host_batch import HostBatch, host_batch_of
from recbole_fair.model.layers import (
    ATTENTIONS,
    FAM_LAMBDA1,
    FAM_NORMS,
    HEAD_LOGITS,
    DigitHeads,
    TransformerStack,
    full_precision,
)
from recbole_fair.model.losses import (
    NRT_DISTANCES,
    item_softmax_loss,
    mim_info_nce,
    mtp_loss,
    nrt_triplet_loss,
    perturb_code_tokens,
)

TRAIN_MODES = ("all_positions", "prefix")
NRT_POSITIONS = ("last", "all")


def _choice(config: Any, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = config[key]
    if value is None and default is not None:
        return default
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got [{value}].")
    return value


def _flag(config: Any, key: str) -> bool:
    value = config[key]
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be True or False, got [{value}].")
    return value


def _number(
    config: Any, key: str, low: float = 0.0, strict: bool = False, default: float | None = None
) -> float:
    value = config[key]
    if value is None and default is not None:
        return default
    if value is None:
        raise ValueError(
            f"config key [{key}] is missing; FAIR reads it from properties/model/FAIR.yaml."
        )
    if value < low or (strict and value == low):
        raise ValueError(f"{key} must be {'>' if strict else '>='} {low}, got [{value}].")
    return value


class FAIR(SequentialRecommender):
    r"""FAIR: focused-attention generative recommendation over semantic IDs.

    Input: item ``i`` with codes ``c_1..c_L`` is embedded as the mean of its code-token embeddings
    (token ``1 + l*K + c_l``; 0 = padding, ``L*K + 1`` = mask), plus a learned position embedding.
    Encoder: ``n_layers`` pre-norm blocks with focused (or standard) causal attention. Output: ``L``
    residual heads, digit-``l`` logits = ``cos(head_l(h), E_l) / τ`` over the tied code table.

    Ranking: item scores ``Σ_l log p_l(c_l)`` (the paper), plus ``γ · b(item)`` with
    ``score_prior_correction = γ > 0``, the naive-Bayes prior correction of
    :mod:`recbole_fair.model.calibration` (a recbole-fair extension; ranking only, not the loss),
    whose item prior counts every training target, or with ``score_prior_recent = N > 0`` each
    user's ``N`` most recent training targets.

    Training: the paper's ``L_MTP + α·L_NRT + β·L_MIM``, plus, with ``item_loss_weight = w > 0``,
    ``w·L_item``: a softmax cross-entropy over all items whose logit is the ranking score
    ``(1/L) Σ_l logit_l(c_l(item))`` (a recbole-fair extension: it trains the score the evaluation
    ranks by, where the per-digit loss treats the 32 digits independently).

    Item-ID digit (``item_id_embedding: True``, a recbole-fair extension for items the codes
    cannot tell apart): every item also gets its own embedding ``e_i``, tied between input and
    output as SASRec's. It is added to the item's pooled code embedding in the history, and it is
    one more digit whose codebook is the item table: ``p_item(i) = softmax_i(cos(head(h), e_i) /
    τ)`` from one more residual head, trained by cross-entropy beside the ``L`` digits (the MTP
    loss becomes the mean over ``L + 1`` digits), ranked by ``Σ_l log p_l(c_l) + log p_item(i)``
    (and, with ``w > 0``, in the item-level loss as ``(Σ_l logit_l(c_l) + logit_item(i)) / L``).
    ``log p_item(i)`` already counts the item prior once, so with this digit the correction
    ``γ · b`` at ``γ = 1`` is naive Bayes plus one more ``log q(i)`` (a popularity term), not
    naive Bayes: an empirical weight, to select on validation (``benchmarks/score_calibration.py``).

    The dataset must carry ``dataset.item_codes`` (``LongTensor [n_items, n_codes]``, row 0 = the
    padding item), as recbole-fair's ``FAIRDataset`` does.
    """

    # recbole_fair.config.Config loads properties/semantic_ids.yaml for models with this flag.
    uses_semantic_ids = True
    # Digit logits and ranking scores stay float32 under autocast (autocast_dtype, see
    # recbole_fair.trainer.sync_free and recbole_fair.model.layers.full_precision).
    autocast_ranks_in_float32 = True
    # Optional keys read with a default when absent (not listed in FAIR.yaml, so that adding them
    # does not change the config hash of existing leaderboard cells): input_dropout_prob,
    # score_prior_correction (γ >= 0, default 0 = the paper's score; see
    # recbole_fair/model/calibration.py), score_prior_recent (N >= 0, default 0 = the correction's
    # prior counts every training target), item_loss_weight (w >= 0, default 0 = the paper's loss),
    # item_id_embedding (bool, default False = the paper's codes-only items) and the
    # graph-decoding keys.
    extra_config_keys = (
        "input_dropout_prob",
        "score_prior_correction",
        "score_prior_recent",
        "item_loss_weight",
        "item_id_embedding",
        *GRAPH_DECODING_KEYS,
    )

    def __init__(self, config: Any, dataset: Any) -> None:
        super().__init__(config, dataset)

        # load parameters info
        self.n_codes = int(_number(config, "n_codes", 1))
        self.codebook_size = int(_number(config, "codebook_size", 1))
        self.n_layers = int(_number(config, "n_layers", 1))
        self.n_heads = int(_number(config, "n_heads", 1))
        self.hidden_size = int(_number(config, "hidden_size", 1))
        self.inner_size = int(_number(config, "inner_size", 1))
        self.hidden_dropout_prob = _number(config, "hidden_dropout_prob")
        # dropout on the input embedding; absent = hidden_dropout_prob (RPG/GPT-2: embd_pdrop)
        self.input_dropout_prob = _number(
            config, "input_dropout_prob", default=self.hidden_dropout_prob
        )
        self.attn_dropout_prob = _number(config, "attn_dropout_prob")
        self.layer_norm_eps = _number(config, "layer_norm_eps", strict=True)
        self.initializer_range = _number(config, "initializer_range")
        self.input_layer_norm = bool(config["input_layer_norm"])

        # The keys of a switched-off part (focused attention, NRT, MIM) may be left out of the
        # config (RPG.yaml does): they then take a default and are never used.
        self.attention = _choice(config, "attention", ATTENTIONS)
        fam_off = self.attention != "focused"
        self.fam_lambda_init = config["fam_lambda_init"]  # None = per-layer schedule
        self.fam_lambda1 = _choice(
            config, "fam_lambda1", FAM_LAMBDA1, default="fixed_one" if fam_off else None
        )
        self.fam_norm = _choice(
            config, "fam_norm", FAM_NORMS, default="output_rmsnorm" if fam_off else None
        )
        self.fam_lambda_std = _number(config, "fam_lambda_std", default=0.1 if fam_off else None)

        self.head_logits = _choice(config, "head_logits", HEAD_LOGITS)
        self.head_temperature = _number(config, "head_temperature", strict=True)

        self.loss_type = _choice(config, "loss_type", ("CE",))
        self.train_mode = _choice(config, "train_mode", TRAIN_MODES)
        self.nrt_weight = _number(config, "nrt_weight")
        nrt_off = self.nrt_weight == 0
        self.nrt_mask_prob = _number(config, "nrt_mask_prob", default=0.0 if nrt_off else None)
        self.nrt_sub_prob = _number(config, "nrt_sub_prob", default=0.0 if nrt_off else None)
        self.nrt_margin = _number(config, "nrt_margin", default=0.0 if nrt_off else None)
        self.nrt_positions = _choice(
            config, "nrt_positions", NRT_POSITIONS, default="last" if nrt_off else None
        )
        self.nrt_distance = _choice(
            config, "nrt_distance", NRT_DISTANCES, default="squared_l2" if nrt_off else None
        )
        self.mim_weight = _number(config, "mim_weight")
        mim_off = self.mim_weight == 0
        self.mim_temperature = _number(
            config, "mim_temperature", strict=True, default=1.0 if mim_off else None
        )
        self.mim_mask_same_item = bool(config["mim_mask_same_item"])
        # item-level softmax over the ranking score; absent or 0 = the paper's loss (>= 0 checked
        # by _number)
        self.item_loss_weight = float(_number(config, "item_loss_weight", default=0.0))
        # an embedding per item beside its codes; absent or False = the paper's items
        self.item_id_embedding = _flag(config, "item_id_embedding")
        # ranking: exact (default) or RPG's graph-constrained decoding
        self.graph_settings = GraphDecodingSettings.from_config(config)
        self.decoding = self.graph_settings.decoding
        # ranking: weight of the naive-Bayes prior correction (recbole_fair.model.calibration);
        # absent or 0 = the paper's score
        self.score_prior_correction = float(_number(config, "score_prior_correction", default=0.0))
        if self.nrt_mask_prob + self.nrt_sub_prob > 1:
            raise ValueError(
                f"nrt_mask_prob [{self.nrt_mask_prob}] + nrt_sub_prob [{self.nrt_sub_prob}] "
                f"must be at most 1."
            )

        # semantic IDs of the items
        item_codes = self._check_item_codes(getattr(dataset, "item_codes", None))
        self.register_buffer("item_codes", item_codes)  # [n_items, L], codes in [0, K)
        digit_offset = 1 + torch.arange(self.n_codes) * self.codebook_size  # [L]
        self.register_buffer("digit_offset", digit_offset, persistent=False)
        self.mask_token = self.n_codes * self.codebook_size + 1
        self.vocab_size = self.n_codes * self.codebook_size + 2

        # define layers and loss
        self.code_embedding = nn.Embedding(self.vocab_size, self.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.input_norm = (
            nn.LayerNorm(self.hidden_size, eps=self.layer_norm_eps)
            if self.input_layer_norm
            else nn.Identity()
        )
        self.input_dropout = (
            nn.Dropout(self.input_dropout_prob) if self.input_dropout_prob > 0 else nn.Identity()
        )
        self.encoder = TransformerStack(
            n_layers=self.n_layers,
            hidden_size=self.hidden_size,
            n_heads=self.n_heads,
            inner_size=self.inner_size,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attn_dropout_prob=self.attn_dropout_prob,
            layer_norm_eps=self.layer_norm_eps,
            attention=self.attention,
            fam_lambda_init=self.fam_lambda_init,
            fam_lambda1=self.fam_lambda1,
            fam_norm=self.fam_norm,
            fam_lambda_std=self.fam_lambda_std,
        )
        self.heads = DigitHeads(
            self.n_codes, self.hidden_size, self.head_logits, self.head_temperature
        )
        if self.item_id_embedding:
            # e_i, tied between input and output; its own residual head, as each digit's
            self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
            self.item_head = DigitHeads(
                1, self.hidden_size, self.head_logits, self.head_temperature
            )

        # graph-constrained decoding: popular start items and the lazily built item graph
        popularity = item_popularity(dataset, self.n_items)
        self.register_buffer(
            "graph_popular_items",
            popular_items(popularity, self.graph_settings.graph_num_beams),
            persistent=False,
        )  # [S]
        self._item_graph = ItemGraphCache()
        # per-item prior correction b(i), added as score_prior_correction * b at ranking time;
        # its prior counts every training target, or each user's most recent ones
        self.score_prior_recent = recent_prior_size(config)
        prior_counts = popularity
        if self.score_prior_recent:
            prior_counts = getattr(dataset, "train_recent_target_counts", None)
            built_for = getattr(dataset, "train_recent_prior_size", None)
            if prior_counts is None or built_for != self.score_prior_recent:
                raise ValueError(
                    f"score_prior_recent [{self.score_prior_recent}]: the dataset carries no "
                    f"train_recent_target_counts for it (built for [{built_for}]); use "
                    f"recbole_fair's create_dataset (its semantic-ID dataset counts them while "
                    f"building the split), and with save_dataloaders: True delete the saved "
                    f"split (RecBole reuses it whatever score_prior_recent is)."
                )
            if not self.score_prior_correction:
                getLogger().warning(
                    f"score_prior_recent [{self.score_prior_recent}] has no effect while "
                    f"score_prior_correction is 0: set the correction's weight too."
                )
        self.register_buffer(
            "item_prior_bias",
            prior_correction(torch.as_tensor(prior_counts), item_codes, self.codebook_size),
            persistent=False,
        )  # [n_items]

        # parameters initialization
        self.apply(self._init_weights)
        with torch.no_grad():
            self.code_embedding.weight[0].zero_()
            if self.item_id_embedding:
                self.item_embedding.weight[0].zero_()

    def train(self, mode: bool = True) -> FAIR:
        r"""``nn.Module.train``; entering training mode drops the cached decoding graph."""
        if mode and hasattr(self, "_item_graph"):
            self._item_graph.clear()
        return super().train(mode)

    def _check_item_codes(self, item_codes: torch.Tensor | None) -> torch.Tensor:
        if item_codes is None:
            raise ValueError(
                "FAIR needs its semantic-ID dataset: `dataset.item_codes` is missing. Use "
                "recbole_fair's create_dataset (it builds a FAIRDataset for model FAIR)."
            )
        item_codes = torch.as_tensor(item_codes).long().cpu().clone()
        if item_codes.dim() != 2 or item_codes.size(0) != self.n_items:
            raise ValueError(
                f"dataset.item_codes must have shape [n_items={self.n_items}, n_codes], "
                f"got {tuple(item_codes.shape)}."
            )
        if item_codes.size(1) != self.n_codes:
            raise ValueError(
                f"n_codes [{self.n_codes}] does not match dataset.item_codes "
                f"({item_codes.size(1)} codes per item)."
            )
        if item_codes.numel() and (item_codes.min() < 0 or item_codes.max() >= self.codebook_size):
            raise ValueError(
                f"dataset.item_codes must lie in [0, codebook_size={self.codebook_size}), "
                f"got range [{int(item_codes.min())}, {int(item_codes.max())}]."
            )
        return item_codes

    def _init_weights(self, module: nn.Module) -> None:
        r"""RecBole's initialisation: normal(0, initializer_range) weights, zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
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
        (``tokens``, default the items' own codes), plus ``e_i`` with ``item_id_embedding``."""
        emb = self.embed_tokens(self.item_tokens(items) if tokens is None else tokens)
        if self.item_id_embedding:
            emb = emb + self.item_embedding(items)
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
                embeddings are added with ``item_id_embedding`` (required then).

        Returns:
            tuple: hidden states ``[B, T, d]`` and the maps (``None`` unless requested).
        """
        T = tokens.size(1)
        position_ids = torch.arange(T, device=tokens.device)  # [T]
        if self.item_id_embedding and items is None:
            raise ValueError("encode_tokens needs the history's items with item_id_embedding.")
        emb = self.embed_tokens(tokens) if items is None else self.embed_items(items, tokens)
        x = emb + self.position_embedding(position_ids)  # [B, T, d]
        x = self.input_dropout(self.input_norm(x))
        return self.encoder(x, return_maps=return_maps)

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
        r"""Hidden state at the last valid position of each history.

        Args:
            item_seq (torch.Tensor): item ids, left-aligned, shape ``[B, T]``.
            item_seq_len (torch.Tensor): history lengths, shape ``[B]``.

        Returns:
            torch.Tensor: shape ``[B, d]``.
        """
        hidden = self.encode(item_seq, item_seq_len)  # [B, T', d]
        return self.gather_indexes(hidden, item_seq_len - 1)  # [B, d]

    def digit_log_probs(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        r"""Log-probabilities of every code of every digit of the next item, ``[B, L, K]``."""
        logits = self.heads(self.forward(item_seq, item_seq_len), self.code_table())
        return logits.log_softmax(dim=-1)

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
    def calculate_loss(self, interaction: Any) -> tuple[torch.Tensor, ...]:
        r"""Training losses of a batch.

        Returns:
            tuple: ``(L_MTP, α·L_NRT, β·L_MIM)``, and ``w·L_item`` fourth when
            ``item_loss_weight = w > 0``; a part whose weight is 0 is a constant 0 and is not
            computed (no second forward pass for NRT); so are NRT and MIM on a batch of one
            sequence (they need the batch's other sequences as negatives).
        """
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        # trimmed on the host by prepare_batch (recbole-fair's trainer), else here
        host = host_batch_of(interaction, item_seq)
        if host is None:
            item_seq = self.trim(item_seq, item_seq_len)  # [B, T]
        valid_index = host.valid_index if host is not None else None
        tokens = self.item_tokens(item_seq)  # [B, T, L]
        hidden, _ = self.encode_tokens(tokens, items=item_seq)  # [B, T, d]

        if self.train_mode == "all_positions":
            # position t predicts item_seq[t + 1]; the last valid position predicts the target.
            valid = (
                None
                if valid_index is not None
                else self._valid_mask(item_seq_len, item_seq.size(1))
            )
            targets = torch.cat([item_seq[:, 1:], item_seq.new_zeros(item_seq.size(0), 1)], 1)
            targets = targets.scatter(1, (item_seq_len - 1).unsqueeze(1), pos_items.unsqueeze(1))
            h = self._select_valid(hidden, valid, valid_index)  # [N, d]
            targets = self._select_valid(targets, valid, valid_index)  # [N]
        else:
            h, targets = self.gather_indexes(hidden, item_seq_len - 1), pos_items  # [B, d], [B]
        logits = self.heads(h, self.code_table())  # [N, L, K]
        loss_mtp = mtp_loss(logits, self.item_codes[targets])
        if self.item_id_embedding:
            # the item-ID digit: one more cross-entropy, over the items (padding item left out)
            item_logits = self.item_logits(h)  # [N, n_items]
            loss_id = F.cross_entropy(item_logits[:, 1:], targets - 1)
            loss_mtp = (self.n_codes * loss_mtp + loss_id) / (self.n_codes + 1)

        zero = loss_mtp.new_zeros(())
        # NRT's negative and MIM's in-batch negatives are the batch's other sequences: a batch of
        # one sequence (RecBole keeps a last partial batch) has none, so both terms are 0 there
        in_batch = item_seq.size(0) > 1
        loss_nrt = (
            self.nrt_weight * self._nrt_loss(tokens, hidden, item_seq_len, item_seq, valid_index)
            if self.nrt_weight > 0 and in_batch
            else zero
        )
        loss_mim = (
            self.mim_weight * self._mim_loss(hidden, item_seq_len, pos_items)
            if self.mim_weight > 0 and in_batch
            else zero
        )
        if self.item_loss_weight > 0:
            code_sums = self.exact_scores(logits)  # [N, n_items]
            if self.item_id_embedding:
                code_sums = code_sums + item_logits
            loss_item = item_softmax_loss(code_sums, targets, self.n_codes)
            return loss_mtp, loss_nrt, loss_mim, self.item_loss_weight * loss_item
        return loss_mtp, loss_nrt, loss_mim

    @staticmethod
    def _valid_mask(item_seq_len: torch.Tensor, T: int) -> torch.Tensor:
        positions = torch.arange(T, device=item_seq_len.device)
        return positions.unsqueeze(0) < item_seq_len.unsqueeze(1)  # [B, T]

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
        noisy = perturb_code_tokens(
            tokens, self.codebook_size, self.mask_token, self.nrt_mask_prob, self.nrt_sub_prob
        )
        hidden_noisy, _ = self.encode_tokens(noisy, items=item_seq)  # [B, T, d]
        last = item_seq_len - 1
        h_last = self.gather_indexes(hidden, last)  # [B, d]
        negative = h_last.roll(1, dims=0)  # [B, d]
        if self.nrt_positions == "last":
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
        return nrt_triplet_loss(anchor, positive, negative, self.nrt_margin, self.nrt_distance)

    def _mim_loss(
        self, hidden: torch.Tensor, item_seq_len: torch.Tensor, pos_items: torch.Tensor
    ) -> torch.Tensor:
        r"""InfoNCE between the mean-pooled history states and the target's input embedding."""
        valid = self._valid_mask(item_seq_len, hidden.size(1)).unsqueeze(-1)  # [B, T, 1]
        pooled = (hidden * valid).sum(1) / item_seq_len.unsqueeze(1).to(hidden.dtype)  # [B, d]
        target = self.embed_items(pos_items)  # [B, d]
        same_item = pos_items if self.mim_mask_same_item else None
        return mim_info_nce(pooled, target, self.mim_temperature, same_item)

    # ----------------------------------------------------------------------------- ranking
    def item_logits(self, h: torch.Tensor) -> torch.Tensor:
        r"""Logits of the item-ID digit, ``cos(head(h), e_i) / τ`` (or the dot product) for every
        item, ``[N, n_items]`` (``item_id_embedding`` only)."""
        return self.item_head(h, self.item_embedding.weight.unsqueeze(0)).squeeze(1)

    def _ranking_parts(
        self, item_seq: torch.Tensor, item_seq_len: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""Digit log-probabilities ``[B, L, K]`` and, with ``item_id_embedding``, the item-ID
        digit's ``log p_item`` ``[B, n_items]`` (padding item ``-inf``; else ``None``)."""
        if not self.item_id_embedding:
            return self.digit_log_probs(item_seq, item_seq_len), None
        h = self.forward(item_seq, item_seq_len)  # [B, d]
        log_probs = self.heads(h, self.code_table()).log_softmax(dim=-1)
        log_p_item = self.item_logits(h)[:, 1:].log_softmax(dim=-1)  # [B, n_items - 1]
        return log_probs, F.pad(log_p_item, (1, 0), value=float("-inf"))

    def predict(self, interaction: Any) -> torch.Tensor:
        r"""Score of the given item: ``Σ_l log p_l(code_l(item))`` (plus the item term with
        ``item_id_embedding``), shape ``[B]``."""
        log_probs, item_term = self._ranking_parts(
            interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        )  # [B, L, K]
        test_item = interaction[self.ITEM_ID]  # [B]
        codes = self.item_codes[test_item]  # [B, L]
        scores = log_probs.gather(2, codes.unsqueeze(-1)).squeeze(-1).sum(-1)  # [B]
        if item_term is not None:
            scores = scores + item_term.gather(1, test_item.unsqueeze(1)).squeeze(1)
        if self.score_prior_correction:
            scores = scores + self.score_prior_correction * self.item_prior_bias[test_item]
        return scores.masked_fill(test_item == 0, float("-inf"))

    def item_graph(self) -> torch.Tensor:
        r"""The item-neighbour graph of graph decoding, ``[n_items, graph_num_neighbors]``, built
        once per set of weights (see :class:`~recbole_fair.model.graph_decoding.ItemGraphCache`)."""
        return self._item_graph.get(
            self.code_embedding.weight, self.code_table(), self.item_codes, self.graph_settings
        )

    def full_sort_predict(self, interaction: Any) -> torch.Tensor:
        r"""Scores of all items, ``Σ_l log p_l(code_l(item))``, shape ``[B, n_items]``, plus
        ``score_prior_correction · b(item)`` when that weight is not 0
        (:mod:`recbole_fair.model.calibration`), plus the item-ID digit's ``log p_item(i)`` with
        ``item_id_embedding``.

        ``decoding: exact``: every item, accumulated digit by digit (one ``[B, n_items]`` gather
        per digit). ``decoding: graph``: only the items visited by graph-constrained decoding
        get their (exact) score, the others ``-inf``. The padding item 0 gets ``-inf``.
        """
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        log_probs, item_term = self._ranking_parts(item_seq, item_seq_len)  # [B, L, K]
        # the scores (sums of float32 log-probabilities) in float32, also under autocast
        with full_precision(log_probs):
            return self._rank(item_seq, item_seq_len, log_probs, item_term)

    def _rank(
        self,
        item_seq: torch.Tensor,
        item_seq_len: torch.Tensor,
        log_probs: torch.Tensor,
        item_term: torch.Tensor | None,
    ) -> torch.Tensor:
        r"""The scores of :meth:`full_sort_predict` from the digit log-probabilities."""
        if self.decoding == "graph":
            settings = self.graph_settings
            start = start_items(
                item_seq,
                item_seq_len,
                self.graph_popular_items,
                settings.graph_start,
                settings.graph_num_beams,
            )  # [B, M]
            scores = graph_decode(
                log_probs,
                self.item_codes,
                self.item_graph(),
                start,
                settings.graph_beam_size,
                settings.graph_steps,
            )
        else:
            scores = self.exact_scores(log_probs)  # [B, n_items]
        if item_term is not None:
            scores += item_term  # graph decoding: visited by code scores, ranked by the full one
        if self.score_prior_correction:
            scores += self.score_prior_correction * self.item_prior_bias  # -inf stays -inf
        scores[:, 0] = float("-inf")
        return scores

    def exact_scores(self, log_probs: torch.Tensor) -> torch.Tensor:
        r"""``Σ_l log_probs[b, l, code_l(item)]`` for every item, shape ``[B, n_items]``
        (differentiable: the training loss ``item_loss_weight`` uses it on the digit logits).

        One sparse-dense product ``C · P^T`` with ``C`` the ``[n_items, L*K]`` CSR one-hot matrix
        of the items' code tokens (32 non-zeros a row; built once per device/dtype/codes) — about
        5x faster on CPU than ``L`` gathers of ``[B, n_items]``, which remain the fallback where
        sparse CSR products are not supported.
        """
        B = log_probs.size(0)
        with full_precision(log_probs):  # a sparse product autocast would run in bfloat16
            try:
                codes = self._code_matrix(log_probs.device, log_probs.dtype)
                return (codes @ log_probs.reshape(B, -1).T).T.contiguous()  # [B, n_items]
            except (RuntimeError, NotImplementedError):
                return self._exact_scores_gather(log_probs)

    def _exact_scores_gather(self, log_probs: torch.Tensor) -> torch.Tensor:
        scores = log_probs.new_zeros(log_probs.size(0), self.n_items)  # [B, n_items]
        for digit in range(self.n_codes):
            scores += log_probs[:, digit].index_select(1, self.item_codes[:, digit])
        return scores

    def _code_matrix(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (device, dtype, self.item_codes.data_ptr(), self.item_codes._version)
        cached = getattr(self, "_code_matrix_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        n_items, n_codes = self.item_codes.shape
        offsets = torch.arange(n_codes, device=device) * self.codebook_size  # [L]
        columns = (self.item_codes.to(device) + offsets).reshape(-1)  # [n_items * L]
        rows = torch.arange(0, n_items * n_codes + 1, n_codes, device=device)  # CSR row pointers
        values = torch.ones(n_items * n_codes, device=device, dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            matrix = torch.sparse_csr_tensor(
                rows, columns, values, size=(n_items, n_codes * self.codebook_size)
            )
        self._code_matrix_cache = (key, matrix)
        return matrix
