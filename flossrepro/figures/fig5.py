"""Fig 5 (A-B): how many Lyapunov exponents must be flossed during training.

Flossing during training (episodes at 0,100,...,400) with k flossed exponents, binary temporal
XOR and spatial XOR (one row of panels per task). The k sweep is ``conf/experiment/fig5.yaml``;
the largest k (k=75 at paper and small scale) comes from the ``during`` runs of
``conf/experiment/fig4.yaml`` (the same settings), so both tables are read. Only
``flossing.schedule == "during"`` rows are used here (Fig 7 shows the ``pre`` runs).

- **A**: final test accuracy (last evaluation of each network; diverged -> 0.5) vs delay, one
  colour per k: a dot per network and the median line; chance 0.5 dashed.
- **B**: the same numbers vs k (log axis), one line (median) per delay.

Claim 5AB is defined below. The helpers here (final accuracy per (k, delay) cell, the
(delay x k) median table, the sweep's planned k and delays) are shared with Fig 7.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import experiments; from flossrepro.figures import planned
from flossrepro.figures.claims import (Claim, Group, g, part_from_reps, replicates, rng_for, scale_of)
from flossrepro.figures.common_task import finals
from flossrepro.figures.data import fmt_setting, network_values, rows, values
from flossrepro.figures.plotting import (STYLE, dots_and_median, empty_panel, jitter, new_figure, note, palette, suptitle)

EXPERIMENTS = ("fig5", "fig4")
STUDY = "flossing"
TITLE = "Fig 5: number of flossed exponents k, flossing during training (binary temporal XOR, spatial XOR)"
PANELS = {"A": "final test accuracy vs delay, one colour per k (flossing during training; a row per task)",
          "B": "final test accuracy vs k, one line per delay (flossing during training; a row per task)"}
METRICS = ("test_accuracy",)

TASKS = [("binary_xor", "binary temporal XOR"), ("spatial_xor", "spatial XOR")]
SCHEDULE = "during"
SOLVED = 0.8           # a delay is solved at k when the median final accuracy > SOLVED
CHANCE_ACC = 0.5

CLAIMS = {
    "5AB": f"the largest delay solved (median final accuracy > {SOLVED}) grows with k: "
           f"solved(largest k) - solved(smallest k) > 0, for both tasks",
}


# ----------------------------------------------------------------------------- the table
def k_finals(df: pd.DataFrame, task: str, schedule: str) -> pd.DataFrame:
    """One row per network of ``task`` run with ``schedule``: its final test accuracy (diverged -> 0.5)."""
    f = finals(df, "test_accuracy", task, CHANCE_ACC)
    if f.empty or "flossing.schedule" not in f.columns or "flossing.k" not in f.columns:
        return f.iloc[0:0]
    f = f[f["flossing.schedule"] == schedule]
    if "experiment_name" in f.columns:
        # a (k, delay) cell that both sweeps ran (smoke scale: fig4's k is in fig5's sweep) holds
        # the same networks twice (same seeds and settings): keep the k sweep's
        own = f["experiment_name"] == EXPERIMENTS[0]
        cells = pd.MultiIndex.from_frame(f[["flossing.k", "task.delay"]])
        f = f[own | ~cells.isin(cells[own.to_numpy()])]
    return f


def k_cell(f: pd.DataFrame, k, delay) -> tuple[np.ndarray, list]:
    """``(values, networks)`` of one (k, delay) cell of a ``k_finals`` table."""
    return network_values(rows(f, flossing__k=k, task__delay=delay))


def medians(f: pd.DataFrame) -> pd.DataFrame:
    """Median final accuracy and network count per (delay, k)."""
    return f.groupby(["task.delay", "flossing.k"])["value"].agg(["median", "size"])


def k_table(f: pd.DataFrame, ks=None, delays=None) -> list[str]:
    """Markdown table: median final accuracy (networks) per delay (rows) and k (columns); ``-``
    where a cell was not run."""
    m = medians(f) if not f.empty else None
    ks = sorted(set(ks or []) | set(values(f, "flossing.k")))
    delays = sorted(set(delays or []) | set(values(f, "task.delay")))
    if not ks or not delays:
        return ["(no runs)"]
    out = ["| delay | " + " | ".join(f"k={fmt_setting(k)}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for d in delays:
        cells = [f"{g(m.loc[(d, k), 'median'])} ({int(m.loc[(d, k), 'size'])})"
                 if m is not None and (d, k) in m.index else "-" for k in ks]
        out.append(f"| {fmt_setting(d)} | " + " | ".join(cells) + " |")
    return out


def _scale(df: pd.DataFrame) -> str | None:
    s = scale_of(df)
    return s[0] if s else None


def fig4_k(scale: str | None) -> int | None:
    """``flossing.k`` of fig4's runs at ``scale`` (read from its yaml; None when unreadable)."""
    from omegaconf import OmegaConf

    from flossrepro.store import config  # noqa: F401  (registers the by_scale resolver)

    path = experiments().get("fig4")
    if path is None:
        return None
    try:
        cfg = OmegaConf.merge(OmegaConf.load(path), {"scale": {"name": scale or "small"}})
        return int(OmegaConf.select(cfg, "flossing.k"))
    except Exception:  # an unreadable plan only loses the "not run" notes
        return None


