r"""recbole_fair.cli.evaluate
#########################

``recbole-fair evaluate``: evaluate a saved checkpoint again on the test split (and the
validation split with ``--valid``), optionally with other decoding or evaluation settings,
without training::

    recbole-fair evaluate --checkpoint saved/RPG-ml-100k-xxx.pth --set decoding=graph \
        [--set graph_num_beams=10 ...] [--valid] [--data_path DIR] [--out result.json]

The run is rebuilt by :func:`recbole_fair.checkpoint.load_checkpoint` (its dataset, split and
model, with ``--set`` applied before they are built; only the settings of
:data:`~recbole_fair.checkpoint.EVALUATION_SETTINGS` may change) and evaluated by the trainer
the model trains with, as the run's own test evaluation was. Writes one JSON file (default
``saved/evaluate/<checkpoint name>[-<settings>].json``) and prints its summary: the metrics,
users per second and, for TIGER, the generation report (invalid generations, beam-vs-exact
overlap).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time
from typing import Any, Sequence

from recbole_fair.checkpoint import EVALUATION_SETTINGS, LoadedModel, load_checkpoint
from recbole_fair.cli.common import add_debug_argument, debug_requested, report_errors
from recbole_fair.errors import ConfigError
from recbole_fair.leaderboard.results import git_commit, jsonable
from recbole_fair.paths import portable_argv, portable_path
from recbole_fair.quick_start import format_results, trainer_class
from recbole_fair.trusted_files import file_digest

# Where the result goes without --out (relative to the working directory).
DEFAULT_OUT_DIR = os.path.join("saved", "evaluate")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate a saved checkpoint again on the test split, optionally with other "
        "decoding or evaluation settings; writes a JSON result.",
    )
    parser.add_argument("--checkpoint", required=True, help="RecBole checkpoint (signed).")
    parser.add_argument("--data_path", help="folder holding the dataset folder, if it moved.")
    parser.add_argument(
        "--set",
        dest="settings",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="an evaluation setting (decoding, graph_*, beam_size, tiger_*, eval_batch_size, "
        "topk, metrics, metric_decimal_place, device); values are read as RecBole reads "
        "--key=value (numbers, True/False, [lists]).",
    )
    parser.add_argument("--valid", action="store_true", help="evaluate the validation split too.")
    parser.add_argument(
        "--out",
        help=f"result file (default {DEFAULT_OUT_DIR}/<checkpoint name>[-<settings>].json).",
    )
    parser.add_argument("--device", default="cpu", help="device to evaluate on (default cpu).")
    add_debug_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    r"""Run the command on ``argv`` (default: the command line); returns the exit status (an
    error: 1, with one paragraph on stderr)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(prog).parse_args(argv)
    command = (prog or "recbole-fair evaluate").split() + portable_argv(argv)

    def run() -> int:
        record = evaluate_checkpoint(
            args.checkpoint,
            parse_settings(args.settings),
            device=args.device,
            data_path=args.data_path,
            valid=args.valid,
        )
        record["command"] = command
        out = args.out or default_out(args.checkpoint, record["overrides"])
        write_record(record, out)
        print("\n".join(summary(record)))
        print(f"written to {out}")
        return 0

    return report_errors(run, debug_requested(args))


