"""Native (compiled C) loops for CPU tensors, built from ``flossrepro/engine/csrc`` on first use.

The training forward/backward (:func:`flossrepro.engine.models.rnn_sequence`) and the Lyapunov
tangent loop (:func:`flossrepro.engine.lyapunov.lyapunov_spectrum`) spend most of their time in
per-step overhead and in LAPACK's QR of small tall matrices. ``csrc/kernels.c`` runs those
loops in C: the matrix products call the BLAS PyTorch itself links (looked up in PyTorch's
library, so nothing else is linked), the Householder QR is our own.

- Used automatically for float32/float64 CPU tensors; everything else (CUDA, other dtypes)
  takes the pure-PyTorch path, as does every tensor when the library cannot be built or
  PyTorch's library does not export the BLAS (:func:`status` says why).
- Building and loading the library, the environment settings (``FLOSSREPRO_NATIVE``,
  ``FLOSSREPRO_NATIVE_DIR``, ``FLOSSREPRO_NATIVE_ISA``, ``FLOSSREPRO_NATIVE_GEMM``), the GEMM
  kind and the switch to the PyTorch path live in :mod:`flossrepro.engine.native_build`; their
  names are importable from here too.

``make native`` (:func:`main`) builds, checks the kernels against PyTorch and prints the status.

The boundary is checked: every exported C function has its ctypes ``argtypes`` / ``restype``
declared (:data:`KERNEL_ARGTYPES`), and every wrapper below checks the tensors it hands to C
(CPU, one float dtype, C-contiguous, the shapes the kernel reads) and the sizes (they must fit
a C ``int``) before any C code runs, raising :class:`NativeArgumentError` otherwise. These are
real checks, not ``assert``: they stay under ``python -O``, where a bad buffer would otherwise
be read or written out of bounds.
"""
from __future__ import annotations

import ctypes
import sys

import torch
from torch import Tensor

from flossrepro.engine.native_build import (ABI_VERSION, GEMM_KINDS, KERNEL_ARGTYPES, LIBRARY_SIGNATURES,  # noqa: F401
                                            _SOURCES, _SRC_DIR, _compiler, _gemm_env, available, build, disabled,
                                            enabled, fma_peak_gflops, gemm, gemm_gflops, gemm_kind,
                                            gemm_kinds_supported, isa, load, status, tune_allocator)

__all__ = ["available", "enabled", "status", "build", "load", "disabled", "tune_allocator", "gemm", "gemm_kind",
           "gemm_kinds_supported", "sgemm", "bmm", "gemm_gflops", "fma_peak_gflops", "isa", "run_states", "bptt",
           "rnn_io_fwd", "rnn_io_bwd", "qr", "tangent_fwd", "tangent_bwd", "tanh_f32", "NL_CODES", "KERNEL_ARGTYPES",
           "NativeArgumentError"]

NL_CODES = {"tanh": 0, "relu": 1, "identity": 2}
_INT_MAX = 2 ** 31 - 1


class NativeArgumentError(ValueError):
    """An argument handed to a native kernel does not fit its C signature: a tensor on the
    wrong device, of the wrong dtype, not C-contiguous or of the wrong shape, or a size that
    does not fit a C ``int``. Raised before any C code runs."""


