"""Jobs: a composed config -> one job in a run directory.

The ``job`` config group picks the kind: ``train`` (:class:`flossrepro.jobs.trainer.Trainer`:
task training with flossing episodes and diagnostics) or an analysis that trains nothing,
e.g. ``floss`` (:class:`flossrepro.jobs.floss.FlossJob`: flossing only, Fig 1). Every kind
shares what this base class gives: the ensemble and its initialisation, flossing
episodes, divergence handling, the run directory (``summary.json``, the tables under
``metrics/``, ``checkpoint.pt``), resume, stop signals, progress and W&B. A kind writes
:meth:`Job.loop` (and its own state in :meth:`Job.state_dict`).

A run directory holds ``summary.json``, ``metrics/part-*.parquet`` (see
:mod:`flossrepro.store.tables`), ``checkpoint.pt`` and ``wandb/``; rerunning the same command
resumes from the checkpoint and ends with the same numbers as an uninterrupted run.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig

from flossrepro.store import checkpoint as ckpt
from flossrepro.store import config as C
from flossrepro.store import limits
from flossrepro.store.checkpoint import StopRequested
from flossrepro.jobs.diagnostics import Diagnostics
from flossrepro.engine.flossing import floss_step, flossing_parameters
from flossrepro.engine.init import initialize
from flossrepro.jobs.sinks import Progress, WandbSink
from flossrepro.store.summary import git_commit, last_commit, nanmean, provenance_event, read_json, write_json
from flossrepro.store.tables import Recorder
from flossrepro.tasks.paper import member_generators

__all__ = ["Job", "make_job", "StopRequested"]

log = logging.getLogger("flossrepro")


def make_job(cfg: DictConfig, run_dir, run_id: str | None = None, columns: dict | None = None) -> "Job":
    """The job ``cfg.job`` names (``job=train`` by default), ready to ``.run()``."""
    target = str(cfg.job._target_) if "job" in cfg else "flossrepro.jobs.trainer.Trainer"
    return get_class(target)(cfg, run_dir, run_id=run_id, columns=columns)


def _fused_ok(params) -> bool:
    """Adam's fused kernel (one op for all parameters; ~3x faster per step on a CPU core than
    the per-tensor loop) where PyTorch has it: CPU and CUDA floating-point parameters."""
    return all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)


def adam(params, lr: float, **kw) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, fused=_fused_ok(params), **kw)


class Job:
    """One configured job in ``run_dir`` (see the module docstring)."""

    #: the progress unit: training epochs, or flossing epochs for analyses
    unit = "ep"
    #: the arch options this kind runs (None: every one); checked before any compute
    #: (:func:`flossrepro.store.limits.check_job_arch`), as are the two below
    ARCHS: tuple[str, ...] | None = None
    ARCHS_NOTE = ""
    NEEDS_FLOSSING = False        # a kind that flosses: flossing=none is refused
    NEEDS_EPOCHS = False          # a kind that trains: epochs=0 is refused

    def __init__(self, cfg: DictConfig, run_dir: str | Path, run_id: str | None = None,
                 columns: dict[str, Any] | None = None):
        limits.check(cfg)
        C.validate(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_id = run_id or self.run_dir.name
        self.columns = dict(columns or {})
        self.device = C.resolve_device(cfg.device)
        self.dtype = C.resolve_dtype(cfg.dtype)
        self.task = self.build_task()
        shapes = self.task if self.task is not None else SimpleNamespace(n_in=int(cfg.job.n_in), n_out=int(cfg.job.n_out))
        self.model = C.build_model(cfg, shapes, device=self.device, dtype=self.dtype)
        self.n_in = int(shapes.n_in)
        self.R = int(cfg.members)
        self.seeds = [int(cfg.seed) + r for r in range(self.R)]
        self.signals = ckpt.StopSignals()
        self.diag = Diagnostics(self)
        self.wandb: WandbSink | None = None

    def build_task(self):
        return C.build_task(self.cfg)

    # -- state ------------------------------------------------------------------------
    def fresh_state(self) -> None:
        i, m = self.cfg.init, self.model
        # a model may draw its own parameters from the same settings (flossrepro.engine.torch_modules)
        init = getattr(m, "initialize_members", None) or functools.partial(initialize, m)
        self.gains = init(self.seeds, scheme=i.scheme, g=i.g,
                          g_range=None if i.g_range is None else list(i.g_range), gbar=i.gbar,
                          mean=i.mean, input_std=i.input_std, readout_std=i.readout_std,
                          bias_scale=i.bias_scale, readout_offset=i.readout_offset,
                          relax_steps=i.relax_steps)
        self.W0 = self.recurrent().detach().clone()
        self.gens = {s: member_generators(self.seeds, s) for s in ("train", "test", "floss")}
        self.epoch = 0                 # next training epoch to run
        self.floss_epoch = 0           # flossing epochs done (cumulative)
        self.next_episode = 0          # index into self.starts
        self.episode_step = 0          # flossing steps done in the current episode
        self.alive = torch.ones(self.R, dtype=torch.bool)
        self.diverged_at: list[int | None] = [None] * self.R
        self.frozen: dict[str, torch.Tensor] = {}
        self.timings = {"train_s": 0.0, "floss_s": 0.0, "diagnostics_s": 0.0, "total_s": 0.0}
        self.wandb_id = uuid.uuid4().hex[:12]
        self.recorder = Recorder(self.run_dir, self.run_id, self.R)
        self.recorder.add(0, "init_g", self.gains)
        self.make_optimizers()

    def make_optimizers(self) -> None:
        f = self.cfg.flossing
        self.floss_opt = None
        if self.starts:
            try:
                self.floss_params = flossing_parameters(self.model, f.params)
            except ValueError as e:
                raise C.ConfigError(str(e)) from e
            self.floss_opt = adam(self.floss_params, lr=f.lr)

    _STATE = ("epoch", "floss_epoch", "next_episode", "episode_step", "alive", "diverged_at", "frozen",
              "timings", "wandb_id")

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "W0": self.W0, "gains": self.gains,
                "floss_opt": None if self.floss_opt is None else self.floss_opt.state_dict(),
                "gens": {k: [g.get_state() for g in v] for k, v in self.gens.items()},
                "recorder": self.recorder.state_dict(), "diag": self.diag.state_dict(),
                **{k: getattr(self, k) for k in self._STATE}}

    def load_state_dict(self, st: dict) -> None:
        self.fresh_state()
        self.model.load_state_dict(st["model"])
        self.W0, self.gains = st["W0"], st["gains"]
        if self.floss_opt is not None and st["floss_opt"] is not None:
            self.floss_opt.load_state_dict(st["floss_opt"])
        for k, states in st["gens"].items():
            for g, s in zip(self.gens[k], states):
                g.set_state(s)
        for k in self._STATE:
            setattr(self, k, st[k])
        self.recorder.load_state_dict(st["recorder"])
        self.diag.load_state_dict(st.get("diag", {}))

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def checkpoint(self, status: str = "running") -> dict:
        """Append the new table rows, save the state, update ``summary.json`` (returned)."""
        self._clock()
        self.recorder.flush()
        ckpt.save(self.ckpt_path, self.state_dict())
        return self.write_summary(status)

    def _clock(self) -> None:
        now = time.perf_counter()
        self.timings["total_s"] = self.timings.get("total_s", 0.0) + now - self._t_mark
        self._t_mark = now

    # -- helpers for the phases ---------------------------------------------------------
    def recurrent(self) -> torch.Tensor:
        return self.model.W if hasattr(self.model, "W") else self.model.U

    def inputs(self, gens: list[torch.Generator], T: int) -> torch.Tensor:
        """One input sequence per member, ``[T, R, S]``, from ``flossing.input``: the task's
        input distribution, or ``gaussian`` x ~ N(0, 1) (Fig 1). Used by flossing and by the
        Lyapunov diagnostics, so both see the same input statistics."""
        if self.cfg.flossing.input == "gaussian" or self.task is None:
            x = torch.stack([torch.randn(T, self.n_in, generator=g, dtype=torch.float64) for g in gens], 1)
            return x.to(device=self.device, dtype=self.dtype)
        return self.task.sample_inputs(gens, batch_size=1, seq_len=T, device=self.device, dtype=self.dtype)[:, :, 0]

    def kill(self, bad: torch.Tensor, epoch: int, why: str) -> None:
        """Mark members ``bad: [R] bool`` diverged and freeze their parameters."""
        newly = bad.cpu() & self.alive
        if not newly.any():
            return
        for r in newly.nonzero().flatten().tolist():
            self.diverged_at[r] = epoch
            log.warning("member %d (seed %d) diverged at epoch %d (%s); it stops, the others go on",
                        r, self.seeds[r], epoch, why)
        self.alive &= ~newly
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                snap = self.frozen.get(name, p.detach().clone())
                snap[newly.to(p.device)] = p.detach()[newly.to(p.device)]
                self.frozen[name] = snap

    def keep(self, epoch: int, why: str):
        """For a step's ``keep``: kill the members whose loss is not finite, return the live ones."""
        def fn(loss: torch.Tensor) -> torch.Tensor:
            self.kill(~torch.isfinite(loss).cpu(), epoch, why)
            return self.alive.to(loss.device)
        return fn

    def hold_dead(self) -> None:
        if self.alive.all():
            return
        dead = (~self.alive).to(self.device)
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p[dead] = self.frozen[name][dead]

    # -- flossing ---------------------------------------------------------------------------
    @property
    def starts(self) -> list[int]:
        """Training epochs at which a flossing episode starts."""
        return C.episode_starts(self.cfg)

    def floss_step(self) -> None:
        f = self.cfg.flossing
        th, tq = C.lyap_transients(int(f.horizon), f.transient_h, f.transient_q)
        x = self.inputs(self.gens["floss"], int(f.horizon))
        lam, loss = floss_step(self.model, self.floss_opt, x, int(f.k), float(f.target), f.reduction,
                               keep=self.keep(self.epoch, "non-finite flossing loss"),
                               s_ons=int(f.s_ons), transient_h=th, transient_q=tq)
        self.hold_dead()
        self.recorder.add(self.floss_epoch, "floss_loss", loss)
        self.recorder.add(self.floss_epoch, "floss_lambda_1", lam[:, 0])
        self.floss_epoch += 1

    def run_episode(self, progress: Progress | None = None) -> None:
        """Run (or continue) the flossing episode at ``self.starts[self.next_episode]``."""
        f = self.cfg.flossing
        if self.episode_step == 0:
            self.diag.lyapunov(self.epoch, "lyap_before_floss")
        t0 = time.perf_counter()
        while self.episode_step < int(f.epochs) and self.alive.any():
            self.floss_step()
            self.episode_step += 1
            self.after_floss_step(progress)
            if self.signals.pending:
                self.timings["floss_s"] += time.perf_counter() - t0
                self.check_stop()  # checkpoints; raises StopRequested unless it only checkpoints
                t0 = time.perf_counter()
        self.timings["floss_s"] += time.perf_counter() - t0
        self.diag.lyapunov(self.epoch, "lyap_after_floss")
        if self.task is not None and self.cfg.diagnostics.eval_every:
            self.diag.evaluate(self.epoch, "_after_floss")
        self.next_episode += 1
        self.episode_step = 0
        log.info("flossing episode at epoch %d done: lambda_1 = [%s]", self.epoch,
                 ", ".join(f"{x:.3f}" for x in self.recorder.latest("lyap_after_floss", 1)))

    def after_floss_step(self, progress: Progress | None) -> None:
        """Called after every flossing step of an episode (a kind may checkpoint or report here)."""

    def maybe_pause(self, n: int) -> None:
        """Fault injection for tests and debugging: with ``FLOSSREPRO_PAUSE_AT=n`` (or ``n:text``:
        only runs whose id contains ``text``) in the environment the job stops at step boundary
        ``n`` (training epoch, or flossing epoch for analyses), says so on stderr, and waits for
        a signal that stops it (SIGTERM checkpoints and stops as usual; in a submitit job, where
        SIGTERM only checkpoints, it waits for the USR2 that requeues; SIGKILL tests the loss of
        the rows since the last checkpoint)."""
        at = os.environ.get("FLOSSREPRO_PAUSE_AT")
        if not at:
            return
        step, _, only = at.partition(":")
        if int(step) != n or (only and only not in self.run_id):
            return
        print(f"[flossrepro] paused at {n} (FLOSSREPRO_PAUSE_AT), waiting for a signal", file=sys.stderr, flush=True)
        while self.signals.hard is None:
            time.sleep(0.01)

    def check_stop(self) -> None:
        """At a step boundary: checkpoint for a pending stop request, and stop if it says so."""
        if not self.signals.pending:
            return
        self.checkpoint("running")
        if self.signals.take():
            raise StopRequested(self.signals.name)
        log.warning("checkpoint written at epoch %d", self.epoch)

    # -- what a kind provides -----------------------------------------------------------------
    def loop(self, progress: Progress, fresh: bool) -> None:
        """The job's work (``fresh``: not resumed from a checkpoint); check :meth:`check_stop`
        at step boundaries and checkpoint every ``checkpoint_every`` units."""
        raise NotImplementedError

    def progress_total(self) -> tuple[int, int]:
        """``(total, done)`` in :attr:`unit`."""
        return int(self.cfg.epochs), self.epoch

    def progress_info(self) -> dict[str, str]:
        return {}

    def describe(self) -> tuple[dict[str, str], str]:
        """``(progress_info(), " alive a/R")`` for a progress line."""
        return self.progress_info(), f" alive {int(self.alive.sum())}/{self.R}"

    @property
    def training_epochs(self) -> int:
        """Task-training epochs this job runs (0 for analyses)."""
        return int(self.cfg.epochs)

    def final(self) -> dict[str, list[float]]:
        """Each member's final numbers for ``summary.json``."""
        return {"lambda_1": self.recorder.latest(("lyap_after_floss", "lyap"), 1)}

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(max(1, int(cfg.threads)))
        self._t_mark = time.perf_counter()
        resumed = self.ckpt_path.exists()
        prev = (read_json(self.run_dir / "summary.json") or {}) if resumed else {}
        now = provenance_event("resume" if resumed else "start")
        if resumed and last_commit(prev) not in (None, now["git_commit"]):
            now["other_commit"] = last_commit(prev)  # allowed (allow_other_commit=true): recorded
        self.provenance = list(prev.get("provenance") or []) + [now]
        if resumed:
            st = ckpt.load(self.ckpt_path, self.device)
            try:
                self.load_state_dict(st)
            except (KeyError, RuntimeError, ValueError, TypeError) as e:
                raise ckpt.restore_error(self.ckpt_path, e) from e
            log.info("resuming %s from epoch %d (flossing epoch %d)", self.run_dir, self.epoch, self.floss_epoch)
        else:
            # parts left by an earlier attempt of this run that crashed before its first checkpoint
            for p in Recorder(self.run_dir, self.run_id, self.R).load_state_dict({"parts": 0, "latest": {}}):
                log.info("removed %s, left by an earlier attempt of this run without a checkpoint", p)
            self.fresh_state()
        if cfg.logger.name == "wandb":
            self.wandb = WandbSink(cfg, self.run_dir, self.run_id, self.wandb_id)
            self.recorder.listeners.append(self.wandb.observe)
        self.signals.install()
        total, done = self.progress_total()
        progress = Progress(cfg.progress, int(cfg.log_every or 0), total, done, self.run_id, self.unit)
        self.write_summary("running")
        try:
            self.loop(progress, fresh=not resumed)
            status = "complete" if self.alive.all() else ("diverged" if not self.alive.any() else "complete_partial")
        except StopRequested as s:
            self._finish("interrupted", progress)
            log.warning("stopped by %s at epoch %d; rerun the same command to resume", s, self.epoch)
            self.signals.chain()
            raise
        except BaseException:
            # a crash: keep the rows recorded so far (a rerun resumes from the last checkpoint
            # and replaces them), hand the signals back, and let the caller record the failure
            progress.close()
            self.signals.restore()
            try:
                self.recorder.flush()
            except Exception as e:  # the original error matters more
                log.error("could not write the last table rows: %s", e)
            raise
        return self._finish(status, progress)

    def _finish(self, status: str, progress: Progress) -> dict:
        progress.close()
        summary = self.checkpoint(status)
        if self.wandb is not None:
            self.wandb.finish(status, summary["final_mean"])
            self.wandb = None
        if status != "interrupted":
            self.signals.restore()
        return summary

    def log_wandb(self, epoch: int) -> None:
        if self.wandb is not None:
            self.wandb.log(epoch, int(self.alive.sum()))

    def summary(self, status: str) -> dict:
        final = self.final()
        total, done = self.progress_total()
        members = [{"member": r, "seed": self.seeds[r], "g": float(self.gains[r]),
                    "status": "diverged" if self.diverged_at[r] is not None else "ok",
                    "diverged_epoch": self.diverged_at[r], "final": {k: v[r] for k, v in final.items()}}
                   for r in range(self.R)]
        return {
            "status": status, "job": str(self.cfg.job.name) if "job" in self.cfg else "train",
            "run_id": self.run_id, "epochs_done": self.epoch, "epochs": self.training_epochs,
            "progress": {"unit": self.unit, "done": done, "total": total},
            "floss_epochs_done": self.floss_epoch, "table_parts": self.recorder.parts,
            "table_part_rows": self.recorder.part_rows, "provenance": getattr(self, "provenance", []),
            "columns": self.columns, "members": members, "final_mean": {k: nanmean(v) for k, v in final.items()},
            "timings": self.timings, "device": str(self.device), "dtype": self.cfg.dtype,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "git_commit": git_commit(), "wandb_id": self.wandb_id,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def write_summary(self, status: str) -> dict:
        s = self.summary(status)
        write_json(self.run_dir / "summary.json", s)
        return s
