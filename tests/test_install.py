"""A non-editable install (`pip install .`) gives a working command from any directory.

The package is built from a copy of the working tree and installed with pip into a fresh
virtual environment (no pip of its own; this environment's pip installs into it). Its
dependencies come from this environment's site-packages through a ``.pth`` line, so the
test needs no network and no second copy of torch; the project's editable install is not
visible there (nested ``.pth`` files are not processed).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tree_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    keep = ("flossrepro/", "pyproject.toml", "README.md")
    return [f for f in out.stdout.splitlines() if f.startswith(keep) and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    for f in _tree_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        "--no-build-isolation", str(src)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    shutil.rmtree(src)  # nothing may come from the source tree any more
    return venv, tmp


def _run(venv: Path, args: list[str], cwd: Path, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", FLOSSREPRO_NATIVE="0")
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_installed_package_is_not_the_source_tree(installed):
    venv, tmp = installed
    p = _run(venv, [str(venv / "bin/python"), "-c", "import flossrepro; print(flossrepro.__file__)"], tmp)
    assert p.returncode == 0 and str(venv) in p.stdout, p.stdout + p.stderr


def test_console_script_runs_a_job_from_any_directory(installed):
    venv, tmp = installed
    work = tmp / "elsewhere"
    work.mkdir()
    p = _run(venv, ["flossrepro", "scale=smoke", "logger=none", "progress=none", "epochs=3"], work)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert (work / "outputs/default/smoke/epochs=3/summary.json").exists()
    p = _run(venv, [str(venv / "bin/python"), "-m", "flossrepro", "scale=smoke", "logger=none", "progress=none",
                    "epochs=3"], work)
    assert p.returncode == 0 and "already complete" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]


def test_experiments_and_help_are_packaged(installed):
    venv, tmp = installed
    p = _run(venv, ["flossrepro", "--help"], tmp)
    assert p.returncode == 0 and "+experiment=<fig1" in p.stdout and "arch" in p.stdout, p.stdout
    for exp in ("fig1", "fig3", "fig4"):
        p = _run(venv, ["flossrepro", f"+experiment={exp}", "scale=smoke", "--dry-run"], tmp)
        assert p.returncode == 0 and "sweep of" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]


def test_bash_tab_completion_of_the_console_script(installed):
    venv, tmp = installed
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = ('eval "$(flossrepro -sc install=bash)"; '
              'for line in "flossrepro arch=" "flossrepro +experiment=f" "flossrepro task.de"; do '
              'COMP_LINE="$line"; COMP_POINT=${#line}; COMP_WORDS=($line); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); '
              'hydra_bash_completion; echo "${COMPREPLY[*]}"; done')
    p = _run(venv, ["bash", "-c", script], tmp)
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 3, p.stdout + p.stderr
    assert "arch=tanh" in lines[0] and "arch=lstm" in lines[0]
    assert "+experiment=fig1" in lines[1] and "+experiment=fig4" in lines[1]
    assert "task.delay=" in lines[2]
