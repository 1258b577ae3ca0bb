"""Low-rank study, the linear theory against simulation (linear rate network, input-driven fixed point).

With ``lr = lr0 (1 - g^2)^2`` (SGD, batch 1) the theory (their Figs 3-4) gives:
convergence time in learning time ``lr x epochs`` proportional to ``(1 - g^2)^2``;
``||dW||`` at the end proportional to ``(1 - g^2)``; loss after shuffling W0 ``= g^4 (2 - g^2)^2 L0``.
The first two are anchored at g = 0 of the same zhat (their prefactors are not predicted here).

- **A**: convergence time ``lr x epochs`` vs g, simulation (dots, median) and theory (line), per zhat;
- **B**: ``||dW||_F`` vs g, simulation and theory;
- **C**: loss after shuffle / L0 vs g, simulation and theory;
- **D**: relative error (simulation / theory - 1) per g for the three relations.

Claim LR5: at every g > 0 and zhat, each relation holds within a relative error of 20% (the whole
bootstrap interval of |median simulation / theory - 1| below 0.2).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.store.resolvers import linear_lr
from flossrepro.figures.claims import Claim, Group, median_reps, part_from_reps, rng_for
from flossrepro.figures.data import NET, values
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import md_table, table
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, palette, suptitle

EXPERIMENTS = ("lr_linear",)
STUDY = "lowrank"
TITLE = "Low-rank study: linear networks, theory against simulation"
PANELS = {"A": "convergence time (lr x epochs) vs g: simulation and (1 - g^2)^2",
          "B": "||dW||_F vs g: simulation and (1 - g^2)",
          "C": "loss after shuffle / L0 vs g: simulation and g^4 (2 - g^2)^2",
          "D": "relative error per g"}
METRICS = _METRICS
REL_TOL = 0.2
ZHAT = "task.target_amp"

CLAIM_PANELS = {"LR5": "D"}  # the panel each claim is read from (report's figure map)
CLAIMS = {"LR5": f"linear networks: convergence time ~ (1 - g^2)^2, ||dW|| ~ (1 - g^2), loss after shuffle = "
                 f"g^4 (2 - g^2)^2 L0, each within {REL_TOL:.0%} relative error at every g > 0 and zhat"}

THEORY = {"conv": lambda g: (1 - g ** 2) ** 2, "dW_norm": lambda g: 1 - g ** 2,
          "shuffle_rel": lambda g: g ** 4 * (2 - g ** 2) ** 2}
RELATION_NAMES = {"conv": "convergence time", "dW_norm": "||dW||", "shuffle_rel": "loss after shuffle"}


def _table(metrics: pd.DataFrame) -> pd.DataFrame:
    t = table(metrics)
    if ZHAT not in t:
        t[ZHAT] = 1.0
    t["lr"] = [linear_lr(z, g) for z, g in zip(t[ZHAT], t["init.g"])]
    t["t_conv"] = t["lr"] * t["conv"]
    return t


def relative_errors(t: pd.DataFrame, rng=None) -> pd.DataFrame:
    """Per zhat, g > 0 and relation: ``sim / theory - 1`` of the medians, with bootstrap replicates
    (``reps``) of ``|sim / theory - 1|`` when ``rng`` is given."""
    out = []
    for z in values(t, ZHAT):
        tz = t[t[ZHAT] == z]
        base = tz[tz["init.g"] == 0]
        for gv in [g for g in values(tz, "init.g") if g > 0]:
            s = tz[tz["init.g"] == gv]
            for rel in ("conv", "dW_norm", "shuffle_rel"):
                col = "t_conv" if rel == "conv" else rel
                x = s[col].dropna().to_numpy(float)
                if len(x) == 0:
                    continue
                m, r = median_reps(x, rng) if rng is not None else (float(np.median(x)), None)
                if rel == "shuffle_rel":
                    sim, reps = m, r
                else:
                    b = base[col].dropna().to_numpy(float)
                    if len(b) == 0:
                        continue
                    mb, rb = median_reps(b, rng) if rng is not None else (float(np.median(b)), None)
                    sim, reps = m / mb, (None if r is None else r / rb)
                th = THEORY[rel](gv)
                err_reps = None if reps is None else np.abs(reps / th - 1)
                nets = set(map(tuple, s[NET].to_numpy())) | (set() if rel == "shuffle_rel" else
                                                           set(map(tuple, base[NET].to_numpy())))
                out.append(dict(zhat=z, g=gv, relation=rel, simulation=sim, theory=th, rel_error=sim / th - 1,
                                reps=err_reps, nets=nets))
    return pd.DataFrame(out)


def plot(metrics: pd.DataFrame) -> Figure:
    with rc_context(STYLE):
        fig, axes = new_figure(1, 4, (17, 4.2))
        if metrics.empty:
            for ax in axes[0]:
                empty_panel(ax, "no table")
            return fig
        scales = _by_scale(metrics)
        t = _table(max(scales, key=lambda sm: sm[1]["init.g"].nunique())[1])  # the sweep with the most g
        zs = values(t, ZHAT)
        cols = dict(zip(zs, palette(len(zs), "plasma")))
        grid = np.linspace(0, max(values(t, "init.g")), 100)
        for ax, rel, letter in zip(axes[0], ("conv", "dW_norm", "shuffle_rel"), "ABC"):
            col = "t_conv" if rel == "conv" else rel
            ax.set_title(f"{letter}  {RELATION_NAMES[rel]}", loc="left")
            ax.set_xlabel("g")
            ax.set_ylabel({"conv": "lr x convergence epoch", "dW_norm": "||dW||_F",
                           "shuffle_rel": "loss after shuffle / L0"}[rel])
            for z in zs:
                tz = t[t[ZHAT] == z]
                m = tz.groupby("init.g")[col].median()
                ax.plot(m.index, m.values, "o", color=cols[z], ms=4, label=f"zhat={z:g} simulation")
                anchor = 1.0 if rel == "shuffle_rel" else float(m.get(0.0, np.nan))
                ax.plot(grid, anchor * THEORY[rel](grid), "-", color=cols[z], lw=1,
                        label=f"zhat={z:g} theory" if rel == "conv" else None)
            ax.legend(fontsize=6)
        ax = axes[0, 3]
        ax.set_title("D  relative error (simulation / theory - 1)", loc="left")
        e = relative_errors(t)
        for rel, mk in (("conv", "o"), ("dW_norm", "s"), ("shuffle_rel", "^")):
            for z in zs:
                s = e[(e["relation"] == rel) & (e["zhat"] == z)] if len(e) else e
                if len(s):
                    ax.plot(s["g"], s["rel_error"], mk + "-", color=cols[z], ms=3, lw=0.8,
                            label=f"{RELATION_NAMES[rel]}, zhat={z:g}")
        for y in (REL_TOL, -REL_TOL):
            ax.axhline(y, color="black", ls="--", lw=0.8)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("g")
        ax.legend(fontsize=5.5, ncol=1)
        suptitle(fig, TITLE, metrics, extra="no-k")
    return fig


def _by_scale(metrics: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The table split by scale (a table may hold a small sweep and runs at the paper's parameters
    for the deciding conditions; each is compared with the theory on its own)."""
    if "scale.name" not in metrics:
        return [("", metrics)]
    return [(str(sc), metrics[metrics["scale.name"] == sc]) for sc in sorted(metrics["scale.name"].dropna().unique())]


