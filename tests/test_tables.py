"""The observation tables: parts appended per flush, resume drops only later parts, the
aggregator queries in place, keeps what the figures need and skips unreadable files."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from flossrepro.report import aggregate
from flossrepro.store.tables import Recorder, part_files, read_run


def _fill(rec: Recorder, epochs: range) -> list[tuple]:
    """Record a scalar and a vector metric per epoch; returns the expected rows."""
    R, rows = rec.R, []
    for e in epochs:
        v = torch.arange(R, dtype=torch.float32) + 0.5 * e
        rec.add(e, "loss", v)
        rows += [(r, e, "loss", None, float(v[r])) for r in range(R)]
        M = torch.arange(R * 3, dtype=torch.float64).reshape(R, 3) * e
        rec.add_vectors(e, "sv", M)
        rows += [(r, e, "sv", i + 1, float(M[r, i])) for r in range(R) for i in range(3)]
    return rows


def _as_rows(df: pd.DataFrame) -> list[tuple]:
    return [(int(r.member), int(r.epoch), r.metric, None if pd.isna(r.index) else int(r.index), float(r.value))
            for r in df.itertuples()]


def test_parts_hold_exactly_the_recorded_rows(tmp_path):
    rec = Recorder(tmp_path, "exp/run", 3)
    want = _fill(rec, range(0, 4))
    assert rec.flush().name == "part-00000.parquet"
    want += _fill(rec, range(4, 7))
    rec.flush()
    assert rec.flush() is None  # nothing buffered: no empty part
    assert [p.name for p in part_files(tmp_path)] == ["part-00000.parquet", "part-00001.parquet"]
    df = read_run(tmp_path)
    assert list(df.columns) == ["run_id", "member", "epoch", "metric", "index", "value"]
    assert set(df.run_id) == {"exp/run"}
    assert sorted(_as_rows(df), key=str) == sorted(want, key=str)
    assert rec.latest("loss") == [0.5 * 6 + r for r in range(3)]
    assert rec.latest("sv", 2) == [float((3 * r + 1) * 6) for r in range(3)]
    assert np.isnan(rec.latest("missing")).all()


def test_resume_drops_only_the_parts_written_after_the_checkpoint(tmp_path):
    rec = Recorder(tmp_path, "r", 2)
    _fill(rec, range(3))
    rec.flush()
    state = rec.state_dict()                    # the checkpoint after part 0
    _fill(rec, range(3, 5))
    rec.flush()                                 # part 1: written, then the process is killed
    (tmp_path / "metrics" / "part-00002.parquet.tmp").write_bytes(b"half a file")
    _fill(rec, range(5, 6))
    with pytest.raises(RuntimeError):
        rec.state_dict()                        # rows buffered: a checkpoint must flush first
    fresh = Recorder(tmp_path, "r", 2)
    dropped = fresh.load_state_dict(state)
    assert [p.name for p in dropped] == ["part-00001.parquet"]
    assert [p.name for p in part_files(tmp_path)] == ["part-00000.parquet"]
    assert not list((tmp_path / "metrics").glob("*.tmp"))
    assert read_run(tmp_path)["epoch"].max() == 2
    _fill(fresh, range(3, 5))
    assert fresh.flush().name == "part-00001.parquet"


def _fake_run(sweep, name: str, status="complete", delay=10, members=2):
    d = sweep / name
    rec = Recorder(d, f"exp/smoke/{name}", members)
    for e in range(0, 30, 10):
        rec.add(e, "test_accuracy", torch.full((members,), 0.5 + e / 100))
        rec.add(e, "train_loss", torch.ones(members))
    rec.flush()
    (d / "summary.json").write_text(json.dumps({
        "status": status, "run_id": f"exp/smoke/{name}", "epochs_done": 30, "epochs": 30,
        "columns": {"experiment_name": "exp", "scale.name": "smoke", "task.delay": delay, "seed": 0},
        "members": [{"member": r, "status": "ok"} for r in range(members)], "timings": {"total_s": 1.0}}))
    return d


def test_aggregate_joins_settings_once_per_run_and_filters_metrics(tmp_path):
    sweep = tmp_path / "sweep"
    _fake_run(sweep, "a", delay=10)
    _fake_run(sweep, "b", delay=20)
    summary, runs, report = aggregate.collect(sweep, metrics=["test_accuracy"])
    assert len(runs) == 2 and set(runs["table_rows"]) == {12}
    assert set(summary.metric) == {"test_accuracy"} and len(summary) == 12
    assert summary.groupby("run_id")["task.delay"].first().to_dict() == {"exp/smoke/a": 10, "exp/smoke/b": 20}
    allm, _, _ = aggregate.collect(sweep, metrics=None)   # default: all but the per-epoch traces
    assert "train_loss" not in set(allm.metric)
    con = aggregate.connect(sweep)
    assert con.execute("SELECT count(*) FROM observations").fetchone()[0] == 24
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


def test_aggregate_names_and_skips_corrupt_tables_and_summaries(tmp_path):
    sweep = tmp_path / "sweep"
    _fake_run(sweep, "good")
    bad = _fake_run(sweep, "truncated")
    part = part_files(bad)[0]
    part.write_bytes(part.read_bytes()[:40])                         # cut short
    unreadable = _fake_run(sweep, "summary")
    (unreadable / "summary.json").write_text("{not json")
    out = tmp_path / "out"
    lines = aggregate.write(sweep, out, metrics=["test_accuracy"])
    text = "\n".join(lines)
    assert str(part) in text and "move it away" in text
    assert "unreadable: " in text and "summary.json" in text
    summary = pd.read_parquet(out / "metrics.parquet")
    assert set(summary.run_id) == {"exp/smoke/good"}
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs.status) == {"complete", "unreadable"}
    assert int(runs.loc[runs.path == "truncated", "table_errors"].iloc[0]) == 1


def test_bench_tables_writes_and_aggregates_a_small_synthetic_sweep(tmp_path):
    from flossrepro.perf import table_bench as bench_tables

    out = tmp_path / "res.json"
    assert bench_tables.main(["--runs", "3", "--members", "2", "--epochs", "1000", "--dir", str(tmp_path),
                              "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    # per member: 2 traces x 1000 + dh0 x 100 + dL/dW sv 5 x 80 + test 10 x 2 + lyap/dW at 1000
    # + 5 episodes (500 epochs x 2 + 2 x 75 exponents)
    per_member = 2000 + 100 + 400 + 20 + (75 + 80 + 6) + 5 * (1000 + 150)
    assert res["rows"] == 3 * 2 * per_member
    assert res["summary_rows"] > 0 and (tmp_path / "aggregated" / "runs.csv").exists()


def test_metric_selections_pick_indices_and_epoch_blocks():
    from flossrepro.store.tables import metric_specs, select_metrics

    df = pd.DataFrame({"metric": ["a"] * 20 + ["s"] * 6, "epoch": list(range(20)) + [0, 0, 0, 5, 5, 5],
                       "index": pd.array([None] * 20 + [1, 2, 3, 1, 2, 3], dtype="Int64"), "value": 0.0})
    assert list(select_metrics(df, ["a@10"]).epoch) == [0, 9, 10, 19]   # first and last of each block of 10
    assert list(select_metrics(df, ["s[2:3]"])["index"]) == [2, 3, 2, 3]
    assert len(select_metrics(df, ["a@10", "a"])) == 20                   # the wider selection wins
    assert metric_specs(["s[1]", "s[3]"]) == {"s": (((1, 1), (3, 3)), None)}   # the union of the indices
    assert list(select_metrics(df, ["s[1]", "s[3]"])["index"]) == [1, 3, 1, 3]
    assert metric_specs(["s[1:2]", "s[3]", "s[7]"]) == {"s": (((1, 3), (7, 7)), None)}
    assert metric_specs(["s[1]", "s"]) == {"s": (None, None)}
    with pytest.raises(ValueError, match="not 'name'"):
        metric_specs(["a[x]"])
    # the aggregator's SQL keeps the same rows as the pandas filter
    import duckdb

    from flossrepro.store.tables import metrics_sql
    con = duckdb.connect()
    con.register("t", df)
    for spec in (["a@10"], ["s[2:3]"], ["a@10", "s[1]"], ["s[1]", "s[3]"]):
        got = con.execute(f"SELECT metric, epoch, \"index\" FROM t WHERE {metrics_sql(spec)} ORDER BY ALL").df()
        want = select_metrics(df, spec)[["metric", "epoch", "index"]].sort_values(["metric", "epoch", "index"])
        assert got.values.tolist() == want.values.tolist(), spec
