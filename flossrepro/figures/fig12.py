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

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULE_LABEL
from flossrepro.figures.claims import Claim, Group, part, rng_for
from flossrepro.figures.common_dynamics import at_delay, color, episodes, mark_episodes, traces
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
CLAIMS = {
    "12A": f"with flossing throughout training, the accuracy right after an episode falls close to chance (median "
           f"< {CHANCE_NEAR}) even late in training (episodes in the second half), and recovers before the next "
           f"episode (median > {CHANCE_NEAR})",
}


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
        fig, axes = new_figure(1, 3, (15, 4.4))
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
            ax.legend(loc="best")
            note(ax, "\n".join(msgs))
        suptitle(fig, "Fig 12: flossing throughout training (binary temporal XOR)", df if not df.empty else metrics)
    return fig


def late_episodes(df: pd.DataFrame) -> pd.DataFrame:
    """Per throughout network and episode in the second half of training: the accuracy right
    after the episode and right before the next one (or at the end of training)."""
    thr = rows(df, flossing__schedule="throughout")
    after, acc, eps = traces(thr, "test_accuracy_after_floss"), traces(thr, "test_accuracy"), episodes(thr)
    out = []
    for net, a in sorted(after.items()):
        starts = eps.get(net[0], [])
        s = acc.get(net)
        if s is None or not starts:
            continue
        end = float(s.index.max())
        for j, e in enumerate(starts):
            if e < end / 2 or e not in a.index:
                continue
            nxt = starts[j + 1] if j + 1 < len(starts) else end
            if nxt not in s.index:
                continue
            out.append({"run_id": net[0], "member": net[1], "episode": e, "after": float(a.loc[e]),
                        "before_next": float(s.loc[nxt])})
    return pd.DataFrame(out, columns=["run_id", "member", "episode", "after", "before_next"])


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claim 12A on fig12's throughout runs."""
    c, rng = Claim("12A", CLAIMS["12A"]), rng_for("12A")
    df, d = at_delay(metrics)
    late = late_episodes(df)
    if late.empty:
        c.missing = f"binary_xor d={d}: no flossing-throughout runs with test_accuracy_after_floss in the second half"
        return [c]
    per = late.groupby(["run_id", "member"])[["after", "before_next"]].median().reset_index()
    nets = list(zip(per["run_id"], per["member"]))
    c.groups.append(Group(f"d={d}", [
        part("median over networks of the median accuracy right after a late episode", per["after"], np.median,
             "<", CHANCE_NEAR, nets, rng),
        part("median over networks of the median accuracy right before the next episode", per["before_next"],
             np.median, ">", CHANCE_NEAR, nets, rng)]))
    c.detail = [f"Throughout: {len(late)} late episodes (epochs {sorted(late['episode'].unique().tolist())}) over "
                f"{len(per)} networks; per network median accuracy after an episode: "
                + ", ".join(f"{x:.3f}" for x in per["after"]) + "; before the next: "
                + ", ".join(f"{x:.3f}" for x in per["before_next"]) + "."]
    fin = {s: rows(df, "test_accuracy", flossing__schedule=s) for s in CONDS}
    last = {s: f.loc[f["epoch"] == f["epoch"].max(), "value"].median() for s, f in fin.items() if not f.empty}
    if last:
        c.detail.append("Median final test accuracy: " + ", ".join(f"{s} {v:.3f}" for s, v in last.items()) + ".")
    return [c]
