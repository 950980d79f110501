"""How a video command ends: one summary line, then one line per problem, all on stderr
(stdout may carry the results). Shared by ``histogram`` and ``infer``.

    histogram: 900 frames, ... , backend processes -> out.npz
    histogram: frames 100-149 failed: <the chunk's error>
    histogram: <the file's problem, e.g. truncated at frame 52 of 90>
    histogram: 3 frame(s) of in.mp4 could not be decoded (their rows are zero): 7-9
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from lambdaflow.ops.video import frame_ranges


def report(
    command: str,
    summary: str,
    *,
    video: str,
    written: Sequence[str] = (),
    failures: Iterable[tuple[int, int, str]] = (),
    problem: str | None = None,
    undecoded: Sequence[int] = (),
    undecoded_means: str,
) -> None:
    """``failures``: (start, stop, error) of each chunk that failed; ``undecoded``: the
    frames that could not be decoded, and ``undecoded_means`` what that did to them."""
    print(f"{command}: {summary}" + (f" -> {', '.join(written)}" if written else ""),
          file=sys.stderr)
    for start, stop, error in failures:
        print(f"{command}: frames {start}-{stop - 1} failed: {error}", file=sys.stderr)
    if problem:
        print(f"{command}: {problem}", file=sys.stderr)
    if undecoded:
        print(f"{command}: {len(undecoded)} frame(s) of {video} could not be decoded "
              f"({undecoded_means}): {frame_ranges(list(undecoded))}", file=sys.stderr)
