r"""TIGER's CPU training cost: epoch time before and after the padding work, step time, FLOPs
per step and the share of the FLOP limit reached.

Variants, timed one after the other in the same process (``--repeats`` rounds, interleaved, the
minimum reported: the machine is shared):

* ``before``: the training path before the padding work: each batch trimmed to its longest
  history, T5's own forward (logits over the whole vocabulary, then each digit's codes gathered).
* ``after``: the current path: rows sorted into ``tiger_length_groups`` groups of similar
  history length, each trimmed to its own longest history, and the LM head restricted to each
  digit's codes (the same loss up to float rounding, ``tests/test_tiger.py``).
* ``after-eager`` / ``after-sdpa``: ``after`` with that ``attn_implementation``; ``after-g8``
  (or ``after-eager-g8``, ...) with ``tiger_length_groups: 8``.

Measured per variant: FLOPs of one training step on a representative batch
(:func:`recbole_fair.flops.profile_train_step`: forward + backward, matrix products and
attention kernels), encoder positions computed per epoch against the real ones (padding
efficiency), seconds per step and per epoch (``--mode epoch``: whole epochs of RecBole's
training loop, data loading included; ``--mode steps``: ``--steps`` fixed batches, the epoch
estimated as seconds per step x batches), and the achieved rate ``FLOPs / second`` beside the
FLOP limit: the nominal single-thread peak (``--peak_gflops``, 55 GFLOP/s fp32 on this machine)
and a float32 1024^3 matrix product timed in the same process (what the shared machine gives now).

Usage (one thread, as the CPU leaderboards run)::

    OMP_NUM_THREADS=1 python benchmarks/bench_tiger.py --data_path ../shared/datasets \
        --sid_cache_dir saved/sid_cache --config benchmarks/tiger_cpu.yaml --mode epoch
    OMP_NUM_THREADS=1 python benchmarks/bench_tiger.py --data_path ../shared/datasets \
        --sid_cache_dir saved/sid_cache --config paper --mode steps --steps 4

Prints a table and saves it as JSON (``benchmarks/results/bench_tiger-<dataset>-<config>.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

from recbole_fair.model.sequential_recommender.tiger import TIGER  # noqa: E402

VARIANT_HELP = "before, after, after-eager, after-sdpa, after-g<N>, after-eager-g<N>, ..."


class BeforeTIGER(TIGER):
    r"""TIGER's training path before the padding work: the batch trimmed to its longest history
    (``tiger_length_groups: 1``) and T5's own forward, logits over the whole vocabulary."""

    def forward(
        self,
        item_seq: torch.Tensor,
        item_seq_len: torch.Tensor,
        target_items: torch.Tensor,
        user_ids: torch.Tensor | None = None,
        longest: int | None = None,
    ) -> torch.Tensor:
        input_ids, mask = self.encoder_inputs(item_seq, item_seq_len, user_ids, longest)
        labels = self.item_tokens(target_items)  # [B, C]
        decoder_input_ids = torch.cat([labels.new_zeros(labels.size(0), 1), labels[:, :-1]], 1)
        logits = self.t5(
            input_ids=input_ids, attention_mask=mask, decoder_input_ids=decoder_input_ids
        ).logits  # [B, C, vocab]
        index = self.level_tokens.unsqueeze(0).expand(logits.size(0), -1, -1)  # [B, C, V]
        return logits.gather(2, index)


