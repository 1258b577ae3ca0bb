"""The tangent loop's shared pieces: argument checks, the QR schedule, the exponents from the
diagonals of R, the QR pullback (paper Eq 8), and the spectrum of explicit Jacobians.

Every path that evolves an orthonormal system ``Q: [R, n, k]`` along a trajectory (the
whole-sequence Functions of :mod:`flossrepro.engine.rnn_tangent` -- vanilla and rate networks --
and :mod:`~flossrepro.engine.gated`, the reference path of :mod:`~flossrepro.engine.lyapunov`, the
generic path for any PyTorch cell) uses these; nothing here knows a model. The Python QR pullback
of every analytic backward is the one helper :func:`_qr_pullback_diag_T` (the native C kernels
have their own). The fast-path protocol by which models choose their Function is documented in
:mod:`flossrepro.engine.lyapunov`.
"""
from __future__ import annotations

import functools
import math
import operator

import torch
from torch import Tensor

__all__ = ["default_transients", "random_orthonormal", "lyapunov_spectrum_from_jacobians",
           "condition_number_estimate"]


def default_transients(seq_len: int) -> tuple[int, int]:
    """Reference defaults: 10 steps of state transient, ``ceil(T/10)`` steps of Q transient."""
    return 10, math.ceil(seq_len / 10)


@functools.lru_cache(maxsize=32)


def _orthonormal64(n: int, k: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))[0]


def random_orthonormal(n: int, k: int, n_members: int = 1, seed: int = 0,
                       dtype=torch.float64, device=None) -> Tensor:
    """``[R, n, k]`` orthonormal columns; the same matrix for every member (from ``seed``)."""
    # a fresh tensor (clone): callers may change it in place without touching the cache
    return _orthonormal64(n, k, seed).to(dtype=dtype, device=device).expand(n_members, n, k).clone(memory_format=torch.contiguous_format)


def _check_k(k: int, n: int) -> int:
    try:  # accept any integer type (numpy, 0-dim integer tensors), reject bools and floats
        kk = None if isinstance(k, bool) else operator.index(k)
    except TypeError:
        kk = None
    if kk is None:
        raise ValueError(f"k={k!r} must be an integer number of exponents; allowed: 1 <= k <= {n}")
    if kk < 1 or kk > n:
        raise ValueError(f"k={kk} exponents requested, but the state dimension is {n}; "
                         f"allowed: 1 <= k <= {n}")
    return kk


def _check_lengths(T: int, transient_h: int, transient_q: int, s_ons: int) -> int:
    if s_ons < 1:
        raise ValueError(f"s_ons={s_ons} must be >= 1 (steps between reorthonormalizations)")
    if transient_h < 0 or transient_q < 0:
        raise ValueError(f"transients must be >= 0, got transient_h={transient_h}, transient_q={transient_q}")
    t_sim = T - transient_h - transient_q
    if t_sim < 1:
        raise ValueError(
            f"sequence of {T} steps is too short for the transient of {transient_h} + {transient_q} steps; "
            f"need more than {transient_h + transient_q} steps (lengthen the sequence or shorten the transient)"
        )
    return t_sim


def _qr_schedule(n_q_steps: int, transient_q: int, s_ons: int) -> list[bool]:
    """Which Q steps end with a QR: every ``s_ons`` steps within each phase and at each phase end."""
    flags = []
    for s in range(n_q_steps):
        in_acc = s >= transient_q
        local = s - transient_q if in_acc else s
        phase_len = n_q_steps - transient_q if in_acc else transient_q
        flags.append((local + 1) % s_ons == 0 or local + 1 == phase_len)
    return flags


