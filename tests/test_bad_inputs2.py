"""Bad inputs, second round: values that would break a later stage, job x arch pairs a job cannot
run, sizes that cannot fit this machine, and bad environment variables. Each is refused before
anything is made, with one line ``flossrepro: error: <setting> ... <fix>`` (as in
tests/test_bad_inputs.py), in a folder whose files stay as they were.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flossrepro.jobs.base import make_job  # noqa: F401  (the job classes the checks read)
from flossrepro.run import cli
from flossrepro.store import limits
from test_bad_inputs import BASE, _check, _snapshot


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs2")
    (d / "notes").mkdir()
    (d / "notes" / "mine.txt").write_text("not a run\n")
    return d


# (overrides, text the message must name)
CASES = [
    # values beyond int64 (the tables' columns): refused, not run and then unaggregatable
    (["seed=99999999999999999999"], "seed"), (["seed=9223372036854775807", "members=2"], "seed"),
    (["+task.seed=99999999999999999999"], "task.seed"),
    # job x arch pairs (and schedules, epochs) a job cannot run: named with what the job supports
    (["job=condition", "arch=rate"], "job=condition runs arch=<linear|relu|tanh>"),
    (["job=condition", "arch=lstm"], "job=condition"), (["job=condition", "arch=torch_rnn"], "job=condition"),
    (["job=convergence", "arch=rate_linear"], "job=convergence runs"), (["job=convergence", "arch=gru"], "job=convergence"),
    (["job=cost", "arch=rate"], "job=cost runs arch=<tanh>"), (["job=cost", "arch=lstm"], "job.archs"),
    (["job=floss", "flossing=none"], "flossing=none"), (["epochs=0"], "epochs=0"),
    # sizes that cannot fit this machine's memory: the setting, the estimate and the limit
    (["arch.n_hidden=200000"], "arch.n_hidden=200000"), (["members=100000", "arch.n_hidden=256"], "members=100000"),
    (["task.batch_size=100000000"], "task.batch_size=100000000"),
    (["flossing=pre", "flossing.horizon=100000000"], "flossing.horizon=100000000"),
    # runs that never finish, threads beyond the cores
    (["epochs=100000000000"], "epochs"), ([f"threads={4 * (os.cpu_count() or 1)}"], "threads"),
]


@pytest.mark.parametrize("args,needle", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_refused_with_one_line(folder, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(folder)
    before = _snapshot(folder)
    rc = cli.main([*BASE, *args])
    _check(rc, capsys.readouterr().err, needle, before, _snapshot(folder))


def test_memory_refusal_names_the_estimate_and_the_limit(folder, monkeypatch, capsys):
    monkeypatch.chdir(folder)
    rc = cli.main([*BASE, "arch.n_hidden=200000"])
    line = capsys.readouterr().err.strip()
    assert rc == 2 and "needs at least" in line and "GiB" in line and "available memory" in line, line


def test_the_sizes_of_every_scale_fit(monkeypatch):
    """The estimate never refuses the shipped scales (the paper's included) on a 4 GiB machine."""
    from flossrepro.run import compose

    monkeypatch.setattr(limits, "available_memory", lambda dev="cpu": (4 * 2 ** 30, "available memory"))
    for scale in ("smoke", "small", "paper"):
        for extra in ([], ["flossing=during"], ["job=floss", "flossing=pre"]):
            cmd = compose.job_configs([f"scale={scale}", *extra], False)
            need, _ = limits.memory_estimate(cmd.jobs[0].cfg)
            assert need < 2 ** 30, (scale, extra, need)


ENV_CASES = [
    ({"FLOSSREPRO_NATIVE_GEMM": "bogus"}, "FLOSSREPRO_NATIVE_GEMM"),
    ({"FLOSSREPRO_COSTS": "/nonexistent"}, "FLOSSREPRO_COSTS"),
    ({"FLOSSREPRO_NATIVE": "maybe"}, "FLOSSREPRO_NATIVE"),
    ({"FLOSSREPRO_NATIVE": "1", "CC": "/nonexistent/cc"}, "FLOSSREPRO_NATIVE=1"),
]


@pytest.mark.parametrize("env,needle", ENV_CASES, ids=[" ".join(f"{k}={v}" for k, v in e.items()) for e, _ in ENV_CASES])
def test_bad_environment_is_refused_before_any_directory(folder, monkeypatch, capsys, env, needle):
    monkeypatch.chdir(folder)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    before = _snapshot(folder)
    rc = cli.main([*BASE])
    _check(rc, capsys.readouterr().err, needle, before, _snapshot(folder))


def test_native_without_a_compiler_through_the_real_command(folder):
    before = _snapshot(folder)
    env = dict(os.environ, FLOSSREPRO_NATIVE="1", CC="/nonexistent/cc")
    p = subprocess.run([sys.executable, "-m", "flossrepro", *BASE], cwd=folder, capture_output=True, text=True,
                       timeout=120, env=env)
    _check(p.returncode, p.stderr, "FLOSSREPRO_NATIVE=1", before, _snapshot(folder))


def test_a_sweep_with_an_unsupported_pair_records_it_and_the_dry_run_names_it(folder, monkeypatch, capsys):
    monkeypatch.chdir(folder)
    before = _snapshot(folder)
    rc = cli.main([*BASE, "-m", "job=condition", "flossing=pre", "arch=tanh,rate", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 2 and "arch=rate is not supported by job=condition" in out, out
    assert _snapshot(folder) == before


# -- help and defaults agree ------------------------------------------------------------------------------
def test_help_shows_what_the_default_job_runs(capsys):
    from omegaconf import OmegaConf

    from flossrepro.run import compose
    from flossrepro.store import config as C

    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    cfg = compose.job_configs([], False).jobs[0].cfg
    for k in C._top_level():
        assert f"{k}={C._fmt(OmegaConf.select(cfg, k))}" in text, k
    assert "members=4" in text and "epochs=1000" in text and f"arch.n_hidden={cfg.arch.n_hidden}" in text


def test_smoke_scale_floss_during_training_needs_no_hand_set_episodes(folder, monkeypatch, capsys):
    monkeypatch.chdir(folder)
    for sched in ("during", "throughout", "pre", "none"):
        args = [*BASE, f"flossing={sched}"] + (["flossing.every=10"] if sched == "throughout" else [])
        assert cli.main([*args, "--dry-run"]) == 0, capsys.readouterr().err
    assert "settings valid" in capsys.readouterr().out


def test_a_slurm_sweep_leaves_the_machine_checks_to_its_jobs(monkeypatch):
    """Submitting to SLURM, this machine's memory and cores say nothing about the nodes'."""
    from flossrepro.run import compose

    cmd = compose.job_configs(["-m", "scale=smoke", "seed=1,2", "hydra/launcher=submitit_slurm",
                               "arch.n_hidden=200000", "threads=64"], True)
    compose.job_dir(cmd.jobs[0].cfg, True)
    limits.check_resources(cmd.jobs[0].cfg)  # no error
