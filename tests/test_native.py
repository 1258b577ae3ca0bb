"""The native (compiled C) kernels of :mod:`flossrepro.engine.native` against oracles.

Oracles (not the code under test):
- float64 ``torch.tanh`` for the kernels' own float32 tanh;
- ``torch.linalg.qr`` (LAPACK geqrf + orgqr) for the Householder QR;
- the pure-PyTorch fast paths (the same algorithms, run with ``native.disabled()``) and the
  per-step autograd references (``fast=False``: ``torch.linalg.qr`` per step, plain autograd)
  for the state trajectory, BPTT and the Lyapunov tangent loop, values and gradients;
- float64 for float32 (a contracting network, where rounding errors are damped);
- NaN propagation of the PyTorch paths (the trainer detects divergence by non-finite values).

The dispatch itself is checked without CUDA and without mocks: ``native.available`` and the
PyTorch profiler (the native loops issue no per-step ``aten::geqrf`` / ``aten::tanh`` / ``aten::bmm``).
Small float64 problems; the file runs in a few seconds on one thread.
"""
from __future__ import annotations

import contextlib
import copy
import math

import pytest
import torch

from flossrepro import VanillaRNN, flossing_loss, initialize, lyapunov_spectrum; from flossrepro.engine import native
from flossrepro.engine.lyapunov import random_orthonormal
from flossrepro.engine.models import rnn_sequence

F64, F32 = torch.float64, torch.float32

pytestmark = pytest.mark.skipif(not native.enabled(),
                                reason=f"native kernels unavailable: {native.status()}")


def _randn(*shape, seed=0, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def _close(a, b, tol, what=""):
    """``|a - b| <= tol * max(1, max|b|)`` elementwise (a relative check scaled by the oracle)."""
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
    err = (a - b).abs().max().item() if b.numel() else 0.0
    assert err <= tol * scale, f"{what}: max abs diff {err:.3e} > {tol:.0e} * {scale:.3g}"


# ---------------------------------------------------------------------------------------
# float32 tanh
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["avx2", "avx512"])  # the 8- and 16-wide loops
def test_tanh_f32_relative_error_and_specials(kind):
    if kind not in native.gemm_kinds_supported():
        pytest.skip(f"this CPU has no {kind} kernels")
    with native.gemm(kind):
        _check_tanh_f32()


def _check_tanh_f32():
    grid = torch.linspace(-20.0, 20.0, 400_001, dtype=F64)
    tiny = torch.logspace(-30, math.log10(30.0), 20_001, dtype=F64)
    # both sides of the branch points (polynomial below 0.55, exp above; clamp at 9) densely,
    # float32 subnormals and the largest finite float32
    edges = torch.cat([torch.linspace(0.5, 0.6, 20_001, dtype=F64),
                       torch.linspace(8.9, 9.1, 2_001, dtype=F64),
                       torch.tensor([1e-40, 1e-45, 1.1754944e-38, 3.4028235e38], dtype=F64)])
    x = torch.cat([grid, tiny, -tiny, edges, -edges]).to(F32)
    got = native.tanh_f32(x)
    assert got.dtype == F32 and got.shape == x.shape
    ref = torch.tanh(x.to(F64))  # of the float32 input itself, so only the kernel's error counts
    nz = ref != 0
    assert nz.sum() > 400_000
    rel = ((got.to(F64) - ref).abs()[nz] / ref.abs()[nz])
    worst = rel.argmax()
    assert rel.max().item() <= 3e-7, (
        f"tanh_f32 max rel. error {rel.max().item():.3e} at x={x[nz][worst].item()!r}")
    # exact odd symmetry (the kernel works on |x| and copies the sign)
    assert torch.equal(native.tanh_f32(-x), -got)

    sp = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan], dtype=F32)
    out = native.tanh_f32(sp)
    assert out[0].item() == 0.0 and not torch.signbit(out[0])
    assert out[1].item() == 0.0 and torch.signbit(out[1])
    assert out[2].item() == 1.0 and out[3].item() == -1.0
    assert torch.isnan(out[4:]).all()
    # NaN survives inside a vectorized block too (any position of an 8-wide lane)
    v = torch.linspace(-3, 3, 37, dtype=F32)
    for i in (0, 5, 8, 36):
        w = v.clone()
        w[i] = math.nan
        o = native.tanh_f32(w)
        assert torch.isnan(o[i]) and torch.isfinite(o[torch.arange(37) != i]).all()


# ---------------------------------------------------------------------------------------
# Householder QR
# ---------------------------------------------------------------------------------------
def _structured_matrices():
    A = _randn(9, 6, seed=7)
    upper = torch.triu(A)  # every column's subdiagonal part is zero: tau = 0, R keeps signs
    upper[1, 1] = -abs(upper[1, 1].item())
    zero_col = A.clone()
    zero_col[:, 2] = 0.0
    zero_pivot = A.clone()
    zero_pivot[0, 0] = 0.0  # LAPACK: beta = -sign(alpha) ||x|| with sign(+0) = +, so R_00 < 0
    return {"triangular": upper, "zero-column": zero_col, "zero-pivot": zero_pivot}


@pytest.mark.parametrize("shape", [(80, 75), (7, 5), (16, 16), (3, 40, 10), (1, 1), (12, 1), (2, 1, 3, 2)])
def test_qr_float64_equals_torch(shape):
    A = _randn(*shape, seed=sum(shape))
    Qr, Rr = torch.linalg.qr(A)
    Q, R = native.qr(A.clone())
    assert Q.shape == Qr.shape and R.shape == Rr.shape
    assert (Q - Qr).abs().max().item() <= 1e-12
    assert (R - Rr).abs().max().item() <= 1e-12 * max(1.0, Rr.abs().max().item())
    assert torch.equal(R, torch.triu(R))