def _qr_pullback_diag_T(QbarT: Tensor, Q: Tensor, RT: Tensor, negc: Tensor | None, upper: Tensor,
                        out: Tensor) -> Tensor:
    """QR pullback (paper Eq 8) for ``Rbar = diag(c / R_ii)``, in the transposed layout.

    Eq 8: ``Abar = [Qbar + Q copyltu(M)] R^{-T}``, ``M = R Rbar^T - Qbar^T Q``. With a
    diagonal ``Rbar`` -- the only way the exponents use ``R`` -- ``R Rbar^T`` is upper
    triangular with diagonal ``c``, so ``copyltu(M) = diag(c) - copyltu(Qbar^T Q)``; with
    ``S' = Qbar^T Q - diag(c)`` and the symmetric ``C' = copyltu(S') = where(upper, S'^T, S')``:
    ``Abar = (Qbar - Q C') R^{-T}``, i.e. ``Abar^T = R^{-1} (Qbar^T - C' Q^T)``. Three ops
    and an in-place triangular solve.

    ``QbarT = Qbar^T: [R, k, n]``; ``Q: [R, n, k]``; ``RT = R^T: [R, k, k]`` (only its lower
    triangle is read); ``negc = -diag(c): [R, k, k]`` or ``None`` for ``c = 0``; ``upper``:
    ``[k, k]`` bool, upper triangle with diagonal; ``out``: ``[R, k, n]``, receives
    ``Abar^T`` (fastest when ``out`` and ``Q^T`` are row-major, i.e. column-major ``Abar``, ``Q``).
    For ``k = 1`` (``R`` a norm, ``C'`` a number per member) the last two are elementwise.
    """
    St = torch.bmm(QbarT, Q) if negc is None else torch.baddbmm(negc, QbarT, Q)
    if Q.shape[-1] == 1:  # Abar^T = (Qbar^T - C' Q^T) / R
        return torch.addcmul(QbarT, St, Q.transpose(1, 2), value=-1.0, out=out).div_(RT)
    torch.baddbmm(QbarT, torch.where(upper, St.transpose(1, 2), St), Q.transpose(1, 2), alpha=-1.0, out=out)
    ab = out.transpose(1, 2)
    torch.linalg.solve_triangular(RT, ab, upper=False, left=False, out=ab)
    return out


def _exponents(diag: Tensor, flags: list[bool], transient_q: int, t_sim: int) -> Tensor:
    """``sum log|R_ii| / t_sim`` over the QR steps after the Q transient, from the diagonals
    ``diag: [..., Tq, k]`` of every tangent step's ``R`` (the step axis is ``-2``)."""
    acc = [s for s in range(transient_q, len(flags)) if flags[s]]
    d = diag[..., transient_q:, :] if len(acc) == len(flags) - transient_q else diag[..., acc, :]
    return d.abs().log().sum(-2) / t_sim



def qr_step(A: Tensor) -> tuple[Tensor, Tensor]:
    """``Q, R`` of ``A: [R, n, k]``; for ``k = 1`` a normalisation (the same factorization up to signs)."""
    if A.shape[-1] == 1:
        nrm = torch.linalg.vector_norm(A, dim=1, keepdim=True)  # [R, 1, 1]
        return A / nrm, nrm
    return torch.linalg.qr(A)


def jacobian_tangent_forward(D: Tensor, Q0: Tensor, flags: list[bool], transient_q: int, t_sim: int):
    """The tangent loop over explicit Jacobians ``D: [Tq, R, n, n]`` from ``Q0: [R, n, k]``:
    ``(lambda [R, k], tape)``; the tape holds each step's ``Q`` in, ``Q`` out and ``R`` for
    :func:`jacobian_tangent_backward`. Used by the gated networks' and the generic path's Functions."""
    Q = Q0
    Qin, Qout, Rs = [], [], []
    diag = torch.ones(Q0.shape[0], len(flags), Q0.shape[2], dtype=Q0.dtype, device=Q0.device)
    for s, is_qr in enumerate(flags):
        Qin.append(Q)
        A = torch.bmm(D[s], Q)
        if is_qr:
            Q, Rm = qr_step(A)
            diag[:, s] = Rm.diagonal(dim1=1, dim2=2)
        else:
            Q, Rm = A, None
        Qout.append(Q)
        Rs.append(Rm)
    return _exponents(diag, flags, transient_q, t_sim), (Qin, Qout, Rs)


