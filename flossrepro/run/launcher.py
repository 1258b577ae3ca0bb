"""SLURM sweeps that end: Hydra's submitit launcher plus skipping, lost-job detection and a wait bound.

``hydra/launcher=submitit_slurm`` (``conf/hydra/launcher/submitit_slurm.yaml``) targets
:class:`SlurmLauncher`. It submits a sweep as one SLURM job array exactly as Hydra's
``submitit_slurm`` launcher does (same sbatch options, same ``checkpoint()`` requeue on
preemption / time-out), and differs in how it waits:

* runs whose directory already holds a finished result (``summary.json`` says complete,
  plus ``checkpoint.pt``) are not submitted again;
* it polls result files and ``squeue`` instead of ``sacct``. Without SLURM accounting
  submitit cannot tell that a job killed from outside (``scancel``, OOM or node kill, a
  job that never started) is gone, and waits forever. Here a job that has left the queue
  without writing a result for ``lost_after_s`` seconds is reported *lost*;
* ``max_wait_min`` (optional) bounds the whole wait: jobs still unfinished then are
  cancelled (they checkpoint on SIGTERM, so rerunning the sweep resumes them) and
  reported lost.

A lost or failed job never stops the sweep: its run directory's ``summary.json`` gets
``status: lost`` (or ``failed``) and the error, the other jobs' results are returned
as usual, and the aggregator lists it.

The launcher's extra settings need their own structured config (the plugin's schema
rejects unknown keys), and Hydra instantiates launchers only under ``hydra_plugins.``
names: :func:`register_configs` stores both, and ``python -m flossrepro`` calls it before
Hydra composes anything.
"""
from __future__ import annotations

import getpass
import logging
import os
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf as _PluginSlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _PluginSlurmLauncher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

from flossrepro.store import rundir as _rundir  # noqa: E402  (also registers the run_leaf resolver for job configs)
from flossrepro.constants import DONE_STATUSES as DONE
from flossrepro.store.summary import read_json, write_json
# our yaml files share the plugin's config names on purpose (see conf/hydra/launcher/)
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/(submitit_slurm|submitit_local|joblib)' is validated against ConfigStore schema")


# Hydra instantiates launchers only from names under ``hydra_plugins.`` that its plugin scan
# found; register_configs() files SlurmLauncher (below) under this name.
PLUGIN_NAME = "hydra_plugins.flossrepro.SlurmLauncher"


@dataclass
class SlurmQueueConf(_PluginSlurmQueueConf):
    """The plugin's SLURM settings plus how long to wait for jobs (see the module docstring)."""

    _target_: str = PLUGIN_NAME
    # give up on jobs still unfinished this many minutes after submission (null: no bound)
    max_wait_min: Optional[float] = None
    # a job absent from squeue with no result file for this long is reported lost
    lost_after_s: float = 120.0
    # seconds between polls of the result files and squeue
    poll_s: float = 5.0
    # seconds between progress lines (pending/running/done counts) while nothing changes
    report_every_s: float = 30.0
    # the job time limit from the planner's estimate (flossrepro.run.plan), unless timeout_min is
    # given on the command line: ceil(time_margin * estimate + time_pad_min) minutes
    time_from_plan: bool = True
    time_margin: float = 2.0
    time_pad_min: float = 10.0


def register_configs() -> None:
    """Make ``hydra/launcher=submitit_slurm`` mean :class:`SlurmLauncher` with :class:`SlurmQueueConf`.

    Stores the config as ``hydra/launcher/submitit_slurm`` and the class as ``PLUGIN_NAME``.
    Hydra's plugin scan (re)runs the plugin's own registration, so scan first, then store.
    """
    from hydra.core.plugins import Plugins

    Plugins.instance().class_name_to_class[PLUGIN_NAME] = SlurmLauncher
    ConfigStore.instance().store(group="hydra/launcher", name="submitit_slurm", node=SlurmQueueConf,
                                 provider="flossrepro")


