"""Fig 3 (A-D): preflossing lets networks learn longer delays on continuous tasks.

- **A/B**: test MSE vs training epochs at d=40 (or the nearest delay present) for the copy
  task and continuous temporal XOR, baseline (``none``) vs preflossing (``pre``): median,
  25-75% band and a thin line per realization; chance level dashed.
- **C/D**: final test MSE (last evaluation of each run) vs delay: a dot per realization and
  the median line; chance level dashed (copy: Var U(0,1) = 1/12; temporal XOR: 1/18).

Claims 3C and 3D are declared below (``RULES``, statistics in ``stats_tasks``); delays come
from the table and the sweep in ``conf/experiment/fig3.yaml``.
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import CHANCE
from flossrepro.figures import stats_tasks as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.common_task import vs_delay, vs_epochs
from flossrepro.figures.data import values
from flossrepro.figures.plotting import STYLE, new_figure, suptitle

EXPERIMENTS = ("fig3",)
STUDY = "flossing"
TITLE = "Fig 3: preflossing and long delays (copy, continuous temporal XOR)"
PANELS = {"A": "copy task: test MSE vs training epochs at d=40",
          "B": "continuous temporal XOR: test MSE vs training epochs at d=40",
          "C": "copy task: final test MSE vs delay",
          "D": "continuous temporal XOR: final test MSE vs delay"}
METRICS = ("test_loss", "lyap_after_floss[1]")   # lambda_1 after each episode: the report checks each run's flossing episodes
DELAY = 40             # panels A/B show this delay (the paper's)
TASKS = [("copy", "copy task"), ("temporal_xor", "continuous temporal XOR")]

RULES = (
    Rule("3C", quote="While Vanilla RNNs without gradient flossing fail to train reliably beyond d=20, Vanilla RNNs "
                     "with gradient flossing can be reliably trained for d=40 (Fig 3C)",
         where="Sec 6, Fig 3C (caption: solid line shows mean)", paper="none fails beyond d=20; pre trains at d=40",
         claim="copy: at some delay the baseline fails (mean final MSE >= 0.5 x chance 1/12) while preflossed "
               "networks solve it (mean < 0.2 x chance)",
         stat=st.claim_fails_solves, select={"task": "copy", "fails": "none", "solves": "pre"}, op="<",
         threshold=0.2, over="any", params={"fail": 0.5, "stat": "mean", "experiment": "fig3"}, panel="C"),
    Rule("3D", quote="Fig 3D demonstrates that gradient flossing helps to train networks on a substantially longer "
                     "delay d", where="Sec 6, Fig 3D (caption: solid line shows mean)",
         paper="pre trains longer delays than none",
         claim="continuous temporal XOR: preflossing trains at a longer delay than the baseline (largest delay with "
               "mean final MSE < 0.5 x chance 1/18)",
         stat=st.claim_longer_delay, select={"task": "temporal_xor", "base": "none", "better": "pre"}, op=">",
         threshold=0.0, params={"leave": 0.5, "stat": "mean"}, panel="D"),
)
CLAIMS = claim_texts(RULES)


def _schedules(df: pd.DataFrame) -> list[str]:
    extra = [s for s in values(df, "flossing.schedule") if s not in ("none", "pre")]
    return ["none", "pre"] + extra


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 3A-D from the fig3 table (see the module docstring)."""
    sched = _schedules(metrics)
    delays = st.planned_delays(EXPERIMENTS[0], metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(2, 2, (11, 8))
        for j, (task, name) in enumerate(TASKS):
            vs_epochs(axes[0, j], metrics, task, "test_loss", sched, DELAY, f"{'AB'[j]}  {name}", log_y=True)
            vs_delay(axes[1, j], metrics, task, "test_loss", sched, delays, f"{'CD'[j]}  {name}: final test MSE",
                     log_y=True, fail_value=CHANCE[task], stat="mean", band=(0.2, 0.8))   # the caption: mean, 20-80%
        suptitle(fig, "Fig 3: preflossing and long delays (continuous tasks)", metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claims 3C and 3D on the fig3 table (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
