r"""recbole_fair.model.tiger_settings
##################################

:class:`TIGERSettings`: every config key model TIGER reads, read and validated in one place
(``properties/model/TIGER.yaml`` documents each key and holds the paper's values, which are also
the defaults here). The semantic-ID keys other than ``rqvae_levels`` and ``rqvae_codebook_size``
are the tokenizer's (:class:`~recbole_fair.tokenizer.rqvae.RQVAESettings`).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from recbole_fair.errors import ConfigError

FEED_FORWARD = ("relu", "gelu", "gated-gelu", "gated-silu")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
EXACT_CHECK_MODES = ("bound", "full")

# Numeric keys: (lowest allowed value, whether that value itself is excluded). A number missing
# from the config (or an explicit ``~``) is an error: the YAML always gives one.
_BOUNDS = {
    "rqvae_levels": (1, False),
    "rqvae_codebook_size": (2, False),
    "hidden_size": (1, False),
    "inner_size": (1, False),
    "n_layers": (1, False),
    "n_decoder_layers": (1, False),
    "n_heads": (1, False),
    "head_dim": (1, False),
    "dropout_prob": (0, False),
    "layer_norm_eps": (0, True),
    "n_user_tokens": (0, False),
    "beam_size": (1, False),
    "tiger_exact_check_users": (0, False),
    "tiger_decode_chunk": (1, False),
    "tiger_length_groups": (1, False),
}

# Keys with a fixed set of values.
_CHOICES = {
    "feed_forward_proj": FEED_FORWARD,
    "attn_implementation": ATTN_IMPLEMENTATIONS,
    "tiger_exact_check_mode": EXACT_CHECK_MODES,
}


@dataclasses.dataclass
class TIGERSettings:
    r"""TIGER's settings (the config keys of the same name; see ``properties/model/TIGER.yaml``).

    Attributes:
        rqvae_levels (int): RQ-VAE levels ``M``; items have ``M + 1`` digits (+ collision digit).
        rqvae_codebook_size (int): codes per RQ-VAE level.
        hidden_size (int): T5 ``d_model``.
        inner_size (int): T5 ``d_ff``.
        n_layers (int): encoder layers.
        n_decoder_layers (int): decoder layers.
        n_heads (int): attention heads.
        head_dim (int): T5 ``d_kv``, the width of each head.
        dropout_prob (float): T5 dropout rate.
        layer_norm_eps (float): epsilon of T5's RMS norms.
        feed_forward_proj (str): one of :data:`FEED_FORWARD`.
        attn_implementation (str): training attention kernel, one of
            :data:`ATTN_IMPLEMENTATIONS`.
        n_user_tokens (int): hashed user tokens put before the history (0 = none).
        beam_size (int): beams of the constrained beam search, >= ``max(topk)``.
        tiger_exact_check_users (int): users per evaluation pass of the beam-vs-exact check.
        tiger_exact_check_mode (str): one of :data:`EXACT_CHECK_MODES`.
        tiger_decode_chunk (int): decoder sequences decoded at once.
        tiger_length_groups (int): at most this many groups of rows of similar history length
            per training batch, each trimmed to its own longest history (1 = the batch trimmed
            to its longest; :func:`~recbole_fair.model.host_batch.length_groups`).
        topk (list of int): RecBole's ``topk``, sorted and distinct ([] = no top-k check).
        loss_type (str): ``CE``, the only type.
        train_mode (str): ``prefix``, the only mode (one (history, next item) row per prefix).
    """

    rqvae_levels: int = 3
    rqvae_codebook_size: int = 256
    hidden_size: int = 128
    inner_size: int = 1024
    n_layers: int = 4
    n_decoder_layers: int = 4
    n_heads: int = 6
    head_dim: int = 64
    dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-6
    feed_forward_proj: str = "relu"
    attn_implementation: str = "sdpa"
    n_user_tokens: int = 2000
    beam_size: int = 20
    tiger_exact_check_users: int = 64
    tiger_exact_check_mode: str = "bound"
    tiger_decode_chunk: int = 4096
    tiger_length_groups: int = 8
    topk: list = dataclasses.field(default_factory=list)
    loss_type: str = "CE"
    train_mode: str = "prefix"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            key = field.name
            value = getattr(self, key)
            if key in _BOUNDS:
                setattr(self, key, _checked_number(key, value, *_BOUNDS[key], field.type))
            elif key in _CHOICES and value not in _CHOICES[key]:
                raise ConfigError(f"{key} must be one of {_CHOICES[key]}, got [{value}].")
        topk = self.topk
        self.topk = sorted({int(k) for k in ([topk] if isinstance(topk, int) else topk or [])})
        if self.topk and self.beam_size < max(self.topk):
            raise ConfigError(
                f"beam_size [{self.beam_size}] is smaller than the largest topk "
                f"[{max(self.topk)}] (topk = {self.topk}): beam search returns beam_size items "
                f"per user, so top-{max(self.topk)} metrics would be computed on fewer items. "
                f"Set beam_size >= {max(self.topk)}."
            )
        if self.loss_type != "CE":
            raise ConfigError(f"loss_type must be CE for TIGER, got [{self.loss_type}].")
        if self.train_mode != "prefix":
            raise ConfigError(
                f"TIGER trains one (history, next item) pair per row: set train_mode: prefix, "
                f"got [{self.train_mode}]."
            )

    @classmethod
    def from_config(cls, config: Any) -> TIGERSettings:
        r"""Read the settings from a RecBole ``Config`` (or any mapping returning ``None`` for a
        missing key). A missing number is an error naming the key; a missing or empty string
        key takes the default, a missing ``topk`` means no top-k check.

        Raises:
            ConfigError: a key is missing or out of range (the message names it).
        """
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            value = _get(config, field.name)
            if field.name in _BOUNDS and value is None:
                raise ConfigError(
                    f"config key [{field.name}] is missing; TIGER reads it from "
                    f"properties/model/TIGER.yaml."
                )
            if value is not None and value != "":
                values[field.name] = value
        return cls(**values)


def _get(config: Any, key: str) -> Any:
    r"""``config[key]``, or None when the key is absent (a RecBole ``Config`` or a plain dict)."""
    return config[key] if key in config else None


def _checked_number(key: str, value: Any, low: float, strict: bool, kind: str) -> Any:
    r"""``value`` as an ``int`` or ``float`` (``kind``, the field's annotation), after checking
    that it is a number ``>= low`` (``> low`` when ``strict``)."""
    if not isinstance(value, numbers.Real):
        raise ConfigError(f"{key} must be a number, got [{value}].")
    if value < low or (strict and value == low):
        raise ConfigError(f"{key} must be {'>' if strict else '>='} {low}, got [{value}].")
    return int(value) if kind == "int" else float(value)


__all__ = ["ATTN_IMPLEMENTATIONS", "EXACT_CHECK_MODES", "FEED_FORWARD", "TIGERSettings"]
