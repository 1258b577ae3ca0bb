"""Collect a sweep: a runs table, and the summary table its figures need, queried in place.

``python -m flossrepro.aggregate SWEEP_DIR [--out DIR] [--metrics m1,m2|all]`` writes

- ``runs.parquet`` / ``runs.csv``: one row per run directory (status, error, timings, SLURM job
  id, git commit, table rows and parts, and the run's settings, stored once per run);
- ``metrics.parquet``: the summary table: the observation rows of the metrics that the
  figure modules reading this experiment declare (``flossrepro.figures.metrics_needed``;
  for a sweep no figure reads, every metric except the per-epoch training traces), joined
  with the run settings. This is what ``results/<experiment>/`` keeps in git.

The full tables stay in the run directories (``<run>/metrics/part-*.parquet``) and are
queried where they lie with DuckDB (:func:`connect` gives views ``observations`` and
``runs`` over a whole sweep), never concatenated in memory. Runs that failed, were lost,
are partial or unreadable are listed; an unreadable table part is named with the fix and
skipped, and the rest of the sweep still aggregates. A configuration that ran twice keeps
one result (the most advanced) and says so. Sweeps call this at their end
(:func:`flossrepro.run.sweep.finish`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from flossrepro.constants import DONE_STATUSES, METRICS_DIR
from flossrepro.store import rundir as RD
from flossrepro.store.summary import removed_on_failure
from flossrepro.store.tables import metric_specs, metrics_sql, part_files, part_problems

#: per-epoch traces left out of a summary table unless a figure asks for them
TRACES = ("train_loss", "train_accuracy", "grad_h0_norm", "grad_W_sv")
_MEMORY = "1GB"


def run_dirs(sweep_dir: str | Path) -> list[Path]:
    """Every run directory under ``sweep_dir``: one holding summary.json, run.json or .hydra/config.yaml."""
    sweep_dir = Path(sweep_dir)
    found = set()
    for pattern in ("summary.json", "run.json", ".hydra/config.yaml"):
        for p in sweep_dir.rglob(pattern):
            d = p.parent.parent if pattern.startswith(".hydra") else p.parent
            if METRICS_DIR in d.relative_to(sweep_dir).parts or "wandb" in d.relative_to(sweep_dir).parts:
                continue
            found.add(d)
    if sweep_dir in found and not (sweep_dir / "summary.json").exists():
        found.discard(sweep_dir)  # the sweep's own .hydra (multirun.yaml) is not a run
    return sorted(found)


def _check_parts(d: Path) -> tuple[list[Path], list[str], int]:
    """``(readable parts, errors, rows)``: each part's footer is read (a truncated file fails here)."""
    good, errors, rows = [], [], 0
    for p in part_files(d):
        try:
            rows += pq.read_metadata(p).num_rows
            good.append(p)
        except Exception as e:
            errors.append(f"{p}: unreadable table part ({type(e).__name__}: {str(e).strip()[:200]}); move it away "
                          f"(the run's other parts stay valid) or rerun the run into a fresh directory")
    return good, errors, rows


