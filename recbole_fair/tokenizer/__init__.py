"""Text -> sentence embedding -> semantic IDs (faiss OPQ/PQ), with a content-keyed cache."""

from recbole_fair.tokenizer.encoder import DEFAULT_TEXT_ENCODER, encode_texts, make_encoder_fn
from recbole_fair.tokenizer.quantizer import OPQProductQuantizer, quantize
from recbole_fair.tokenizer.semantic_ids import (
    SemanticIDs,
    SemanticIDSettings,
    build_semantic_ids,
    quality_report,
)
from recbole_fair.tokenizer.text import DEFAULT_TEXT_FIELDS, build_item_texts, resolve_text_fields

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "DEFAULT_TEXT_FIELDS",
    "OPQProductQuantizer",
    "SemanticIDSettings",
    "SemanticIDs",
    "build_item_texts",
    "build_semantic_ids",
    "encode_texts",
    "make_encoder_fn",
    "quality_report",
    "quantize",
    "resolve_text_fields",
]
