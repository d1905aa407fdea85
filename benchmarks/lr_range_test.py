r"""Learning-rate range test (Smith 2017; fastai's ``lr_find``) of any model recbole-fair runs.

Builds the data, model and optimizer exactly as a run would (same Config, seeds, dataset, split
and trainer: AdamW for FAIR/RPG through :class:`~recbole_fair.trainer.SemanticIDTrainer`,
RecBole's Adam for SASRec...), then takes ``--steps`` optimizer steps over training batches with
the learning rate of every parameter group raised geometrically from ``--lr_min`` to
``--lr_max``::

    lr_k = lr_min * (lr_max / lr_min) ** (k / (steps - 1)),   k = 0 .. steps - 1

It records each step's training loss (the model's total loss, its parts summed as the trainer
sums them) and an exponentially smoothed, bias-corrected loss
(``avg_k = beta * avg_{k-1} + (1 - beta) * loss_k``, ``smoothed_k = avg_k / (1 - beta ** (k+1))``),
and stops early once the smoothed loss exceeds ``--diverge`` times its minimum (or a loss is not
finite). It reports the learning rate at the minimum smoothed loss, the one of the steepest
descent of the smoothed loss against log10(lr) (up to the minimum), and a suggested peak
learning rate, the minimum's lr / 10; then where the model's configured ``learning_rate`` falls
('unsafe' when it lies past the minimum). Nothing is saved but the results: no checkpoint, so no
later run starts from the weights this test trained.

Usage (any other ``--key=value`` reaches the Config, as with ``run_recbole_fair.py``)::

    OMP_NUM_THREADS=1 python benchmarks/lr_range_test.py --model=FAIR --dataset=ml-100k \
        --steps=60 --sid_cache_dir=benchmarks/results/sid_cache

Writes ``lr_range.json`` (every point, the suggestion, the config's key settings, the command and
the git commit), ``lr_range.csv`` and ``lr_range.png`` (loss against lr, log x) under ``--out``
(default ``saved/lr_range/<model>-<dataset>``).

    python benchmarks/lr_range_test.py --table saved/lr_range/*/lr_range.json

prints one Markdown row per finished test (width, seconds per step, where the raw and the
smoothed loss are lowest, the suggestion, the configured learning rate against it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from typing import Any, Callable, Iterator

import numpy as np

from recbole_fair.errors import ConfigError
from recbole_fair.paths import portable_argv, portable_path

# Settings of the config written beside the curve (those a run has).
KEY_SETTINGS = (
    "learning_rate",
    "learner",
    "weight_decay",
    "clip_grad_norm",
    "train_batch_size",
    "lr_scheduler",
    "warmup_steps",
    "warmup_epochs",
    "epochs",
    "hidden_size",
    "inner_size",
    "n_layers",
    "n_heads",
    "MAX_ITEM_LIST_LENGTH",
    "loss_type",
    "train_mode",
    "n_codes",
    "codebook_size",
    "head_temperature",
    "nrt_weight",
    "mim_weight",
    "autocast_dtype",
    "seed",
    "data_path",
    "sid_cache_dir",
)
PATH_KEYS = ("data_path", "sid_cache_dir")
PROGRESS_EVERY = 10


# ------------------------------------------------------------------------------- the curve
def check_arguments(lr_min: float, lr_max: float, steps: int, diverge: float, beta: float) -> None:
    r"""Refuse settings the test cannot run with.

    Raises:
        ConfigError: ``lr_min`` not in ``(0, lr_max)``, ``steps < 5``, ``diverge <= 1``, ``beta``
            not in ``[0, 1)``.
    """
    if not (math.isfinite(lr_min) and math.isfinite(lr_max)) or lr_min <= 0:
        raise ConfigError(f"--lr_min must be a number > 0, got {lr_min}.")
    if lr_min >= lr_max:
        raise ConfigError(
            f"--lr_min ({lr_min}) must be below --lr_max ({lr_max}): the test raises the "
            "learning rate from lr_min to lr_max."
        )
    if steps < 5:
        raise ConfigError(f"--steps must be at least 5 (a curve to read), got {steps}.")
    if not diverge > 1:
        raise ConfigError(
            f"--diverge must be > 1 (stop when the smoothed loss exceeds diverge x its "
            f"minimum), got {diverge}."
        )
    if not 0 <= beta < 1:
        raise ConfigError(f"--beta (the smoothing factor) must be in [0, 1), got {beta}.")


def lr_schedule(lr_min: float, lr_max: float, steps: int) -> list[float]:
    r"""The geometric schedule ``lr_min * (lr_max / lr_min) ** (k / (steps - 1))``, its ends
    exactly ``lr_min`` and ``lr_max``."""
    ratio = lr_max / lr_min
    lrs = [lr_min * ratio ** (k / (steps - 1)) for k in range(steps)]
    lrs[0], lrs[-1] = lr_min, lr_max
    return lrs


class SmoothedLoss:
    r"""Exponential moving average of the loss, bias-corrected as Adam's moments:
    ``avg_k = beta * avg_{k-1} + (1 - beta) * loss_k`` (``avg_{-1} = 0``), returned as
    ``avg_k / (1 - beta ** (k + 1))``."""

    def __init__(self, beta: float = 0.9) -> None:
        self.beta = beta
        self.average = 0.0
        self.count = 0

    def update(self, loss: float) -> float:
        self.count += 1
        self.average = self.beta * self.average + (1.0 - self.beta) * loss
        return self.average / (1.0 - self.beta**self.count)


def smooth(losses: list[float], beta: float = 0.9) -> list[float]:
    r"""The smoothed curve of ``losses`` (:class:`SmoothedLoss`)."""
    smoother = SmoothedLoss(beta)
    return [smoother.update(loss) for loss in losses]


def suggest(lrs: list[float], smoothed: list[float]) -> dict[str, Any]:
    r"""Read the curve: the minimum of the smoothed loss, the steepest descent of the smoothed
    loss against log10(lr) (central differences, one-sided at the ends, over the points up to
    the minimum; None when the minimum is the first point) and the suggested peak learning
    rate, the minimum's lr / 10. Steps are 0-based."""
    best = int(np.argmin(smoothed))
    steep = None
    if best >= 1:
        slopes = np.gradient(np.asarray(smoothed[: best + 1]), np.log10(lrs[: best + 1]))
        steep = int(np.argmin(slopes))
    return {
        "min_loss_step": best,
        "min_loss_lr": lrs[best],
        "min_smoothed_loss": smoothed[best],
        "steepest_step": steep,
        "steepest_lr": None if steep is None else lrs[steep],
        "suggested_lr": lrs[best] / 10.0,
        # the curve had not turned yet: the minimum lies at or past the last lr tested
        "minimum_at_last_point": best == len(smoothed) - 1,
    }


