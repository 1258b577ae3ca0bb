"""Table 1: the measured cost of a training epoch and of a flossing epoch, against the paper's scaling.

Reads the ``table1`` experiment (``job=cost``, :mod:`flossrepro.jobs.cost`): CPU milliseconds of the
thread per epoch of one network on one thread (the machine is shared: wall times include the
waits for a core; they are in the table too, ``costwall_*``), one factor at a time around a base point, with the epoch
functions ``make bench`` times. Panels (log-log, median and 25-75% of the repeats per point,
the least-squares line through the three largest points with its slope, and the paper's
Table 1 scaling drawn through the largest point):

- **A-C** training epoch vs ``N``, ``B``, ``T`` (paper: ``O(N^2 B T)``);
- **D** flossing epoch vs ``N`` at fixed ``k`` and with ``k = N``; **E** vs ``k``; **F** vs ``T_f``;
  **G** vs ``s_ons`` (paper Table 1: ``O(N^2 T_f (1 + k/t_ONS + k))``; main text: the QR,
  ``O(N k^2)`` per step, is the bottleneck);
- **H** tanh, LSTM and GRU networks: flossing (k = 1) and training epochs vs N.

Claims T1A-T1G (one per panel, declared in ``RULES``, statistics in ``stats_cost``) compare
each fitted exponent (three largest points: the O() statements are asymptotic) with the
exponent of the FLOP count this engine performs over the same points (Table 1's rows disagree
with each other, so the paper's exponent is stated beside, not tested); the tolerance is at
most half the predicted exponent, so a rule can fail.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from flossrepro.figures import stats_cost as sc
from flossrepro.jobs.cost import points
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.stats_cost import SERIES, TOP, exponents, flop_model, paper_cost, series  # noqa: F401
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, note

EXPERIMENTS = ("table1",)
STUDY = "flossing"
TITLE = "Table 1: cost of a training epoch and of a flossing epoch (measured, one core)"
PANELS = {"A": "training epoch vs N (B=16, T=300)", "B": "training epoch vs batch B", "C": "training epoch vs T",
          "D": "flossing epoch vs N (k fixed; k = N)", "E": "flossing epoch vs k", "F": "flossing epoch vs T_f",
          "G": "flossing epoch vs s_ons", "H": "tanh, LSTM and GRU epochs vs N (flossing k=1; training)"}
METRICS = None   # every cost_* / costpt_* row (a few hundred)

_T1 = ("the measured cost exponent (log-log slope over the 3 largest points) is within min(0.25, half its size) of "
       "the exponent of the FLOP count this engine performs over the same points (the paper's Table 1 exponent "
       "stated beside)")
_Q_TRAIN = "Training: O(N^2 b T) per epoch (RNN step O(N^2 b) per time step)"
_Q_FLOSS = ("Flossing: the Jacobian step O(N^2 k) per time step, the QR decomposition O(N k^2) ... once every t_ONS; "
            "Table 1: O(N^2 T_f (1 + k/t_ONS + k))")
PANEL_SERIES = {"A": ("train_N",), "B": ("train_B",), "C": ("train_T",), "D": ("floss_N", "floss_NkN"),
                "E": ("floss_k",), "F": ("floss_Tf",), "G": ("floss_sons",)}
RULES = tuple(
    Rule(f"T1{p}", quote=_Q_TRAIN if names[0].startswith("train") else _Q_FLOSS, where="Appendix F, Table 1",
         paper="training O(N^2 B T)" if names[0].startswith("train") else "flossing O(N^2 T_f (1 + k/t_ONS + k))",
         claim=f"{_T1}: {' and '.join(SERIES[n][0] for n in names)}", stat=sc.claim_exponent,
         select={"series": names}, op="<", threshold=0.25, params={"tol": 0.25, "share": 0.5}, panel=p)
    for p, names in PANEL_SERIES.items())
CLAIMS = claim_texts(RULES)
CLAIM_PREFIX = "T1"   # claim ids T1A..T1G (one per panel); the report labels this figure "Table 1"
LABEL = "Table 1"


def _log_ticks(ax) -> None:
    """Ticks at 1, 2, 5 x 10^n labelled as plain numbers, no minor labels (they collide on short ranges)."""
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def _panel(ax, df: pd.DataFrame, names, letter: str, title: str) -> None:
    ax.set_title(f"{letter}  {title}", loc="left")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel("CPU ms per epoch (1 network, 1 thread)")
    shown = 0
    for name, color in zip(names, ("#1f77b4", "#d62728")):
        s = series(df, name)
        if s.empty:
            continue
        e = exponents(df, name)
        med = np.array([np.median(r) for r in s["reps"]])
        lo = np.array([np.percentile(r, 25) for r in s["reps"]])
        hi = np.array([np.percentile(r, 75) for r in s["reps"]])
        x = s["x"].to_numpy(float)
        ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="o", color=color, ms=4, capsize=2,
                    label=SERIES[name][0])
        if e is not None:
            xt = x[-TOP:]
            c = np.exp(np.mean(np.log(med[-TOP:])) - e["fit_top"] * np.mean(np.log(xt)))
            ax.plot(xt, c * xt ** e["fit_top"], color=color, lw=1.5, label=f"fit (top {TOP}): slope {e['fit_top']:.2f}")
            kind = SERIES[name][1]
            pc = np.array([paper_cost(kind, *cc) for cc in s["coords"]])
            ax.plot(x, pc * med[-1] / pc[-1], color=color, ls="--", lw=1,
                    label=f"paper Table 1 (slope {e['paper']:.2f} at the top)")
            fc = np.array([flop_model(kind, *cc) for cc in s["coords"]])
            ax.plot(x, fc * med[-1] / fc[-1], color=color, ls=":", lw=1.2,
                    label=f"FLOP model, tested (slope {e['flops']:.2f} at the top)")
        shown += 1
    ax.set_xlabel({"A": "N", "B": "batch B", "C": "T", "D": "N", "E": "k", "F": "T_f", "G": "s_ons"}[letter])
    _log_ticks(ax)
    if shown:
        if letter == "D":   # two series: eight entries, below the axes, off the data
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=6.5)
        else:
            ax.legend(loc="best")
    else:
        empty_panel(ax, "no rows for this series")


def _panel_arch(ax, df: pd.DataFrame) -> None:
    from flossrepro.jobs.cost import medians
    ax.set_title("H  per architecture vs N\n(flossing k=1, T_f=300; training)", loc="left")
    med, pts = medians(df), points(df)
    archs = sorted({f[5:] for (_, f, _) in med if f.startswith("arch-")})
    if not archs:
        empty_panel(ax, "no per-architecture rows")
        return
    colors = dict(zip(archs, ("#2ca02c", "#1f77b4", "#d62728", "#9467bd")))
    for a in archs:
        for kind, ls, lab in (("floss1", "-", "flossing k=1"), ("train", "--", "training B=16 T=300")):
            xs = sorted((v, t) for (kd, f, v), t in med.items() if kd == kind and f == f"arch-{a}")
            if xs:
                ax.plot([v for v, _ in xs], [t for _, t in xs], ls=ls, marker="o", ms=3, color=colors[a],
                        label=f"{a}: {lab}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_ticks(ax)
    ax.set_xlabel("N (hidden units; an LSTM's state is 2N)")
    ax.set_ylabel("CPU ms per epoch")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=6.5)   # below: off the lines
    del pts


def plot(metrics: pd.DataFrame) -> Figure:
    with rc_context(STYLE):
        fig, axes = new_figure(2, 4, (18, 8))
        layout = [(["train_N"], "A", PANELS["A"]), (["train_B"], "B", PANELS["B"]), (["train_T"], "C", PANELS["C"]),
                  (["floss_N", "floss_NkN"], "D", PANELS["D"]), (["floss_k"], "E", PANELS["E"]),
                  (["floss_Tf"], "F", PANELS["F"]), (["floss_sons"], "G", PANELS["G"])]
        for ax, (names, letter, title) in zip(axes.flat, layout):
            _panel(ax, metrics, names, letter, title)
        _panel_arch(axes[1, 3], metrics)
        scale = ",".join(sorted(str(s) for s in metrics.get("scale.name", pd.Series(dtype=str)).dropna().unique()))
        fig.suptitle(f"Table 1: measured cost per epoch vs the paper's scaling (scale={scale}; thread CPU time, "
                     "one thread; repeats: median and 25-75%)", fontsize=10)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claims T1A..T1G (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)


__all__ = ["plot", "claims", "exponents", "series", "paper_cost", "flop_model", "note"]
