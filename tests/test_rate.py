"""The rate network of the low-rank study: fast paths against per-step autograd, the linear oracle."""
from __future__ import annotations

import math

import pytest
import torch

from flossrepro.flossing import floss_step, flossing_parameters
from flossrepro.init import initialize
from flossrepro.lyapunov import lyapunov_spectrum
from flossrepro.rate import RateRNN

D64 = torch.float64


def _net(nl="tanh", R=2, N=12, S=2, O=2, g=1.5, dt=0.5, seed=0):
    m = RateRNN(R, N, S, O, nonlinearity=nl, dt=dt, dtype=D64)
    initialize(m, list(range(seed, seed + R)), g=g)
    return m


def _grads(m, loss):
    ps = [m.W, m.V, m.w_r]
    return torch.autograd.grad(loss, ps)


@pytest.mark.parametrize("nl", ["tanh", "identity"])
def test_forward_and_bptt_match_autograd(nl):
    m = _net(nl)
    x = torch.randn(30, 2, 3, 2, dtype=D64, generator=torch.Generator().manual_seed(1))
    tgt = torch.randn(30, 2, 3, 2, dtype=D64, generator=torch.Generator().manual_seed(2))
    yf, yr = m(x, fast=True), m(x, fast=False)
    torch.testing.assert_close(yf, yr, rtol=1e-12, atol=1e-12)
    gf = _grads(m, ((yf - tgt) ** 2).sum())
    gr = _grads(m, ((yr - tgt) ** 2).sum())
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_step_is_the_euler_step():
    m = _net("tanh", R=1, N=5, S=1, O=1)
    h = torch.randn(1, 1, 5, dtype=D64)
    u = torch.randn(1, 1, 1, dtype=D64)
    want = 0.5 * h + 0.5 * (torch.tanh(h) @ m.W[0].T + u @ m.V[0].T)
    torch.testing.assert_close(m.step(h, u), want)
    J = torch.autograd.functional.jacobian(lambda v: m.step(v.view(1, 1, 5), u).view(5), h.view(5))
    torch.testing.assert_close(m.jacobian(h)[0, 0], J)
    Q = torch.randn(1, 5, 3, dtype=D64)
    torch.testing.assert_close(m.jacobian_apply(h[:, 0], Q), J[None] @ Q)


@pytest.mark.parametrize("nl,s_ons", [("tanh", 1), ("tanh", 3), ("identity", 1)])
def test_lyapunov_fast_matches_autograd(nl, s_ons):
    m = _net(nl, g=1.8)
    x = torch.randn(60, 2, 2, dtype=D64, generator=torch.Generator().manual_seed(3))
    kw = dict(k=5, s_ons=s_ons, transient_h=5, transient_q=7)
    lf = lyapunov_spectrum(m, x, fast=True, **kw)
    lr = lyapunov_spectrum(m, x, fast=False, **kw)
    torch.testing.assert_close(lf, lr, rtol=1e-10, atol=1e-12)
    w = torch.tensor([1.0, -0.5, 0.3, 2.0, 0.7], dtype=D64)
    ps = [m.W, m.V] if nl == "tanh" else [m.W]  # a linear network's exponents do not depend on V
    gf = torch.autograd.grad((lf * w).sum(), ps)
    gr = torch.autograd.grad((lr * w).sum(), ps)
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_lyapunov_gradient_wrt_h0_and_drive_matches_autograd():
    # the state part of the backward (phi'' term, BPTT) seen through an input-driven network
    m = _net("tanh", R=1, N=8, S=1, O=1, g=2.0)
    x = torch.randn(40, 1, 1, dtype=D64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    h0 = 0.3 * torch.randn(1, 8, dtype=D64, generator=torch.Generator().manual_seed(5))
    h0.requires_grad_(True)
    kw = dict(k=3, transient_h=2, transient_q=3, h0=h0)
    gf = torch.autograd.grad(lyapunov_spectrum(m, x, fast=True, **kw).sum(), [x, h0])
    gr = torch.autograd.grad(lyapunov_spectrum(m, x, fast=False, **kw).sum(), [x, h0])
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dt", [0.5, 0.2])
def test_linear_oracle(dt):
    """A linear rate network without input: lambda_i = log|1 - dt + dt mu_i(W)| per step."""
    N = 10
    m = _net("identity", R=1, N=N, S=1, O=1, g=0.9, dt=dt, seed=7)
    x = torch.zeros(3000, 1, 1, dtype=D64)
    lam = lyapunov_spectrum(m, x, k=N, transient_h=0, transient_q=100)[0]
    mu = torch.linalg.eigvals(m.W[0].detach())
    want = torch.sort(torch.log(torch.abs(1 - dt + dt * mu)), descending=True).values
    torch.testing.assert_close(torch.sort(lam, descending=True).values, want, rtol=0, atol=5e-3)


def test_contracting_tanh_network_approaches_linear_exponents():
    """tanh, g < 1, no input: the state decays to 0 and the exponents approach the linear ones."""
    N = 8
    m = _net("tanh", R=1, N=N, S=1, O=1, g=0.6, seed=3)
    x = torch.zeros(2500, 1, 1, dtype=D64)
    h0 = torch.full((1, N), 0.5, dtype=D64)
    lam = lyapunov_spectrum(m, x, k=N, transient_h=200, transient_q=100, h0=h0)[0]
    mu = torch.linalg.eigvals(m.W[0].detach())
    want = torch.sort(torch.log(torch.abs(0.5 + 0.5 * mu)), descending=True).values
    torch.testing.assert_close(torch.sort(lam, descending=True).values, want, rtol=0, atol=5e-3)


def test_initialisation_follows_their_code():
    N, S, O = 64, 3, 2
    m = RateRNN(2, N, S, O, dtype=D64)
    gains = initialize(m, [0, 1], g=1.5)
    assert gains.tolist() == [1.5, 1.5]
    torch.testing.assert_close(m.V.detach().norm(dim=1), torch.full((2, S), math.sqrt(N), dtype=D64))
    torch.testing.assert_close(m.w_r.detach().norm(dim=2), torch.full((2, O), 1 / math.sqrt(N), dtype=D64))
    assert abs(float(m.W.detach().std()) * math.sqrt(N) - 1.5) < 0.1
    assert float(m.h0.abs().max()) == 0.0
    assert sorted(n for n, _ in m.named_parameters()) == ["V", "W", "w_r"]
    # member r equals a single run with seed r
    m1 = RateRNN(1, N, S, O, dtype=D64)
    initialize(m1, [1], g=1.5)
    torch.testing.assert_close(m1.W[0], m.W[1])
    torch.testing.assert_close(m1.V[0], m.V[1])


def test_flossing_moves_lambda1_to_target():
    m = _net("tanh", R=2, N=16, S=1, O=1, g=2.0, dt=0.5)
    m = m.float()
    opt = torch.optim.Adam(flossing_parameters(m, ["W", "V"]), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    first = last = None
    for _ in range(80):
        x = torch.randn(60, 2, 1, generator=gen)
        lam, loss = floss_step(m, opt, x, k=4, target=0.0, transient_h=5, transient_q=5)
        first = loss if first is None else first
        last = loss
    assert bool((last < 0.25 * first).all()), (first, last)


def test_bad_settings():
    with pytest.raises(ValueError, match="nonlinearity='relu'"):
        RateRNN(1, 4, 1, 1, nonlinearity="relu")
    with pytest.raises(ValueError, match="dt=1.5"):
        RateRNN(1, 4, 1, 1, dt=1.5)
    with pytest.raises(ValueError, match="input_gain"):
        RateRNN(1, 4, 1, 1, input_gain=2.0)
