"""Faults, second round: a later stage that fails is reported and changes the exit status; stale
state is visible; tools do not claim what they did not do."""
from __future__ import annotations

from pathlib import Path

from flossrepro.run import sweep as SW


def test_a_sweep_whose_aggregate_fails_exits_non_zero(tmp_path, monkeypatch):
    from flossrepro.report import aggregate

    def boom(sd, *a, **k):
        raise OverflowError("Python int too large to convert to C long")

    monkeypatch.setattr(aggregate, "write", boom)
    run = tmp_path / "a"
    run.mkdir()
    (run / "summary.json").write_text('{"status": "complete"}')
    lines: list[str] = []
    code = SW.finish([tmp_path], [run], False, print_fn=lines.append)
    assert code == 1, lines
    assert any("could not aggregate" in line for line in lines) and any("exit status 1" in line for line in lines)


# -- one finished smoke run, shared ------------------------------------------------------------------
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from flossrepro.report import aggregate as AG  # noqa: E402

RUN = "outputs/default/smoke/epochs=5"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder holding one finished smoke run (``outputs/default/smoke/epochs=5``)."""
    d = tmp_path_factory.mktemp("faults2")
    p = subprocess.run([sys.executable, "-m", "flossrepro", "scale=smoke", "logger=none", "progress=none", "epochs=5"],
                       cwd=d, capture_output=True, text=True, timeout=300, env=dict(os.environ, FLOSSREPRO_NATIVE="0"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert (d / RUN / "checkpoint.pt").exists()
    return d


def copy_of(finished: Path, tmp_path: Path) -> Path:
    """A sweep-like folder holding a copy of the finished run."""
    dst = tmp_path / "sweep"
    shutil.copytree(finished / RUN, dst / "epochs=5")
    return dst


def one_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_aggregate_refuses_a_metric_no_run_recorded(finished, capsys):
    rc = AG.main([str(finished / "outputs"), "--metrics", "bogus_metric", "--out", str(finished / "agg_bogus")])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and "bogus_metric" in line and "known:" in line, line
    assert not (finished / "agg_bogus").exists()


def test_aggregate_of_an_empty_folder_says_there_is_nothing_to_aggregate(tmp_path, capsys):
    rc = AG.main([str(tmp_path)])
    line = one_line(capsys.readouterr().err)
    assert rc != 0 and "nothing to aggregate" in line
    assert list(tmp_path.iterdir()) == []


def test_no_stale_summary_table_beside_a_new_runs_csv(finished, tmp_path, capsys):
    sweep = copy_of(finished, tmp_path)
    assert AG.main([str(sweep)]) == 0 and (sweep / "metrics.parquet").exists()
    for p in (sweep / "epochs=5" / "metrics").glob("part-*.parquet"):
        p.unlink()
    AG.main([str(sweep)])
    assert (sweep / "runs.csv").exists() and not (sweep / "metrics.parquet").exists()


def test_figures_refuse_a_results_folder_that_does_not_exist(capsys):
    from flossrepro.figures.__main__ import main as figures_main

    rc = figures_main(["--results", "/nonexistent"])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and "/nonexistent" in line and "--results" in line
