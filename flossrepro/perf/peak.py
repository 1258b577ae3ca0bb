"""The core's float32 peak for ``make bench``: the best single-thread rate of what is available.

Candidates (GFLOP/s, one thread, float32, each the best of a few timed calls: load from other
processes only slows a call down, and a median would lower the peak on a busy machine):

- ``torch_blas``: a 1024^3 ``torch`` matmul (:func:`flossrepro.perf.micro.matmul_gflops`, PyTorch's BLAS);
- ``numpy_blas``: ``numpy.matmul`` of two 1024 x 1024 float32 arrays, numpy's own BLAS (OpenBLAS in
  the wheels), in a subprocess started with ``OPENBLAS_NUM_THREADS=1`` (and ``OMP``/``MKL`` = 1),
  since OpenBLAS reads its thread count when it loads;
- ``xla``: a jitted 1024^3 ``jnp`` matmul when jax is installed, in a subprocess started with
  ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``
  (:data:`XLA_SINGLE_THREAD`; XLA reads it when jax is first imported);
- ``native_fma``: the native kernels' own FMA-throughput loop, ``flossrepro.engine.native.fma_peak_gflops()``,
  when that function exists (and returns a number).

Each subprocess also reports its process CPU time over wall time during the timed calls: all
threads of the process count, so a value well above 1 means the library ran on more than one core,
and such a candidate is left out of the peak (:func:`choose_peak`). The peak is the largest
remaining candidate; ``fraction_of_peak`` in ``results/bench.json`` is measured against it.

This file runs as a script for the subprocesses (``python peak.py numpy|xla``): it imports
neither torch nor the package.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["XLA_SINGLE_THREAD", "SINGLE_THREAD_ENV", "choose_peak", "measure_subprocess", "cpu_isa",
           "MAX_CPU_OVER_WALL"]

#: XLA flags for one CPU thread (set before jax is imported)
XLA_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#: environment of the measuring subprocesses
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "JAX_PLATFORMS": "cpu"}
#: a candidate whose process CPU time exceeds its wall time by more than this ran multi-threaded
MAX_CPU_OVER_WALL = 1.25


def with_xla_single_thread(flags: str | None) -> str:
    """``XLA_FLAGS`` with the single-thread flags added (those already there are kept)."""
    flags = (flags or "").strip()
    add = [f for f in XLA_SINGLE_THREAD.split() if f.split("=")[0] not in flags]
    return " ".join([flags, *add]).strip()


def _time_calls(f, n: int = 1024, repeats: int = 7) -> dict:
    f()
    f()
    ts, cpu, wall = [], 0.0, 0.0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        f()
        dt = time.perf_counter() - t0
        ts.append(dt)
        cpu += time.process_time() - c0
        wall += dt
    ts.sort()
    return {"gflops": 2.0 * n ** 3 / ts[len(ts) // 2] / 1e9, "best_gflops": 2.0 * n ** 3 / ts[0] / 1e9,
            "cpu_over_wall": cpu / wall}


def _numpy_rate(n: int = 1024) -> dict:
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    out = _time_calls(lambda: np.matmul(a, b, out=c), n)
    out["library"] = "numpy " + np.__version__
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["library"] += f" ({cfg.get('name')} {cfg.get('version')})"
    except Exception:  # noqa: BLE001 - older numpy: no dict mode
        pass
    return out


def _xla_rate(n: int = 1024) -> dict:
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    out = _time_calls(lambda: f(a, b).block_until_ready(), n)
    out["library"] = f"jax {jax.__version__} ({jax.devices()[0].platform})"
    return out


def measure_subprocess(kind: str, timeout: float = 120.0) -> dict:
    """``{"gflops", "best_gflops", "cpu_over_wall", "library"}`` of ``kind`` (``numpy`` or ``xla``)
    measured in a fresh single-thread process, or ``{"gflops": None, "error": ...}``."""
    env = dict(os.environ, **SINGLE_THREAD_ENV)
    env["XLA_FLAGS"] = with_xla_single_thread(env.get("XLA_FLAGS"))
    try:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), kind], env=env, capture_output=True,
                           text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return {"gflops": None, "error": f"{type(e).__name__}: {e}"}
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["exit status %d" % p.returncode])[-1]
        return {"gflops": None, "error": err}
    return json.loads(lines[-1])


def _usable(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def choose_peak(candidates: dict, cpu_over_wall: dict | None = None) -> tuple[float | None, str | None]:
    """``(peak, source)``: the largest usable candidate (a positive finite number; ``None``, NaN or a
    missing entry is skipped, as is one whose ``cpu_over_wall`` exceeds :data:`MAX_CPU_OVER_WALL`);
    ``(None, None)`` when there is none."""
    cpu_over_wall = cpu_over_wall or {}
    best = None
    for name, v in candidates.items():
        ratio = cpu_over_wall.get(name)
        if not _usable(v) or (_usable(ratio) and ratio > MAX_CPU_OVER_WALL):
            continue
        if best is None or v > candidates[best]:
            best = name
    return (None, None) if best is None else (float(candidates[best]), best)


def cpu_isa(flags: set[str] | None = None) -> str:
    """The vector instruction sets of this CPU from ``/proc/cpuinfo`` (e.g. ``"AVX-512 (f dq bw vl
    vnni bf16), AVX2, FMA"``), or ``"unknown"``."""
    if flags is None:
        flags = set()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
        except OSError:
            pass
    parts = []
    a512 = sorted(f[len("avx512"):].lstrip("_") for f in flags if f.startswith("avx512"))
    if a512:
        order = ["f", "dq", "cd", "bw", "vl", "ifma", "vbmi", "vbmi2", "vnni", "bitalg", "vpopcntdq", "bf16", "fp16",
                 "vp2intersect"]
        a512.sort(key=lambda s: (order.index(s) if s in order else len(order), s))
        parts.append("AVX-512 (" + " ".join(a512) + ")")
    if "avx2" in flags:
        parts.append("AVX2")
    elif "avx" in flags:
        parts.append("AVX")
    if "fma" in flags:
        parts.append("FMA")
    if "neon" in flags or "asimd" in flags:
        parts.append("NEON/ASIMD")
    return ", ".join(parts) or "unknown"


if __name__ == "__main__":
    # run as a script: this folder is sys.path[0]; drop it so that no module here shadows a library's
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    print(json.dumps({"numpy": _numpy_rate, "xla": _xla_rate}[sys.argv[1]]()))
