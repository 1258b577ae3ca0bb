"""Low-rank study, N scaling (their supplement): ||dW||, ||W0||, ||dW|| / ||W0|| and the functional rank vs N.

- **A**: ``||dW||_F`` at the end vs N (log-log), one colour per g;
- **B**: ``||W0||_F`` vs N (grows as ``g sqrt(N)``);
- **C**: ``||dW||_F / ||W0||_F`` vs N;
- **D**: functional rank vs N.

Claim LR4, per g > 0: the log-log slope of the median ``||dW||`` against N is below 0.25 (half of
the sqrt(N) growth of ``||W0||``), the slope of ``||dW|| / ||W0||`` is below 0 (it falls toward
0), and the median functional rank at the largest N exceeds the one at the smallest N by at most 2.
Slopes are least-squares fits through the medians at each N, bootstrapped over networks within N.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures.claims import Claim, Group, N_BOOT, part_from_reps, rng_for
from flossrepro.figures.data import NET, values
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import diff_median_part, md_table, medians_by, table
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, palette, suptitle

EXPERIMENTS = ("lr_nscale",)
STUDY = "lowrank"
TITLE = "Low-rank study: N scaling of ||dW||, ||W0||, their ratio and the functional rank (flip-flop)"
PANELS = {"A": "||dW||_F vs N", "B": "||W0||_F vs N", "C": "||dW||_F / ||W0||_F vs N", "D": "functional rank vs N"}
METRICS = _METRICS
SLOPE_MAX = 0.25
RANK_GROWTH_MAX = 2.0

CLAIM_PANELS = {"LR4": "C"}  # the panel each claim is read from (report's figure map)
CLAIMS = {"LR4": f"||dW|| and the functional rank do not grow with N while ||W0|| grows as sqrt(N): per g > 0 the "
                 f"log-log slope of ||dW|| vs N is < {SLOPE_MAX}, that of ||dW|| / ||W0|| is < 0, and the median "
                 f"functional rank grows by <= {RANK_GROWTH_MAX:g} from the smallest to the largest N"}


def plot(metrics: pd.DataFrame) -> Figure:
    t = table(metrics) if not metrics.empty else pd.DataFrame()
    with rc_context(STYLE):
        fig, axes = new_figure(1, 4, (16, 4))
        spec = [("dW_norm", "||dW||_F", True), ("W0_norm", "||W0||_F", True), ("dW_rel_norm", "||dW|| / ||W0||", True),
                ("rank", "functional rank", False)]
        gs = values(t, "init.g") if len(t) else []
        cols = dict(zip(gs, palette(len(gs), "viridis")))
        for ax, (col, lab, logy), letter in zip(axes[0], spec, "ABCD"):
            ax.set_title(f"{letter}  {lab}", loc="left")
            ax.set_xlabel("N")
            ax.set_ylabel(lab)
            if t.empty:
                empty_panel(ax, "no table")
                continue
            for gv in gs:
                m = medians_by(t[t["init.g"] == gv], "", col, "arch.n_hidden")
                m = m[m["median"] > 0] if logy else m
                if m.empty:
                    continue
                ax.plot(m["arch.n_hidden"], m["median"], "o-", color=cols[gv], ms=3, label=f"g={gv:g}")
                ax.fill_between(m["arch.n_hidden"], m["q25"], m["q75"], color=cols[gv], alpha=0.2, lw=0)
            ax.set_xscale("log", base=2)
            if logy:
                ax.set_yscale("log")
            ax.legend()
        suptitle(fig, TITLE, metrics, extra="no-k")
    return fig


def _slope_part(label: str, t: pd.DataFrame, col: str, op: str, threshold: float, rng) -> object:
    """Slope of log(median col) vs log N, bootstrapped over networks within each N."""
    ns = values(t, "arch.n_hidden")
    xs, meds, reps, nets = [], [], [], set()
    for n in ns:
        v = t[(t["arch.n_hidden"] == n) & (t[col] > 0)]
        x = v[col].to_numpy(float)
        if len(x) == 0:
            continue
        xs.append(np.log(n))
        meds.append(np.log(np.median(x)))
        idx = rng.integers(0, len(x), (N_BOOT, len(x)))
        reps.append(np.log(np.median(x[idx], axis=1)))
        nets |= set(map(tuple, v[NET].to_numpy()))
    if len(xs) < 2:
        return part_from_reps(label, np.nan, np.array([np.nan]), op, threshold, nets)
    X = np.asarray(xs)
    slope = float(np.polyfit(X, np.asarray(meds), 1)[0])
    R = np.stack(reps, 1)  # [N_BOOT, nN]
    Xc = X - X.mean()
    srep = (R - R.mean(1, keepdims=True)) @ Xc / (Xc @ Xc)
    return part_from_reps(label, slope, srep, op, threshold, nets)


def claims(metrics: pd.DataFrame) -> list[Claim]:
    c, rng = Claim("LR4", CLAIMS["LR4"]), rng_for("LR4")
    if metrics.empty:
        c.missing = "no table"
        return [c]
    t = table(metrics)
    ns = values(t, "arch.n_hidden")
    for gv in [g for g in values(t, "init.g") if g > 0]:
        s = t[t["init.g"] == gv]
        lo, hi = s[s["arch.n_hidden"] == min(ns)], s[s["arch.n_hidden"] == max(ns)]
        c.groups.append(Group(f"g={gv:g}", [
            _slope_part("slope log||dW|| vs log N", s, "dW_norm", "<", SLOPE_MAX, rng),
            _slope_part("slope log(||dW||/||W0||) vs log N", s, "dW_rel_norm", "<", 0.0, rng),
            diff_median_part(f"median rank(N={max(ns)}) - rank(N={min(ns)})", lo, hi, "rank", "<=", RANK_GROWTH_MAX,
                             rng)]))
    per = t.groupby(["init.g", "arch.n_hidden"]).agg(networks=("dW_norm", "size"), median_dW_norm=("dW_norm", "median"),
                                                     median_W0_norm=("W0_norm", "median"),
                                                     median_rel=("dW_rel_norm", "median"),
                                                     median_rank=("rank", "median"),
                                                     never_converged=("conv_censored", "sum")).reset_index()
    c.detail = ["Medians per g and N (functional rank 26 = above 25):", ""] + md_table(per, list(per.columns))
    return [c]
