"""Jobs that train nothing: analyses of the networks' dynamics, on the same run directory,
tables, checkpoints, W&B and launchers as training (:class:`flossrepro.jobs.base.Job`).

``job=floss`` (:class:`FlossJob`, Fig 1): one flossing episode of ``flossing.epochs`` steps on
freshly initialised networks (no task training): ``lyap_before_floss``, then per flossing
epoch ``floss_loss`` and ``floss_lambda_1``, then ``lyap_after_floss``. Inputs follow
``flossing.input`` (``gaussian``: x ~ N(0, 1) with ``job.n_in`` channels; ``task``: the task's
inputs). Rows count flossing epochs; ``lyap_*`` rows sit at training epoch 0. Progress,
W&B and checkpoints (``checkpoint_every``) count flossing epochs.

A new analysis is a subclass of :class:`~flossrepro.jobs.base.Job` here (its ``loop``), and a yaml
in ``conf/job/`` naming it as ``_target_``.
"""
from __future__ import annotations

from flossrepro.jobs.base import Job
from flossrepro.jobs.sinks import Progress
from flossrepro.store.summary import nanmean

__all__ = ["FlossJob"]


class FlossJob(Job):
    """Flossing only (see the module docstring)."""

    unit = "floss-ep"
    NEEDS_FLOSSING = True

    def build_task(self):
        return super().build_task() if self.cfg.flossing.input == "task" else None

    @property
    def starts(self) -> list[int]:
        return [0]

    training_epochs = 0

    def progress_total(self) -> tuple[int, int]:
        return int(self.cfg.flossing.epochs), self.floss_epoch

    def loop(self, progress: Progress, fresh: bool) -> None:
        if self.next_episode == 0 and self.alive.any():
            self.run_episode(progress)

    def after_floss_step(self, progress: Progress | None) -> None:
        n, total = self.floss_epoch, int(self.cfg.flossing.epochs)
        if progress is not None:
            progress.update(n, self.describe)
            if progress.due(n):
                self.log_wandb(n)
        every = int(self.cfg.checkpoint_every or 0)
        if every and n % every == 0 and n < total:
            self.checkpoint()
        self.maybe_pause(n)

    def progress_info(self) -> dict[str, str]:
        return {"floss_loss": f"{nanmean(self.recorder.latest('floss_loss')):.4g}",
                "lambda_1": f"{nanmean(self.recorder.latest('floss_lambda_1')):.3f}"}

    def final(self) -> dict[str, list[float]]:
        return {"floss_loss": self.recorder.latest("floss_loss"), **super().final()}
