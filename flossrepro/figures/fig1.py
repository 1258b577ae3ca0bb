"""Fig 1 (B-D): flossing alone drives the Lyapunov exponents of random tanh networks to a target.

- **B**: lambda_1 (estimated on each flossing step, ``floss_lambda_1``) vs flossing epochs for
  every target of the sweep, k=1: median over networks, 25-75% band, dashed target lines.
- **C**: flossing loss (``floss_loss``) vs flossing epochs for every k at target 0, log y:
  median and 25-75% band.
- **D**: the spectrum after flossing (``lyap_after_floss``, the last episode of each run) vs
  exponent index for every k at target 0: a dot per network, the median line, a dotted
  vertical marker at i=k, and the median spectrum before flossing in grey.

Claims 1B, 1B+, 1C, 1D are declared below (``RULES``, statistics in ``stats_spectra``). Targets and k come from the
table and from the sweep in ``conf/experiment/fig1.yaml`` (the planned values, to say what
was not run).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import stats_spectra as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.data import NET, last_epoch_rows, rows, values
from flossrepro.figures.plotting import (STYLE, empty_panel, jitter, median_band, new_figure, note, palette, suptitle)

EXPERIMENTS = ("fig1",)
STUDY = "flossing"
TITLE = "Fig 1: flossing drives Lyapunov exponents to a target"
PANELS = {"B": "lambda_1 during flossing toward each target (k=1)",
          "C": "flossing loss vs flossing epochs, each k (target 0)",
          "D": "Lyapunov spectrum after flossing k exponents (target 0)"}
METRICS = ("floss_lambda_1@5", "floss_loss@5", "lyap_before_floss", "lyap_after_floss")  # @5: epochs 0, 4, 5, 9, ..., 499 (smoke: 0, 4)

RULES = (
    Rule("1B", quote="During gradient flossing, they quickly approached three different target values of the first "
                     "Lyapunov exponents lambda_1^target = {-1, -0.5, 0} within less than 100 training epochs",
         where="Sec 4, Fig 1B", paper="each target within < 100 epochs",
         claim="lambda_1 (k=1) reaches each non-positive target: median first flossing epoch within two of the "
               "estimate's own spreads (std over the last quarter of flossing, at least 0.005) < 100, and median "
               "final error < 2 x that spread",
         stat=st.claim_reach, select={"k": 1}, op="<", threshold=100, params={"late": 0.25, "within": 2.0, "floor": 0.005},
         panel="B"),
    Rule("1B+", quote="gradient flossing with positive target lambda_1^target seems not to arrive at a positive "
                      "Lyapunov exponent lambda_1", where="Sec 4, Fig 1B", paper="no positive lambda_1 reached",
         claim="flossing toward a positive target (+0.5, k=1) ends with a non-positive lambda_1: median lambda_1 after "
               "flossing < 0.01",
         stat=st.claim_not_positive, select={"k": 1}, op="<", threshold=0.01, panel="B"),
    Rule("1C", quote="C) Gradient flossing minimizes the square of Lyapunov exponents over epochs", where="Fig 1C caption",
         paper="the loss falls toward 0",
         claim="the flossing loss falls: median final < 10% of median initial, for each k (target 0)",
         stat=st.claim_loss_falls, select={"target": 0.0}, op="<", threshold=0.1, panel="C"),
    Rule("1D", quote="Fig 1D shows the Lyapunov spectrum after flossing, which now has 1, 16, or 32 Lyapunov exponents "
                     "close to zero", where="Sec 4, Fig 1D", paper="first k of the spectrum at 0 (k = 1, 16, 32 = N)",
         claim="after flossing k exponents (every k of the sweep, k = N included), the first k sit near 0 (median "
               "abs(lambda_i) < 0.1 for i <= k) and, for k < N, lambda_(k+1) is clearly below (gap > 0.1); a k not yet "
               "near 0 whose flossing loss still falls > 20% over the last fifth of the epochs is not judged",
         stat=st.claim_first_k, select={"target": 0.0}, op="<", threshold=0.1, params={"gap": 0.1, "level": 0.2}, panel="D"),
)
CLAIMS = claim_texts(RULES)


def _k1(df: pd.DataFrame) -> tuple[int | None, str]:
    ks = values(df, "flossing.k")
    if not ks:
        return None, "no flossing.k column"
    if 1 in ks:
        return 1, ""
    return ks[0], f"k=1 not run; showing k={ks[0]}"


def _target0(df: pd.DataFrame) -> tuple[float | None, str]:
    ts = values(df, "flossing.target")
    if not ts:
        return None, ""
    if any(np.isclose(t, 0.0) for t in ts):
        return 0.0, ""
    t = min(ts, key=abs)
    return float(t), f"target 0 not run; showing target {t:g}"


def panel_b(ax, df: pd.DataFrame) -> None:
    ax.set_title("B  $\\lambda_1$ during flossing toward a target (k=1)", loc="left")
    ax.set_xlabel("flossing epochs")
    ax.set_ylabel("$\\lambda_1$ (1/step)")
    k, msg = _k1(df)
    sub = rows(df, "floss_lambda_1", flossing__k=k)
    if sub.empty:
        empty_panel(ax, "no floss_lambda_1 rows in the table")
        return
    targets = st.targets(df)
    cols = dict(zip(targets, palette(len(targets), "tab10")))
    missing = []
    for t in sorted(targets, key=lambda t: (t <= 0, t)):   # positive targets first, under the others
        d = rows(sub, flossing__target=float(t))
        if d.empty:
            missing.append(f"{t:g}")
            continue
        median_band(ax, d, cols[t], f"target {t:g}" + (" (not reached)" if t > 0 else ""))
        if t > 0:
            ax.get_lines()[-1].set_linestyle((0, (4, 2)))      # dashed: the target-0 line stays visible
        ax.axhline(t, color=cols[t], ls="--", lw=1)
    ax.legend(loc="best")
    missing = sorted(missing, key=float)
    msgs = [m for m in [msg, ("targets not run: " + ", ".join(missing)) if missing else ""] if m]
    note(ax, "\n".join(msgs), "lower right")


def panel_c(ax, df: pd.DataFrame) -> None:
    ax.set_title("C  flossing loss (target 0)", loc="left")
    ax.set_xlabel("flossing epochs")
    ax.set_ylabel("flossing loss (1/step$^2$)")
    ax.set_yscale("log")
    t, msg = _target0(df)
    sub = rows(df, "floss_loss", flossing__target=t)
    if sub.empty:
        empty_panel(ax, "no floss_loss rows in the table")
        return
    sub = sub.assign(value=sub["value"].clip(lower=1e-12))
    ks = values(sub, "flossing.k")
    for k, c in zip(ks, palette(len(ks))):
        median_band(ax, rows(sub, flossing__k=k), c, f"k={k}")
    ax.legend(loc="best")
    note(ax, msg)


def panel_d(ax, df: pd.DataFrame) -> None:
    ax.set_title("D  spectrum after flossing k exponents (target 0)", loc="left")
    ax.set_xlabel("exponent index i")
    ax.set_ylabel("$\\lambda_i$ (1/step)")
    t, msg = _target0(df)
    after = rows(df, "lyap_after_floss", flossing__target=t)
    if after.empty:
        empty_panel(ax, "no lyap_after_floss rows in the table")
        return
    before = last_epoch_rows(rows(df, "lyap_before_floss", flossing__target=t))
    if not before.empty:
        # the initial spectrum (the same networks for every k): median over all networks
        first = before.groupby("run_id")["epoch"].transform("min")
        b = before[before["epoch"] == first].groupby("index")["value"].median()
        ax.plot(b.index.astype(int), b.values, color="#999999", ls="--", lw=1.2, label="before flossing (median)")
    ks = values(after, "flossing.k")
    for j, (k, c) in enumerate(zip(ks, palette(len(ks)))):
        d = last_epoch_rows(rows(after, flossing__k=k))
        x = d["index"].astype(int).to_numpy() + jitter(len(d), 0.15, seed=j)
        ax.scatter(x, d["value"], s=6, color=c, alpha=0.45, lw=0)
        m = d.groupby("index")["value"].median()
        n = d.groupby(NET).ngroups
        ax.plot(m.index.astype(int), m.values, color=c, lw=1.6, label=f"k={k} (n={n})")
        ax.axvline(k, color=c, ls=":", lw=1.2)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.plot([], [], color="black", ls=":", lw=1.2, label="i = k (dotted, colour of k)")
    ax.legend(loc="lower left")
    note(ax, msg, "upper right")


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 1B-D from the fig1 table (see the module docstring)."""
    with rc_context(STYLE):
        fig, axes = new_figure(1, 3, (14, 4.6))
        panel_b(axes[0, 0], metrics)
        panel_c(axes[0, 1], metrics)
        panel_d(axes[0, 2], metrics)
        suptitle(fig, "Fig 1: gradient flossing of random tanh networks (no task training)", metrics, "no-k",
                 trained=False)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claims 1B, 1B+, 1C, 1D on the fig1 table (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
