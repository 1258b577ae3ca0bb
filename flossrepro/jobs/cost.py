"""The cost of training and flossing epochs (paper Table 1), measured, and the model built on it.

Measurement (``job=cost``, :class:`CostJob`; the sweep ``conf/experiment/table1.yaml``): one
process times, on one thread, a training epoch (:func:`flossrepro.engine.flossing.train_step`) and a
flossing epoch (:func:`flossrepro.engine.flossing.floss_step`) with the same epoch functions
``make bench`` times (:func:`flossrepro.jobs.workload.engine_train_epoch`,
:func:`~flossrepro.jobs.workload.engine_floss_epoch`), one factor at a time around a base point:

- training: ``N``, batch ``B``, sequence length ``T``;
- flossing: ``N`` at fixed ``k``, ``N`` with ``k = N``, ``k`` at fixed ``N``, ``T_f``, ``s_ons``;
- per architecture (``job.archs``, over ``job.arch_N``): the training epoch and flossing epochs
  with ``k = base.k`` and ``k = 1`` (the planner fits each architecture to its own points);
- the low-rank study's rate networks (``rate``, ``rate_linear``; over ``job.train_N``, see
  :func:`rate_grid`): the training epoch as its jobs run it (flip-flop trials of 100 steps, batch
  1 and 32, Adam at lr 0.05 / N, no clipping; :func:`rate_train_epoch`) and flossing epochs of
  100 steps at k = 1, 16, 64 (:func:`rate_floss_epoch`), and the ensembles of ``job.ensemble_R``
  at ``job.arch_N_ensemble``.

Times are the thread's CPU time (``time.thread_time``: on a shared machine it leaves out the
time the thread waited for a core; the wall time is recorded beside it as ``costwall_*``).
Rows (one member, ``epoch`` = repeat): ``cost_<train|floss>_ms_<factor>_<value>`` (factor ``N``,
``B``, ``T``, ``k``, ``Tf``, ``sons``, ``NkN`` for ``k = N``; e.g. ``cost_floss_ms_k_32``), and
``cost_<train|floss|floss1>_ms_arch-<arch>_<N>`` (``floss1``: k = 1), the rate networks'
``cost_train_ms_rate-<arch>-B<B>_<N>``, ``cost_floss_ms_rate-<arch>-k<k>_<N>`` (k = min(k, N)) and
their ensembles ``cost_<train|floss>_ms_rateR-<arch>_<R>``; ``costpt_<kind>_<factor>_<value>``
holds each point's ``[N, B, T, k, T_f, s_ons, R]`` (``index`` 1..7). Times are milliseconds per
epoch; each timed epoch follows an untimed one (as in :func:`flossrepro.jobs.workload.time_round_robin`).

Cost model (:class:`CostModel`, used by the planner ``flossrepro ... --plan`` and the SLURM
launcher): seconds per epoch of an ``R``-member ensemble, training ``T (a0 + R (a1 + a2 N B +
a3 N^2 B + a4 N^2))`` and flossing ``T_f (b0 + R (b1 + b2 N^2)) + R T_q (b3 N^2 k + b4 N k^2 / s_ons)``
(``T_q = T_f - transient_h``; ``a0``, ``b0``: per-step costs the members of a batched ensemble
share; ``a4``, ``b2``: the pass over W each step whatever the batch, which dominates at batch 1),
least squares in relative error on the measured rows, coefficients >= 0, one set per
architecture (``job.ensemble_R`` measures the ensembles). The formula cannot follow the step in
the achieved rate where W leaves the core's L2 cache (N ~ 1024 in float32 on a 2 MiB L2: a rate
network's batch-1 training epoch takes 10x longer at N = 1024 than at 512, and the bare formula
falls 2.5x short there), so each estimate is anchored to the measured points nearest to it
(:meth:`CostModel.anchor`: the formula times the measured / fitted ratio there, weighted by
``exp(-d / ANCHOR_BW)`` over the log distance ``d`` between the points' coordinates); at a
measured point the estimate is within a few percent of its measured time. The model remembers the N each architecture
was measured over (:meth:`CostModel.span`): beyond it the formula extrapolates from the
largest points, and the planner says so.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flossrepro.engine.flossing import flossing_parameters
from flossrepro.engine.init import initialize
from flossrepro.engine.rate import RateRNN
from flossrepro.jobs import workload
from flossrepro.jobs.base import Job
from flossrepro.jobs.sinks import Progress
from flossrepro.store import config as C
from flossrepro.tasks.lowrank import FlipFlopTask

log = logging.getLogger("flossrepro")

__all__ = ["CostJob", "CostModel", "fit_exponent", "load_model", "FACTORS", "RATE_ARCHS", "rate_train_epoch",
           "rate_floss_epoch"]

#: factor -> (kind, the setting it varies, the paper's exponent: Table 1, then main text / SPEC)
FACTORS = {
    "train_N": ("train", "N", {"table1": 2.0}),
    "train_B": ("train", "B", {"table1": 1.0}),
    "train_T": ("train", "T", {"table1": 1.0}),
    "floss_N": ("floss", "N", {"table1": 2.0, "text": 1.0}),
    "floss_NkN": ("floss", "N (k = N)", {"table1": 3.0, "text": 3.0}),
    "floss_k": ("floss", "k", {"table1": 1.0, "text": 2.0}),
    "floss_Tf": ("floss", "T_f", {"table1": 1.0, "text": 1.0}),
    "floss_sons": ("floss", "s_ons", {}),   # Table 1: (1 + k/s_ons + k): a local slope, see table1.py
}


def fit_exponent(xs, ys) -> float:
    """Least-squares slope of ``log y`` on ``log x``."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / (lx * lx).sum())


