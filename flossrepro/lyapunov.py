"""Lyapunov spectra by the QR (Benettin) method, differentiable end to end.

Paper Algorithm 2. An orthonormal system ``Q: [R, n, k]`` is evolved along the
trajectory, ``Q <- D[t] Q``; every ``s_ons`` steps ``Q, Rm = qr(Q)`` and ``log|Rm_ii|`` is
accumulated; ``lambda_i = sum / t_sim`` (per time step). Transients are discarded: the
first ``transient_h`` steps evolve only the state, the next ``transient_q`` steps evolve
``Q`` without accumulating, the remaining ``t_sim`` steps accumulate.

Two evaluation paths give the same numbers and gradients:
- the fast path for :class:`~flossrepro.models.VanillaRNN`: one ``autograd.Function``
  over the whole sequence with an analytic backward (BPTT of the state plus the QR
  pullback of paper Eq 8, ``Abar = [Qbar + Q copyltu(M)] R^{-T}``,
  ``M = R Rbar^T - Qbar^T Q``), one Python loop forward and one backward;
- the reference path: per-step autograd through ``torch.linalg.qr`` (any model with
  ``step`` and ``jacobian_apply``, e.g. the LSTM); used for tests and for LSTMs.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch import Tensor

from .models import LSTM, NONLINEARITIES, VanillaRNN

__all__ = [
    "lyapunov_spectrum",
    "lyapunov_spectrum_from_jacobians",
    "condition_number_estimate",
    "default_transients",
    "random_orthonormal",
]


def default_transients(seq_len: int) -> tuple[int, int]:
    """Reference defaults: 10 steps of state transient, ``ceil(T/10)`` steps of Q transient."""
    return 10, math.ceil(seq_len / 10)


def random_orthonormal(n: int, k: int, n_members: int = 1, seed: int = 0,
                       dtype=torch.float64, device=None) -> Tensor:
    """``[R, n, k]`` orthonormal columns; the same matrix for every member (from ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    return Q.to(dtype=dtype, device=device).expand(n_members, n, k).contiguous()


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


def _copyltu(M: Tensor) -> Tensor:
    return torch.tril(M) + torch.tril(M, -1).transpose(-1, -2)


def qr_pullback(Q: Tensor, Rm: Tensor, Qbar: Tensor, Rbar: Tensor) -> Tensor:
    """Paper Eq 8: ``Abar = [Qbar + Q copyltu(M)] R^{-T}``, ``M = R Rbar^T - Qbar^T Q``.

    ``Q: [..., n, k]``, ``Rm, Rbar: [..., k, k]``, ``Qbar: [..., n, k]`` -> ``[..., n, k]``.
    """
    M = Rm @ Rbar.transpose(-1, -2) - Qbar.transpose(-1, -2) @ Q
    X = Qbar + Q @ _copyltu(M)
    return torch.linalg.solve_triangular(Rm.transpose(-1, -2), X, upper=False, left=False)


class _RNNLyapunov(torch.autograd.Function):
    """Whole-sequence Lyapunov spectrum of a vanilla RNN with an analytic backward.

    Inputs: ``h0: [R, N]``, ``W: [R, N, N]``, ``drive: [T, R, N]``, ``Q0: [R, N, k]``.
    Output: ``lambda: [R, k]``.
    """

    @staticmethod
    def forward(ctx, h0, W, drive, Q0, nonlinearity, s_ons, transient_h, transient_q):
        phi, dphi, _ = NONLINEARITIES[nonlinearity]
        T = drive.shape[0]
        t_sim = T - transient_h - transient_q
        Wt = W.transpose(1, 2).contiguous()
        # state trajectory H[t], t = 0..T-1 (H[0] = h0, H[t+1] = W phi(H[t]) + drive[t]);
        # Q steps use D[t] = W diag(phi'(H[t])), so drive[T-1] is not needed
        h, Hs = h0, [h0]
        for d in drive.unbind(0)[:-1]:
            h = torch.baddbmm(d[:, None], phi(h)[:, None], Wt)[:, 0]
            Hs.append(h)
        H = torch.stack(Hs)  # [T, R, N]
        flags = _qr_schedule(T - transient_h, transient_q, s_ons)
        Q = Q0
        Qins, Qs, Rs = [], [], []
        logsum = torch.zeros(Q0.shape[0], Q0.shape[2], dtype=Q0.dtype, device=Q0.device)
        for s, is_qr in enumerate(flags):
            t = transient_h + s
            Qins.append(Q)
            A = torch.bmm(W, dphi(H[t])[..., None] * Q)
            if is_qr:
                Q, Rm = torch.linalg.qr(A)
                Qs.append(Q)
                Rs.append(Rm)
                if s >= transient_q:
                    logsum = logsum + torch.log(torch.abs(torch.diagonal(Rm, dim1=-2, dim2=-1)))
            else:
                Q = A
                Qs.append(None)
                Rs.append(None)
        ctx.save_for_backward(h0, W, H, *Qins)
        ctx.Qs, ctx.Rs, ctx.flags = Qs, Rs, flags
        ctx.conf = (nonlinearity, transient_h, transient_q, t_sim)
        return logsum / t_sim

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dlam):
        h0, W, H, *Qins = ctx.saved_tensors
        nonlinearity, transient_h, transient_q, t_sim = ctx.conf
        phi, dphi, ddphi = NONLINEARITIES[nonlinearity]
        T, Rn, N = H.shape
        c = dlam / t_sim  # [R, k]: d loss / d log|R_ii| in the accumulation window
        Wt = W.transpose(1, 2).contiguous()
        dW = torch.zeros_like(W)
        ddrive = torch.zeros(T, Rn, N, dtype=H.dtype, device=H.device)
        Qbar = torch.zeros_like(Qins[0])
        gh = torch.zeros_like(h0)  # d loss / d H[t+1], total
        for t in range(T - 1, -1, -1):
            # the state step H[t] -> H[t+1] (H[T] is never used, so nothing flows at t = T-1)
            if t < T - 1:
                ddrive[t] = gh
                p = phi(H[t])
                dW += gh[:, :, None] * p[:, None, :]
                gh = torch.bmm(gh[:, None], W)[:, 0] * dphi(H[t])
            else:
                gh = torch.zeros_like(h0)
            s = t - transient_h
            if s >= 0:
                Qin = Qins[s]
                if ctx.flags[s]:
                    Q, Rm = ctx.Qs[s], ctx.Rs[s]
                    diag = torch.diagonal(Rm, dim1=-2, dim2=-1)
                    if s >= transient_q:
                        Rbar = torch.diag_embed(c / diag)
                    else:
                        Rbar = torch.zeros_like(Rm)
                    Abar = qr_pullback(Q, Rm, Qbar, Rbar)
                else:
                    Abar = Qbar
                dp = dphi(H[t])  # [R, N]
                Y = dp[..., None] * Qin
                dW += torch.bmm(Abar, Y.transpose(1, 2))
                Ybar = torch.bmm(Wt, Abar)
                Qbar = dp[..., None] * Ybar
                gh = gh + (Ybar * Qin).sum(-1) * ddphi(H[t])
        # gh is now d loss / d H[0] = d loss / d h0; drive[T-1] is unused
        return gh, dW, ddrive, Qbar, None, None, None, None


