r"""recbole_fair.analysis.nrt
#########################

How active is FAIR's noise-robustness (NRT) triplet loss on a trained checkpoint?
(``benchmarks/diag_nrt.py`` prints and saves the report.)

The NRT loss is ``mean(max(0, D(h, h̃) − D(h, h⁻) + margin))`` (FAIR.md §3; distance, margin and
positions are reconstruction choices). :func:`collect` measures, on a checkpoint's test
histories and with the same perturbation as training (``nrt_mask_prob``/``nrt_sub_prob`` of the
checkpoint's model; 0 for a model trained without NRT, e.g. RPG, so that ``D(h, h̃)`` is 0
there), ``D(h, h̃)`` (clean vs perturbed input) and ``D(h, h⁻)`` (clean vs another user's
history) for both distances; :func:`summarise` gives their quantiles and the share of triplets
with a non-zero loss ("active") for a grid of margins. A margin is useful when a sizeable share
of the triplets is active.
"""

from __future__ import annotations

import numpy as np
import torch

from recbole_fair.checkpoint import LoadedModel, iter_test_batches
from recbole_fair.model.losses import NRT_DISTANCES, nrt_distance, perturb_code_tokens

MARGINS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@torch.no_grad()
def collect(loaded: LoadedModel, repeats: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    r"""``D(h, h̃)`` (``pos``) and ``D(h, h⁻)`` (``neg``) at each test history's last position,
    per distance; ``repeats`` perturbations of every history."""
    model = loaded.model
    torch.manual_seed(seed)
    out = {kind: {"pos": [], "neg": []} for kind in NRT_DISTANCES}
    for interaction in iter_test_batches(loaded):
        item_seq = model.trim(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
        last = interaction[model.ITEM_SEQ_LEN] - 1
        tokens = model.item_tokens(item_seq)
        clean = model.gather_indexes(model.encode_tokens(tokens, items=item_seq)[0], last)  # [B, d]
        negative = clean.roll(1, dims=0)
        for _ in range(repeats):
            noisy_tokens = perturb_code_tokens(
                tokens,
                model.codebook_size,
                model.mask_token,
                model.settings.nrt_mask_prob,
                model.settings.nrt_sub_prob,
            )
            noisy = model.gather_indexes(model.encode_tokens(noisy_tokens, items=item_seq)[0], last)
            for kind in NRT_DISTANCES:
                out[kind]["pos"].append(nrt_distance(clean, noisy, kind).cpu())
                out[kind]["neg"].append(nrt_distance(clean, negative, kind).cpu())
    return {
        kind: {k: torch.cat(v).double().numpy() for k, v in parts.items()}
        for kind, parts in out.items()
    }


def summarise(values: dict[str, dict[str, np.ndarray]], configured: tuple[str, float]) -> dict:
    r"""Quantiles of both distances, active share and mean loss per margin of :data:`MARGINS`,
    per distance; and the same at the model's ``configured`` ``(distance, margin)``."""
    report = {}
    for kind, parts in values.items():
        gap = parts["neg"] - parts["pos"]  # a triplet is active when gap < margin
        report[kind] = {
            "pos_quantiles": dict(zip(map(str, QUANTILES), np.quantile(parts["pos"], QUANTILES))),
            "neg_quantiles": dict(zip(map(str, QUANTILES), np.quantile(parts["neg"], QUANTILES))),
            "active_share": {str(m): float((gap < m).mean()) for m in MARGINS},
            "mean_loss": {str(m): float(np.maximum(0, m - gap).mean()) for m in MARGINS},
            "triplets": int(gap.size),
        }
    kind, margin = configured
    gap = values[kind]["neg"] - values[kind]["pos"]
    report["configured"] = {
        "distance": kind,
        "margin": margin,
        "active_share": float((gap < margin).mean()),
        "mean_loss": float(np.maximum(0, margin - gap).mean()),
    }
    return report