class CostJob(Job):
    """Times training and flossing epochs over the grid of ``job`` (see the module docstring)."""

    unit = "point"
    ARCHS = ("tanh",)
    ARCHS_NOTE = "; it times tanh networks and the architectures of job.archs (e.g. job.archs=[tanh,lstm,gru])"
    training_epochs = 0

    @staticmethod
    def check_config(cfg) -> None:
        """``job=cost`` (Table 1), before any compute (called by :func:`flossrepro.store.config.validate`):
        what to measure, the grid's sizes, the architectures and the rate networks' grid."""
        from omegaconf import OmegaConf
        c = OmegaConf.to_container(cfg, resolve=True)
        need, dig = C._need, C._dig
        need(dig(c, "job.measure") in COST_MEASURE, "job.measure", dig(c, "job.measure"), "is not known",
             f"allowed: {', '.join(COST_MEASURE)}")
        C._int_at_least(c, "job.repeats", 1, "e.g. job.repeats=7")
        C._int_at_least(c, "job.arch_N_ensemble", 1, "e.g. job.arch_N_ensemble=32")
        C._int_at_least(c, "job.rate_T", 2, "e.g. job.rate_T=100")
        C._num(c, "job.budget_s", lo=0, lo_open=True, fix="e.g. job.budget_s=4.0")
        for k in COST_LISTS:
            v = dig(c, f"job.{k}")
            need(isinstance(v, list) and all(C._is_int(x) and x >= 1 for x in v), f"job.{k}", v,
                 "must be a list of integers >= 1", f"e.g. job.{k}=[16,32,64]")
        base = dig(c, "job.base")
        need(isinstance(base, dict), "job.base", base, "must be a mapping", "e.g. job.base.N=80")
        for k, v in base.items():
            need(C._is_int(v) and v >= 1, f"job.base.{k}", v, "must be an integer >= 1", f"e.g. job.base.{k}=16")
        th = 10
        need(min([base.get("T_f", 55), base.get("T_sons", 300)] + [x for x in dig(c, "job.floss_Tf")]) > th + 1,
             "job.floss_Tf", dig(c, "job.floss_Tf"), f"has a flossing horizon <= {th + 1} steps (the transients)",
             "give every T_f (and job.base.T_f, job.base.T_sons) > 11")
        for k, known in (("archs", ("tanh", "relu", "linear", "lstm", "gru")), ("rate_archs", tuple(RATE_ARCHS))):
            v = dig(c, f"job.{k}")
            need(isinstance(v, list) and all(a in known for a in v), f"job.{k}", v, "must name architectures",
                 f"allowed: {', '.join(known)} (an empty list: none)")

    def build_task(self):
        return None

    @property
    def starts(self) -> list[int]:
        return []

    def grid(self) -> list[tuple[str, str, dict]]:
        """``(kind, factor, value, epoch kwargs)`` of every point, in order."""
        j = self.cfg.job
        base = dict(j.base)
        pts = []
        kinds = {"both": ("train", "floss"), "train": ("train",), "floss": ("floss",)}[str(j.measure)]
        for N in j.train_N:
            pts.append(("train", "N", int(N), dict(N=int(N), B=base["B"], T=base["T"])))
        for B in j.train_B:
            pts.append(("train", "B", int(B), dict(N=base["N"], B=int(B), T=base["T"])))
        for T in j.train_T:
            pts.append(("train", "T", int(T), dict(N=base["N"], B=base["B"], T=int(T))))
        for N in j.floss_N:
            pts.append(("floss", "N", int(N), dict(N=int(N), k=min(base["k"], int(N)), T=base["T_f"])))
        for N in j.floss_NkN:
            pts.append(("floss", "NkN", int(N), dict(N=int(N), k=int(N), T=base["T_f"])))
        for k in j.floss_k:
            pts.append(("floss", "k", int(k), dict(N=base["N"], k=int(k), T=base["T_f"])))
        for Tf in j.floss_Tf:
            pts.append(("floss", "Tf", int(Tf), dict(N=base["N"], k=base["k"], T=int(Tf))))
        for s in j.floss_sons:
            pts.append(("floss", "sons", int(s), dict(N=base["N"], k=base["k_sons"], T=base["T_sons"], s_ons=int(s))))
        for R in j.ensemble_R:  # ensembles: members share the per-step op dispatch
            pts.append(("train", "R", int(R), dict(N=base["N"], B=base["B"], T=base["T"], R=int(R))))
            pts.append(("floss", "R", int(R), dict(N=base["N"], k=base["k"], T=base["T_f"], R=int(R))))
        for arch in j.archs:
            for R in j.ensemble_R:
                if int(R) > 1:
                    N = int(j.arch_N_ensemble)
                    pts.append(("train", f"archR-{arch}", int(R), dict(N=N, B=base["B"], T=base["T"], arch=arch, R=int(R))))
                    pts.append(("floss1", f"archR-{arch}", int(R), dict(N=N, k=1, T=base["T_sons"], arch=arch, R=int(R))))
            for N in j.arch_N:
                N = int(N)
                pts.append(("train", f"arch-{arch}", N, dict(N=N, B=base["B"], T=base["T"], arch=arch)))
                pts.append(("floss", f"arch-{arch}", N, dict(N=N, k=min(base["k"], N), T=base["T_f"], arch=arch)))
                pts.append(("floss1", f"arch-{arch}", N, dict(N=N, k=1, T=base["T_sons"], arch=arch)))
        pts += rate_grid(j, base)
        return [p for p in pts if p[0].rstrip("1") in kinds]

    def progress_total(self) -> tuple[int, int]:
        return len(self.grid()), self.epoch

    def loop(self, progress: Progress, fresh: bool) -> None:
        torch.set_num_threads(1)
        reps = int(self.cfg.job.repeats)
        pts = self.grid()
        budget = float(self.cfg.job.budget_s)
        while self.epoch < len(pts):
            kind, factor, value, kw = pts[self.epoch]
            args = dict(kw)
            if str(args.get("arch", "")) in RATE_ARCHS:
                make = rate_train_epoch if kind == "train" else rate_floss_epoch
            else:
                make = workload.engine_train_epoch if kind == "train" else workload.engine_floss_epoch
            fn = make(args.pop("R", 1), **args, device=self.device)
            fn()  # warm-up
            ts, walls, t_start = [], [], time.perf_counter()
            for i in range(reps):  # each timed epoch follows an untimed one (as in a training loop)
                fn()
                workload.sync(self.device)
                c0, t0 = time.thread_time(), time.perf_counter()
                fn()
                workload.sync(self.device)
                ts.append(1e3 * (time.thread_time() - c0))
                walls.append(1e3 * (time.perf_counter() - t0))
                if i + 1 >= 3 and time.perf_counter() - t_start > budget:
                    break
            metric = f"cost_{kind}_ms_{factor}_{value}"
            for i, (v, w) in enumerate(zip(ts, walls)):
                self.recorder.add(i, metric, [v])
                self.recorder.add(i, "costwall" + metric[4:], [w])
            self.recorder.add_vectors(0, f"costpt_{kind}_{factor}_{value}", [coords(kind, kw)])
            self.epoch += 1
            med = float(np.median(ts))
            progress.update(self.epoch, lambda: ({"point": metric, "ms": f"{med:.2f}"}, ""))
            self.check_stop()

    def final(self) -> dict[str, list[float]]:
        return {}


