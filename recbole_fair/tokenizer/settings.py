r"""recbole_fair.tokenizer.settings
################################

The settings that decide the semantic IDs, read and validated from a RecBole ``Config`` in one
place: :class:`SemanticIDSettings` (text, encoder, OPQ/PQ quantizer, cache; FAIR and RPG) and
:class:`RQVAESettings` (TIGER's RQ-VAE). Every field is the config key of the same name.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from recbole_fair.errors import UserInputError
from recbole_fair.tokenizer.encoder import DEFAULT_TEXT_ENCODER
from recbole_fair.tokenizer.text import DEFAULT_TEXT_FIELDS

#: values of the ``sid_collisions`` setting
COLLISION_MODES = ("keep", "separate")
#: values of the ``sid_method`` setting
SID_METHODS = ("opq", "random")
#: values of the ``rqvae_optimizer`` setting
OPTIMIZERS = ("adam", "adamw")

_YAML = " (properties/semantic_ids.yaml)"


def _check_choice(key: str, value: str, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise UserInputError(f"{key} must be one of {list(choices)}, got [{value}]{where}.")
    return value


def check_collision_mode(mode: str, where: str = "") -> str:
    r"""``mode`` if it is a value of ``sid_collisions``, else a ``ValueError`` (``where``: what to
    append to the message, e.g. the YAML file)."""
    return _check_choice("sid_collisions", mode, COLLISION_MODES, where)


def check_sid_method(method: str, where: str = "") -> str:
    r"""``method`` if it is a value of ``sid_method``, else a ``ValueError``."""
    return _check_choice("sid_method", method, SID_METHODS, where)


@dataclasses.dataclass
class SemanticIDSettings:
    r"""Every setting that decides the semantic IDs (the config keys of the same name).

    Attributes:
        text_fields (list of str): item fields making up the text.
        text_template (str): ``join`` or ``field_value``.
        text_encoder (str): sentence-transformers model name or path.
        text_encode_batch_size (int): encoding batch size.
        sid_pca_dim (int): PCA output dimension, 0 = no PCA.
        sid_pca_whiten (bool): whiten the PCA output.
        sid_opq_iterations (int): OPQ training rounds (faiss default 50).
        n_codes (int): the number of digits ``L`` of a semantic ID (the paper's "codes per
            item").
        codebook_size (int): the number of codes ``K`` of each digit (centroids of its
            codebook).
        sid_seed (int): k-means seed (``random``: the seed of the draw).
        sid_method (str): ``opq`` (the paper: text embeddings quantised by OPQ/PQ) or
            ``random`` (ablation: distinct random code tuples, no content,
            :func:`recbole_fair.tokenizer.codes.random_codes`).
        sid_random_digits (int): with ``opq``, the last ``N`` of the ``n_codes`` digits get
            random codes instead: OPQ/PQ quantises the embeddings into ``n_codes - N``
            semantic digits and every item gets ``N`` item-specific ones (0 = the paper).
        sid_collisions (str): ``keep`` (paper) or ``separate`` (items sharing all codes are
            moved one digit apart, :func:`recbole_fair.tokenizer.codes.separate_collisions`).
        sid_cache_dir (str): cache directory; ``None``/empty disables the cache (in a config,
            a missing key means the default, an explicit ``~`` or ``''`` disables it).
        device (str): device of the text encoder.
        show_progress (bool): progress bar while encoding.
    """

    text_fields: list = dataclasses.field(default_factory=lambda: list(DEFAULT_TEXT_FIELDS))
    text_template: str = "join"
    text_encoder: str = DEFAULT_TEXT_ENCODER
    text_encode_batch_size: int = 64
    sid_pca_dim: int = 0
    sid_pca_whiten: bool = False
    sid_opq_iterations: int = 50
    n_codes: int = 32
    codebook_size: int = 256
    sid_seed: int = 2020
    sid_collisions: str = "keep"
    sid_method: str = "opq"
    sid_random_digits: int = 0
    sid_cache_dir: str | None = os.path.join(".", "saved", "sid_cache")
    device: str = "cpu"
    show_progress: bool = True

    @classmethod
    def from_config(cls, config: Any) -> SemanticIDSettings:
        r"""Read the settings from a RecBole ``Config``; missing keys take the defaults above
        (``sid_seed`` falls back to ``seed``)."""

        def get(key: str) -> Any:
            return config[key] if key in config else None

        default = cls()
        values = {}
        for field in dataclasses.fields(cls):
            value = get(field.name)
            values[field.name] = getattr(default, field.name) if value is None else value
        if "sid_cache_dir" in config and not config["sid_cache_dir"]:
            values["sid_cache_dir"] = None  # explicitly ~ or '': no cache
        if get("sid_seed") is None and get("seed") is not None:
            values["sid_seed"] = get("seed")
        if get("device") is not None:
            values["device"] = str(get("device"))
        if get("show_progress") is not None:
            values["show_progress"] = bool(get("show_progress"))
        if isinstance(values["text_fields"], str):
            values["text_fields"] = [values["text_fields"]]
        values["text_fields"] = list(values["text_fields"])
        values["sid_pca_dim"] = int(values["sid_pca_dim"] or 0)
        for key in (
            "n_codes",
            "codebook_size",
            "sid_seed",
            "text_encode_batch_size",
            "sid_opq_iterations",
            "sid_random_digits",
        ):
            values[key] = int(values[key])
        values["sid_pca_whiten"] = bool(values["sid_pca_whiten"])
        values["sid_collisions"] = check_collision_mode(str(values["sid_collisions"]), _YAML)
        values["sid_method"] = check_sid_method(str(values["sid_method"]), _YAML)
        return check_random_digits(cls(**values), _YAML)


def check_random_digits(settings: SemanticIDSettings, where: str = "") -> SemanticIDSettings:
    r"""``settings`` if ``sid_random_digits`` fits ``sid_method`` and ``n_codes``, else a
    ``ValueError`` naming the keys."""
    n_random, n_digits = settings.sid_random_digits, settings.n_codes
    if settings.sid_method == "random" and n_random:
        raise ValueError(
            f"sid_random_digits [{n_random}] applies to sid_method opq (with sid_method random "
            f"every digit is random); set it to 0{where}."
        )
    if settings.sid_method == "opq" and not 0 <= n_random < n_digits:
        raise ValueError(
            f"sid_random_digits must be in [0, n_codes={n_digits}) with sid_method opq, got "
            f"[{n_random}] (all {n_digits} digits random: sid_method: random){where}."
        )
    return settings


@dataclasses.dataclass
class RQVAESettings:
    r"""Every setting of TIGER's RQ-VAE (the config keys of the same name, ``properties/model/
    TIGER.yaml``). All of them, and the seed, enter the cache key.

    Attributes:
        rqvae_levels (int): residual quantisation levels, one digit each (the digits per item
            before the extra collision digit).
        rqvae_codebook_size (int): codes per level, i.e. per digit (codewords of its codebook).
        rqvae_code_dim (int): dimension of the latent and of the codewords.
        rqvae_hidden_sizes (list of int): hidden widths of the MLP encoder (decoder: reversed).
        rqvae_beta (float): commitment weight β.
        rqvae_epochs (int): training epochs over the training-split items.
        rqvae_batch_size (int): items per batch.
        rqvae_learning_rate (float): learning rate.
        rqvae_weight_decay (float): weight decay.
        rqvae_optimizer (str): ``adamw`` or ``adam``.
        rqvae_kmeans_init (bool): initialise each codebook by k-means on the first batch.
        rqvae_kmeans_iters (int): k-means iterations of that initialisation.
        rqvae_reset_dead_codes (bool): after each epoch, move the codewords no item chose to
            random residuals of the last batch (codebook expiry, as SoundStream/Jukebox).
        rqvae_seed (int or None): seed of the weights, batches and k-means; ``None`` = ``sid_seed``.
    """

    rqvae_levels: int = 3
    rqvae_codebook_size: int = 256
    rqvae_code_dim: int = 32
    rqvae_hidden_sizes: list = dataclasses.field(default_factory=lambda: [512, 256, 128])
    rqvae_beta: float = 0.25
    rqvae_epochs: int = 200
    rqvae_batch_size: int = 1024
    rqvae_learning_rate: float = 1e-3
    rqvae_weight_decay: float = 1e-4
    rqvae_optimizer: str = "adamw"
    rqvae_kmeans_init: bool = True
    rqvae_kmeans_iters: int = 25
    rqvae_reset_dead_codes: bool = True
    rqvae_seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rqvae_hidden_sizes, int):
            self.rqvae_hidden_sizes = [self.rqvae_hidden_sizes]
        self.rqvae_hidden_sizes = [int(h) for h in (self.rqvae_hidden_sizes or [])]
        for key in (
            "rqvae_levels",
            "rqvae_codebook_size",
            "rqvae_code_dim",
            "rqvae_epochs",
            "rqvae_batch_size",
            "rqvae_kmeans_iters",
        ):
            setattr(self, key, int(getattr(self, key)))
        for key in ("rqvae_beta", "rqvae_learning_rate", "rqvae_weight_decay"):
            setattr(self, key, float(getattr(self, key)))
        self.rqvae_kmeans_init = bool(self.rqvae_kmeans_init)
        self.rqvae_reset_dead_codes = bool(self.rqvae_reset_dead_codes)
        self.rqvae_optimizer = str(self.rqvae_optimizer).lower()
        if self.rqvae_seed is not None:
            self.rqvae_seed = int(self.rqvae_seed)
        self.validate()

    def validate(self) -> None:
        r"""Raise a ``ValueError`` naming the key of the first invalid setting."""
        positive = {
            "rqvae_levels": 1,
            "rqvae_codebook_size": 2,
            "rqvae_code_dim": 1,
            "rqvae_batch_size": 1,
            "rqvae_kmeans_iters": 1,
        }
        for key, low in positive.items():
            if getattr(self, key) < low:
                raise ValueError(f"{key} must be >= {low}, got [{getattr(self, key)}].")
        if self.rqvae_epochs < 0:
            raise ValueError(f"rqvae_epochs must be >= 0, got [{self.rqvae_epochs}].")
        if any(h < 1 for h in self.rqvae_hidden_sizes):
            raise ValueError(
                f"rqvae_hidden_sizes must be positive widths, got {self.rqvae_hidden_sizes}."
            )
        for key in ("rqvae_beta", "rqvae_weight_decay"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got [{getattr(self, key)}].")
        if self.rqvae_learning_rate <= 0:
            raise ValueError(f"rqvae_learning_rate must be > 0, got [{self.rqvae_learning_rate}].")
        if self.rqvae_optimizer not in OPTIMIZERS:
            raise ValueError(
                f"rqvae_optimizer must be one of {list(OPTIMIZERS)}, got [{self.rqvae_optimizer}]."
            )

    @classmethod
    def from_config(cls, config: Any) -> RQVAESettings:
        r"""Read the settings from a RecBole ``Config``; missing keys take the defaults."""
        values = {}
        for field in dataclasses.fields(cls):
            value = config[field.name] if field.name in config else None
            if value is not None:
                values[field.name] = value
        return cls(**values)

    def seed(self, sid_seed: int) -> int:
        r"""The effective seed: ``rqvae_seed``, else ``sid_seed``."""
        return int(self.rqvae_seed if self.rqvae_seed is not None else sid_seed)


__all__ = [
    "COLLISION_MODES",
    "OPTIMIZERS",
    "RQVAESettings",
    "SID_METHODS",
    "SemanticIDSettings",
    "check_collision_mode",
    "check_random_digits",
    "check_sid_method",
]
