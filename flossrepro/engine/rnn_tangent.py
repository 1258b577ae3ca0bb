"""One whole-sequence Lyapunov Function for the vanilla RNN and the rate network.

Both are the leaky network of :mod:`flossrepro.engine.recurrence`: trajectory ``H[0] = h0``,
``H[t+1] = leak H[t] + W phi(H[t]) + drive[t]``, one-step Jacobian
``D[t] = leak I + W diag(phi'(H[t]))``. The vanilla RNN is ``leak = 0``; the rate network passes
``leak = 1 - dt`` and ``dt W`` for ``W`` (its ``drive`` is already ``dt W_in u``), so the gradient
of ``W`` here is that of ``dt W`` and autograd scales it. The native C kernels
(:mod:`flossrepro.engine.native`) take the same leak term.

:func:`rnn_spectrum` is what :meth:`VanillaRNN.lyapunov_fast
<flossrepro.engine.models.VanillaRNN.lyapunov_fast>` and :meth:`RateRNN.lyapunov_fast
<flossrepro.engine.rate.RateRNN.lyapunov_fast>` call (the fast-path protocol of
:mod:`flossrepro.engine.lyapunov`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from flossrepro.engine import native
from flossrepro.engine.recurrence import NONLINEARITIES, _bptt, _dphi_from_phi, _outer_sum, _run_states
from flossrepro.engine.tangent import _exponents, _qr_pullback_diag_T, _qr_schedule

__all__ = ["rnn_spectrum", "LeakyRNN"]


def _trajectory(h0: Tensor, W: Tensor, drive: Tensor, nonlinearity: str, leak: float, s_ons: int,
                transient_h: int, transient_q: int):
    """What the tangent loop needs of the state trajectory ``H[0] = h0``,
    ``H[t+1] = leak H[t] + W phi(H[t]) + drive[t]`` (``drive[T-1]`` is unused): ``(Wt, Pn, Pq, Dq,
    flags, t_sim)`` with ``Wt = W^T``, ``Pn`` the states' ``phi`` as :func:`_run_states` gives it,
    ``Pq = phi(H[t])`` and ``Dq = phi'(H[t])`` of the tangent steps (``t >= transient_h``,
    ``[Tq, R, 1, N]``: step ``s`` uses ``D[t] = leak I + W diag(phi'(H[t]))``) and the QR schedule."""
    T = drive.shape[0]
    Wt = W.transpose(1, 2).contiguous()
    Hn, Pn = _run_states(h0[:, None, :], Wt, drive[:-1, :, None, :], nonlinearity, leak)
    H = torch.cat([h0[None, :, None, :], Hn])  # [T, R, 1, N]
    Pq = NONLINEARITIES[nonlinearity][0](H[transient_h:])
    Dq = _dphi_from_phi(nonlinearity, Pq)
    flags = _qr_schedule(T - transient_h, transient_q, s_ons)
    return Wt, Pn, Pq, Dq, flags, T - transient_h - transient_q


class _RNNLyapunov(torch.autograd.Function):
    """Whole-sequence Lyapunov spectrum of the leaky RNN with an analytic backward.

    Inputs: ``h0: [R, N]``, ``W: [R, N, N]``, ``drive: [T, R, N]``, ``Q0: [R, N, k]``, then
    ``nonlinearity``, ``leak``, ``s_ons``, ``transient_h``, ``transient_q``.
    Output: ``lambda: [R, k]`` (per step).

    Layout: LAPACK works column-major, so every ``[N, k]`` (``[k, k]``) matrix of the tangent
    loop is stored as its transpose, row-major ``[k, N]`` (suffix ``T``), in ``[Tq, R, k, N]``
    step buffers; orgqr (``householder_product``) and ``solve_triangular`` write straight
    into them (``out=``) and no per-step op transposes an operand.

    Forward: the state trajectory (:func:`~flossrepro.engine.recurrence._run_states`, two ops per
    step), ``phi'`` of all tangent steps in one op, then per tangent step ``Y^T = Q^T diag(phi')``,
    ``A^T = Y^T W^T (+ leak Q^T)`` and the Householder QR of ``A`` (geqrf, copy of ``R^T``, orgqr).

    Backward, per tangent step in reverse, with ``c = dL/dlambda / t_sim``: the QR pullback
    for the diagonal ``Rbar = diag(c / R_ii)`` (:func:`~flossrepro.engine.tangent._qr_pullback_diag_T`,
    four ops), then ``Ybar^T = Abar^T W`` and ``Qbar^T = Ybar^T diag(phi') (+ leak Abar^T)``.
    What does not feed the next step is vectorized after the loop: ``dW = sum_s Abar[s] Y[s]^T``
    (one bmm over step buffers viewed as ``[1, Tq*k, N]``) and the second-order term
    ``phi''(h) sum_k Ybar Q_in`` of the state gradient (for tanh ``phi'' Q_in = -2 phi Y``; zero
    for relu and identity) -- for ``R > 1`` per step instead, batched over members, with scratch
    in place of the buffers -- and the state BPTT that collects it
    (:func:`~flossrepro.engine.recurrence._bptt`, two ops per step).
    On CPU in float32/float64 the tangent loop and its backward run in C (``tangent_fwd``,
    ``tangent_bwd``).
    """

    @staticmethod
    def forward(ctx, h0, W, drive, Q0, nonlinearity, leak, s_ons, transient_h, transient_q):
        Rn, N, k = Q0.shape
        Wt, Pn, Pq, Dq, flags, t_sim = _trajectory(h0, W, drive, nonlinearity, leak, s_ons, transient_h, transient_q)
        Tq = len(flags)
        ctx.flags = flags
        ctx.conf = (nonlinearity, leak, transient_h, transient_q, t_sim)
        ctx.native = native.available(W, Dq, Q0)
        if ctx.native:  # the tangent loop in C, member-major buffers [R, Tq, ...]
            Dm = Dq[:, :, 0].transpose(0, 1).contiguous()
            Q0T = Q0.transpose(1, 2).contiguous()
            QT, RT = native.tangent_fwd(Wt, Dm, Q0T, flags, leak=leak)
            ctx.save_for_backward(W, Pn, Pq, Dm, Q0T, QT, RT)
            return _exponents(RT.diagonal(dim1=-2, dim2=-1), flags, transient_q, t_sim)
        kw = dict(dtype=Q0.dtype, device=Q0.device)
        YT = torch.empty(Tq, Rn, k, N, **kw)   # (diag(phi') Q_in)^T
        QT = torch.empty(Tq, Rn, k, N, **kw)   # Q^T after each step (A^T on steps without QR)
        RT = torch.empty(Tq, Rn, k, k, **kw)   # R^T of each QR in the lower triangle (see below)
        AT, fT, tau = torch.empty(Rn, k, N, **kw), torch.empty(Rn, k, N, **kw), torch.empty(Rn, k, **kw)
        f = fT.transpose(1, 2)
        qT = Q0.transpose(1, 2)
        leaky = leak != 0.0
        for yT, d, q_T, q, rT, is_qr in zip(YT.unbind(0), Dq.unbind(0), QT.unbind(0),
                                            QT.transpose(2, 3).unbind(0), RT.unbind(0), flags):
            torch.mul(qT, d, out=yT)
            aT = AT if is_qr else q_T
            if leaky:
                torch.baddbmm(qT, yT, Wt, beta=leak, out=aT)
            else:
                torch.bmm(yT, Wt, out=aT)
            if is_qr:
                # Householder QR as torch.linalg.qr does it (geqrf, orgqr; same Q and R), without
                # its triu and output copies: R^T is the lower triangle of the factor's top block,
                # transposed (the strict upper triangle of RT gets reflector entries, never read)
                torch.geqrf(AT.transpose(1, 2), out=(f, tau))
                rT.copy_(fT[:, :, :k])
                torch.linalg.householder_product(f, tau, out=q)
            qT = q_T
        ctx.save_for_backward(W, Pn, Pq, Dq, YT, QT, RT)
        return _exponents(RT.diagonal(dim1=-2, dim2=-1).transpose(0, 1), flags, transient_q, t_sim)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dlam):
        if ctx.native:
            return _RNNLyapunov._native_backward(ctx, dlam)
        W, Pn, Pq, Dq, YT, QT, RT = ctx.saved_tensors
        nonlinearity, leak, transient_h, transient_q, t_sim = ctx.conf
        flags = ctx.flags
        Tq, Rn, k, N = YT.shape
        negc = torch.diag_embed(dlam / -t_sim)  # -diag(c), c = d loss / d log|R_ii|
        upper = torch.ones(k, k, dtype=torch.bool, device=W.device).triu()
        QbarT = torch.zeros(Rn, k, N, dtype=YT.dtype, device=YT.device)  # nothing after the last step
        tanh = nonlinearity == "tanh"  # phi'' Q_in = -2 phi phi' Q_in = -2 phi Y (relu, identity: 0)
        leaky = leak != 0.0
        # Two sums need every step's Abar^T and Ybar^T: dW from the tangent chain,
        # sum_s Abar[s] Y[s]^T, and the second-order term YQ[s] = sum_k Ybar[s] Y[s]. For R = 1
        # [Tq, 1, k, N] step buffers are [1, Tq*k, N] views: one bmm and one product after the
        # loop. For R > 1 that would need transposing copies of the buffers: each step adds
        # its batched terms, and two [R, k, N] scratch tensors replace the buffers.
        if Rn == 1:
            AbarT, YbarT = torch.empty_like(YT), torch.empty_like(YT)
            abTs, ybTs, dW, YQ = AbarT.unbind(0), YbarT.unbind(0), None, None
        else:
            abTs, ybTs = [torch.empty_like(QbarT)] * Tq, [torch.empty_like(QbarT)] * Tq
            dW = torch.zeros_like(W)
            YQ = torch.empty(Tq, Rn, N, dtype=YT.dtype, device=YT.device) if tanh else None
        steps = list(zip(abTs, ybTs, Dq.unbind(0), QT.transpose(2, 3).unbind(0), RT.unbind(0),
                         YT.unbind(0), flags))
        for s in range(Tq - 1, -1, -1):
            abT, ybT, d, q, rT, yT, is_qr = steps[s]
            if is_qr:  # c enters only in the accumulation window
                _qr_pullback_diag_T(QbarT, q, rT, negc if s >= transient_q else None, upper, abT)
            else:
                abT.copy_(QbarT)
            QbarT = torch.bmm(abT, W, out=ybT) * d  # Ybar^T = Abar^T W; Qbar = phi' * Ybar (+ leak Abar)
            if leaky:
                QbarT.add_(abT, alpha=leak)
            if dW is not None:
                dW.baddbmm_(abT.transpose(1, 2), yT)
                if YQ is not None:
                    torch.linalg.vecdot(ybT, yT, dim=1, out=YQ[s])
        if dW is None:
            dW = torch.bmm(AbarT.view(1, Tq * k, N).transpose(1, 2), YT.view(1, Tq * k, N))
            YQ = YbarT.mul_(YT).sum(2) if tanh else None
        return _RNNLyapunov._state_backward(ctx.conf, W, Pn, Pq, YQ, dW, QbarT)

    @staticmethod
    def _native_backward(ctx, dlam):
        """The tangent loop's backward in C (flossrepro/csrc/kernels.h, ``tangent_bwd``)."""
        W, Pn, Pq, Dm, Q0T, QT, RT = ctx.saved_tensors
        nonlinearity, leak, transient_h, transient_q, t_sim = ctx.conf
        QbarT, dW, yq = native.tangent_bwd(W.contiguous(), Dm, Q0T, QT, RT, ctx.flags, (dlam / t_sim).contiguous(),
                                           transient_q, nonlinearity == "tanh", leak=leak)
        YQ = None if yq is None else yq.transpose(0, 1)  # [Tq, R, N]
        return _RNNLyapunov._state_backward(ctx.conf, W, Pn, Pq, YQ, dW, QbarT)

    @staticmethod
    def _state_backward(conf, W, Pn, Pq, YQ, dW, QbarT):
        """Collect the tangent loop's state gradient and run the state BPTT."""
        nonlinearity, leak, transient_h, _, _ = conf
        Rn, N = W.shape[0], W.shape[1]
        # second-order term: d loss / d H[t] += phi''(H[t]) sum_k Ybar[s] Q_in[s] = -2 phi YQ (tanh)
        T = Pn.shape[0] + 1
        dH = torch.zeros(T, Rn, 1, N, dtype=W.dtype, device=W.device)
        if YQ is not None:
            dH[transient_h:] = YQ[:, :, None, :].mul(Pq).mul_(-2.0)
        # state BPTT: H[t+1] = leak H[t] + W phi(H[t]) + drive[t] collects dH
        Gn, dh0 = _bptt(dH[1:], W, Pn, nonlinearity, leak)
        dW += _outer_sum(Gn, Pn)
        ddrive = torch.cat([Gn[:, :, 0], torch.zeros_like(Gn[:1, :, 0])])
        return (dh0 + dH[0])[:, 0], dW, ddrive, QbarT.transpose(1, 2), None, None, None, None, None


