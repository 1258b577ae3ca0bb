"""Fig 10: flossing raises the subordinate singular values of dL/dW (higher-rank updates).

Binary temporal XOR at d=70 (fig4's runs): the singular values sigma_1, sigma_20, sigma_40 of
the recurrent weight gradient dL/dW (``grad_W_sv``, measured in the training step before
clipping) vs training epochs, without flossing and with flossing during training (episodes
dotted), for one network realisation of each condition (Fig 11 shows a second one):

- **A**: sigma_i(dL/dW) vs epochs (log scale);
- **B**: sigma_20 / sigma_1 and sigma_40 / sigma_1 vs epochs;
- **C**: test accuracy of the same networks.

The claim uses every network: right after each episode (the training step at an episode's
epoch) log10(sigma_i / sigma_1) of a flossed network against that of the unflossed networks
at the same epochs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.constants import SCHEDULE_LABEL
from flossrepro.figures.claims import Claim, Group, median_reps, part_from_reps, rng_for
from flossrepro.figures.common_dynamics import at_delay, color, episodes, mark_episodes, traces
from flossrepro.figures.data import rows
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, note, suptitle

EXPERIMENTS = ("fig4",)
STUDY = "flossing"
TITLE = "Figs 10-11: singular values of dL/dW without and with flossing (binary temporal XOR, d=70)"
PANELS = {"A": "sigma_1, sigma_20, sigma_40 of dL/dW vs training epochs (log), one network per condition",
          "B": "sigma_20/sigma_1 and sigma_40/sigma_1 vs training epochs",
          "C": "test accuracy of the same networks"}
SV = (1, 20, 40)
METRICS = tuple(f"grad_W_sv[{i}]" for i in SV) + ("test_accuracy", "lyap_after_floss[1]")
CONDS = ("none", "during")
LINESTYLE = {1: "-", 20: "--", 40: ":"}
CLAIMS = {
    "10A": "right after the flossing episodes, flossing raises the subordinate singular values of dL/dW relative to "
          "the first: median log10(sigma_i / sigma_1) at the episode epochs, during - none > 0, for i = 20 and 40",
}


def realization_panels(metrics: pd.DataFrame, which: int, title: str) -> Figure:
    """The three panels for the ``which``-th network (in member order) of each condition."""
    df, d = at_delay(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(1, 3, (15, 4.4))
        a, b, c = axes[0]
        msgs = []
        eps = episodes(rows(df, flossing__schedule="during"))
        for s in CONDS:
            sub = rows(df, flossing__schedule=s)
            sv = {i: traces(sub, "grad_W_sv", i) for i in SV}
            nets = sorted(sv[1])
            if len(nets) <= which:
                msgs.append(f"{s}: no network #{which + 1}")
                continue
            net = nets[which]
            for i in SV:
                t = sv[i].get(net)
                if t is None:
                    continue
                a.plot(t.index, t.values, color=color(s), ls=LINESTYLE[i], lw=1.0,
                       label=f"{SCHEDULE_LABEL[s]}: sigma_{i}")
                if i > 1:
                    r = t / sv[1][net].reindex(t.index)
                    b.plot(r.index, r.values, color=color(s), ls=LINESTYLE[i], lw=1.0,
                           label=f"{SCHEDULE_LABEL[s]}: sigma_{i}/sigma_1")
            acc = traces(sub, "test_accuracy").get(net)
            if acc is not None:
                c.plot(acc.index, acc.values, color=color(s), lw=1.2, label=SCHEDULE_LABEL[s])
        if not any(ax.lines for ax in (a, b, c)):
            for ax in (a, b, c):
                empty_panel(ax, "no grad_W_sv rows for binary_xor in the table")
        else:
            for ax in (a, b):
                ax.set_yscale("log")
            c.axhline(0.5, color="black", ls="--", lw=1, label="chance")
            for ax in (a, b, c):
                if eps:
                    mark_episodes(ax, next(iter(eps.values())))
                ax.set_xlabel("training epochs")
                ax.legend(loc="best", fontsize=6.5)
        a.set_ylabel("sigma_i(dL/dW)")
        b.set_ylabel("sigma_i / sigma_1")
        c.set_ylabel("test accuracy")
        a.set_title(f"A  singular values of dL/dW (d={d}, network #{which + 1})", loc="left")
        b.set_title("B  relative to sigma_1", loc="left")
        c.set_title("C  test accuracy", loc="left")
        note(a, "\n".join(msgs))
        suptitle(fig, title, df if not df.empty else metrics)
    return fig


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 10A-C: the first network of each condition."""
    return realization_panels(metrics, 0, "Fig 10: flossing raises the subordinate singular values of dL/dW")


def _log_ratio(df: pd.DataFrame, i: int, epochs: list[int]) -> tuple[np.ndarray, list]:
    """Per network, the median over ``epochs`` of log10(sigma_i / sigma_1)."""
    s1, si = traces(df, "grad_W_sv", 1), traces(df, "grad_W_sv", i)
    vals, nets = [], []
    for net in sorted(set(s1) & set(si)):
        e = [x for x in epochs if x in s1[net].index and x in si[net].index]
        r = np.log10(si[net].loc[e].to_numpy(float) / s1[net].loc[e].to_numpy(float))
        r = r[np.isfinite(r)]
        if len(r):
            vals.append(float(np.median(r)))
            nets.append(net)
    return np.asarray(vals), nets


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claim 10 on fig4's binary XOR runs at d=70 (or the largest delay present)."""
    c, rng = Claim("10A", CLAIMS["10A"]), rng_for("10A")
    df, d = at_delay(metrics)
    dur, none = rows(df, flossing__schedule="during"), rows(df, flossing__schedule="none")
    eps = sorted({e for v in episodes(dur).values() for e in v})
    if dur.empty or none.empty or not eps:
        c.missing = f"binary_xor d={d}: needs none and during runs with grad_W_sv and their episodes"
        return [c]
    lines = []
    for i in SV[1:]:
        xd, nd = _log_ratio(dur, i, eps)
        xn, nn = _log_ratio(none, i, eps)
        if not len(xd) or not len(xn):
            c.missing = f"no sigma_{i} of dL/dW at the episode epochs (N < {i}?)"
            continue
        md, rd = median_reps(xd, rng)
        mn, rn = median_reps(xn, rng)
        c.groups.append(Group(f"sigma_{i}", [part_from_reps(f"median log10(sigma_{i}/sigma_1), during - none",
                                                            md - mn, rd - rn, ">", 0.0, nd + nn)]))
        lines.append(f"sigma_{i}/sigma_1 at the episode epochs {eps}: median log10 during {md:.2f} "
                     f"({len(xd)} networks), none {mn:.2f} ({len(xn)} networks).")
    c.detail = lines
    return [c]
