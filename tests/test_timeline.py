"""The timeline picture, from records, from a JSON file and from the CLI."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from lambdaflow.cli import main
from lambdaflow.errors import ConfigError
from lambdaflow.runtime.stats import save_records
from lambdaflow.timeline import plot_timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_records(n_tasks: int = 24, n_envs: int = 4) -> list[dict]:
    """A small Lambda-like run: cold start on each environment's first task, one crash
    retried, one timeout, one error, one task cancelled before it ran."""
    t0 = 1_700_000_000.0
    free_at = {f"env-{i}": t0 + 0.1 * i for i in range(n_envs)}
    records: list[dict] = []
    for i in range(n_tasks):
        for attempt in (0, 1) if i == 3 else (0,):
            env = min(free_at, key=free_at.get)
            cold = not any(r["env_id"] == env for r in records)
            start = free_at[env] + (0.5 if cold else 0.01)
            duration = 0.2 + 0.05 * (i % 5)
            status = "ok"
            if i == 3 and attempt == 0:
                status = "crash"
            elif i == 7:
                status, duration = "timeout", 1.0
            elif i == 11:
                status = "error"
            free_at[env] = start + duration
            records.append(
                {
                    "task_id": f"t{i}",
                    "name": ["decode", "infer"][i % 2],
                    "attempt": attempt,
                    "status": status,
                    "submit_time": t0 + 0.01 * i,
                    "start": start,
                    "end": start + duration,
                    "duration_s": duration,
                    "cold_start": cold,
                    "init_s": 0.4 if cold else 0.0,
                    "env_id": env,
                    "memory_mb": 1024,
                    "bytes_in": 100,
                    "bytes_out": 100,
                    "peak_memory_mb": 80.0,
                    "throttles": 1 if i % 6 == 0 else 0,
                    "backend": "lambda",
                }
            )
    records.append(
        {
            "task_id": "tc",
            "name": "infer",
            "attempt": 0,
            "status": "cancelled",
            "submit_time": t0,
            "start": None,
            "end": None,
            "duration_s": None,
            "cold_start": False,
            "env_id": None,
            "memory_mb": 1024,
            "bytes_in": 0,
            "bytes_out": 0,
            "peak_memory_mb": None,
            "throttles": 0,
            "backend": "lambda",
        }
    )
    return records


def assert_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes


def test_plot_from_records(tmp_path):
    out = plot_timeline(make_records(), tmp_path / "deep" / "t.png", title="test run")
    assert out == tmp_path / "deep" / "t.png"
    assert_png(out)


def test_plot_from_json_file(tmp_path):
    path = save_records(make_records(), tmp_path / "run.json")
    assert_png(plot_timeline(path, tmp_path / "t.png"))
    assert_png(plot_timeline(str(path), tmp_path / "t2.png"))


def test_plot_many_environments_and_local_records(tmp_path):
    records = make_records(300, 80)
    for r in records:
        r["memory_mb"] = None  # a local backend: no cost line
        r["backend"] = "processes"
    assert_png(plot_timeline(records, tmp_path / "many.png"))


def test_nothing_ran_is_a_clear_error(tmp_path):
    cancelled = [r for r in make_records() if r["status"] == "cancelled"]
    with pytest.raises(ConfigError, match="nothing to draw"):
        plot_timeline(cancelled, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="nothing to draw"):
        plot_timeline([], tmp_path / "x.png")


def test_cli_timeline(tmp_path, capsys):
    stats = save_records(make_records(), tmp_path / "run.json")
    out = tmp_path / "cli.png"
    assert main(["timeline", str(out), "--stats", str(stats)]) == 0
    assert_png(out)
    printed = capsys.readouterr().out
    assert "estimated cost" in printed and f"wrote {out}" in printed


def test_cli_timeline_default_stats_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    save_records(make_records(), ".lambdaflow/last-run.json")
    assert main(["timeline", "t.png", "--quiet"]) == 0
    assert_png(tmp_path / "t.png")
    assert "estimated cost" not in capsys.readouterr().out


def test_cli_timeline_missing_stats_file(tmp_path, capsys):
    code = main(
        ["timeline", str(tmp_path / "t.png"), "--stats", str(tmp_path / "none.json")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "none.json" in err and "run a job first" in err
    assert not (tmp_path / "t.png").exists()
