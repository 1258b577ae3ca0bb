"""The continuous-time rate network of the low-rank study (Schuessler et al. 2020), ensemble-first.

Their convention, not the flossing paper's (SPEC-lowrank): Euler step ``dt`` (time constant 1),
no noise, no bias, ``h0 = 0``::

    h[t+1] = (1 - dt) h[t] + dt (W phi(h[t]) + W_in u[t]),      z[t] = W_out phi(h[t+1])

with one-step Jacobian ``D[t] = dh[t+1]/dh[t] = (1 - dt) I + dt W diag(phi'(h[t]))``.
``phi`` is ``tanh`` or ``identity`` (the linear study). The parameter names follow
:class:`flossrepro.engine.models.VanillaRNN` so the trainer, flossing and diagnostics treat both
alike: ``W`` (recurrent), ``V`` (= ``W_in``), ``w_r`` (= ``W_out``); ``h0`` is a buffer (zero,
not trained). Shapes: inputs ``[T, R, B, S]``, states ``[T, R, B, N]``, outputs ``[T, R, B, O]``.

Two paths give the same numbers and gradients (tests/test_rate.py):
- ``fast=True``: the state loop is one ``autograd.Function`` with an analytic BPTT backward
  (:class:`_RateSequence`), and the Lyapunov spectrum one Function over the whole sequence with
  an analytic backward through the tangent loop and the QR pullback (paper Eq 8)
  (:class:`_RateLyapunov`);
- ``fast=False``: per-step autograd (the reference for the tests).

On CPU in float32/float64 both loops of the fast path run in the native C kernels
(:mod:`flossrepro.engine.native`: the vanilla network's kernels with their leak term set to
``1 - dt`` and ``dt W`` for ``W``); elsewhere (CUDA, ``FLOSSREPRO_NATIVE=0``) as PyTorch ops.

Initialisation (their code): ``W0 = g N(0, 1/N)`` (``init.scheme`` gaussian/orthogonal as for the
vanilla network); the input and output vectors are N(0, 1) vectors normalised to norm ``sqrt(N)``
(entries O(1)); ``W_in`` takes them as columns, ``W_out = m^T / N`` (norm ``1/sqrt(N)``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from flossrepro.engine import native
from flossrepro.engine.models import NONLINEARITIES, _dphi_from_phi

__all__ = ["RateRNN", "RATE_NONLINEARITIES", "initialize_rate", "rate_sequence", "rate_lyapunov"]

RATE_NONLINEARITIES = ("tanh", "identity")


def _phi(nonlinearity: str):
    return NONLINEARITIES[nonlinearity][0]


# ----------------------------------------------------------------------------- state loop
def _rate_states(h0: Tensor, W: Tensor, drive: Tensor, nonlinearity: str, dt: float) -> tuple[Tensor, Tensor]:
    """``H[t] = a H[t-1] + dt phi(H[t-1]) W^T + drive[t]`` (``a = 1 - dt``, ``H[-1] = h0``).

    ``h0: [R, B, N]``, ``W: [R, N, N]``, ``drive: [T, R, B, N]`` -> ``(H, P)`` with
    ``P[t] = phi(H[t-1])`` (the input of step ``t``), both ``[T, R, B, N]``."""
    a = 1.0 - dt
    if native.available(drive, h0, W):  # csrc/kernels.h run_states with its leak term
        Wt = (dt * W).transpose(1, 2).contiguous()
        Hm, Pm = native.run_states(h0.contiguous(), Wt, drive.transpose(0, 1).contiguous(), nonlinearity, leak=a)
        return Hm.transpose(0, 1), Pm.transpose(0, 1)
    phi = _phi(nonlinearity)
    Wt = (dt * W).transpose(1, 2)
    H = torch.empty_like(drive)
    P = torch.empty_like(drive)
    h = h0
    for t in range(drive.shape[0]):
        p = phi(h)
        P[t] = p
        h = torch.baddbmm(drive[t], p, Wt).add_(h, alpha=a)
        H[t] = h
    return H, P


def _rate_bptt(dH: Tensor, W: Tensor, P: Tensor, nonlinearity: str, dt: float) -> tuple[Tensor, Tensor]:
    """Backward of :func:`_rate_states`: ``G[t]`` = total gradient of ``H[t]`` (= of ``drive[t]``),
    ``G[t-1] = dH[t-1] + a G[t] + phi'(H[t-1]) * (dt G[t] W)``; returns ``(G, dh0)``."""
    a = 1.0 - dt
    Wd = dt * W
    if native.available(dH, W, P):  # csrc/kernels.h bptt with its leak term
        Gm, dh0 = native.bptt(Wd.contiguous(), P.transpose(0, 1).contiguous(), dH.transpose(0, 1).contiguous(),
                              nonlinearity, leak=a)
        return Gm.transpose(0, 1), dh0
    D = _dphi_from_phi(nonlinearity, P)  # D[t] = phi'(H[t-1])
    G = dH.clone()
    T = G.shape[0]
    for t in range(T - 1, 0, -1):
        G[t - 1].add_(G[t], alpha=a).addcmul_(torch.bmm(G[t], Wd), D[t])
    dh0 = torch.bmm(G[0], Wd).mul_(D[0]).add_(G[0], alpha=a)
    return G, dh0


