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

Claims 2A, 2A+, 2B, 2C are defined below with their thresholds.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import planned
from flossrepro.figures.claims import Claim, Group, g, part, rng_for, scale_of
from flossrepro.figures.data import NET, describe, fmt_setting, rows, values
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, note, palette

EXPERIMENTS = ("fig2",)
STUDY = "flossing"
TITLE = "Fig 2: flossing lowers the condition number of the long-term Jacobian"
PANELS = {"A": "log10 kappa_2(T_t Q_m) vs horizon t (m=15), before/after flossing k=15: simulation and LE theory",
          "B": "log10 kappa_2 vs tangent dimensions m at the longest horizon, with the kappa=1e5 guide",
          "C": "simulated vs LE-predicted log10 kappa_2, colour = flossed k"}
METRICS = ("log10_kappa_before", "log10_kappa_after", "log10_kappa_hp_before", "log10_kappa_hp_after",
           "kappa_hp_limit", "lyap_before_floss", "lyap_after_floss")

PHASES = ("before", "after")
COLOR = {"before": "#1f77b4", "after": "#ff7f0e"}
LN10 = math.log(10.0)
K_AB = 15             # 2A, 2B: the runs that floss the first 15 exponents
RATE_TOL = 0.25       # 2A: |growth rate sim - theory| / |theory| (median over networks) below this
LATE = 0.5            # 2A: growth rates fitted over horizons t >= LATE * longest horizon
GUIDE = 5.0           # 2B: usable dimensions: log10 kappa <= 5 (kappa <= 1e5)
SLOPE_TOL = 0.2       # 2C: |slope of sim on theory - 1| (median over networks) below this
MIN_PRED = 1.0        # 2C: points with LE-predicted log10 kappa >= 1 (kappa >= 10)

CLAIMS = {
    "2A": f"the simulated condition number grows at the LE-predicted rate: log10 kappa_2(T_t Q_m) vs t (m=15, "
          f"t >= {LATE:g} x the longest horizon) has a least-squares slope within {RATE_TOL:.0%} of "
          f"(lambda_1 - lambda_m) / ln 10 (median over networks), before and after flossing k={K_AB}",
    "2A+": f"flossing (k={K_AB}) lowers kappa by a factor that grows exponentially with t: the slope of "
           f"log10 kappa_before - log10 kappa_after vs t is > 0 (median over networks)",
    "2B": f"flossing (k={K_AB}) raises the number of tangent dimensions usable at kappa = 1e5 (the largest m "
          f"with kappa_2(T_t Q_m) <= 1e5 at the longest horizon): median gain > 0",
    "2C": f"simulated vs LE-predicted log10 kappa lie on the diagonal: slope of simulated on predicted (points with "
          f"kappa_LE >= 10) within {SLOPE_TOL} of 1 (median over networks), before flossing and after flossing "
          f"each k",
}


# ----------------------------------------------------------------------------- tables
def _k_ab(df: pd.DataFrame) -> tuple[int | None, str]:
    ks = values(df, "flossing.k")
    if not ks:
        return None, "no flossing.k column"
    if K_AB in ks:
        return K_AB, ""
    k = min(ks, key=lambda x: abs(x - K_AB))
    return int(k), f"k={K_AB} not run; showing k={k}"


def spectra(df: pd.DataFrame, phase: str, k=None) -> pd.DataFrame:
    """``[network x i]`` Lyapunov spectrum of each network in ``phase``."""
    d = rows(df, f"lyap_{phase}_floss", flossing__k=k)
    if d.empty:
        return pd.DataFrame()
    d = d[d["epoch"] == d.groupby("run_id")["epoch"].transform("max")]
    return d.pivot_table(index=NET, columns="index", values="value")


def kappa_points(df: pd.DataFrame, phase: str, k=None, hp: bool = False) -> pd.DataFrame:
    """Rows ``run_id, member, t, m, sim, pred`` (log10 kappa simulated and LE-predicted) of ``phase``."""
    d = rows(df, f"log10_kappa_{'hp_' if hp else ''}{phase}", flossing__k=k)
    if d.empty:
        return pd.DataFrame(columns=NET + ["t", "m", "sim", "pred", "flossing.k"])
    out = d[NET + ["epoch", "index", "value"] + (["flossing.k"] if "flossing.k" in d else [])].rename(
        columns={"epoch": "t", "index": "m", "value": "sim"})
    out["m"] = out["m"].astype(int)
    spec = spectra(df, phase, k)
    if spec.empty:
        out["pred"] = np.nan
        return out
    lam1 = spec[1].rename("l1")
    out = out.join(lam1, on=NET)
    lm = spec.stack().rename("lm")
    lm.index = lm.index.set_names(NET + ["m"])
    out = out.join(lm, on=NET + ["m"])
    out["pred"] = (out["l1"] - out["lm"]) * out["t"] / LN10
    return out.drop(columns=["l1", "lm"]).reset_index(drop=True)


