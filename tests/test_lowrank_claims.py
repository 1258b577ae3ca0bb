"""Every low-rank rule can fail (the pattern of tests/test_claims.py): each claim LR1-LR5 is evaluated on
a copy of the committed table whose effect is broken (two conditions' or metrics' labels swapped, or
the swept value reversed) and its verdict must no longer be ``reproduced``; where the committed table
reproduces the claim the test checks that first, so the break is what flips it. The open questions
LR6 and LR7 are ``answered`` on the committed tables, with an answer computed from them.

Fast: no training; the committed tables under ``results/`` (small scale) and
``results/paper-lowrank/`` (the authors' parameters).
"""
from __future__ import annotations

import pandas as pd
import pytest

from flossrepro.figures import discover
from flossrepro.figures.claims import ANSWERED, NOT_REPRODUCED, NOT_RUN, REPRODUCED, evaluate
from test_claims import swap, table   # the committed tables, the label swap


def claim(name: str, df: pd.DataFrame, cid: str):
    return next(c for c in evaluate(discover()[name], df) if c.id == cid)


# ----------------------------------------------------------------------------- breaks
def reverse_values(df: pd.DataFrame, col: str, within: str | None = None) -> pd.DataFrame:
    """Map the swept values of ``col`` onto themselves in reverse order (per ``within`` group)."""
    out = df.copy()
    groups = [out.index] if within is None or within not in out else [out.index[out[within] == v]
                                                                       for v in out[within].dropna().unique()]
    for idx in groups:
        vals = sorted(out.loc[idx, col].dropna().unique())
        out.loc[idx, col] = out.loc[idx, col].map(dict(zip(vals, vals[::-1])))
    return out


def swap_g0_and_interior(df: pd.DataFrame) -> pd.DataFrame:
    """LR2: per task, g = 0 and the fastest interior g (lowest median convergence epoch) exchange their
    networks: g = 0 is then the fastest, no longer a U."""
    parts = []
    for task, d in df.groupby("task.name"):
        gs = sorted(d["init.g"].unique())
        conv = d[d["metric"] == "convergence_epoch"].groupby("init.g")["value"].median()
        mid = min(gs[1:-1], key=lambda v: conv.get(v, float("inf")))
        parts.append(swap(d, "init.g", gs[0], mid).assign(**{"init.g": lambda x: x["init.g"].astype(float)}))
    return pd.concat(parts)


# (figure, claim, folder, break, whether the committed table reproduces it)
CASES = [
    # LR1: the functional rank read as the full spectrum's effective rank (dW is full-rank by that measure)
    ("lr_tasks", "LR1", "", lambda d: swap(d, "metric", "functional_rank", "dW_effective_rank"), True),
    ("lr_tasks", "LR1", "paper-lowrank", lambda d: swap(d, "metric", "functional_rank", "dW_effective_rank"), True),
    ("lr_gsweep", "LR2", "paper-lowrank", swap_g0_and_interior, True),
    ("lr_gsweep", "LR3", "", lambda d: reverse_values(d, "init.g", "task.name"), True),
    ("lr_gsweep", "LR3", "paper-lowrank", lambda d: reverse_values(d, "init.g", "task.name"), True),
    ("lr_nscale", "LR4", "", lambda d: reverse_values(d, "arch.n_hidden"), True),
    ("lr_nscale", "LR4", "paper-lowrank", lambda d: reverse_values(d, "arch.n_hidden"), True),
    ("lr_linear", "LR5", "", lambda d: reverse_values(d, "init.g", "task.target_amp"), False),
    # LR5 at the paper's N (5-53 networks per condition): reproduced, every part within the tolerance taken
    # from the authors' own figure
    ("lr_linear", "LR5", "paper-lowrank", lambda d: reverse_values(d, "init.g", "task.target_amp"), True),
]


@pytest.mark.parametrize("name, cid, where, brk, holds", CASES,
                         ids=[f"{c[1]}{'@' + c[2] if c[2] else ''}" for c in CASES])
def test_a_broken_effect_is_not_reproduced(name, cid, where, brk, holds):
    df = table(name, where)
    before = claim(name, df, cid).verdict
    assert (before == REPRODUCED) == holds, f"{cid} on the committed table: {before}"
    after = claim(name, brk(df), cid)
    assert after.verdict != REPRODUCED, f"{cid} still reproduced after its effect was broken"
    assert after.groups, f"{cid}: the break left nothing measured"


def test_lr2_judges_each_task_and_leaves_a_grid_without_the_authors_minimum_open():
    """At the authors' parameters the three tasks show the U; without the g near Romo's minimum (~2.1)
    its grid (0, 0.3, 0.6, 0.9, 3) cannot show it, so the claim is open (not run); breaking the U decides it."""
    t = table("lr_gsweep", "paper-lowrank")
    c = claim("lr_gsweep", t, "LR2")
    assert c.verdict == REPRODUCED
    assert {gr.label: gr.verdict for gr in c.groups} == {"flip-flop": REPRODUCED, "Mante": REPRODUCED,
                                                         "Romo": REPRODUCED}
    romo_mid = (t["task.name"] == "romo") & t["init.g"].between(1.2, 2.8)
    open_ = claim("lr_gsweep", t[~romo_mid], "LR2")
    assert open_.verdict == NOT_RUN and "Romo: the grid (0, 0.3, 0.6, 0.9, 3)" in open_.missing
    broken = claim("lr_gsweep", swap_g0_and_interior(t), "LR2")
    assert broken.base_verdict == NOT_REPRODUCED


