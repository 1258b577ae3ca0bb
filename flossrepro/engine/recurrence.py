"""The state loop of the leaky recurrent network ``h <- leak h + W phi(h) + drive[t]`` and its BPTT.

The vanilla RNN (paper Eq 9) is ``leak = 0``; the rate network of the low-rank study is
``leak = 1 - dt`` with ``dt W`` for ``W`` and ``dt W_in u`` for the drive. Both network classes
(:mod:`flossrepro.engine.models`, :mod:`flossrepro.engine.rate`) and the whole-sequence Lyapunov
Function (:mod:`flossrepro.engine.rnn_tangent`) run their trajectories through these loops.
On CPU in float32/float64 the loops run in the native C kernels (``run_states``/``bptt`` in
``csrc/kernels.h``, with the same leak term); elsewhere as PyTorch ops writing into
preallocated buffers.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from flossrepro.engine import native

__all__ = ["NONLINEARITIES", "check_nonlinearity"]


def _tanh_d(h: Tensor) -> Tensor:
    t = torch.tanh(h)
    return 1.0 - t * t


def _tanh_dd(h: Tensor) -> Tensor:
    t = torch.tanh(h)
    return -2.0 * t * (1.0 - t * t)


def _relu_d(h: Tensor) -> Tensor:
    return (h > 0).to(h.dtype)


def _zeros_like(h: Tensor) -> Tensor:
    return torch.zeros_like(h)


def _ones_like(h: Tensor) -> Tensor:
    return torch.ones_like(h)


# name -> (phi, phi', phi'')
NONLINEARITIES: dict[str, tuple[Callable[[Tensor], Tensor], ...]] = {
    "tanh": (torch.tanh, _tanh_d, _tanh_dd),
    "relu": (torch.relu, _relu_d, _zeros_like),
    "identity": (lambda h: h, _ones_like, _zeros_like),
}


def check_nonlinearity(name: str) -> str:
    if name not in NONLINEARITIES:
        raise ValueError(
            f"nonlinearity={name!r} is not known; allowed: {sorted(NONLINEARITIES)}"
        )
    return name


# name -> phi written into a preallocated buffer (the fast paths avoid allocating per step)
_PHI_OUT: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "tanh": lambda h, out: torch.tanh(h, out=out),
    "relu": lambda h, out: torch.clamp_min(h, 0.0, out=out),
    "identity": lambda h, out: out.copy_(h),
}


def _dphi_from_phi(nonlinearity: str, P: Tensor) -> Tensor:
    """``phi'(h)`` from ``P = phi(h)`` in one vectorized op (all three are functions of ``phi``)."""
    if nonlinearity == "tanh":
        return torch.addcmul(torch.ones((), dtype=P.dtype, device=P.device), P, P, value=-1.0)
    if nonlinearity == "relu":
        return (P > 0).to(P.dtype)
    return torch.ones_like(P)


