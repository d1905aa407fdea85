r"""RPG
################################################

The semantic-ID parallel-decoding recommender that FAIR extends: every item is ``L`` OPQ codes;
a causal Transformer with **standard** attention reads the history (one pooled code embedding per
item) and ``L`` residual heads predict all codes of the next item at once, trained with the
multi-token prediction (MTP) loss only. Ranking is exact by default; ``decoding: graph`` gives
RPG's graph-constrained decoding (:mod:`recbole_fair.model.graph_decoding`).

RPG is not a copy of FAIR: it is FAIR's modules with three switches fixed (``attention:
standard``, ``nrt_weight: 0``, ``mim_weight: 0``), so a FAIR configured that way with RPG's weights
gives RPG's scores exactly (tested). RPG's own recipe is in ``properties/model/RPG.yaml``.

Differences from the public RPG code, kept on purpose: GELU (exact) instead of GPT-2's tanh
approximation; deterministic start beams in graph decoding instead of random ones.

Reference:
    Yupeng Hou et al. "Generating Long Semantic IDs in Parallel for Recommendation." in KDD 2025.
"""

from __future__ import annotations

from recbole_fair.model.sequential_recommender.fair import FAIR


class RPG(FAIR):
    r"""RPG: long semantic IDs predicted in parallel (FAIR's modules, standard attention, MTP).

    The configuration keys are FAIR's (see :class:`FAIR`) minus the focused-attention, NRT and
    MIM keys; the dataset is :class:`~recbole_fair.data.RPGDataset` (the same OPQ semantic IDs).

    Raises:
        ConfigError: when the config sets one of :attr:`preset`'s keys to another value.
    """

    #: FAIR's switches that make it RPG. A config may leave them out (they are filled in) or
    #: repeat them; any other value is an error (use model FAIR for such an ablation).
    preset = {"attention": "standard", "nrt_weight": 0.0, "mim_weight": 0.0}
