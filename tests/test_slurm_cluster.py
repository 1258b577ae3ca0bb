"""Sweeps through a real single-node SLURM cluster on localhost (``hydra/launcher=submitit_slurm``).

The module fixture starts the cluster with ``scripts/local_slurm.sh up`` (which apt-installs
slurm + munge when missing: root on Debian/Ubuntu, as in CI) and stops it with ``down``
unless it was already running. The tests run in the default suite (``make test``/``pytest``);
they are skipped when the script cannot provide a cluster (exit code 3: not root, no
apt-get, install failed) or when ``FLOSSREPRO_SKIP_SLURM=1``. Only them:
``pytest -m slurm``.

Every sweep runs under a subprocess timeout: a sweep that hangs fails the test, it never
blocks the suite. SLURM holds a requeued job for 120 s (BeginTime); the requeue test
releases it at once with ``scontrol update StartTime=now``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "local_slurm.sh"
SWEEP_TIMEOUT_S = 240
FAST_POLL = ["hydra.launcher.poll_s=1", "hydra.launcher.lost_after_s=5"]


def _tail(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


@pytest.fixture(scope="module")
def slurm_cluster():
    """Start the local cluster, export SLURM_CONF, yield its path, stop it."""
    if os.environ.get("FLOSSREPRO_SKIP_SLURM", "") not in ("", "0"):
        pytest.skip("FLOSSREPRO_SKIP_SLURM is set")
    if not sys.platform.startswith("linux"):
        pytest.skip("the local SLURM cluster needs Linux")
    was_up = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True, timeout=60).returncode == 0
    up = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, timeout=900)
    if up.returncode == 3:
        reason = up.stderr.strip().splitlines()[-1] if up.stderr.strip() else ""
        pytest.skip(f"cannot provide a local SLURM cluster: {reason}")
    if up.returncode != 0:
        pytest.fail(f"scripts/local_slurm.sh up failed (rc={up.returncode}):\n{_tail(up.stderr, 120)}")
    last = up.stdout.strip().splitlines()[-1]
    assert last.startswith("export SLURM_CONF="), up.stdout
    conf = last.split("=", 1)[1]
    assert Path(conf).is_file(), conf
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield conf
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        if not was_up:
            subprocess.run([str(SCRIPT), "down"], capture_output=True, timeout=120)


# -- helpers -----------------------------------------------------------------------------------
def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "flossrepro", "-m", *args]


def _env() -> dict:
    env = dict(os.environ, HYDRA_FULL_ERROR="1")
    env.pop("WANDB_MODE", None)  # logger=wandb is offline by default
    return env


def _job_ids(sweep: Path) -> list[str]:
    """submitit job ids (``12_0``) of a sweep, from its .submitit folder."""
    d = sweep / ".submitit"
    return sorted(p.name for p in d.iterdir() if re.fullmatch(r"\d+_\d+", p.name)) if d.is_dir() else []


def _cancel_sweep(sweep: Path) -> None:
    ids = _job_ids(sweep)
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


def _diagnose(sweep: Path, out: str) -> str:
    queue = subprocess.run(["squeue", "-a"], capture_output=True, text=True, timeout=30).stdout
    logs = []
    for p in sorted((sweep / ".submitit").glob("*/*_log.*")) if (sweep / ".submitit").is_dir() else []:
        logs.append(f"----- {p.name}\n{_tail(p.read_text(errors='replace'), 15)}")
    return f"squeue:\n{queue}\nsweep output:\n{_tail(out, 40)}\n" + "\n".join(logs)


def _finish(proc: subprocess.Popen, sweep: Path, t0: float, expect_rc: int = 0) -> str:
    """Wait for a sweep process within SWEEP_TIMEOUT_S of ``t0``; return its output. The sweep's
    exit status is 0 when every job finished, 1 when any failed or was lost."""
    try:
        out, _ = proc.communicate(timeout=max(1.0, SWEEP_TIMEOUT_S - (time.time() - t0)))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        msg = _diagnose(sweep, out)
        _cancel_sweep(sweep)
        pytest.fail(f"sweep did not finish in {SWEEP_TIMEOUT_S}s\n{msg}")
    if proc.returncode != expect_rc:
        pytest.fail(f"sweep exited {proc.returncode} (expected {expect_rc})\n{_diagnose(sweep, out)}")
    return out


def _start(args: list[str], sweep: Path, env: dict | None = None) -> tuple[subprocess.Popen, float]:
    proc = subprocess.Popen(args, cwd=REPO, env={**_env(), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, time.time()


def _run_sweep(args: list[str], sweep: Path) -> tuple[str, float]:
    proc, t0 = _start(args, sweep)
    out = _finish(proc, sweep, t0)
    return out, time.time() - t0


def _wait_for(what: str, pred, timeout: float, proc: subprocess.Popen, sweep: Path, poll: float = 0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        if proc.poll() is not None:
            break
        time.sleep(poll)
    proc.kill()
    out, _ = proc.communicate()
    msg = _diagnose(sweep, out)
    _cancel_sweep(sweep)
    pytest.fail(f"timed out waiting for {what}\n{msg}")


def _job_log(sweep: Path, index: int, needle: str):
    """The job id of array task ``index`` once its stdout or stderr log contains ``needle``."""
    for p in (sweep / ".submitit").glob(f"*_{index}/*_{index}_0_log.*") if (sweep / ".submitit").is_dir() else []:
        if needle in p.read_text(errors="replace"):
            return p.parent.name
    return None


def _summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


def _final_numbers(d: Path, drop=("run_id",)) -> pd.DataFrame:
    from flossrepro.store.tables import read_run

    df = read_run(d)
    return df.drop(columns=list(drop)).sort_values(["metric", "member", "epoch", "index"]).reset_index(drop=True)


# -- tests -------------------------------------------------------------------------------------
def test_sweep_runs_as_slurm_jobs_and_a_rerun_skips_them(slurm_cluster: str, tmp_path: Path) -> None:
    """The documented command, exactly: 3 SLURM jobs, 3 complete runs; the rerun submits nothing."""
    sweep = tmp_path / "sweep"
    cmd = _cmd("scale=smoke", "seed=1,2,3", "hydra/launcher=submitit_slurm", f"hydra.sweep.dir={sweep}")
    out, took = _run_sweep(cmd, sweep)
    print(f"3-job SLURM sweep: {took:.1f}s")

    s = _summaries(sweep)
    assert sorted(s) == ["seed=1", "seed=2", "seed=3"], sorted(s)
    assert all(v["status"] == "complete" for v in s.values()), {k: v["status"] for k, v in s.items()}
    ids = [v["slurm_job_id"] for v in s.values()]
    assert all(isinstance(i, str) and i.isdigit() for i in ids) and len(set(ids)) == 3, ids
    assert len(_job_ids(sweep)) == 3, _job_ids(sweep)
    runs = pd.read_csv(sweep / "runs.csv")
    assert len(runs) == 3 and (runs.status == "complete").all(), runs
    assert sorted(runs.slurm_job_id.astype(str)) == sorted(ids)
    assert "3 runs under" in out and "3 complete" in out, _tail(out)
    # the project's launcher defaults reached sbatch; the time limit is the cost planner's
    # (2 x the longest job's estimate + 10 min: a smoke job gets minutes, not the 240 default)
    sbatch = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    for line in ("#SBATCH --mem=4GB", "#SBATCH --cpus-per-task=1", "#SBATCH --signal=USR2@120"):
        assert line in sbatch, sbatch
    limit = re.search(r"#SBATCH --time=(\d+)", sbatch)
    assert limit and 10 <= int(limit.group(1)) < 240, sbatch

    # rerunning the sweep submits nothing and leaves the results alone
    mtimes = {p: p.stat().st_mtime for p in sweep.glob("*/metrics/*.parquet")}
    assert mtimes
    out2, took2 = _run_sweep(cmd, sweep)
    print(f"rerun of the finished sweep: {took2:.1f}s")
    assert "3 of 3 runs already finished, not submitted again" in out2, _tail(out2)
    assert len(_job_ids(sweep)) == 3
    assert {p: p.stat().st_mtime for p in sweep.glob("*/metrics/*.parquet")} == mtimes
    assert (pd.read_csv(sweep / "runs.csv").status == "complete").sum() == 3


def test_preempted_job_is_requeued_resumes_and_ends_like_an_uninterrupted_one(slurm_cluster: str, tmp_path: Path) -> None:
    """Job 0 is preempted (submitit's ``_interrupt``: SIGTERM, then USR2) mid-training, requeued
    and resumed from the checkpoint written on the signal; job 1 (same numbers, never
    interrupted) is the reference. W&B: the requeued job continues the same run id."""
    sweep = tmp_path / "sweep"
    # checkpoint_every > epochs: the only checkpoint is the one written when the signal arrives
    cmd = _cmd("scale=smoke", "logger=wandb", "progress=log", "log_every=10", "epochs=300",
               "checkpoint_every=1000,1001", "flossing=during", "flossing.episodes_at=[0,150]", "flossing.epochs=20",
               # a requeued job can be out of squeue for a few seconds while SLURM requeues it
               "hydra/launcher=submitit_slurm", f"hydra.sweep.dir={sweep}", "hydra.launcher.poll_s=1",
               "hydra.launcher.lost_after_s=30")
    # job 0 waits at epoch 50 until it is preempted (a condition, not a race with a 300-epoch run)
    proc, t0 = _start(cmd, sweep, env={"FLOSSREPRO_PAUSE_AT": "50:checkpoint_every=1000,"})
    jid = _wait_for("job 0 to train", lambda: _job_log(sweep, 0, "paused at 50"), 150, proc, sweep)
    run0 = next(sweep.glob("checkpoint_every=1000,*"))
    before = json.loads((run0 / "summary.json").read_text())
    assert before["status"] == "running"

    import submitit

    submitit.SlurmJob(folder=sweep / ".submitit" / jid, job_id=jid)._interrupt(timeout=False)

    def requeued():
        q = subprocess.run(["squeue", "-h", "-j", jid, "-o", "%T %r"], capture_output=True, text=True).stdout
        if "BeginTime" in q:
            return "held"
        if _job_log(sweep, 0, "resuming"):
            return "running"  # a SLURM that does not hold requeued jobs
        return None

    if _wait_for("the requeued job", requeued, 60, proc, sweep) == "held":
        subprocess.run(["scontrol", "update", f"JobId={jid}", "StartTime=now"], check=True, timeout=30)
    out = _finish(proc, sweep, t0)
    print(f"sweep with a preempted + requeued job: {time.time() - t0:.1f}s")

    log = "".join(p.read_text(errors="replace") for p in (sweep / ".submitit" / jid).glob("*_log.*"))
    assert "Requeued job" in log and "resuming" in log, _tail(log, 60)
    after = json.loads((run0 / "summary.json").read_text())
    assert after["status"] == "complete" and after["epochs_done"] == 300
    assert after["slurm_job_id"] == before["slurm_job_id"]  # the same SLURM job, requeued
    assert after["wandb_id"] == before["wandb_id"]
    wandb_dirs = sorted((run0 / "wandb").glob("offline-run-*"))
    assert len(wandb_dirs) == 2, wandb_dirs  # one per segment, both continuing one W&B run
    assert {p.name.rsplit("-", 1)[1] for p in wandb_dirs} == {before["wandb_id"]}

    ref = next(sweep.glob("checkpoint_every=1001,*"))
    assert json.loads((ref / "summary.json").read_text())["status"] == "complete"
    pd.testing.assert_frame_equal(_final_numbers(run0), _final_numbers(ref))
    assert "2 complete" in out, _tail(out)


def test_failed_and_killed_jobs_are_reported_and_the_others_kept(slurm_cluster: str, tmp_path: Path) -> None:
    """epochs=31 fails at runtime (its run directory holds a corrupt checkpoint.pt, which the run
    tries to resume from); epochs=100000 is killed from outside with scancel. The sweep still
    ends, reports both, and keeps epochs=30's result."""
    sweep = tmp_path / "sweep"
    bad = sweep / "epochs=31"
    # an interrupted run of the same settings (so the sweep resumes it) whose checkpoint is corrupt
    prep = subprocess.run([sys.executable, "-m", "flossrepro", "scale=smoke", "logger=none", "progress=none",
                           "epochs=31", f"hydra.run.dir='{bad}'"], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr[-2000:]
    summary = json.loads((bad / "summary.json").read_text())
    summary["status"] = "interrupted"
    (bad / "summary.json").write_text(json.dumps(summary))
    (bad / "checkpoint.pt").write_bytes(b"not a checkpoint: truncated on a full disk")
    cmd = _cmd("scale=smoke", "logger=none", "progress=log", "epochs=30,31,100000",
               "hydra/launcher=submitit_slurm", f"hydra.sweep.dir={sweep}", *FAST_POLL)
    proc, t0 = _start(cmd, sweep)
    jid = _wait_for("the long job to train", lambda: _job_log(sweep, 2, "epoch 20/100000"), 150, proc, sweep)
    subprocess.run(["scancel", jid], check=True, timeout=30)
    t_kill = time.time()
    out = _finish(proc, sweep, t0, expect_rc=1)
    print(f"sweep with a failed and a scancelled job: {time.time() - t0:.1f}s "
          f"({time.time() - t_kill:.1f}s after scancel)")

    runs = pd.read_csv(sweep / "runs.csv").set_index("path")
    assert runs.loc["epochs=30", "status"] == "complete"
    assert runs.loc["epochs=31", "status"] == "failed"
    assert "checkpoint.pt" in runs.loc["epochs=31", "error"], runs.loc["epochs=31", "error"]
    assert runs.loc["epochs=100000", "status"] == "lost"
    assert "left the queue without a result" in runs.loc["epochs=100000", "error"]
    assert f"lost: default/smoke/epochs=100000" in out and "failed: default/smoke/epochs=31" in out, _tail(out)
    # the killed job checkpointed on scancel's SIGTERM: rerunning the sweep resumes it
    lost = json.loads((sweep / "epochs=100000" / "summary.json").read_text())
    assert lost["previous_status"] == "running" and lost["epochs_done"] >= 20, lost
    assert (sweep / "epochs=100000" / "checkpoint.pt").exists()
    # the finished run's numbers are in the sweep's table
    from flossrepro.store.tables import read_run

    metrics = read_run(sweep / "epochs=30")
    tl = metrics[metrics.metric == "train_loss"]
    assert len(tl) == 30 * 2, len(tl)


def test_waiting_prints_pending_running_done_counts(tmp_path: Path, monkeypatch, caplog) -> None:
    """No cluster needed: squeue and the jobs are stand-ins; the launcher's wait loop reports counts."""
    import logging
    from types import SimpleNamespace

    from flossrepro.run import launcher as L

    class FakeJob:
        def __init__(self, i: int):
            self.job_id = f"100_{i}"
            self.paths = SimpleNamespace(result_pickle=tmp_path / f"result_{i}.pkl", stderr=tmp_path / f"{i}.err")

        def results(self):
            return [SimpleNamespace(_return_value={"status": "complete"})]

        def cancel(self, check=False):
            pass

    jobs = {i: FakeJob(i) for i in range(3)}
    polls = iter([{"100_0": "RUNNING", "100_1": "PENDING", "100_2": "PENDING"},
                  {"100_1": "RUNNING", "100_2": "PENDING"},
                  {"100_2": "RUNNING"}, {}])

    def squeue():
        st = next(polls, {})
        # a job that left the queue has written its result
        for i, job in jobs.items():
            if job.job_id not in st:
                job.paths.result_pickle.write_text("x")
        return st

    monkeypatch.setattr(L, "_queued_job_ids", squeue)
    launcher = object.__new__(L.SlurmLauncher)
    launcher.max_wait_min, launcher.lost_after_s, launcher.poll_s, launcher.report_every_s = None, 60.0, 0.01, 30.0
    results: list = [None] * 3
    info = [{"run_id": f"r{i}", "run_dir": tmp_path / f"r{i}", "cfg": None, "task_cfg": None} for i in range(3)]
    with caplog.at_level(logging.INFO, logger=L.log.name):
        launcher._wait(jobs, info, [[]] * 3, results)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SLURM sweep:")]
    assert lines[0].startswith("SLURM sweep: 2 pending, 1 running, 0 done (0 failed, 0 lost) of 3"), lines
    assert any("1 pending, 1 running, 1 done" in x for x in lines), lines
    assert lines[-1].startswith("SLURM sweep: 0 pending, 0 running, 3 done"), lines
    assert all(r is not None for r in results)
