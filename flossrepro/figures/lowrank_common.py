"""Helpers shared by the low-rank study's figure modules (``lr_*``): one value per network from the
measures of :mod:`flossrepro.jobs.lowrank_measures`, medians against a setting, and claim parts.

A network is ``(run_id, member)``. Measures recorded once at the end (``functional_rank``,
``shuffle_loss``, ...) give one row per network; ``L0`` is a network's training loss at epoch 0
(their ``losses[0]``); a convergence epoch that was never reached is censored at the run's epochs
(a lower bound, so a slower condition is never made to look faster).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flossrepro.figures.claims import median_part, median_reps, part_from_reps
from flossrepro.figures.data import NET

#: what the lr_* figures read (per network; dW_sv over training for the spectra)
METRICS = ("train_loss", "test_loss", "dW_sv", "dW_norm", "W0_norm", "dW_rel_norm", "dW_effective_rank",
           "lambda1_init", "convergence_epoch", "functional_rank", "trunc_loss", "loss_W0", "final_loss",
           "shuffle_loss", "eig_W0_re", "eig_W0_im", "eig_W_re", "eig_W_im", "dW_align_u1_V", "dW_align_v1_wr")

TASK_LABEL = {"flipflop": "flip-flop", "mante": "Mante", "romo": "Romo", "binary_xor": "binary temporal XOR",
              "linear_fp": "linear fixed point"}


def settings(df: pd.DataFrame) -> pd.DataFrame:
    """One row of settings per network."""
    cols = [c for c in df.columns if c not in ("epoch", "metric", "index", "value")]
    return df[cols].drop_duplicates(NET).set_index(NET)


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
    out["rank"] = np.where(solved, out["functional_rank"].fillna(26.0), np.nan)
    return out.reset_index()


def medians_by(t: pd.DataFrame, col: str, value: str, by: str) -> pd.DataFrame:
    """Median, 25% and 75% of ``value`` per ``by`` (and ``col`` groups), with the network count."""
    g = t.dropna(subset=[value]).groupby([col, by] if col else [by])[value]
    return g.agg(median="median", q25=lambda x: x.quantile(0.25), q75=lambda x: x.quantile(0.75),
                 n="count").reset_index()


def diff_median_part(label: str, a: pd.DataFrame, b: pd.DataFrame, value: str, op: str, threshold: float, rng):
    """``median(b) - median(a)`` over networks, the two conditions resampled independently."""
    xa, xb = a[value].dropna().to_numpy(float), b[value].dropna().to_numpy(float)
    nets = set(map(tuple, a.dropna(subset=[value])[NET].to_numpy())) | set(map(tuple, b.dropna(subset=[value])[NET].to_numpy()))
    if len(xa) == 0 or len(xb) == 0:
        return part_from_reps(label, np.nan, np.array([np.nan]), op, threshold, nets)
    ma, ra = median_reps(xa, rng)
    mb, rb = median_reps(xb, rng)
    return part_from_reps(label, mb - ma, rb - ra, op, threshold, nets)


def frame_median_part(label: str, a: pd.DataFrame, value: str, op: str, threshold: float, rng):
    """The median of column ``value`` over the networks of ``a`` (:func:`claims.median_part`)."""
    ok = a.dropna(subset=[value])
    return median_part(label, ok[value].to_numpy(float), op, threshold, set(map(tuple, ok[NET].to_numpy())), rng)


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
