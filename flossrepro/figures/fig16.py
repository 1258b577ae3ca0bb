"""Fig 16: Lyapunov estimates converge, whatever the initial condition.

One tanh network (N=80, g=1, inputs x ~ N(0, 1)), 10 initial conditions (members of a
``job=convergence`` run: h0 and the orthonormal system differ), the running QR estimate of
lambda_i vs simulation time t (``lyap_trace``: ``epoch`` = t in steps, ``index`` = i).

- **A**: lambda_i (i = 1, 20, 60, 80, one colour each) vs t, a thin line per initial condition,
  log x; one row of the figure per input setting of the sweep (``job.shared_input``: every
  initial condition sees the same input sequence, or its own).
- **B**: the spread over initial conditions (standard deviation, ddof 1) of each lambda_i vs t,
  log-log, with the paper's t_sim = 100 marked.

Claim 16A is declared below (``RULES``, statistics in ``stats_spectra``). The spread is measured over initial conditions, so the bootstrap
resamples initial conditions (the "networks" of the report are the initial conditions here).
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from flossrepro.figures import stats_spectra as st
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.data import describe, fmt_setting, rows, values
from flossrepro.figures.plotting import STYLE, empty_panel, new_figure, palette

EXPERIMENTS = ("fig16",)
STUDY = "flossing"
TITLE = "Fig 16: Lyapunov estimates converge independently of the initial condition"
PANELS = {"A": "lambda_i (i = 1, 20, 60, 80) vs simulation time, one line per initial condition",
          "B": "spread of lambda_i over initial conditions vs simulation time"}
METRICS = ("lyap_trace",)

FROM_T = 10           # the spread's decay is fitted from this simulation time on
CAPTION_T = 100       # the paper's caption: t_sim = 100 steps (marked on the plot)

RULES = (
    Rule("16A", quote="Convergence of selected Lyapunov exponents lambda_i for ten identical network realizations "
                      "with different initial conditions with simulation time (i=1,20,60,80)",
         where="Appendix K, Fig 16 caption", paper="estimates converge, independent of the initial condition",
         claim=f"the spread of lambda_i over initial conditions decays with simulation time (fitted slope of log "
               f"spread vs log t, t >= {FROM_T}, < -0.25) and ends small relative to abs(lambda_i) (< 0.1), for every "
               "recorded i and both input settings",
         stat=st.claim_converges, op="<", threshold=-0.25, params={"from_t": FROM_T, "relative": 0.1}, panel="A"),
)
CLAIMS = claim_texts(RULES)


def _label(shared) -> str:
    return "shared input" if str(shared).lower() in ("true", "1") else "input per initial condition"


def _settings(df: pd.DataFrame) -> list:
    return values(df, "job.shared_input") or [None]


def _traces(df: pd.DataFrame, shared) -> pd.DataFrame:
    """``[t x (member, i)]`` running estimates of one run setting (the last run when several)."""
    d = rows(df, "lyap_trace", **({"job__shared_input": shared} if shared is not None else {}))
    if d.empty:
        return pd.DataFrame()
    d = d[d["run_id"] == sorted(d["run_id"].unique())[-1]]
    return d.pivot_table(index="epoch", columns=["index", "member"], values="value")


def _spread(tr: pd.DataFrame) -> pd.DataFrame:
    """``[t x i]``: standard deviation over initial conditions (ddof 1)."""
    return tr.T.groupby(level="index").std(ddof=1).T


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 16 from the fig16 table (see the module docstring)."""
    settings = _settings(metrics)
    with rc_context(STYLE):
        fig, axes = new_figure(len(settings), 2, (11, 3.8 * len(settings)))
        for row, shared in enumerate(settings):
            a, b = axes[row, 0], axes[row, 1]
            lab = _label(shared) if shared is not None else "all runs"
            a.set_title(f"A{row + 1}  running estimates of $\\lambda_i$ ({lab})", loc="left")
            b.set_title(f"B{row + 1}  spread over initial conditions ({lab})", loc="left")
            tr = _traces(metrics, shared)
            if tr.empty:
                empty_panel(a, "no lyap_trace rows in the table")
                empty_panel(b, "no lyap_trace rows in the table")
                continue
            idx = sorted(tr.columns.get_level_values("index").unique())
            cols = dict(zip(idx, palette(len(idx), "tab10")))
            for i in idx:
                sub = tr[i]
                for j, mem in enumerate(sub.columns):
                    a.plot(sub.index, sub[mem], color=cols[i], lw=0.7, alpha=0.6,
                           label=f"$\\lambda_{{{i}}}$ (n={sub.shape[1]})" if j == 0 else None)
            a.set_xscale("log")
            a.set_xlabel("simulation time t (steps)")
            a.set_ylabel("$\\lambda_i$ estimate (1/step)")
            a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=4)   # below the axes: off the data
            sp = _spread(tr)
            for i in idx:
                b.plot(sp.index, sp[i].clip(lower=1e-12), color=cols[i], lw=1.6, label=f"$\\lambda_{{{i}}}$")
            b.axvline(CAPTION_T, color="grey", ls="--", lw=0.8, label=f"paper's t_sim = {CAPTION_T}")
            b.set_xscale("log")
            b.set_yscale("log")
            b.set_xlabel("simulation time t (steps)")
            b.set_ylabel("std over initial conditions (1/step)")
            b.legend(loc="upper right")
        d = describe(metrics)
        fig.suptitle("Fig 16: convergence of Lyapunov exponents from several initial conditions of one network\n"
                     f"scale={fmt_setting(d['scale'])}, N={fmt_setting(d['N'])}, "
                     f"{fmt_setting(d['members'])} initial conditions per run, a QR every step", fontsize=10)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim 16A on the fig16 table (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
