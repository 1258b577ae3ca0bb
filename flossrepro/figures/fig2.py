"""Fig 2 (A-C): flossing lowers the condition number of the long-term Jacobian.

Tables of ``job=condition`` runs (one per flossed k; the same networks in every run):
``log10_kappa_<phase>`` (float64 QR iteration) and ``log10_kappa_hp_<phase>`` (explicit
product and SVD at ``job.precision_bits``), ``epoch`` = horizon t (steps), ``index`` = size m of
the orthonormal system, value = log10 kappa_2(T_t Q_m); ``kappa_hp_limit`` the largest
log10 kappa that precision resolves; ``lyap_before_floss`` / ``lyap_after_floss`` the full
spectra. The LE theory (paper Eq 10) is ``log10 kappa = (lambda_1 - lambda_m) t / ln 10`` from
the same network's spectrum in the same phase.

- **A**: log10 kappa vs horizon t for m = ``job.m`` (15) in the k = 15 runs, before (blue) and
  after (orange) flossing: float64 simulation (a thin line per network), the high-precision
  product (crosses; hollow where the precision saturates) and the theory (dashed, median over
  networks).
- **B**: log10 kappa vs m at the longest horizon, same runs: dots per network (simulation),
  dashed median theory, dotted guide at kappa = 1e5.
- **C**: simulated vs LE-predicted log10 kappa for every measured (t, m), after flossing for
  each k (colour) and before flossing (grey), with the diagonal.

Claims 2A, 2A+, 2B, 2C are declared below (``RULES``, statistics in ``stats_spectra``).
"""
from __future__ import annotations


import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import stats_spectra as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules, g
from flossrepro.figures.data import NET, describe, fmt_setting, rows, values
from flossrepro.figures.stats_spectra import PHASES, curve, hp_limit, kappa_points, m_a
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, note, palette

EXPERIMENTS = ("fig2",)
STUDY = "flossing"
TITLE = "Fig 2: flossing lowers the condition number of the long-term Jacobian"
PANELS = {"A": "log10 kappa_2(T_t Q_m) vs horizon t (m=15), before/after flossing k=15: simulation and LE theory",
          "B": "log10 kappa_2 vs tangent dimensions m at the longest horizon, with the kappa=1e5 guide",
          "C": "simulated vs LE-predicted log10 kappa_2, colour = flossed k"}
METRICS = ("log10_kappa_before", "log10_kappa_after", "log10_kappa_hp_before", "log10_kappa_hp_after",
           "kappa_hp_limit", "lyap_before_floss", "lyap_after_floss")

COLOR = {"before": "#1f77b4", "after": "#ff7f0e"}
K_AB = 15             # 2A, 2B: the runs that floss the first 15 exponents
GUIDE = 5.0           # 2B: usable dimensions: log10 kappa <= 5 (kappa <= 1e5)

