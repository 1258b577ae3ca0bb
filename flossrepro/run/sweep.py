"""Sweeps: stopping a multirun cleanly, and its outcome (its jobs are composed by
:mod:`flossrepro.run.compose` before it starts).

* :class:`Control` is a small folder shared by the sweep's parent and its workers (path in
  ``$FLOSSREPRO_SWEEP_CTRL``): ``stop`` exists once the parent got SIGTERM/SIGINT, and
  ``running/<pid>`` names each worker while it runs a job. The parent signals those workers
  (they checkpoint and return ``interrupted``) and jobs not yet started return at once, so the
  sweep ends, aggregates, and leaves no process behind; rerunning the command resumes it.
* :func:`outcome` reads each job's run directory after the sweep; :func:`finish` aggregates
  every sweep directory and returns the exit status (0 only when every job finished).
"""
from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from flossrepro.constants import DONE_STATUSES
from flossrepro.store import rundir as RD

CTRL_ENV = "FLOSSREPRO_SWEEP_CTRL"


# -- stopping ------------------------------------------------------------------------------------
class Control:
    """The stop flag and the list of busy workers of one sweep (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        (self.path / "running").mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, new_dirs: list[str]) -> "Control":
        c = cls(tempfile.mkdtemp(prefix="flossrepro-sweep-"))
        (c.path / "new_dirs.json").write_text(json.dumps(sorted(new_dirs)))
        return c

    @classmethod
    def from_env(cls) -> "Control | None":
        p = os.environ.get(CTRL_ENV)
        return cls(p) if p and Path(p).is_dir() else None

    # worker side
    def stopped(self) -> bool:
        return (self.path / "stop").exists()

    def register(self) -> None:
        (self.path / "running" / str(os.getpid())).touch()

    def unregister(self) -> None:
        try:
            (self.path / "running" / str(os.getpid())).unlink()
        except FileNotFoundError:
            pass

    def is_new(self, run_dir: Path) -> bool:
        """Whether this sweep created ``run_dir`` (it did not exist when the sweep was checked)."""
        try:
            return os.path.realpath(run_dir) in json.loads((self.path / "new_dirs.json").read_text())
        except (OSError, ValueError):
            return False

    # parent side
    def busy(self) -> list[int]:
        return [int(p.name) for p in (self.path / "running").iterdir() if p.name.isdigit()]

    def cleanup(self) -> None:
        for p in sorted(self.path.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        self.path.rmdir()


class StopForwarder:
    """In the sweep's parent: SIGTERM/SIGINT raise the stop flag and are passed on to the busy
    workers (again every ``every_s`` until they are done) instead of killing the parent."""

    def __init__(self, ctrl: Control, every_s: float = 1.0):
        self.ctrl, self.every_s = ctrl, every_s
        self.signum: int | None = None
        self._prev: dict[int, Any] = {}
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def install(self) -> "StopForwarder":
        for s in (signal.SIGTERM, signal.SIGINT):
            self._prev[s] = signal.signal(s, self._on_signal)
        return self

    def _on_signal(self, signum, frame) -> None:
        first = self.signum is None
        self.signum = signum
        (self.ctrl.path / "stop").touch()
        if first:
            print(f"[flossrepro] {signal.Signals(signum).name}: stopping the sweep; running jobs checkpoint, "
                  f"jobs not started are left for a rerun", flush=True)
            self._thread = threading.Thread(target=self._forward, daemon=True)
            self._thread.start()

    def _forward(self) -> None:
        while not self._done.is_set():
            for pid in self.ctrl.busy():
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            self._done.wait(self.every_s)

    def uninstall(self) -> None:
        self._done.set()
        for s, h in self._prev.items():
            signal.signal(s, h)


# -- workers die with their parent ------------------------------------------------------------------------
#: set while this worker runs a job (the parent watchdog lets it checkpoint first)
JOB_BUSY = threading.Event()
#: the sweep process's pid, for its workers (set by the flossrepro command around a sweep)
SWEEP_PID_ENV = "FLOSSREPRO_SWEEP_PID"
_watchdog: list[threading.Thread] = []


def die_with_parent(grace_s: float = 7.0, every_s: float = 0.5) -> None:
    """In a sweep worker: when the sweep's process dies (SIGKILL, the OOM killer), this worker
    stops too instead of running on as an orphan. A thread watches the parent pid; when it
    changes, the worker sends itself SIGTERM (a running job checkpoints), waits up to
    ``grace_s`` for the job to return, then exits. Started once per process."""
    parent = os.getppid()
    if _watchdog or str(parent) != os.environ.get(SWEEP_PID_ENV):
        return  # started already, or not a worker process the sweep itself started (SLURM, in-process)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except OSError:
            pass
        end = time.time() + grace_s
        while JOB_BUSY.is_set() and time.time() < end:
            time.sleep(0.1)
        os._exit(143)

    t = threading.Thread(target=watch, name="flossrepro-parent-watchdog", daemon=True)
    _watchdog.append(t)
    t.start()


# -- outcome ---------------------------------------------------------------------------------------
def outcome(run_dirs: list[Path]) -> dict[str, list[str]]:
    """Run directories grouped by status (``missing``: no summary.json was written)."""
    out: dict[str, list[str]] = {}
    for d in run_dirs:
        if not Path(d).exists():
            out.setdefault("not started", []).append(str(d))
            continue
        st = None
        try:
            st = RD.shown_status(Path(d), json.loads((Path(d) / "summary.json").read_text()).get("status"))
        except (OSError, ValueError, AttributeError):
            st = None
        out.setdefault(st or "missing", []).append(str(d))
    return out


def finish(sweep_dirs: list[Path], run_dirs: list[Path], stopped: bool, print_fn=print) -> int:
    """Aggregate each sweep directory, report the jobs' outcome, and return the exit status."""
    from flossrepro.report import aggregate

    agg_failed = 0
    for sd in sorted(set(map(str, sweep_dirs))):
        if not Path(sd).is_dir():
            continue
        try:
            for line in aggregate.write(sd):
                print_fn(f"[flossrepro.report.aggregate] {line}")
        except Exception as e:  # the sweep's outcome is still reported; its exit status says so
            agg_failed += 1
            print_fn(f"[flossrepro.report.aggregate] error: could not aggregate {sd}: {type(e).__name__}: {e}; "
                     f"rerun python -m flossrepro.aggregate {sd}")
    groups = outcome(run_dirs)
    n = len(run_dirs)
    done = sum(len(v) for k, v in groups.items() if k in DONE_STATUSES)
    bad = {k: v for k, v in groups.items() if k not in DONE_STATUSES}
    summary = ", ".join(f"{len(v)} {k}" for k, v in sorted(groups.items()))
    print_fn(f"[flossrepro] sweep: {n} jobs: {summary}")
    for k, v in sorted(bad.items()):
        for d in v:
            print_fn(f"[flossrepro]   {k}: {d}")
    if stopped:
        print_fn("[flossrepro] sweep stopped: rerun the same command to resume it")
        return 143
    if done < n:
        print_fn(f"[flossrepro] {n - done} of {n} jobs did not finish (failed, invalid, lost or interrupted); "
                 f"exit status 1")
        return 1
    if agg_failed:
        print_fn(f"[flossrepro] the tables of {agg_failed} sweep folder(s) could not be aggregated; exit status 1")
        return 1
    return 0


def wait_children_gone(timeout_s: float = 10.0, marker: str = "loky") -> None:
    """Wait until this process has no child processes whose command line holds ``marker`` left
    (joblib's workers shutting down; its resource trackers end with this process)."""
    end = time.time() + timeout_s
    me = str(os.getpid())
    while time.time() < end:
        kids = []
        for p in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = p.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                try:
                    cmd = (p.parent / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if marker in cmd and "resource_tracker" not in cmd:
                    kids.append(p.parent.name)
        if not kids:
            return
        time.sleep(0.2)
