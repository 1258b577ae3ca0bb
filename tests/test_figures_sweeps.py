"""Figs 5, 7 and 14 (k sweeps and orthogonal init): claims on synthetic tables whose answer is
known (each claim both ways, and "not run" when a condition is absent), and the plots.

Tables have the trainer's layout (run_id, member, epoch, metric, index, value, settings); each
network's test accuracy relaxes from chance to the final value the cell is given.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from flossrepro.figures import claims as cl
from flossrepro.figures import stats_tasks as st
from flossrepro.figures import fig5, fig7, fig14
from flossrepro.store.tables import select_metrics

TASKS = ("binary_xor", "spatial_xor")
K5, D5 = (1, 10, 40), (40, 70)     # fig5.yaml at small scale
K4, D4 = 75, (10, 40, 70)          # fig4.yaml at small scale


def table(cells: dict, R: int = 4, E: int = 100, every: int = 25, seed: int = 0) -> pd.DataFrame:
    """``cells``: ``{(experiment, task, schedule, k, delay): final accuracy}``."""
    rng = np.random.default_rng(seed)
    frames = []
    for (exp, task, sched, k, d), target in cells.items():
        run_id = f"{exp}/small/flossing={sched},flossing.k={k},task.delay={d},task={task}"
        recs = []
        for r in range(R):
            for e in range(0, E + 1, every):
                v = target + (0.5 - target) * np.exp(-e / 20) + 1e-3 * rng.standard_normal()
                recs.append((run_id, r, e, "test_accuracy", None, v))
                recs.append((run_id, r, e, "test_loss", None, 1 - v))
        df = pd.DataFrame(recs, columns=["run_id", "member", "epoch", "metric", "index", "value"])
        df["index"] = df["index"].astype("Int64")
        df = df.assign(**{"task.name": task, "task.delay": d, "flossing.schedule": sched, "flossing.k": k,
                          "scale.name": "small", "experiment_name": exp, "members": R, "epochs": E,
                          "arch.n_hidden": 80})
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def k_sweep(during, pre=lambda task, k, d: 0.5, none=0.5, with_fig4: bool = True) -> dict:
    """The cells of fig5 (k sweep, pre and during) plus fig4 (k=75, none/pre/during); ``during``
    and ``pre`` give each cell's final accuracy."""
    cells = {}
    for task in TASKS:
        for k in K5:
            for d in D5:
                cells[("fig5", task, "during", k, d)] = during(task, k, d)
                cells[("fig5", task, "pre", k, d)] = pre(task, k, d)
        if with_fig4:
            for d in D4:
                cells[("fig4", task, "during", K4, d)] = during(task, K4, d)
                cells[("fig4", task, "pre", K4, d)] = pre(task, K4, d)
                cells[("fig4", task, "none", K4, d)] = none
    return cells


def _verdict(mod, df) -> str:
    (c,) = mod.claims(df)
    return c.verdict


# ----------------------------------------------------------------------------- Fig 5
def test_solved_is_the_largest_delay_above_threshold():
    assert st.solved(np.array([0.9, 0.5, 0.95]), [10, 40, 70], 0.8) == 70
    assert st.solved(np.array([0.9, 0.85, 0.5]), [10, 40, 70], 0.8) == 40
    assert st.solved(np.array([0.5, 0.8]), [40, 70], 0.8) == 0      # strictly above 0.8
    reps = np.array([[0.9, 0.5], [0.5, 0.9]])                    # [delays, replicates]
    assert st.solved(reps, [40, 70], 0.8).tolist() == [40, 70]


def test_trend_is_kendall_tau_over_the_k_grid():
    assert st.trend(np.array([0, 40, 70, 70])) == pytest.approx(5 / 6)
    assert st.trend(np.array([70, 70, 40, 0])) == pytest.approx(-5 / 6)
    assert st.trend(np.array([[0, 0, 0], [0, 40, 70]])).tolist() == [0, 1]


def test_planned_k_and_delays_come_from_the_two_yamls():
    df = table(k_sweep(lambda t, k, d: 0.9))
    assert st.planned_ks(df) == [1, 10, 40, 75]
    assert st.planned_k_delays(df) == [40, 70]


