r"""Training FLOPs of the GPU suite's models at their suite sizes on a dataset, counted on the CPU.

    python benchmarks/gpu/paper_flops.py --data_path=.devrun/datasets --sid_cache_dir=.devrun/sid

builds each model of docs/leaderboards/gpu_suite.yaml on the dataset (default Amazon_Beauty;
the semantic-ID caches must exist, e.g. the bundle's), counts the FLOPs of one training batch
with :func:`recbole_fair.flops.profile_train_step` (what each suite cell records on the GPU) and,
for FAIR and RPG, checks the count against the closed form :func:`semantic_id_train_flops`.
Prints one JSON object per model (parameters, FLOPs per batch and per epoch, batches per epoch,
the largest operators' shares, and the seconds the host takes to build and prepare one epoch's
batches without the model: what the training loop's data loading costs, here). On the GPU the
count is the same (the attention kernels are counted in full on both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# run as a script, this folder leads sys.path: its faiss.py (the device's stand-in) must not
# shadow the real faiss here
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import recbole_fair  # noqa: E402,F401  (its compatibility shims, before RecBole is imported)


def semantic_id_train_flops(
    rows: int,
    longest: int,
    valid: int,
    hidden: int,
    inner: int,
    layers: int,
    n_codes: int,
    codebook: int,
    attention: str = "standard",
    nrt: bool = False,
) -> float:
    r"""Closed-form training FLOPs (forward + backward) of one FAIR/RPG batch, as
    ``FlopCounterMode`` counts them: matrix products ``2·m·n·k`` (backward: twice the forward),
    attention kernels in full (causal masks not halved; backward 2.5 times the forward, the
    flash kernels' recomputation), elementwise work not counted.

    Args:
        rows, longest, valid: batch size ``B``, its trimmed length ``T`` and its valid positions
            ``N`` (the positions the digit heads score).
        hidden, inner, layers: ``d``, the FFN width and the Transformer blocks.
        n_codes, codebook: ``L`` digits of ``K`` codes.
        attention: ``focused`` (FAIR: Q and K of twice the width, two attention kernels) or
            ``standard`` (RPG).
        nrt: FAIR's noise-robustness loss (a second encoder pass, forward and backward).
    """
    d = hidden
    focused = attention == "focused"
    projection = (6 if focused else 4) * d * d + 2 * d * inner  # MACs per position and block
    kernels = 2 if focused else 1
    attention_macs = kernels * 2 * longest * longest * d  # Q·Kᵀ and A·V per row and block
    encoder = (
        3 * 2 * rows * longest * layers * projection + 3.5 * 2 * rows * layers * attention_macs
    )
    heads = 3 * 2 * valid * n_codes * (d * d + codebook * d)  # residual transform + logits
    return encoder * (2 if nrt else 1) + heads


def model_flops(
    model: str,
    dataset: str,
    config_dict: dict[str, Any],
) -> dict[str, Any]:
    r"""Build ``model`` on ``dataset`` with ``config_dict`` on the CPU and count one batch."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_fair.config import Config
    from recbole_fair.flops import profile_train_step
    from recbole_fair.quick_start import trainer_class
    from recbole_fair.utils import create_dataset, get_model

    config = Config(model=model, dataset=dataset, config_dict={**config_dict, "use_gpu": False})
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train_data, _, _ = data_preparation(config, data)
    net = get_model(config["model"])(config, train_data._dataset)
    trainer = trainer_class(config)(config, net)
    out = profile_train_step(trainer, train_data)
    # the host's share of an epoch: every batch built and prepared (trimmed, valid positions)
    # as the training loop does before copying it, without the model
    prepare = getattr(net, "prepare_batch", None)
    start = time.time()
    for batch in train_data:
        if prepare is not None:
            prepare(batch)
    out["host_batches_seconds_per_epoch"] = time.time() - start
    out["model"] = model
    out["parameters"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    out["batches_per_epoch"] = len(train_data)
    if model in ("FAIR", "RPG"):
        out["closed_form_flops_per_batch"] = closed_form_flops(net, train_data)
    return out


def closed_form_flops(net: Any, train_data: Any) -> float:
    r""":func:`semantic_id_train_flops` of a FAIR/RPG model on a representative batch of
    ``train_data`` (its rows, longest history and valid positions)."""
    from recbole_fair.flops import representative_batch

    hint = net.prepare_batch(representative_batch(train_data)).host_batch
    return semantic_id_train_flops(
        rows=hint.rows,
        longest=hint.longest,
        valid=int(hint.valid_index.numel()),
        hidden=net.hidden_size,
        inner=net.settings.inner_size,
        layers=net.settings.n_layers,
        n_codes=net.n_codes,
        codebook=net.codebook_size,
        attention=net.attention,
        nrt=net.settings.nrt_weight > 0,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Amazon_Beauty")
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--sid_cache_dir", required=True)
    parser.add_argument("--model_config", default="docs/leaderboards/gpu_suite.yaml")
    parser.add_argument("--models", default="FAIR,RPG,TIGER,SASRec")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config also reads --key=value from sys.argv
    from recbole_fair.leaderboard import load_model_config

    overrides = load_model_config(args.model_config)
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        config_dict = {
            **overrides.get(model, {}),
            "data_path": os.path.abspath(args.data_path),
            "sid_cache_dir": os.path.abspath(args.sid_cache_dir),
            "show_progress": False,
        }
        print(json.dumps(model_flops(model, args.dataset, config_dict)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