class _RNNLyapunovLoss(torch.autograd.Function):
    """A per-member loss of the exponents, ``loss_fn(lambda) -> [R]``, with its gradient
    computed one member at a time in the forward (native kernels, CPU).

    The exponents' backward needs every tangent step's ``Q`` and ``R``: 7 MB per member at
    ``N = 80, k = 75, T = 300``. :class:`_RNNLyapunov` keeps them for all members until the
    backward; here each member's forward is followed at once by its backward (``dL/dlambda``
    is known as soon as its ``lambda`` is: ``loss_fn`` acts on each member's row alone), so
    one member's buffers, hot in cache, serve the whole ensemble. The gradients of the
    inputs are kept and scaled by the upstream gradient of each member's loss in
    :meth:`backward`. Outputs: ``(loss [R], lambda [R, k])``; ``lambda`` is not differentiable
    here (use :func:`rnn_spectrum` without ``loss_fn`` for other uses of the exponents).
    """

    @staticmethod
    def forward(ctx, h0, W, drive, Q0, loss_fn, nonlinearity, leak, s_ons, transient_h, transient_q):
        Rn, N, k = Q0.shape
        Wt, Pn, Pq, Dq, flags, t_sim = _trajectory(h0, W, drive, nonlinearity, leak, s_ons, transient_h, transient_q)
        Tq = len(flags)
        Dm = Dq[:, :, 0].transpose(0, 1).contiguous()  # [R, Tq, N]
        Q0T, Wc = Q0.transpose(1, 2).contiguous(), W.contiguous()
        tanh = nonlinearity == "tanh"
        lam = torch.empty(Rn, k, dtype=W.dtype)
        loss = torch.empty(Rn, dtype=W.dtype)
        QbarT, dW = torch.empty(Rn, k, N, dtype=W.dtype), torch.empty(Rn, N, N, dtype=W.dtype)
        yq = torch.empty(Rn, Tq, N, dtype=W.dtype) if tanh else None
        for r in range(Rn):
            QT, RT = native.tangent_fwd(Wt[r:r + 1], Dm[r:r + 1], Q0T[r:r + 1], flags, leak=leak)
            lr = _exponents(RT.diagonal(dim1=-2, dim2=-1), flags, transient_q, t_sim)  # [1, k]
            with torch.enable_grad():
                lv = lr.detach().requires_grad_(True)
                lo = loss_fn(lv)
                (dlam,) = torch.autograd.grad(lo.sum(), lv)
            lam[r], loss[r] = lr[0], lo.detach()[0]
            qb, dw, y = native.tangent_bwd(Wc[r:r + 1], Dm[r:r + 1], Q0T[r:r + 1], QT, RT, flags,
                                           (dlam / t_sim).contiguous(), transient_q, tanh, leak=leak)
            QbarT[r], dW[r] = qb[0], dw[0]
            if tanh:
                yq[r] = y[0]
        conf = (nonlinearity, leak, transient_h, transient_q, t_sim)
        YQ = None if yq is None else yq.transpose(0, 1)
        grads = _RNNLyapunov._state_backward(conf, W, Pn, Pq, YQ, dW, QbarT)[:4]
        ctx.save_for_backward(*grads)
        ctx.mark_non_differentiable(lam)
        return loss, lam

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gloss, glam):
        dh0, dW, ddrive, dQ0 = ctx.saved_tensors
        g = gloss
        return (dh0 * g[:, None], dW * g[:, None, None], ddrive * g[None, :, None], dQ0 * g[:, None, None],
                None, None, None, None, None, None)


