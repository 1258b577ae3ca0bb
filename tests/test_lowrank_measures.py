"""The low-rank study's measures: truncation, functional rank, convergence, eigenvalues, shuffle."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flossrepro.engine.init import initialize
from flossrepro.jobs.lowrank_measures import functional_rank, truncate
from flossrepro.engine.rate import RateRNN
from flossrepro.store.tables import read_run


def test_truncate_is_the_best_rank_r_approximation():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, 6, 2, dtype=torch.float64, generator=g) @ torch.randn(2, 2, 6, dtype=torch.float64, generator=g)
    U, s, Vh = torch.linalg.svd(A)
    torch.testing.assert_close(truncate(U, s, Vh, 2), A)              # a rank-2 matrix is its rank-2 truncation
    assert torch.equal(truncate(U, s, Vh, 0), torch.zeros_like(A))
    r1 = truncate(U, s, Vh, 1)
    assert torch.linalg.matrix_rank(r1[0]) == 1
    torch.testing.assert_close(torch.linalg.matrix_norm(A - r1), s[:, 1])   # Eckart-Young: the error is s_2


def test_functional_rank_rule():
    trunc = torch.tensor([[0.5, 0.04, 0.01], [0.9, 0.8, 0.7], [0.01, 0.01, 0.01]], dtype=torch.float64)
    loss0 = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    r = functional_rank(trunc, loss0, 0.05)
    assert r[0] == 2 and math.isnan(r[1]) and r[2] == 1


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("lowrank")
    args = [sys.executable, "-m", "flossrepro", "arch=rate", "task=romo", "task.seq_len=null", "optim.params=[W,V,w_r]",
            "flossing.params=[W,V]", "scale=smoke", "logger=none", "progress=none", "epochs=60", "optim.lr=0.01",
            "arch.n_hidden=12", "hydra.run.dir=run"]
    p = subprocess.run(args, cwd=d, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return read_run(d / "run")


def _one(df, metric, member=0):
    v = df[(df.metric == metric) & (df.member == member)]
    return v.sort_values(["epoch", "index"])["value"].to_numpy()


def test_measures_recorded_and_consistent(smoke_run):
    df = smoke_run
    for m in ("W0_norm", "lambda1_init", "dW_norm", "convergence_epoch", "final_loss", "loss_W0", "trunc_loss",
              "functional_rank", "shuffle_loss", "eig_W0_re", "eig_W_im", "eig_dW_re"):
        assert (df.metric == m).any(), m
    for r in (0, 1):
        # full rank (N = 12 <= rank_max): W0 + dW_12 is W itself
        trunc = _one(df, "trunc_loss", r)
        assert len(trunc) == 12
        np.testing.assert_allclose(trunc[-1], _one(df, "final_loss", r)[0], rtol=1e-4)
        # convergence epoch from the training-loss rows
        tl = df[(df.metric == "train_loss") & (df.member == r)].sort_values("epoch")["value"].to_numpy()
        below = np.nonzero(tl < 0.05 * tl[0])[0]
        conv = _one(df, "convergence_epoch", r)[0]
        assert (math.isnan(conv) and len(below) == 0) or conv == below[0]
        # ||dW|| at the end equals the root of the sum of squared singular values of dW
        sv = df[(df.metric == "dW_sv") & (df.member == r)]
        last = sv[sv.epoch == sv.epoch.max()].sort_values("index")["value"].to_numpy()
        np.testing.assert_allclose(_one(df, "dW_norm", r)[-1], np.sqrt((last ** 2).sum()), rtol=1e-5)
        # the eigenvalues of dW sum to its trace, those of W0 + dW to the trace of W
        assert abs(_one(df, "eig_W_re", r).sum() - _one(df, "eig_W0_re", r).sum() - _one(df, "eig_dW_re", r).sum()) < 1e-4
        assert abs(_one(df, "eig_W0_im", r).sum()) < 1e-8


def test_initial_measures_match_the_initial_network(smoke_run):
    df = smoke_run
    m = RateRNN(2, 12, 1, 2, dtype=torch.float64)
    initialize(m, [0, 1], g=1.0)
    for r in (0, 1):
        W0 = m.W[r].detach()
        np.testing.assert_allclose(_one(df, "W0_norm", r)[0], float(torch.linalg.matrix_norm(W0)), rtol=1e-5)
        ev = torch.linalg.eigvals(W0)
        ev = ev[torch.argsort(ev.abs(), descending=True)]
        np.testing.assert_allclose(np.sort(_one(df, "eig_W0_re", r)), np.sort(ev.real.numpy()), atol=1e-5)
