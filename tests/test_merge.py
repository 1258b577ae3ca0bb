"""``python -m flossrepro.merge``: the union of published tables, the thinning and the provenance,
on two small published folders made by hand."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flossrepro.report.merge import main, merge

ROOT = Path(__file__).resolve().parents[1]
N_SV = 30


def published(d: Path, runs: list[dict], prov: dict, epochs=range(21), sv_epochs=(0, 10, 20), members=2) -> Path:
    """A published table folder as ``python -m flossrepro.aggregate --provenance`` writes it:
    train_loss and grad_W_norm at ``epochs``, dW_sv (indices 1..30) at ``sv_epochs``; a run
    whose status is not complete has no rows."""
    rows = []
    for r in runs:
        settings = {k: v for k, v in r.items() if k not in ("run_id", "status", "git_commit", "time.total_s")}
        if r["status"] != "complete":
            continue
        for m in range(members):
            for e in epochs:
                rows.append(dict(run_id=r["run_id"], member=m, epoch=e, metric="train_loss", index=None,
                                 value=1.0 / (e + 1), **settings))
                rows.append(dict(run_id=r["run_id"], member=m, epoch=e, metric="grad_W_norm", index=None,
                                 value=0.5, **settings))
            for e in sv_epochs:
                for i in range(1, N_SV + 1):
                    rows.append(dict(run_id=r["run_id"], member=m, epoch=e, metric="dW_sv", index=i,
                                     value=1.0 / i, **settings))
    df = pd.DataFrame(rows).astype({"member": "int16", "epoch": "int32", "index": "Int64"})
    d.mkdir(parents=True)
    df.to_parquet(d / "metrics.parquet", index=False)
    pd.DataFrame(runs).to_csv(d / "runs.csv", index=False)
    (d / "provenance.json").write_text(json.dumps(prov, indent=2))
    return d


@pytest.fixture
def a(tmp_path) -> Path:
    """Two complete runs (g = 0 and 0.9), 2 members each: 4 x 132 = 528 rows."""
    runs = [dict(run_id=f"lr/paper/init.g={g}", status="complete", git_commit="abc1234", **{"time.total_s": 10.0},
                 **{"init.g": g, "seed": 0, "task.name": "linear_fp"}) for g in (0.0, 0.9)]
    prov = dict(sweep_dir="multirun/lr/a", git_commit="c0ffee1", command="python -m flossrepro sweep a",
                scale="paper", started="2026-01-02T00:00:00Z", wall_s=100, run_git_commits=["abc1234"], runs=2,
                status={"complete": 2}, run_time_s_total=20.0, full_tables="multirun/lr/a/<run>/metrics/part-*.parquet",
                summary_metrics=["dW_sv", "grad_W_norm", "train_loss"])
    return published(tmp_path / "a", runs, prov)


@pytest.fixture
def b(tmp_path) -> Path:
    """One complete run (seed 3, its own column arch.n_hidden; train_loss at epochs 1..17, dW_sv at
    1, 9, 17) and one failed run without rows; commit 0123456 (digits only: stays text)."""
    runs = [dict(run_id="lr/paper/init.g=0.0,seed=3", status="complete", git_commit="0123456",
                 **{"time.total_s": 5.5, "init.g": 0.0, "seed": 3, "task.name": "linear_fp", "arch.n_hidden": 64}),
            dict(run_id="lr/paper/init.g=0.9,seed=3", status="failed", git_commit="0123456",
                 **{"time.total_s": 1.0, "init.g": 0.9, "seed": 3, "task.name": "linear_fp", "arch.n_hidden": 64})]
    prov = dict(sweep_dir="multirun/lr/b", git_commit="c0ffee2", command="python -m flossrepro sweep b",
                scale="paper", started="2026-01-01T00:00:00Z", wall_s=50, run_git_commits=["0123456"], runs=2,
                status={"complete": 1, "failed": 1}, run_time_s_total=6.5,
                full_tables="multirun/lr/b/<run>/metrics/part-*.parquet",
                summary_metrics=["dW_sv", "grad_W_norm", "train_loss"])
    return published(tmp_path / "b", runs, prov, epochs=range(1, 18), sv_epochs=(1, 9, 17))


def read(d: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    return (pd.read_parquet(d / "metrics.parquet"), pd.read_csv(d / "runs.csv", dtype=str),
            json.loads((d / "provenance.json").read_text()))


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def epochs_of(df: pd.DataFrame, metric: str) -> dict[tuple[str, int], set[int]]:
    sel = df[df["metric"] == metric]
    return {k: set(g["epoch"]) for k, g in sel.groupby(["run_id", "member"])}


def test_union_of_rows_columns_runs_and_provenance(a, b, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs.parquet").write_bytes(b"an older table's")
    report = merge(out, [str(a), str(b)])
    m, runs, prov = read(out)
    assert len(m) == 528 + 2 * (17 + 17 + 3 * N_SV) == 776
    assert set(m.columns) == set(pd.read_parquet(a / "metrics.parquet").columns) | {"arch.n_hidden"}
    assert m.loc[m["seed"] == 0, "arch.n_hidden"].isna().all() and (m.loc[m["seed"] == 3, "arch.n_hidden"] == 64).all()
    assert m["index"].dtype == "Int64" and m["member"].dtype == "int16"
    assert sorted(runs["run_id"]) == ["lr/paper/init.g=0.0", "lr/paper/init.g=0.0,seed=3", "lr/paper/init.g=0.9",
                                      "lr/paper/init.g=0.9,seed=3"]
    assert not (out / "runs.parquet").exists() and sorted(p.name for p in out.iterdir()) == [
        "metrics.parquet", "provenance.json", "runs.csv"]
    assert prov["sweep_dir"] == "multirun/lr/a; multirun/lr/b"
    assert prov["command"] == "python -m flossrepro sweep a; python -m flossrepro sweep b"
    assert prov["started"] == "2026-01-01T00:00:00Z"
    assert prov["runs"] == 4 and prov["status"] == {"complete": 3, "failed": 1}
    assert prov["run_git_commits"] == ["0123456", "abc1234"]
    assert ",0123456," in (out / "runs.csv").read_text()  # runs.csv's text kept as it was
    assert prov["run_time_s_total"] == pytest.approx(26.5)
    assert prov["summary_metrics"] == ["dW_sv", "grad_W_norm", "train_loss"]
    assert prov["git_commit"] == "c0ffee2" and prov["scale"] == "paper" and "summary_note" not in prov
    assert prov["wall_s"] == "100; 50" and prov["full_tables"].count("part-*.parquet") == 2
    assert report[-1].endswith("(metrics.parquet: 776 rows, runs.csv: 4 runs)")


def test_query_keeps_rows_and_their_runs_and_is_named_in_the_provenance(a, b, tmp_path):
    out = tmp_path / "out"
    assert main([str(out), f"{a}::`init.g`.isin([0.9])::g=0.9 only", f"{b}::seed == 3"]) == 0
    m, runs, prov = read(out)
    assert set(m.loc[m["seed"] == 0, "init.g"]) == {0.9} and len(m) == 264 + 248
    # the failed run has no rows, so the query drops it from runs.csv too
    assert sorted(runs["run_id"]) == ["lr/paper/init.g=0.0,seed=3", "lr/paper/init.g=0.9"]
    assert prov["sweep_dir"] == ("multirun/lr/a [rows where `init.g`.isin([0.9])] (g=0.9 only); "
                                 "multirun/lr/b [rows where seed == 3]")
    assert prov["command"] == "python -m flossrepro sweep a (g=0.9 only); python -m flossrepro sweep b"
    assert prov["runs"] == 2 and prov["status"] == {"complete": 2}
    assert prov["run_time_s_total"] == pytest.approx(15.5)


def test_a_run_added_twice_is_refused_and_nothing_written(a, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(out), str(a), str(a)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "528 rows repeat others" in err
    assert "lr/paper/init.g=0.0" in err and "added twice" in err
    assert not out.exists()


def test_in_place_merge_into_a_source(a, b, tmp_path, capsys):
    (a / "runs.parquet").write_bytes(b"an older table's")
    assert main([str(a), str(a), str(b)]) == 0
    m, runs, prov = read(a)
    assert len(m) == 776 and len(runs) == 4 and not (a / "runs.parquet").exists()
    assert not [p for p in a.iterdir() if ".tmp" in p.name]
    before = snapshot(a)
    assert main([str(a), str(a), str(b)]) == 2  # b is in a now: refused, a as it was
    assert "added twice" in capsys.readouterr().err and snapshot(a) == before


def test_a_run_listed_twice_without_overlapping_rows_is_kept_once(a, b, tmp_path):
    c = tmp_path / "c"  # b, and an attempt of a's run g=0 that failed (no rows)
    c.mkdir()
    for f in ("metrics.parquet", "provenance.json"):
        (c / f).write_bytes((b / f).read_bytes())
    runs = pd.read_csv(b / "runs.csv", dtype=str)
    failed = runs.iloc[[1]].assign(run_id="lr/paper/init.g=0.0")
    pd.concat([failed, runs]).to_csv(c / "runs.csv", index=False)
    report = merge(tmp_path / "out", [str(c), str(a)])
    _, runs, prov = read(tmp_path / "out")
    assert len(runs) == 4 and prov["status"] == {"complete": 3, "failed": 1}
    assert runs.set_index("run_id").loc["lr/paper/init.g=0.0", "status"] == "complete"
    assert any("1 runs listed by several sources" in line for line in report)


def test_train_loss_every(a, b, tmp_path):
    out = tmp_path / "out"
    merge(out, [str(a), str(b)], train_loss_every=7)
    m, _, prov = read(out)
    tl = epochs_of(m, "train_loss")
    assert tl[("lr/paper/init.g=0.9", 1)] == {0, 7, 14, 20}
    assert tl[("lr/paper/init.g=0.0,seed=3", 0)] == {1, 7, 14, 17}  # its own first and last
    assert len(tl) == 6 and (m["metric"] == "dW_sv").sum() == 6 * 3 * N_SV
    assert (m["metric"] == "grad_W_norm").sum() == 4 * 21 + 2 * 17
    assert prov["summary_note"] == "train_loss kept every 7 epochs (and at each run's first and last)"


def test_sv_last(a, b, tmp_path):
    out = tmp_path / "out"
    merge(out, [str(a), str(b)], sv_last=True)
    m, _, prov = read(out)
    sv = m[m["metric"] == "dW_sv"]
    assert epochs_of(m, "dW_sv") == {**{(f"lr/paper/init.g={g}", k): {20} for g in (0.0, 0.9) for k in (0, 1)},
                                     **{("lr/paper/init.g=0.0,seed=3", k): {17} for k in (0, 1)}}
    assert len(sv) == 6 * N_SV and (m["metric"] == "train_loss").sum() == 4 * 21 + 2 * 17
    assert prov["summary_note"] == "dW_sv kept at each run's last epoch only"


def test_sv_top_alone(a, b, tmp_path):
    out = tmp_path / "out"
    merge(out, [str(a), str(b)], sv_top=5)
    m, _, prov = read(out)
    sv = m[m["metric"] == "dW_sv"]
    assert set(sv["index"]) == {1, 2, 3, 4, 5} and len(sv) == 6 * 3 * 5
    assert m.loc[m["metric"] != "dW_sv", "index"].isna().all() and len(m) - len(sv) == 2 * (4 * 21 + 2 * 17)
    assert prov["summary_note"] == "dW_sv: its top 5 values at every recorded epoch"


def test_sv_last_with_top(a, b, tmp_path):
    out = tmp_path / "out"
    merge(out, [str(a), str(b)], sv_last=True, sv_top=5)
    m, _, prov = read(out)
    sv = m[m["metric"] == "dW_sv"]
    last = sv["epoch"] == sv["run_id"].map(lambda r: 17 if "seed=3" in r else 20)
    assert sv.loc[last].groupby(["run_id", "member"]).size().eq(N_SV).all() and last.sum() == 6 * N_SV
    assert set(sv.loc[~last, "index"]) == {1, 2, 3, 4, 5} and (~last).sum() == 6 * 2 * 5
    assert prov["summary_note"] == "dW_sv kept whole at each run's last epoch, its top 5 values at every other epoch"


def test_drop_and_the_whole_sentence(a, b, tmp_path):
    out = tmp_path / "out"
    assert main([str(out), str(a), str(b), "--train-loss-every", "10", "--sv-last", "--drop", "grad_W_norm"]) == 0
    m, _, prov = read(out)
    assert set(m["metric"]) == {"train_loss", "dW_sv"} and prov["summary_metrics"] == ["dW_sv", "train_loss"]
    assert prov["summary_note"] == ("train_loss kept every 10 epochs (and at each run's first and last); "
                                    "dW_sv kept at each run's last epoch only; left out: grad_W_norm")


def test_sources_notes_are_kept(a, b, tmp_path):
    prov = json.loads((a / "provenance.json").read_text())
    (a / "provenance.json").write_text(json.dumps({**prov, "summary_note": "dW_sv: its top 25 values"}))
    out = tmp_path / "out"
    merge(out, [str(b), str(a)])
    assert read(out)[2]["summary_note"] == "dW_sv: its top 25 values"
    merge(tmp_path / "thin", [str(b), str(a)], train_loss_every=10)
    note = ("train_loss kept every 10 epochs (and at each run's first and last). "
            "Before this merge, a source's note said: dW_sv: its top 25 values")
    assert read(tmp_path / "thin")[2]["summary_note"] == note
    merge(tmp_path / "thin", [str(tmp_path / "thin")], train_loss_every=10)  # thinned again the same way
    assert read(tmp_path / "thin")[2]["summary_note"] == note


@pytest.mark.parametrize("args, says", [
    (["{tmp}/nope"], "nope: no such folder"),
    (["{tmp}/norun"], "no runs.csv"),
    (["{a}::`init.g` == 0.5"], "the query keeps no row"),
    (["{a}::no_such_column == 1"], "bad query"),
    (["{a}", "--train-loss-every", "0"], "--train-loss-every 0"),
    (["{a}", "--sv-top", "x"], "--sv-top"),
    (["{a}", "--drop", "grad_W_norm,eig_W_re"], "--drop eig_W_re: no source holds it"),
    (["{a}", "--drop", "train_loss,grad_W_norm,dW_sv"], "leaves no rows"),
])
def test_refused_in_one_line_nothing_written(a, tmp_path, capsys, args, says):
    (tmp_path / "norun").mkdir()
    (tmp_path / "norun" / "metrics.parquet").write_bytes((a / "metrics.parquet").read_bytes())
    (tmp_path / "norun" / "provenance.json").write_text("{}")
    out = tmp_path / "out"
    try:
        rc = main([str(out), *(s.format(tmp=tmp_path, a=a) for s in args)])
    except SystemExit as e:  # argparse's own refusals
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and says in err, err
    assert not out.exists()


def test_command_line_entry_point(a, b, tmp_path):
    p = subprocess.run([sys.executable, "-m", "flossrepro.merge", str(tmp_path / "out"), str(a), f"{b}::::seed 3",
                        "--sv-top", "3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "tables written to" in p.stdout
    prov = read(tmp_path / "out")[2]
    assert prov["sweep_dir"] == "multirun/lr/a; multirun/lr/b (seed 3)"
