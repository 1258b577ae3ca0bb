"""The low-rank study's per-network records for its figures: task traces, singular values of W and
W0, the gradient norm ||dL/dW||_F (flossrepro.jobs.lowrank_measures). Tiny in-process runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from flossrepro.jobs.trainer import Trainer
from flossrepro.store.tables import read_run
from flossrepro.tasks.paper import member_generators

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["scale=smoke", "logger=none", "progress=none", "dtype=float64", "device=cpu", "members=2", "init.g=0.5"]


def _train(tmp_path: Path, overrides: list[str]) -> tuple[Trainer, object]:
    with initialize_config_dir(config_dir=str(ROOT / "flossrepro" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*QUIET, *overrides])
    job = Trainer(cfg, tmp_path / "run")
    job.run()
    return job, read_run(tmp_path / "run")


def _vec(df, metric: str, member: int) -> np.ndarray:
    v = df[(df.metric == metric) & (df.member == member)]
    assert v.epoch.nunique() == 1, metric
    return v.sort_values("index")["value"].to_numpy()


def _scalar(df, metric: str, member: int) -> float:
    v = df[(df.metric == metric) & (df.member == member)]["value"].to_numpy()
    assert v.size == 1, metric
    return float(v[0])


@pytest.mark.parametrize("task", ["flipflop", "mante", "romo", "linear_fp"])
def test_traces_are_the_first_test_trial(tmp_path, task):
    exp = "lr_linear" if task == "linear_fp" else "lr_flipflop"
    job, df = _train(tmp_path, [f"+experiment={exp}", f"task={task}", "arch.n_hidden=6", "epochs=2",
                                "diagnostics.eval_batch_size=3"])
    t = job.task
    T = t.seq_len
    # the batch _at_end draws: stream "lowrank", eval_batch_size trials per member
    batch = t.sample(member_generators(job.seeds, "lowrank"), batch_size=3, dtype=torch.float64)
    with torch.no_grad():
        out = job.model(batch.inputs)  # the trained network (W restored after the truncations)
    for r in range(2):
        assert _scalar(df, "trace_n_in", r) == t.n_in and _scalar(df, "trace_n_out", r) == t.n_out
        x, y, m, z = (_vec(df, k, r) for k in ("trace_input", "trace_target", "trace_mask", "trace_output"))
        assert x.shape == (T * t.n_in,) and y.shape == m.shape == z.shape == (T * t.n_out,)
        np.testing.assert_array_equal(x, batch.inputs[:, r, 0].reshape(-1).numpy())
        np.testing.assert_array_equal(y, batch.targets[:, r, 0].reshape(-1).numpy())
        np.testing.assert_array_equal(m, (batch.weights[:, r, 0] != 0).double().reshape(-1).numpy())
        assert set(np.unique(m)) <= {0.0, 1.0} and m.sum() > 0
        assert np.isfinite(z).all()
        np.testing.assert_allclose(z, out[:, r, 0].reshape(-1).numpy(), rtol=1e-10, atol=1e-12)
        # time-major: reshape(T, n) gives the trial's steps
        np.testing.assert_array_equal(y.reshape(T, t.n_out), batch.targets[:, r, 0].numpy())


def test_singular_values_of_W_and_W0(tmp_path):
    job, df = _train(tmp_path, ["+experiment=lr_flipflop", "arch.n_hidden=7", "epochs=3"])
    W, W0 = job.recurrent().detach(), job.W0
    for r in range(2):
        sv, sv0 = _vec(df, "W_sv", r), _vec(df, "W0_sv", r)
        assert sv.shape == sv0.shape == (7,)
        assert (np.diff(sv) <= 0).all() and (np.diff(sv0) <= 0).all()
        np.testing.assert_allclose(sv, torch.linalg.svdvals(W[r]).numpy(), rtol=1e-10)
        np.testing.assert_allclose(sv0, torch.linalg.svdvals(W0[r]).numpy(), rtol=1e-10)
        assert not np.allclose(sv, sv0)   # W moved


def _reference_grad_norm(model, W0, batch, dt: float, phi) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step autograd through h <- (1 - dt) h + dt (W phi(h) + W_in u), z = W_out phi(h), and
    their loss 0.5 sum(mask (z - zhat)^2) / sum(mask): ``(||dL_r/dW_r||_F [R], z [T, R, B, O])``."""
    W = W0.clone().requires_grad_(True)
    V, w_r = model.V.detach(), model.w_r.detach()
    x = batch.inputs
    T, R, B, _ = x.shape
    h = torch.zeros(R, B, W.shape[-1], dtype=W.dtype)
    zs = []
    for t in range(T):
        h = (1 - dt) * h + dt * (phi(h) @ W.transpose(1, 2) + x[t] @ V.transpose(1, 2))
        zs.append(phi(h) @ w_r.transpose(1, 2))
    z = torch.stack(zs)
    m, y = batch.weights, batch.targets
    loss = 0.5 * (m * (z - y) ** 2).sum((0, 2, 3)) / m.sum((0, 2, 3))
    (g,) = torch.autograd.grad(loss.sum(), W)
    return torch.linalg.matrix_norm(g), z.detach()


@pytest.mark.parametrize("exp", ["lr_linear", "lr_flipflop"])
def test_grad_W_norm_matches_autograd(tmp_path, exp):
    over = [f"+experiment={exp}", "arch.n_hidden=6", "epochs=2", "diagnostics.grad_norm_every=1"]
    job, df = _train(tmp_path, over)
    rows = df[df.metric == "grad_W_norm"]
    assert sorted(rows.epoch.unique()) == [0, 1] and rows.groupby("epoch").size().eq(2).all()
    # the same initial network and first training batch, from a fresh job of the same config
    with initialize_config_dir(config_dir=str(ROOT / "flossrepro" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*QUIET, *over])
    ref = Trainer(cfg, tmp_path / "ref")
    ref.fresh_state()
    batch = ref.task.sample(ref.gens["train"], device="cpu", dtype=torch.float64)
    phi = {"identity": lambda h: h, "tanh": torch.tanh}[ref.model.nonlinearity]
    norms, z = _reference_grad_norm(ref.model, ref.W0, batch, ref.model.dt, phi)
    with torch.no_grad():
        torch.testing.assert_close(z, ref.model(batch.inputs))   # the reference is the model
    got = rows[rows.epoch == 0].sort_values("member")["value"].to_numpy()
    np.testing.assert_allclose(got, norms.numpy(), rtol=1e-8)
    assert (got > 0).all()