def _m_a(pts: pd.DataFrame) -> int | None:
    """m of the kappa-vs-horizon curve: the m measured at the most horizons."""
    if pts.empty:
        return None
    return int(pts.groupby("m")["t"].nunique().idxmax())


def _curve(pts: pd.DataFrame, m: int) -> pd.DataFrame:
    return pts[pts["m"] == m].sort_values("t")


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return np.nan
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def _hp_limit(df: pd.DataFrame) -> float:
    d = rows(df, "kappa_hp_limit")
    return float(d["value"].min()) if not d.empty else np.inf


# ----------------------------------------------------------------------------- panels
def panel_a(ax, df: pd.DataFrame) -> None:
    k, msg = _k_ab(df)
    ax.set_xlabel("horizon t - $\\tau$ (steps)")
    ax.set_ylabel("$\\log_{10} \\kappa_2(T_t Q_m)$")
    drawn, m = False, None
    limit = _hp_limit(df)
    for phase in PHASES:
        pts = kappa_points(df, phase, k)
        if pts.empty:
            continue
        m = _m_a(pts)
        cur = _curve(pts, m)
        n = cur.groupby(NET).ngroups
        for j, (_, c) in enumerate(cur.groupby(NET)):
            ax.plot(c["t"], c["sim"], color=COLOR[phase], lw=0.8, alpha=0.45,
                    label=f"{phase} flossing: float64 (n={n})" if j == 0 else None)
        th = cur.groupby("t")["pred"].median()
        ax.plot(th.index, th.values, color=COLOR[phase], ls="--", lw=1.8, label=f"{phase}: LE theory (median)")
        hp = _curve(kappa_points(df, phase, k, hp=True), m)
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
    lo, hi = min(0.0, float(allv.min())), float(allv.max())
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="diagonal")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("symlog", linthresh=1.0)
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


# ----------------------------------------------------------------------------- claims
def _rates(df: pd.DataFrame, phase: str, k) -> pd.DataFrame:
    """Per network: growth rates (decades per step) of log10 kappa vs t, simulated and LE theory."""
    pts = kappa_points(df, phase, k)
    if pts.empty:
        return pd.DataFrame(columns=["sim", "theory"])
    cur = _curve(pts, _m_a(pts))
    late = cur[cur["t"] >= LATE * cur["t"].max()]
    out = {}
    for net, c in late.groupby(NET):
        th = c["pred"] / c["t"]
        out[net] = (_slope(c["t"].to_numpy(float), c["sim"].to_numpy(float)), float(th.iloc[0]))
    return pd.DataFrame.from_dict(out, orient="index", columns=["sim", "theory"])


def _rel_err(x, axis):
    return np.median(np.abs(x[..., 0] - x[..., 1]) / np.abs(x[..., 1]), axis=axis)


def _claim_2a(df: pd.DataFrame, k) -> Claim:
    c, rng = Claim("2A", CLAIMS["2A"]), rng_for("2A")
    c.detail = ["| phase | networks | median slope, simulation (decades/step) | median (lambda_1 - lambda_m)/ln 10 | "
                "median relative difference | max abs(float64 - 256-bit), unsaturated points (decades) | "
                "high-precision points beyond the precision |", "|---|---|---|---|---|---|---|"]
    limit = _hp_limit(df)
    for phase in PHASES:
        r = _rates(df, phase, k).dropna()
        if r.empty:
            c.missing = (c.missing + "; " if c.missing else "") + f"{phase} not in the table (k={k})"
            continue
        x = r[["sim", "theory"]].to_numpy(float)
        c.groups.append(Group(f"{phase} flossing", [part("median abs(slope_sim - slope_LE) / abs(slope_LE)", x, _rel_err,
                                                        "<", RATE_TOL, r.index, rng)]))
        f64, hp = kappa_points(df, phase, k), kappa_points(df, phase, k, hp=True)
        both = f64.merge(hp, on=NET + ["t", "m"], suffixes=("", "_hp"))
        ok = both["sim_hp"] <= limit
        diff = float((both.loc[ok, "sim"] - both.loc[ok, "sim_hp"]).abs().max()) if ok.any() else np.nan
        c.detail.append(f"| {phase} | {len(r)} | {g(float(np.median(x[:, 0])))} | {g(float(np.median(x[:, 1])))} | "
                        f"{g(float(_rel_err(x[None], 1)[0]))} | {g(diff)} ({int(ok.sum())} points) | "
                        f"{int((~ok).sum())} of {len(both)} |")
    if len(c.detail) == 2:
        c.detail = []
    return c


