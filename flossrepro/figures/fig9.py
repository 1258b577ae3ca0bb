"""Fig 9: the rise of |dL/dh0| precedes the rise of the accuracy.

Networks with flossing during training on binary temporal XOR at d=70 (fig4's runs), each
network's epochs aligned:

- **A**: |dL/dh0| vs epochs relative to the epoch at which the network's accuracy leaves
  chance for good;
- **B**: test accuracy vs epochs relative to the epoch at which its |dL/dh0| becomes
  macroscopic (>= 1e-3) for good.

"For good" = the centred rolling median (|dL/dh0|: 5 measurements; accuracy: 3 evaluations)
stays on that side of the threshold to the end of training; a network that never gets there
has no such epoch and is left out (it did not learn). The claim compares the two epochs,
each found without reference to the other.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import stats_training as stt
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.common_dynamics import at_delay, traces
from flossrepro.figures.stats_training import onsets
from flossrepro.figures.data import rows
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, palette, suptitle

EXPERIMENTS = ("fig4",)
STUDY = "flossing"
TITLE = "Fig 9: the rise of |dL/dh0| precedes the rise of the accuracy (flossing during training, d=70)"
PANELS = {"A": "|dL/dh0| vs epochs aligned to the epoch the accuracy leaves chance",
          "B": "test accuracy vs epochs aligned to the epoch |dL/dh0| becomes macroscopic"}
METRICS = ("grad_h0_norm", "test_accuracy")

GRAD_LEVEL = 1e-3      # macroscopic |dL/dh0| (the paper's alignment level)
ACC_LEVEL = 0.6        # accuracy has left chance (0.5)
GRAD_WINDOW, ACC_WINDOW = 5, 3
RULES = (
    Rule("9A", quote="the increase of gradient norm |dL/dh0| reliably precedes the epoch at which the accuracy "
                     "surpasses the chance level (See Fig 9B)",
         where="Appendix D, Fig 9", paper="|dL/dh0| rises before the accuracy",
         claim=f"in networks that learn with flossing during training, |dL/dh0| rises (>= {GRAD_LEVEL:g} for good) "
               f"before the accuracy does (> {ACC_LEVEL} for good): median lead (accuracy epoch - gradient epoch) > 0",
         stat=stt.claim_gradient_leads, op=">", threshold=0.0, params={"grad_level": GRAD_LEVEL, "acc_level": ACC_LEVEL},
         panel="A"),
)
CLAIMS = claim_texts(RULES)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 9A-B from fig4's table (see the module docstring)."""
    df, d = at_delay(metrics)
    on = onsets(df)
    learned = on.dropna(subset=["lead"])
    with rc_context(STYLE):
        fig, axes = new_figure(1, 2, (12, 4.4))
        a, b = axes[0, 0], axes[0, 1]
        if learned.empty:
            for ax in (a, b):
                empty_panel(ax, "no network with flossing during training left chance" if not on.empty
                            else "no flossing-during rows for binary_xor")
        else:
            dur = rows(df, flossing__schedule="during")
            grad, acc = traces(dur, "grad_h0_norm"), traces(dur, "test_accuracy")
            cols = palette(len(learned), "tab10" if len(learned) <= 10 else "viridis")
            for c, r in zip(cols, learned.itertuples()):
                net = (r.run_id, r.member)
                g = grad[net]
                a.plot(g.index - r.t_acc, g.where(g > 0).values, color=c, lw=0.8, alpha=0.8)
                s = acc[net]
                b.plot(s.index - r.t_grad, s.values, color=c, lw=0.8, alpha=0.8)
            a.set_yscale("log")
            a.axhline(GRAD_LEVEL, color="black", ls="--", lw=1, label=f"{GRAD_LEVEL:g}")
            b.axhline(0.5, color="black", ls="--", lw=1, label="chance")
            for ax in (a, b):
                ax.axvline(0, color="black", lw=0.8)
                ax.legend(loc="best")
            a.set_xlabel("epochs - epoch the accuracy leaves chance")
            b.set_xlabel("epochs - epoch |dL/dh0| becomes macroscopic")
            a.set_ylabel("|dL/dh0|")
            b.set_ylabel("test accuracy")
        a.set_title(f"A  |dL/dh0|, aligned to the accuracy's rise (d={d}, n={len(learned)})", loc="left")
        b.set_title(f"B  accuracy, aligned to the gradient's rise (median lead "
                    f"{np.median(learned['lead']) if len(learned) else float('nan'):.0f} epochs)", loc="left")
        suptitle(fig, "Fig 9: the gradient's rise precedes the accuracy's (flossing during training)",
                 df if not df.empty else metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim 9A on fig4's binary XOR runs at d=70 (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
