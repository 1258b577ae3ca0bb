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
setup of a job (config, model, run directory, first-call warm-up). LSTM and GRU networks, and the
low-rank study's rate networks (``rate``, ``rate_linear``), have coefficients of their own (fitted to
their measured points over N; a table without rate rows prices a rate network as tanh, and the
plan says so). A job whose N lies above the N its architecture was measured over is priced with the
same fitted law (the N^2 terms), and its note says ``extrapolated``. A task with ``seq_len: null``
(the low-rank study's trials) is priced at its own trial length. The SLURM launcher uses the per-job estimate with a margin as
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
EXTRAPOLATED = "extrapolated"   # the word a job's note starts its pricing beyond the measured N with
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
    notes = _notes(model, arch, N, train=bool(E), floss=bool(Ef or nl))
    th, _ = C.lyap_transients(int(f.horizon), f.transient_h, f.transient_q)
    s = 0.0
    if E:
        t = cfg.task
        T = int(t.seq_len) if t.seq_len is not None else int(C.build_task(cfg).seq_len)  # null: the trial's length
        s += E * model.train_s(N, int(t.batch_size), T, arch, R)
        if cfg.diagnostics.eval_every:
            s += (E // int(cfg.diagnostics.eval_every) + 2) * EVAL_SHARE * model.train_s(
                N, int(cfg.diagnostics.eval_batch_size), T, arch, R)
    if Ef:
        s += Ef * model.floss_s(N, min(int(f.k), N), int(f.horizon), int(f.s_ons), arch, th, R)
    if nl:
        d = cfg.diagnostics
        s += nl * LYAP_SHARE * model.floss_s(N, min(int(d.lyap_k), N), int(d.lyap_seq_len), 1, arch, 10, R)
    plan.seconds = STARTUP_S + s
    plan.note = "; ".join(notes)
    return plan


def _notes(model: CostModel, arch: str, N: int, train: bool, floss: bool) -> list[str]:
    """What the plan of a job of ``arch`` at ``N`` should say about its pricing: another
    architecture's coefficients, or N above the measured points (the fitted law extrapolated)."""
    out = []
    used = model.priced_as(arch)
    if used != arch and arch not in ("relu", "linear"):
        out.append(f"arch {arch}: no {arch} rows in the cost table, priced as {used} (re-measure table1)")
    beyond = []
    for kind, on, what in (("train", train, "training"), ("floss", floss, "flossing/Lyapunov")):
        sp = model.span(arch, kind)
        if on and sp is not None and N > sp[1]:
            beyond.append(f"{what} N <= {sp[1]}")
    if beyond:
        out.append(f"{EXTRAPOLATED}: N={N} above the measured {used} points ({', '.join(beyond)}), the fitted N^2 law")
    return out


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
        n_ext = sum(EXTRAPOLATED in p.note for p in known)
        longest = max(p.seconds for p in known)
        wall = max(longest, tot_s / max(1, n_jobs))
        L.append(f"[flossrepro]   total: {tot_ch:.3f} core-hours ({hours(tot_s)} of one core); "
                 f"wall with {n_jobs} job(s) side by side: about {hours(wall)}"
                 + ("" if len(known) == len(plans) else f"; {len(plans) - len(known)} job(s) not priced")
                 + (f"; {n_ext} job(s) {EXTRAPOLATED} beyond the measured N" if n_ext else ""))
    return "\n".join(L)


def slurm_time_limit_min(seconds: float, margin: float, pad_min: float) -> int:
    """A SLURM time limit (minutes) for a job estimated at ``seconds``: ``margin`` x estimate + pad."""
    return int(math.ceil(seconds / 60.0 * margin + pad_min))