def _claim_2a_plus(df: pd.DataFrame, k) -> Claim:
    c, rng = Claim("2A+", CLAIMS["2A+"]), rng_for("2A+")
    b, a = kappa_points(df, "before", k), kappa_points(df, "after", k)
    if b.empty or a.empty:
        c.missing = f"before and after flossing k={k} not both in the table"
        return c
    m = _m_a(b)
    both = _curve(b, m).merge(_curve(a, m), on=NET + ["t", "m"], suffixes=("_b", "_a"))
    both["red"] = both["sim_b"] - both["sim_a"]
    sl = both.groupby(NET).apply(lambda d: _slope(d["t"].to_numpy(float), d["red"].to_numpy(float)),
                                 include_groups=False).dropna()
    T = both["t"].max()
    at_T = both[both["t"] == T].set_index(NET)["red"]
    c.groups.append(Group(f"k={k}", [part("median slope of log10(kappa_before / kappa_after) vs t (decades/step)",
                                          sl.to_numpy(float), np.median, ">", 0.0, sl.index, rng)]))
    c.detail = ["| networks | median slope (decades/step) | median log10(kappa_before / kappa_after) at t=T/2 | at t=T |",
                "|---|---|---|---|",
                f"| {len(sl)} | {g(float(sl.median()))} | "
                f"{g(float(both[both['t'] == both['t'].iloc[(both['t'] - T / 2).abs().argmin()]]['red'].median()))} | "
                f"{g(float(at_T.median()))} (T={T}) |"]
    return c


def _usable(pts: pd.DataFrame, col: str) -> pd.Series:
    """Per network: the largest m with log10 kappa <= GUIDE at the longest horizon (0 if none)."""
    t = pts["t"].max()
    d = pts[pts["t"] == t]
    return d.groupby(NET).apply(lambda x: int(x.loc[x[col] <= GUIDE, "m"].max()) if (x[col] <= GUIDE).any() else 0,
                                include_groups=False)


def _claim_2b(df: pd.DataFrame, k) -> Claim:
    c, rng = Claim("2B", CLAIMS["2B"]), rng_for("2B")
    b, a = kappa_points(df, "before", k), kappa_points(df, "after", k)
    if b.empty or a.empty:
        c.missing = f"before and after flossing k={k} not both in the table"
        return c
    ub, ua = _usable(b, "sim"), _usable(a, "sim")
    gain = (ua - ub).dropna()
    c.groups.append(Group(f"k={k}", [part("median gain in usable dimensions (after - before)", gain.to_numpy(float),
                                          np.median, ">", 0.0, gain.index, rng)]))
    tb, ta = _usable(b, "pred"), _usable(a, "pred")
    c.detail = ["| phase | networks | median usable m (simulation) | median usable m (LE theory) | horizon |",
                "|---|---|---|---|---|",
                f"| before | {len(ub)} | {g(float(ub.median()))} | {g(float(tb.median()))} | {int(b['t'].max())} |",
                f"| after | {len(ua)} | {g(float(ua.median()))} | {g(float(ta.median()))} | {int(a['t'].max())} |"]
    return c


def _diag_slopes(pts: pd.DataFrame) -> pd.Series:
    d = pts[np.isfinite(pts["pred"]) & (pts["pred"] >= MIN_PRED)]
    return d.groupby(NET).apply(lambda x: _slope(x["pred"].to_numpy(float), x["sim"].to_numpy(float)),
                                include_groups=False).dropna()


def _claim_2c(df: pd.DataFrame) -> Claim:
    c, rng = Claim("2C", CLAIMS["2C"]), rng_for("2C")
    dev = lambda x, axis: np.median(np.abs(x - 1.0), axis=axis)  # noqa: E731
    k0, _ = _k_ab(df)
    c.detail = ["| condition | networks | points | median slope | median abs(sim - pred) (decades) |",
                "|---|---|---|---|---|"]
    conds = [("before flossing", kappa_points(df, "before", k0))]
    scales = scale_of(df)
    ks = sorted({int(x) for x in planned(EXPERIMENTS[0], "flossing.k", scales[0] if scales else None)}
                | {int(x) for x in values(df, "flossing.k")})
    lost = []
    for k in ks:
        pts = kappa_points(df, "after", k)
        if pts.empty:
            lost.append(str(k))
            continue
        conds.append((f"after flossing k={k}", pts))
    for label, pts in conds:
        if pts.empty:
            continue
        sl = _diag_slopes(pts)
        if sl.empty:
            continue
        c.groups.append(Group(label, [part("median abs(slope - 1)", sl.to_numpy(float), dev, "<", SLOPE_TOL,
                                           sl.index, rng)]))
        use = pts[np.isfinite(pts["pred"]) & (pts["pred"] >= MIN_PRED)]
        c.detail.append(f"| {label} | {len(sl)} | {len(use)} | {g(float(sl.median()))} | "
                        f"{g(float((use['sim'] - use['pred']).abs().median()))} |")
    if lost:
        c.missing = f"k={', '.join(lost)} not run"
    if len(c.detail) == 2:
        c.detail = []
    return c


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claims 2A, 2A+, 2B, 2C measured on the fig2 table."""
    k, _ = _k_ab(metrics)
    if k != K_AB:
        out = [Claim(cid, CLAIMS[cid], missing=f"no k={K_AB} runs in the table") for cid in ("2A", "2A+", "2B")]
    else:
        out = [_claim_2a(metrics, k), _claim_2a_plus(metrics, k), _claim_2b(metrics, k)]
    return out + [_claim_2c(metrics)]