@pytest.mark.parametrize("layout", ["row-major", "column-major", "single column"])
def test_qr_leaves_its_input_alone(layout):
    """``native.qr(A)`` returns new tensors, as torch.linalg.qr does, whatever A's strides."""
    if layout == "row-major":
        A = _randn(2, 9, 4, seed=1)
    elif layout == "column-major":  # a transposed view: its [n, m] transpose is contiguous
        A = _randn(2, 4, 9, seed=1).transpose(1, 2)
    else:
        A = _randn(9, 1, seed=1)
    before = A.clone()
    Q, R = native.qr(A)
    assert torch.equal(A, before), f"native.qr overwrote its {layout} input"
    Qr, Rr = torch.linalg.qr(before)
    assert (Q - Qr).abs().max().item() <= 1e-12 and (R - Rr).abs().max().item() <= 1e-12


@pytest.mark.parametrize("name", ["triangular", "zero-column", "zero-pivot"])
def test_qr_float64_degenerate_columns(name):
    A = _structured_matrices()[name]
    Q, R = native.qr(A)
    Qr, Rr = torch.linalg.qr(A)
    assert (Q - Qr).abs().max().item() <= 1e-12
    assert (R - Rr).abs().max().item() <= 1e-12
    assert (Q @ R - A).abs().max().item() <= 1e-12


@pytest.mark.parametrize("kind", ["avx2", "avx512"])  # the AVX-512 reflector or the generic loop
@pytest.mark.parametrize("shape", [(80, 75), (32, 8), (3, 40, 10), (37, 35), (19, 19), (130, 70)])
def test_qr_float32_orthonormal_and_reconstructs(shape, kind):
    if kind not in native.gemm_kinds_supported():
        pytest.skip(f"this CPU has no {kind} kernels")
    A64 = _randn(*shape, seed=3 + sum(shape))
    with native.gemm(kind):
        Q, R = native.qr(A64.to(F32))
    assert Q.dtype == F32 and R.dtype == F32
    Q, R = Q.to(F64), R.to(F64)
    n = shape[-1]
    eye = torch.eye(n, dtype=F64).expand(*shape[:-2], n, n)
    assert (Q.transpose(-2, -1) @ Q - eye).abs().max().item() <= 1e-5
    assert ((Q @ R - A64).norm() / A64.norm()).item() <= 1e-5
    assert torch.equal(R, torch.triu(R))
    # same sign convention as LAPACK in float64 (the factorization is unique up to signs)
    Qr, Rr = torch.linalg.qr(A64)
    assert torch.equal(torch.sign(R.diagonal(dim1=-2, dim2=-1)), torch.sign(Rr.diagonal(dim1=-2, dim2=-1)))
    assert (Q - Qr).abs().max().item() <= 1e-3


def test_qr_needs_tall_matrix():
    with pytest.raises(ValueError, match="tall"):
        native.qr(_randn(5, 7))
    with pytest.raises(ValueError, match="tall"):
        native.qr(_randn(2, 3, 4))


# ---------------------------------------------------------------------------------------
# Lyapunov spectrum: native vs PyTorch fast path vs per-step autograd reference
# ---------------------------------------------------------------------------------------
N, K, T = 12, 5, 40


def _model(R, nonlinearity, g, seeds, dtype=F64, n=N):
    m = VanillaRNN(R, n, 2, 1, nonlinearity=nonlinearity, dtype=F64)
    initialize(m, seeds, g=g)
    return m.to(dtype)


def _min_active_relu_units(m, x, transient_h):
    with torch.no_grad():
        h, active = m.h0[:, None, :], []
        for t in range(x.shape[0]):
            if t >= transient_h:
                active.append((h > 0).sum(-1).min().item())
            h = m.step(h, x[t][:, None, :])
    return min(active)


def _spectrum_and_grads(m, x, k, c, fast, **kw):
    R = m.n_members
    params = [m.W, m.V, m.b, m.h0]
    q0 = random_orthonormal(m.n_hidden, k, R, seed=5).requires_grad_(True)
    lam = lyapunov_spectrum(m, x, k, q0=q0, fast=fast, **kw)
    grads = torch.autograd.grad((lam * c).sum(), params + [q0], allow_unused=True)
    return lam.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params + [q0], grads)]


# seeds whose relu trajectories keep >= 6 of 12 units active on every tangent step (x seed 21)
RELU_SEEDS = {1: [10], 3: [7, 10, 12]}


def _check_spectrum_three_ways(nonlinearity, g, k, R, s_ons, n=N):
    seeds = RELU_SEEDS[R] if nonlinearity == "relu" else list(range(20, 20 + R))
    m = _model(R, nonlinearity, g, seeds, n=n)
    x = _randn(T, R, 2, seed=21)
    kw = dict(s_ons=s_ons, transient_h=5, transient_q=7)  # phases of 7 and 28 steps: ragged for s_ons=3
    if nonlinearity == "relu":
        # fewer than k active units make R_kk rounding noise, whose gradient no two paths share
        assert _min_active_relu_units(m, x, 5) >= k
    assert native.available(m.W, x)
    c = _randn(R, k, seed=22)
    lam_n, g_n = _spectrum_and_grads(m, x, k, c, True, **kw)
    with native.disabled():
        lam_t, g_t = _spectrum_and_grads(m, x, k, c, True, **kw)
    lam_r, g_r = _spectrum_and_grads(m, x, k, c, False, **kw)
    assert torch.isfinite(lam_n).all()
    for lam_o, g_o, which in ((lam_t, g_t, "torch fast path"), (lam_r, g_r, "reference")):
        _close(lam_n, lam_o, 1e-10, f"exponents vs {which}")
        for name, a, b in zip(["W", "V", "b", "h0", "q0"], g_n, g_o):
            _close(a, b, 1e-10, f"d/d{name} vs {which}")
    # the gradient is not trivially zero (the comparisons above are meaningful)
    assert g_n[0].abs().max().item() > 1e-3
    if nonlinearity == "tanh":
        assert min(g.abs().max().item() for g in g_n[1:4]) > 1e-6


@pytest.mark.parametrize("s_ons", [1, 3])
@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("nonlinearity,g", [("tanh", 1.5), ("relu", 1.3), ("identity", 0.9)])
def test_spectrum_native_vs_torch_vs_reference(nonlinearity, g, R, s_ons):
    _check_spectrum_three_ways(nonlinearity, g, K, R, s_ons)


