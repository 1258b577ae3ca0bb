"""The benchmark's eager reference: a straightforward single-network vanilla RNN written the
plain PyTorch way (:class:`EagerRNN`: ``[N, N]`` parameters, a Python loop over time, autograd
through every step and through ``torch.linalg.qr``), its training and flossing epochs (the
engine's in :mod:`flossrepro.jobs.workload`), and its agreement with the engine
(:func:`consistency`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flossrepro.engine import lyapunov as _lyap
from flossrepro.engine.lyapunov import default_transients
from flossrepro.engine.models import VanillaRNN
from flossrepro.jobs.workload import CLIP, DELAY, LR, TASK, build_model
from flossrepro.tasks.paper import make_task, member_generators

__all__ = ["EagerRNN", "eager_train_epoch", "eager_floss_epoch", "consistency"]


class EagerRNN(nn.Module):
    """Straightforward single-network vanilla RNN (``h <- W tanh(h) + V x / S + b``,
    ``y = w_r h + c``): plain parameters, a Python loop over time, autograd everywhere."""

    def __init__(self, N: int, S: int, O: int):
        super().__init__()
        self.N, self.S = N, S
        self.W = nn.Parameter(torch.zeros(N, N))
        self.V = nn.Parameter(torch.zeros(N, S))
        self.b = nn.Parameter(torch.zeros(N))
        self.w_r = nn.Parameter(torch.zeros(O, N))
        self.c = nn.Parameter(torch.zeros(O))
        self.h0 = nn.Parameter(torch.zeros(N))

    @classmethod
    def from_member(cls, model: VanillaRNN, r: int = 0) -> "EagerRNN":
        m = cls(model.n_hidden, model.n_in, model.n_out)
        with torch.no_grad():
            for name in ("W", "V", "b", "w_r", "c", "h0"):
                getattr(m, name).copy_(getattr(model, name)[r])
        return m

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        return torch.tanh(h) @ self.W.T + (x @ self.V.T) / self.S + self.b

    def forward(self, x: Tensor) -> Tensor:
        """``x: [T, B, S]`` -> ``y: [T, B, O]``."""
        h = self.h0.expand(x.shape[1], self.N)
        ys = []
        for t in range(x.shape[0]):
            h = self.step(h, x[t])
            ys.append(h @ self.w_r.T + self.c)
        return torch.stack(ys)

    def lyapunov(self, x: Tensor, k: int, Q0: Tensor, transient_h: int, transient_q: int) -> Tensor:
        """First ``k`` exponents by the QR method with ``s_ons = 1``; ``x: [T, S]``.

        Same trajectory convention as the engine: the tangent step at ``t`` uses
        ``D[t] = W diag(tanh'(h[t]))`` with ``h[t+1] = step(h[t], x[t])``.
        """
        T = x.shape[0]
        t_sim = T - transient_h - transient_q
        h, Q = self.h0, Q0
        acc = torch.zeros(k, device=Q0.device)
        for t in range(T):
            s = t - transient_h
            if s >= 0:
                d = 1.0 - torch.tanh(h) ** 2
                Q, Rm = torch.linalg.qr(self.W @ (d[:, None] * Q))
                if s >= transient_q:
                    acc = acc + torch.log(torch.diagonal(Rm).abs())
            if t < T - 1:
                h = self.step(h, x[t])
        return acc / t_sim


def eager_train_epoch(N: int = 80, B: int = 16, T: int = 300, device: torch.device | str = "cpu"):
    """One training epoch of :class:`EagerRNN` (the engine's network, task and data; Adam, the
    gradient clipped to norm ``CLIP``)."""
    device = torch.device(device)
    task = make_task(TASK, delay=DELAY, seq_len=T, batch_size=B)
    model = EagerRNN.from_member(build_model(1, N, task.n_in, task.n_out, device=device)).to(device)
    gen = member_generators([0], "train")
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    mask = task.make_mask(T, device=device)

    def epoch():
        batch = task.sample(gen, device=device)
        x, y = batch.inputs[:, 0], batch.targets[:, 0]
        opt.zero_grad(set_to_none=True)
        out = model(x)
        F.binary_cross_entropy_with_logits(out[mask], y[mask]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()

    return epoch


def eager_floss_epoch(N: int = 80, k: int = 75, T: int = 300, device: torch.device | str = "cpu"):
    """One flossing epoch of :class:`EagerRNN` (``sum(lambda^2)`` of its first ``k`` exponents,
    default transients, Adam on ``W, V, b``)."""
    device = torch.device(device)
    task = make_task(TASK, delay=DELAY, seq_len=max(T, DELAY + 1), batch_size=1)
    model = EagerRNN.from_member(build_model(1, N, task.n_in, task.n_out, device=device)).to(device)
    gen = member_generators([0], "floss")
    opt = torch.optim.Adam([model.W, model.V, model.b], lr=LR)
    Q0 = _lyap.random_orthonormal(N, k, 1, dtype=torch.float32, device=device)[0]
    th, tq = default_transients(T)

    def epoch():
        x = task.sample_inputs(gen, batch_size=1, seq_len=T, device=device)[:, 0, 0]
        opt.zero_grad(set_to_none=True)
        lam = model.lyapunov(x, k, Q0, th, tq)
        (lam ** 2).sum().backward()
        opt.step()

    return epoch


def consistency(N: int = 80, k: int = 75, T: int = 55, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Max differences of the spectrum and of dL/dW between the engine and the eager
    reference (float32, one input sequence)."""
    device = torch.device(device)
    task = make_task(TASK, delay=DELAY, seq_len=max(T, DELAY + 1), batch_size=1)
    model = build_model(1, N, task.n_in, task.n_out, seed, device=device)
    eager = EagerRNN.from_member(model).to(device)
    x = task.sample_inputs(member_generators([seed], "floss"), batch_size=1, seq_len=T, device=device)[:, :, 0]
    th, tq = default_transients(T)
    lam = _lyap.lyapunov_spectrum(model, x, k)
    (lam ** 2).sum().backward()
    gW = model.W.grad[0]
    lam_e = eager.lyapunov(x[:, 0], k, _lyap.random_orthonormal(N, k, 1, dtype=torch.float32,
                                                                 device=device)[0], th, tq)
    (lam_e ** 2).sum().backward()
    return {"eager_max_abs_dlambda": float((lam.detach()[0] - lam_e.detach()).abs().max()),
            "eager_rel_dgradW": float((eager.W.grad - gW).norm() / gW.norm())}
