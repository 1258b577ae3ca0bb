"""The low-rank study's measures (Schuessler et al. 2020), recorded for every training run.

Called by :class:`flossrepro.jobs.diagnostics.Diagnostics` (at the start, after every epoch, at the
end); every value goes through the job's Recorder, per member. ``W`` is the recurrent matrix
(``U`` for an LSTM), ``W0`` its initial value, ``dW = W - W0``. Metrics:

- at the start: ``lambda1_init`` (the first Lyapunov exponent of the initial network on the
  diagnostic input sequence; the transition to chaos is where it crosses 0), ``W0_norm``
  (``||W0||_F``);
- with ``dW_sv`` (every ``diagnostics.dw_every`` epochs and at the end): ``dW_norm`` (``||dW||_F``;
  ``dW_rel_norm``, ``dW_sv`` and the alignments are :meth:`Diagnostics.dw_stats`'s);
- at the end (``diagnostics.rank_max > 0``), on one fixed test batch of ``eval_batch_size``
  sequences (stream ``lowrank``), with the trained input and readout weights as in their code:
  ``trunc_loss`` (index ``r``: the loss with ``W0 + dW_r``, dW truncated to its top ``r``
  singular components, ``r = 1..rank_max``), ``loss_W0`` (rank 0: ``W0`` alone),
  ``functional_rank`` (the smallest ``r`` with ``trunc_loss[r] < rank_threshold * loss_W0``,
  their ``figures_nonlinear`` definition; NaN when no ``r <= rank_max`` reaches it),
  ``shuffle_loss`` (the entries of ``W0`` permuted, ``dW`` kept), ``final_loss`` (``W`` itself on
  the same batch), ``convergence_epoch`` (the first epoch whose training loss is below
  ``rank_threshold`` times the loss of epoch 0; NaN when none is), and the eigenvalues of ``W0``,
  ``W`` and ``dW`` (``eig_{W0,W,dW}_{re,im}``, sorted by modulus, largest first; square ``W`` only),
  the singular values of ``W = W0 + dW`` and of ``W0`` (``W_sv``, ``W0_sv``: all of them, largest
  first), and the first trial of that batch: ``trace_input`` (length ``T * n_in``),
  ``trace_target``, ``trace_mask`` (the loss mask, 0/1; a flossing-paper task's per-step mask
  repeated over the outputs) and ``trace_output`` (the trained network's output; each length
  ``T * n_out``), all flattened time-major (``reshape(T, n)``), with ``trace_n_in`` and
  ``trace_n_out`` to reshape them;
- ``grad_W_norm`` (every ``diagnostics.grad_norm_every`` training steps, read after the backward
  and before clipping, at the step's epoch): ``||dL/dW||_F`` of the step's training batch, the
  authors' gradient norm (their ``model.py`` ``train``: the root of the sum of squared gradients
  of the trained parameters, every step, before any clipping; with only ``W`` trained, as in the
  linear study, it is this norm). Their Fig 4 "mean gradient norm" is its mean over the steps
  before the convergence epoch (``figures_linear``).

Members that diverged get NaN. The cost is timed into the job's ``diagnostics_s``.
"""
from __future__ import annotations

import math
import time

import torch

from flossrepro.engine.lyapunov import lyapunov_spectrum
from flossrepro.tasks.paper import member_generators

__all__ = ["LowRankMeasures", "truncate", "functional_rank"]


def truncate(U: torch.Tensor, s: torch.Tensor, Vh: torch.Tensor, r: int) -> torch.Tensor:
    """``dW_r = U[:, :, :r] diag(s[:r]) Vh[:, :r]`` (``[R, n, m]``); zeros for ``r = 0``."""
    if r == 0:
        return torch.zeros(U.shape[0], U.shape[1], Vh.shape[2], dtype=U.dtype, device=U.device)
    return torch.bmm(U[:, :, :r] * s[:, None, :r], Vh[:, :r])


