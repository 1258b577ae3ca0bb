"""Periodic measurements of a job, each recorded per member into the job's tables.

Intervals come from the ``diagnostics`` config group (0 or null: never):

- ``eval_every``: ``test_loss`` (and ``test_accuracy``) on a fresh batch of ``eval_batch_size``;
  also right after every flossing episode of a training job (``test_loss_after_floss``,
  ``test_accuracy_after_floss``, Fig 12: the drop is brief);
- ``lyap_every``: the first ``lyap_k`` Lyapunov exponents (``lyap``; also ``lyap_before_floss``
  and ``lyap_after_floss`` around every flossing episode) on a fixed input sequence;
- ``grad_h0_every``: the norm of dL/dh0 (``grad_h0_norm``, Fig 8), read from the raw gradients;
- ``grad_sv_every``: the singular values of dL/dW (``grad_W_sv``, Fig 10);
- ``dw_every``: the spectrum, effective rank and relative norm of ``dW = W - W0`` and the
  alignment of its top singular vectors with the input and readout directions;
- the low-rank study's measures (convergence epoch, functional rank and truncation losses,
  loss after shuffling W0, ||dW||, eigenvalues and singular values, task traces, lambda_1 at
  initialisation, ``grad_W_norm`` every ``grad_norm_every`` steps):
  :mod:`flossrepro.jobs.lowrank_measures` (``rank_max``, ``rank_threshold``, ``grad_norm_every``).

Members that diverged are skipped: their values are recorded as NaN, never computed on
non-finite weights.
"""
from __future__ import annotations

import time

import torch
from omegaconf import OmegaConf

from flossrepro.jobs.lowrank_measures import LowRankMeasures
from flossrepro.engine.lyapunov import lyapunov_spectrum
from flossrepro.tasks.paper import member_generators


def effective_rank(s: torch.Tensor) -> torch.Tensor:
    """Roy-Vetterli effective rank ``exp(H(p))``, ``p = s / sum(s)``; ``s: [R, n]`` -> ``[R]``."""
    p = s / s.sum(-1, keepdim=True).clamp_min(1e-300)
    H = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    return torch.exp(H)


