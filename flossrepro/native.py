"""Native (compiled C) loops for CPU tensors, built from ``flossrepro/csrc`` on first use.

The training forward/backward (:func:`flossrepro.models.rnn_sequence`) and the Lyapunov
tangent loop (:func:`flossrepro.lyapunov.lyapunov_spectrum`) spend most of their time in
per-step overhead and in LAPACK's QR of small tall matrices. ``csrc/kernels.c`` runs those
loops in C: the matrix products call the BLAS PyTorch itself links (looked up in PyTorch's
library, so nothing else is linked), the Householder QR is our own.

- Built by ``make setup`` (:func:`main`) and, failing that, on first use;
  plain C (``cc``, a few seconds). The library name carries a hash of the sources, flags and
  compiler, so a changed source is rebuilt and machines with other CPUs build their own.
- Used automatically for float32/float64 CPU tensors; everything else (CUDA, other dtypes)
  takes the pure-PyTorch path, as does every tensor when the library cannot be built or
  PyTorch's library does not export the BLAS (:func:`status` says why).
- ``FLOSSREPRO_NATIVE=0`` forces the pure-PyTorch path; ``FLOSSREPRO_NATIVE=1`` makes a
  failed build an error instead of a fallback. ``FLOSSREPRO_NATIVE_DIR`` sets where the
  library is built (default: ``flossrepro/csrc/build`` if writable, else
  ``$XDG_CACHE_HOME/flossrepro`` or ``~/.cache/flossrepro``); ``FLOSSREPRO_NATIVE_ISA``
  replaces the instruction-set flags chosen from ``/proc/cpuinfo`` (AVX2 + FMA).

``make native`` (``flossrepro.native.main()``) builds, checks the kernels against PyTorch and
prints the status.
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
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "enabled", "status", "build", "load", "disabled", "tune_allocator", "run_states", "bptt", "rnn_io_fwd", "rnn_io_bwd", "qr",
           "tangent_fwd", "tangent_bwd", "NL_CODES"]

ABI_VERSION = 1
NL_CODES = {"tanh": 0, "relu": 1, "identity": 2}
_SRC_DIR = Path(__file__).resolve().parent / "csrc"
_SOURCES = ("kernels.c", "kernels.h")
_lock = threading.Lock()
_state: dict = {"lib": None, "tried": False, "reason": "not loaded yet", "off": 0}


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
                if lib.fr_abi_version() != ABI_VERSION:
                    raise RuntimeError(f"library ABI {lib.fr_abi_version()} != {ABI_VERSION}; delete it to rebuild")
                lib.fr_set_blas(*[ctypes.c_void_p(sym.get(n)) for n in
                                  ("sgemm_", "dgemm_", "strsm_", "dtrsm_", "vdTanh")])
                reason = "loaded " + lib._name
            except Exception as e:  # noqa: BLE001 - any failure means: use the PyTorch path
                lib, reason = None, f"{type(e).__name__}: {e}"
                if mode in ("1", "on", "true", "yes", "require"):
                    raise RuntimeError(f"FLOSSREPRO_NATIVE={mode} but the native kernels are unavailable: {reason}") from e
        _state.update(lib=lib, tried=True, reason=reason)
        return lib


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
    load()
    return _state["reason"]


def enabled() -> bool:
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


def _fn(name: str, dtype: torch.dtype):
    lib = load()
    if lib is None:
        raise RuntimeError(f"flossrepro native kernels unavailable: {status()}")
    return getattr(lib, name + ("_s" if dtype == torch.float32 else "_d"))


def _p(t: Tensor | None):
    if t is None:
        return ctypes.c_void_p(None)
    assert t.is_contiguous(), "native kernels need contiguous tensors"
    return ctypes.c_void_p(t.data_ptr())


def _flags_buf(flags) -> Tensor:
    return torch.tensor([1 if f else 0 for f in flags], dtype=torch.uint8)


def run_states(h0: Tensor, Wt: Tensor, drive: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor]:
    """``(H, P)``, member-major ``[R,T,B,N]``: ``P[t] = phi(H[t-1])``, ``H[t] = P[t] W^T + drive[t]``
    for ``h0 [R,B,N]``, ``Wt = W^T [R,N,N]``, ``drive [R,T,B,N]``."""
    R, T, B, N = drive.shape
    H, P = torch.empty_like(drive), torch.empty_like(drive)
    _fn("run_states", H.dtype)(R, T, B, N, NL_CODES[nonlinearity], _p(h0), _p(Wt), _p(drive), _p(H), _p(P))
    return H, P


def bptt(W: Tensor, P: Tensor, dH: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor]:
    """Backward of :func:`run_states` for ``dH [R,T,B,N]``: ``(G [R,T,B,N], dh0 [R,B,N])``."""
    R, T, B, N = dH.shape
    G, dh0 = torch.empty_like(dH), torch.empty(R, B, N, dtype=dH.dtype)
    work = torch.empty(2 * B * N, dtype=dH.dtype)
    _fn("bptt", G.dtype)(R, T, B, N, NL_CODES[nonlinearity], _p(W), _p(P), _p(dH), _p(G), _p(dh0), _p(work))
    return G, dh0


def rnn_io_fwd(h0: Tensor, Wt: Tensor, VgT: Tensor, b: Tensor, wrT: Tensor, c: Tensor, x: Tensor,
               nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """The training network with input and readout (see ``csrc/kernels.h``): member-major
    ``x [R,T,B,S]`` -> ``(H, P [R,T,B,N], y [R,T,B,O])``."""
    R, T, B, S = x.shape
    N, O = Wt.shape[1], wrT.shape[2]
    H, P = torch.empty(R, T, B, N, dtype=x.dtype), torch.empty(R, T, B, N, dtype=x.dtype)
    y = torch.empty(R, T, B, O, dtype=x.dtype)
    _fn("rnn_io_fwd", x.dtype)(R, T, B, N, S, O, NL_CODES[nonlinearity], _p(h0), _p(Wt), _p(VgT), _p(b),
                               _p(wrT), _p(c), _p(x), _p(H), _p(P), _p(y))
    return H, P, y


def rnn_io_bwd(W: Tensor, wr: Tensor, P: Tensor, dy: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor]:
    """Backward of :func:`rnn_io_fwd` to the states: ``(G [R,T,B,N], dh0 [R,B,N])``."""
    R, T, B, N = P.shape
    O = wr.shape[1]
    G, dh0 = torch.empty_like(P), torch.empty(R, B, N, dtype=P.dtype)
    work = torch.empty(2 * B * N, dtype=P.dtype)
    _fn("rnn_io_bwd", P.dtype)(R, T, B, N, O, NL_CODES[nonlinearity], _p(W), _p(wr), _p(P), _p(dy), _p(G),
                               _p(dh0), _p(work))
    return G, dh0


def tanh_f32(x: Tensor) -> Tensor:
    """The kernels' own float32 tanh (``fr_tanhf`` in ``csrc/kernels.c``), for tests."""
    x = x.to(torch.float32).contiguous()
    out = torch.empty_like(x)
    lib = load()
    if lib is None:
        raise RuntimeError(f"flossrepro native kernels unavailable: {status()}")
    lib.fr_tanh_f32(x.numel(), _p(x), _p(out))
    return out


