r"""How active is FAIR's noise-robustness (NRT) triplet loss? A diagnostic on a trained checkpoint.

The NRT loss is ``mean(max(0, D(h, h̃) − D(h, h⁻) + margin))`` (FAIR.md §3; distance, margin and
positions are reconstruction choices). On the leaderboard runs its logged value falls to ~0 within
a few epochs, i.e. almost no triplet violates the margin and the term gives no gradient. This
script measures why, on a checkpoint's test histories (the same perturbation as training:
``nrt_mask_prob``/``nrt_sub_prob`` of the checkpoint's model; 0 for a model trained
without NRT, e.g. RPG, so that ``D(h, h̃)`` is 0 there): the distribution of
``D(h, h̃)`` (clean vs perturbed input) and ``D(h, h⁻)`` (clean vs another user's history) for
both distances, and the share of triplets with a non-zero loss ("active") for a grid of margins.
A margin is useful when a sizeable share of the triplets is active
(:mod:`recbole_fair.analysis.nrt` measures it).

    python benchmarks/diag_nrt.py --checkpoint leaderboards/.../checkpoints/FAIR-...-best.pth \
        [--data_path ../shared/datasets] [--repeats 3] [--out benchmarks/results/diag_nrt.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from recbole_fair.analysis.nrt import MARGINS, QUANTILES, collect, summarise
from recbole_fair.checkpoint import load_checkpoint
from recbole_fair.model.losses import NRT_DISTANCES


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a FAIR checkpoint (.pth)")
    parser.add_argument("--data_path", default=None, help="folder holding the dataset folder")
    parser.add_argument("--repeats", type=int, default=3, help="perturbations per history")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/diag_nrt.json")
    args = parser.parse_args(argv)

    loaded = load_checkpoint(args.checkpoint, data_path=args.data_path)
    if not hasattr(loaded.model, "mask_token"):
        sys.exit(f"error: {args.checkpoint}: {loaded.config['model']} has no NRT perturbation")
    model = loaded.model
    configured = (model.settings.nrt_distance, float(model.settings.nrt_margin))
    report = summarise(collect(loaded, args.repeats, args.seed), configured)
    report.update(
        checkpoint=args.checkpoint,
        dataset=loaded.config["dataset"],
        hidden_size=loaded.config["hidden_size"],
        nrt_weight=model.settings.nrt_weight,
        nrt_mask_prob=model.settings.nrt_mask_prob,
        nrt_sub_prob=model.settings.nrt_sub_prob,
    )

    print(f"{report['dataset']}: {args.checkpoint} (d={report['hidden_size']})")
    for kind in NRT_DISTANCES:
        r = report[kind]
        fmt = ", ".join(f"{float(v):.3g}" for v in r["pos_quantiles"].values())
        print(f"  {kind}: D(h, h~) quantiles {QUANTILES}: {fmt}")
        fmt = ", ".join(f"{float(v):.3g}" for v in r["neg_quantiles"].values())
        print(f"  {kind}: D(h, h-) quantiles {QUANTILES}: {fmt}")
        print("  margin  active  mean loss")
        for m in MARGINS:
            print(f"  {m:>6}  {r['active_share'][str(m)]:6.1%}  {r['mean_loss'][str(m)]:.4f}")
    c = report["configured"]
    print(
        f"configured ({c['distance']}, margin {c['margin']}): {c['active_share']:.1%} of "
        f"{report[c['distance']]['triplets']} triplets active, mean loss {c['mean_loss']:.4f}"
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=float)
    print(f"saved {args.out}")
    return report


if __name__ == "__main__":
    main()
