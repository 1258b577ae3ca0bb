"""Panels shared by Fig 3 and Fig 4: a test metric vs training epochs at one delay, and the
final test metric vs delay, one colour per flossing schedule."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data import CHANCE, NET, SCHEDULE_LABEL, final, pick_delay, rows, values
from .plotting import SCHEDULE_COLOR, empty_panel, jitter, median_band, note


def _chance_line(ax, task: str, metric: str) -> None:
    c = CHANCE.get(task)
    if c is None:
        return
    label = f"chance ({'1/12' if task == 'copy' else '1/18' if c == 1 / 18 else f'{c:g}'})"
    ax.axhline(c, color="black", ls="--", lw=1, label=label)


def _ylabel(metric: str) -> str:
    return "test MSE" if metric == "test_loss" else "test accuracy"


def vs_epochs(ax, df: pd.DataFrame, task: str, metric: str, schedules: list[str], want_delay: int | None,
              title: str, log_y: bool) -> None:
    """``metric`` vs training epochs at ``want_delay`` (or the nearest/largest present)."""
    ax.set_xlabel("training epochs")
    ax.set_ylabel(_ylabel(metric))
    sub = rows(df, metric, task__name=task)
    delays = values(sub, "task.delay")
    d = pick_delay(delays, want_delay)
    ax.set_title(f"{title} (d={d if d is not None else want_delay})", loc="left")
    if d is None:
        empty_panel(ax, f"no {metric} rows for {task} in the table")
        return
    if log_y:
        ax.set_yscale("log")
    sub = rows(sub, task__delay=d)
    msgs = []
    if want_delay is not None and d != want_delay:
        msgs.append(f"d={want_delay} not in table; showing d={d}")
    for s in schedules:
        g = rows(sub, flossing__schedule=s)
        if g.empty:
            msgs.append(f"{s}: not run")
            continue
        if log_y:
            g = g.assign(value=g["value"].where(g["value"] > 0, np.nan))
        median_band(ax, g, SCHEDULE_COLOR[s], SCHEDULE_LABEL[s], lines_per_network=True)
    _chance_line(ax, task, metric)
    ax.legend(loc="best")
    note(ax, "\n".join(msgs))


def vs_delay(ax, df: pd.DataFrame, task: str, metric: str, schedules: list[str], expected_delays: list[int],
             title: str, log_y: bool, fail_value: float) -> None:
    """Final ``metric`` (last evaluation of each run) vs delay: a dot per network, median line."""
    ax.set_title(title, loc="left")
    ax.set_xlabel("delay d (steps)")
    ax.set_ylabel(f"final {_ylabel(metric)}")
    f = final(rows(df, task__name=task), metric, fail_value)
    if f.empty:
        empty_panel(ax, f"no {metric} rows for {task} in the table")
        return
    if log_y:
        ax.set_yscale("log")
    delays = values(f, "task.delay")
    step = min(np.diff(delays)) if len(delays) > 1 else 10
    present = [s for s in schedules if not rows(f, flossing__schedule=s).empty]
    width = 0.35 * step / max(len(present), 1)
    msgs = []
    for j, s in enumerate(present):
        g = rows(f, flossing__schedule=s)
        off = (j - (len(present) - 1) / 2) * width
        x = g["task.delay"].to_numpy(float) + off + jitter(len(g), 0.3 * width, seed=j)
        ax.scatter(x, g["value"], s=10, color=SCHEDULE_COLOR[s], alpha=0.5, lw=0)
        m = g.groupby("task.delay")["value"].median()
        per = g.groupby("task.delay").size()
        n = str(per.iloc[0]) if per.nunique() == 1 else f"{per.min()}-{per.max()}"
        ax.plot(m.index + off, m.values, "o-", ms=4, color=SCHEDULE_COLOR[s], lw=1.6,
                label=f"{SCHEDULE_LABEL[s]} (n={n} per delay)")
        lacking = [d for d in delays if d not in m.index]
        if lacking:
            msgs.append(f"{s}: no d={','.join(map(str, lacking))}")
    for s in schedules:
        if s not in present:
            msgs.append(f"{s}: not run")
    not_run = [d for d in expected_delays if d not in delays]
    if not_run:
        msgs.append(f"delays not in table: {', '.join(map(str, not_run))}")
    _chance_line(ax, task, metric)
    ax.set_xticks(sorted(set(delays) | set(expected_delays)))
    ax.legend(loc="best")
    note(ax, "\n".join(msgs), "lower right" if metric == "test_loss" else "upper right")
