"""benchmarks/bench_scale.py: an end-to-end run on a tiny catalogue, the stage limits, what a stop
rules out, the growth exponents and the synthetic catalogue."""

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bench_scale.py"
TINY = [
    "--sizes=300",
    "--histories=20",
    "--encoder=stand-in",
    "--standin_dim=32",
    "--n_codes=8",
    "--codebook_size=16",
    "--hidden_size=32",
    "--inner_size=64",
    "--train_steps=2",
    "--train_warmup_steps=1",
    "--eval_users=64",
    "--eval_batch_size=32",
]
TIMES = {
    "data": ["generate_seconds"],
    "sid": ["encode_seconds", "fit_seconds", "encode_all_seconds", "build_seconds"],
    "train:FAIR": ["seconds_per_1k_targets"],
    "train:SASRec": ["seconds_per_1k_targets"],
    "eval:FAIR-exact": ["seconds_per_user"],
    "eval:FAIR-graph": ["seconds_per_user", "graph_build_seconds"],
    "eval:SASRec": ["seconds_per_user"],
}


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("bench_scale")  # loads its scale_* helper modules by path


@pytest.fixture(scope="module")
def report(bench):
    return bench._sibling("scale_report")


@pytest.fixture(scope="module")
def catalogue(bench):
    return importlib.import_module("scale_catalogue")