RULES = (
    Rule("2A", quote="Direct numerical simulations are done with arbitrary precision floating point arithmetic ... "
                     "asymptotic theory based on Lyapunov exponents (dashed lines) (Eq 10)",
         where="Sec 5, Fig 2A caption", paper="simulation follows exp((lambda_1 - lambda_m)(t - tau))",
         claim="the simulated log10 kappa_2(T_t Q_m) (m=15, t >= half the longest horizon) grows at the LE-predicted "
               "rate (lambda_1 - lambda_m)/ln 10: median abs difference of the slopes < 0.005 decades/step, before "
               "and after flossing k=15",
         stat=st.claim_kappa_rate, select={"k": K_AB}, op="<", threshold=0.005, params={"late": 0.5}, panel="A"),
    Rule("2A+", quote="We find that gradient flossing reduces the condition number by a factor whose magnitude "
                      "increases exponentially with time", where="Sec 5, Fig 2A",
         paper="the reduction grows exponentially with t",
         claim="flossing (k=15) lowers kappa by a factor that grows exponentially with t: the slope of "
               "log10 kappa_before - log10 kappa_after vs t is > 0 (median over networks)",
         stat=st.claim_kappa_reduction, select={"k": K_AB}, op=">", threshold=0.0, panel="A"),
    Rule("2B", quote="Gradient flossing increases the number of tangent space dimensions available for "
                     "backpropagation for a given condition number", where="Fig 2B caption",
         paper="more dimensions usable at kappa = 1e5",
         claim="flossing (k=15) raises the number of tangent dimensions usable at kappa = 1e5 (the largest m with "
               "kappa_2(T_t Q_m) <= 1e5 at the longest horizon): median gain > 0",
         stat=st.claim_usable_dims, select={"k": K_AB}, op=">", threshold=0.0, params={"guide": GUIDE}, panel="B"),
    Rule("2C", quote="Comparison of condition number obtained via direct numerical simulations vs. Lyapunov "
                     "exponent-based. Colors denote the number of flossed Lyapunov exponents k", where="Fig 2C caption",
         paper="points on the diagonal",
         claim="simulated vs LE-predicted log10 kappa lie on the diagonal: slope of simulated on predicted (points "
               "with kappa_LE >= 10) within 0.2 of 1 (median over networks), before flossing and after flossing each k",
         stat=st.claim_diagonal, select={"k": K_AB}, op="<", threshold=0.2, params={"min_pred": 1.0}, panel="C"),
)
CLAIMS = claim_texts(RULES)


# ----------------------------------------------------------------------------- tables
def _k_ab(df: pd.DataFrame) -> tuple[int | None, str]:
    ks = values(df, "flossing.k")
    if not ks:
        return None, "no flossing.k column"
    if K_AB in ks:
        return K_AB, ""
    k = min(ks, key=lambda x: abs(x - K_AB))
    return int(k), f"k={K_AB} not run; showing k={k}"


def panel_a(ax, df: pd.DataFrame) -> None:
    k, msg = _k_ab(df)
    ax.set_xlabel("horizon t - $\\tau$ (steps)")
    ax.set_ylabel("$\\log_{10} \\kappa_2(T_t Q_m)$")
    drawn, m = False, None
    limit = hp_limit(df)
    for phase in PHASES:
        pts = kappa_points(df, phase, k)
        if pts.empty:
            continue
        m = m_a(pts)
        cur = curve(pts, m)
        n = cur.groupby(NET).ngroups
        for j, (_, c) in enumerate(cur.groupby(NET)):
            ax.plot(c["t"], c["sim"], color=COLOR[phase], lw=0.8, alpha=0.45,
                    label=f"{phase} flossing: float64 (n={n})" if j == 0 else None)
        th = cur.groupby("t")["pred"].median()
        ax.plot(th.index, th.values, color=COLOR[phase], ls="--", lw=1.8, label=f"{phase}: LE theory (median)")
        hp = curve(kappa_points(df, phase, k, hp=True), m)
        if not hp.empty:
            ok = hp["sim"] <= limit
            ax.scatter(hp.loc[ok, "t"], hp.loc[ok, "sim"], marker="x", s=14, color=COLOR[phase], lw=0.8,
                       label=f"{phase}: 256-bit product" if phase == "before" else None)
            ax.scatter(hp.loc[~ok, "t"], hp.loc[~ok, "sim"], marker="o", s=14, facecolors="none",
                       edgecolors=COLOR[phase], lw=0.8, label="beyond the precision (floor)" if (~ok).any() else None)
        drawn = True
    ax.set_title(f"A  $\\kappa_2$ vs horizon (m={m}, k={k})", loc="left")
    if not drawn:
        empty_panel(ax, "no log10_kappa rows in the table")
        return
    ax.legend(loc="upper left")
    note(ax, msg, "lower right")


