"""Low-rank study, against g (their Fig 2): convergence time, ||dW||, loss after shuffle, functional rank, lambda_1.

- **A**: convergence time (first epoch with training loss < 5% of the loss at epoch 0) vs g;
- **B**: ``||dW||_F`` at the end vs g;
- **C**: loss after shuffling the entries of W0 (dW, W_in, W_out kept) relative to L0 vs g;
- **D**: functional rank vs g;
- **E**: lambda_1 of the initial network vs g (the transition to chaos where it crosses 0).

Mean +- std over networks per task (the authors' aggregation); a g where not every network
converged is left out (the title names it); crosses are the authors' values read off their
figures (N = 256). Claims LR2 and LR3 are declared below (``RULES``, statistics in ``lr_stats``).
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import lr_stats as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import (AUTHORS_CONV, AUTHORS_CONV_MIN, AUTHORS_RANK, TASK_COLOR, TASK_LABEL,
                                               TASKS, draw_mean_std, left_out_text, mean_std, table, task_rows)
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, suptitle

EXPERIMENTS = ("lr_flipflop", "lr_mante", "lr_romo")
STUDY = "lowrank"
TITLE = "Low-rank study: convergence time, ||dW||, loss after shuffle and functional rank vs g"
PANELS = {"A": "convergence time vs g", "B": "norm(dW) vs g", "C": "loss after shuffling W0 / L0 vs g",
          "D": "functional rank vs g", "E": "lambda_1 at initialisation vs g"}
METRICS = _METRICS
SHUFFLE_HIGH = 0.5    # halfway between a solution that survives the shuffle (0) and one destroyed by it (1 = L0)
WINDOW = 0.6          # two steps of the authors' g grid (0.3)

RULES = (
    Rule("LR2", quote="Strength of random initial connectivity (g) affects learning dynamics (convergence time first "
                      "decreases with g and then increases again as networks transition to chaotic activity)",
         where="NeurIPS 2020 reviews (R4 summary); the authors' figures_nonlinear (convergence time vs g)",
         paper="convergence time is U-shaped in g: it falls from g = 0 to an interior minimum and rises again toward "
               "the largest g; the minimum's position depends on the task",
         authors="flip-flop ~45 epochs at g=0.9-1.2, ~185 at g=1.8; Mante ~40 at g=1.2, ~550 at g=2.4; Romo ~320 at "
                 "g=0.9, minimum ~60 near g=2.1, ~85 at g=3 (N=256)",
         claim="per task: some interior g (every network converged there) has a lower median convergence time than "
               "both g = 0 and the largest g (a network that never converged counts as the run's epochs, a lower "
               f"bound); a grid without an interior g within {WINDOW:g} of the authors' minimum (flip-flop ~1, Mante "
               "~1.2, Romo ~2.1) cannot show their U and is not judged",
         stat=st.claim_u_shape, op=">", threshold=0.0, params={"authors_min": AUTHORS_CONV_MIN, "window": WINDOW},
         panel="A"),
    Rule("LR3", quote="They present evidence that the learned low-rank structure of the recurrent connectivity is "
                      "correlated with the initial random connectivity",
         where="NeurIPS 2020 reviews (R3); the authors' figures_nonlinear (loss after shuffling W0)",
         paper="the loss after shuffling W0 is high: the learned structure is tied to the random W0",
         authors="shuffle loss ~ L0 for g >= 0.6 on all three tasks",
         claim=f"on every task and at every g >= 0.6 where every network converged: the median loss after shuffling "
               f"W0 is above {SHUFFLE_HIGH} L0 (halfway between a structure that survives the shuffle, 0, and the "
               "authors' ~L0)",
         stat=st.claim_shuffle_high, op=">", threshold=SHUFFLE_HIGH, params={"g_from": 0.6}, panel="C"),
)
CLAIMS = claim_texts(RULES)
CLAIM_PANELS = {r.id: r.panel for r in RULES}  # the panel each claim is read from (report's figure map)

SPEC = [("conv", "convergence epoch", AUTHORS_CONV, True), ("dW_norm", "||dW||_F", None, False),
        ("shuffle_rel", "loss after shuffle / L0", None, False), ("rank", "functional rank", AUTHORS_RANK, False),
        ("lambda1_init", "lambda_1 at init (per step)", None, False)]


def plot(metrics: pd.DataFrame) -> Figure:
    tabs = {task: table(d) for task in TASKS if not (d := task_rows(metrics, task)).empty}
    with rc_context(STYLE):
        fig, axes = new_figure(1, 5, (21, 4.6))
        left: dict = {}
        for ax, (col, lab, ref, log), letter in zip(axes[0], SPEC, "ABCDE"):
            ax.set_title(f"{letter}  {lab}", loc="left")
            ax.set_xlabel("g")
            ax.set_ylabel(lab)
            if not tabs:
                empty_panel(ax, "no table")
                continue
            for task, t in tabs.items():
                # lambda_1 at init does not depend on training: every g is drawn
                m, lost = mean_std(t, col, "init.g", all_converged=col != "lambda1_init")
                left[TASK_LABEL[task]] = lost if col != "lambda1_init" else left.get(TASK_LABEL[task], [])
                draw_mean_std(ax, m, "init.g", TASK_COLOR[task], TASK_LABEL[task], log=log)
                if ref:
                    ax.plot(list(ref[task]), list(ref[task].values()), "x", color=TASK_COLOR[task], ms=7, mew=2)
            if ref:
                ax.plot([], [], "x", color="black", ms=7, mew=2, label="authors (N=256, read off)")
            if log:
                ax.set_yscale("log")
            if col == "lambda1_init":
                ax.axhline(0, color="black", lw=0.8)
            if col == "shuffle_rel":
                ax.axhline(1, color="black", ls="--", lw=0.8)
                ax.axhline(SHUFFLE_HIGH, color="grey", ls=":", lw=0.8)
            ax.legend(loc="lower right" if col in ("shuffle_rel", "lambda1_init") else "upper left", fontsize=6.5)
        lost = left_out_text(left)
        suptitle(fig, TITLE + "\nmean +- std over networks; A-D " + (lost or "every g: all networks converged")
                 + "; E: every g", metrics, extra="no-k")
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claims LR2 and LR3 (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
