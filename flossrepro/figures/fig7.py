"""Fig 7 (A-D): preflossing alone, for several numbers of flossed exponents k.

The runs of Fig 5 (``conf/experiment/fig5.yaml``, k sweep) plus the largest k from
``conf/experiment/fig4.yaml``, binary temporal XOR and spatial XOR (one row of panels per task):

- **A**: final test accuracy (last evaluation; diverged -> 0.5) vs delay, one colour per k,
  preflossing only: a dot per network and the median line; chance 0.5 dashed.
- **B**: the same vs k, one line per delay.
- **C**: heatmap of the median final accuracy over (delay, k), flossing during training.
- **D**: the same heatmap for preflossing only (same colour scale 0.5-1, annotated cells).

Claim 7CD is declared below (``RULES``); its statistic is ``stats_tasks.claim_pre_k_fails``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import stats_tasks as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.common_k import CHANCE_ACC, TASKS, vs_delay_k, vs_k, ylim_acc
from flossrepro.figures.data import fmt_setting, values
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, suptitle

EXPERIMENTS = ("fig5", "fig4")
STUDY = "flossing"
TITLE = "Fig 7: preflossing only vs flossing during training, number of flossed exponents k"
PANELS = {"A": "final test accuracy vs delay, one colour per k (preflossing only; a row per task)",
          "B": "final test accuracy vs k, one line per delay (preflossing only; a row per task)",
          "C": "heatmap of median final accuracy over (delay, k), flossing during training",
          "D": "heatmap of median final accuracy over (delay, k), preflossing only"}
METRICS = ("test_accuracy",)
VMIN, VMAX = 0.5, 1.0  # heatmap colour scale (chance to perfect)

RULES = (
    Rule("7CD", quote="even if all N Lyapunov exponents were flossed, thus k=N, they were not able to solve the most "
                      "difficult tasks",
         where="Sec 7.1 and Fig 7 caption (delayed temporal XOR)", paper="pre with k=N: not solved at the hardest d",
         claim="binary temporal XOR, the hardest delay and the largest k: preflossing alone fails (median final "
               "accuracy < 0.6) where flossing during training succeeds (median > 0.8)",
         stat=st.claim_pre_k_fails, select={"tasks": ("binary_xor",)}, op=">", threshold=0.8,
         params={"fail": 0.6}, evidence="spatial XOR is not in the sentence: preflossing solves it at d=70 at the "
         "paper's parameters (results/paper-d70, median 0.974; see 4D)", panel="C"),
)
CLAIMS = claim_texts(RULES)


def heatmap(ax, f: pd.DataFrame, ks: list, delays: list, title: str):
    """Median final accuracy over (delay rows, k columns), annotated; ``None`` when empty."""
    ax.set_title(title, loc="left")
    ax.grid(False)
    ks = sorted(set(ks) | set(values(f, "flossing.k")))
    delays = sorted(set(delays) | set(values(f, "task.delay")))
    if f.empty or not ks or not delays:
        empty_panel(ax, "no runs of this task and schedule in the tables")
        return None
    m = st.medians(f)
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
    ks, delays = st.planned_ks(metrics), st.planned_k_delays(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(len(TASKS), 4, (20, 4.2 * len(TASKS)))
        for i, (task, name) in enumerate(TASKS):
            pre, during = st.k_finals(metrics, task, "pre"), st.k_finals(metrics, task, "during")
            vs_delay_k(axes[i, 0], pre, ks, delays, f"A{i + 1}  {name}: preflossing only")
            vs_k(axes[i, 1], pre, ks, f"B{i + 1}  {name}: preflossing only")
            im = None
            for ax, f, letter, what in ((axes[i, 2], during, "C", "during training"),
                                        (axes[i, 3], pre, "D", "preflossing only")):
                im = heatmap(ax, f, ks, delays, f"{letter}{i + 1}  {name}: {what}") or im
            if im is not None:
                fig.colorbar(im, ax=axes[i, 2:4].tolist(), shrink=0.9, label="median final test accuracy")
        ylim_acc(axes[:, :2].flat, metrics)
        suptitle(fig, f"Fig 7: preflossing only vs flossing during training (chance {CHANCE_ACC:g})", metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim 7CD on the fig5 and fig4 tables (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
