"""Ensemble-first recurrent networks in the paper's convention.

Every parameter carries a leading member axis ``R``: ``R`` independent network
realizations are computed together with batched matmuls. Axis order everywhere:

- inputs ``x``: ``[T, R, B, S]`` (time, member, batch, input channel)
- states ``h``: ``[R, B, N]`` for one step, ``[T, R, B, N]`` for a sequence
- outputs ``y``: ``[T, R, B, O]``
- Jacobian actions on tangent matrices ``Q``: ``[R, n, k]`` with ``n`` the state dimension

Vanilla RNN (paper Eq 9, ``h`` is the pre-activation)::

    h[t+1] = W phi(h[t]) + input_gain * V x[t] + b,      y[t] = w_r h[t+1] + c

with one-step Jacobian ``D[t] = dh[t+1]/dh[t] = W diag(phi'(h[t]))``.
The reference code scales the input by ``1/S``; that is ``input_gain=None`` (default).

LSTM: the dynamical state is ``(h, c)``, so its Jacobian is ``2N x 2N``; the tangent
vectors stack the ``h`` part on top of the ``c`` part.

Every model implements the Lyapunov fast-path protocol of :mod:`flossrepro.engine.lyapunov`
(``lyapunov_fast``, ``step``, ``jacobian_apply(h, Q, x)``). The state loop of the vanilla RNN
is the leaky loop of :mod:`flossrepro.engine.recurrence` with leak 0.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from flossrepro.engine import native
from flossrepro.engine.gated import gated_spectrum
from flossrepro.engine.recurrence import (NONLINEARITIES, _PHI_OUT, _bptt, _dphi_from_phi, _outer_sum,  # noqa: F401
                                          _run_states, check_nonlinearity)
from flossrepro.engine.rnn_tangent import LeakyRNN

__all__ = [
    "NONLINEARITIES",
    "VanillaRNN",
    "LSTM",
    "GRU",
    "rnn_sequence",
    "check_nonlinearity",
]


class _RNNSequence(torch.autograd.Function):
    """Whole-sequence vanilla RNN with an analytic BPTT backward.

    Forward: ``H[t] = phi(H[t-1]) W^T + drive[t]`` for ``t = 0..T-1`` with ``H[-1] = h0``.
    ``h0: [R, B, N]``, ``W: [R, N, N]``, ``drive: [T, R, B, N]`` -> ``H: [T, R, B, N]``.
    One Python loop over time forward and one backward, two preallocated-output ops per
    step each; ``phi'`` of the whole trajectory is one vectorized op and ``dW`` one bmm.
    """

    @staticmethod
    def forward(ctx, h0: Tensor, W: Tensor, drive: Tensor, nonlinearity: str):
        H, P = _run_states(h0, W.transpose(1, 2).contiguous(), drive, nonlinearity)
        ctx.save_for_backward(W, P)
        ctx.nonlinearity = nonlinearity
        return H

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dH: Tensor):
        W, P = ctx.saved_tensors
        G, dh0 = _bptt(dH, W, P, ctx.nonlinearity)
        return dh0, _outer_sum(G, P), G, None


class _RNNNetwork(torch.autograd.Function):
    """The training network as one Function on the native path: input drive, state loop and
    readout in C (``rnn_io_fwd``/``rnn_io_bwd`` in ``csrc/kernels.h``), so the ``[T, R, B, N]``
    drive and state gradients never pass through PyTorch ops.

    ``h0 [R,B,N]``, ``W [R,N,N]``, ``V [R,N,S]``, ``b [R,N]``, ``w_r [R,O,N]``, ``c [R,O]``,
    ``x [T,R,B,S]`` -> ``y [T,R,B,O]``, as ``readout(rnn_sequence(h0, W, drive(x)))``. The
    parameter gradients are sums over time and batch: one bmm each after the backward loop.
    """

    @staticmethod
    def forward(ctx, h0, W, V, b, w_r, c, x, nonlinearity: str, gain: float):
        xm = x.transpose(0, 1).contiguous()  # [R, T, B, S]
        H, P, y = native.rnn_io_fwd(h0.contiguous(), W.transpose(1, 2).contiguous(),
                                    (gain * V).transpose(1, 2).contiguous(), b.contiguous(),
                                    w_r.transpose(1, 2).contiguous(), c.contiguous(), xm, nonlinearity)
        ctx.save_for_backward(W, w_r, xm, H, P)
        ctx.conf = (nonlinearity, gain)
        return y.transpose(0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        W, w_r, xm, H, P = ctx.saved_tensors
        nonlinearity, gain = ctx.conf
        R, T, B, N = H.shape
        dym = dy.transpose(0, 1).contiguous()  # [R, T, B, O]
        G, dh0 = native.rnn_io_bwd(W.contiguous(), w_r.contiguous(), P, dym, nonlinearity)
        flat = lambda t: t.reshape(R, T * B, -1)  # noqa: E731 - member-major buffers: views
        Gf, dyf = flat(G), flat(dym)
        dW = native.bmm(Gf, flat(P), ta="T")  # 80 x (T B) x 80: the native GEMM where it runs
        dV = torch.bmm(Gf.transpose(1, 2), flat(xm)).mul_(gain)
        dw_r = torch.bmm(dyf.transpose(1, 2), flat(H))
        return dh0, dW, dV, Gf.sum(1), dw_r, dyf.sum(1), None, None, None


def rnn_sequence(h0: Tensor, W: Tensor, drive: Tensor, nonlinearity: str = "tanh",
                 fast: bool = True) -> Tensor:
    """States of ``h <- W phi(h) + drive[t]`` over a sequence.

    Args:
        h0: ``[R, B, N]`` initial state.
        W: ``[R, N, N]`` recurrent weights.
        drive: ``[T, R, B, N]`` external drive (``V x + b``) of each step.
        fast: use the whole-sequence autograd Function (default); ``False`` runs the
            straightforward per-step autograd loop (the reference for tests).
    Returns:
        ``H: [T, R, B, N]``, the state after each step.
    """
    check_nonlinearity(nonlinearity)
    if fast:
        return _RNNSequence.apply(h0, W, drive, nonlinearity)
    phi = NONLINEARITIES[nonlinearity][0]
    h, Hs = h0, []
    for d in drive.unbind(0):
        h = phi(h) @ W.transpose(1, 2) + d
        Hs.append(h)
    return torch.stack(Hs)


def _normal(gen: torch.Generator, shape, dtype) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


class VanillaRNN(LeakyRNN):
    """R-member vanilla RNN ``h <- W phi(h) + input_gain V x + b``, readout ``y = w_r h + c``.

    Parameters (all with leading member axis R):
        ``W: [R, N, N]``, ``V: [R, N, S]``, ``b: [R, N]``, ``w_r: [R, O, N]``, ``c: [R, O]``,
        ``h0: [R, N]`` (trained initial state).
    Use :func:`flossrepro.engine.init.initialize` to draw the reference initialization.
    """

    kind = "vanilla"

    def __init__(self, n_members: int, n_hidden: int, n_in: int, n_out: int,
                 nonlinearity: str = "tanh", input_gain: float | None = None,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        check_nonlinearity(nonlinearity)
        for name, v in (("n_members", n_members), ("n_hidden", n_hidden), ("n_in", n_in), ("n_out", n_out)):
            if int(v) < 1:
                raise ValueError(f"{name}={v} must be a positive integer")
        R, N, S, O = n_members, n_hidden, n_in, n_out
        self.nonlinearity = nonlinearity
        self.n_members, self.n_hidden, self.n_in, self.n_out = R, N, S, O
        self.input_gain = 1.0 / S if input_gain is None else float(input_gain)
        kw = dict(dtype=dtype, device=device)
        self.W = nn.Parameter(torch.zeros(R, N, N, **kw))
        self.V = nn.Parameter(torch.zeros(R, N, S, **kw))
        self.b = nn.Parameter(torch.zeros(R, N, **kw))
        self.w_r = nn.Parameter(torch.zeros(R, O, N, **kw))
        self.c = nn.Parameter(torch.zeros(R, O, **kw))
        self.h0 = nn.Parameter(torch.zeros(R, N, **kw))

    # -- dynamics ---------------------------------------------------------------
    def drive(self, inputs: Tensor) -> Tensor:
        """``inputs: [T, R, B, S]`` -> ``input_gain * V x + b: [T, R, B, N]``."""
        T, R, B, S = inputs.shape
        # one baddbmm over members: [R, T*B, S] x [R, S, N] (+ b); a view for R = 1
        x = inputs.transpose(0, 1).reshape(R, T * B, S)
        d = torch.baddbmm(self.b[:, None, :], x, self.V.transpose(1, 2), alpha=self.input_gain)
        return d.view(R, T, B, -1).transpose(0, 1)

    def run(self, inputs: Tensor, h0: Tensor | None = None, fast: bool = True) -> Tensor:
        """States after each step, ``[T, R, B, N]``, for ``inputs: [T, R, B, S]``."""
        self._check_inputs(inputs)
        if h0 is None:
            h0 = self.initial_state(inputs.shape[2])
        return rnn_sequence(h0, self.W, self.drive(inputs), self.nonlinearity, fast=fast)

    def readout(self, H: Tensor) -> Tensor:
        """``H: [T, R, B, N]`` -> ``y: [T, R, B, O]``."""
        T, R, B, N = H.shape
        Hm = H.transpose(0, 1).reshape(R, T * B, N)  # a view for R = 1
        y = torch.baddbmm(self.c[:, None, :], Hm, self.w_r.transpose(1, 2))
        return y.view(R, T, B, -1).transpose(0, 1)

    def forward(self, inputs: Tensor, fast: bool = True) -> Tensor:
        """Outputs ``[T, R, B, O]`` for ``inputs: [T, R, B, S]`` (on the native CPU path the
        input drive, state loop and readout are one Function, :class:`_RNNNetwork`)."""
        if fast and native.available(self.W, inputs):
            self._check_inputs(inputs)
            return _RNNNetwork.apply(self.initial_state(inputs.shape[2]), self.W, self.V, self.b, self.w_r,
                                     self.c, inputs, self.nonlinearity, float(self.input_gain))
        return self.readout(self.run(inputs, fast=fast))

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """One step: ``h: [R, B, N]``, ``x: [R, B, S]`` -> ``[R, B, N]``."""
        phi = NONLINEARITIES[self.nonlinearity][0]
        return (phi(h) @ self.W.transpose(1, 2)
                + self.input_gain * x @ self.V.transpose(1, 2) + self.b[:, None, :])

    def relax(self, h: Tensor, steps: int) -> Tensor:
        """Run ``steps`` input-free steps ``h <- W phi(h) + b`` from ``h: [R, N]``."""
        phi = NONLINEARITIES[self.nonlinearity][0]
        for _ in range(steps):
            h = torch.einsum("rij,rj->ri", self.W, phi(h)) + self.b
        return h


class _GatedRNN(nn.Module):
    """What the LSTM and the GRU share: ``GATES`` gate blocks of ``N`` rows in ``U: [R, G N, N]``,
    ``V: [R, G N, S]``, ``b: [R, G N]``; readout ``y = w_r h + c`` from the first ``N`` entries of
    the state; a trainable initial state ``h0: [R, STATE N]`` (``STATE`` = 2 for the LSTM's
    ``[h, c]``). Subclasses give ``step``, ``run``, ``step_from_drive``, ``jacobian``,
    ``jacobian_apply``; the fast Lyapunov path (``lyapunov_fast``) is shared."""

    GATES = 1
    STATE = 1

    def __init__(self, n_members: int, n_hidden: int, n_in: int, n_out: int,
                 input_gain: float | None = None, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        for name, v in (("n_members", n_members), ("n_hidden", n_hidden), ("n_in", n_in), ("n_out", n_out)):
            if int(v) < 1:
                raise ValueError(f"{name}={v} must be a positive integer")
        R, N, S, O = n_members, n_hidden, n_in, n_out
        self.n_members, self.n_hidden, self.n_in, self.n_out = R, N, S, O
        self.nonlinearity = self.kind
        self.input_gain = 1.0 / S if input_gain is None else float(input_gain)
        kw = dict(dtype=dtype, device=device)
        G = self.GATES
        self.U = nn.Parameter(torch.zeros(R, G * N, N, **kw))
        self.V = nn.Parameter(torch.zeros(R, G * N, S, **kw))
        self.b = nn.Parameter(torch.zeros(R, G * N, **kw))
        self.w_r = nn.Parameter(torch.zeros(R, O, N, **kw))
        self.c = nn.Parameter(torch.zeros(R, O, **kw))
        self.h0 = nn.Parameter(torch.zeros(R, self.STATE * N, **kw))

    @property
    def state_dim(self) -> int:
        return self.STATE * self.n_hidden

    def initial_state(self, batch_size: int) -> Tensor:
        return self.h0[:, None, :].expand(-1, batch_size, -1)

    def input_drive(self, x: Tensor) -> Tensor:
        """``input_gain V x + b`` for ``x: [..., R, B, S]`` -> ``[..., R, B, G N]`` (the gates' input part)."""
        return self.input_gain * x @ self.V.transpose(1, 2) + self.b[:, None, :]

    def readout(self, H: Tensor) -> Tensor:
        return torch.einsum("trbn,ron->trbo", H[..., : self.n_hidden], self.w_r) + self.c[None, :, None, :]

    def forward(self, inputs: Tensor, fast: bool = True) -> Tensor:
        return self.readout(self.run(inputs))

    def drive(self, inputs: Tensor) -> Tensor:  # pragma: no cover - not used for gated networks
        raise NotImplementedError(f"the {self.kind.upper()} has no additive drive; use step()")

    def lyapunov_fast(self, inputs: Tensor, q0: Tensor, h0: Tensor, s_ons: int, transient_h: int,
                      transient_q: int, loss_fn=None):
        """The fast-path protocol of :func:`flossrepro.engine.lyapunov.lyapunov_spectrum`: the gated
        Function of :mod:`flossrepro.engine.gated` (analytic batched Jacobians).
        ``inputs: [T, R, S]`` -> ``[R, k]`` (with ``loss_fn``: ``(loss [R], lambda [R, k] detached)``)."""
        lam = gated_spectrum(self, inputs, q0, h0, s_ons, transient_h, transient_q)
        return lam if loss_fn is None else (loss_fn(lam), lam.detach())


class LSTM(_GatedRNN):
    """R-member LSTM with dynamical state ``(h, c)`` (Jacobian ``2N x 2N``).

    Gates (PyTorch order i, f, g, o): ``z = U h + V x + b`` with ``U: [R, 4N, N]``,
    ``V: [R, 4N, S]``, ``b: [R, 4N]``; ``c' = f c + i g``, ``h' = o tanh(c')``.
    Readout ``y = w_r h + c_out``. Initial state ``h0, c0: [R, N]``.
    The state passed around is the concatenation ``s = [h, c]: [..., 2N]``.
    """

    kind = "lstm"
    GATES = 4
    STATE = 2

    def _gates(self, s: Tensor, x: Tensor):
        N = self.n_hidden
        h, c = s[..., :N], s[..., N:]
        z = h @ self.U.transpose(1, 2) + self.input_gain * x @ self.V.transpose(1, 2) + self.b[:, None, :]
        zi, zf, zg, zo = z.split(N, dim=-1)
        return h, c, torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)

    def step(self, s: Tensor, x: Tensor) -> Tensor:
        """``s: [R, B, 2N]``, ``x: [R, B, S]`` -> ``[R, B, 2N]``."""
        h, c, i, f, g, o = self._gates(s, x)
        c2 = f * c + i * g
        return torch.cat([o * torch.tanh(c2), c2], dim=-1)

    def run(self, inputs: Tensor, h0: Tensor | None = None, fast: bool = True) -> Tensor:
        """States ``[T, R, B, 2N]`` for ``inputs: [T, R, B, S]`` (per-step autograd)."""
        s = self.initial_state(inputs.shape[2]) if h0 is None else h0
        out = []
        for x in inputs.unbind(0):
            s = self.step(s, x)
            out.append(s)
        return torch.stack(out)

    def step_from_drive(self, s: Tensor, d: Tensor) -> Tensor:
        """:meth:`step` with the input part of the gates given: ``s: [R, B, 2N]``, ``d: [R, B, 4N]``."""
        N = self.n_hidden
        z = torch.baddbmm(d, s[..., :N], self.U.transpose(1, 2))
        i, f, o = torch.sigmoid(z[..., :N]), torch.sigmoid(z[..., N:2 * N]), torch.sigmoid(z[..., 3 * N:])
        c2 = torch.addcmul(i * torch.tanh(z[..., 2 * N:3 * N]), f, s[..., N:])
        return torch.cat([o * torch.tanh(c2), c2], dim=-1)

    def jacobian(self, s: Tensor, x: Tensor) -> Tensor:
        """One-step Jacobian ``d s' / d s`` (``2N x 2N``, blocks ``[[dh'/dh, dh'/dc], [dc'/dh, dc'/dc]]``),
        analytic and batched: ``s: [R, B, 2N]``, ``x: [R, B, S]`` -> ``[R, B, 2N, 2N]``.

        With ``a = U h + V x + b`` split into the gates: ``dc'/dh = diag(i (1-i) g) U_i +
        diag(f (1-f) c) U_f + diag(i (1-g^2)) U_g``, ``dc'/dc = diag(f)``, ``dh'/dh =
        diag(o (1-o) tanh c') U_o + diag(o (1-tanh^2 c')) dc'/dh``, ``dh'/dc = diag(o (1-tanh^2 c') f)``.
        Differentiable in ``s``, ``x`` and the parameters (the gated fast path backpropagates through it).
        """
        N = self.n_hidden
        h, c, i, f, g, o = self._gates(s, x)
        Ui, Uf, Ug, Uo = (u[:, None] for u in self.U.split(N, dim=1))  # [R, 1, N, N]
        c2 = f * c + i * g
        tc = torch.tanh(c2)
        e = o * (1 - tc * tc)                              # d h' / d c'
        dcdh = ((i * (1 - i) * g)[..., None] * Ui + (f * (1 - f) * c)[..., None] * Uf
                + (i * (1 - g * g))[..., None] * Ug)       # [R, B, N, N]
        dhdh = (o * (1 - o) * tc)[..., None] * Uo + e[..., None] * dcdh
        dhdc = torch.diag_embed(e * f)
        dcdc = torch.diag_embed(f)
        return torch.cat([torch.cat([dhdh, dhdc], -1), torch.cat([dcdh, dcdc], -1)], -2)

    def jacobian_apply(self, s: Tensor, Q: Tensor, x: Tensor) -> Tensor:
        """``D(s, x) Q`` with ``s: [R, 2N]``, ``x: [R, S]``, ``Q: [R, 2N, k]`` -> ``[R, 2N, k]``.

        Analytic: ``dz = U dh``; ``dc' = df c + f dc + di g + i dg``;
        ``dh' = do tanh(c') + o (1 - tanh(c')^2) dc'``.
        """
        N = self.n_hidden
        h, c, i, f, g, o = self._gates(s[:, None, :], x[:, None, :])
        h, c, i, f, g, o = (t[:, 0, :, None] for t in (h, c, i, f, g, o))  # [R, N, 1]
        dh, dc = Q[:, :N], Q[:, N:]
        dz = torch.bmm(self.U, dh)  # [R, 4N, k]
        dzi, dzf, dzg, dzo = dz.split(N, dim=1)
        di, df, dg, do = i * (1 - i) * dzi, f * (1 - f) * dzf, (1 - g * g) * dzg, o * (1 - o) * dzo
        c2 = f * c + i * g
        dc2 = df * c + f * dc + di * g + i * dg
        tc2 = torch.tanh(c2)
        dh2 = do * tc2 + o * (1 - tc2 * tc2) * dc2
        return torch.cat([dh2, dc2], dim=1)


