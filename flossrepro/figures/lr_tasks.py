"""Low-rank study, the tasks (their Fig 1): loss curves, the spectrum of dW and the truncation curves (LR1).

- **A**: training loss vs epochs on flip-flop, Mante and Romo, one colour per g (a 10-epoch running
  mean: one batch per epoch);
- **B**: singular values of ``dW = W - W0`` at the end (the first 25);
- **C**: truncation curves: test loss with ``W0 + dW_r`` relative to ``W0`` alone, vs the rank ``r``;
  the dashed line is the 5% criterion of the functional rank;
- **D**: eigenvalues of ``W0`` and ``W`` at the end for one network per task at the g nearest 0.9:
  the random bulk and a few outliers.

Mean +- std over networks (the authors' aggregation); a g where not every network converged is
left out, and the panel says so. Claim LR1 is declared below (``RULES``, statistic in ``lr_stats``).
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import lr_stats as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.data import NET, values
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import (AUTHORS_RANK, TASK_LABEL, TASKS, converged_values, draw_mean_std,
                                               left_out_note, nearest, table, task_rows, vectors)
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, palette, suptitle

EXPERIMENTS = ("lr_flipflop", "lr_mante", "lr_romo")
STUDY = "lowrank"
TITLE = "Low-rank study: tasks, spectra of dW and truncation (flip-flop, Mante, Romo)"
PANELS = {"A": "training loss vs epochs, one colour per g",
          "B": "singular values of dW at the end, mean +- std per g",
          "C": "truncation curves: loss of W0 + dW_r relative to W0 vs rank r",
          "D": "eigenvalues of W0 and W at the end (one network per task, g nearest 0.9)"}
METRICS = _METRICS
RANK_SMALL = 15       # 1.5 x the largest functional rank the authors show (~9.8: flip-flop g=1.8, N=1024)
OUTLIERS_MAX = 15     # eigenvalues of W outside W0's bulk: no more than the rank cap
BULK_MARGIN = 0.1
SMOOTH = 10           # epochs of the running mean over the training loss (one batch per epoch)

RULES = (
    Rule("LR1", quote="the deviation from the initial values is very low rank (rank 6 at most for an RNN with 256 "
                      "units) ... a gradient-decent algorithm, which is not constrained to operate in low-dimension, "
                      "results in a low-rank change to the connectivity matrix",
         where="NeurIPS 2020 reviews (R1, R3 summaries); the authors' figures_nonlinear (functional rank vs g)",
         paper="dW has low functional rank on every task: a handful of components, far below N = 256; W keeps the "
               "random bulk of W0 plus a few outliers",
         authors="functional rank per g (N=256): flip-flop ~2 (g=0), ~5 (g=0.9), ~9 (g=1.8); Mante ~5 / ~4.5 / ~9; "
                 "Romo ~6-7 at every g; truncation loss close to 0 before rank ~10 everywhere",
         claim=f"on every task and at every g, each g on its own (a g where not every network converged is left out, "
               f"as the authors leave it out): the median functional rank is at most {RANK_SMALL} (1.5 x the largest "
               f"the authors show, ~9.8; far below N); where W0 has a bulk (g > 0) at most {OUTLIERS_MAX} eigenvalues "
               f"of W lie beyond W0's spectral radius + {BULK_MARGIN}",
         stat=st.claim_low_rank, op="<=", threshold=RANK_SMALL,
         params={"bulk_margin": BULK_MARGIN, "outliers_max": OUTLIERS_MAX, "authors_rank": AUTHORS_RANK}, panel="C"),
)
CLAIMS = claim_texts(RULES)
CLAIM_PANELS = {r.id: r.panel for r in RULES}  # the panel each claim is read from (report's figure map)


def outliers(df: pd.DataFrame) -> pd.Series:
    """Per network: eigenvalues of W at the end beyond max|eig W0| + BULK_MARGIN."""
    return st.outliers(df, BULK_MARGIN)


def _by_g(frame: pd.DataFrame, t: pd.DataFrame, gv: float) -> pd.DataFrame:
    idx = t.index[t["init.g"] == gv]
    return frame.loc[[i for i in idx if i in frame.index]]


def plot(metrics: pd.DataFrame) -> Figure:
    with rc_context(STYLE):
        fig, axes = new_figure(4, 3, (13, 13))
        for j, task in enumerate(TASKS):
            d = task_rows(metrics, task)
            a, b, c, e = axes[0, j], axes[1, j], axes[2, j], axes[3, j]
            a.set_title(f"A{j + 1}  {TASK_LABEL[task]}: training loss", loc="left")   # a column per task
            b.set_title(f"B{j + 1}  {TASK_LABEL[task]}: singular values of dW", loc="left")
            c.set_title(f"C{j + 1}  {TASK_LABEL[task]}: truncation", loc="left")
            e.set_title(f"D{j + 1}  {TASK_LABEL[task]}: eigenvalues", loc="left")
            if d.empty:
                for ax in (a, b, c, e):
                    empty_panel(ax, f"{task}: not run (experiment lr_{task})")
                continue
            t = table(d).set_index(NET)
            gs, left = converged_values(t)
            cols = dict(zip(values(t, "init.g"), palette(len(values(t, "init.g")), "viridis")))
            tl = d[d["metric"] == "train_loss"].pivot_table(index=NET, columns="epoch", values="value")
            tl = tl.T.rolling(SMOOTH, min_periods=1).mean().T   # a running mean over the batch noise
            sv, tr = vectors(d, "dW_sv"), vectors(d, "trunc_loss")
            for gv in gs:
                for ax, frame, x0, log in ((a, tl, None, True), (b, sv, None, True), (c, tr, 0, True)):
                    f = _by_g(frame, t, gv)
                    if f.empty:
                        continue
                    if ax is c:   # relative to the loss of W0 alone, rank 0 = 1
                        f = f.div(t.loc[f.index, "loss_W0"], axis=0)
                        f.insert(0, 0, 1.0)
                    if ax is b:
                        f = f.iloc[:, :25]
                    m = pd.DataFrame({"x": f.columns.astype(float), "mean": f.mean().to_numpy(),
                                      "std": f.std(ddof=0).to_numpy(), "n": len(f)})
                    draw_mean_std(ax, m, "x", cols[gv], f"g={gv:g} (n={len(f)})" if ax is a else None,
                                  style="-" if ax is a else "o-", log=log)
            for ax, (xl, yl) in ((a, ("epoch", f"training loss ({SMOOTH}-epoch running mean)")), (b, ("index", "singular value")),
                                 (c, ("rank r", "loss(W0 + dW_r) / loss(W0)"))):
                ax.set_yscale("log")
                ax.set_xlabel(xl)
                ax.set_ylabel(yl)
                left_out_note(ax, {"": left} if left else {}, loc="lower left" if ax is not b else "upper right")
            c.axhline(0.05, color="black", ls="--", lw=1)
            a.legend(ncol=2, fontsize=6, loc="upper right")
            g1 = nearest(gs, 0.9) if gs else None
            nets = t.index[t["init.g"] == g1] if g1 is not None else []
            if len(nets):
                net = nets[0]
                for m_, col, lab in (("W0", "#999999", "W0"), ("W", "#d62728", "W")):
                    re, im = vectors(d, f"eig_{m_}_re"), vectors(d, f"eig_{m_}_im")
                    if net in re.index:
                        e.scatter(re.loc[net], im.loc[net], s=4, color=col, label=lab, alpha=0.7)
                e.set_aspect("equal", adjustable="datalim")
                e.legend(title=f"g={g1:g}, one network")
            e.set_xlabel("Re")
            e.set_ylabel("Im")
        suptitle(fig, TITLE + "\nmean +- std over networks", metrics, extra="no-k")
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim LR1 (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
