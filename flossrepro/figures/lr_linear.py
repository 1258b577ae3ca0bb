"""Low-rank study, the linear theory against simulation (their Fig 4: linear rate network, input-driven fixed point).

With ``lr = lr0 (1 - g^2)^2`` (SGD, batch 1) the leading-order theory gives: convergence time in
learning time ``lr x epochs`` proportional to ``(1 - g^2)^2``; ``||dW||`` at the end proportional
to ``(1 - g^2)``; the mean gradient norm (over learning time up to convergence) proportional to
``1 / (1 - g^2)``; the loss after shuffling W0 ``= g^4 (2 - g^2)^2 L0``. As the authors do, the
first three are divided by their mean at g = 0 of the same zhat.

- **A**: convergence time / its value at g = 0, mean +- std per zhat, and ``(1 - g^2)^2``;
- **B**: ``||dW||_F`` / its value at g = 0, and ``1 - g^2``;
- **C**: mean gradient norm / its value at g = 0, and ``1 / (1 - g^2)`` (``grad_W_norm``; a table
  without it says so);
- **D**: loss after shuffle / L0, and ``g^4 (2 - g^2)^2``;
- **E**: the error each claim part tests: ``|simulation - theory|`` (medians) in units of the
  theory's maximum (L0 for the shuffle loss), with the tolerances dashed.

Claim LR5 is declared below (``RULES``, statistic in ``lr_stats``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import lr_stats as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.data import values
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import NOT_RECORDED, draw_mean_std
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, palette, suptitle
from flossrepro.store.resolvers import linear_lr

EXPERIMENTS = ("lr_linear",)
STUDY = "lowrank"
TITLE = "Low-rank study: linear networks, leading-order theory against simulation"
PANELS = {"A": "convergence time (lr x epochs, / g=0) vs g: simulation and (1 - g^2)^2",
          "B": "norm(dW) (/ g=0) vs g: simulation and (1 - g^2)",
          "C": "mean gradient norm (/ g=0) vs g: simulation and 1 / (1 - g^2)",
          "D": "loss after shuffle / L0 vs g: simulation and g^4 (2 - g^2)^2",
          "E": "error against the theory in units of its maximum (or of L0)"}
METRICS = _METRICS + ("grad_W_norm",)
ZHAT = "task.target_amp"
#: tolerances in units of each theory's maximum over the swept g (L0 for the shuffle loss), each
#: admitting the authors' own simulations (SPEC-lowrank, read +-10%): at g=0.9 their convergence time
#: is 0.013-0.017 against 0.036 (0.02 of its maximum 1 off) and ||dW|| 0.10-0.12 against 0.19 (0.09
#: off); their shuffle loss at g=0.5 is 0.24 L0 (zhat=0.5) to 0.55 L0 (zhat=2) against 0.19 L0 (up to
#: 0.36 L0 off). 0.15 admits the larger of the first two with the reading margin; 0.4 L0 admits their
#: zhat=2 shuffle loss. Their gradient norm at g=0.8 is ~3.2-3.5 against 2.78 (0.13 of the theory's
#: maximum, 5.26, off), so 0.15 applies to it too, up to g=0.8:
TOL = {"conv": 0.15, "dW_norm": 0.15, "grad": 0.15, "shuffle_rel": 0.4}
#: the largest g at which each quantity is judged: their gradient-norm panel ends at 6 and their g=0.9
#: points lie above it, off the figure (theory 5.26), so the figure shows no value to hold ours to there
#: (ours is printed beside it); the other quantities are judged at every g.
G_MAX = {"grad": 0.8}

RULES = (
    Rule("LR5", quote="By considering a linear network, the authors could derive an analytical expression for the "
                      "loss and singular values of the learned weights across training ... Numerics indeed seems to "
                      "validate the result",
         where="NeurIPS 2020 reviews (R3); the authors' figures_linear (learning time, norm(dW), gradient norm, shuffle "
               "loss vs g, zhat = 0.5, 1, 2)",
         paper="linear networks: convergence time ~ (1 - g^2)^2, norm(dW) ~ (1 - g^2), mean gradient norm ~ 1/(1 - g^2), "
               "loss after shuffle ~ g^4 (2 - g^2)^2 L0: a leading-order curve, not an equality",
         authors="at g=0.9 convergence time ~0.013-0.017 vs theory 0.036, norm(dW) ~0.10-0.12 vs 0.19; shuffle loss / L0 "
                 "at g=0.5 ~0.24 (zhat=0.5), ~0.55 (zhat=2) vs theory 0.19; mean gradient norm (/ g=0) ~3.2-3.5 at g=0.8 "
                 "vs theory 2.78, above 6 (off their axis) at g=0.9 vs 5.26",
         claim="at every zhat and g > 0, each quantity where it is O(1): abs(median simulation - theory) in units of the "
               f"theory's maximum over the swept g (convergence time, norm(dW), gradient norm: ratios to g = 0) or of L0 "
               f"(shuffle loss) is below {TOL['conv']:g} ({TOL['shuffle_rel']:g} L0 for the shuffle loss), tolerances "
               "that admit the authors' own simulations; the gradient norm up to g=0.8, the largest g at which their figure "
               "shows it",
         stat=st.claim_linear_theory, op="<", threshold=TOL["conv"],
         params={"tol": TOL, "lr_of": linear_lr, "g_max": G_MAX}, panel="E"),
)
CLAIMS = claim_texts(RULES)
CLAIM_PANELS = {r.id: r.panel for r in RULES}  # the panel each claim is read from (report's figure map)

SPEC = [("conv", "t_conv", "convergence time / g=0", "(1 - g^2)^2"), ("dW_norm", "dW_norm", "||dW||_F / g=0", "1 - g^2"),
        ("grad", "grad", "mean gradient norm / g=0", "1 / (1 - g^2)"),
        ("shuffle_rel", "shuffle_rel", "loss after shuffle / L0", "g^4 (2 - g^2)^2")]


def _table(metrics: pd.DataFrame) -> pd.DataFrame:
    return st.linear_table(metrics, linear_lr)


def _main_scale(metrics: pd.DataFrame) -> pd.DataFrame:
    """The sweep with the most g (a table may hold a small sweep and a few runs at another scale)."""
    if "scale.name" not in metrics:
        return metrics
    parts = [metrics[metrics["scale.name"] == s] for s in metrics["scale.name"].dropna().unique()]
    return max(parts, key=lambda m: m["init.g"].nunique())


def plot(metrics: pd.DataFrame) -> Figure:
    with rc_context(STYLE):
        fig, axes = new_figure(1, 5, (21, 4.4))
        if metrics.empty:
            for ax in axes[0]:
                empty_panel(ax, "no table")
            return fig
        m = _main_scale(metrics)
        t = _table(m)
        zs = values(t, ZHAT)
        cols = dict(zip(zs, palette(len(zs), "plasma")))
        grid = np.linspace(0, max(values(t, "init.g")), 100)
        for ax, (q, col, lab, th), letter in zip(axes[0], SPEC, "ABCD"):
            ax.set_title(f"{letter}  {lab}", loc="left")
            ax.set_xlabel("g")
            ax.set_ylabel(lab)
            if t[col].isna().all():
                empty_panel(ax, f"{st.LINEAR_NAMES[q]}: {NOT_RECORDED}")
                continue
            for z in zs:
                tz = t[t[ZHAT] == z]
                g0 = tz.loc[np.isclose(tz["init.g"], 0), col].mean()
                scale = 1.0 if q == "shuffle_rel" else g0
                s = tz.groupby("init.g")[col].agg(["mean", lambda x: x.std(ddof=0), "count"]).reset_index()
                s.columns = ["init.g", "mean", "std", "n"]
                s[["mean", "std"]] = s[["mean", "std"]] / scale
                draw_mean_std(ax, s, "init.g", cols[z], f"zhat={z:g}")
            ax.plot(grid, st.LINEAR_THEORY[q](grid), "--", color="black", lw=1, label=th)
            ax.legend(fontsize=6.5)
        ax = axes[0, 4]
        ax.set_title("E  |simulation - theory| / theory max (or L0)", loc="left")
        e = st.linear_errors(t)
        for q, mk in (("conv", "o"), ("dW_norm", "s"), ("grad", "D"), ("shuffle_rel", "^")):
            for z in zs:
                s = e[(e["quantity"] == q) & (e["zhat"] == z)] if len(e) else e
                if len(s):
                    ax.plot(s["g"], s["error"], mk + "-", color=cols[z], ms=3, lw=0.8,
                            label=f"{st.LINEAR_NAMES[q]}, zhat={z:g}")
        for y in sorted(set(TOL.values())):
            ax.axhline(y, color="black", ls="--", lw=0.8)
            ax.text(1.0, y, " tolerance: " + ", ".join(st.LINEAR_NAMES[k] for k, v in TOL.items() if v == y),
                    transform=ax.get_yaxis_transform(), fontsize=6, va="bottom", ha="right")
        ax.set_ylim(0, max(TOL.values()) * 1.15)
        ax.set_xlabel("g")
        ax.set_ylabel("error")
        ax.legend(fontsize=5.5, loc="center left")
        suptitle(fig, TITLE + "\nmean +- std over networks, divided by the mean at g = 0 (the authors' scaling)", m,
                 extra="no-k")
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim LR5 (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
