"""The generic path (any PyTorch RNN, :mod:`flossrepro.engine.generic`) against the analytic gated path
(:mod:`flossrepro.engine.gated`): one flossing epoch of a GRU each way.

    python -m flossrepro.perf.generic_bench [--quick] [--out results/bench_generic.txt]

The same network both ways: the project's GRU (one member, the project's initialisation) flossed
by :func:`flossrepro.engine.flossing.floss_step` (analytic Jacobians), and a ``torch.nn.GRU`` with its
weights (``weight_hh = U``, ``weight_ih = V / S``, ``bias_ih = b``, ``bias_hh = 0``) flossed by
:class:`flossrepro.Flosser` (torch.func Jacobians). An epoch: the first ``k`` exponents of one input
sequence of ``T_f`` steps (x ~ N(0, 1)), the gradient of the flossing loss, one Adam step. One thread;
paired round-robin timing (each timed epoch after an untimed one of its own kind); the ratio is the
median of the per-round ratios generic / analytic. Goal: at most 3x.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from torch import nn

from flossrepro.engine.flosser import Flosser
from flossrepro.engine.flossing import floss_step, flossing_parameters
from flossrepro.engine.init import initialize
from flossrepro.engine.models import GRU

__all__ = ["main", "epochs", "measure", "CASES"]

#: (N, k, T_f): the issue's grid at the flossing horizon of the paper's runs, and the Fig 6 shape
CASES = [(32, 1, 55), (32, 32, 55), (80, 1, 55), (80, 80, 55), (32, 1, 300)]
LR = 1e-3


def epochs(N: int, k: int, T: int, seed: int = 0) -> dict:
    """``{"analytic": fn, "generic": fn}``: one flossing epoch of the same GRU each way."""
    m = GRU(1, N, 1, 1)
    initialize(m, [seed])
    g = nn.GRU(1, N)
    with torch.no_grad():
        g.weight_hh_l0.copy_(m.U[0]), g.weight_ih_l0.copy_(m.input_gain * m.V[0])
        g.bias_ih_l0.copy_(m.b[0]), g.bias_hh_l0.zero_()
    h0 = m.h0.detach()[None].clone()  # [1, 1, N]: the same initial state
    opt = torch.optim.Adam(flossing_parameters(m), lr=LR)
    fl = Flosser(g, k, lr=LR, h0=h0)
    gen_a, gen_g = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)

    def analytic():
        floss_step(m, opt, torch.randn(T, 1, 1, generator=gen_a), k)

    def generic():
        fl.step(torch.randn(T, 1, 1, generator=gen_g))

    return {"analytic": analytic, "generic": generic}


def measure(fns: dict, repeats: int = 9, budget_s: float = 8.0) -> dict:
    """Median wall ms of each function and the median paired ratio to the first (round-robin)."""
    for f in fns.values():
        f()
    ts = {name: [] for name in fns}
    t_start = time.perf_counter()
    for i in range(repeats):
        for f_name, f in fns.items():
            f()  # untimed lead-in of the same kind
            t0 = time.perf_counter()
            f()
            ts[f_name].append(time.perf_counter() - t0)
        if i >= 2 and time.perf_counter() - t_start > budget_s:
            break
    first = next(iter(fns))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    out = {name: {"ms": 1e3 * med(v), "n": len(v)} for name, v in ts.items()}
    for name, v in ts.items():
        out[name]["ratio"] = med([a / b for a, b in zip(v, ts[first])])
    return out


def run(quick: bool = False, log=print) -> list[dict]:
    rows = []
    for N, k, T in CASES:
        t = measure(epochs(N, k, T), repeats=3 if quick else 9, budget_s=2.0 if quick else 8.0)
        row = {"N": N, "k": k, "T": T, "analytic_ms": t["analytic"]["ms"], "generic_ms": t["generic"]["ms"],
               "ratio": t["generic"]["ratio"], "n": t["generic"]["n"]}
        rows.append(row)
        log(_line(row))
    return rows


def _line(r: dict) -> str:
    return (f"GRU N={r['N']:<3d} k={r['k']:<3d} T_f={r['T']:<4d} {r['analytic_ms']:9.1f} {r['generic_ms']:9.1f} "
            f"{r['ratio']:8.2f}{'' if r['ratio'] <= 3 else '  > 3x'}")


def report(rows: list[dict], wall_s: float) -> str:
    head = (f"flossrepro.perf.generic_bench  torch {torch.__version__}  threads {torch.get_num_threads()}  "
            f"{platform.processor() or platform.machine()}  ({time.strftime('%Y-%m-%dT%H:%M:%S%z')}, "
            f"load {[round(x, 2) for x in _loadavg()]})")
    lines = [head,
             "one flossing epoch (exponents of one sequence, gradient, Adam step) of the same GRU: the analytic gated",
             "path (project GRU, floss_step) vs the generic path (torch.nn.GRU, Flosser; torch.func Jacobians);",
             "median wall ms, ratio = median of paired per-round ratios generic / analytic (goal <= 3)",
             f"{'case':30s} {'analytic':>9s} {'generic':>9s} {'ratio':>8s}"]
    lines += [_line(r) for r in rows]
    lines.append(f"total {wall_s:.0f} s")
    return "\n".join(lines) + "\n"


def _loadavg():
    try:
        import os
        return os.getloadavg()
    except OSError:  # pragma: no cover
        return (float("nan"),) * 3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flossrepro.perf.generic_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 rounds per case (a smoke run)")
    p.add_argument("--out", default="results/bench_generic.txt", help="where to write the table ('' : do not write)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = run(a.quick)
    text = report(rows, time.perf_counter() - t0)
    print(text, end="")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
