"""Panels and claim helpers shared by Fig 3 and Fig 4: a test metric vs training epochs at one
delay, the final test metric vs delay (one colour per flossing schedule), and the final value
per network of each condition (schedule, delay) that the claims test."""
from __future__ import annotations

import numpy as np
import pandas as pd

from flossrepro.constants import CHANCE, SCHEDULE_LABEL, SCHEDULES
from flossrepro.figures import planned
from flossrepro.figures.claims import OPS, Part, g, median_reps, part, part_from_reps, scale_of
from flossrepro.figures.data import final, fmt_setting, network_values, pick_delay, rows, values
from flossrepro.figures.plotting import (SCHEDULE_COLOR, dots_and_median, empty_panel, median_band, note)


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
        off = (j - (len(present) - 1) / 2) * width
        m = dots_and_median(ax, rows(f, flossing__schedule=s), "task.delay", off, 0.3 * width, SCHEDULE_COLOR[s],
                            f"{SCHEDULE_LABEL[s]} (n={{n}} per delay)", seed=j)
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


# ----------------------------------------------------------------------------- claims helpers
def finals(df: pd.DataFrame, metric: str, task: str, fail_value: float) -> pd.DataFrame:
    """One row per network of ``task``: the final ``metric`` (a diverged network gets ``fail_value``)."""
    return final(rows(df, task__name=task), metric, fail_value)


def cell(f: pd.DataFrame, schedule: str, delay) -> tuple[np.ndarray, list]:
    """``(values, networks)`` of one condition (schedule, delay) of a ``finals`` table."""
    d = rows(f, flossing__schedule=schedule, task__delay=delay)
    return network_values(d)


def conditions(f: pd.DataFrame, schedules: list[str]) -> list:
    """Delays at which every one of ``schedules`` has networks."""
    if f.empty:
        return []
    have = f.groupby("task.delay")["flossing.schedule"].agg(set)
    return sorted(d for d, s in have.items() if set(schedules) <= s)


def median_part(label: str, f: pd.DataFrame, schedule: str, delay, op: str, threshold: float, rng) -> Part:
    x, nets = cell(f, schedule, delay)
    return part(label, x, np.median, op, threshold, nets, rng)


def diff_part(label: str, f: pd.DataFrame, a: str, b: str, delay, op: str, threshold: float, rng) -> Part:
    """median(b) - median(a) at ``delay``, each condition's networks resampled independently."""
    xa, na = cell(f, a, delay)
    xb, nb = cell(f, b, delay)
    ma, ra = median_reps(xa, rng)
    mb, rb = median_reps(xb, rng)
    return part_from_reps(label, mb - ma, rb - ra, op, threshold, list(na) + list(nb))


def median_table(f: pd.DataFrame) -> list[str]:
    """Markdown table: median final value per delay (rows) and schedule (columns), with n."""
    if f.empty:
        return []
    m = f.groupby(["task.delay", "flossing.schedule"])["value"].agg(["median", "size"])
    scheds = [s for s in SCHEDULES if s in m.index.get_level_values(1)]
    out = ["| delay | " + " | ".join(f"{s} (n)" for s in scheds) + " |", "|---|" + "---|" * len(scheds)]
    for d in sorted(m.index.get_level_values(0).unique()):
        cells = [f"{g(m.loc[(d, s), 'median'])} ({int(m.loc[(d, s), 'size'])})" if (d, s) in m.index else "-"
                 for s in scheds]
        out.append(f"| {fmt_setting(d)} | " + " | ".join(cells) + " |")
    return out


def delays_text(ds) -> str:
    """``d=10,20`` or ``no delay``."""
    ds = list(ds)
    return "d=" + ",".join(str(int(d)) for d in ds) if ds else "no delay"


def leaves_chance(f: pd.DataFrame, op: str, threshold: float) -> str:
    """Per schedule, the delays whose median final value is ``op threshold`` (e.g. leaves chance)."""
    if f.empty:
        return ""
    m = f.groupby(["flossing.schedule", "task.delay"])["value"].median()
    scheds = [s for s in SCHEDULES if s in m.index.get_level_values(0)]
    return ", ".join(f"{s} at {delays_text([d for d, v in m.loc[s].items() if OPS[op](v, threshold)])}" for s in scheds)


def planned_delays(experiment: str, df: pd.DataFrame) -> list:
    """The sweep's delays at the table's scale."""
    scales = scale_of(df)
    return planned(experiment, "task.delay", scales[0] if scales else None)