def claims(metrics: pd.DataFrame) -> list[Claim]:
    c, rng = Claim("LR5", CLAIMS["LR5"]), rng_for("LR5")
    if metrics.empty:
        c.missing = "no table"
        return [c]
    c.detail = []
    for scale, m in _by_scale(metrics):
        t = _table(m)
        e = relative_errors(t, rng)
        pre = f"{scale}: " if scale else ""
        for (z, gv), grp in e.groupby(["zhat", "g"]):
            c.groups.append(Group(f"{pre}zhat={z:g}, g={gv:g}", [
                part_from_reps(f"|{RELATION_NAMES[r.relation]} sim/theory - 1|", abs(r.rel_error), r.reps, "<", REL_TOL, r.nets)
                for r in grp.itertuples()]))
        show = e.drop(columns=["reps", "nets"]) if len(e) else e
        n_hidden = ", ".join(f"{v:g}" for v in values(t, "arch.n_hidden")) if "arch.n_hidden" in t else "?"
        c.detail += [f"{pre}N={n_hidden}: simulation (medians; convergence time and ||dW|| as ratios to g = 0 of the "
                     "same zhat) against theory, relative error per g:", ""] + \
            (md_table(show, list(show.columns)) if len(show) else []) + [""]
        cens = int(t["conv_censored"].sum())
        if cens:
            c.detail += [f"{pre}{cens} network(s) never reached 5% of L0 within the epochs (counted as the run's "
                         "epochs).", ""]
    if "scale.name" in metrics and not (metrics["scale.name"] == "paper").any():
        c.note = "small scale only"
        c.detail += ["No run at the paper's parameters (N=1024) is in the table: a verdict other than reproduced is "
                     "not a conclusion until the deciding condition runs there, e.g. `python -m flossrepro "
                     "+experiment=lr_linear scale=paper init.g=0.0,0.6 task.target_amp=1.0`."]
    return [c]
