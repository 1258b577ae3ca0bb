"""Fast Lyapunov spectra of gated networks (LSTM, GRU) from analytic batched Jacobians.

The per-step autograd path (:func:`flossrepro.engine.lyapunov._reference_spectrum`) records a graph of
about twenty small ops per time step, through the gates, the Jacobian product and
``torch.linalg.qr``. Here one ``autograd.Function`` runs the whole sequence:

forward
    the state loop without a graph (``step_from_drive``, the input part of the gates computed
    for all steps at once), the one-step Jacobians ``D[t] = ds[t+1]/ds[t]`` of all tangent steps
    in one batched call (``model.jacobian``: analytic, ``[R, T, n, n]``), then the tangent loop
    ``Q <- D[t] Q`` with a QR every ``s_ons`` steps (for ``k = 1`` the QR is a normalisation);
backward (adjoint method, exact)
    the tangent loop in reverse with the QR pullback of paper Eq 8 gives ``Dbar[t] = Abar[t]
    Q_in[t]^T``; one vectorized VJP of ``model.jacobian`` over all steps turns ``Dbar`` into the
    direct gradients of the states and parameters; the state adjoint ``a[t] = gS[t] + D[t]^T
    a[t+1]`` (one bmm per step) collects what flows through the trajectory; one vectorized VJP
    of the step function over all steps gives the parameters' share of it.

Any model with ``input_drive``, ``step_from_drive`` and an analytic batched ``jacobian(s, x)``
(``[R, B, n] x [R, B, S] -> [R, B, n, n]``) can use it. The dense ``n x n`` Jacobians cost
``n^2`` memory per step (``[R, T, n, n]``: 4 MB per member for an LSTM with N = 32, T = 300 in
float32); tests check it against the per-step autograd path in float64.
"""
from __future__ import annotations

import torch
from torch import Tensor

from flossrepro.engine.tangent import _qr_schedule, jacobian_tangent_backward, jacobian_tangent_forward

__all__ = ["gated_spectrum", "supports"]


def supports(model) -> bool:
    """Whether ``model`` has what the gated fast path needs."""
    return all(hasattr(model, a) for a in ("input_drive", "step_from_drive", "jacobian", "U"))


def _states(model, h0: Tensor, drive: Tensor) -> Tensor:
    """``S[0] = h0``, ``S[t+1] = step(S[t], x[t])``: ``[R, T, n]`` (no graph). ``drive: [R, T, G]``."""
    R, T, _ = drive.shape
    S = torch.empty(R, T, h0.shape[-1], dtype=h0.dtype, device=h0.device)
    s = h0[:, None, :]
    S[:, 0] = h0
    for t in range(T - 1):
        s = model.step_from_drive(s, drive[:, t:t + 1])
        S[:, t + 1] = s[:, 0]
    return S


class _GatedLyapunov(torch.autograd.Function):
    """``lambda: [R, k]`` of a gated model; inputs ``(model, x [R, T, S], Q0, conf, h0, *params)``."""

    @staticmethod
    def forward(ctx, model, x, Q0, conf, h0, *params):
        flags, transient_h, transient_q, t_sim = conf
        with torch.no_grad():
            S = _states(model, h0, model.input_drive(x))
            th = transient_h
            D = model.jacobian(S[:, th:], x[:, th:]).transpose(0, 1).contiguous()  # [Tq, R, n, n]
            lam, tape = jacobian_tangent_forward(D, Q0, flags, transient_q, t_sim)
        ctx.model, ctx.conf, ctx.n_params = model, conf, len(params)
        ctx.save_for_backward(x, S, D, *params)
        ctx.tangent = tape
        return lam

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dlam):
        model = ctx.model
        flags, th, transient_q, t_sim = ctx.conf
        x, S, D, *params = ctx.saved_tensors
        Dbar, Qbar = jacobian_tangent_backward(D, ctx.tangent, dlam, flags, transient_q, t_sim)
        R, T, n = S.shape
        want = [i for i, p in enumerate(params) if ctx.needs_input_grad[5 + i]]
        with torch.enable_grad():
            Sl = S.detach().requires_grad_(True)
            Dg = model.jacobian(Sl[:, th:], x[:, th:])                       # [R, Tq, n, n]
            gS, *gJ = torch.autograd.grad(Dg, [Sl] + [params[i] for i in want], Dbar.transpose(0, 1),
                                          allow_unused=True)
            # the state adjoint through S[t+1] = step(S[t], x[t]): a[t] = gS[t] + D[t]^T a[t+1]
            Dall = model.jacobian(S[:, :th], x[:, :th]).detach() if th else None
        # time-major [T, R, n, 1] so that each step reads and writes contiguous slices, one op per step
        a = gS.transpose(0, 1).unsqueeze(-1).contiguous()
        for t in range(T - 2, -1, -1):
            Dt = D[t - th] if t >= th else Dall[:, t]
            a[t].baddbmm_(Dt.transpose(1, 2), a[t + 1])
        a = a[..., 0].transpose(0, 1)
        grads = [None] * len(params)
        for i, g in zip(want, gJ):
            grads[i] = g
        if want and T > 1:
            with torch.enable_grad():
                nxt = model.step_from_drive(S[:, :-1], model.input_drive(x[:, :-1]))   # [R, T-1, n]
                gp = torch.autograd.grad(nxt, [params[i] for i in want], a[:, 1:], allow_unused=True)
            for i, g in zip(want, gp):
                if g is not None:
                    grads[i] = g if grads[i] is None else grads[i] + g
        return (None, None, Qbar if ctx.needs_input_grad[2] else None, None, a[:, 0], *grads)


def gated_spectrum(model, inputs: Tensor, Q0: Tensor, h0: Tensor, s_ons: int, transient_h: int,
                   transient_q: int) -> Tensor:
    """``[R, k]`` exponents of a gated model on ``inputs: [T, R, S]`` (arguments as
    :func:`flossrepro.engine.lyapunov.lyapunov_spectrum` has checked them), differentiable in the
    model's parameters, ``h0`` and ``Q0``."""
    T = inputs.shape[0]
    x = inputs.transpose(0, 1)  # [R, T, S]
    params = [p for _, p in model.named_parameters() if _ in ("U", "V", "b")]
    conf = (_qr_schedule(T - transient_h, transient_q, s_ons), transient_h, transient_q, T - transient_h - transient_q)
    return _GatedLyapunov.apply(model, x, Q0, conf, h0, *params)
