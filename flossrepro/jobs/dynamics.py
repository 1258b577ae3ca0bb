"""Analyses of the forward dynamics that train nothing on a task (jobs, see :mod:`flossrepro.jobs.base`).

``job=condition`` (:class:`ConditionJob`, Fig 2): the condition number ``kappa_2(T_t Q_m)`` of
the long-term Jacobian of each network along one input sequence (the task's inputs, batch
1), measured before and after one flossing episode of ``flossing.epochs`` steps on
``flossing.k`` exponents (none with ``flossing=none``). Per phase (``before``, ``after``) it
records, as ``log10 kappa_2`` with ``epoch`` = the horizon ``t`` in steps and ``index`` = the
size ``m`` of the orthonormal system:

- ``log10_kappa_<phase>``: float64 forward-backward QR iteration
  (:func:`flossrepro.engine.condition.log_singular_values`), at every horizon of the grid
  (``job.horizon_step`` .. ``job.horizon``) for ``m = job.m``, and at ``t = job.t_m`` for every
  ``m`` of ``job.ms``;
- ``log10_kappa_hp_<phase>``: the explicit product at ``job.precision_bits`` bits and its SVD
  (:func:`flossrepro.engine.condition.log10_kappa_highprec`), at the same horizons for ``m = job.m``
  (``job.high_precision: false`` skips it); ``kappa_hp_limit`` (epoch 0) is the largest
  ``log10 kappa`` that precision resolves: values above it are floors, not measurements;
- the full Lyapunov spectra ``lyap_before_floss`` / ``lyap_after_floss`` (``diagnostics.lyap_k``
  exponents over ``diagnostics.lyap_seq_len`` steps), from which Eq 10 predicts
  ``log10 kappa = (lambda_1 - lambda_m) t / ln 10``.

The input sequence (stream ``kappa``) and the orthonormal system ``Q_m`` (the first ``m``
columns of one random orthogonal matrix per network, stream ``kappa_q``) are the same before
and after flossing. The trajectory starts at the network's relaxed initial state and runs
``job.transient`` steps before ``tau``.

``job=convergence`` (:class:`ConvergenceJob`, Fig 16): one network (member 0's draw) copied into
every member; each member starts from its own initial state ``h0 ~ N(0, job.h0_std^2)`` and
its own random orthonormal system, and runs the QR method with a QR every step and no
transient for ``job.steps`` steps, driven by Gaussian inputs x ~ N(0, 1) (the same sequence for
every member with ``job.shared_input: true``, one per member otherwise). ``lyap_trace`` rows:
``epoch`` = simulation time t (steps), ``index`` = i in ``job.indices``, value = the running
estimate of lambda_i after t steps, at ``job.records`` log-spaced times (``job.indices: null``:
i = 1, N/4, 3N/4, N).
"""
from __future__ import annotations

import logging
import time

import torch

from flossrepro.engine import condition as K
from flossrepro.jobs.floss import FlossJob
from flossrepro.errors import ConfigError
from flossrepro.jobs.base import Job
from flossrepro.engine.models import VanillaRNN
from flossrepro.jobs.sinks import Progress
from flossrepro.tasks.paper import member_generators

__all__ = ["ConditionJob", "ConvergenceJob", "default_ms", "default_indices"]

log = logging.getLogger("flossrepro")

_MS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80)


def default_ms(n: int) -> list[int]:
    """The default grid of tangent-system sizes m for ``n`` state dimensions."""
    return sorted({m for m in _MS if m <= n} | {n})


