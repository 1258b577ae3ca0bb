"""Per-core cost of training and flossing epochs: ``python -m flossrepro.bench [--quick]``.

Everything runs on one CPU thread (``torch.set_num_threads(1)``; the process pinned to one CPU,
:func:`flossrepro.perf.machine.pin_to_one_cpu`, unless ``--no-pin``) in float32 (``--device cuda``:
the same epochs on a GPU). Times are medians
over repeated epochs after warm-up; competing variants (engine vs eager) are timed
round-robin, so that load from other processes hits them alike, and their ratio is the
median of the per-round ratios. Each timed epoch directly follows an untimed epoch of the
same variant (as in a training loop, epoch after epoch). Wall time is the headline; the thread's CPU time is
recorded too (on a loaded machine the two differ by the time the thread waited).

Measured (``R`` ensemble members; times per member where ``R > 1``):

- training epoch (:mod:`flossrepro.jobs.workload`, the epochs the cost job times too), as the
  trainer runs it (:func:`flossrepro.engine.flossing.train_step`): VanillaRNN tanh ``N=80``, batch
  ``B=16``, ``T=300``, task ``binary_xor`` (delay 10), fresh data every epoch; forward,
  per-member loss, finite check, masked ``sum().backward()``, gradient mask, training
  accuracy, per-member gradient clipping at 0.03, Adam (lr 1e-3). (The trainer's periodic
  diagnostics, e.g. singular values of ``dW`` every few epochs, are not included.)
- flossing epoch, as every job runs it (:func:`flossrepro.engine.flossing.floss_step`):
  ``N=80``, ``k=75``, batch 1, ``s_ons=1``, ``T_f in {300, 55}``, default transients
  (10 and ``ceil(T_f/10)``), inputs from ``Task.sample_inputs``.
- the same for an ensemble of ``R=20`` members.
- an eager reference (:class:`flossrepro.perf.eager.EagerRNN`: plain ``[N, N]`` parameters, a Python
  loop over time, autograd through every step and through ``torch.linalg.qr``).
- a cost table over ``N in {32, 80, 160, 320}`` (``k = N``) and ``k`` at ``N = 160``, with
  fitted log-log exponents, against the paper's Table 1 scaling.
- the engine's pure-PyTorch path (:func:`flossrepro.engine.native.disabled`) for the training and the
  ``T_f = 300`` flossing epoch, when the native kernels are in use (the engine's default on CPU).
- the flossing epoch's QR calls alone (``T_f - transient_h`` QRs of ``80 x 75``, with the QR
  the engine uses: the native kernel's, else ``torch.linalg.qr``), timed round-robin with
  it: the QR share of the epoch.
- single-thread matmul rate (1024^3 float32) and the small ``[80,80]x[80,75]`` matmul rate
  (:mod:`flossrepro.perf.micro`).
- the core's float32 peak (:mod:`flossrepro.perf.peak`): the best single-thread rate among PyTorch's
  BLAS (the matmul above), numpy's BLAS, XLA (when jax is installed) and the native kernels'
  FMA loop (``native.fma_peak_gflops`` where it exists); every epoch's GFLOP/s as a fraction of it.
- where the native kernels time their own GEMM (``native.gemm_gflops``): that GEMM and
  ``torch.mm`` at the engine's shapes (:data:`flossrepro.perf.micro.GEMM_SHAPES`), against the peak.
- the JAX peer (:mod:`flossrepro.perf.jax_peer`, optional extra ``peers``): the same training and
  flossing epochs in JAX (``lax.scan``, ``jit``, optax), timed round-robin with the engine's, its
  gradients first checked against the engine's in float64.
- LSTM and GRU flossing and training epochs next to the tanh network (:func:`gated_section`:
  Fig 6's shape N = 32, k = 1, T_f = 300; k = 32, T_f = 55; training B = 16, T = 300), with
  time ratios and time per FLOP relative to tanh (:func:`flossrepro.perf.flops.gated_floss_flops`).

The FLOP model is :mod:`flossrepro.perf.flops`; the targets and the text report
(``results/bench.txt``) are :mod:`flossrepro.perf.bench_report`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

from flossrepro.engine import native
from flossrepro.engine.lyapunov import default_transients
from flossrepro.jobs.workload import engine_floss_epoch, engine_train_epoch, time_round_robin
from flossrepro.perf.bench_report import ANCHOR, TARGETS, check_targets, format_gated_report, format_report
from flossrepro.perf.eager import EagerRNN, consistency, eager_floss_epoch, eager_train_epoch
from flossrepro.perf.flops import (fit_exponent, floss_flops, gated_floss_flops, gated_train_flops, state_dim,
                                   train_flops)
from flossrepro.perf.machine import environment, loadavg, pin_to_one_cpu
from flossrepro.perf.micro import (gemm_shapes, matmul_rates, peak_section, process_cpu_over_wall, qr_calls, qr_us,
                                   small_bmm_gflops)

# EagerRNN, train_flops, floss_flops and TARGETS are imported from here too (their modules are above)
__all__ = ["main", "EagerRNN", "train_flops", "floss_flops", "run_benchmark", "TARGETS"]


def _pytorch_path(epoch):
    """The epoch with the native C kernels switched off (:func:`flossrepro.engine.native.disabled`)."""
    def run():
        with native.disabled():
            epoch()
    return run


def jax_peer(device: torch.device | str = "cpu"):
    """:mod:`flossrepro.perf.jax_peer` when jax and optax are installed (and on CPU), else ``None``."""
    if torch.device(device).type != "cpu":
        return None
    from flossrepro.perf import jax_peer as bench_jax
    return bench_jax if bench_jax.available() else None


def run_benchmark(quick: bool = False, threads: int = 1, log=print, device: torch.device | str = "cpu") -> dict:
    """Every measurement of the module docstring on ``device``; the result dict of ``results/bench.json``."""
    dev = torch.device(device)
    # the epochs and the timer, on dev
    train_epoch, floss_epoch = partial(engine_train_epoch, device=dev), partial(engine_floss_epoch, device=dev)
    eager_train, eager_floss = partial(eager_train_epoch, device=dev), partial(eager_floss_epoch, device=dev)
    timed = partial(time_round_robin, device=dev)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t_all = time.perf_counter()
    res = {"quick": quick, **environment(threads, dev), "targets": dict(TARGETS)}
    W, REP, BUD = (1, 5, 1.5) if quick else (2, 25, 8.0)   # warm-up, max repeats, s per group
    N, B, T, K, R = 80, 16, 300, 75, 20
    sections = res["section_s"] = {}
    t_sec = [time.perf_counter()]
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # first optimizer imports torch._dynamo (~3 s)

    def section(name):
        now = time.perf_counter()
        sections[name] = now - t_sec[0]
        t_sec[0] = now

    mm = matmul_rates(1024 if dev.type == "cpu" else 8192, 3 if quick else 7, dev)
    res["matmul_gflops"], res["matmul_best_gflops"] = mm["gflops"], mm["best_gflops"]
    res["small_bmm_gflops_80x80x75"] = small_bmm_gflops(device=dev)
    qr = qr_us(device=dev)
    res["torch_qr_80x75_us"], res["torch_qr_80x75_min_us"] = qr["median_us"], qr["min_us"]
    log(f"matmul 1024^3 float32, 1 thread: {res['matmul_gflops']:.1f} GFLOP/s; "
        f"bmm [80,80]x[80,75]: {res['small_bmm_gflops_80x80x75']:.1f} GFLOP/s; "
        f"torch.linalg.qr 80x75: {res['torch_qr_80x75_us']:.0f} us")
    section("startup_and_rates")
    res.update(peak_section(res["matmul_best_gflops"], log, dev))
    section("peak")
    res["consistency"] = consistency(device=dev)
    log("consistency (float32, T_f=55): " + ", ".join(f"{k} {v:.1e}" for k, v in res["consistency"].items()))
    section("consistency")

    # -- the JAX peer: gradients against the engine's (float64), then its epochs compiled -----
    jx = jax_peer(dev)
    jax_fns = {}
    if jx is None:
        from flossrepro.perf import jax_peer as bench_jax
        # on a GPU the peer is not run (the JAX epochs are CPU, single-thread comparisons)
        res["jax"] = {"installed": False, "error": bench_jax.IMPORT_ERROR} if dev.type == "cpu" else None
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
    with_torch_path = dev.type == "cpu" and native.enabled()
    res["pytorch_path_timed"] = with_torch_path
    extra = lambda f: {"engine_pytorch": _pytorch_path(f)} if with_torch_path else {}
    tr = timed({"engine": train_epoch(1, N, B, T), "eager": eager_train(N, B, T),
                "ensemble": train_epoch(R, N, B, T),
                **extra(train_epoch(1, N, B, T)), **peer("train")}, W, REP, BUD)
    section("train")
    # T_f = 55 first: it warms up the same code paths for the T_f = 300 group
    f55 = timed({"engine": floss_epoch(1, N, K, 55), "eager": eager_floss(N, K, 55),
                 "ensemble": floss_epoch(R, N, K, 55), **peer("floss_T55")}, W, REP, BUD)
    section("floss_T55")
    n_qr = res["qr_per_floss_epoch"] = T - default_transients(T)[0]
    qr_run, res["qr_kind"] = qr_calls(n_qr, N, K, dev)
    fl = timed({"engine": floss_epoch(1, N, K, T), "eager": eager_floss(N, K, T),
                "ensemble": floss_epoch(R, N, K, T), "qr_only": qr_run,
                **extra(floss_epoch(1, N, K, T)), **peer("floss_T300")},
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
    res["gemm_shapes"] = gemm_shapes(res["peak_gflops"], quick, dev)
    section("gemm_shapes")
    # the epoch's QR calls alone, timed round-robin with the epochs
    res["qr_share_of_floss_epoch"] = fl["qr_only"]["paired_ratio_to_engine"]

    # -- scaling table ---------------------------------------------------------------
    Ns = [32, 80, 160] if quick else [32, 80, 160, 320]
    TF = 55
    rows = []
    for n in Ns:
        t1 = timed({"e": train_epoch(1, n, B, T)}, 1, 3 if quick else 5, BUD, False)["e"]
        t2 = timed({"e": floss_epoch(1, n, n, TF)}, 1, 3 if quick else 5, BUD, False)["e"]
        rows.append({"N": n, "k": n, "B": B, "T": T, "T_f": TF, "train_ms": t1["median_ms"],
                     "floss_ms": t2["median_ms"], "train_flops": train_flops(n, B, T),
                     "floss_flops": floss_flops(n, n, TF)})
    kN = 160
    ks = [20, 160] if quick else [10, 20, 40, 80, 160]
    krows = []
    for k in ks:
        t2 = timed({"e": floss_epoch(1, kN, k, TF)}, 1, 3 if quick else 5, BUD, False)["e"]
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
    res["gated"] = gated_section(quick, BUD, dev)
    section("gated")
    # the anchors were measured on another core: the same-run eager versions give the
    # ratio of the two machines' speed, which scales the absolute targets to this one
    res["anchor"] = dict(ANCHOR)
    res["machine_factor_vs_anchor"] = {
        "train": res["eager_train_epoch_ms"] / ANCHOR["eager_train_epoch_ms"],
        "floss": res["eager_floss_epoch_ms"] / ANCHOR["eager_floss_epoch_ms"],
        "matmul": ANCHOR["matmul_gflops"] / res["matmul_gflops"]}
    res["target_check"] = check_targets(res) if dev.type == "cpu" else {}
    res["machine"]["loadavg_at_end"] = loadavg()
    res["total_benchmark_s"] = time.perf_counter() - t_all
    return res


def gated_section(quick: bool, budget: float, device: torch.device | str = "cpu") -> dict:
    """LSTM and GRU flossing and training epochs next to the tanh network: at the Fig 6 shape
    (N = 32 hidden units, k = 1, T_f = 300), with k = 32 (T_f = 55), and training (B = 16, T = 300);
    time ratios to tanh (paired, round-robin) and GFLOP/s under each engine's FLOP model."""
    rows = []
    archs = ("tanh", "lstm", "gru")
    for label, kind, N, k, T in (("floss N=32 k=1 T_f=300 (Fig 6)", "floss", 32, 1, 300),
                                 ("floss N=32 k=32 T_f=55", "floss", 32, 32, 55),
                                 ("train N=32 B=16 T=300", "train", 32, None, 300)):
        fns = {a: (engine_floss_epoch(1, N, k, T, arch=a, device=device) if kind == "floss"
                   else engine_train_epoch(1, N, 16, T, arch=a, device=device)) for a in archs}
        t = time_round_robin(fns, 1, 3 if quick else 9, budget, device=device)
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
    device = torch.device(args.device)
    if args.pin and device.type == "cpu" and args.threads == 1:
        pin_to_one_cpu()
    native.tune_allocator()  # as the training job does
    if device.type == "cuda" and not torch.cuda.is_available():
        print("flossrepro.perf.bench: error: --device cuda but CUDA is not available here; use --device cpu", file=sys.stderr)
        return 2
    if device.type == "cuda" and args.out == "results/bench.json":
        args.out = "results/bench_cuda.json"
    if args.gated:
        return _gated_only(args, device)
    res = run_benchmark(quick=args.quick, threads=args.threads, log=lambda s: print(s, flush=True),
                        device=device)
    report = format_report(res)
    print(report, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    out.with_suffix(".txt").write_text(report + "\n")
    print(f"wrote {out} and {out.with_suffix('.txt')}")
    return 0


def _gated_only(args, device: torch.device) -> int:
    """``--gated``: the LSTM/GRU section alone, with the environment record and the load."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    res = {**environment(args.threads, device), "quick": args.quick}
    res["gated"] = gated_section(args.quick, 1.5 if args.quick else 8.0, device)
    res["machine"]["loadavg_at_end"] = loadavg()
    res["total_benchmark_s"] = time.perf_counter() - t0
    report = format_gated_report(res)
    out = Path(args.out if args.out != "results/bench.json" else "results/bench_gated.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    out.with_suffix(".txt").write_text(report + "\n")
    print(report)
    print(f"wrote {out} and {out.with_suffix('.txt')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