def test_fig5_more_k_solves_longer_delays():
    # k=1 solves nothing, k=10 solves d=40, k>=40 solve d=70; fig4's none/pre rows at k=75 sit at
    # chance and must not be mixed into the during cells
    ok = table(k_sweep(lambda t, k, d: 0.95 if (k >= 40 or (k >= 10 and d <= 40)) else 0.52))
    (c,) = fig5.claims(ok)
    assert c.verdict == cl.REPRODUCED and not c.missing
    assert [gr.label for gr in c.groups] == ["binary temporal XOR", "spatial XOR"]
    p = c.groups[0].parts[0]
    # solved(k) = 0, 40, 70, 70 for k = 1, 10, 40, 75: five of six pairs rise, one ties
    assert p.value == pytest.approx(5 / 6) and p.label == "Kendall tau of solved(k) vs k over k=1,10,40,75"
    assert p.n == 4 * 4 * 2                                      # 4 k x 2 delays x 4 networks
    text = "\n".join(c.detail)
    assert "| delay | k=1 | k=10 | k=40 | k=75 |" in text and "| 10 | - | - | - | 0.947 (4) |" in text


def test_fig5_fails_when_k_does_not_matter_or_hurts():
    flat = table(k_sweep(lambda t, k, d: 0.95 if d <= 40 else 0.55))
    (c,) = fig5.claims(flat)
    assert c.verdict == cl.NOT_REPRODUCED and c.groups[0].parts[0].value == 0
    # only the largest k helps: a rise between two k of four is still a trend (tau > 0)
    top = table(k_sweep(lambda t, k, d: 0.95 if k == 75 else 0.52))
    assert _verdict(fig5, top) == cl.REPRODUCED
    worse = table(k_sweep(lambda t, k, d: 0.95 if k == 1 else 0.52))
    assert _verdict(fig5, worse) == cl.NOT_REPRODUCED
    # one task fails, the other holds: the claim needs both
    mixed = table(k_sweep(lambda t, k, d: 0.95 if (t == "binary_xor" and k == 75) else 0.52))
    assert _verdict(fig5, mixed) == cl.NOT_REPRODUCED


def test_fig5_without_fig4_runs_is_not_run():
    df = table(k_sweep(lambda t, k, d: 0.95 if k >= 40 else 0.52, with_fig4=False))
    (c,) = fig5.claims(df)
    assert c.verdict == cl.NOT_RUN and "k=75 d=40" in c.missing and not c.groups
    # a lost cell of the smallest k: not run, not a verdict from the rest
    cells = k_sweep(lambda t, k, d: 0.95 if k >= 40 else 0.52)
    del cells[("fig5", "spatial_xor", "during", 1, 70)]
    (c,) = fig5.claims(table(cells))
    assert c.verdict == cl.NOT_RUN and c.missing == "spatial_xor: k=1 d=70 not run (flossing during training)"
    assert len(c.groups) == 1


def test_a_cell_both_sweeps_ran_counts_the_k_sweep_networks_once():
    # at smoke scale fig4's k is one of fig5's: the same networks would otherwise count twice
    cells = k_sweep(lambda t, k, d: 0.9)
    cells[("fig4", "binary_xor", "during", 40, 70)] = 0.6
    f = st.k_finals(table(cells), "binary_xor", "during")
    x, nets = st.k_cell(f, 40, 70)
    assert len(x) == 4 and all(r.startswith("fig5/") for r, _ in nets) and np.all(x > 0.85)
    assert len(st.k_cell(f, 75, 10)[0]) == 4                   # fig4's own cells stay


# ----------------------------------------------------------------------------- Fig 7
def test_fig7_pre_fails_where_during_succeeds():
    ok = table(k_sweep(lambda t, k, d: 0.95, pre=lambda t, k, d: 0.95 if d <= 40 else 0.55))
    (c,) = fig7.claims(ok)
    assert c.verdict == cl.REPRODUCED and not c.missing
    # Sec 7.1 and the Fig 7 caption: delayed temporal XOR only
    assert [gr.label for gr in c.groups] == ["binary temporal XOR, d=70, k=75"]
    assert [p.label for p in c.groups[0].parts] == ["pre median final accuracy", "during median final accuracy"]
    text = "\n".join(c.detail)
    assert text.count("| delay | k=1 | k=10 | k=40 | k=75 |") == 2    # both schedules


def test_fig7_fails_when_pre_succeeds_or_during_fails():
    pre_ok = table(k_sweep(lambda t, k, d: 0.95, pre=lambda t, k, d: 0.9 if k == 75 else 0.55))
    assert _verdict(fig7, pre_ok) == cl.NOT_REPRODUCED
    during_bad = table(k_sweep(lambda t, k, d: 0.52, pre=lambda t, k, d: 0.52))
    (c,) = fig7.claims(during_bad)
    assert c.verdict == cl.NOT_REPRODUCED
    assert [p.verdict for p in c.groups[0].parts] == [cl.REPRODUCED, cl.NOT_REPRODUCED]


