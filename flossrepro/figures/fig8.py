"""Fig 8: flossing boosts the gradient with respect to the initial condition.

Binary temporal XOR at d=70 (fig4's runs): |dL/dh0| (``grad_h0_norm``, the norm of the
gradient of the training loss with respect to the trained initial state) vs training epochs
without flossing and with flossing during training (episodes dotted), and the test accuracy
of the same networks.

- **A**: |dL/dh0| (log scale), one highlighted network per condition, the others thin;
- **B**: test accuracy, same networks;
- **C**: A on a linear scale, a colour per flossed network, the unflossed ones black (the paper's 8C);
- **D**: test accuracy, the colours of C (the paper's 8D).
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULE_LABEL
from flossrepro.figures import stats_training as stt
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.common_dynamics import at_delay, color, episodes, mark_episodes, traces
from flossrepro.figures.data import rows
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, note, palette, suptitle

EXPERIMENTS = ("fig4",)
STUDY = "flossing"
TITLE = "Fig 8: |dL/dh0| without and with flossing during training (binary temporal XOR, d=70)"
PANELS = {"A": "|dL/dh0| vs training epochs (log), none vs during, episodes dotted",
          "B": "test accuracy vs training epochs, same networks",
          "C": "|dL/dh0| vs training epochs (linear), a colour per flossed network, unflossed black",
          "D": "test accuracy vs training epochs, the colours of C"}
METRICS = ("grad_h0_norm", "test_accuracy", "lyap_after_floss[1]")

CONDS = ("none", "during")
RULES = (
    Rule("8A", quote="the gradient norm of |dL/dh0| diminishes to extremely small values (<10^-6) and remains small "
                     "throughout training. In contrast, for the network trained with gradient flossing, each episode "
                     "of gradient flossing causes the norm |dL/dh0| to spike, surpassing values larger than 10^-2", where="Appendix D, Fig 8A",
         paper="none < 1e-6 throughout; each episode boosts it",
         claim="without flossing |dL/dh0| stays below the paper's 1e-6 (each network's median over the second half "
               "of training; median over networks); with flossing during training it jumps by more than 1 order of "
               "magnitude after each episode (median over episodes and networks)",
         stat=stt.claim_h0_jumps, op=">", threshold=1.0, params={"tiny": 1e-6}, panel="A"),
)
CLAIMS = claim_texts(RULES)


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


def _per_network(ax, df: pd.DataFrame, metric: str, ylabel: str) -> None:
    """One colour per network flossed during training, black for the networks without flossing."""
    ax.set_xlabel("training epochs")
    ax.set_ylabel(ylabel)
    none = traces(rows(df, metric, flossing__schedule="none"), metric)
    dur = traces(rows(df, metric, flossing__schedule="during"), metric)
    for j, (net, t) in enumerate(sorted(none.items())):
        ax.plot(t.index, t.values, color="black", lw=0.8, alpha=0.7,
                label=f"{SCHEDULE_LABEL['none']} (n={len(none)})" if j == 0 else None)
    for (net, t), c in zip(sorted(dur.items()), palette(len(dur), "tab10")):
        ax.plot(t.index, t.values, color=c, lw=1.0, label=f"during, member {net[1]}")
    eps = episodes(rows(df, flossing__schedule="during"))
    if eps:
        mark_episodes(ax, next(iter(eps.values())))
    if metric == "test_accuracy":
        ax.axhline(0.5, color="grey", ls="--", lw=1, label="chance")
    else:   # the accuracy panel shares these colours: one legend
        ax.legend(loc="center right", fontsize=6.5)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 8A-C from fig4's table (see the module docstring)."""
    df, d = at_delay(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(1, 4, (20, 4.4))
        if df.empty:
            for ax in axes.flat:
                empty_panel(ax, "no binary_xor rows in the table")
        else:
            _panel(axes[0, 0], df, "grad_h0_norm", True, "|dL/dh0|")
            axes[0, 0].set_title(f"A  |dL/dh0| (d={d})", loc="left")
            _panel(axes[0, 1], df, "test_accuracy", False, "test accuracy")
            axes[0, 1].set_title(f"B  test accuracy (d={d})", loc="left")
            _per_network(axes[0, 2], df, "grad_h0_norm", "|dL/dh0|")
            axes[0, 2].set_title("C  |dL/dh0|, linear scale, a colour per network", loc="left")
            _per_network(axes[0, 3], df, "test_accuracy", "test accuracy")
            axes[0, 3].set_title("D  test accuracy, the colours of C", loc="left")
        suptitle(fig, "Fig 8: flossing boosts |dL/dh0| (binary temporal XOR)", df if not df.empty else metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim 8A on fig4's binary XOR runs at d=70 (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
