"""What a command will cost before it runs: ``flossrepro ... --plan`` (nothing is trained or made).

For every job the command means (one, or each job of a sweep) the planner counts networks
(ensemble members), training epochs, flossing epochs (episodes x ``flossing.epochs``) and
the Lyapunov and test evaluations of the diagnostics, and prices them with the cost model of
this machine's measured epochs (:class:`flossrepro.jobs.cost.CostModel`, fitted to the ``table1``
experiment: ``results/table1/metrics.parquet``, or the folder in ``FLOSSREPRO_COSTS``)::

    seconds = STARTUP_S + E * t_train(R) + E_f * t_floss(R) + n_lyap * LYAP_SHARE * t_lyap(R)
              + n_eval * EVAL_SHARE * t_eval(R)

``t_*(R)`` are the model's seconds per epoch of an ``R``-member ensemble on one thread: the
fitted per-step constant (op dispatch, shared by a batched ensemble) once, the size terms
``R`` times (:class:`flossrepro.jobs.cost.CostModel`). A Lyapunov evaluation is a forward pass of the spectrum, about
``LYAP_SHARE`` of a flossing epoch with the same k and length; a test evaluation about
``EVAL_SHARE`` of a training epoch with the evaluation batch. ``STARTUP_S`` is the fixed
setup of a job (config, model, run directory, first-call warm-up). LSTM and GRU networks have
coefficients of their own (fitted to their measured points over N). The SLURM launcher uses the per-job estimate with a margin as
the job's time limit (``hydra.launcher.time_from_plan``, see docs/slurm.md).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from flossrepro.store import config as C
from flossrepro.jobs.cost import CostModel, hours, load_model

__all__ = ["JobPlan", "estimate", "find_model", "format_plan", "slurm_time_limit_min"]

STARTUP_S = 4.0
LYAP_SHARE = 0.45
EVAL_SHARE = 0.35


@dataclass
class JobPlan:
    name: str
    networks: int
    train_epochs: int
    floss_epochs: int
    lyap_evals: int
    seconds: float | None
    threads: int = 1
    note: str = ""

    @property
    def core_hours(self) -> float | None:
        return None if self.seconds is None else self.seconds * self.threads / 3600.0


def find_model(results: str | Path | None = None) -> CostModel | None:
    """The cost model from ``results`` (or ``FLOSSREPRO_COSTS``), else ``./results``, else the
    package's own ``results/`` (a source checkout)."""
    cands = [results] if results else []
    if os.environ.get("FLOSSREPRO_COSTS"):
        cands.append(os.environ["FLOSSREPRO_COSTS"])
    cands += ["results", Path(__file__).resolve().parents[2] / "results"]
    for c in cands:
        m = load_model(c)
        if m is not None:
            return m
    return None


def _lyap_evals(cfg: DictConfig, train_epochs: int, episodes: int) -> int:
    d = cfg.diagnostics
    n = 2 * episodes
    if str(cfg.job.name) == "train" and d.lyap_every:
        n += train_epochs // int(d.lyap_every) + 2
    return n


def estimate(cfg: DictConfig, model: CostModel | None, name: str = "") -> JobPlan:
    """The plan of one composed job config."""
    kind = str(cfg.job.name) if "job" in cfg else "train"
    R = int(cfg.members)
    arch = str(cfg.arch.name)
    N = int(cfg.arch.n_hidden)
    f = cfg.flossing
    episodes = len(C.episode_starts(cfg)) if f.schedule != "none" else 0
    Ef = episodes * int(f.epochs)
    E = int(cfg.epochs) if kind == "train" else 0
    nl = _lyap_evals(cfg, E, episodes)
    plan = JobPlan(name, R, E, Ef, nl, None, int(cfg.threads))
    if kind == "cost":
        plan.note = "job=cost: its own grid (minutes; see results/table1/provenance.json)"
        return plan
    if model is None:
        plan.note = "no measured costs (run scripts/reproduce.sh table1 small)"
        return plan
    if not model.known(arch):
        plan.note = f"arch {arch}: not measured in the cost table"
        return plan
    th, _ = C.lyap_transients(int(f.horizon), f.transient_h, f.transient_q)
    s = 0.0
    if E:
        t = cfg.task
        s += E * model.train_s(N, int(t.batch_size), int(t.seq_len), arch, R)
        if cfg.diagnostics.eval_every:
            s += (E // int(cfg.diagnostics.eval_every) + 2) * EVAL_SHARE * model.train_s(
                N, int(cfg.diagnostics.eval_batch_size), int(t.seq_len), arch, R)
    if Ef:
        s += Ef * model.floss_s(N, min(int(f.k), N), int(f.horizon), int(f.s_ons), arch, th, R)
    if nl:
        d = cfg.diagnostics
        s += nl * LYAP_SHARE * model.floss_s(N, min(int(d.lyap_k), N), int(d.lyap_seq_len), 1, arch, 10, R)
    plan.seconds = STARTUP_S + s
    return plan