@pytest.mark.parametrize("R", [1, 3])
def test_spectrum_square_case_native_vs_torch_vs_reference(R):
    # k = n. Only s_ons = 1: with s_ons = 3 the smallest exponent of a 3-step product
    # (lambda_12 ~ -3.2 per step here) is resolved to ~eps * kappa ~ 1e-10 relative in the
    # gradient by EVERY path (measured: the PyTorch fast path vs the reference differ by 2e-10,
    # native vs either by 1e-10), which is conditioning, not a kernel error.
    _check_spectrum_three_ways("tanh", 0.9, N, R, 1)


@pytest.mark.parametrize("n,k", [(37, 11), (16, 8)])
def test_spectrum_native_vs_torch_vs_reference_wider(n, k):
    # sizes past the kernels' register blocking (column panels of 16, rows in blocks of 4):
    # full panels plus a ragged tail (37 = 2 * 16 + 5, 11 = 2 * 4 + 3) and exact multiples
    _check_spectrum_three_ways("tanh", 1.2, k, 2, 2, n=n)


@pytest.mark.slow
@pytest.mark.parametrize("s_ons", [1, 2])
def test_spectrum_native_vs_reference_paper_size(s_ons):
    # the comparison above at the paper's flossing size (N = 80, k = 75, as in Fig 3-5), two
    # members, T = 100: measured |dlambda| 5e-12, gradients 2e-11 relative (s_ons = 1).
    # Not s_ons = 4: there the 75th direction of a 4-step product (lambda_75 ~ -3.5 per step)
    # is resolved only to eps * kappa ~ 1e-7 by either path (conditioning, as in the square case)
    n, k, Ts = 80, 75, 100
    m = VanillaRNN(2, n, 1, 1, dtype=F64)
    initialize(m, [5, 6], g=1.2)
    x = _randn(Ts, 2, 1, seed=7)
    c = _randn(2, k, seed=8)
    kw = dict(s_ons=s_ons, transient_h=10, transient_q=10)
    lam_n, g_n = _spectrum_and_grads(m, x, k, c, True, **kw)
    lam_r, g_r = _spectrum_and_grads(m, x, k, c, False, **kw)
    _close(lam_n, lam_r, 1e-10, "exponents")
    for name, a, b in zip(["W", "V", "b", "h0", "q0"], g_n, g_r):
        _close(a, b, 1e-8, f"d/d{name}")
    assert g_n[0].abs().max().item() > 1e-3


# ---------------------------------------------------------------------------------------
# Training forward / backward (state trajectory and BPTT)
# ---------------------------------------------------------------------------------------
def _sequence_and_grads(h0, W, drive, w, nonlinearity, fast):
    h0, W, drive = (t.detach().clone().requires_grad_(True) for t in (h0, W, drive))
    H = rnn_sequence(h0, W, drive, nonlinearity, fast=fast)
    return H.detach(), torch.autograd.grad((H * w).sum(), (h0, W, drive))


@pytest.mark.parametrize("R", [1, 2])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
def test_sequence_native_vs_torch_vs_reference(nonlinearity, R):
    B, Ts = 3, T
    h0 = _randn(R, B, N, seed=7)
    W = (1.2 if nonlinearity != "identity" else 0.8) / math.sqrt(N) * _randn(R, N, N, seed=8)
    drive = _randn(Ts, R, B, N, seed=9)
    w = _randn(Ts, R, B, N, seed=10)
    assert native.available(h0, W, drive)
    H_n, g_n = _sequence_and_grads(h0, W, drive, w, nonlinearity, True)
    with native.disabled():
        H_t, g_t = _sequence_and_grads(h0, W, drive, w, nonlinearity, True)
    H_r, g_r = _sequence_and_grads(h0, W, drive, w, nonlinearity, False)
    # the explicit recursion h <- W phi(h) + drive, written here
    phi = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda h: h}[nonlinearity]
    h, Hs = h0, []
    for t in range(Ts):
        h = torch.einsum("rij,rbj->rbi", W, phi(h)) + drive[t]
        Hs.append(h)
    H_loop = torch.stack(Hs)
    for H_o, which in ((H_t, "torch fast path"), (H_r, "reference"), (H_loop, "explicit loop")):
        _close(H_n, H_o, 1e-12, f"states vs {which}")
    for g_o, which in ((g_t, "torch fast path"), (g_r, "reference")):
        for name, a, b in zip(["h0", "W", "drive"], g_n, g_o):
            _close(a, b, 1e-10, f"d/d{name} vs {which}")
    assert all(g.abs().max().item() > 1e-3 for g in g_n)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_kernels_run_states_and_bptt_direct(nonlinearity):
    """The C entry points on their own, member-major buffers as native.py documents them."""
    R, Ts, B = 2, 9, 3
    h0 = _randn(R, B, N, seed=1)
    W = 1.1 / math.sqrt(N) * _randn(R, N, N, seed=2)
    drive = _randn(R, Ts, B, N, seed=3)
    dH = _randn(R, Ts, B, N, seed=4)
    H, P = native.run_states(h0, W.transpose(1, 2).contiguous(), drive, nonlinearity)
    G, dh0 = native.bptt(W, P, dH, nonlinearity)
    # oracle: plain autograd of the recursion
    phi = {"tanh": torch.tanh, "relu": torch.relu}[nonlinearity]
    h0r, dr = h0.clone().requires_grad_(True), drive.clone().requires_grad_(True)
    h, Hs, Ps = h0r, [], []
    for t in range(Ts):
        Ps.append(phi(h))
        h = torch.einsum("rij,rbj->rbi", W, Ps[-1]) + dr[:, t]
        Hs.append(h)
    Href = torch.stack(Hs, 1)
    _close(H, Href.detach(), 1e-12, "run_states H")
    _close(P, torch.stack(Ps, 1).detach(), 1e-12, "run_states P")
    gh0, gdr = torch.autograd.grad((Href * dH).sum(), (h0r, dr))
    _close(G, gdr, 1e-12, "bptt G (= d/d drive)")
    _close(dh0, gh0, 1e-12, "bptt dh0")


