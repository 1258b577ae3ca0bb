"""Fig 1 (B-D): flossing alone drives the Lyapunov exponents of random tanh networks to a target.

- **B**: lambda_1 (estimated on each flossing step, ``floss_lambda_1``) vs flossing epochs for
  every target of the sweep, k=1: median over networks, 25-75% band, dashed target lines.
- **C**: flossing loss (``floss_loss``) vs flossing epochs for every k at target 0, log y:
  median and 25-75% band.
- **D**: the spectrum after flossing (``lyap_after_floss``, the last episode of each run) vs
  exponent index for every k at target 0: a dot per network, the median line, a dotted
  vertical marker at i=k, and the median spectrum before flossing in grey.

Claims 1B, 1B+, 1C, 1D are defined below with their thresholds. Targets and k come from the
table and from the sweep in ``conf/experiment/fig1.yaml`` (the planned values, to say what
was not run).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import planned
from flossrepro.figures.claims import Claim, Group, frac, g, part, rng_for, scale_of
from flossrepro.figures.data import NET, band, first_setting, last_epoch_rows, rows, values
from flossrepro.figures.plotting import (STYLE, empty_panel, jitter, median_band, new_figure, note, palette, suptitle)

EXPERIMENTS = ("fig1",)
STUDY = "flossing"
TITLE = "Fig 1: flossing drives Lyapunov exponents to a target"
PANELS = {"B": "lambda_1 during flossing toward each target (k=1)",
          "C": "flossing loss vs flossing epochs, each k (target 0)",
          "D": "Lyapunov spectrum after flossing k exponents (target 0)"}
METRICS = ("floss_lambda_1@10", "floss_loss@10", "lyap_before_floss", "lyap_after_floss")  # @10: epochs 0, 9, 10, 19, ..., 499

K_B = 1                # 1B, 1B+: lambda_1 is flossed alone
TARGET_CD = 0.0        # 1C, 1D: flossing toward 0
TOL_1B = 0.05          # |lambda_1 - target| counted as "reached"
FRAC_1B = 0.9          # fraction of networks that must reach each non-positive target
FRAC_1B_POS = 0.1      # a positive target counts as "not reached" below this fraction
LOSS_DROP_1C = 0.1     # final median flossing loss below this fraction of the initial
NEAR0_1D = 0.1         # median |lambda_i| for i <= k
GAP_1D = 0.1           # median lambda_{k+1} < median lambda_k - GAP

CLAIMS = {
    "1B": f"lambda_1 reaches each non-positive target of the sweep ({{-1, -0.5, 0}}) within {TOL_1B} "
          f"for >= {FRAC_1B:.0%} of networks (k={K_B})",
    "1B+": f"a positive target (+0.5) is not reached (< {FRAC_1B_POS:.0%} of networks within {TOL_1B})",
    "1C": f"the flossing loss falls: median final < {LOSS_DROP_1C:.0%} of median initial, for each k (target 0)",
    "1D": f"after flossing k exponents (k < N), the first k sit near 0 (median abs(lambda_i) < {NEAR0_1D} for i <= k) "
          f"and lambda_(k+1) is clearly below (median lambda_(k+1) < median lambda_k - {GAP_1D})",
}


def _plan(df: pd.DataFrame, key: str) -> list:
    """The sweep's planned values of ``key`` at the table's scale."""
    scales = scale_of(df)
    return planned(EXPERIMENTS[0], key, scales[0] if scales else None)


def _targets(df: pd.DataFrame) -> list[float]:
    """Planned targets and those in the table."""
    return sorted({float(t) for t in _plan(df, "flossing.target")} | {float(t) for t in values(df, "flossing.target")})


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
    targets = _targets(df)
    cols = dict(zip(targets, palette(len(targets), "tab10")))
    missing = []
    for t in targets:
        d = rows(sub, flossing__target=float(t))
        if d.empty:
            missing.append(f"{t:g}")
            continue
        median_band(ax, d, cols[t], f"target {t:g}")
        ax.axhline(t, color=cols[t], ls="--", lw=1)
    ax.legend(loc="best")
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
        suptitle(fig, "Fig 1: gradient flossing of random tanh networks (no task training)", metrics, "no-k")
    return fig


# ----------------------------------------------------------------------------- claims
def _lambda1_after(df: pd.DataFrame, k: int, target: float) -> pd.Series:
    """lambda_1 after the last flossing episode, one value per network."""
    d = last_epoch_rows(rows(df, "lyap_after_floss", flossing__k=k, flossing__target=target))
    d = d[d["index"] == 1]
    return d.set_index(NET)["value"]


def _first_within(df: pd.DataFrame, k: int, target: float, tol: float) -> int | None:
    """First flossing epoch at which the median (over networks) of floss_lambda_1 is within ``tol``."""
    b = band(rows(df, "floss_lambda_1", flossing__k=k, flossing__target=target))
    hit = b[(b["median"] - target).abs() <= tol]
    return None if hit.empty else int(hit["epoch"].iloc[0])


def _reach(df: pd.DataFrame, cid: str, positive: bool) -> Claim:
    """1B (non-positive targets reached by >= FRAC_1B) and 1B+ (positive targets reached by < FRAC_1B_POS)."""
    c, rng = Claim(cid, CLAIMS[cid]), rng_for(cid)
    op, thr = ("<", FRAC_1B_POS) if positive else (">=", FRAC_1B)
    lost = []
    c.detail = ["| target | networks | within 0.05 | median lambda_1 after | first flossing epoch median within 0.05 |",
                "|---|---|---|---|---|"]
    for t in [t for t in _targets(df) if (t > 0) == positive]:
        lam = _lambda1_after(df, K_B, t)
        if lam.empty:
            lost.append(f"{t:g}")
            continue
        within = ((lam - t).abs() <= TOL_1B).to_numpy()
        c.groups.append(Group(f"target {t:g}", [part(f"fraction of networks within {TOL_1B}", within, frac, op, thr,
                                                     lam.index, rng)]))
        first = _first_within(df, K_B, t, TOL_1B)
        c.detail.append(f"| {t:g} | {len(lam)} | {within.mean():.0%} | {g(lam.median())} | "
                        f"{first if first is not None else 'never'} |")
    if lost:
        c.missing = f"target(s) {', '.join(lost)} not run with k={K_B}"
    if not positive:
        c.detail += ["", "(paper: each target reached within < 100 flossing epochs)"]
    if len(c.detail) == 2:
        c.detail = []
    return c


def _ks(df: pd.DataFrame, metric: str) -> list[int]:
    """Planned k and those in the table with ``metric`` rows at target 0."""
    have = values(rows(df, metric, flossing__target=TARGET_CD), "flossing.k")
    return sorted({int(k) for k in _plan(df, "flossing.k")} | {int(k) for k in have})


def _claim_1c(df: pd.DataFrame) -> Claim:
    c, rng = Claim("1C", CLAIMS["1C"]), rng_for("1C")
    fl = rows(df, "floss_loss", flossing__target=TARGET_CD)
    ratio = lambda x, axis: np.median(x[..., 1], axis=axis) / np.median(x[..., 0], axis=axis)  # noqa: E731
    lost = []
    c.detail = ["| k | networks | median initial loss | median final loss | ratio |", "|---|---|---|---|---|"]
    for k in _ks(df, "floss_loss"):
        d = rows(fl, flossing__k=k)
        if d.empty:
            lost.append(str(k))
            continue
        first = d[d["epoch"] == d.groupby("run_id")["epoch"].transform("min")].set_index(NET)["value"]
        last = d[d["epoch"] == d.groupby("run_id")["epoch"].transform("max")].set_index(NET)["value"]
        both = pd.concat([first, last], axis=1, keys=["first", "last"]).dropna(subset=["first"])
        both["last"] = both["last"].where(np.isfinite(both["last"]), np.inf)   # diverged: the loss did not fall
        x = both.to_numpy(float)
        c.groups.append(Group(f"k={k}", [part("median final / median initial loss", x, ratio, "<", LOSS_DROP_1C,
                                              both.index, rng)]))
        c.detail.append(f"| {k} | {len(x)} | {g(np.median(x[:, 0]))} | {g(np.median(x[:, 1]))} | "
                        f"{g(float(ratio(x[None], 1)[0]))} |")
    if lost:
        c.missing = f"k={', '.join(lost)} not run at target {TARGET_CD:g}"
    if len(c.detail) == 2:
        c.detail = []
    return c


def _claim_1d(df: pd.DataFrame) -> Claim:
    c, rng = Claim("1D", CLAIMS["1D"]), rng_for("1D")
    N = first_setting(df, "arch.n_hidden")
    after = rows(df, "lyap_after_floss", flossing__target=TARGET_CD)
    ks = [k for k in _ks(df, "lyap_after_floss") if not isinstance(N, (int, np.integer)) or k < N]
    near = lambda x, axis: np.max(np.median(x, axis=axis), axis=-1)  # noqa: E731
    gap = lambda x, axis: np.median(x[..., 0], axis=axis) - np.median(x[..., 1], axis=axis)  # noqa: E731
    lost = []
    c.detail = ["| k | networks | max over i<=k of median abs(lambda_i) | median lambda_k | median lambda_(k+1) |",
                "|---|---|---|---|---|"]
    for k in ks:
        d = last_epoch_rows(rows(after, flossing__k=k))
        if d.empty:
            lost.append(f"k={k} not run at target {TARGET_CD:g}")
            continue
        spec = d.groupby(NET + ["index"])["value"].last().unstack("index")
        if k + 1 not in spec.columns or k not in spec.columns:
            lost.append(f"k={k}: spectrum recorded only to i={int(max(spec.columns))}")
            continue
        spec = spec[list(range(1, k + 2))].dropna()
        a = np.abs(spec[list(range(1, k + 1))].to_numpy(float))
        pair = spec[[k, k + 1]].to_numpy(float)
        c.groups.append(Group(f"k={k}", [
            part(f"max over i<={k} of median abs(lambda_i)", a, near, "<", NEAR0_1D, spec.index, rng),
            part(f"median lambda_{k} - median lambda_{k + 1}", pair, gap, ">", GAP_1D, spec.index, rng)]))
        med = np.median(pair, axis=0)
        c.detail.append(f"| {k} | {len(spec)} | {g(float(near(a[None], 1)[0]))} | {g(med[0])} | {g(med[1])} |")
    if lost:
        c.missing = "; ".join(lost)
    if not ks:
        c.missing = f"no k < N at target {TARGET_CD:g} in the table"
    if len(c.detail) == 2:
        c.detail = []
    return c


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claims 1B, 1B+, 1C, 1D measured on the fig1 table."""
    return [_reach(metrics, "1B", positive=False), _reach(metrics, "1B+", positive=True),
            _claim_1c(metrics), _claim_1d(metrics)]
