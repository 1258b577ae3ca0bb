"""The one trainer: task training, flossing episodes and diagnostics as phases of one loop.

An epoch is one minibatch of fresh data (SPEC). Flossing episodes start before the
training step of the epochs the schedule names (``flossing.episodes_at``; an episode at
``epochs`` runs after training). Every metric is recorded per member into a tidy table
(``metrics.parquet``: run_id, member, epoch, metric, index, value, plus the swept
settings). Rows whose metric starts with ``floss_`` count ``epoch`` in flossing epochs
(cumulative over episodes); all other rows count training epochs.

A run directory holds ``.hydra/config.yaml`` (written by Hydra), ``metrics.parquet``,
``summary.json`` and ``checkpoint.pt``; rerunning the same command resumes from the
checkpoint and ends with the same numbers as an uninterrupted run.
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from . import config as C
from .flossing import clip_grad_norm_per_member, flossing_objective, flossing_parameters
from .init import initialize
from .lyapunov import lyapunov_spectrum
from .tasks import member_generators

log = logging.getLogger("flossrepro")

STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")
METRIC_COLUMNS = ["run_id", "member", "epoch", "metric", "index", "value"]


class StopRequested(Exception):
    """A stop signal arrived; the state was checkpointed."""


def effective_rank(s: torch.Tensor) -> torch.Tensor:
    """Roy-Vetterli effective rank ``exp(H(p))``, ``p = s / sum(s)``; ``s: [R, n]`` -> ``[R]``."""
    p = s / s.sum(-1, keepdim=True).clamp_min(1e-300)
    H = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    return torch.exp(H)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


class Recorder:
    """Accumulates tidy metric rows; ``member`` is the member index within the run."""

    def __init__(self, run_id: str, rows: list | None = None):
        self.run_id = run_id
        self.rows: list[tuple] = rows if rows is not None else []

    def add(self, epoch: int, metric: str, values: torch.Tensor | list, index: int | None = None) -> None:
        """``values: [R]`` one per member."""
        vals = values.tolist() if isinstance(values, torch.Tensor) else list(values)
        for r, v in enumerate(vals):
            self.rows.append((r, int(epoch), metric, index, float(v)))

    def add_vectors(self, epoch: int, metric: str, values: torch.Tensor) -> None:
        """``values: [R, n]``, recorded with ``index`` 1..n."""
        for r, row in enumerate(values.tolist()):
            for i, v in enumerate(row, start=1):
                self.rows.append((r, int(epoch), metric, i, float(v)))

    def frame(self, columns: dict[str, Any]) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=["member", "epoch", "metric", "index", "value"])
        df["index"] = df["index"].astype("Int64")
        df.insert(0, "run_id", self.run_id)
        for k, v in columns.items():
            df[k] = v
        return df


def _fused_ok(params) -> bool:
    """Adam's fused kernel (one op for all parameters; ~3x faster per step on a CPU core than
    the per-tensor loop) where PyTorch has it: CPU and CUDA floating-point parameters."""
    return all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)


class Trainer:
    """Runs one configured job in ``run_dir`` (see the module docstring)."""

    def __init__(self, cfg: DictConfig, run_dir: str | Path, run_id: str | None = None,
                 columns: dict[str, Any] | None = None):
        C.validate(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_id = run_id or self.run_dir.name
        self.columns = dict(columns or {})
        self.device = C.resolve_device(cfg.device)
        self.dtype = C.resolve_dtype(cfg.dtype)
        self.task = C.build_task(cfg)
        self.model = C.build_model(cfg, self.task, device=self.device, dtype=self.dtype)
        self.R = int(cfg.members)
        self.seeds = [int(cfg.seed) + r for r in range(self.R)]
        self.starts = C.episode_starts(cfg)
        self.stop_signal: int | None = None
        self._prev_handlers: dict[int, Any] = {}
        self.wandb_run = None

    # -- state ------------------------------------------------------------------
    def _fresh_state(self) -> None:
        cfg, m = self.cfg, self.model
        i = cfg.init
        self.gains = initialize(m, self.seeds, scheme=i.scheme, g=i.g,
                                g_range=None if i.g_range is None else list(i.g_range), gbar=i.gbar,
                                mean=i.mean, input_std=i.input_std, readout_std=i.readout_std,
                                bias_scale=i.bias_scale, readout_offset=i.readout_offset,
                                relax_steps=i.relax_steps)
        self.W0 = self._recurrent().detach().clone()
        self.gens = {s: member_generators(self.seeds, s) for s in ("train", "test", "floss")}
        self.epoch = 0                 # next training epoch to run
        self.floss_epoch = 0           # flossing epochs done (cumulative)
        self.next_episode = 0          # index into self.starts
        self.episode_step = 0          # flossing steps done in the current episode
        self.alive = torch.ones(self.R, dtype=torch.bool)
        self.diverged_at: list[int | None] = [None] * self.R
        self.frozen: dict[str, torch.Tensor] = {}
        self.timings = {"train_s": 0.0, "floss_s": 0.0, "diagnostics_s": 0.0}
        self.wandb_id = uuid.uuid4().hex[:12]
        self.recorder = Recorder(self.run_id)
        self.recorder.add(0, "init_g", self.gains)
        self._make_optimizers()

    def _recurrent(self) -> torch.Tensor:
        return self.model.W if hasattr(self.model, "W") else self.model.U

    def _make_optimizers(self) -> None:
        o, f = self.cfg.optim, self.cfg.flossing
        names = dict(self.model.named_parameters())
        bad = [p for p in o.params if p not in names]
        if bad:
            raise C.ConfigError(f"optim.params has {bad}, which the model does not have; allowed: {sorted(names)}")
        self.train_params = [names[p] for p in o.params]
        if o.name == "adam":
            self.opt = torch.optim.Adam(self.train_params, lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                        fused=_fused_ok(self.train_params))
        else:
            self.opt = torch.optim.SGD(self.train_params, lr=o.lr)
        self.floss_opt = None
        if f.schedule != "none":
            try:
                self.floss_params = flossing_parameters(self.model, f.params)
            except ValueError as e:
                raise C.ConfigError(str(e)) from e
            self.floss_opt = torch.optim.Adam(self.floss_params, lr=f.lr, fused=_fused_ok(self.floss_params))

    def _inputs(self, gens: list[torch.Generator], T: int) -> torch.Tensor:
        """One input sequence per member, ``[T, R, S]``, from ``flossing.input``: the task's
        input distribution, or ``gaussian`` x ~ N(0, 1) (Fig 1). Used by flossing and by the
        Lyapunov diagnostics, so both see the same input statistics."""
        if self.cfg.flossing.input == "gaussian":
            x = torch.stack([torch.randn(T, self.task.n_in, generator=g, dtype=torch.float64) for g in gens], 1)
            return x.to(device=self.device, dtype=self.dtype)
        return self.task.sample_inputs(gens, batch_size=1, seq_len=T, device=self.device, dtype=self.dtype)[:, :, 0]

    def _lyap_inputs(self) -> torch.Tensor:
        """Fixed diagnostic sequence ``[T, R, S]`` (one per member, stream ``lyap``)."""
        return self._inputs(member_generators(self.seeds, "lyap"), int(self.cfg.diagnostics.lyap_seq_len))

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        state = {
            "model": self.model.state_dict(), "W0": self.W0, "gains": self.gains,
            "opt": self.opt.state_dict(),
            "floss_opt": None if self.floss_opt is None else self.floss_opt.state_dict(),
            "gens": {k: [g.get_state() for g in v] for k, v in self.gens.items()},
            "epoch": self.epoch, "floss_epoch": self.floss_epoch, "next_episode": self.next_episode,
            "episode_step": self.episode_step, "alive": self.alive, "diverged_at": self.diverged_at,
            "frozen": self.frozen, "timings": self.timings, "wandb_id": self.wandb_id,
            "rows": self.recorder.rows,
        }
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_path)

    def _load_checkpoint(self) -> None:
        st = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        self._fresh_state()
        self.model.load_state_dict(st["model"])
        self.W0, self.gains = st["W0"], st["gains"]
        self.opt.load_state_dict(st["opt"])
        if self.floss_opt is not None and st["floss_opt"] is not None:
            self.floss_opt.load_state_dict(st["floss_opt"])
        for k, states in st["gens"].items():
            for g, s in zip(self.gens[k], states):
                g.set_state(s)
        for k in ("epoch", "floss_epoch", "next_episode", "episode_step", "alive", "diverged_at",
                  "frozen", "timings", "wandb_id"):
            setattr(self, k, st[k])
        self.recorder = Recorder(self.run_id, st["rows"])

    # -- signals ----------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGTERM and _is_submitit_bypass(self._prev_handlers.get(signum)):
            # In a submitit job SIGTERM comes before a preemption's USR2 (which requeues) or a
            # scancel's SIGKILL: checkpoint at the next step boundary and go on (as submitit does).
            # (the flag before the log line: a USR2 handled while this one logs must not be
            # overwritten; _check_stop also gives a stopping signal precedence)
            if self.stop_signal is None:
                self.stop_signal = signum
                log.warning("received SIGTERM in a submitit job: checkpointing at the next step boundary, going on")
            return
        if self._hard_stop is None:
            log.warning("received %s: checkpointing at the next step boundary", signal.Signals(signum).name)
        self._hard_stop = self.stop_signal = signum

    def _install_signals(self) -> None:
        self._hard_stop: int | None = None  # a signal that stops the run (stop_signal alone: checkpoint only)
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                self._prev_handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass

    def _restore_signals(self) -> None:
        for sig, h in self._prev_handlers.items():
            try:
                signal.signal(sig, h)
            except (ValueError, TypeError):
                pass
        self._prev_handlers.clear()

    def _check_stop(self) -> None:
        if self.stop_signal is None:
            return
        self.save_checkpoint()
        self._write_metrics()
        if self._hard_stop is None:  # checkpoint only (see _on_signal)
            self.stop_signal = None
            if self._hard_stop is not None:  # a stop arrived meanwhile
                self.stop_signal = self._hard_stop
            self._write_summary("running")
            log.warning("checkpoint written at epoch %d", self.epoch)
            return
        self.stop_signal = self._hard_stop  # the stopping signal is the one to chain (USR2: requeue)
        raise StopRequested(signal.Signals(self.stop_signal).name)

    # -- phases -----------------------------------------------------------------
    def _kill(self, bad: torch.Tensor, epoch: int, why: str) -> None:
        """Mark members ``bad: [R] bool`` diverged and freeze their parameters."""
        newly = bad & self.alive
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

    def _hold_dead(self) -> None:
        if self.alive.all():
            return
        dead = (~self.alive).to(self.device)
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p[dead] = self.frozen[name][dead]

    def _mask_grads(self, params, keep: torch.Tensor) -> None:
        keep = keep.to(self.device)
        for p in params:
            if p.grad is not None:
                p.grad.masked_fill_(~keep.view(-1, *([1] * (p.dim() - 1))), 0.0)

    def train_step(self, epoch: int) -> None:
        d = self.cfg.diagnostics
        batch = self.task.sample(self.gens["train"], device=self.device, dtype=self.dtype)
        self.opt.zero_grad(set_to_none=True)
        out = self.model(batch.inputs)
        loss = self.task.loss(out, batch)  # [R]
        finite = torch.isfinite(loss.detach()).cpu()
        self._kill(~finite, epoch, "non-finite training loss")
        keep = self.alive.to(self.device)
        torch.where(keep, loss, torch.zeros_like(loss)).sum().backward()
        self._mask_grads(self.train_params, self.alive)
        rec = self.recorder
        rec.add(epoch, "train_loss", loss.detach())
        if self.task.metric_name == "accuracy":
            rec.add(epoch, "train_accuracy", self.task.metric(out.detach(), batch))
        if d.grad_h0_every and epoch % int(d.grad_h0_every) == 0 and self.model.h0.grad is not None:
            rec.add(epoch, "grad_h0_norm", self.model.h0.grad.norm(dim=-1))
        if d.grad_sv_every and epoch % int(d.grad_sv_every) == 0:
            Wg = self._recurrent().grad
            if Wg is not None:
                rec.add_vectors(epoch, "grad_W_sv", torch.linalg.svdvals(Wg.detach()))
        if self.cfg.optim.clip_grad_norm is not None:
            clip_grad_norm_per_member(self.train_params, float(self.cfg.optim.clip_grad_norm))
        self.opt.step()
        self._hold_dead()

    def floss_step(self) -> None:
        f = self.cfg.flossing
        th, tq = C.lyap_transients(int(f.horizon), f.transient_h, f.transient_q)
        x = self._inputs(self.gens["floss"], int(f.horizon))
        self.floss_opt.zero_grad(set_to_none=True)
        loss, lam = flossing_objective(self.model, x, int(f.k), float(f.target), f.reduction,
                                       s_ons=int(f.s_ons), transient_h=th, transient_q=tq)
        finite = torch.isfinite(loss.detach()).cpu()
        self._kill(~finite, self.epoch, "non-finite flossing loss")
        keep = self.alive.to(self.device)
        torch.where(keep, loss, torch.zeros_like(loss)).sum().backward()
        self._mask_grads(self.floss_params, self.alive)
        for p in self.floss_params:
            if p.grad is not None:
                p.grad.nan_to_num_(0.0, 0.0, 0.0)
        self.floss_opt.step()
        self._hold_dead()
        self.recorder.add(self.floss_epoch, "floss_loss", loss.detach())
        self.recorder.add(self.floss_epoch, "floss_lambda_1", lam.detach()[:, 0])
        self.floss_epoch += 1

    @torch.no_grad()
    def lyapunov(self, epoch: int, metric: str) -> torch.Tensor:
        t0 = time.perf_counter()
        k = min(int(self.cfg.diagnostics.lyap_k), self.model.state_dim)
        lam = lyapunov_spectrum(self.model, self._lyap_x, k)
        bad = ~torch.isfinite(lam).all(-1).cpu()
        self._kill(bad, epoch, "non-finite Lyapunov exponents")
        self.recorder.add_vectors(epoch, metric, lam)
        self.timings["diagnostics_s"] += time.perf_counter() - t0
        return lam

    @torch.no_grad()
    def evaluate(self, epoch: int) -> None:
        t0 = time.perf_counter()
        d = self.cfg.diagnostics
        batch = self.task.sample(self.gens["test"], batch_size=int(d.eval_batch_size),
                                 device=self.device, dtype=self.dtype)
        out = self.model(batch.inputs)
        self.recorder.add(epoch, "test_loss", self.task.loss(out, batch))
        if self.task.metric_name == "accuracy":
            self.recorder.add(epoch, "test_accuracy", self.task.metric(out, batch))
        self.timings["diagnostics_s"] += time.perf_counter() - t0

    @torch.no_grad()
    def dw_stats(self, epoch: int) -> None:
        W = self._recurrent().detach()
        dW = W - self.W0
        s = torch.linalg.svdvals(dW)
        self.recorder.add_vectors(epoch, "dW_sv", s)
        self.recorder.add(epoch, "dW_effective_rank", effective_rank(s))
        rel = torch.linalg.matrix_norm(dW) / torch.linalg.matrix_norm(self.W0)
        self.recorder.add(epoch, "dW_rel_norm", rel)
        if hasattr(self.model, "W") and float(s[:, 0].max()) > 0:
            # alignment of the top singular vectors of dW with the input and readout directions:
            # the norm of the projection of u_1 / v_1 onto span(V) and span(w_r^T), in [0, 1]
            U, _, Vh = torch.linalg.svd(dW)
            u1, v1 = U[:, :, 0], Vh[:, 0, :]
            for name, vec in (("u1", u1), ("v1", v1)):
                for tgt, M in (("V", self.model.V.detach()), ("wr", self.model.w_r.detach().transpose(1, 2))):
                    Qm, _ = torch.linalg.qr(M)  # [R, N, S or O] orthonormal basis
                    proj = torch.einsum("rnj,rn->rj", Qm, vec).norm(dim=-1)
                    self.recorder.add(epoch, f"dW_align_{name}_{tgt}", proj)

    def run_episode(self) -> None:
        """Run (or continue) the flossing episode at ``self.starts[self.next_episode]``."""
        f = self.cfg.flossing
        if self.episode_step == 0:
            self.lyapunov(self.epoch, "lyap_before_floss")
        t0 = time.perf_counter()
        while self.episode_step < int(f.epochs):
            self.floss_step()
            self.episode_step += 1
            if self.stop_signal is not None:
                self.timings["floss_s"] += time.perf_counter() - t0
                self._check_stop()  # checkpoints; raises StopRequested unless it only checkpoints
                t0 = time.perf_counter()
        self.timings["floss_s"] += time.perf_counter() - t0
        self.lyapunov(self.epoch, "lyap_after_floss")
        self.next_episode += 1
        self.episode_step = 0
        log.info("flossing episode at epoch %d done: lambda_1 = %s", self.epoch,
                 _fmt(self._last("lyap_after_floss", 1)))

    def _last(self, metric: str | tuple[str, ...], index: int | None = None) -> list[float]:
        """The latest value of ``metric`` (or of any of several) per member."""
        metrics = (metric,) if isinstance(metric, str) else metric
        vals: dict[int, float] = {}
        for r, e, m, i, v in reversed(self.recorder.rows):
            if m in metrics and (index is None or i == index) and r not in vals:
                vals[r] = v
                if len(vals) == self.R:
                    break
        return [vals.get(r, float("nan")) for r in range(self.R)]

    # -- the loop -----------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(max(1, int(cfg.threads)))
        resumed = self.ckpt_path.exists()
        if resumed:
            self._load_checkpoint()
            log.info("resuming %s from epoch %d (flossing epoch %d)", self.run_dir, self.epoch, self.floss_epoch)
        else:
            self._fresh_state()
        self._lyap_x = self._lyap_inputs()
        self._start_wandb(resumed)
        self._install_signals()
        d, E = cfg.diagnostics, int(cfg.epochs)
        status = "running"
        t_start = time.perf_counter()
        bar = self._progress_bar()
        self._write_summary("running")
        try:
            if self.epoch == 0 and self.next_episode == 0 and self.episode_step == 0 and not resumed:
                self.evaluate(0)
                if d.lyap_every:
                    self.lyapunov(0, "lyap")
                if d.dw_every:
                    self.dw_stats(0)
            while True:
                while self.next_episode < len(self.starts) and self.starts[self.next_episode] == self.epoch:
                    if not self.alive.any():
                        break
                    self.run_episode()
                if self.epoch >= E or not self.alive.any():
                    break
                t0 = time.perf_counter()
                self.train_step(self.epoch)
                self.timings["train_s"] += time.perf_counter() - t0
                self.epoch += 1
                e = self.epoch
                if d.eval_every and (e % int(d.eval_every) == 0 or e == E):
                    self.evaluate(e)
                if d.lyap_every and (e % int(d.lyap_every) == 0 or e == E):
                    self.lyapunov(e, "lyap")
                if d.dw_every and (e % int(d.dw_every) == 0 or e == E):
                    self.dw_stats(e)
                self._report(bar, e)
                if cfg.checkpoint_every and e % int(cfg.checkpoint_every) == 0:
                    self.save_checkpoint()
                self._check_stop()
            status = "complete" if self.alive.all() else ("diverged" if not self.alive.any() else "complete_partial")
        except StopRequested as s:
            status = "interrupted"
            self._finish(status, t_start, bar)
            log.warning("stopped by %s at epoch %d; rerun the same command to resume", s, self.epoch)
            self._chain_signal()
            raise
        self.save_checkpoint()
        summary = self._finish(status, t_start, bar)
        return summary

    def _chain_signal(self) -> None:
        """Hand the stop signal to whoever handled it before us (e.g. submitit's requeue)."""
        sig = self.stop_signal
        prev = self._prev_handlers.get(sig)
        self._restore_signals()
        if callable(prev) and prev not in (signal.default_int_handler,):
            prev(sig, None)

    def _finish(self, status: str, t_start: float, bar) -> dict:
        self.timings["total_s"] = self.timings.get("total_s", 0.0) + time.perf_counter() - t_start
        if bar is not None:
            bar.close()
        self._write_metrics()
        summary = self._write_summary(status)
        if self.wandb_run is not None:
            self.wandb_run.summary.update({"status": status, **{f"final/{k}": v for k, v in summary["final_mean"].items()}})
            self.wandb_run.finish(exit_code=0 if status != "interrupted" else 1)
            self.wandb_run = None
        if status != "interrupted":
            self._restore_signals()
        return summary

    # -- outputs ----------------------------------------------------------------
    def _write_metrics(self) -> None:
        df = self.recorder.frame(self.columns)
        tmp = self.run_dir / "metrics.parquet.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, self.run_dir / "metrics.parquet")

    def _final(self) -> dict[str, list[float]]:
        out = {"train_loss": self._last("train_loss"), "test_loss": self._last("test_loss")}
        if self.task.metric_name == "accuracy":
            out["test_accuracy"] = self._last("test_accuracy")
        out["lambda_1"] = self._last(("lyap", "lyap_after_floss"), 1)
        return out

    def _write_summary(self, status: str) -> dict:
        final = self._final()
        members = []
        for r in range(self.R):
            members.append({
                "member": r, "seed": self.seeds[r], "g": float(self.gains[r]),
                "status": "diverged" if self.diverged_at[r] is not None else "ok",
                "diverged_epoch": self.diverged_at[r],
                "final": {k: v[r] for k, v in final.items()},
            })
        fm = {k: _nanmean(v) for k, v in final.items()}
        summary = {
            "status": status, "run_id": self.run_id, "epochs_done": self.epoch, "epochs": int(self.cfg.epochs),
            "floss_epochs_done": self.floss_epoch, "columns": self.columns, "members": members,
            "final_mean": fm, "timings": self.timings, "device": str(self.device), "dtype": self.cfg.dtype,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "git_commit": git_commit(),
            "wandb_id": self.wandb_id,
        }
        tmp = self.run_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, default=_json_default))
        os.replace(tmp, self.run_dir / "summary.json")
        return summary

    def _progress_bar(self):
        mode = self.cfg.progress
        if mode == "none" or mode == "log" or (mode == "auto" and not sys.stderr.isatty()):
            return None
        from tqdm.auto import tqdm
        return tqdm(total=int(self.cfg.epochs), initial=self.epoch, desc=self.run_id[:30], unit="ep",
                    dynamic_ncols=True)

    def _report(self, bar, e: int) -> None:
        every = int(self.cfg.log_every or 0)
        due = bool(every) and (e % every == 0 or e == int(self.cfg.epochs))
        if not due and (bar is None or e % 10):
            return
        info = {"loss": f"{_nanmean(self._last('train_loss')):.4g}"}
        if self.task.metric_name == "accuracy":
            info["acc"] = f"{_nanmean(self._last('train_accuracy')):.3f}"
        l1 = _nanmean(self._last("lyap", 1))
        if not math.isnan(l1):
            info["lambda_1"] = f"{l1:.3f}"
        if bar is not None:
            bar.update(e - bar.n)
            bar.set_postfix(info, refresh=False)
        if due:
            if bar is None:
                log.info("epoch %d/%d %s alive %d/%d", e, int(self.cfg.epochs),
                         " ".join(f"{k} {v}" for k, v in info.items()), int(self.alive.sum()), self.R)
            self._log_wandb(e)

    # -- W&B ----------------------------------------------------------------------
    def _start_wandb(self, resumed: bool) -> None:
        lg = self.cfg.logger
        if lg.name != "wandb":
            return
        import wandb
        mode = os.environ.get("WANDB_MODE", lg.mode)
        self.wandb_run = _GuardedRun(wandb.init(
            project=lg.project, entity=lg.entity, mode=mode, dir=str(self.run_dir),
            id=self.wandb_id, resume="allow", name=self.run_id,
            group=str(self.cfg.experiment_name), job_type=str(self.cfg.flossing.schedule),
            tags=list(lg.tags) + [f"scale={self.cfg.scale.name}", f"task={self.cfg.task.name}"],
            config=OmegaConf.to_container(self.cfg, resolve=True),
            settings=wandb.Settings(silent=True, console="off"),
        ))
        self._wandb_logged = 0

    def _log_wandb(self, epoch: int) -> None:
        """Send every row recorded since the last call (per member, and the member mean)."""
        if self.wandb_run is None:
            return
        rows = self.recorder.rows[self._wandb_logged:]
        self._wandb_logged = len(self.recorder.rows)
        data: dict[str, float] = {}
        sums: dict[str, list[float]] = {}
        for r, e, m, i, v in rows:
            key = m if i is None else f"{m}_{i}"
            if i is not None and i > 3 and not m.startswith("lyap"):
                continue  # keep singular-value spectra in the table, not on the dashboard
            data[f"{key}/member{r}"] = v
            sums.setdefault(key, []).append(v)
        for k, vs in sums.items():
            data[f"{k}/mean"] = _nanmean(vs)
        data["epoch"] = epoch
        data["alive"] = int(self.alive.sum())
        self.wandb_run.log(data)


