"""Lyapunov spectra by the QR (Benettin) method, differentiable end to end.

Paper Algorithm 2. An orthonormal system ``Q: [R, n, k]`` is evolved along the
trajectory, ``Q <- D[t] Q``; every ``s_ons`` steps ``Q, Rm = qr(Q)`` and ``log|Rm_ii|`` is
accumulated; ``lambda_i = sum / t_sim`` (per time step). Transients are discarded: the
first ``transient_h`` steps evolve only the state, the next ``transient_q`` steps evolve
``Q`` without accumulating, the remaining ``t_sim`` steps accumulate.

Fast-path protocol. :func:`lyapunov_spectrum` and :func:`lyapunov_loss` do not know model
classes; a model opts in to a whole-sequence ``autograd.Function`` by one method::

    model.lyapunov_fast(inputs, q0, h0, s_ons, transient_h, transient_q, loss_fn=None)

with ``inputs: [T, R, S]``, ``q0: [R, n, k]``, ``h0: [R, n]`` and the lengths already checked
(:func:`_prepare`); it returns ``lambda: [R, k]`` differentiable in the model's parameters, ``h0``
and ``q0``, or, given ``loss_fn`` (``[R, k] -> [R]`` member by member), ``(loss_fn(lambda) [R],
lambda.detach())`` with the loss differentiable (a model may compute it member by member). Such a
model also has what the checks and the per-step reference path (``fast=False``) read:
``n_members``, ``n_in``, ``state_dim``, ``initial_state(B) -> [R, B, n]``, parameters,
``step(h [R, 1, n], x [R, 1, S]) -> [R, 1, n]`` and ``jacobian_apply(h [R, n], Q [R, n, k],
x [R, S]) -> D Q``. Implementations:

- :class:`~flossrepro.engine.models.VanillaRNN` and :class:`~flossrepro.engine.rate.RateRNN`: one
  Function for both (:mod:`flossrepro.engine.rnn_tangent`; the rate network is the leaky RNN
  ``h <- (1 - dt) h + dt W phi(h) + drive``, the vanilla one has leak 0): the state trajectory,
  then the tangent loop with an analytic backward (BPTT of the state plus the QR pullback of
  paper Eq 8, :func:`~flossrepro.engine.tangent._qr_pullback_diag_T`), in the native C kernels
  on CPU;
- :class:`~flossrepro.engine.models.LSTM` and :class:`~flossrepro.engine.models.GRU`: the gated
  Function of :mod:`flossrepro.engine.gated` (analytic batched Jacobians, the same pullback).

Any other model -- a ``torch.nn.LSTM``, a ``torch.nn.GRUCell``, a function ``cell(x_t, h) -> h_next``
-- goes to :func:`flossrepro.engine.generic.generic_spectrum` (per-step autograd through the
cell's Jacobian-vector products).

The reference path (``fast=False``): per-step autograd through ``torch.linalg.qr``; the test oracle.

QR (measured, 1 CPU thread, AMD EPYC, MKL, torch 2.13): ``torch.linalg.qr`` (LAPACK
geqrf + orgqr, level-2 bound at this size) takes ~100 us for ``80 x 75`` float32 unloaded,
a third of a flossing epoch at ``N=80, k=75``. CholeskyQR2 from torch ops (Gram, Cholesky,
triangular solve, twice) was slower here (0.5-0.8x at 80x75, ~0.2x at 80x16 and 32x32: a
dozen op dispatches and MKL's small potrf/trsm), and in float32 it is safe only up to a
per-step condition number ~1e4 (the loop's ``D[t] Q`` reaches ~700 at g=1 and ~8e3 at g=2),
so it is not used. A compiled Householder kernel took ~24 us per QR; it would need a
build step and is not part of the package.
"""
from __future__ import annotations

import torch
from torch import Tensor

from flossrepro.engine.rnn_tangent import _RNNLyapunov, _RNNLyapunovLoss  # noqa: F401
from flossrepro.engine.tangent import (_check_k, _check_lengths, _qr_pullback_diag_T, _qr_schedule,  # noqa: F401
                                      condition_number_estimate, default_transients, lyapunov_spectrum_from_jacobians,
                                      random_orthonormal)

__all__ = [
    "lyapunov_spectrum",
    "lyapunov_loss",
    "lyapunov_spectrum_from_jacobians",
    "condition_number_estimate",
    "default_transients",
    "random_orthonormal",
]


def _has_protocol(model) -> bool:
    """Whether ``model`` implements the fast-path protocol (see the module docstring)."""
    return callable(getattr(model, "lyapunov_fast", None))


def _generic(model, inputs, k, s_ons, transient_h, transient_q, h0, q0) -> Tensor:
    """A model without the protocol: :func:`flossrepro.engine.generic.generic_spectrum`."""
    from flossrepro.engine.generic import generic_spectrum

    return generic_spectrum(model, inputs, k, s_ons=s_ons, transient_h=transient_h, transient_q=transient_q,
                            h0=h0, q0=q0)


