r"""Tables, growth exponents and curves of ``benchmarks/bench_scale.py``'s records.

:func:`render` writes ``scale.md`` and ``scale.png`` into a folder (``docs/performance``);
:func:`exponents` fits ``log(time) = k log(N) + c`` by least squares for every measurement with
at least two sizes that finished. Only the records' figures, settings, commits and command lines
go into the files (the command lines were stripped of machine paths when recorded).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np

# (stage, metric, label): the times whose growth is fitted and drawn
TIMES = (
    ("sid", "encode_seconds", "text encoding, s"),
    ("sid", "fit_seconds", "quantizer fit, s"),
    ("sid", "encode_all_seconds", "quantizer encode all, s"),
    ("sid", "build_seconds", "semantic-ID build (pipeline), s"),
    ("train:FAIR", "seconds_per_1k_targets", "FAIR training, s / 1k targets"),
    ("train:SASRec", "seconds_per_1k_targets", "SASRec-CE training, s / 1k targets"),
    ("eval:FAIR-exact", "seconds_per_user", "FAIR exact ranking, s / user"),
    ("eval:FAIR-graph", "seconds_per_user", "FAIR graph decoding, s / user"),
    ("eval:FAIR-graph", "graph_build_seconds", "FAIR item-graph build, s"),
    ("eval:SASRec", "seconds_per_user", "SASRec full sort, s / user"),
)
ENCODER_NAMES = {"minilm": "MiniLM", "stand-in": "stand-in", None: "-"}


def portable_text(text: str) -> str:
    r"""``text`` with every absolute path shortened to ``.../<last component>``."""
    return re.sub(r"(?:/[\w.+-]+){2,}", lambda m: ".../" + m.group(0).rsplit("/", 1)[1], text)


def latest(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r"""The last record of every (N, H, stage, encoder), in first-seen order."""
    by_key: dict[tuple, dict[str, Any]] = {}
    for record in records:
        if record.get("record") == "bench_scale":
            key = (record["n_items"], record["history"], record["stage"], record["encoder"])
            by_key[key] = record
    return list(by_key.values())


CLOCKS = ("wall", "cpu")


def value(record: dict[str, Any], metric: str, clock: str = "wall") -> Any:
    r"""A metric of a record on the ``wall`` clock, or on the ``cpu`` clock (the CPU seconds of
    the stage process, all threads: what the wall time would be on an idle machine at one
    thread) for the times and the rates derived from them."""
    m = record.get("metrics") or {}
    if clock == "wall":
        return m.get(metric)
    cpu = m.get("timed_cpu_seconds")
    derived = {
        "seconds_per_1k_targets": lambda: 1000.0 * cpu / m["targets"],
        "estimated_epoch_seconds": lambda: cpu / m["targets"] * m["epoch_targets"],
        "seconds_per_user": lambda: cpu / m["users"],
        "users_per_second": lambda: m["users"] / cpu,
    }
    if metric in derived:
        return derived[metric]() if cpu else None
    if metric.endswith("_seconds"):
        return m.get(metric[: -len("_seconds")] + "_cpu_seconds")
    return m.get(metric)


def fit_exponent(sizes: list[float], times: list[float]) -> float | None:
    r"""``k`` of ``time ∝ N^k`` (least squares on log-log); None below two distinct sizes."""
    if len(set(sizes)) < 2:
        return None
    k, _ = np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float)), 1)
    return float(k)


def series(records: list[dict[str, Any]], clock: str = "wall") -> list[dict[str, Any]]:
    r"""One series per (stage, metric, H, encoder): the sizes and times of its finished rows,
    with the fitted exponent."""
    out = []
    for stage, metric, label in TIMES:
        groups: dict[tuple, list] = {}
        for r in latest(records):
            if r["stage"] != stage or r["status"] != "ok":
                continue
            time_ = value(r, metric, clock)
            if time_ and time_ > 0:
                groups.setdefault((r["history"], r["encoder"]), []).append((r["n_items"], time_))
        for (history, encoder), points in sorted(groups.items(), key=lambda g: str(g[0])):
            points.sort()
            sizes, times = [p[0] for p in points], [p[1] for p in points]
            out.append(
                {
                    "stage": stage,
                    "metric": metric,
                    "label": label,
                    "history": history,
                    "encoder": encoder,
                    "sizes": sizes,
                    "times": times,
                    "k": fit_exponent(sizes, times),
                }
            )
    return out


def exponents_text(records: list[dict[str, Any]], clock: str = "wall") -> str:
    r"""The fitted exponents as plain text lines (printed at the end of a run)."""
    lines = [f"growth exponents k (time ∝ N^k, {clock} clock):"]
    for s in series(records, clock):
        k = "-" if s["k"] is None else f"{s['k']:.2f}"
        h = f" H={s['history']}" if s["history"] else ""
        e = f" [{ENCODER_NAMES.get(s['encoder'], s['encoder'])}]" if s["encoder"] else ""
        lines.append(f"  {s['label']}{h}{e}: k = {k} over N = {s['sizes']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ cells
def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, int) or (isinstance(value, float) and abs(value) >= 100):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{digits}f}"


def _status(record: dict[str, Any] | None) -> str | None:
    r"""The cell text of a record that did not finish (None when it did)."""
    if record is None:
        return "not run"
    if record["status"] == "ok":
        return None
    if record["status"] == "skipped":
        return "skipped"
    text = record["status"].replace("_", " ")
    return f"{text} (in: {record['stopped_in']})" if record.get("stopped_in") else text


def _cell(record: dict[str, Any] | None, metric: str, clock: str, digits: int = 2) -> str:
    status = _status(record)
    return status if status is not None else _num(value(record, metric, clock), digits)


def _peak(record: dict[str, Any] | None, part: str) -> str:
    r"""``stage process / timed part`` peak memory in MiB."""
    if record is None or record["status"] != "ok":
        return ""
    m = record["metrics"]
    return f"{_num(m.get('process_peak_mb'))} / {_num(m.get(part))}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _find(records: list[dict[str, Any]], **want: Any) -> dict[str, Any] | None:
    for r in records:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


# ----------------------------------------------------------------------------------- tables
def data_table(records: list[dict[str, Any]]) -> list[str]:
    header = ["N", "users", "interactions", "per user: mean / median / p99 / max"]
    header += ["users > 200", "items with interactions", "top item's share", "distinct texts"]
    rows = []
    for r in sorted((r for r in records if r["stage"] == "data"), key=_order):
        m = r.get("metrics") or {}
        if r["status"] != "ok":
            rows.append([f"{r['n_items']:,}", _status(r) or ""] + [""] * 6)
            continue
        lengths = [m["length_mean"], m["length_p50"], m["length_p99"], m["length_max"]]
        rows.append(
            [f"{r['n_items']:,}", _num(m["n_users"]), _num(m["n_interactions"])]
            + [f"{lengths[0]:.1f} / {lengths[1]:.0f} / {lengths[2]:.0f} / {lengths[3]:,}"]
            + [_num(m["users_longer_than_200"])]
            + [_num(m["items_with_interactions"]), f"{m['top_item_share']:.2%}"]
            + [_num(m["distinct_texts"])]
        )
    return _table(header, rows)


def sid_table(records: list[dict[str, Any]], clock: str) -> list[str]:
    header = ["N", "encoder", "items in the fit", "faiss samples: OPQ / k-means per digit"]
    header += ["encode s", "fit s", "encode all s", "build s", "cache load s"]
    header += ["peak MiB: stage / build", "collision rate"]
    rows = []
    for r in sorted((r for r in records if r["stage"] == "sid"), key=_order):
        m = r.get("metrics") or {}
        ok = r["status"] == "ok"
        rows.append(
            [
                f"{r['n_items']:,}",
                ENCODER_NAMES.get(r["encoder"], str(r["encoder"])),
                _num(m.get("fit_items")) if ok else "",
                f"{_num(m.get('fit_opq_sample'))} / {_num(m.get('fit_kmeans_sample_per_digit'))}"
                if ok
                else "",
                _cell(r, "encode_seconds", clock),
                _cell(r, "fit_seconds", clock),
                _cell(r, "encode_all_seconds", clock),
                _cell(r, "build_seconds", clock),
                _cell(r, "cache_load_seconds", clock),
                _peak(r, "build_peak_mb"),
                _num(m.get("collision_rate"), 3) if ok else "",
            ]
        )
    return _table(header, rows)


def _order(record: dict[str, Any]) -> tuple:
    return (record["n_items"], record["history"] or 0, str(record["encoder"]))


def _row_keys(records: list[dict[str, Any]], prefix: str) -> list[tuple]:
    keys = set()
    for r in records:
        if r["stage"].startswith(prefix):
            encoder = r["encoder"] if "FAIR" in r["stage"] else None
            keys.add((r["n_items"], r["history"], encoder))
    fair = {(n, h) for n, h, e in keys if e is not None}
    keys = {(n, h, e) for n, h, e in keys if e is not None or (n, h) not in fair}
    return sorted(keys, key=lambda k: (k[0], k[1], str(k[2])))


def train_table(records: list[dict[str, Any]], clock: str) -> list[str]:
    header = ["N", "H", "FAIR s / 1k targets", "FAIR est. epoch s", "peak MiB: stage / steps"]
    header += ["SASRec-CE s / 1k targets", "SASRec-CE est. epoch s", "peak MiB: stage / steps"]
    header += ["FAIR codes from"]
    rows = []
    for n, h, encoder in _row_keys(records, "train:"):
        fair = _find(records, stage="train:FAIR", n_items=n, history=h, encoder=encoder)
        sasrec = _find(records, stage="train:SASRec", n_items=n, history=h)
        rows.append(
            [f"{n:,}", str(h)]
            + [
                _cell(fair, "seconds_per_1k_targets", clock, 3),
                _cell(fair, "estimated_epoch_seconds", clock),
            ]
            + [_peak(fair, "step_peak_mb")]
            + [_cell(sasrec, "seconds_per_1k_targets", clock, 3)]
            + [_cell(sasrec, "estimated_epoch_seconds", clock), _peak(sasrec, "step_peak_mb")]
            + [ENCODER_NAMES.get(encoder, str(encoder))]
        )
    return _table(header, rows)


def eval_table(records: list[dict[str, Any]], clock: str) -> list[str]:
    header = ["N", "H", "FAIR exact users/s", "peak MiB: stage / ranking", "FAIR graph users/s"]
    header += ["item-graph build s", "peak MiB: stage / ranking", "SASRec full sort users/s"]
    header += ["peak MiB: stage / ranking", "FAIR codes from"]
    rows = []
    for n, h, encoder in _row_keys(records, "eval:"):
        exact = _find(records, stage="eval:FAIR-exact", n_items=n, history=h, encoder=encoder)
        graph = _find(records, stage="eval:FAIR-graph", n_items=n, history=h, encoder=encoder)
        sasrec = _find(records, stage="eval:SASRec", n_items=n, history=h)
        rows.append(
            [
                f"{n:,}",
                str(h),
                _cell(exact, "users_per_second", clock),
                _peak(exact, "eval_peak_mb"),
            ]
            + [_cell(graph, "users_per_second", clock), _cell(graph, "graph_build_seconds", clock)]
            + [_peak(graph, "eval_peak_mb"), _cell(sasrec, "users_per_second", clock)]
            + [_peak(sasrec, "eval_peak_mb"), ENCODER_NAMES.get(encoder, str(encoder))]
        )
    return _table(header, rows)


def exponent_table(records: list[dict[str, Any]], clock: str) -> list[str]:
    rows = []
    for s in series(records, clock):
        rows.append(
            [
                s["label"],
                str(s["history"] or "-"),
                ENCODER_NAMES.get(s["encoder"], str(s["encoder"])),
                ", ".join(f"{n:,}" for n in s["sizes"]),
                "" if s["k"] is None else f"{s['k']:.2f}",
            ]
        )
    return _table(["measurement", "H", "encoder", "sizes N", "k (time ∝ N^k)"], rows)


def stops(records: list[dict[str, Any]]) -> list[str]:
    r"""One line per measurement that did not finish: where it stopped and why."""
    lines = []
    for r in sorted(records, key=_order):
        if r["status"] in ("ok",):
            continue
        h = f", H={r['history']}" if r["history"] else ""
        where = f" in step '{r['stopped_in']}'" if r.get("stopped_in") else ""
        why = portable_text(r.get("reason") or "")[:240]
        lines.append(
            f"- `{r['stage']}`{h}: {r['status'].replace('_', ' ')} at N={r['n_items']:,}{where}: {why}"
        )
    return lines or ["Every measurement finished."]


# ----------------------------------------------------------------------------------- render
def _settings_lines(records: list[dict[str, Any]]) -> list[str]:
    settings = [r.get("settings") or {} for r in records]
    commits = sorted(
        {(r.get("git_commit") or "?")[:10] + ("+" if r.get("git_dirty") else "") for r in records}
    )
    argvs = sorted({" ".join(r.get("argv") or []) for r in records})
    keys = sorted({k for s in settings for k in s})
    values = []
    for key in keys:
        seen = sorted({str(s.get(key)) for s in settings if key in s})
        values.append(f"`{key}` {' / '.join(seen)}")
    cpus = sorted({str(r.get("cpu_count")) for r in records})
    lines = [
        f"Settings: {', '.join(values)}.",
        "",
        f"Machine: {' / '.join(cpus)} CPU cores. Commits: {', '.join(commits)} (`+`: with "
        "uncommitted changes). Command lines (paths shortened):",
        "",
    ]
    lines += [f"    python benchmarks/bench_scale.py {portable_text(a)}" for a in argvs]
    return lines


INTRO = """\
Generated by `python benchmarks/bench_scale.py --render` from the results of `bench_scale.py`
(the synthetic catalogues, stages and limits are described in its docstring). Every stage ran in
a process of its own; peak memory is that process' peak resident set ("stage"), and the peak
during the timed part alone ("build", "steps", "ranking"). Models have random weights: these
are costs, not quality. The quantizer is fitted on every training item the pipeline passes it;
faiss then trains on its own samples of them (the sample sizes are in the table). Training
times are the trainer's own step (batch to device, loss, backward, clipping, AdamW) over a fixed
number of steps after warm-up, without data loading; "est. epoch" multiplies by the training
targets of an epoch. Ranking is `full_sort_predict` + top-10 on prepared batches; graph
decoding's one-off item-graph build is timed apart."""