# ---------------------------------------------------------------------------------------
# float32 vs float64 (native both)
# ---------------------------------------------------------------------------------------
def _floss(dtype, seed=4, g=0.9, n=32, k=8, Ts=200):
    m = VanillaRNN(1, n, 1, 1, dtype=F64)
    initialize(m, [seed], g=g)
    m = m.to(dtype)
    x = _randn(Ts, 1, 1, seed=seed + 100, dtype=dtype)
    assert native.available(m.W, x)
    lam = lyapunov_spectrum(m, x, k, transient_h=30, transient_q=30)
    (gW,) = torch.autograd.grad(flossing_loss(lam).sum(), [m.W])
    return lam.detach().double(), gW.double()


@pytest.mark.parametrize("seed,n,k,Ts", [
    (4, 32, 8, 200),
    (5, 37, 11, 150),  # float32 column panels of 16 with a ragged tail, row blocks 4 + 4 + 3
    (6, 13, 3, 150),   # fewer tangent vectors than a row block
    (7, 50, 41, 150),  # k > 32: several row blocks and column panels in the QR and its pullback
])
@pytest.mark.parametrize("kind", ["blas", "avx2", "avx512"])
def test_float32_native_vs_float64_stable_tanh(seed, n, k, Ts, kind):
    # measured: |dlambda| <= 4e-7, gradient drift <= 1e-5 (the tolerances leave >= 100x)
    if kind not in native.gemm_kinds_supported():
        pytest.skip(f"this CPU has no {kind} GEMM kernels")
    l64, g64 = _floss(F64, seed=seed, n=n, k=k, Ts=Ts)
    with native.gemm(kind):
        l32, g32 = _floss(F32, seed=seed, n=n, k=k, Ts=Ts)
    assert l64[0, 0].item() < 0  # contracting: rounding errors are damped, not amplified
    assert (l32 - l64).abs().max().item() < 5e-5
    assert ((g32 - g64).norm() / g64.norm()).item() < 2e-3


# ---------------------------------------------------------------------------------------
# NaN / overflow propagation (the trainer detects divergence by non-finite values)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
def test_nan_state_propagates_through_sequence(nonlinearity, dtype):
    R, B, Ts = 2, 2, 6
    h0 = _randn(R, B, N, seed=1, dtype=dtype)
    h0[0, 0, 3] = math.nan  # member 0, batch row 0 diverged
    W = (0.5 / math.sqrt(N) * _randn(R, N, N, seed=2)).to(dtype)
    drive = _randn(Ts, R, B, N, seed=3, dtype=dtype)
    H = rnn_sequence(h0, W, drive, nonlinearity)
    with native.disabled():
        H_t = rnn_sequence(h0, W, drive, nonlinearity)
    assert torch.isnan(H_t[:, 0, 0]).all()  # the PyTorch semantics: NaN spreads through W
    assert torch.equal(torch.isnan(H), torch.isnan(H_t)), (
        f"{nonlinearity}: NaN pattern differs from the PyTorch path "
        f"(native NaN count {torch.isnan(H).sum().item()}, PyTorch {torch.isnan(H_t).sum().item()})")
    # untouched rows and members are unaffected and exact
    ok = ~torch.isnan(H_t)
    _close(H[ok], H_t[ok], 1e-12 if dtype == F64 else 1e-5, "finite states")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
def test_nan_weight_gives_nonfinite_exponents(nonlinearity):
    R = 2
    m = _model(R, nonlinearity, 0.9, [30, 31])
    x = _randn(T, R, 2, seed=5)
    kw = dict(s_ons=2, transient_h=5, transient_q=5)
    c = _randn(R, 4, seed=6)
    lam_ok = lyapunov_spectrum(m, x, 4, **kw).detach()
    assert torch.isfinite(lam_ok).all()
    with torch.no_grad():
        m.W[0, 2, 7] = math.nan
    lam = lyapunov_spectrum(m, x, 4, **kw)
    assert not torch.isfinite(lam[0]).any(), lam[0]
    # the other member is untouched (members never mix), and the masked loss's backward
    # (as floss_step does it) runs and leaves that member's gradient finite
    _close(lam[1].detach(), lam_ok[1], 1e-12, "healthy member")
    keep = torch.isfinite(lam).all(-1)
    (gW,) = torch.autograd.grad(torch.where(keep[:, None], lam * c, torch.zeros_like(lam)).sum(), [m.W])
    assert torch.isfinite(gW[1]).all()


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
def test_nan_initial_state_exponents_as_torch(nonlinearity):
    # A NaN state spreads through W to every unit. tanh: phi' = NaN, so NaN exponents; relu:
    # phi' = (NaN > 0) = 0 kills the tangent, so -inf; identity: the Jacobian W does not see
    # the state, so finite. The native path must agree with the PyTorch one on which.
    m = _model(2, nonlinearity, 1.3, RELU_SEEDS[3][:2])  # relu: the healthy member keeps >= k units on
    x = _randn(T, 2, 2, seed=21)
    kw = dict(s_ons=2, transient_h=5, transient_q=5)
    if nonlinearity == "relu":  # else lambda_k of the healthy member is log(rounding noise)
        assert _min_active_relu_units(m, x, kw["transient_h"]) >= 4
    with torch.no_grad():
        m.h0[0, 3] = math.nan
    lam = lyapunov_spectrum(m, x, 4, **kw).detach()
    with native.disabled():
        lam_t = lyapunov_spectrum(m, x, 4, **kw).detach()
    assert torch.equal(torch.isfinite(lam), torch.isfinite(lam_t)), (lam[0], lam_t[0])
    if nonlinearity != "identity":
        assert not torch.isfinite(lam[0]).any(), lam[0]
    _close(lam[1], lam_t[1], 1e-10, "healthy member")


