"""``--cpu-top N``: the N tests that used the most CPU, printed after the run.

CPU is user + sys of the pytest process (``RUSAGE_SELF``: every thread, so an in-process
moto server or emulator counts) plus its reaped children (``RUSAGE_CHILDREN``), measured
around each test's setup, call and teardown. A child is counted when it is waited for:
a worker pool or server that a module- or session-scoped fixture starts is charged to
the test whose teardown stops it, and a child that is never reaped is not counted. The
table also sums per module, where those fixtures' cost belongs.
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class CpuTimes:
    def __init__(self, top: int) -> None:
        self.top = top
        self.rows: list[tuple[str, float, float, float]] = []  # nodeid, wall, self, children

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        wall, own, kids = time.perf_counter(), _cpu(resource.RUSAGE_SELF), _cpu(
            resource.RUSAGE_CHILDREN
        )
        yield
        self.rows.append((
            item.nodeid,
            time.perf_counter() - wall,
            _cpu(resource.RUSAGE_SELF) - own,
            _cpu(resource.RUSAGE_CHILDREN) - kids,
        ))  # fmt: skip

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        total = sum(r[2] + r[3] for r in self.rows)
        terminalreporter.section(f"top {self.top} tests by CPU (user+sys, s)")
        write(f"all {len(self.rows)} tests: CPU {total:.1f} s, "
              f"wall {sum(r[1] for r in self.rows):.1f} s")  # fmt: skip
        write(f"{'cpu':>7} {'self':>7} {'child':>7} {'wall':>7}  test")
        ranked = sorted(self.rows, key=lambda r: r[2] + r[3], reverse=True)
        for nodeid, wall, own, kids in ranked[: self.top]:
            write(f"{own + kids:7.1f} {own:7.1f} {kids:7.1f} {wall:7.1f}  {nodeid}")
        modules: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for nodeid, wall, own, kids in self.rows:
            modules[nodeid.split("::")[0]][0] += own + kids
            modules[nodeid.split("::")[0]][1] += wall
        terminalreporter.section(f"top {self.top} modules by CPU (s)")
        write(f"{'cpu':>7} {'wall':>7}  module")
        for name, (cpu, wall) in sorted(modules.items(), key=lambda m: -m[1][0])[: self.top]:
            write(f"{cpu:7.1f} {wall:7.1f}  {name}")