CLOCK_NOTES = {
    "wall": "Times are wall-clock seconds (`--clock=wall`); on a machine shared with other work "
    "they include the waits for a core. Every record also has the CPU seconds (`--clock=cpu`).",
    "cpu": "Times are the CPU seconds of the stage process, all threads (`--clock=cpu`): at one "
    "thread, the wall time an idle machine would take; the machine was shared with other work.",
}


def markdown(records: list[dict[str, Any]], clock: str = "wall") -> str:
    records = latest(records)
    parts = [
        "# How cost grows with the catalogue size",
        "",
        "<!-- generated by benchmarks/bench_scale.py --render; do not edit by hand -->",
        "",
        INTRO,
        "",
        CLOCK_NOTES[clock],
        "",
        *_settings_lines(records),
        "",
        "## Catalogues",
        "",
        *data_table(records),
        "",
        "## Semantic-ID build",
        "",
        *sid_table(records, clock),
        "",
        "## Training cost per target",
        "",
        *train_table(records, clock),
        "",
        "## Ranking throughput",
        "",
        *eval_table(records, clock),
        "",
        "## Growth exponents",
        "",
        "Least squares of log(time) on log(N) over the sizes that finished (two sizes: the line "
        "through them).",
        "",
        *exponent_table(records, clock),
        "",
        "## Where it stops",
        "",
        *stops(records),
        "",
        "![cost against catalogue size](scale.png)",
        "",
    ]
    return "\n".join(parts)


