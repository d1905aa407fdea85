r"""recbole_fair.model.action_settings
###################################

The settings of the action-prediction models (``Interleaved``, ``AttnLFA``, ``AttnMVP``), read
and validated from the RecBole config in one place: :class:`ActionModelSettings` (the encoder
keys the three models share, ``properties/model/<Model>.yaml``) and :class:`AttnLFASettings`
(plus ``lfa_pooling``). An invalid value raises :class:`~recbole_fair.errors.ConfigError` naming
the key. The action keys of the data (``action_field``, ``action_types``) are read by
:class:`~recbole_fair.data.action_dataset.ActionSequenceDataset`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from recbole_fair.errors import ConfigError
from recbole_fair.model.settings import ConfigReader

ATTENTION_TYPES = ("softmax", "silu")


@dataclasses.dataclass(frozen=True)
class ActionModelSettings:
    r"""The encoder settings shared by the action models (the config keys of the same name).

    Attributes:
        hidden_size (int): the width ``d`` of embeddings and hidden states.
        n_layers (int): Transformer blocks.
        n_heads (int): attention heads (divides ``hidden_size``).
        inner_size (int): the feed-forward width.
        attention_type (str): ``softmax`` or ``silu`` (HSTU-style pointwise attention).
        hidden_dropout_prob (float): dropout on embeddings and residual branches.
        attn_dropout_prob (float): dropout on attention weights.
        layer_norm_eps (float): LayerNorm epsilon.
        initializer_range (float): std of the normal weight initialisation.
    """

    hidden_size: int
    n_layers: int
    n_heads: int
    inner_size: int
    attention_type: str
    hidden_dropout_prob: float
    attn_dropout_prob: float
    layer_norm_eps: float
    initializer_range: float

    @classmethod
    def from_config(cls, config: Any, model: str) -> ActionModelSettings:
        r"""Read and validate the settings of ``model`` (its YAML names the keys).

        Raises:
            ConfigError: a key is missing or out of range, or ``n_heads`` does not divide
                ``hidden_size``.
        """
        read = ConfigReader(config, f"{model} reads it from properties/model/{model}.yaml")
        settings = cls(**cls._read(read))
        if settings.hidden_size % settings.n_heads != 0:
            raise ConfigError(
                f"hidden_size [{settings.hidden_size}] must be divisible by n_heads "
                f"[{settings.n_heads}]."
            )
        return settings

    @classmethod
    def _read(cls, read: ConfigReader) -> dict[str, Any]:
        return dict(
            hidden_size=read.integer("hidden_size", low=1),
            n_layers=read.integer("n_layers", low=0),
            n_heads=read.integer("n_heads", low=1),
            inner_size=read.integer("inner_size", low=1),
            attention_type=read.choice("attention_type", ATTENTION_TYPES),
            hidden_dropout_prob=read.number("hidden_dropout_prob"),
            attn_dropout_prob=read.number("attn_dropout_prob"),
            layer_norm_eps=read.number("layer_norm_eps", strict=True),
            initializer_range=read.number("initializer_range"),
        )


@dataclasses.dataclass(frozen=True)
class AttnLFASettings(ActionModelSettings):
    r"""AttnLFA's settings: the shared encoder's and ``lfa_pooling`` (bool: pool the past actions
    by item similarity; ``False`` leaves the item-only encoder, an ablation)."""

    lfa_pooling: bool

    @classmethod
    def _read(cls, read: ConfigReader) -> dict[str, Any]:
        return {**super()._read(read), "lfa_pooling": read.flag("lfa_pooling")}
