"""Fig 12: flossing throughout training can be detrimental.

Binary temporal XOR at d=70: flossing throughout training (an episode every 100 epochs),
early flossing (episodes at 0,100,...,400) and none. Every trace holds the evaluations
between episodes and the one right after each episode (``*_after_floss``, drawn just after
the episode's epoch), since the drop after an episode is brief.

- **A**: test accuracy vs training epochs (median and 25-75% band over networks), episodes of
  the throughout schedule dotted;
- **B**: test error (cross-entropy) vs training epochs;
- **C**: |dL/dh0| vs training epochs (log scale).
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULE_LABEL
from flossrepro.figures import stats_training as stt
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.common_dynamics import at_delay, color, episodes, mark_episodes
from flossrepro.figures.data import rows
from flossrepro.figures.plotting import STYLE, empty_panel, median_band, new_figure, note, suptitle

EXPERIMENTS = ("fig12",)
STUDY = "flossing"
TITLE = "Fig 12: flossing throughout training vs early flossing vs none (binary temporal XOR, d=70)"
PANELS = {"A": "test accuracy vs training epochs, including right after each episode",
          "B": "test error vs training epochs",
          "C": "|dL/dh0| vs training epochs"}
METRICS = ("test_accuracy", "test_accuracy_after_floss", "test_loss", "test_loss_after_floss", "grad_h0_norm",
           "lyap_after_floss[1]")
CONDS = ("none", "during", "throughout")
AFTER = 0.5            # x offset of the after-episode evaluation (drawn between epoch e and e+1)
CHANCE_NEAR = 0.6      # "close to chance": accuracy below this
RULES = (
    Rule("12A", quote="We observe that after every episode of gradient flossing, the accuracy drops down close to "
                      "chance level of 50% (Fig 12A red line). Between flossing, the accuracy quickly recovers",
         where="Appendix D, Fig 12A", paper="after each episode close to chance (50%), then recovers",
         claim=f"with flossing throughout training, the accuracy right after an episode falls close to chance (median "
               f"< {CHANCE_NEAR}) even late in training (episodes in the second half), and recovers before the next "
               f"episode (median > {CHANCE_NEAR})",
         stat=stt.claim_throughout_drops, op="<", threshold=CHANCE_NEAR, panel="A"),
)
CLAIMS = claim_texts(RULES)


def merged(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of ``metric`` and of ``metric_after_floss`` (moved to ``epoch + AFTER``), as one trace."""
    a = df[df["metric"] == metric]
    b = df[df["metric"] == f"{metric}_after_floss"].copy()
    b["epoch"] = b["epoch"] + AFTER
    b["metric"] = metric
    return pd.concat([a, b], ignore_index=True)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 12A-C from fig12's table (see the module docstring)."""
    df, d = at_delay(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(1, 3, (15, 5.2))
        specs = [("test_accuracy", "test accuracy", False, "A  test accuracy"),
                 ("test_loss", "test error (cross-entropy)", False, "B  test error"),
                 ("grad_h0_norm", "|dL/dh0|", True, "C  |dL/dh0|")]
        eps = episodes(rows(df, flossing__schedule="throughout"))
        for ax, (metric, ylabel, log_y, title) in zip(axes[0], specs):
            ax.set_title(f"{title} (d={d})", loc="left")
            ax.set_xlabel("training epochs")
            ax.set_ylabel(ylabel)
            src = merged(df, metric) if metric != "grad_h0_norm" else df[df["metric"] == metric]
            msgs = []
            for s in CONDS:
                g = rows(src, flossing__schedule=s)
                if g.empty:
                    msgs.append(f"{s}: not run")
                    continue
                if log_y:
                    g = g.assign(value=g["value"].where(g["value"] > 0))
                median_band(ax, g, color(s), SCHEDULE_LABEL[s])
            if not ax.lines:
                empty_panel(ax, f"no {metric} rows in the table")
                continue
            if log_y:
                ax.set_yscale("log")
            if eps:
                mark_episodes(ax, next(iter(eps.values())), color=color("throughout"),
                              label="episode (throughout)")
            if metric == "test_accuracy":
                ax.axhline(0.5, color="black", ls="--", lw=1, label="chance")
            # below the axes: the throughout curve fills every panel
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)
            note(ax, "\n".join(msgs))
        suptitle(fig, "Fig 12: flossing throughout training (binary temporal XOR)", df if not df.empty else metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim 12A on fig12's throughout runs (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)


late_episodes = stt.late_episodes   # the per-episode table behind 12A (tests read it here)