def plot(records: list[dict[str, Any]], path: str, clock: str = "wall") -> None:
    r"""Log-log curves: semantic-ID build, training, ranking, and the stages' peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    panels = {"sid": axes[0][0], "train": axes[0][1], "eval": axes[1][0]}
    histories = sorted({r["history"] for r in records if r["history"]})
    for s in series(records, clock):
        ax = panels[s["stage"].split(":")[0]]
        style = "--" if histories and s["history"] == histories[-1] and len(histories) > 1 else "-"
        style = ":" if s["encoder"] == "minilm" else style
        label = s["label"] + (f", H={s['history']}" if s["history"] else "")
        label += (
            f" [{ENCODER_NAMES.get(s['encoder'], s['encoder'])}]" if s["stage"] == "sid" else ""
        )
        label += "" if s["k"] is None else f"  (k={s['k']:.2f})"
        ax.plot(s["sizes"], s["times"], style, marker="o", label=label)
    memory = axes[1][1]
    by_stage: dict[tuple, list] = {}
    for r in latest(records):
        peak = (r.get("metrics") or {}).get("process_peak_mb")
        if r["status"] == "ok" and peak and r["stage"] != "data":
            key = (r["stage"], r["history"], r["encoder"])
            by_stage.setdefault(key, []).append((r["n_items"], peak))
    for (stage, history, encoder), points in sorted(by_stage.items(), key=lambda g: str(g[0])):
        points.sort()
        label = stage + (f", H={history}" if history else "")
        label += f" [{ENCODER_NAMES.get(encoder, encoder)}]" if encoder else ""
        memory.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    titles = [f"semantic-ID build ({clock} s)", f"training ({clock} s per 1,000 targets)"]
    titles += [f"ranking ({clock} s per user; item graph: s)"]
    titles += ["peak memory of the stage process (MiB)"]
    for ax, title in zip([axes[0][0], axes[0][1], axes[1][0], memory], titles):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("items N")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def render(records: list[dict[str, Any]], docs_dir: str, clock: str = "wall") -> list[str]:
    r"""Write ``scale.md`` and ``scale.png`` into ``docs_dir``; return their paths."""
    os.makedirs(docs_dir, exist_ok=True)
    md, png = os.path.join(docs_dir, "scale.md"), os.path.join(docs_dir, "scale.png")
    with open(md, "w", encoding="utf-8") as f:
        f.write(markdown(records, clock))
    plot(latest(records), png, clock)
    return [md, png]
