"""Where a job reports as it goes: progress lines (the rate and the time left) and the W&B
sink, which listens to the recorder and sends every metric per member and as a member mean."""

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf

from flossrepro.store.summary import nanmean

log = logging.getLogger("flossrepro")


def _duration(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Progress of a job over ``total`` units (epochs): a tqdm bar on a terminal, else log lines.

    ``progress``: ``auto`` (bar on a terminal, log lines otherwise), ``bar``, ``log``, ``none``;
    log lines every ``every`` units with the rate and the time left (measured in this process,
    so a resumed run's rate is its own).
    """

    def __init__(self, mode: str, every: int, total: int, initial: int, desc: str, unit: str = "ep"):
        self.total, self.every, self.unit = int(total), int(every or 0), unit
        self.start_n, self.t0 = int(initial), time.perf_counter()
        self.bar = None
        if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, initial=initial, desc=desc[:30], unit=unit, dynamic_ncols=True)
        self.quiet = mode == "none"

    def rate(self, n: int) -> float:
        dt = time.perf_counter() - self.t0
        return (n - self.start_n) / dt if dt > 0 and n > self.start_n else float("nan")

    def due(self, n: int) -> bool:
        return bool(self.every) and (n % self.every == 0 or n == self.total)

    def update(self, n: int, describe: Callable[[], tuple[dict[str, str], str]]) -> None:
        """Unit ``n`` is done; ``describe() -> (info, extra)`` is called only when a line or the
        bar is written (nothing is formatted on the other steps)."""
        if self.bar is not None:
            if n % 10 == 0 or n == self.total:
                self.bar.update(n - self.bar.n)
                self.bar.set_postfix(describe()[0], refresh=False)
            return
        if self.quiet or not self.due(n):
            return
        info, extra = describe()
        r = self.rate(n)
        left = (self.total - n) / r if r and math.isfinite(r) and r > 0 else float("nan")
        log.info("%s %d/%d %s%s | %.3g %s/s, %s left", "epoch" if self.unit == "ep" else self.unit, n, self.total,
                 " ".join(f"{k} {v}" for k, v in info.items()), extra, r, self.unit, _duration(left))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def online_or_offline(mode: str, timeout_s: float = 3.0) -> str:
    """``mode``, except that ``online`` without an API key (``WANDB_API_KEY`` or ~/.netrc) or
    without a connection to the W&B server becomes ``offline``, with one warning line (W&B itself
    would wait about 95 s, then fail the job); ``wandb sync`` uploads the offline run later."""
    if mode != "online":
        return mode
    import netrc
    import socket
    from urllib.parse import urlparse

    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = urlparse(url).hostname or "api.wandb.ai"
    port = urlparse(url).port or (443 if url.startswith("https") else 80)
    key = os.environ.get("WANDB_API_KEY")
    if not key:
        try:
            key = (netrc.netrc().authenticators(host) or (None, None, None))[2]
        except (OSError, netrc.NetrcParseError):
            key = None
    why = None if key else "no W&B API key (WANDB_API_KEY or wandb login)"
    if why is None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as e:
            why = f"no connection to {host}:{port} ({type(e).__name__})"
    if why is None:
        return mode
    print(f"[flossrepro] warning: W&B mode online but {why}; logging offline instead "
          f"(upload later with wandb sync <run dir>/wandb)", file=sys.stderr, flush=True)
    return "offline"


class WandbSink:
    """Sends the recorder's metrics to Weights & Biases (offline by default).

    Every record is kept until the next :meth:`log`, per member (``metric/memberR``) and as
    the member mean (``metric/mean``); spectra beyond the third value stay in the tables
    (Lyapunov spectra are sent whole). A failing W&B service never stops the job.
    """

    def __init__(self, cfg, run_dir: Path, run_id: str, wandb_id: str):
        import wandb

        lg = cfg.logger
        mode = online_or_offline(os.environ.get("WANDB_MODE", lg.mode))
        self.run = _GuardedRun(wandb.init(
            project=lg.project, entity=lg.entity, mode=mode, dir=str(run_dir),
            id=wandb_id, resume="allow", name=run_id,
            group=str(cfg.experiment_name), job_type=f"{cfg.job.name}:{cfg.flossing.schedule}" if "job" in cfg else str(cfg.flossing.schedule),
            tags=list(lg.tags) + [f"scale={cfg.scale.name}", f"task={cfg.task.name}"],
            config=OmegaConf.to_container(cfg, resolve=True),
            settings=wandb.Settings(silent=True, console="off"),
        ))
        self.data: dict[str, float] = {}
        self.sums: dict[str, list[float]] = {}

    def observe(self, epoch: int, metric: str, index, values) -> None:
        """Recorder listener: ``values`` is ``[R]`` (index None) or ``[R, n]``."""
        if values.ndim == 1:
            cols = [(metric, values)]
        else:
            n = values.shape[1] if metric.startswith("lyap") else min(3, values.shape[1])
            cols = [(f"{metric}_{i + 1}", values[:, i]) for i in range(n)]
        for key, v in cols:
            vs = v.tolist()
            for r, x in enumerate(vs):
                self.data[f"{key}/member{r}"] = x
            self.sums[key] = vs

    def log(self, epoch: int, alive: int) -> None:
        data = dict(self.data)
        for k, vs in self.sums.items():
            data[f"{k}/mean"] = nanmean(vs)
        data["epoch"], data["alive"] = epoch, alive
        self.run.log(data)
        self.data.clear()
        self.sums.clear()

    def finish(self, status: str, final_mean: dict) -> None:
        self.run.update({"status": status, **{f"final/{k}": v for k, v in final_mean.items()}})
        self.run.finish(exit_code=0 if status != "interrupted" else 1)


class _GuardedRun:
    """A W&B run whose calls log a warning instead of raising once its service has died.

    SLURM signals every process of a job step: the SIGTERM of a preemption, a scancel or a
    time limit kills W&B's ``wandb-core`` service while the run still has to checkpoint
    (and be requeued). The resumed run continues the same W&B run (same id).
    """

    def __init__(self, run):
        self.run, self.dead = run, False

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
