"""Draw a run's tasks over time, one row per execution environment, as a PNG.

Input is the per-attempt records of :mod:`lambdaflow.runtime.stats` (from
``lambdaflow.stats()`` or a JSON file written by ``save_records``). Output::

    title                  N tasks on M environments, backend
    subtitle               attempts / retries / cold starts / 429s / p50 / p95 / wall
    ┌──────────────────────────────────────────────────────┐
    │ env-1 ░░▶[ok     ][ok  ]   [error]                   │  one bar per attempt, from
    │ env-2   ░░▶[ok        ][//retry//]                   │  start to end, coloured by
    │ ...                                                  │  status; ▶ marks a cold start
    └──────────────────────────────────────────────────────┘  (░ its init_s), hatching a
                                                              retried attempt
    ┌ tasks running / waiting over time ───────────────────┐
    └──────────────────────────────────────────────────────┘
          seconds since the first submit

Rows are ordered by each environment's first start, so a fan-out reads top-down as the
order in which environments came up. matplotlib is used through its object API
(``matplotlib.figure.Figure``, Agg canvas): no pyplot global state, no display needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lambdaflow.errors import ConfigError
from lambdaflow.runtime.stats import load_records, summarize

#: Bar colours by status (colour-blind-safe pairs: green/purple and orange/red differ in
#: lightness as well as hue).
STATUS_COLORS = {
    "ok": "#3a923a",
    "error": "#d62728",
    "crash": "#7b3294",
    "timeout": "#ff9f1c",
    "cancelled": "#a0a0a0",
}
COLD_COLOR = "#1f3b73"
#: The environments panel grows 0.32 in per row up to this height, then rows get thinner.
MAX_MAIN_HEIGHT_IN = 12.0


def plot_timeline(
    records: Iterable[Mapping[str, Any]] | str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Write the timeline of ``records`` (or of the records in a JSON stats file, when
    given a path) to ``out_png``; return its path."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "drawing a timeline needs matplotlib: pip install 'lambdaflow[video]'"
        ) from exc

    if isinstance(records, (str, os.PathLike)):
        records = load_records(records)
    rows: list[dict[str, Any]] = [dict(r) for r in records]
    ran = [
        r for r in rows if r.get("start") is not None and r.get("end") is not None
    ]
    if not ran:
        raise ConfigError(
            f"no task in the {len(rows)} records ran (none has start and end times): "
            "nothing to draw; run a job first"
        )
    summary = summarize(rows)
    t0 = min(
        [r["submit_time"] for r in rows if r.get("submit_time") is not None]
        + [r["start"] for r in ran]
    )
    t_end = max(r["end"] for r in ran) - t0
    span = max(t_end, 1e-3)

    # Rows: environments in order of their first start.
    first_start: dict[str, float] = {}
    for r in ran:
        env = str(r.get("env_id") if r.get("env_id") is not None else "(unknown)")
        r["_env"] = env
        first_start[env] = min(first_start.get(env, r["start"]), r["start"])
    envs = sorted(first_start, key=lambda e: (first_start[e], e))
    row_of = {env: i for i, env in enumerate(envs)}
    first_attempt: dict[str, int] = {}
    for r in rows:
        task = str(r.get("task_id"))
        first_attempt[task] = min(
            first_attempt.get(task, r.get("attempt") or 0), r.get("attempt") or 0
        )

    n_rows = len(envs)
    main_h = min(MAX_MAIN_HEIGHT_IN, max(1.6, n_rows * 0.32))
    labelled = main_h * dpi / n_rows >= 11  # room for an 8-pt row label
    bar_labels = main_h * dpi / n_rows >= 16  # room for a 7-pt name inside a bar
    fig = Figure(figsize=(12, main_h + 3.2), dpi=dpi, layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[main_h, 1.3])
    ax = fig.add_subplot(grid[0])
    ax_load = fig.add_subplot(grid[1], sharex=ax)

    px_per_s = 12 * dpi * 0.78 / span  # approximate bar width in pixels, for labels
    retried_seen = cold_seen = init_seen = False
    for r in ran:
        x = r["start"] - t0
        width = max(r["end"] - r["start"], span * 0.002)
        y = row_of[r["_env"]]
        status = r.get("status", "ok")
        retry = (r.get("attempt") or 0) > first_attempt.get(str(r.get("task_id")), 0)
        retried_seen |= retry
        ax.barh(
            y,
            width,
            left=x,
            height=0.72,
            color=STATUS_COLORS.get(status, "#555555"),
            edgecolor="white" if not retry else "black",
            linewidth=0.6,
            hatch="////" if retry else None,
            zorder=2,
        )
        label = str(r.get("name") or "")
        if retry:
            label += f" #{r.get('attempt')}"
        if label and bar_labels and width * px_per_s > 7 * len(label) + 8:
            ax.text(
                x + width / 2,
                y,
                label,
                ha="center",
                va="center",
                fontsize=7,
                color="white",
                zorder=3,
                clip_on=True,
            )
        if r.get("cold_start"):
            cold_seen = True
            init = min(float(r.get("init_s") or 0.0), x)
            if init > 0:  # the environment's start-up before the task began
                init_seen = True
                ax.barh(y, init, left=x - init, height=0.72, color=COLD_COLOR, alpha=0.18,
                        linewidth=0, zorder=1)  # fmt: skip
            ax.plot(
                [x],
                [y],
                marker=">",
                markersize=7 if labelled else 4,
                color=COLD_COLOR,
                markeredgecolor="white",
                markeredgewidth=0.6,
                zorder=4,
            )

    ax.set_ylim(n_rows - 0.5, -0.5)
    if labelled:
        ax.set_yticks(range(n_rows))
        ax.set_yticklabels([_short(e) for e in envs], fontsize=8)
    else:
        ax.set_yticks([])
    ax.set_ylabel(f"execution environment ({n_rows})")
    ax.grid(axis="x", color="#dddddd", zorder=0)
    ax.set_axisbelow(True)
    ax.tick_params(axis="x", labelbottom=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    _draw_load(ax_load, rows, ran, t0)
    ax_load.set_xlim(0, span * 1.02)
    ax_load.set_xlabel("seconds since the first submit")

    present = [s for s in STATUS_COLORS if summary["status_counts"].get(s)]
    handles: list[Any] = [
        Patch(facecolor=STATUS_COLORS[s], label=f"{s} ({summary['status_counts'][s]})")
        for s in present
    ]
    if retried_seen:
        handles.append(
            Patch(facecolor="white", edgecolor="black", hatch="////", label="retry")
        )
    if cold_seen:
        handles.append(
            Line2D(
                [],
                [],
                marker=">",
                linestyle="",
                color=COLD_COLOR,
                label=f"cold start ({summary['cold_starts']})",
            )
        )
    if init_seen:
        handles.append(Patch(facecolor=COLD_COLOR, alpha=0.18, label="cold-start init"))
    ax.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        ncol=len(handles),
        frameon=False,
        fontsize=8,
        handlelength=1.6,
    )

    backends = ", ".join(summary["backends"]) or "unknown backend"
    fig.suptitle(
        title
        or f"lambdaflow run: {summary['tasks']} tasks on {n_rows} environments ({backends})",
        fontsize=12,
        fontweight="bold",
    )
    ax.set_title(
        _subtitle(summary, len(rows) - len(ran)),
        fontsize=9,
        color="#444444",
        loc="left",
        pad=18,
    )

    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def _draw_load(ax: Any, records: list[dict], ran: list[dict], t0: float) -> None:
    """Tasks running, and submitted but not started, over time (step curves)."""
    running = _step_counts([(r["start"] - t0, r["end"] - t0) for r in ran])
    waiting = _step_counts(
        [
            (
                r["submit_time"] - t0,
                (
                    r["start"]
                    if r.get("start") is not None
                    else r.get("end") or r["submit_time"]
                )
                - t0,
            )
            for r in records
            if r.get("submit_time") is not None
        ]
    )
    if running:
        xs, ys = zip(*running)
        ax.fill_between(xs, ys, step="post", color="#3a923a", alpha=0.35, linewidth=0)
        ax.step(xs, ys, where="post", color="#2b6e2b", linewidth=1, label="running")
    if waiting and any(y for _, y in waiting):
        xs, ys = zip(*waiting)
        ax.step(
            xs,
            ys,
            where="post",
            color="#888888",
            linewidth=1,
            linestyle="--",
            label="submitted, not started",
        )
    ax.set_ylabel("tasks", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.grid(axis="x", color="#dddddd")
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _step_counts(intervals: list[tuple[float, float]]) -> list[tuple[float, int]]:
    """``(time, count)`` steps of how many intervals cover each moment."""
    events: list[tuple[float, int]] = []
    for lo, hi in intervals:
        if hi > lo:
            events += [(lo, 1), (hi, -1)]
    events.sort()
    steps, count = [(0.0, 0)], 0
    for t, delta in events:
        count += delta
        steps.append((t, count))
    return steps


def _subtitle(summary: Mapping[str, Any], never_ran: int) -> str:
    def secs(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"

    def count(n: int, word: str, plural: str = "") -> str:
        return f"{n} {word if n == 1 else (plural or word + 's')}"

    parts = [
        f"{count(summary['attempts'], 'attempt')} ({count(summary['retries'], 'retry', 'retries')})",
        count(summary["cold_starts"], "cold start"),
    ]
    if summary["throttles"] or summary["requests"]:
        parts.append(f"{count(summary['throttles'], 'throttle')} (429)")
    parts += [
        f"task p50 {secs(summary['p50_duration_s'])} / p95 {secs(summary['p95_duration_s'])}",
        f"wall {secs(summary['wall_time_s'])}",
    ]
    if summary["requests"]:
        parts.append(
            f"{summary['billed_gb_seconds']:.2f} GB-s ≈ ${summary['cost_usd']:.4f}"
        )
    if never_ran:
        parts.append(f"{never_ran} never ran")
    return "   ·   ".join(parts)


def _short(env: str, limit: int = 18) -> str:
    return env if len(env) <= limit else "…" + env[-(limit - 1) :]


__all__ = ["STATUS_COLORS", "plot_timeline"]
