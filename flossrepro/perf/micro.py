"""Micro-measurements of the core the benchmark runs on: single-thread matmul rates, the QR
of the tangent loop's shape, ``torch.mm`` and the native kernels' own GEMM at the engine's
GEMM shapes (:data:`GEMM_SHAPES`), and the core's float32 peak (:func:`peak_section`, the
candidates of :mod:`flossrepro.perf.peak`)."""
from __future__ import annotations

import time

import torch

from flossrepro.engine import native
from flossrepro.jobs.workload import sync
from flossrepro.perf import peak as _peak

__all__ = ["GEMM_SHAPES", "matmul_gflops", "matmul_rates", "small_bmm_gflops", "qr_us", "qr_calls",
           "torch_mm_gflops", "gemm_shapes", "peak_section", "process_cpu_over_wall"]

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


def matmul_gflops(n: int = 1024, repeats: int = 5, device: torch.device | str = "cpu") -> float:
    """GFLOP/s of an ``n^3`` float32 ``torch`` matmul, median of ``repeats`` calls."""
    return matmul_rates(n, repeats, device)["gflops"]


def matmul_rates(n: int = 1024, repeats: int = 5, device: torch.device | str = "cpu") -> dict:
    """``{"gflops": median, "best_gflops": best}`` of ``repeats`` ``n^3`` float32 ``torch`` matmuls."""
    dev = torch.device(device)
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    a @ b
    sync(dev)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync(dev)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return {"gflops": 2.0 * n ** 3 / ts[len(ts) // 2] / 1e9, "best_gflops": 2.0 * n ** 3 / ts[0] / 1e9}


def small_bmm_gflops(R: int = 1, N: int = 80, k: int = 75, repeats: int = 7, inner: int = 200,
                     device: torch.device | str = "cpu") -> float:
    """GFLOP/s of ``torch.bmm`` of ``[R, N, N] x [R, N, k]`` float32 (median of ``repeats`` loops)."""
    dev = torch.device(device)
    W, Q = torch.randn(R, N, N, device=dev), torch.randn(R, N, k, device=dev)
    torch.bmm(W, Q)
    sync(dev)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.bmm(W, Q)
        sync(dev)
        ts.append((time.perf_counter() - t0) / inner)
    return 2.0 * R * N * N * k / sorted(ts)[len(ts) // 2] / 1e9


def qr_us(n: int = 80, k: int = 75, repeats: int = 9, inner: int = 50, device: torch.device | str = "cpu") -> dict:
    """Time (us) of one ``torch.linalg.qr`` of an ``[n, k]`` float32 matrix: median and
    best of ``repeats`` batches of ``inner`` calls."""
    dev = torch.device(device)
    A = torch.randn(1, n, k, device=dev)
    torch.linalg.qr(A)
    sync(dev)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.linalg.qr(A)
        sync(dev)
        ts.append((time.perf_counter() - t0) / inner)
    ts.sort()
    return {"median_us": 1e6 * ts[len(ts) // 2], "min_us": 1e6 * ts[0]}


def qr_calls(n_calls: int = 290, n: int = 80, k: int = 75, device: torch.device | str = "cpu"):
    """``n_calls`` QRs of an ``[n, k]`` float32 matrix, as the engine does them: the native
    kernel's Householder QR (one C call each) when the native kernels are in use, else
    ``torch.linalg.qr``. Returns ``(run, label)``."""
    dev = torch.device(device)
    A = torch.randn(1, n, k)
    if dev.type == "cpu" and native.available(A):
        aT, rT, tau = A[0].t().contiguous(), torch.empty(k, k), torch.empty(k + n)
        f, pa, pr, pt = native._fn("qr", torch.float32), native._p(aT), native._p(rT), native._p(tau)

        def run_native(bufs=(aT, rT, tau)):  # the buffers live as long as the closure
            for _ in range(n_calls):
                f(1, n, k, pa, pr, pt)

        return run_native, "native Householder QR"
    A = A.to(dev)

    def run():
        for _ in range(n_calls):
            torch.linalg.qr(A)

    return run, "torch.linalg.qr"


def torch_mm_gflops(M: int, N: int, K: int, ta: str = "N", tb: str = "N", repeats: int = 7,
                    inner: int = 500, device: torch.device | str = "cpu") -> float:
    """GFLOP/s of ``torch.mm`` (into a preallocated output) for ``C[M,N] = op(A) op(B)``, ``op`` the
    identity (``"N"``) or the transpose (``"T"``, of a stored ``[K, M]`` / ``[N, K]`` matrix)."""
    dev = torch.device(device)
    A = torch.randn(M, K, device=dev) if ta == "N" else torch.randn(K, M, device=dev).t()
    B = torch.randn(K, N, device=dev) if tb == "N" else torch.randn(N, K, device=dev).t()
    C = torch.empty(M, N, device=dev)
    torch.mm(A, B, out=C)
    sync(dev)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(A, B, out=C)
        sync(dev)
        ts.append((time.perf_counter() - t0) / inner)
    return 2.0 * M * N * K / sorted(ts)[len(ts) // 2] / 1e9


def gemm_shapes(peak: float, quick: bool = False, device: torch.device | str = "cpu") -> list | None:
    """The native kernels' own GEMM (``native.gemm_gflops(M, N, K, ta, tb)``, timed in C) and
    ``torch.mm`` at the engine's shapes (:data:`GEMM_SHAPES`) with their fractions of ``peak``;
    ``None`` when the native module has no ``gemm_gflops``."""
    dev = torch.device(device)
    gemm = getattr(native, "gemm_gflops", None)
    if gemm is None or dev.type != "cpu":
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
        t = torch_mm_gflops(M, N, K, ta, tb, 3 if quick else 7, device=dev)
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


def peak_section(torch_gflops: float, log=print, device: torch.device | str = "cpu") -> dict:
    """The core's float32 peak (:mod:`flossrepro.perf.peak`): every candidate with its source, the
    largest as ``peak_gflops`` / ``peak_source``; ``torch_gflops`` is the torch matmul's best rate.
    Each candidate is the best of a few timed calls (load only slows a call down: a median
    would lower the peak on a busy machine and flatter the fractions). On a GPU only the large
    matmul counts."""
    dev = torch.device(device)
    cands = {"torch_blas": torch_gflops}
    info = {"torch_blas": {"gflops": torch_gflops, "library": f"torch {torch.__version__}"
                           + (" (MKL)" if torch.backends.mkl.is_available() else "")}}
    if dev.type == "cpu":
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


def process_cpu_over_wall(fn, n: int = 3) -> float:
    """The process's CPU time over wall time during ``n`` calls of ``fn`` (every thread counts:
    above 1 means more than one core was busy)."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    return (time.process_time() - c0) / (time.perf_counter() - t0)
