"""The continuous-time rate network of the low-rank study (Schuessler et al. 2020), ensemble-first.

Their convention, not the flossing paper's (SPEC-lowrank): Euler step ``dt`` (time constant 1),
no noise, no bias, ``h0 = 0``::

    h[t+1] = (1 - dt) h[t] + dt (W phi(h[t]) + W_in u[t]),      z[t] = W_out phi(h[t+1])

with one-step Jacobian ``D[t] = dh[t+1]/dh[t] = (1 - dt) I + dt W diag(phi'(h[t]))``.
``phi`` is ``tanh`` or ``identity`` (the linear study). The parameter names follow
:class:`flossrepro.engine.models.VanillaRNN` so the trainer, flossing and diagnostics treat both
alike: ``W`` (recurrent), ``V`` (= ``W_in``), ``w_r`` (= ``W_out``); ``h0`` is a buffer (zero,
not trained). Shapes: inputs ``[T, R, B, S]``, states ``[T, R, B, N]``, outputs ``[T, R, B, O]``.

The network is the leaky RNN ``h <- a h + W' phi(h) + drive`` of :mod:`flossrepro.engine.recurrence`
with ``a = 1 - dt``, ``W' = dt W`` and ``drive = dt W_in u``; the vanilla RNN is the same with
``a = 0``. Two paths give the same numbers and gradients (tests/test_rate.py):
- ``fast=True``: the state loop is one ``autograd.Function`` with an analytic BPTT backward
  (:class:`_RateSequence`), and the Lyapunov spectrum the vanilla RNN's whole-sequence Function
  with that leak (:mod:`flossrepro.engine.rnn_tangent`: analytic backward through the tangent loop
  and the QR pullback of paper Eq 8), reached through :meth:`RateRNN.lyapunov_fast`;
- ``fast=False``: per-step autograd (the reference for the tests).

On CPU in float32/float64 both loops of the fast path run in the native C kernels
(:mod:`flossrepro.engine.native`: the vanilla network's kernels with their leak term set to
``1 - dt`` and ``dt W`` for ``W``); elsewhere (CUDA, ``FLOSSREPRO_NATIVE=0``) as PyTorch ops.

Initialisation (their code): ``W0 = g N(0, 1/N)`` (``init.scheme`` gaussian/orthogonal as for the
vanilla network); the input and output vectors are N(0, 1) vectors normalised to norm ``sqrt(N)``
(entries O(1)); ``W_in`` takes them as columns, ``W_out = m^T / N`` (norm ``1/sqrt(N)``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from flossrepro.engine import native
from flossrepro.engine.init import initialize_rate
from flossrepro.engine.recurrence import NONLINEARITIES, _bptt, _run_states
from flossrepro.engine.rnn_tangent import LeakyRNN

__all__ = ["RateRNN", "RATE_NONLINEARITIES", "initialize_rate", "rate_sequence", "rate_lyapunov"]

RATE_NONLINEARITIES = ("tanh", "identity")


def _phi(nonlinearity: str):
    return NONLINEARITIES[nonlinearity][0]


# ----------------------------------------------------------------------------- state loop
def _rate_states(h0: Tensor, W: Tensor, drive: Tensor, nonlinearity: str, dt: float) -> tuple[Tensor, Tensor]:
    """``H[t] = a H[t-1] + dt phi(H[t-1]) W^T + drive[t]`` (``a = 1 - dt``, ``H[-1] = h0``): the leaky
    loop of :mod:`flossrepro.engine.recurrence` with ``dt W`` and leak ``a``.

    ``h0: [R, B, N]``, ``W: [R, N, N]``, ``drive: [T, R, B, N]`` -> ``(H, P)`` with
    ``P[t] = phi(H[t-1])`` (the input of step ``t``), both ``[T, R, B, N]``."""
    return _run_states(h0, (dt * W).transpose(1, 2).contiguous(), drive, nonlinearity, leak=1.0 - dt)


def _rate_bptt(dH: Tensor, W: Tensor, P: Tensor, nonlinearity: str, dt: float) -> tuple[Tensor, Tensor]:
    """Backward of :func:`_rate_states`: ``G[t]`` = total gradient of ``H[t]`` (= of ``drive[t]``),
    ``G[t-1] = dH[t-1] + a G[t] + phi'(H[t-1]) * (dt G[t] W)``; returns ``(G, dh0)``."""
    return _bptt(dH, dt * W, P, nonlinearity, leak=1.0 - dt)


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
class RateRNN(LeakyRNN):
    """R-member rate network ``h <- (1-dt) h + dt (W phi(h) + V u)``, readout ``z = w_r phi(h)``.

    Parameters (leading member axis R): ``W: [R, N, N]``, ``V: [R, N, S]`` (W_in),
    ``w_r: [R, O, N]`` (W_out). ``h0: [R, N]`` is a zero buffer. No bias.
    Use :func:`flossrepro.engine.init.initialize` (or :func:`~flossrepro.engine.init.initialize_rate`) for
    their initialisation.
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
    def leak(self) -> float:  # the Euler step's leak, 1 - dt
        return 1.0 - self.dt

    @property
    def w_scale(self) -> float:
        return self.dt

    def drive(self, inputs: Tensor) -> Tensor:
        """``inputs: [T, R, B, S]`` -> ``dt V u: [T, R, B, N]``."""
        T, R, B, S = inputs.shape
        x = inputs.transpose(0, 1).reshape(R, T * B, S)
        d = torch.bmm(x, self.V.transpose(1, 2)).mul(self.dt)
        return d.view(R, T, B, -1).transpose(0, 1)

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



def rate_lyapunov(model: RateRNN, inputs: Tensor, q0: Tensor, h0: Tensor, s_ons: int, transient_h: int,
                  transient_q: int) -> Tensor:
    """The fast path of :func:`flossrepro.engine.lyapunov.lyapunov_spectrum` for :class:`RateRNN`
    (arguments already checked there): ``inputs: [T, R, S]`` -> ``[R, k]``."""
    return model.lyapunov_fast(inputs, q0, h0, s_ons, transient_h, transient_q)
