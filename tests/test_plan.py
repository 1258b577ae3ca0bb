"""The cost model (Table 1 rows -> seconds per epoch), the planner (--plan) and the SLURM time limit.

Oracles: a cost table generated from known coefficients (the fit must recover them); the
counts of networks and epochs a config implies, computed here from its settings; the
arithmetic of the time limit. Nothing here times anything.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from flossrepro.run import compose
from flossrepro.run import estimate as P
from flossrepro.jobs.cost import CostModel, coords, floss_features, train_features
from flossrepro.run.launcher import SlurmLauncher, user_set_timeout

ROOT = Path(__file__).resolve().parents[1]
TRAIN_C = np.array([2e-5, 1e-5, 3e-9, 4e-10, 2e-9])    # T, R T, R N B T, R N^2 B T, R N^2 T
FLOSS_C = np.array([5e-5, 2e-5, 1e-9, 3e-10, 2e-10])    # T_f, R T_f, R N^2 T_f, R N^2 k T_q, R N k^2 T_q / s


def synthetic_cost_table(archs=("tanh", "lstm"), scale: float = 1.0) -> pd.DataFrame:
    """``cost_*`` / ``costpt_*`` rows as the cost job writes them, with times from known coefficients
    (the LSTM ``scale`` times the tanh network's)."""
    rows = []

    def add(kind, factor, value, kw, arch_scale=1.0):
        c = coords(kind, kw)
        N, B, T, k, Tf, s, R = c
        sec = (TRAIN_C @ train_features(N, B, T, R)) if kind == "train" else (FLOSS_C @ floss_features(N, k, Tf, s, 10, R))
        for rep in range(3):
            rows.append(("r", 0, rep, f"cost_{kind}_ms_{factor}_{value}", None, 1e3 * sec * arch_scale))
        for i, v in enumerate(c, 1):
            rows.append(("r", 0, 0, f"costpt_{kind}_{factor}_{value}", i, float(v)))

    for N in (16, 32, 64, 128):
        add("train", "N", N, dict(N=N, B=16, T=300))
        add("floss", "N", N, dict(N=N, k=16, T=55))
    for B in (4, 64):
        add("train", "B", B, dict(N=80, B=B, T=300))
    for k in (4, 32, 64):
        add("floss", "k", k, dict(N=80, k=k, T=55))
    for s in (2, 8):
        add("floss", "sons", s, dict(N=80, k=75, T=300, s_ons=s))
    for R in (4, 16):
        add("train", "R", R, dict(N=80, B=16, T=300, R=R))
        add("floss", "R", R, dict(N=80, k=16, T=55, R=R))
    for a in archs:
        f = scale if a == "lstm" else 1.0
        for N in (16, 32, 64, 128):
            add("train", f"arch-{a}", N, dict(N=N, B=16, T=300), f)
            add("floss", f"arch-{a}", N, dict(N=N, k=min(16, N), T=55), f)
            add("floss1", f"arch-{a}", N, dict(N=N, k=1, T=300), f)
        for R in (4, 16):
            add("train", f"archR-{a}", R, dict(N=32, B=16, T=300, R=R), f)
            add("floss1", f"archR-{a}", R, dict(N=32, k=1, T=300, R=R), f)
    df = pd.DataFrame(rows, columns=["run_id", "member", "epoch", "metric", "index", "value"])
    df["index"] = df["index"].astype("Int64")
    return df


def test_cost_model_recovers_the_coefficients_it_was_made_from():
    m = CostModel.fit(synthetic_cost_table(scale=3.0))
    np.testing.assert_allclose(m.coef["tanh"][0], TRAIN_C, rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(m.coef["tanh"][1], FLOSS_C, rtol=1e-6, atol=1e-15)
    # the LSTM's own points: three times the cost everywhere
    for N, R in ((24, 1), (50, 7)):
        assert m.floss_s(N, 1, 300, arch="lstm", R=R) == pytest.approx(3 * m.floss_s(N, 1, 300, R=R), rel=1e-6)
        assert m.train_s(N, 16, 200, arch="lstm", R=R) == pytest.approx(3 * m.train_s(N, 16, 200, R=R), rel=1e-6)
    # relu and linear networks use the tanh coefficients; an architecture never measured is unknown
    assert m.train_s(40, 16, 100, arch="relu") == m.train_s(40, 16, 100)
    assert not CostModel.fit(synthetic_cost_table(archs=("tanh",))).known("gru")


def _cfg(overrides):
    cmd = compose.job_configs(overrides)
    out = []
    for job in cmd.jobs:
        compose.job_dir(job.cfg, cmd.multirun)
        out.append(job.cfg)
    return out


def test_planner_counts_networks_epochs_and_prices_them_with_the_model():
    model = CostModel.fit(synthetic_cost_table())
    cfg = _cfg(["scale=small", "flossing=during", "flossing.episodes_at=[0,100,200]", "flossing.epochs=30",
                "members=3", "epochs=500"])[0]
    p = P.estimate(cfg, model, "x")
    assert (p.networks, p.train_epochs, p.floss_epochs) == (3, 500, 90)
    d, t, f = cfg.diagnostics, cfg.task, cfg.flossing
    n_lyap = 2 * 3 + 500 // int(d.lyap_every) + 2
    assert p.lyap_evals == n_lyap
    want = (P.STARTUP_S + 500 * model.train_s(32, 16, int(t.seq_len), R=3)
            + (500 // int(d.eval_every) + 2) * P.EVAL_SHARE * model.train_s(32, int(d.eval_batch_size), int(t.seq_len), R=3)
            + 90 * model.floss_s(32, int(f.k), int(f.horizon), 1, transient_h=10, R=3)
            + n_lyap * P.LYAP_SHARE * model.floss_s(32, int(d.lyap_k), int(d.lyap_seq_len), 1, transient_h=10, R=3))
    assert p.seconds == pytest.approx(want, rel=1e-12)
    assert p.core_hours == pytest.approx(want / 3600)
    # no measured table: counted, not priced, and said so
    q = P.estimate(cfg, None, "x")
    assert q.seconds is None and "table1" in q.note


def test_plan_option_prints_every_job_and_makes_nothing(tmp_path):
    (tmp_path / "res" / "table1").mkdir(parents=True)
    df = synthetic_cost_table(archs=("tanh", "lstm", "gru"))
    df.to_parquet(tmp_path / "res" / "table1" / "metrics.parquet")
    env = {**os.environ, "FLOSSREPRO_COSTS": str(tmp_path / "res")}
    before = sorted(p.name for p in tmp_path.iterdir())
    p = subprocess.run([sys.executable, "-m", "flossrepro", "+experiment=fig6", "scale=small", "--plan"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    assert "4 job(s), 40 networks" in out and "core-hours" in out
    for fam in ("lstm", "gru", "relu", "relu_gbar"):
        assert f"+fig6net={fam}" in out
    assert sorted(q.name for q in tmp_path.iterdir()) == before  # no outputs/ or multirun/
    bad = subprocess.run([sys.executable, "-m", "flossrepro", "scale=small", "flossing=pre", "flossing.k=99", "--plan"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "flossing.k=99" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_slurm_time_limit_from_the_plan(tmp_path, monkeypatch):
    assert P.slurm_time_limit_min(600.0, 2.0, 10.0) == 30
    assert P.slurm_time_limit_min(61.0, 1.5, 0.0) == 2
    assert user_set_timeout(["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=33"])
    assert not user_set_timeout(["hydra/launcher=submitit_slurm", "hydra.launcher.time_margin=3"])
    (tmp_path / "table1").mkdir()
    synthetic_cost_table(archs=("tanh", "lstm", "gru")).to_parquet(tmp_path / "table1" / "metrics.parquet")
    monkeypatch.setenv("FLOSSREPRO_COSTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    loader = compose.loader()
    for extra, want_none in (([], False), (["hydra.launcher.timeout_min=33"], True)):
        cfg = compose.compose(loader, ["+experiment=fig6", "scale=small", "hydra/launcher=submitit_slurm", *extra,
                                   "hydra.mode=MULTIRUN"], True)
        params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        params.pop("_target_")
        launcher = SlurmLauncher(**params)
        launcher.config = cfg
        jobs = [loader.load_sweep_config(cfg, [f"+fig6net={f}"]) for f in ("lstm", "relu")]
        got = launcher._planned_timeout(jobs)
        if want_none:
            assert got is None
            continue
        est = []
        for j in jobs:
            compose.job_dir(j, True)
            est.append(P.estimate(j, P.find_model()).seconds)
        assert got == P.slurm_time_limit_min(max(est), params["time_margin"], params["time_pad_min"])