def jacobian_tangent_backward(D: Tensor, tape, dlam: Tensor, flags: list[bool], transient_q: int,
                              t_sim: int) -> tuple[Tensor, Tensor]:
    """The reverse tangent loop: ``(Dbar [Tq, R, n, n], Q0bar [R, n, k])`` for ``dlam = dL/dlambda``,
    with ``Dbar[s] = Abar[s] Q_in[s]^T`` and the QR pullback :func:`_qr_pullback_diag_T` (paper Eq 8)."""
    Qin, Qout, Rs = tape
    negc = torch.diag_embed(dlam / -t_sim)  # -diag(c), c = d loss / d log|R_ii|
    k = Qout[-1].shape[-1]
    upper = torch.ones(k, k, dtype=torch.bool, device=dlam.device).triu()
    Qbar = torch.zeros_like(Qout[-1])
    Dbar = torch.empty_like(D)
    AbarT = torch.empty(Qbar.shape[0], k, Qbar.shape[1], dtype=Qbar.dtype, device=Qbar.device)  # scratch
    for s in range(len(flags) - 1, -1, -1):
        if flags[s]:
            Abar = _qr_pullback_diag_T(Qbar.transpose(1, 2), Qout[s], Rs[s].transpose(1, 2),
                                       negc if s >= transient_q else None, upper, AbarT).transpose(1, 2)
        else:
            Abar = Qbar
        torch.bmm(Abar, Qin[s].transpose(1, 2), out=Dbar[s])
        Qbar = torch.bmm(D[s].transpose(1, 2), Abar)
    return Dbar, Qbar

def lyapunov_spectrum_from_jacobians(jacobians: Tensor, k: int, *, s_ons: int = 1,
                                     transient: int = 0, q0: Tensor | None = None) -> Tensor:
    """Lyapunov exponents of a product of explicit Jacobians ``D[T-1] ... D[0]``.

    Args:
        jacobians: ``[T, n, n]`` or ``[T, R, n, n]``.
        k: number of exponents, ``1 <= k <= n``.
        s_ons: steps between QR reorthonormalizations.
        transient: initial steps that evolve Q without accumulating.
    Returns:
        ``[k]`` or ``[R, k]`` exponents per step, in the order the QR method gives.
        Differentiable (per-step autograd through ``torch.linalg.qr``).
    """
    if jacobians.dim() not in (3, 4) or jacobians.shape[-1] != jacobians.shape[-2]:
        raise ValueError(f"jacobians must be [T, n, n] or [T, R, n, n], got {tuple(jacobians.shape)}")
    squeeze = jacobians.dim() == 3
    J = jacobians[:, None] if squeeze else jacobians
    T, R, n, _ = J.shape
    k = _check_k(k, n)
    t_sim = _check_lengths(T, 0, transient, s_ons)
    Q = random_orthonormal(n, k, R, dtype=J.dtype, device=J.device) if q0 is None else q0
    flags = _qr_schedule(T, transient, s_ons)
    logsum = 0.0
    for s, D in enumerate(J.unbind(0)):
        Q = D @ Q
        if flags[s]:
            Q, Rm = torch.linalg.qr(Q)
            if s >= transient:
                logsum = logsum + torch.log(torch.abs(torch.diagonal(Rm, dim1=-2, dim2=-1)))
    lam = logsum / t_sim
    return lam[0] if squeeze else lam


def condition_number_estimate(lyapunov: Tensor, t: float | Tensor, m: int | None = None) -> Tensor:
    """Paper Eq 10: ``kappa_2(T_t) ~ exp((lambda_1 - lambda_m) t)`` for an ``m``-dim tangent space.

    ``lyapunov: [..., k]`` sorted exponents; ``m`` defaults to ``k``; ``t`` the horizon in steps.
    """
    kk = lyapunov.shape[-1]
    m = kk if m is None else m
    if not 1 <= m <= kk:
        raise ValueError(f"m={m} must be between 1 and the number of exponents given ({kk})")
    return torch.exp((lyapunov[..., 0] - lyapunov[..., m - 1]) * t)