def _reference_spectrum(model, inputs: Tensor, k: int, Q0: Tensor, s_ons: int,
                        transient_h: int, transient_q: int, h0: Tensor) -> Tensor:
    """Per-step autograd path; ``inputs: [T, R, S]``, ``h0: [R, n]`` -> ``[R, k]``."""
    T = inputs.shape[0]
    t_sim = T - transient_h - transient_q
    flags = _qr_schedule(T - transient_h, transient_q, s_ons)
    h = h0[:, None, :]
    Q = Q0
    logsum = 0.0
    lstm = isinstance(model, LSTM)
    for t in range(T):
        s = t - transient_h
        if s >= 0:
            Q = model.jacobian_apply(h[:, 0], Q, inputs[t]) if lstm else model.jacobian_apply(h[:, 0], Q)
            if flags[s]:
                Q, Rm = torch.linalg.qr(Q)
                if s >= transient_q:
                    logsum = logsum + torch.log(torch.abs(torch.diagonal(Rm, dim1=-2, dim2=-1)))
        if t < T - 1:
            h = model.step(h, inputs[t][:, None, :])
    return logsum / t_sim


def lyapunov_spectrum(model, inputs: Tensor, k: int, *, s_ons: int = 1,
                      transient_h: int | None = None, transient_q: int | None = None,
                      h0: Tensor | None = None, q0: Tensor | None = None,
                      fast: bool | None = None) -> Tensor:
    """First ``k`` Lyapunov exponents (per time step) of a model driven by ``inputs``.

    Args:
        model: :class:`VanillaRNN` or :class:`LSTM` (any member count ``R``).
        inputs: ``[T, R, S]`` (or ``[T, R, 1, S]``) input sequence, one per member.
            The trajectory is ``H[0] = h0``, ``H[t+1] = step(H[t], inputs[t])`` and the
            Q steps use ``D[t] = dH[t+1]/dH[t]`` for ``t >= transient_h``; the last input
            enters only through the LSTM's Jacobian.
        k: number of exponents, ``1 <= k <= state_dim``.
        s_ons: steps between QR reorthonormalizations.
        transient_h, transient_q: discarded steps of the state, then of Q (defaults: the
            reference's 10 and ``ceil(T/10)``).
        h0: ``[R, n]`` initial state (default ``model.initial_state``).
        q0: ``[R, n, k]`` initial orthonormal system (default: a fixed random one).
        fast: force (True) or forbid (False) the whole-sequence Function; default: fast
            for vanilla RNNs, reference (per-step autograd) for LSTMs.
    Returns:
        ``[R, k]`` exponents sorted as the QR method orders them (descending up to
        estimation noise); differentiable with respect to the model's parameters.
    """
    if inputs.dim() == 4:
        if inputs.shape[2] != 1:
            raise ValueError(f"lyapunov_spectrum takes one sequence per member: inputs [T, R, 1, S], got {tuple(inputs.shape)}")
        inputs = inputs[:, :, 0]
    if inputs.dim() != 3 or inputs.shape[1] != model.n_members or inputs.shape[2] != model.n_in:
        raise ValueError(f"inputs must be [T, R={model.n_members}, S={model.n_in}], got {tuple(inputs.shape)}")
    n = model.state_dim
    k = _check_k(k, n)
    T = inputs.shape[0]
    dh, dq = default_transients(T)
    transient_h = dh if transient_h is None else int(transient_h)
    transient_q = dq if transient_q is None else int(transient_q)
    _check_lengths(T, transient_h, transient_q, s_ons)
    W_any = next(model.parameters())
    if h0 is None:
        h0 = model.initial_state(1)[:, 0]
    if q0 is None:
        q0 = random_orthonormal(n, k, model.n_members, dtype=W_any.dtype, device=W_any.device)
    elif q0.shape != (model.n_members, n, k):
        raise ValueError(f"q0 must be [R={model.n_members}, n={n}, k={k}], got {tuple(q0.shape)}")
    is_vanilla = isinstance(model, VanillaRNN)
    if fast is None:
        fast = is_vanilla
    if fast and not is_vanilla:
        raise ValueError("fast=True is only available for VanillaRNN; use fast=None or False")
    if fast:
        drive = model.drive(inputs[:, :, None, :])[:, :, 0]  # [T, R, N]
        return _RNNLyapunov.apply(h0, model.W, drive, q0, model.nonlinearity, s_ons, transient_h, transient_q)
    return _reference_spectrum(model, inputs, k, q0, s_ons, transient_h, transient_q, h0)


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