# ----------------------------------------------------------------------------- the rate networks
#: the low-rank study's rate networks (conf/arch/rate*.yaml) -> their nonlinearity
RATE_ARCHS = {"rate": "tanh", "rate_linear": "identity"}
RATE_DT = 0.5            # their Euler step (arch.dt)
COST_MEASURE = ("both", "train", "floss")
COST_LISTS = ("train_N", "train_B", "train_T", "floss_N", "floss_NkN", "floss_k", "floss_Tf", "floss_sons",
              "arch_N", "ensemble_R", "rate_N", "rate_B", "rate_k")


def rate_grid(j, base: dict) -> list[tuple]:
    """The rate networks' points (``conf/job/cost.yaml``): each of ``job.rate_archs`` over
    ``job.rate_N`` (the training grid's N, 32..1024 at paper and small scale, as the lr_*
    experiments), trained at each batch of ``job.rate_B`` (the linear study's 1, the trial tasks'
    32) and flossed at each ``k`` of ``job.rate_k`` (k = min(k, N), each once), trials of
    ``job.rate_T`` steps; the ensembles of ``job.ensemble_R`` at ``job.arch_N_ensemble`` (batch
    ``max(job.rate_B)``, ``k = base.k``)."""
    archs = [str(a) for a in j.rate_archs]
    T, Bs, ks = int(j.rate_T), [int(b) for b in j.rate_B], [int(k) for k in j.rate_k]
    pts = []
    for arch in archs:
        for N in map(int, j.rate_N):
            for B in Bs:
                pts.append(("train", f"rate-{arch}-B{B}", N, dict(N=N, B=B, T=T, arch=arch)))
            seen = set()
            for k in ks:
                if min(k, N) not in seen:
                    seen.add(min(k, N))
                    pts.append(("floss", f"rate-{arch}-k{k}", N, dict(N=N, k=min(k, N), T=T, arch=arch)))
        for R in map(int, j.ensemble_R):
            if R > 1:
                N = int(j.arch_N_ensemble)
                pts.append(("train", f"rateR-{arch}", R, dict(N=N, B=max(Bs), T=T, arch=arch, R=R)))
                pts.append(("floss", f"rateR-{arch}", R, dict(N=N, k=min(int(base["k"]), N), T=T, arch=arch, R=R)))
    return pts


