"""Bad inputs: each stops before anything is made, with one line naming the setting and the fix.

Every case runs through the command's own entry point (``flossrepro.run.cli.main``) in this
process, in a folder that already holds a finished run; a handful also run as the real
command in a subprocess. Each asserts: a non-zero exit, exactly one line on stderr of the
form ``flossrepro: error: <setting> ... <fix>``, no file or directory created or changed
anywhere in the folder, and the earlier run untouched.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flossrepro.run import cli

ROOT = Path(__file__).resolve().parents[1]
BASE = ["scale=smoke", "logger=none", "progress=none"]
FIX_WORDS = ("allowed", "e.g.", "use ", "pick", "give", "raise", "lower", "remove", "write", "rerun", "did you mean",
             "check", "null", "quote", "add -m", "move", "+experiment=", "fix", "see ")

# (overrides, text the message must contain: the setting it names)
CASES = [
    # top-level settings
    (["members=2.5"], "members"), (["members=0"], "members"), (["members=abc"], "members"),
    (["members=inf"], "members"), (["epochs=abc"], "epochs"), (["epochs=-1"], "epochs"),
    (["epochs=null"], "epochs"), (["seed=abc"], "seed"), (["seed=-1"], "seed"), (["seed=1.5"], "seed"),
    (["threads=0"], "threads"), (["checkpoint_every=0"], "checkpoint_every"), (["log_every=0"], "log_every"),
    (["progress=fast"], "progress"), (["dtype=float16"], "dtype"), (["device=tpu"], "device"),
    (["experiment_name=../../x"], "experiment_name"), (["experiment_name=a/b"], "experiment_name"),
    (["experiment_name=.."], "experiment_name"), (["+foo=1"], "foo"), (["+tsk.delay=5"], "tsk"),
    # arch
    (["arch=transformer"], "arch"), (["arch.name=gru"], "arch.name"), (["arch.n_hidden=0"], "arch.n_hidden"),
    (["arch.n_hidden=8.5"], "arch.n_hidden"), (["arch.nonlinearity=sigmoid"], "arch.nonlinearity"),
    (["arch.input_gain=-1"], "arch.input_gain"), (["+arch.depth=2"], "arch.depth"),
    (["optim.params=[U]"], "optim.params"),
    # job=cost (Table 1)
    (["job=cost", "job.measure=all"], "job.measure"), (["job=cost", "job.floss_k=[0,4]"], "job.floss_k"),
    (["job=cost", "job.archs=[lstm,rnn]"], "job.archs"),
    (["job=cost", "job.rate_archs=[lstm]"], "job.rate_archs"), (["job=cost", "job.rate_B=[0]"], "job.rate_B"),
    (["job=cost", "job.rate_T=1"], "job.rate_T"), (["job=cost", "job.floss_Tf=[5]"], "job.floss_Tf"),
    # task
    (["task=parity"], "task"), (["task.delay=0"], "task.delay"), (["task.delay=abc"], "task.delay"),
    (["task.delay=60"], "task."), (["task.batch_size=0"], "task.batch_size"),
    (["task.amplitude=nan"], "task.amplitude"), (["+task.dealy=5"], "task.dealy"), (["task.dealy=5"], "task.dealy"),
    (["task.name=copy"], "task.name"),
    # init
    (["init=xavier"], "init"), (["init.g=inf"], "init.g"), (["init.g=-1"], "init.g"),
    (["init.g_range=[1.0,0.0]"], "init.g_range"), (["init.g_range=[0.5]"], "init.g_range"),
    (["init.scheme=uniform"], "init.scheme"), (["init.relax_steps=-1"], "init.relax_steps"),
    (["init.input_std=-0.1"], "init.input_std"), (["init.gbar=nan"], "init.gbar"),
    # flossing
    (["flossing=sometimes"], "flossing"), (["flossing=pre", "flossing.k=99"], "flossing.k"),
    (["flossing=pre", "flossing.params=[X]"], "flossing.params"), (["flossing=pre", "flossing.lr=0"], "flossing.lr"),
    (["flossing=pre", "flossing.target=inf"], "flossing.target"),
    (["flossing=pre", "flossing.reduction=max"], "flossing.reduction"),
    (["flossing=pre", "flossing.input=uniform"], "flossing.input"),
    (["flossing=pre", "flossing.horizon=5"], "flossing.horizon"),
    (["flossing=during", "flossing.episodes_at=[0,5000]"], "flossing.episodes_at"),
    (["flossing=throughout", "flossing.every=0"], "flossing.every"),
    (["flossing=pre", "flossing.epochs=0"], "flossing.epochs"), (["flossing.schedule=pre"], "flossing.schedule"),
    (["flossing=pre", "flossing.s_ons=0"], "flossing.s_ons"),
    # optim
    (["optim=rmsprop"], "optim"), (["optim.lr=-0.001"], "optim.lr"), (["optim.lr=0"], "optim.lr"),
    (["optim.lr=nan"], "optim.lr"), (["optim.betas=[0.9,1.5]"], "optim.betas"), (["optim.betas=[0.9]"], "optim.betas"),
    (["optim.clip_grad_norm=-1"], "optim.clip_grad_norm"), (["optim.eps=0"], "optim.eps"),
    (["optim.params=[]"], "optim.params"), (["optim.name=sgd"], "optim.name"),
    # logger (the W&B settings are checked with logger=wandb, nothing is logged)
    (["logger=tensorboard"], "logger"), (["logger=wandb", "logger.mode=bogus"], "logger.mode"),
    (["logger=wandb", "logger.project=''"], "logger.project"), (["logger=wandb", "logger.tags=x"], "logger.tags"),
    # diagnostics
    (["diagnostics.lyap_k=0"], "diagnostics.lyap_k"), (["diagnostics.eval_every=-5"], "diagnostics.eval_every"),
    (["diagnostics.lyap_seq_len=5"], "diagnostics.lyap_seq_len"),
    (["diagnostics.eval_batch_size=0"], "diagnostics.eval_batch_size"), (["+diagnostics.foo=1"], "diagnostics.foo"),
    # job and scale
    # the low-rank study: rate network and its tasks
    (["arch=rate"], "optim.params"), (["arch=rate", "arch.dt=0"], "arch.dt"), (["arch=rate", "arch.dt=1.5"], "arch.dt"),
    (["arch=rate", "arch.input_gain=2.0"], "arch.input_gain"), (["arch=rate", "arch.nonlinearity=relu"], "arch.nonlinearity"),
    (["arch=rate", "task=mante", "optim.params=[W,V,w_r]", "flossing.params=[W,V]"], "task.seq_len"),
    (["arch=rate", "task=romo", "task.seq_len=null", "task.dt=0.25"], "task.dt"),
    (["arch=rate", "task=romo", "task.seq_len=null", "task.target_amp=0"], "task.target_amp"),
    (["job=evaluate"], "job"), (["job.name=floss"], "job.name"), (["scale=huge"], "scale"),
    (["scale.name=paper"], "scale.name"),
    # the command line itself
    (["epochs=[1"], "epochs=[1"), (["seed=1,2"], "seed"), (["experiment=fig1"], "experiment"),
    (["+experiment=fig9"], "experiment"), (["--bogus-flag"], "--bogus-flag"),
]
if not torch.cuda.is_available():
    CASES.append((["device=cuda"], "device"))


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = "dir"
        else:
            st = p.stat()
            out[rel] = f"{st.st_size}:{st.st_mtime_ns}:{hashlib.sha1(p.read_bytes()).hexdigest()}"
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding a finished run (outputs/default/smoke/epochs=5) and a folder of other files."""
    d = tmp_path_factory.mktemp("bad_inputs")
    p = subprocess.run([sys.executable, "-m", "flossrepro", *BASE, "epochs=5"], cwd=d, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (d / "outputs/default/smoke/epochs=5/checkpoint.pt").exists()
    (d / "notes").mkdir()
    (d / "notes" / "mine.txt").write_text("not a run\n")
    return d


def _check(rc: int, err: str, needle: str, before: dict, after: dict) -> None:
    assert rc != 0, "accepted"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"not one line: {err!r}"
    line = lines[0]
    assert line.startswith("flossrepro: error: "), line
    assert needle in line, f"{needle!r} not named in: {line}"
    assert any(w in line for w in FIX_WORDS), f"no fix in: {line}"
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:5]}"