def test_fig7_without_the_largest_cell_is_not_run():
    cells = k_sweep(lambda t, k, d: 0.95, pre=lambda t, k, d: 0.55)
    del cells[("fig4", "binary_xor", "pre", 75, 70)]
    (c,) = fig7.claims(table(cells))
    assert c.verdict == cl.NOT_RUN and c.missing == "binary_xor: k=75 d=70 not run with pre"
    no_fig4 = table(k_sweep(lambda t, k, d: 0.95, pre=lambda t, k, d: 0.55, with_fig4=False))
    assert _verdict(fig7, no_fig4) == cl.NOT_RUN


# ----------------------------------------------------------------------------- Fig 14
def fig14_cells(acc: dict, delays=(40, 70)) -> dict:
    return {("fig14", task, s, 75, d): acc[s] for task in TASKS for s in ("none", "pre", "during") for d in delays}


def _fig14(df) -> dict:
    return {c.id: c for c in fig14.claims(df)}


def test_fig14_ordering_holds():
    df = table(fig14_cells({"none": 0.5, "pre": 0.7, "during": 0.9}))
    c = _fig14(df)["14D"]
    assert c.verdict == cl.REPRODUCED and not c.missing
    assert _fig14(df)["14C"].verdict == cl.REPRODUCED          # one claim per task (the paper runs both)
    assert [gr.label for gr in c.groups] == ["d=40,70 pooled"]
    p = c.groups[0].parts[0]
    assert p.label == "mean pre - mean none" and abs(p.value - 0.2) < 0.01 and p.n == 16
    assert "| delay | none (n) | pre (n) | during (n) |" in "\n".join(c.detail)


def test_fig14_ordering_fails():
    assert _fig14(table(fig14_cells({"none": 0.9, "pre": 0.7, "during": 0.5})))["14D"].verdict == cl.NOT_REPRODUCED
    # pre beats none but during does not beat pre
    c = _fig14(table(fig14_cells({"none": 0.5, "pre": 0.9, "during": 0.7})))["14D"]
    assert c.verdict == cl.NOT_REPRODUCED
    assert [p.verdict for p in c.groups[0].parts] == [cl.REPRODUCED, cl.NOT_REPRODUCED]


def test_fig14_lacking_a_condition_is_not_run():
    cells = fig14_cells({"none": 0.5, "pre": 0.7, "during": 0.9})
    del cells[("fig14", "spatial_xor", "during", 75, 70)]
    c = _fig14(table(cells))["14D"]
    assert c.verdict == cl.NOT_RUN and c.missing == "spatial_xor: d=70 not run with all of none, pre, during"
    # delays below the sweep's two largest do not stand in for them
    c = _fig14(table(fig14_cells({"none": 0.5, "pre": 0.7, "during": 0.9}, delays=(10, 40))))["14D"]
    assert c.verdict == cl.NOT_RUN and not c.groups


# ----------------------------------------------------------------------------- plots
def _full(mod):
    if mod is fig14:
        return table(fig14_cells({"none": 0.5, "pre": 0.7, "during": 0.9}))
    return table(k_sweep(lambda t, k, d: 0.95 if k >= 40 else 0.55, pre=lambda t, k, d: 0.6))


@pytest.mark.parametrize("mod, n_axes", [(fig5, 4), (fig7, 8 + 2), (fig14, 4)])
def test_plots_draw_full_and_partial_tables(mod, n_axes):
    full = _full(mod)
    fig = mod.plot(full)
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes      # fig7: two colour bars
    only_binary = full[full["task.name"] == "binary_xor"]
    assert isinstance(mod.plot(only_binary), Figure)
    fig.savefig(__import__("io").BytesIO(), format="png", dpi=40)


@pytest.mark.parametrize("mod", [fig5, fig7, fig14])
def test_modules_read_only_their_declared_metrics(mod):
    full = _full(mod)
    only = select_metrics(full, mod.METRICS)
    assert [(c.id, c.verdict, c.measured()) for c in mod.claims(full)] == \
           [(c.id, c.verdict, c.measured()) for c in mod.claims(only)]


def test_smoke_tables_are_never_evidence():
    df = _full(fig5).assign(**{"scale.name": "smoke"})
    assert {c.verdict for c in cl.evaluate(fig5, df)} == {cl.NOT_RUN}