@pytest.mark.parametrize("dtype", [F64, F32])
def test_overflowing_linear_network_gives_nonfinite_exponents(dtype):
    # identity, g huge: the state overflows to inf (then inf - inf = NaN) and so does the
    # tangent between reorthonormalizations (s_ons steps of a factor ~1e40)
    m = _model(1, "identity", 1e40 if dtype == F64 else 1e8, [7], dtype=dtype)
    x = _randn(T, 1, 2, seed=8, dtype=dtype)
    kw = dict(s_ons=10, transient_h=2, transient_q=0)
    assert native.available(m.W, x)
    lam = lyapunov_spectrum(m, x, K, **kw).detach()
    with native.disabled():
        lam_t = lyapunov_spectrum(m, x, K, **kw).detach()
    assert not torch.isfinite(lam_t).all()  # the oracle: the PyTorch path does not give finite numbers
    assert not torch.isfinite(lam).all()


# ---------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------
def test_available_dispatch_rules():
    assert native.available(torch.zeros(2)) is True
    assert native.available(torch.zeros(2, dtype=F64), torch.zeros(3, 3, dtype=F64)) is True
    assert native.available(torch.zeros(2, dtype=torch.float16)) is False
    assert native.available(torch.zeros(2, dtype=torch.bfloat16)) is False
    assert native.available(torch.zeros(2, dtype=torch.int64)) is False
    assert native.available(torch.zeros(2), torch.zeros(2, dtype=F64)) is False  # mixed dtypes
    assert native.available(torch.zeros(2), torch.zeros(2, device="meta")) is False  # not CPU
    assert native.available() is False
    with native.disabled():
        assert native.available(torch.zeros(2)) is False
        with native.disabled():
            assert native.available(torch.zeros(2)) is False
        assert native.available(torch.zeros(2)) is False  # still inside the outer block
    assert native.available(torch.zeros(2)) is True
    with pytest.raises(RuntimeError):  # the counter is restored when the block raises
        with native.disabled():
            raise RuntimeError("boom")
    assert native.available(torch.zeros(2)) is True


def _aten_counts(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.count for e in prof.key_averages()}


def test_native_loops_are_the_ones_that_run():
    """Without mocks: the native loops issue no per-step ATen ops, the PyTorch path does."""
    m = _model(1, "tanh", 1.2, [1])
    x = _randn(T, 1, 2, seed=2)
    Ts, Tq = T, T - 5

    def spectrum():
        lam = lyapunov_spectrum(m, x, K, transient_h=5, transient_q=5)
        lam.sum().backward()

    def sequence():
        m.run(_randn(Ts, 1, 3, 2, seed=3)).sum().backward()

    nat_s, nat_q = _aten_counts(spectrum), _aten_counts(sequence)
    with native.disabled():
        tor_s, tor_q = _aten_counts(spectrum), _aten_counts(sequence)
    # the PyTorch path: per step a QR (geqrf + orgqr) and a tanh; the native one: none
    # (one tanh of the whole trajectory for phi' remains in Python)
    assert tor_s.get("aten::geqrf", 0) >= Tq - 1
    assert tor_s.get("aten::tanh", 0) >= Ts - 1
    assert nat_s.get("aten::geqrf", 0) == 0
    assert nat_s.get("aten::linalg_householder_product", 0) == 0
    assert nat_s.get("aten::tanh", 0) <= 1
    # training sequence: per step a tanh and a product forward, a product backward
    assert tor_q.get("aten::tanh", 0) >= Ts - 1
    assert tor_q.get("aten::baddbmm_", 0) + tor_q.get("aten::bmm", 0) >= 2 * (Ts - 1)
    assert nat_q.get("aten::tanh", 0) == 0
    assert nat_q.get("aten::baddbmm_", 0) + nat_q.get("aten::bmm", 0) <= 3  # drive's backward and dW


# ---------------------------------------------------------------------------------------
# the per-member fused loss (lyapunov_loss / flossing_objective) vs loss_fn(lyapunov_spectrum)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("nonlinearity,g", [("tanh", 1.3), ("identity", 0.9)])
@pytest.mark.parametrize("s_ons", [1, 3])
@pytest.mark.parametrize("reduction,target", [("sum", 0.0), ("mean", -0.3)])
def test_fused_flossing_loss_equals_unfused(nonlinearity, g, s_ons, reduction, target):
    from flossrepro import flossing_objective
    R, n, k, Ts = 3, 12, 5, 40
    m = VanillaRNN(R, n, 2, 1, nonlinearity=nonlinearity, dtype=F64)
    initialize(m, [3, 4, 5], g=g)
    x = _randn(Ts, R, 2, seed=8)
    w = _randn(R, seed=9)  # a different upstream gradient per member
    params = [m.W, m.V, m.b, m.h0]
    out = []
    for fused in (True, False):
        q0 = random_orthonormal(n, k, R, seed=2, dtype=F64).requires_grad_(True)
        kw = dict(s_ons=s_ons, transient_h=5, transient_q=7, q0=q0)
        if fused:
            loss, lam = flossing_objective(m, x, k, target, reduction, **kw)
            assert loss.grad_fn is not None and "LyapunovLoss" in type(loss.grad_fn).__name__
        else:
            lam = lyapunov_spectrum(m, x, k, fast=False, **kw)
            loss = flossing_loss(lam, target, reduction)
        grads = torch.autograd.grad((loss * w).sum(), params + [q0], allow_unused=True)
        grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params + [q0], grads)]
        out.append((loss.detach(), lam.detach(), grads))
    (l1, a1, g1), (l2, a2, g2) = out
    _close(l1, l2, 1e-10, "loss")
    _close(a1, a2, 1e-10, "lambda")
    assert any(gr.abs().max() > 0 for gr in g2)
    for name, a, b in zip(["W", "V", "b", "h0", "q0"], g1, g2):
        _close(a, b, 1e-9, f"grad {name}")


def test_fused_loss_member_with_nan_leaves_the_others_alone():
    from flossrepro import flossing_objective
    R, n, k, Ts = 3, 10, 4, 40
    m = VanillaRNN(R, n, 1, 1, dtype=F64)
    initialize(m, [1, 2, 3], g=1.2)
    x = _randn(Ts, R, 1, seed=4)
    with torch.no_grad():
        ref_loss, _ = flossing_objective(m, x, k)
        m.W[1, 2, 3] = math.nan
    loss, lam = flossing_objective(m, x, k)
    assert not torch.isfinite(loss[1]) and torch.isfinite(loss[[0, 2]]).all()
    _close(loss[[0, 2]].detach(), ref_loss[[0, 2]], 1e-12, "healthy members")
    keep = torch.isfinite(loss.detach())
    torch.where(keep, loss, torch.zeros_like(loss)).sum().backward()
    assert torch.isfinite(m.W.grad[[0, 2]]).all()


