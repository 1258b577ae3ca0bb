"""FLOP counts of the epochs the benchmark times (:mod:`flossrepro.jobs.workload`), and the
log-log slope its cost table fits.

FLOP model (multiply-add = 2 flops; elementwise work and the optimizer ignored)
-------------------------------------------------------------------------------
Training epoch (per member): forward ``2N^2 BT`` (recurrence) + ``2NSBT`` (input) +
``2NOBT`` (readout); backward ``4N^2 BT`` (state gradient ``g W`` and ``dW``) + ``2NSBT``
(``dV``) + ``4NOBT`` (``dH`` and ``dw_r``). Total ``6N^2 BT + 4NSBT + 6NOBT``.

Flossing epoch (per member), ``T_q = T_f - transient_h`` tangent steps, one QR each
(``s_ons = 1``), state ``N``, ``k`` exponents:

- forward per tangent step: Jacobian product ``(D Q)^T W^T``: ``2N^2 k``; Householder QR
  with explicit ``Q`` (geqrf + orgqr): ``4Nk^2 - 4k^3/3``;
- backward per tangent step: ``Ybar = W^T Abar`` and ``dW += Abar Y^T``: ``4N^2 k``; the QR
  pullback as the engine runs it (paper Eq 8 with the diagonal ``Rbar``, see
  ``flossrepro.engine.lyapunov._RNNLyapunov``): ``Qbar^T Q`` ``2Nk^2``, ``Q C`` ``2Nk^2``, the
  triangular solve ``Nk^2``;
- the state trajectory: ``2N^2`` forward, ``4N^2`` backward per step.

Total ``T_q (6N^2 k + 9Nk^2 - 4k^3/3) + 6N^2 T_f``: cubic, ``O(N k (N + k) T_f)``; with
``k = N`` it is ``~13.7 N^3 T_q``. The paper's Table 1 quotes ``O(N^2 B T)`` per training
epoch and ``O(N k^2 T_f)`` per flossing epoch (QR only); the Jacobian products add
``N^2 k T_f``, which is of the same order for ``k ~ N`` and dominates for ``k << N``.
"""
from __future__ import annotations

import math

from flossrepro.engine.lyapunov import default_transients

__all__ = ["train_flops", "floss_flops", "GATES", "state_dim", "gated_floss_flops", "gated_train_flops",
           "fit_exponent"]


def train_flops(N: int, B: int, T: int, S: int = 1, O: int = 1) -> float:
    """FLOPs of one training epoch of one member (module docstring)."""
    return 6.0 * N * N * B * T + 4.0 * N * S * B * T + 6.0 * N * O * B * T


def floss_flops(N: int, k: int, T: int, transient_h: int | None = None) -> float:
    """FLOPs of one flossing epoch of one member with ``s_ons = 1`` (module docstring)."""
    th = default_transients(T)[0] if transient_h is None else transient_h
    Tq = T - th
    per_step = 6.0 * N * N * k + 9.0 * N * k * k - 4.0 * k ** 3 / 3
    return Tq * per_step + 6.0 * N * N * T


GATES = {"tanh": 1, "relu": 1, "lstm": 4, "gru": 3}


def state_dim(arch: str, N: int) -> int:
    return 2 * N if arch == "lstm" else N


def gated_floss_flops(arch: str, N: int, k: int, T: int, transient_h: int | None = None) -> float:
    """FLOPs of one flossing epoch of an LSTM/GRU on the gated fast path (:mod:`flossrepro.engine.gated`),
    state dimension ``n``, ``G`` gate blocks: the tangent loop as the vanilla one (``6 n^2 k`` for
    ``D Q``, ``Dbar = Abar Q^T`` and ``D^T Abar``; ``9 n k^2 - 4k^3/3`` for the QR and its pullback
    per step), the state adjoint ``2 n^2`` per step, and the gate products ``U h`` of the state
    loop, its recomputation and its VJP, ``8 G N^2`` per step (forming ``D`` and its VJP,
    ``~10 n^2`` elementwise per step, is not counted)."""
    if arch not in ("lstm", "gru"):
        return floss_flops(N, k, T, transient_h)
    th = default_transients(T)[0] if transient_h is None else transient_h
    n, G, Tq = state_dim(arch, N), GATES[arch], T - th
    return Tq * (6.0 * n * n * k + 9.0 * n * k * k - 4.0 * k ** 3 / 3) + T * (2.0 * n * n + 8.0 * G * N * N)


def gated_train_flops(arch: str, N: int, B: int, T: int, S: int = 1, O: int = 1) -> float:
    """Training FLOPs with ``G`` gate blocks: ``6 G N^2 B T`` for the recurrence (forward and
    backward), the input and readout terms as :func:`train_flops`."""
    G = GATES.get(arch, 1)
    return 6.0 * G * N * N * B * T + 4.0 * G * N * S * B * T + 6.0 * N * O * B * T



def fit_exponent(xs, ys) -> float:
    """Least-squares slope of ``log y`` on ``log x``."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    num = sum((a - mx) * (b - my) for a, b in zip(lx, ly))
    den = sum((a - mx) ** 2 for a in lx)
    return num / den
