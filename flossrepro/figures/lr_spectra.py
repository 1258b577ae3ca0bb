"""Low-rank study, spectra at the end (their supplement): singular values and eigenvalues of W and dW.

A row per task (flip-flop, Mante, Romo), one colour per g (the g nearest 0, 0.9 and 1.8):

- **A**: singular values of W at the end (mean +- std over networks; W0's in grey, dashed);
- **B**: singular values of dW = W - W0 (the first 25, mean +- std);
- **C**: eigenvalues of W at the end (one network per g; W0's in grey);
- **D**: eigenvalues of dW (one network per g).

Reads ``W_sv``, ``W0_sv``, ``dW_sv``, ``eig_W_re/im``, ``eig_W0_re/im``, ``eig_dW_re/im``; a panel
whose metric the table lacks says so. A g where not every network converged is left out. No claim.
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures.data import NET, values
from flossrepro.figures.lowrank_common import (NOT_RECORDED, TASK_LABEL, TASKS, converged_values, draw_mean_std, has,
                                               left_out_items, left_out_note, pick_gs, table, task_rows, vectors)
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, note, palette, suptitle

EXPERIMENTS = ("lr_flipflop", "lr_mante", "lr_romo")
STUDY = "lowrank"
TITLE = "Low-rank study: singular values and eigenvalues of W and dW at the end (the g nearest 0, 0.9 and 1.8)"
PANELS = {"A": "singular values of W (W0 dashed), mean +- std", "B": "singular values of dW, mean +- std",
          "C": "eigenvalues of W (W0 in grey), one network per g", "D": "eigenvalues of dW, one network per g"}
METRICS = ("final_loss", "loss_W0", "convergence_epoch", "W_sv", "W0_sv", "dW_sv", "eig_W_re", "eig_W_im",
           "eig_W0_re", "eig_W0_im", "eig_dW_re", "eig_dW_im")
CLAIMS: dict = {}
CLAIM_PANELS: dict = {}
G_WANT = (0.0, 0.9, 1.8)


def _sv_panel(ax, d: pd.DataFrame, t: pd.DataFrame, metric: str, gs: list, cols: dict, cut: int | None,
              ls: str = "-", label: bool = True) -> bool:
    sv = vectors(d, metric)
    if sv.empty:
        return False
    for gv in gs:
        f = sv.loc[[n for n in t.index[t["init.g"] == gv] if n in sv.index]]
        if len(f) == 0:
            continue
        f = f.iloc[:, :cut] if cut else f
        m = pd.DataFrame({"x": f.columns.astype(float), "mean": f.mean().to_numpy(), "std": f.std(ddof=0).to_numpy()})
        m = m[m["mean"] > 0]
        draw_mean_std(ax, m, "x", cols[gv] if label else "#999999", f"g={gv:g} (n={len(f)})" if label else None,
                      style=ls, log=True)
    return True


def _eig_panel(ax, d: pd.DataFrame, t: pd.DataFrame, m: str, gs: list, cols: dict, grey: str | None = None) -> bool:
    re, im = vectors(d, f"eig_{m}_re"), vectors(d, f"eig_{m}_im")
    if re.empty:
        return False
    for gv in gs:
        nets = [n for n in t.index[t["init.g"] == gv] if n in re.index]
        if not nets:
            continue
        ax.scatter(re.loc[nets[0]], im.loc[nets[0]], s=4, alpha=0.7, color=grey or cols[gv],
                   label=None if grey else f"g={gv:g}")
    return True


def plot(metrics: pd.DataFrame) -> Figure:
    with rc_context(STYLE):
        fig, axes = new_figure(len(TASKS), 4, (17, 3.9 * len(TASKS)))
        for i, task in enumerate(TASKS):
            a, b, c, e = axes[i]
            for ax, letter, what in ((a, "A", "singular values of W"), (b, "B", "singular values of dW"),
                                     (c, "C", "eigenvalues of W"), (e, "D", "eigenvalues of dW")):
                ax.set_title(f"{letter}{i + 1}  {TASK_LABEL[task]}: {what}", loc="left")
            d = task_rows(metrics, task)
            if d.empty:
                for ax in (a, b, c, e):
                    empty_panel(ax, f"{task}: not run (experiment lr_{task})")
                continue
            t = table(d).set_index(NET)
            keep, left = converged_values(t)
            picked = pick_gs(values(t, "init.g"), G_WANT)
            gs = [v for v in picked if v in keep]
            cols = dict(zip(gs, palette(max(len(gs), 2), "viridis")))
            lost = {"": [x for x in left if float(x.split()[0]) in picked]}
            if not gs:
                for ax in (a, b, c, e):
                    empty_panel(ax, "no g near 0, 0.9 or 1.8 where\nevery network converged; left out:\n"
                                + "\n".join(left_out_items(lost)))
                continue
            drawn = {}
            drawn[a] = _sv_panel(a, d, t, "W_sv", gs, cols, None)
            if drawn[a]:
                _sv_panel(a, d, t, "W0_sv", gs[-1:], cols, None, ls="--", label=False)
                note(a, "grey dashed: W0 (largest g)" if has(d, "W0_sv") else f"W0_sv: {NOT_RECORDED}", "lower left")
            drawn[b] = _sv_panel(b, d, t, "dW_sv", gs, cols, 25, ls="o-")
            drawn[c] = _eig_panel(c, d, t, "W", gs, cols)
            if drawn[c]:
                _eig_panel(c, d, t, "W0", gs[-1:], cols, grey="#bbbbbb")
            drawn[e] = _eig_panel(e, d, t, "dW", gs, cols)
            names = {a: "W_sv", b: "dW_sv", c: "eig_W_re/im", e: "eig_dW_re/im"}
            for ax in (a, b, c, e):
                if not drawn[ax]:
                    empty_panel(ax, f"{names[ax]}: {NOT_RECORDED}")
                    continue
                if ax in (a, b):
                    ax.set_yscale("log")
                    ax.set_xlabel("index")
                    ax.set_ylabel("singular value")
                else:
                    ax.set_xlabel("Re")
                    ax.set_ylabel("Im")
                ax.legend(fontsize=6.5, loc="upper right")
                left_out_note(ax, lost, loc="upper left" if ax is not a else "center left")
        suptitle(fig, TITLE, metrics, extra="no-k")
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """No claim: the supplement's spectra."""
    return []
