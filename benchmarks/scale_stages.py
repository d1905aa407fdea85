r"""The measurements of ``benchmarks/bench_scale.py``, each run in a process of its own.

A stage function takes the stage's spec (a dict, see ``bench_scale.stage_spec``) and returns its
metrics; it marks the step it is in with :func:`step` (so that a stage stopped for time or
memory says where) and measures each timed part with :class:`Measured`: wall seconds, CPU
seconds of the process (all threads; at one thread, what the wall time would be on an idle
machine) and peak memory (Linux: the resident-set high-water mark ``VmHWM``, reset through
``/proc/self/clear_refs``).

Everything goes through recbole-fair's public entry points: ``recbole_fair.config.Config``,
``recbole_fair.utils.create_dataset`` / ``get_model``, ``recbole_fair.quick_start.trainer_class``,
``recbole_fair.tokenizer`` (``build_semantic_ids``, ``OPQProductQuantizer``,
``SemanticIDSettings``, ``make_encoder_fn``) and RecBole's ``data_preparation``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from typing import Any, Callable, Iterator

import numpy as np

import recbole_fair  # noqa: F401  (installs the compatibility shims)

STEP_FILE_ENV = "BENCH_SCALE_STEP_FILE"
TOPK = 10


# ------------------------------------------------------------------------------------ memory
def _status_mb(field: str, pid: int | str = "self") -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def rss_mb(pid: int | str = "self") -> float | None:
    r"""Resident memory of a process in MiB (``VmRSS``), None where /proc is missing."""
    return _status_mb("VmRSS", pid)


def peak_mb(pid: int | str = "self") -> float | None:
    r"""Peak resident memory of a process in MiB (``VmHWM``), else ``ru_maxrss`` (own process)."""
    value = _status_mb("VmHWM", pid)
    if value is None and pid == "self":
        import resource

        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return value


_PEAK_BEFORE_RESETS = [0.0]  # the process' peak before the last reset of the high-water mark


def process_peak_mb() -> float | None:
    r"""Peak resident memory of this process since it started, across :class:`Measured`'s
    resets of the high-water mark."""
    now = peak_mb()
    return max(_PEAK_BEFORE_RESETS[0], now or 0.0) or None


class Measured:
    r"""``with Measured() as m: ...`` then ``m.seconds`` (wall), ``m.cpu_seconds`` (this
    process, all threads), ``m.peak_mb``: the peak resident memory of this process during the
    block (the high-water mark is reset on entry where Linux allows it; elsewhere the process'
    peak so far; blocks may nest), and ``m.start_mb``, the resident memory on entry.
    :meth:`restart` restarts the clocks (after warm-up steps), not the memory."""

    active: list[Measured] = []  # the blocks open now, outermost first

    def restart(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __enter__(self) -> Measured:
        before = peak_mb() or 0.0  # the open blocks' peak so far, which the reset forgets
        _PEAK_BEFORE_RESETS[0] = max(_PEAK_BEFORE_RESETS[0], before)
        for outer in Measured.active:
            outer.seen = max(outer.seen, before)
        self.seen = 0.0
        Measured.active.append(self)
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # reset the peak resident set size (Linux >= 4.0)
            self.reset = True
        except OSError:
            self.reset = False
        self.start_mb = rss_mb()
        self.restart()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu
        Measured.active.remove(self)
        self.peak_mb = max(self.seen, peak_mb() or 0.0) or None

    def report(self, name: str) -> dict[str, Any]:
        r"""``{name}_seconds``, ``{name}_cpu_seconds`` and ``{name}_peak_mb``."""
        return {
            f"{name}_seconds": self.seconds,
            f"{name}_cpu_seconds": self.cpu_seconds,
            f"{name}_peak_mb": self.peak_mb,
        }


def step(name: str) -> None:
    r"""Record the step the stage is in (read by the parent when it stops the stage)."""
    path = os.environ.get(STEP_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.time():.1f}\t{name}\n")


def set_threads(n: int) -> None:
    import faiss
    import torch

    torch.set_num_threads(int(n))
    faiss.omp_set_num_threads(int(n))


# ------------------------------------------------------------------------------------ config
def base_config(spec: dict) -> dict[str, Any]:
    r"""The config_dict every run of a catalogue shares (data, protocol, batch sizes)."""
    return {
        "data_path": spec["data_path"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "MAX_ITEM_LIST_LENGTH": int(spec["history"]),
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "train_batch_size": int(spec["train_batch_size"]),
        "eval_batch_size": int(spec["eval_batch_size"]),
        "show_progress": False,
        "seed": int(spec["seed"]),
        "checkpoint_dir": os.path.join(spec["work_dir"], "saved"),
        "epochs": 1,
        "use_gpu": False,  # the CPU costs (a CUDA machine would time its GPU otherwise)
    }


def model_config(spec: dict, model: str) -> dict[str, Any]:
    r"""FAIR (FAIR.yaml with ``hidden_size``/``inner_size`` and the semantic-ID settings of the
    spec) or SASRec-CE at the same width (RecBole's other defaults), both trained by
    recbole-fair's sync-free loop."""
    config = base_config(spec)
    config.update(hidden_size=int(spec["hidden_size"]), inner_size=int(spec["inner_size"]))
    if model == "FAIR":
        text_fields = ["title", "brand", "categories", "description"]
        config.update(
            load_col={
                "inter": ["user_id", "item_id", "timestamp"],
                "item": ["item_id", *text_fields],
            },
            text_fields=text_fields,
            text_encoder=spec["text_encoder"],
            sid_cache_dir=spec["sid_cache_dir"],
            n_codes=int(spec["n_codes"]),
            codebook_size=int(spec["codebook_size"]),
            decoding=spec.get("decoding", "exact"),
        )
    else:
        config.update(
            load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
            loss_type="CE",
            train_neg_sample_args=None,
            sync_free_train_loop=True,
        )
    return config


def make_config(spec: dict, model: str) -> Any:
    from recbole_fair.config import Config

    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value pairs from the command line
    return Config(model=model, dataset=spec["dataset"], config_dict=model_config(spec, model))


def encoder_fn(spec: dict) -> Callable[[list], np.ndarray]:
    r"""The text encoder of the spec: the stand-in, or the packaged default through
    ``recbole_fair.tokenizer.make_encoder_fn``."""
    if spec["encoder"] == "stand-in":
        from scale_catalogue import StandInEncoder

        return StandInEncoder(dim=int(spec["standin_dim"]))
    from recbole_fair.tokenizer import DEFAULT_TEXT_ENCODER, make_encoder_fn

    return make_encoder_fn(DEFAULT_TEXT_ENCODER, int(spec["encode_batch_size"]), "cpu", False)


def install_encoder(spec: dict) -> None:
    r"""With the stand-in, the dataset's encoder hook (used only when the semantic-ID cache the
    ``sid`` stage wrote does not match, which the records would show as ``sid_cache_hit``)."""
    if spec["encoder"] == "stand-in":
        from recbole_fair.data import SemanticIDDataset

        SemanticIDDataset.encoder_fn = encoder_fn(spec)


# ------------------------------------------------------------------------------- data stage
def stage_data(spec: dict) -> dict[str, Any]:
    from scale_catalogue import CatalogueSpec, write_catalogue

    step("generate")
    catalogue = CatalogueSpec(
        int(spec["n_items"]),
        float(spec["users_per_item"]),
        float(spec["mean_length"]),
        int(spec["seed"]),
    )
    start = time.perf_counter()
    folder = os.path.join(spec["data_path"], spec["dataset"])
    stats = write_catalogue(folder, spec["dataset"], catalogue)
    return {"generate_seconds": time.perf_counter() - start, **stats}


# ------------------------------------------------------------------------- semantic-ID stage
def training_items(dataset: Any) -> np.ndarray:
    r"""Items of the training split of the leave-one-out protocol, computed from the loaded
    interactions: every user's interactions but the last two in time order (RecBole's
    ``LS: valid_and_test`` split; the targets and histories of the training rows). Must equal
    the mask ``SemanticIDDataset.build`` computes; the FAIR stages check it through the cache."""
    inter = dataset.inter_feat
    # a pandas DataFrame before build(), an Interaction after
    uid, iid, time_ = (
        np.asarray(inter[f]) for f in (dataset.uid_field, dataset.iid_field, dataset.time_field)
    )
    order = np.lexsort((np.arange(len(uid)), time_, uid))
    sorted_uid = uid[order]
    starts = np.flatnonzero(np.r_[True, sorted_uid[1:] != sorted_uid[:-1]])
    sizes = np.diff(np.r_[starts, len(uid)])
    rank = np.arange(len(uid)) - np.repeat(starts, sizes)
    keep = rank < np.repeat(sizes, sizes) - 2
    mask = np.zeros(dataset.item_num, dtype=bool)
    mask[iid[order][keep]] = True
    mask[0] = False
    return mask


def _timed_encoder(fn: Callable, out: dict) -> Callable:
    def encode(texts: list) -> np.ndarray:
        step("encode")
        with Measured() as m:
            embeddings = fn(texts)
        out.update(m.report("encode"))
        step("quantize")
        return embeddings

    return encode


@contextlib.contextmanager
def timed_quantizer(out: dict) -> Iterator[None]:
    r"""Time ``OPQProductQuantizer.fit`` and ``.encode`` where the pipeline calls them (the
    first call of each; the class is patched in this stage process only)."""
    from recbole_fair.tokenizer import OPQProductQuantizer as Quantizer

    fit, encode = Quantizer.fit, Quantizer.encode

    def timed_fit(self: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        step("fit")
        with Measured() as m:
            result = fit(self, x, *args, **kwargs)
        if "fit_seconds" not in out:
            out.update(m.report("fit"), fit_items=len(x), embedding_dim=int(x.shape[1]))
            out.update(faiss_threads=self.threads, fit_codes=self.n_digits)
        step("encode all")
        return result

    def timed_encode(self: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        with Measured() as m:
            codes = encode(self, x, *args, **kwargs)
        if "encode_all_seconds" not in out:
            out.update(m.report("encode_all"), encode_all_items=len(x))
        step("after the quantizer")
        return codes

    Quantizer.fit, Quantizer.encode = timed_fit, timed_encode
    try:
        yield
    finally:
        Quantizer.fit, Quantizer.encode = fit, encode


def faiss_samples(n_train: int, dim: int, n_codes: int, settings: Any) -> dict[str, Any]:
    r"""How many of the ``n_train`` items faiss trains on: it draws its own samples (OPQ:
    ``OPQMatrix.max_train_points``; k-means: ``max_points_per_centroid`` per centroid; PCA:
    ``max_points_per_d`` per dimension)."""
    import faiss

    opq = faiss.OPQMatrix(settings.sid_pca_dim or dim, n_codes).max_train_points
    kmeans = faiss.ClusteringParameters().max_points_per_centroid * settings.codebook_size
    pca = (
        faiss.PCAMatrix(dim, settings.sid_pca_dim).max_points_per_d * dim
        if settings.sid_pca_dim
        else None
    )
    return {
        "fit_opq_sample": min(n_train, opq),
        "fit_kmeans_sample_per_digit": min(n_train, kmeans),
        "fit_pca_sample": min(n_train, pca) if pca else None,
    }


def _pipeline_build(spec: dict, texts: list, mask: np.ndarray, settings: Any) -> tuple[Any, dict]:
    r"""``build_semantic_ids`` from scratch into a fresh cache folder, its encoder, fit and
    encode-all timed as it runs, the files then moved into the shared cache (so the FAIR stages
    load them) and loaded once more from there."""
    from recbole_fair.tokenizer import build_semantic_ids

    fresh = os.path.join(spec["work_dir"], f"sid_build_{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    settings.sid_cache_dir = fresh
    out: dict[str, Any] = {}
    with timed_quantizer(out), Measured() as m:
        sids = build_semantic_ids(texts, mask, settings, _timed_encoder(encoder_fn(spec), out))
    out.update(m.report("build"))
    os.makedirs(spec["sid_cache_dir"], exist_ok=True)
    for name in os.listdir(fresh):
        os.replace(os.path.join(fresh, name), os.path.join(spec["sid_cache_dir"], name))
    shutil.rmtree(fresh, ignore_errors=True)
    step("load from the cache")
    settings.sid_cache_dir = spec["sid_cache_dir"]
    with Measured() as m:
        again = build_semantic_ids(texts, mask, settings, encoder_fn=_refuse_encoding)
    out.update(m.report("cache_load"), cache_hit=bool(again.report.get("cache_hit")))
    return sids, out


def _refuse_encoding(texts: list) -> np.ndarray:
    raise RuntimeError("the semantic-ID cache written a moment ago was not found")


def stage_sid(spec: dict) -> dict[str, Any]:
    from recbole_fair.tokenizer import SemanticIDSettings
    from recbole_fair.utils import create_dataset

    step("load")
    start = time.perf_counter()
    config = make_config(spec, "FAIR")
    dataset = create_dataset(config)
    texts, mask = list(dataset.item_texts), training_items(dataset)
    settings = SemanticIDSettings.from_config(config)
    settings.text_fields = list(dataset.text_fields)
    settings.show_progress = False
    load_seconds = time.perf_counter() - start
    del dataset
    sids, build = _pipeline_build(spec, texts, mask, settings)
    if "fit_seconds" not in build or "encode_all_seconds" not in build:
        raise RuntimeError(
            "build_semantic_ids no longer calls OPQProductQuantizer.fit/encode: update "
            "timed_quantizer to time the quantizer where the pipeline runs it"
        )
    dim = int(sids.embeddings.shape[1])
    report = sids.report
    return {
        "load_seconds": load_seconds,
        **build,
        **faiss_samples(build["fit_items"], dim, build["fit_codes"], settings),
        "n_items": len(texts) - 1,
        "n_train_items": int(mask.sum()),
        "text_encoder": settings.text_encoder,
        "mean_text_words": float(np.mean([len(t.split()) for t in texts[1:]])),
        "collision_rate": report.get("collision_rate"),
        "mean_codebook_usage": report.get("mean_codebook_usage"),
    }


# ------------------------------------------------------------------------ training/eval setup
def _load_model(spec: dict, model_name: str) -> tuple[Any, Any, Any, dict]:
    r"""Config, dataset split, model (random weights) and setup facts of a training or
    evaluation stage."""
    import torch
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_fair.utils import create_dataset, get_model

    install_encoder(spec)
    step("load and split the data")
    start = time.perf_counter()
    config = make_config(spec, model_name)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, test_data = data_preparation(config, dataset)
    data_seconds = time.perf_counter() - start
    step("build the model")
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    report = getattr(train_data._dataset, "semantic_id_report", None) or {}
    facts = {
        "data_seconds": data_seconds,
        "n_items": int(model.n_items) - 1,
        "n_users": int(dataset.user_num) - 1,
        "parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "device": str(config["device"]),
        "torch_threads": torch.get_num_threads(),
        "sid_cache_hit": report.get("cache_hit") if report else None,
        "data_peak_mb": process_peak_mb(),
    }
    return config, (train_data, test_data), model, facts


def _batches(loader: Any, n: int) -> list:
    r"""The first ``n`` batches of a loader (repeated when it has fewer), fetched beforehand so
    that no data loading is timed."""
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) >= n:
            break
    if not batches:
        raise RuntimeError("the loader yields no batch")
    return [batches[i % len(batches)] for i in range(n)]


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- training stage
def _targets(model: Any, config: Any, batch: Any) -> int:
    r"""Training targets in a batch: every valid position of a window with ``train_mode:
    all_positions`` (FAIR), else one per row (SASRec-CE, ``prefix``)."""
    if config["model"] == "FAIR" and (config["train_mode"] or "all_positions") == "all_positions":
        return int(batch[model.ITEM_SEQ_LEN].sum())
    return len(batch)


def _train_steps(trainer: Any, model: Any, batches: list, warmup: int, measured: Measured) -> float:
    r"""Run the trainer's own step (``batch_to_device``, ``train_step``, clipping, optimizer
    step) on each batch, restarting ``measured``'s clocks after the first ``warmup``; return
    the last loss."""
    from torch.nn.utils.clip_grad import clip_grad_norm_

    model.train()
    loss = None
    for i, batch in enumerate(batches):
        if i == warmup:
            _sync(trainer.device)
            measured.restart()
        interaction = trainer.batch_to_device(batch)
        trainer.optimizer.zero_grad()
        loss, _ = trainer.train_step(interaction, model.calculate_loss)
        if trainer.clip_grad_norm:
            clip_grad_norm_(model.parameters(), **trainer.clip_grad_norm)
        trainer.optimizer.step()
    _sync(trainer.device)
    return float(loss.detach())


def stage_train(spec: dict) -> dict[str, Any]:
    from recbole_fair.quick_start import trainer_class

    config, (train_data, _), model, facts = _load_model(spec, spec["model"])
    trainer = trainer_class(config)(config, model)
    warmup, steps = int(spec["train_warmup_steps"]), int(spec["train_steps"])
    step("fetch batches")
    batches = _batches(train_data, warmup + steps)
    targets = sum(_targets(model, config, b) for b in batches[warmup:])
    step("train steps")
    with Measured() as m:
        loss = _train_steps(trainer, model, batches, warmup, m)
    if not math.isfinite(loss):
        raise ValueError(f"training loss is {loss}")
    epoch_targets = _targets(model, config, train_data._dataset.inter_feat)
    return {
        **facts,
        "trainer": type(trainer).__name__,
        "steps": steps,
        "warmup_steps": warmup,
        "timed_seconds": m.seconds,
        "timed_cpu_seconds": m.cpu_seconds,
        "targets": targets,
        "seconds_per_1k_targets": 1000.0 * m.seconds / targets,
        "seconds_per_step": m.seconds / steps,
        "epoch_targets": epoch_targets,
        "estimated_epoch_seconds": m.seconds / targets * epoch_targets,
        "last_loss": loss,
        "step_peak_mb": m.peak_mb,
        "step_start_mb": m.start_mb,
    }


# --------------------------------------------------------------------------- evaluation stage
def _rank(model: Any, batches: list, device: Any) -> int:
    r"""``full_sort_predict`` + top-10 of every batch; returns the users ranked."""
    import torch

    users = 0
    for interaction in batches:
        scores = model.full_sort_predict(interaction)  # [B, n_items]
        torch.topk(scores, TOPK, dim=1)
        users += len(interaction)
    _sync(device)
    return users


def stage_eval(spec: dict) -> dict[str, Any]:
    import torch

    config, (_, test_data), model, facts = _load_model(spec, spec["model"])
    device = config["device"]
    n_batches = max(1, math.ceil(int(spec["eval_users"]) / int(spec["eval_batch_size"])))
    step("fetch batches")
    batches = [b[0].to(device) for b in _batches(test_data, n_batches)]
    model.eval()
    out: dict[str, Any] = {}
    with torch.no_grad(), Measured() as m:
        if spec.get("decoding") == "graph":
            step("build the item graph")
            with Measured() as graph:
                model.item_graph()
                _sync(device)
            out.update(graph_build_seconds=graph.seconds, graph_build_cpu_seconds=graph.cpu_seconds)
        step("warm-up batch")
        model.full_sort_predict(batches[0])
        step("rank")
        _sync(device)
        m.restart()
        users = _rank(model, batches, device)
    return {
        **facts,
        **out,
        "decoding": spec.get("decoding"),
        "users": users,
        "timed_seconds": m.seconds,
        "timed_cpu_seconds": m.cpu_seconds,
        "users_per_second": users / m.seconds,
        "seconds_per_user": m.seconds / users,
        "eval_peak_mb": m.peak_mb,
        "eval_start_mb": m.start_mb,
    }


STAGES = {"data": stage_data, "sid": stage_sid, "train": stage_train, "eval": stage_eval}


def preload() -> None:
    r"""Import what every stage needs once, in the parent, before the stages are forked from it
    (no computation: a forked child must not inherit running thread pools)."""
    import faiss  # noqa: F401
    import recbole.data  # noqa: F401
    import recbole.model.sequential_recommender  # noqa: F401
    import torch  # noqa: F401

    import recbole_fair.config  # noqa: F401
    import recbole_fair.data  # noqa: F401
    import recbole_fair.model.sequential_recommender  # noqa: F401
    import recbole_fair.quick_start  # noqa: F401
    import recbole_fair.tokenizer  # noqa: F401
    import recbole_fair.utils  # noqa: F401


def run(spec: dict) -> dict[str, Any]:
    r"""Run the stage of ``spec`` (``spec['kind']``: data, sid, train or eval) with the spec's
    thread count, in ``spec['work_dir']`` (RecBole writes its logs there); the result carries
    ``process_peak_mb``, the stage process' peak resident memory."""
    os.makedirs(spec["work_dir"], exist_ok=True)
    os.chdir(spec["work_dir"])
    set_threads(int(spec["threads"]))
    result = STAGES[spec["kind"]](spec)
    return {**result, "process_peak_mb": process_peak_mb()}
