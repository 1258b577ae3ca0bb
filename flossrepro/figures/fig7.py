"""Fig 7 (A-D): preflossing alone, for several numbers of flossed exponents k.

The runs of Fig 5 (``conf/experiment/fig5.yaml``, k sweep) plus the largest k from
``conf/experiment/fig4.yaml``, binary temporal XOR and spatial XOR (one row of panels per task):

- **A**: final test accuracy (last evaluation; diverged -> 0.5) vs delay, one colour per k,
  preflossing only: a dot per network and the median line; chance 0.5 dashed.
- **B**: the same vs k, one line per delay.
- **C**: heatmap of the median final accuracy over (delay, k), flossing during training.
- **D**: the same heatmap for preflossing only (same colour scale 0.5-1, annotated cells).

Claim 7CD is defined below.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures.claims import Claim, Group, part, rng_for
from flossrepro.figures.data import fmt_setting, values
from flossrepro.figures.fig5 import (CHANCE_ACC, TASKS, k_cell, k_finals, k_table, medians, planned_k_delays, planned_ks, vs_delay_k, vs_k, ylim_acc)
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, suptitle

EXPERIMENTS = ("fig5", "fig4")
STUDY = "flossing"
TITLE = "Fig 7: preflossing only vs flossing during training, number of flossed exponents k"
PANELS = {"A": "final test accuracy vs delay, one colour per k (preflossing only; a row per task)",
          "B": "final test accuracy vs k, one line per delay (preflossing only; a row per task)",
          "C": "heatmap of median final accuracy over (delay, k), flossing during training",
          "D": "heatmap of median final accuracy over (delay, k), preflossing only"}
METRICS = ("test_accuracy",)

FAIL_7 = 0.6           # preflossing fails: median final accuracy < FAIL_7
SUCCEED_7 = 0.8        # flossing during training succeeds: median > SUCCEED_7
VMIN, VMAX = 0.5, 1.0  # heatmap colour scale (chance to perfect)

CLAIMS = {
    "7CD": f"preflossing alone fails (median final accuracy < {FAIL_7}) at the hardest delay even with the largest k, "
           f"where flossing during training succeeds (median > {SUCCEED_7}), for both tasks",
}


def heatmap(ax, f: pd.DataFrame, ks: list, delays: list, title: str):
    """Median final accuracy over (delay rows, k columns), annotated; ``None`` when empty."""
    ax.set_title(title, loc="left")
    ax.grid(False)
    ks = sorted(set(ks) | set(values(f, "flossing.k")))
    delays = sorted(set(delays) | set(values(f, "task.delay")))
    if f.empty or not ks or not delays:
        empty_panel(ax, "no runs of this task and schedule in the tables")
        return None
    m = medians(f)
    grid = np.full((len(delays), len(ks)), np.nan)
    for i, d in enumerate(delays):
        for j, k in enumerate(ks):
            if (d, k) in m.index:
                grid[i, j] = m.loc[(d, k), "median"]
    im = ax.imshow(grid, cmap="viridis", vmin=VMIN, vmax=VMAX, origin="lower", aspect="auto")
    for i, d in enumerate(delays):
        for j, k in enumerate(ks):
            v = grid[i, j]
            if np.isnan(v):
                ax.text(j, i, "not run", ha="center", va="center", fontsize=7, color="#8b0000")
            else:
                n = int(m.loc[(d, k), "size"])
                ax.text(j, i, f"{v:.2f}\n(n={n})", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.8 else "black")
    ax.set_xticks(range(len(ks)))
    ax.set_xticklabels([fmt_setting(k) for k in ks])
    ax.set_yticks(range(len(delays)))
    ax.set_yticklabels([fmt_setting(d) for d in delays])
    ax.set_xlabel("flossed exponents k")
    ax.set_ylabel("delay d (steps)")
    return im


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 7A-D from the fig5 and fig4 tables (see the module docstring)."""
    ks, delays = planned_ks(metrics), planned_k_delays(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(len(TASKS), 4, (20, 4.2 * len(TASKS)))
        for i, (task, name) in enumerate(TASKS):
            pre, during = k_finals(metrics, task, "pre"), k_finals(metrics, task, "during")
            vs_delay_k(axes[i, 0], pre, ks, delays, f"A  {name}: preflossing only")
            vs_k(axes[i, 1], pre, ks, f"B  {name}: preflossing only")
            im = None
            for ax, f, letter, what in ((axes[i, 2], during, "C", "during training"),
                                        (axes[i, 3], pre, "D", "preflossing only")):
                im = heatmap(ax, f, ks, delays, f"{letter}  {name}: {what}") or im
            if im is not None:
                fig.colorbar(im, ax=axes[i, 2:4].tolist(), shrink=0.9, label="median final test accuracy")
        ylim_acc(axes[:, :2].flat, metrics)
        suptitle(fig, f"Fig 7: preflossing only vs flossing during training (chance {CHANCE_ACC:g})", metrics)
    return fig


# ----------------------------------------------------------------------------- claims
def _claim_7(df: pd.DataFrame) -> Claim:
    cid = "7CD"
    c, rng = Claim(cid, CLAIMS[cid]), rng_for(cid)
    ks_plan, d_plan = planned_ks(df), planned_k_delays(df)
    missing, detail = [], []
    for task, name in TASKS:
        fs = {s: k_finals(df, task, s) for s in ("pre", "during")}
        present = pd.concat(fs.values())
        kmax = max(set(ks_plan) | set(values(present, "flossing.k")), default=None)
        dmax = max(set(d_plan) | set(values(present, "task.delay")), default=None)
        for s in ("during", "pre"):
            detail += [f"**{name}**, {'flossing during training' if s == 'during' else 'preflossing only'} "
                       "(median final test accuracy, networks in brackets):", ""]
            detail += k_table(fs[s], ks_plan, d_plan) + [""]
        if kmax is None or dmax is None:
            missing.append(f"{task}: no runs")
            continue
        lost = [s for s in ("pre", "during") if not len(k_cell(fs[s], kmax, dmax)[0])]
        if lost:
            missing.append(f"{task}: k={fmt_setting(kmax)} d={fmt_setting(dmax)} not run with {' and '.join(lost)}")
            continue
        parts = []
        for s, op, thr in (("pre", "<", FAIL_7), ("during", ">", SUCCEED_7)):
            x, nets = k_cell(fs[s], kmax, dmax)
            parts.append(part(f"{s} median final accuracy", x, np.median, op, thr, nets, rng))
        c.groups.append(Group(f"{name}, d={fmt_setting(dmax)}, k={fmt_setting(kmax)}", parts))
    c.missing = "; ".join(missing)
    c.detail = ["Tested at the largest delay and the largest k of the sweeps (the largest k from fig4's runs). "
                "Paper: preflossing only cannot solve the hardest tasks even with k=N.", ""] + detail
    return c


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claim 7CD measured on the fig5 and fig4 tables."""
    return [_claim_7(metrics)]
