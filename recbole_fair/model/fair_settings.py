r"""recbole_fair.model.fair_settings
#################################

:class:`FAIRSettings`: every setting of FAIR (and of RPG, FAIR with three switches fixed), read
and validated from the RecBole config in one place. The keys and their defaults are those of
``properties/model/FAIR.yaml`` (RPG: ``RPG.yaml``); an invalid value raises
:class:`~recbole_fair.errors.ConfigError` naming the key.

The keys of a switched-off part (focused attention with ``attention: standard``, NRT with
``nrt_weight: 0``, MIM with ``mim_weight: 0``) may be left out of the config (``RPG.yaml`` does):
they then take a neutral value and are never used. The recbole-fair extensions
(``input_dropout_prob``, ``item_id_embedding``, ``item_loss_weight``, the graph-decoding keys)
default to the paper's method when absent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch

from recbole_fair.errors import ConfigError
from recbole_fair.model.graph_decoding import GraphDecodingSettings
from recbole_fair.model.layers import ATTENTIONS, FAM_LAMBDA1, FAM_NORMS, HEAD_LOGITS
from recbole_fair.model.losses import NRT_DISTANCES
from recbole_fair.model.settings import ConfigReader

TRAIN_MODES = ("all_positions", "prefix")
NRT_POSITIONS = ("last", "all")


@dataclasses.dataclass(frozen=True)
class FAIRSettings:
    r"""FAIR's settings (the config keys of the same name, see ``properties/model/FAIR.yaml``).

    Attributes:
        n_codes, codebook_size: the semantic IDs, ``L`` digits of ``K`` codes.
        n_layers, n_heads, hidden_size, inner_size, hidden_dropout_prob, input_dropout_prob,
        attn_dropout_prob, layer_norm_eps, initializer_range, input_layer_norm: the Transformer
            (``input_dropout_prob`` absent = ``hidden_dropout_prob``).
        attention, fam_lambda_init, fam_lambda1, fam_norm, fam_lambda_std: focused attention.
        head_logits, head_temperature: the per-digit heads.
        loss_type, train_mode: the MTP loss and where it is read.
        nrt_weight, nrt_mask_prob, nrt_sub_prob, nrt_margin, nrt_positions, nrt_distance: NRT.
        mim_weight, mim_temperature, mim_mask_same_item: MIM.
        item_id_embedding, item_loss_weight: recbole-fair extensions (off: the paper's model).
        graph (GraphDecodingSettings): ``decoding`` and the ``graph_*`` keys.
    """

    # semantic IDs
    n_codes: int
    codebook_size: int
    # Transformer
    n_layers: int
    n_heads: int
    hidden_size: int
    inner_size: int
    hidden_dropout_prob: float
    input_dropout_prob: float
    attn_dropout_prob: float
    layer_norm_eps: float
    initializer_range: float
    input_layer_norm: bool
    # focused attention
    attention: str
    fam_lambda_init: float | None
    fam_lambda1: str
    fam_norm: str
    fam_lambda_std: float
    # prediction heads
    head_logits: str
    head_temperature: float
    # losses
    loss_type: str
    train_mode: str
    nrt_weight: float
    nrt_mask_prob: float
    nrt_sub_prob: float
    nrt_margin: float
    nrt_positions: str
    nrt_distance: str
    mim_weight: float
    mim_temperature: float
    mim_mask_same_item: bool
    # recbole-fair extensions
    item_id_embedding: bool
    item_loss_weight: float
    graph: GraphDecodingSettings

    @classmethod
    def from_config(
        cls, config: Any, model: str = "FAIR", preset: Mapping[str, Any] | None = None
    ) -> FAIRSettings:
        r"""Read and validate the settings.

        Args:
            config: a RecBole ``Config`` (or a mapping; an absent key reads as ``None``).
            model (str): the model name, for the messages (its YAML is
                ``properties/model/<model>.yaml``).
            preset (Mapping, optional): keys the model fixes (RPG's switches): an absent key
                takes the preset's value, another value is an error.

        Raises:
            ConfigError: a key is missing, out of range or not one of its choices.
        """
        source = f"{model} reads it from properties/model/{model}.yaml"
        hint = f": {model} is FAIR with {dict(preset or {})}; use model FAIR to change it."
        read = ConfigReader(config, source, preset, hint)
        settings = cls(
            **_transformer(read),
            **_focused_attention(read),
            **_heads_and_losses(read),
            item_id_embedding=read.flag("item_id_embedding", default=False),
            item_loss_weight=float(read.number("item_loss_weight", default=0.0)),
            graph=GraphDecodingSettings.from_config(config),
        )
        if settings.nrt_mask_prob + settings.nrt_sub_prob > 1:
            raise ConfigError(
                f"nrt_mask_prob [{settings.nrt_mask_prob}] + nrt_sub_prob "
                f"[{settings.nrt_sub_prob}] must be at most 1."
            )
        return settings

    def transformer_args(self) -> dict[str, Any]:
        r"""The keyword arguments of :class:`~recbole_fair.model.layers.TransformerStack`."""
        keys = ("n_layers", "hidden_size", "n_heads", "inner_size", "hidden_dropout_prob")
        keys += ("attn_dropout_prob", "layer_norm_eps", "attention", "fam_lambda_init")
        keys += ("fam_lambda1", "fam_norm", "fam_lambda_std")
        return {key: getattr(self, key) for key in keys}


def _transformer(read: ConfigReader) -> dict[str, Any]:
    hidden_dropout_prob = read.number("hidden_dropout_prob")
    return dict(
        n_codes=read.integer("n_codes", low=1),
        codebook_size=read.integer("codebook_size", low=1),
        n_layers=read.integer("n_layers", low=1),
        n_heads=read.integer("n_heads", low=1),
        hidden_size=read.integer("hidden_size", low=1),
        inner_size=read.integer("inner_size", low=1),
        hidden_dropout_prob=hidden_dropout_prob,
        # dropout on the input embedding; absent = hidden_dropout_prob (RPG/GPT-2: embd_pdrop)
        input_dropout_prob=read.number("input_dropout_prob", default=hidden_dropout_prob),
        attn_dropout_prob=read.number("attn_dropout_prob"),
        layer_norm_eps=read.number("layer_norm_eps", strict=True),
        initializer_range=read.number("initializer_range"),
        input_layer_norm=read.flag("input_layer_norm"),
    )


def _focused_attention(read: ConfigReader) -> dict[str, Any]:
    attention = read.choice("attention", ATTENTIONS)
    off = attention != "focused"  # then the fam_* keys may be absent
    return dict(
        attention=attention,
        fam_lambda_init=read.optional_number("fam_lambda_init"),  # None = per-layer schedule
        fam_lambda1=read.choice("fam_lambda1", FAM_LAMBDA1, "fixed_one" if off else None),
        fam_norm=read.choice("fam_norm", FAM_NORMS, "output_rmsnorm" if off else None),
        fam_lambda_std=read.number("fam_lambda_std", default=0.1 if off else None),
    )


def _heads_and_losses(read: ConfigReader) -> dict[str, Any]:
    nrt_weight = read.number("nrt_weight")
    mim_weight = read.number("mim_weight")
    nrt_off, mim_off = nrt_weight == 0, mim_weight == 0  # then their other keys may be absent
    return dict(
        head_logits=read.choice("head_logits", HEAD_LOGITS),
        head_temperature=read.number("head_temperature", strict=True),
        loss_type=read.choice("loss_type", ("CE",)),
        train_mode=read.choice("train_mode", TRAIN_MODES),
        nrt_weight=nrt_weight,
        nrt_mask_prob=read.number("nrt_mask_prob", default=0.0 if nrt_off else None),
        nrt_sub_prob=read.number("nrt_sub_prob", default=0.0 if nrt_off else None),
        nrt_margin=read.number("nrt_margin", default=0.0 if nrt_off else None),
        nrt_positions=read.choice("nrt_positions", NRT_POSITIONS, "last" if nrt_off else None),
        nrt_distance=read.choice("nrt_distance", NRT_DISTANCES, "squared_l2" if nrt_off else None),
        mim_weight=mim_weight,
        mim_temperature=read.number(
            "mim_temperature", strict=True, default=1.0 if mim_off else None
        ),
        mim_mask_same_item=read.flag("mim_mask_same_item", False if mim_off else None),
    )


def check_item_codes(item_codes: Any, n_items: int, settings: FAIRSettings) -> torch.Tensor:
    r"""The dataset's semantic IDs as a ``LongTensor [n_items, n_codes]`` on the CPU (a copy),
    checked against the settings.

    Raises:
        ValueError: the dataset carries no codes, or codes of the wrong shape.
        ConfigError: ``n_codes`` or ``codebook_size`` does not fit the codes.
    """
    if item_codes is None:
        raise ValueError(
            "FAIR needs its semantic-ID dataset: `dataset.item_codes` is missing. Use "
            "recbole_fair's create_dataset (it builds a FAIRDataset for model FAIR)."
        )
    item_codes = torch.as_tensor(item_codes).long().cpu().clone()
    if item_codes.dim() != 2 or item_codes.size(0) != n_items:
        raise ValueError(
            f"dataset.item_codes must have shape [n_items={n_items}, n_codes], "
            f"got {tuple(item_codes.shape)}."
        )
    if item_codes.size(1) != settings.n_codes:
        raise ConfigError(
            f"n_codes [{settings.n_codes}] does not match dataset.item_codes "
            f"({item_codes.size(1)} codes per item)."
        )
    K = settings.codebook_size
    if item_codes.numel() and (item_codes.min() < 0 or item_codes.max() >= K):
        raise ConfigError(
            f"dataset.item_codes must lie in [0, codebook_size={K}), "
            f"got range [{int(item_codes.min())}, {int(item_codes.max())}]."
        )
    return item_codes
