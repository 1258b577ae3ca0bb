"""A run's ``summary.json`` (rewritten atomically at the start, at every checkpoint and at
the end: status, epochs done, per-member status and latest metrics, timings, device, git commit,
W&B id), JSON files, and the git commit a run records."""

import contextlib
import functools
import json
import logging
import math
import os
import subprocess
from pathlib import Path

import torch

log = logging.getLogger("flossrepro")


def write_json(path: str | Path, obj: dict) -> None:
    """Write ``obj`` as JSON atomically (a temporary name of this process, then rename)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with removed_on_failure(tmp):
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
        os.replace(tmp, path)


@contextlib.contextmanager
def removed_on_failure(tmp: str | Path):
    """The temporary file of an atomic write is removed when the write fails (a full or
    read-only filesystem leaves no ``*.tmp*`` behind)."""
    try:
        yield
    except BaseException:
        try:
            Path(tmp).unlink()
        except OSError:
            pass
        raise


def write_status_in_place(path: str | Path, **fields) -> bool:
    """Merge ``fields`` into ``path`` by rewriting it in place (no temporary file): the last resort
    on a full filesystem, where the atomic rename has no room. True when it was written."""
    obj = read_json(path) or {}
    obj.update(fields)
    data = json.dumps(obj, indent=2, default=_json_default).encode()
    try:
        with open(path, "r+b" if Path(path).exists() else "wb") as f:
            f.seek(0)
            f.write(data)
            f.truncate()
        return True
    except OSError:
        return False


def read_json(path: str | Path) -> dict | None:
    """The JSON object in ``path``; None when it is missing, unreadable or not an object."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def update_summary(run_dir: str | Path, **fields) -> dict:
    """Merge ``fields`` into the run's ``summary.json`` (atomically); returns the result."""
    p = Path(run_dir) / "summary.json"
    s = read_json(p) or {}
    s.update(fields)
    write_json(p, s)
    return s


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


@functools.lru_cache(maxsize=1)
def git_dirty() -> bool | None:
    """Whether the package's git tree has uncommitted changes to tracked files (None: no git)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent, timeout=20)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except Exception:
        return None


def provenance_event(event: str, **extra) -> dict:
    """One entry of a run's ``provenance`` list: ``start`` or ``resume``, the code's commit and
    whether its tree was dirty, the time."""
    import time

    return {"event": event, "git_commit": git_commit(), "git_dirty": git_dirty(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}


def last_commit(summary: dict | None) -> str | None:
    """The commit that last ran a run (its latest provenance entry, else its ``git_commit``)."""
    if not summary:
        return None
    prov = summary.get("provenance") or []
    if prov and isinstance(prov[-1], dict) and prov[-1].get("git_commit"):
        return prov[-1]["git_commit"]
    return summary.get("git_commit")


def nanmean(v) -> float:
    v = [x for x in v if x is not None and not math.isnan(x)]
    return sum(v) / len(v) if v else float("nan")


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


