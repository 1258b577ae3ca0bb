"""The one trainer (``job=train``): task training, flossing episodes and diagnostics as phases of one loop.

An epoch is one minibatch of fresh data (SPEC). Flossing episodes start before the
training step of the epochs the schedule names (``flossing.episodes_at``; an episode at
``epochs`` runs after training). The run directory, tables, checkpoints, signals and W&B
come from :class:`flossrepro.jobs.base.Job`; the measurements from
:class:`flossrepro.jobs.diagnostics.Diagnostics`; the step itself is
:func:`flossrepro.engine.flossing.train_step` (the one ``make bench`` times).
"""
from __future__ import annotations

import logging
import math
import time

import torch

from flossrepro.store import config as C
from flossrepro.store.checkpoint import StopRequested  # noqa: F401  (re-exported)
from flossrepro.engine.flossing import flossing_parameters
from flossrepro.jobs.base import Job, adam
from flossrepro.jobs.sinks import Progress
from flossrepro.store.summary import nanmean
from flossrepro.engine.flossing import train_step

log = logging.getLogger("flossrepro")

__all__ = ["Trainer", "StopRequested"]


class Trainer(Job):
    """Trains an ensemble on its task (see the module docstring)."""

    NEEDS_EPOCHS = True

    def make_optimizers(self) -> None:
        o = self.cfg.optim
        try:  # the same names as flossing.params (U stands in for W in an LSTM)
            self.train_params = flossing_parameters(self.model, o.params)
        except ValueError as e:
            raise C.ConfigError(str(e).replace("flossing.params", "optim.params")) from e
        if o.name == "adam":
            self.opt = adam(self.train_params, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
        else:
            self.opt = torch.optim.SGD(self.train_params, lr=o.lr, momentum=float(o.get("momentum", 0.0)))
        super().make_optimizers()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, st: dict) -> None:
        super().load_state_dict(st)
        self.opt.load_state_dict(st["opt"])

    def train_step(self, epoch: int) -> None:
        batch = self.task.sample(self.gens["train"], device=self.device, dtype=self.dtype)
        clip = self.cfg.optim.clip_grad_norm
        loss, out = train_step(self.model, self.task, batch, self.opt, self.train_params,
                               clip=None if clip is None else float(clip),
                               keep=self.keep(epoch, "non-finite training loss"),
                               on_gradients=lambda: self.diag.on_gradients(epoch))
        self.hold_dead()
        self.recorder.add(epoch, "train_loss", loss)
        if self.task.metric_name == "accuracy":
            self.recorder.add(epoch, "train_accuracy", self.task.metric(out, batch))

    def loop(self, progress: Progress, fresh: bool) -> None:
        E, every = int(self.cfg.epochs), int(self.cfg.checkpoint_every or 0)
        starts = self.starts
        if fresh:
            self.diag.at_start()
        while True:
            while self.next_episode < len(starts) and starts[self.next_episode] == self.epoch and self.alive.any():
                self.run_episode()
            if self.epoch >= E or not self.alive.any():
                return
            t0 = time.perf_counter()
            self.train_step(self.epoch)
            self.timings["train_s"] += time.perf_counter() - t0
            self.epoch += 1
            self.diag.after_epoch(self.epoch, E)
            progress.update(self.epoch, self.describe)
            if progress.due(self.epoch):
                self.log_wandb(self.epoch)
            if every and self.epoch % every == 0:
                self.checkpoint()
            self.maybe_pause(self.epoch)
            self.check_stop()

    def progress_info(self) -> dict[str, str]:
        rec = self.recorder
        info = {"loss": f"{nanmean(rec.latest('train_loss')):.4g}"}
        if self.task.metric_name == "accuracy":
            info["acc"] = f"{nanmean(rec.latest('train_accuracy')):.3f}"
        l1 = nanmean(rec.latest("lyap", 1))
        if not math.isnan(l1):
            info["lambda_1"] = f"{l1:.3f}"
        return info

    def final(self) -> dict[str, list[float]]:
        rec = self.recorder
        out = {"train_loss": rec.latest("train_loss"), "test_loss": rec.latest("test_loss")}
        if self.task.metric_name == "accuracy":
            out["test_accuracy"] = rec.latest("test_accuracy")
        return {**out, **super().final()}