def planned_ks(df: pd.DataFrame) -> list:
    """The k the two sweeps run at the table's scale: fig5's k sweep plus fig4's k."""
    scale = _scale(df)
    ks = set(planned("fig5", "flossing.k", scale))
    k4 = fig4_k(scale)
    if k4 is not None:
        ks.add(k4)
    return sorted(ks)


def planned_k_delays(df: pd.DataFrame) -> list:
    """The delays of the k sweep (fig5.yaml) at the table's scale (fig4 adds delays at k=75 only)."""
    return planned("fig5", "task.delay", _scale(df))


def lacking_cells(f: pd.DataFrame, ks, delays) -> list[str]:
    """``k=K d=D`` for each wanted cell without networks."""
    have = set(medians(f).index) if not f.empty else set()
    return [f"k={fmt_setting(k)} d={fmt_setting(d)}" for k in ks for d in delays if (d, k) not in have]


# ----------------------------------------------------------------------------- panels
def _accuracy_axes(ax, f: pd.DataFrame, title: str, xlabel: str) -> bool:
    """Title, labels and the chance line of a final-accuracy panel; False (and an empty-panel
    note) when ``f`` has no rows."""
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final test accuracy")
    ax.axhline(CHANCE_ACC, color="black", ls="--", lw=1, label="chance (0.5)")
    if f.empty:
        empty_panel(ax, "no runs of this task and schedule in the tables")
    return not f.empty


def vs_delay_k(ax, f: pd.DataFrame, ks: list, expected_delays: list, title: str) -> None:
    """Final accuracy vs delay, one colour per k: a dot per network and the median line."""
    if not _accuracy_axes(ax, f, title, "delay d (steps)"):
        return
    present = values(f, "flossing.k")
    delays = values(f, "task.delay")
    step = min(np.diff(delays)) if len(delays) > 1 else 10
    width = 0.5 * step / max(len(present), 1)
    colors = dict(zip(present, palette(len(present))))
    for j, k in enumerate(present):
        off = (j - (len(present) - 1) / 2) * width
        dots_and_median(ax, rows(f, flossing__k=k), "task.delay", off, 0.25 * width, colors[k],
                        f"k={fmt_setting(k)} (n={{n}})", seed=j)
    msgs = []
    lost_k = [k for k in ks if k not in present]
    if lost_k:
        msgs.append("k not in tables: " + ", ".join(map(fmt_setting, lost_k)))
    lost_d = [d for d in expected_delays if d not in delays]
    if lost_d:
        msgs.append("delays not in tables: " + ", ".join(map(fmt_setting, lost_d)))
    ax.set_xticks(sorted(set(delays) | set(expected_delays)))
    ax.legend(loc="best")
    note(ax, "\n".join(msgs), "upper right")


def vs_k(ax, f: pd.DataFrame, ks: list, title: str) -> None:
    """Final accuracy vs k (log axis), one line (median) per delay, a dot per network."""
    if not _accuracy_axes(ax, f, title, "flossed exponents k"):
        return
    present = values(f, "flossing.k")
    ax.set_xscale("log")
    delays = values(f, "task.delay")
    colors = dict(zip(delays, palette(len(delays), "plasma_r")))
    for j, d in enumerate(delays):
        sub = rows(f, task__delay=d)
        x = sub["flossing.k"].to_numpy(float) * np.exp(jitter(len(sub), 0.06, seed=j))
        ax.scatter(x, sub["value"], s=10, color=colors[d], alpha=0.5, lw=0)
        m = sub.groupby("flossing.k")["value"].median()
        ax.plot(m.index, m.values, "o-", ms=4, lw=1.6, color=colors[d], label=f"d={fmt_setting(d)}")
    ticks = sorted(set(present) | set(ks))
    ax.set_xticks(ticks)
    ax.set_xticklabels([fmt_setting(k) for k in ticks])
    ax.minorticks_off()
    ax.legend(loc="best")
    lost = [k for k in ks if k not in present]
    note(ax, "k not in tables: " + ", ".join(map(fmt_setting, lost)) if lost else "", "upper right")


