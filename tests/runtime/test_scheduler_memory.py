"""The driver releases finished tasks' state and values once nothing references them:
100,000 no-op tasks submitted and collected in batches of 1,000 keep the driver under
300 MB RSS (issue 2)."""

from __future__ import annotations

import psutil
import pytest

import lambdaflow as lf


@lf.remote
def noop(i):
    return i


@pytest.mark.slow
def test_100k_tasks_bounded_memory(fresh):
    with lf.init(backend="threads", num_workers=4) as rt:
        proc = psutil.Process()
        total = 0
        peak = 0
        for batch in range(100):
            refs = [noop.remote(i) for i in range(1000)]
            total += sum(lf.get(refs))
            del refs
            if batch % 10 == 9:
                peak = max(peak, proc.memory_info().rss)
        assert total == 100 * sum(range(1000))
        lf.get(noop.remote(0))  # releases are drained on the next scheduler call
        live = len(rt.scheduler._objs)
        assert live < 50, f"{live} objects still tracked after their refs were dropped"
        assert peak < 300 * 2**20, f"driver RSS {peak / 2**20:.0f} MB"
