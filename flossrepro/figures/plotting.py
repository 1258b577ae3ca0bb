"""Plot helpers shared by the figure modules (matplotlib object API: no pyplot state, Agg)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULES
from flossrepro.figures.data import NET, band, describe, fmt_setting

STYLE = {"axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
         "grid.alpha": 0.3, "font.size": 9, "axes.titlesize": 10, "legend.fontsize": 7.5,
         "legend.frameon": False}

#: the paper's colours: blue none, orange pre, green during, red throughout
SCHEDULE_COLOR = dict(zip(SCHEDULES, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]))


def new_figure(nrows: int, ncols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=size, layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(nrows, ncols)
    return fig, axes


def palette(n: int, name: str = "viridis") -> list:
    return sns.color_palette(name, max(n, 1)).as_hex() if n > 1 else ["#1f77b4"]


def median_band(ax: Axes, df: pd.DataFrame, color, label: str | None, x: str = "epoch",
                lines_per_network: bool = False, stat: str = "median") -> pd.DataFrame:
    """Median (or ``stat="mean"``) line and 25-75% band of ``value`` over networks vs ``x``;
    optional thin line per network."""
    if lines_per_network:
        for _, g in df.groupby(NET):
            g = g.sort_values(x)
            ax.plot(g[x], g["value"], color=color, lw=0.5, alpha=0.35)
    b = band(df, x)
    if b.empty:
        return b
    n = int(df.groupby(NET).ngroups)
    line = b["median"] if stat == "median" else df.groupby(x)["value"].mean().reindex(b[x]).to_numpy()
    ax.fill_between(b[x], b["q25"], b["q75"], color=color, alpha=0.2, lw=0)
    ax.plot(b[x], line, color=color, lw=1.8, label=None if label is None else f"{label} ({stat}, n={n})")
    return b


def note(ax: Axes, text: str, loc: str = "lower left") -> None:
    """A small grey note inside the panel (what is missing, what was substituted)."""
    if not text:
        return
    xy = {"lower left": (0.02, 0.02, "left", "bottom"), "upper left": (0.02, 0.98, "left", "top"),
          "upper right": (0.98, 0.98, "right", "top"), "lower right": (0.98, 0.02, "right", "bottom"),
          "center": (0.5, 0.5, "center", "center")}[loc]
    ax.text(xy[0], xy[1], text, transform=ax.transAxes, ha=xy[2], va=xy[3], fontsize=7, color="#8b0000",
            bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="#cccccc", alpha=0.85), zorder=10)


def empty_panel(ax: Axes, text: str) -> None:
    note(ax, text, "center")


def suptitle(fig: Figure, title: str, df: pd.DataFrame, extra: str = "", trained: bool = True) -> None:
    """``title`` plus the scale, N, members per condition and epochs as recorded in the table
    (``trained=False``: a job that trains nothing, so no training epochs)."""
    d = describe(df)
    parts = [f"scale={fmt_setting(d['scale'])}", f"N={fmt_setting(d['N'])}",
             f"{fmt_setting(d['members'])} networks per condition"]
    if trained and d.get("epochs") not in (None, 0):
        parts.append(f"{fmt_setting(d['epochs'])} training epochs")
    if d.get("k") is not None and extra != "no-k":
        parts.append(f"k={fmt_setting(d['k'])}")
    if d.get("floss_epochs"):
        parts.append(f"{fmt_setting(d['floss_epochs'])} flossing epochs per episode")
    if extra and extra != "no-k":
        parts.append(extra)
    fig.suptitle(f"{title}\n" + ", ".join(parts), fontsize=10)


def jitter(n: int, width: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-width, width, n)


def dots_and_median(ax: Axes, df: pd.DataFrame, x: str, off: float, spread: float, color, label: str,
                    seed: int = 0, stat: str = "median", band: tuple[float, float] | None = None) -> pd.Series:
    """One group of final values: a dot per network near its ``x`` (shifted by ``off`` and jittered
    by ``spread`` so groups do not overlap) and the ``stat`` line (median or mean) at the true
    ``x``, with an optional percentile ``band`` (e.g. ``(0.2, 0.8)``); ``label`` may name ``{n}``,
    the networks per point (``"3"``, or ``"2-4"`` where it varies). Returns the line's values."""
    pos = df[x].to_numpy(float) + off + jitter(len(df), spread, seed=seed)
    ax.scatter(pos, df["value"], s=10, color=color, alpha=0.5, lw=0)
    gr = df.groupby(x)["value"]
    m = gr.median() if stat == "median" else gr.mean()
    if band is not None:
        ax.fill_between(m.index, gr.quantile(band[0]).to_numpy(), gr.quantile(band[1]).to_numpy(), color=color,
                        alpha=0.15, lw=0)
    per = gr.size()
    n = str(per.iloc[0]) if per.nunique() == 1 else f"{per.min()}-{per.max()}"
    ax.plot(m.index, m.values, "o-", ms=4, lw=1.6, color=color, label=label.format(n=n))
    return m
