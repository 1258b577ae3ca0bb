"""CholeskyQR2 (flossrepro.qr.qr_fast) against torch.linalg.qr."""
import math

import pytest
import torch

from flossrepro.lyapunov import qr_pullback
from flossrepro.qr import _matrix_with_cond, cholesky_qr2, default_max_cond, qr_fast, qr_positive


def _rand(shape, cond=None, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if cond is None:
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    *batch, n, k = shape
    B = math.prod(batch) if batch else 1
    return _matrix_with_cond(gen, n, k, cond, B).reshape(*shape).to(dtype)


def _match_signs(Q, R, Qref, Rref):
    """Bring (Q, R) to the column-sign convention of (Qref, Rref)."""
    s = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)) * torch.sign(torch.diagonal(Rref, dim1=-2, dim2=-1))
    return Q * s[..., None, :], R * s[..., :, None]


@pytest.mark.parametrize("shape", [(80, 75), (32, 32), (80, 16), (4, 80, 75), (3, 4, 10, 6), (5, 1)])
@pytest.mark.parametrize("cond", [None, 1e4])
def test_matches_torch_qr_float64(shape, cond):
    A = _rand(shape, cond)
    Q, R = qr_fast(A)
    Qr, Rr = torch.linalg.qr(A)
    assert Q.shape == Qr.shape and R.shape == Rr.shape and Q.dtype == torch.float64
    assert (torch.diagonal(R, dim1=-2, dim2=-1) > 0).all()
    assert torch.equal(R, torch.triu(R))
    Qs, Rs = _match_signs(Q, R, Qr, Rr)
    scale = torch.linalg.matrix_norm(A).max()  # Frobenius >= 2-norm
    tol = 1e-12 * (1 if cond is None else cond)
    assert torch.allclose(Qs, Qr, atol=tol, rtol=0)
    assert torch.allclose(Rs, Rr, atol=tol * scale, rtol=0)
    # log|R_ii|: what the Lyapunov estimate uses; convention-free
    ld = torch.log(torch.diagonal(R, dim1=-2, dim2=-1).abs())
    ldr = torch.log(torch.diagonal(Rr, dim1=-2, dim2=-1).abs())
    assert torch.allclose(ld, ldr, atol=tol, rtol=0)


@pytest.mark.parametrize("shape", [(80, 75), (32, 32), (80, 16), (4, 80, 75)])
@pytest.mark.parametrize("cond", [1.0, 1e2, 1e3])
def test_orthogonality_float32(shape, cond):
    A = _rand(shape, cond, dtype=torch.float32, seed=1)
    Q, R = qr_fast(A)
    assert Q.dtype == torch.float32 and R.dtype == torch.float32
    k = shape[-1]
    I = torch.eye(k)
    orth = torch.linalg.matrix_norm(Q.mT @ Q - I, ord=2).max()
    assert orth < 50 * torch.finfo(torch.float32).eps * math.sqrt(k)
    res = torch.linalg.matrix_norm(Q @ R - A, ord=2) / torch.linalg.matrix_norm(A, ord=2)
    assert res.max() < 50 * torch.finfo(torch.float32).eps * math.sqrt(k)
    # same log|R_ii| as Householder up to float32 noise (relative error ~ u * kappa)
    _, Rr = torch.linalg.qr(A.double())
    dl = (torch.log(torch.diagonal(R, dim1=-2, dim2=-1).double().abs())
          - torch.log(torch.diagonal(Rr, dim1=-2, dim2=-1).abs())).abs().max()
    assert dl < 20 * torch.finfo(torch.float32).eps * max(cond, 1.0) * k


@pytest.mark.parametrize("dtype,gram", [(torch.float32, None), (torch.float32, torch.float64), (torch.float64, None)])
def test_ill_conditioned_falls_back(dtype, gram):
    """Beyond the safe range the result still is a valid QR (fallback or mixed precision)."""
    A = _rand((4, 80, 75), 1e6 if dtype == torch.float32 else 1e12, dtype=dtype, seed=2)
    Q, R = qr_fast(A, gram_dtype=gram)
    k = A.shape[-1]
    eps = torch.finfo(dtype).eps
    orth = torch.linalg.matrix_norm(Q.double().mT @ Q.double() - torch.eye(k, dtype=torch.float64), ord=2)
    assert orth.max() < 100 * eps * k
    assert (torch.diagonal(R, dim1=-2, dim2=-1) > 0).all()
    res = torch.linalg.matrix_norm(Q @ R - A, ord=2) / torch.linalg.matrix_norm(A, ord=2)
    assert res.max() < 100 * eps * k


def test_raw_cholqr2_breaks_where_guard_needed():
    """Documents why the guard exists: raw float32 CholeskyQR2 fails at kappa = 1e5."""
    A = _rand((4, 80, 75), 1e5, dtype=torch.float32, seed=3)
    Q, R, info, U1 = cholesky_qr2(A)
    d = torch.diagonal(U1, dim1=-2, dim2=-1)
    flagged = (info != 0) | (d.amax(-1) > default_max_cond(torch.float32) * d.amin(-1))
    assert flagged.all()


def test_mixed_batch_fallback_only_bad_members():
    good = _rand((3, 80, 16), 10.0, dtype=torch.float32, seed=4)
    bad = _rand((2, 80, 16), 1e6, dtype=torch.float32, seed=5)
    A = torch.cat([good, bad])
    Q, R = qr_fast(A)
    Qg, Rg = qr_fast(good)
    assert torch.equal(Q[:3], Qg) and torch.equal(R[:3], Rg)
    Qb, Rb = qr_positive(bad)
    assert torch.equal(Q[3:], Qb) and torch.equal(R[3:], Rb)


def test_same_pullback_as_torch_qr():
    """qr_pullback only needs Q, R: with either factorization it gives the same Abar for a
    loss on log|R_ii| (and on the next step's D Q, up to the sign flip of Qbar)."""
    A = _rand((2, 12, 7), 50.0, seed=6)
    c = _rand((2, 7), seed=7)
    Qbar0 = _rand((2, 12, 7), seed=8)
    outs = []
    for fn in (torch.linalg.qr, qr_fast):
        Q, R = fn(A)
        d = torch.diagonal(R, dim1=-2, dim2=-1)
        s = torch.sign(d)  # Q = Q+ S: a loss L(Q+) has Qbar = Qbar+ S
        outs.append(qr_pullback(Q, R, Qbar0 * s[..., None, :], torch.diag_embed(c / d)))
    assert torch.allclose(outs[0], outs[1], atol=1e-10)
    # and against autograd through the sign-normalised Householder QR
    A_ = A.clone().requires_grad_(True)
    Q, R = torch.linalg.qr(A_)
    s = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).detach()
    Qp = Q * s[..., None, :]
    loss = (c * torch.log(torch.diagonal(R, dim1=-2, dim2=-1).abs())).sum() + (Qbar0 * Qp).sum()
    loss.backward()
    assert torch.allclose(outs[1], A_.grad, atol=1e-10)


def test_input_validation_and_nan():
    with pytest.raises(ValueError):
        qr_fast(torch.randn(3, 5))  # wide
    with pytest.raises(ValueError):
        qr_fast(torch.randn(5))
    A = torch.randn(2, 6, 3)
    A[1, 0, 0] = float("nan")
    Q, R = qr_fast(A)
    assert torch.isfinite(Q[0]).all() and not torch.isfinite(Q[1]).all()
