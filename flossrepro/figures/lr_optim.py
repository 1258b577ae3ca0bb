"""Low-rank study, LR6 (the reviewers' open question): does the optimiser change the rank of dW?

Flip-flop, rate network; Adam (lr 0.05 / N), plain SGD (lr 0.05), SGD with momentum 0.9 (lr 0.005).

- **A**: effective rank of dW (Roy-Vetterli, ``exp`` of the entropy of the normalised singular
  values) at the end, per optimiser and g (a dot per network, the median as a bar);
- **B**: functional rank (networks that solve the task), per optimiser and g;
- **C**: singular values of dW at the end (median per optimiser, g nearest 1);
- **D**: training loss vs epochs per optimiser (g nearest 1).

LR6 is open: the answer is the difference of the median effective rank of dW, SGD minus Adam and
SGD with momentum minus Adam, per g, with its 95% interval. ``reproduced`` reads "SGD gives a
higher-rank dW", ``not reproduced`` "a lower-rank dW", ``inconclusive`` "no difference resolved".
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures.claims import Claim, Group, rng_for
from flossrepro.figures.data import NET, values
from flossrepro.figures.lowrank_common import METRICS as _METRICS
from flossrepro.figures.lowrank_common import diff_median_part, md_table, nearest, table, vectors
from flossrepro.figures.plotting import STYLE, empty_panel, jitter, new_figure, suptitle

EXPERIMENTS = ("lr_optim",)
STUDY = "lowrank"
TITLE = "Low-rank study: the rank of dW by optimiser (Adam, SGD, SGD with momentum; flip-flop)"
PANELS = {"A": "effective rank of dW by optimiser and g", "B": "functional rank by optimiser and g",
          "C": "singular values of dW by optimiser (g nearest 1)", "D": "training loss by optimiser (g nearest 1)"}
METRICS = _METRICS
OPTS = ("adam", "sgd", "sgdm")
OPT_LABEL = {"adam": "Adam", "sgd": "SGD", "sgdm": "SGD + momentum"}
OPT_COLOR = {"adam": "#1f77b4", "sgd": "#d62728", "sgdm": "#2ca02c"}

CLAIM_PANELS = {"LR6": "A"}  # the panel each claim is read from (report's figure map)
CLAIMS = {"LR6": "open question, does the optimiser change the rank of dW? Tested as: the median effective rank of "
                 "dW under SGD (with and without momentum) exceeds that under Adam, at every g (not reproduced: "
                 "lower; inconclusive: no difference resolved)"}


def _dots(ax, t: pd.DataFrame, col: str, gs: list) -> None:
    for i, gv in enumerate(gs):
        for j, o in enumerate(OPTS):
            s = t[(t["init.g"] == gv) & (t["optim.name"] == o)][col].dropna()
            x = i + (j - 1) * 0.25
            if len(s):
                ax.scatter(x + jitter(len(s), 0.05, seed=i * 3 + j), s, s=8, color=OPT_COLOR[o], alpha=0.6)
                ax.plot([x - 0.1, x + 0.1], [s.median()] * 2, color=OPT_COLOR[o], lw=2,
                        label=OPT_LABEL[o] if i == 0 else None)
    ax.set_xticks(range(len(gs)), [f"g={g:g}" for g in gs])
    ax.legend()


def plot(metrics: pd.DataFrame) -> Figure:
    with rc_context(STYLE):
        fig, axes = new_figure(1, 4, (17, 4.2))
        if metrics.empty or "optim.name" not in metrics:
            for ax in axes[0]:
                empty_panel(ax, "no table")
            return fig
        t = table(metrics)
        gs = values(t, "init.g")
        a, b, c, d = axes[0]
        a.set_title("A  effective rank of dW", loc="left")
        _dots(a, t, "dW_effective_rank", gs)
        b.set_title("B  functional rank (solving networks)", loc="left")
        _dots(b, t, "rank", gs)
        g1 = nearest(gs, 1.0)
        c.set_title(f"C  singular values of dW (g={g1:g})", loc="left")
        sv = vectors(metrics, "dW_sv")
        st = t.set_index(NET)
        for o in OPTS:
            idx = [i for i in sv.index if i in st.index and st.loc[i, "optim.name"] == o and st.loc[i, "init.g"] == g1]
            if idx:
                m = sv.loc[idx].median(axis=0).to_numpy()[:25]
                c.plot(np.arange(1, len(m) + 1), m, "o-", ms=2, color=OPT_COLOR[o], label=OPT_LABEL[o])
        c.set_yscale("log")
        c.set_xlabel("index")
        c.legend()
        d.set_title(f"D  training loss (g={g1:g})", loc="left")
        tl = metrics[(metrics["metric"] == "train_loss") & (metrics["init.g"] == g1)]
        for o in OPTS:
            s = tl[tl["optim.name"] == o].groupby("epoch")["value"].median()
            if len(s):
                d.plot(s.index, s.values, color=OPT_COLOR[o], lw=1, label=OPT_LABEL[o])
        d.set_yscale("log")
        d.set_xlabel("epoch")
        d.legend()
        suptitle(fig, TITLE, metrics, extra="no-k")
    return fig


def claims(metrics: pd.DataFrame) -> list[Claim]:
    c, rng = Claim("LR6", CLAIMS["LR6"]), rng_for("LR6")
    if metrics.empty or "optim.name" not in metrics:
        c.missing = "no table"
        return [c]
    t = table(metrics)
    lack = [o for o in OPTS if o not in values(t, "optim.name")]
    if lack:
        c.missing = f"not run: {', '.join(lack)}"
    for gv in values(t, "init.g"):
        s = t[t["init.g"] == gv]
        adam = s[s["optim.name"] == "adam"]
        parts = [diff_median_part(f"median eff. rank {OPT_LABEL[o]} - Adam", adam, s[s["optim.name"] == o],
                                  "dW_effective_rank", ">", 0.0, rng) for o in ("sgd", "sgdm")]
        c.groups.append(Group(f"g={gv:g}", parts))
    per = t.groupby(["init.g", "optim.name"]).agg(
        networks=("dW_effective_rank", "size"), median_eff_rank=("dW_effective_rank", "median"),
        solved=("solved", "sum"), median_functional_rank=("rank", "median"), median_dW_norm=("dW_norm", "median"),
        never_converged=("conv_censored", "sum"), median_final_loss=("final_loss", "median")).reset_index()
    c.detail = ["Per optimiser and g (functional rank 26 = above 25, defined for solving networks only):", ""] + \
        md_table(per, list(per.columns))
    return [c]