def sgemm(A: Tensor, B: Tensor, ta: str = "N", tb: str = "N", alpha: float = 1.0, beta: float = 0.0,
          C: Tensor | None = None) -> Tensor:
    """``alpha op(A) op(B) + beta C`` through the native float32 GEMM (row-major, as the loops
    call it); for tests and the benchmark."""
    for name, t in (("A", A), ("B", B)):
        if t.dtype != torch.float32 or t.dim() != 2 or t.device.type != "cpu" or not t.is_contiguous():
            raise NativeArgumentError(f"native.sgemm: {name} must be a contiguous 2-d float32 CPU tensor")
    if ta not in ("N", "T") or tb not in ("N", "T"):
        raise NativeArgumentError("native.sgemm: ta and tb must be 'N' or 'T'")
    M, K = A.shape if ta == "N" else A.shape[::-1]
    K2, N = B.shape if tb == "N" else B.shape[::-1]
    if K != K2:
        raise NativeArgumentError(f"native.sgemm: inner sizes differ ({K} vs {K2})")
    if C is None:
        C = torch.zeros(M, N)
    _arg("sgemm", "C", C, torch.float32, (M, N))
    lib = load()
    if lib is None:
        raise RuntimeError(f"flossrepro native kernels unavailable: {status()}")
    lib.fr_sgemm(ta.encode(), tb.encode(), M, N, K, alpha, _p(A), max(1, A.shape[1]), _p(B), max(1, B.shape[1]),
                 beta, _p(C), max(1, N))
    return C


def bmm(A: Tensor, B: Tensor, ta: str = "N", tb: str = "N") -> Tensor:
    """``op(A[r]) op(B[r])`` for every member ``r`` (``A, B: [R, ., .]``; ``ta``/``tb`` = ``"T"``
    transposes): through the native float32 GEMM for contiguous float32 CPU tensors (one C call),
    otherwise ``torch.bmm`` (any dtype or device)."""
    opA = A if ta == "N" else A.transpose(1, 2)
    opB = B if tb == "N" else B.transpose(1, 2)
    if (A.dtype != torch.float32 or not available(A, B) or not A.is_contiguous() or not B.is_contiguous()
            or A.dim() != 3 or B.dim() != 3 or A.shape[0] != B.shape[0] or opA.shape[2] != opB.shape[1]):
        return torch.bmm(opA, opB)
    R, M, K = opA.shape
    N = opB.shape[2]
    if max(R, M, N, K, A[0].numel(), B[0].numel(), M * N) > _INT_MAX:
        return torch.bmm(opA, opB)
    C = torch.empty(R, M, N, dtype=A.dtype)
    load().fr_sgemm_batched(R, ta.encode(), tb.encode(), M, N, K, 1.0, _p(A), max(1, A.shape[2]), A[0].numel(),
                            _p(B), max(1, B.shape[2]), B[0].numel(), 0.0, _p(C), max(1, N), M * N)
    return C


def _fn(name: str, dtype: torch.dtype):
    """The kernel ``name`` of the loaded library for ``dtype`` (``<name>_s`` float32, ``<name>_d`` float64)."""
    if dtype not in (torch.float32, torch.float64):
        raise NativeArgumentError(f"native kernel {name}: dtype {dtype} is not supported; allowed: "
                                  f"torch.float32, torch.float64")
    lib = load()
    if lib is None:
        raise RuntimeError(f"flossrepro native kernels unavailable: {status()}")
    return getattr(lib, name + ("_s" if dtype == torch.float32 else "_d"))