def qr(A: Tensor) -> tuple[Tensor, Tensor]:
    """Householder QR of a batch ``[..., m, n]`` (``m >= n``): ``(Q, R)`` as ``torch.linalg.qr``."""
    *batch, m, n = A.shape
    if n > m:
        raise ValueError(f"native.qr needs a tall matrix (m >= n), got {m} x {n}")
    if not available(A):
        raise ValueError(f"native.qr takes float32/float64 CPU tensors with the kernels loaded; got "
                         f"{A.dtype} on {A.device} ({status()})")
    b = 1
    for x in batch:
        b *= x
    aT = A.reshape(b, m, n).transpose(1, 2).clone(memory_format=torch.contiguous_format)  # never A's memory
    rT = torch.empty(b, n, n, dtype=A.dtype)
    work = torch.empty(n + m, dtype=A.dtype)
    _fn("qr", A.dtype)(b, m, n, _p(aT), _p(rT), _p(work))
    return aT.transpose(1, 2).reshape(*batch, m, n), rT.transpose(1, 2).reshape(*batch, n, n)


def tangent_fwd(Wt: Tensor, Dq: Tensor, Q0T: Tensor, flags) -> tuple[Tensor, Tensor]:
    """Forward tangent loop; ``Wt [R,N,N]``, ``Dq [R,Tq,N]``, ``Q0T [R,k,N]`` -> ``QT [R,Tq,k,N]``,
    ``RT [R,Tq,k,k]`` (see ``csrc/kernels.h``)."""
    R, Tq, N = Dq.shape
    k = Q0T.shape[1]
    kw = dict(dtype=Dq.dtype)
    QT, RT = torch.empty(R, Tq, k, N, **kw), torch.empty(R, Tq, k, k, **kw)
    work = torch.empty(k * N + k + N, **kw)
    fl = _flags_buf(flags)  # kept alive through the call (a temporary's memory could be reused)
    _fn("tangent_fwd", Dq.dtype)(R, Tq, N, k, _p(Wt), _p(Dq), _p(Q0T), _p(fl), _p(QT), _p(RT), _p(work))
    return QT, RT


TANGENT_CHUNK = 16  # as in csrc/kernels.h


def tangent_bwd(W: Tensor, Dq: Tensor, Q0T: Tensor, QT: Tensor, RT: Tensor, flags, c: Tensor,
                transient_q: int, second_order: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Backward tangent loop -> ``(dQ0^T [R,k,N], dW [R,N,N], yq [R,Tq,N] or None)``."""
    R, Tq, k, N = QT.shape
    kw = dict(dtype=QT.dtype)
    QbarT, dW = torch.zeros(R, k, N, **kw), torch.empty(R, N, N, **kw)
    yq = torch.empty(R, Tq, N, **kw) if second_order else None
    work = torch.empty(2 * TANGENT_CHUNK * k * N + k * N + 2 * k * k, **kw)
    fl = _flags_buf(flags)
    _fn("tangent_bwd", QT.dtype)(R, Tq, N, k, int(transient_q), _p(W), _p(Dq), _p(Q0T), _p(QT), _p(RT),
                                 _p(fl), _p(c), _p(QbarT), _p(dW), _p(yq), _p(work))
    return QbarT, dW, yq


def main() -> int:
    try:
        path = build(verbose=True)
    except Exception as e:  # noqa: BLE001
        print(f"flossrepro.native: not built ({e}); the pure-PyTorch path will be used", file=sys.stderr)
        return 0
    print(f"flossrepro.native: {path}")
    print(f"flossrepro.native: {status()}")
    if enabled():
        A = torch.randn(3, 80, 75, dtype=torch.float64)
        Q, R = qr(A)
        Qr, Rr = torch.linalg.qr(A)
        err = max((Q - Qr).abs().max().item(), (R - Rr).abs().max().item())
        print(f"flossrepro.native: QR of 3 x [80, 75] float64 vs torch.linalg.qr: max abs diff {err:.1e}")
        if err > 1e-10:
            print("flossrepro.native: MISMATCH", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
