"""Low-rank study, LR7 (ours, open): does gradient flossing raise the rank of dW?

Flossing raises the rank of the gradient dL/dW (flossing paper Fig 10); does the accumulated
change dW = W - W0 become higher-rank too? Rate network on the study's tasks (experiment
``lr_floss``) and the flossing paper's vanilla network on binary temporal XOR (``lr_floss_xor``),
each with no flossing, preflossing and flossing during training.

- **A**: effective rank of dW at the end per schedule, for each task and g (a dot per network);
- **B**: singular values of dW at the end (median per schedule) for each task;
- **C**: final test loss per schedule (did the networks learn).

LR7 is open: the answer is the difference of the median effective rank of dW, (pre or during) minus
none, per task and g, with its 95% interval. ``reproduced`` reads "flossing raises the rank of dW",
``not reproduced`` "lowers it", ``inconclusive`` "no difference resolved". Flossing itself changes W
(the episodes are part of dW), so a change of rank can come from the episodes or from training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULE_LABEL
from flossrepro.figures.claims import Claim, Group, rng_for
from flossrepro.figures.data import NET, values
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import TASK_LABEL, diff_median_part, md_table, table, vectors
from flossrepro.figures.plotting import (SCHEDULE_COLOR, STYLE, empty_panel, jitter, new_figure, suptitle)

EXPERIMENTS = ("lr_floss", "lr_floss_xor")
STUDY = "lowrank"
TITLE = "Low-rank study: the rank of dW with and without gradient flossing"
PANELS = {"A": "effective rank of dW per flossing schedule", "B": "singular values of dW per schedule",
          "C": "final test loss per schedule"}
METRICS = _METRICS + ("test_accuracy",)
SCHED = ("none", "pre", "during")

CLAIM_PANELS = {"LR7": "A"}  # the panel each claim is read from (report's figure map)
CLAIMS = {"LR7": "open question, does flossing raise the rank of dW? Tested as: the median effective rank of dW with "
                 "preflossing and with flossing during training exceeds that without flossing, on every task and g "
                 "(not reproduced: lower; inconclusive: no difference resolved)"}


def _conditions(t: pd.DataFrame) -> list[tuple]:
    gcol = t["init.g"] if "init.g" in t else pd.Series(np.nan, index=t.index)
    return sorted({(str(a), float(b)) for a, b in zip(t["task.name"], gcol)})


def plot(metrics: pd.DataFrame) -> Figure:
    with rc_context(STYLE):
        fig, axes = new_figure(1, 3, (15, 4.2))
        if metrics.empty:
            for ax in axes[0]:
                empty_panel(ax, "no table")
            return fig
        t = table(metrics)
        conds = _conditions(t)
        a, b, c = axes[0]
        a.set_title("A  effective rank of dW", loc="left")
        c.set_title("C  final test loss", loc="left")
        for i, (task, gv) in enumerate(conds):
            s = t[(t["task.name"] == task) & ((t["init.g"] == gv) if not np.isnan(gv) else True)]
            for j, sc in enumerate(SCHED):
                x = i + (j - 1) * 0.25
                for ax, col in ((a, "dW_effective_rank"), (c, "final_loss")):
                    v = s[s["flossing.schedule"] == sc][col].dropna()
                    if len(v):
                        ax.scatter(x + jitter(len(v), 0.05, seed=i * 3 + j), v, s=8, color=SCHEDULE_COLOR[sc], alpha=0.6)
                        ax.plot([x - 0.1, x + 0.1], [v.median()] * 2, color=SCHEDULE_COLOR[sc], lw=2,
                                label=SCHEDULE_LABEL[sc] if i == 0 else None)
        labels = [f"{TASK_LABEL.get(task, task)}\ng={gv:g}" for task, gv in conds]
        for ax in (a, c):
            ax.set_xticks(range(len(conds)), labels, fontsize=7)
            ax.legend()
        c.set_yscale("log")
        b.set_title("B  singular values of dW (median)", loc="left")
        sv = vectors(metrics, "dW_sv")
        st = t.set_index(NET)
        styles = ["-", "--", ":", "-."]
        for i, (task, gv) in enumerate(conds):
            for sc in SCHED:
                idx = [k for k in sv.index if k in st.index and st.loc[k, "task.name"] == task
                       and st.loc[k, "flossing.schedule"] == sc and (np.isnan(gv) or st.loc[k, "init.g"] == gv)]
                if idx:
                    m = sv.loc[idx].median(axis=0).to_numpy()[:25]
                    m = m / m[0] if m[0] > 0 else m
                    b.plot(np.arange(1, len(m) + 1), m, styles[i % 4], color=SCHEDULE_COLOR[sc], lw=1,
                           label=f"{SCHEDULE_LABEL[sc]}, {TASK_LABEL.get(task, task)} g={gv:g}")
        b.set_yscale("log")
        b.set_xlabel("index")
        b.set_ylabel("s_i / s_1")
        b.legend(fontsize=5.5)
        suptitle(fig, TITLE, metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list[Claim]:
    c, rng = Claim("LR7", CLAIMS["LR7"]), rng_for("LR7")
    if metrics.empty:
        c.missing = "no table"
        return [c]
    t = table(metrics)
    lost = []
    for task, gv in _conditions(t):
        s = t[(t["task.name"] == task) & ((t["init.g"] == gv) if not np.isnan(gv) else True)]
        none = s[s["flossing.schedule"] == "none"]
        have = [sc for sc in ("pre", "during") if (s["flossing.schedule"] == sc).any()]
        if none.empty or len(have) < 2:
            lost.append(f"{task} g={gv:g}")
        parts = [diff_median_part(f"median eff. rank {sc} - none", none, s[s["flossing.schedule"] == sc],
                                  "dW_effective_rank", ">", 0.0, rng) for sc in have]
        if parts and not none.empty:
            c.groups.append(Group(f"{TASK_LABEL.get(task, task)} g={gv:g}", parts))
    if lost:
        c.missing = f"conditions without all schedules: {', '.join(lost)}"
    per = t.groupby(["task.name", "init.g", "flossing.schedule"]).agg(
        networks=("dW_effective_rank", "size"), median_eff_rank=("dW_effective_rank", "median"),
        median_functional_rank=("rank", "median"), median_dW_norm=("dW_norm", "median"),
        median_final_loss=("final_loss", "median")).reset_index()
    c.detail = ["Per task, g and schedule (functional rank 26 = above 25, defined for solving networks only):", ""] + \
        md_table(per, list(per.columns))
    return [c]
