"""Fig 5 (A-B): how many Lyapunov exponents must be flossed during training.

Flossing during training (episodes at 0,100,...,400) with k flossed exponents, binary temporal
XOR and spatial XOR (one row of panels per task). The k sweep is ``conf/experiment/fig5.yaml``;
the largest k (k=75 at paper and small scale) comes from the ``during`` runs of
``conf/experiment/fig4.yaml`` (the same settings), so both tables are read. Only
``flossing.schedule == "during"`` rows are used here (Fig 7 shows the ``pre`` runs).

- **A**: final test accuracy (last evaluation of each network; diverged -> 0.5) vs delay, one
  colour per k: a dot per network and the median line; chance 0.5 dashed.
- **B**: the same numbers vs k (log axis), one line (median) per delay.

Claim 5AB is declared below (``RULES``); its statistic is ``stats_tasks.claim_k_trend``.
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import stats_tasks as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.common_k import TASKS, vs_delay_k, vs_k, ylim_acc
from flossrepro.figures.plotting import STYLE, new_figure, suptitle

EXPERIMENTS = ("fig5", "fig4")
STUDY = "flossing"
TITLE = "Fig 5: number of flossed exponents k, flossing during training (binary temporal XOR, spatial XOR)"
PANELS = {"A": "final test accuracy vs delay, one colour per k (flossing during training; a row per task)",
          "B": "final test accuracy vs k, one line per delay (flossing during training; a row per task)"}
METRICS = ("test_accuracy",)
SCHEDULE = "during"

RULES = (
    Rule("5AB", quote="we observed that more Lyapunov exponent k have to be flossed to achieve 100% accuracy as the "
                      "tasks become more difficult ... tasks with larger delay d require more Lyapunov exponents "
                      "close to zero",
         where="Sec 7, Fig 5", paper="longer delays need more k (trend over k = 1..75)",
         claim="the largest delay solved (median final accuracy > 0.8) rises with k across the whole k grid: "
               "Kendall tau of solved(k) vs k > 0, for both tasks",
         stat=st.claim_k_trend, select={"tasks": ("binary_xor", "spatial_xor"), "schedule": SCHEDULE},
         op=">", threshold=0.0, params={"solved": 0.8}, panel="A"),
)
CLAIMS = claim_texts(RULES)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 5A-B from the fig5 and fig4 tables (see the module docstring)."""
    ks, delays = st.planned_ks(metrics), st.planned_k_delays(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(len(TASKS), 2, (11, 4 * len(TASKS)))
        for i, (task, name) in enumerate(TASKS):
            f = st.k_finals(metrics, task, SCHEDULE)
            vs_delay_k(axes[i, 0], f, ks, delays, f"A{i + 1}  {name}: final accuracy vs delay")
            vs_k(axes[i, 1], f, ks, f"B{i + 1}  {name}: final accuracy vs k")
        ylim_acc(axes.flat, metrics)
        suptitle(fig, "Fig 5: flossing during training with k flossed exponents", metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim 5AB on the fig5 and fig4 tables (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