def _run_states(h: Tensor, Wt: Tensor, drive: Tensor, nonlinearity: str,
                leak: float = 0.0) -> tuple[Tensor, Tensor]:
    """``P[t] = phi(H[t-1])``, ``H[t] = leak H[t-1] + P[t] W^T + drive[t]`` with ``H[-1] = h``.

    ``h: [R, B, N]``, ``Wt = W^T`` contiguous ``[R, N, N]``, ``drive: [T, R, B, N]`` ->
    ``(H, P)``, ``[T, R, B, N]`` views of member-major ``[R, T, B, N]`` buffers: then every
    member's states are one ``[T*B, N]`` matrix (the drive, the readout and ``dW`` are one
    bmm each without transposing copies), while a step's ``[R, B, N]`` slice is contiguous
    for ``R = 1``. Two ops per step writing into the buffers (``H`` starts as the drive):
    ``phi`` and an in-place ``baddbmm_`` (``R = 1``) or ``bmm`` + ``add_`` (``R > 1``, where
    the slice is strided over members and an in-place ``baddbmm_`` would loop over them),
    and a third, ``add_``, for a nonzero leak.
    """
    T, R, B, N = drive.shape
    if native.available(drive, h, Wt):  # the same loop in C (flossrepro/csrc/kernels.h)
        Hm, Pm = native.run_states(h.contiguous(), Wt.contiguous(), drive.transpose(0, 1).contiguous(), nonlinearity,
                                   leak=leak)
        return Hm.transpose(0, 1), Pm.transpose(0, 1)
    phi_out = _PHI_OUT[nonlinearity]
    Hm = torch.empty(R, T, B, N, dtype=drive.dtype, device=drive.device)
    Hm.copy_(drive.transpose(0, 1))
    Pm = torch.empty_like(Hm)
    tmp = None if R == 1 else torch.empty(R, B, N, dtype=drive.dtype, device=drive.device)
    leaky = leak != 0.0
    for hn, p in zip(Hm.unbind(1), Pm.unbind(1)):
        phi_out(h, p)
        if tmp is None:
            hn.baddbmm_(p, Wt)
        else:
            hn.add_(torch.bmm(p, Wt, out=tmp))
        if leaky:
            hn.add_(h, alpha=leak)
        h = hn
    return Hm.transpose(0, 1), Pm.transpose(0, 1)


def _bptt(dH: Tensor, W: Tensor, P: Tensor, nonlinearity: str, leak: float = 0.0) -> tuple[Tensor, Tensor]:
    """Backward of :func:`_run_states`: ``G[T-1] = dH[T-1]``,
    ``G[t-1] = dH[t-1] + leak G[t] + (G[t] W) * D[t]``.

    ``D[t] = phi'(H[t-1])``, computed from ``P[t] = phi(H[t-1])`` (as :func:`_run_states`
    returns it). Returns ``(G, dh)``: ``G: [T, R, B, N]`` (a view of a member-major buffer,
    as in :func:`_run_states`) the total gradient of each ``H[t]`` (= the gradient of
    ``drive[t]``) and ``dh = leak G[0] + (G[0] W) * D[0]`` that of the initial state. Two ops
    per step (three with a leak; ``G`` starts as a copy of ``dH``, updated in place), or the
    same loop in C.
    """
    T, R, B, N = P.shape
    if native.available(dH, W, P):
        Gm, dh = native.bptt(W.contiguous(), P.transpose(0, 1).contiguous(), dH.transpose(0, 1).contiguous(),
                             nonlinearity, leak=leak)
        return Gm.transpose(0, 1), dh
    Gm = torch.empty(R, T, B, N, dtype=P.dtype, device=P.device)
    Gm.copy_(dH.transpose(0, 1))
    D = _dphi_from_phi(nonlinearity, P)
    Gs, Ds = Gm.unbind(1), D.unbind(0)
    tmp = torch.empty_like(Gs[0])
    leaky = leak != 0.0
    for t in range(T - 1, 0, -1):
        torch.bmm(Gs[t], W, out=tmp)
        if leaky:
            Gs[t - 1].add_(Gs[t], alpha=leak)
        Gs[t - 1].addcmul_(tmp, Ds[t])
    dh = torch.bmm(Gs[0], W).mul_(Ds[0])
    if leaky:
        dh.add_(Gs[0], alpha=leak)
    return Gm.transpose(0, 1), dh


def _outer_sum(G: Tensor, P: Tensor) -> Tensor:
    """``sum_{t,b} G[t,r,b,:]^T P[t,r,b,:]`` for ``G, P: [T, R, B, N]`` -> ``[R, N, N]``, one bmm
    (no copies for member-major ``G`` and ``P`` as :func:`_run_states` and :func:`_bptt` make them)."""
    T, R, B, N = G.shape
    Gm = G.transpose(0, 1).reshape(R, T * B, N)
    Pm = P.transpose(0, 1).reshape(R, T * B, N)
    return torch.bmm(Gm.transpose(1, 2), Pm)
