"""Where the benchmark runs: the machine record written with its results (:func:`environment`:
CPU model, ISA, load, affinity, versions, git commit) and :func:`pin_to_one_cpu`."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from flossrepro.engine import native
from flossrepro.perf import peak as _peak

__all__ = ["environment", "loadavg", "pin_to_one_cpu"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "") if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def loadavg():
    """The 1, 5 and 15 minute load averages, rounded (None where the OS has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _native_isa() -> str | None:
    """``native.isa()`` where the native module has it (the instruction set its kernels use)."""
    f = getattr(native, "isa", None)
    try:
        return None if f is None else f()
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def environment(threads: int, device: torch.device | str = "cpu") -> dict:
    """The record of where the benchmark runs: versions, threads, the machine (CPU, ISA, load at
    the start, affinity), the BLAS, ``device``, the native kernels' status and ISA, the time and
    the git commit."""
    dev = torch.device(device)
    return {
        "torch_version": torch.__version__, "python": sys.version.split()[0],
        "threads": torch.get_num_threads(), "threads_requested": threads,
        "machine": {"cpu_model": _cpu_model(), "processor": platform.processor(),
                    "platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "isa": _peak.cpu_isa(), "loadavg_at_start": loadavg(),
                    "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
        "blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "native": native.status() if dev.type == "cpu" else "not used on " + dev.type,
        "native_isa": _native_isa(),
        "dtype": "float32",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }


def pin_to_one_cpu() -> int | None:
    """Pin this thread, and so every thread and subprocess started after it, to one CPU (the
    highest-numbered one allowed); returns it, or ``None`` where affinity cannot be set.

    Single-thread numbers then use one core in the strict sense, whatever a library does with
    threads: XLA runs a jitted computation on its own worker thread, and on a loaded machine
    the hand-offs between that thread and the caller, spinning on two cores, made the JAX
    peer's epochs bimodal (flossing T_f=55: ~12 ms or ~500 ms, median of 30 epochs 20-490 ms
    from run to run; pinned: 10.7 ms, p90 12-14 ms). Call it before jax creates its threads
    (its backend starts on first use)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    except OSError:
        return None
