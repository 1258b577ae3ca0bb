"""Lyapunov spectra by the QR (Benettin) method, differentiable end to end.

Paper Algorithm 2. An orthonormal system ``Q: [R, n, k]`` is evolved along the
trajectory, ``Q <- D[t] Q``; every ``s_ons`` steps ``Q, Rm = qr(Q)`` and ``log|Rm_ii|`` is
accumulated; ``lambda_i = sum / t_sim`` (per time step). Transients are discarded: the
first ``transient_h`` steps evolve only the state, the next ``transient_q`` steps evolve
``Q`` without accumulating, the remaining ``t_sim`` steps accumulate.

Two evaluation paths give the same numbers and gradients:
- the fast path for :class:`~flossrepro.engine.models.VanillaRNN`: one ``autograd.Function``
  over the whole sequence with an analytic backward (BPTT of the state plus the QR
  pullback of paper Eq 8, ``Abar = [Qbar + Q copyltu(M)] R^{-T}``,
  ``M = R Rbar^T - Qbar^T Q``), one Python loop forward and one backward;
- the reference path: per-step autograd through ``torch.linalg.qr`` (any model with
  ``step`` and ``jacobian_apply``, e.g. the LSTM); the test oracle (LSTMs and GRUs take
  the gated fast path of :mod:`flossrepro.engine.gated` by default).

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

from flossrepro.engine import native
from flossrepro.engine.tangent import (_check_k, _check_lengths, _exponents, _qr_pullback_diag_T, _qr_schedule,
                                      condition_number_estimate, default_transients, lyapunov_spectrum_from_jacobians,
                                      random_orthonormal)
from flossrepro.engine.models import (NONLINEARITIES, VanillaRNN, _GatedRNN, _bptt, _dphi_from_phi, _outer_sum, _run_states)

__all__ = [
    "lyapunov_spectrum",
    "lyapunov_loss",
    "lyapunov_spectrum_from_jacobians",
    "condition_number_estimate",
    "default_transients",
    "random_orthonormal",
]


def _trajectory(h0: Tensor, W: Tensor, drive: Tensor, nonlinearity: str, s_ons: int,
                transient_h: int, transient_q: int):
    """What the tangent loop needs of the state trajectory ``H[0] = h0``,
    ``H[t+1] = W phi(H[t]) + drive[t]`` (``drive[T-1]`` is unused): ``(Wt, Pn, Pq, Dq, flags,
    t_sim)`` with ``Wt = W^T``, ``Pn`` the states' ``phi`` as :func:`_run_states` gives it,
    ``Pq = phi(H[t])`` and ``Dq = phi'(H[t])`` of the tangent steps (``t >= transient_h``,
    ``[Tq, R, 1, N]``: step ``s`` uses ``D[t] = W diag(phi'(H[t]))``) and the QR schedule."""
    T = drive.shape[0]
    Wt = W.transpose(1, 2).contiguous()
    Hn, Pn = _run_states(h0[:, None, :], Wt, drive[:-1, :, None, :], nonlinearity)
    H = torch.cat([h0[None, :, None, :], Hn])  # [T, R, 1, N]
    Pq = NONLINEARITIES[nonlinearity][0](H[transient_h:])
    Dq = _dphi_from_phi(nonlinearity, Pq)
    flags = _qr_schedule(T - transient_h, transient_q, s_ons)
    return Wt, Pn, Pq, Dq, flags, T - transient_h - transient_q


class _RNNLyapunov(torch.autograd.Function):
    """Whole-sequence Lyapunov spectrum of a vanilla RNN with an analytic backward.

    Inputs: ``h0: [R, N]``, ``W: [R, N, N]``, ``drive: [T, R, N]``, ``Q0: [R, N, k]``.
    Output: ``lambda: [R, k]``.

    Layout: LAPACK works column-major, so every ``[N, k]`` (``[k, k]``) matrix of the tangent
    loop is stored as its transpose, row-major ``[k, N]`` (suffix ``T``), in ``[Tq, R, k, N]``
    step buffers; orgqr (``householder_product``) and ``solve_triangular`` write straight
    into them (``out=``) and no per-step op transposes an operand.

    Forward: the state trajectory (:func:`~flossrepro.engine.models._run_states`, two ops per step),
    ``phi'`` of all tangent steps in one op, then per tangent step ``Y^T = Q^T diag(phi')``,
    ``A^T = Y^T W^T`` and the Householder QR of ``A`` (geqrf, copy of ``R^T``, orgqr).

    Backward, per tangent step in reverse, with ``c = dL/dlambda / t_sim``: the QR pullback
    for the diagonal ``Rbar = diag(c / R_ii)`` (:func:`_qr_pullback_diag_T`, four ops), then
    ``Ybar^T = Abar^T W`` and ``Qbar^T = Ybar^T diag(phi')``. What does not feed the next step
    is vectorized after the loop: ``dW = sum_s Abar[s] Y[s]^T`` (one bmm over step buffers
    viewed as ``[1, Tq*k, N]``) and the second-order term ``phi''(h) sum_k Ybar Q_in`` of the
    state gradient (for tanh ``phi'' Q_in = -2 phi Y``; zero for relu and identity) -- for
    ``R > 1`` per step instead, batched over members, with scratch in place of the buffers --
    and the state BPTT that collects it (:func:`~flossrepro.engine.models._bptt`, two ops per step).
    """

    @staticmethod
    def forward(ctx, h0, W, drive, Q0, nonlinearity, s_ons, transient_h, transient_q):
        Rn, N, k = Q0.shape
        Wt, Pn, Pq, Dq, flags, t_sim = _trajectory(h0, W, drive, nonlinearity, s_ons, transient_h, transient_q)
        Tq = len(flags)
        ctx.flags = flags
        ctx.conf = (nonlinearity, transient_h, transient_q, t_sim)
        ctx.native = native.available(W, Dq, Q0)
        if ctx.native:  # the tangent loop in C, member-major buffers [R, Tq, ...]
            Dm = Dq[:, :, 0].transpose(0, 1).contiguous()
            Q0T = Q0.transpose(1, 2).contiguous()
            QT, RT = native.tangent_fwd(Wt, Dm, Q0T, flags)
            ctx.save_for_backward(W, Pn, Pq, Dm, Q0T, QT, RT)
            return _exponents(RT.diagonal(dim1=-2, dim2=-1), flags, transient_q, t_sim)
        kw = dict(dtype=Q0.dtype, device=Q0.device)
        YT = torch.empty(Tq, Rn, k, N, **kw)   # (D Q_in)^T
        QT = torch.empty(Tq, Rn, k, N, **kw)   # Q^T after each step (A^T on steps without QR)
        RT = torch.empty(Tq, Rn, k, k, **kw)   # R^T of each QR in the lower triangle (see below)
        AT, fT, tau = torch.empty(Rn, k, N, **kw), torch.empty(Rn, k, N, **kw), torch.empty(Rn, k, **kw)
        f = fT.transpose(1, 2)
        qT = Q0.transpose(1, 2)
        for yT, d, q_T, q, rT, is_qr in zip(YT.unbind(0), Dq.unbind(0), QT.unbind(0),
                                            QT.transpose(2, 3).unbind(0), RT.unbind(0), flags):
            torch.mul(qT, d, out=yT)
            if is_qr:
                # Householder QR as torch.linalg.qr does it (geqrf, orgqr; same Q and R), without
                # its triu and output copies: R^T is the lower triangle of the factor's top block,
                # transposed (the strict upper triangle of RT gets reflector entries, never read)
                torch.geqrf(torch.bmm(yT, Wt, out=AT).transpose(1, 2), out=(f, tau))
                rT.copy_(fT[:, :, :k])
                torch.linalg.householder_product(f, tau, out=q)
            else:
                torch.bmm(yT, Wt, out=q_T)
            qT = q_T
        ctx.save_for_backward(W, Pn, Pq, Dq, YT, QT, RT)
        return _exponents(RT.diagonal(dim1=-2, dim2=-1).transpose(0, 1), flags, transient_q, t_sim)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dlam):
        W, Pn, Pq, Dq, YT, QT, RT = ctx.saved_tensors
        nonlinearity, transient_h, transient_q, t_sim = ctx.conf
        flags = ctx.flags
        if ctx.native:
            return _RNNLyapunov._native_backward(ctx, dlam)
        Tq, Rn, k, N = YT.shape
        negc = torch.diag_embed(dlam / -t_sim)  # -diag(c), c = d loss / d log|R_ii|
        upper = torch.ones(k, k, dtype=torch.bool, device=W.device).triu()
        QbarT = torch.zeros(Rn, k, N, dtype=YT.dtype, device=YT.device)  # nothing after the last step
        tanh = nonlinearity == "tanh"  # phi'' Q_in = -2 phi phi' Q_in = -2 phi Y (relu, identity: 0)
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
            QbarT = torch.bmm(abT, W, out=ybT) * d  # Ybar^T = Abar^T W; Qbar = phi' * Ybar
            if dW is not None:
                dW.baddbmm_(abT.transpose(1, 2), yT)
                if YQ is not None:
                    torch.linalg.vecdot(ybT, yT, dim=1, out=YQ[s])
        if dW is None:
            dW = torch.bmm(AbarT.view(1, Tq * k, N).transpose(1, 2), YT.view(1, Tq * k, N))
            YQ = YbarT.mul_(YT).sum(2) if tanh else None
        return _RNNLyapunov._state_backward(ctx, W, Pn, Pq, YQ, dW, QbarT)

    @staticmethod
    def _native_backward(ctx, dlam):
        """The tangent loop's backward in C (flossrepro/csrc/kernels.h, ``tangent_bwd``)."""
        W, Pn, Pq, Dm, Q0T, QT, RT = ctx.saved_tensors
        nonlinearity, transient_h, transient_q, t_sim = ctx.conf
        QbarT, dW, yq = native.tangent_bwd(W.contiguous(), Dm, Q0T, QT, RT, ctx.flags,
                                           (dlam / t_sim).contiguous(), transient_q, nonlinearity == "tanh")
        YQ = None if yq is None else yq.transpose(0, 1)  # [Tq, R, N]
        return _RNNLyapunov._state_backward(ctx, W, Pn, Pq, YQ, dW, QbarT)

    @staticmethod
    def _state_backward(ctx, W, Pn, Pq, YQ, dW, QbarT):
        """Collect the tangent loop's state gradient and run the state BPTT."""
        nonlinearity, transient_h, _, _ = ctx.conf
        Rn, N = W.shape[0], W.shape[1]
        # second-order term: d loss / d H[t] += phi''(H[t]) sum_k Ybar[s] Q_in[s] = -2 phi YQ (tanh)
        T = Pn.shape[0] + 1
        dH = torch.zeros(T, Rn, 1, N, dtype=W.dtype, device=W.device)
        if YQ is not None:
            dH[transient_h:] = YQ[:, :, None, :].mul(Pq).mul_(-2.0)
        # state BPTT: H[t+1] = W phi(H[t]) + drive[t] collects dH
        Gn, dh0 = _bptt(dH[1:], W, Pn, nonlinearity)
        dW += _outer_sum(Gn, Pn)
        ddrive = torch.cat([Gn[:, :, 0], torch.zeros_like(Gn[:1, :, 0])])
        return (dh0 + dH[0])[:, 0], dW, ddrive, QbarT.transpose(1, 2), None, None, None, None


