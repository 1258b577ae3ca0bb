"""Initializers in the reference code's convention, one seed per member.

Member ``r`` is drawn only from its own generator (``seeds[r]``, stream ``"init"``), so
member ``r`` of an ensemble equals a single-member network initialized with ``seeds[r]``.

Recurrent weights (``N`` units):
- ``gaussian``: ``W_ij ~ N(gbar/N + mean, g^2/N)`` (the ReLU networks of the paper use
  ``mean=-0.1``);
- ``orthogonal``: ``W = g Q`` with ``Q`` Haar-orthogonal.

LSTM and GRU: every gate's recurrent block ``U_x`` is drawn the same way (the same ``g`` for
all gates of a member; Fig 6 draws it from ``U(0, 1)``), ``V ~ N(0, input_std^2)`` and
``b ~ bias_scale * U(0, 1)`` for every gate.
Reference choices for the rest: ``V ~ N(0, input_std^2)``, ``w_r ~ N(0, readout_std^2)``,
``b ~ bias_scale * U(0, 1)``, readout offset ``c = readout_offset``, and an initial state
drawn from ``N(0, 1)`` and relaxed for ``relax_steps`` input-free steps.
The gain ``g`` is one number, or drawn per member from ``U(g_range)`` (Fig 1, Fig 6).
The rate network of the low-rank study (:class:`flossrepro.engine.rate.RateRNN`) takes its own
initialisation (:func:`initialize_rate`, their code: ``W`` drawn as above, input and output
vectors N(0, 1) normalised to norm ``sqrt(N)``, ``W_out = m^T / N``; the input, readout, bias
and relaxation settings do not apply to it).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from flossrepro.engine.models import GRU, LSTM, VanillaRNN
from flossrepro.tasks.paper import member_generators

SCHEMES = ("gaussian", "orthogonal")


def _draw_g(gen: torch.Generator, g: float, g_range: Sequence[float] | None) -> float:
    if g_range is None:
        return float(g)
    lo, hi = float(g_range[0]), float(g_range[1])
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


def recurrent_matrix(gen: torch.Generator, n: int, scheme: str, g: float,
                     gbar: float = 0.0, mean: float = 0.0) -> Tensor:
    """One ``[n, n]`` float64 recurrent matrix drawn from ``gen``."""
    if scheme == "gaussian":
        return gbar / n + mean + g / n**0.5 * torch.randn(n, n, generator=gen, dtype=torch.float64)
    if scheme == "orthogonal":
        A = torch.randn(n, n, generator=gen, dtype=torch.float64)
        Q, R = torch.linalg.qr(A)
        Q = Q * torch.sign(torch.diagonal(R))  # Haar measure
        return g * Q
    raise ValueError(f"init.scheme={scheme!r} is not known; allowed: {list(SCHEMES)}")


def _unit_vectors(gen: torch.Generator, n: int, m: int) -> Tensor:
    """``[n, m]``: N(0, 1) columns normalised to norm ``sqrt(n)`` (float64)."""
    x = torch.randn(n, m, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=0, keepdim=True) * n ** 0.5


@torch.no_grad()
def initialize_rate(model, gens: Sequence[torch.Generator], gains: Sequence[float],
                    scheme: str = "gaussian", gbar: float = 0.0, mean: float = 0.0) -> None:
    """The rate network's (:class:`~flossrepro.engine.rate.RateRNN`) initialisation, member ``r``
    from ``gens[r]`` only (see the module docstring)."""
    N, S, O = model.n_hidden, model.n_in, model.n_out
    for r, (gen, g) in enumerate(zip(gens, gains)):
        model.W[r] = recurrent_matrix(gen, N, scheme, float(g), gbar, mean)
        model.V[r] = _unit_vectors(gen, N, S)
        model.w_r[r] = _unit_vectors(gen, N, O).T / N
    model.h0.zero_()


@torch.no_grad()
def initialize(model: VanillaRNN | LSTM | GRU, seeds: Sequence[int], scheme: str = "gaussian",
               g: float = 1.0, g_range: Sequence[float] | None = None, gbar: float = 0.0,
               mean: float = 0.0, input_std: float = 1.0, readout_std: float = 1.0,
               bias_scale: float = 0.1, readout_offset: float = 0.001,
               relax_steps: int = 100) -> Tensor:
    """Draw every parameter of ``model`` in place; returns the gains ``g: [R]`` used.

    ``seeds`` has one integer per member (``len(seeds) == model.n_members``).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"init.scheme={scheme!r} is not known; allowed: {list(SCHEMES)}")
    if len(seeds) != model.n_members:
        raise ValueError(f"got {len(seeds)} seeds for {model.n_members} members; give one seed per member")
    if g_range is not None and (len(g_range) != 2 or g_range[0] > g_range[1]):
        raise ValueError(f"init.g_range={list(g_range)} must be [low, high] with low <= high, or null")
    N, S, O = model.n_hidden, model.n_in, model.n_out
    gens = member_generators(list(seeds), "init")
    if getattr(model, "kind", None) == "rate":  # the low-rank study's rate network: its own scheme
        gains = [_draw_g(gen, g, g_range) for gen in gens]
        initialize_rate(model, gens, gains, scheme, gbar, mean)
        return torch.tensor(gains, dtype=torch.float64)
    gains = []
    for r, gen in enumerate(gens):
        gr = _draw_g(gen, g, g_range)
        gains.append(gr)
        if isinstance(model, (LSTM, GRU)):  # one N x N block per gate (4 for the LSTM, 3 for the GRU)
            G = model.U.shape[1] // N
            U = torch.cat([recurrent_matrix(gen, N, scheme, gr, gbar, mean) for _ in range(G)], 0)
            model.U[r] = U
            model.V[r] = input_std * torch.randn(G * N, S, generator=gen, dtype=torch.float64)
            model.b[r] = bias_scale * torch.rand(G * N, generator=gen, dtype=torch.float64)
        else:
            model.W[r] = recurrent_matrix(gen, N, scheme, gr, gbar, mean)
            model.V[r] = input_std * torch.randn(N, S, generator=gen, dtype=torch.float64)
            model.b[r] = bias_scale * torch.rand(N, generator=gen, dtype=torch.float64)
        model.w_r[r] = readout_std * torch.randn(O, N, generator=gen, dtype=torch.float64)
        model.c[r] = readout_offset
        model.h0[r] = torch.randn(model.state_dim, generator=gen, dtype=torch.float64)
    # relax the initial state without input (all members at once; each depends only on itself)
    if relax_steps > 0:
        if isinstance(model, (LSTM, GRU)):
            s = model.h0[:, None, :]
            x = torch.zeros(model.n_members, 1, S, dtype=s.dtype, device=s.device)
            for _ in range(relax_steps):
                s = model.step(s, x)
            model.h0.copy_(s[:, 0])
        else:
            model.h0.copy_(model.relax(model.h0.clone(), relax_steps))
    return torch.tensor(gains, dtype=torch.float64)
