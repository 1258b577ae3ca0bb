"""Fig 14 (A-D): Fig 4 with orthogonal initialisation (W = g Q, g=1).

Drawn exactly like Fig 4 from ``conf/experiment/fig14.yaml``: baseline (``none``),
preflossing (``pre``) and flossing during training (``during``), binary temporal XOR and
spatial XOR.

- **A/B**: test accuracy vs training epochs at d=70 (or the largest delay present): median,
  25-75% band and a thin line per network; chance 0.5 dashed.
- **C/D**: final test accuracy (last evaluation; diverged -> 0.5) vs delay: a dot per network
  and the median line.

Claim 14CD is defined below.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from flossrepro.figures import fig4; from flossrepro.figures import planned
from flossrepro.figures.claims import Claim, Group, part_from_reps, replicates, rng_for, scale_of
from flossrepro.figures.common_task import delays_text, finals, median_table, planned_delays
from flossrepro.figures.data import network_values, values

EXPERIMENTS = ("fig14",)
STUDY = "flossing"
TITLE = "Fig 14: Fig 4 with orthogonal initialisation (binary temporal XOR, spatial XOR)"
PANELS = {"A": "binary temporal XOR: test accuracy vs training epochs at d=70 (orthogonal init)",
          "B": "spatial XOR: test accuracy vs training epochs at d=70 (orthogonal init)",
          "C": "binary temporal XOR: final test accuracy vs delay (orthogonal init)",
          "D": "spatial XOR: final test accuracy vs delay (orthogonal init)"}
METRICS = ("test_accuracy",)

TASKS, CONDS = fig4.TASKS, fig4.CONDS   # the panels and conditions are Fig 4's

CLAIMS = {
    "14CD": "with orthogonal init the ordering none < pre < during of mean final accuracy holds at long delays "
            "(networks of the sweep's two largest delays pooled), for both tasks",
}


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 14A-D from the fig14 table: Fig 4's panels (see the module docstring)."""
    return fig4.accuracy_panels(metrics, EXPERIMENTS[0], "Fig 14: Fig 4 with orthogonal initialisation")


# ----------------------------------------------------------------------------- claims
def _pooled(f: pd.DataFrame, schedule: str, delays: list) -> tuple[np.ndarray, list]:
    """Final values and networks of ``schedule`` pooled over ``delays``."""
    sub = f[(f["flossing.schedule"] == schedule) & f["task.delay"].isin(delays)]
    return network_values(sub)


def _claim_14(df: pd.DataFrame) -> Claim:
    cid = "14CD"
    c, rng = Claim(cid, CLAIMS[cid]), rng_for(cid)
    missing, detail = [], []
    scales = scale_of(df)
    swept = planned(EXPERIMENTS[0], "task", scales[0] if scales else None)   # small: spatial XOR only (SPEC)
    for task, name in [(t, n) for t, n in TASKS if not swept or t in swept]:
        f = finals(df, "test_accuracy", task, 0.5)
        plan = sorted(planned_delays(EXPERIMENTS[0], df) or values(f, "task.delay"))
        top = plan[-2:]
        detail += [f"**{name}** (median final test accuracy, networks in brackets; chance 0.5):", ""]
        detail += (median_table(f) or ["(no runs)"]) + [""]
        have = f.groupby("task.delay")["flossing.schedule"].agg(set) if not f.empty else pd.Series(dtype=object)
        lost = [d for d in top if d not in have.index or not set(CONDS) <= have[d]]
        if lost or len(top) < 2:
            missing.append(f"{task}: {delays_text(lost)} not run with all of {', '.join(CONDS)}" if lost else
                           f"{task}: fewer than two delays")
            continue
        mean, reps, nets = {}, {}, {}
        for s in CONDS:
            x, nets[s] = _pooled(f, s, top)
            mean[s], reps[s] = float(np.mean(x)), replicates(x, np.mean, rng)
        parts = [part_from_reps(f"mean {b} - mean {a}", mean[b] - mean[a], reps[b] - reps[a], ">", 0.0,
                                list(nets[a]) + list(nets[b]))
                 for a, b in (("none", "pre"), ("pre", "during"))]
        c.groups.append(Group(f"{name}, {delays_text(top)} pooled", parts))
        detail += [f"Mean final accuracy, {delays_text(top)} pooled: "
                   + ", ".join(f"{s} {mean[s]:.3f} (n={len(nets[s])})" for s in CONDS) + ".", ""]
    c.missing = "; ".join(missing)
    c.detail = ["Networks of the sweep's two largest delays pooled per condition; each condition resampled "
                "independently. Paper (Fig 14, spatial XOR): the same ordering as Fig 4, during > pre > none.",
                ""] + detail
    return c


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claim 14CD measured on the fig14 table."""
    return [_claim_14(metrics)]
