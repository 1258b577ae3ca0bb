"""Fig 8: flossing boosts the gradient with respect to the initial condition.

Binary temporal XOR at d=70 (fig4's runs): |dL/dh0| (``grad_h0_norm``, the norm of the
gradient of the training loss with respect to the trained initial state) vs training epochs
without flossing and with flossing during training (episodes dotted), and the test accuracy
of the same networks.

- **A**: |dL/dh0| (log scale), one highlighted network per condition, the others thin;
- **B**: test accuracy, same networks;
- **C**: A on a linear scale.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULE_LABEL
from flossrepro.figures.claims import Claim, Group, part, rng_for
from flossrepro.figures.common_dynamics import at_delay, color, episodes, mark_episodes, ratio_at, traces
from flossrepro.figures.data import rows
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, note, suptitle

EXPERIMENTS = ("fig4",)
STUDY = "flossing"
TITLE = "Fig 8: |dL/dh0| without and with flossing during training (binary temporal XOR, d=70)"
PANELS = {"A": "|dL/dh0| vs training epochs (log), none vs during, episodes dotted",
          "B": "test accuracy vs training epochs, same networks",
          "C": "|dL/dh0| vs training epochs (linear)"}
METRICS = ("grad_h0_norm", "test_accuracy", "lyap_after_floss[1]")

CONDS = ("none", "during")
TINY = 1e-3            # |dL/dh0| below this is not macroscopic (the paper aligns Fig 9 at 1e-3)
JUMP = 1.0             # an episode raises |dL/dh0| by more than this many orders of magnitude
CLAIMS = {
    "8A": f"without flossing |dL/dh0| stays tiny throughout training (every network's maximum < {TINY:g}; paper "
         f"~1e-6); with flossing during training it jumps by more than {JUMP:g} order(s) of magnitude after each "
         f"episode",
}


def _panel(ax, df: pd.DataFrame, metric: str, log_y: bool, ylabel: str) -> None:
    ax.set_xlabel("training epochs")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    msgs = []
    for s in CONDS:
        g = rows(df, metric, flossing__schedule=s)
        if g.empty:
            msgs.append(f"{s}: not run")
            continue
        tr = traces(g, metric)
        for j, (net, t) in enumerate(sorted(tr.items())):
            v = t.where(t > 0) if log_y else t
            ax.plot(v.index, v.values, color=color(s), lw=1.6 if j == 0 else 0.6, alpha=1.0 if j == 0 else 0.3,
                    label=f"{SCHEDULE_LABEL[s]} (n={len(tr)}; one network bold)" if j == 0 else None)
    eps = episodes(rows(df, flossing__schedule="during"))
    if eps:
        mark_episodes(ax, next(iter(eps.values())))
    if metric == "test_accuracy":
        ax.axhline(0.5, color="black", ls="--", lw=1, label="chance")
    ax.legend(loc="best")
    note(ax, "\n".join(msgs))


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 8A-C from fig4's table (see the module docstring)."""
    df, d = at_delay(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(1, 3, (15, 4.4))
        if df.empty:
            for ax in axes.flat:
                empty_panel(ax, "no binary_xor rows in the table")
        else:
            _panel(axes[0, 0], df, "grad_h0_norm", True, "|dL/dh0|")
            axes[0, 0].set_title(f"A  |dL/dh0| (d={d})", loc="left")
            _panel(axes[0, 1], df, "test_accuracy", False, "test accuracy")
            axes[0, 1].set_title(f"B  test accuracy (d={d})", loc="left")
            _panel(axes[0, 2], df, "grad_h0_norm", False, "|dL/dh0|")
            axes[0, 2].set_title("C  |dL/dh0|, linear scale", loc="left")
        suptitle(fig, "Fig 8: flossing boosts |dL/dh0| (binary temporal XOR)", df if not df.empty else metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claim 8 on fig4's binary XOR runs at d=70 (or the largest delay present)."""
    c, rng = Claim("8A", CLAIMS["8A"]), rng_for("8A")
    df, d = at_delay(metrics)
    none = traces(rows(df, flossing__schedule="none"), "grad_h0_norm")
    dur_df = rows(df, flossing__schedule="during")
    dur = traces(dur_df, "grad_h0_norm")
    eps = episodes(dur_df)
    lack = [s for s, tr in (("none", none), ("during", dur)) if not tr]
    if lack:
        c.missing = f"binary_xor d={d}: no grad_h0_norm rows for {', '.join(lack)}"
    parts = []
    if none:
        mx = np.array([float(t.max()) for t in none.values()])
        parts.append(part("none: median over networks of max_t |dL/dh0|", mx, np.median, "<", TINY, none, rng))
    jumps, nets, every = [], [], None
    for net, t in sorted(dur.items()):
        if every is None and len(t.index) > 1:
            every = int(np.min(np.diff(t.index.to_numpy())))
        later = [e for e in eps.get(net[0], []) if e > 0]   # the first episode has no "before"
        r = ratio_at(t, later, every or 10)
        if len(r):
            jumps.append(float(np.median(r)))
            nets.append(net)
    if dur:
        parts.append(part("during: median over networks of the median over episodes of log10(|dL/dh0| after / "
                          "before)", jumps, np.median, ">", JUMP, nets, rng))
        if not jumps:
            c.missing = "no episode after epoch 0 with |dL/dh0| measured right before and after it"
    if parts:
        c.groups.append(Group(f"d={d}", parts))
    if none or dur:
        c.detail = ["Per network (binary temporal XOR, d=%s): none, max |dL/dh0| over training: %s; during, median "
                    "log10 jump over episodes after epoch 0: %s." % (
                        d, ", ".join(f"{float(t.max()):.2g}" for _, t in sorted(none.items())) or "-",
                        ", ".join(f"{x:.2f}" for x in jumps) or "-")]
    return [c]