class _RateSequence(torch.autograd.Function):
    """Whole-sequence leaky state loop with an analytic BPTT backward (see :func:`_rate_states`)."""

    @staticmethod
    def forward(ctx, h0, W, drive, nonlinearity: str, dt: float):
        H, P = _rate_states(h0, W, drive, nonlinearity, dt)
        ctx.save_for_backward(W, P)
        ctx.conf = (nonlinearity, dt)
        return H

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dH):
        W, P = ctx.saved_tensors
        nonlinearity, dt = ctx.conf
        G, dh0 = _rate_bptt(dH, W, P, nonlinearity, dt)
        T, R, B, N = G.shape
        Gm = G.transpose(0, 1).reshape(R, T * B, N)
        Pm = P.transpose(0, 1).reshape(R, T * B, N)
        dW = native.bmm(Gm.contiguous(), Pm.contiguous(), ta="T").mul_(dt)
        return dh0, dW, G, None, None


def rate_sequence(h0: Tensor, W: Tensor, drive: Tensor, nonlinearity: str = "tanh", dt: float = 0.5,
                  fast: bool = True) -> Tensor:
    """States ``[T, R, B, N]`` of ``h <- (1-dt) h + dt W phi(h) + drive[t]`` from ``h0: [R, B, N]``
    (``drive = dt W_in u``); ``fast=False`` is the per-step autograd reference."""
    if fast:
        return _RateSequence.apply(h0, W, drive, nonlinearity, float(dt))
    phi = _phi(nonlinearity)
    h, out = h0, []
    for d in drive.unbind(0):
        h = (1.0 - dt) * h + dt * phi(h) @ W.transpose(1, 2) + d
        out.append(h)
    return torch.stack(out)