# ---------------------------------------------------------------------------------------
# the whole training network (input drive, states, readout) in one native Function
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
@pytest.mark.parametrize("R,B,S,O", [(1, 4, 1, 1), (2, 3, 2, 3)])
def test_network_forward_native_vs_torch_vs_reference(nonlinearity, R, B, S, O):
    n, Ts = 9, 25
    m = VanillaRNN(R, n, S, O, nonlinearity=nonlinearity, dtype=F64)
    initialize(m, list(range(R)), g=1.1)
    with torch.no_grad():
        m.h0.copy_(_randn(R, n, seed=3))
    x = _randn(Ts, R, B, S, seed=4)
    wy = _randn(Ts, R, B, O, seed=5)
    params = list(m.parameters())
    res = {}
    for mode in ("native", "torch", "reference"):
        if mode == "native":
            y = m(x)
            assert type(y.grad_fn).__name__ == "_RNNNetworkBackward"
        elif mode == "torch":
            with native.disabled():
                y = m(x)
        else:
            y = m(x, fast=False)
        res[mode] = [y.detach()] + list(torch.autograd.grad((y * wy).sum(), params))
    names = ["y"] + [name for name, _ in m.named_parameters()]
    for mode in ("native", "torch"):
        for name, a, b in zip(names, res[mode], res["reference"]):
            _close(a, b, 1e-10, f"{mode} {name}")


# ---------------------------------------------------------------------------------------
# The C boundary: declared signatures, checked tensors (real errors, also under python -O)
# ---------------------------------------------------------------------------------------
def _c_prototypes():
    """``{name: (restype, [param, ...])}`` of every EXPORT function in csrc/ (FN(x) -> x)."""
    import re
    src = "".join((native._SRC_DIR / f).read_text() for f in native._SOURCES)
    out = {}
    for m in re.finditer(r"EXPORT\s+(\w+)\s+(?:FN\((\w+)\)|(\w+))\s*\(([^)]*)\)", src):
        ret, fn, plain, params = m.groups()
        params = [p.strip() for p in params.split(",")]
        out[fn or plain] = (ret, [] if params == ["void"] else params, fn is not None)
    return out


def test_kernel_signatures_match_the_c_prototypes():
    import ctypes
    protos = _c_prototypes()
    kernels = {n for n, (_, _, templ) in protos.items() if templ}
    plain = {n for n, (_, _, templ) in protos.items() if not templ}
    assert kernels == set(native.KERNEL_ARGTYPES), "a kernel without a declared ctypes signature (or a stale one)"
    assert plain == set(native.LIBRARY_SIGNATURES)

    scalar = {"int": ctypes.c_int, "char": ctypes.c_char, "float": ctypes.c_float, "long": ctypes.c_long,
              "double": ctypes.c_double}
    ret_type = {"void": None, "int": ctypes.c_int, "double": ctypes.c_double}

    def expected(params):
        return [ctypes.c_void_p if "*" in p else scalar[p.split()[0]] for p in params]

    lib = native.load()
    for name, (ret, params, templ) in protos.items():
        for p in params:  # every parameter is a pointer or a scalar of the table above
            assert "*" in p or p.split()[0] == "int" or (templ and p.split()[0] == "double") or \
                (not templ and p.split()[0] in scalar), (name, p)
        if templ:
            assert native.KERNEL_ARGTYPES[name] == expected(params), name
            fns = [getattr(lib, name + "_s"), getattr(lib, name + "_d")]
            assert ret == "void"
        else:
            assert native.LIBRARY_SIGNATURES[name][0] == expected(params), name
            fns = [getattr(lib, name)]
        for f in fns:  # declared on the loaded library itself
            assert f.argtypes is not None and list(f.argtypes) == expected(params), name
            assert f.restype == ret_type[ret], name


_R, _T, _B, _N, _S, _O, _K, _TQ = 2, 3, 2, 5, 2, 3, 3, 4


def _valid_kernel_args(kernel):
    """Arguments of one native.<kernel> call that the kernel accepts (float64)."""
    t = lambda *shape: _randn(*shape, seed=len(shape))  # noqa: E731
    if kernel == "run_states":
        return [t(_R, _B, _N), t(_R, _N, _N), t(_R, _T, _B, _N), "tanh"]
    if kernel == "bptt":
        return [t(_R, _N, _N), t(_R, _T, _B, _N), t(_R, _T, _B, _N), "tanh"]
    if kernel == "rnn_io_fwd":
        return [t(_R, _B, _N), t(_R, _N, _N), t(_R, _S, _N), t(_R, _N), t(_R, _N, _O), t(_R, _O),
                t(_R, _T, _B, _S), "relu"]
    if kernel == "rnn_io_bwd":
        return [t(_R, _N, _N), t(_R, _O, _N), t(_R, _T, _B, _N), t(_R, _T, _B, _O), "identity"]
    flags = [True, False, True, True]
    if kernel == "tangent_fwd":
        return [t(_R, _N, _N), t(_R, _TQ, _N), t(_R, _K, _N), flags]
    # tangent_bwd on the buffers of a real forward
    Wt, Dq, Q0T = t(_R, _N, _N), t(_R, _TQ, _N), random_orthonormal(_N, _K, _R, seed=1).transpose(1, 2).contiguous()
    QT, RT = native.tangent_fwd(Wt, Dq, Q0T, flags)
    return [Wt.transpose(1, 2).contiguous(), Dq, Q0T, QT, RT, flags, t(_R, _K), 1, True]


_KERNELS = ["run_states", "bptt", "rnn_io_fwd", "rnn_io_bwd", "tangent_fwd", "tangent_bwd"]


