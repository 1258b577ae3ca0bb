"""Panels shared by Fig 5 and Fig 7 (k sweeps): final accuracy vs delay, one colour per k; vs k,
one line per delay; the common accuracy axis. The tables come from ``stats_tasks.k_finals``."""
from __future__ import annotations

import numpy as np
import pandas as pd

from flossrepro.figures.data import fmt_setting, rows, values
from flossrepro.figures.plotting import dots_and_median, empty_panel, jitter, note, palette

CHANCE_ACC = 0.5
TASKS = [("binary_xor", "binary temporal XOR"), ("spatial_xor", "spatial XOR")]


def _accuracy_axes(ax, f: pd.DataFrame, title: str, xlabel: str) -> bool:
    """Title, labels and the chance line of a final-accuracy panel; False (and an empty-panel
    note) when ``f`` has no rows."""
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final test accuracy")
    ax.axhline(CHANCE_ACC, color="black", ls="--", lw=1, label="chance (0.5)")
    if f.empty:
        empty_panel(ax, "no runs of this task and schedule in the tables")
    return not f.empty


def vs_delay_k(ax, f: pd.DataFrame, ks: list, expected_delays: list, title: str) -> None:
    """Final accuracy vs delay, one colour per k: a dot per network, the mean line and the 25-75%
    band (the paper's Fig 5 caption)."""
    if not _accuracy_axes(ax, f, title, "delay d (steps)"):
        return
    present = values(f, "flossing.k")
    delays = values(f, "task.delay")
    step = min(np.diff(delays)) if len(delays) > 1 else 10
    width = 0.5 * step / max(len(present), 1)
    colors = dict(zip(present, palette(len(present))))
    for j, k in enumerate(present):
        off = (j - (len(present) - 1) / 2) * width
        dots_and_median(ax, rows(f, flossing__k=k), "task.delay", off, 0.25 * width, colors[k],
                        f"k={fmt_setting(k)} (mean, n={{n}})", seed=j, stat="mean", band=(0.25, 0.75))
    msgs = []
    lost_k = [k for k in ks if k not in present]
    if lost_k:
        msgs.append("k not in tables: " + ", ".join(map(fmt_setting, lost_k)))
    lost_d = [d for d in expected_delays if d not in delays]
    if lost_d:
        msgs.append("delays not in tables: " + ", ".join(map(fmt_setting, lost_d)))
    ax.set_xticks(sorted(set(delays) | set(expected_delays)))
    ax.legend(loc="best")
    note(ax, "\n".join(msgs), "upper right")


def vs_k(ax, f: pd.DataFrame, ks: list, title: str) -> None:
    """Final accuracy vs k (log axis), one line (mean, as the paper) per delay, a dot per network."""
    if not _accuracy_axes(ax, f, title, "flossed exponents k"):
        return
    present = values(f, "flossing.k")
    ax.set_xscale("log")
    delays = values(f, "task.delay")
    colors = dict(zip(delays, palette(len(delays), "plasma_r")))
    for j, d in enumerate(delays):
        sub = rows(f, task__delay=d)
        x = sub["flossing.k"].to_numpy(float) * np.exp(jitter(len(sub), 0.06, seed=j))
        ax.scatter(x, sub["value"], s=10, color=colors[d], alpha=0.5, lw=0)
        m = sub.groupby("flossing.k")["value"].mean()
        ax.plot(m.index, m.values, "o-", ms=4, lw=1.6, color=colors[d], label=f"d={fmt_setting(d)} (mean)")
    ticks = sorted(set(present) | set(ks))
    ax.set_xticks(ticks)
    ax.set_xticklabels([fmt_setting(k) for k in ticks])
    ax.minorticks_off()
    ax.legend(loc="best")
    lost = [k for k in ks if k not in present]
    note(ax, "k not in tables: " + ", ".join(map(fmt_setting, lost)) if lost else "", "upper right")


def ylim_acc(axes, df: pd.DataFrame) -> None:
    acc = df.loc[df["metric"] == "test_accuracy", "value"] if "metric" in df else pd.Series(dtype=float)
    low = min(0.3, float(acc.min()) - 0.02) if acc.notna().any() else 0.3
    for ax in axes:
        ax.set_ylim(low, 1.02)