def _reference_spectrum(model, inputs: Tensor, k: int, Q0: Tensor, s_ons: int,
                        transient_h: int, transient_q: int, h0: Tensor) -> Tensor:
    """Per-step autograd path; ``inputs: [T, R, S]``, ``h0: [R, n]`` -> ``[R, k]``."""
    T = inputs.shape[0]
    t_sim = T - transient_h - transient_q
    flags = _qr_schedule(T - transient_h, transient_q, s_ons)
    h = h0[:, None, :]
    Q = Q0
    logsum = 0.0
    gated = isinstance(model, _GatedRNN)  # the gated Jacobians read the input
    for t in range(T):
        s = t - transient_h
        if s >= 0:
            Q = model.jacobian_apply(h[:, 0], Q, inputs[t]) if gated else model.jacobian_apply(h[:, 0], Q)
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


class _RNNLyapunovLoss(torch.autograd.Function):
    """A per-member loss of the exponents, ``loss_fn(lambda) -> [R]``, with its gradient
    computed one member at a time in the forward (native kernels, vanilla RNNs, CPU).

    The exponents' backward needs every tangent step's ``Q`` and ``R``: 7 MB per member at
    ``N = 80, k = 75, T = 300``. :class:`_RNNLyapunov` keeps them for all members until the
    backward; here each member's forward is followed at once by its backward (``dL/dlambda``
    is known as soon as its ``lambda`` is: ``loss_fn`` acts on each member's row alone), so
    one member's buffers, hot in cache, serve the whole ensemble. The gradients of the
    inputs are kept and scaled by the upstream gradient of each member's loss in
    :meth:`backward`. Outputs: ``(loss [R], lambda [R, k])``; ``lambda`` is not differentiable
    here (use :func:`lyapunov_spectrum` for other uses of the exponents).
    """

    @staticmethod
    def forward(ctx, h0, W, drive, Q0, loss_fn, nonlinearity, s_ons, transient_h, transient_q):
        Rn, N, k = Q0.shape
        Wt, Pn, Pq, Dq, flags, t_sim = _trajectory(h0, W, drive, nonlinearity, s_ons, transient_h, transient_q)
        Tq = len(flags)
        Dm = Dq[:, :, 0].transpose(0, 1).contiguous()  # [R, Tq, N]
        Q0T, Wc = Q0.transpose(1, 2).contiguous(), W.contiguous()
        tanh = nonlinearity == "tanh"
        lam = torch.empty(Rn, k, dtype=W.dtype)
        loss = torch.empty(Rn, dtype=W.dtype)
        QbarT, dW = torch.empty(Rn, k, N, dtype=W.dtype), torch.empty(Rn, N, N, dtype=W.dtype)
        yq = torch.empty(Rn, Tq, N, dtype=W.dtype) if tanh else None
        for r in range(Rn):
            QT, RT = native.tangent_fwd(Wt[r:r + 1], Dm[r:r + 1], Q0T[r:r + 1], flags)
            lr = _exponents(RT.diagonal(dim1=-2, dim2=-1), flags, transient_q, t_sim)  # [1, k]
            with torch.enable_grad():
                lv = lr.detach().requires_grad_(True)
                lo = loss_fn(lv)
                (dlam,) = torch.autograd.grad(lo.sum(), lv)
            lam[r], loss[r] = lr[0], lo.detach()[0]
            qb, dw, y = native.tangent_bwd(Wc[r:r + 1], Dm[r:r + 1], Q0T[r:r + 1], QT, RT, flags,
                                           (dlam / t_sim).contiguous(), transient_q, tanh)
            QbarT[r], dW[r] = qb[0], dw[0]
            if tanh:
                yq[r] = y[0]
        ctx.conf = (nonlinearity, transient_h, transient_q, t_sim)
        YQ = None if yq is None else yq.transpose(0, 1)
        grads = _RNNLyapunov._state_backward(ctx, W, Pn, Pq, YQ, dW, QbarT)[:4]
        ctx.save_for_backward(*grads)
        ctx.mark_non_differentiable(lam)
        return loss, lam

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gloss, glam):
        dh0, dW, ddrive, dQ0 = ctx.saved_tensors
        g = gloss
        return (dh0 * g[:, None], dW * g[:, None, None], ddrive * g[None, :, None], dQ0 * g[:, None, None],
                None, None, None, None, None)