def panel_b(ax, df: pd.DataFrame) -> None:
    k, msg = _k_ab(df)
    ax.set_title(f"B  $\\kappa_2$ vs tangent dimensions (k={k})", loc="left")
    ax.set_xlabel("tangent space dimensions m")
    ax.set_ylabel("$\\log_{10} \\kappa_2(T_t Q_m)$")
    drawn = False
    for phase in PHASES:
        pts = kappa_points(df, phase, k)
        if pts.empty:
            continue
        t = int(pts["t"].max())
        d = pts[pts["t"] == t]
        n = d.groupby(NET).ngroups
        ax.scatter(d["m"], d["sim"], s=10, color=COLOR[phase], alpha=0.6, lw=0,
                   label=f"{phase} flossing: simulation, t={t} (n={n})")
        th = d.groupby("m")["pred"].median()
        ax.plot(th.index, th.values, color=COLOR[phase], ls="--", lw=1.6, label=f"{phase}: LE theory (median)")
        drawn = True
    if not drawn:
        empty_panel(ax, "no log10_kappa rows in the table")
        return
    ax.axhline(GUIDE, color="grey", ls=":", lw=1.2, label="$\\kappa_2 = 10^5$")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)   # log10 kappa spans 0 .. ~1000 at m = N
    ax.set_ylim(bottom=0.0)                  # kappa >= 1: no negative log10 kappa
    ax.legend(loc="upper left")
    note(ax, msg, "lower right")


def panel_c(ax, df: pd.DataFrame) -> None:
    ax.set_title("C  simulated vs LE-predicted $\\kappa_2$", loc="left")
    ax.set_xlabel("LE-predicted $\\log_{10} \\kappa_2$ (Eq 10)")
    ax.set_ylabel("simulated $\\log_{10} \\kappa_2$ (float64)")
    k0, _ = _k_ab(df)
    before = kappa_points(df, "before", k0)
    if not before.empty:
        ax.scatter(before["pred"], before["sim"], s=6, color="#999999", alpha=0.5, lw=0, label="before flossing")
    ks = values(df, "flossing.k")
    lim = []
    for k, c in zip(ks, palette(len(ks))):
        pts = kappa_points(df, "after", k)
        if pts.empty:
            continue
        ax.scatter(pts["pred"], pts["sim"], s=7, color=c, alpha=0.7, lw=0, label=f"after flossing k={k}")
        lim.append(pts[["pred", "sim"]].to_numpy(float))
    if before.empty and not lim:
        empty_panel(ax, "no log10_kappa rows in the table")
        return
    allv = np.concatenate(lim + ([before[["pred", "sim"]].to_numpy(float)] if not before.empty else []))
    allv = allv[np.isfinite(allv)]
    hi = float(allv.max())
    ax.plot([0.0, hi], [0.0, hi], color="black", lw=0.8, ls="--", label="diagonal")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0.0)                    # kappa >= 1: log10 kappa >= 0 on both axes
    ax.set_ylim(bottom=0.0)
    ax.legend(loc="upper left")


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 2A-C from the fig2 table (see the module docstring)."""
    with rc_context(STYLE):
        fig, axes = new_figure(1, 3, (15, 4.8))
        panel_a(axes[0, 0], metrics)
        panel_b(axes[0, 1], metrics)
        panel_c(axes[0, 2], metrics)
        d = describe(metrics)
        fl = rows(metrics, "kappa_hp_limit")
        fig.suptitle("Fig 2: condition number of the long-term Jacobian before and after gradient flossing\n"
                     f"scale={fmt_setting(d['scale'])}, N={fmt_setting(d['N'])}, "
                     f"{fmt_setting(d['members'])} networks per k, k={fmt_setting(values(metrics, 'flossing.k'))}"
                     + (f", high precision resolves log10 kappa <= {g(float(fl['value'].min()))}" if not fl.empty else ""),
                     fontsize=10)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claims 2A, 2A+, 2B, 2C on the fig2 table (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
