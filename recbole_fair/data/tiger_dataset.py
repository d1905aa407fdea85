r"""recbole_fair.data.tiger_dataset
################################

The dataset of :class:`~recbole_fair.model.sequential_recommender.tiger.TIGER`: a
:class:`~recbole_fair.data.dataset.SemanticIDDataset` whose semantic IDs come from an RQ-VAE
(codes at ``rqvae_levels`` digits) plus one collision digit, instead of FAIR's OPQ codes. Item
texts, the text encoder and the embedding cache are the shared tokenizer's
(:mod:`recbole_fair.tokenizer`); the RQ-VAE lives in :mod:`recbole_fair.tokenizer.rqvae` and
:mod:`recbole_fair.tokenizer.rqvae_train`, the build in :mod:`recbole_fair.tokenizer.build`.

After ``build()`` every split carries ``item_codes`` (LongTensor ``[item_num,
rqvae_levels + 1]``, unique rows, row 0 = padding item) and ``semantic_id_report`` (with the
collisions before and after the extra digit).

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." in NeurIPS 2023.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recbole_fair.data.dataset import SemanticIDDataset
from recbole_fair.tokenizer import RQVAESettings, SemanticIDs, build_rqvae_semantic_ids


class TIGERDataset(SemanticIDDataset):
    r"""Sequential dataset with RQ-VAE semantic IDs (see the module docstring).

    Config keys: those of :class:`~recbole_fair.data.dataset.SemanticIDDataset` (text fields,
    encoder, ``sid_cache_dir``, ``sid_seed``) and the ``rqvae_*`` keys of
    :class:`~recbole_fair.tokenizer.settings.RQVAESettings`. TIGER is a seq2seq model trained on
    one (history, next item) pair per row, so ``train_mode`` must be ``prefix``.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if self.train_mode != "prefix":
            raise ValueError(
                f"TIGER trains one (history, next item) pair per row: set train_mode: prefix "
                f"(got [{self.train_mode}]; properties/model/TIGER.yaml sets it)."
            )
        self.rqvae_settings = RQVAESettings.from_config(config)

    def build_item_semantic_ids(self, train_item_mask: np.ndarray) -> SemanticIDs:
        r"""RQ-VAE codes + collision digit, trained on the training-split items (cached).

        Args:
            train_item_mask: bool ``[item_num]``, the items of the training split.

        Returns:
            SemanticIDs: codes ``[item_num, rqvae_levels + 1]``, embeddings, report, cache key
            and path.
        """
        return build_rqvae_semantic_ids(
            self.item_texts,
            train_item_mask,
            self.sid_settings,
            self.rqvae_settings,
            encoder_fn=type(self).encoder_fn,
            items_without_text=self.items_without_text,
        )
