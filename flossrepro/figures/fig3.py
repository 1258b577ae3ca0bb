"""Fig 3 (A-D): preflossing lets networks learn longer delays on continuous tasks.

- **A/B**: test MSE vs training epochs at d=40 (or the nearest delay present) for the copy
  task and continuous temporal XOR, baseline (``none``) vs preflossing (``pre``): median,
  25-75% band and a thin line per realization; chance level dashed.
- **C/D**: final test MSE (last evaluation of each run) vs delay: a dot per realization and
  the median line; chance level dashed (copy: Var U(0,1) = 1/12; temporal XOR: 1/18).

Claims 3C and 3D are defined below with their thresholds; delays come from the table and the
sweep in ``conf/experiment/fig3.yaml``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import CHANCE
from flossrepro.figures.claims import Claim, Group, g, median_reps, part_from_reps, rng_for
from flossrepro.figures.common_task import (conditions, delays_text, finals, leaves_chance, median_part, median_table, planned_delays, vs_delay, vs_epochs)
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
FAIL_3 = 0.5           # copy baseline fails: median final MSE >= FAIL_3 * chance
SOLVE_3 = 0.2          # copy preflossed solves: median final MSE < SOLVE_3 * chance
LEAVE_3 = 0.5          # leaves chance (continuous): median final MSE < LEAVE_3 * chance

CLAIMS = {
    "3C": f"copy: at some delay the baseline fails (median final MSE >= {FAIL_3} x chance 1/12) while "
          f"preflossed networks solve it (< {SOLVE_3} x chance)",
    "3D": f"continuous temporal XOR: preflossing trains at a longer delay than the baseline (largest delay "
          f"with median final MSE < {LEAVE_3} x chance 1/18)",
}


def _schedules(df: pd.DataFrame) -> list[str]:
    extra = [s for s in values(df, "flossing.schedule") if s not in ("none", "pre")]
    return ["none", "pre"] + extra


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 3A-D from the fig3 table (see the module docstring)."""
    sched = _schedules(metrics)
    delays = planned_delays(EXPERIMENTS[0], metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(2, 2, (11, 8))
        for j, (task, name) in enumerate(TASKS):
            vs_epochs(axes[0, j], metrics, task, "test_loss", sched, DELAY, f"{'AB'[j]}  {name}", log_y=True)
            vs_delay(axes[1, j], metrics, task, "test_loss", sched, delays, f"{'CD'[j]}  {name}: final test MSE",
                     log_y=True, fail_value=float("inf"))
        suptitle(fig, "Fig 3: preflossing and long delays (continuous tasks)", metrics)
    return fig


# ----------------------------------------------------------------------------- claims
def _lacking(f: pd.DataFrame, task: str, need: list[str]) -> str:
    have = values(f, "flossing.schedule")
    lack = [s for s in need if s not in have]
    return f"{task}: condition(s) {', '.join(lack)} not in the table" if lack else ""


def _claim_3c(df: pd.DataFrame) -> Claim:
    c, rng, chance = Claim("3C", CLAIMS["3C"], over="any"), rng_for("3C"), CHANCE["copy"]
    f = finals(df, "test_loss", "copy", np.inf)
    c.missing = _lacking(f, "copy", ["none", "pre"])
    if c.missing:
        return c
    both = conditions(f, ["none", "pre"])
    for d in both:
        c.groups.append(Group(f"d={d:g}", [
            median_part("none median final MSE", f, "none", d, ">=", FAIL_3 * chance, rng),
            median_part("pre median final MSE", f, "pre", d, "<", SOLVE_3 * chance, rng)]))
    lost = [d for d in planned_delays(EXPERIMENTS[0], df) if d not in both]
    if lost:
        c.missing = f"{delays_text(lost)} not run with both conditions"
    c.detail = ["Median final test MSE (copy; chance 1/12 = 0.0833), networks in brackets:", ""] + median_table(f) + [
        "", f"Leaves chance (median MSE < {LEAVE_3} x 1/12): {leaves_chance(f, '<', LEAVE_3 * chance)}."]
    return c


def _claim_3d(df: pd.DataFrame) -> Claim:
    c, rng, chance = Claim("3D", CLAIMS["3D"]), rng_for("3D"), CHANCE["temporal_xor"]
    f = finals(df, "test_loss", "temporal_xor", np.inf)
    c.missing = _lacking(f, "temporal_xor", ["none", "pre"])
    if c.missing:
        return c
    largest, reps, nets = {}, {}, []
    for s in ("none", "pre"):
        ds = values(f[f["flossing.schedule"] == s], "task.delay")
        meds, mreps = [], []
        for d in ds:
            x = f.loc[(f["flossing.schedule"] == s) & (f["task.delay"] == d)]
            nets += list(zip(x["run_id"], x["member"]))
            m, r = median_reps(x["value"].to_numpy(float), rng)
            meds.append(m)
            mreps.append(r)
        D = np.asarray(ds, float)
        trained = np.asarray(meds) < LEAVE_3 * chance
        largest[s] = float(np.max(np.where(trained, D, 0.0)))            # 0: no delay trained
        reps[s] = np.max(np.where(np.stack(mreps, 1) < LEAVE_3 * chance, D, 0.0), axis=1)
    diff = part_from_reps("largest delay trained, pre minus none", largest["pre"] - largest["none"],
                          reps["pre"] - reps["none"], ">", 0.0, nets)
    label = ", ".join(f"{s} d={g(largest[s])}" if largest[s] else f"{s} no delay" for s in ("none", "pre"))
    c.groups.append(Group(label, [diff]))
    c.detail = ["Median final test MSE (continuous temporal XOR; chance 1/18 = 0.0556), networks in brackets:", ""
                ] + median_table(f) + ["", f"Largest delay with median MSE < {LEAVE_3} x 1/18: {label}."]
    return c


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claims 3C and 3D measured on the fig3 table."""
    return [_claim_3c(metrics), _claim_3d(metrics)]
