"""Per-core cost of training and flossing epochs: ``python -m flossrepro.bench [--quick]``.

Everything runs on one CPU thread (``torch.set_num_threads(1)``; the process pinned to one CPU,
:func:`pin_to_one_cpu`, unless ``--no-pin``) in float32 (``--device cuda``: the same epochs on a GPU). Times are medians
over repeated epochs after warm-up; competing variants (engine vs eager) are timed
round-robin, so that load from other processes hits them alike, and their ratio is the
median of the per-round ratios. Each timed epoch directly follows an untimed epoch of the
same variant (as in a training loop, epoch after epoch). Wall time is the headline; the thread's CPU time is
recorded too (on a loaded machine the two differ by the time the thread waited).

Measured (``R`` ensemble members; times per member where ``R > 1``):

- training epoch, as the trainer runs it (:func:`flossrepro.engine.flossing.train_step`): VanillaRNN tanh ``N=80``, batch
  ``B=16``, ``T=300``, task ``binary_xor`` (delay 10), fresh data every epoch; forward,
  per-member loss, finite check, masked ``sum().backward()``, gradient mask, training
  accuracy, per-member gradient clipping at 0.03, Adam (lr 1e-3). (The trainer's periodic
  diagnostics, e.g. singular values of ``dW`` every few epochs, are not included.)
- flossing epoch, as every job runs it (:func:`flossrepro.engine.flossing.floss_step`):
  ``N=80``, ``k=75``, batch 1, ``s_ons=1``, ``T_f in {300, 55}``, default transients
  (10 and ``ceil(T_f/10)``), inputs from ``Task.sample_inputs``.
- the same for an ensemble of ``R=20`` members.
- an eager reference written here (:class:`EagerRNN`: plain ``[N, N]`` parameters, a Python
  loop over time, autograd through every step and through ``torch.linalg.qr``).
- a cost table over ``N in {32, 80, 160, 320}`` (``k = N``) and ``k`` at ``N = 160``, with
  fitted log-log exponents, against the paper's Table 1 scaling.
- the engine's pure-PyTorch path (:func:`flossrepro.engine.native.disabled`) for the training and the
  ``T_f = 300`` flossing epoch, when the native kernels are in use (the engine's default on CPU).
- the flossing epoch's QR calls alone (``T_f - transient_h`` QRs of ``80 x 75``, with the QR
  the engine uses: the native kernel's, else ``torch.linalg.qr``), timed round-robin with
  it: the QR share of the epoch.
- single-thread matmul rate (1024^3 float32) and the small ``[80,80]x[80,75]`` matmul rate.
- the core's float32 peak (:mod:`flossrepro.perf.peak`): the best single-thread rate among PyTorch's
  BLAS (the matmul above), numpy's BLAS, XLA (when jax is installed) and the native kernels'
  FMA loop (``native.fma_peak_gflops`` where it exists); every epoch's GFLOP/s as a fraction of it.
- where the native kernels time their own GEMM (``native.gemm_gflops``): that GEMM and
  ``torch.mm`` at the engine's shapes (:data:`GEMM_SHAPES`), against the peak.
- the JAX peer (:mod:`flossrepro.perf.jax_peer`, optional extra ``peers``): the same training and
  flossing epochs in JAX (``lax.scan``, ``jit``, optax), timed round-robin with the engine's, its
  gradients first checked against the engine's in float64.
- LSTM and GRU flossing and training epochs next to the tanh network (:func:`gated_section`:
  Fig 6's shape N = 32, k = 1, T_f = 300; k = 32, T_f = 55; training B = 16, T = 300), with
  time ratios and time per FLOP relative to tanh (:func:`gated_floss_flops`).

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

import argparse
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flossrepro.engine import lyapunov as _lyap
from flossrepro.engine import native
from flossrepro.perf import peak as _peak
from flossrepro.engine.flossing import floss_step, flossing_parameters
from flossrepro.jobs.base import adam
from flossrepro.engine.flossing import train_step
from flossrepro.engine.init import initialize
from flossrepro.engine.lyapunov import default_transients
from flossrepro.engine.models import GRU, LSTM, VanillaRNN
from flossrepro.tasks.paper import make_task, member_generators

__all__ = ["main", "EagerRNN", "train_flops", "floss_flops", "run_benchmark", "TARGETS"]

TASK = "binary_xor"
DELAY = 10
LR = 1e-3
CLIP = 0.03

# the performance issue's anchors, measured on its machine: a straightforward eager PyTorch
# version (24 / 114 ms) and the arithmetic at that core's matmul rate (1.2 / 12 ms for
# 0.188 / 1.858 GFLOP, i.e. ~155 GFLOP/s)
ANCHOR = {"eager_train_epoch_ms": 24.0, "eager_floss_epoch_ms": 114.0, "matmul_gflops": 155.0}

# per core, unloaded machine (ms per epoch, single network unless stated)
TARGETS = {
    "train_epoch_ms": 6.5, "train_speedup_vs_eager": 3.5, "train_epoch_ms_goal": 3.6,
    "floss_epoch_ms": 70.0, "floss_speedup_vs_eager": 1.6, "floss_epoch_ms_goal": 36.0,
    "floss_epoch_ms_paper": 74.0,
    # fractions of the core's fp32 peak (peak_gflops) and the JAX peer's time over the engine's
    "train_fraction_of_peak_goal": 0.40, "floss_fraction_of_peak_goal": 0.50,
    "native_gemm_fraction_of_peak": 0.70,
    "jax_over_engine_train": 1.3, "jax_over_engine_floss": 2.0,
}

# the GEMMs the engine's native loops call (csrc/kernels.h; the training dW through native.bmm),
# (label, M, N, K, op(A), op(B)): row-major C[M,N] = op(A)[M,K] op(B)[K,N]. The backward passes
# hold W as well as W^T, so their "transposed" products are plain ones.
GEMM_SHAPES = (
    ("train fwd   H += P W^T        16x80 . 80x80", 16, 80, 80, "N", "N"),
    ("train bwd   G W               16x80 . 80x80", 16, 80, 80, "N", "N"),
    ("train bwd   dW = G^T P     80x4800 . 4800x80", 80, 80, 4800, "T", "N"),
    ("tangent     A^T = Y^T W^T     75x80 . 80x80", 75, 80, 80, "N", "N"),
    ("tangent bwd Ybar^T = Abar^T W 75x80 . 80x80", 75, 80, 80, "N", "N"),
    ("tangent bwd S = Qbar^T Q      75x80 . 80x75", 75, 75, 80, "N", "T"),
    ("tangent bwd Abar^T -= C Q^T   75x75 . 75x80", 75, 80, 75, "N", "N"),
    ("tangent bwd dW = Abar Y^T  80x1200 . 1200x80", 80, 80, 1200, "T", "N"),
)


# ---------------------------------------------------------------------------- FLOP model
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


# ---------------------------------------------------------------------------- eager reference
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


# ---------------------------------------------------------------------------- epochs
DEVICE = torch.device("cpu")  # where the epochs run (``--device``)


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _model(R: int, N: int, n_in: int = 1, n_out: int = 1, seed0: int = 0, arch: str = "tanh"):
    """An initialised R-member network: ``arch`` tanh (default), relu, linear, lstm or gru."""
    if arch in ("lstm", "gru"):
        m = (LSTM if arch == "lstm" else GRU)(R, N, n_in, n_out)
    else:
        m = VanillaRNN(R, N, n_in, n_out, nonlinearity={"linear": "identity"}.get(arch, arch))
    initialize(m, list(range(seed0, seed0 + R)))
    return m.to(DEVICE)


def _pytorch_path(epoch):
    """The epoch with the native C kernels switched off (:func:`flossrepro.engine.native.disabled`)."""
    def run():
        with native.disabled():
            epoch()
    return run


def engine_train_epoch(R: int = 1, N: int = 80, B: int = 16, T: int = 300, arch: str = "tanh"):
    """One training epoch as the trainer runs it (:func:`flossrepro.engine.flossing.train_step`, the
    training accuracy), minus the trainer's recording and diagnostics."""
    task = make_task(TASK, delay=DELAY, seq_len=T, batch_size=B)
    model = _model(R, N, task.n_in, task.n_out, arch=arch)
    gens = member_generators(list(range(R)), "train")
    params = list(model.parameters())
    opt = adam(params, lr=LR)  # as the trainer makes it

    def epoch():
        batch = task.sample(gens, device=DEVICE)
        _, out = train_step(model, task, batch, opt, params, clip=CLIP)
        task.metric(out, batch)

    return epoch