def collect_runs(sweep_dir: str | Path) -> tuple[pd.DataFrame, list[str], dict[str, list[Path]]]:
    """``(runs, report lines, parts by run path)`` for every run directory under ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    runs, report, parts, settings = [], [], {}, {}
    for d in run_dirs(sweep_dir):
        rel = str(d.relative_to(sweep_dir)) if d != sweep_dir else "."
        row: dict = {"path": rel}
        sp = d / "summary.json"
        if not sp.exists():
            row.update(status="lost", error="no summary.json: the job never started or was killed from outside")
            runs.append(row)
            continue
        try:
            s = json.loads(sp.read_text())
        except (OSError, ValueError) as e:
            row.update(status="unreadable", error=f"{sp} is unreadable ({type(e).__name__}); rerun the run "
                       f"(its checkpoint resumes it) or remove the directory")
            runs.append(row)
            continue
        st = RD.shown_status(d, s.get("status"))
        if st != s.get("status"):
            s["error"] = RD.STALE_NOTE
        row.update(run_id=s.get("run_id"), job=s.get("job"), status=st, error=s.get("error"),
                   epochs_done=s.get("epochs_done"), epochs=s.get("epochs"),
                   slurm_job_id=s.get("slurm_job_id"), git_commit=s.get("git_commit"), mtime=sp.stat().st_mtime)
        for k, v in (s.get("timings") or {}).items():
            row[f"time.{k}"] = v
        for k, v in (s.get("columns") or {}).items():
            row[k] = v
            settings[k] = None
        members = s.get("members") or []
        row["members_diverged"] = sum(m.get("status") == "diverged" for m in members)
        good, errors, nrows = _check_parts(d)
        row.update(table_parts=len(good), table_rows=nrows, table_errors=len(errors))
        lost = part_problems(d, s.get("table_parts"), s.get("table_part_rows"))
        row["table_parts_lost"] = len(lost)
        if lost:  # recorded parts missing, unreadable or shorter: the counts say so
            if row["status"] in DONE_STATUSES:
                row["status"] = "incomplete_tables"
            report.append(f"{rel}: tables incomplete: {'; '.join(lost)}; restore the parts, or rerun the run into a "
                          f"fresh directory to recompute them")
        report += errors
        parts[rel] = good
        runs.append(row)
    runs_df = pd.DataFrame(runs)
    if runs_df.empty:
        return runs_df, [f"no runs found under {sweep_dir}"], parts
    if "run_id" in runs_df:  # one result per configuration: the most advanced (finished first, then newest)
        order = runs_df.assign(_done=runs_df["status"].isin(DONE_STATUSES), _m=runs_df.get("mtime"))
        order = order.sort_values(["_done", "epochs_done", "_m"], ascending=False, na_position="last")
        dup = order["run_id"].notna() & order.duplicated("run_id", keep="first")
        for _, r in order[dup].iterrows():
            report.append(f"duplicate of {r['run_id']} in {r['path']} ignored (kept the most advanced result)")
        runs_df = order[~dup].drop(columns=["_done", "_m"]).sort_values("path").reset_index(drop=True)
    runs_df.attrs["settings"] = list(settings)  # the run-setting columns (stored once per run)
    counts = runs_df["status"].value_counts().to_dict()
    head = [f"{len(runs_df)} runs under {sweep_dir}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))]
    for _, r in runs_df.iterrows():
        if r["status"] not in DONE_STATUSES:
            extra = f": {r['error']}" if isinstance(r.get("error"), str) and r.get("error") else ""
            where = r.get("run_id") if isinstance(r.get("run_id"), str) else r["path"]
            head.append(f"{r['status']}: {where}{extra}")
        elif r.get("members_diverged"):
            head.append(f"{r['run_id']}: {int(r['members_diverged'])} member(s) diverged (recorded, stopped)")
    return runs_df, head + report, {p: parts.get(p, []) for p in runs_df["path"]}


def summary_metrics(experiments: list[str]) -> list[str] | None:
    """The metrics a sweep's summary table keeps: what its figures read (None: all but the traces)."""
    try:
        from flossrepro.figures import metrics_needed
    except ImportError:
        return None
    need: set[str] = set()
    for e in experiments:
        m = metrics_needed(e)
        if m is None:
            return None
        need |= set(m)
    return sorted(need) if need else None


def _duckdb():
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{_MEMORY}'")
    con.execute("SET threads=2")
    con.execute("SET preserve_insertion_order=false")
    return con


def _sql_list(xs) -> str:
    return ", ".join("'" + str(x).replace("'", "''") + "'" for x in xs)


