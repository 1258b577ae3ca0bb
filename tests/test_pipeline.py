"""End-to-end tests of the Hydra pipeline: runs, sweeps, resume, validation, W&B, divergence."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

import flossrepro.store.config  # noqa: F401  (registers the by_scale resolver)
from flossrepro.report.aggregate import collect
from flossrepro.store.tables import part_files, read_run

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
# One smoke sweep per job type and model family runs in `make test` (condition, gated floss,
# convergence, cost, a rate network on a trial task, the linear study); the other experiments' smoke
# sweeps are in `make test-slow` (all compose at every scale in `make test`). fig1's sweep (the floss
# job) runs for real in test_figures.py and twice in test_readme.py; training with flossing episodes
# runs in this file's default-job and resume tests and in test_bad_inputs2.py (scale=smoke flossing=during).
DEFAULT_SWEEPS = ("fig2", "fig6", "fig16", "table1", "lr_flipflop", "lr_linear")
SWEEPS = [e if e in DEFAULT_SWEEPS else pytest.param(e, marks=pytest.mark.slow) for e in EXPERIMENTS]
QUIET = ["logger=none", "progress=log"]


def run(args, cwd=ROOT, timeout=300, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "flossrepro", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nSTDOUT\n{p.stdout[-3000:]}\nSTDERR\n{p.stderr[-3000:]}")
    return p


def test_default_job_writes_run_directory(tmp_path):
    d = tmp_path / "run"
    p = run(["scale=smoke", *QUIET, f"hydra.run.dir={d}"])
    assert "[flossrepro] complete" in p.stdout
    for f in ("summary.json", "checkpoint.pt", "metrics/part-00000.parquet"):
        assert (d / f).exists(), f
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "complete" and s["epochs_done"] == 30 and len(s["members"]) == 2
    # settings once per run (summary.json), observation rows without them
    assert {"task.delay", "seed", "flossing.schedule"} <= set(s["columns"])
    df = read_run(d)
    assert list(df.columns) == ["run_id", "member", "epoch", "metric", "index", "value"]
    # smoke: checkpoint_every=10 -> a part per checkpoint (3) and one at the end with the last rows
    assert s["table_parts"] == len(part_files(d)) >= 3
    m = set(df.metric)
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "lyap", "grad_h0_norm",
            "grad_W_sv", "dW_sv", "dW_effective_rank", "dW_rel_norm"} <= m
    # every member has its training curve, one row per epoch
    assert (df[df.metric == "train_loss"].groupby("member").size() == 30).all()
    # rerunning a finished run skips it
    p2 = run(["scale=smoke", *QUIET, f"hydra.run.dir={d}"])
    assert "already complete" in p2.stdout


def test_every_experiment_composes_at_every_scale():
    with initialize_config_dir(config_dir=str(ROOT / "flossrepro" / "conf"), version_base="1.3"):
        for exp in EXPERIMENTS:
            for scale in ("smoke", "small", "paper"):
                cfg = compose("config", overrides=[f"+experiment={exp}", f"scale={scale}"], return_hydra_config=True)
                assert cfg.experiment_name == exp
                assert cfg.hydra.mode.name == "MULTIRUN"
                # every swept value resolves
                for k, v in cfg.hydra.sweeper.params.items():
                    assert str(v)
                assert int(cfg.members) >= 1


@pytest.mark.parametrize("exp", SWEEPS)
def test_experiment_sweep_runs_at_smoke_scale(tmp_path, exp):
    d = tmp_path / exp
    p = run([f"+experiment={exp}", "scale=smoke", *QUIET, f"hydra.sweep.dir={d}"], timeout=600)
    assert "[flossrepro.report.aggregate]" in p.stdout
    metrics, runs, report = collect(d)
    assert len(runs) >= 2 and (runs.status == "complete").all(), report
    assert (d / "metrics.parquet").exists() and (d / "runs.csv").exists()
    assert set(metrics.run_id) == set(runs.run_id)


def _final_numbers(d: Path) -> pd.DataFrame:
    df = read_run(d)
    return df.drop(columns=["run_id"]).sort_values(["metric", "member", "epoch", "index"]).reset_index(drop=True)


def _stop_at(args, d: Path, at: int, sig) -> subprocess.Popen:
    """Run until the job pauses at step ``at`` (FLOSSREPRO_PAUSE_AT: a condition, not a race), then send ``sig``."""
    proc = subprocess.Popen([sys.executable, "-m", "flossrepro", *args, f"hydra.run.dir={d}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "FLOSSREPRO_PAUSE_AT": str(at)})
    seen, deadline = "", time.time() + 180
    while time.time() < deadline:
        line = proc.stdout.readline()
        seen += line
        if f"paused at {at}" in line or not line:
            break
    assert f"paused at {at}" in seen, seen[-3000:]
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, seen + out
    return proc


RESUME_ARGS = ["scale=smoke", *QUIET, "epochs=400", "flossing=during", "flossing.episodes_at=[0,200]",
               "flossing.epochs=20"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    ref = tmp_path_factory.mktemp("ref") / "run"
    run([*RESUME_ARGS, "checkpoint_every=100", f"hydra.run.dir={ref}"])
    return _final_numbers(ref)


def test_sigterm_then_rerun_resumes_to_same_numbers(tmp_path, uninterrupted):
    args = [*RESUME_ARGS, "checkpoint_every=1000"]
    d = tmp_path / "stopped"
    _stop_at(args, d, 50, signal.SIGTERM)
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["epochs_done"] == 50
    p = run([*args, f"hydra.run.dir={d}"])
    assert "resuming" in p.stdout + p.stderr
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "complete"
    pd.testing.assert_frame_equal(uninterrupted, _final_numbers(d))


def test_sigkill_between_checkpoints_loses_nothing_and_corrupts_nothing(tmp_path, uninterrupted):
    args = [*RESUME_ARGS, "checkpoint_every=100"]
    d = tmp_path / "killed"
    _stop_at(args, d, 250, signal.SIGKILL)  # checkpoints at 100 and 200; the rows of 201-250 are lost
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "running" and s["epochs_done"] == 200  # summary.json follows the checkpoints
    for p in part_files(d):
        pq_rows = pd.read_parquet(p)
        assert len(pq_rows) > 0
    assert read_run(d)["epoch"].max() <= 200
    p = run([*args, f"hydra.run.dir={d}"])
    assert "resuming" in p.stdout + p.stderr
    assert json.loads((d / "summary.json").read_text())["status"] == "complete"
    pd.testing.assert_frame_equal(uninterrupted, _final_numbers(d))
    for p in part_files(d):  # every table file readable
        pd.read_parquet(p)


@pytest.mark.parametrize("args,needle", [
    (["arch=transformer"], "arch=transformer"),
    (["flossing=pre", "flossing.k=99"], "flossing.k=99"),
    (["task.delay=50", "task.seq_len=40"], "task.seq_len=40"),
    (["flossing=during", "flossing.episodes_at=[0,100]"], "flossing.episodes_at"),
    (["+experiment=fig99"], "experiment=fig99"),
    (["dtype=float16"], "dtype=float16"),
    (["device=cuda:7"] if not __import__("torch").cuda.is_available() else ["device=bogus"], "device="),
])
def test_bad_settings_fail_before_compute(tmp_path, args, needle):
    d = tmp_path / "run"
    p = run(["scale=smoke", *QUIET, f"hydra.run.dir={d}", *args], check=False)
    assert p.returncode != 0
    assert needle in p.stderr + p.stdout, p.stderr
    assert "Traceback" not in p.stderr
    assert not (d / "checkpoint.pt").exists() and not (d / "metrics.parquet").exists()


def test_diverging_members_are_recorded_and_others_go_on(tmp_path):
    d = tmp_path / "run"
    run(["scale=smoke", *QUIET, f"hydra.run.dir={d}", "arch=linear", "members=6", "init.g_range=[0.3,3.0]",
         "task.seq_len=200", "epochs=5", "diagnostics.lyap_every=0"])
    s = json.loads((d / "summary.json").read_text())
    st = [m["status"] for m in s["members"]]
    assert "diverged" in st and "ok" in st, s["members"]
    assert s["status"] == "complete_partial"
    df = read_run(d)
    ok = [m["member"] for m in s["members"] if m["status"] == "ok"]
    tl = df[(df.metric == "train_loss") & df.member.isin(ok)]
    assert tl.groupby("member").size().eq(5).all() and tl.value.notna().all()


def _read_wandb_records(path: Path) -> list[bytes]:
    """The protobuf records of a W&B transaction log (``run-<id>.wandb``): a 7-byte file
    header, then 32 KiB blocks of chunks (crc32 u32, length u16, type u8: 1 full,
    2 first, 3 middle, 4 last), written by the real wandb library."""
    import struct

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, buf, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and n == 0:
            break
        buf += data[pos:pos + n]
        pos += n
        if kind in (1, 4):
            out.append(buf)
            buf = b""
    return out


def test_wandb_offline_run_is_written_and_readable(tmp_path):
    d = tmp_path / "run"
    run(["scale=smoke", "logger=wandb", "progress=log", f"hydra.run.dir={d}"], env={"WANDB_MODE": "offline"})
    s = json.loads((d / "summary.json").read_text())
    files = list((d / "wandb").glob(f"offline-run-*-{s['wandb_id']}/run-{s['wandb_id']}.wandb"))
    assert files, list((d / "wandb").rglob("*"))
    from wandb.proto import wandb_internal_pb2 as pb

    keys, cfg_keys, group = set(), set(), None
    for data in _read_wandb_records(files[0]):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            keys |= {item.key or "/".join(item.nested_key) for item in rec.history.item}
        elif kind == "run":
            group = rec.run.run_group
            cfg_keys |= {item.key for item in rec.run.config.update}
        elif kind == "config":
            cfg_keys |= {item.key for item in rec.config.update}
    assert group == "default"
    assert {"train_loss/member0", "train_loss/mean", "test_accuracy/member1", "lyap_1/mean"} <= keys, sorted(keys)[:40]
    assert {"task", "flossing", "seed"} <= cfg_keys


def test_aggregator_reports_failed_and_lost_runs(tmp_path):
    sweep = tmp_path / "sweep"
    run(["-m", "scale=smoke", *QUIET, f"hydra.sweep.dir={sweep}", "seed=1,2", "epochs=5"])
    # a lost job: Hydra wrote its config, then it was killed from outside before any result
    lost = sweep / "seed=3"
    (lost / ".hydra").mkdir(parents=True)
    (lost / ".hydra" / "config.yaml").write_text("seed: 3\n")
    # a failed job
    failed = sweep / "seed=4"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "config.yaml").write_text("seed: 4\n")
    (failed / "summary.json").write_text(json.dumps({"status": "failed", "run_id": "x/seed=4", "error": "RuntimeError: boom"}))
    p = subprocess.run([sys.executable, "-m", "flossrepro.report.aggregate", str(sweep)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "2 complete" in p.stdout and "1 failed" in p.stdout and "1 lost" in p.stdout
    assert "RuntimeError: boom" in p.stdout
    metrics, runs, _ = collect(sweep)
    assert set(metrics["seed"]) == {1, 2}


def test_all_members_diverging_at_initialisation_is_recorded_not_a_crash(tmp_path):
    d = tmp_path / "run"
    p = run(["scale=smoke", *QUIET, f"hydra.run.dir={d}", "arch=linear", "init.g=1e30"])
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "diverged" and all(m["status"] == "diverged" for m in s["members"]), p.stdout
    assert "Traceback" not in p.stderr
    df = read_run(d)  # the diagnostics at epoch 0 recorded NaN for the diverged members
    assert df[df.metric == "dW_sv"]["value"].isna().all()


def test_flossing_only_job_resumes_to_the_same_numbers(tmp_path):
    """job=floss (Fig 1's runs) shares the run directory, tables, checkpoints and resume."""
    args = ["scale=smoke", *QUIET, "job=floss", "flossing=pre", "flossing.input=gaussian", "flossing.epochs=40",
            "checkpoint_every=10", "log_every=10"]
    ref = tmp_path / "ref"
    run([*args, f"hydra.run.dir={ref}"])
    s = json.loads((ref / "summary.json").read_text())
    assert s["job"] == "floss" and s["epochs"] == 0 and s["progress"] == {"unit": "floss-ep", "done": 40, "total": 40}
    df = read_run(ref)
    assert set(df.metric) == {"init_g", "lyap_before_floss", "lyap_after_floss", "floss_loss", "floss_lambda_1"}
    assert df[df.metric == "floss_loss"].epoch.max() == 39
    d = tmp_path / "stopped"
    _stop_at(args, d, 25, signal.SIGTERM)
    assert json.loads((d / "summary.json").read_text())["status"] == "interrupted"
    run([*args, f"hydra.run.dir={d}"])
    pd.testing.assert_frame_equal(_final_numbers(ref), _final_numbers(d))


def test_lstm_flosses_on_gaussian_inputs(tmp_path):
    """flossing.input=gaussian sizes its inputs from the network (an LSTM has no V)."""
    d = tmp_path / "run"
    run(["scale=smoke", *QUIET, f"hydra.run.dir={d}", "arch=lstm", "flossing=pre", "flossing.input=gaussian"])
    df = read_run(d)
    assert df[df.metric == "floss_loss"]["value"].notna().all()