def _reference_spectrum(model, inputs: Tensor, k: int, Q0: Tensor, s_ons: int,
                        transient_h: int, transient_q: int, h0: Tensor) -> Tensor:
    """Per-step autograd path; ``inputs: [T, R, S]``, ``h0: [R, n]`` -> ``[R, k]``."""
    T = inputs.shape[0]
    t_sim = T - transient_h - transient_q
    flags = _qr_schedule(T - transient_h, transient_q, s_ons)
    h = h0[:, None, :]
    Q = Q0
    logsum = 0.0
    for t in range(T):
        s = t - transient_h
        if s >= 0:
            Q = model.jacobian_apply(h[:, 0], Q, inputs[t])  # the gated Jacobians read the input
            if flags[s]:
                Q, Rm = torch.linalg.qr(Q)
                if s >= transient_q:
                    logsum = logsum + torch.log(torch.abs(torch.diagonal(Rm, dim1=-2, dim2=-1)))
        if t < T - 1:
            h = model.step(h, inputs[t][:, None, :])
    return logsum / t_sim


def _prepare(model, inputs: Tensor, k: int, s_ons: int, transient_h, transient_q, h0, q0):
    """Check and complete the arguments of :func:`lyapunov_spectrum` (defaults documented there)."""
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
    return inputs, k, transient_h, transient_q, h0, q0


def lyapunov_loss(model, inputs: Tensor, k: int, loss_fn, *, s_ons: int = 1,
                  transient_h: int | None = None, transient_q: int | None = None,
                  h0: Tensor | None = None, q0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(loss_fn(lambda) [R], lambda [R, k])`` for the exponents of :func:`lyapunov_spectrum`
    (same arguments), with the loss differentiable.

    ``loss_fn`` maps ``[R, k] -> [R]`` member by member (row ``r`` of the result depends on
    row ``r`` of its argument only), e.g. :func:`flossrepro.engine.flossing.flossing_loss`. The
    model's ``lyapunov_fast`` computes it (for vanilla RNNs and rate networks on the native CPU
    path each member's gradient right after its forward: one member's buffers instead of all
    members', :class:`~flossrepro.engine.rnn_tangent._RNNLyapunovLoss`); a model without the
    protocol gives ``loss_fn(lambda)`` of the generic spectrum. The returned ``lambda`` is detached.
    """
    if not _has_protocol(model):
        lam = _generic(model, inputs, k, s_ons, transient_h, transient_q, h0, q0)
        return loss_fn(lam), lam.detach()
    inputs, k, transient_h, transient_q, h0, q0 = _prepare(model, inputs, k, s_ons, transient_h,
                                                           transient_q, h0, q0)
    return model.lyapunov_fast(inputs, q0, h0, s_ons, transient_h, transient_q, loss_fn=loss_fn)


def lyapunov_spectrum(model, inputs: Tensor, k: int, *, s_ons: int = 1,
                      transient_h: int | None = None, transient_q: int | None = None,
                      h0: Tensor | None = None, q0: Tensor | None = None,
                      fast: bool | None = None) -> Tensor:
    """First ``k`` Lyapunov exponents (per time step) of a model driven by ``inputs``.

    Args:
        model: a model with the fast-path protocol (module docstring: :class:`VanillaRNN`,
            :class:`~flossrepro.engine.rate.RateRNN`, :class:`LSTM`, :class:`GRU`, any member
            count ``R``), or any other PyTorch cell or function ``cell(x_t, h) -> h_next``
            (:func:`flossrepro.engine.generic.generic_spectrum`, which documents its arguments).
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
        fast: force (True) or forbid (False) the model's whole-sequence Function
            (``model.lyapunov_fast``); default: fast. ``False`` runs the per-step autograd
            reference. Models without the protocol have one path (``fast=True`` is an error).
    Returns:
        ``[R, k]`` exponents sorted as the QR method orders them (descending up to
        estimation noise); differentiable with respect to the model's parameters.
    """
    if not _has_protocol(model):
        if fast:
            raise ValueError("fast=True is only available for models with the fast-path protocol (VanillaRNN, "
                             "RateRNN, LSTM, GRU); use fast=None or False")
        return _generic(model, inputs, k, s_ons, transient_h, transient_q, h0, q0)
    inputs, k, transient_h, transient_q, h0, q0 = _prepare(model, inputs, k, s_ons, transient_h,
                                                           transient_q, h0, q0)
    if fast is None or fast:
        return model.lyapunov_fast(inputs, q0, h0, s_ons, transient_h, transient_q)
    return _reference_spectrum(model, inputs, k, q0, s_ons, transient_h, transient_q, h0)
