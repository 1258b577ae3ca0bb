"""Gated networks (LSTM, GRU): analytic batched Jacobians and the gated fast path against oracles.

Oracles: ``torch.autograd.functional.jacobian`` of ``model.step`` (float64); the per-step
autograd path of :func:`flossrepro.lyapunov_spectrum` (``fast=False``: autograd through every
step and ``torch.linalg.qr``) for exponents and gradients; the exponents of a gated network
without recurrence and without input (``U = 0``, ``x = 0``), whose Jacobian is constant and
triangular: ``log sigmoid(b_z)`` (GRU) and ``log sigmoid(b_f)`` (LSTM, the cell block).
"""
from __future__ import annotations

import pytest
import torch

from flossrepro import GRU, LSTM, floss_step, flossing_loss, flossing_parameters, initialize, lyapunov_spectrum
from flossrepro.engine.lyapunov import random_orthonormal

F64 = torch.float64


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _model(cls, R=2, N=4, S=2, seed=0, g=1.3):
    m = cls(R, N, S, 1, dtype=F64)
    initialize(m, [seed + r for r in range(R)], g=g, bias_scale=0.5)
    return m


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_batched_jacobian_equals_autograd(cls):
    R, B, N, S = 2, 3, 4, 2
    m = _model(cls, R, N, S, seed=5)
    n = m.state_dim
    s = _randn(R, B, n, seed=11)
    x = _randn(R, B, S, seed=12)
    J = torch.autograd.functional.jacobian(lambda z: m.step(z, x), s)  # [R,B,n,R,B,n]
    D = m.jacobian(s, x).detach()
    assert D.shape == (R, B, n, n)
    for r in range(R):
        for b in range(B):
            torch.testing.assert_close(D[r, b], J[r, b, :, r, b, :], rtol=1e-13, atol=1e-13)
    Q = _randn(R, n, 3, seed=13)
    torch.testing.assert_close(m.jacobian_apply(s[:, 0], Q, x[:, 0]).detach(),
                               torch.stack([J[r, 0, :, r, 0, :] @ Q[r] for r in range(R)]), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("cls", [LSTM, GRU])
@pytest.mark.parametrize("k,s_ons", [(1, 1), (3, 1), (3, 2)])
def test_fast_spectrum_and_gradients_equal_per_step_autograd(cls, k, s_ons):
    R, N, S, T = 2, 4, 2, 40
    m = _model(cls, R, N, S, seed=3)
    x = _randn(T, R, S, seed=21)
    q0 = random_orthonormal(m.state_dim, k, R, seed=2)
    kw = dict(transient_h=4, transient_q=6, q0=q0, s_ons=s_ons)
    params = [m.U, m.V, m.b, m.h0]
    fast = lyapunov_spectrum(m, x, k, **kw)  # the default for gated models
    ref = lyapunov_spectrum(m, x, k, fast=False, **kw)
    torch.testing.assert_close(fast.detach(), ref.detach(), rtol=0, atol=1e-12)
    gf = torch.autograd.grad(flossing_loss(fast).sum(), params)
    gr = torch.autograd.grad(flossing_loss(ref).sum(), params)
    for name, a, b in zip("UVbh", gf, gr):
        assert b.abs().max() > 1e-6, name  # the oracle's gradient is not trivially zero
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=name)


def test_gated_exponents_without_recurrence_are_log_gates():
    """U = 0 and no input: the GRU's Jacobian is diag(sigmoid(b_z)); the LSTM's is
    [[0, diag(o' f)], [0, diag(f)]] with f = sigmoid(b_f): exponents log sigmoid(b), sorted."""
    N, T, k = 5, 400, 3
    for cls, gate in ((GRU, slice(N, 2 * N)), (LSTM, slice(N, 2 * N))):
        m = cls(1, N, 1, 1, dtype=F64)
        with torch.no_grad():
            m.b.copy_(_randn(1, m.b.shape[1], seed=31))
            m.b[0, gate] = torch.tensor([0.5, -1.5, 2.0, -0.5, 1.0], dtype=F64)  # distinct gates: the
            m.h0.copy_(_randn(1, m.state_dim, seed=32))                           # Q frame aligns fast
        lam = lyapunov_spectrum(m, torch.zeros(T, 1, 1, dtype=F64), k, transient_h=5, transient_q=150)
        want = torch.sigmoid(m.b[0, gate]).log().sort(descending=True).values[:k]
        torch.testing.assert_close(lam[0].detach(), want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_flossing_gated_networks_moves_lambda1_toward_zero(cls):
    """A few flossing steps on k=1 lower |lambda_1| for every member (float64, fixed input)."""
    R, N = 3, 6
    m = cls(R, N, 1, 1, dtype=F64)
    initialize(m, [0, 1, 2], g_range=(0.5, 1.0))
    opt = torch.optim.Adam(flossing_parameters(m), lr=1e-2)
    x = _randn(80, R, 1, seed=41)
    kw = dict(transient_h=10)
    lam0 = lyapunov_spectrum(m, x, 1, **kw).detach()
    for _ in range(30):
        floss_step(m, opt, x, 1, **kw)
    lam1 = lyapunov_spectrum(m, x, 1, **kw).detach()
    assert (lam1.abs() < lam0.abs()).all(), (lam0, lam1)


def test_gru_ensemble_members_equal_single_networks():
    ens = GRU(3, 4, 2, 1, dtype=F64)
    initialize(ens, [7, 8, 9], g_range=(0.0, 1.0))
    for r in range(3):
        one = GRU(1, 4, 2, 1, dtype=F64)
        initialize(one, [7 + r], g_range=(0.0, 1.0))
        for name, p in one.named_parameters():
            torch.testing.assert_close(getattr(ens, name)[r], p[0], rtol=0, atol=0)
