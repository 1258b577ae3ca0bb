"""Fig 6 (A-F): flossing drives lambda_1 of LSTM, ReLU and GRU networks to 0 (paper appendix B.1).

One flossing episode (k = 1, target 0, batch 1, x ~ N(0, 1)) on freshly initialised networks,
N = 32, g ~ U(0, 1) per network; one network family per run (column ``fig6net``, the sweep of
``conf/experiment/fig6.yaml``):

- **A, B** LSTM (paper 6A, 6B): ``floss_lambda_1`` (the estimate on each flossing step) and the
  flossing loss ``lambda_1^2`` vs flossing epochs: a thin line per network, median, 25-75% band;
- **C, D** ReLU networks (paper 6C, 6D), the paper's ``W ~ N(-0.1, g^2/N)`` (``relu``) and the
  variant ``W ~ N(-0.1/N, g^2/N)`` (``relu_gbar``, finite exponents, see ``conf/fig6net/``);
- **E, F** GRU networks (not in the paper), as A, B.

Claims 6A, 6C, 6C-var, 6E: lambda_1 within ``TOL`` of 0 for >= ``FRAC`` of networks by flossing
epoch ``BY_EPOCH`` (each network's lambda_1 there: the mean of its per-step estimates over
flossing epochs ``BY_EPOCH - 10 .. BY_EPOCH - 1``, each from a fresh input sequence); 6C+: ReLU
networks unstable before flossing (``lyap_before_floss`` lambda_1 > 0) end stable. A network
whose exponent is not finite (a ReLU network with a step where every unit is silent has
lambda_1 = -inf; the job marks it diverged) counts as not within ``TOL``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures.claims import Claim, Group, frac, g, part, rng_for
from flossrepro.figures.data import NET, last_epoch_rows, rows, values
from flossrepro.figures.plotting import STYLE, empty_panel, median_band, new_figure, note, suptitle

EXPERIMENTS = ("fig6",)
STUDY = "flossing"
TITLE = "Fig 6: flossing lambda_1 of LSTM, ReLU and GRU networks to 0"
PANELS = {"A": "LSTM: lambda_1 during flossing (k=1, target 0)",
          "B": "LSTM: flossing loss lambda_1^2",
          "C": "ReLU: lambda_1 during flossing (paper's W ~ N(-0.1, g^2/N) and the N(-0.1/N, g^2/N) variant)",
          "D": "ReLU: flossing loss lambda_1^2",
          "E": "GRU (not in the paper): lambda_1 during flossing",
          "F": "GRU: flossing loss lambda_1^2"}
METRICS = ("floss_lambda_1", "floss_loss@10", "lyap_before_floss[1]", "lyap_after_floss[1]")

FAMILY = "fig6net"     # the table column naming each run's network family
TOL = 0.05             # |lambda_1| counted as "at 0"
FRAC = 0.9             # fraction of networks that must be at 0
BY_EPOCH = 100         # ... within this many flossing epochs (paper: "fewer than 100 epochs")
WINDOW = 10            # per-step estimates averaged before BY_EPOCH
FAMILIES = {"lstm": ("LSTM", "#1f77b4"), "relu": ("ReLU, W~N(-0.1, g²/N) (paper)", "#d62728"),
            "relu_gbar": ("ReLU, W~N(-0.1/N, g²/N) (variant)", "#ff7f0e"), "gru": ("GRU", "#2ca02c")}
COLUMNS = (("A", "B", ("lstm",), "LSTM"), ("C", "D", ("relu", "relu_gbar"), "ReLU"), ("E", "F", ("gru",), "GRU"))

_WITHIN = f"lambda_1 within {TOL} of 0 for >= {FRAC:.0%} of networks within {BY_EPOCH} flossing epochs (k=1, target 0)"
CLAIMS = {
    "6A": f"LSTM networks: {_WITHIN}",
    "6C": f"ReLU networks, the paper's W ~ N(-0.1, g^2/N): {_WITHIN}",
    "6C-var": f"ReLU networks, W ~ N(-0.1/N, g^2/N) (variant with finite exponents): {_WITHIN}",
    "6C+": f"ReLU networks unstable before flossing (lambda_1 > 0) end stable: lambda_1 after flossing <= 0 "
           f"within the estimate's tolerance ({TOL}) for every such network (fraction >= {FRAC:.0%}), both ReLU families",
    "6E": f"GRU networks (not in the paper): {_WITHIN}",
}
CLAIM_FAMILY = {"6A": "lstm", "6C": "relu", "6C-var": "relu_gbar", "6E": "gru"}


def _family(df: pd.DataFrame, fam: str) -> pd.DataFrame:
    if FAMILY not in df.columns:
        return df.iloc[0:0]
    return df[df[FAMILY] == fam]


def _networks(df: pd.DataFrame) -> pd.Index:
    """Every network of the table (any metric): a diverged one may lack later rows."""
    return pd.MultiIndex.from_frame(df[NET].drop_duplicates()) if not df.empty else pd.Index([])


def _panel_lambda(ax, df: pd.DataFrame, fams, title: str, letter: str) -> None:
    ax.set_title(f"{letter}  {title}: $\\lambda_1$ during flossing", loc="left")
    ax.set_xlabel("flossing epochs")
    ax.set_ylabel("$\\lambda_1$ (1/step)")
    shown, msgs = 0, []
    for fam in fams:
        d = rows(_family(df, fam), "floss_lambda_1")
        d = d[np.isfinite(d["value"])]
        if d.empty:
            msgs.append(f"{fam}: no finite floss_lambda_1 rows")
            continue
        label, color = FAMILIES[fam]
        median_band(ax, d, color, label, lines_per_network=True)
        shown += 1
        lost = _networks(_family(df, fam)).difference(pd.MultiIndex.from_frame(d[NET].drop_duplicates()))
        if len(lost):
            msgs.append(f"{fam}: {len(lost)} network(s) with lambda_1 = -inf or NaN from the start (not drawn)")
    ax.axhline(0.0, color="black", ls="--", lw=1.5, label="target 0")
    ax.axvline(BY_EPOCH, color="#999999", ls=":", lw=1)
    if shown:
        ax.legend(loc="best")
    else:
        empty_panel(ax, "\n".join(msgs) or "no rows")
        return
    note(ax, "\n".join(msgs), "lower right")


def _panel_loss(ax, df: pd.DataFrame, fams, title: str, letter: str) -> None:
    ax.set_title(f"{letter}  {title}: flossing loss", loc="left")
    ax.set_xlabel("flossing epochs")
    ax.set_ylabel("$\\lambda_1^2$ (1/step$^2$)")
    ax.set_yscale("log")
    shown = 0
    for fam in fams:
        d = rows(_family(df, fam), "floss_loss")
        d = d[np.isfinite(d["value"])]
        if d.empty:
            continue
        d = d.assign(value=d["value"].clip(lower=1e-12))
        label, color = FAMILIES[fam]
        median_band(ax, d, color, label)
        shown += 1
    if shown:
        ax.legend(loc="best")
    else:
        empty_panel(ax, "no finite floss_loss rows")


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 6A-F from the fig6 table (see the module docstring)."""
    with rc_context(STYLE):
        fig, axes = new_figure(2, 3, (14, 7.6))
        for j, (la, lb, fams, title) in enumerate(COLUMNS):
            _panel_lambda(axes[0, j], metrics, fams, title, la)
            _panel_loss(axes[1, j], metrics, fams, title, lb)
        suptitle(fig, "Fig 6: gradient flossing of LSTM, ReLU and GRU networks (k=1, target 0; no task training)",
                 metrics.drop(columns=["epochs"], errors="ignore"), "no-k")  # no task training
    return fig