def format_plan(plans: list[JobPlan], source: str, n_jobs: int = 1) -> str:
    """The table the ``--plan`` option prints."""
    known = [p for p in plans if p.seconds is not None]
    tot_s = sum(p.seconds for p in known)
    tot_ch = sum(p.core_hours for p in known)
    nets = sum(p.networks for p in plans)
    L = [f"[flossrepro] plan: {len(plans)} job(s), {nets} networks, "
         f"{sum(p.networks * p.train_epochs for p in plans)} network training epochs, "
         f"{sum(p.networks * p.floss_epochs for p in plans)} network flossing epochs",
         f"[flossrepro]   cost model: {source or 'none'}"]
    w = max([len(p.name) for p in plans] + [3])
    L.append(f"[flossrepro]   {'job':<{w}}  {'nets':>5} {'train-ep':>8} {'floss-ep':>8} {'lyap':>5} {'estimate':>10} {'core-h':>8}")
    for p in plans:
        est = hours(p.seconds) if p.seconds is not None else "n/a"
        ch = f"{p.core_hours:.3f}" if p.core_hours is not None else "n/a"
        L.append(f"[flossrepro]   {p.name:<{w}}  {p.networks:>5} {p.train_epochs:>8} {p.floss_epochs:>8} "
                 f"{p.lyap_evals:>5} {est:>10} {ch:>8}" + (f"  {p.note}" if p.note else ""))
    if known:
        longest = max(p.seconds for p in known)
        wall = max(longest, tot_s / max(1, n_jobs))
        L.append(f"[flossrepro]   total: {tot_ch:.3f} core-hours ({hours(tot_s)} of one core); "
                 f"wall with {n_jobs} job(s) side by side: about {hours(wall)}"
                 + ("" if len(known) == len(plans) else f"; {len(plans) - len(known)} job(s) not priced"))
    return "\n".join(L)


def slurm_time_limit_min(seconds: float, margin: float, pad_min: float) -> int:
    """A SLURM time limit (minutes) for a job estimated at ``seconds``: ``margin`` x estimate + pad."""
    return int(math.ceil(seconds / 60.0 * margin + pad_min))


# ----------------------------------------------------------------------------- checking the model
def sweep_plans(overrides: list[str], model: CostModel | None) -> tuple[list[JobPlan], int]:
    """``(plans, n_jobs)`` of a command's jobs (``overrides`` as on the command line; a sweep when
    it is one), each plan named by its run id (``<experiment>/<scale>/<run dir leaf>``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from flossrepro.run import cli
    from flossrepro.store import rundir as RD
    from flossrepro.run import sweep as SW

    loader = cli._loader()
    probe = cli.compose(loader, overrides, True)
    if probe.hydra.mode != RunMode.MULTIRUN and "-m" not in overrides:
        cfgs, n_jobs = [cli.compose(loader, overrides, False)], 1
    else:
        ov = [o for o in overrides if o != "-m"]
        primary = cli.compose(loader, ov + ["hydra.mode=MULTIRUN"], True)
        cfgs = [loader.load_sweep_config(primary, list(job)) for job in SW.expand(loader, probe, ov)]
        n_jobs = int(OmegaConf.select(primary, "hydra.launcher.n_jobs", default=1) or 1)
    plans = []
    for cfg in cfgs:
        HydraConfig.instance().set_config(cfg)
        C.validate(cfg, dict(OmegaConf.select(cfg, "hydra.runtime.choices") or {}))
        rid = f"{cfg.experiment_name}/{cfg.scale.name}/{RD.leaf(cfg.hydra.job.override_dirname)}"
        plans.append(estimate(cfg, model, rid))
    return plans, n_jobs


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
    model = find_model(a.results)
    res = check(a.results, a.check, model)
    text = format_check(res)
    print(text)
    if a.out:
        Path(a.out).write_text("# Planner estimates against measured sweeps\n\n" + text + "\n")
        Path(a.out).with_suffix(".json").write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
