"""Building and loading the native (compiled C) kernels of :mod:`flossrepro.engine.native`.

- Built by ``make setup`` / ``make native`` (:func:`flossrepro.engine.native.main`) and, failing
  that, on first use; plain C (``cc``, a few seconds). The library name carries a hash of the
  sources, flags and compiler, so a changed source is rebuilt and machines with other CPUs
  build their own.
- ``FLOSSREPRO_NATIVE=0`` forces the pure-PyTorch path; ``FLOSSREPRO_NATIVE=1`` makes a
  failed build an error instead of a fallback. ``FLOSSREPRO_NATIVE_DIR`` sets where the
  library is built (default: ``flossrepro/engine/csrc/build`` if writable, else
  ``$XDG_CACHE_HOME/flossrepro`` or ``~/.cache/flossrepro``); ``FLOSSREPRO_NATIVE_ISA``
  replaces the instruction-set flags chosen from ``/proc/cpuinfo`` (AVX2 + FMA).
- ``FLOSSREPRO_NATIVE_GEMM`` picks the float32 GEMM kind (:func:`gemm`, :func:`gemm_kind`).

Here: the C library's ctypes signatures (:data:`KERNEL_ARGTYPES`, :data:`LIBRARY_SIGNATURES`),
compiling and loading it (:func:`build`, :func:`load`, :func:`status`), the switch to the
PyTorch path (:func:`disabled`, :func:`available`), the instruction set and GEMM kind
(:func:`isa`, :func:`gemm`), and the kernels' own rate measurements (:func:`gemm_gflops`,
:func:`fma_peak_gflops`) and :func:`tune_allocator`.
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "enabled", "status", "build", "load", "disabled", "tune_allocator", "gemm", "gemm_kind",
           "gemm_kinds_supported", "gemm_gflops", "fma_peak_gflops", "isa", "KERNEL_ARGTYPES",
           "LIBRARY_SIGNATURES", "GEMM_KINDS", "ABI_VERSION"]

ABI_VERSION = 3
_SRC_DIR = Path(__file__).resolve().parent / "csrc"
_SOURCES = ("kernels.c", "kernels.h", "gemm.h")
_lock = threading.Lock()
_state: dict = {"lib": None, "tried": False, "reason": "not loaded yet", "off": 0}

_I, _P, _D = ctypes.c_int, ctypes.c_void_p, ctypes.c_double
# ctypes signatures of the exported C functions (csrc/kernels.c, csrc/kernels.h): sizes are
# ``int``, every buffer (REAL *, unsigned char *) a pointer, the leak (1 - dt of the rate
# network, 0 for the vanilla one) a ``double``. The kernels (``<name>_s`` for
# float32, ``<name>_d`` for float64) return void. tests/test_native.py checks this table
# against the C prototypes.
KERNEL_ARGTYPES: dict[str, list] = {
    "run_states": [_I] * 5 + [_D] + [_P] * 5,    # R T B N nl leak | h0 Wt drive H P
    "bptt": [_I] * 5 + [_D] + [_P] * 6,          # R T B N nl leak | W P dH G dh0 work
    "rnn_io_fwd": [_I] * 7 + [_P] * 10,   # R T B N S O nl | h0 Wt VgT b wrT c x H P y
    "rnn_io_bwd": [_I] * 6 + [_P] * 7,    # R T B N O nl | W wr P dy G dh0 work
    "qr": [_I] * 3 + [_P] * 3,            # batch m n | a rt work
    "tangent_fwd": [_I] * 4 + [_D] + [_P] * 7,   # R Tq N k leak | Wt Dq Q0T flags QT RT work
    "tangent_bwd": [_I] * 5 + [_D] + [_P] * 11,  # R Tq N k transient_q leak | W Dq Q0T QT RT flags c QbarT dW yq work
}
LIBRARY_SIGNATURES: dict[str, tuple[list, object]] = {
    "fr_abi_version": ([], ctypes.c_int),
    "fr_set_blas": ([_P] * 5, None),
    "fr_tanh_f32": ([_I, _P, _P], None),
    "fr_set_gemm": ([_I], ctypes.c_int),
    "fr_gemm_kind": ([], ctypes.c_int),
    "fr_gemm_supported": ([_I], ctypes.c_int),
    "fr_sgemm": ([ctypes.c_char, ctypes.c_char, _I, _I, _I, ctypes.c_float, _P, _I, _P, _I, ctypes.c_float, _P, _I], None),
    "fr_sgemm_batched": ([_I, ctypes.c_char, ctypes.c_char, _I, _I, _I, ctypes.c_float, _P, _I, ctypes.c_long, _P, _I,
                          ctypes.c_long, ctypes.c_float, _P, _I, ctypes.c_long], None),
    "fr_sgemm_repeat": ([_I, ctypes.c_char, ctypes.c_char, _I, _I, _I, _P, _I, _P, _I, _P, _I], None),
    "fr_fma_peak": ([ctypes.c_long, _P], ctypes.c_double),
}
# float32 GEMM kinds of csrc/gemm.h (fr_set_gemm)
GEMM_KINDS = {"blas": 0, "avx2": 1, "avx512": 2}


def _declare(lib: ctypes.CDLL) -> None:
    """Set ``argtypes`` / ``restype`` of every exported function (a missing one raises)."""
    for name, (args, res) in LIBRARY_SIGNATURES.items():
        f = getattr(lib, name)
        f.argtypes, f.restype = args, res
    for name, args in KERNEL_ARGTYPES.items():
        for suffix in ("_s", "_d"):
            f = getattr(lib, name + suffix)
            f.argtypes, f.restype = args, None


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _isa_flags() -> list[str]:
    """Instruction-set flags for this CPU: AVX2 + FMA where it has them, else none.
    ``FLOSSREPRO_NATIVE_ISA`` replaces them (e.g. ``"-mavx512f -mavx512vl -mprefer-vector-width=512"``).
    AVX-512 is not chosen by itself: on a Xeon it made the QR slower (17.7 -> 32 ms per
    flossing epoch's QRs), the loops being short (80 rows)."""
    env = os.environ.get("FLOSSREPRO_NATIVE_ISA")
    if env is not None:
        return env.split()
    if platform.machine() in ("x86_64", "AMD64") and {"avx2", "fma"} <= _cpu_flags():
        return ["-mavx2", "-mfma"]
    return []


def _flags() -> list[str]:
    return ["-O3", "-std=c99", "-fPIC", "-shared", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math",
            "-fvisibility=hidden", "-Wall"] + _isa_flags()


def _build_dir() -> Path:
    env = os.environ.get("FLOSSREPRO_NATIVE_DIR")
    if env:
        return Path(env)
    local = _SRC_DIR / "build"
    try:
        local.mkdir(exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "flossrepro"


def _lib_path(cc: str, flags: list[str]) -> Path:
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update((_SRC_DIR / name).read_bytes())
    h.update(" ".join([cc] + flags).encode())
    try:
        h.update(subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout.encode())
    except (OSError, subprocess.SubprocessError):
        pass
    return _build_dir() / f"_fr_kernels-{h.hexdigest()[:16]}.so"


def build(verbose: bool = False) -> Path:
    """Compile the kernels (if not built yet) and return the library's path; raises on failure."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC or install gcc)")
    flags = _flags()
    path = _lib_path(cc, flags)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    cmd = [cc, *flags, str(_SRC_DIR / "kernels.c"), "-o", tmp, "-lm"]
    if verbose:
        print(" ".join(cmd), file=sys.stderr)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"building the native kernels failed ({' '.join(cmd)}):\n{res.stderr.strip()}")
    os.replace(tmp, path)  # atomic: concurrent builders end with one complete library
    return path


def _blas_symbols() -> dict[str, int]:
    """Addresses of the BLAS / VML entry points in PyTorch's own CPU library."""
    libdir = Path(torch.__file__).resolve().parent / "lib"
    names = ("sgemm_", "dgemm_", "strsm_", "dtrsm_", "vdTanh")
    for cand in sorted(glob.glob(str(libdir / "libtorch_cpu*"))) + [None]:
        try:
            lib = ctypes.CDLL(cand) if cand else ctypes.CDLL(None)
        except OSError:
            continue
        found = {}
        for n in names:
            try:
                found[n] = ctypes.cast(getattr(lib, n), ctypes.c_void_p).value
            except AttributeError:
                pass
        if all(n in found for n in names[:4]):
            return found
    raise RuntimeError("PyTorch's library exports no Fortran BLAS (sgemm_, dgemm_, strsm_, dtrsm_)")


def load() -> ctypes.CDLL | None:
    """The loaded kernel library, or None (then :func:`status` says why). Thread-safe, cached."""
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if _state["tried"]:
            return _state["lib"]
        mode = os.environ.get("FLOSSREPRO_NATIVE", "auto").lower()
        lib, reason = None, "disabled by FLOSSREPRO_NATIVE=0"
        if mode not in ("0", "off", "false", "no"):
            try:
                sym = _blas_symbols()
                lib = ctypes.CDLL(str(build()))
                _declare(lib)
                if lib.fr_abi_version() != ABI_VERSION:
                    raise RuntimeError(f"library ABI {lib.fr_abi_version()} != {ABI_VERSION}; delete it to rebuild")
                lib.fr_set_blas(*[ctypes.c_void_p(sym.get(n)) for n in
                                  ("sgemm_", "dgemm_", "strsm_", "dtrsm_", "vdTanh")])
                want = _gemm_env()
                got = lib.fr_set_gemm(-1 if want == "auto" else GEMM_KINDS[want])
                if got < 0:
                    raise RuntimeError(f"FLOSSREPRO_NATIVE_GEMM={want}: this CPU or build has no {want} kernels "
                                       f"(use auto or blas)")
                reason = f"loaded {_shown(lib._name)} (float32 GEMM: {_KIND_NAMES[got]})"
            except Exception as e:  # noqa: BLE001 - any failure means: use the PyTorch path
                lib, reason = None, f"{type(e).__name__}: {e}"
                if mode in ("1", "on", "true", "yes", "require"):
                    raise RuntimeError(f"FLOSSREPRO_NATIVE={mode} but the native kernels are unavailable: {reason}") from e
        _state.update(lib=lib, tried=True, reason=reason)
        return lib


_KIND_NAMES = {v: k for k, v in GEMM_KINDS.items()}


def _shown(path: str) -> str:
    """The library's path as reports show it: relative to the repository (or home) where it
    lies inside one, so that stored results carry no machine paths."""
    p = Path(path).resolve()
    for base, prefix in ((_SRC_DIR.parent.parent, ""), (Path.home(), "~/")):
        try:
            return prefix + str(p.relative_to(base.resolve()))
        except ValueError:
            continue
    return str(p)


def _gemm_env() -> str:
    """``FLOSSREPRO_NATIVE_GEMM``: auto (default: the widest microkernels this CPU has), blas,
    avx2 or avx512; anything else is an error naming the setting."""
    want = os.environ.get("FLOSSREPRO_NATIVE_GEMM", "auto").strip().lower() or "auto"
    if want != "auto" and want not in GEMM_KINDS:
        raise ValueError(f"FLOSSREPRO_NATIVE_GEMM={want!r} is not a GEMM kind; use one of: auto, "
                         + ", ".join(GEMM_KINDS))
    return want


def gemm_kind() -> str | None:
    """The float32 GEMM the native loops use: ``"avx512"``, ``"avx2"`` (our microkernels,
    csrc/gemm.h) or ``"blas"`` (PyTorch's BLAS); None without the library."""
    lib = load()
    return None if lib is None else _KIND_NAMES[lib.fr_gemm_kind()]


@contextmanager
def gemm(kind: str):
    """Within the block the float32 GEMM is ``kind`` (``"auto"``, ``"blas"``, ``"avx2"``,
    ``"avx512"``): for tests and the benchmark. Raises ValueError for a kind this CPU lacks."""
    lib = load()
    if lib is None:
        raise RuntimeError(f"flossrepro native kernels unavailable: {status()}")
    if kind != "auto" and kind not in GEMM_KINDS:
        raise ValueError(f"unknown GEMM kind {kind!r}; use one of: auto, " + ", ".join(GEMM_KINDS))
    prev = lib.fr_gemm_kind()
    if lib.fr_set_gemm(-1 if kind == "auto" else GEMM_KINDS[kind]) < 0:
        raise ValueError(f"this CPU has no {kind} GEMM kernels")
    try:
        yield
    finally:
        lib.fr_set_gemm(prev)


def gemm_kinds_supported() -> list[str]:
    """The float32 GEMM kinds this CPU and build can run."""
    lib = load()
    return [] if lib is None else [name for name, code in GEMM_KINDS.items() if lib.fr_gemm_supported(code)]


def gemm_gflops(M: int, N: int, K: int, ta: str = "N", tb: str = "N", min_time: float = 0.05, repeats: int = 5) -> float:
    """GFLOP/s of the native float32 GEMM ``C[M,N] = op(A) op(B)`` (row-major, as the loops call
    it), timed in C (calls repeated until ``min_time`` seconds; median of ``repeats``)."""
    lib = load()
    if lib is None:
        raise RuntimeError(f"flossrepro native kernels unavailable: {status()}")
    A = torch.randn((M, K) if ta == "N" else (K, M))
    B = torch.randn((K, N) if tb == "N" else (N, K))
    C = torch.empty(M, N)
    ptr = lambda t: ctypes.c_void_p(t.data_ptr())  # noqa: E731 - fresh contiguous CPU tensors
    args = (ta.encode(), tb.encode(), M, N, K, ptr(A), A.shape[1], ptr(B), B.shape[1], ptr(C), N)
    reps = 1
    while True:  # calibrate
        t0 = time.perf_counter()
        lib.fr_sgemm_repeat(reps, *args)
        dt = time.perf_counter() - t0
        if dt >= min_time / 4 or reps > 1 << 24:
            break
        reps *= 4
    reps = max(1, int(reps * min_time / max(dt, 1e-9)))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        lib.fr_sgemm_repeat(reps, *args)
        ts.append((time.perf_counter() - t0) / reps)
    ts.sort()
    return 2.0 * M * N * K / ts[len(ts) // 2] / 1e9


def fma_peak_gflops(seconds: float = 0.2, repeats: int = 5) -> float | None:
    """One core's float32 FMA throughput (GFLOP/s) measured by the kernels' own register-only
    FMA loop (AVX-512 or AVX2, the widest this CPU has): the arithmetic ceiling no GEMM can
    pass. Best of ``repeats``; None without the library or the vector kernels."""
    lib = load()
    if lib is None:
        return None
    sink = ctypes.c_float()
    iters = 1 << 16
    while True:
        t0 = time.perf_counter()
        flops = lib.fr_fma_peak(iters, ctypes.byref(sink))
        dt = time.perf_counter() - t0
        if flops == 0:
            return None
        if dt >= seconds / 4:
            break
        iters *= 4
    iters = max(1, int(iters * seconds / dt))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        flops = lib.fr_fma_peak(iters, ctypes.byref(sink))
        best = max(best, flops / (time.perf_counter() - t0) / 1e9)
    return best


def isa() -> str:
    """The instruction set the kernels use: the build flags and the float32 GEMM kind."""
    flags = " ".join(_isa_flags()) or "no ISA flags"
    return f"{flags}; float32 GEMM: {gemm_kind() or 'n/a'}"


def tune_allocator() -> bool:
    """Let glibc keep and reuse large freed buffers (no ``mmap`` per allocation, no trimming).

    Every epoch allocates the same large buffers (the state trajectory; in flossing the
    ``[R, T, k, N]`` tangent systems: 7 MB per member at N=80, k=75, T=300). By default glibc
    maps each allocation above 32 MB afresh and the first touch of every page faults: for a
    20-member flossing epoch that costs ~10-20% of its time. Process-wide and irreversible,
    so the library never does it on import: the ``python -m flossrepro`` job and the
    benchmark call it. Returns True where it took effect (Linux with glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
    except (OSError, AttributeError):
        return False


def status() -> str:
    """Why the kernels are or are not in use (loads them first)."""
    load()
    return _state["reason"]


def enabled() -> bool:
    """True where the kernel library is loaded."""
    return load() is not None


@contextmanager
def disabled():
    """Within the block, :func:`available` is False: the pure-PyTorch path runs (tests, benchmark)."""
    _state["off"] += 1
    try:
        yield
    finally:
        _state["off"] -= 1


def available(*tensors: Tensor) -> bool:
    """True if the native kernels can run on these tensors (CPU, one float dtype)."""
    if not tensors or _state["off"]:
        return False
    dt = tensors[0].dtype
    if dt not in (torch.float32, torch.float64):
        return False
    if any(t.device.type != "cpu" or t.dtype != dt for t in tensors):
        return False
    return load() is not None