def rnn_spectrum(h0: Tensor, W: Tensor, drive: Tensor, q0: Tensor, nonlinearity: str, leak: float,
                 s_ons: int, transient_h: int, transient_q: int, loss_fn=None):
    """Exponents ``[R, k]`` of ``H[t+1] = leak H[t] + W phi(H[t]) + drive[t]`` (arguments checked by
    :func:`flossrepro.engine.lyapunov.lyapunov_spectrum`), differentiable in ``h0``, ``W``,
    ``drive`` and ``q0``; with ``loss_fn`` (``[R, k] -> [R]``, member by member)
    ``(loss_fn(lambda), lambda.detach())``, on the native path one member at a time
    (:class:`_RNNLyapunovLoss`)."""
    leak = float(leak)
    if loss_fn is None:
        return _RNNLyapunov.apply(h0, W, drive, q0, nonlinearity, leak, s_ons, transient_h, transient_q)
    if native.available(W, drive, h0, q0):
        return _RNNLyapunovLoss.apply(h0, W, drive, q0, loss_fn, nonlinearity, leak, s_ons, transient_h, transient_q)
    lam = _RNNLyapunov.apply(h0, W, drive, q0, nonlinearity, leak, s_ons, transient_h, transient_q)
    return loss_fn(lam), lam.detach()


