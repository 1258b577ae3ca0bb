"""Low-rank study, against g: convergence time, ||dW||, loss after shuffle, functional rank, lambda_1 at init.

- **A**: convergence time (first epoch with training loss < 5% of the loss at epoch 0; never: the
  run's epochs, a lower bound) vs g, median and 25-75% band per task;
- **B**: ``||dW||_F`` at the end vs g;
- **C**: loss after shuffling the entries of W0 (dW, W_in, W_out kept) relative to L0 vs g;
- **D**: functional rank vs g (networks that solve the task);
- **E**: lambda_1 of the initial network vs g (the transition to chaos where it crosses 0).

Claims: LR2 (U shape: the median convergence time at the g nearest 1 is below those at g = 0 and at
the largest g, on every task; the g is fixed in advance, not picked from the data), LR3 (the median
loss after shuffle is above L0 / 2 at the g nearest 1 and at the largest g, on every task).
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures.claims import Claim, Group, rng_for
from flossrepro.figures.data import values
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import (TASK_LABEL, diff_median_part, frame_median_part, md_table, medians_by, nearest,
                                               table)
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, suptitle

EXPERIMENTS = ("lr_flipflop", "lr_mante", "lr_romo")
STUDY = "lowrank"
TITLE = "Low-rank study: convergence time, ||dW||, loss after shuffle and functional rank vs g"
PANELS = {"A": "convergence time vs g", "B": "||dW||_F vs g", "C": "loss after shuffling W0 / L0 vs g",
          "D": "functional rank vs g", "E": "lambda_1 at initialisation vs g"}
METRICS = _METRICS
TASKS = ("flipflop", "mante", "romo")
COLORS = {"flipflop": "#1f77b4", "mante": "#ff7f0e", "romo": "#2ca02c"}
SHUFFLE_HIGH = 0.5

CLAIM_PANELS = {"LR2": "A", "LR3": "C"}  # the panel each claim is read from (report's figure map)
CLAIMS = {"LR2": "convergence time is U-shaped in g: its median at the g nearest 1 is below the medians at g = 0 "
                 "and at the largest g, on every task",
          "LR3": f"the loss after shuffling W0 is high: median > {SHUFFLE_HIGH} L0 at the g nearest 1 and at the "
                 "largest g, on every task"}


def _tables(metrics: pd.DataFrame) -> dict[str, pd.DataFrame]:
    out = {}
    for task in TASKS:
        d = metrics[metrics["task.name"] == task] if "task.name" in metrics else metrics.iloc[0:0]
        if not d.empty:
            out[task] = table(d)
    return out


def plot(metrics: pd.DataFrame) -> Figure:
    tabs = _tables(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(1, 5, (20, 4.2))
        spec = [("conv", "convergence epoch"), ("dW_norm", "||dW||_F"), ("shuffle_rel", "loss after shuffle / L0"),
                ("rank", "functional rank"), ("lambda1_init", "lambda_1 at init (per step)")]
        for ax, (col, lab), letter in zip(axes[0], spec, "ABCDE"):
            ax.set_title(f"{letter}  {lab}", loc="left")
            ax.set_xlabel("g")
            ax.set_ylabel(lab)
            if not tabs:
                empty_panel(ax, "no table")
                continue
            for task, t in tabs.items():
                m = medians_by(t, "", col, "init.g")
                if m.empty:
                    continue
                ax.plot(m["init.g"], m["median"], "o-", color=COLORS[task], ms=3, label=TASK_LABEL[task])
                ax.fill_between(m["init.g"], m["q25"], m["q75"], color=COLORS[task], alpha=0.2, lw=0)
            if col == "lambda1_init":
                ax.axhline(0, color="black", lw=0.8)
            if col == "shuffle_rel":
                ax.axhline(1, color="black", ls="--", lw=0.8)
            ax.legend()
        suptitle(fig, TITLE, metrics, extra="no-k")
    return fig


def _by_g(t: pd.DataFrame, gv: float) -> pd.DataFrame:
    return t[t["init.g"] == gv]


def claims(metrics: pd.DataFrame) -> list[Claim]:
    tabs = _tables(metrics)
    c2, c3 = Claim("LR2", CLAIMS["LR2"]), Claim("LR3", CLAIMS["LR3"])
    r2, r3 = rng_for("LR2"), rng_for("LR3")
    lost = [t for t in TASKS if t not in tabs]
    for c in (c2, c3):
        if lost:
            c.missing = f"not run: {', '.join(lost)}"
    d2, d3 = [], []
    for task, t in tabs.items():
        gs = values(t, "init.g")
        if len(gs) < 3:
            continue
        g1, g0, gmax = nearest(gs, 1.0), min(gs), max(gs)
        c2.groups.append(Group(f"{TASK_LABEL[task]} (g={g0:g}, {g1:g}, {gmax:g})", [
            diff_median_part(f"median conv(g={g0:g}) - conv(g={g1:g})", _by_g(t, g1), _by_g(t, g0), "conv", ">", 0.0, r2),
            diff_median_part(f"median conv(g={gmax:g}) - conv(g={g1:g})", _by_g(t, g1), _by_g(t, gmax), "conv", ">", 0.0,
                             r2)]))
        c3.groups.append(Group(TASK_LABEL[task], [
            frame_median_part(f"median shuffle loss / L0 at g={g1:g}", _by_g(t, g1), "shuffle_rel", ">", SHUFFLE_HIGH, r3),
            frame_median_part(f"median shuffle loss / L0 at g={gmax:g}", _by_g(t, gmax), "shuffle_rel", ">", SHUFFLE_HIGH, r3)]))
        per = t.groupby("init.g").agg(networks=("conv", "size"), never_converged=("conv_censored", "sum"),
                                      median_conv=("conv", "median"), median_dW_norm=("dW_norm", "median"),
                                      median_shuffle_rel=("shuffle_rel", "median"), median_rank=("rank", "median"),
                                      median_lambda1_init=("lambda1_init", "median")).reset_index()
        block = [f"{TASK_LABEL[task]} (epochs {int(t['epochs'].max()) if 'epochs' in t else '?'}; a network that "
                 "never converged counts as the run's epochs):", ""] + md_table(per, list(per.columns)) + [""]
        d2 += block
        d3 += block
    c2.detail, c3.detail = d2, d3
    return [c2, c3]