def _p(t: Tensor | None):
    """The C pointer of a CPU, C-contiguous tensor (``None``: NULL). Shapes and dtypes are the
    caller's to check (:func:`_arg`)."""
    if t is None:
        return ctypes.c_void_p(None)
    if not isinstance(t, Tensor):
        raise NativeArgumentError(f"native kernels take tensors, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise NativeArgumentError(f"native kernels take CPU tensors, got one on {t.device}")
    if not t.is_contiguous():
        raise NativeArgumentError(f"native kernels need C-contiguous tensors, got shape {tuple(t.shape)} "
                                  f"with strides {t.stride()} (call .contiguous())")
    return ctypes.c_void_p(t.data_ptr())


def _dims(kernel: str, name: str, t, ndim: int) -> tuple[int, ...]:
    """The shape of argument ``name``, checked to be a tensor with ``ndim`` dimensions."""
    if not isinstance(t, Tensor):
        raise NativeArgumentError(f"native.{kernel}: {name} must be a tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise NativeArgumentError(f"native.{kernel}: {name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    return tuple(t.shape)


def _real(kernel: str, name: str, t: Tensor) -> torch.dtype:
    if t.dtype not in (torch.float32, torch.float64):
        raise NativeArgumentError(f"native.{kernel}: {name} has dtype {t.dtype}; allowed: torch.float32, torch.float64")
    return t.dtype


def _arg(kernel: str, name: str, t, dtype: torch.dtype, shape: tuple[int, ...]):
    """The C pointer of ``t`` after checking that it is a CPU tensor of ``dtype`` and ``shape``,
    C-contiguous; raises :class:`NativeArgumentError` naming the kernel and the argument."""
    if not isinstance(t, Tensor):
        raise NativeArgumentError(f"native.{kernel}: {name} must be a tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise NativeArgumentError(f"native.{kernel}: {name} is on {t.device}; the kernels take CPU tensors")
    if t.dtype != dtype:
        raise NativeArgumentError(f"native.{kernel}: {name} has dtype {t.dtype}, expected {dtype} "
                                  f"(all tensors of one call share a dtype)")
    if tuple(t.shape) != tuple(shape):
        raise NativeArgumentError(f"native.{kernel}: {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if not t.is_contiguous():
        raise NativeArgumentError(f"native.{kernel}: {name} of shape {tuple(t.shape)} is not C-contiguous "
                                  f"(strides {t.stride()}); pass .contiguous()")
    return ctypes.c_void_p(t.data_ptr())


def _ints(kernel: str, **sizes: int) -> None:
    """Sizes (and the products the kernels index with ``int``) must fit a C ``int``."""
    for name, v in sizes.items():
        if not 0 <= v <= _INT_MAX:
            raise NativeArgumentError(f"native.{kernel}: {name}={v} does not fit a C int (0 <= {name} <= {_INT_MAX})")


def _nl(kernel: str, nonlinearity: str) -> int:
    if nonlinearity not in NL_CODES:
        raise NativeArgumentError(f"native.{kernel}: nonlinearity={nonlinearity!r}; allowed: {sorted(NL_CODES)}")
    return NL_CODES[nonlinearity]


def _flags_buf(flags, n: int, kernel: str) -> Tensor:
    flags = list(flags)
    if len(flags) != n:
        raise NativeArgumentError(f"native.{kernel}: {len(flags)} QR flags for {n} tangent steps")
    return torch.tensor([1 if f else 0 for f in flags], dtype=torch.uint8)


def _leak(kernel: str, leak) -> float:
    """The leak term as a C double, checked to be a finite real number."""
    try:
        v = float(leak)
    except (TypeError, ValueError):
        raise NativeArgumentError(f"native.{kernel}: leak={leak!r} must be a real number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise NativeArgumentError(f"native.{kernel}: leak={leak!r} must be finite")
    return v


def run_states(h0: Tensor, Wt: Tensor, drive: Tensor, nonlinearity: str, leak: float = 0.0) -> tuple[Tensor, Tensor]:
    """``(H, P)``, member-major ``[R,T,B,N]``: ``P[t] = phi(H[t-1])``,
    ``H[t] = leak H[t-1] + P[t] W^T + drive[t]`` for ``h0 [R,B,N]``, ``Wt = W^T [R,N,N]``,
    ``drive [R,T,B,N]``."""
    k = "run_states"
    R, T, B, N = _dims(k, "drive", drive, 4)
    dt = _real(k, "drive", drive)
    _ints(k, R=R, T=T, B=B, N=N, BN=B * N)
    nl = _nl(k, nonlinearity)
    args = (_arg(k, "h0", h0, dt, (R, B, N)), _arg(k, "Wt", Wt, dt, (R, N, N)), _arg(k, "drive", drive, dt, (R, T, B, N)))
    H, P = torch.empty(R, T, B, N, dtype=dt), torch.empty(R, T, B, N, dtype=dt)
    _fn(k, dt)(R, T, B, N, nl, _leak(k, leak), *args, _p(H), _p(P))
    return H, P


def bptt(W: Tensor, P: Tensor, dH: Tensor, nonlinearity: str, leak: float = 0.0) -> tuple[Tensor, Tensor]:
    """Backward of :func:`run_states` for ``dH [R,T,B,N]``: ``(G [R,T,B,N], dh0 [R,B,N])``."""
    k = "bptt"
    R, T, B, N = _dims(k, "dH", dH, 4)
    dt = _real(k, "dH", dH)
    _ints(k, R=R, T=T, B=B, N=N, BN=B * N)
    nl = _nl(k, nonlinearity)
    args = (_arg(k, "W", W, dt, (R, N, N)), _arg(k, "P", P, dt, (R, T, B, N)), _arg(k, "dH", dH, dt, (R, T, B, N)))
    G, dh0 = torch.empty(R, T, B, N, dtype=dt), torch.empty(R, B, N, dtype=dt)
    work = torch.empty(2 * B * N, dtype=dt)
    _fn(k, dt)(R, T, B, N, nl, _leak(k, leak), *args, _p(G), _p(dh0), _p(work))
    return G, dh0


def rnn_io_fwd(h0: Tensor, Wt: Tensor, VgT: Tensor, b: Tensor, wrT: Tensor, c: Tensor, x: Tensor,
               nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """The training network with input and readout (see ``csrc/kernels.h``): member-major
    ``x [R,T,B,S]`` -> ``(H, P [R,T,B,N], y [R,T,B,O])``; ``h0 [R,B,N]``, ``Wt = W^T [R,N,N]``,
    ``VgT = (gain V)^T [R,S,N]``, ``b [R,N]``, ``wrT = w_r^T [R,N,O]``, ``c [R,O]``."""
    k = "rnn_io_fwd"
    R, T, B, S = _dims(k, "x", x, 4)
    dt = _real(k, "x", x)
    N = _dims(k, "Wt", Wt, 3)[1]
    O = _dims(k, "wrT", wrT, 3)[2]
    _ints(k, R=R, T=T, B=B, N=N, S=S, O=O, BN=B * N)
    nl = _nl(k, nonlinearity)
    args = (_arg(k, "h0", h0, dt, (R, B, N)), _arg(k, "Wt", Wt, dt, (R, N, N)), _arg(k, "VgT", VgT, dt, (R, S, N)),
            _arg(k, "b", b, dt, (R, N)), _arg(k, "wrT", wrT, dt, (R, N, O)), _arg(k, "c", c, dt, (R, O)),
            _arg(k, "x", x, dt, (R, T, B, S)))
    H, P = torch.empty(R, T, B, N, dtype=dt), torch.empty(R, T, B, N, dtype=dt)
    y = torch.empty(R, T, B, O, dtype=dt)
    _fn(k, dt)(R, T, B, N, S, O, nl, *args, _p(H), _p(P), _p(y))
    return H, P, y


def rnn_io_bwd(W: Tensor, wr: Tensor, P: Tensor, dy: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor]:
    """Backward of :func:`rnn_io_fwd` to the states: ``(G [R,T,B,N], dh0 [R,B,N])`` for
    ``W [R,N,N]``, ``wr [R,O,N]``, ``P [R,T,B,N]``, ``dy [R,T,B,O]``."""
    k = "rnn_io_bwd"
    R, T, B, N = _dims(k, "P", P, 4)
    dt = _real(k, "P", P)
    O = _dims(k, "dy", dy, 4)[3]
    _ints(k, R=R, T=T, B=B, N=N, O=O, BN=B * N)
    nl = _nl(k, nonlinearity)
    args = (_arg(k, "W", W, dt, (R, N, N)), _arg(k, "wr", wr, dt, (R, O, N)), _arg(k, "P", P, dt, (R, T, B, N)),
            _arg(k, "dy", dy, dt, (R, T, B, O)))
    G, dh0 = torch.empty(R, T, B, N, dtype=dt), torch.empty(R, B, N, dtype=dt)
    work = torch.empty(2 * B * N, dtype=dt)
    _fn(k, dt)(R, T, B, N, O, nl, *args, _p(G), _p(dh0), _p(work))
    return G, dh0


def tanh_f32(x: Tensor) -> Tensor:
    """The kernels' own float32 tanh (``fr_tanhf`` in ``csrc/kernels.c``), for tests."""
    if not isinstance(x, Tensor) or x.device.type != "cpu":
        raise NativeArgumentError(f"native.tanh_f32 takes a CPU tensor, got "
                                  f"{x.device if isinstance(x, Tensor) else type(x).__name__}")
    _ints("tanh_f32", numel=x.numel())
    x = x.to(torch.float32).contiguous()
    out = torch.empty_like(x)
    lib = load()
    if lib is None:
        raise RuntimeError(f"flossrepro native kernels unavailable: {status()}")
    lib.fr_tanh_f32(x.numel(), _p(x), _p(out))
    return out


def qr(A: Tensor) -> tuple[Tensor, Tensor]:
    """Householder QR of a batch ``[..., m, n]`` (``m >= n``, any strides: the kernel works on a
    copy): ``(Q, R)`` as ``torch.linalg.qr``."""
    if not isinstance(A, Tensor) or A.dim() < 2:
        raise NativeArgumentError(f"native.qr takes a tensor [..., m, n], got "
                                  f"{tuple(A.shape) if isinstance(A, Tensor) else type(A).__name__}")
    *batch, m, n = A.shape
    if n > m:
        raise NativeArgumentError(f"native.qr needs a tall matrix (m >= n), got {m} x {n}")
    if not available(A):
        raise NativeArgumentError(f"native.qr takes float32/float64 CPU tensors with the kernels loaded; got "
                                  f"{A.dtype} on {A.device} ({status()})")
    b = 1
    for x in batch:
        b *= x
    _ints("qr", batch=b, m=m, n=n, mn=m * n)
    aT = A.reshape(b, m, n).transpose(1, 2).clone(memory_format=torch.contiguous_format)  # never A's memory
    rT = torch.empty(b, n, n, dtype=A.dtype)
    work = torch.empty(n + m, dtype=A.dtype)
    _fn("qr", A.dtype)(b, m, n, _p(aT), _p(rT), _p(work))
    return aT.transpose(1, 2).reshape(*batch, m, n), rT.transpose(1, 2).reshape(*batch, n, n)


def tangent_fwd(Wt: Tensor, Dq: Tensor, Q0T: Tensor, flags, leak: float = 0.0) -> tuple[Tensor, Tensor]:
    """Forward tangent loop (``A = leak Q_in + W diag(phi') Q_in``); ``Wt [R,N,N]``, ``Dq [R,Tq,N]``, ``Q0T [R,k,N]`` (``k <= N``),
    ``flags`` (``Tq`` bools: QR on that step) -> ``QT [R,Tq,k,N]``, ``RT [R,Tq,k,k]``
    (see ``csrc/kernels.h``)."""
    kn = "tangent_fwd"
    R, Tq, N = _dims(kn, "Dq", Dq, 3)
    dt = _real(kn, "Dq", Dq)
    k = _dims(kn, "Q0T", Q0T, 3)[1]
    if not 1 <= k <= N:
        raise NativeArgumentError(f"native.{kn}: k={k} tangent vectors for state dimension N={N}; allowed 1 <= k <= N")
    _ints(kn, R=R, Tq=Tq, N=N, k=k, kN=k * N)
    args = (_arg(kn, "Wt", Wt, dt, (R, N, N)), _arg(kn, "Dq", Dq, dt, (R, Tq, N)), _arg(kn, "Q0T", Q0T, dt, (R, k, N)))
    fl = _flags_buf(flags, Tq, kn)  # kept alive through the call (a temporary's memory could be reused)
    QT, RT = torch.empty(R, Tq, k, N, dtype=dt), torch.empty(R, Tq, k, k, dtype=dt)
    work = torch.empty(k * N + k + N, dtype=dt)
    _fn(kn, dt)(R, Tq, N, k, _leak(kn, leak), *args, _p(fl), _p(QT), _p(RT), _p(work))
    return QT, RT


TANGENT_CHUNK = 16  # as in csrc/kernels.h


def tangent_bwd(W: Tensor, Dq: Tensor, Q0T: Tensor, QT: Tensor, RT: Tensor, flags, c: Tensor,
                transient_q: int, second_order: bool, leak: float = 0.0) -> tuple[Tensor, Tensor, Tensor | None]:
    """Backward tangent loop -> ``(dQ0^T [R,k,N], dW [R,N,N], yq [R,Tq,N] or None)`` for the
    buffers of :func:`tangent_fwd`, ``W [R,N,N]`` and ``c [R,k]`` (the gradient of the exponents'
    sums of ``log|R_ii|``)."""
    kn = "tangent_bwd"
    R, Tq, k, N = _dims(kn, "QT", QT, 4)
    dt = _real(kn, "QT", QT)
    if not 1 <= k <= N:
        raise NativeArgumentError(f"native.{kn}: k={k} tangent vectors for state dimension N={N}; allowed 1 <= k <= N")
    _ints(kn, R=R, Tq=Tq, N=N, k=k, kN=TANGENT_CHUNK * k * N)
    tq = int(transient_q)
    if not 0 <= tq <= _INT_MAX:
        raise NativeArgumentError(f"native.{kn}: transient_q={transient_q} does not fit a C int >= 0")
    args = (_arg(kn, "W", W, dt, (R, N, N)), _arg(kn, "Dq", Dq, dt, (R, Tq, N)), _arg(kn, "Q0T", Q0T, dt, (R, k, N)),
            _arg(kn, "QT", QT, dt, (R, Tq, k, N)), _arg(kn, "RT", RT, dt, (R, Tq, k, k)))
    fl = _flags_buf(flags, Tq, kn)
    pc = _arg(kn, "c", c, dt, (R, k))
    QbarT, dW = torch.zeros(R, k, N, dtype=dt), torch.empty(R, N, N, dtype=dt)
    yq = torch.empty(R, Tq, N, dtype=dt) if second_order else None
    work = torch.empty(2 * TANGENT_CHUNK * k * N + k * N + 2 * k * k, dtype=dt)
    _fn(kn, dt)(R, Tq, N, k, tq, _leak(kn, leak), *args, _p(fl), pc, _p(QbarT), _p(dW), _p(yq), _p(work))
    return QbarT, dW, yq


def main() -> int:
    """``make native``: build the kernels (if needed), print the status, check the QR against PyTorch."""
    try:
        path = build(verbose=True)
    except Exception as e:  # noqa: BLE001
        print(f"flossrepro.engine.native: not built ({e}); the pure-PyTorch path will be used", file=sys.stderr)
        return 0
    print(f"flossrepro.engine.native: {path}")
    print(f"flossrepro.engine.native: {status()}")
    if enabled():
        A = torch.randn(3, 80, 75, dtype=torch.float64)
        Q, R = qr(A)
        Qr, Rr = torch.linalg.qr(A)
        err = max((Q - Qr).abs().max().item(), (R - Rr).abs().max().item())
        print(f"flossrepro.engine.native: QR of 3 x [80, 75] float64 vs torch.linalg.qr: max abs diff {err:.1e}")
        if err > 1e-10:
            print("flossrepro.engine.native: MISMATCH", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