@pytest.mark.parametrize("args,needle", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_refused_with_one_line(workdir, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(workdir)
    before = _snapshot(workdir)
    rc = cli.main([*BASE, *args])
    err = capsys.readouterr().err
    _check(rc, err, needle, before, _snapshot(workdir))


def test_enough_bad_inputs_across_every_group():
    assert len(CASES) >= 60
    named = " ".join(n for _, n in CASES)
    for group in ("arch", "task", "init", "flossing", "optim", "logger", "diagnostics", "job", "scale",
                  "members", "epochs", "seed", "device", "dtype", "experiment_name", "progress"):
        assert group in named, group


def test_bad_wandb_mode_in_the_environment(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    before = _snapshot(workdir)
    rc = cli.main(["scale=smoke", "logger=wandb"])
    _check(rc, capsys.readouterr().err, "WANDB_MODE", before, _snapshot(workdir))


def test_run_directories_that_are_not_this_runs_are_refused(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    before = _snapshot(workdir)
    # another run's directory (other settings), and a folder of files that is not a run
    for args, needle in ((["epochs=6", "hydra.run.dir='outputs/default/smoke/epochs=5'"], "epochs: 5 -> 6"),
                         (["hydra.run.dir=notes"], "no flossrepro run record")):
        rc = cli.main([*BASE, *args])
        _check(rc, capsys.readouterr().err, needle, before, _snapshot(workdir))


def test_a_sweep_that_does_not_compose_is_refused_before_it_starts(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    before = _snapshot(workdir)
    # a job that does not compose refuses the sweep; so do settings that no job of the sweep can run with
    # (a sweep where only some jobs are invalid runs the others and records those: tests/test_faults.py)
    for args, needle in ((["-m", "arch=tanh,transformer"], "arch=transformer"), (["-m", "seed=1,2", "+task.dealy=5"], "task.dealy"),
                         (["-m", "seed=1,2", "members=2.5"], "members"), (["+experiment=fig4", "optim.lr=0"], "optim.lr"),
                         (["-m", "experiment_name=ok,../../x"], "experiment_name")):
        rc = cli.main([*BASE, *args])
        _check(rc, capsys.readouterr().err, needle, before, _snapshot(workdir))


@pytest.mark.parametrize("args,needle", [
    (["optim.clip_grad_norm=-1"], "optim.clip_grad_norm"),
    (["arch.name=gru"], "arch.name"),
    (["+task.dealy=5"], "task.dealy"),
    (["scale=paper", "device=cuda" if not torch.cuda.is_available() else "device=tpu"], "device"),
    (["experiment_name=../../x"], "experiment_name"),
    (["-m", "task.delay=10,60", "--dry-run"], "invalid"),
])
def test_bad_input_through_the_real_command(workdir, args, needle):
    before = _snapshot(workdir)
    env = dict(os.environ, FLOSSREPRO_NATIVE="0")
    p = subprocess.run([sys.executable, "-m", "flossrepro", *BASE, *args], cwd=workdir, capture_output=True,
                       text=True, timeout=120, env=env)
    if "--dry-run" in args:  # a sweep's dry run lists the jobs that would be recorded invalid, exit 2
        assert p.returncode == 2 and "task.delay=60" in p.stdout and needle in p.stdout, p.stdout + p.stderr
        assert _snapshot(workdir) == before
        return
    _check(p.returncode, p.stderr, needle, before, _snapshot(workdir))