def _run(*args: str, cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_end_to_end_on_a_tiny_catalogue(tmp_path):
    out = tmp_path / "out"
    stdout = _run(*TINY, f"--out={out}", cwd=tmp_path)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == list(TIMES)
    for r in records:
        assert r["status"] == "ok", r
        assert r["n_items"] == 300 and r["peak_rss_mb"] > 0
        assert all(r["metrics"][key] > 0 for key in TIMES[r["stage"]]), r
        assert len(r["git_commit"]) == 40 and r["argv"][0] == "--sizes=300"
        assert not any(str(tmp_path) in arg for arg in r["argv"])  # no machine paths
    by_stage = {r["stage"]: r["metrics"] for r in records}
    # the sid stage computed the training items as the dataset does: the FAIR stages hit its cache
    assert all(by_stage[s]["sid_cache_hit"] for s in TIMES if "FAIR" in s)
    sid = by_stage["sid"]
    assert sid["fit_items"] == sid["n_train_items"] > 256 and sid["cache_hit"]
    assert sid["encode_all_items"] == 301  # every item and the padding row
    assert sid["build_peak_mb"] >= max(sid["fit_peak_mb"], sid["encode_peak_mb"])
    for r in records:  # CPU seconds beside the wall-clock ones
        assert r["cpu_seconds"] > 0 and r["wall_seconds"] > 0
    assert by_stage["train:FAIR"]["n_items"] == by_stage["train:SASRec"]["n_items"] == 300
    assert by_stage["eval:FAIR-graph"]["decoding"] == "graph"
    assert "growth exponents" in stdout

    # --resume runs nothing that finished
    again = _run(*TINY, f"--out={out}", "--resume", cwd=tmp_path)
    assert again.count("done before (ok)") == len(TIMES)
    assert len((out / "results.jsonl").read_text().splitlines()) == len(TIMES)

    docs = tmp_path / "docs"
    _run("--render", f"--results={out / 'results.jsonl'}", f"--docs_dir={docs}", cwd=tmp_path)
    table = (docs / "scale.md").read_text()
    assert "| 300 | stand-in | " in table  # the semantic-ID build row
    assert "| 300 | 20 | " in table  # training and ranking rows
    assert "Every measurement finished." in table and str(tmp_path) not in table
    assert (docs / "scale.png").stat().st_size > 10_000


def _args(bench, tmp_path, *extra):
    return bench.parse_args([f"--out={tmp_path}", "--threads=1", *extra])


def _sleep(spec):
    from scale_stages import step

    step("sleeping")
    time.sleep(30)


def _spin(spec):
    end = time.time() + 60
    while time.time() < end:  # CPU time passes only while it runs
        pass


def _allocate(spec):
    raise MemoryError("cannot allocate")


def _fail(spec):
    raise ValueError("a bad setting")


def _killed(spec):
    os.kill(os.getpid(), 9)


def _grow(spec):
    from scale_stages import step

    step("growing")
    # 1.5 GiB: well past the limit (the parent's RSS + 400 MiB) even when the forked child
    # starts well below its parent's RSS (fork does not copy every page-table entry)
    blocks = [np.ones(2**24) for _ in range(12)]
    time.sleep(30)
    return {"n": len(blocks)}


def test_a_stage_is_stopped_at_its_limits_and_recorded(bench, tmp_path, monkeypatch):
    stages = bench.scale_stages.STAGES
    for name, fn in [("sleep", _sleep), ("oom", _allocate), ("fail", _fail)]:
        monkeypatch.setitem(stages, name, fn)
    monkeypatch.setitem(stages, "killed", _killed)
    monkeypatch.setitem(stages, "grow", _grow)
    monkeypatch.setitem(stages, "spin", _spin)
    # a forked stage starts with this process' resident memory: the limit is 400 MiB above it
    limit_gb = (bench.scale_stages.rss_mb() + 400) / 1024
    args = _args(bench, tmp_path, "--stage_timeout=60", f"--mem_limit_gb={limit_gb}")
    spec = {"kind": "sleep", "threads": 1, "work_dir": str(tmp_path / "work")}
    start = time.time()
    record = bench.run_stage(_args(bench, tmp_path, "--stage_timeout=2"), spec, "sleep")
    assert record["status"] == "timeout" and record["stopped_in"] == "sleeping"
    assert time.time() - start < 20
    on_cpu = _args(bench, tmp_path, "--stage_timeout=1", "--timeout_clock=cpu")
    assert bench.run_stage(on_cpu, {**spec, "kind": "spin"}, "spin")["status"] == "timeout"
    record = bench.run_stage(args, {**spec, "kind": "grow"}, "grow")
    assert record["status"] == "out_of_memory" and record["stopped_in"] == "growing"
    assert record["peak_rss_mb"] > limit_gb * 1024
    assert bench.run_stage(args, {**spec, "kind": "oom"}, "oom")["status"] == "out_of_memory"
    failed = bench.run_stage(args, {**spec, "kind": "fail"}, "fail")
    assert failed["status"] == "error" and "a bad setting" in failed["reason"]
    assert bench.run_stage(args, {**spec, "kind": "killed"}, "killed")["status"] == "out_of_memory"


def _item(stage, n, history=20, encoder="stand-in"):
    encoder = encoder if stage == "sid" or "FAIR" in stage else None
    return {"stage": stage, "n_items": n, "history": history, "encoder": encoder}


def test_a_stop_rules_out_larger_sizes_and_what_needs_it(bench):
    blocks = bench.Blocks()
    blocks.note(_item("eval:FAIR-graph", 100), {"status": "timeout", "stopped_in": "rank"})
    assert blocks.reason(_item("eval:FAIR-graph", 100)) is None  # not the size that stopped
    assert "stopped at N=100" in blocks.reason(_item("eval:FAIR-graph", 1000))
    assert blocks.reason(_item("eval:FAIR-graph", 1000, history=200)) is None
    assert blocks.reason(_item("eval:FAIR-exact", 1000)) is None
    load = {"status": "out_of_memory", "stopped_in": "load and split the data"}
    blocks.note(_item("train:FAIR", 1000, history=200), load)
    assert blocks.reason(_item("eval:FAIR-exact", 1000, history=200))  # same data, same size
    assert blocks.reason(_item("train:SASRec", 1000, history=200)) is None  # other data
    assert blocks.reason(_item("train:SASRec", 10_000, history=200))
    assert blocks.reason(_item("train:SASRec", 10_000, history=20)) is None
    # a stop in the item-graph build (which does not depend on H) rules out every H from N on
    graph = {"status": "timeout", "stopped_in": "build the item graph"}
    blocks.note(_item("eval:FAIR-graph", 5000, history=20), graph)
    assert "stopped at N=5,000" in blocks.reason(_item("eval:FAIR-graph", 5000, history=50))
    assert blocks.reason(_item("eval:FAIR-graph", 500, history=50)) is None  # a smaller N
    assert blocks.reason(_item("eval:FAIR-exact", 5000, history=50)) is None  # another stage
    blocks.note(_item("sid", 50, history=None), {"status": "error", "stopped_in": "encode"})
    assert "no semantic IDs" in blocks.reason(_item("train:FAIR", 50))
    assert blocks.reason(_item("train:SASRec", 50)) is None


def test_stop_file_and_portable_command_line(bench, tmp_path, capsys, monkeypatch):
    (tmp_path / "STOP").write_text("")
    assert bench.run_all(_args(bench, tmp_path, "--sizes=300"), []) == []
    assert "STOP file" in capsys.readouterr().out
    monkeypatch.chdir(bench.REPO)  # the command is run from the repository's root
    argv = bench.portable_argv([f"--out={tmp_path}/x", str(bench.REPO / "docs"), "--sizes=1"])
    assert argv == ["--out=<elsewhere>/x", "docs", "--sizes=1"]


def test_growth_exponents(report):
    sizes = [10_000, 100_000, 1_000_000]
    assert report.fit_exponent(sizes, [3e-3 * n**1.5 for n in sizes]) == pytest.approx(1.5)
    assert report.fit_exponent([1e4], [1.0]) is None
    records = [
        {
            "record": "bench_scale",
            "stage": "train:SASRec",
            "n_items": n,
            "history": 20,
            "encoder": None,
            "status": "ok",
            "metrics": {"seconds_per_1k_targets": 0.1 * (n / 1e4)},
        }
        for n in sizes
    ]
    records.append({**records[-1], "status": "timeout", "metrics": None, "stopped_in": "rank"})
    (fitted,) = report.series(records)  # the last record of a key counts: 1M stopped
    assert fitted["sizes"] == [10_000, 100_000] and fitted["k"] == pytest.approx(1.0)
    assert "timeout at N=1,000,000 in step 'rank'" in "\n".join(report.stops(records))
    assert report.portable_text("no /home/someone/x/file.py here") == "no .../file.py here"


def test_synthetic_catalogue(catalogue, tmp_path):
    spec = catalogue.CatalogueSpec(2000)
    stats = catalogue.write_catalogue(str(tmp_path / "c"), "c", spec)
    assert stats["n_users"] == 2000 and 8 <= stats["length_mean"] <= 12
    assert catalogue.write_catalogue(str(tmp_path / "c"), "c", spec)["reused"]
    texts, sub = catalogue.item_texts(spec)
    assert texts == catalogue.item_texts(spec)[0] and len(texts) == 2000  # deterministic
    user, item, _ = catalogue.interactions(spec, sub)
    assert np.bincount(user).min() >= 5 and item.max() < 2000
    encode = catalogue.StandInEncoder(dim=64, buckets=4096)
    joined = [" ".join(t) for t in texts]
    x = encode(joined)
    assert x.shape == (2000, 64) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    same = sub[:, None] == sub[None, :]  # items of one sub-category share words: closer
    sims = x @ x.T
    off = ~np.eye(2000, dtype=bool)
    assert sims[same & off].mean() > sims[~same].mean() + 0.1


def test_the_committed_scale_page_is_the_render_of_the_committed_results(bench, report, tmp_path):
    # docs/performance/scale.md is generated from docs/performance/scale-results.jsonl
    # (--render --clock=cpu): rendering the committed results again gives the committed page
    performance = bench.REPO / "docs" / "performance"
    records = bench.load_records(str(performance / "scale-results.jsonl"))
    assert {r["n_items"] for r in records} == {10_000, 100_000, 1_000_000}
    report.render(records, str(tmp_path), "cpu")
    committed = (performance / "scale.md").read_text(encoding="utf-8")
    assert (tmp_path / "scale.md").read_text(encoding="utf-8") == committed