# ------------------------------------------------------------------------------- --set
def parse_value(text: str) -> Any:
    r"""A ``--set`` value read as RecBole reads ``--key=value`` on its command line
    (``Config._convert_config_dict``): a Python literal (``10``, ``0.5``, ``[5, 10]``,
    ``None``), ``true``/``false`` in any case as booleans, anything else as the string itself.
    Literals only: nothing is evaluated."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        lowered = text.strip().lower()
        return True if lowered == "true" else False if lowered == "false" else text
    if value is not None and not isinstance(value, (str, int, float, list, tuple, dict, bool)):
        return text
    return value


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    r"""The ``--set KEY=VALUE`` pairs as a dict (values: :func:`parse_value`).

    Raises:
        ConfigError: a pair without ``=`` or key, or one key given two values.
    """
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key or not key.isidentifier():
            raise ConfigError(f"--set takes KEY=VALUE (e.g. --set decoding=graph), got [{pair}].")
        value = parse_value(text)
        if key in settings and settings[key] != value:
            raise ConfigError(f"--set gives {key} two values: [{settings[key]}] and [{value}].")
        settings[key] = value
    return settings


# ------------------------------------------------------------------------------- evaluation
def evaluate_checkpoint(
    path: str,
    overrides: dict[str, Any] | None = None,
    device: str = "cpu",
    data_path: str | None = None,
    valid: bool = False,
) -> dict[str, Any]:
    r"""Rebuild the checkpoint's run with ``overrides`` and evaluate it (see the module
    docstring).

    Returns:
        dict: what the result file holds (less the command line): the checkpoint (as a
        portable path), its SHA-256 and epoch, model, dataset, seed, ``overrides`` (and
        ``overridden``: the checkpoint's own values), the evaluation settings in force,
        ``test`` and ``valid`` (None without ``valid``): ``result`` (metric -> float),
        ``users``, ``seconds``, ``cpu_seconds``, ``users_per_second`` and
        ``generation_report`` (TIGER's, else None), the semantic-ID fingerprints and the git
        commit.

    Raises:
        FileNotFoundError, ValueError, ConfigError: see
            :func:`~recbole_fair.checkpoint.load_checkpoint`.
    """
    loaded = load_checkpoint(
        path, device, data_path, require_attention_maps=False, overrides=overrides
    )
    config = loaded.config
    # nothing is saved: the trainer's checkpoint folder is the checkpoint's own (RecBole's
    # trainer creates it), never a folder of the machine that trained it
    config["checkpoint_dir"] = os.path.dirname(os.path.abspath(path))
    trainer = trainer_class(config)(config, loaded.model)
    try:
        test = evaluate_split(trainer, loaded.model, loaded.test_data)
        valid_split = evaluate_split(trainer, loaded.model, loaded.valid_data) if valid else None
    finally:
        trainer.tensorboard.close()
    return {
        "checkpoint": portable_path(os.path.abspath(path)),
        "checkpoint_sha256": file_digest(path),
        "checkpoint_epoch": loaded.epoch,
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "overrides": jsonable(dict(overrides or {})),
        "overridden": jsonable(loaded.overridden),
        "settings": _settings_in_force(config),
        "test": test,
        "valid": valid_split,
        **_codes_fingerprints(loaded),
        "git_commit": git_commit(),
    }


def evaluate_split(trainer: Any, model: Any, loader: Any) -> dict[str, Any]:
    r"""``trainer.evaluate`` on one split's loader, timed: ``result`` (metric -> float),
    ``users``, ``seconds`` (wall), ``cpu_seconds`` (this process), ``users_per_second`` and the
    model's ``generation_report`` of that pass (None for models without one)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = trainer.evaluate(loader, load_best_model=False, show_progress=False)
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    users = int(len(loader._dataset.inter_feat))  # one row per user (leave-one-out)
    return {
        "result": {metric: float(value) for metric, value in result.items()},
        "users": users,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "users_per_second": users / seconds if seconds > 0 else None,
        "generation_report": jsonable(getattr(model, "generation_report", None)),
    }


def _settings_in_force(config: Any) -> dict[str, Any]:
    r"""The evaluation settings the evaluation ran with (the checkpoint's, or overridden)."""
    return {key: jsonable(config[key]) for key in EVALUATION_SETTINGS if key in config}


def _codes_fingerprints(loaded: LoadedModel) -> dict[str, Any]:
    r"""``sid_codes_fingerprint``: the rebuilt dataset's semantic IDs (as a leaderboard row
    records them), ``checkpoint_codes_fingerprint``: those the checkpoint's model holds, and
    whether they agree (None when either is unknown). They differ when the codes were rebuilt
    differently since training (another machine, another cache)."""
    from recbole_fair.tokenizer import codes_fingerprint

    report = getattr(loaded.dataset, "semantic_id_report", None) or {}
    dataset_print = report.get("codes_fingerprint")
    codes = getattr(loaded.model, "item_codes", None)
    model_print = None if codes is None else codes_fingerprint(codes.cpu().numpy())
    same = None if dataset_print is None or model_print is None else dataset_print == model_print
    return {
        "sid_codes_fingerprint": dataset_print,
        "checkpoint_codes_fingerprint": model_print,
        "codes_match_checkpoint": same,
    }


# ------------------------------------------------------------------------------- outputs
def default_out(checkpoint: str, overrides: dict[str, Any]) -> str:
    r"""``saved/evaluate/<checkpoint stem>[-<key=value>...].json``."""
    stem = os.path.splitext(os.path.basename(checkpoint))[0]
    for key, value in overrides.items():
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        stem += "-" + re.sub(r"[^A-Za-z0-9._,=-]+", "_", f"{key}={text}")
    return os.path.join(DEFAULT_OUT_DIR, stem + ".json")


def write_record(record: dict[str, Any], out: str) -> None:
    r"""Write ``record`` as indented JSON to ``out`` (its folders created)."""
    folder = os.path.dirname(out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


def summary(record: dict[str, Any]) -> list[str]:
    r"""The lines printed at the end: the metrics, the speed of each split, the generation
    report and a warning when the checkpoint's semantic IDs are not the dataset's."""
    changed = ", ".join(f"{k}={v}" for k, v in record["overrides"].items()) or "none"
    valid = record["valid"]
    title = (
        f"{record['model']} on {record['dataset']}, {record['checkpoint']} "
        f"(epoch {record['checkpoint_epoch']}); overrides: {changed}"
    )
    lines = [format_results(valid and valid["result"], record["test"]["result"], {}, title)]
    for name in ("test", "valid"):
        split = record[name]
        if split is None:
            continue
        lines.append(
            f"{name}: {split['users']} users in {split['seconds']:.2f} s "
            f"({split['users_per_second'] or 0:.1f} users/s, {split['cpu_seconds']:.2f} CPU s)"
        )
        if split["generation_report"]:
            lines.append(f"{name} generation: {_generation_line(split['generation_report'])}")
    if record["codes_match_checkpoint"] is False:
        lines.append(
            f"warning: the dataset's semantic IDs ({record['sid_codes_fingerprint']}) are not "
            f"the checkpoint's ({record['checkpoint_codes_fingerprint']}): they were rebuilt "
            f"differently since training."
        )
    return lines


def _generation_line(report: dict[str, Any]) -> str:
    overlap = ", ".join(
        f"@{k} {report[f'beam_exact_overlap@{k}']:.3f}"
        for k in report.get("topk", [])
        if f"beam_exact_overlap@{k}" in report
    )
    return (
        f"beam {report.get('beam_size')}, invalid generation rate "
        f"{report.get('invalid_generation_rate', 0.0):.4f}"
        + (
            f", beam vs exact top-k overlap on {report.get('exact_check_users')} users: {overlap}"
            if overlap
            else ""
        )
    )