def _rate_model(R: int, N: int, task, arch: str, device):
    m = RateRNN(R, N, task.n_in, task.n_out, nonlinearity=RATE_ARCHS[arch], dt=RATE_DT)
    initialize(m, list(range(R)))
    return m.to(device)


def rate_train_epoch(R: int = 1, N: int = 256, B: int = 32, T: int = 100, arch: str = "rate", device="cpu"):
    """One training epoch of a rate network as the low-rank study's jobs run it: a fresh batch of
    flip-flop trials (``T`` steps at dt = 0.5), forward, their masked MSE, backward through W, W_in
    and W_out, Adam at lr 0.05 / N, no clipping (:func:`flossrepro.engine.flossing.train_step`)."""
    device = torch.device(device)
    task = FlipFlopTask(seq_len=T, batch_size=B, dt=RATE_DT)
    model = _rate_model(R, N, task, arch, device)
    return workload.train_epoch_fn(model, task, R, 0.05 / N, None, device)


def rate_floss_epoch(R: int = 1, N: int = 256, k: int = 16, T: int = 100, arch: str = "rate", s_ons: int = 1,
                     device="cpu"):
    """One flossing epoch of a rate network (W and W_in trained; flip-flop inputs, batch 1, ``T``
    steps, default transients; :func:`flossrepro.engine.flossing.floss_step`)."""
    device = torch.device(device)
    task = FlipFlopTask(seq_len=T, batch_size=1, dt=RATE_DT)
    model = _rate_model(R, N, task, arch, device)
    return workload.floss_epoch_fn(model, task, R, k, T, s_ons, flossing_parameters(model, ("W", "V")), 1e-3, device)


def coords(kind: str, kw: dict) -> list[float]:
    """A point's ``[N, B, T, k, T_f, s_ons, R]`` (the entries its kind does not use are 0)."""
    if kind == "train":
        return [kw["N"], kw["B"], kw["T"], 0, 0, 0, kw.get("R", 1)]
    return [kw["N"], 1, 0, kw["k"], kw["T"], kw.get("s_ons", 1), kw.get("R", 1)]


# ----------------------------------------------------------------------------- the model
TRAIN_FEATURES = ("T", "R T", "R N B T", "R N^2 B T", "R N^2 T")
FLOSS_FEATURES = ("T_f", "R T_f", "R N^2 T_f", "R N^2 k T_q", "R N k^2 T_q / s_ons")