def functional_rank(trunc_loss: torch.Tensor, loss_w0: torch.Tensor, threshold: float) -> torch.Tensor:
    """``trunc_loss: [R, rmax]`` (ranks 1..rmax), ``loss_w0: [R]`` -> ``[R]``: the smallest rank whose
    loss is below ``threshold * loss_w0`` (NaN where none is)."""
    ok = trunc_loss < threshold * loss_w0[:, None]
    first = ok.to(torch.int64).argmax(1).to(trunc_loss.dtype) + 1
    return torch.where(ok.any(1), first, torch.full_like(first, math.nan))


def _eig_sorted(M: torch.Tensor) -> torch.Tensor:
    e = torch.linalg.eigvals(M.to(torch.float64))
    idx = torch.argsort(e.abs(), dim=-1, descending=True)
    return torch.gather(e, -1, idx)


class LowRankMeasures:
    """The measures of one job (``diag``: its :class:`~flossrepro.jobs.diagnostics.Diagnostics`)."""

    def __init__(self, diag):
        self.diag = diag
        self.job = diag.job
        self.cfg = diag.cfg
        self.conv_loss0: torch.Tensor | None = None       # training loss of epoch 0, [R]
        self.conv_epoch: torch.Tensor | None = None       # first epoch below threshold, NaN: not yet

    # -- state (checkpointed with the job) -------------------------------------------------
    def state_dict(self) -> dict:
        return {"conv_loss0": self.conv_loss0, "conv_epoch": self.conv_epoch}

    def load_state_dict(self, st: dict) -> None:
        self.conv_loss0, self.conv_epoch = st.get("conv_loss0"), st.get("conv_epoch")

    @property
    def rank_max(self) -> int:
        return int(self.cfg.get("rank_max", 0) or 0)

    @property
    def threshold(self) -> float:
        return float(self.cfg.get("rank_threshold", 0.05))

    def _timed(self, fn, *a):
        t0 = time.perf_counter()
        try:
            return fn(*a)
        finally:
            self.job.timings["diagnostics_s"] += time.perf_counter() - t0

    # -- schedule ----------------------------------------------------------------------------
    def at_start(self) -> None:
        self._timed(self._at_start)

    def on_gradients(self, epoch: int) -> None:
        """Inside training step ``epoch``, after the backward (the raw gradients) and before clipping."""
        every = self.cfg.get("grad_norm_every")
        if every and epoch % int(every) == 0:
            self._timed(self._grad_norm, epoch)

    def after_epoch(self, e: int, last: int) -> None:
        """After training epoch ``e`` (the training loss of epoch ``e - 1`` is the latest)."""
        self._track_convergence(e - 1)
        d = self.cfg
        if d.dw_every and (e % int(d.dw_every) == 0 or e == last):
            self._timed(self._dw_norm, e)
        if e == last and self.rank_max > 0:
            self._timed(self._at_end, e)

    # -- measurements ----------------------------------------------------------------------------
    @torch.no_grad()
    def _at_start(self) -> None:
        job, rec = self.job, self.job.recorder
        W0 = job.W0
        rec.add(0, "W0_norm", torch.linalg.matrix_norm(W0))
        if hasattr(job.model, "W"):
            lam = lyapunov_spectrum(job.model, self.diag.lyap_inputs(), 1)
            rec.add(0, "lambda1_init", lam[:, 0])

    def _track_convergence(self, epoch: int) -> None:
        loss = torch.tensor(self.job.recorder.latest("train_loss"), dtype=torch.float64)
        if self.conv_loss0 is None:
            self.conv_loss0 = loss.clone()
            self.conv_epoch = torch.full_like(loss, math.nan)
        newly = torch.isnan(self.conv_epoch) & (loss < self.threshold * self.conv_loss0)
        self.conv_epoch[newly] = float(epoch)

    @torch.no_grad()
    def _dw_norm(self, e: int) -> None:
        dW, ok = self.diag._alive_rows(self.job.recurrent().detach() - self.job.W0)
        n = torch.linalg.matrix_norm(dW)
        self.job.recorder.add(e, "dW_norm", torch.where(ok, n, torch.full_like(n, math.nan)))

    @torch.no_grad()
    def _grad_norm(self, epoch: int) -> None:
        G = self.job.recurrent().grad
        if G is None:  # W not trained
            return
        G, ok = self.diag._alive_rows(G.detach())
        n = torch.linalg.matrix_norm(G)
        self.job.recorder.add(epoch, "grad_W_norm", torch.where(ok, n, torch.full_like(n, math.nan)))

    @torch.no_grad()
    def _loss_with(self, W: torch.Tensor, Wnew: torch.Tensor, batch, output: bool = False):
        W.copy_(Wnew)
        out = self.job.model(batch.inputs)
        loss = self.job.task.loss(out, batch).to(torch.float64)
        return (loss, out) if output else loss

    def _traces(self, e: int, batch, out: torch.Tensor, nan) -> None:
        """The first trial of ``batch`` per member (``[T, R, B, n] -> [R, T * n]``, time-major)."""
        rec = self.job.recorder
        first = lambda x: x[:, :, 0].transpose(0, 1).reshape(x.shape[1], -1)  # noqa: E731
        rec.add_vectors(e, "trace_input", first(batch.inputs))
        rec.add_vectors(e, "trace_target", first(batch.targets))
        w = getattr(batch, "weights", None)   # per step and channel; else the flossing tasks' per-step mask
        m = (w != 0) if w is not None else batch.mask.view(-1, 1, 1, 1).expand(batch.targets.shape)
        rec.add_vectors(e, "trace_mask", first(m.to(batch.targets.device, batch.targets.dtype)))
        rec.add_vectors(e, "trace_output", nan(first(out)))
        R = out.shape[1]
        rec.add(e, "trace_n_in", torch.full((R,), float(batch.inputs.shape[-1])))
        rec.add(e, "trace_n_out", torch.full((R,), float(out.shape[-1])))

    @torch.no_grad()
    def _at_end(self, e: int) -> None:
        job, rec = self.job, self.job.recorder
        nan = lambda x: torch.where(ok.to(x.device).view(-1, *([1] * (x.dim() - 1))), x,  # noqa: E731
                                    torch.full_like(x, math.nan))
        if self.conv_epoch is not None:
            rec.add(e, "convergence_epoch", self.conv_epoch)
        W = job.recurrent()
        dW, ok = self.diag._alive_rows(W.detach() - job.W0)
        W0 = job.W0
        if W.shape[-1] == W.shape[-2]:
            for name, M in (("W0", W0), ("W", W0 + dW), ("dW", dW)):
                ev = nan(_eig_sorted(M))
                rec.add_vectors(e, f"eig_{name}_re", ev.real)
                rec.add_vectors(e, f"eig_{name}_im", ev.imag)
        Wf = torch.where(ok.to(W0.device).view(-1, 1, 1), W.detach(), W0)   # finite for the dead (then NaN)
        rec.add_vectors(e, "W_sv", nan(torch.linalg.svdvals(Wf)))
        rec.add_vectors(e, "W0_sv", nan(torch.linalg.svdvals(W0)))
        if job.task is None:
            return
        batch = job.task.sample(member_generators(job.seeds, "lowrank"), batch_size=int(self.cfg.eval_batch_size),
                                device=job.device, dtype=job.dtype)
        saved = W.detach().clone()
        try:
            U, s, Vh = torch.linalg.svd(dW)
            rmax = min(self.rank_max, s.shape[-1])
            final, out = self._loss_with(W, saved, batch, output=True)
            loss0 = self._loss_with(W, W0, batch)
            trunc = torch.stack([self._loss_with(W, W0 + truncate(U, s, Vh, r), batch) for r in range(1, rmax + 1)], 1)
            gens = member_generators(job.seeds, "shuffle")
            perm = torch.stack([torch.randperm(W0[0].numel(), generator=g) for g in gens]).to(W0.device)
            W0s = torch.gather(W0.reshape(W0.shape[0], -1), 1, perm).view_as(W0)
            shuffled = self._loss_with(W, W0s + dW, batch)
        finally:
            W.copy_(saved)
        rec.add(e, "final_loss", nan(final))
        rec.add(e, "loss_W0", nan(loss0))
        rec.add_vectors(e, "trunc_loss", nan(trunc))
        rec.add(e, "functional_rank", nan(functional_rank(trunc, loss0, self.threshold)))
        rec.add(e, "shuffle_loss", nan(shuffled))
        self._traces(e, batch, out, nan)
