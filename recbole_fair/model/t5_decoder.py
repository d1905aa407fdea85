r"""recbole_fair.model.t5_decoder
##############################

TIGER's T5 and an incremental pass over its decoder's weights.

:func:`build_t5` makes the ``transformers.T5ForConditionalGeneration`` that TIGER trains through
transformers' own (teacher-forced) forward. Inference does not go through ``generate``: it runs
the decoder blocks by hand (:func:`decode`), so that

* the encoder output is projected to cross-attention keys and values once per user
  (:func:`decoder_context`) and shared by all of the user's beams or candidate items, and
* the self-attention keys and values are cached per beam and reordered with the beams by the
  caller (the beam search gathers them by parent index).

The arithmetic is that of transformers' ``T5Stack`` in eval mode (no dropout): RMS norms,
unscaled dot products plus the relative position bias of the first self-attention layer (shared
by all layers), the causal mask, residual connections, the final norm and the output scale.
``tests/test_tiger.py`` checks the scores against transformers' forward.

This module reads T5's submodules by attribute (``block[i].layer[0].SelfAttention.q``,
``relative_attention_bias``, ``_relative_position_bucket``), i.e. it is written against
transformers' internals; it is the only place that does. Transformers-version shims:

* :func:`decoder_output_scale`: transformers < 5 scales the decoder output by ``d_model ** -0.5``
  when the input and output embeddings are tied (``tie_word_embeddings``, default True);
  transformers 5 names that ``scale_decoder_outputs``. Can go when transformers < 5 is no longer
  supported (``setup.cfg``).
* :func:`build_t5` sets the attention kernel of training (``sdpa`` or ``eager``) through the
  private ``T5Config._attn_implementation`` after building the config, which every transformers
  version with ``sdpa`` honours (recent versions also take ``attn_implementation=`` in the
  config's constructor). Can go when the oldest supported transformers takes the public argument.

Reference:
    Colin Raffel et al. "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
    Transformer." JMLR 2020 (T5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import T5Config, T5ForConditionalGeneration


def build_t5(settings: Any, vocab_size: int) -> T5ForConditionalGeneration:
    r"""A randomly initialised T5 (transformers' own initialisation) of TIGER's size.

    Args:
        settings: :class:`~recbole_fair.model.tiger_settings.TIGERSettings` (``hidden_size``,
            ``head_dim``, ``inner_size``, ``n_layers``, ``n_decoder_layers``, ``n_heads``,
            ``dropout_prob``, ``layer_norm_eps``, ``feed_forward_proj``, ``attn_implementation``).
        vocab_size (int): tokens (padding, code tokens, user tokens).

    Returns:
        T5ForConditionalGeneration: padding and decoder start token 0, no EOS, no cache.
    """
    t5_config = T5Config(
        vocab_size=vocab_size,
        d_model=settings.hidden_size,
        d_kv=settings.head_dim,
        d_ff=settings.inner_size,
        num_layers=settings.n_layers,
        num_decoder_layers=settings.n_decoder_layers,
        num_heads=settings.n_heads,
        dropout_rate=settings.dropout_prob,
        layer_norm_epsilon=settings.layer_norm_eps,
        feed_forward_proj=settings.feed_forward_proj,
        pad_token_id=0,
        eos_token_id=None,
        decoder_start_token_id=0,
        use_cache=False,
    )
    t5_config._attn_implementation = settings.attn_implementation  # shim, see the docstring
    return T5ForConditionalGeneration(t5_config)


def decoder_output_scale(config: T5Config) -> float:
    r"""The factor transformers applies to the decoder's final hidden states before the LM head
    (a transformers-version shim, see the module docstring)."""
    scale = getattr(config, "scale_decoder_outputs", None)
    if scale is None:  # transformers < 5: decoder outputs are scaled when embeddings are tied
        scale = getattr(config, "tie_word_embeddings", True)
    return config.d_model**-0.5 if scale else 1.0


@dataclass
class DecoderContext:
    r"""What every decoding step needs from the encoder, computed once per user.

    Attributes:
        cross (list): per decoder layer, the cross-attention ``(K, V)`` of the encoder output,
            each ``[B, H, S, dk]``.
        cross_bias (torch.Tensor): ``[B, 1, 1, S]``, 0 at history tokens, the dtype minimum at
            padding.
        self_bias (torch.Tensor): ``[H, C, C]``, the decoder's relative position bias plus the
            causal mask.
    """

    cross: list
    cross_bias: torch.Tensor
    self_bias: torch.Tensor

    @property
    def users(self) -> int:
        r"""``B``, the users of the context."""
        return self.cross_bias.size(0)

    def slice(self, start: int, end: int) -> DecoderContext:
        r"""The context of users ``start..end-1``."""
        return DecoderContext(
            cross=[(k[start:end], v[start:end]) for k, v in self.cross],
            cross_bias=self.cross_bias[start:end],
            self_bias=self.self_bias,
        )


def self_attention_bias(t5: T5ForConditionalGeneration, length: int, device: Any) -> torch.Tensor:
    r"""Relative position bias of the decoder plus the causal mask, ``[H, length, length]``."""
    attention = t5.decoder.block[0].layer[0].SelfAttention
    position = torch.arange(length, device=device)
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


def decoder_context(
    t5: T5ForConditionalGeneration, hidden: torch.Tensor, mask: torch.Tensor, length: int
) -> DecoderContext:
    r"""The :class:`DecoderContext` of a batch of users.

    Args:
        t5: the model.
        hidden (torch.Tensor): encoder output, shape ``[B, S, d]``.
        mask (torch.Tensor): bool encoder mask, shape ``[B, S]``.
        length (int): ``C``, the longest decoder sequence (digits per item).
    """
    B, S, _ = hidden.shape
    H, dk = t5.config.num_heads, t5.config.d_kv
    cross = []
    for block in t5.decoder.block:
        attention = block.layer[1].EncDecAttention
        k = attention.k(hidden).view(B, S, H, dk).transpose(1, 2)
        v = attention.v(hidden).view(B, S, H, dk).transpose(1, 2)
        cross.append((k, v))  # [B, H, S, dk] each
    cross_bias = torch.zeros(B, 1, 1, S, dtype=hidden.dtype, device=hidden.device)
    cross_bias = cross_bias.masked_fill(~mask.view(B, 1, 1, S), torch.finfo(hidden.dtype).min)
    return DecoderContext(cross, cross_bias, self_attention_bias(t5, length, hidden.device))


def decode(
    t5: T5ForConditionalGeneration,
    tokens: torch.Tensor,
    context: DecoderContext,
    cache: list | None = None,
) -> tuple[torch.Tensor, list]:
    r"""Run the T5 decoder on ``N`` sequences per user sharing the user's encoder output.

    Args:
        t5: the model (in eval mode: no dropout is applied here).
        tokens (torch.Tensor): decoder input tokens at positions ``P..P+t-1``, shape
            ``[B, N, t]``.
        context (DecoderContext): from :func:`decoder_context`.
        cache (list, optional): per layer ``(K, V)`` of the ``P`` earlier positions, each
            ``[B, N, P, H, dk]`` (``None``: ``P = 0``).

    Returns:
        tuple: final hidden states ``[B, N, t, d]`` (final norm and output scale applied)
        and the cache extended to ``P + t`` positions.
    """
    B, N, t = tokens.shape
    H, dk = t5.config.num_heads, t5.config.d_kv
    P = cache[0][0].size(2) if cache else 0
    self_bias = context.self_bias[:, P : P + t, : P + t]  # [H, t, P + t]
    x = t5.decoder.embed_tokens(tokens)  # [B, N, t, d]
    new_cache = []
    for i, block in enumerate(t5.decoder.block):
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
        k, v = context.cross[i]  # [B, H, S, dk]
        scores = q @ k.transpose(-1, -2) + context.cross_bias  # [B, H, N * t, S]
        attn = scores.float().softmax(dim=-1).to(v.dtype)
        out = (attn @ v).transpose(1, 2).reshape(B, N, t, H * dk)
        x = x + layer.EncDecAttention.o(out)
        # feed-forward
        x = block.layer[2](x)
    x = t5.decoder.final_layer_norm(x) * decoder_output_scale(t5.config)
    return x, new_cache


__all__ = [
    "DecoderContext",
    "build_t5",
    "decode",
    "decoder_context",
    "decoder_output_scale",
    "self_attention_bias",
]
