"""Low-rank study, linear learning dynamics (their Fig 3): the loss and the singular values of dW over learning time.

A column per zhat (``task.target_amp``), one colour per g (the g nearest 0, 0.6 and 0.9):

- **A**: training loss against the effective learning time ``tau~ = beta^2 lr epoch``
  (``beta = 1 / (1 - g^2)``), mean +- std over networks, and the third-order theory (dashed);
- **B**: the singular values s1, s2, s3 of dW (``dW_sv`` over training, mean) against ``tau~``, and the
  theory: s1 to third order (dashed), s2 = zhat^3 tau~^3 / 12 (dash-dotted); s3 is 0 at this order.

The theory is the authors' third-order expansion (their ``figures_linear``): the readout
``z = zhat (tau~ - tau~^2 / 2 + tau~^3 / 6 (1 + 8 zhat^2 beta))``, the loss ``0.5 (zhat - z)^2``,
``s1 = (zhat / beta) (tau~ - tau~^2 / 2 + tau~^3 / 6 (1 + 7/2 zhat^2 beta))`` (its leading term
``(zhat / beta) tau~``), ``s2 = zhat^3 tau~^3 / 12``; as they do, each is cut (held) where ``z``
first reaches ``zhat``, beyond which the expansion does not hold. No claim (LR5 tests the
end-of-training relations).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures.data import NET, values
from flossrepro.figures.lowrank_common import NOT_RECORDED, draw_mean_std, pick_gs, vectors_over_epochs
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, note, palette, suptitle
from flossrepro.store.resolvers import linear_lr

EXPERIMENTS = ("lr_linear",)
STUDY = "lowrank"
TITLE = "Low-rank study: linear networks over learning time, against the theory"
PANELS = {"A": "training loss vs effective learning time, simulation and third-order theory",
          "B": "singular values s1, s2, s3 of dW vs effective learning time, simulation and theory"}
METRICS = ("train_loss", "dW_sv[1:4]")
CLAIMS: dict = {}
CLAIM_PANELS: dict = {}
ZHAT = "task.target_amp"
G_WANT = (0.0, 0.6, 0.9)


def theory(zhat: float, g: float, tau: np.ndarray) -> dict:
    """The authors' third-order expressions at effective learning times ``tau`` (sorted), cut where z
    first exceeds zhat: ``{"loss", "s1", "s2"}``."""
    beta = 1 / (1 - g ** 2)
    z = zhat * (tau - tau ** 2 / 2 + tau ** 3 / 6 * (1 + 8 * zhat ** 2 * beta))
    s1 = zhat / beta * (tau - tau ** 2 / 2 + tau ** 3 / 6 * (1 + 3.5 * zhat ** 2 * beta))
    s2 = zhat ** 3 * tau ** 3 / 12
    loss = 0.5 * (zhat - z) ** 2
    over = np.nonzero(z > zhat)[0]
    if len(over):
        k = over[0]
        loss[k:] = 0.0
        s1[k:], s2[k:] = s1[k], s2[k]
    return {"loss": loss, "s1": s1, "s2": s2}


def _tau(d: pd.DataFrame, epoch) -> pd.Series:
    """tau~ = beta^2 lr epoch = lr0 epoch (lr = lr0 / beta^2)."""
    lr = np.array([linear_lr(z, gv) for z, gv in zip(d[ZHAT], d["init.g"])])
    return pd.Series(np.asarray(epoch, float) * lr / (1 - d["init.g"].to_numpy(float) ** 2) ** 2, index=d.index)


def plot(metrics: pd.DataFrame) -> Figure:
    zs = values(metrics, ZHAT) or [1.0]
    with rc_context(STYLE):
        fig, axes = new_figure(2, len(zs), (max(5.5 * len(zs) + 1, 9.0), 8.5))
        if metrics.empty:
            for ax in axes.ravel():
                empty_panel(ax, "no table")
            return fig
        m = metrics if ZHAT in metrics else metrics.assign(**{ZHAT: 1.0})
        for j, z in enumerate(zs):
            a, b = axes[0, j], axes[1, j]
            a.set_title(f"A{j + 1}  loss, zhat={z:g}", loc="left")
            b.set_title(f"B{j + 1}  singular values of dW, zhat={z:g}", loc="left")
            dz = m[m[ZHAT] == z]
            gs = pick_gs(values(dz, "init.g"), G_WANT, tol=0.15)
            cols = dict(zip(gs, palette(max(len(gs), 2), "viridis")))
            tl = dz[dz["metric"] == "train_loss"]
            sv = vectors_over_epochs(dz, "dW_sv")
            tmax = 0.0
            for gv in gs:
                d = tl[tl["init.g"] == gv].copy()
                if d.empty:
                    continue
                d["tau"] = _tau(d, d["epoch"])
                s = d.groupby("tau")["value"].agg(["mean", lambda x: x.std(ddof=0)]).reset_index()
                s.columns = ["tau", "mean", "std"]
                draw_mean_std(a, s, "tau", cols[gv], f"g={gv:g} simulation", style="-")
                grid = np.sort(s["tau"].to_numpy())
                th = theory(z, gv, grid)
                a.plot(grid, th["loss"], "--", color=cols[gv], lw=1.2, label=f"g={gv:g} theory (3rd order)")
                tmax = max(tmax, float(grid.max()))
                if sv.empty:
                    continue
                nets = dz[dz["init.g"] == gv].drop_duplicates(NET)
                rows_ = sv[sv.index.droplevel("epoch").isin(pd.MultiIndex.from_frame(nets[NET]))]
                if rows_.empty:
                    continue
                ep = rows_.index.get_level_values("epoch")
                mean = rows_.groupby(ep).mean()
                tau = _tau(nets.iloc[[0] * len(mean)].reset_index(drop=True), mean.index.to_numpy()).to_numpy()
                for k, ls in zip(mean.columns[:3], ("-", "-", "-")):
                    b.plot(tau, mean[k].to_numpy(), ls, color=cols[gv], lw=1.5 if k == mean.columns[0] else 0.9,
                           alpha=1.0 if k == mean.columns[0] else 0.7, label=f"g={gv:g} s1-s3" if k == mean.columns[0] else None)
                thb = theory(z, gv, np.linspace(0, tau.max(), 200))
                b.plot(np.linspace(0, tau.max(), 200), thb["s1"], "--", color=cols[gv], lw=1.2)
                b.plot(np.linspace(0, tau.max(), 200), thb["s2"], "-.", color=cols[gv], lw=1.2)
            a.set_xlabel("effective learning time tau~ = beta^2 lr epoch")
            a.set_ylabel("training loss")
            xmax = min(tmax, 1.2 / z) if tmax else None   # the authors show up to ~1.9 (zhat=0.5), ~0.6 (zhat=2)
            a.set_xlim(0, xmax)
            a.legend(fontsize=6)
            b.set_xlabel("effective learning time tau~")
            b.set_ylabel("singular value of dW")
            b.set_xlim(0, xmax)
            if sv.empty:
                empty_panel(b, f"dW_sv over training: {NOT_RECORDED}")
            else:
                b.plot([], [], "--", color="black", label="s1 theory (3rd order)")
                b.plot([], [], "-.", color="black", label="s2 = zhat^3 tau~^3 / 12")
                b.legend(fontsize=6)
                note(b, "solid: simulation s1 (thick), s2, s3 (thin); mean over networks", "lower right")
        suptitle(fig, TITLE + "\nmean +- std over networks; dashed: the authors' third-order expansion,\ncut where "
                 "the readout z reaches zhat", m, extra="no-k")
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """No claim: LR5 tests the end-of-training relations of the same runs."""
    return []
