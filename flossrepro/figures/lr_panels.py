"""Panels shared by the low-rank study's figure modules (not a figure module itself): the figure of an
open question's comparison (LR6 optimisers, LR7 flossing schedules)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import lr_compare as st
from flossrepro.figures.claims import Rule
from flossrepro.figures.data import NET
from flossrepro.figures.lowrank_common import draw_mean_std, vectors
from flossrepro.figures.plotting import STYLE, empty_panel, jitter, new_figure, suptitle

LINESTYLES = ("-", "--", ":", "-.")


def _dots(ax, t: pd.DataFrame, col: str, grps: list, names: list, key: str, conds: list, colors: dict, labels: dict) -> None:
    """A dot per network and the mean as a bar, per group and condition."""
    w = 0.8 / max(len(conds), 1)
    for i, k in enumerate(grps):
        for j, o in enumerate(conds):
            s = t[(t["_grp"] == k) & (t[key] == o)][col].dropna()
            x = i + (j - (len(conds) - 1) / 2) * w
            if len(s):
                ax.scatter(x + jitter(len(s), w / 5, seed=i * 7 + j), s, s=9, color=colors.get(o), alpha=0.6)
                ax.plot([x - w / 3, x + w / 3], [s.mean()] * 2, color=colors.get(o), lw=2,
                        label=labels.get(o, o) if i == 0 else None)
    ax.set_xticks(range(len(grps)), names, fontsize=7)
    ax.legend(fontsize=6.5)


def compare_figure(metrics: pd.DataFrame, rule: Rule, colors: dict, title: str) -> Figure:
    """A: effective rank of dW at matched training loss; B: functional rank; C: singular values of
    dW at the end (mean +- std); D: training loss (mean +- std) with each group's matched level."""
    key, ref, labels, by = rule.p("key"), rule.p("ref"), rule.p("labels"), list(rule.p("by"))
    with rc_context(STYLE):
        fig, axes = new_figure(1, 4, (19, 4.6))
        if metrics.empty or key not in metrics:
            for ax in axes[0]:
                empty_panel(ax, "no table")
            return fig
        t, grps, levels = st.compare_table(metrics, rule)
        names = [st.group_name(by, k) for k in grps]
        conds = [o for o in (ref,) + tuple(rule.p("others")) if o in set(t[key])]
        a, b, c, d = axes[0]
        a.set_title("A  effective rank of dW at matched training loss", loc="left")
        _dots(a, t, "er_matched", grps, names, key, conds, colors, labels)
        b.set_title("B  functional rank (networks that solve the task)", loc="left")
        _dots(b, t, "rank", grps, names, key, conds, colors, labels)
        c.set_title("C  singular values of dW at the end", loc="left")
        d.set_title("D  training loss (10-epoch mean; grey: matched)", loc="left")
        sv = vectors(metrics, "dW_sv")
        tl = st.smoothed_loss(metrics)
        tl = tl.pivot_table(index=NET, columns="epoch", values="smooth") if len(tl) else pd.DataFrame()
        tt = t.set_index(NET)
        for i, k in enumerate(grps):
            ls = LINESTYLES[i % len(LINESTYLES)]
            for o in conds:
                idx = tt.index[(tt["_grp"] == k) & (tt[key] == o)]
                for ax, frame, cut in ((c, sv, 25), (d, tl, None)):
                    f = frame.loc[[n for n in idx if n in frame.index]] if len(frame) else frame
                    if len(f) == 0:
                        continue
                    f = f.iloc[:, :cut] if cut else f
                    m = pd.DataFrame({"x": f.columns.astype(float), "mean": f.mean().to_numpy(),
                                      "std": f.std(ddof=0).to_numpy()})
                    draw_mean_std(ax, m, "x", colors.get(o), f"{labels.get(o, o)}, {names[i]}",
                                  style=ls if ax is d else ls + "o", log=True)
            if i in levels:
                d.axhline(levels[i], color="grey", ls=ls, lw=0.8)
        for ax, xl, yl in ((c, "index", "singular value"), (d, "epoch", "training loss")):
            ax.set_yscale("log")
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.legend(fontsize=5.5)
        for ax in (a, b):
            ax.set_ylabel("effective rank" if ax is a else "functional rank")
        suptitle(fig, title + "\nA, B: a dot per network, the bar the mean; C, D: mean +- std", metrics, extra="no-k")
    return fig


def reshape_trace(v: np.ndarray, width: int) -> np.ndarray:
    """A flattened time-major trace (length ``T * width``) as ``[T, width]``."""
    v = np.asarray(v, float)
    v = v[~np.isnan(v)] if np.isnan(v).any() else v
    n = len(v) // max(int(width), 1)
    return v[: n * int(width)].reshape(n, int(width))
