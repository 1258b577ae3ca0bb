"""``python -m flossrepro [overrides]``: one run, or a sweep with ``-m`` / ``+experiment=``."""
from __future__ import annotations

import json
import logging
import shutil
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import native
from .config import ConfigError  # also registers the by_scale resolver
from .launcher import finished_summary, register_configs
from .job import StopRequested, make_job
from .trainer import git_commit

log = logging.getLogger("flossrepro")

# settings recorded as columns of every run's table (plus whatever the command line sets)
KEY_COLUMNS = ["experiment_name", "scale.name", "flossing.schedule", "task.name", "task.delay",
               "arch.name", "arch.n_hidden", "init.scheme", "init.g", "flossing.k", "flossing.target",
               "optim.name", "seed", "members", "epochs"]
SKIP_OVERRIDES = ("hydra", "progress", "log_every", "device", "threads", "logger", "scale", "experiment")


def run_columns(cfg: DictConfig, hc) -> dict:
    """The run's settings as table columns: the key settings and every command-line override."""
    cols = {}
    keys = list(KEY_COLUMNS)
    for ov in hc.overrides.task:
        key = ov.split("=", 1)[0].lstrip("+~")
        if key.split(".")[0].split("/")[0] not in SKIP_OVERRIDES and key not in keys:
            keys.append(key)
    for key in keys:
        if key in hc.runtime.choices and hc.runtime.choices[key] is not None:
            cols[key] = hc.runtime.choices[key]
            continue
        v = OmegaConf.select(cfg, key, default=None)
        if isinstance(v, DictConfig) or OmegaConf.is_list(v):
            v = json.dumps(OmegaConf.to_container(v, resolve=True))
        cols[key] = v
    return cols


_already_complete = finished_summary  # summary.json says complete/partial/diverged, and checkpoint.pt exists


def _clean_failed_start(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but what Hydra wrote before validation."""
    if not (run_dir / "checkpoint.pt").exists() and not (run_dir / "metrics.parquet").exists():
        shutil.rmtree(run_dir, ignore_errors=True)


def _print_summary(s: dict, run_dir: Path) -> None:
    fm = " ".join(f"{k}={v:.4g}" for k, v in s["final_mean"].items())
    t = s["timings"]
    print(f"[flossrepro] {s['status']}: {s['run_id']} epochs {s['epochs_done']}/{s['epochs']} "
          f"members {len(s['members'])} ({sum(m['status'] == 'ok' for m in s['members'])} ok) | "
          f"mean over members: {fm} | train {t['train_s']:.1f}s floss {t['floss_s']:.1f}s "
          f"total {t.get('total_s', 0):.1f}s | {run_dir}", flush=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    run_id = f"{cfg.experiment_name}/{cfg.scale.name}/{hc.job.override_dirname or 'default'}"
    done = _already_complete(run_dir)
    if done is not None:
        print(f"[flossrepro] already complete, skipping: {run_id} ({run_dir}); "
              f"delete that directory to run it again", flush=True)
        return done
    native.tune_allocator()  # reuse the epochs' large buffers instead of faulting them in again
    try:
        trainer = make_job(cfg, run_dir, run_id=run_id, columns=run_columns(cfg, hc))
    except ConfigError as e:
        _clean_failed_start(run_dir)
        if multirun:
            raise
        print(f"flossrepro: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        summary = trainer.run()
    except StopRequested:
        sys.exit(143)
    except Exception as e:  # a crashed run is recorded; in a sweep the other runs go on
        err = "".join(traceback.format_exception_only(type(e), e)).strip()
        (run_dir / "summary.json").write_text(json.dumps({
            "status": "failed", "run_id": run_id, "error": err, "traceback": traceback.format_exc(),
            "columns": trainer.columns, "git_commit": git_commit(),
            "slurm_job_id": __import__("os").environ.get("SLURM_JOB_ID")}, indent=2, default=str))
        log.error("run %s failed: %s", run_id, err)
        if multirun:
            return {"status": "failed", "run_id": run_id, "error": err}
        raise
    _print_summary(summary, run_dir)
    return summary


if __name__ == "__main__":
    register_configs()  # hydra/launcher=submitit_slurm -> flossrepro.launcher.SlurmLauncher's settings
    main()
