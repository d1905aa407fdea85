r"""recbole_fair.quick_start
#########################

RecBole's quick-start flow (Config -> seed -> logger -> dataset -> split -> model -> trainer ->
fit -> evaluate) with recbole-fair's look-ups. Never imports ``recbole.quick_start`` (which pulls
in ray, see :mod:`recbole_fair.compat`).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from logging import getLogger
from typing import Any, Callable

import torch
from recbole.data import data_preparation
from recbole.utils import init_logger, init_seed

from recbole_fair.config import Config
from recbole_fair.data.download import download_dataset, report_downloaded
from recbole_fair.data.validate import missing_dataset_message
from recbole_fair.trainer.instrument import (
    FIT_DEADLINE_ENV,
    fit_deadline,
    instrument,
    profile_flops,
    stop_at_deadline,
)
from recbole_fair.utils import create_dataset, get_model, get_trainer

__all__ = [
    "FIT_DEADLINE_ENV",
    "check_data_files",
    "fit_deadline",
    "format_results",
    "peak_rss_mb",
    "prepare_run",
    "run_recbole_fair",
    "trainer_class",
    "unique_checkpoint_file",
]


def _ensure_log_file(config: Config) -> str | None:
    r"""RecBole's ``init_logger`` uses ``logging.basicConfig``, which does nothing when the root
    logger already has handlers (a second run in one process, pytest). Make sure this run still
    writes its own log file; return its path."""
    init_logger(config)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    log_dir = os.path.join("log", str(config["model"]))
    os.makedirs(log_dir, exist_ok=True)
    stamp = time.strftime("%b-%d-%Y_%H-%M-%S")
    path = os.path.abspath(
        os.path.join(log_dir, f"{config['model']}-{config['dataset']}-{stamp}.log")
    )
    handler = logging.FileHandler(path)
    handler.setFormatter(
        logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S")
    )
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return path


def _drop_run_file_handlers() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


def check_data_files(config: Config) -> None:
    r"""Fail early, with a message saying where we looked and what to do, when the dataset's
    atomic files are missing (before RecBole tries to download anything). With
    ``download: True`` RecBole's own copy is fetched instead (:mod:`recbole_fair.data.download`)."""
    data_path = config["data_path"]
    dataset = config["dataset"]
    inter = os.path.abspath(os.path.join(data_path, f"{dataset}.inter"))
    if os.path.isfile(inter) or config["benchmark_filename"]:
        return
    if config["download"]:
        download_dataset(config)
        if os.path.isfile(inter):
            return
        raise FileNotFoundError(
            f"Downloaded [{dataset}] into {data_path}, but {inter} is not there: the archive "
            f"holds other files ({sorted(os.listdir(data_path))})."
        )
    raise FileNotFoundError(missing_dataset_message(dataset, inter))


def unique_checkpoint_file(
    directory: str, model: str, dataset: str, run_id: str | None = None
) -> str:
    r"""A checkpoint name no other run picks (RecBole's own is unique only to the second):
    ``<directory>/<model>-<dataset>-<local time>-<6 random hex digits>.pth``, or with ``run_id``
    (the DDP launcher gives every rank the same) ``<model>-<dataset>-<run_id>.pth``, without the
    time, which the ranks' clocks may disagree on."""
    if run_id is not None:
        return os.path.join(directory, f"{model}-{dataset}-{run_id}.pth")
    stamp = time.strftime("%b-%d-%Y_%H-%M-%S")
    return os.path.join(directory, f"{model}-{dataset}-{stamp}-{secrets.token_hex(3)}.pth")


