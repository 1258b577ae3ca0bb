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


# -- one line instead of a traceback --------------------------------------------------------------------------
from flossrepro.run import cli  # noqa: E402

BASE = ["scale=smoke", "logger=none", "progress=none", "epochs=4"]


def _refused(rc: int, err: str, *needles: str) -> str:
    line = one_line(err)
    assert rc != 0 and line.startswith("flossrepro: error: "), err
    for n in needles:
        assert n in line, (n, line)
    return line


@pytest.mark.parametrize("where,needle", [("afile", "is a file"), ("afile/sub", "is a file"),
                                          ("/proc/flossrepro_run", "/proc"), ("/sys/x", "/sys")])
def test_a_run_directory_that_cannot_be_one_is_refused(tmp_path, monkeypatch, capsys, where, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    rc = cli.main([*BASE, f"hydra.run.dir={where}"])
    _refused(rc, capsys.readouterr().err, "hydra.run.dir", needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_sweep_directory_that_is_a_file_and_zero_workers_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    rc = cli.main([*BASE, "-m", "seed=1,2", "hydra.sweep.dir=afile"])
    _refused(rc, capsys.readouterr().err, "hydra.sweep.dir", "is a file")
    rc = cli.main([*BASE, "-m", "seed=1,2", "hydra.launcher.n_jobs=0"])
    _refused(rc, capsys.readouterr().err, "hydra.launcher.n_jobs=0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder on a read-only filesystem (a tmpfs mounted read-only as root; permissions otherwise)."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64m", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only filesystem here")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


def test_a_read_only_filesystem_is_refused_before_the_run(read_only_dir, monkeypatch, capsys):
    monkeypatch.chdir(read_only_dir.parent)
    rc = cli.main([*BASE, f"hydra.run.dir={read_only_dir}/run"])
    _refused(rc, capsys.readouterr().err, "not writable")
    assert list(read_only_dir.iterdir()) == []


def test_a_filesystem_that_fills_up_mid_run_is_one_line_no_temporary_file_no_running_status(
        tmp_path, monkeypatch, capsys):
    """The disk fills while the first checkpoint is written: one line, the status says failed, no
    ``*.tmp*`` is left, and the rerun (with room again) finishes the run."""
    import errno

    from flossrepro.store import checkpoint as ckpt

    monkeypatch.chdir(tmp_path)
    real = ckpt.torch.save

    def full(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(ckpt.torch, "save", full)
    args = [*BASE, "checkpoint_every=2", "hydra.run.dir=run"]
    try:
        rc = cli.main(args)
    except SystemExit as e:  # the command's exit status (a single run exits from inside Hydra's job)
        rc = e.code
    _refused(rc, capsys.readouterr().err, "the filesystem is full", "rerun")
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "failed" and "full" in s["error"]
    assert not [p for p in (tmp_path / "run").rglob("*") if ".tmp" in p.name]
    monkeypatch.setattr(ckpt.torch, "save", real)
    assert cli.main(args) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "complete"


def test_plan_check_of_an_unknown_experiment_is_one_line(capsys):
    from flossrepro.run.plan import main as plan_main

    rc = plan_main(["--check", "fig99"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "fig99" in err and "allowed" in err


@pytest.mark.parametrize("content", ["not parquet", "wrong columns"])
def test_figures_and_report_on_a_bad_table_are_one_line(tmp_path, capsys, content):
    import pandas as pd

    from flossrepro.figures.__main__ import main as figures_main
    from flossrepro.report.report import main as report_main

    (tmp_path / "fig1").mkdir()
    t = tmp_path / "fig1" / "metrics.parquet"
    if content == "not parquet":
        t.write_text("not parquet\n")
    else:
        pd.DataFrame({"a": [1]}).to_parquet(t)
    rc = figures_main(["--results", str(tmp_path), "--only", "fig1"])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in out + err and "metrics.parquet" in out
    rc = report_main(["--results", str(tmp_path), "--no-draw", "--study", "flossing"])
    err = capsys.readouterr().err
    assert rc == 2 and one_line(err).startswith("report: error: ") and "metrics.parquet" in err


def test_ctrl_c_during_aggregate_is_one_line(finished, monkeypatch, capsys):
    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(AG, "write", stop)
    rc = AG.main([str(finished / "outputs")])
    assert rc == 130 and "Ctrl-C" in one_line(capsys.readouterr().err)


def test_wandb_online_without_a_key_or_a_network_logs_offline_with_one_line(tmp_path, monkeypatch, capsys):
    from flossrepro.jobs.sinks import online_or_offline

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert online_or_offline("online") == "offline"
    assert "no W&B API key" in one_line(capsys.readouterr().err)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    assert online_or_offline("online", timeout_s=1.0) == "offline"
    assert "no connection" in one_line(capsys.readouterr().err)
    assert online_or_offline("offline") == "offline"


# -- stale state is visible ------------------------------------------------------------------------------
from test_faults import _alive, _descendants, start, wait_for  # noqa: E402


def test_a_run_left_running_by_sigkill_shows_as_interrupted(finished, tmp_path, monkeypatch, capsys):
    """A run whose summary says running but whose lock no process holds (SIGKILL, the OOM killer)
    is interrupted in --dry-run, the aggregate (runs.csv) and the sweep's outcome."""
    sweep = copy_of(finished, tmp_path)
    run = sweep / "epochs=5"
    s = json.loads((run / "summary.json").read_text())
    s["status"] = "running"
    (run / "summary.json").write_text(json.dumps(s))
    assert AG.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "interrupted" in out and "1 interrupted" in out, out
    import pandas as pd
    assert pd.read_csv(sweep / "runs.csv")["status"].tolist() == ["interrupted"]
    assert SW.outcome([run]) == {"interrupted": [str(run)]}
    monkeypatch.chdir(tmp_path)
    assert cli.main(["scale=smoke", "logger=none", "progress=none", "epochs=5", f"hydra.run.dir='{run}'", "--dry-run"]) == 0
    assert "interrupted" in capsys.readouterr().out


def test_sigkill_to_a_sweep_leaves_no_worker_alive(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "scale=smoke", "logger=none", "progress=log", "seed=1,2", "epochs=200000", "log_every=100",
            "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"]
    parent = start(args, tmp_path, tmp_path / "sweep.log")
    try:
        def both_running():
            ok = 0
            for d in sweep.glob("*seed=*"):
                try:
                    ok += json.loads((d / "summary.json").read_text()).get("status") == "running"
                except (OSError, ValueError):
                    pass
            return ok == 2
        wait_for(both_running, 120, "both jobs running")
        kids = _descendants(parent.pid)
        assert kids
        parent.kill()
        parent.wait()
        wait_for(lambda: not [k for k in kids if _alive(k)], 10, "the workers to die with their parent")
    finally:
        if parent.poll() is None:
            parent.kill()
        for k in _descendants(parent.pid):
            try:
                os.kill(k, 9)
            except OSError:
                pass


# -- no silent table loss ------------------------------------------------------------------------------
def test_a_run_records_its_parts_with_their_row_counts(finished):
    import pyarrow.parquet as pq

    s = json.loads((finished / RUN / "summary.json").read_text())
    parts = sorted((finished / RUN / "metrics").glob("part-*.parquet"))
    assert s["table_parts"] == len(parts) >= 1
    assert s["table_part_rows"] == [pq.read_metadata(p).num_rows for p in parts]


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_lost_or_truncated_part_is_flagged_by_aggregate_and_a_rerun_refuses(finished, tmp_path, monkeypatch,
                                                                              capsys, damage):
    import pandas as pd

    sweep = copy_of(finished, tmp_path)
    run = sweep / "epochs=5"
    part = sorted((run / "metrics").glob("part-*.parquet"))[0]
    if damage == "deleted":
        part.unlink()
    else:
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    assert AG.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "1 incomplete_tables" in out and f"{part.name} is" in out and "tables incomplete" in out, out
    runs = pd.read_csv(sweep / "runs.csv")
    assert runs["status"].tolist() == ["incomplete_tables"] and runs["table_parts_lost"].tolist() == [1]
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["scale=smoke", "logger=none", "progress=none", "epochs=5", f"hydra.run.dir='{run}'"])
    _refused(rc, capsys.readouterr().err, "tables are incomplete", part.name, "fresh directory")


# -- provenance ------------------------------------------------------------------------------------------
def test_resume_on_another_commit_is_refused_unless_allowed_and_then_recorded(finished, tmp_path, monkeypatch, capsys):
    from flossrepro.store.summary import git_commit, git_dirty

    if git_commit() is None:
        pytest.skip("not a git checkout")
    s0 = json.loads((finished / RUN / "summary.json").read_text())
    assert [e["event"] for e in s0["provenance"]] == ["start"]
    assert s0["provenance"][0]["git_commit"] == git_commit() and s0["provenance"][0]["git_dirty"] == git_dirty()
    run = copy_of(finished, tmp_path) / "epochs=5"
    s = dict(s0, status="interrupted")
    s["provenance"] = [dict(s0["provenance"][0], git_commit="0000000")]
    (run / "summary.json").write_text(json.dumps(s))
    monkeypatch.chdir(tmp_path)
    args = ["scale=smoke", "logger=none", "progress=none", "epochs=5", f"hydra.run.dir='{run}'"]
    before = (run / "summary.json").read_text()
    rc = cli.main(args)
    _refused(rc, capsys.readouterr().err, "commit 0000000", "allow_other_commit=true")
    assert (run / "summary.json").read_text() == before
    assert cli.main([*args, "allow_other_commit=true"]) == 0
    s1 = json.loads((run / "summary.json").read_text())
    assert s1["status"] == "complete" and [e["event"] for e in s1["provenance"]] == ["start", "resume"]
    assert s1["provenance"][-1]["git_commit"] == git_commit() and s1["provenance"][-1]["other_commit"] == "0000000"


def test_a_summary_table_that_fails_to_write_leaves_no_earlier_one_beside_the_new_runs_csv(finished, tmp_path,
                                                                                        monkeypatch):
    import pandas as pd

    sweep = copy_of(finished, tmp_path)
    assert AG.main([str(sweep)]) == 0 and (sweep / "metrics.parquet").exists()

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    assert AG.main([str(sweep)]) == 1
    assert (sweep / "runs.csv").exists() and not (sweep / "metrics.parquet").exists()
    assert not [p for p in sweep.iterdir() if ".tmp" in p.name]
