"""Helpers for the figures that look inside training (Figs 8-13): one condition's traces per
network, the epochs of its flossing episodes, and the per-network statistics the claims test.

A *trace* is one network's values of one metric over training epochs (a ``pd.Series``
indexed by epoch). Flossing episodes are read from the table itself: every episode records
``lyap_after_floss`` at the epoch it precedes, so a module that marks or tests episodes lists
``lyap_after_floss[1]`` in its ``METRICS``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULE_LABEL
from flossrepro.figures.data import NET, pick_delay, rows, values
from flossrepro.figures.plotting import SCHEDULE_COLOR, STYLE, empty_panel, new_figure, note, suptitle

TASK = "binary_xor"
DELAY = 70            # Figs 8-12: binary temporal XOR at d=70


def at_delay(df: pd.DataFrame, task: str = TASK, want: int = DELAY) -> tuple[pd.DataFrame, int | None]:
    """``(rows of task at the delay nearest want, that delay)``."""
    sub = rows(df, task__name=task)
    d = pick_delay(values(sub, "task.delay"), want)
    return (rows(sub, task__delay=d) if d is not None else sub.iloc[0:0]), d


def traces(df: pd.DataFrame, metric: str, index: int | None = None) -> dict[tuple, pd.Series]:
    """``{(run_id, member): values by epoch}`` of ``metric`` (``index``: one entry of a vector metric)."""
    r = df[df["metric"] == metric]
    if index is not None:
        r = r[r["index"] == index]
    out = {}
    for net, g in r.groupby(NET):
        s = g.drop_duplicates("epoch", keep="last").set_index("epoch")["value"].sort_index()
        out[net] = s.astype(float)
    return out


def episodes(df: pd.DataFrame) -> dict[str, list[int]]:
    """``{run_id: epochs at which a flossing episode ran}`` (from ``lyap_after_floss`` rows)."""
    r = df[df["metric"] == "lyap_after_floss"]
    return {run: sorted(int(e) for e in g["epoch"].unique()) for run, g in r.groupby("run_id")}


def mark_episodes(ax, epochs, color="#888888", label: str | None = "flossing episode") -> None:
    """Dotted vertical lines at the episode epochs."""
    for j, e in enumerate(epochs):
        ax.axvline(e, color=color, ls=":", lw=0.8, alpha=0.7, label=label if j == 0 else None)


def color(schedule: str) -> str:
    return SCHEDULE_COLOR.get(schedule, "#000000")


def first_for_good(s: pd.Series, op, threshold: float, window: int) -> float:
    """The first epoch from which the centred rolling median (``window`` samples) of ``s`` stays
    ``op threshold`` to the end of the trace; NaN when its last value does not."""
    if s.empty:
        return np.nan
    sm = s.rolling(window, center=True, min_periods=1).median()
    ok = op(sm.to_numpy(float), threshold)
    if not ok[-1]:
        return np.nan
    bad = np.flatnonzero(~ok)
    return float(sm.index[bad[-1] + 1] if len(bad) else sm.index[0])


def ratio_at(s: pd.Series, epochs, before: int) -> np.ndarray:
    """``log10(s[e] / s[e - before])`` at each of ``epochs`` where both are recorded and positive."""
    out = []
    for e in epochs:
        if e in s.index and (e - before) in s.index:
            a, b = s.loc[e], s.loc[e - before]
            if a > 0 and b > 0 and np.isfinite(a) and np.isfinite(b):
                out.append(np.log10(a / b))
    return np.asarray(out, float)


SV = (1, 20, 40)                            # Figs 10-11: the singular values of dL/dW drawn
SV_CONDS = ("none", "during")
LINESTYLE = {1: "-", 20: "--", 40: ":"}


def realization_panels(metrics: pd.DataFrame, which: int, title: str) -> Figure:
    """The three panels for the ``which``-th network (in member order) of each condition."""
    df, d = at_delay(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(1, 3, (15, 4.4))
        a, b, c = axes[0]
        msgs = []
        eps = episodes(rows(df, flossing__schedule="during"))
        for s in SV_CONDS:
            sub = rows(df, flossing__schedule=s)
            sv = {i: traces(sub, "grad_W_sv", i) for i in SV}
            nets = sorted(sv[1])
            if len(nets) <= which:
                msgs.append(f"{s}: no network #{which + 1}")
                continue
            net = nets[which]
            for i in SV:
                t = sv[i].get(net)
                if t is None:
                    continue
                a.plot(t.index, t.values, color=color(s), ls=LINESTYLE[i], lw=1.0,
                       label=f"{SCHEDULE_LABEL[s]}: sigma_{i}")
                if i > 1:
                    r = t / sv[1][net].reindex(t.index)
                    b.plot(r.index, r.values, color=color(s), ls=LINESTYLE[i], lw=1.0,
                           label=f"{SCHEDULE_LABEL[s]}: sigma_{i}/sigma_1")
            acc = traces(sub, "test_accuracy").get(net)
            if acc is not None:
                c.plot(acc.index, acc.values, color=color(s), lw=1.2, label=SCHEDULE_LABEL[s])
        if not any(ax.lines for ax in (a, b, c)):
            for ax in (a, b, c):
                empty_panel(ax, "no grad_W_sv rows for binary_xor in the table")
        else:
            for ax in (a, b):
                ax.set_yscale("log")
            c.axhline(0.5, color="black", ls="--", lw=1, label="chance")
            for ax in (a, b, c):
                if eps:
                    mark_episodes(ax, next(iter(eps.values())))
                ax.set_xlabel("training epochs")
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=6.5)   # below: off the data
        a.set_ylabel("sigma_i(dL/dW)")
        b.set_ylabel("sigma_i / sigma_1")
        c.set_ylabel("test accuracy")
        a.set_title(f"A  singular values of dL/dW (d={d}, network #{which + 1})", loc="left")
        b.set_title("B  relative to sigma_1", loc="left")
        c.set_title("C  test accuracy", loc="left")
        note(a, "\n".join(msgs))
        suptitle(fig, title, df if not df.empty else metrics)
    return fig
