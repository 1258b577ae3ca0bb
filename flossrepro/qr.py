"""Fast thin QR for the small, tall matrices of the Lyapunov (Benettin) loop: CholeskyQR2.

``qr_fast(A)`` factors ``A: [..., n, k]`` (``k <= n``) as ``A = Q R`` with ``Q^T Q = I`` and
``R`` upper triangular with a **positive diagonal**, by two rounds of Cholesky QR::

    G1 = A^T A  = R1^T R1,   Q1 = A R1^{-1}        (Cholesky QR)
    G2 = Q1^T Q1 = R2^T R2,  Q  = Q1 R2^{-1},  R = R2 R1   (second round restores orthogonality)

Cost (flops): 2 (n k^2 [Gram] + k^3/3 [Cholesky] + n k^2 [triangular solve]) + k^3/3 [R2 R1]
~ 4 n k^2 + k^3, made of level-3 BLAS calls and a k x k Cholesky, versus ~4 n k^2 - 4 k^3 / 3 for
Householder QR with the explicit Q; CholeskyQR2 is faster on CPU because it is 7 large kernel
calls instead of LAPACK's ``geqrf`` + ``orgqr`` with their blocked, partly level-2 inner loops
(and, for batches, a per-matrix loop).

Stability (Yamamoto, Nakatsukasa, Yanagisawa, Fukaya 2015): CholeskyQR2 yields
``||Q^T Q - I|| = O(u)`` and ``||QR - A|| / ||A|| = O(u)`` provided ``kappa_2(A) <~ u^{-1/2}``,
i.e. ``kappa <~ 3e3`` in float32 and ``kappa <~ 7e7`` in float64 (``u`` the unit roundoff).
Beyond that the Gram matrix is numerically singular: Cholesky fails or ``Q`` loses orthogonality.
``qr_fast`` therefore falls back to ``torch.linalg.qr`` (per matrix of the batch) when

- ``torch.linalg.cholesky_ex`` reports a failure (``info != 0``) in either round, or
- the first-round factor is visibly ill-conditioned: ``max_i R1_ii / min_i R1_ii > max_cond``
  (a cheap lower bound on ``kappa(A)``; default ``max_cond`` = ``0.1 u^{-1/2}``: ~290 in
  float32, ~6.7e6 in float64).

With ``gram_dtype=torch.float64`` on float32 input (mixed precision: Gram matrices, Cholesky
and ``R`` in float64, the triangular solves in float32) the safe range in float32 grows to
``kappa <~ 1e5`` or so at a small extra cost; see :func:`accuracy_study`.

Sign convention: ``diag(R) > 0`` always (the fallback flips column signs of ``Q`` and row
signs of ``R`` to match); ``torch.linalg.qr`` (LAPACK Householder) makes no such promise, so
the two agree up to ``Q -> Q S``, ``R -> S R`` with ``S = diag(+-1)``. ``log|R_ii|`` -- all the
Lyapunov estimate uses -- is the same under either convention, and so is the QR pullback
(paper Eq 8) since the sign choice is locally constant.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import torch
from torch import Tensor

__all__ = ["qr_fast", "cholesky_qr2", "qr_positive", "default_max_cond", "accuracy_study",
           "benchmark_qr"]


def default_max_cond(dtype: torch.dtype) -> float:
    """``0.5 / sqrt(u)`` with ``u = eps / 2`` the unit roundoff: ~2.0e3 (float32), ~3.4e7 (float64)."""
    u = torch.finfo(dtype).eps / 2
    return 0.5 / math.sqrt(u)


def qr_positive(A: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.qr`` (reduced) with the signs fixed so that ``diag(R) >= 0``."""
    Q, R = torch.linalg.qr(A)
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    s = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d))
    return Q * s[..., None, :], R * s[..., :, None]


def cholesky_qr2(A: Tensor, gram_dtype: torch.dtype | None = None):
    """Raw CholeskyQR2 of ``A: [B, n, k]`` without any fallback: ``(Q, R, info, U1)``.

    ``info: [B]`` int, nonzero where either Cholesky failed; ``U1`` the first-round factor
    (its diagonal gives the conditioning check). ``R`` is in ``A.dtype``; with
    ``gram_dtype`` wider than ``A.dtype`` the Gram matrices, Cholesky factors and ``R = U2 U1``
    are formed in ``gram_dtype`` and only the triangular solves run in ``A.dtype``.
    """
    mixed = gram_dtype is not None and gram_dtype != A.dtype
    Ag = A.to(gram_dtype) if mixed else A
    U1, info1 = torch.linalg.cholesky_ex(torch.bmm(Ag.mT, Ag), upper=True)
    Q1 = torch.linalg.solve_triangular(U1.to(A.dtype) if mixed else U1, A, upper=True, left=False)
    Q1g = Q1.to(gram_dtype) if mixed else Q1
    U2, info2 = torch.linalg.cholesky_ex(torch.bmm(Q1g.mT, Q1g), upper=True)
    Q = torch.linalg.solve_triangular(U2.to(A.dtype) if mixed else U2, Q1, upper=True, left=False)
    R = torch.bmm(U2, U1)
    if mixed:
        R = R.to(A.dtype)
    return Q, R, info1 | info2, U1