def train_features(N, B, T, R=1) -> np.ndarray:
    return np.array([T, R * T, R * N * B * T, R * N * N * B * T, R * N * N * T], float)


def floss_features(N, k, T_f, s_ons=1, transient_h=10, R=1) -> np.ndarray:
    Tq = max(T_f - transient_h, 1)
    return np.array([T_f, R * T_f, R * N * N * T_f, R * N * N * k * Tq, R * N * k * k * Tq / s_ons], float)


def _nnls_rel(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares in relative error (rows divided by ``y``) with coefficients >= 0 (active set:
    drop the most negative coefficient and refit)."""
    A = X / y[:, None]
    b = np.ones(len(y))
    keep = list(range(X.shape[1]))
    while keep:
        coef, *_ = np.linalg.lstsq(A[:, keep], b, rcond=None)
        if (coef >= 0).all():
            out = np.zeros(X.shape[1])
            out[keep] = coef
            return out
        keep.pop(int(np.argmin(coef)))
    return np.zeros(X.shape[1])


#: architectures priced with another's coefficients: relu and linear networks do the vanilla
#: network's work; a rate network (the same leaky loop in the same kernels) falls back to tanh
#: only when the table has no rate rows (the planner says so)
SAME_AS = {"relu": "tanh", "linear": "tanh", "identity": "tanh"}
FALLBACK = {"rate": "tanh", "rate_linear": "tanh"}


def arch_of(factor: str) -> str:
    """The architecture a point's factor measures (``arch-<a>``, ``archR-<a>``, ``rate-<a>-...``,
    ``rateR-<a>``; the one-factor grid: tanh)."""
    if factor.startswith(("arch-", "archR-")):
        return factor.split("-", 1)[1]
    if factor.startswith(("rate-", "rateR-")):
        return factor.split("-")[1]
    return "tanh"


ANCHOR_BW = 0.15   # log-distance scale of the anchoring (a factor 2 in one coordinate: weight e^-4.6)


@dataclass
class CostModel:
    """Seconds per epoch of one member (see the module docstring): ``coef[arch] = (train
    coefficients, flossing coefficients)``, each architecture fitted to its own points (tanh:
    the one-factor grid and its ``arch-tanh`` points; relu and linear use tanh's; the rate
    networks their ``rate-*`` points). ``spans[arch] = {"train": (N min, N max), "floss": ...}``:
    the N its points cover; ``anchors[arch] = {"train": (log1p coordinates [n, 7], log(measured /
    fitted) [n]), "floss": ...}`` (none: the bare formula)."""
    coef: dict
    source: str = ""
    transient_h: int = 10
    spans: dict = field(default_factory=dict)
    anchors: dict = field(default_factory=dict)

    def priced_as(self, arch: str) -> str | None:
        """The architecture whose coefficients price ``arch`` (None: none in the table)."""
        a = SAME_AS.get(arch, arch)
        if a in self.coef:
            return a
        a = FALLBACK.get(a)
        return a if a in self.coef else None

    def _c(self, arch: str):
        a = self.priced_as(arch)
        return None if a is None else self.coef[a]

    def anchor(self, arch: str, kind: str, point) -> float:
        """The factor on the formula at ``point`` (``[N, B, T, k, T_f, s_ons, R]``): the measured /
        fitted ratio of the ``kind`` points, averaged in log with weights ``exp(-(d - d_min) /
        ANCHOR_BW)``, ``d`` the L1 distance of ``log(1 + coordinates)`` (1 without anchors)."""
        a = self.anchors.get(self.priced_as(arch) or "", {}).get(kind)
        if a is None:
            return 1.0
        L, lr = a
        d = np.abs(L - np.log1p(np.asarray(point, float))).sum(1)
        w = np.exp(-(d - d.min()) / ANCHOR_BW)
        return float(np.exp((w * lr).sum() / w.sum()))

    def train_s(self, N, B, T, arch="tanh", R: int = 1) -> float:
        """Seconds per training epoch of an ``R``-member ensemble."""
        return float(self._c(arch)[0] @ train_features(N, B, T, R)) * self.anchor(
            arch, "train", coords("train", dict(N=N, B=B, T=T, R=R)))

    def floss_s(self, N, k, T_f, s_ons=1, arch="tanh", transient_h=None, R: int = 1) -> float:
        """Seconds per flossing epoch of an ``R``-member ensemble (``N``: hidden units; an LSTM's
        coefficients absorb its 2N state)."""
        th = self.transient_h if transient_h is None else transient_h
        return float(self._c(arch)[1] @ floss_features(N, k, T_f, s_ons, th, R)) * self.anchor(
            arch, "floss", coords("floss", dict(N=N, k=k, T=T_f, s_ons=s_ons, R=R)))

    def known(self, arch: str) -> bool:
        return self._c(arch) is not None

    def span(self, arch: str, kind: str) -> tuple[int, int] | None:
        """``(N min, N max)`` of the ``kind`` ("train" or "floss") points that price ``arch``."""
        a = self.priced_as(arch)
        return None if a is None else self.spans.get(a, {}).get(kind)

    @classmethod
    def fit(cls, df, source: str = "", anchored: bool = True) -> "CostModel":
        """From a table of ``cost_*`` rows (the aggregated ``table1`` table, or runs' rows);
        ``anchored=False``: the bare formula."""
        med, pts = medians(df), points(df)
        rows: dict = {}
        for key, t in med.items():
            kind, factor, _ = key
            c = pts.get(key)
            if c is None or not t > 0:
                continue
            c = (tuple(c) + (1,))[:7]
            rows.setdefault(arch_of(factor), {"train": [], "floss": []})[
                "train" if kind == "train" else "floss"].append((c, 1e-3 * t))
        coef, spans, anchors = {}, {}, {}
        feats = {"train": lambda c: train_features(c[0], c[1], c[2], c[6]),
                 "floss": lambda c: floss_features(c[0], c[3], c[4], c[5], 10, c[6])}
        for arch, by in rows.items():
            if not (by["train"] and by["floss"]):
                continue
            cs = []
            for kind in ("train", "floss"):
                X = np.array([feats[kind](c) for c, _ in by[kind]])
                y = np.array([t for _, t in by[kind]])
                cs.append(_nnls_rel(X, y))
                fitted = X @ cs[-1]
                ok = fitted > 0
                if anchored and ok.any():
                    L = np.log1p(np.array([c for c, _ in by[kind]], float))
                    anchors.setdefault(arch, {})[kind] = (L[ok], np.log(y[ok] / fitted[ok]))
                Ns = [c[0] for c, _ in by[kind]]
                spans.setdefault(arch, {})[kind] = (min(Ns), max(Ns))
            coef[arch] = tuple(cs)
        return cls(coef, source, spans=spans, anchors=anchors)


def parse_metric(metric: str) -> tuple[str, str, int] | None:
    """``cost_<kind>_ms_<factor>_<value>`` -> ``(kind, factor, value)`` (None for other metrics)."""
    if not metric.startswith("cost_") or "_ms_" not in metric:
        return None
    kind, rest = metric[len("cost_"):].split("_ms_", 1)
    factor, _, value = rest.rpartition("_")
    try:
        return kind, factor, int(value)
    except ValueError:
        return None


def medians(df) -> dict:
    """``{(kind, factor, value): median ms}`` over the repeats of each point in ``cost_*`` rows."""
    out = {}
    for metric, g in df[df["metric"].str.startswith("cost_")].groupby("metric"):
        key = parse_metric(metric)
        if key is not None:
            out[key] = float(np.median(g["value"].to_numpy(float)))
    return out


def points(df) -> dict:
    """``{(kind, factor, value): (N, B, T, k, T_f, s_ons, R)}`` from the ``costpt_*`` rows."""
    out = {}
    for metric, g in df[df["metric"].str.startswith("costpt_")].groupby("metric"):
        key = parse_metric("cost_" + metric[len("costpt_"):].replace("_", "_ms_", 1))
        if key is not None:
            v = g.sort_values("index")["value"].to_numpy(float)
            out[key] = tuple(int(round(x)) for x in v[:7])
    return out


def load_model(results: str | Path = "results") -> CostModel | None:
    """The cost model of the measured table ``<results>/table1/metrics.parquet`` (None when absent)."""
    import pandas as pd

    p = Path(results) / "table1" / "metrics.parquet"
    if not p.exists():
        return None
    df = pd.read_parquet(p)
    src = p
    prov = Path(results) / "table1" / "provenance.json"
    if prov.exists():
        import json
        try:
            pr = json.loads(prov.read_text())
            src = f"{p} (measured {pr.get('started', '?')}, commit {str(pr.get('git_commit', '?'))[:12]})"
        except (OSError, ValueError):
            pass
    return CostModel.fit(df, str(src))


def hours(s: float) -> str:
    return f"{s / 3600:.3g} h" if s >= 3600 else (f"{s / 60:.3g} min" if s >= 60 else f"{s:.3g} s")