# ----------------------------------------------------------------------------- claims
def lambda1_by(df: pd.DataFrame, fam: str, by: int = BY_EPOCH, window: int = WINDOW) -> pd.Series:
    """Each network's lambda_1 at flossing epoch ``by``: the mean of its per-step estimates over
    epochs ``by - window .. by - 1`` (NaN/-inf when a network has no finite estimate there)."""
    d = _family(df, fam)
    nets = _networks(d)
    r = rows(d, "floss_lambda_1")
    r = r[(r["epoch"] >= by - window) & (r["epoch"] < by)]
    out = r.groupby(NET)["value"].mean()
    return out.reindex(nets) if len(nets) else out


def _first_lambda(df: pd.DataFrame, fam: str, metric: str) -> pd.Series:
    d = rows(_family(df, fam), metric)
    d = d[d["index"] == 1]
    if d.empty:
        return pd.Series(dtype=float)
    first = d[d["epoch"] == d.groupby("run_id")["epoch"].transform("min")] if metric == "lyap_before_floss" \
        else last_epoch_rows(d)
    return first.drop_duplicates(NET, keep="last").set_index(NET)["value"]


def _claim_within(df: pd.DataFrame, cid: str) -> Claim:
    fam = CLAIM_FAMILY[cid]
    c, rng = Claim(cid, CLAIMS[cid]), rng_for(cid)
    lam = lambda1_by(df, fam)
    if lam.empty:
        c.missing = f"family {fam} not run (no {FAMILY}={fam} rows)"
        return c
    fl = rows(_family(df, fam), "floss_lambda_1")
    finite_rows = fl[np.isfinite(fl["value"])]
    if not finite_rows.empty and finite_rows["epoch"].max() < BY_EPOCH - 1:
        c.missing = f"the {fam} runs have only {int(fl['epoch'].max()) + 1} flossing epochs (< {BY_EPOCH})"
        return c
    ok = (lam.abs() <= TOL).fillna(False).to_numpy()   # NaN / -inf (diverged): not at 0
    c.groups.append(Group(fam, [part(f"fraction of networks with abs(lambda_1) <= {TOL} at flossing epoch {BY_EPOCH}",
                                     ok, frac, ">=", FRAC, lam.index, rng)]))
    before, after = _first_lambda(df, fam, "lyap_before_floss"), _first_lambda(df, fam, "lyap_after_floss")
    fin = lam[np.isfinite(lam)]
    c.detail = ["| family | networks | within 0.05 at epoch 100 | median lambda_1 at epoch 100 | "
                "median lambda_1 before flossing | median lambda_1 after the episode | networks with non-finite lambda_1 |",
                "|---|---|---|---|---|---|---|",
                f"| {fam} | {len(lam)} | {ok.mean():.0%} | {g(fin.median()) if len(fin) else 'n/a'} | "
                f"{g(before.median()) if len(before) else 'n/a'} | {g(after.median()) if len(after) else 'n/a'} | "
                f"{int((~np.isfinite(lam)).sum())} |"]
    if (~np.isfinite(lam)).any():
        c.note = "non-finite lambda_1: every unit silent on some step (Jacobian 0), counted as not at 0"
        c.detail += ["", f"{int((~np.isfinite(lam)).sum())} network(s) have no finite lambda_1 estimate: on some step "
                     "every unit is silent, the one-step Jacobian is 0 and lambda_1 = -inf; flossing cannot act on "
                     "them (the job marks them diverged). They count as not at 0."]
    return c