def _timed(fn):
    """Add the call's wall time to the job's ``diagnostics_s``."""
    def wrapper(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(self, *a, **kw)
        finally:
            self.job.timings["diagnostics_s"] += time.perf_counter() - t0
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


class _Plain(dict):
    """A resolved config section: ``d.key`` and ``d.get(key)`` on plain Python values."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e


def _every(n, e: int) -> bool:
    return bool(n) and e % int(n) == 0


class Diagnostics:
    """The diagnostics of one job (``job``: the :class:`flossrepro.jobs.base.Job` they measure)."""

    def __init__(self, job):
        self.job = job
        # resolved once into plain values: reading a DictConfig (with ${by_scale:...}
        # interpolations) every epoch cost ~0.6 ms per access, 10-15% of a Fig 4 epoch
        self.cfg = _Plain(OmegaConf.to_container(job.cfg.diagnostics, resolve=True))
        self._lyap_x = None
        self.lowrank = LowRankMeasures(self)  # the low-rank study's measures (flossrepro.jobs.lowrank_measures)

    def state_dict(self) -> dict:
        return {"lowrank": self.lowrank.state_dict()}

    def load_state_dict(self, st: dict) -> None:
        self.lowrank.load_state_dict(st.get("lowrank", {}))

    # -- schedule -----------------------------------------------------------------------
    def at_start(self) -> None:
        """Before the first epoch of a fresh run."""
        d = self.cfg
        if self.job.task is not None:
            self.evaluate(0)
        if d.lyap_every:
            self.lyapunov(0, "lyap")
        if d.dw_every:
            self.dw_stats(0)
        self.lowrank.at_start()

    def after_epoch(self, e: int, last: int) -> None:
        """After training epoch ``e`` (``last``: the final epoch, always measured)."""
        d = self.cfg
        if d.eval_every and (_every(d.eval_every, e) or e == last):
            self.evaluate(e)
        if d.lyap_every and (_every(d.lyap_every, e) or e == last):
            self.lyapunov(e, "lyap")
        if d.dw_every and (_every(d.dw_every, e) or e == last):
            self.dw_stats(e)
        self.lowrank.after_epoch(e, last)

    def on_gradients(self, epoch: int) -> None:
        """Inside a training step, after the backward and before clipping."""
        d, job = self.cfg, self.job
        if _every(d.grad_h0_every, epoch) and job.model.h0.grad is not None:
            job.recorder.add(epoch, "grad_h0_norm", job.model.h0.grad.norm(dim=-1))
        if _every(d.grad_sv_every, epoch):
            Wg = job.recurrent().grad
            if Wg is not None:
                job.recorder.add_vectors(epoch, "grad_W_sv", self._svdvals(Wg.detach()))
        self.lowrank.on_gradients(epoch)

    # -- measurements ---------------------------------------------------------------------
    def _alive_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [R, ...]`` with the rows of diverged (or non-finite) members zeroed."""
        ok = self.job.alive.to(x.device) & torch.isfinite(x.reshape(x.shape[0], -1)).all(-1)
        return torch.where(ok.view(-1, *([1] * (x.dim() - 1))), x, torch.zeros_like(x)), ok

    def _svdvals(self, M: torch.Tensor) -> torch.Tensor:
        M, ok = self._alive_rows(M)
        s = torch.linalg.svdvals(M)
        return torch.where(ok.view(-1, 1), s, torch.full_like(s, float("nan")))

    def lyap_inputs(self) -> torch.Tensor:
        """The fixed diagnostic sequence ``[T, R, S]`` (one per member, stream ``lyap``)."""
        if self._lyap_x is None:
            job = self.job
            self._lyap_x = job.inputs(member_generators(job.seeds, "lyap"), int(self.cfg.lyap_seq_len))
        return self._lyap_x

    @torch.no_grad()
    @_timed
    def lyapunov(self, epoch: int, metric: str) -> torch.Tensor:
        job = self.job
        k = min(int(self.cfg.lyap_k), job.model.state_dim)
        lam = lyapunov_spectrum(job.model, self.lyap_inputs(), k)
        job.kill(~torch.isfinite(lam).all(-1).cpu(), epoch, "non-finite Lyapunov exponents")
        job.recorder.add_vectors(epoch, metric, lam)
        return lam

    @torch.no_grad()
    @_timed
    def evaluate(self, epoch: int, suffix: str = "") -> None:
        """``test_loss`` (and ``test_accuracy``) on a fresh test batch; ``suffix`` names a second
        measurement at the same epoch (``_after_floss``: right after a flossing episode)."""
        job = self.job
        batch = job.task.sample(job.gens["test"], batch_size=int(self.cfg.eval_batch_size),
                                device=job.device, dtype=job.dtype)
        out = job.model(batch.inputs)
        job.recorder.add(epoch, f"test_loss{suffix}", job.task.loss(out, batch))
        if job.task.metric_name == "accuracy":
            job.recorder.add(epoch, f"test_accuracy{suffix}", job.task.metric(out, batch))

    @torch.no_grad()
    @_timed
    def dw_stats(self, epoch: int) -> None:
        job, rec = self.job, self.job.recorder
        dW, ok = self._alive_rows(job.recurrent().detach() - job.W0)
        nan = torch.full((dW.shape[0],), float("nan"), dtype=dW.dtype, device=dW.device)
        U, s, Vh = torch.linalg.svd(dW)
        rec.add_vectors(epoch, "dW_sv", torch.where(ok.view(-1, 1), s, torch.full_like(s, float("nan"))))
        rec.add(epoch, "dW_effective_rank", torch.where(ok, effective_rank(s), nan))
        rel = torch.linalg.matrix_norm(dW) / torch.linalg.matrix_norm(job.W0)
        rec.add(epoch, "dW_rel_norm", torch.where(ok, rel, nan))
        if hasattr(job.model, "W") and bool(ok.any()) and float(s[ok, 0].max()) > 0:
            # alignment of the top singular vectors of dW with the input and readout directions:
            # the norm of the projection of u_1 / v_1 onto span(V) and span(w_r^T), in [0, 1]
            u1, v1 = U[:, :, 0], Vh[:, 0, :]
            for name, vec in (("u1", u1), ("v1", v1)):
                for tgt, M in (("V", job.model.V.detach()), ("wr", job.model.w_r.detach().transpose(1, 2))):
                    Qm, _ = torch.linalg.qr(self._alive_rows(M)[0])  # [R, N, S or O] orthonormal basis
                    proj = torch.einsum("rnj,rn->rj", Qm, vec).norm(dim=-1)
                    rec.add(epoch, f"dW_align_{name}_{tgt}", torch.where(ok, proj, nan))