class LeakyRNN(nn.Module):
    """What the vanilla RNN and the rate network share as the leaky RNN ``h <- leak h + w_scale W
    phi(h) + drive``: the one-step Jacobian ``D = leak I + w_scale W diag(phi'(h))`` and its
    product with ``Q``, the fast Lyapunov path (:func:`rnn_spectrum`), the initial state and the
    input check. Subclasses set ``leak`` and ``w_scale`` (vanilla: 0 and 1; rate: ``1 - dt`` and
    ``dt``) and give ``drive``, ``step``, ``run``, ``readout``."""

    leak = 0.0
    w_scale = 1.0

    @property
    def state_dim(self) -> int:
        return self.n_hidden

    @property
    def _plain(self) -> bool:  # D = W diag(phi'): no leak term, W unscaled
        return self.leak == 0.0 and self.w_scale == 1.0

    def initial_state(self, batch_size: int) -> Tensor:
        """``[R, B, N]``: the initial state broadcast over the batch."""
        return self.h0[:, None, :].expand(-1, batch_size, -1)

    def jacobian(self, h: Tensor) -> Tensor:
        """One-step Jacobian ``leak I + w_scale W diag(phi'(h))``: ``h: [R, B, N]`` -> ``[R, B, N, N]``."""
        dphi = NONLINEARITIES[self.nonlinearity][1]
        if self._plain:
            return self.W[:, None] * dphi(h)[..., None, :]
        eye = torch.eye(self.n_hidden, dtype=h.dtype, device=h.device)
        return self.leak * eye + self.w_scale * self.W[:, None] * dphi(h)[..., None, :]

    def jacobian_apply(self, h: Tensor, Q: Tensor, x: Tensor | None = None) -> Tensor:
        """``D(h) Q`` for ``h: [R, N]``, ``Q: [R, N, k]`` -> ``[R, N, k]`` (the input ``x`` is not used)."""
        dphi = NONLINEARITIES[self.nonlinearity][1]
        WQ = torch.bmm(self.W, dphi(h)[..., None] * Q)
        return WQ if self._plain else self.leak * Q + self.w_scale * WQ

    def lyapunov_fast(self, inputs: Tensor, q0: Tensor, h0: Tensor, s_ons: int, transient_h: int,
                      transient_q: int, loss_fn=None):
        """The fast-path protocol of :func:`flossrepro.engine.lyapunov.lyapunov_spectrum`: the leaky
        RNN's whole-sequence Function (:func:`rnn_spectrum`) with ``w_scale W`` and ``leak``.
        ``inputs: [T, R, S]`` -> ``[R, k]`` (with ``loss_fn``: ``(loss [R], lambda [R, k] detached)``)."""
        drive = self.drive(inputs[:, :, None, :])[:, :, 0]  # [T, R, N]
        W = self.W if self.w_scale == 1.0 else self.w_scale * self.W
        return rnn_spectrum(h0, W, drive, q0, self.nonlinearity, self.leak, s_ons, transient_h, transient_q, loss_fn)

    def _check_inputs(self, inputs: Tensor) -> None:
        if inputs.dim() != 4 or inputs.shape[1] != self.n_members or inputs.shape[3] != self.n_in:
            raise ValueError(f"inputs must be [T, R={self.n_members}, B, S={self.n_in}], got {tuple(inputs.shape)}")
