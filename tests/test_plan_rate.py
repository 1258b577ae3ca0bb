"""The planner prices the low-rank study's rate networks (arch rate, rate_linear) from their own
rows of the Table 1 cost table, and the cost job measures those rows.

Oracles: cost tables generated from known coefficients (the fitted model must price every lr_*
job, grow with N and with epochs, say when it extrapolates, and return a measured point's own
time); the grid the table1 config implies, counted here from its settings; the rate epoch
functions run at a tiny size. Nothing here is timed against a threshold.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from flossrepro.jobs import cost as Cm
from flossrepro.jobs.cost import CostModel, coords, floss_features, train_features
from flossrepro.run import compose
from flossrepro.run import estimate as P
from flossrepro.run.plan import sweep_plans
from flossrepro.store import config as C

from test_plan import FLOSS_C, TRAIN_C, synthetic_cost_table

LR_EXPERIMENTS = ("lr_flipflop", "lr_mante", "lr_romo", "lr_nscale", "lr_optim", "lr_floss", "lr_floss_xor", "lr_linear")
RATE_N = (32, 64, 128, 256, 512)      # measured up to 512: the paper's N=1024 jobs extrapolate


def rate_rows(archs=("rate", "rate_linear"), Ns=RATE_N, scale: float = 1.5, bump: dict | None = None) -> pd.DataFrame:
    """The rate networks' ``cost_*`` / ``costpt_*`` rows as :func:`flossrepro.jobs.cost.rate_grid` names
    them, ``scale`` times the tanh coefficients' times (``bump``: ``{metric: factor}`` on top)."""
    rows = []

    def add(kind, factor, value, kw):
        c = coords(kind, kw)
        N, B, T, k, Tf, s, R = c
        sec = (TRAIN_C @ train_features(N, B, T, R)) if kind == "train" else (FLOSS_C @ floss_features(N, k, Tf, s, 10, R))
        metric = f"cost_{kind}_ms_{factor}_{value}"
        for rep in range(3):
            rows.append(("r", 0, rep, metric, None, 1e3 * sec * scale * (bump or {}).get(metric, 1.0)))
        for i, v in enumerate(c, 1):
            rows.append(("r", 0, 0, f"costpt_{kind}_{factor}_{value}", i, float(v)))

    for a in archs:
        for N in Ns:
            for B in (1, 32):
                add("train", f"rate-{a}-B{B}", N, dict(N=N, B=B, T=100))
            for k in (1, 16, 64):
                add("floss", f"rate-{a}-k{k}", N, dict(N=N, k=min(k, N), T=100))
        for R in (4, 16):
            add("train", f"rateR-{a}", R, dict(N=32, B=32, T=100, R=R))
            add("floss", f"rateR-{a}", R, dict(N=32, k=16, T=100, R=R))
    df = pd.DataFrame(rows, columns=["run_id", "member", "epoch", "metric", "index", "value"])
    df["index"] = df["index"].astype("Int64")
    return df


def table(**kw) -> pd.DataFrame:
    return pd.concat([synthetic_cost_table(archs=("tanh",)), rate_rows(**kw)], ignore_index=True)


def _cfg(overrides):
    cmd = compose.job_configs(overrides)
    compose.job_dir(cmd.jobs[0].cfg, cmd.multirun)
    return cmd.jobs[0].cfg


def test_every_lr_experiment_at_paper_scale_is_priced_from_the_rate_rows():
    """Every job of every lr_* sweep at scale=paper, the gain pinned (init.g changes no cost; the
    other swept settings, N, task, optimiser, flossing, target, stay swept)."""
    model = CostModel.fit(table())
    assert {"rate", "rate_linear"} <= set(model.coef)
    plans = {}
    for exp in LR_EXPERIMENTS:
        plans[exp], _ = sweep_plans([f"+experiment={exp}", "scale=paper", "init.g=0.9"], model, run_ids=False)
        assert plans[exp], exp
        for p in plans[exp]:
            assert p.seconds is not None and math.isfinite(p.seconds) and p.seconds > P.STARTUP_S, (exp, p.name, p.note)
            assert "not measured" not in p.note and "priced as" not in p.note, (exp, p.name, p.note)
    # lr_linear (N=1024) and lr_nscale's N=1024 jobs lie above the measured N <= 512: extrapolated, and said so
    assert all(p.note.startswith(P.EXTRAPOLATED) and "N=1024" in p.note and "<= 512" in p.note
               for p in plans["lr_linear"])
    ns = plans["lr_nscale"]
    ext = [p for p in ns if p.note]
    assert ext and all("arch.n_hidden=1024" in p.name and P.EXTRAPOLATED in p.note for p in ext)
    assert f"{len(ext)} job(s) {P.EXTRAPOLATED} beyond the measured N" in P.format_plan(ns, model.source, 2)


