"""Helpers shared by the low-rank study's figure modules (``lr_*``): one value per network from the
measures of :mod:`flossrepro.jobs.lowrank_measures`, the authors' aggregation for the panels and
small table helpers. The claims' statistics are in :mod:`flossrepro.figures.lr_stats`.

A network is ``(run_id, member)``. Measures recorded once at the end (``functional_rank``,
``shuffle_loss``, ...) give one row per network; ``L0`` is a network's training loss at epoch 0
(their ``losses[0]``); a convergence epoch that was never reached is censored at the run's epochs
(a lower bound, so a slower condition is never made to look faster). A network has *converged*
when its training loss reached 5% of L0 and its final W reaches the functional-rank criterion (so
its functional rank exists): the authors' mask (``epochs_c > 0`` and ``ranks_c > 0``).

Panels follow the authors: mean +- std over networks, and a point (a g, an N) is left out unless
every one of its networks converged (:func:`mean_std`); the panel says which were left out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flossrepro.figures.data import NET
from flossrepro.figures.plotting import note

#: what the lr_* figures read (per network; dW_sv over training for the spectra)
METRICS = ("train_loss", "test_loss", "dW_sv", "dW_norm", "W0_norm", "dW_rel_norm", "dW_effective_rank",
           "lambda1_init", "convergence_epoch", "functional_rank", "trunc_loss", "loss_W0", "final_loss",
           "shuffle_loss", "eig_W0_re", "eig_W0_im", "eig_W_re", "eig_W_im", "dW_align_u1_V", "dW_align_v1_wr")

TASK_LABEL = {"flipflop": "flip-flop", "mante": "Mante", "romo": "Romo", "binary_xor": "binary temporal XOR",
              "linear_fp": "linear fixed point"}
TASKS = ("flipflop", "mante", "romo")
TASK_COLOR = {"flipflop": "#1f77b4", "mante": "#ff7f0e", "romo": "#2ca02c"}
NOT_RECORDED = "not recorded in this table"

#: the authors' values, read off their figures (SPEC-lowrank, +-10%; N = 256, mean over 5 networks):
#: functional rank and convergence epoch per task and g, and where their convergence time is lowest
AUTHORS_RANK = {"flipflop": {0.0: 2.0, 0.9: 5.0, 1.8: 9.0}, "mante": {0.0: 5.0, 0.9: 4.5, 1.8: 9.0},
                "romo": {0.0: 6.5, 0.9: 6.5, 1.8: 6.5, 3.0: 6.5}}   # "~6-7 at every g"
AUTHORS_CONV = {"flipflop": {0.9: 45.0, 1.2: 45.0, 1.8: 185.0}, "mante": {1.2: 40.0, 2.4: 550.0},
                "romo": {0.9: 320.0, 2.1: 60.0, 3.0: 85.0}}
AUTHORS_CONV_MIN = {"flipflop": 1.05, "mante": 1.2, "romo": 2.1}
#: their N scaling (flip-flop): functional rank per g and N
AUTHORS_NSCALE_RANK = {0.0: {64: 2.0, 1024: 2.0}, 0.9: {64: 4.6, 1024: 6.2}, 1.8: {64: 6.4, 1024: 9.8}}
RANK_ABOVE = 26.0   # a functional rank above rank_max (25): no truncation up to 25 reaches the criterion


def settings(df: pd.DataFrame) -> pd.DataFrame:
    """One row of settings per network."""
    cols = [c for c in df.columns if c not in ("epoch", "metric", "index", "value")]
    return df[cols].drop_duplicates(NET).set_index(NET)


def has(df: pd.DataFrame, metric: str) -> bool:
    return "metric" in df and bool((df["metric"] == metric).any())


def per_net(df: pd.DataFrame, metric: str, epoch: str = "last") -> pd.Series:
    """``metric`` per network (scalar rows): its value at the last (or ``"first"``) recorded epoch."""
    sub = df[(df["metric"] == metric) & df["index"].isna()] if "index" in df else df[df["metric"] == metric]
    if sub.empty:
        return pd.Series(dtype=float)
    sub = sub.sort_values("epoch")
    g = sub.groupby(NET)["value"]
    return g.last() if epoch == "last" else g.first()


def vectors(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Vector ``metric`` at each network's last recorded epoch: rows network, columns index."""
    sub = df[df["metric"] == metric]
    if sub.empty:
        return pd.DataFrame()
    last = sub.groupby(NET)["epoch"].transform("max")
    sub = sub[sub["epoch"] == last]
    return sub.pivot_table(index=NET, columns="index", values="value")


