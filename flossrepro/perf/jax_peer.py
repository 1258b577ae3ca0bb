"""The benchmark's JAX peer: the epochs of :mod:`flossrepro.jobs.workload` that
:mod:`flossrepro.perf.bench` times, written the idiomatic JAX way (``jax.lax.scan`` over time,
``jax.value_and_grad``, ``jax.jit``, optax).

Optional: ``pip install -e '.[peers]'`` (jax, jaxlib, optax). Without jax, :func:`available`
is False and ``make bench`` reports the peer as not installed.

One thread, float32. XLA reads its threading flags when jax is first imported, so this module
adds ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` to ``XLA_FLAGS``
(and ``JAX_PLATFORMS=cpu`` unless set) *before* it imports jax; import it before anything else
imports jax (``python -m flossrepro.bench`` does). :data:`THREADS_LIMITED` says whether that
happened in time. x64 stays off (float32) except inside :func:`grad_check`, which enables it in
a context (``jax.enable_x64``) to compare gradients with the engine's in float64.

The model is the engine's vanilla RNN (:class:`flossrepro.engine.models.VanillaRNN`, paper Eq 9, ``h``
the pre-activation)::

    h[t+1] = W tanh(h[t]) + g V x[t] + b,   y[t] = w_r h[t+1] + c,   g = 1/S

- training epoch: a fresh ``binary_xor`` batch (the engine's task and data), the mean
  BCE-with-logits over the masked steps (``t >= delay``), batch and outputs, gradients of
  ``W, V, b, w_r, c, h0``, ``optax.chain(clip_by_global_norm(0.03), adam(1e-3))`` (the engine
  clips the whole gradient to norm 0.03, then Adam), and the training accuracy;
- flossing epoch: one input sequence, the first ``k`` Lyapunov exponents by the QR method
  (``jnp.linalg.qr`` of ``W diag(tanh'(h[t])) Q`` every step inside ``lax.scan``), the
  engine's default transients (10 state steps, then ``ceil(T_f/10)`` tangent steps not
  accumulated) and its initial ``Q`` (:func:`flossrepro.engine.lyapunov.random_orthonormal`), loss
  ``sum(lambda^2)``, Adam (1e-3) on ``W, V, b``.

The data are drawn by the engine's task (torch) and handed over as arrays: both sides pay
the same sampling. Each epoch waits for its result (``block_until_ready``).
"""
from __future__ import annotations

import functools
import os
import sys

import numpy as np
import torch

from flossrepro.engine.flossing import flossing_objective
from flossrepro.engine.lyapunov import default_transients, random_orthonormal
from flossrepro.jobs import workload
from flossrepro.perf.peak import with_xla_single_thread
from flossrepro.tasks.paper import make_task, member_generators

#: True when this module set XLA's single-thread flags before jax was imported
THREADS_LIMITED = "jax" not in sys.modules
if THREADS_LIMITED:
    os.environ["XLA_FLAGS"] = with_xla_single_thread(os.environ.get("XLA_FLAGS"))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

try:
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax
except ImportError as _e:  # the optional extra is not installed
    jax = jnp = optax = lax = None
    IMPORT_ERROR = f"{type(_e).__name__}: {_e}"
else:
    IMPORT_ERROR = None

__all__ = ["available", "version", "THREADS_LIMITED", "params_of", "forward", "train_loss", "lyapunov",
           "floss_loss", "jax_train_epoch", "jax_floss_epoch", "grad_check"]


def available() -> bool:
    return jax is not None


def version() -> str | None:
    return None if jax is None else f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, optax {optax.__version__}"


def _require():
    if jax is None:
        raise RuntimeError(f"the JAX peer needs jax and optax (pip install -e '.[peers]'): {IMPORT_ERROR}")


# ---------------------------------------------------------------------------- model
def params_of(model, r: int = 0, dtype=np.float32) -> dict:
    """Member ``r`` of a :class:`~flossrepro.engine.models.VanillaRNN` as a dict of arrays."""
    _require()
    return {name: jnp.asarray(getattr(model, name)[r].detach().cpu().numpy().astype(dtype))
            for name in ("W", "V", "b", "w_r", "c", "h0")}