def _bad_members(info: Tensor, U1: Tensor, max_cond: float) -> Tensor:
    """``[B]`` bool: Cholesky failed, or ``max_i U1_ii > max_cond * min_i U1_ii``."""
    lo, hi = torch.aminmax(torch.diagonal(U1, dim1=-2, dim2=-1), dim=-1)
    # NaN ratios (NaN input) compare False: NaN input gives NaN output, no fallback
    return (info != 0) | (hi > max_cond * lo)


def _all_good(info: Tensor, U1: Tensor, max_cond: float) -> bool:
    """Cheap batch-wide test (few small ops): no failure and the global diagonal ratio is fine.
    The global ratio bounds every member's ratio, so True implies no member is bad."""
    if bool(info.any()):
        return False
    lo, hi = torch.aminmax(torch.diagonal(U1, dim1=-2, dim2=-1))
    return not (hi.item() > max_cond * lo.item())


def qr_fast(A: Tensor, *, max_cond: float | None = None,
            gram_dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Reduced QR ``A = Q R`` of ``A: [..., n, k]`` (``k <= n``) by CholeskyQR2.

    Returns ``Q: [..., n, k]`` with orthonormal columns and ``R: [..., k, k]`` upper triangular
    with a positive diagonal. Falls back to ``torch.linalg.qr`` (sign-fixed) for every batch
    entry whose Cholesky fails or whose first-round diagonal ratio ``max_i R1_ii / min_i R1_ii``
    exceeds ``max_cond`` (default :func:`default_max_cond` of the Gram dtype; ``float('inf')``
    keeps only the Cholesky-failure test). Not differentiable through autograd: use it where
    the pullback is analytic (the Lyapunov Function's ``qr_pullback`` needs only ``Q, R``).

    Args:
        max_cond: fallback threshold on the first-round diagonal ratio (a lower bound on
            ``kappa_2(A)``).
        gram_dtype: dtype of the Gram matrices and Cholesky factors (default ``A.dtype``);
            ``torch.float64`` for float32 input widens the safe conditioning range.
    """
    if A.dim() < 2:
        raise ValueError(f"qr_fast needs a matrix [..., n, k], got shape {tuple(A.shape)}")
    n, k = A.shape[-2], A.shape[-1]
    if k > n:
        raise ValueError(f"qr_fast needs a tall matrix (k <= n), got n={n}, k={k}")
    if A.numel() == 0:
        return qr_positive(A)
    batch_shape = A.shape[:-2]
    A3 = A.reshape(-1, n, k)
    gd = A.dtype if gram_dtype is None else gram_dtype
    if max_cond is None:
        max_cond = default_max_cond(gd)
    Q, R, info, U1 = cholesky_qr2(A3, gd)
    if _all_good(info, U1, max_cond):
        return Q.reshape(*batch_shape, n, k), R.reshape(*batch_shape, k, k)
    bad = _bad_members(info, U1, max_cond)
    if bool(bad.any()):
        Qb, Rb = qr_positive(A3[bad])
        Q = Q.index_put((bad,), Qb)
        R = R.index_put((bad,), Rb)
    return Q.reshape(*batch_shape, n, k), R.reshape(*batch_shape, k, k)


# ----------------------------------------------------------------------------- studies
def _matrix_with_cond(gen: torch.Generator, n: int, k: int, cond: float, batch: int = 1) -> Tensor:
    """float64 ``[batch, n, k]`` = U diag(s) V^T, singular values log-spaced from 1 to 1/cond."""
    U, _ = torch.linalg.qr(torch.randn(batch, n, k, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(batch, k, k, generator=gen, dtype=torch.float64))
    s = torch.logspace(0, -math.log10(cond), k, dtype=torch.float64)
    return (U * s[None, None, :]) @ V.mT


def _errors(A64: Tensor, Q: Tensor, R: Tensor, R_ref64: Tensor) -> dict:
    """Max over the batch of ``||Q^T Q - I||_2``, ``||QR - A||_2 / ||A||_2`` and
    ``max_i |log|R_ii| - log|Rref_ii||`` (inf where the factors are not finite)."""
    Q64, R64 = Q.double(), R.double()
    if not (torch.isfinite(Q64).all() and torch.isfinite(R64).all()):
        return {"orth": math.inf, "resid": math.inf, "max_dlog_rii": math.inf}
    I = torch.eye(Q.shape[-1], dtype=torch.float64)
    orth = torch.linalg.matrix_norm(Q64.mT @ Q64 - I, ord=2).max().item()
    res = (torch.linalg.matrix_norm(Q64 @ R64 - A64, ord=2)
           / torch.linalg.matrix_norm(A64, ord=2)).max().item()
    logd = torch.log(torch.diagonal(R64, dim1=-2, dim2=-1).abs())
    logd_ref = torch.log(torch.diagonal(R_ref64, dim1=-2, dim2=-1).abs())
    dlog = (logd - logd_ref).abs().max().item()
    return {"orth": orth, "resid": res, "max_dlog_rii": dlog}


@torch.no_grad()
def accuracy_study(conds: Iterable[float] = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6),
                   shapes: Iterable[tuple[int, int]] = ((80, 75), (32, 32), (80, 16)),
                   batch: int = 8, seed: int = 0) -> list[dict]:
    """Orthogonality, residual and ``log|R_ii|`` error of the QR variants vs a float64 reference.

    Variants: ``torch.linalg.qr``, raw CholeskyQR2 (no fallback), ``qr_fast`` (with fallback;
    ``fallback`` is the fraction of the batch that fell back), and for float32 the mixed
    precision ``qr_fast(gram_dtype=float64)``. Errors are maxima over the batch.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for n, k in shapes:
        for cond in conds:
            A64 = _matrix_with_cond(gen, n, k, cond, batch)
            _, Rref = torch.linalg.qr(A64)
            for dtype in (torch.float32, torch.float64):
                A = A64.to(dtype)
                variants = {"torch.linalg.qr": lambda: torch.linalg.qr(A)}
                variants["cholqr2_raw"] = lambda: cholesky_qr2(A)[:2]
                variants["qr_fast"] = lambda: qr_fast(A)
                if dtype == torch.float32:
                    variants["qr_fast_mixed"] = lambda: qr_fast(A, gram_dtype=torch.float64)
                for name, fn in variants.items():
                    Q, R = fn()
                    row = {"n": n, "k": k, "cond": cond, "dtype": str(dtype).replace("torch.", ""),
                           "method": name}
                    row.update(_errors(A64, Q, R, Rref))
                    if name.startswith("qr_fast"):
                        gd = torch.float64 if name.endswith("mixed") else dtype
                        _, _, info, U1 = cholesky_qr2(A, gd)
                        bad = _bad_members(info, U1, default_max_cond(gd))
                        row["fallback"] = float(bad.double().mean())
                    rows.append(row)
    return rows


def _interleaved_times(fns: dict, repeats: int, target_s: float) -> dict:
    """Median seconds per call of each function, timed round-robin (so that load from other
    processes hits all of them alike); each round calls a function ``inner`` times."""
    for f in fns.values():
        f()
    inner = {}
    for name, f in fns.items():
        t0 = time.perf_counter()
        f()
        f()
        inner[name] = max(1, int(target_s / max((time.perf_counter() - t0) / 2, 1e-7)))
    ts = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                f()
            ts[name].append((time.perf_counter() - t0) / inner[name])
    return {name: sorted(v)[len(v) // 2] for name, v in ts.items()}


@torch.no_grad()
def benchmark_qr(shapes: Iterable[tuple[int, int]] = ((80, 75), (32, 32), (80, 16)),
                 batches: Iterable[int] = (1, 20), dtypes=(torch.float32, torch.float64),
                 repeats: int = 7, target_s: float = 0.01, seed: int = 0) -> list[dict]:
    """Median microseconds per call of ``torch.linalg.qr`` vs ``qr_fast`` (and, for float32,
    the mixed-precision ``qr_fast(gram_dtype=float64)``) on the current thread setting.
    Input is well conditioned (``kappa = 10``), so no fallback happens."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for n, k in shapes:
        for R in batches:
            A64 = _matrix_with_cond(gen, n, k, 10.0, R)
            for dtype in dtypes:
                A = A64.to(dtype)
                fns = {"torch.linalg.qr": lambda: torch.linalg.qr(A), "qr_fast": lambda: qr_fast(A)}
                if dtype == torch.float32:
                    fns["qr_fast_mixed"] = lambda: qr_fast(A, gram_dtype=torch.float64)
                res = _interleaved_times(fns, repeats, target_s)
                row = {"n": n, "k": k, "batch": R, "dtype": str(dtype).replace("torch.", "")}
                for name, t in res.items():
                    row[f"{name}_us"] = t * 1e6
                row["speedup"] = res["torch.linalg.qr"] / res["qr_fast"]
                if "qr_fast_mixed" in res:
                    row["speedup_mixed"] = res["torch.linalg.qr"] / res["qr_fast_mixed"]
                rows.append(row)
    return rows
