"""The epochs that the cost job (:mod:`flossrepro.jobs.cost`, paper Table 1) and the speed
benchmark (:mod:`flossrepro.perf.bench`) time, and the round-robin timer.

- training epoch, as the trainer runs it (:func:`flossrepro.engine.flossing.train_step`): a fresh
  ``binary_xor`` batch (delay 10) every epoch, forward, per-member loss, finite check, masked
  ``sum().backward()``, gradient mask, per-member gradient clipping at 0.03, Adam (lr 1e-3), and
  the training accuracy (:func:`engine_train_epoch`);
- flossing epoch, as every job runs it (:func:`flossrepro.engine.flossing.floss_step`): default
  transients, reorthonormalization every ``s_ons`` steps, inputs from ``Task.sample_inputs``
  (:func:`engine_floss_epoch`).

Every function takes the device it runs on (``device``, default CPU); on a GPU the timers
synchronize before reading the clock (:func:`sync`).
"""
from __future__ import annotations

import time

import torch

from flossrepro.engine.flossing import floss_step, flossing_parameters, train_step
from flossrepro.engine.init import initialize
from flossrepro.engine.models import GRU, LSTM, VanillaRNN
from flossrepro.jobs.base import adam
from flossrepro.tasks.paper import make_task, member_generators

__all__ = ["TASK", "DELAY", "LR", "CLIP", "sync", "build_model", "train_epoch_fn", "floss_epoch_fn",
           "engine_train_epoch", "engine_floss_epoch", "time_round_robin"]

TASK = "binary_xor"
DELAY = 10
LR = 1e-3
CLIP = 0.03


def sync(device: torch.device | str = "cpu") -> None:
    """Wait for the work queued on ``device`` (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def build_model(R: int, N: int, n_in: int = 1, n_out: int = 1, seed0: int = 0, arch: str = "tanh",
                device: torch.device | str = "cpu"):
    """An initialised R-member network on ``device``: ``arch`` tanh (default), relu, linear, lstm or gru."""
    if arch in ("lstm", "gru"):
        m = (LSTM if arch == "lstm" else GRU)(R, N, n_in, n_out)
    else:
        m = VanillaRNN(R, N, n_in, n_out, nonlinearity={"linear": "identity"}.get(arch, arch))
    initialize(m, list(range(seed0, seed0 + R)))
    return m.to(torch.device(device))


def train_epoch_fn(model, task, R: int, lr: float, clip: float | None, device):
    """One training epoch of ``model`` on ``task`` as the trainer runs it: a fresh batch, forward,
    loss, backward, Adam at ``lr`` (``clip``: per-member gradient clipping or None), the metric."""
    gens = member_generators(list(range(R)), "train")
    params = list(model.parameters())
    opt = adam(params, lr=lr)

    def epoch():
        batch = task.sample(gens, device=device)
        _, out = train_step(model, task, batch, opt, params, clip=clip)
        task.metric(out, batch)

    return epoch


def floss_epoch_fn(model, task, R: int, k: int, T: int, s_ons: int, params, lr: float, device):
    """One flossing epoch of ``model`` as the jobs run it: ``task``'s inputs (batch 1, ``T`` steps),
    :func:`flossrepro.engine.flossing.floss_step` on ``k`` exponents, Adam at ``lr`` over ``params``."""
    gens = member_generators(list(range(R)), "floss")
    opt = adam(params, lr=lr)

    def epoch():
        x = task.sample_inputs(gens, batch_size=1, seq_len=T, device=device)[:, :, 0]
        floss_step(model, opt, x, k, s_ons=s_ons)

    return epoch


def engine_train_epoch(R: int = 1, N: int = 80, B: int = 16, T: int = 300, arch: str = "tanh",
                       device: torch.device | str = "cpu"):
    """One training epoch as the trainer runs it (:func:`flossrepro.engine.flossing.train_step`, the
    training accuracy), minus the trainer's recording and diagnostics."""
    device = torch.device(device)
    task = make_task(TASK, delay=DELAY, seq_len=T, batch_size=B)
    model = build_model(R, N, task.n_in, task.n_out, arch=arch, device=device)
    return train_epoch_fn(model, task, R, LR, CLIP, device)  # Adam as the trainer makes it


def engine_floss_epoch(R: int = 1, N: int = 80, k: int = 75, T: int = 300, arch: str = "tanh", s_ons: int = 1,
                       device: torch.device | str = "cpu"):
    """One flossing epoch as the jobs run it (:func:`flossrepro.engine.flossing.floss_step`; default
    transients, reorthonormalization every ``s_ons`` steps)."""
    device = torch.device(device)
    task = make_task(TASK, delay=DELAY, seq_len=max(T, DELAY + 1), batch_size=1)
    model = build_model(R, N, task.n_in, task.n_out, arch=arch, device=device)
    return floss_epoch_fn(model, task, R, k, T, s_ons, flossing_parameters(model), LR, device)  # as the job makes it


def time_round_robin(fns: dict, warmup: int, repeats: int, budget_s: float, lead_in: bool = True,
                     device: torch.device | str = "cpu") -> dict:
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
    sync(device)
    ts = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    t_start = time.perf_counter()
    for i in range(repeats):
        for name, f in fns.items():
            if lead_in:
                f()  # untimed: the timed epoch follows one of its own kind, as in a training loop
                sync(device)
            c0, t0 = time.thread_time(), time.perf_counter()
            f()
            sync(device)
            ts[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
        if i + 1 >= 3 and time.perf_counter() - t_start > budget_s:
            break
    first = next(iter(fns))
    out = {}
    for name, v in ts.items():
        s = sorted(v)
        q = lambda p: s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]  # noqa: E731
        ratios = sorted(a / b for a, b in zip(v, ts[first]))
        out[name] = {"median_ms": 1e3 * q(0.5), "min_ms": 1e3 * s[0], "p25_ms": 1e3 * q(0.25),
                     "p75_ms": 1e3 * q(0.75), "n": len(v),
                     "cpu_median_ms": 1e3 * sorted(cpu[name])[len(v) // 2],
                     "paired_ratio_to_" + first: ratios[len(ratios) // 2]}
    return out
