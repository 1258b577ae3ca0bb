"""Run directories: identity records, locks, and what a command may do with a directory.

A run directory belongs to the run that created it. It records that run's identity in
``run.json`` (a hash of the resolved config, leaving out settings that do not change results:
``constants.IDENTITY_EXCLUDE_KEYS``). A later command uses the directory only when its
identity matches (then a finished run is skipped and an interrupted one resumes); otherwise it
is refused with one line that names the settings that differ. While a process works in a run
directory it holds an ``flock`` on ``<run_dir>/.lock``; a second process is refused. Nothing
here ever deletes a file it did not write.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flossrepro.constants import (DEFAULT_LEAF, DONE_STATUSES, IDENTITY_EXCLUDE_KEYS, LOCK_FILE, RUN_NAME_EXCLUDE_KEYS, RUN_RECORD)
from flossrepro.errors import FlossreproError
from flossrepro.store.summary import read_json, write_json

MAX_LEAF = 200  # longest run directory name; longer override lists get a hash suffix


class RunDirError(FlossreproError):
    """A run directory that this command must not use (other settings, in use, not a run)."""


# -- names --------------------------------------------------------------------------------------
def leaf(override_dirname: str | None) -> str:
    """The run directory name for a job's overrides: ``default`` without any, never a path."""
    name = (override_dirname or "").replace(os.sep, "%2F")
    if not name:
        return DEFAULT_LEAF
    if len(name) > MAX_LEAF:
        name = name[:MAX_LEAF - 17] + "-" + hashlib.sha1(name.encode()).hexdigest()[:16]
    return name


# conf/config.yaml: hydra.run.dir / hydra.sweep.subdir use ${run_leaf:...}, and the keys left out
# of run names come from constants.RUN_NAME_EXCLUDE_KEYS through ${run_name_exclude_keys:}
if not OmegaConf.has_resolver("run_leaf"):
    OmegaConf.register_new_resolver("run_leaf", lambda name: leaf(name))
if not OmegaConf.has_resolver("run_name_exclude_keys"):
    OmegaConf.register_new_resolver("run_name_exclude_keys", lambda: list(RUN_NAME_EXCLUDE_KEYS))


# -- identity -----------------------------------------------------------------------------------
def identity_config(cfg: DictConfig | dict) -> dict:
    """The resolved settings that define a run's results (no ``hydra``, no IDENTITY_EXCLUDE_KEYS)."""
    if isinstance(cfg, DictConfig):
        keys = [k for k in cfg if k != "hydra"]
        c = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
    else:
        c = dict(cfg)
    for k in ("hydra",) + IDENTITY_EXCLUDE_KEYS:
        c.pop(k, None)
    return c