# ----------------------------------------------------------------------------- the model
class RateRNN(nn.Module):
    """R-member rate network ``h <- (1-dt) h + dt (W phi(h) + V u)``, readout ``z = w_r phi(h)``.

    Parameters (leading member axis R): ``W: [R, N, N]``, ``V: [R, N, S]`` (W_in),
    ``w_r: [R, O, N]`` (W_out). ``h0: [R, N]`` is a zero buffer. No bias.
    Use :func:`flossrepro.engine.init.initialize` (or :func:`initialize_rate`) for their initialisation.
    """

    kind = "rate"

    def __init__(self, n_members: int, n_hidden: int, n_in: int, n_out: int, nonlinearity: str = "tanh",
                 dt: float = 0.5, input_gain: float | None = None, dtype: torch.dtype = torch.float32,
                 device=None):
        super().__init__()
        if nonlinearity not in RATE_NONLINEARITIES:
            raise ValueError(f"nonlinearity={nonlinearity!r} is not available for the rate network; "
                             f"allowed: {list(RATE_NONLINEARITIES)}")
        for name, v in (("n_members", n_members), ("n_hidden", n_hidden), ("n_in", n_in), ("n_out", n_out)):
            if int(v) < 1:
                raise ValueError(f"{name}={v} must be a positive integer")
        if not 0.0 < float(dt) <= 1.0:
            raise ValueError(f"dt={dt} must be in (0, 1] (the Euler step in units of the time constant)")
        if input_gain is not None:
            raise ValueError(f"input_gain={input_gain} is not used by the rate network (its W_in has O(1) "
                             "entries); leave arch.input_gain=null")
        R, N, S, O = n_members, n_hidden, n_in, n_out
        self.nonlinearity, self.dt = nonlinearity, float(dt)
        self.n_members, self.n_hidden, self.n_in, self.n_out = R, N, S, O
        kw = dict(dtype=dtype, device=device)
        self.W = nn.Parameter(torch.zeros(R, N, N, **kw))
        self.V = nn.Parameter(torch.zeros(R, N, S, **kw))
        self.w_r = nn.Parameter(torch.zeros(R, O, N, **kw))
        self.register_buffer("h0", torch.zeros(R, N, **kw))

    @property
    def state_dim(self) -> int:
        return self.n_hidden

    def drive(self, inputs: Tensor) -> Tensor:
        """``inputs: [T, R, B, S]`` -> ``dt V u: [T, R, B, N]``."""
        T, R, B, S = inputs.shape
        x = inputs.transpose(0, 1).reshape(R, T * B, S)
        d = torch.bmm(x, self.V.transpose(1, 2)).mul(self.dt)
        return d.view(R, T, B, -1).transpose(0, 1)

    def initial_state(self, batch_size: int) -> Tensor:
        return self.h0[:, None, :].expand(-1, batch_size, -1)

    def run(self, inputs: Tensor, h0: Tensor | None = None, fast: bool = True) -> Tensor:
        self._check_inputs(inputs)
        if h0 is None:
            h0 = self.initial_state(inputs.shape[2])
        return rate_sequence(h0, self.W, self.drive(inputs), self.nonlinearity, self.dt, fast=fast)

    def readout(self, H: Tensor) -> Tensor:
        """``z = w_r phi(h)``: ``H: [T, R, B, N]`` -> ``[T, R, B, O]``."""
        T, R, B, N = H.shape
        Pm = _phi(self.nonlinearity)(H).transpose(0, 1).reshape(R, T * B, N)
        return torch.bmm(Pm, self.w_r.transpose(1, 2)).view(R, T, B, -1).transpose(0, 1)

    def forward(self, inputs: Tensor, fast: bool = True) -> Tensor:
        return self.readout(self.run(inputs, fast=fast))

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """One step: ``h: [R, B, N]``, ``x: [R, B, S]`` -> ``[R, B, N]``."""
        phi = _phi(self.nonlinearity)
        return (1.0 - self.dt) * h + self.dt * (phi(h) @ self.W.transpose(1, 2) + x @ self.V.transpose(1, 2))

    def jacobian(self, h: Tensor) -> Tensor:
        """``(1 - dt) I + dt W diag(phi'(h))``: ``h: [R, B, N]`` -> ``[R, B, N, N]``."""
        dphi = NONLINEARITIES[self.nonlinearity][1]
        eye = torch.eye(self.n_hidden, dtype=h.dtype, device=h.device)
        return (1.0 - self.dt) * eye + self.dt * self.W[:, None] * dphi(h)[..., None, :]

    def jacobian_apply(self, h: Tensor, Q: Tensor) -> Tensor:
        """``D(h) Q`` for ``h: [R, N]``, ``Q: [R, N, k]`` -> ``[R, N, k]``."""
        dphi = NONLINEARITIES[self.nonlinearity][1]
        return (1.0 - self.dt) * Q + self.dt * torch.bmm(self.W, dphi(h)[..., None] * Q)

    def _check_inputs(self, inputs: Tensor) -> None:
        if inputs.dim() != 4 or inputs.shape[1] != self.n_members or inputs.shape[3] != self.n_in:
            raise ValueError(f"inputs must be [T, R={self.n_members}, B, S={self.n_in}], got {tuple(inputs.shape)}")


def _unit_vectors(gen: torch.Generator, n: int, m: int) -> Tensor:
    """``[n, m]``: N(0, 1) columns normalised to norm ``sqrt(n)`` (float64)."""
    x = torch.randn(n, m, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=0, keepdim=True) * n ** 0.5


@torch.no_grad()
def initialize_rate(model: RateRNN, gens: Sequence[torch.Generator], gains: Sequence[float],
                    scheme: str = "gaussian", gbar: float = 0.0, mean: float = 0.0) -> None:
    """Their initialisation, member ``r`` from ``gens[r]`` only (see the module docstring)."""
    from flossrepro.engine.init import recurrent_matrix

    N, S, O = model.n_hidden, model.n_in, model.n_out
    for r, (gen, g) in enumerate(zip(gens, gains)):
        model.W[r] = recurrent_matrix(gen, N, scheme, float(g), gbar, mean)
        model.V[r] = _unit_vectors(gen, N, S)
        model.w_r[r] = _unit_vectors(gen, N, O).T / N
    model.h0.zero_()


