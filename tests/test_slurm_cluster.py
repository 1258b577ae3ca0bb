"""Hydra multiruns through a real single-node SLURM cluster on localhost.

Run with:  .venv/bin/pytest tests/test_slurm_cluster.py -m slurm -x -q

The module fixture starts the cluster with ``scripts/local_slurm.sh up`` (which
apt-installs slurm + munge when missing, so it needs root on Debian/Ubuntu) and
stops it again with ``down`` -- unless it was already running before the tests.
Tests are skipped when the cluster cannot be provided (exit code 3 of the
script: not root, no apt-get, install failed) or when ``-m`` does not select
``slurm`` (so a plain ``pytest`` never installs system packages).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "local_slurm.sh"
SWEEP_TIMEOUT_S = 300  # a job killed from outside never finishes a submitit sweep


def _tail(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


@pytest.fixture(scope="module")
def slurm_cluster(request: pytest.FixtureRequest):
    """Start the local cluster, export SLURM_CONF, yield its path, stop it."""
    markexpr = request.config.getoption("-m") or ""
    if "slurm" not in markexpr or re.search(r"not\s+slurm", markexpr):
        pytest.skip("SLURM cluster tests run only when selected: pytest -m slurm")
    if not sys.platform.startswith("linux"):
        pytest.skip("local SLURM cluster needs Linux")

    was_up = (
        subprocess.run(
            [str(SCRIPT), "status"], capture_output=True, text=True, timeout=60
        ).returncode
        == 0
    )
    up = subprocess.run(
        [str(SCRIPT), "up"], capture_output=True, text=True, timeout=900
    )
    if up.returncode == 3:
        reason = up.stderr.strip().splitlines()[-1] if up.stderr.strip() else ""
        pytest.skip(f"cannot provide a local SLURM cluster: {reason}")
    if up.returncode != 0:
        pytest.fail(
            f"scripts/local_slurm.sh up failed (rc={up.returncode}):\n{_tail(up.stderr, 120)}"
        )
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


def _run_sweep(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HYDRA_FULL_ERROR="1")
    try:
        r = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=SWEEP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        queue = subprocess.run(
            ["squeue", "-a"], capture_output=True, text=True, timeout=30
        ).stdout
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(
            f"sweep did not finish in {SWEEP_TIMEOUT_S}s\nsqueue:\n{queue}\n"
            f"stderr:\n{_tail(err)}"
        )
    assert r.returncode == 0, f"sweep failed:\n{_tail(r.stdout)}\n{_tail(r.stderr)}"
    return r


def test_hydra_multirun_submitit_slurm(slurm_cluster: str, tmp_path: Path) -> None:
    """A 3-job multirun via hydra/launcher=submitit_slurm runs as 3 SLURM jobs."""
    out = tmp_path / "job_ids"
    out.mkdir()
    conf = tmp_path / "conf"
    conf.mkdir()
    # the project's conf/ provides hydra/launcher/submitit_slurm.yaml
    (conf / "config.yaml").write_text(
        f"seed: 0\nhydra:\n  searchpath:\n    - file://{REPO / 'conf'}\n"
    )
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            f"""
            import os, pathlib, hydra

            @hydra.main(version_base="1.3", config_path="conf", config_name="config")
            def main(cfg):
                out = pathlib.Path({str(out)!r}) / f"seed{{cfg.seed}}.txt"
                out.write_text(os.environ.get("SLURM_JOB_ID", ""))

            if __name__ == "__main__":
                main()
            """
        )
    )
    sweep_dir = tmp_path / "multirun"
    _run_sweep(
        [
            sys.executable,
            str(app),
            "-m",
            "seed=1,2,3",
            "hydra/launcher=submitit_slurm",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
    )

    ids = {p.name: p.read_text().strip() for p in sorted(out.iterdir())}
    assert sorted(ids) == ["seed1.txt", "seed2.txt", "seed3.txt"], ids
    assert all(v.isdigit() for v in ids.values()), ids
    assert len(set(ids.values())) == 3, ids

    # the project's launcher defaults reached sbatch (not the plugin's own)
    scripts = list((sweep_dir / ".submitit").glob("*/*_submission.sh"))
    assert scripts, "no submitit submission script"
    sbatch = scripts[0].read_text()
    assert "#SBATCH --time=240" in sbatch, sbatch
    assert "#SBATCH --mem=4GB" in sbatch, sbatch
