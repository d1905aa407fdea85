r"""recbole_fair.tokenizer
######################

Item texts -> sentence embeddings -> semantic IDs, with a content-keyed cache and a quality
report. FAIR and RPG quantise with faiss OPQ/PQ, TIGER with an RQ-VAE; both share the texts, the
encoder and the embedding cache.

Glossary (used in the code, the docstrings and the docs):

* **semantic ID**: the tuple of ``L`` codes that stands for one item; all of them form the code
  matrix ``item_codes``, int64 ``[n_items, L]`` (row 0 = the padding item).
* **digit**: a position in the semantic ID, ``0..L-1`` (a column of the code matrix). ``L``, the
  number of digits, is the config key ``n_codes`` (the paper's "32 codes per item"); a
  variable counting digits is ``n_digits``, one holding a position is ``digit``.
* **code**: the value at a digit, ``0..K-1``: the index of a codeword of that digit's codebook
  (a PQ centroid, an RQ-VAE codeword). ``K`` is the config key ``codebook_size``
  (``rqvae_codebook_size`` for TIGER).
* ``sid_random_digits``: the last ``N`` digits get random codes instead of OPQ/PQ ones.
* TIGER's RQ-VAE has one residual *level* per digit (``rqvae_levels`` = ``M``), then one
  collision digit.

Modules, in reading order:

* :mod:`~recbole_fair.tokenizer.text`: the item texts from the item fields.
* :mod:`~recbole_fair.tokenizer.encoder`: the sentence encoder.
* :mod:`~recbole_fair.tokenizer.settings`: :class:`SemanticIDSettings`, :class:`RQVAESettings`.
* :mod:`~recbole_fair.tokenizer.codes`: random digits, collisions and their separation.
* :mod:`~recbole_fair.tokenizer.quantizer`: PCA -> OPQ -> PQ with faiss.
* :mod:`~recbole_fair.tokenizer.rqvae`, :mod:`~recbole_fair.tokenizer.rqvae_train`: TIGER's
  RQ-VAE and its training loop.
* :mod:`~recbole_fair.tokenizer.report`: the quality report and the codes' fingerprint.
* :mod:`~recbole_fair.tokenizer.cache`: cache keys and checked, atomically written files.
* :mod:`~recbole_fair.tokenizer.build`: the orchestration, :func:`build_semantic_ids` and
  :func:`build_rqvae_semantic_ids`.
"""

from recbole_fair.tokenizer.build import build_rqvae_semantic_ids, build_semantic_ids
from recbole_fair.tokenizer.cache import SemanticIDs
from recbole_fair.tokenizer.codes import add_collision_digit, random_codes, separate_collisions
from recbole_fair.tokenizer.encoder import DEFAULT_TEXT_ENCODER, encode_texts, make_encoder_fn
from recbole_fair.tokenizer.quantizer import OPQProductQuantizer, quantize
from recbole_fair.tokenizer.report import codes_fingerprint, collision_report, quality_report
from recbole_fair.tokenizer.rqvae import RQVAE
from recbole_fair.tokenizer.rqvae_train import train_rqvae
from recbole_fair.tokenizer.settings import RQVAESettings, SemanticIDSettings
from recbole_fair.tokenizer.text import DEFAULT_TEXT_FIELDS, build_item_texts, resolve_text_fields

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "DEFAULT_TEXT_FIELDS",
    "OPQProductQuantizer",
    "RQVAE",
    "RQVAESettings",
    "SemanticIDSettings",
    "SemanticIDs",
    "add_collision_digit",
    "build_item_texts",
    "build_rqvae_semantic_ids",
    "build_semantic_ids",
    "codes_fingerprint",
    "collision_report",
    "encode_texts",
    "make_encoder_fn",
    "quality_report",
    "quantize",
    "random_codes",
    "resolve_text_fields",
    "separate_collisions",
    "train_rqvae",
]