def test_every_lowrank_claim_has_a_break_or_is_a_question():
    rules = {r.id: r for m in discover().values() if m.STUDY == "lowrank" for r in getattr(m, "RULES", ())}
    assert set(rules) == {f"LR{i}" for i in range(1, 8)}
    assert {c[1] for c in CASES} == {cid for cid, r in rules.items() if not r.question} == {f"LR{i}" for i in range(1, 6)}
    for r in rules.values():   # the authors' values are printed beside ours
        assert r.quote and r.where and r.paper and r.claim and r.authors and callable(r.stat), r.id
        assert r.stat.__module__ in ("flossrepro.figures.lr_stats", "flossrepro.figures.lr_compare"), r.id


@pytest.mark.parametrize("name, cid, ref", [("lr_optim", "LR6", "Adam"), ("lr_floss", "LR7", "baseline (no flossing)")])
def test_open_questions_are_answered_from_the_tables(name, cid, ref):
    c = claim(name, table(name), cid)
    assert c.verdict == ANSWERED and c.answer.startswith("At matched training loss, ") and ref in c.answer
    assert "functional rank" in c.answer and "effective rank" in c.answer
    # the answer follows the numbers: exchange the reference's networks with another condition's
    other = {"LR6": ("optim.name", "adam", "sgd"), "LR7": ("flossing.schedule", "none", "during")}[cid]
    flipped = claim(name, swap(table(name), *other), cid)
    assert flipped.verdict == ANSWERED and flipped.answer != c.answer


def test_lr5_judges_the_gradient_norm_where_the_authors_figure_shows_it():
    """Their gradient-norm panel ends at 6 and their g=0.9 points lie above it: ours at g=0.9 is printed,
    not judged; at g <= 0.8 it is judged, and the other quantities at every g."""
    c = claim("lr_linear", table("lr_linear", "paper-lowrank"), "LR5")
    parts = [(gr.label, p.label) for gr in c.groups for p in gr.parts]
    assert not [x for x in parts if x[0].endswith("g=0.9") and "gradient norm" in x[1]]
    assert [x for x in parts if x[0].endswith("g=0.8") and "gradient norm" in x[1]]
    assert [x for x in parts if x[0].endswith("g=0.9") and "norm(dW)" in x[1]]
    assert any("judged = False" in line for line in c.detail)


def test_lr5_tolerances_admit_the_authors_figure_and_reject_the_neighbouring_law():
    """Each tolerance admits every point of the authors' own figure (their distance from the theory, read
    off their figure), and stays below the distance at which the neighbouring power law departs: the
    committed table with norm(dW) bent onto (1 - g^2)^2 is not reproduced."""
    import numpy as np
    from flossrepro.figures import lr_linear, lr_stats
    for q, by_z in lr_linear.AUTHORS_LINEAR.items():
        th = lr_stats.LINEAR_THEORY[q]
        unit = 1.0 if q == "shuffle_rel" else max(th(lr_linear.AUTHORS_G))
        for z, pts in by_z.items():
            for g, (m, _) in pts.items():
                if g <= lr_linear.G_MAX.get(q, 1.0):
                    assert abs(m - th(g)) / unit < lr_linear.TOL[q], (q, z, g)
    assert lr_linear.TOL["dW_norm"] < 0.25 and lr_linear.TOL["conv"] < 0.25   # max |x - x^2| on [0, 1]
    t = table("lr_linear", "paper-lowrank")
    c = claim("lr_linear", t, "LR5")
    assert any("authors_error" in line for line in c.detail)   # their simulation beside ours
    bent = t.copy()
    dw = bent["metric"] == "dW_norm"
    bent.loc[dw, "value"] = bent.loc[dw, "value"] * (1 - bent.loc[dw, "init.g"] ** 2)
    b = claim("lr_linear", bent, "LR5")
    assert b.verdict != REPRODUCED and b.base_verdict == NOT_REPRODUCED
    assert [p for gr in b.groups for p in gr.parts if "norm(dW)" in p.label and p.verdict == NOT_REPRODUCED]


def test_lr5_ratio_resamples_the_same_networks_in_pairs():
    """The ratio to g = 0 divides the same networks (seed + member: the same draws at every g); their
    shared spread cancels, so at g=0.1 (norm(dW) 1% below g = 0 in every network) the interval is
    narrow; resampled independently, the two medians' spread alone reaches 0.1 and more."""
    import numpy as np
    from flossrepro.figures import lr_stats
    from flossrepro.store.resolvers import linear_lr
    t = lr_stats.linear_table(table("lr_linear", "paper-lowrank"), linear_lr)
    z = t[t["task.target_amp"] == 0.5]
    s, base = z[np.isclose(z["init.g"], 0.1)], z[np.isclose(z["init.g"], 0.0)]
    rng = np.random.default_rng(0)
    paired = lr_stats._ratio_reps(s, base, "dW_norm", rng)
    assert np.percentile(paired, 97.5) - np.percentile(paired, 2.5) < 0.05
    apart = lr_stats._ratio_reps(s, base.assign(seed=base["seed"] + 100), "dW_norm", rng)   # no pairs: independent
    assert np.percentile(apart, 97.5) - np.percentile(apart, 2.5) > 0.1
