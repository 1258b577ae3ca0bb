"""Fig 3 (A-D): preflossing lets networks learn longer delays on continuous tasks.

- **A/B**: test MSE vs training epochs at d=40 (or the nearest delay present) for the copy
  task and continuous temporal XOR, baseline (``none``) vs preflossing (``pre``): median,
  25-75% band and a thin line per realization; chance level dashed.
- **C/D**: final test MSE (last evaluation of each run) vs delay: a dot per realization and
  the median line; chance level dashed (copy: Var U(0,1) = 1/12; temporal XOR: 1/18).
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from .common_task import vs_delay, vs_epochs
from .data import values
from .plotting import STYLE, new_figure, suptitle

DELAY = 40
DELAYS = [10, 20, 30, 40, 50, 60]
TASKS = [("copy", "copy task"), ("temporal_xor", "continuous temporal XOR")]


def _schedules(df: pd.DataFrame) -> list[str]:
    extra = [s for s in values(df, "flossing.schedule") if s not in ("none", "pre")]
    return ["none", "pre"] + extra


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 3A-D from the fig3 table (see the module docstring)."""
    sched = _schedules(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(2, 2, (11, 8))
        for j, (task, name) in enumerate(TASKS):
            vs_epochs(axes[0, j], metrics, task, "test_loss", sched, DELAY, f"{'AB'[j]}  {name}", log_y=True)
            vs_delay(axes[1, j], metrics, task, "test_loss", sched, DELAYS, f"{'CD'[j]}  {name}: final test MSE",
                     log_y=True, fail_value=float("inf"))
        suptitle(fig, "Fig 3: preflossing and long delays (continuous tasks)", metrics)
    return fig