def eager_train_epoch(N: int = 80, B: int = 16, T: int = 300):
    task = make_task(TASK, delay=DELAY, seq_len=T, batch_size=B)
    model = EagerRNN.from_member(_model(1, N, task.n_in, task.n_out)).to(DEVICE)
    gen = member_generators([0], "train")
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    mask = task.make_mask(T, device=DEVICE)

    def epoch():
        batch = task.sample(gen, device=DEVICE)
        x, y = batch.inputs[:, 0], batch.targets[:, 0]
        opt.zero_grad(set_to_none=True)
        out = model(x)
        F.binary_cross_entropy_with_logits(out[mask], y[mask]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()

    return epoch


def engine_floss_epoch(R: int = 1, N: int = 80, k: int = 75, T: int = 300, arch: str = "tanh", s_ons: int = 1):
    """One flossing epoch as the jobs run it (:func:`flossrepro.engine.flossing.floss_step`; default
    transients, reorthonormalization every ``s_ons`` steps)."""
    task = make_task(TASK, delay=DELAY, seq_len=max(T, DELAY + 1), batch_size=1)
    model = _model(R, N, task.n_in, task.n_out, arch=arch)
    gens = member_generators(list(range(R)), "floss")
    opt = adam(flossing_parameters(model), lr=LR)  # as the job makes it

    def epoch():
        x = task.sample_inputs(gens, batch_size=1, seq_len=T, device=DEVICE)[:, :, 0]
        floss_step(model, opt, x, k, s_ons=s_ons)

    return epoch


def eager_floss_epoch(N: int = 80, k: int = 75, T: int = 300):
    task = make_task(TASK, delay=DELAY, seq_len=max(T, DELAY + 1), batch_size=1)
    model = EagerRNN.from_member(_model(1, N, task.n_in, task.n_out)).to(DEVICE)
    gen = member_generators([0], "floss")
    opt = torch.optim.Adam([model.W, model.V, model.b], lr=LR)
    Q0 = _lyap.random_orthonormal(N, k, 1, dtype=torch.float32, device=DEVICE)[0]
    th, tq = default_transients(T)

    def epoch():
        x = task.sample_inputs(gen, batch_size=1, seq_len=T, device=DEVICE)[:, 0, 0]
        opt.zero_grad(set_to_none=True)
        lam = model.lyapunov(x, k, Q0, th, tq)
        (lam ** 2).sum().backward()
        opt.step()

    return epoch


# ---------------------------------------------------------------------------- timing
def time_round_robin(fns: dict, warmup: int, repeats: int, budget_s: float, lead_in: bool = True) -> dict:
    """Median/min/quartiles (ms) of each epoch function, called in turn each round.

    With ``lead_in`` each timed call comes right after an untimed call of the same function,
    so that it finds the caches as consecutive epochs of a training run leave them (not as
    the other variant of the round left them); the rounds still interleave the variants.

    Stops after ``repeats`` rounds, or earlier (but after >= 3 rounds) once ``budget_s``
    seconds are spent; ``paired_ratio_to_<first>`` is the median per-round ratio to the
    first function; ``cpu_median_ms`` the median CPU time of the calling thread.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    _sync()
    ts = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    t_start = time.perf_counter()
    for i in range(repeats):
        for name, f in fns.items():
            if lead_in:
                f()  # untimed: the timed epoch follows one of its own kind, as in a training loop
                _sync()
            c0, t0 = time.thread_time(), time.perf_counter()
            f()
            _sync()
            ts[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
        if i + 1 >= 3 and time.perf_counter() - t_start > budget_s:
            break
    first = next(iter(fns))
    out = {}
    for name, v in ts.items():
        s = sorted(v)
        q = lambda p: s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]
        ratios = sorted(a / b for a, b in zip(v, ts[first]))
        out[name] = {"median_ms": 1e3 * q(0.5), "min_ms": 1e3 * s[0], "p25_ms": 1e3 * q(0.25),
                     "p75_ms": 1e3 * q(0.75), "n": len(v),
                     "cpu_median_ms": 1e3 * sorted(cpu[name])[len(v) // 2],
                     "paired_ratio_to_" + first: ratios[len(ratios) // 2]}
    return out


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of an ``n^3`` float32 ``torch`` matmul, median of ``repeats`` calls."""
    return matmul_rates(n, repeats)["gflops"]


def matmul_rates(n: int = 1024, repeats: int = 5) -> dict:
    """``{"gflops": median, "best_gflops": best}`` of ``repeats`` ``n^3`` float32 ``torch`` matmuls."""
    a, b = torch.randn(n, n, device=DEVICE), torch.randn(n, n, device=DEVICE)
    a @ b
    _sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return {"gflops": 2.0 * n ** 3 / ts[len(ts) // 2] / 1e9, "best_gflops": 2.0 * n ** 3 / ts[0] / 1e9}


def small_bmm_gflops(R: int = 1, N: int = 80, k: int = 75, repeats: int = 7, inner: int = 200) -> float:
    W, Q = torch.randn(R, N, N, device=DEVICE), torch.randn(R, N, k, device=DEVICE)
    torch.bmm(W, Q)
    _sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.bmm(W, Q)
        _sync()
        ts.append((time.perf_counter() - t0) / inner)
    return 2.0 * R * N * N * k / sorted(ts)[len(ts) // 2] / 1e9


def qr_us(n: int = 80, k: int = 75, repeats: int = 9, inner: int = 50) -> dict:
    """Time (us) of one ``torch.linalg.qr`` of an ``[n, k]`` float32 matrix: median and
    best of ``repeats`` batches of ``inner`` calls."""
    A = torch.randn(1, n, k, device=DEVICE)
    torch.linalg.qr(A)
    _sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.linalg.qr(A)
        _sync()
        ts.append((time.perf_counter() - t0) / inner)
    ts.sort()
    return {"median_us": 1e6 * ts[len(ts) // 2], "min_us": 1e6 * ts[0]}


def qr_calls(n_calls: int = 290, n: int = 80, k: int = 75):
    """``n_calls`` QRs of an ``[n, k]`` float32 matrix, as the engine does them: the native
    kernel's Householder QR (one C call each) when the native kernels are in use, else
    ``torch.linalg.qr``. Returns ``(run, label)``."""
    A = torch.randn(1, n, k)
    if DEVICE.type == "cpu" and native.available(A):
        aT, rT, tau = A[0].t().contiguous(), torch.empty(k, k), torch.empty(k + n)
        f, pa, pr, pt = native._fn("qr", torch.float32), native._p(aT), native._p(rT), native._p(tau)

        def run_native(bufs=(aT, rT, tau)):  # the buffers live as long as the closure
            for _ in range(n_calls):
                f(1, n, k, pa, pr, pt)

        return run_native, "native Householder QR"
    A = A.to(DEVICE)

    def run():
        for _ in range(n_calls):
            torch.linalg.qr(A)

    return run, "torch.linalg.qr"


def torch_mm_gflops(M: int, N: int, K: int, ta: str = "N", tb: str = "N", repeats: int = 7,
                    inner: int = 500) -> float:
    """GFLOP/s of ``torch.mm`` (into a preallocated output) for ``C[M,N] = op(A) op(B)``, ``op`` the
    identity (``"N"``) or the transpose (``"T"``, of a stored ``[K, M]`` / ``[N, K]`` matrix)."""
    A = torch.randn(M, K, device=DEVICE) if ta == "N" else torch.randn(K, M, device=DEVICE).t()
    B = torch.randn(K, N, device=DEVICE) if tb == "N" else torch.randn(N, K, device=DEVICE).t()
    C = torch.empty(M, N, device=DEVICE)
    torch.mm(A, B, out=C)
    _sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(A, B, out=C)
        _sync()
        ts.append((time.perf_counter() - t0) / inner)
    return 2.0 * M * N * K / sorted(ts)[len(ts) // 2] / 1e9


def gemm_shapes(peak: float, quick: bool = False) -> list | None:
    """The native kernels' own GEMM (``native.gemm_gflops(M, N, K, ta, tb)``, timed in C) and
    ``torch.mm`` at the engine's shapes (:data:`GEMM_SHAPES`) with their fractions of ``peak``;
    ``None`` when the native module has no ``gemm_gflops``."""
    gemm = getattr(native, "gemm_gflops", None)
    if gemm is None or DEVICE.type != "cpu":
        return None
    rows = []
    for label, M, N, K, ta, tb in GEMM_SHAPES:
        try:
            g = gemm(M, N, K, ta, tb)
            g = float(g) if g is not None else None
        except Exception as e:  # noqa: BLE001 - a kernel that cannot run here is reported, not fatal
            g, err = None, f"{type(e).__name__}: {e}"
        else:
            err = None
        t = torch_mm_gflops(M, N, K, ta, tb, 3 if quick else 7)
        rows.append({"label": label, "M": M, "N": N, "K": K, "ta": ta, "tb": tb, "native_gflops": g,
                     "torch_gflops": t, "native_fraction_of_peak": g / peak if g else None,
                     "torch_fraction_of_peak": t / peak, **({"native_error": err} if err else {})})
    return rows


def _installed(module: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None (import blocked)
        return False


def peak_section(torch_gflops: float, log=print) -> dict:
    """The core's float32 peak (:mod:`flossrepro.perf.peak`): every candidate with its source, the
    largest as ``peak_gflops`` / ``peak_source``; ``torch_gflops`` is the torch matmul's best rate.
    Each candidate is the best of a few timed calls (load only slows a call down: a median
    would lower the peak on a busy machine and flatter the fractions). On a GPU only the large
    matmul counts."""
    cands = {"torch_blas": torch_gflops}
    info = {"torch_blas": {"gflops": torch_gflops, "library": f"torch {torch.__version__}"
                           + (" (MKL)" if torch.backends.mkl.is_available() else "")}}
    if DEVICE.type == "cpu":
        info["numpy_blas"] = _peak.measure_subprocess("numpy")
        info["xla"] = (_peak.measure_subprocess("xla") if _installed("jax")
                       else {"gflops": None, "error": "jax not installed"})
        fma = getattr(native, "fma_peak_gflops", None)
        if fma is None:
            info["native_fma"] = {"gflops": None, "error": "native.fma_peak_gflops not in this version"}
        else:
            try:
                v = fma()
                info["native_fma"] = {"gflops": None if v is None else float(v), "library": "flossrepro.engine.native",
                                      **({"error": "native kernels not built"} if v is None else {})}
            except Exception as e:  # noqa: BLE001
                info["native_fma"] = {"gflops": None, "error": f"{type(e).__name__}: {e}"}
        for k in ("numpy_blas", "xla"):
            cands[k] = info[k].get("best_gflops")
        cands["native_fma"] = info["native_fma"].get("gflops")
    peak, src = _peak.choose_peak(cands, {k: v.get("cpu_over_wall") for k, v in info.items()})
    if peak is None:  # cannot happen while the torch matmul ran; keep the report going
        peak, src = torch_gflops, "torch_blas"
    log("fp32 peak, 1 thread: " + ", ".join(f"{k} {'n/a' if v is None else f'{v:.1f}'}" for k, v in cands.items())
        + f" GFLOP/s -> {peak:.1f} ({src})")
    return {"peak_candidates_gflops": cands, "peak_candidates": info, "peak_gflops": peak, "peak_source": src}


def jax_peer():
    """:mod:`flossrepro.perf.jax_peer` when jax and optax are installed (and on CPU), else ``None``."""
    if DEVICE.type != "cpu":
        return None
    from flossrepro.perf import jax_peer as bench_jax
    return bench_jax if bench_jax.available() else None


def process_cpu_over_wall(fn, n: int = 3) -> float:
    """The process's CPU time over wall time during ``n`` calls of ``fn`` (every thread counts:
    above 1 means more than one core was busy)."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def fit_exponent(xs, ys) -> float:
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    num = sum((a - mx) * (b - my) for a, b in zip(lx, ly))
    den = sum((a - mx) ** 2 for a in lx)
    return num / den


def consistency(N: int = 80, k: int = 75, T: int = 55, seed: int = 0) -> dict:
    """Max differences of the spectrum and of dL/dW between the engine and the eager
    reference (float32, one input sequence)."""
    task = make_task(TASK, delay=DELAY, seq_len=max(T, DELAY + 1), batch_size=1)
    model = _model(1, N, task.n_in, task.n_out, seed)
    eager = EagerRNN.from_member(model).to(DEVICE)
    x = task.sample_inputs(member_generators([seed], "floss"), batch_size=1, seq_len=T, device=DEVICE)[:, :, 0]
    th, tq = default_transients(T)
    lam = _lyap.lyapunov_spectrum(model, x, k)
    (lam ** 2).sum().backward()
    gW = model.W.grad[0]
    lam_e = eager.lyapunov(x[:, 0], k, _lyap.random_orthonormal(N, k, 1, dtype=torch.float32,
                                                                 device=DEVICE)[0], th, tq)
    (lam_e ** 2).sum().backward()
    return {"eager_max_abs_dlambda": float((lam.detach()[0] - lam_e.detach()).abs().max()),
            "eager_rel_dgradW": float((eager.W.grad - gW).norm() / gW.norm())}


# ---------------------------------------------------------------------------- environment
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "") if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _loadavg():
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _native_isa() -> str | None:
    """``native.isa()`` where the native module has it (the instruction set its kernels use)."""
    f = getattr(native, "isa", None)
    try:
        return None if f is None else f()
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def environment(threads: int) -> dict:
    return {
        "torch_version": torch.__version__, "python": sys.version.split()[0],
        "threads": torch.get_num_threads(), "threads_requested": threads,
        "machine": {"cpu_model": _cpu_model(), "processor": platform.processor(),
                    "platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "isa": _peak.cpu_isa(), "loadavg_at_start": _loadavg(),
                    "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
        "blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "device": str(DEVICE),
        "gpu": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None,
        "native": native.status() if DEVICE.type == "cpu" else "not used on " + DEVICE.type,
        "native_isa": _native_isa(),
        "dtype": "float32",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }


# ---------------------------------------------------------------------------- driver
def run_benchmark(quick: bool = False, threads: int = 1, log=print) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t_all = time.perf_counter()
    res = {"quick": quick, **environment(threads), "targets": dict(TARGETS)}
    W, REP, BUD = (1, 5, 1.5) if quick else (2, 25, 8.0)   # warm-up, max repeats, s per group
    N, B, T, K, R = 80, 16, 300, 75, 20
    sections = res["section_s"] = {}
    t_sec = [time.perf_counter()]
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # first optimizer imports torch._dynamo (~3 s)

    def section(name):
        now = time.perf_counter()
        sections[name] = now - t_sec[0]
        t_sec[0] = now

    mm = matmul_rates(1024 if DEVICE.type == "cpu" else 8192, 3 if quick else 7)
    res["matmul_gflops"], res["matmul_best_gflops"] = mm["gflops"], mm["best_gflops"]
    res["small_bmm_gflops_80x80x75"] = small_bmm_gflops()
    qr = qr_us()
    res["torch_qr_80x75_us"], res["torch_qr_80x75_min_us"] = qr["median_us"], qr["min_us"]
    log(f"matmul 1024^3 float32, 1 thread: {res['matmul_gflops']:.1f} GFLOP/s; "
        f"bmm [80,80]x[80,75]: {res['small_bmm_gflops_80x80x75']:.1f} GFLOP/s; "
        f"torch.linalg.qr 80x75: {res['torch_qr_80x75_us']:.0f} us")
    section("startup_and_rates")
    res.update(peak_section(res["matmul_best_gflops"], log))
    section("peak")
    res["consistency"] = consistency()
    log("consistency (float32, T_f=55): " + ", ".join(f"{k} {v:.1e}" for k, v in res["consistency"].items()))
    section("consistency")

    # -- the JAX peer: gradients against the engine's (float64), then its epochs compiled -----
    jx = jax_peer()
    jax_fns = {}
    if jx is None:
        from flossrepro.perf import jax_peer as bench_jax
        # on a GPU the peer is not run (the JAX epochs are CPU, single-thread comparisons)
        res["jax"] = {"installed": False, "error": bench_jax.IMPORT_ERROR} if DEVICE.type == "cpu" else None
        res["jax_grad_check"] = None
    else:
        res["jax"] = {"installed": True, "version": jx.version(), "xla_flags": os.environ.get("XLA_FLAGS"),
                      "threads_limited_before_import": jx.THREADS_LIMITED}
        try:
            res["jax_grad_check"] = jx.grad_check(N, B, T, K, (T, 55))
        except Exception as e:  # noqa: BLE001 - reported; the timings still run
            res["jax_grad_check"] = {"error": f"{type(e).__name__}: {e}", "max_rel_diff": None}
        log(f"JAX peer ({res['jax']['version']}): gradients vs engine, float64, max rel diff "
            f"{res['jax_grad_check'].get('max_rel_diff')}")
        jax_fns = {"train": jx.jax_train_epoch(N, B, T), "floss_T300": jx.jax_floss_epoch(N, K, T),
                   "floss_T55": jx.jax_floss_epoch(N, K, 55)}
        for f in jax_fns.values():  # jit compilation, outside the timings
            f()
        res["jax"]["cpu_over_wall"] = process_cpu_over_wall(jax_fns["floss_T55"], 5)
        section("jax_check_and_compile")
    peer = lambda name: {"jax": jax_fns[name]} if jax_fns else {}

    # -- single network vs eager vs ensemble (per member), round-robin ----------------
    # on CPU with the native kernels, the engine's pure-PyTorch path too (as on a machine
    # where they cannot be built)
    with_torch_path = DEVICE.type == "cpu" and native.enabled()
    res["pytorch_path_timed"] = with_torch_path
    extra = lambda f: {"engine_pytorch": _pytorch_path(f)} if with_torch_path else {}
    tr = time_round_robin({"engine": engine_train_epoch(1, N, B, T), "eager": eager_train_epoch(N, B, T),
                           "ensemble": engine_train_epoch(R, N, B, T),
                           **extra(engine_train_epoch(1, N, B, T)), **peer("train")}, W, REP, BUD)
    section("train")
    # T_f = 55 first: it warms up the same code paths for the T_f = 300 group
    f55 = time_round_robin({"engine": engine_floss_epoch(1, N, K, 55), "eager": eager_floss_epoch(N, K, 55),
                            "ensemble": engine_floss_epoch(R, N, K, 55), **peer("floss_T55")}, W, REP, BUD)
    section("floss_T55")
    n_qr = res["qr_per_floss_epoch"] = T - default_transients(T)[0]
    qr_run, res["qr_kind"] = qr_calls(n_qr, N, K)
    fl = time_round_robin({"engine": engine_floss_epoch(1, N, K, T), "eager": eager_floss_epoch(N, K, T),
                           "ensemble": engine_floss_epoch(R, N, K, T), "qr_only": qr_run,
                           **extra(engine_floss_epoch(1, N, K, T)), **peer("floss_T300")},
                          0 if quick else 1, 2 if quick else 15, 2 * BUD + 4)
    section("floss_T300")
    res["timings"] = {"train": tr, "floss_T300": fl, "floss_T55": f55}
    res["train_epoch_ms"] = tr["engine"]["median_ms"]
    res["eager_train_epoch_ms"] = tr["eager"]["median_ms"]
    res["floss_epoch_ms"] = fl["engine"]["median_ms"]
    res["eager_floss_epoch_ms"] = fl["eager"]["median_ms"]
    res["floss_epoch_ms_tf55"] = f55["engine"]["median_ms"]
    if with_torch_path:
        res["pytorch_path_train_epoch_ms"] = tr["engine_pytorch"]["median_ms"]
        res["pytorch_path_floss_epoch_ms"] = fl["engine_pytorch"]["median_ms"]
    res["eager_floss_epoch_ms_tf55"] = f55["eager"]["median_ms"]
    res["speedup_engine_over_eager"] = {  # medians of the paired per-round ratios
        "train": tr["eager"]["paired_ratio_to_engine"],
        "floss_T300": fl["eager"]["paired_ratio_to_engine"],
        "floss_T55": f55["eager"]["paired_ratio_to_engine"]}
    # the JAX peer: its time over the engine's, median of the paired per-round ratios
    for key, g in (("jax_train_ratio", tr), ("jax_floss_ratio", fl), ("jax_floss_ratio_tf55", f55)):
        res[key] = g["jax"]["paired_ratio_to_engine"] if "jax" in g else None
    res["ensemble_members"] = R
    res["ensemble_train_epoch_ms_per_member"] = tr["ensemble"]["median_ms"] / R
    res["ensemble_floss_epoch_ms_per_member"] = fl["ensemble"]["median_ms"] / R
    res["ensemble_floss_epoch_ms_per_member_tf55"] = f55["ensemble"]["median_ms"] / R
    res["ensemble_per_member_over_single"] = {  # paired: (ensemble epoch / R) / single epoch
        "train": tr["ensemble"]["paired_ratio_to_engine"] / R,
        "floss_T300": fl["ensemble"]["paired_ratio_to_engine"] / R,
        "floss_T55": f55["ensemble"]["paired_ratio_to_engine"] / R}

    # -- FLOPs -----------------------------------------------------------------------
    flops = {"train_epoch": train_flops(N, B, T), "floss_epoch": floss_flops(N, K, T),
             "floss_epoch_tf55": floss_flops(N, K, 55)}
    res["flops"] = flops
    gf = lambda f, ms: f / (ms * 1e-3) / 1e9
    res["gflops_per_s"] = {
        "train": gf(flops["train_epoch"], res["train_epoch_ms"]),
        "eager_train": gf(flops["train_epoch"], res["eager_train_epoch_ms"]),
        "floss": gf(flops["floss_epoch"], res["floss_epoch_ms"]),
        "eager_floss": gf(flops["floss_epoch"], res["eager_floss_epoch_ms"]),
        "floss_tf55": gf(flops["floss_epoch_tf55"], res["floss_epoch_ms_tf55"]),
        "ensemble_train": gf(flops["train_epoch"], res["ensemble_train_epoch_ms_per_member"]),
        "ensemble_floss": gf(flops["floss_epoch"], res["ensemble_floss_epoch_ms_per_member"]),
    }
    for name, g, key in (("jax_train", tr, "train_epoch"), ("jax_floss", fl, "floss_epoch"),
                         ("jax_floss_tf55", f55, "floss_epoch_tf55")):
        if "jax" in g:
            res["gflops_per_s"][name] = gf(flops[key], g["jax"]["median_ms"])
    # against the core's peak (peak_section), and against the torch matmul as before
    res["fraction_of_peak"] = {k: v / res["peak_gflops"] for k, v in res["gflops_per_s"].items()}
    res["fraction_of_torch_matmul"] = {k: v / res["matmul_gflops"] for k, v in res["gflops_per_s"].items()}
    # time at the peak rate: the arithmetic limit of this core
    res["arithmetic_limit_ms"] = {k: 1e3 * flops[f] / (res["peak_gflops"] * 1e9)
                                  for k, f in (("train", "train_epoch"), ("floss", "floss_epoch"))}
    res["gemm_shapes"] = gemm_shapes(res["peak_gflops"], quick)
    section("gemm_shapes")
    # the epoch's QR calls alone, timed round-robin with the epochs
    res["qr_share_of_floss_epoch"] = fl["qr_only"]["paired_ratio_to_engine"]

    # -- scaling table ---------------------------------------------------------------
    Ns = [32, 80, 160] if quick else [32, 80, 160, 320]
    TF = 55
    rows = []
    for n in Ns:
        t1 = time_round_robin({"e": engine_train_epoch(1, n, B, T)}, 1, 3 if quick else 5, BUD, False)["e"]
        t2 = time_round_robin({"e": engine_floss_epoch(1, n, n, TF)}, 1, 3 if quick else 5, BUD, False)["e"]
        rows.append({"N": n, "k": n, "B": B, "T": T, "T_f": TF, "train_ms": t1["median_ms"],
                     "floss_ms": t2["median_ms"], "train_flops": train_flops(n, B, T),
                     "floss_flops": floss_flops(n, n, TF)})
    kN = 160
    ks = [20, 160] if quick else [10, 20, 40, 80, 160]
    krows = []
    for k in ks:
        t2 = time_round_robin({"e": engine_floss_epoch(1, kN, k, TF)}, 1, 3 if quick else 5, BUD, False)["e"]
        krows.append({"N": kN, "k": k, "T_f": TF, "floss_ms": t2["median_ms"],
                      "floss_flops": floss_flops(kN, k, TF)})
    section("scaling")
    for r in rows + krows:
        r["train_gflops_per_s"] = r["train_flops"] / r["train_ms"] / 1e6 if "train_ms" in r else None
        r["floss_gflops_per_s"] = r["floss_flops"] / r["floss_ms"] / 1e6
    xN = [r["N"] for r in rows]
    top = slice(-2, None)
    res["scaling"] = {
        "rows_N": rows, "rows_k": krows,
        "train_exponent_N": fit_exponent(xN, [r["train_ms"] for r in rows]),
        "train_exponent_N_top2": fit_exponent(xN[top], [r["train_ms"] for r in rows][top]),
        "train_exponent_N_flop_model": fit_exponent(xN, [r["train_flops"] for r in rows]),
        "floss_exponent_N_k_eq_N": fit_exponent(xN, [r["floss_ms"] for r in rows]),
        "floss_exponent_N_k_eq_N_top2": fit_exponent(xN[top], [r["floss_ms"] for r in rows][top]),
        "floss_exponent_N_flop_model": fit_exponent(xN, [r["floss_flops"] for r in rows]),
        "floss_exponent_k_at_N160": fit_exponent(ks, [r["floss_ms"] for r in krows]),
        "floss_exponent_k_top2": fit_exponent(ks[top], [r["floss_ms"] for r in krows][top]),
        "floss_exponent_k_flop_model": fit_exponent(ks, [r["floss_flops"] for r in krows]),
        "paper_table1": {"train": "N^2 B T (exponent 2 in N)",
                         "floss": "N k^2 T_f (exponent 3 in N at k = N; 2 in k at fixed N)"},
    }
    # -- gated networks (LSTM, GRU) against the vanilla network, round-robin ------------------
    section("scaling")
    res["gated"] = gated_section(quick, BUD)
    section("gated")
    # the anchors were measured on another core: the same-run eager versions give the
    # ratio of the two machines' speed, which scales the absolute targets to this one
    res["anchor"] = dict(ANCHOR)
    res["machine_factor_vs_anchor"] = {
        "train": res["eager_train_epoch_ms"] / ANCHOR["eager_train_epoch_ms"],
        "floss": res["eager_floss_epoch_ms"] / ANCHOR["eager_floss_epoch_ms"],
        "matmul": ANCHOR["matmul_gflops"] / res["matmul_gflops"]}
    res["target_check"] = check_targets(res) if DEVICE.type == "cpu" else {}
    res["machine"]["loadavg_at_end"] = _loadavg()
    res["total_benchmark_s"] = time.perf_counter() - t_all
    return res


def gated_section(quick: bool, budget: float) -> dict:
    """LSTM and GRU flossing and training epochs next to the tanh network: at the Fig 6 shape
    (N = 32 hidden units, k = 1, T_f = 300), with k = 32 (T_f = 55), and training (B = 16, T = 300);
    time ratios to tanh (paired, round-robin) and GFLOP/s under each engine's FLOP model."""
    rows = []
    archs = ("tanh", "lstm", "gru")
    for label, kind, N, k, T in (("floss N=32 k=1 T_f=300 (Fig 6)", "floss", 32, 1, 300),
                                 ("floss N=32 k=32 T_f=55", "floss", 32, 32, 55),
                                 ("train N=32 B=16 T=300", "train", 32, None, 300)):
        fns = {a: (engine_floss_epoch(1, N, k, T, arch=a) if kind == "floss" else engine_train_epoch(1, N, 16, T, arch=a))
               for a in archs}
        t = time_round_robin(fns, 1, 3 if quick else 9, budget)
        for a in archs:
            fl = (gated_floss_flops(a, N, k, T) if kind == "floss" else gated_train_flops(a, N, 16, T))
            rows.append({"label": label, "kind": kind, "arch": a, "N": N, "n": state_dim(a, N), "k": k, "T": T,
                         "ms": t[a]["median_ms"], "cpu_ms": t[a]["cpu_median_ms"],
                         "ratio_to_tanh": t[a]["paired_ratio_to_tanh"],
                         "flops": fl, "gflops_per_s": fl / (t[a]["median_ms"] * 1e-3) / 1e9,
                         "cpu_gflops_per_s": fl / (t[a]["cpu_median_ms"] * 1e-3) / 1e9})
    for r in rows:
        base = next(x for x in rows if x["label"] == r["label"] and x["arch"] == "tanh")
        r["time_per_flop_vs_tanh"] = base["gflops_per_s"] / r["gflops_per_s"]
        r["cpu_ratio_to_tanh"] = r["cpu_ms"] / base["cpu_ms"]
        r["cpu_time_per_flop_vs_tanh"] = base["cpu_gflops_per_s"] / r["cpu_gflops_per_s"]
    return {"rows": rows}


def check_targets(res: dict) -> dict:
    """Each target: measured value, limit, met (the absolute ones are for an unloaded core)."""
    T_, sp = TARGETS, res["speedup_engine_over_eager"]
    rows = {
        "train_epoch_ms <= %.1f" % T_["train_epoch_ms"]: (res["train_epoch_ms"], T_["train_epoch_ms"], "<="),
        "train speedup vs eager >= %.1f" % T_["train_speedup_vs_eager"]: (sp["train"], T_["train_speedup_vs_eager"], ">="),
        "floss_epoch_ms (T_f=300) <= %.0f" % T_["floss_epoch_ms"]: (res["floss_epoch_ms"], T_["floss_epoch_ms"], "<="),
        "floss speedup vs eager >= %.1f" % T_["floss_speedup_vs_eager"]: (sp["floss_T300"], T_["floss_speedup_vs_eager"], ">="),
        "floss_epoch_ms < paper's %.0f" % T_["floss_epoch_ms_paper"]: (res["floss_epoch_ms"], T_["floss_epoch_ms_paper"], "<"),
        "goal: train_epoch_ms <= %.1f" % T_["train_epoch_ms_goal"]: (res["train_epoch_ms"], T_["train_epoch_ms_goal"], "<="),
        "goal: floss_epoch_ms <= %.0f" % T_["floss_epoch_ms_goal"]: (res["floss_epoch_ms"], T_["floss_epoch_ms_goal"], "<="),
        "ensemble train per member / single <= 1": (res["ensemble_per_member_over_single"]["train"], 1.0, "<="),
        "ensemble floss (T_f=300) per member / single <= 1": (res["ensemble_per_member_over_single"]["floss_T300"],
                                                             1.0, "<="),
        "ensemble floss (T_f=55) per member / single <= 1": (res["ensemble_per_member_over_single"]["floss_T55"],
                                                            1.0, "<="),
    }
    rows.update(peak_and_peer_targets(res))
    # the absolute limits scaled by this machine's speed relative to the anchor machine
    # (same-run eager epoch / the anchor's eager epoch); informational, not the targets
    fac = res["machine_factor_vs_anchor"]
    for name, key, f in (("train_epoch_ms", "train_epoch_ms", "train"), ("floss_epoch_ms (T_f=300)", "floss_epoch_ms", "floss"),
                         ("goal: train_epoch_ms", "train_epoch_ms", "train"), ("goal: floss_epoch_ms", "floss_epoch_ms", "floss")):
        lim = T_[key + ("_goal" if name.startswith("goal") else "")] * fac[f]
        rows[f"scaled to this core (x{fac[f]:.2f}): {name} <= {lim:.1f}"] = (res[key], lim, "<=")
    return _target_rows(rows)


_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}


def _target_rows(rows: dict) -> dict:
    """``name -> (value, limit, op[, note])`` as target entries; a ``None`` value (not measured
    here) gives ``met: None`` and its note."""
    out = {}
    for name, (v, lim, op, *note) in rows.items():
        out[name] = {"value": v, "limit": lim, "met": None if v is None else bool(_OPS[op](v, lim)),
                     "scaled": name.startswith("scaled")}
        if note and v is None:
            out[name]["note"] = note[0]
    return out


def peak_and_peer_targets(res: dict) -> dict:
    """The targets against the core's peak (values in percent of ``peak_gflops``) and the JAX
    peer's (its time over the engine's): ``name -> (value or None, limit, op, note)``. The GEMM
    row only where the native kernels time their GEMM (``gemm_shapes``)."""
    T_, fp = TARGETS, res.get("fraction_of_peak", {})
    pct = lambda k: 100 * fp[k] if k in fp else None  # noqa: E731
    rows = {
        "goal: train epoch >= %.0f%% of peak" % (100 * T_["train_fraction_of_peak_goal"]):
            (pct("train"), 100 * T_["train_fraction_of_peak_goal"], ">=", "not measured"),
        "goal: floss epoch (T_f=300) >= %.0f%% of peak" % (100 * T_["floss_fraction_of_peak_goal"]):
            (pct("floss"), 100 * T_["floss_fraction_of_peak_goal"], ">=", "not measured"),
        "goal: floss epoch (T_f=55) >= %.0f%% of peak" % (100 * T_["floss_fraction_of_peak_goal"]):
            (pct("floss_tf55"), 100 * T_["floss_fraction_of_peak_goal"], ">=", "not measured"),
    }
    g = res.get("gemm_shapes")
    if g:
        fr = [r["native_fraction_of_peak"] for r in g]
        rows["native GEMMs at engine shapes >= %.0f%% of peak (min)" % (100 * T_["native_gemm_fraction_of_peak"])] = (
            None if None in fr else 100 * min(fr), 100 * T_["native_gemm_fraction_of_peak"], ">=", "a shape failed")
    jax_note = "jax not installed" if not (res.get("jax") or {}).get("installed") else "not measured"
    rows["JAX / engine >= %.1f train" % T_["jax_over_engine_train"]] = (
        res.get("jax_train_ratio"), T_["jax_over_engine_train"], ">=", jax_note)
    rows["JAX / engine >= %.0f floss (T_f=300)" % T_["jax_over_engine_floss"]] = (
        res.get("jax_floss_ratio"), T_["jax_over_engine_floss"], ">=", jax_note)
    rows["JAX / engine >= %.0f floss (T_f=55)" % T_["jax_over_engine_floss"]] = (
        res.get("jax_floss_ratio_tf55"), T_["jax_over_engine_floss"], ">=", jax_note)
    return rows


def format_report(res: dict) -> str:
    L = []
    m = res["machine"]
    L.append(f"flossrepro.perf.bench  torch {res['torch_version']}  threads {res['threads']}  "
             f"{m['cpu_model']}  ({res['timestamp']}, {res['git_commit'][:12]}, "
             f"load {m['loadavg_at_start']} -> {m.get('loadavg_at_end')})")
    L.append(f"device {res.get('device', 'cpu')}{' (' + res['gpu'] + ')' if res.get('gpu') else ''}; "
             f"native kernels: {res.get('native', 'n/a')}")
    aff = m.get("cpu_affinity")
    L.append(f"CPU {m['cpu_model']}; ISA {m.get('isa', 'unknown')}"
             + (f"; pinned to CPU {aff[0]}" if aff and len(aff) == 1 and (m.get("cpu_count") or 1) > 1 else "")
             + (f"; native kernels' ISA: {res['native_isa']}" if res.get("native_isa") else ""))
    if "peak_gflops" in res:
        L.append(f"fp32 peak, 1 thread: {res['peak_gflops']:.1f} GFLOP/s ({res['peak_source']}), the best of: "
                 + ", ".join(f"{k} {'n/a' if v is None else f'{v:.1f}'}"
                             for k, v in res["peak_candidates_gflops"].items()))
    L.append(f"matmul {'1024' if res.get('device', 'cpu') == 'cpu' else '8192'}^3 fp32: {res['matmul_gflops']:.1f} GFLOP/s   "
             f"bmm 80x80x75: {res['small_bmm_gflops_80x80x75']:.1f} GFLOP/s   "
             f"torch.linalg.qr 80x75: {res['torch_qr_80x75_us']:.0f} us (best {res['torch_qr_80x75_min_us']:.0f})")
    L.append("")
    L.append("times: median wall ms over epochs (min in brackets), median thread CPU ms of the engine;")
    L.append("engine, eager and ensemble epochs of a row group run round-robin, each timed epoch right after an")
    L.append("untimed one of its own kind (as in a training loop); eager/eng = median of paired ratios")
    hdr = (f"{'epoch (float32, 1 thread)':42s} {'engine ms':>16s} {'cpu ms':>7s} {'eager ms':>16s} {'eager/eng':>9s} "
           f"{'GFLOP':>7s} {'GFLOP/s':>8s} {'%peak':>6s}")
    L.append(hdr)
    L.append("-" * len(hdr))
    tm = res["timings"]
    pk = res.get("peak_gflops", res["matmul_gflops"])

    def line(label, group, flops, per=1, eager=True, name="engine"):
        e = tm[group][name]
        g = flops / (e["median_ms"] / per * 1e-3) / 1e9
        eng = f"{e['median_ms'] / per:8.1f} ({e['min_ms'] / per:5.1f})"
        if eager:
            a = tm[group]["eager"]
            eag = f"{a['median_ms']:8.1f} ({a['min_ms']:5.1f})"
            ratio = f"{a['paired_ratio_to_engine']:9.2f}"
        else:
            eag, ratio = f"{'':16s}", f"{'':9s}"
        L.append(f"{label:42s} {eng:>16s} {e['cpu_median_ms'] / per:7.1f} {eag:>16s} {ratio} {flops / 1e9:7.3f} "
                 f"{g:8.2f} {100 * g / pk:5.1f}%")

    F_ = res["flops"]
    Rm = res["ensemble_members"]
    line("train  N=80 B=16 T=300", "train", F_["train_epoch"])
    if res.get("pytorch_path_timed"):
        line("train  same, PyTorch path (native off)", "train", F_["train_epoch"], 1, False, "engine_pytorch")
    line("floss  N=80 k=75 T_f=300", "floss_T300", F_["floss_epoch"])
    if res.get("pytorch_path_timed"):
        line("floss  same, PyTorch path (native off)", "floss_T300", F_["floss_epoch"], 1, False, "engine_pytorch")
    line("floss  N=80 k=75 T_f=55", "floss_T55", F_["floss_epoch_tf55"])
    line(f"train  R={Rm} ensemble, per member", "train", F_["train_epoch"], Rm, False, "ensemble")
    line(f"floss  R={Rm} ensemble T_f=300, per member", "floss_T300", F_["floss_epoch"], Rm, False, "ensemble")
    line(f"floss  R={Rm} ensemble T_f=55, per member", "floss_T55", F_["floss_epoch_tf55"], Rm, False, "ensemble")
    L.append("")
    L.extend(_peer_lines(res))
    L.extend(_gemm_lines(res))
    cpu = res.get("device", "cpu") == "cpu"
    al = res["arithmetic_limit_ms"]
    if cpu:
        L.append(f"arithmetic limit at the peak rate: train {al['train']:.2f} ms, floss {al['floss']:.1f} ms "
                 f"-> engine at {res['train_epoch_ms'] / al['train']:.1f}x / {res['floss_epoch_ms'] / al['floss']:.1f}x of it")
    L.append(f"its {res['qr_per_floss_epoch']} QRs alone ({res['qr_kind']}, 80x75, timed with it): "
             f"{tm['floss_T300']['qr_only']['median_ms']:.1f} ms, {100 * res['qr_share_of_floss_epoch']:.0f}% "
             f"of a T_f=300 flossing epoch")
    L.append("")
    fac = res["machine_factor_vs_anchor"]
    if cpu:
        L.append(f"this core vs the issue's anchor core: eager train {fac['train']:.2f}x, eager floss {fac['floss']:.2f}x "
                 f"slower; matmul {fac['matmul']:.2f}x slower ({res['matmul_gflops']:.0f} vs {res['anchor']['matmul_gflops']:.0f} GFLOP/s)")
    if res["target_check"]:
        L.append("targets (absolute ones: per core, unloaded machine; compare with the load above)")
    for name, t in res["target_check"].items():
        if not t.get("scaled"):
            if t["value"] is None:
                L.append(f"  {'n/a    '}  {name:46s} {t.get('note', 'not measured')}")
            else:
                L.append(f"  {'met    ' if t['met'] else 'NOT met'}  {name:46s} measured {t['value']:8.2f}")
    if any(t.get("scaled") for t in res["target_check"].values()):
        L.append("the absolute limits scaled by the eager factor above (informational, not the targets):")
    for name, t in res["target_check"].items():
        if t.get("scaled"):
            L.append(f"  {'met    ' if t['met'] else 'NOT met'}  {name:55s} measured {t['value']:8.2f}")
    L.append("")
    sc = res["scaling"]
    L.append(f"cost table (1 member; train B=16 T=300; floss k=N, T_f={sc['rows_N'][0]['T_f']}, s_ons=1)")
    L.append(f"{'N':>5s} {'k':>5s} {'train ms':>10s} {'GFLOP/s':>8s} {'floss ms':>10s} {'GFLOP/s':>8s}")
    for r in sc["rows_N"]:
        L.append(f"{r['N']:5d} {r['k']:5d} {r['train_ms']:10.2f} {r['train_gflops_per_s']:8.2f} "
                 f"{r['floss_ms']:10.1f} {r['floss_gflops_per_s']:8.2f}")
    for r in sc["rows_k"]:
        L.append(f"{r['N']:5d} {r['k']:5d} {'':10s} {'':8s} {r['floss_ms']:10.1f} {r['floss_gflops_per_s']:8.2f}")
    L.append("fitted exponents (log-log least squares; all points / two largest / FLOP model):")
    L.append(f"  train vs N        : {sc['train_exponent_N']:.2f} / {sc['train_exponent_N_top2']:.2f} / "
             f"{sc['train_exponent_N_flop_model']:.2f}   (paper Table 1: N^2 B T -> 2)")
    L.append(f"  floss vs N (k=N)  : {sc['floss_exponent_N_k_eq_N']:.2f} / {sc['floss_exponent_N_k_eq_N_top2']:.2f} / "
             f"{sc['floss_exponent_N_flop_model']:.2f}   (paper: N k^2 T_f -> 3)")
    L.append(f"  floss vs k (N=160): {sc['floss_exponent_k_at_N160']:.2f} / {sc['floss_exponent_k_top2']:.2f} / "
             f"{sc['floss_exponent_k_flop_model']:.2f}   (paper: k^2 -> 2; Jacobian products add N^2 k)")
    if res.get("gated"):
        L.append("")
        L.append("gated networks vs tanh (1 member, 1 thread; LSTM state 2N; time ratio paired round-robin; "
                 "time per FLOP under each engine's FLOP model)")
        L.append(f"{'epoch':32s} {'arch':>5s} {'ms':>9s} {'x tanh':>7s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'time/FLOP x tanh':>17s}")
        for r in res["gated"]["rows"]:
            L.append(f"{r['label']:32s} {r['arch']:>5s} {r['ms']:9.2f} {r['ratio_to_tanh']:7.2f} {r['flops'] / 1e9:7.3f} "
                     f"{r['gflops_per_s']:8.2f} {r['time_per_flop_vs_tanh']:17.2f}")
    L.append("")
    L.append(f"total benchmark time {res['total_benchmark_s']:.0f} s ("
             + ", ".join(f"{k} {v:.1f}" for k, v in res.get("section_s", {}).items()) + ")")
    return "\n".join(L)


def _peer_lines(res: dict) -> list[str]:
    """The JAX peer's rows of the report (or that it is not installed)."""
    j = res.get("jax")
    if j is None:
        return []
    if not j.get("installed"):
        return [f"JAX peer: not installed ({j.get('error')}; pip install -e '.[peers]')", ""]
    tm, pk = res["timings"], res.get("peak_gflops", res["matmul_gflops"])
    gc = res.get("jax_grad_check") or {}
    L = [f"JAX peer ({j['version']}; float32, XLA on 1 thread: process CPU/wall {j['cpu_over_wall']:.2f}), "
         f"timed round-robin with the engine rows above; gradients vs the engine in float64: max rel diff "
         + (f"{gc['max_rel_diff']:.1e}" if gc.get("max_rel_diff") is not None else f"n/a ({gc.get('error')})"),
         f"{'epoch (float32, 1 thread)':42s} {'JAX ms':>16s} {'JAX/eng':>8s} {'GFLOP/s':>8s} {'%peak':>6s}"]
    for label, group, key, fl in (("train  N=80 B=16 T=300", "train", "jax_train_ratio", "train_epoch"),
                                  ("floss  N=80 k=75 T_f=300", "floss_T300", "jax_floss_ratio", "floss_epoch"),
                                  ("floss  N=80 k=75 T_f=55", "floss_T55", "jax_floss_ratio_tf55", "floss_epoch_tf55")):
        e = tm[group]["jax"]
        g = res["flops"][fl] / (e["median_ms"] * 1e-3) / 1e9
        L.append(f"{label:42s} {e['median_ms']:8.1f} ({e['min_ms']:5.1f}) {res[key]:8.2f} {g:8.2f} {100 * g / pk:5.1f}%")
    L.append("")
    return L


def _gemm_lines(res: dict) -> list[str]:
    """The table of the native GEMM and torch.mm at the engine's shapes (where measured)."""
    rows = res.get("gemm_shapes")
    if not rows:
        return []
    f = lambda v: f"{'n/a':>8s}" if v is None else f"{v:8.1f}"  # noqa: E731
    pc = lambda v: f"{'n/a':>6s}" if v is None else f"{100 * v:5.1f}%"  # noqa: E731
    w = max(len(r["label"]) for r in rows)
    L = ["GEMMs at the engine's shapes (1 thread, float32; native: its own GEMM timed in C; torch: torch.mm in a loop)",
         f"{'C[M,N] = op(A) op(B)':{w}s} {'M':>3s} {'N':>3s} {'K':>3s} {'op':>3s} {'native':>8s} {'%peak':>6s} "
         f"{'torch':>8s} {'%peak':>6s}"]
    for r in rows:
        L.append(f"{r['label']:{w}s} {r['M']:3d} {r['N']:3d} {r['K']:3d} {r['ta'] + r['tb']:>3s} {f(r['native_gflops'])} "
                 f"{pc(r['native_fraction_of_peak'])} {f(r['torch_gflops'])} {pc(r['torch_fraction_of_peak'])}")
    L.append("")
    return L


def pin_to_one_cpu() -> int | None:
    """Pin this thread, and so every thread and subprocess started after it, to one CPU (the
    highest-numbered one allowed); returns it, or ``None`` where affinity cannot be set.

    Single-thread numbers then use one core in the strict sense, whatever a library does with
    threads: XLA runs a jitted computation on its own worker thread, and on a loaded machine
    the hand-offs between that thread and the caller, spinning on two cores, made the JAX
    peer's epochs bimodal (flossing T_f=55: ~12 ms or ~500 ms, median of 30 epochs 20-490 ms
    from run to run; pinned: 10.7 ms, p90 12-14 ms). Call it before jax creates its threads
    (its backend starts on first use)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    except OSError:
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flossrepro.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fast pass (fewer repeats and sizes; ~30 s of CPU)")
    ap.add_argument("--out", default="results/bench.json",
                    help="JSON output path (default results/bench.json; the report goes next to it as .txt)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: per-core numbers)")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default; the per-core numbers and targets) or cuda (the same epochs on the GPU, "
                         "PyTorch path; no targets); the default --out becomes results/bench_cuda.json")
    ap.add_argument("--gated", action="store_true",
                    help="only the LSTM/GRU vs tanh section (default --out results/bench_gated.json)")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="do not pin the process to one CPU (default with --threads 1 on CPU: pinned)")
    args = ap.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.pin and DEVICE.type == "cpu" and args.threads == 1:
        pin_to_one_cpu()
    native.tune_allocator()  # as the training job does
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("flossrepro.perf.bench: error: --device cuda but CUDA is not available here; use --device cpu", file=sys.stderr)
        return 2
    if DEVICE.type == "cuda" and args.out == "results/bench.json":
        args.out = "results/bench_cuda.json"
    if args.gated:
        return _gated_only(args)
    res = run_benchmark(quick=args.quick, threads=args.threads, log=lambda s: print(s, flush=True))
    report = format_report(res)
    print(report, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    out.with_suffix(".txt").write_text(report + "\n")
    print(f"wrote {out} and {out.with_suffix('.txt')}")
    return 0


def _gated_only(args) -> int:
    """``--gated``: the LSTM/GRU section alone, with the environment record and the load."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    res = {**environment(args.threads), "quick": args.quick}
    res["gated"] = gated_section(args.quick, 1.5 if args.quick else 8.0)
    res["machine"]["loadavg_at_end"] = _loadavg()
    res["total_benchmark_s"] = time.perf_counter() - t0
    m = res["machine"]
    L = [f"flossrepro.perf.bench --gated  torch {res['torch_version']}  threads {res['threads']}  {m['cpu_model']}  "
         f"({res['timestamp']}, {res['git_commit'][:12]}, load {m['loadavg_at_start']} -> {m['loadavg_at_end']})",
         "gated networks vs tanh (1 member, 1 thread; LSTM state 2N; median wall ms, round-robin; time ratio = median "
         "of paired ratios; time per FLOP under each engine's FLOP model, relative to tanh)",
         "(cpu: the thread's CPU time; on a loaded machine the wall time also counts the waits for a core)",
         f"{'epoch':32s} {'arch':>5s} {'ms':>9s} {'x tanh':>7s} {'cpu ms':>9s} {'cpu x tanh':>10s} {'GFLOP':>7s} "
         f"{'cpu GFLOP/s':>11s} {'cpu time/FLOP x tanh':>21s}"]
    for r in res["gated"]["rows"]:
        L.append(f"{r['label']:32s} {r['arch']:>5s} {r['ms']:9.2f} {r['ratio_to_tanh']:7.2f} {r['cpu_ms']:9.2f} "
                 f"{r['cpu_ratio_to_tanh']:10.2f} {r['flops'] / 1e9:7.3f} {r['cpu_gflops_per_s']:11.2f} "
                 f"{r['cpu_time_per_flop_vs_tanh']:21.2f}")
    L.append(f"total {res['total_benchmark_s']:.0f} s")
    out = Path(args.out if args.out != "results/bench.json" else "results/bench_gated.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    out.with_suffix(".txt").write_text("\n".join(L) + "\n")
    print("\n".join(L))
    print(f"wrote {out} and {out.with_suffix('.txt')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
