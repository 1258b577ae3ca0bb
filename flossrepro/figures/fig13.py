"""Fig 13: Lyapunov exponents of trained networks.

Spatial XOR (fig4's runs): lambda_1 and lambda_10 at the end of training vs the delay,
without flossing and with flossing during training, each network a dot coloured by its final
test accuracy (blue: chance, red: 100%); the paper's empirical fit for the networks that
learned, lambda(d) = -0.2 exp(-0.03 d), dashed.

- **A**: lambda_1, no flossing; **B**: lambda_1, flossing during training;
- **C**: lambda_10, no flossing; **D**: lambda_10, flossing during training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from flossrepro.figures import stats_training as stt
from flossrepro.figures.claims import Rule, claim_texts, evaluate_rules
from flossrepro.figures.stats_training import paper_fit
from flossrepro.figures.data import rows
from flossrepro.figures.plotting import STYLE, empty_panel, jitter, new_figure, suptitle

EXPERIMENTS = ("fig4",)
STUDY = "flossing"
TITLE = "Fig 13: lambda_1 and lambda_10 after training vs delay, coloured by accuracy (spatial XOR)"
PANELS = {"A": "lambda_1 after training vs delay, no flossing",
          "B": "lambda_1 after training vs delay, flossing during training",
          "C": "lambda_10 after training vs delay, no flossing",
          "D": "lambda_10 after training vs delay, flossing during training"}
METRICS = ("lyap[1]", "lyap[10]", "test_accuracy")
TASK = "spatial_xor"
CONDS = ("none", "during")
LEARNED, FAILED = 0.8, 0.6      # final accuracy above / below

RULES = (
    Rule("13B", quote="We find for successful networks with gradient flossing a systematic relationship between the "
                      "first Lyapunov exponent and the delay, that can be fitted by approximately by "
                      "lambda_1(d) = -0.2 exp(-0.03 delay)", where="Appendix D, Fig 13B",
         paper="successful nets on -0.2 exp(-0.03 d)",
         claim=f"networks that learned (final accuracy > {LEARNED}) follow the paper's fit -0.2 exp(-0.03 d) (median "
               f"abs(lambda_1 - fit) < 0.05); networks that failed (< {FAILED}) sit lower (median residual learned - "
               "failed > 0)",
         stat=stt.claim_lambda_fit, select={"task": TASK, "conditions": CONDS}, op="<", threshold=0.05,
         params={"learned": LEARNED, "failed": FAILED}, panel="B"),
)
CLAIMS = claim_texts(RULES)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 13A-D from fig4's table (see the module docstring)."""
    f = stt.lyap_finals(metrics, TASK)
    norm = Normalize(0.5, 1.0)
    with rc_context(STYLE):
        fig, axes = new_figure(2, 2, (11, 8))
        for r, (col, name) in enumerate((("l1", "lambda_1"), ("l10", "lambda_10"))):
            for j, s in enumerate(CONDS):
                ax = axes[r, j]
                ax.set_title(f"{'ABCD'[2 * r + j]}  {name}, {'no flossing' if s == 'none' else 'flossing during'}",
                             loc="left")
                ax.set_xlabel("delay d")
                ax.set_ylabel(f"{name} after training")
                g = f[(f["schedule"] == s) & f[col].notna()] if not f.empty else f
                if g.empty:
                    empty_panel(ax, f"no {name} rows for {TASK}/{s}")
                    continue
                x = g["delay"].to_numpy(float) + jitter(len(g), 1.0, seed=r + 2 * j)
                sc = ax.scatter(x, g[col], c=g["acc"], cmap="coolwarm", norm=norm, s=18, lw=0)
                ds = np.linspace(0, max(g["delay"].max(), 10), 100)
                ax.plot(ds, paper_fit(ds), "k--", lw=1, label="paper fit -0.2 exp(-0.03 d)")
                ax.axhline(0, color="grey", lw=0.6)
                ax.legend(loc="upper left")   # y near 0 at short delays: no data there
                fig.colorbar(sc, ax=ax, label="final test accuracy")
        suptitle(fig, "Fig 13: Lyapunov exponents of trained networks (spatial XOR)",
                 rows(metrics, task__name=TASK) if not f.empty else metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list:
    """Claim 13B on fig4's spatial XOR runs (the engine, ``evaluate_rules``)."""
    return evaluate_rules(RULES, metrics)
