"""Checks of a composed config that go beyond the schema (:mod:`flossrepro.store.config`), all
before any directory is made or any compute starts; each raises :class:`ConfigError` with one
line naming the setting, what was given and the fix.

- :func:`check_int64`: every integer setting fits the tables' int64 columns (a seed beyond
  int64 ran, then broke every aggregation of its folder).
- :func:`check_job_arch`: the job kind supports the architecture and the flossing schedule
  (a job class declares ``ARCHS``, the arch options it runs, and ``NEEDS_FLOSSING``).
- :func:`check_resources`: an estimate of the job's memory from its sizes (members, N, batch,
  T, flossing horizon, k, table rows per part) against the memory available (CPU: MemAvailable
  of /proc/meminfo; CUDA: the device's free memory); the epochs and threads against what this
  machine can do.
- :func:`check_environment`: the ``FLOSSREPRO_*`` environment variables, like settings.

:func:`check` runs them all (the command line, the planner and every job call it after
:func:`flossrepro.store.config.validate`).
"""
from __future__ import annotations

import os
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from flossrepro.errors import ConfigError

INT64_MAX = 2 ** 63 - 1
#: more training epochs than this never finish (the paper's longest run has 10^4)
MAX_EPOCHS = 10 ** 8
#: the share of the available memory a job may plan to use
MEMORY_SHARE = 0.9


def check(cfg: DictConfig, resources: bool = True) -> None:
    """Every check of this module (see the module docstring); ``resources=False`` leaves out
    the memory, epochs and threads of this machine (the planner sizes jobs for other machines)."""
    check_int64(cfg)
    check_job_arch(cfg)
    check_environment()
    if resources:
        check_resources(cfg)


