"""Low-rank study, the tasks: loss curves, the spectrum of dW and the truncation curves (LR1).

- **A**: training loss vs epochs on flip-flop, Mante and Romo, one colour per g (median over networks);
- **B**: singular values of ``dW = W - W0`` at the end (median per g, the first 25);
- **C**: truncation curves: test loss with ``W0 + dW_r`` relative to ``W0`` alone, vs the rank ``r``;
  the dashed line is the 5% criterion of the functional rank;
- **D**: eigenvalues of ``W0`` and ``W`` at the end for one network per task at the g nearest 1:
  the random bulk and a few outliers.

Claim LR1: on every task the median functional rank of dW is at most 6 (the reviewers' figure at
N=256) among the networks that solve the task (the full W reaches the 5% criterion), and W has at
most 6 eigenvalues outside the bulk of W0 (radius of W0's spectrum + 0.1).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures.claims import Claim, Group, rng_for
from flossrepro.figures.data import NET, values
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import TASK_LABEL, frame_median_part, md_table, nearest, table, vectors
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, palette, suptitle

EXPERIMENTS = ("lr_flipflop", "lr_mante", "lr_romo")
STUDY = "lowrank"
TITLE = "Low-rank study: tasks, spectra of dW and truncation (flip-flop, Mante, Romo)"
PANELS = {"A": "training loss vs epochs, one colour per g",
          "B": "singular values of dW at the end, median per g",
          "C": "truncation curves: loss of W0 + dW_r relative to W0 vs rank r",
          "D": "eigenvalues of W0 and W at the end (one network per task, g nearest 1)"}
METRICS = _METRICS
TASKS = ("flipflop", "mante", "romo")
RANK_MAX_CLAIM = 6         # the reviewers' "rank <= 6 at N = 256"
OUTLIERS_MAX = 6           # eigenvalues of W outside W0's bulk
BULK_MARGIN = 0.1

CLAIM_PANELS = {"LR1": "C"}  # the panel each claim is read from (report's figure map)
CLAIMS = {"LR1": f"dW has low functional rank on all three tasks (median <= {RANK_MAX_CLAIM} among networks that "
                 f"solve the task) while W keeps the random bulk of W0 plus few outliers (median <= {OUTLIERS_MAX} "
                 f"eigenvalues of W beyond W0's spectral radius + {BULK_MARGIN})"}


def _task_rows(df: pd.DataFrame, task: str) -> pd.DataFrame:
    return df[df["task.name"] == task] if "task.name" in df else df.iloc[0:0]


def outliers(df: pd.DataFrame) -> pd.Series:
    """Per network: eigenvalues of W at the end with modulus > max|eig W0| + BULK_MARGIN."""
    re0, im0, re, im = (vectors(df, m) for m in ("eig_W0_re", "eig_W0_im", "eig_W_re", "eig_W_im"))
    if re.empty or re0.empty:
        return pd.Series(dtype=float)
    r0 = np.sqrt(re0 ** 2 + im0 ** 2).max(axis=1)
    mod = np.sqrt(re ** 2 + im ** 2)
    return (mod.gt(r0 + BULK_MARGIN, axis=0)).sum(axis=1).astype(float)


def plot(metrics: pd.DataFrame) -> Figure:
    with rc_context(STYLE):
        fig, axes = new_figure(4, 3, (13, 13))
        for j, task in enumerate(TASKS):
            d = _task_rows(metrics, task)
            gs = values(d, "init.g")
            cols = dict(zip(gs, palette(len(gs), "viridis")))
            a, b, c, e = axes[0, j], axes[1, j], axes[2, j], axes[3, j]
            a.set_title(f"A{j + 1}  {TASK_LABEL[task]}: training loss", loc="left")   # a column per task
            b.set_title(f"B{j + 1}  {TASK_LABEL[task]}: singular values of dW", loc="left")
            c.set_title(f"C{j + 1}  {TASK_LABEL[task]}: truncation", loc="left")
            e.set_title(f"D{j + 1}  {TASK_LABEL[task]}: eigenvalues", loc="left")
            if d.empty:
                for ax in (a, b, c, e):
                    empty_panel(ax, f"{task}: not run (experiment lr_{task})")
                continue
            tl = d[d["metric"] == "train_loss"]
            for gv in gs:
                s = tl[tl["init.g"] == gv].groupby("epoch")["value"].median()
                a.plot(s.index, s.values, color=cols[gv], lw=1, label=f"g={gv:g}")
            a.set_yscale("log")
            a.set_xlabel("epoch")
            a.set_ylabel("training loss")
            a.legend(ncol=2, fontsize=6)
            sv = vectors(d, "dW_sv")
            st = d.drop_duplicates(NET).set_index(NET)["init.g"]
            if not sv.empty:
                for gv in gs:
                    rows_ = sv[st.reindex(sv.index).to_numpy() == gv]
                    if len(rows_):
                        m = rows_.median(axis=0).to_numpy()[:25]
                        b.plot(np.arange(1, len(m) + 1), m, "o-", ms=2, color=cols[gv], lw=1)
                b.set_yscale("log")
            b.set_xlabel("index")
            b.set_ylabel("singular value")
            tr = vectors(d, "trunc_loss")
            t = table(d).set_index(NET)
            if not tr.empty:
                for gv in gs:
                    idx = [i for i in tr.index if t.loc[i, "init.g"] == gv]
                    if idx:
                        rel = tr.loc[idx].div(t.loc[idx, "loss_W0"], axis=0)
                        m = rel.median(axis=0)
                        c.plot([0] + list(m.index), [1.0] + list(m.values), "o-", ms=2, color=cols[gv], lw=1)
                c.axhline(0.05, color="black", ls="--", lw=1)
                c.set_yscale("log")
            c.set_xlabel("rank r")
            c.set_ylabel("loss(W0 + dW_r) / loss(W0)")
            g1 = nearest(gs, 1.0) if gs else None
            nets = t[t["init.g"] == g1].index if g1 is not None else []
            if len(nets):
                net = nets[0]
                for m, col, lab in (("W0", "#999999", "W0"), ("W", "#d62728", "W")):
                    re, im = vectors(d, f"eig_{m}_re"), vectors(d, f"eig_{m}_im")
                    if net in re.index:
                        e.scatter(re.loc[net], im.loc[net], s=4, color=col, label=lab, alpha=0.7)
                e.set_aspect("equal", adjustable="datalim")
                e.legend(title=f"g={g1:g}")
            e.set_xlabel("Re")
            e.set_ylabel("Im")
        suptitle(fig, TITLE, metrics, extra="no-k")
    return fig


def claims(metrics: pd.DataFrame) -> list[Claim]:
    c, rng = Claim("LR1", CLAIMS["LR1"]), rng_for("LR1")
    lines, lost = [], []
    for task in TASKS:
        d = _task_rows(metrics, task)
        if d.empty:
            lost.append(task)
            continue
        t = table(d)
        out = outliers(d)
        t["outliers"] = out.reindex(pd.MultiIndex.from_frame(t[NET])).to_numpy() if len(out) else np.nan
        solved = t[t["solved"]]
        c.groups.append(Group(TASK_LABEL[task], [
            frame_median_part("median functional rank (solving networks)", solved, "rank", "<=", RANK_MAX_CLAIM, rng),
            frame_median_part("median outliers of W", t, "outliers", "<=", OUTLIERS_MAX, rng)]))
        per_g = t.groupby("init.g").agg(networks=("rank", "size"), solved=("solved", "sum"),
                                        median_rank=("rank", "median"), median_outliers=("outliers", "median"),
                                        median_effective_rank=("dW_effective_rank", "median")).reset_index()
        lines += [f"{TASK_LABEL[task]}: per g (functional rank 26 = above 25; only networks whose full W reaches "
                  f"the 5% criterion have one):", ""] + md_table(per_g, list(per_g.columns)) + [""]
    if lost:
        c.missing = f"not run: {', '.join(lost)}"
    c.detail = lines
    return [c]