def peak_rss_mb() -> float:
    r"""Peak resident set size of this process in MiB (Linux/macOS)."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20
    except ImportError:  # pragma: no cover - Windows
        return float("nan")


def run_recbole_fair(
    model: str | type | None = None,
    dataset: str | None = None,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    saved: bool = True,
    queue: Any = None,
    trainer_hook: Callable[[Any, dict[str, list[float]]], None] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    r"""Train and evaluate one model on one dataset, RecBole style.

    Args:
        model: model name (recbole-fair's first, then RecBole's) or class.
        dataset: dataset name.
        config_file_list: user YAML files.
        config_dict: parameter overrides.
        saved: save the best checkpoint and reload it for the test evaluation.
        queue: multiprocessing queue receiving the result (RecBole's DDP launcher).
        trainer_hook: called as ``trainer_hook(trainer, timings)`` once the trainer is built
            and instrumented, before ``fit`` (``timings``: the per-epoch ``train``/``valid``
            seconds lists behind ``costs``). The leaderboard uses it to resume a cell from its
            last-epoch checkpoint and to keep the per-user test metrics
            (:mod:`recbole_fair.leaderboard`).
        run_id: suffix that makes the checkpoint name unique (default: a fresh random one;
            the DDP launcher gives every rank the same).

    Returns:
        dict: RecBole's result keys (``best_valid_score``, ``valid_score_bigger``,
        ``best_valid_result``, ``test_result``) plus ``semantic_ids`` (the semantic-ID quality
        report, for models that use them), ``costs`` (seconds, users/s, parameters, memory)
        ``generation`` (beam-search guards of generative decoders such as TIGER, else None) and
        ``paths`` (log file, checkpoint, semantic-ID cache).
    """
    config = Config(
        model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict
    )
    log_file, dataset_obj, downloaded, loaders, model_obj = prepare_run(config)
    train_data, valid_data, test_data = loaders
    trainer, timings, flops, deadline, stopped = _prepare_trainer(
        config, model_obj, train_data, trainer_hook, run_id
    )
    outcome = _fit_and_test(config, trainer, loaders, saved)
    costs = _run_costs(config, trainer, model_obj, timings, outcome, flops, deadline, stopped)
    paths = {
        "log_file": log_file,
        "checkpoint": os.path.abspath(trainer.saved_model_file) if saved else None,
        "semantic_id_cache": getattr(train_data._dataset, "semantic_id_cache_path", None),
    }
    getLogger().info(
        format_results(
            outcome["best_valid_result"],
            outcome["test_result"],
            paths,
            title=f"{config['model']} on {config['dataset']}: best epoch "
            + ("-" if trainer.best_epoch is None else str(trainer.best_epoch + 1))
            + f" of {len(timings['train'])} trained (1-based)",
        )
    )

    result = {
        "best_valid_score": outcome["best_valid_score"],
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": outcome["best_valid_result"],
        "test_result": outcome["test_result"],
        "semantic_ids": getattr(train_data._dataset, "semantic_id_report", None),
        # interactions read, kept and dropped with their reasons (recbole_fair.data.checked)
        "data": getattr(dataset_obj, "drop_report", None),
        # generation guards of beam-search models (TIGER): invalid rate, beam-vs-exact overlap
        "generation": getattr(model_obj, "generation_report", None),
        "costs": costs,
        "paths": paths,
        "model": config["model"],
        "dataset": config["dataset"],
        # size after filtering when the data is RecBole's download (--download=True), else None
        "downloaded_dataset": downloaded,
    }
    if not config["single_spec"]:
        import torch.distributed as dist

        dist.destroy_process_group()
        if config["local_rank"] == 0 and queue is not None:
            queue.put(result)
    return result


def prepare_run(config: Config) -> tuple[str | None, Any, Any, tuple, Any]:
    r"""What :func:`run_recbole_fair` builds before its trainer, in the same order and with the
    same seeds: the data files checked (:func:`check_data_files`), then seed, log file, dataset,
    split and model. For tools that need a run's model and data without training it (e.g.
    ``benchmarks/lr_range_test.py``); build the trainer with :func:`trainer_class`.

    Returns:
        tuple: ``(log file, dataset, downloaded report, (train, valid, test) loaders, model)``.
    """
    check_data_files(config)
    return _prepare_run(config)


def _prepare_run(config: Config) -> tuple[str | None, Any, Any, tuple, Any]:
    r"""Seed, log, dataset, split and model of a run, in RecBole's order (the seeds and the
    order decide the run's numbers): ``(log file, dataset, downloaded report, (train, valid,
    test) loaders, model)``."""
    init_seed(config["seed"], config["reproducibility"])
    _drop_run_file_handlers()
    log_file = _ensure_log_file(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset_obj = create_dataset(config)
    logger.info(dataset_obj)
    downloaded = report_downloaded(config, dataset_obj)
    loaders = data_preparation(config, dataset_obj)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_obj = get_model(config["model"])(config, loaders[0]._dataset).to(config["device"])
    logger.info(model_obj)
    return log_file, dataset_obj, downloaded, tuple(loaders), model_obj


def _prepare_trainer(
    config: Config,
    model_obj: Any,
    train_data: Any,
    trainer_hook: Callable[[Any, dict[str, list[float]]], None] | None,
    run_id: str | None,
) -> tuple[Any, dict[str, list[float]], dict[str, Any] | None, float | None, dict[str, Any]]:
    r"""The run's trainer, instrumented: ``(trainer, timings, flops, deadline, stopped)``
    (per-epoch seconds and curves; FLOPs of one step with ``count_train_flops``; the
    :data:`FIT_DEADLINE_ENV` deadline and whether it stopped the run)."""
    trainer = trainer_class(config)(config, model_obj)
    # RecBole names checkpoints <model>-<local time to the second>.pth: two runs started in the
    # same second would overwrite each other's (under DDP every rank must agree on the name:
    # the launcher passes one run_id to all)
    trainer.saved_model_file = unique_checkpoint_file(
        config["checkpoint_dir"], config["model"], config["dataset"], run_id
    )
    timings = instrument(trainer)
    deadline = fit_deadline()
    stopped: dict[str, Any] = {}
    if deadline is not None:
        stop_at_deadline(trainer, deadline, stopped)
    if trainer_hook is not None:
        trainer_hook(trainer, timings)
    flops = profile_flops(trainer, train_data) if config["count_train_flops"] else None
    return trainer, timings, flops, deadline, stopped


def _fit_and_test(config: Config, trainer: Any, loaders: tuple, saved: bool) -> dict[str, Any]:
    r"""``trainer.fit`` on the training and validation data, then the test evaluation (of the
    best checkpoint when ``saved``), timed."""
    train_data, valid_data, test_data = loaders
    if torch.cuda.is_available() and config["device"].type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.time()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    fit_seconds = time.time() - start
    start = time.time()
    test_result = trainer.evaluate(
        test_data, load_best_model=saved, show_progress=config["show_progress"]
    )
    return {
        "best_valid_score": best_valid_score,
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "fit_seconds": fit_seconds,
        "eval_seconds": time.time() - start,
        "n_test_users": _count_eval_users(test_data),
    }


def _run_costs(
    config: Config,
    trainer: Any,
    model_obj: Any,
    timings: dict[str, list[float]],
    outcome: dict[str, Any],
    flops: dict[str, Any] | None,
    deadline: float | None,
    stopped: dict[str, Any],
) -> dict[str, Any]:
    r"""The ``costs`` of a run's result: seconds, curves, users/s, parameters, memory, device."""
    eval_seconds = outcome["eval_seconds"]
    costs = {
        "fit_seconds": outcome["fit_seconds"],
        "epochs": len(timings["train"]),
        "best_epoch": trainer.best_epoch,
        "train_epoch_seconds": timings["train"],
        "valid_epoch_seconds": timings["valid"],
        # learning curves: each validation's score (valid_metric) and each epoch's training loss
        "valid_scores": timings["valid_score"],
        "train_losses": timings["train_loss"],
        "test_eval_seconds": eval_seconds,
        "eval_users_per_second": (
            outcome["n_test_users"] / eval_seconds if eval_seconds > 0 else None
        ),
        "parameters": sum(p.numel() for p in model_obj.parameters() if p.requires_grad),
        "peak_rss_mb": peak_rss_mb(),
        "peak_cuda_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if config["device"].type == "cuda" else None
        ),
        "device": str(config["device"]),
        "device_name": _device_name(config["device"]),
        # bfloat16 autocast of recbole-fair's trainers (recbole_fair.trainer.sync_free)
        "autocast_dtype": str(getattr(trainer, "autocast_dtype", None) or "float32").replace(
            "torch.", ""
        ),
        # the run stopped training at RECBOLE_FAIR_FIT_DEADLINE (before its epoch cap or early
        # stopping); fit_deadline: that UNIX time, None without one
        "stopped_at_deadline": bool(stopped.get("stopped")),
        "fit_deadline": deadline,
        # A debugging mode that roughly halves training speed: off unless the user turned it on
        # (RecBole's sine.py used to switch it on for the whole process; recbole_fair.compat).
        "autograd_anomaly_mode": torch.is_anomaly_enabled(),
    }
    if timings["train"]:
        costs["train_seconds_per_epoch"] = sum(timings["train"]) / len(timings["train"])
    if flops is not None:
        # count_train_flops: FLOPs of one batch and of an epoch (recbole_fair.flops)
        costs.update(flops)
        if flops.get("train_flops_per_epoch") and costs.get("train_seconds_per_epoch"):
            costs["train_tflops_per_second"] = (
                flops["train_flops_per_epoch"] / costs["train_seconds_per_epoch"] / 1e12
            )
    return costs


