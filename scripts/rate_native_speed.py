"""Rate network (low-rank study) on the native kernels against its PyTorch fast path, one thread.

Times a training step (B=32, T=100, Adam) and a Lyapunov spectrum with its backward (k=16,
T=300) at N=64 and N=256, alternating the native kernels and FLOSSREPRO_NATIVE-off
(``native.disabled()``) in one process; prints the median of 20 epochs, best of two rounds.
Usage: python scripts/rate_native_speed.py
"""
import contextlib
import time

import torch

from flossrepro.engine import native
from flossrepro.engine.init import initialize
from flossrepro.engine.lyapunov import lyapunov_spectrum
from flossrepro.engine.rate import RateRNN


def epochs(N: int):
    gen = torch.Generator().manual_seed(0)
    m = RateRNN(1, N, 2, 2)
    initialize(m, [0], g=1.5)
    x, tgt = torch.randn(100, 1, 32, 2, generator=gen), torch.randn(100, 1, 32, 2, generator=gen)
    xl = torch.randn(300, 1, 2, generator=gen)
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)

    def train():
        opt.zero_grad()
        ((m(x) - tgt) ** 2).mean().backward()
        opt.step()

    def lyap():
        lyapunov_spectrum(m, xl, k=16, transient_h=20, transient_q=20).sum().backward()

    return {"training step": train, "Lyapunov k=16 T=300": lyap}


def median_ms(f, n: int = 20) -> float:
    f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[n // 2] * 1e3


def main():
    torch.set_num_threads(1)
    native.tune_allocator()
    print(f"native kernels: {native.status()}")
    for N in (64, 256):
        for name, f in epochs(N).items():
            best = {"native": float("inf"), "PyTorch path": float("inf")}
            for _ in range(2):
                for mode in best:
                    with contextlib.nullcontext() if mode == "native" else native.disabled():
                        best[mode] = min(best[mode], median_ms(f))
            print(f"N={N} {name}: native {best['native']:.2f} ms, PyTorch path {best['PyTorch path']:.2f} ms, "
                  f"x{best['PyTorch path'] / best['native']:.2f}")


if __name__ == "__main__":
    main()