def vectors_over_epochs(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Vector ``metric`` at every recorded epoch: rows ``(run_id, member, epoch)``, columns index."""
    sub = df[df["metric"] == metric]
    if sub.empty:
        return pd.DataFrame()
    return sub.pivot_table(index=NET + ["epoch"], columns="index", values="value")


def effective_rank(s) -> np.ndarray:
    """Roy-Vetterli effective rank ``exp(H(s / sum s))`` of each row of singular values (the
    measure ``dW_effective_rank`` records): rows ``[n, k]`` -> ``[n]``."""
    s = np.clip(np.nan_to_num(np.atleast_2d(np.asarray(s, float))), 0, None)
    tot = s.sum(1, keepdims=True)
    p = np.divide(s, tot, out=np.zeros_like(s), where=tot > 0)
    h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0), axis=1)
    return np.where(tot[:, 0] > 0, np.exp(h), np.nan)


def table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per network: its settings and every end-of-run measure the claims use."""
    out = settings(df).copy()
    for m in ("functional_rank", "shuffle_loss", "final_loss", "loss_W0", "dW_norm", "W0_norm", "dW_rel_norm",
              "dW_effective_rank", "lambda1_init", "convergence_epoch"):
        out[m] = per_net(df, m)
    out["L0"] = per_net(df, "train_loss", "first")
    out["conv_censored"] = out["convergence_epoch"].isna()
    if "epochs" in out:
        out["conv"] = out["convergence_epoch"].fillna(out["epochs"].astype(float))
    else:
        out["conv"] = out["convergence_epoch"]
    out["shuffle_rel"] = out["shuffle_loss"] / out["L0"]
    # the functional rank is defined where the trained network itself reaches the criterion; where it
    # does but no truncation up to rank_max does, the rank is above rank_max (26)
    solved = out["final_loss"] < 0.05 * out["loss_W0"]
    out["solved"] = solved
    out["rank"] = np.where(solved, out["functional_rank"].fillna(RANK_ABOVE), np.nan)
    out["converged"] = solved & ~out["conv_censored"]
    return out.reset_index()


def task_rows(df: pd.DataFrame, task: str) -> pd.DataFrame:
    return df[df["task.name"] == task] if "task.name" in df else df.iloc[0:0]


def mean_std(t: pd.DataFrame, value: str, by: str, all_converged: bool = True) -> tuple[pd.DataFrame, list]:
    """The authors' aggregation: mean, std and count of ``value`` per ``by``; with
    ``all_converged`` a point is left out unless every one of its networks converged. Returns
    ``(frame with by, mean, std, n; left-out points as "by=v (k of n converged)")``."""
    rows, left = [], []
    for v, s in t.groupby(by):
        if all_converged and not bool(s["converged"].all()):
            left.append(f"{v:g} ({int(s['converged'].sum())} of {len(s)} converged)")
            continue
        x = s[value].dropna()
        if len(x):
            rows.append({by: v, "mean": float(x.mean()), "std": float(x.std(ddof=0)), "n": len(x)})
    return pd.DataFrame(rows, columns=[by, "mean", "std", "n"]), left


def draw_mean_std(ax, m: pd.DataFrame, by: str, color, label: str | None, style: str = "o-", log: bool = False) -> None:
    """A mean line with a +-std band (clipped above 0 on a log axis)."""
    if m.empty:
        return
    lo = m["mean"] - m["std"]
    if log:
        lo = lo.where(lo > 0, m["mean"] / 10)
    ax.plot(m[by], m["mean"], style, color=color, ms=3, lw=1.2, label=label)
    ax.fill_between(m[by], lo, m["mean"] + m["std"], color=color, alpha=0.2, lw=0)


def converged_values(t: pd.DataFrame, by: str = "init.g") -> tuple[list, list]:
    """``(values of by where every network converged, the others as "v (k of n converged)")``."""
    keep, left = [], []
    for v, s in t.groupby(by):
        if bool(s["converged"].all()):
            keep.append(v)
        else:
            left.append(f"{v:g} ({int(s['converged'].sum())} of {len(s)} converged)")
    return keep, left


def draw_authors(ax, ref: dict, label: str = "authors (read off their figure)") -> None:
    """The authors' values as black crosses."""
    if ref:
        ax.plot(list(ref), list(ref.values()), "x", color="black", ms=6, mew=1.5, label=label, zorder=5)


def left_out_items(left: dict, what: str = "g") -> list[str]:
    """``{label: ["v (k of n converged)", ...]}`` -> ``["label g=v (k of n converged)", ...]``."""
    return [f"{k + ' ' if k else ''}{what}={v}" for k, vs in left.items() for v in vs]


def left_out_text(left: dict, what: str = "g") -> str:
    """Which points were left out (not every network converged), in one line; "" when none."""
    items = left_out_items(left, what)
    return "left out (not every network converged): " + ", ".join(items) if items else ""


def left_out_note(ax, left: dict, what: str = "g", loc: str = "upper left") -> None:
    """Say on the panel which points were left out (not every network converged), one per line."""
    items = left_out_items(left, what)
    if items:
        note(ax, "left out (not every\nnetwork converged):\n" + "\n".join(items), loc)


def md_table(t: pd.DataFrame, cols: list[str], fmt: str = "{:.3g}") -> list[str]:
    """A small markdown table of ``t``'s ``cols``."""
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in t[cols].iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(fmt.format(v) if isinstance(v, (float, np.floating)) and np.isfinite(v) else
                         ("n/a" if isinstance(v, (float, np.floating)) else str(v)))
        out.append("| " + " | ".join(cells) + " |")
    return out


def nearest(values, x: float) -> float:
    """The value nearest ``x`` (the larger on a tie)."""
    v = sorted(values)
    return min(v, key=lambda a: (abs(a - x), -a))


def pick_gs(gs: list, want=(0.0, 0.9, 1.8), tol: float = 0.35) -> list:
    """For each wanted g, the nearest present one (within ``tol``), without repeats."""
    out = []
    for w in want:
        if gs:
            v = nearest(gs, w)
            if abs(v - w) <= tol and v not in out:
                out.append(v)
    return out
