"""benchmarks/code_sets.py: rows under one cache key are split by the codes behind them."""

import json
import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
code_sets = runpy.run_path(str(REPO / "benchmarks" / "code_sets.py"))


def _record(cell, model, seed, report, argv=()):
    return {
        "record": "cell",
        "status": "ok",
        "cell": cell,
        "finished_at": "2026-12-07T00:00:00",
        "model": model,
        "dataset": "D",
        "seed": seed,
        "spec": {"argv": ["run_recbole_fair.py", "--data_path=/x", *argv]},
        "semantic_ids": report,
    }


def test_rows_on_different_codes_under_one_key_are_told_apart(tmp_path):
    stats_a = {"cache_key": "k1", "entropy_bits": [7.9, 7.8], "codebook_usage": [1, 1]}
    stats_b = {**stats_a, "entropy_bits": [7.9, 7.7]}  # same key, other codes
    printed = {"cache_key": "k1", "codes_fingerprint": "abc123abc123", **stats_a}
    records = [
        _record("c1", "FAIR", 2020, stats_a),
        _record("c2", "RPG", 2020, stats_a),
        _record("c3", "FAIR", 2020, stats_b, ["--item_loss_weight=1.0"]),
        _record("c4", "FAIR", 2021, printed),
        _record("c5", "FAIR", 2022, {"cache_key": "k2", "entropy_bits": [1.0]}),
        {**_record("c6", "FAIR", 2023, stats_b), "status": "error"},  # failed: not counted
    ]
    path = tmp_path / "lb" / "results.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(json.dumps(r) for r in records))
    groups = code_sets["code_sets"]([str(path)])
    sets = groups[("D", "k1")]
    assert len(sets) == 3 and len(groups[("D", "k2")]) == 1
    # the fingerprint wins over the statistics when the record has one
    assert sets["abc123abc123"] == [("lb", "FAIR seed 2021")]
    together = [rows for rows in sets.values() if len(rows) == 2]
    assert together == [[("lb", "FAIR seed 2020"), ("lb", "RPG seed 2020")]]
    text = code_sets["render"](groups)
    assert "cache key `k1`: 3 code sets" in text and "`k2`" not in text
    assert "FAIR seed 2020 --item_loss_weight=1.0" in text and "/x" not in text
