"""Checkpoints and stop signals of a job.

A checkpoint is one ``torch.save`` of the job's state (model, optimizers, random streams,
counters, the table recorder's part count and latest values: never the rows), written to
a temporary name and renamed, so ``checkpoint.pt`` is always complete. An unreadable one
raises :class:`~flossrepro.errors.CheckpointError` naming the file and the fix.

:class:`StopSignals` turns SIGTERM / SIGUSR1 / SIGUSR2 / SIGINT into a flag the job checks at
step boundaries: it checkpoints there and stops (or, for the SIGTERM that submitit sends
before a preemption's USR2, only checkpoints and goes on), then hands the signal to whoever
handled it before (submitit's requeue).
"""
from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import torch

from flossrepro.errors import CheckpointError
from flossrepro.store.summary import removed_on_failure

log = logging.getLogger("flossrepro")

STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")


class StopRequested(Exception):
    """A stop signal arrived; the state was checkpointed."""


def save(path: str | Path, state: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with removed_on_failure(tmp):
        torch.save(state, tmp)
        os.replace(tmp, path)


def load(path: str | Path, device) -> dict:
    path = Path(path)
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as e:
        raise CheckpointError(
            f"{path} is unreadable ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'no detail'}); "
            f"it was cut short or corrupted: move it away and rerun the same command to restart this run from "
            f"epoch 0 (its tables are redone), or restore the file from a copy") from e


def restore_error(path: str | Path, e: Exception) -> CheckpointError:
    """A checkpoint that loads but does not fit the job (another configuration or version)."""
    return CheckpointError(f"{path} does not fit this run ({type(e).__name__}: {str(e).strip().splitlines()[0]}); "
                           f"it was written by another configuration: run into a fresh directory, or move the "
                           f"checkpoint away to restart this run from epoch 0")


class StopSignals:
    """Stop requests from signals, checked by the job at step boundaries."""

    def __init__(self) -> None:
        self.stop: int | None = None    # a signal arrived: checkpoint at the next boundary
        self.hard: int | None = None    # ... and stop (None: checkpoint only, submitit's SIGTERM)
        self._prev: dict[int, Any] = {}

    @property
    def pending(self) -> bool:
        return self.stop is not None

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGTERM and _is_submitit_bypass(self._prev.get(signum)):
            # In a submitit job SIGTERM comes before a preemption's USR2 (which requeues) or a
            # scancel's SIGKILL: checkpoint at the next step boundary and go on (as submitit does).
            # (the flag before the log line: a USR2 handled while this one logs must not be
            # overwritten; take() also gives a stopping signal precedence)
            if self.stop is None:
                self.stop = signum
                log.warning("received SIGTERM in a submitit job: checkpointing at the next step boundary, going on")
            return
        if self.hard is None:
            log.warning("received %s: checkpointing at the next step boundary", signal.Signals(signum).name)
        self.hard = self.stop = signum

    def install(self) -> None:
        self.stop = self.hard = None
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                self._prev[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass

    def restore(self) -> None:
        for sig, h in self._prev.items():
            try:
                signal.signal(sig, h)
            except (ValueError, TypeError):
                pass
        self._prev.clear()

    def take(self) -> bool:
        """After the job checkpointed for a pending request: True when it must stop now."""
        if self.hard is None:           # checkpoint only (see _on_signal)
            self.stop = None
            if self.hard is not None:   # a stopping signal arrived meanwhile
                self.stop = self.hard
            return False
        self.stop = self.hard           # the stopping signal is the one to chain (USR2: requeue)
        return True

    def chain(self) -> None:
        """Hand the stop signal to whoever handled it before us (e.g. submitit's requeue)."""
        sig = self.stop
        prev = self._prev.get(sig)
        self.restore()
        if callable(prev) and prev not in (signal.default_int_handler,):
            prev(sig, None)

    @property
    def name(self) -> str:
        return signal.Signals(self.stop).name if self.stop is not None else ""


def _is_submitit_bypass(handler) -> bool:
    """Whether ``handler`` is submitit's SIGTERM handler in a job (it only logs the signal)."""
    owner = getattr(handler, "__self__", None)
    return getattr(handler, "__name__", "") == "bypass" and type(owner).__module__.startswith("submitit")