def default_indices(n: int) -> list[int]:
    """The exponents Fig 16 follows, scaled to ``n`` dimensions: 1, n/4, 3n/4, n (1, 20, 60, 80 at n = 80)."""
    return sorted({1, max(1, n // 4), max(1, 3 * n // 4), n})


def _need_vanilla(cfg, kind: str) -> None:
    if cfg.arch.nonlinearity not in ("tanh", "relu", "identity"):  # other archs: the job's ARCHS (store.limits)
        raise ConfigError(f"arch={cfg.arch.name} but job={kind} needs a vanilla RNN (its Jacobian W diag(phi')); "
                          f"pick arch=tanh, relu or linear")


def _int(cfg, key: str, lo: int, hi: int | None = None, fix: str = "", null: bool = False):
    v = cfg.job.get(key)
    if null and v is None:
        return None
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
    if not ok:
        rng = f"{lo} <= job.{key} <= {hi}" if hi is not None else f"job.{key} >= {lo}"
        raise ConfigError(f"job.{key}={v} must be an integer with {rng}{' or null' if null else ''}; "
                          f"{fix or f'e.g. job.{key}={lo}'}")
    return v


def _orthogonal(gens: list[torch.Generator], n: int) -> torch.Tensor:
    """One random orthogonal ``n x n`` matrix per generator, ``[R, n, n]`` float64 (Haar)."""
    out = []
    for g in gens:
        q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        out.append(q * torch.sign(torch.diagonal(r)))
    return torch.stack(out)


class ConditionJob(FlossJob):
    """Condition number of the long-term Jacobian before and after flossing (see the module docstring)."""

    _STATE = FlossJob._STATE + ("measured",)
    ARCHS = ("linear", "relu", "tanh")         # its Jacobian W diag(phi'): the paper's vanilla RNN
    NEEDS_FLOSSING = False        # flossing=none: the condition numbers of the initial networks only

    @staticmethod
    def check_config(cfg) -> None:
        """The job's own settings, before any compute (called by :func:`flossrepro.store.config.validate`)."""
        _need_vanilla(cfg, "condition")
        N = int(cfg.arch.n_hidden)
        T = _int(cfg, "horizon", 1, fix="e.g. job.horizon=500")
        _int(cfg, "horizon_step", 1, T, fix=f"the horizons are horizon_step, 2 horizon_step, .. up to job.horizon={T}")
        _int(cfg, "m", 1, N, fix=f"the orthonormal system is N x m with N = arch.n_hidden = {N}; lower job.m")
        _int(cfg, "t_m", 1, T, fix=f"the horizon of the kappa-vs-m curve must lie within job.horizon={T}", null=True)
        _int(cfg, "transient", 0, fix="e.g. job.transient=100")
        _int(cfg, "precision_bits", 53, fix="e.g. job.precision_bits=256 (the paper's)")
        _int(cfg, "max_passes", 1, fix="e.g. job.max_passes=60")
        tol = cfg.job.get("tol")
        if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and 0 < tol < 1):
            raise ConfigError(f"job.tol={tol} must be a number in (0, 1) (log10 kappa between passes); e.g. job.tol=1e-8")
        ms = cfg.job.get("ms")
        if ms is not None:
            ms = list(ms)
            if not ms or not all(isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= N for m in ms):
                raise ConfigError(f"job.ms={ms} must be a non-empty list of integers in 1..{N} (N = arch.n_hidden), "
                                  f"or null for the default grid; e.g. job.ms=[1,5,10,{N}]")
        if not isinstance(cfg.job.get("high_precision"), bool):
            raise ConfigError(f"job.high_precision={cfg.job.get('high_precision')} must be true or false")

    def fresh_state(self) -> None:
        super().fresh_state()
        self.measured: list[str] = []

    @property
    def starts(self) -> list[int]:
        return [] if self.cfg.flossing.schedule == "none" else [0]

    def progress_total(self) -> tuple[int, int]:
        return (int(self.cfg.flossing.epochs) if self.starts else 0), self.floss_epoch

    # -- grids --------------------------------------------------------------------------
    @property
    def horizons(self) -> list[int]:
        j = self.cfg.job
        return list(range(int(j.horizon_step), int(j.horizon) + 1, int(j.horizon_step)))

    @property
    def ms(self) -> list[int]:
        j = self.cfg.job
        return sorted({int(m) for m in j.ms}) if j.ms is not None else default_ms(self.model.state_dim)

    @property
    def t_m(self) -> int:
        j = self.cfg.job
        return int(j.horizon) if j.t_m is None else int(j.t_m)

    # -- the work ---------------------------------------------------------------------
    def loop(self, progress: Progress, fresh: bool) -> None:
        if "before" not in self.measured:
            self.measure("before")
        if self.starts:
            super().loop(progress, fresh)          # the episode: lyap_before_floss, floss_*, lyap_after_floss
            if "after" not in self.measured and self.alive.any():
                self.measure("after")
        elif "lyap" not in self.measured:
            self.diag.lyapunov(0, "lyap_before_floss")
            self.measured.append("lyap")

    def measure(self, phase: str) -> None:
        """Record every condition number of ``phase`` (see the module docstring), then checkpoint."""
        t0 = time.perf_counter()
        j = self.cfg.job
        N, T, trans = self.model.state_dim, int(j.horizon), int(j.transient)
        x = self.inputs(member_generators(self.seeds, "kappa"), trans + T)
        Qfull = _orthogonal(member_generators(self.seeds, "kappa_q"), N)
        W, dphi = K.jacobian_factors(self.model, x, self.model.h0, trans, T)
        bad = ~(torch.isfinite(dphi).flatten(1).all(1) & torch.isfinite(W).flatten(1).all(1))
        self.kill(bad, self.epoch, "non-finite Jacobian")
        kw = dict(max_passes=int(j.max_passes), tol=float(j.tol))
        m = int(j.m)
        X, most, last = None, 0, None
        for t in self.horizons:   # kappa vs horizon; the right singular vectors of a horizon start the next
            ls, X, passes = K.log_singular_values(W, dphi[:, :t], Qfull[:, :, :m], X0=X, **kw)
            most, last = max(most, passes), K.log10_kappa(ls)
            self.recorder.add_vectors(t, f"log10_kappa_{phase}", last[:, None], index=[m])
        # kappa vs m at t_m (the point (t_m, m) of the horizon curve is recorded once, above)
        ms = [mm for mm in self.ms if not (mm == m and self.t_m in self.horizons)]
        vals = []
        for mm in ms:
            ls, _, passes = K.log_singular_values(W, dphi[:, :self.t_m], Qfull[:, :, :mm], **kw)
            most = max(most, passes)
            vals.append(K.log10_kappa(ls))
        if ms:
            self.recorder.add_vectors(self.t_m, f"log10_kappa_{phase}", torch.stack(vals, 1), index=ms)
        if most >= int(j.max_passes):
            log.warning("condition number (%s): the QR iteration hit job.max_passes=%d before log10 kappa settled "
                        "to job.tol=%g; raise job.max_passes", phase, most, float(j.tol))
        if bool(j.high_precision):
            bits = int(j.precision_bits)
            hp, _ = K.log10_kappa_highprec(W, dphi, Qfull[:, :, :m], self.horizons, bits)
            for i, t in enumerate(self.horizons):
                self.recorder.add_vectors(t, f"log10_kappa_hp_{phase}", hp[:, i:i + 1], index=[m])
            if phase == "before":
                self.recorder.add(0, "kappa_hp_limit", [K.highprec_limit(bits)] * self.R)
        self.timings["diagnostics_s"] += time.perf_counter() - t0
        log.info("condition numbers %s flossing: log10 kappa(t=%d, m=%d) = [%s] (%.1f s)", phase, self.horizons[-1],
                 m, ", ".join(f"{v:.2f}" for v in last.tolist()), time.perf_counter() - t0)
        self.measured.append(phase)
        self.checkpoint()

    def final(self) -> dict[str, list[float]]:
        """lambda_1 and the flossing loss (the condition numbers are in the tables)."""
        return super().final()


class ConvergenceJob(Job):
    """Running Lyapunov estimates from several initial conditions of one network (see the module docstring)."""

    unit = "step"
    _STATE = Job._STATE + ("done",)
    ARCHS = ("linear", "relu", "tanh")         # its Jacobian W diag(phi'): the paper's vanilla RNN
    training_epochs = 0

    @staticmethod
    def check_config(cfg) -> None:
        _need_vanilla(cfg, "convergence")
        N = int(cfg.arch.n_hidden)
        _int(cfg, "steps", 1, fix="e.g. job.steps=10000")
        _int(cfg, "records", 2, fix="e.g. job.records=40")
        idx = cfg.job.get("indices")
        if idx is None:
            idx = default_indices(N)
        idx = list(idx)
        if not idx or not all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= N for i in idx):
            raise ConfigError(f"job.indices={idx} must be a non-empty list of exponent indices in 1..{N} "
                              f"(N = arch.n_hidden), or null for 1, N/4, 3N/4, N; e.g. job.indices=[1,{N}]")
        h = cfg.job.get("h0_std")
        if not (isinstance(h, (int, float)) and not isinstance(h, bool) and h >= 0 and h == h and h != float("inf")):
            raise ConfigError(f"job.h0_std={h} must be a finite number >= 0; e.g. job.h0_std=1.0")
        if not isinstance(cfg.job.get("shared_input"), bool):
            raise ConfigError(f"job.shared_input={cfg.job.get('shared_input')} must be true or false")

    def build_task(self):
        return None                  # Gaussian inputs, job.n_in channels

    def fresh_state(self) -> None:
        super().fresh_state()
        with torch.no_grad():        # one network: member 0's draw in every member
            for p in self.model.parameters():
                p.copy_(p[:1].expand_as(p))
        self.gains = self.gains[:1].expand_as(self.gains).clone()
        self.done = False

    def progress_total(self) -> tuple[int, int]:
        return int(self.cfg.job.steps), int(self.cfg.job.steps) if self.done else 0

    @property
    def indices(self) -> list[int]:
        idx = self.cfg.job.indices
        return default_indices(self.model.state_dim) if idx is None else [int(i) for i in idx]

    def loop(self, progress: Progress, fresh: bool) -> None:
        if self.done:
            return
        t0 = time.perf_counter()
        j = self.cfg.job
        N, steps = self.model.state_dim, int(j.steps)
        gens = member_generators(self.seeds, "ic")
        h0 = torch.stack([float(j.h0_std) * torch.randn(N, generator=g, dtype=torch.float64) for g in gens])
        Q0 = _orthogonal(gens, N)
        if bool(j.shared_input):   # member 0's sequence for every member
            x = self.inputs(member_generators(self.seeds[:1], "ic_input"), steps).expand(-1, self.R, -1)
        else:
            x = self.inputs(member_generators(self.seeds, "ic_input"), steps)
        times = K.record_times(steps, int(j.records))
        tr = K.lyapunov_trace(self.model, x, h0.to(self.dtype), Q0.to(self.dtype), times)
        cols = [i - 1 for i in self.indices]
        for t, lam in zip(times, tr):
            self.recorder.add_vectors(t, "lyap_trace", lam[:, cols], index=self.indices)
        self.kill(~torch.isfinite(tr[-1]).all(-1), 0, "non-finite Lyapunov estimates")
        self.timings["diagnostics_s"] += time.perf_counter() - t0
        self.done = True
        progress.update(steps, self.describe)

    def describe(self):
        return {}, ""

    def final(self) -> dict[str, list[float]]:
        return {"lambda_1": self.recorder.latest("lyap_trace", 1)}