def mark_run(run_dir: Path, status: str, error: str, slurm_job_id: str | None, run_id: str | None,
             task_cfg: DictConfig | None = None) -> None:
    """Record ``status``/``error`` in a run's ``summary.json`` unless the run recorded an outcome itself."""
    sp = run_dir / "summary.json"
    s: dict[str, Any] = read_json(sp) or {}
    if s.get("status") in DONE or s.get("status") == "failed":
        return
    s.update(previous_status=s.get("status"), status=status, error=error)
    s["slurm_job_id"] = s.get("slurm_job_id") or slurm_job_id  # the job's own SLURM_JOB_ID if it started
    s.setdefault("run_id", run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    hydra_dir = run_dir / ".hydra"
    if task_cfg is not None and not (hydra_dir / "config.yaml").exists():
        # the job never started: write its config so that the aggregator lists it
        hydra_dir.mkdir(exist_ok=True)
        OmegaConf.save(task_cfg, hydra_dir / "config.yaml")
    write_json(sp, s)


def _queued_job_ids() -> dict[str, str] | None:
    """State (PENDING, RUNNING, ...) of each of this user's jobs that SLURM still holds, by id
    (``123`` / ``123_4``); None when squeue fails."""
    try:
        # %i is 123_4 for an array task, but a requeued task can show its own job id instead:
        # %F_%K (array job id, task id) names it the way submitit does either way
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T %F %K"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("squeue failed (%s); keep waiting", e)
        return None
    if out.returncode != 0:
        log.warning("squeue failed (exit %d: %s); keep waiting", out.returncode, out.stderr.strip()[-300:])
        return None
    states: dict[str, str] = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts:
            state = parts[1] if len(parts) > 1 else "UNKNOWN"
            states[parts[0]] = state
            if len(parts) >= 4 and parts[3].isdigit():
                states.setdefault(f"{parts[2]}_{parts[3]}", state)
    return states


def user_set_timeout(hydra_overrides: Sequence[str]) -> bool:
    """Whether the command line set the job time limit (``hydra.launcher.timeout_min=...``)."""
    return any(str(o).lstrip("+~").startswith("hydra.launcher.timeout_min=") for o in hydra_overrides)


def progress_line(states: dict[str, int], total: int, waited_s: float) -> str:
    """``SLURM sweep: 3 pending, 2 running, 5 done (1 failed, 0 lost) of 10; waited 2m05s``."""
    m, s = divmod(int(waited_s), 60)
    extra = ", ".join(f"{states.get(k, 0)} {k}" for k in ("failed", "lost"))
    return (f"SLURM sweep: {states.get('pending', 0)} pending, {states.get('running', 0)} running, "
            f"{states.get('done', 0)} done ({extra}) of {total}; waited {m}m{s:02d}s")


class SlurmLauncher(_PluginSlurmLauncher):
    """Hydra's submitit SLURM launcher that skips finished runs and never waits forever."""

    def __init__(self, max_wait_min: float | None = None, lost_after_s: float = 120.0, poll_s: float = 5.0,
                 report_every_s: float = 30.0, time_from_plan: bool = True, time_margin: float = 2.0,
                 time_pad_min: float = 10.0, **params: Any) -> None:
        super().__init__(**params)
        self.time_from_plan = bool(time_from_plan)
        self.time_margin = float(time_margin)
        self.time_pad_min = float(time_pad_min)
        self.report_every_s = float(report_every_s)
        self.max_wait_min = None if max_wait_min is None else float(max_wait_min)
        self.lost_after_s = float(lost_after_s)
        self.poll_s = max(0.2, float(poll_s))

    # -- the jobs' configs, as each job will see them ----------------------------------------
    def _job_config(self, overrides: Sequence[str], idx: int) -> DictConfig:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = idx
        return cfg

    @staticmethod
    def _describe(cfg: DictConfig) -> tuple[Path, str, DictConfig]:
        """``(run_dir, run_id, task_cfg)`` of a job config; needs HydraConfig set to it."""
        out = Path(str(OmegaConf.select(cfg, "hydra.sweep.dir"))) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        name = _rundir.leaf(cfg.hydra.job.override_dirname)
        run_id = f"{OmegaConf.select(cfg, 'experiment_name')}/{OmegaConf.select(cfg, 'scale.name')}/{name}"
        task_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        return out.absolute(), run_id, task_cfg

    def _return(self, cfg: DictConfig, overrides: Sequence[str], value: Any,
                task_cfg: DictConfig | None = None) -> JobReturn:
        ret = JobReturn(overrides=list(overrides), cfg=task_cfg, hydra_cfg=cfg, working_dir=os.getcwd(),
                        task_name=str(cfg.hydra.job.name), status=JobStatus.COMPLETED)
        ret.return_value = value
        return ret

    # -- launch -----------------------------------------------------------------------------------
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and self.hydra_context is not None
        num_jobs = len(job_overrides)
        assert num_jobs > 0
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))

        # what each job will be: its directory, and whether it already finished
        hc = HydraConfig.instance()
        saved = hc.cfg
        jobs_info: list[dict[str, Any]] = []
        results: list[JobReturn | None] = [None] * num_jobs
        try:
            for i, overrides in enumerate(job_overrides):
                cfg = self._job_config(overrides, initial_job_idx + i)
                hc.set_config(cfg)
                run_dir, run_id, task_cfg = self._describe(cfg)
                jobs_info.append(dict(cfg=cfg, run_dir=run_dir, run_id=run_id, task_cfg=task_cfg))
                done = _rundir.finished(run_dir)
                if done is not None:
                    results[i] = self._return(cfg, overrides, done, task_cfg)
        finally:
            hc.cfg = saved
        skipped = [i for i in range(num_jobs) if results[i] is not None]
        if skipped:
            log.info("%d of %d runs already finished, not submitted again (delete a run's directory to rerun it): %s",
                     len(skipped), num_jobs, ", ".join(jobs_info[i]["run_id"] for i in skipped))
        todo = [i for i in range(num_jobs) if results[i] is None]
        if not todo:
            return results  # type: ignore[return-value]

        # the executor, exactly as the plugin builds it
        init_params = {"folder": self.params["submitit_folder"]}
        specific_init_keys = {"max_num_timeout"}
        init_params.update(**{f"{self._EXECUTOR}_{x}": y for x, y in self.params.items() if x in specific_init_keys})
        init_keys = specific_init_keys | {"submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        params = {x if x in baseparams else f"{self._EXECUTOR}_{x}": y
                  for x, y in self.params.items() if x not in init_keys}
        limit = self._planned_timeout([jobs_info[i]["cfg"] for i in todo])
        if limit is not None:
            params["timeout_min"] = limit
        executor.update_parameters(**params)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        job_params = []
        for i in todo:
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(job_overrides[i]))}")
            job_params.append((list(job_overrides[i]), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        for i, job in zip(todo, jobs):
            log.info("\t#%d : SLURM job %s -> %s", initial_job_idx + i, job.job_id, jobs_info[i]["run_dir"])
        self._wait(dict(zip(todo, jobs)), jobs_info, job_overrides, results)
        return results  # type: ignore[return-value]

    def _planned_timeout(self, cfgs: list[DictConfig]) -> int | None:
        """The array's time limit (minutes) from the planner: the longest job's estimate with the
        margin; None (the configured ``timeout_min`` stays) when the user set ``timeout_min`` on the
        command line, ``time_from_plan`` is off, or a job cannot be priced."""
        if not self.time_from_plan or user_set_timeout(list(self.config.hydra.overrides.hydra)):
            return None
        from flossrepro.run import estimate as P

        model = P.find_model()
        hc = HydraConfig.instance()
        saved = hc.cfg
        try:
            est = []
            for cfg in cfgs:
                hc.set_config(cfg)
                est.append(P.estimate(cfg, model).seconds)
        except Exception as e:  # never stop a submission over an estimate
            log.warning("no time limit from the planner (%s); timeout_min=%s stays", e, self.params.get("timeout_min"))
            return None
        finally:
            hc.cfg = saved
        if not est or any(e is None for e in est):
            log.warning("no time limit from the planner (a job cannot be priced: no measured cost table?); "
                        "timeout_min=%s stays", self.params.get("timeout_min"))
            return None
        limit = P.slurm_time_limit_min(max(est), self.time_margin, self.time_pad_min)
        log.info("time limit %d min per job: the longest job's estimate %.1f min x %g + %g min "
                 "(hydra.launcher.timeout_min=<min> sets it by hand)", limit, max(est) / 60.0,
                 self.time_margin, self.time_pad_min)
        return limit

    def _wait_gone(self, job_ids: list[str], timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until none of ``job_ids`` is in squeue."""
        end = time.time() + timeout_s
        while time.time() < end:
            queued = _queued_job_ids()
            if queued is not None and not any(j in queued for j in job_ids):
                return
            time.sleep(self.poll_s)
        log.warning("cancelled jobs still in the queue after %.0fs: %s", timeout_s, ", ".join(job_ids))

    def _wait(self, jobs: dict, info: list[dict], job_overrides, results: list) -> None:
        """Fill ``results`` for every submitted job: its result, or failed / lost."""
        t0 = time.time()
        deadline = None if self.max_wait_min is None else t0 + 60.0 * self.max_wait_min
        gone_since: dict[int, float] = {}
        pending = set(jobs)

        def finish(i: int, status: str, error: str) -> None:
            job, inf = jobs[i], info[i]
            log.error("%s: %s (SLURM job %s): %s", status, inf["run_id"], job.job_id, error)
            try:
                mark_run(inf["run_dir"], status, error, job.job_id, inf["run_id"], inf["task_cfg"])
            except OSError as e:
                log.error("could not record %s in %s: %s", status, inf["run_dir"], e)
            results[i] = self._return(inf["cfg"], job_overrides[i], {
                "status": status, "run_id": inf["run_id"], "error": error, "slurm_job_id": job.job_id},
                inf["task_cfg"])
            pending.discard(i)

        last_report = [0.0, None]

        def report(queued: dict | None, now: float) -> None:
            counts = {"pending": 0, "running": 0, "done": 0, "failed": 0, "lost": 0}
            for i in jobs:
                if i not in pending:
                    st = getattr(results[i], "_return_value", None)
                    st = st.get("status") if isinstance(st, dict) else None
                    counts["done"] += 1
                    if st in ("failed", "lost", "invalid"):
                        counts["failed" if st != "lost" else "lost"] += 1
                    continue
                state = None
                if queued is not None:
                    state = queued.get(jobs[i].job_id) or queued.get(jobs[i].job_id.split("_")[0])
                counts["running" if state in ("RUNNING", "COMPLETING") else "pending"] += 1
            key = tuple(sorted(counts.items()))
            if key != last_report[1] or now - last_report[0] >= self.report_every_s:
                log.info(progress_line(counts, len(jobs), now - t0))
                last_report[0], last_report[1] = now, key

        while pending:
            for i in sorted(pending):
                job = jobs[i]
                if job.paths.result_pickle.exists():
                    try:
                        results[i] = job.results()[0]
                        pending.discard(i)
                    except Exception as e:  # the job's process failed outside our code
                        finish(i, "failed", f"{type(e).__name__}: {str(e).strip()[-1500:]}")
            if not pending:
                break
            queued = _queued_job_ids()
            now = time.time()
            report(queued, now)
            if queued is not None:
                for i in sorted(pending):
                    job = jobs[i]
                    if job.job_id in queued or job.job_id.split("_")[0] in queued:
                        gone_since.pop(i, None)
                        continue
                    first = gone_since.setdefault(i, now)
                    if now - first >= self.lost_after_s and not job.paths.result_pickle.exists():
                        finish(i, "lost", f"SLURM job {job.job_id} left the queue without a result "
                               f"(killed from outside: scancel, out of memory, node failure?); "
                               f"see {job.paths.stderr}; rerun the sweep to resume it from its checkpoint")
            if deadline is not None and now > deadline and pending:
                for i in sorted(pending):
                    jobs[i].cancel(check=False)
                # let them checkpoint (SIGTERM) and leave the queue before recording them
                self._wait_gone([jobs[i].job_id for i in pending], max(60.0, self.lost_after_s))
                for i in sorted(pending):
                    if jobs[i].paths.result_pickle.exists():
                        continue
                    finish(i, "lost", f"SLURM job {jobs[i].job_id} unfinished after max_wait_min="
                           f"{self.max_wait_min:g} min: cancelled (it checkpoints on SIGTERM; "
                           f"rerun the sweep to resume it)")
                continue  # collect the results of jobs that finished meanwhile
            if pending:
                time.sleep(self.poll_s)
        report(None, time.time()) if last_report[1] is not None else None
        lost = [i for i in jobs if isinstance(results[i]._return_value, dict)
                and results[i]._return_value.get("status") in ("lost", "failed")]
        if lost:
            log.error("%d of %d SLURM jobs ended without a result: %s", len(lost), len(jobs),
                      ", ".join(info[i]["run_id"] for i in lost))
