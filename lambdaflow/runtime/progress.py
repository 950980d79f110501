"""Progress bars for ``get``/``wait`` over many refs (tqdm, to stderr).

On when ``init(progress=True)`` or ``LAMBDAFLOW_PROGRESS=1``; off by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class _Bar:
    def __init__(self, bar) -> None:
        self._bar = bar

    def update_to(self, n: int) -> None:
        if n > self._bar.n:
            self._bar.update(n - self._bar.n)


@contextlib.contextmanager
def progress_bar(total: int, start: int = 0, desc: str = "tasks") -> Iterator[_Bar]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, desc=desc, unit="task", leave=True,
               dynamic_ncols=True)
    try:
        yield _Bar(bar)
    finally:
        bar.close()