def lyapunov_loss(model, inputs: Tensor, k: int, loss_fn, *, s_ons: int = 1,
                  transient_h: int | None = None, transient_q: int | None = None,
                  h0: Tensor | None = None, q0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(loss_fn(lambda) [R], lambda [R, k])`` for the exponents of :func:`lyapunov_spectrum`
    (same arguments), with the loss differentiable.

    ``loss_fn`` maps ``[R, k] -> [R]`` member by member (row ``r`` of the result depends on
    row ``r`` of its argument only), e.g. :func:`flossrepro.engine.flossing.flossing_loss`. For vanilla
    RNNs on the native CPU path each member's gradient is computed right after its forward
    (:class:`_RNNLyapunovLoss`: one member's buffers instead of all members'); otherwise this is
    ``loss_fn(lyapunov_spectrum(...))``. The returned ``lambda`` is detached.
    """
    inputs, k, transient_h, transient_q, h0, q0 = _prepare(model, inputs, k, s_ons, transient_h,
                                                           transient_q, h0, q0)
    if isinstance(model, VanillaRNN) and native.available(model.W, inputs, h0, q0):
        drive = model.drive(inputs[:, :, None, :])[:, :, 0]
        return _RNNLyapunovLoss.apply(h0, model.W, drive, q0, loss_fn, model.nonlinearity, s_ons,
                                      transient_h, transient_q)
    lam = lyapunov_spectrum(model, inputs, k, s_ons=s_ons, transient_h=transient_h,
                            transient_q=transient_q, h0=h0, q0=q0)
    return loss_fn(lam), lam.detach()


def lyapunov_spectrum(model, inputs: Tensor, k: int, *, s_ons: int = 1,
                      transient_h: int | None = None, transient_q: int | None = None,
                      h0: Tensor | None = None, q0: Tensor | None = None,
                      fast: bool | None = None) -> Tensor:
    """First ``k`` Lyapunov exponents (per time step) of a model driven by ``inputs``.

    Args:
        model: :class:`VanillaRNN`, :class:`~flossrepro.engine.rate.RateRNN`, :class:`LSTM` or :class:`GRU` (any member count ``R``).
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
        fast: force (True) or forbid (False) the whole-sequence Function (vanilla RNNs:
            :class:`_RNNLyapunov`; rate networks: :mod:`flossrepro.engine.rate`; LSTM and GRU:
            :mod:`flossrepro.engine.gated`); default: fast. ``False`` runs the per-step autograd reference.
    Returns:
        ``[R, k]`` exponents sorted as the QR method orders them (descending up to
        estimation noise); differentiable with respect to the model's parameters.
    """
    inputs, k, transient_h, transient_q, h0, q0 = _prepare(model, inputs, k, s_ons, transient_h,
                                                           transient_q, h0, q0)
    is_vanilla = isinstance(model, VanillaRNN)
    from flossrepro.engine import gated as _gated  # LSTM and GRU: analytic batched Jacobians (flossrepro.engine.gated)
    is_rate = getattr(model, "kind", None) == "rate"
    is_gated = not is_vanilla and not is_rate and _gated.supports(model)
    if fast is None:
        fast = is_vanilla or is_gated or is_rate
    if fast and not (is_vanilla or is_gated or is_rate):
        raise ValueError("fast=True is only available for VanillaRNN, RateRNN, LSTM and GRU; use fast=None or False")
    if fast and is_rate:  # the leaky rate network (flossrepro.engine.rate): its own whole-sequence Function
        from flossrepro.engine.rate import rate_lyapunov
        return rate_lyapunov(model, inputs, q0, h0, s_ons, transient_h, transient_q)
    if fast and is_gated:
        T = inputs.shape[0]
        return _gated.gated_spectrum(model, inputs, k, q0, _qr_schedule(T - transient_h, transient_q, s_ons),
                                     transient_h, transient_q, T - transient_h - transient_q, h0)
    if fast:
        drive = model.drive(inputs[:, :, None, :])[:, :, 0]  # [T, R, N]
        return _RNNLyapunov.apply(h0, model.W, drive, q0, model.nonlinearity, s_ons, transient_h, transient_q)
    return _reference_spectrum(model, inputs, k, q0, s_ons, transient_h, transient_q, h0)