def forward(p: dict, x, gain: float):
    """``x: [T, B, S]`` -> outputs ``[T, B, O]``."""
    drive = gain * (x @ p["V"].T) + p["b"]  # [T, B, N]

    def step(h, d):
        h = jnp.tanh(h) @ p["W"].T + d
        return h, h

    h0 = jnp.broadcast_to(p["h0"], (x.shape[1], p["h0"].shape[0]))
    _, H = lax.scan(step, h0, drive)
    return H @ p["w_r"].T + p["c"]


def train_loss(p: dict, x, y, start: int, gain: float):
    """Mean BCE-with-logits over the steps ``t >= start``, batch and outputs; ``(loss, logits)``."""
    logits = forward(p, x, gain)[start:]
    return optax.sigmoid_binary_cross_entropy(logits, y[start:]).mean(), logits


def lyapunov(p: dict, x, Q0, transient_h: int, transient_q: int, gain: float):
    """First ``k = Q0.shape[1]`` exponents (per step) along ``x: [T, S]`` by the QR method,
    as :func:`flossrepro.engine.lyapunov.lyapunov_spectrum` with ``s_ons = 1``."""
    T = x.shape[0]
    drive = gain * (x @ p["V"].T) + p["b"]  # [T, N]; the last one is unused

    def state(h, d):
        h = p["W"] @ jnp.tanh(h) + d
        return h, h

    _, Hn = lax.scan(state, p["h0"], drive[:-1])
    H = jnp.concatenate([p["h0"][None], Hn])[transient_h:]  # the tangent steps' states

    def tangent(Q, h):
        a = jnp.tanh(h)
        Q, R = jnp.linalg.qr(p["W"] @ ((1.0 - a * a)[:, None] * Q))
        return Q, jnp.log(jnp.abs(jnp.diagonal(R)))

    _, logs = lax.scan(tangent, Q0, H)
    return logs[transient_q:].sum(0) / (T - transient_h - transient_q)


def floss_loss(pf: dict, h0, x, Q0, transient_h: int, transient_q: int, gain: float):
    """``(sum(lambda^2), lambda)`` with ``pf = {W, V, b}`` the flossed parameters."""
    lam = lyapunov({**pf, "h0": h0}, x, Q0, transient_h, transient_q, gain)
    return (lam ** 2).sum(), lam


# ---------------------------------------------------------------------------- epochs
def _train_step(start: int, gain: float, opt):
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(p, s, x, y):
        (loss, logits), g = jax.value_and_grad(train_loss, has_aux=True)(p, x, y, start, gain)
        upd, s = opt.update(g, s, p)
        acc = ((logits > 0) == (y[start:] > 0.5)).mean()
        return optax.apply_updates(p, upd), s, loss, acc
    return step


def _floss_step(th: int, tq: int, gain: float, opt):
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(pf, s, h0, x, Q0):
        (loss, lam), g = jax.value_and_grad(floss_loss, has_aux=True)(pf, h0, x, Q0, th, tq, gain)
        upd, s = opt.update(g, s, pf)
        return optax.apply_updates(pf, upd), s, loss, lam
    return step


def jax_train_epoch(N: int = 80, B: int = 16, T: int = 300):
    """One training epoch (module docstring), the network and data of
    :func:`flossrepro.jobs.workload.engine_train_epoch`."""
    _require()
    task = make_task(workload.TASK, delay=workload.DELAY, seq_len=T, batch_size=B)
    model = workload.build_model(1, N, task.n_in, task.n_out)
    gens = member_generators([0], "train")
    opt = optax.chain(optax.clip_by_global_norm(workload.CLIP), optax.adam(workload.LR))
    p = params_of(model)
    state = [p, opt.init(p)]
    step = _train_step(task.max_lag, float(model.input_gain), opt)

    def epoch():
        batch = task.sample(gens)
        x, y = batch.inputs[:, 0].numpy(), batch.targets[:, 0].numpy()
        state[0], state[1], loss, acc = step(state[0], state[1], x, y)
        acc.block_until_ready()

    return epoch