def ylim_acc(axes, df: pd.DataFrame) -> None:
    acc = df.loc[df["metric"] == "test_accuracy", "value"] if "metric" in df else pd.Series(dtype=float)
    low = min(0.3, float(acc.min()) - 0.02) if acc.notna().any() else 0.3
    for ax in axes:
        ax.set_ylim(low, 1.02)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 5A-B from the fig5 and fig4 tables (see the module docstring)."""
    ks, delays = planned_ks(metrics), planned_k_delays(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(len(TASKS), 2, (11, 4 * len(TASKS)))
        for i, (task, name) in enumerate(TASKS):
            f = k_finals(metrics, task, SCHEDULE)
            vs_delay_k(axes[i, 0], f, ks, delays, f"A  {name}: final accuracy vs delay")
            vs_k(axes[i, 1], f, ks, f"B  {name}: final accuracy vs k")
        ylim_acc(axes.flat, metrics)
        suptitle(fig, "Fig 5: flossing during training with k flossed exponents", metrics)
    return fig


# ----------------------------------------------------------------------------- claims
def solved(meds: np.ndarray, delays: list, threshold: float = SOLVED) -> np.ndarray:
    """The largest delay whose median > ``threshold`` (0 when none); ``meds`` is ``[len(delays), ...]``."""
    d = np.asarray(delays, float).reshape((-1,) + (1,) * (np.ndim(meds) - 1))
    return np.max(np.where(np.asarray(meds) > threshold, d, 0.0), axis=0)


def _solved_part(f: pd.DataFrame, kmin, kmax, delays: list, rng) -> tuple:
    """``(part, (solved(kmin), solved(kmax)))``: solved(kmax) - solved(kmin) with replicates from
    resampling every (k, delay) cell's networks independently."""
    meds, reps, nets = {}, {}, []
    for k in (kmin, kmax):
        mk, rk = [], []
        for d in delays:
            x, n = k_cell(f, k, d)
            mk.append(np.median(x))
            rk.append(replicates(x, np.median, rng))
            nets += n
        meds[k], reps[k] = np.array(mk), np.stack(rk)
    value = float(solved(meds[kmax], delays) - solved(meds[kmin], delays))
    diff = solved(reps[kmax], delays) - solved(reps[kmin], delays)
    label = f"solved(k={fmt_setting(kmax)}) - solved(k={fmt_setting(kmin)})"
    return part_from_reps(label, value, diff, ">", 0.0, nets), (solved(meds[kmin], delays), solved(meds[kmax], delays))


def _claim_5(df: pd.DataFrame) -> Claim:
    cid = "5AB"
    c, rng = Claim(cid, CLAIMS[cid]), rng_for(cid)
    ks_plan, d_plan = planned_ks(df), planned_k_delays(df)
    missing, detail = [], []
    for task, name in TASKS:
        f = k_finals(df, task, SCHEDULE)
        ks = sorted(set(ks_plan) | set(values(f, "flossing.k")))
        delays = d_plan or values(f, "task.delay")
        detail += [f"**{name}** (median final test accuracy, networks in brackets; flossing during training):", ""]
        detail += k_table(f, ks_plan, delays) + [""]
        if len(ks) < 2 or not delays:
            missing.append(f"{task}: fewer than two k or no delay")
            continue
        kmin, kmax = ks[0], ks[-1]
        lost = lacking_cells(f, [kmin, kmax], delays)
        if lost:
            missing.append(f"{task}: {', '.join(lost)} not run (flossing during training)")
            continue
        p, (smin, smax) = _solved_part(f, kmin, kmax, delays, rng)
        c.groups.append(Group(name, [p]))
        ds = ", ".join(map(fmt_setting, delays))
        detail += [f"Largest delay solved (median > {SOLVED}; 0 when none) among d={ds}: "
                   f"k={fmt_setting(kmin)}: {fmt_setting(float(smin))}, k={fmt_setting(kmax)}: "
                   f"{fmt_setting(float(smax))}.", ""]
    c.missing = "; ".join(missing)
    c.detail = [f"Delays tested: the k sweep's ({', '.join(map(fmt_setting, d_plan)) or 'from the table'}); the "
                f"largest k comes from fig4's runs. Replicates of the statistic resample the networks of every "
                f"(k, delay) cell independently. Paper: longer delays need more flossed exponents.", ""] + detail
    return c


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claim 5AB measured on the fig5 and fig4 tables."""
    return [_claim_5(metrics)]