# ----------------------------------------------------------------------------- Lyapunov
def _qr_pullback_diag(Qbar: Tensor, Q: Tensor, Rm: Tensor, c: Tensor | None) -> Tensor:
    """Paper Eq 8 for ``Rbar = diag(c / R_ii)``: ``Abar = [Qbar + Q copyltu(M)] R^{-T}`` with
    ``M = R Rbar^T - Qbar^T Q`` = ``diag(c) - Qbar^T Q`` below the diagonal and on it
    (``R Rbar^T`` is upper triangular with diagonal ``c``). ``Qbar, Q: [R, n, k]``,
    ``Rm: [R, k, k]``, ``c: [R, k]`` or None (no exponent accumulated at this step)."""
    S = torch.bmm(Qbar.transpose(1, 2), Q)
    M = -S if c is None else torch.diag_embed(c) - S
    L = M.tril()
    C = L + L.transpose(1, 2).triu(1)  # copyltu: the lower triangle mirrored into the upper
    B = Qbar + torch.bmm(Q, C)
    return torch.linalg.solve_triangular(Rm.transpose(1, 2), B, upper=False, left=False)


class _RateLyapunov(torch.autograd.Function):
    """Whole-sequence Lyapunov spectrum of the rate network with an analytic backward.

    ``h0: [R, N]``, ``W: [R, N, N]``, ``drive: [T, R, N]`` (``dt V u``), ``Q0: [R, N, k]`` ->
    ``lambda: [R, k]`` (per Euler step). Trajectory ``H[0] = h0``,
    ``H[t+1] = a H[t] + dt W phi(H[t]) + drive[t]``; tangent step ``s`` at ``t = transient_h + s``:
    ``Y = phi'(H[t]) * Q_in``, ``A = a Q_in + dt W Y``, then ``Q, R = qr(A)`` on QR steps.
    Backward per tangent step in reverse: the QR pullback (:func:`_qr_pullback_diag`), then
    ``Ybar = dt W^T Abar``, ``Qbar_in = a Abar + phi' * Ybar``, ``dW += dt Abar Y^T`` and the
    second-order term ``phi''(H[t]) * sum_k Ybar Q_in`` into the state gradient, which the
    state BPTT (:func:`_rate_bptt`) collects.
    """

    @staticmethod
    def forward(ctx, h0, W, drive, Q0, nonlinearity, dt, s_ons, transient_h, transient_q):
        from flossrepro.engine.tangent import _exponents, _qr_schedule

        T = drive.shape[0]
        a = 1.0 - dt
        Hn, Pn = _rate_states(h0[:, None, :], W, drive[:-1, :, None, :], nonlinearity, dt)
        H = torch.cat([h0[None, :, None, :], Hn])[:, :, 0]  # [T, R, N]
        Dq = NONLINEARITIES[nonlinearity][1](H[transient_h:])  # [Tq, R, N]
        flags = _qr_schedule(T - transient_h, transient_q, s_ons)
        t_sim = T - transient_h - transient_q
        Wd = dt * W
        if native.available(W, Q0, drive):  # csrc/kernels.h tangent loop with its leak term
            Dm = Dq.transpose(0, 1).contiguous()
            Q0T = Q0.transpose(1, 2).contiguous()
            QT, RT = native.tangent_fwd(Wd.transpose(1, 2).contiguous(), Dm, Q0T, flags, leak=a)
            ctx.save_for_backward(W, Pn, H, Dm, Q0T, QT, RT)
            ctx.conf = (nonlinearity, dt, transient_h, transient_q, t_sim, flags)
            ctx.native = True
            return _exponents(RT.diagonal(dim1=-2, dim2=-1), flags, transient_q, t_sim)
        ctx.native = False
        Qs, Rs = [Q0], []
        Q = Q0
        for d, is_qr in zip(Dq.unbind(0), flags):
            A = torch.baddbmm(Q, Wd, d[..., None] * Q, beta=a)
            if is_qr:
                Q, Rm = torch.linalg.qr(A)
            else:
                Q, Rm = A, None
            Qs.append(Q)
            Rs.append(Rm)
        diag = torch.stack([torch.diagonal(r, dim1=-2, dim2=-1) if r is not None else
                            torch.ones_like(Q0[:, 0, :]) for r in Rs], 1)  # [R, Tq, k]
        lam = _exponents(diag, flags, transient_q, t_sim)
        ctx.save_for_backward(W, Pn, H, Dq, *Qs, *[r for r in Rs if r is not None])
        ctx.conf = (nonlinearity, dt, transient_h, transient_q, t_sim, flags)
        return lam

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dlam):
        nonlinearity, dt, transient_h, transient_q, t_sim, flags = ctx.conf
        if ctx.native:
            return _RateLyapunov._native_backward(ctx, dlam)
        saved = ctx.saved_tensors
        W, Pn, H, Dq = saved[:4]
        Tq = len(flags)
        Qs = saved[4:5 + Tq]
        Rit = iter(saved[5 + Tq:])
        Rs = [next(Rit) if f else None for f in flags]
        a = 1.0 - dt
        Wd = dt * W
        c = dlam / t_sim
        Qbar = torch.zeros_like(Qs[0])
        dW = torch.zeros_like(W)
        T, Rn, N = H.shape
        dH = torch.zeros(T, Rn, N, dtype=W.dtype, device=W.device)
        ddphi = NONLINEARITIES[nonlinearity][2]
        second = nonlinearity == "tanh"
        for s in range(Tq - 1, -1, -1):
            Qin, d = Qs[s], Dq[s]
            if flags[s]:
                Abar = _qr_pullback_diag(Qbar, Qs[s + 1], Rs[s], c if s >= transient_q else None)
            else:
                Abar = Qbar
            Y = d[..., None] * Qin
            Ybar = torch.bmm(Wd.transpose(1, 2), Abar)
            dW.baddbmm_(Abar, Y.transpose(1, 2), alpha=dt)
            if second:
                dH[transient_h + s] += ddphi(H[transient_h + s]) * (Ybar * Qin).sum(-1)
            Qbar = torch.addcmul(Abar * a, d[..., None], Ybar)
        return _RateLyapunov._state_backward(W, Pn, dH, dW, Qbar, nonlinearity, dt)

    @staticmethod
    def _native_backward(ctx, dlam):
        """The tangent loop's backward in C (``tangent_bwd`` with leak ``1 - dt`` on ``dt W``)."""
        nonlinearity, dt, transient_h, transient_q, t_sim, flags = ctx.conf
        W, Pn, H, Dm, Q0T, QT, RT = ctx.saved_tensors
        tanh = nonlinearity == "tanh"
        QbarT, dWd, yq = native.tangent_bwd((dt * W).contiguous(), Dm, Q0T, QT, RT, flags,
                                            (dlam / t_sim).contiguous(), transient_q, tanh, leak=1.0 - dt)
        dH = torch.zeros_like(H)
        if tanh:  # phi''(H) sum_k Ybar Q_in = -2 tanh(H) yq, yq = phi'(H) sum_k Ybar Q_in
            dH[transient_h:] = -2.0 * torch.tanh(H[transient_h:]) * yq.transpose(0, 1)
        return _RateLyapunov._state_backward(W, Pn, dH, dWd.mul_(dt), QbarT.transpose(1, 2), nonlinearity, dt)

    @staticmethod
    def _state_backward(W, Pn, dH, dW, Qbar, nonlinearity, dt):
        """State BPTT of the trajectory ``H[t+1] = a H[t] + dt W phi(H[t]) + drive[t]``,
        ``t = 0..T-2``, for the tangent loop's state gradient ``dH [T, R, N]``."""
        G, dh0 = _rate_bptt(dH[1:, :, None, :], W, Pn, nonlinearity, dt)
        Gm = G[:, :, 0]  # [T-1, R, N]
        dW += torch.einsum("trn,trm->rnm", Gm, Pn[:, :, 0]).mul_(dt)
        ddrive = torch.cat([Gm, torch.zeros_like(Gm[:1])])
        return dh0[:, 0] + dH[0], dW, ddrive, Qbar, None, None, None, None, None


def rate_lyapunov(model: RateRNN, inputs: Tensor, q0: Tensor, h0: Tensor, s_ons: int, transient_h: int,
                  transient_q: int) -> Tensor:
    """The fast path of :func:`flossrepro.engine.lyapunov.lyapunov_spectrum` for :class:`RateRNN`
    (arguments already checked there): ``inputs: [T, R, S]`` -> ``[R, k]``."""
    drive = model.drive(inputs[:, :, None, :])[:, :, 0]
    return _RateLyapunov.apply(h0, model.W, drive, q0, model.nonlinearity, model.dt, s_ons,
                               transient_h, transient_q)
