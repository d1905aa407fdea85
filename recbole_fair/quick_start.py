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
from recbole.utils import init_logger, init_seed, set_color

from recbole_fair.config import Config
from recbole_fair.data.download import download_dataset, report_downloaded
from recbole_fair.data.validate import missing_dataset_message
from recbole_fair.utils import create_dataset, get_model, get_trainer

# Environment variable: a wall-clock deadline (UNIX time, seconds) for every run's training. After
# each validated epoch, a run whose next epoch would end past it stops training there (its best
# checkpoint so far is tested as usual; costs.stopped_at_deadline says so). The GPU suite
# (benchmarks/gpu/device_run.sh) sets it so that cells sharing one lent window all finish in it.
# An operating limit, not a setting of the model: it is not part of the config (nor of a
# leaderboard cell's config hash).
FIT_DEADLINE_ENV = "RECBOLE_FAIR_FIT_DEADLINE"


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
    check_data_files(config)
    init_seed(config["seed"], config["reproducibility"])
    _drop_run_file_handlers()
    log_file = _ensure_log_file(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset_obj = create_dataset(config)
    logger.info(dataset_obj)
    downloaded = report_downloaded(config, dataset_obj)
    train_data, valid_data, test_data = data_preparation(config, dataset_obj)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_obj = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model_obj)
    n_params = sum(p.numel() for p in model_obj.parameters() if p.requires_grad)

    trainer = trainer_class(config)(config, model_obj)
    # RecBole names checkpoints <model>-<local time to the second>.pth: two runs started in the
    # same second would overwrite each other's (under DDP every rank must agree on the name:
    # the launcher passes one run_id to all)
    trainer.saved_model_file = unique_checkpoint_file(
        config["checkpoint_dir"], config["model"], config["dataset"], run_id
    )
    timings = _instrument(trainer)
    deadline = fit_deadline()
    stopped: dict[str, Any] = {}
    if deadline is not None:
        _stop_at_deadline(trainer, deadline, stopped)
    if trainer_hook is not None:
        trainer_hook(trainer, timings)
    flops = None
    if config["count_train_flops"]:
        flops = _profile_flops(trainer, train_data)
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
    eval_seconds = time.time() - start
    n_test_users = _count_eval_users(test_data)

    semantic_ids = getattr(train_data._dataset, "semantic_id_report", None)
    costs = {
        "fit_seconds": fit_seconds,
        "epochs": len(timings["train"]),
        "best_epoch": trainer.best_epoch,
        "train_epoch_seconds": timings["train"],
        "valid_epoch_seconds": timings["valid"],
        # learning curves: each validation's score (valid_metric) and each epoch's training loss
        "valid_scores": timings["valid_score"],
        "train_losses": timings["train_loss"],
        "test_eval_seconds": eval_seconds,
        "eval_users_per_second": n_test_users / eval_seconds if eval_seconds > 0 else None,
        "parameters": n_params,
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
    paths = {
        "log_file": log_file,
        "checkpoint": os.path.abspath(trainer.saved_model_file) if saved else None,
        "semantic_id_cache": getattr(train_data._dataset, "semantic_id_cache_path", None),
    }
    logger.info(
        format_results(
            best_valid_result,
            test_result,
            paths,
            title=f"{config['model']} on {config['dataset']}: best epoch "
            + ("-" if trainer.best_epoch is None else str(trainer.best_epoch + 1))
            + f" of {len(timings['train'])} trained (1-based)",
        )
    )

    result = {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "semantic_ids": semantic_ids,
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


def fit_deadline() -> float | None:
    r"""The training deadline of :data:`FIT_DEADLINE_ENV` (UNIX seconds), None when unset.

    Raises:
        ValueError: a value that is not a number.
    """
    text = os.environ.get(FIT_DEADLINE_ENV, "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as err:
        raise ValueError(
            f"{FIT_DEADLINE_ENV} must be a UNIX time in seconds (e.g. $(($(date +%s) + 600))), "
            f"got {text!r}"
        ) from err


class _DeadlineReached(Exception):
    r"""Raised after an epoch's callback when the next epoch would end past the deadline."""


def _stop_at_deadline(trainer: Any, deadline: float, stopped: dict[str, Any]) -> None:
    r"""Make ``trainer.fit`` stop after the validated epoch past which another epoch (as long as
    the longest of the last one and the mean so far) would end after ``deadline``; ``fit`` then
    returns its best score and result so far, as after early stopping. At least one epoch runs.
    Sets ``stopped['stopped']`` (and ``stopped['epoch']``) when it stops a run."""
    fit = trainer.fit

    def fit_until(train_data, valid_data=None, *args, **kwargs):
        user_callback = kwargs.pop("callback_fn", None)
        marks = [time.time()]

        def callback(epoch_idx, valid_score):
            if user_callback is not None:
                user_callback(epoch_idx, valid_score)
            now = time.time()
            marks.append(now)
            last = marks[-1] - marks[-2]
            mean = (marks[-1] - marks[0]) / (len(marks) - 1)
            if now + max(last, mean) > deadline:
                stopped.update(stopped=True, epoch=epoch_idx)
                raise _DeadlineReached

        try:
            return fit(train_data, valid_data, *args, callback_fn=callback, **kwargs)
        except _DeadlineReached:
            getLogger().warning(
                set_color("deadline", "red")
                + f": stopped after epoch {stopped['epoch']} of {trainer.epochs} "
                f"({FIT_DEADLINE_ENV}: another epoch would end after it); testing the best "
                f"checkpoint so far (epoch {trainer.best_epoch})"
            )
            return trainer.best_valid_score, trainer.best_valid_result

    trainer.fit = fit_until


def _profile_flops(trainer: Any, train_data: Any) -> dict[str, Any] | None:
    r""":func:`recbole_fair.flops.profile_train_step`, logged; None (with a warning) when the
    FLOP counter fails on this model (the run goes on without the numbers)."""
    from recbole_fair.flops import profile_train_step

    try:
        flops = profile_train_step(trainer, train_data)
    except Exception as err:  # noqa: BLE001 - a measurement must not end the run
        getLogger().warning(f"count_train_flops: could not count this model's FLOPs ({err})")
        return None
    getLogger().info(
        set_color("training FLOPs", "pink")
        + f": {flops['train_flops_per_batch'] / 1e9:.1f} GFLOP per batch of "
        f"{flops['train_flops_batch_rows']}, {flops['train_flops_per_epoch'] / 1e12:.2f} TFLOP "
        f"per epoch; host synchronisations per step: {flops['host_syncs_per_step']}"
    )
    return flops


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


def _total_loss(loss: Any) -> float:
    r"""An epoch's training loss as one number: trainers return a float or a tuple of losses,
    which may nest (KGAT); anything else is recorded as NaN rather than failing the run."""
    if isinstance(loss, (tuple, list)):
        return float(sum(_total_loss(part) for part in loss))
    try:
        return float(loss)
    except (TypeError, ValueError):
        return float("nan")


def _instrument(trainer: Any) -> dict[str, list[float]]:
    r"""Record, on the trainer instance, the best epoch and the seconds of each training and
    validation epoch (RecBole's ``fit`` reports neither separately).

    RecBole's trainer saves a checkpoint exactly when the validation score improves (or once at
    the end when it never validates), so the epoch of the last save is the best epoch.
    """
    timings: dict[str, list[float]] = {
        "train": [],
        "valid": [],
        "valid_score": [],
        "train_loss": [],
    }
    save, train_epoch, valid_epoch = (
        trainer._save_checkpoint,
        trainer._train_epoch,
        trainer._valid_epoch,
    )

    def _save_checkpoint(epoch, *args, **kwargs):
        trainer.best_epoch = epoch
        return save(epoch, *args, **kwargs)

    def _timed(fn, bucket, curve, value):
        def wrapper(*args, **kwargs):
            start = time.time()
            out = fn(*args, **kwargs)
            timings[bucket].append(time.time() - start)
            timings[curve].append(value(out))
            return out

        return wrapper

    trainer.best_epoch = None
    trainer._save_checkpoint = _save_checkpoint
    # _train_epoch returns the loss (a tuple of losses for multi-part losses), _valid_epoch
    # (valid_score, valid_result)
    trainer._train_epoch = _timed(train_epoch, "train", "train_loss", _total_loss)
    trainer._valid_epoch = _timed(valid_epoch, "valid", "valid_score", lambda out: float(out[0]))
    return timings
