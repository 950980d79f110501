"""Run statistics over hand-made records: counts, percentiles, billing, cost, the file."""

from __future__ import annotations

import json
import random
import threading

import pytest

from lambdaflow.errors import ConfigError
from lambdaflow.runtime.stats import (
    DEFAULT_STATS_PATH,
    LAMBDA_PRICES,
    RunStats,
    billed_gb_seconds,
    billed_seconds,
    load_records,
    percentile,
    save_records,
    summarize,
)


def rec(
    task_id, attempt=0, status="ok", start=None, duration=None, memory_mb=1024, **extra
):
    record = {
        "task_id": task_id,
        "name": "f",
        "attempt": attempt,
        "status": status,
        "submit_time": 100.0,
        "start": start,
        "end": None if start is None else start + duration,
        "duration_s": duration,
        "cold_start": False,
        "env_id": "env-1",
        "memory_mb": memory_mb,
        "bytes_in": 10,
        "bytes_out": 20,
        "peak_memory_mb": 50.0,
        "throttles": 0,
        "backend": "lambda",
    }
    record.update(extra)
    return record


@pytest.fixture
def records():
    return [
        # a: one attempt, 1.1 s at 1 GB -> 1.100 s billed (not 1.101: float rounding)
        rec(
            "a", start=101.0, duration=1.1, cold_start=True, env_id="env-1", throttles=2
        ),
        # b: crashes after 0.4 ms (billed 1 ms at 2 GB), retried: 250.5 ms -> 251 ms at 2 GB
        rec(
            "b",
            start=101.0,
            duration=0.0004,
            status="crash",
            memory_mb=2048,
            env_id="env-2",
            cold_start=True,
        ),
        rec(
            "b",
            attempt=1,
            start=101.5,
            duration=0.2505,
            memory_mb=2048,
            env_id="env-2",
            throttles=1,
        ),
        # c: cancelled before it ran: not billed, not a request
        rec("c", status="cancelled"),
    ]


def test_counts(records):
    s = summarize(records)
    assert s["tasks"] == 3
    assert s["attempts"] == 4
    assert s["retries"] == 1
    assert s["failed"] == 1  # c; b's last attempt succeeded
    assert s["status_counts"] == {
        "ok": 2,
        "error": 0,
        "crash": 1,
        "timeout": 0,
        "cancelled": 1,
    }
    assert s["throttles"] == 3
    assert s["cold_starts"] == 2
    assert s["environments"] == 2
    assert s["requests"] == 3
    assert s["bytes_in"] == 40 and s["bytes_out"] == 80
    assert s["wall_time_s"] == pytest.approx(102.1 - 100.0)


def test_percentiles(records):
    s = summarize(records)
    # durations of attempts that ran, sorted: 0.0004, 0.2505, 1.1
    assert s["p50_duration_s"] == pytest.approx(0.2505)
    assert s["p95_duration_s"] == pytest.approx(0.2505 + 0.9 * (1.1 - 0.2505))
    assert s["max_duration_s"] == pytest.approx(1.1)


def test_percentile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    rng = random.Random(7)
    values = [rng.uniform(0, 10) for _ in range(101)]
    for q in (0, 5, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0


def test_billing_rounds_up_to_the_millisecond():
    assert billed_seconds(rec("x", start=0.0, duration=1.1)) == pytest.approx(1.1)
    assert billed_seconds(rec("x", start=0.0, duration=0.0004)) == pytest.approx(0.001)
    assert billed_seconds(rec("x", start=0.0, duration=0.2505)) == pytest.approx(0.251)
    assert billed_seconds(rec("x", start=0.0, duration=0.0)) == 0.0
    assert billed_seconds(rec("x")) == 0.0  # never ran
    cold = rec("x", start=0.0, duration=0.1, cold_start=True, init_s=0.25)
    assert billed_seconds(cold) == pytest.approx(0.35)  # the INIT phase is billed too
    assert billed_seconds(dict(cold, cold_start=False)) == pytest.approx(0.1)
    assert (
        billed_seconds(rec("x", start=0.0, duration=0.5, billed_duration_s=0.6)) == 0.6
    )
    assert billed_gb_seconds(
        rec("x", start=0.0, duration=2.0, memory_mb=512)
    ) == pytest.approx(1.0)
    assert billed_gb_seconds(rec("x", start=0.0, duration=2.0, memory_mb=None)) == 0.0


def test_cost_known_case_by_hand(records):
    # GB-s: 1.100*1 + 0.001*2 + 0.251*2 = 1.604; requests: 3
    s = summarize(records)
    assert s["billed_gb_seconds"] == pytest.approx(1.604)
    assert s["cost_usd"] == pytest.approx(1.604 * 0.0000166667 + 3 * 0.20 / 1e6)
    assert s["cost_usd"] == pytest.approx(0.0000273333868)
    arm = summarize(records, architecture="arm64")
    assert arm["cost_usd"] == pytest.approx(1.604 * 0.0000133334 + 3 * 0.20 / 1e6)
    assert s["notes"] == []


def test_unknown_region_falls_back_with_a_note(records):
    s = summarize(records, region="xx-nowhere-1")
    assert s["cost_usd"] == pytest.approx(summarize(records)["cost_usd"])
    assert "xx-nowhere-1" in s["notes"][0] and "us-east-1" in s["notes"][0]
    assert "eu-west-1" in LAMBDA_PRICES
    with pytest.raises(ConfigError, match="arm64"):
        summarize(records, architecture="sparc")


def test_local_backend_costs_nothing():
    records = [rec("a", start=1.0, duration=0.5, memory_mb=None, backend="processes")]
    s = summarize(records)
    assert s["requests"] == 0 and s["cost_usd"] == 0.0
    assert any("local backend" in n for n in s["notes"])


def test_empty():
    s = summarize([])
    assert s["tasks"] == 0 and s["p50_duration_s"] is None and s["wall_time_s"] == 0.0


def test_runstats_thread_safe_and_formatted(records):
    stats = RunStats(region="us-east-1")

    def add_many(offset):
        for i in range(250):
            stats.add(rec(f"t{offset}-{i}", start=1.0, duration=0.01))

    threads = [threading.Thread(target=add_many, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stats) == 2000 and stats.summary()["tasks"] == 2000
    snapshot = stats.records
    snapshot[0]["status"] = "changed"  # a copy: the stats are not touched
    assert stats.records[0]["status"] == "ok"

    stats = RunStats(records)
    text = str(stats)
    assert text == stats.format()
    for word in (
        "tasks",
        "retries",
        "throttles (429)",
        "cold starts",
        "p50",
        "p95",
        "billed GB-s",
        "estimated cost",
        "$0.000027",
    ):
        assert word in text


def test_save_load_round_trip(tmp_path, records):
    path = save_records(records, tmp_path / "sub" / "run.json", region="eu-west-1")
    assert load_records(path) == records
    document = json.loads(path.read_text())
    assert document["summary"]["tasks"] == 3 and document["region"] == "eu-west-1"
    # a bare list of records is accepted too
    (tmp_path / "list.json").write_text(json.dumps(records))
    assert load_records(tmp_path / "list.json") == records
    stats = RunStats(records)
    assert load_records(stats.save(tmp_path / "s.json")) == records


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_records(tmp_path / "missing.json")
    assert "missing.json" in str(info.value) and "--stats" in str(info.value)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        load_records(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text('{"records": 3}')
    with pytest.raises(ConfigError, match="no list of task records"):
        load_records(tmp_path / "odd.json")
    assert DEFAULT_STATS_PATH.endswith("last-run.json")