def test_a_rate_network_estimate_grows_with_N_and_with_epochs():
    model = CostModel.fit(table())
    secs = {}
    for N in (64, 128, 256, 512, 1024):
        for E in (100, 400):
            cfg = _cfg(["+experiment=lr_flipflop", "scale=paper", "init.g=0.9", f"arch.n_hidden={N}", f"epochs={E}"])
            p = P.estimate(cfg, model, "x")
            assert p.train_epochs == E and p.networks == 5
            secs[N, E] = p.seconds
    for E in (100, 400):
        s = [secs[N, E] for N in (64, 128, 256, 512, 1024)]
        assert all(a < b for a, b in zip(s, s[1:])), s
    for N in (64, 128, 256, 512, 1024):
        assert secs[N, 400] > 3 * (secs[N, 100] - P.STARTUP_S)
    # and the rate network's own coefficients price it: 1.5 times the tanh network's here
    t = _cfg(["+experiment=lr_flipflop", "scale=paper", "init.g=0.9"])
    T = C.build_task(t).seq_len            # seq_len: null -> the flip-flop trial, 100 steps
    assert T == 100
    assert model.train_s(256, 32, T, "rate", 5) == pytest.approx(1.5 * model.train_s(256, 32, T, "tanh", 5), rel=1e-6)
    lin = _cfg(["+experiment=lr_linear", "scale=paper", "init.g=0.5", "task.target_amp=1.0"])
    assert C.build_task(lin).seq_len == 202 and P.estimate(lin, model, "x").seconds > P.STARTUP_S


def test_a_measured_point_prices_at_its_measured_time_and_a_table_without_rate_rows_falls_back():
    # a point off the fitted law (W out of cache at batch 1): the estimate there is the measured time
    off = "cost_train_ms_rate-rate_linear-B1_512"
    df = table(bump={off: 5.0})
    m = CostModel.fit(df)
    meas = 1e-3 * Cm.medians(df)[("train", "rate-rate_linear-B1", 512)]
    assert m.train_s(512, 1, 100, "rate_linear") == pytest.approx(meas, rel=0.03)
    bare = CostModel.fit(df, anchored=False)
    assert bare.train_s(512, 1, 100, "rate_linear") < 0.5 * meas
    # the other points barely move
    assert m.train_s(128, 32, 100, "rate_linear") == pytest.approx(1.5 * TRAIN_C @ train_features(128, 32, 100), rel=0.05)
    # no rate rows: priced as tanh, and the plan says so
    old = CostModel.fit(synthetic_cost_table(archs=("tanh",)))
    p = P.estimate(_cfg(["+experiment=lr_flipflop", "scale=paper", "init.g=0.9"]), old, "x")
    assert p.seconds is not None and "priced as tanh" in p.note


def test_the_cost_job_grid_holds_the_rate_points_and_they_run():
    cmd = compose.job_configs(["+experiment=table1", "scale=paper"], True)
    cfg = cmd.jobs[0].cfg
    compose.job_dir(cfg, cmd.multirun)
    job = cfg.job
    pts = [p for p in Cm.rate_grid(job, dict(job.base))]
    Ns = [int(n) for n in job.train_N]
    assert max(Ns) == 1024
    for a in ("rate", "rate_linear"):
        got = {(k, f, v) for k, f, v, _ in pts if f.split("-")[1] == a}
        assert {("train", f"rate-{a}-B{B}", N) for B in (1, 32) for N in Ns} <= got
        assert {("floss", f"rate-{a}-k{k}", N) for k in (1, 16, 64) for N in Ns if k <= N} <= got
        assert {R for k, f, R, _ in pts if f == f"rateR-{a}"} == {int(r) for r in job.ensemble_R if int(r) > 1}
    # k = min(k, N), each once: N=32 floss at k 1, 16, 32 (from 64)
    assert sorted(kw["k"] for k, f, v, kw in pts if f.startswith("rate-rate-k") and v == 32) == [1, 16, 32]
    # T1D: the flossing-vs-N grids reach the levelled-off sizes (k fixed to 2000; k = N to 768)
    assert max(job.floss_N) == 2000 and max(job.floss_NkN) == 768
    # the epoch functions run (tiny sizes), batch and ensemble as asked
    for a in ("rate", "rate_linear"):
        Cm.rate_train_epoch(2, N=8, B=3, T=20, arch=a)()
        Cm.rate_floss_epoch(2, N=8, k=4, T=20, arch=a)()
    # the grid's settings are live: a job override changes the points
    few = OmegaConf.merge(job, {"rate_archs": ["rate"], "rate_N": [8, 16], "rate_B": [4], "rate_k": [2], "rate_T": 30})
    assert [(k, f, v, kw["T"]) for k, f, v, kw in Cm.rate_grid(few, dict(few.base)) if f.startswith("rate-")] == \
        [("train", "rate-rate-B4", 8, 30), ("floss", "rate-rate-k2", 8, 30),
         ("train", "rate-rate-B4", 16, 30), ("floss", "rate-rate-k2", 16, 30)]