class _GuardedRun:
    """A W&B run whose calls log a warning instead of raising once its service has died.

    SLURM signals every process of a job step: the SIGTERM of a preemption, a scancel or a
    time limit kills W&B's ``wandb-core`` service while the run still has to checkpoint
    (and be requeued). The resumed run continues the same W&B run (same id).
    """

    def __init__(self, run):
        self.run, self.dead = run, False
        self.summary = self

    def _call(self, fn, *args, **kwargs):
        if self.dead:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # W&B never stops the training
            self.dead = True
            log.warning("W&B logging stops for this process (%s: %s); a resumed run continues the W&B run",
                        type(e).__name__, e)
            return None

    def log(self, data):
        return self._call(self.run.log, data)

    def update(self, data):  # run.summary.update
        return self._call(self.run.summary.update, data)

    def finish(self, **kwargs):
        return self._call(self.run.finish, **kwargs)


def _is_submitit_bypass(handler) -> bool:
    """Whether ``handler`` is submitit's SIGTERM handler in a job (it only logs the signal)."""
    owner = getattr(handler, "__self__", None)
    return getattr(handler, "__name__", "") == "bypass" and type(owner).__module__.startswith("submitit")


def _nanmean(v) -> float:
    v = [x for x in v if x is not None and not math.isnan(x)]
    return sum(v) / len(v) if v else float("nan")


def _fmt(v: list[float]) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in v) + "]"


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)
