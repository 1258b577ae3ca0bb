"""Panels shared by Figs 3, 4 and 14: a test metric vs training epochs at one delay, the final
test metric vs delay (one colour per flossing schedule), and Fig 4's four accuracy panels (Fig 14
draws the same). The claims' statistics live in ``stats_tasks``."""
from __future__ import annotations

import numpy as np
import pandas as pd

from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import CHANCE, SCHEDULE_LABEL, SCHEDULES
from flossrepro.figures.data import final, pick_delay, rows, values
from flossrepro.figures.plotting import (SCHEDULE_COLOR, STYLE, dots_and_median, empty_panel, median_band, new_figure,
                                         note, suptitle)
from flossrepro.figures.stats_tasks import finals, planned_delays  # noqa: F401  (finals: the panels' table)

ACC_TASKS = [("binary_xor", "binary temporal XOR"), ("spatial_xor", "spatial XOR")]
ACC_SCHEDULES = list(SCHEDULES[:3])   # none, pre, during


def _chance_line(ax, task: str, metric: str) -> None:
    c = CHANCE.get(task)
    if c is None:
        return
    label = f"chance ({'1/12' if task == 'copy' else '1/18' if c == 1 / 18 else f'{c:g}'})"
    ax.axhline(c, color="black", ls="--", lw=1, label=label)


def _ylabel(metric: str) -> str:
    return "test MSE" if metric == "test_loss" else "test accuracy"


def vs_epochs(ax, df: pd.DataFrame, task: str, metric: str, schedules: list[str], want_delay: int | None,
              title: str, log_y: bool, stat: str = "median") -> None:
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
        median_band(ax, g, SCHEDULE_COLOR[s], SCHEDULE_LABEL[s], lines_per_network=True, stat=stat)
    _chance_line(ax, task, metric)
    ax.legend(loc="best")
    note(ax, "\n".join(msgs))


def vs_delay(ax, df: pd.DataFrame, task: str, metric: str, schedules: list[str], expected_delays: list[int],
             title: str, log_y: bool, fail_value: float, stat: str = "median",
             band: tuple[float, float] | None = None) -> None:
    """Final ``metric`` (last evaluation of each run) vs delay: a dot per network, the ``stat``
    line (and an optional percentile band)."""
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
                            f"{SCHEDULE_LABEL[s]} ({stat}, n={{n}} per delay)", seed=j, stat=stat, band=band)
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


def accuracy_panels(metrics: pd.DataFrame, experiment: str, title: str, delay: int = 70,
                    band: tuple[float, float] = (0.2, 0.8)) -> Figure:
    """Test accuracy vs epochs at ``delay`` and final accuracy vs the delays of ``experiment``, per
    task and schedule (Fig 4; Fig 14 draws the same panels). The final accuracy is drawn as the
    captions say: the mean line and the ``band`` percentiles (Fig 4 keeps Fig 3's 20-80%, Fig 14
    states 25-75%)."""
    sched = ACC_SCHEDULES + [s for s in values(metrics, "flossing.schedule") if s not in ACC_SCHEDULES]
    delays = planned_delays(experiment, metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(2, 2, (11, 8))
        for j, (task, name) in enumerate(ACC_TASKS):
            vs_epochs(axes[0, j], metrics, task, "test_accuracy", sched, delay, f"{'AB'[j]}  {name}", log_y=False,
                      stat="mean")   # the paper's Fig 4A: mean across networks
            vs_delay(axes[1, j], metrics, task, "test_accuracy", sched, delays, f"{'CD'[j]}  {name}: final accuracy",
                     log_y=False, fail_value=0.5, stat="mean", band=band)
        acc = metrics.loc[metrics["metric"] == "test_accuracy", "value"]
        low = min(0.3, float(acc.min()) - 0.02) if acc.notna().any() else 0.3
        for ax in axes.flat:
            ax.set_ylim(low, 1.02)
        suptitle(fig, title, metrics)
    return fig