def place_configured(learning_rate: float, suggestion: dict[str, Any]) -> dict[str, Any]:
    r"""Where the config's ``learning_rate`` falls: its ratio to the suggested lr and whether it
    lies past the minimum of the smoothed loss ('unsafe')."""
    ratio = learning_rate / suggestion["suggested_lr"]
    past = learning_rate > suggestion["min_loss_lr"]
    if past:
        verdict = "unsafe: past the minimum of the smoothed loss"
    elif learning_rate > suggestion["suggested_lr"]:
        verdict = "between the suggestion and the minimum"
    else:
        verdict = "at or below the suggestion"
    return {
        "learning_rate": learning_rate,
        "ratio_to_suggested": ratio,
        "past_minimum": past,
        "verdict": verdict,
    }


def run_steps(
    step: Callable[[float], tuple[float, list[float]]],
    lrs: list[float],
    beta: float = 0.9,
    diverge: float = 4.0,
    progress: Callable[[str], None] | None = print,
) -> tuple[list[dict[str, Any]], str | None]:
    r"""Take one step per learning rate of ``lrs`` (``step(lr)`` returns the loss and its parts)
    until the smoothed loss exceeds ``diverge`` x its minimum (that point is kept), a loss is
    not finite (that point is not) or the user interrupts (Ctrl-C: the points so far are kept,
    so a long test still leaves its curve).

    Returns:
        tuple: the points (``step``, ``lr``, ``loss``, ``smoothed``, ``parts``, ``seconds``
        since the start) and why it stopped early (None when it ran every step).
    """
    smoother, points, best, stopped = SmoothedLoss(beta), [], math.inf, None
    start = time.time()
    for k, lr in enumerate(lrs):
        try:
            loss, parts = step(lr)
        except KeyboardInterrupt:
            stopped = f"interrupted at step {k} (lr {lr:.3g})"
            break
        if not math.isfinite(loss):
            stopped = f"loss not finite ({loss}) at step {k} (lr {lr:.3g})"
            break
        smoothed = smoother.update(loss)
        seconds = time.time() - start
        points.append(
            {
                "step": k,
                "lr": lr,
                "loss": loss,
                "smoothed": smoothed,
                "parts": parts,
                "seconds": seconds,
            }
        )
        best = min(best, smoothed)
        if progress is not None and ((k + 1) % PROGRESS_EVERY == 0 or k == 0):
            progress(
                f"step {k + 1:>4}/{len(lrs)}  lr {lr:.3e}  loss {loss:.4f}  "
                f"smoothed {smoothed:.4f}  ({seconds:.0f} s)"
            )
        if smoothed > diverge * best:
            stopped = (
                f"smoothed loss {smoothed:.4g} > {diverge:g} x its minimum {best:.4g} at step {k}"
            )
            break
    return points, stopped