class GRU(_GatedRNN):
    """R-member GRU (state ``h``, Jacobian ``N x N``); not in the paper, built like the LSTM.

    Gates (PyTorch order r, z, n): ``U: [R, 3N, N]``, ``V: [R, 3N, S]``, ``b: [R, 3N]``;
    ``r = sigmoid(U_r h + V_r x + b_r)``, ``z = sigmoid(U_z h + V_z x + b_z)``,
    ``n = tanh(V_n x + b_n + r * (U_n h))``, ``h' = (1 - z) n + z h`` (PyTorch's ``nn.GRU``
    with its hidden bias ``b_hn = 0``; input terms scaled by ``input_gain``).
    Readout ``y = w_r h + c``. Initial state ``h0: [R, N]``.
    """

    kind = "gru"
    GATES = 3

    def _parts(self, h: Tensor, d: Tensor):
        """``(r, z, n, m)`` with ``m = U_n h``, from ``h: [R, B, N]`` and the input drive ``d``."""
        N = self.n_hidden
        a = h @ self.U.transpose(1, 2)  # [R, B, 3N]
        r = torch.sigmoid(a[..., :N] + d[..., :N])
        z = torch.sigmoid(a[..., N:2 * N] + d[..., N:2 * N])
        m = a[..., 2 * N:]
        n = torch.tanh(d[..., 2 * N:] + r * m)
        return r, z, n, m

    def step_from_drive(self, h: Tensor, d: Tensor) -> Tensor:
        r, z, n, _ = self._parts(h, d)
        return n + z * (h - n)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """``h: [R, B, N]``, ``x: [R, B, S]`` -> ``[R, B, N]``."""
        return self.step_from_drive(h, self.input_drive(x))

    def run(self, inputs: Tensor, h0: Tensor | None = None, fast: bool = True) -> Tensor:
        """States ``[T, R, B, N]`` for ``inputs: [T, R, B, S]`` (per-step autograd)."""
        h = self.initial_state(inputs.shape[2]) if h0 is None else h0
        drive = self.input_drive(inputs)  # [T, R, B, 3N] (matmul broadcasts over T)
        out = []
        for d in drive.unbind(0):
            h = self.step_from_drive(h, d)
            out.append(h)
        return torch.stack(out)

    def jacobian(self, h: Tensor, x: Tensor) -> Tensor:
        """One-step Jacobian ``dh'/dh``, analytic and batched: ``h: [R, B, N]``, ``x: [R, B, S]`` ->
        ``[R, B, N, N]``: ``diag((h - n) z (1-z)) U_z + diag((1-z)(1-n^2)) [diag(m r (1-r)) U_r +
        diag(r) U_n] + diag(z)`` with ``m = U_n h``. Differentiable in ``h``, ``x`` and the parameters."""
        N = self.n_hidden
        r, z, n, m = self._parts(h, self.input_drive(x))
        Ur, Uz, Un = (u[:, None] for u in self.U.split(N, dim=1))  # [R, 1, N, N]
        e = (1 - z) * (1 - n * n)
        J = ((h - n) * z * (1 - z))[..., None] * Uz + (e * m * r * (1 - r))[..., None] * Ur + (e * r)[..., None] * Un
        return J + torch.diag_embed(z)

    def jacobian_apply(self, h: Tensor, Q: Tensor, x: Tensor) -> Tensor:
        """``D(h, x) Q`` with ``h: [R, N]``, ``x: [R, S]``, ``Q: [R, N, k]`` -> ``[R, N, k]``."""
        return torch.bmm(self.jacobian(h[:, None], x[:, None])[:, 0], Q)