def gemm_gflops(size: int = 1024, repeats: int = 5) -> float:
    r"""Best rate of a float32 ``size^3`` matrix product in this process (GFLOP/s)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def variant_settings(name: str) -> dict:
    r"""The config keys a variant name sets (see the module docstring); ValueError if unknown."""
    first, *options = name.split("-")
    if first == "before" and not options:
        return {"tiger_length_groups": 1}
    if first != "after":
        raise ValueError(f"unknown variant [{name}]: {VARIANT_HELP}")
    keys: dict = {}
    for option in options:
        if option in ("eager", "sdpa"):
            keys["attn_implementation"] = option
        elif option[:1] == "g" and option[1:].isdigit() and int(option[1:]) >= 1:
            keys["tiger_length_groups"] = int(option[1:])
        else:
            raise ValueError(f"unknown variant [{name}]: {VARIANT_HELP}")
    return keys


def make_variant(name: str, config: Any, dataset: Any) -> tuple[Any, Any]:
    r"""Model and trainer of a variant, from the same seed."""
    from recbole_fair.utils import get_trainer

    config = copy.deepcopy(config)
    for key, value in variant_settings(name).items():
        config[key] = value
    torch.manual_seed(int(config["seed"]))
    model = (BeforeTIGER if name == "before" else TIGER)(config, dataset)
    return model, get_trainer(config["MODEL_TYPE"], "TIGER")(config, model)


def positions(model: Any, train_data: Any) -> dict:
    r"""Encoder history positions of an epoch: computed (after trimming) and real."""
    computed = real = 0
    for batch in train_data:
        lengths = batch[model.ITEM_SEQ_LEN]
        real += int(lengths.sum())
        if model.settings.tiger_length_groups == 1:
            computed += len(lengths) * int(lengths.max())
            continue
        hint = model.prepare_batch(batch).host_batch
        start = 0
        for end, longest in hint.groups:
            computed += (end - start) * longest
            start = end
    return {"computed_positions": computed, "real_positions": real, "efficiency": real / computed}


def clone(batch: Any) -> Any:
    from recbole.data.interaction import Interaction

    return Interaction({key: value.clone() for key, value in batch.interaction.items()})


def time_steps(trainer: Any, batches: list) -> float:
    r"""Seconds of one training step on each batch (data on the host already), as the training
    loop runs it: host preparation, forward, backward, optimizer step."""
    model = trainer.model
    model.train()
    start = time.perf_counter()
    for batch in batches:
        interaction = trainer.batch_to_device(clone(batch))
        trainer.optimizer.zero_grad()
        trainer.train_step(interaction, model.calculate_loss)
        trainer.optimizer.step()
    return (time.perf_counter() - start) / len(batches)


def measure(args: argparse.Namespace, config: Any, train_data: Any) -> dict:
    r"""FLOPs, padding and timings of every variant (timings interleaved, the minimum kept)."""
    from recbole_fair.flops import profile_train_step

    runs = {}
    for name in args.variants:
        model, trainer = make_variant(name, config, train_data._dataset)
        flops = profile_train_step(trainer, train_data)
        runs[name] = {
            "model": model,
            "trainer": trainer,
            "flops_per_step": flops["train_flops_per_batch"],
            "flops_per_epoch": flops["train_flops_per_epoch"],
            **positions(model, train_data),
            "step_seconds": [],
            "epoch_seconds": [],
        }
    batches = []
    if args.mode == "steps":
        for batch in train_data:
            batches.append(batch)
            if len(batches) == args.steps + 1:
                break
        for run in runs.values():
            time_steps(run["trainer"], batches[:1])  # warm-up
    for repeat in range(args.repeats):
        for name, run in runs.items():
            if args.mode == "steps":
                run["step_seconds"].append(time_steps(run["trainer"], batches[1:]))
                continue
            start = time.perf_counter()
            run["trainer"]._train_epoch(train_data, repeat)
            seconds = time.perf_counter() - start
            run["epoch_seconds"].append(seconds)
            run["step_seconds"].append(seconds / len(train_data))
            print(f"  {name}: epoch {seconds:.1f}s", flush=True)
    return runs


def summarise(args: argparse.Namespace, config: Any, train_data: Any, runs: dict) -> dict:
    gemm = max(gemm_gflops(), args.gemm_before)
    out: dict = {
        "dataset": args.dataset,
        "config": args.config,
        "threads": torch.get_num_threads(),
        "mode": args.mode,
        "repeats": args.repeats,
        "batches_per_epoch": len(train_data),
        "rows_per_epoch": int(train_data.sample_size),
        "peak_gflops_nominal": args.peak_gflops,
        "gemm_gflops_measured": gemm,
        "model": {
            key: config[key]
            for key in (
                "hidden_size",
                "inner_size",
                "n_layers",
                "n_decoder_layers",
                "n_heads",
                "head_dim",
                "dropout_prob",
                "train_batch_size",
                "tiger_length_groups",
                "attn_implementation",
            )
        },
        "variants": {},
    }
    for name, run in runs.items():
        step = min(run["step_seconds"])
        epoch = min(run["epoch_seconds"]) if run["epoch_seconds"] else step * len(train_data)
        rate = run["flops_per_epoch"] / epoch / 1e9
        out["variants"][name] = {
            "flops_per_step": run["flops_per_step"],
            "flops_per_epoch": run["flops_per_epoch"],
            "computed_positions": run["computed_positions"],
            "real_positions": run["real_positions"],
            "padding_efficiency": run["efficiency"],
            "step_seconds_min": step,
            "step_seconds_all": run["step_seconds"],
            "epoch_seconds_min": epoch,
            "epoch_seconds_all": run["epoch_seconds"],
            "epoch_is_estimate": not run["epoch_seconds"],
            "achieved_gflops": rate,
            "share_of_nominal_peak": rate / args.peak_gflops,
            "share_of_measured_gemm": rate / gemm,
            "flop_limited_epoch_seconds": run["flops_per_epoch"] / (args.peak_gflops * 1e9),
        }
    return out


def render(out: dict) -> str:
    lines = [
        f"TIGER on {out['dataset']} ({out['config']}: {out['model']}), {out['threads']} thread(s), "
        f"{out['batches_per_epoch']} batches/epoch, min of {out['repeats']} ({out['mode']})",
        f"FLOP limit: nominal {out['peak_gflops_nominal']:.0f} GFLOP/s; a 1024^3 fp32 matmul "
        f"here now: {out['gemm_gflops_measured']:.1f} GFLOP/s",
        f"{'variant':<12} {'GFLOP/step':>10} {'pad eff':>8} {'s/step':>8} {'s/epoch':>9} "
        f"{'GFLOP/s':>8} {'/peak':>6} {'/gemm':>6} {'limit s/ep':>10}",
    ]
    for name, v in out["variants"].items():
        epoch = f"{v['epoch_seconds_min']:.0f}{'*' if v['epoch_is_estimate'] else ''}"
        lines.append(
            f"{name:<12} {v['flops_per_step'] / 1e9:>10.2f} {v['padding_efficiency']:>8.2f} "
            f"{v['step_seconds_min']:>8.3f} {epoch:>9} {v['achieved_gflops']:>8.2f} "
            f"{v['share_of_nominal_peak']:>6.2f} {v['share_of_measured_gemm']:>6.2f} "
            f"{v['flop_limited_epoch_seconds']:>10.0f}"
        )
    if "before" in out["variants"]:
        before = out["variants"]["before"]["epoch_seconds_min"]
        for name, v in out["variants"].items():
            if name != "before":
                lines.append(f"{name}: {before / v['epoch_seconds_min']:.2f}x faster than before")
    lines.append("(* = estimated from the step time; limit = FLOPs per epoch at the nominal peak)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Amazon_Scientific")
    parser.add_argument("--data_path", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--sid_cache_dir", default=str(REPO / "saved" / "sid_cache"))
    parser.add_argument(
        "--config",
        default="benchmarks/tiger_cpu.yaml",
        help="YAML of TIGER keys over properties/model/TIGER.yaml, or 'paper' (TIGER.yaml alone)",
    )
    parser.add_argument("--variants", default="before,after", help=VARIANT_HELP)
    parser.add_argument("--mode", choices=["epoch", "steps"], default="epoch")
    parser.add_argument("--steps", type=int, default=4, help="batches timed in --mode steps")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peak_gflops", type=float, default=55.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    for name in args.variants:
        try:
            variant_settings(name)
        except ValueError as err:
            parser.error(str(err))
    torch.set_num_threads(args.threads)
    args.gemm_before = gemm_gflops()
    sys.argv = sys.argv[:1]  # RecBole's Config would read --key=value pairs from the command line

    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_fair.config import Config
    from recbole_fair.utils import create_dataset

    files = [] if args.config == "paper" else [str(REPO / args.config)]
    config = Config(
        model="TIGER",
        dataset=args.dataset,
        config_file_list=files,
        config_dict={
            "data_path": args.data_path,
            "sid_cache_dir": args.sid_cache_dir,
            "show_progress": False,
            "state": "WARNING",
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    runs = measure(args, config, train_data)
    out = summarise(args, config, train_data, runs)
    print(render(out))
    name = Path(args.config).stem if args.config != "paper" else "paper"
    path = Path(
        args.out or REPO / "benchmarks" / "results" / f"bench_tiger-{args.dataset}-{name}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"saved {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