# -- integers the tables can hold -------------------------------------------------------------------
def _ints(prefix: str, v):
    if isinstance(v, bool):
        return
    if isinstance(v, int):
        yield prefix, v
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from _ints(f"{prefix}.{k}" if prefix else str(k), x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _ints(prefix, x)


def check_int64(cfg) -> None:
    try:
        c = _plain(cfg)
    except Exception:
        return  # an interpolation that cannot be resolved: the schema check names it
    for path, v in _ints("", c):
        if not -INT64_MAX - 1 <= v <= INT64_MAX:
            raise ConfigError(f"{path}={v} does not fit a 64-bit integer (the tables' columns); "
                              f"give a value below 2^63 (e.g. {path}=3)")
    seed, members = c.get("seed"), c.get("members")
    if isinstance(seed, int) and isinstance(members, int) and seed + members - 1 > INT64_MAX:
        raise ConfigError(f"seed={seed} with members={members}: member seeds seed + r pass 2^63 - 1; "
                          f"give a smaller seed, e.g. seed=3")


def _plain(cfg) -> dict:
    if isinstance(cfg, dict):
        return cfg
    c = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    c.pop("hydra", None)
    return c


# -- which job runs which architecture ---------------------------------------------------------------
def _arch_option(cfg) -> str:
    return str(OmegaConf.select(cfg, "arch.name", default="") or "")


def job_class(cfg):
    target = str(OmegaConf.select(cfg, "job._target_", default="") or "flossrepro.jobs.trainer.Trainer")
    try:
        return get_class(target)
    except Exception:
        return None  # the schema check names it


def check_job_arch(cfg) -> None:
    cls = job_class(cfg)
    if cls is None:
        return
    job = str(OmegaConf.select(cfg, "job.name", default="train"))
    archs = getattr(cls, "ARCHS", None)
    arch = _arch_option(cfg)
    if archs is not None and arch not in archs:
        raise ConfigError(f"arch={arch} is not supported by job={job}; job={job} runs arch=<{'|'.join(archs)}>"
                          f"{getattr(cls, 'ARCHS_NOTE', '')} (pick one of those, or another job)")
    sched = str(OmegaConf.select(cfg, "flossing.schedule", default="none"))
    if getattr(cls, "NEEDS_FLOSSING", False) and sched == "none":
        raise ConfigError(f"flossing={sched} but job={job} floss(es) the networks; "
                          f"pick flossing=pre (or during, throughout)")
    if getattr(cls, "NEEDS_EPOCHS", False) and _int(cfg, "epochs", 1) == 0:
        raise ConfigError(f"epochs={OmegaConf.select(cfg, 'epochs')} but job={job} trains; "
                          f"give epochs >= 1 (e.g. epochs=1000), or pick job=floss to floss without training")


# -- the environment -------------------------------------------------------------------------------
def check_environment() -> None:
    """``FLOSSREPRO_NATIVE``, ``FLOSSREPRO_NATIVE_GEMM`` and ``FLOSSREPRO_COSTS``."""
    import shutil

    from flossrepro.engine import native_build as nb

    v = os.environ.get("FLOSSREPRO_NATIVE")
    mode = (v or "auto").strip().lower()
    if mode not in NATIVE_OFF + NATIVE_ON + ("auto", ""):
        raise ConfigError(f"FLOSSREPRO_NATIVE={v} (environment) is not known; allowed: 0, 1, auto "
                          f"(unset it or fix it)")
    g = os.environ.get("FLOSSREPRO_NATIVE_GEMM")
    if g is not None and (g.strip().lower() or "auto") not in ("auto", *nb.GEMM_KINDS):
        raise ConfigError(f"FLOSSREPRO_NATIVE_GEMM={g} (environment) is not a GEMM kind; allowed: "
                          f"auto, {', '.join(nb.GEMM_KINDS)} (unset it or fix it)")
    p = os.environ.get("FLOSSREPRO_COSTS")
    if p and not Path(p).exists():
        raise ConfigError(f"FLOSSREPRO_COSTS={p} (environment) does not exist; give the folder of the cost "
                          f"measurements (e.g. results), or unset it")
    if mode in NATIVE_ON:
        cc = nb._compiler()
        if cc is None or shutil.which(cc) is None:
            what = f"the C compiler CC={cc} is not found" if cc else "no C compiler is found (cc, gcc, clang)"
            raise ConfigError(f"FLOSSREPRO_NATIVE={v} (environment) but {what}; install gcc, give CC a compiler "
                              f"(e.g. CC=gcc), or unset FLOSSREPRO_NATIVE (the PyTorch path is used then)")


NATIVE_OFF = ("0", "off", "false", "no")
NATIVE_ON = ("1", "on", "true", "yes", "require")


# -- memory, epochs and threads -----------------------------------------------------------------------
def _int(cfg, key: str, default: int = 0) -> int:
    try:
        v = OmegaConf.select(cfg, key, default=default)
        return int(v) if isinstance(v, int) and not isinstance(v, bool) else default
    except Exception:  # noqa: BLE001 - a bad value: the schema check names it
        return default


def memory_estimate(cfg) -> tuple[int, str]:
    """``(bytes, the term that dominates)``: a lower estimate of what the job holds at once.

    Parameters with gradients and Adam's two moments (4 copies); a training step's states,
    pre-activations and their gradients (3 per step, batch and member); a flossing episode's
    states and tangent systems over its horizon (Q: N x k, R: k x k per step, kept for the
    backward pass); the Lyapunov diagnostics; the rows a table part buffers."""
    b = 8 if str(OmegaConf.select(cfg, "dtype", default="float32")) == "float64" else 4
    R = _int(cfg, "members", 1)
    N = _int(cfg, "arch.n_hidden", 1)
    nl = str(OmegaConf.select(cfg, "arch.nonlinearity", default="tanh"))
    gates = {"lstm": 4, "gru": 3}.get(nl, 1)
    n = N * (2 if nl == "lstm" else 1) * _int(cfg, "arch.num_layers", 1)
    task_on = str(OmegaConf.select(cfg, "job.name", default="train")) == "train"
    B = _int(cfg, "task.batch_size", 1) if task_on else 1
    T = _int(cfg, "task.seq_len", 0) or _int(cfg, "task.delay", 1) * 3
    tl = f"task.seq_len={T}" if _int(cfg, "task.seq_len", 0) else f"the task's length (about {T} steps)"
    n_io = 4
    terms = {
        f"members={R} x arch.n_hidden={N} squared (the weights, their gradients and Adam's moments)":
            4 * R * gates * (N * N + N * n_io + 2 * N) * b,
        f"members={R} x task.batch_size={B} x {tl} x arch.n_hidden={N} (a training step's states)":
            3 * R * B * T * N * gates * b if task_on and _int(cfg, "epochs", 0) > 0 else 0,
    }
    if str(OmegaConf.select(cfg, "flossing.schedule", default="none")) != "none":
        Tf, k = _int(cfg, "flossing.horizon", 1), max(1, _int(cfg, "flossing.k", 1))
        terms[f"members={R} x flossing.horizon={Tf} x arch.n_hidden={N} x flossing.k={k} "
              f"(a flossing episode's tangent systems)"] = \
            R * Tf * (n * k + k * k + 2 * n * gates) * b
    d_T, d_k = _int(cfg, "diagnostics.lyap_seq_len", 0), _int(cfg, "diagnostics.lyap_k", 1)
    if OmegaConf.select(cfg, "diagnostics.lyap_every", default=None):
        terms[f"members={R} x diagnostics.lyap_seq_len={d_T} x arch.n_hidden={N} (the Lyapunov diagnostics)"] = \
            R * (d_T * n + n * min(d_k, n)) * b
    eb = _int(cfg, "diagnostics.eval_batch_size", 0)
    if task_on and OmegaConf.select(cfg, "diagnostics.eval_every", default=None):
        terms[f"members={R} x diagnostics.eval_batch_size={eb} x {tl} x arch.n_hidden={N} "
              f"(an evaluation)"] = \
            R * eb * T * N * gates * b
    rows = R * _int(cfg, "checkpoint_every", 1) * 8  # ~8 values per member and epoch
    terms[f"members={R} x checkpoint_every={_int(cfg, 'checkpoint_every', 1)} (the rows a table part buffers)"] = rows * 40
    name, _ = max(terms.items(), key=lambda kv: kv[1])
    return int(sum(terms.values())), name


def available_memory(device: str = "cpu") -> tuple[int | None, str]:
    """``(bytes, where)``: the device's free memory on CUDA, else MemAvailable (or the cgroup limit)."""
    if device.startswith("cuda"):
        try:
            import torch
            idx = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
            free, _ = torch.cuda.mem_get_info(idx)
            return int(free), f"free memory of {device}"
        except Exception:
            return None, device
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for p in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            lim = int(Path(p).read_text().strip())
        except (OSError, ValueError):
            continue
        if lim < (1 << 60):
            avail = lim if avail is None else min(avail, lim)
    return avail, "available memory"


def _gib(x: float) -> str:
    return f"{x / 2 ** 30:.3g} GiB" if x >= 2 ** 27 else f"{x / 2 ** 20:.3g} MiB"


def check_resources(cfg) -> None:
    epochs = _int(cfg, "epochs", 0)
    if epochs > MAX_EPOCHS:
        raise ConfigError(f"epochs={epochs} would not finish (more than {MAX_EPOCHS:,} epochs; the paper's runs "
                          f"have 10^4); lower epochs, e.g. epochs=10000")
    threads, cores = _int(cfg, "threads", 1), os.cpu_count() or 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    launcher = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    if launcher and not launcher.endswith(("JoblibLauncher", "BasicLauncher")):
        return  # the jobs run on other machines (SLURM): each job checks its own when it starts
    if threads > cores and not os.environ.get("SLURM_JOB_ID"):
        raise ConfigError(f"threads={threads} but this machine gives this process {cores} core(s); "
                          f"e.g. threads={cores} (more threads than cores only slow a run down)")
    need, term = memory_estimate(cfg)
    dev = str(OmegaConf.select(cfg, "device", default="cpu"))
    if dev == "auto":
        try:
            import torch
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        except Exception:
            dev = "cpu"
    have, where = available_memory(dev)
    if have is not None and need > MEMORY_SHARE * have and os.environ.get("FLOSSREPRO_MEMORY_CHECK", "1") != "0":
        raise ConfigError(f"the job needs at least {_gib(need)} of memory, mostly {term}, but this machine has "
                          f"{_gib(have)} {where}; lower those settings (or run it on a larger machine; "
                          f"FLOSSREPRO_MEMORY_CHECK=0 skips this check)")


# -- where a run writes, and how a sweep runs --------------------------------------------------------------
_NOT_DISKS = ("/proc", "/sys", "/dev")
#: less free space than this on a run directory's filesystem is refused (a checkpoint would not fit)
MIN_FREE_BYTES = 16 * 2 ** 20


def check_dir(path: str | Path, setting: str) -> None:
    """``path`` (a run or sweep directory, existing or not) can be made and written: it lies on a
    writable filesystem with room, not under /proc, /sys or /dev, and no file stands in its way."""
    p = Path(os.path.abspath(path))
    real = os.path.realpath(p)
    for top in _NOT_DISKS:
        if real == top or real.startswith(top + "/"):
            raise ConfigError(f"{setting}={path} lies under {top}, which is not a disk; give a folder on a disk, "
                              f"e.g. {setting}=outputs/mine")
    cur = p
    while not os.path.lexists(cur) and cur != cur.parent:
        cur = cur.parent
    if not cur.is_dir():
        raise ConfigError(f"{setting}={path}: {cur} is a file, not a folder; give another folder "
                          f"(e.g. {setting}=outputs/mine) or move the file away")
    try:
        st = os.statvfs(cur)
    except OSError:
        return
    if st.f_flag & getattr(os, "ST_RDONLY", 1) or not os.access(cur, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting}={path}: {cur} is not writable (a read-only filesystem or its permissions); "
                          f"give a folder you can write, e.g. {setting}=outputs/mine")
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"{setting}={path}: the filesystem of {cur} is full ({_gib(free)} free); "
                          f"free some space or give a folder on another disk")


def check_launcher(cfg) -> None:
    """A joblib sweep's ``hydra.launcher.n_jobs``: a positive number of workers, or -1 .. -cores."""
    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    if not target.endswith("JoblibLauncher"):
        return
    n = OmegaConf.select(cfg, "hydra.launcher.n_jobs", default=None)
    cores = os.cpu_count() or 1
    if n is None:
        return
    if not isinstance(n, int) or isinstance(n, bool) or n == 0 or n < -cores:
        raise ConfigError(f"hydra.launcher.n_jobs={n} is not a number of workers; give 1 or more "
                          f"(e.g. hydra.launcher.n_jobs=2), or -1 for one per core")