# ------------------------------------------------------------------------------- the model
def cycle(loader: Any) -> Iterator[Any]:
    r"""The loader's batches, epoch after epoch (each pass reshuffles as in training)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ConfigError("the training data has no batch: nothing to run the test on.")


def trainer_step(trainer: Any, train_data: Any) -> Callable[[float], tuple[float, list[float]]]:
    r"""One optimizer step of ``trainer``'s model at a given learning rate, as its training loop
    takes it: the batch moved as the trainer moves it, the loss parts summed, backward (under
    the trainer's autocast), the trainer's gradient clipping, its optimizer's step."""
    from torch.nn.utils.clip_grad import clip_grad_norm_

    model, batches = trainer.model, cycle(train_data)
    sync_free = hasattr(trainer, "train_step") and hasattr(trainer, "batch_to_device")

    def step(lr: float) -> tuple[float, list[float]]:
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        model.train()
        interaction = next(batches)
        trainer.optimizer.zero_grad()
        if sync_free:  # recbole-fair's loop (FAIR, RPG, TIGER; SASRec with sync_free_train_loop)
            loss, losses = trainer.train_step(
                trainer.batch_to_device(interaction), model.calculate_loss
            )
        else:  # RecBole's Trainer._train_epoch, one batch
            losses = model.calculate_loss(interaction.to(trainer.device))
            loss = sum(losses) if isinstance(losses, tuple) else losses
            loss.backward()
        if trainer.clip_grad_norm:
            clip_grad_norm_(model.parameters(), **trainer.clip_grad_norm)
        trainer.optimizer.step()
        parts = losses if isinstance(losses, tuple) else (loss,)
        return float(loss.detach()), [float(p.detach()) for p in parts]

    return step


def build(config: Any) -> tuple[Any, Any]:
    r"""The run's trainer (its model and optimizer) and training data, built as
    ``run_recbole_fair`` builds them: ``(trainer, train_data)``.

    Raises:
        ConfigError: RecBole's float16 ``enable_amp``/``enable_scaler`` (not supported here).
    """
    from recbole_fair.quick_start import prepare_run, trainer_class

    if config["enable_amp"] or config["enable_scaler"]:
        raise ConfigError(
            "lr_range_test.py does not run RecBole's float16 autocast (enable_amp / "
            "enable_scaler): drop them (autocast_dtype: bfloat16 works)."
        )
    _, _, _, loaders, model = prepare_run(config)
    trainer = trainer_class(config)(config, model)
    return trainer, loaders[0]


def range_test(
    config: Any,
    lrs: list[float],
    beta: float = 0.9,
    diverge: float = 4.0,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    r"""Build the run of ``config`` (:func:`build`), run the schedule ``lrs`` on it and read the
    curve: the result written to ``lr_range.json`` (less the command and commit)."""
    trainer, train_data = build(config)
    start = time.time()
    points, stopped = run_steps(trainer_step(trainer, train_data), lrs, beta, diverge, progress)
    seconds = time.time() - start
    if not points:
        raise ConfigError(f"the first step already failed ({stopped}): lower --lr_min.")
    suggestion = suggest([p["lr"] for p in points], [p["smoothed"] for p in points])
    settings = {k: config.final_config_dict[k] for k in KEY_SETTINGS if k in config}
    for key in PATH_KEYS:
        if key in settings:
            settings[key] = portable_path(settings[key])
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "trainer": type(trainer).__name__,
        "optimizer": type(trainer.optimizer).__name__,
        "parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "batches_per_epoch": len(train_data),
        "lr_min": lrs[0],
        "lr_max": lrs[-1],
        "steps": len(lrs),
        "steps_run": len(points),
        "beta": beta,
        "diverge": diverge,
        "stopped_early": stopped,
        "seconds": seconds,
        "suggestion": suggestion,
        "configured": place_configured(float(config["learning_rate"]), suggestion),
        "config": settings,
        "points": points,
    }


# ------------------------------------------------------------------------------- the outputs
def portable_command(argv: list[str]) -> list[str]:
    r"""The command line with machine paths (``--key=/abs/path`` or a bare path) made portable."""
    return ["benchmarks/lr_range_test.py", *portable_argv(argv)]


def summary(result: dict[str, Any]) -> list[str]:
    r"""The report printed at the end, one finding a line."""
    s, c = result["suggestion"], result["configured"]
    steep = (
        "-" if s["steepest_lr"] is None else f"{s['steepest_lr']:.3g} (step {s['steepest_step']})"
    )
    return [
        f"lr range test: {result['model']} on {result['dataset']}, {result['optimizer']}, "
        f"{result['steps_run']} of {result['steps']} steps from {result['lr_min']:g} to "
        f"{result['lr_max']:g} ({result['seconds']:.0f} s)",
        f"stopped early: {result['stopped_early']}"
        if result["stopped_early"]
        else "ran every step",
        f"minimum smoothed loss {s['min_smoothed_loss']:.4f} at lr {s['min_loss_lr']:.3g} "
        f"(step {s['min_loss_step']})",
        f"steepest descent of the smoothed loss at lr {steep}",
        f"suggested peak lr: {s['suggested_lr']:.3g} (the minimum's lr / 10)"
        + (
            "; the minimum is the last point: the loss was still falling, raise --lr_max"
            if s["minimum_at_last_point"]
            else ""
        ),
        f"configured learning_rate {c['learning_rate']:g}: {c['ratio_to_suggested']:.2f} x the "
        f"suggestion; {c['verdict']}",
    ]


TABLE_HEADER = (
    "| model | dataset | d | parameters | batches per epoch | steps run | s per step "
    "| raw loss lowest at lr | smoothed minimum at lr | suggested lr (minimum / 10) "
    "| learning_rate | x suggestion | verdict |"
)


def table(results: list[dict[str, Any]]) -> list[str]:
    r"""A Markdown table of several tests' ``lr_range.json`` results, one row each: the width,
    the seconds per step (wall clock), the lr of the lowest raw loss, the smoothed minimum, the
    suggestion and where the configured learning rate falls."""
    rows = [TABLE_HEADER, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        s, c, points = r["suggestion"], r["configured"], r["points"]
        raw = min(points, key=lambda p: p["loss"])
        cells = [
            r["model"],
            r["dataset"],
            str(r["config"].get("hidden_size", "-")),
            f"{r['parameters']:,}",
            str(r["batches_per_epoch"]),
            f"{r['steps_run']} of {r['steps']}",
            f"{r['seconds'] / max(r['steps_run'], 1):.1f}",
            f"{raw['lr']:.3g} (step {raw['step']})",
            f"{s['min_loss_lr']:.3g} (step {s['min_loss_step']})",
            f"{s['suggested_lr']:.3g}",
            f"{c['learning_rate']:g}",
            f"{c['ratio_to_suggested']:.2f}",
            c["verdict"],
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def write_outputs(result: dict[str, Any], out_dir: str) -> list[str]:
    r"""``lr_range.json``, ``lr_range.csv`` and ``lr_range.png`` under ``out_dir``; their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"lr_range.{ext}") for ext in ("json", "csv", "png")]
    with open(paths[0], "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)
        f.write("\n")
    with open(paths[1], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "lr", "loss", "smoothed"])
        for p in result["points"]:
            writer.writerow([p["step"], repr(p["lr"]), repr(p["loss"]), repr(p["smoothed"])])
    plot(result, paths[2])
    return paths


def plot(result: dict[str, Any], path: str) -> None:
    r"""Raw and smoothed loss against the learning rate (log x), with the minimum, the steepest
    descent, the suggestion and the configured learning rate marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs = [p["lr"] for p in result["points"]]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(lrs, [p["loss"] for p in result["points"]], color="0.75", lw=1, label="loss")
    ax.plot(lrs, [p["smoothed"] for p in result["points"]], color="C0", lw=2, label="smoothed")
    s, c = result["suggestion"], result["configured"]
    marks = [
        (s["min_loss_lr"], "C3", "minimum"),
        (s["steepest_lr"], "C2", "steepest descent"),
        (s["suggested_lr"], "C1", "suggested (min / 10)"),
        (c["learning_rate"], "k", "configured learning_rate"),
    ]
    for lr, color, label in marks:
        if lr is not None:
            ax.axvline(lr, color=color, ls="--", lw=1, label=f"{label}: {lr:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"LR range test: {result['model']} on {result['dataset']} ({result['optimizer']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------- the command
def build_parser() -> argparse.ArgumentParser:
    r"""The test's own flags; any other ``--key=value`` reaches the Config."""
    from recbole_fair.cli.common import add_run_arguments

    # allow_abbrev=False: a Config key must never be taken for a prefix of one of these flags
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] + " Any other --key=value reaches the Config.",
        allow_abbrev=False,
    )
    add_run_arguments(parser)  # --model, --dataset, --config_files, --debug
    parser.add_argument("--data_path", default=None, help="folder of the dataset folders")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps (>= 5)")
    parser.add_argument("--lr_min", type=float, default=1e-5, help="first learning rate")
    parser.add_argument("--lr_max", type=float, default=1e-1, help="last learning rate")
    parser.add_argument("--diverge", type=float, default=4.0, help="stop at diverge x min loss")
    parser.add_argument("--beta", type=float, default=0.9, help="smoothing of the loss")
    parser.add_argument("--out", default=None, help="default saved/lr_range/<model>-<dataset>")
    parser.add_argument(
        "--table",
        nargs="+",
        metavar="LR_RANGE_JSON",
        help="print a Markdown table of finished tests' lr_range.json files and exit",
    )
    return parser


def print_table(paths: list[str]) -> int:
    r"""Print :func:`table` of the ``lr_range.json`` files ``paths``."""
    results = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                results.append(json.load(f))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"--table: cannot read {path}: {error}") from error
        if not isinstance(results[-1], dict) or "suggestion" not in results[-1]:
            raise ConfigError(f"--table: {path} is not an lr_range.json of this script.")
    print("\n".join(table(results)))
    return 0


def run(args: argparse.Namespace, overrides: list[str], argv: list[str]) -> int:
    r"""The test of ``args`` on the Config of ``--model``/``--dataset``/``--config_files``, the
    ``--data_path`` and the ``overrides`` (a command line for RecBole's Config); saves and
    prints the result."""
    from recbole_fair.config import Config, command_line
    from recbole_fair.leaderboard import git_commit

    check_arguments(args.lr_min, args.lr_max, args.steps, args.diverge, args.beta)
    model, dataset = args.model or "FAIR", args.dataset or "ml-100k"
    config_files = args.config_files.split() if args.config_files else None
    config_dict = {"data_path": args.data_path} if args.data_path else None
    with command_line(["lr_range_test.py", *overrides]):  # RecBole reads overrides from argv
        config = Config(model, dataset, config_file_list=config_files, config_dict=config_dict)
    lrs = lr_schedule(args.lr_min, args.lr_max, args.steps)
    commit = git_commit()  # the code that runs (HEAD may move during a long test)
    result = range_test(config, lrs, args.beta, args.diverge, lambda line: print(line, flush=True))
    result["command"] = portable_command(argv)
    result["git_commit"] = commit
    out_dir = args.out or os.path.join(
        "saved", "lr_range", f"{config['model']}-{config['dataset']}"
    )
    paths = write_outputs(result, out_dir)
    print("\n".join(summary(result) + ["saved: " + ", ".join(paths)]), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    r"""Run the command on ``argv`` (default: the command line); returns the exit status (1 with
    one paragraph on stderr for a setting that cannot work)."""
    from recbole_fair.cli.common import debug_requested, report_errors

    argv = list(sys.argv[1:] if argv is None else argv)
    args, overrides = build_parser().parse_known_args(argv)
    if args.table:
        return report_errors(lambda: print_table(args.table), debug_requested(args))
    return report_errors(lambda: run(args, overrides, argv), debug_requested(args))


if __name__ == "__main__":
    sys.exit(main())
