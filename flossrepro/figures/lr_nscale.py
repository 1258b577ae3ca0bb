"""Low-rank study, N scaling (their supplement): ||dW||, ||W0||, ||dW|| / ||W0|| and the functional rank vs N.

A row per task (flip-flop, Mante, Romo), one colour per g:

- **A**: ``||dW||_F`` at the end vs N (log-log);
- **B**: ``||W0||_F`` vs N (grows as ``g sqrt(N)``);
- **C**: ``||dW||_F / ||W0||_F`` vs N;
- **D**: functional rank vs N (black crosses: the authors' flip-flop values, read off their figure).

Mean +- std over networks; an N where not every network converged is left out (the panel says
so). Claim LR4 is declared below (``RULES``, statistic in ``lr_stats``): log-log slopes through
the medians at each N, bootstrapped over networks within N.
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import lr_stats as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.data import values
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import (AUTHORS_NSCALE_RANK, TASK_LABEL, TASKS, draw_mean_std, left_out_note,
                                               mean_std, table)
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, palette, suptitle

EXPERIMENTS = ("lr_nscale",)
STUDY = "lowrank"
TITLE = "Low-rank study: N scaling of ||dW||, ||W0||, their ratio and the functional rank"
PANELS = {"A": "norm(dW) vs N", "B": "norm(W0) vs N", "C": "norm(dW) / norm(W0) vs N", "D": "functional rank vs N"}
METRICS = _METRICS
SLOPE_MAX = 0.25      # half the sqrt(N) growth of ||W0||

RULES = (
    Rule("LR4", quote="The authors' supplement: the norm of dW does not grow with N while that of W0 grows as sqrt(N); "
                      "the minimal rank stays small",
         where="the authors' figures_supp_norm_scale_with_N (N = 64 ... 1024, g = 0, 0.9, 1.8)",
         paper="norm(dW) does not grow with N while norm(W0) grows as sqrt(N), so norm(dW) / norm(W0) -> 0; the functional "
               "rank stays small compared with N (flat for Mante and Romo)",
         authors="flip-flop functional rank at g=0: 2 for every N; g=0.9: ~4.6 (N=64) to ~6.2 (N=1024); g=1.8: ~6.4 "
                 "to ~9.8; Mante and Romo flat",
         claim=f"per task and g > 0, over the networks that converged: the log-log slope of norm(dW) against N is < "
               f"{SLOPE_MAX} (half the sqrt(N) growth of norm(W0)), that of norm(dW) / norm(W0) is < 0 (it falls toward 0) "
               "and that of functional rank / N is < 0 (the rank is small against N)",
         stat=st.claim_n_scaling, op="<", threshold=SLOPE_MAX, panel="C"),
)
CLAIMS = claim_texts(RULES)
CLAIM_PANELS = {r.id: r.panel for r in RULES}  # the panel each claim is read from (report's figure map)

SPEC = [("dW_norm", "||dW||_F", True), ("W0_norm", "||W0||_F", True), ("dW_rel_norm", "||dW|| / ||W0||", True),
        ("rank", "functional rank", False)]


def plot(metrics: pd.DataFrame) -> Figure:
    t = table(metrics) if not metrics.empty else pd.DataFrame()
    if len(t) and "task.name" not in t:
        t["task.name"] = "flipflop"
    gs = values(t, "init.g")
    cols = dict(zip(gs, palette(len(gs), "viridis")))
    with rc_context(STYLE):
        fig, axes = new_figure(len(TASKS), 4, (16, 3.6 * len(TASKS)))
        for i, task in enumerate(TASKS):
            tt = t[t["task.name"] == task] if len(t) else t
            for ax, (col, lab, logy), letter in zip(axes[i], SPEC, "ABCD"):
                ax.set_title(f"{letter}{i + 1}  {TASK_LABEL[task]}: {lab}", loc="left")
                ax.set_xlabel("N")
                ax.set_ylabel(lab)
                if tt.empty:
                    empty_panel(ax, f"{TASK_LABEL[task]}: not run (lr_nscale task={task})")
                    continue
                left = {}
                for gv in values(tt, "init.g"):
                    s = tt[tt["init.g"] == gv]
                    m, left[f"g={gv:g}"] = mean_std(s, col, "arch.n_hidden", all_converged=col != "W0_norm")
                    m = m[m["mean"] > 0] if logy else m
                    draw_mean_std(ax, m, "arch.n_hidden", cols[gv], f"g={gv:g}", log=logy)
                    if col == "rank" and task == "flipflop" and gv in AUTHORS_NSCALE_RANK:
                        ref = AUTHORS_NSCALE_RANK[gv]
                        ax.plot(list(ref), list(ref.values()), "x", color=cols[gv], ms=7, mew=2)
                if col == "rank" and task == "flipflop":
                    ax.plot([], [], "x", color="black", ms=7, mew=2, label="authors (read off)")
                ax.set_xscale("log", base=2)
                if logy:
                    ax.set_yscale("log")
                ax.legend(fontsize=6.5, loc="lower left" if col != "W0_norm" else "upper left")
                left_out_note(ax, left, what="N", loc="upper right")
        suptitle(fig, TITLE + "\nmean +- std over networks", metrics, extra="no-k")
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim LR4 (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