def _spoil(t, how):
    if how == "non-contiguous":  # same shape and values, transposed memory
        return t.transpose(0, -1).contiguous().transpose(0, -1) if t.dim() > 1 else t.repeat_interleave(2)[::2]
    if how == "float32":
        return t.to(F32)
    if how == "int64":
        return t.to(torch.int64)
    if how == "shape":
        return torch.cat([t, t[..., :1]], -1)
    if how == "meta":
        return t.to("meta")
    if how == "not a tensor":
        return t.tolist()
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["non-contiguous", "float32", "int64", "shape", "meta", "not a tensor"])
@pytest.mark.parametrize("kernel", _KERNELS)
def test_boundary_rejects_bad_tensors(kernel, how):
    """Every tensor argument of every kernel wrapper, spoiled one at a time, raises
    NativeArgumentError naming the kernel, before any C code runs (never a crash or a silent
    read of the wrong memory); the unspoiled call runs."""
    fn = getattr(native, kernel)
    args = _valid_kernel_args(kernel)
    out = fn(*args)
    assert all(o is None or torch.isfinite(o).all() for o in out)
    for i, a in enumerate(args):
        if not isinstance(a, torch.Tensor):
            continue
        bad = _spoil(a, how)
        if how == "non-contiguous":
            assert not bad.is_contiguous() and torch.equal(bad, a)
        spoiled = args[:i] + [bad] + args[i + 1:]
        with pytest.raises(native.NativeArgumentError, match=f"native.{kernel}: "):
            fn(*spoiled)


def test_boundary_rejects_bad_sizes_flags_and_names():
    h0, Wt, drive, _ = _valid_kernel_args("run_states")
    with pytest.raises(native.NativeArgumentError, match=r"nonlinearity='softplus'.*allowed"):
        native.run_states(h0, Wt, drive, "softplus")
    with pytest.raises(native.NativeArgumentError, match="must have 4 dimensions"):
        native.run_states(h0, Wt, drive[0], "tanh")
    # sizes past a C int (ctypes would wrap them silently); meta tensors hold no memory
    with pytest.raises(native.NativeArgumentError, match=r"T=2147483648 does not fit a C int"):
        native.run_states(h0, Wt, torch.empty(_R, 2 ** 31, _B, _N, dtype=F64, device="meta"), "tanh")
    Wt, Dq, Q0T, flags = _valid_kernel_args("tangent_fwd")
    with pytest.raises(native.NativeArgumentError, match="3 QR flags for 4 tangent steps"):
        native.tangent_fwd(Wt, Dq, Q0T, flags[:3])
    with pytest.raises(native.NativeArgumentError, match=r"k=6 .* N=5"):
        native.tangent_fwd(Wt, Dq, _randn(_R, 6, _N), flags)
    args = _valid_kernel_args("tangent_bwd")
    with pytest.raises(native.NativeArgumentError, match="transient_q=-1"):
        native.tangent_bwd(*args[:7], -1, True)
    with pytest.raises(native.NativeArgumentError, match=r"C-contiguous"):
        native._p(_randn(3, 4).t())
    with pytest.raises(native.NativeArgumentError, match="dtype torch.float16"):
        native._fn("qr", torch.float16)  # (it used to pick the float64 kernel)
    with pytest.raises(native.NativeArgumentError, match="CPU tensor"):
        native.tanh_f32(torch.zeros(3, device="meta"))
    assert issubclass(native.NativeArgumentError, ValueError)


def test_boundary_checks_hold_under_python_O(tmp_path):
    """The checks are not asserts: under ``python -O`` a non-contiguous tensor still raises."""
    import subprocess
    import sys
    code = (
        "import torch\n"
        "from flossrepro.engine import native\n"
        "assert not __debug__ or print('asserts on')\n"
        "W = torch.randn(2, 5, 5, dtype=torch.float64)\n"
        "drive = torch.randn(2, 3, 2, 5, dtype=torch.float64)\n"
        "h0 = torch.randn(2, 2, 5, dtype=torch.float64)\n"
        "try:\n"
        "    native.run_states(h0, W.transpose(1, 2), drive, 'tanh')\n"
        "except native.NativeArgumentError as e:\n"
        "    print('raised:', e)\n"
        "print('debug:', __debug__)\n"
    )
    res = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "debug: False" in res.stdout
    assert "raised: native.run_states: Wt" in res.stdout and "not C-contiguous" in res.stdout, res.stdout


def test_public_api_with_non_contiguous_inputs_equals_contiguous():
    """The callers hand the kernels contiguous copies: strided views at the public API give
    the numbers of contiguous inputs (native) and of the PyTorch path (the fallback)."""
    R, B, Ts = 2, 3, 20
    h0 = _randn(B, R, N, seed=1).transpose(0, 1)                 # [R, B, N], strided
    W = (1.2 / math.sqrt(N) * _randn(R, N, N, seed=2)).transpose(1, 2)
    drive = _randn(R, Ts, B, N, seed=3).transpose(0, 1)          # [T, R, B, N], strided
    assert not (h0.is_contiguous() or W.is_contiguous() or drive.is_contiguous())
    assert native.available(h0, W, drive)
    H = rnn_sequence(h0, W, drive, "tanh")
    H_c = rnn_sequence(h0.contiguous(), W.contiguous(), drive.contiguous(), "tanh")
    with native.disabled():
        H_t = rnn_sequence(h0, W, drive, "tanh")
    assert torch.equal(H, H_c)
    _close(H, H_t, 1e-12, "native vs PyTorch path")

    m = _model(R, "tanh", 1.3, [3, 4])
    x = _randn(R, T, 2, seed=5).transpose(0, 1)                  # [T, R, S], strided
    q0 = random_orthonormal(N, K, R, seed=6).transpose(1, 2).contiguous().transpose(1, 2)
    assert not (x.is_contiguous() or q0.is_contiguous())
    kw = dict(s_ons=2, transient_h=5, transient_q=5)
    lam = lyapunov_spectrum(m, x, K, q0=q0, **kw)
    lam_c = lyapunov_spectrum(m, x.contiguous(), K, q0=q0.contiguous(), **kw)
    with native.disabled():
        lam_t = lyapunov_spectrum(m, x, K, q0=q0, **kw)
    assert torch.equal(lam.detach(), lam_c.detach())
    _close(lam.detach(), lam_t.detach(), 1e-10, "native vs PyTorch path")
    y = m(_randn(R, T, 4, 2, seed=7).transpose(0, 1))
    with native.disabled():
        y_t = m(_randn(R, T, 4, 2, seed=7).transpose(0, 1))
    _close(y.detach(), y_t.detach(), 1e-12, "network outputs")


