"""Faults a user meets: nothing of an earlier run is lost, sweeps always finish and say how.

Each test runs the real command (``python -m flossrepro``) in a subprocess at smoke scale.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

QUIET = ["logger=none", "progress=log"]


def cmd(*args):
    return [sys.executable, "-m", "flossrepro", *args]


def run(args, cwd, timeout=300, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run(cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = f"{st.st_size}:{st.st_mtime_ns}:{hashlib.sha1(p.read_bytes()).hexdigest()}"
        else:
            out[str(p.relative_to(root))] = "dir"
    return out


def status(d: Path) -> dict:
    return json.loads((d / "summary.json").read_text())


def wait_for(pred, timeout=120, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def start(args, cwd, log: Path):
    f = open(log, "w")
    return subprocess.Popen(cmd(*args), cwd=cwd, stdout=f, stderr=subprocess.STDOUT, text=True)


def interrupted_run(tmp: Path, args: list[str], run_dir: Path) -> None:
    """Start a long run, let it reach training, SIGTERM it: an interrupted run with a checkpoint."""
    p = start(args, tmp, tmp / "first.log")
    wait_for(lambda: "epoch " in (tmp / "first.log").read_text(), what="training to start")
    p.send_signal(signal.SIGTERM)
    assert p.wait(120) == 143, (tmp / "first.log").read_text()[-2000:]
    assert status(run_dir)["status"] == "interrupted" and (run_dir / "checkpoint.pt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="device=cuda is valid here")
def test_a_refused_run_never_touches_an_existing_run(tmp_path):
    """The deletion case: `scale=paper device=cuda` on a CPU machine, next to an interrupted paper run."""
    paper = tmp_path / "outputs/default/paper/members=1"
    interrupted_run(tmp_path, ["scale=paper", "members=1", *QUIET, "log_every=1"], paper)
    smoke = tmp_path / "outputs/default/smoke/default"
    assert run(["scale=smoke", *QUIET], tmp_path).returncode == 0
    before = snapshot(tmp_path / "outputs")
    for args in (["scale=paper", "device=cuda"],                       # the default job at paper scale
                 ["scale=paper", "members=1", "device=cuda"],          # the interrupted run's own directory
                 ["scale=smoke", "device=cuda"]):                      # a finished run's directory
        p = run([*args, *QUIET], tmp_path)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "device" in p.stderr, p.stderr
        assert snapshot(tmp_path / "outputs") == before
    # every run has a leaf directory of its own: the default job is not the parent of other runs
    assert smoke.parent.name == "smoke" and not any(p.is_dir() and p.name != ".hydra" for p in smoke.iterdir()
                                                     if p.name not in ("metrics",))


CRASH_MODULE = textwrap.dedent('''
    from flossrepro.tasks.paper import BinaryXORTask

    class CrashTask(BinaryXORTask):
        """Valid settings, crashes once training draws its first batch."""
        def sample(self, *a, **k):
            raise RuntimeError("injected crash in CrashTask.sample")
''')


def test_sweep_with_an_invalid_and_a_crashing_job_finishes_aggregates_and_fails(tmp_path):
    (tmp_path / "crashmod.py").write_text(CRASH_MODULE)
    sweep = tmp_path / "sweep"
    args = ["-m", "scale=smoke", *QUIET, "epochs=5", "task.delay=10,60",
            "task._target_=flossrepro.tasks.paper.BinaryXORTask,crashmod.CrashTask", f"hydra.sweep.dir={sweep}"]
    p = run(args, tmp_path, env={"PYTHONPATH": str(tmp_path)})
    out = p.stdout + p.stderr
    assert p.returncode == 1, out[-3000:]
    runs = pd.read_csv(sweep / "runs.csv")
    st = dict(zip(runs["path"], runs["status"]))
    assert st["epochs=5,task._target_=flossrepro.tasks.paper.BinaryXORTask,task.delay=10"] == "complete", st
    assert st["epochs=5,task._target_=crashmod.CrashTask,task.delay=10"] == "failed", st
    assert st["epochs=5,task._target_=flossrepro.tasks.paper.BinaryXORTask,task.delay=60"] == "invalid", st
    err = dict(zip(runs["path"], runs["error"]))
    assert "injected crash" in err["epochs=5,task._target_=crashmod.CrashTask,task.delay=10"]
    assert "task.delay" in err["epochs=5,task._target_=flossrepro.tasks.paper.BinaryXORTask,task.delay=60"]
    assert "[flossrepro.report.aggregate]" in out and "3 of 4 jobs did not finish" in out, out[-3000:]
    # the rerun skips the finished job and records the same outcome (exit status still 1)
    p2 = run(args, tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert p2.returncode == 1 and "1 finished (skipped)" in p2.stdout, p2.stdout[-2000:]


def test_changed_settings_into_a_finished_run_are_refused(tmp_path):
    d = tmp_path / "run"
    assert run(["scale=smoke", *QUIET, "epochs=5", f"hydra.run.dir={d}"], tmp_path).returncode == 0
    before = snapshot(d)
    p = run(["scale=smoke", *QUIET, "epochs=5", "optim.lr=0.002", f"hydra.run.dir={d}"], tmp_path)
    assert p.returncode == 2 and "optim.lr: 0.001 -> 0.002" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert snapshot(d) == before
    # the same settings skip it (how it runs, e.g. device or progress, is not part of its identity)
    p = run(["scale=smoke", "logger=none", "progress=none", "device=cpu", "epochs=5", f"hydra.run.dir={d}"], tmp_path)
    assert p.returncode == 0 and "already complete" in p.stdout, p.stdout + p.stderr
    assert snapshot(d) == before
    rec = json.loads((d / "run.json").read_text())
    assert rec["config"]["epochs"] == 5 and len(rec["config_hash"]) == 16


def test_a_second_process_on_a_running_run_is_refused_and_the_run_resumes(tmp_path):
    d = tmp_path / "run"
    args = ["scale=smoke", *QUIET, "epochs=200000", "log_every=100", f"hydra.run.dir={d}"]
    first = start(args, tmp_path, tmp_path / "first.log")
    try:
        wait_for(lambda: "epoch " in (tmp_path / "first.log").read_text(), what="training to start")
        p = run(args, tmp_path)
        assert p.returncode == 2 and "in use by process" in p.stderr and p.stderr.count("\n") == 1, p.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(120) == 143
    s = status(d)
    assert s["status"] == "interrupted" and (d / "checkpoint.pt").exists()


def test_a_corrupt_checkpoint_is_named_with_the_fix(tmp_path):
    d = tmp_path / "run"
    args = ["scale=smoke", *QUIET, "epochs=200000", "log_every=100", f"hydra.run.dir={d}"]
    interrupted_run(tmp_path, args, d)
    ck = d / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:100])
    p = run(args, tmp_path)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("flossrepro: error: ") and "checkpoint.pt" in line and "Traceback" not in p.stderr, p.stderr
    assert ck.exists() and ck.stat().st_size == 100  # named, not deleted


def _descendants(pid: int) -> set[int]:
    parent = {}
    for p in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(p.parent.name)] = int(p.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    out, todo = set(), [pid]
    while todo:
        cur = todo.pop()
        for child, par in parent.items():
            if par == cur and child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_to_a_sweep_stops_its_workers_which_checkpoint_and_the_sweep_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "scale=smoke", *QUIET, "seed=1,2,3", "epochs=1500", "log_every=100", f"hydra.sweep.dir={sweep}"]
    parent = start(args, tmp_path, tmp_path / "sweep.log")
    seen: set[int] = set()
    try:
        def two_running():
            seen.update(_descendants(parent.pid))
            return (tmp_path / "sweep.log").read_text().count("epoch 100/") >= 2
        wait_for(two_running, timeout=180, what="two jobs training")
        seen.update(_descendants(parent.pid))
        parent.send_signal(signal.SIGTERM)
        rc = parent.wait(120)
    finally:
        if parent.poll() is None:
            parent.kill()
    log = (tmp_path / "sweep.log").read_text()
    assert rc == 143, log[-3000:]
    time.sleep(1.0)
    left = [p for p in seen if _alive(p)]
    assert not left, f"processes left behind: {left}"
    assert "sweep stopped" in log and "[flossrepro.report.aggregate]" in log
    statuses = {d.name: status(d)["status"] for d in sweep.iterdir() if (d / "summary.json").exists()}
    assert "interrupted" in statuses.values(), statuses
    for name, st in statuses.items():
        if st == "interrupted":
            assert (sweep / name / "checkpoint.pt").exists()
    # the same command resumes: every run completes
    p = run(args[:-1] + [f"hydra.sweep.dir={sweep}"], tmp_path, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert {status(sweep / f"epochs=1500,seed={s}")["status"] for s in (1, 2, 3)} == {"complete"}


def test_a_sweep_over_a_key_left_out_of_run_names_gives_each_job_its_own_directory(tmp_path, monkeypatch, capsys):
    """`-m device=cpu,cuda` (device is left out of run names): two jobs, two directories."""
    from flossrepro.run import cli

    monkeypatch.chdir(tmp_path)
    rc = cli.main(["-m", "scale=smoke", "logger=none", "device=cpu,auto", "threads=1,2", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0, out
    dirs = [line.split("]", 1)[1].strip() for line in out.splitlines() if line.startswith("[flossrepro]   /")]
    assert len(dirs) == 4 and len(set(dirs)) == 4, out
    assert any(d.endswith("/device=cpu,threads=2") for d in dirs), dirs
    assert not (tmp_path / "multirun").exists()
    # a single run leaves those keys out of its name (a rerun on another device resumes it)
    rc = cli.main(["scale=smoke", "logger=none", "device=cpu", "--dry-run"])
    assert rc == 0 and "outputs/default/smoke/default" in capsys.readouterr().out