def trainer_class(config: Any) -> type:
    r"""The trainer of ``config``'s model (:func:`recbole_fair.utils.get_trainer`); with
    ``sync_free_train_loop: True``, a model trained by RecBole's own ``Trainer`` (SASRec...) gets
    :class:`~recbole_fair.trainer.sync_free.SyncFreeTrainer` instead (the same updates without
    host synchronisations inside an epoch)."""
    from recbole.trainer import Trainer

    from recbole_fair.trainer.sync_free import SyncFreeTrainer

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])
    if config["sync_free_train_loop"] and trainer is Trainer:
        return SyncFreeTrainer
    return trainer


def _device_name(device: Any) -> str | None:
    try:
        if torch.device(device).type == "cuda":
            return torch.cuda.get_device_name(torch.device(device))
    except Exception:  # noqa: BLE001 - a name for the record only
        return None
    return None


def format_results(
    valid: dict[str, float] | None,
    test: dict[str, float] | None,
    paths: dict[str, str | None],
    title: str = "results",
) -> str:
    r"""The end-of-run summary: one line per metric with its best-validation and test values as
    plain numbers, then the paths of the run's files (those that exist)."""
    valid, test = valid or {}, test or {}
    metrics = list(dict.fromkeys([*valid, *test]))
    width = max([len(m) for m in metrics] + [len("metric")])
    lines = [title, f"{'metric':<{width}}  {'valid':>8}  {'test':>8}"]
    for metric in metrics:
        cells = [
            f"{float(values[metric]):>8.4f}" if metric in values else f"{'-':>8}"
            for values in (valid, test)
        ]
        lines.append(f"{metric:<{width}}  " + "  ".join(cells))
    names = {"log_file": "log file", "checkpoint": "checkpoint", "semantic_id_cache": "SID cache"}
    for key, path in paths.items():
        if path:
            lines.append(f"{names.get(key, key)}: {path}")
    return "\n".join(lines)


def _count_eval_users(eval_data: Any) -> int:
    dataset = eval_data._dataset
    return int(len(dataset.inter_feat)) if dataset is not None else 0