def _claim_unstable(df: pd.DataFrame) -> Claim:
    cid = "6C+"
    c, rng = Claim(cid, CLAIMS[cid]), rng_for(cid)
    vals, nets = [], []
    c.detail = ["| family | networks | unstable before (lambda_1 > 0) | of those: lambda_1 after <= 0 | <= 0.05 |",
                "|---|---|---|---|---|"]
    for fam in ("relu", "relu_gbar"):
        before, after = _first_lambda(df, fam, "lyap_before_floss"), _first_lambda(df, fam, "lyap_after_floss")
        if before.empty:
            continue
        unstable = before[before > 0].index
        a = after.reindex(unstable)
        ok = (a <= TOL).fillna(False).to_numpy()
        vals += list(ok)
        nets += list(unstable)
        c.detail.append(f"| {fam} | {len(before)} | {len(unstable)} | {int((a <= 0).sum())} | {int(ok.sum())} |")
    if not nets:
        c.missing = "no ReLU network was unstable before flossing (lambda_1 > 0) in the table"
        return c
    c.groups.append(Group("unstable ReLU networks", [part(f"fraction ending with lambda_1 <= 0 (+{TOL})",
                                                          np.array(vals), frac, ">=", FRAC, nets, rng)]))
    return c


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claims 6A, 6C, 6C-var, 6C+, 6E measured on the fig6 table."""
    return [_claim_within(metrics, "6A"), _claim_within(metrics, "6C"), _claim_within(metrics, "6C-var"),
            _claim_unstable(metrics), _claim_within(metrics, "6E")]


__all__ = ["plot", "claims", "lambda1_by", "values"]
