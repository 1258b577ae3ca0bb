"""The rate network of the low-rank study: fast paths against per-step autograd, the linear oracle."""
from __future__ import annotations

import contextlib
import math

import pytest
import torch

from flossrepro.engine.flossing import floss_step, flossing_parameters
from flossrepro.engine.init import initialize
from flossrepro.engine.lyapunov import lyapunov_spectrum
from flossrepro.engine.rate import RateRNN

D64 = torch.float64


def _net(nl="tanh", R=2, N=12, S=2, O=2, g=1.5, dt=0.5, seed=0):
    m = RateRNN(R, N, S, O, nonlinearity=nl, dt=dt, dtype=D64)
    initialize(m, list(range(seed, seed + R)), g=g)
    return m


def _ctx(native_on):
    """The native kernels (default on CPU) or the PyTorch fast path."""
    from flossrepro.engine import native
    return contextlib.nullcontext() if native_on else native.disabled()


def _grads(m, loss):
    ps = [m.W, m.V, m.w_r]
    return torch.autograd.grad(loss, ps)


@pytest.mark.parametrize("nl", ["tanh", "identity"])
@pytest.mark.parametrize("native_on", [True, False])
def test_forward_and_bptt_match_autograd(nl, native_on):
    m = _net(nl)
    x = torch.randn(30, 2, 3, 2, dtype=D64, generator=torch.Generator().manual_seed(1))
    tgt = torch.randn(30, 2, 3, 2, dtype=D64, generator=torch.Generator().manual_seed(2))
    with _ctx(native_on):
        yf = m(x, fast=True)
        gf = _grads(m, ((yf - tgt) ** 2).sum())
    yr = m(x, fast=False)
    torch.testing.assert_close(yf, yr, rtol=1e-12, atol=1e-12)
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
@pytest.mark.parametrize("native_on", [True, False])
def test_lyapunov_fast_matches_autograd(nl, s_ons, native_on):
    m = _net(nl, g=1.8)
    x = torch.randn(60, 2, 2, dtype=D64, generator=torch.Generator().manual_seed(3))
    kw = dict(k=5, s_ons=s_ons, transient_h=5, transient_q=7)
    w = torch.tensor([1.0, -0.5, 0.3, 2.0, 0.7], dtype=D64)
    ps = [m.W, m.V] if nl == "tanh" else [m.W]  # a linear network's exponents do not depend on V
    with _ctx(native_on):
        lf = lyapunov_spectrum(m, x, fast=True, **kw)
        gf = torch.autograd.grad((lf * w).sum(), ps)
    lr = lyapunov_spectrum(m, x, fast=False, **kw)
    torch.testing.assert_close(lf, lr, rtol=1e-10, atol=1e-12)
    gr = torch.autograd.grad((lr * w).sum(), ps)
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("native_on", [True, False])
def test_lyapunov_gradient_wrt_h0_and_drive_matches_autograd(native_on):
    # the state part of the backward (phi'' term, BPTT) seen through an input-driven network
    m = _net("tanh", R=1, N=8, S=1, O=1, g=2.0)
    x = torch.randn(40, 1, 1, dtype=D64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    h0 = 0.3 * torch.randn(1, 8, dtype=D64, generator=torch.Generator().manual_seed(5))
    h0.requires_grad_(True)
    kw = dict(k=3, transient_h=2, transient_q=3, h0=h0)
    with _ctx(native_on):
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
    # float64: at lr 1e-2 on fresh inputs every epoch the float32 runs part from it within a few
    # dozen epochs (chaotic g=2 network), so float32 is tested against float64 per epoch below
    m = _net("tanh", R=2, N=16, S=1, O=1, g=2.0, dt=0.5)
    opt = torch.optim.Adam(flossing_parameters(m, ["W", "V"]), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(80):
        x = torch.randn(60, 2, 1, generator=gen, dtype=D64)
        lam, loss = floss_step(m, opt, x, k=4, target=0.0, transient_h=5, transient_q=5)
        losses.append(loss)
    # single epochs' losses fluctuate with their inputs: the mean of the last 10 against the first
    first, last = losses[0], torch.stack(losses[-10:]).mean(0)
    assert bool((last < 0.25 * first).all()), (first, last)


@pytest.mark.parametrize("native_on", [True, False])
def test_float32_spectrum_and_gradient_vs_float64(native_on):
    """float32 (native kernels with the leak term, or the PyTorch fast path) against float64."""
    from flossrepro.engine import native

    m = _net("tanh", R=2, N=24, S=1, O=1, g=1.5, dt=0.5, seed=4)
    x = torch.randn(300, 2, 1, dtype=D64, generator=torch.Generator().manual_seed(6))
    kw = dict(k=10, transient_h=20, transient_q=20)
    out = {}
    for dt in (D64, torch.float32):
        mm = _net("tanh", R=2, N=24, S=1, O=1, g=1.5, dt=0.5, seed=4).to(dt)
        with _ctx(native_on):
            if native_on and dt == torch.float32:
                assert native.available(mm.W)
            lam = lyapunov_spectrum(mm, x.to(dt), **kw)
            (gW,) = torch.autograd.grad((lam ** 2).sum(), [mm.W])
        out[dt] = (lam.detach().double(), gW.double())
    (l64, g64), (l32, g32) = out[D64], out[torch.float32]
    assert (l32 - l64).abs().max().item() < 1e-4
    assert ((g32 - g64).norm() / g64.norm()).item() < 1e-3


def test_bad_settings():
    with pytest.raises(ValueError, match="nonlinearity='relu'"):
        RateRNN(1, 4, 1, 1, nonlinearity="relu")
    with pytest.raises(ValueError, match="dt=1.5"):
        RateRNN(1, 4, 1, 1, dt=1.5)
    with pytest.raises(ValueError, match="input_gain"):
        RateRNN(1, 4, 1, 1, input_gain=2.0)


def test_rate_native_loops_are_the_ones_that_run():
    """Without mocks: on CPU the rate network's state and tangent loops run in the native kernels
    (no per-step ATen ops); with them disabled, the PyTorch fast path issues per-step ops."""
    from flossrepro.engine import native
    from test_native import _aten_counts

    m = _net("tanh", R=1, N=12, S=1, O=1, g=1.5)
    T = 40
    x = torch.randn(T, 1, 1, dtype=D64, generator=torch.Generator().manual_seed(1))

    def spectrum():
        lyapunov_spectrum(m, x, k=4, transient_h=5, transient_q=5).sum().backward()

    def sequence():
        m(torch.randn(T, 1, 3, 1, dtype=D64)).sum().backward()

    nat_s, nat_q = _aten_counts(spectrum), _aten_counts(sequence)
    with native.disabled():
        tor_s, tor_q = _aten_counts(spectrum), _aten_counts(sequence)
    # the PyTorch path is the vanilla RNN's Function with the leak: a Householder QR (geqrf) per step
    assert tor_s.get("aten::linalg_qr", 0) + tor_s.get("aten::geqrf", 0) >= T - 6
    assert nat_s.get("aten::linalg_qr", 0) <= 1  # the random initial Q0 only
    assert nat_s.get("aten::bmm", 0) + nat_s.get("aten::baddbmm", 0) + nat_s.get("aten::baddbmm_", 0) <= 4
    assert tor_q.get("aten::bmm", 0) + tor_q.get("aten::baddbmm", 0) >= T - 1
    assert nat_q.get("aten::bmm", 0) + nat_q.get("aten::baddbmm", 0) <= 6  # drive, readout and their backward, dW


@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("native_on", [True, False])
def test_rate_dt1_is_the_vanilla_rnn_through_one_function(R, native_on):
    """The rate network with dt = 1 (leak 0) is the vanilla RNN with input_gain = 1, b = 0:
    ``h <- W tanh(h) + V u``. Both go through the same whole-sequence Function
    (flossrepro.engine.rnn_tangent), so spectra and gradients agree in float64; the loss path
    (one member at a time on the native kernels) is shared too."""
    from flossrepro import VanillaRNN, lyapunov_loss
    from flossrepro.engine.rnn_tangent import _RNNLyapunov

    N, S = 10, 2
    rate = _net("tanh", R=R, N=N, S=S, O=1, g=1.6, dt=1.0, seed=11)
    van = VanillaRNN(R, N, S, 1, nonlinearity="tanh", input_gain=1.0, dtype=D64)
    with torch.no_grad():
        van.W.copy_(rate.W)
        van.V.copy_(rate.V)
        van.b.zero_()
    x = torch.randn(50, R, S, dtype=D64, generator=torch.Generator().manual_seed(12))
    h0 = 0.5 * torch.randn(R, N, dtype=D64, generator=torch.Generator().manual_seed(13))
    w = torch.linspace(1.0, -0.4, 4, dtype=D64)
    out = {}
    for name, m in (("rate", rate), ("vanilla", van)):
        h = h0.clone().requires_grad_(True)
        kw = dict(k=4, s_ons=2, transient_h=4, transient_q=6, h0=h)
        with _ctx(native_on):
            lam = lyapunov_spectrum(m, x, **kw)
            assert type(lam.grad_fn).__name__ == _RNNLyapunov.__name__ + "Backward"
            grads = torch.autograd.grad((lam * w).sum(), [m.W, m.V, h])
            loss, lam2 = lyapunov_loss(m, x, loss_fn=lambda v: (v ** 2).sum(-1), **kw)
            lgrads = torch.autograd.grad(loss.sum(), [m.W, m.V, h])
        out[name] = (lam.detach(), grads, loss.detach(), lam2, lgrads)
    (lr, gr, Lr, l2r, hr), (lv, gv, Lv, l2v, hv) = out["rate"], out["vanilla"]
    tol = dict(rtol=0, atol=1e-10)
    torch.testing.assert_close(lr, lv, **tol)
    torch.testing.assert_close(l2r, l2v, **tol)
    torch.testing.assert_close(Lr, Lv, **tol)
    torch.testing.assert_close(lr, l2r, **tol)
    for a, b in zip(gr + hr, gv + hv):
        assert a.abs().max() > 1e-6
        torch.testing.assert_close(a, b, **tol)
