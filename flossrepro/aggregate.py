"""Collect every run under a sweep directory into one table per experiment.

``python -m flossrepro.aggregate SWEEP_DIR [--out DIR]`` writes ``metrics.parquet`` (all
runs' tidy rows) and ``runs.csv``/``runs.parquet`` (one row per run: status, timings,
SLURM job id, error, settings) and prints which runs failed, are partial, or were lost.
A configuration that ran twice keeps one result (the most advanced) and says so.
Multiruns call it at their end (a Hydra callback), writing into the sweep directory.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback

DONE = ("complete", "complete_partial", "diverged")


def collect(sweep_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Returns ``(metrics, runs, report_lines)`` for every run directory under ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    runs, frames, report = [], [], []
    run_dirs = sorted({p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")})
    for d in run_dirs:
        if d == sweep_dir and not (d / "summary.json").exists():
            continue
        row = {"path": str(d.relative_to(sweep_dir)) if d != sweep_dir else "."}
        sp = d / "summary.json"
        if not sp.exists():
            row.update(status="lost", error="no summary.json: the job never started or was killed from outside")
            runs.append(row)
            continue
        s = json.loads(sp.read_text())
        row.update(run_id=s.get("run_id"), status=s.get("status"), error=s.get("error"),
                   epochs_done=s.get("epochs_done"), epochs=s.get("epochs"),
                   slurm_job_id=s.get("slurm_job_id"), git_commit=s.get("git_commit"),
                   mtime=sp.stat().st_mtime)
        for k, v in (s.get("timings") or {}).items():
            row[f"time.{k}"] = v
        for k, v in (s.get("columns") or {}).items():
            row[k] = v
        members = s.get("members") or []
        row["members_diverged"] = sum(m.get("status") == "diverged" for m in members)
        mp = d / "metrics.parquet"
        if mp.exists():
            df = pd.read_parquet(mp)
            df["path"] = row["path"]
            frames.append(df)
        runs.append(row)
    runs_df = pd.DataFrame(runs)
    if runs_df.empty:
        return pd.DataFrame(), runs_df, [f"no runs found under {sweep_dir}"]
    # one result per configuration: the most advanced (complete first, then newest)
    if "run_id" in runs_df:
        order = runs_df.assign(_done=runs_df["status"].isin(DONE), _m=runs_df.get("mtime"))
        order = order.sort_values(["_done", "epochs_done", "_m"], ascending=False, na_position="last")
        dup = order[order["run_id"].notna() & order.duplicated("run_id", keep="first")]
        for _, r in dup.iterrows():
            report.append(f"duplicate of {r['run_id']} in {r['path']} ignored (kept the most advanced result)")
        keep = order[~(order["run_id"].notna() & order.duplicated("run_id", keep="first"))]
        runs_df = keep.drop(columns=["_done", "_m"]).sort_values("path").reset_index(drop=True)
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not metrics.empty:
        metrics = metrics[metrics["path"].isin(runs_df["path"])].reset_index(drop=True)
    counts = runs_df["status"].value_counts().to_dict()
    report.insert(0, f"{len(runs_df)} runs under {sweep_dir}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for _, r in runs_df.iterrows():
        if r["status"] not in DONE:
            extra = f": {r['error']}" if isinstance(r.get("error"), str) and r.get("error") else ""
            where = r.get("run_id") if isinstance(r.get("run_id"), str) else r["path"]
            report.append(f"{r['status']}: {where}{extra}")
        elif r.get("members_diverged"):
            report.append(f"{r['run_id']}: {int(r['members_diverged'])} member(s) diverged (recorded, stopped)")
    return metrics, runs_df, report


def write(sweep_dir: str | Path, out_dir: str | Path | None = None,
          provenance: dict[str, str] | None = None) -> list[str]:
    out = Path(out_dir or sweep_dir)
    metrics, runs, report = collect(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    if provenance is not None:
        from .trainer import git_commit
        prov = {"sweep_dir": str(sweep_dir), "git_commit": git_commit(), **provenance,
                "run_git_commits": sorted(runs["git_commit"].dropna().unique().tolist())
                if "git_commit" in runs else [],
                "runs": int(len(runs)), "status": runs["status"].value_counts().to_dict() if not runs.empty else {},
                "run_time_s_total": float(runs.filter(like="time.total_s").sum().sum()) if not runs.empty else 0.0}
        (out / "provenance.json").write_text(json.dumps(prov, indent=2))
    if not runs.empty:
        runs.to_csv(out / "runs.csv", index=False)
        runs.astype({c: "string" for c in runs.columns if runs[c].dtype == object}).to_parquet(out / "runs.parquet", index=False)
    if not metrics.empty:
        metrics.to_parquet(out / "metrics.parquet", index=False)
    report.append(f"tables written to {out} (metrics.parquet: {len(metrics)} rows, runs.csv: {len(runs)} runs)")
    return report


class AggregateOnMultirunEnd(Callback):
    """Hydra callback: aggregate the sweep directory when a multirun ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        for line in write(config.hydra.sweep.dir):
            print(f"[flossrepro.aggregate] {line}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flossrepro.aggregate", description=__doc__.split("\n")[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("--out", default=None, help="output folder (default: the sweep directory)")
    ap.add_argument("--provenance", nargs="*", metavar="KEY=VALUE",
                    help="write provenance.json (command, scale, wall time, ...) beside the tables")
    a = ap.parse_args(argv)
    if not Path(a.sweep_dir).is_dir():
        print(f"flossrepro.aggregate: error: {a.sweep_dir} is not a directory; give a sweep directory "
              f"(multirun/<experiment>/<scale>)", file=sys.stderr)
        return 2
    prov = None if a.provenance is None else dict(kv.split("=", 1) for kv in a.provenance)
    for line in write(a.sweep_dir, a.out, prov):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