def jax_floss_epoch(N: int = 80, k: int = 75, T: int = 300):
    """One flossing epoch (module docstring), the network and data of
    :func:`flossrepro.jobs.workload.engine_floss_epoch`."""
    _require()
    task = make_task(workload.TASK, delay=workload.DELAY, seq_len=max(T, workload.DELAY + 1), batch_size=1)
    model = workload.build_model(1, N, task.n_in, task.n_out)
    gens = member_generators([0], "floss")
    opt = optax.adam(workload.LR)
    p = params_of(model)
    h0 = p.pop("h0")
    pf = {name: p[name] for name in ("W", "V", "b")}
    state = [pf, opt.init(pf)]
    Q0 = jnp.asarray(random_orthonormal(N, k, 1, dtype=torch.float32)[0].numpy())
    th, tq = default_transients(T)
    step = _floss_step(th, tq, float(model.input_gain), opt)

    def epoch():
        x = task.sample_inputs(gens, batch_size=1, seq_len=T)[:, 0, 0].numpy()
        state[0], state[1], loss, lam = step(state[0], state[1], h0, x, Q0)
        lam.block_until_ready()

    return epoch


# ---------------------------------------------------------------------------- gradient check
def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def grad_check(N: int = 80, B: int = 16, T: int = 300, k: int = 75, T_fs=(300, 55), seed: int = 0) -> dict:
    """Gradients of the training loss (all six parameters, before clipping) and of the flossing
    loss (``W, V, b``) in float64, JAX against the engine (its native float64 kernels where
    built), on the same weights (member 0 of the engine's initialised network, cast to float64)
    and the same batch / input sequence. Returns each relative difference
    ``||g_jax - g_engine|| / ||g_engine||`` per parameter, that of the exponents, and the maximum."""
    _require()
    out = {"dtype": "float64", "N": N, "B": B, "T": T, "k": k}
    with jax.enable_x64(True):
        task = make_task(workload.TASK, delay=workload.DELAY, seq_len=T, batch_size=B)
        model = workload.build_model(1, N, task.n_in, task.n_out, seed0=seed).double()
        gain = float(model.input_gain)
        p = params_of(model, dtype=np.float64)
        batch = task.sample(member_generators([seed], "train"), dtype=torch.float64)
        model.zero_grad(set_to_none=True)
        task.loss(model(batch.inputs), batch).sum().backward()
        g = jax.grad(lambda p: train_loss(p, batch.inputs[:, 0].numpy(), batch.targets[:, 0].numpy(),
                                          task.max_lag, gain)[0])(p)
        out["train"] = {name: _rel(g[name], getattr(model, name).grad[0].cpu().numpy()) for name in p}
        for Tf in T_fs:
            ftask = make_task(workload.TASK, delay=workload.DELAY, seq_len=max(Tf, workload.DELAY + 1), batch_size=1)
            x = ftask.sample_inputs(member_generators([seed], "floss"), batch_size=1, seq_len=Tf,
                                    dtype=torch.float64)[:, :, 0]
            model.zero_grad(set_to_none=True)
            loss, lam = flossing_objective(model, x, k)
            loss.sum().backward()
            th, tq = default_transients(Tf)
            Q0 = random_orthonormal(N, k, 1, dtype=torch.float64)[0].numpy()
            pf = {name: p[name] for name in ("W", "V", "b")}
            (_, lam_j), gf = jax.value_and_grad(floss_loss, has_aux=True)(pf, p["h0"], x[:, 0].numpy(), Q0, th, tq, gain)
            r = {name: _rel(gf[name], getattr(model, name).grad[0].cpu().numpy()) for name in pf}
            r["lambda"] = _rel(lam_j, lam[0].cpu().numpy())
            out[f"floss_T{Tf}"] = r
    out["max_rel_diff"] = max(v for key, d in out.items() if isinstance(d, dict) for v in d.values())
    return out