def query(files: list[Path], metrics: list[str] | None, exclude: tuple[str, ...] = TRACES) -> tuple[pd.DataFrame, list[str]]:
    """Observation rows of ``metrics`` (None: all but ``exclude``; ``name[i:j]`` selects indices,
    see :func:`flossrepro.store.tables.metric_specs`) from table parts, read in place.

    A part that fails to read is skipped and named (the query is retried part by part)."""
    if not files:
        return pd.DataFrame(), []
    where = metrics_sql(metrics) if metrics else (
        f"metric NOT IN ({_sql_list(exclude)})" if exclude else "TRUE")
    con = _duckdb()
    sql = "SELECT run_id, member, epoch, metric, \"index\", value FROM read_parquet({}) WHERE " + where
    try:
        return con.execute(sql.format("[" + _sql_list(map(str, files)) + "]")).df(), []
    except Exception:
        frames, errors = [], []
        for f in files:
            try:
                frames.append(con.execute(sql.format("'" + str(f).replace("'", "''") + "'")).df())
            except Exception as e:
                errors.append(f"{f}: unreadable table part ({type(e).__name__}: {str(e).strip()[:200]}); move it "
                              f"away (the run's other parts stay valid) or rerun the run into a fresh directory")
        return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), errors


def collect(sweep_dir: str | Path, metrics: list[str] | None | str = "figures") -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(summary table, runs, report lines)`` of a sweep.

    ``metrics``: ``"figures"`` (what the experiment's figure modules read), a list, or None
    (every metric except the per-epoch traces)."""
    runs, report, parts = collect_runs(sweep_dir)
    if runs.empty or "run_id" not in runs:
        return pd.DataFrame(), runs, report
    if metrics == "figures":
        exps = sorted(runs["experiment_name"].dropna().unique().tolist()) if "experiment_name" in runs else []
        metrics = summary_metrics(exps)
    files = [f for p in runs["path"] for f in parts.get(p, [])]
    obs, errors = query(files, metrics)
    report += errors
    if obs.empty:
        return obs, runs, report
    obs["index"] = obs["index"].astype("Int64")
    settings = [c for c in runs.attrs.get("settings", []) if c in runs.columns and c not in ("run_id", "path")]
    keep = runs[runs["run_id"].notna()][["run_id", "path"] + settings]
    obs = obs.merge(keep, on="run_id", how="inner")
    return obs, runs, report


def connect(sweep_dir: str | Path):
    """A DuckDB connection with views ``observations`` (every table part of the sweep's kept runs,
    queried in place) and ``runs`` (the runs table)."""
    runs, _, parts = collect_runs(sweep_dir)
    con = _duckdb()
    con.register("runs_df", runs)
    con.execute("CREATE VIEW runs AS SELECT * FROM runs_df")
    files = [f for p in runs.get("path", []) for f in parts.get(p, [])]
    if files:
        con.execute(f"CREATE VIEW observations AS SELECT * FROM read_parquet([{_sql_list(map(str, files))}])")
    return con


def write(sweep_dir: str | Path, out_dir: str | Path | None = None,
          provenance: dict[str, str] | None = None, metrics: list[str] | None | str = "figures") -> list[str]:
    out = Path(out_dir or sweep_dir)
    summary, runs, report = collect(sweep_dir, metrics)
    out.mkdir(parents=True, exist_ok=True)
    if provenance is not None:
        from flossrepro.store.summary import git_commit
        prov = {"sweep_dir": str(sweep_dir), "git_commit": git_commit(), **provenance,
                "run_git_commits": sorted(runs["git_commit"].dropna().unique().tolist())
                if "git_commit" in runs else [],
                "runs": int(len(runs)), "status": runs["status"].value_counts().to_dict() if not runs.empty else {},
                "run_time_s_total": float(runs.filter(like="time.total_s").sum().sum()) if not runs.empty else 0.0,
                "full_tables": f"{sweep_dir}/<run>/{METRICS_DIR}/part-*.parquet "
                               f"({int(runs['table_rows'].sum()) if 'table_rows' in runs else 0} rows)",
                "summary_metrics": sorted(summary["metric"].unique().tolist()) if not summary.empty else []}
        (out / "provenance.json").write_text(json.dumps(prov, indent=2))
    stale = out / "metrics.parquet"
    if stale.exists():  # never a summary table of an earlier aggregate beside this runs.csv, even if writing fails
        stale.unlink()
        if summary.empty:
            report.append(f"{stale} removed: no summary rows this time (it was an earlier aggregate's)")
    if not runs.empty:
        runs.to_csv(out / "runs.csv", index=False)
        runs.astype({c: "string" for c in runs.columns if runs[c].dtype == object}).to_parquet(
            out / "runs.parquet", index=False, compression="zstd", compression_level=19)
    if not summary.empty:
        tmp = out / f".metrics.parquet.tmp{os.getpid()}"
        with removed_on_failure(tmp):
            summary.to_parquet(tmp, index=False, compression="zstd", compression_level=19)  # small in git
            os.replace(tmp, stale)
    report.append(f"tables written to {out} (metrics.parquet: {len(summary)} summary rows, runs.csv: {len(runs)} runs)")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flossrepro.aggregate", description=__doc__.split("\n")[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("--out", default=None, help="output folder (default: the sweep directory)")
    ap.add_argument("--metrics", default="figures",
                    help="metrics in the summary table: 'figures' (what the figures read; default), 'all' "
                         "(every metric but the per-epoch traces), or a comma list")
    ap.add_argument("--provenance", nargs="*", metavar="KEY=VALUE",
                    help="write provenance.json (command, scale, wall time, ...) beside the tables")
    a = ap.parse_args(argv)
    try:
        return _main(a)
    except KeyboardInterrupt:
        print(f"{PROG}: stopped (Ctrl-C); tables already in place are the earlier aggregate's; rerun "
              f"python -m flossrepro.aggregate {a.sweep_dir}", file=sys.stderr)
        return 130
    except _Refused as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{PROG}: error: {getattr(e, 'filename', None) or a.out or a.sweep_dir}: {e.strerror or e}; "
              f"check the folder (space, permissions) or give another one with --out", file=sys.stderr)
        return 1


PROG = "flossrepro.report.aggregate"


class _Refused(Exception):
    pass


def known_metrics(files: list[Path]) -> set[str]:
    """The metric names the table parts ``files`` hold."""
    if not files:
        return set()
    con = _duckdb()
    try:
        sql = f"SELECT DISTINCT metric FROM read_parquet([{_sql_list(map(str, files))}])"
        return set(con.execute(sql).df()["metric"].astype(str))
    except Exception:
        return set()


def _main(a) -> int:
    if not Path(a.sweep_dir).is_dir():
        raise _Refused(f"{a.sweep_dir} is not a directory; give a sweep directory (multirun/<experiment>/<scale>)")
    if a.out is not None and Path(a.out).exists() and not Path(a.out).is_dir():
        raise _Refused(f"--out {a.out} is a file; give a folder for the tables (it is made if missing)")
    if not run_dirs(a.sweep_dir):
        print(f"{PROG}: nothing to aggregate: no run directories (summary.json, run.json) under {a.sweep_dir}; "
              f"give a sweep directory (multirun/<experiment>/<scale>)", file=sys.stderr)
        return 1
    metrics = {"figures": "figures", "all": None}.get(a.metrics, [m for m in a.metrics.split(",") if m] or None)
    if isinstance(metrics, list):
        try:
            names = list(metric_specs(metrics))
        except ValueError as e:
            raise _Refused(f"--metrics: {e}") from None
        _, _, parts = collect_runs(a.sweep_dir)
        known = known_metrics([f for fs in parts.values() for f in fs])
        unknown = [m for m in names if m not in known]
        if unknown:
            raise _Refused(f"--metrics {','.join(unknown)}: no run under {a.sweep_dir} recorded "
                           f"{'it' if len(unknown) == 1 else 'them'}; known: {', '.join(sorted(known)) or 'none'} "
                           f"(or --metrics figures / all)")
    try:
        prov = None if a.provenance is None else dict(kv.split("=", 1) for kv in a.provenance)
    except ValueError:
        raise _Refused(f"--provenance {' '.join(a.provenance)}: write KEY=VALUE pairs") from None
    for line in write(a.sweep_dir, a.out, prov, metrics):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
