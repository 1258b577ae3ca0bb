"""Fig 4 (A-D): flossing during training solves long-delay binary tasks.

- **A/B**: test accuracy vs training epochs at d=70 (or the largest delay present) for binary
  temporal XOR and spatial XOR; baseline (``none``), preflossing (``pre``), flossing during
  training (``during``): median, 25-75% band and a thin line per realization; chance 0.5 dashed.
- **C/D**: final test accuracy (last evaluation of each run) vs delay: a dot per realization
  and the median line; chance 0.5 dashed.
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from .common_task import vs_delay, vs_epochs
from .data import values
from .plotting import STYLE, new_figure, suptitle

DELAY = 70
DELAYS = [10, 20, 30, 40, 50, 60, 70]
TASKS = [("binary_xor", "binary temporal XOR"), ("spatial_xor", "spatial XOR")]


def _schedules(df: pd.DataFrame) -> list[str]:
    extra = [s for s in values(df, "flossing.schedule") if s not in ("none", "pre", "during")]
    return ["none", "pre", "during"] + extra


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 4A-D from the fig4 table (see the module docstring)."""
    sched = _schedules(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(2, 2, (11, 8))
        for j, (task, name) in enumerate(TASKS):
            ax = axes[0, j]
            vs_epochs(ax, metrics, task, "test_accuracy", sched, DELAY, f"{'AB'[j]}  {name}", log_y=False)
            ax = axes[1, j]
            vs_delay(ax, metrics, task, "test_accuracy", sched, DELAYS, f"{'CD'[j]}  {name}: final accuracy",
                     log_y=False, fail_value=0.5)
        acc = metrics.loc[metrics["metric"] == "test_accuracy", "value"]
        low = min(0.3, float(acc.min()) - 0.02) if acc.notna().any() else 0.3
        for ax in axes.flat:
            ax.set_ylim(low, 1.02)
        suptitle(fig, "Fig 4: flossing during training and long delays (binary tasks)", metrics)
    return fig
