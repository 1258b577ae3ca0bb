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

from flossrepro.figures.claims import Claim, Group, median_reps, part, part_from_reps, rng_for
from flossrepro.figures.data import NET, last_epoch_rows, rows
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
FIT_TOL = 0.05                  # learned networks within this of the paper's fit (median |residual|)
CLAIMS = {
    "13B": f"networks that learned (final accuracy > {LEARNED}) follow one curve of lambda_1 in d, the paper's fit "
           f"-0.2 exp(-0.03 d) (median |lambda_1 - fit| < {FIT_TOL}); networks that failed (< {FAILED}) sit lower "
           f"(median residual learned - failed > 0)",
}


def paper_fit(d):
    return -0.2 * np.exp(-0.03 * np.asarray(d, float))


def finals(df: pd.DataFrame) -> pd.DataFrame:
    """One row per spatial XOR network: delay, schedule, final accuracy, lambda_1, lambda_10."""
    sub = rows(df, task__name=TASK)
    if sub.empty:
        return pd.DataFrame(columns=NET + ["delay", "schedule", "acc", "l1", "l10"])
    acc = last_epoch_rows(sub[sub["metric"] == "test_accuracy"]).drop_duplicates(NET, keep="last")
    out = acc[NET + ["task.delay", "flossing.schedule", "value"]].rename(
        columns={"task.delay": "delay", "flossing.schedule": "schedule", "value": "acc"})
    lam = sub[sub["metric"] == "lyap"]
    for i, col in ((1, "l1"), (10, "l10")):
        li = last_epoch_rows(lam[lam["index"] == i]).drop_duplicates(NET, keep="last")[NET + ["value"]]
        out = out.merge(li.rename(columns={"value": col}), on=NET, how="left")
    out["acc"] = out["acc"].where(np.isfinite(out["acc"]), 0.5)
    return out.reset_index(drop=True)


def plot(metrics: pd.DataFrame) -> Figure:
    """Fig 13A-D from fig4's table (see the module docstring)."""
    f = finals(metrics)
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
                ax.legend(loc="lower right")
                fig.colorbar(sc, ax=ax, label="final test accuracy")
        suptitle(fig, "Fig 13: Lyapunov exponents of trained networks (spatial XOR)",
                 rows(metrics, task__name=TASK) if not f.empty else metrics)
    return fig


def claims(metrics: pd.DataFrame) -> list[Claim]:
    """Claim 13B on fig4's spatial XOR runs (none and during pooled)."""
    c, rng = Claim("13B", CLAIMS["13B"]), rng_for("13B")
    f = finals(metrics)
    f = f[f["schedule"].isin(CONDS) & f["l1"].notna()] if not f.empty else f
    if f.empty:
        c.missing = f"{TASK}: no lambda_1 after training (diagnostics.lyap_every) in the table"
        return [c]
    f = f.assign(res=f["l1"] - paper_fit(f["delay"]))
    ok, bad = f[f["acc"] > LEARNED], f[f["acc"] < FAILED]
    parts = []
    if len(ok):
        parts.append(part("learned: median |lambda_1 - fit|", ok["res"].abs(), np.median, "<", FIT_TOL,
                          zip(ok["run_id"], ok["member"]), rng))
    if len(ok) and len(bad):
        mo, ro = median_reps(ok["res"], rng)
        mb, rb = median_reps(bad["res"], rng)
        parts.append(part_from_reps("median residual, learned - failed", mo - mb, ro - rb, ">", 0.0,
                                    list(zip(ok["run_id"], ok["member"])) + list(zip(bad["run_id"], bad["member"]))))
    else:
        c.missing = f"{TASK}: no network {'learned' if not len(ok) else 'failed'} (final accuracy " \
                    f"{'>' if not len(ok) else '<'} {LEARNED if not len(ok) else FAILED})"
    if parts:
        c.groups.append(Group(f"{TASK}, none and during pooled", parts))
    tab = f.groupby(["delay", "schedule"]).agg(n=("acc", "size"), learned=("acc", lambda a: int((a > LEARNED).sum())),
                                               l1=("l1", "median"), l10=("l10", "median")).reset_index()
    c.detail = ["Median lambda_1 and lambda_10 after training per delay and schedule (spatial XOR), and how many "
                "networks learned; paper fit at each delay in the last column.", "",
                "| delay | schedule | networks | learned | median lambda_1 | median lambda_10 | fit |",
                "|---|---|---|---|---|---|---|"] + [
        f"| {r.delay:g} | {r.schedule} | {r.n} | {r.learned} | {r.l1:.3f} | {r.l10:.3f} | {paper_fit(r.delay):.3f} |"
        for r in tab.itertuples()]
    return [c]
