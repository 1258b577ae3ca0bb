"""Fig 1 (B-D): flossing alone drives the Lyapunov exponents of random tanh networks to a target.

- **B**: lambda_1 (estimated on each flossing step, ``floss_lambda_1``) vs flossing epochs for
  every target in the table, k=1: median over networks, 25-75% band, dashed target lines.
- **C**: flossing loss (``floss_loss``) vs flossing epochs for every k at target 0, log y:
  median and 25-75% band.
- **D**: the spectrum after flossing (``lyap_after_floss``, the last episode of each run) vs
  exponent index for every k at target 0: a dot per network, the median line, a dotted
  vertical marker at i=k, and the median spectrum before flossing in grey.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from .data import NET, last_epoch_rows, rows, values
from .plotting import STYLE, empty_panel, jitter, median_band, new_figure, note, palette, suptitle

TARGETS = [-1.0, -0.5, 0.0, 0.5]
TARGET_COLOR = {-1.0: "#08519c", -0.5: "#4eb3d3", 0.0: "#238b45", 0.5: "#e6550d"}


def _k1(df: pd.DataFrame) -> tuple[int | None, str]:
    ks = values(df, "flossing.k")
    if not ks:
        return None, "no flossing.k column"
    if 1 in ks:
        return 1, ""
    return ks[0], f"k=1 not run; showing k={ks[0]}"


def _target0(df: pd.DataFrame) -> tuple[float | None, str]:
    ts = values(df, "flossing.target")
    if not ts:
        return None, ""
    if any(np.isclose(t, 0.0) for t in ts):
        return 0.0, ""
    t = min(ts, key=abs)
    return float(t), f"target 0 not run; showing target {t:g}"


def panel_b(ax, df: pd.DataFrame) -> None:
    ax.set_title("B  $\\lambda_1$ during flossing toward a target (k=1)", loc="left")
    ax.set_xlabel("flossing epochs")
    ax.set_ylabel("$\\lambda_1$ (1/step)")
    k, msg = _k1(df)
    sub = rows(df, "floss_lambda_1", flossing__k=k)
    present = values(sub, "flossing.target")
    if sub.empty:
        empty_panel(ax, "no floss_lambda_1 rows in the table")
        return
    targets = sorted(set(TARGETS) | set(present))
    extra = iter(palette(len(targets), "magma"))
    cols = {t: TARGET_COLOR.get(float(t)) or next(extra) for t in targets}
    missing = []
    for t in targets:
        d = rows(sub, flossing__target=float(t))
        if d.empty:
            missing.append(f"{t:g}")
            continue
        median_band(ax, d, cols[t], f"target {t:g}")
        ax.axhline(t, color=cols[t], ls="--", lw=1)
    ax.legend(loc="best")
    msgs = [m for m in [msg, ("targets not run: " + ", ".join(missing)) if missing else ""] if m]
    note(ax, "\n".join(msgs), "lower right")


def panel_c(ax, df: pd.DataFrame) -> None:
    ax.set_title("C  flossing loss (target 0)", loc="left")
    ax.set_xlabel("flossing epochs")
    ax.set_ylabel("flossing loss (1/step$^2$)")
    ax.set_yscale("log")
    t, msg = _target0(df)
    sub = rows(df, "floss_loss", flossing__target=t)
    if sub.empty:
        empty_panel(ax, "no floss_loss rows in the table")
        return
    sub = sub.assign(value=sub["value"].clip(lower=1e-12))
    ks = values(sub, "flossing.k")
    for k, c in zip(ks, palette(len(ks))):
        median_band(ax, rows(sub, flossing__k=k), c, f"k={k}")
    ax.legend(loc="best")
    note(ax, msg)


def panel_d(ax, df: pd.DataFrame) -> None:
    ax.set_title("D  spectrum after flossing k exponents (target 0)", loc="left")
    ax.set_xlabel("exponent index i")
    ax.set_ylabel("$\\lambda_i$ (1/step)")
    t, msg = _target0(df)
    after = rows(df, "lyap_after_floss", flossing__target=t)
    if after.empty:
        empty_panel(ax, "no lyap_after_floss rows in the table")
        return
    before = last_epoch_rows(rows(df, "lyap_before_floss", flossing__target=t))
    if not before.empty:
        # the initial spectrum (the same networks for every k): median over all networks
        first = before.groupby("run_id")["epoch"].transform("min")
        b = before[before["epoch"] == first].groupby("index")["value"].median()
        ax.plot(b.index.astype(int), b.values, color="#999999", ls="--", lw=1.2, label="before flossing (median)")
    ks = values(after, "flossing.k")
    for j, (k, c) in enumerate(zip(ks, palette(len(ks)))):
        d = last_epoch_rows(rows(after, flossing__k=k))
        x = d["index"].astype(int).to_numpy() + jitter(len(d), 0.15, seed=j)
        ax.scatter(x, d["value"], s=6, color=c, alpha=0.45, lw=0)
        m = d.groupby("index")["value"].median()
        n = d.groupby(NET).ngroups
        ax.plot(m.index.astype(int), m.values, color=c, lw=1.6, label=f"k={k} (n={n})")
        ax.axvline(k, color=c, ls=":", lw=1.2)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.plot([], [], color="black", ls=":", lw=1.2, label="i = k (dotted, colour of k)")
    ax.legend(loc="lower left")
    note(ax, msg, "upper right")


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 1B-D from the fig1 table (see the module docstring)."""
    with rc_context(STYLE):
        fig, axes = new_figure(1, 3, (14, 4.6))
        panel_b(axes[0, 0], metrics)
        panel_c(axes[0, 1], metrics)
        panel_d(axes[0, 2], metrics)
        suptitle(fig, "Fig 1: gradient flossing of random tanh networks (no task training)", metrics, "no-k")
    return fig
