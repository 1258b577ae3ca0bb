"""Core engine against oracles: Lyapunov spectra, their gradients, flossing, ensembles.

Oracles used here (not the code under test):
- linear maps: exponents of ``h <- W h`` are the sorted ``log|eig(W)|``; ``W = g Q``
  orthogonal gives every exponent ``log g`` exactly; a tanh network with ``g < 1`` and no
  drive decays to 0 and inherits the exponents of ``W``;
- exact arithmetic facts: the accumulated ``log|R_ii|`` does not depend on how often one
  reorthonormalizes (QR of a product is unique), so ``s_ons`` only changes rounding;
- central finite differences and plain per-step autograd (``torch.linalg.qr``, explicit
  ``torch.autograd.functional.jacobian`` of ``model.step``);
- an explicitly computed product of Jacobians (SVD condition number);
- one network per seed versus the same seeds inside one ensemble.

Everything is small and float64 where exactness matters; the file runs on 2 cores.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flossrepro import (
    LSTM,
    VanillaRNN,
    clip_grad_norm_per_member,
    condition_number_estimate,
    floss_step,
    flossing_loss,
    flossing_parameters,
    initialize,
    lyapunov_spectrum,
    lyapunov_spectrum_from_jacobians,
    make_task,
    member_generators,
)
from flossrepro.engine import native
from flossrepro.engine.lyapunov import random_orthonormal
from flossrepro.engine.models import rnn_sequence

F64 = torch.float64




def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int = 0, dtype=F64) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=F64).to(dtype)


def _linear_model(Ws: torch.Tensor) -> VanillaRNN:
    """Identity-nonlinearity VanillaRNN with the given ``[R, n, n]`` recurrent weights and
    no drive at all (V = b = h0 = 0), so the state stays exactly 0 and D[t] = W."""
    R, n, _ = Ws.shape
    m = VanillaRNN(R, n, 1, 1, nonlinearity="identity", dtype=F64)
    with torch.no_grad():
        m.W.copy_(Ws)
    return m


def _sorted_log_moduli(W: torch.Tensor) -> torch.Tensor:
    return torch.linalg.eigvals(W).abs().log().sort(descending=True).values


def _well_separated(n: int, mu, seed: int) -> torch.Tensor:
    P = torch.eye(n, dtype=F64) + 0.3 * _randn(n, n, seed=seed)
    return P @ torch.diag(torch.tensor(mu, dtype=F64)) @ torch.linalg.inv(P)


def _tanh_model(R=2, N=6, S=2, O=1, seeds=None, g=1.3, nonlinearity="tanh", dtype=F64):
    m = VanillaRNN(R, N, S, O, nonlinearity=nonlinearity, dtype=F64)
    initialize(m, seeds if seeds is not None else list(range(10, 10 + R)), g=g)
    return m.to(dtype)


# ---------------------------------------------------------------------------------------
# 1-3. Exponents of linear (and asymptotically linear) networks
# ---------------------------------------------------------------------------------------
MU = [1.2, -0.9, 0.7, 0.5, -0.3, 0.15]  # real, well-separated moduli (one expanding)


def _spectrum_by(path, model, inputs, k, **kw):
    """``lyapunov_spectrum`` on one path: "native" (C kernels where built), "torch" (the
    pure-PyTorch fast path, the fallback where the kernels are not built), "reference"
    (per-step autograd)."""
    if path == "torch":
        with native.disabled():
            return lyapunov_spectrum(model, inputs, k, fast=True, **kw)
    return lyapunov_spectrum(model, inputs, k, fast=path == "native", **kw)


PATHS = ["native", "torch", "reference"]


@pytest.mark.parametrize("path", PATHS)
def test_linear_network_real_eigenvalues(path):
    n = len(MU)
    W1 = _well_separated(n, MU, seed=1)
    W2 = _well_separated(n, [0.95, 0.6, -0.4, 0.25, 0.1, 0.05], seed=2)
    m = _linear_model(torch.stack([W1, W2]))
    T = 600
    with torch.no_grad():
        for k in (n, 3):
            lam = _spectrum_by(path, m, torch.zeros(T, 2, 1, dtype=F64), k, transient_h=0, transient_q=100)
            assert lam.shape == (2, k)
            for r, W in enumerate((W1, W2)):
                # real eigenvalues: Q converges to the Schur vectors exponentially fast,
                # after which log|R_ii| = log|mu_i| at every step (measured error 1e-14,
                # far inside the 1e-3 the QR method needs in general)
                torch.testing.assert_close(lam[r], _sorted_log_moduli(W)[:k], rtol=0, atol=1e-9)


def test_linear_from_jacobians_shapes():
    n = len(MU)
    W1 = _well_separated(n, MU, seed=1)
    W2 = _well_separated(n, [0.95, 0.6, -0.4, 0.25, 0.1, 0.05], seed=2)
    T = 600
    lam = lyapunov_spectrum_from_jacobians(W1.expand(T, n, n), n, transient=100)
    assert lam.shape == (n,)
    torch.testing.assert_close(lam, _sorted_log_moduli(W1), rtol=0, atol=1e-9)
    J = torch.stack([W1, W2]).expand(T, 2, n, n)
    lamR = lyapunov_spectrum_from_jacobians(J, 4, transient=100, s_ons=2)
    assert lamR.shape == (2, 4)
    torch.testing.assert_close(lamR[0], _sorted_log_moduli(W1)[:4], rtol=0, atol=1e-9)
    torch.testing.assert_close(lamR[1], _sorted_log_moduli(W2)[:4], rtol=0, atol=1e-9)


def test_linear_random_matrix_complex_pairs():
    # A random matrix has complex pairs; both members of a pair share the modulus, and
    # their individual estimates converge as O(1/T) (measured 6e-4 at T = 4000).
    n = 8
    A = _randn(n, n, seed=1) / math.sqrt(n)
    expected = _sorted_log_moduli(A)
    T = 4000
    with torch.no_grad():
        lam_j = lyapunov_spectrum_from_jacobians(A.expand(T, n, n), n, transient=100)
        lam_m = lyapunov_spectrum(_linear_model(A[None]), torch.zeros(T, 1, 1, dtype=F64), n,
                                  transient_h=0, transient_q=100)[0]
    torch.testing.assert_close(lam_j, expected, rtol=0, atol=1e-3)
    torch.testing.assert_close(lam_m, expected, rtol=0, atol=1e-3)


@pytest.mark.slow
def test_linear_random_matrix_complex_pairs_long_horizon():
    # The same oracle over 10x the horizon: the estimates of a complex pair keep converging
    # (measured error 2.8e-5 at T = 4000, 4.9e-6 at T = 40000; the QR method's error of a
    # rotating pair decays like its oscillating partial sums, not faster).
    n = 8
    A = _randn(n, n, seed=1) / math.sqrt(n)
    expected = _sorted_log_moduli(A)
    errs = []
    for T in (4000, 40000):
        with torch.no_grad():
            lam_j = lyapunov_spectrum_from_jacobians(A.expand(T, n, n), n, transient=100)
            lam_m = lyapunov_spectrum(_linear_model(A[None]), torch.zeros(T, 1, 1, dtype=F64), n,
                                      transient_h=0, transient_q=100)[0]
        torch.testing.assert_close(lam_m, lam_j, rtol=0, atol=1e-10)  # same product, same QRs
        errs.append((lam_m - expected).abs().max().item())
    assert errs[1] < 2e-5 and errs[1] < errs[0] / 3, errs


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_linear_network_real_eigenvalues_large_n(path):
    # The default suite's n = 6 oracle at n = 48, k = n: 48 real eigenvalues of alternating
    # sign, moduli 1.3 .. 0.05, in a basis with cond ~ 4e5. Adjacent moduli are close, so Q
    # converges to the Schur vectors slowly (ratio ~0.97 per step): measured error 1.0e-7
    # after a transient of 500 steps on every path.
    n = 48
    sign = torch.where(torch.rand(n, generator=_gen(0)) < 0.5, -1.0, 1.0).to(F64)
    W = _well_separated(n, (torch.linspace(1.3, 0.05, n, dtype=F64) * sign).tolist(), seed=3)
    with torch.no_grad():
        lam = _spectrum_by(path, _linear_model(W[None]), torch.zeros(1500, 1, 1, dtype=F64), n,
                           transient_h=0, transient_q=500)[0]
    torch.testing.assert_close(lam, _sorted_log_moduli(W), rtol=0, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("g", [0.5, 1.0, 1.7])
def test_orthogonal_gives_log_g(g, path):
    n, R = 7, 2
    m = VanillaRNN(R, n, 1, 1, nonlinearity="identity", dtype=F64)
    initialize(m, [3, 4], scheme="orthogonal", g=g)
    with torch.no_grad():
        for p in (m.V, m.b, m.h0):
            p.zero_()
    lam = _spectrum_by(path, m, torch.zeros(60, R, 1, dtype=F64), 5, s_ons=2)
    # every singular value of g Q is g: log|R_ii| = log g at every QR
    torch.testing.assert_close(lam, torch.full((R, 5), math.log(g), dtype=F64), rtol=0, atol=1e-12)
    lamj = lyapunov_spectrum_from_jacobians(m.W.detach().expand(60, R, n, n), n)
    torch.testing.assert_close(lamj, torch.full((R, n), math.log(g), dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("dtype,atol", [(F64, 1e-12), (torch.float32, 1e-6)])
def test_orthogonal_gives_log_g_paper_size(dtype, atol):
    # the oracle above at the paper's flossing size (N = 80, k = 75) over 2000 QR steps, on
    # the native float32 and float64 paths (measured: float64 2e-16, float32 6e-8)
    n, k, g = 80, 75, 1.3
    m = VanillaRNN(1, n, 1, 1, nonlinearity="identity", dtype=F64)
    initialize(m, [3], scheme="orthogonal", g=g)
    with torch.no_grad():
        for p in (m.V, m.b, m.h0):
            p.zero_()
    m = m.to(dtype)
    with torch.no_grad():
        lam = lyapunov_spectrum(m, torch.zeros(2000, 1, 1, dtype=dtype), k, transient_h=0, transient_q=0)
    assert lam.dtype == dtype
    torch.testing.assert_close(lam.double(), torch.full((1, k), math.log(g), dtype=F64), rtol=0, atol=atol)


@pytest.mark.parametrize("g", [0.5, 0.8])
def test_tanh_subcritical_approaches_linear(g):
    N = 16
    m = VanillaRNN(1, N, 1, 1, dtype=F64)
    initialize(m, [3], g=g)
    with torch.no_grad():
        m.b.zero_()
        m.h0.copy_(_randn(1, N, seed=5))  # start far from the fixed point 0
    T = 1500
    with torch.no_grad():
        lam = lyapunov_spectrum(m, torch.zeros(T, 1, 1, dtype=F64), N, transient_h=200, transient_q=200)[0]
    # the state decays to 0 (tanh'(0) = 1), so D[t] -> W; complex pairs converge as
    # O(1/T) (measured 2e-4 here)
    torch.testing.assert_close(lam, _sorted_log_moduli(m.W[0].detach()), rtol=0, atol=2e-3)


# ---------------------------------------------------------------------------------------
# Independent trajectory + explicit Jacobians (also the oracle for the s_ons schedule)
# ---------------------------------------------------------------------------------------
def _explicit_spectrum(model, inputs, k, transient_h, transient_q, s_ons, q0):
    """Trajectory by my own loop, Jacobians by autograd of ``model.step``."""
    R, n = model.n_members, model.state_dim
    s = model.initial_state(1)[:, 0].detach()
    Ds = []
    for t in range(inputs.shape[0]):
        x = inputs[t][:, None, :]
        if t >= transient_h:
            J = torch.autograd.functional.jacobian(lambda z: model.step(z[:, None], x)[:, 0], s)
            Ds.append(torch.stack([J[r, :, r, :] for r in range(R)]))
        s = model.step(s[:, None], x)[:, 0].detach()
    return lyapunov_spectrum_from_jacobians(torch.stack(Ds), k, s_ons=s_ons, transient=transient_q, q0=q0)


@pytest.mark.parametrize("s_ons", [1, 3])
def test_vanilla_spectrum_matches_explicit_jacobian_product(s_ons):
    m = _tanh_model(R=2, N=6, S=2, g=1.6)
    T, th, tq, k = 50, 6, 7, 4
    x = _randn(T, 2, 2, seed=7)
    q0 = random_orthonormal(6, k, 2, seed=3)
    with torch.no_grad():
        lam = lyapunov_spectrum(m, x, k, s_ons=s_ons, transient_h=th, transient_q=tq, q0=q0)
    ref = _explicit_spectrum(m, x, k, th, tq, s_ons, q0)
    torch.testing.assert_close(lam, ref, rtol=0, atol=1e-12)


def test_s_ons_does_not_change_exponents_in_exact_arithmetic():
    # QR of a product is unique, so sum log|R_ii| over the window is the same for every
    # s_ons as long as a QR falls on the window's boundaries.
    m = _tanh_model(R=2, N=8, S=2, g=1.5)
    x = _randn(64, 2, 2, seed=8)
    with torch.no_grad():
        for th, tq in ((5, 9), (0, 0)):
            lams = [lyapunov_spectrum(m, x, 5, s_ons=s, transient_h=th, transient_q=tq) for s in (1, 2, 3, 5, 7)]
            for lam in lams[1:]:
                torch.testing.assert_close(lam, lams[0], rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------
# 4. Gradients: finite differences, fast vs reference
# ---------------------------------------------------------------------------------------
def _spectrum_loss(m, x, c, **kw):
    return (lyapunov_spectrum(m, x, c.shape[1], **kw) * c).sum()


@pytest.mark.parametrize("s_ons", [1, 3])
def test_spectrum_gradient_finite_differences(s_ons):
    m = _tanh_model(R=2, N=6, S=2, g=1.4)
    T, k = 40, 3
    x = _randn(T, 2, 2, seed=11)
    c = _randn(2, k, seed=12)
    kw = dict(s_ons=s_ons, transient_h=4, transient_q=5)
    loss = _spectrum_loss(m, x, c, **kw)
    grads = torch.autograd.grad(loss, [m.W, m.V, m.b, m.h0])
    assert all(torch.isfinite(g).all() for g in grads)
    gen = _gen(13)
    eps = 1e-6
    for p, g in zip([m.W, m.V, m.b, m.h0], grads):
        for _ in range(3):
            idx = tuple(int(torch.randint(0, s, (), generator=gen)) for s in p.shape)
            with torch.no_grad():
                old = p[idx].item()
                p[idx] = old + eps
                lp = _spectrum_loss(m, x, c, **kw).item()
                p[idx] = old - eps
                lm = _spectrum_loss(m, x, c, **kw).item()
                p[idx] = old
            fd = (lp - lm) / (2 * eps)
            assert abs(fd - g[idx].item()) <= 1e-6 * max(1.0, abs(fd)), (p.shape, idx, fd, g[idx].item())


@pytest.mark.parametrize("s_ons", [1, 3])
@pytest.mark.parametrize("nonlinearity,k,transients,g", [
    ("tanh", 4, (5, 8), 1.5), ("relu", 4, (5, 8), 1.5), ("tanh", 3, (0, 0), 1.5),
    # k = n: the smallest exponent of an s_ons-step product is only resolved to
    # eps * kappa(product); at g = 1.5 (saturated units, lambda_7 ~ -3.4) that is ~1e-10 in
    # the value and 1e-9 in the gradient for BOTH paths (and finite differences at s_ons=3
    # scatter by 1e-4), so the square case uses a milder g
    ("tanh", 7, (5, 8), 0.9)])
def test_fast_vs_reference_spectrum(s_ons, nonlinearity, k, transients, g):
    # relu: a tangent step with fewer than k active units has rank(D[t] Q) < k, so R_kk is
    # rounding noise (~1e-18), lambda_k contains log(noise) and its gradient (c_k / R_kk ~ 1e15)
    # is noise amplified ~1e16: then two paths agree only if they round bit for bit alike.
    # The default seeds 11, 12 hit such steps (down to 1 active unit of 7); 13, 16 do not.
    seeds = [10, 13, 16] if nonlinearity == "relu" else None
    m = _tanh_model(R=3, N=7, S=2, g=g, nonlinearity=nonlinearity, seeds=seeds)
    T = 45
    x = _randn(T, 3, 2, seed=21)
    if nonlinearity == "relu":  # every tangent step keeps >= k active units
        with torch.no_grad():
            h, active = m.h0[:, None, :], []
            for t in range(T):
                if t >= transients[0]:
                    active.append((h > 0).sum(-1).min().item())
                h = m.step(h, x[t][:, None, :])
        assert min(active) >= k
    c = _randn(3, k, seed=22)
    params = [m.W, m.V, m.b, m.h0]
    out = []
    for fast in (True, False):
        q0 = random_orthonormal(7, k, 3, seed=5).requires_grad_(True)
        lam = lyapunov_spectrum(m, x, k, s_ons=s_ons, transient_h=transients[0],
                                transient_q=transients[1], q0=q0, fast=fast)
        # (relu: phi'' = 0, so V, b, h0 do not reach the exponents; autograd reports None)
        grads = torch.autograd.grad((lam * c).sum(), params + [q0], allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params + [q0], grads)]
        out.append((lam.detach(), grads))
    (l1, g1), (l2, g2) = out
    torch.testing.assert_close(l1, l2, rtol=1e-10, atol=1e-10)
    # the square case resolves the gradient only to ~1e-9 (see above): rounding order decides
    gtol = 1e-9 if k == 7 else 1e-10
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=gtol, atol=gtol * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
def test_forward_fast_vs_reference_and_explicit_loop(nonlinearity):
    R, B, N, S, O, T = 3, 4, 6, 2, 2, 25
    m = _tanh_model(R=R, N=N, S=S, O=O, g=1.2, nonlinearity=nonlinearity)
    if nonlinearity == "identity":
        with torch.no_grad():
            m.W.mul_(0.3)
    x = _randn(T, R, B, S, seed=31)
    w = _randn(T, R, B, O, seed=32)
    params = list(m.parameters())
    outs = []
    for fast in (True, False):
        y = m(x, fast=fast)
        outs.append((y.detach(), torch.autograd.grad((y * w).sum(), params)))
    # explicit loop written from the paper's equation: h <- W phi(h) + V x / S + b
    phi = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda h: h}[nonlinearity]
    h = m.h0.detach()[:, None, :].expand(R, B, N)
    ys = []
    for t in range(T):
        h = torch.einsum("rij,rbj->rbi", m.W.detach(), phi(h)) + torch.einsum(
            "ris,rbs->rbi", m.V.detach(), x[t]) / S + m.b.detach()[:, None, :]
        ys.append(torch.einsum("roi,rbi->rbo", m.w_r.detach(), h) + m.c.detach()[:, None, :])
    y_loop = torch.stack(ys)
    (y1, g1), (y2, g2) = outs
    torch.testing.assert_close(y1, y_loop, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y2, y_loop, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * b.abs().max().item())


def test_rnn_sequence_gradient_finite_differences():
    R, B, N, T = 2, 3, 5, 20
    h0 = _randn(R, B, N, seed=41).requires_grad_(True)
    W = (1.3 / math.sqrt(N) * _randn(R, N, N, seed=42)).requires_grad_(True)
    drive = _randn(T, R, B, N, seed=43).requires_grad_(True)
    w = _randn(T, R, B, N, seed=44)
    assert torch.autograd.gradcheck(lambda a, b_, c_: (rnn_sequence(a, b_, c_) * w).sum(), (h0, W, drive))


# ---------------------------------------------------------------------------------------
# 5. float32 vs float64
# ---------------------------------------------------------------------------------------
def _spectrum_and_floss_grad(seed, g, T, dtype):
    m = _tanh_model(R=1, N=64, S=1, seeds=[seed], g=g, dtype=dtype)
    x = _randn(T, 1, 1, seed=seed + 100, dtype=dtype)
    lam = lyapunov_spectrum(m, x, 16, transient_h=50, transient_q=50)
    flossing_loss(lam).sum().backward()
    grad = torch.cat([p.grad.flatten().double() for p in flossing_parameters(m)])
    return lam.detach().double(), grad


@pytest.mark.parametrize("g,seed", [(0.5, 0), (1.0, 1), (1.5, 2)])
def test_float32_vs_float64_stable_regime(g, seed):
    # Measured, N=64, k=16, T=300, x ~ N(0,1), tanh, flossing loss (target 0, sum) and its
    # gradient w.r.t. (W, V, b); float32 run from the float64 parameters:
    #   these three configs: |lambda32 - lambda64| <= 1.8e-6 and
    #   ||grad32 - grad64|| / ||grad64|| <= 9e-5 (over other seeds with lambda_1 < 0: 2e-6..2e-4).
    # In the contracting regime rounding errors of the state and of Q are damped (Q
    # converges to the Oseledets directions at rate lambda_k - lambda_{k+1}), so the drift is
    # a few hundred to a thousand float32 ulps (6e-8) accumulated along T.
    # Tolerances 5e-5 / 2e-3 leave a >= 20x margin. Two regimes are excluded on purpose:
    # - a near-degenerate gap lambda_k ~ lambda_{k+1} (seed 5, g=1: gap 5e-3) makes the
    #   gradient of the individual exponents ill-conditioned, ~1/gap: drift measured 7e-3;
    # - chaos (g=2, lambda_1 > 0): the float32 trajectory separates from the float64 one
    #   like exp(lambda_1 t); measured exponent differences up to 3e-2 and gradients that
    #   differ by O(1) at T = 300 -- the physics, not a bug.
    l64, g64 = _spectrum_and_floss_grad(seed, g, 300, F64)
    l32, g32 = _spectrum_and_floss_grad(seed, g, 300, torch.float32)
    assert l64[0, 0] < 0
    assert (l32 - l64).abs().max().item() < 5e-5
    assert ((g32 - g64).norm() / g64.norm()).item() < 2e-3


# ---------------------------------------------------------------------------------------
# 6. Ensemble equivalence
# ---------------------------------------------------------------------------------------
def test_ensemble_equals_single_members():
    s0, R, N = 123, 4, 8
    seeds = list(range(s0, s0 + R))
    task = make_task("copy", delay=4, seq_len=30, batch_size=3)
    ens = VanillaRNN(R, N, task.n_in, task.n_out, dtype=F64)
    g_ens = initialize(ens, seeds, g_range=(0.5, 1.5))
    batch = task.sample(member_generators(seeds, "train"), dtype=F64)
    loss_e = task.loss(ens(batch.inputs), batch)
    assert loss_e.shape == (R,)
    grads_e = torch.autograd.grad(loss_e.sum(), list(ens.parameters()))
    xl = torch.randn(60, R, 1, generator=_gen(9), dtype=F64)
    lam_e = lyapunov_spectrum(ens, xl, 3, s_ons=2)
    glam_e = torch.autograd.grad(flossing_loss(lam_e).sum(), [ens.W, ens.V, ens.b])
    for r, seed in enumerate(seeds):
        one = VanillaRNN(1, N, task.n_in, task.n_out, dtype=F64)
        g_one = initialize(one, [seed], g_range=(0.5, 1.5))
        assert g_one[0] == g_ens[r]
        for (name, pe), po in zip(ens.named_parameters(), one.parameters()):
            torch.testing.assert_close(pe[r:r + 1], po, rtol=0, atol=1e-12, msg=name)
        b1 = task.sample(member_generators([seed], "train"), dtype=F64)
        assert torch.equal(b1.inputs[:, 0], batch.inputs[:, r])
        assert torch.equal(b1.targets[:, 0], batch.targets[:, r])
        loss_1 = task.loss(one(b1.inputs), b1)
        torch.testing.assert_close(loss_1[0], loss_e[r], rtol=1e-10, atol=1e-12)
        grads_1 = torch.autograd.grad(loss_1.sum(), list(one.parameters()))
        for ge, g1 in zip(grads_e, grads_1):
            torch.testing.assert_close(ge[r:r + 1], g1, rtol=1e-10, atol=1e-12)
        lam_1 = lyapunov_spectrum(one, xl[:, r:r + 1], 3, s_ons=2)
        torch.testing.assert_close(lam_1[0], lam_e[r].detach(), rtol=1e-10, atol=1e-12)
        glam_1 = torch.autograd.grad(flossing_loss(lam_1).sum(), [one.W, one.V, one.b])
        for ge, g1 in zip(glam_e, glam_1):
            torch.testing.assert_close(ge[r:r + 1], g1, rtol=1e-10, atol=1e-12)


def test_lstm_ensemble_init_equals_single_members():
    seeds = [7, 8, 9]
    ens = LSTM(3, 4, 2, 1, dtype=F64)
    initialize(ens, seeds, g=0.8)
    for r, seed in enumerate(seeds):
        one = LSTM(1, 4, 2, 1, dtype=F64)
        initialize(one, [seed], g=0.8)
        for pe, po in zip(ens.parameters(), one.parameters()):
            torch.testing.assert_close(pe[r:r + 1], po, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------
# 7. One-step Jacobians
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
def test_vanilla_jacobian_vs_autograd(nonlinearity):
    R, B, N, S = 2, 3, 5, 2
    m = _tanh_model(R=R, N=N, S=S, nonlinearity=nonlinearity)
    h = _randn(R, B, N, seed=51)
    x = _randn(R, B, S, seed=52)
    J = torch.autograd.functional.jacobian(lambda z: m.step(z, x), h)  # [R,B,N,R,B,N]
    D = m.jacobian(h).detach()
    assert D.shape == (R, B, N, N)
    for r in range(R):
        for b in range(B):
            torch.testing.assert_close(D[r, b], J[r, b, :, r, b, :], rtol=1e-13, atol=1e-13)
            # members and batch entries do not couple
            J_off = J[r, b].clone()
            J_off[:, r, b, :] = 0
            assert J_off.abs().max() == 0
    Q = _randn(R, N, 3, seed=53)
    DQ = m.jacobian_apply(h[:, 0], Q).detach()
    torch.testing.assert_close(DQ, torch.stack([J[r, 0, :, r, 0, :] @ Q[r] for r in range(R)]),
                               rtol=1e-13, atol=1e-13)


def test_lstm_jacobian_apply_vs_autograd():
    R, N, S, k = 2, 4, 3, 5
    m = LSTM(R, N, S, 1, dtype=F64)
    initialize(m, [1, 2], g=1.2)
    s = _randn(R, 2 * N, seed=61)
    x = _randn(R, S, seed=62)
    J = torch.autograd.functional.jacobian(lambda z: m.step(z[:, None], x[:, None])[:, 0], s)
    Q = _randn(R, 2 * N, k, seed=63)
    DQ = m.jacobian_apply(s, Q, x).detach()
    assert DQ.shape == (R, 2 * N, k)
    for r in range(R):
        torch.testing.assert_close(DQ[r], J[r, :, r, :] @ Q[r], rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(
            m.jacobian_apply(s, torch.eye(2 * N, dtype=F64).expand(R, -1, -1), x)[r].detach(),
            J[r, :, r, :], rtol=1e-13, atol=1e-13)


def test_lstm_spectrum():
    R, N, S, k, T = 2, 4, 2, 5, 40
    m = LSTM(R, N, S, 1, dtype=F64)
    initialize(m, [3, 4], g=1.0)
    x = _randn(T, R, S, seed=71)
    q0 = random_orthonormal(2 * N, k, R, seed=2)
    lam = lyapunov_spectrum(m, x, k, transient_h=4, transient_q=6, q0=q0, s_ons=2)
    assert lam.shape == (R, k)
    assert torch.isfinite(lam).all()
    ref = _explicit_spectrum(m, x, k, 4, 6, 2, q0)
    torch.testing.assert_close(lam.detach(), ref, rtol=0, atol=1e-12)
    (gU,) = torch.autograd.grad(flossing_loss(lam).sum(), [m.U])
    assert torch.isfinite(gU).all() and gU.abs().max() > 1e-3
    # the gradient against central finite differences (float64; it used to be checked only
    # for being nonzero)
    kw = dict(transient_h=4, transient_q=6, q0=q0, s_ons=2)
    gen, eps = _gen(72), 1e-6
    for _ in range(6):
        idx = tuple(int(torch.randint(0, s, (), generator=gen)) for s in m.U.shape)
        with torch.no_grad():
            old = m.U[idx].item()
            m.U[idx] = old + eps
            lp = flossing_loss(lyapunov_spectrum(m, x, k, **kw)).sum().item()
            m.U[idx] = old - eps
            lm = flossing_loss(lyapunov_spectrum(m, x, k, **kw)).sum().item()
            m.U[idx] = old
        fd = (lp - lm) / (2 * eps)
        assert abs(fd - gU[idx].item()) <= 1e-6 * max(1.0, abs(fd)), (idx, fd, gU[idx].item())
    # the gated fast path (flossrepro.engine.gated, the default above) equals the per-step autograd path
    ref = lyapunov_spectrum(m, x, k, fast=False, **kw)
    torch.testing.assert_close(lam.detach(), ref.detach(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------
# 8. Flossing drives lambda_1 to the target (paper Fig 1B)
# ---------------------------------------------------------------------------------------
def _floss_to_target(n_nets, target, epochs, lr, lr_end, seq_len, seed0=0):
    seeds = list(range(seed0, seed0 + n_nets))
    m = VanillaRNN(n_nets, 32, 1, 1, dtype=F64)
    initialize(m, seeds, g_range=(0.0, 1.0))
    opt = torch.optim.Adam(flossing_parameters(m), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, (lr_end / lr) ** (1 / epochs))
    gens = member_generators(seeds, "floss")
    lam0 = None
    for _ in range(epochs):
        x = torch.stack([torch.randn(seq_len, 1, generator=g, dtype=F64) for g in gens], 1)
        # transient_h=50: the state first leaves the relaxed h0 (where tanh' ~ 1); with the
        # default 10 steps the short-window estimate sits above the stationary lambda_1 and
        # flossing then parks the true lambda_1 up to 0.07 below the target
        lam, loss = floss_step(m, opt, x, 1, target=target, transient_h=50, transient_q=30)
        sched.step()
        lam0 = lam if lam0 is None else lam0
    gens_test = member_generators(seeds, "floss_test")
    x = torch.stack([torch.randn(3000, 1, generator=g, dtype=F64) for g in gens_test], 1)
    with torch.no_grad():
        lam_end = lyapunov_spectrum(m, x, 1, transient_h=100, transient_q=200)[:, 0]
    return lam0[:, 0], lam_end


def test_flossing_reaches_target_ten_networks():
    # Fig 1B setting: N=32, g ~ U(0,1), batch 1, x ~ N(0,1), k=1, target -0.5; float64.
    # Adam, lr 3e-3 decaying exponentially to 1e-3, fresh sequences of T=150 every epoch,
    # 200 epochs; judged on a fresh 3000-step sequence per network.
    # Seeds 0..9 (initial lambda_1 down to -2.0): measured max |lambda_1 + 0.5| = 0.021.
    # 200 epochs are NOT enough for every seed set: networks that start near lambda_1 ~ -4
    # (g ~ 0.02) end 0.05..0.09 away (seeds 10..19, 30..39); the slow test below runs 50
    # networks for 400 epochs.
    # lr 1e-2 overshoots for the weakest networks (initial lambda_1 ~ -2) and Adam's second
    # moment (beta2=0.999) then keeps the steps small: members stuck at -0.36 after 150 epochs.
    lam0, lam_end = _floss_to_target(10, -0.5, epochs=200, lr=3e-3, lr_end=1e-3, seq_len=150)
    assert (lam0 + 0.5).abs().max() > 1.0  # the networks did start away from the target
    assert (lam_end + 0.5).abs().max() < 0.05, lam_end


@pytest.mark.slow
def test_flossing_reaches_target_fifty_networks():
    # The same setting for seeds 0..49 (initial lambda_1 down to -4.3) and 400 epochs
    # (lr 3e-3 -> 1e-3): measured max |lambda_1 + 0.5| = 0.041, median ~0.01; at 200 epochs
    # the farthest starters were still 0.086 away.
    lam0, lam_end = _floss_to_target(50, -0.5, epochs=400, lr=3e-3, lr_end=1e-3, seq_len=150)
    err = (lam_end + 0.5).abs()
    assert (lam0 + 0.5).abs().max() > 3.0
    assert err.max() < 0.06 and err.median() < 0.02, err


# ---------------------------------------------------------------------------------------
# 9. Condition number estimate (paper Eq 10)
# ---------------------------------------------------------------------------------------
def test_condition_number_estimate():
    lam = torch.tensor([[0.1, -0.2, -0.5]], dtype=F64)
    torch.testing.assert_close(condition_number_estimate(lam, 10.0),
                               torch.exp(torch.tensor([0.6 * 10], dtype=F64)))
    torch.testing.assert_close(condition_number_estimate(lam, 10.0, m=2),
                               torch.exp(torch.tensor([0.3 * 10], dtype=F64)))
    assert condition_number_estimate(lam, 7.0, m=1).item() == 1.0

    n = 5
    W = _well_separated(n, [1.1, 0.9, -0.7, 0.5, 0.35], seed=4)
    lam = lyapunov_spectrum_from_jacobians(W.expand(800, n, n), n, transient=100)
    Q0 = random_orthonormal(n, n, 1, seed=9)[0]

    def kappa(t, m_dim):
        sv = torch.linalg.svdvals(torch.linalg.matrix_power(W, t) @ Q0[:, :m_dim])
        return (sv[0] / sv[-1]).item()

    for m_dim in (2, 3, n):
        # horizons with kappa < 1e11: beyond ~1e16 a float64 SVD cannot resolve sigma_min
        # (the paper's Fig 2A uses 256-bit arithmetic for that reason)
        rate = (lam[0] - lam[m_dim - 1]).item()
        t_max = int(math.log(1e11) / rate)
        for t in (5, t_max // 2, t_max):
            est = condition_number_estimate(lam, t, m=m_dim).item()
            # same exponential rate; the prefactor depends on the eigenbasis (measured
            # |log kappa - log est| <= 1.2 for cond(P) ~ 3.6): loose
            assert abs(math.log(kappa(t, m_dim)) - math.log(est)) < 2.0, (m_dim, t, kappa(t, m_dim), est)
        # the growth rate itself: log kappa(t2) - log kappa(t1) = (l1 - lm)(t2 - t1) + o(1)
        t1, t2 = t_max // 2, t_max
        measured = (math.log(kappa(t2, m_dim)) - math.log(kappa(t1, m_dim))) / (t2 - t1)
        assert abs(measured - rate) < 0.01, (m_dim, measured, rate)


# ---------------------------------------------------------------------------------------
# 10. Argument errors say what was given and what is allowed
# ---------------------------------------------------------------------------------------
def test_bad_arguments():
    m = _tanh_model(R=2, N=6, S=2)
    x = torch.zeros(50, 2, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"k=7.*state dimension is 6.*1 <= k <= 6"):
        lyapunov_spectrum(m, x, 7)
    with pytest.raises(ValueError, match=r"k=0.*1 <= k <= 6"):
        lyapunov_spectrum(m, x, 0)
    with pytest.raises(ValueError, match=r"k=2.5 must be an integer.*1 <= k <= 6"):
        lyapunov_spectrum(m, x, 2.5)
    # any integer type is a valid k (it used to be rejected as "k=3 ... allowed 1 <= k <= 6")
    assert lyapunov_spectrum(m, x, np.int64(3)).shape == (2, 3)
    assert lyapunov_spectrum_from_jacobians(torch.zeros(10, 6, 6, dtype=F64) + torch.eye(6, dtype=F64),
                                            torch.tensor(2)).shape == (2,)
    with pytest.raises(ValueError, match=r"k=9.*1 <= k <= 6"):
        lyapunov_spectrum_from_jacobians(torch.zeros(10, 6, 6, dtype=F64), 9)
    with pytest.raises(ValueError, match=r"sequence of 50 steps.*transient of 30 \+ 20.*more than 50"):
        lyapunov_spectrum(m, x, 2, transient_h=30, transient_q=20)
    with pytest.raises(ValueError, match=r"sequence of 5 steps.*transient of 10 \+ 1 steps.*more than 11"):
        lyapunov_spectrum(m, torch.zeros(5, 2, 2, dtype=F64), 2)  # default transient 10 + 1
    with pytest.raises(ValueError, match=r"s_ons=0"):
        lyapunov_spectrum(m, x, 2, s_ons=0)
    with pytest.raises(ValueError, match=r"inputs must be \[T, R=2, S=2\], got \(50, 3, 2\)"):
        lyapunov_spectrum(m, torch.zeros(50, 3, 2, dtype=F64), 2)
    with pytest.raises(ValueError, match=r"'sigmoid'.*allowed.*'identity', 'relu', 'tanh'"):
        VanillaRNN(1, 4, 1, 1, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"'softplus'.*allowed"):
        rnn_sequence(torch.zeros(1, 1, 2), torch.zeros(1, 2, 2), torch.zeros(3, 1, 1, 2), "softplus")
    with pytest.raises(ValueError, match=r"reduction='max'.*allowed.*'sum', 'mean'"):
        flossing_loss(torch.zeros(2, 3), reduction="max")
    with pytest.raises(ValueError, match=r"scheme='uniform'.*allowed.*'gaussian', 'orthogonal'"):
        initialize(m, [1, 2], scheme="uniform")
    with pytest.raises(ValueError, match=r"got 3 seeds for 2 members"):
        initialize(m, [1, 2, 3])
    with pytest.raises(ValueError, match=r"m=4.*3"):
        condition_number_estimate(torch.zeros(1, 3), 5.0, m=4)
    with pytest.raises(ValueError, match=r"'X'.*allowed"):
        flossing_parameters(m, which=("W", "X"))


# ---------------------------------------------------------------------------------------
# 11. Per-member gradient clipping; floss_step masking
# ---------------------------------------------------------------------------------------
def test_clip_grad_norm_per_member():
    m = _tanh_model(R=3, N=4, S=2)
    params = [m.W, m.V, m.b]
    target_norms = torch.tensor([10.0, 0.5, 3.0], dtype=F64)
    raw = [_randn(*p.shape, seed=80 + i) for i, p in enumerate(params)]
    norms0 = torch.sqrt(sum(g.reshape(3, -1).pow(2).sum(1) for g in raw))
    for p, g in zip(params, raw):
        p.grad = g * (target_norms / norms0).view(-1, *([1] * (p.dim() - 1)))
    before = [p.grad.clone() for p in params]
    returned = clip_grad_norm_per_member(params, 1.0)
    torch.testing.assert_close(returned, target_norms)
    after = torch.sqrt(sum(p.grad.reshape(3, -1).pow(2).sum(1) for p in params))
    torch.testing.assert_close(after, torch.tensor([1.0, 0.5, 1.0], dtype=F64))
    for p, b in zip(params, before):
        assert torch.equal(p.grad[1], b[1])  # the small member is untouched, bit for bit
        for r, s in ((0, 0.1), (2, 1 / 3)):
            torch.testing.assert_close(p.grad[r], b[r] * s)  # same direction


def test_floss_step_alive_mask_freezes_members():
    m = _tanh_model(R=3, N=5, S=1, g=0.9)
    opt = torch.optim.SGD(flossing_parameters(m), lr=0.1)
    before = [p.detach().clone() for p in flossing_parameters(m)]
    alive = torch.tensor([True, False, True])
    lam, loss = floss_step(m, opt, _randn(40, 3, 1, seed=90), 2, keep=alive)
    assert lam.shape == (3, 2) and loss.shape == (3,)
    # oracle: the exponents and their flossing gradient on the per-step reference path, at the
    # parameters before the step; SGD moves the kept members by -lr * gradient, not member 1
    ref = _tanh_model(R=3, N=5, S=1, g=0.9)
    with torch.no_grad():
        for p, b in zip(flossing_parameters(ref), before):
            p.copy_(b)
    lam_ref = lyapunov_spectrum(ref, _randn(40, 3, 1, seed=90), 2, fast=False)
    grads = torch.autograd.grad(flossing_loss(lam_ref).sum(), flossing_parameters(ref))
    torch.testing.assert_close(lam, lam_ref.detach(), rtol=0, atol=1e-10)
    torch.testing.assert_close(loss, ((lam_ref.detach() - 0.0) ** 2).sum(-1), rtol=0, atol=1e-10)
    for p, b, g in zip(flossing_parameters(m), before, grads):
        assert torch.equal(p[1], b[1])
        assert g[[0, 2]].abs().max() > 1e-3
        torch.testing.assert_close(p.detach()[[0, 2]], (b - 0.1 * g)[[0, 2]], rtol=0, atol=1e-10)
