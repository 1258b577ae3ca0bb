"""Fig 4 (A-D): flossing during training solves long-delay binary tasks.

- **A/B**: test accuracy vs training epochs at d=70 (or the largest delay present) for binary
  temporal XOR and spatial XOR; baseline (``none``), preflossing (``pre``), flossing during
  training (``during``): median, 25-75% band and a thin line per realization; chance 0.5 dashed.
- **C/D**: final test accuracy (last evaluation of each run) vs delay: a dot per realization
  and the median line; chance 0.5 dashed.

Claims 4C and 4D are defined below with their thresholds; delays come from the table and the
sweep in ``conf/experiment/fig4.yaml``.
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULES
from flossrepro.figures.claims import Claim, Group, rng_for
from flossrepro.figures.common_task import (conditions, delays_text, diff_part, finals, leaves_chance, median_part, median_table, planned_delays, vs_delay, vs_epochs)
from flossrepro.figures.data import rows, values
from flossrepro.figures.plotting import STYLE, new_figure, suptitle

EXPERIMENTS = ("fig4",)
STUDY = "flossing"
TITLE = "Fig 4: flossing during training (binary temporal XOR, spatial XOR)"
PANELS = {"A": "binary temporal XOR: test accuracy vs training epochs at d=70",
          "B": "spatial XOR: test accuracy vs training epochs at d=70",
          "C": "binary temporal XOR: final test accuracy vs delay",
          "D": "spatial XOR: final test accuracy vs delay"}
METRICS = ("test_accuracy", "lyap_after_floss[1]")   # lambda_1 after each episode: the report checks each run's flossing episodes

DELAY = 70             # panels A/B show this delay (the paper's)
TASKS = [("binary_xor", "binary temporal XOR"), ("spatial_xor", "spatial XOR")]
CONDS = list(SCHEDULES[:3])  # none, pre, during
LEAVE_4 = 0.6          # leaves chance (binary): median final accuracy > LEAVE_4
SUCCEED_4 = 0.8        # succeeds (binary): median final accuracy > SUCCEED_4

CLAIMS = {
    "4C": f"binary temporal XOR at the largest delay (paper: d=70): flossing during training succeeds "
          f"(median > {SUCCEED_4}) and beats preflossing; the baseline stays at chance (median < {LEAVE_4}) "
          f"at every delay >= 40",
    "4D": f"spatial XOR: flossing during training succeeds (median > {SUCCEED_4}) at a delay where "
          f"preflossing fails (median < {LEAVE_4})",
}
BASELINE_FROM = 40     # the paper: baseline at chance for d >= 40


def _schedules(df: pd.DataFrame) -> list[str]:
    extra = [s for s in values(df, "flossing.schedule") if s not in CONDS]
    return CONDS + extra


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 4A-D from the fig4 table (see the module docstring)."""
    return accuracy_panels(metrics, EXPERIMENTS[0], "Fig 4: flossing during training and long delays (binary tasks)")


def accuracy_panels(metrics: pd.DataFrame, experiment: str, title: str) -> Figure:
    """Test accuracy vs epochs at d=70 and final accuracy vs the delays of ``experiment``, per
    task and schedule (Fig 4; Fig 14 draws the same panels)."""
    sched = _schedules(metrics)
    delays = planned_delays(experiment, metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(2, 2, (11, 8))
        for j, (task, name) in enumerate(TASKS):
            vs_epochs(axes[0, j], metrics, task, "test_accuracy", sched, DELAY, f"{'AB'[j]}  {name}", log_y=False)
            vs_delay(axes[1, j], metrics, task, "test_accuracy", sched, delays, f"{'CD'[j]}  {name}: final accuracy",
                     log_y=False, fail_value=0.5)
        acc = metrics.loc[metrics["metric"] == "test_accuracy", "value"]
        low = min(0.3, float(acc.min()) - 0.02) if acc.notna().any() else 0.3
        for ax in axes.flat:
            ax.set_ylim(low, 1.02)
        suptitle(fig, title, metrics)
    return fig


# ----------------------------------------------------------------------------- claims
def _claim_4c(df: pd.DataFrame) -> Claim:
    c, rng = Claim("4C", CLAIMS["4C"]), rng_for("4C")
    f = finals(df, "test_accuracy", "binary_xor", 0.5)
    full = conditions(f, CONDS)
    plan = sorted(planned_delays(EXPERIMENTS[0], df) or full)
    top = plan[-1] if plan else None
    if top in full:
        c.groups.append(Group(f"d={top:g}", [
            median_part("during median final accuracy", f, "during", top, ">", SUCCEED_4, rng),
            diff_part("median during - pre", f, "pre", "during", top, ">", 0.0, rng)]))
    base = [d for d in plan if d >= BASELINE_FROM]
    for d in base:
        if d in values(f, "task.delay") and "none" in values(rows(f, task__delay=d), "flossing.schedule"):
            c.groups.append(Group(f"baseline d={d:g}", [median_part("none median final accuracy", f, "none", d, "<",
                                                           LEAVE_4, rng)]))
    lost = [d for d in base if d not in full]
    if top is None or lost:
        c.missing = f"binary_xor: {delays_text(lost)} not run with all of {', '.join(CONDS)}" if lost else \
            "binary_xor: no delay in the table"
    c.detail = ["Median final test accuracy (binary temporal XOR; chance 0.5), networks in brackets. Paper: baseline "
                "at chance for d >= 40, pre improves but is at chance at d=70, during > 0.8 at d=70.", ""
                ] + median_table(f) + ["", f"Leaves chance (median > {LEAVE_4}): {leaves_chance(f, '>', LEAVE_4)}."]
    return c


def _claim_4d(df: pd.DataFrame) -> Claim:
    c, rng = Claim("4D", CLAIMS["4D"], over="any"), rng_for("4D")
    f = finals(df, "test_accuracy", "spatial_xor", 0.5)
    lack = [s for s in ("pre", "during") if s not in values(f, "flossing.schedule")]
    if lack:
        c.missing = f"spatial_xor: condition(s) {', '.join(lack)} not in the table"
        return c
    both = conditions(f, ["pre", "during"])
    for d in both:
        c.groups.append(Group(f"d={d:g}", [
            median_part("during median final accuracy", f, "during", d, ">", SUCCEED_4, rng),
            median_part("pre median final accuracy", f, "pre", d, "<", LEAVE_4, rng)]))
    lost = [d for d in planned_delays(EXPERIMENTS[0], df) if d not in both]
    if lost:
        c.missing = f"spatial_xor: {delays_text(lost)} not run with pre and during"
    c.detail = ["Median final test accuracy (spatial XOR; chance 0.5), networks in brackets. Paper: pre fails for "
                "d > 60, during succeeds.", ""] + median_table(f) + [
        "", f"Leaves chance (median > {LEAVE_4}): {leaves_chance(f, '>', LEAVE_4)}."]
    return c


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claims 4C and 4D measured on the fig4 table."""
    return [_claim_4c(metrics), _claim_4d(metrics)]
