"""Planning a command: every job composed and checked, its cost estimated
(:mod:`flossrepro.run.estimate`), nothing made or run (``flossrepro ... --plan``); and
``python -m flossrepro.plan --check``: the estimates against the run times published sweeps recorded."""
from __future__ import annotations

import sys
from pathlib import Path

from flossrepro.errors import FlossreproError
from flossrepro.jobs.cost import CostModel, hours
from flossrepro.run.estimate import STARTUP_S, JobPlan, estimate, find_model
from flossrepro.store import config as C


# ----------------------------------------------------------------------------- checking the model
def sweep_plans(overrides: list[str], model: CostModel | None, multirun: bool = False,
                run_ids: bool = True) -> tuple[list[JobPlan], int]:
    """``(plans, n_jobs)`` of a command's jobs (``overrides`` as on the command line; a sweep when
    it is one), every job's settings checked. Each plan is named by its run id
    (``<experiment>/<scale>/<run dir leaf>``), or by its overrides with ``run_ids=False``."""
    from flossrepro.run import compose
    from flossrepro.store import limits
    from flossrepro.store import rundir as RD

    cmd = compose.job_configs(overrides, multirun)
    plans = []
    for job in cmd.jobs:
        cfg = job.cfg
        compose.job_dir(cfg, cmd.multirun)  # the Hydra config its interpolations read
        limits.check(cfg, resources=False)
        C.validate(cfg, compose.choices(cfg))
        rid = f"{cfg.experiment_name}/{cfg.scale.name}/{RD.leaf(cfg.hydra.job.override_dirname)}"
        plans.append(estimate(cfg, model, rid if run_ids else job.name))
    return plans, cmd.n_jobs


def check(results: str | Path, experiments: list[str], model: CostModel | None) -> dict:
    """Estimates against what the published sweeps of ``experiments`` measured: per run its
    ``time.total_s`` (``runs.csv``), per sweep the wall time and summed run time
    (``provenance.json``). Composes each sweep at the scale its provenance records."""
    import json

    import pandas as pd

    out = {"cost_model": model.source if model else None, "startup_s": STARTUP_S, "sweeps": {}}
    for exp in experiments:
        d = Path(results) / exp
        prov = json.loads((d / "provenance.json").read_text())
        runs = pd.read_csv(d / "runs.csv")
        plans, n_jobs = sweep_plans([f"+experiment={exp}", f"scale={prov.get('scale', 'small')}"], model)
        meas = dict(zip(runs["run_id"], runs.get("time.total_s", pd.Series(dtype=float))))
        rows = [{"run_id": p.name, "estimate_s": p.seconds, "measured_s": meas.get(p.name)} for p in plans]
        est_tot = sum(p.seconds or 0 for p in plans)
        longest = max((p.seconds or 0) for p in plans)
        out["sweeps"][exp] = {
            "scale": prov.get("scale"), "git_commit": prov.get("git_commit"), "started": prov.get("started"),
            "jobs": len(plans), "n_jobs": n_jobs, "runs": rows,
            "estimate_core_s": est_tot, "measured_run_s_total": prov.get("run_time_s_total"),
            "estimate_wall_s": max(longest, est_tot / n_jobs), "measured_wall_s": float(prov.get("wall_s", "nan"))}
    return out


def format_check(res: dict) -> str:
    L = [f"cost model: {res['cost_model']}; per-job startup {res['startup_s']:g} s", "",
         "| sweep | jobs | estimate, core time | measured, summed run time | ratio | estimate, wall | measured, wall | ratio |",
         "|---|---|---|---|---|---|---|---|"]
    for exp, s in res["sweeps"].items():
        rc = s["estimate_core_s"] / s["measured_run_s_total"] if s["measured_run_s_total"] else float("nan")
        rw = s["estimate_wall_s"] / s["measured_wall_s"] if s["measured_wall_s"] else float("nan")
        L.append(f"| {exp} ({s['scale']}, commit {str(s['git_commit'])[:7]}) | {s['jobs']} | {hours(s['estimate_core_s'])} | "
                 f"{hours(s['measured_run_s_total'] or float('nan'))} | {rc:.2f} | {hours(s['estimate_wall_s'])} | "
                 f"{hours(s['measured_wall_s'])} | {rw:.2f} |")
    L += ["", "| run | estimate | measured (time.total_s) | ratio |", "|---|---|---|---|"]
    for exp, s in res["sweeps"].items():
        for r in s["runs"]:
            e, m = r["estimate_s"], r["measured_s"]
            ratio = f"{e / m:.2f}" if e and m and m == m else "n/a"
            L.append(f"| {r['run_id']} | {hours(e) if e else 'n/a'} | {hours(m) if m and m == m else 'n/a'} | {ratio} |")
    return "\n".join(L)


def main(argv=None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m flossrepro.plan",
                                 description="Compare the planner's estimates with published sweeps (their runs.csv "
                                             "and provenance.json), or plan a command (flossrepro ... --plan).")
    ap.add_argument("--check", nargs="+", metavar="EXPERIMENT", required=True,
                    help="experiments whose published sweeps (<results>/<experiment>/) to compare")
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", default=None, help="write the comparison here (.md; a .json beside it)")
    a = ap.parse_args(argv)
    for exp in a.check:
        d = Path(a.results) / exp
        why = (f"{exp} is not an experiment; allowed: {', '.join(C.options('experiment'))}"
               if exp not in C.options("experiment") else
               f"{d} has no published sweep (provenance.json and runs.csv); run the sweep and aggregate it "
               f"into {d} first, or give the results folder with --results"
               if not ((d / "provenance.json").is_file() and (d / "runs.csv").is_file()) else None)
        if why:
            print(f"flossrepro.plan: error: --check {why}", file=sys.stderr)
            return 2
    model = find_model(a.results)
    try:
        res = check(a.results, a.check, model)
    except (FlossreproError, OSError, ValueError, KeyError) as e:
        print(f"flossrepro.plan: error: {' '.join(str(e).split())}; check the published sweeps under {a.results}",
              file=sys.stderr)
        return 2
    text = format_check(res)
    print(text)
    if a.out:
        Path(a.out).write_text("# Planner estimates against measured sweeps\n\n" + text + "\n")
        Path(a.out).with_suffix(".json").write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
