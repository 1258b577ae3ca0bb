"""Every command in the README's code blocks runs as written.

Commands of the ``flossrepro`` command line are checked at the scale they name with
``--dry-run`` (every job's settings and run directory, nothing made), and single jobs also
run for real at smoke scale. The "figures from your own sweep" block runs for real at smoke
scale in a temporary folder, as does ``scripts/reproduce.sh`` (into temporary RESULTS and
MULTIRUN folders). ``make`` lines are checked with ``make -n``; the SLURM cluster script is
covered by tests/test_slurm_cluster.py.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks() -> list[list[str]]:
    out = []
    for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        lines = []
        for line in b.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
        out.append(lines)
    return out


COMMANDS = [c for b in blocks() for c in b]
OWN_SWEEP = next(b for b in blocks() if any("flossrepro.figures --results" in c for c in b))


def _env():
    return dict(os.environ, FLOSSREPRO_NATIVE=os.environ.get("FLOSSREPRO_NATIVE", "0"), WANDB_MODE="disabled")


def _flossrepro_args(c: str) -> list[str] | None:
    words = shlex.split(c.replace("<p>", "debug"))
    if words[0].endswith("python") and words[1:3] == ["-m", "flossrepro"]:
        return words[3:]
    if words[0].endswith("flossrepro"):
        return words[1:]
    return None


def sh(args, cwd, timeout=300, env=None):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or _env())


def test_readme_lists_the_commands_we_check():
    assert any("task.delay=70 flossing=during" in c for c in COMMANDS)
    assert len(OWN_SWEEP) == 4
    kinds = {("make" if c.startswith("make ") else "flossrepro" if _flossrepro_args(c) is not None else
              "script" if c.startswith(("scripts/", "RESULTS=", "eval ")) else "module") for c in COMMANDS}
    assert kinds == {"make", "flossrepro", "script", "module"}, kinds


@pytest.mark.parametrize("c", [c for c in COMMANDS if _flossrepro_args(c) is not None and c not in OWN_SWEEP])
def test_flossrepro_command_as_written(c, tmp_path, monkeypatch, capsys):
    """Checked in this process through the command's entry point (--dry-run at the scale written);
    single jobs also run as a real command at smoke scale."""
    from flossrepro.run import cli

    monkeypatch.chdir(tmp_path)
    args = _flossrepro_args(c)
    py = [sys.executable, "-m", "flossrepro"]
    if {"--cfg", "--help", "-h"} & set(args):
        p = sh(py + args, tmp_path)
        assert p.returncode == 0 and p.stdout.strip(), p.stdout[-1000:] + p.stderr[-1000:]
        return
    rc = cli.main([a for a in args if a != "--dry-run"] + ["--dry-run"])
    out = capsys.readouterr()
    assert rc == 0, f"{c}\n{out.out[-2000:]}\n{out.err[-2000:]}"
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
    sweep = "-m" in args or any(a.startswith("+experiment=") for a in args)
    small = [a for a in args if not a.startswith("scale=")] + ["scale=smoke", "logger=none", "progress=none"]
    if not sweep and cli.main(small + ["--dry-run"]) == 0:
        # the job itself, at smoke scale (where its settings fit smoke sizes: task.delay=70 does not)
        p = sh(py + small, tmp_path)
        assert p.returncode == 0 and "[flossrepro] complete" in p.stdout, f"{c}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"


def test_figures_and_report_from_your_own_sweep(tmp_path):
    for c in OWN_SWEEP:
        words = shlex.split(c)
        assert words[0] == ".venv/bin/python"
        p = sh([sys.executable, *words[1:], *(["logger=none"] if words[2] == "flossrepro" else [])], tmp_path,
               timeout=600)
        assert p.returncode == 0, f"{c}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    assert (tmp_path / "mine/fig1/metrics.parquet").exists() and (tmp_path / "mine/fig1/fig1.png").exists()
    assert (tmp_path / "mine/REPORT.md").exists()


def test_reproduce_script_into_folders_of_your_choice(tmp_path):
    c = next(c for c in COMMANDS if c.startswith("RESULTS=") and "reproduce.sh" in c)
    words = shlex.split(c)
    env = _env()
    env.update(RESULTS=str(tmp_path / "mine"), MULTIRUN=str(tmp_path / "multirun"), PYTHON=sys.executable)
    p = sh([str(ROOT / words[1]), *words[2:]], ROOT, timeout=600, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert (tmp_path / "mine/fig1/metrics.parquet").exists() and (tmp_path / "mine/fig1/provenance.json").exists()
    # the plain form names an experiment that exists
    plain = next(c for c in COMMANDS if c.startswith("scripts/reproduce.sh"))
    assert (ROOT / "flossrepro/conf/experiment" / f"{shlex.split(plain)[1]}.yaml").exists()


@pytest.mark.parametrize("c", [c for c in COMMANDS if c.startswith("make ")])
def test_make_targets_exist(c):
    p = sh(["make", "-n", *shlex.split(c)[1:]], ROOT)
    assert p.returncode == 0, p.stderr