def config_hash(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def differences(old: dict, new: dict, limit: int = 6) -> str:
    """``key: old -> new`` for every setting that differs (at most ``limit``, then a count)."""
    a, b = _flat(old), _flat(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    parts = [f"{k}: {json.dumps(a.get(k, '<unset>'))} -> {json.dumps(b.get(k, '<unset>'))}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return ", ".join(parts)


def recorded_identity(run_dir: Path) -> tuple[dict | None, str]:
    """The identity a run directory records (``run.json``, else an older run's ``.hydra/config.yaml``)
    and where it came from; ``(None, why)`` when there is none."""
    rec = run_dir / RUN_RECORD
    if rec.exists():
        try:
            return json.loads(rec.read_text())["config"], str(rec)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunDirError(f"{rec} cannot be read ({type(e).__name__}); it records which settings made "
                              f"{run_dir}: restore it, or give this run another directory (hydra.run.dir=...)") from None
    hc = run_dir / ".hydra" / "config.yaml"
    if hc.exists():
        try:
            return identity_config(OmegaConf.load(hc)), str(hc)
        except Exception:
            return None, f"{hc} (unreadable)"
    return None, "no record"


def is_empty(run_dir: Path) -> bool:
    """No files in the directory other than our lock file (a directory tree of empty folders counts as empty)."""
    if not run_dir.exists():
        return True
    for p in run_dir.rglob("*"):
        if p.is_file() and p.name != LOCK_FILE and not p.name.endswith(".log"):
            return False
    return True


def check_identity(run_dir: Path, ident: dict, how_to_move: str = "hydra.run.dir=<another dir>") -> str:
    """Whether this config may use ``run_dir``: ``new``, ``same`` (skip or resume), or RunDirError."""
    run_dir = Path(run_dir)
    if is_empty(run_dir):
        return "new"
    old, src = recorded_identity(run_dir)
    if old is None:
        raise RunDirError(f"{run_dir} holds files but no flossrepro run record ({src}); nothing was changed: "
                          f"give this run a new or empty directory ({how_to_move})")
    if config_hash(old) == config_hash(ident):
        return "same"
    raise RunDirError(f"{run_dir} holds a run with other settings ({differences(old, ident)}); nothing was changed: "
                      f"rerun with its settings to skip or resume it, or give this run its own directory "
                      f"({how_to_move})")


def write_record(run_dir: Path, ident: dict, overrides: list[str] | None = None) -> None:
    """Write ``run.json`` (once: an existing record with the same identity is kept)."""
    rec = Path(run_dir) / RUN_RECORD
    if rec.exists():
        return
    data = {"config_hash": config_hash(ident), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(["flossrepro", *(overrides or [])]), "argv": sys.argv,
            "overrides": list(overrides or []), "config": ident}
    write_json(rec, data)


def finished(run_dir: Path) -> dict | None:
    """The summary of a finished run (complete, partial or diverged, with its checkpoint), else None."""
    s = read_json(Path(run_dir) / "summary.json")
    if s is None or not (Path(run_dir) / "checkpoint.pt").exists():
        return None
    return s if s.get("status") in DONE_STATUSES else None


def status(run_dir: Path) -> str | None:
    s = read_json(Path(run_dir) / "summary.json")
    return None if s is None else s.get("status")


# -- locks --------------------------------------------------------------------------------------
_held: dict[str, "RunLock"] = {}


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock``, held until :meth:`release` or process exit."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        key = str(self.run_dir.resolve())
        if key in _held:  # this process holds it already (the command line checked, then the job runs)
            return _held[key]
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            try:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            finally:
                os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunDirError(f"{self.run_dir} is in use by {holder}; wait for it to finish (or stop it: "
                                  f"it checkpoints on SIGTERM), then rerun to resume") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {os.uname().nodename} since {time.strftime('%H:%M:%S')}".encode(), 0)
        self.fd = fd
        _held[key] = self
        return self

    def release(self) -> None:
        if self.fd is not None:
            _held.pop(str(self.run_dir.resolve()), None)
            try:
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


def probe_lock(run_dir: Path) -> None:
    """Raise RunDirError when another process holds ``run_dir``'s lock (takes nothing)."""
    p = Path(run_dir) / LOCK_FILE
    if not p.exists() or str(Path(run_dir).resolve()) in _held:
        return
    fd = os.open(p, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunDirError(f"{run_dir} is in use by {holder}; wait for it to finish (or stop it: it "
                              f"checkpoints on SIGTERM), then rerun to resume") from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def in_use(run_dir: Path) -> bool:
    """Whether a process holds ``run_dir``'s lock now (this one included)."""
    if str(Path(run_dir).resolve()) in _held:
        return True
    try:
        probe_lock(run_dir)
    except RunDirError:
        return True
    except OSError:
        return False
    return False


STALE_NOTE = ("left 'running' by a process that is gone (killed: SIGKILL, the OOM killer, a lost node); "
              "rerun the same command to resume it from its last checkpoint")


def shown_status(run_dir: Path, status: str | None) -> str | None:
    """The status to show for a run: ``running`` without a live process holding its lock is
    ``interrupted`` (the process was killed before it could record that)."""
    if status == "running" and not in_use(run_dir):
        return "interrupted"
    return status


def tables_problem(run_dir: Path, summary: dict | None) -> str | None:
    """One line when a finished run's recorded table parts are missing, unreadable or shorter than
    written (its rows cannot be recomputed from its checkpoint), else None."""
    from flossrepro.store.tables import part_problems

    if not summary:
        return None
    probs = part_problems(run_dir, summary.get("table_parts"), summary.get("table_part_rows"))
    if not probs:
        return None
    return (f"{run_dir} finished, but its tables are incomplete ({'; '.join(probs[:3])}"
            f"{f' and {len(probs) - 3} more' if len(probs) > 3 else ''}); restore the parts, or rerun it into "
            f"a fresh directory (hydra.run.dir=... / hydra.sweep.dir=...) to recompute them")