# ---------------------------------------------------------------------------------------
# float32 GEMM microkernels (csrc/gemm.h) against float64 products, every kind this CPU has
# ---------------------------------------------------------------------------------------
_GEMM_SHAPES = [(16, 80, 80), (75, 80, 80), (75, 75, 80), (80, 80, 75), (80, 80, 1200), (1, 1, 1),
                (3, 17, 5), (5, 81, 33), (7, 96, 2), (33, 161, 9), (4, 16, 0), (2, 250, 64)]


@pytest.mark.parametrize("kind", ["blas", "avx2", "avx512"])
@pytest.mark.parametrize("ta,tb", [("N", "N"), ("N", "T"), ("T", "N"), ("T", "T")])
def test_sgemm_kinds_equal_float64_product(kind, ta, tb):
    if kind not in native.gemm_kinds_supported():
        pytest.skip(f"this CPU has no {kind} GEMM kernels")
    gen = torch.Generator().manual_seed(5)
    with native.gemm(kind):
        assert native.gemm_kind() == kind
        for M, N, K in _GEMM_SHAPES:
            A = torch.randn((M, K) if ta == "N" else (K, M), generator=gen)
            B = torch.randn((K, N) if tb == "N" else (N, K), generator=gen)
            C0 = torch.randn(M, N, generator=gen)
            opA = (A if ta == "N" else A.t()).double()
            opB = (B if tb == "N" else B.t()).double()
            for alpha, beta in ((1.0, 0.0), (-1.0, 1.0), (0.5, -2.0)):
                C = C0.clone()
                if beta == 0.0:
                    C.fill_(float("nan"))  # beta = 0 must overwrite, not scale, what C held
                out = native.sgemm(A, B, ta, tb, alpha, beta, C)
                ref = alpha * opA @ opB + (beta * C0.double() if beta != 0 else 0)
                scale = (opA.abs() @ opB.abs()).max().item() + 1
                err = (out.double() - ref).abs().max().item()
                assert err <= 1e-6 * scale * max(K, 1) ** 0.5, (kind, ta, tb, M, N, K, alpha, beta, err)
    # the columns right of N and rows below M are not written (masked stores)
    with native.gemm(kind):
        big = torch.full((6, 40), 7.0)
        A, B = torch.randn(5, 8, generator=gen), torch.randn(8, 37, generator=gen)
        out = torch.zeros(5, 37)
        native.sgemm(A, B, C=out)
        assert torch.allclose(out.double(), A.double() @ B.double(), atol=1e-5)
        assert big.eq(7.0).all()


def test_gemm_kind_selection_errors_and_env(monkeypatch):
    assert native.gemm_kind() in native.gemm_kinds_supported()
    with pytest.raises(ValueError, match="unknown GEMM kind"):
        with native.gemm("sse9"):
            pass
    monkeypatch.setenv("FLOSSREPRO_NATIVE_GEMM", "fastest")
    with pytest.raises(ValueError, match="FLOSSREPRO_NATIVE_GEMM='fastest'"):
        native._gemm_env()
    monkeypatch.setenv("FLOSSREPRO_NATIVE_GEMM", "BLAS")
    assert native._gemm_env() == "blas"


@pytest.mark.parametrize("kind", ["avx2", "avx512"])
def test_float32_training_network_microkernels_vs_float64(kind):
    """The training forward/backward (rnn_io kernels) in float32 through the microkernels,
    against the same network in float64 (the oracle), on ragged sizes."""
    if kind not in native.gemm_kinds_supported():
        pytest.skip(f"this CPU has no {kind} GEMM kernels")
    R, n, B, S, O, Ts = 2, 37, 5, 2, 3, 60
    m = VanillaRNN(R, n, S, O, dtype=F64)
    initialize(m, [1, 2], g=0.9)
    x = _randn(Ts, R, B, S, seed=4)
    wy = _randn(Ts, R, B, O, seed=5)
    out = {}
    for dt in (F64, F32):
        mm = copy.deepcopy(m).to(dt)
        with native.gemm(kind) if dt == F32 else contextlib.nullcontext():
            y = mm(x.to(dt))
            assert type(y.grad_fn).__name__ == "_RNNNetworkBackward"
            out[dt] = [y.detach().double()] + [g.double() for g in torch.autograd.grad((y * wy.to(dt)).sum(), list(mm.parameters()))]
    for a, b in zip(out[F32], out[F64]):
        assert ((a - b).norm() / b.norm()).item() < 1e-4


def test_bmm_native_equals_float64_product():
    gen = torch.Generator().manual_seed(8)
    for R, M, N, K, ta, tb in [(2, 80, 80, 4800, "T", "N"), (3, 5, 7, 600, "T", "N"), (1, 16, 80, 80, "N", "N"),
                               (2, 9, 4, 3, "N", "T"), (2, 3, 3, 1, "T", "T")]:
        A = torch.randn((R, M, K) if ta == "N" else (R, K, M), generator=gen)
        B = torch.randn((R, K, N) if tb == "N" else (R, N, K), generator=gen)
        want = (A if ta == "N" else A.transpose(1, 2)).double() @ (B if tb == "N" else B.transpose(1, 2)).double()
        got = native.bmm(A, B, ta, tb)
        assert got.dtype == F32 and got.shape == want.shape
        assert (got.double() - want).abs().max().item() <= 1e-5 * K ** 0.5 * want.abs().max().item()
        # float64 and non-contiguous inputs take torch.bmm: same numbers
        torch.testing.assert_close(native.bmm(A.double(), B.double(), ta, tb), want)
