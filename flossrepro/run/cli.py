"""The ``flossrepro`` command (also ``python -m flossrepro``): one run, or a sweep.

Before Hydra makes any directory, the command composes the config of every job the command
means (one, or each job of a ``-m`` / ``+experiment=`` sweep) and checks it: the settings
(:func:`flossrepro.store.config.validate`), the run directory (in use by another process? made by
a run with other settings?). A single run with a bad setting stops there with one line
``flossrepro: error: ...`` and exit status 2, having created and changed nothing.

In a sweep, a job whose settings cannot work is recorded in its own run directory as
``invalid`` with the message, a job that crashes as ``failed``; the other jobs go on, the
sweep's tables are aggregated at the end, and the exit status is 0 only when every job
finished. SIGTERM/SIGINT to the sweep stop it: running jobs checkpoint, the rest wait for a
rerun of the same command, which resumes. See ``flossrepro --help``.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from flossrepro.store import config as C
from flossrepro.store import limits
from flossrepro.store import rundir as RD
from flossrepro.run import compose
from flossrepro.run import sweep as SW
from flossrepro.run.compose import PROG, UsageError, parse_check
from flossrepro.constants import RUN_NAME_EXCLUDE_KEYS
from flossrepro.errors import ConfigError, FlossreproError
from flossrepro.store.summary import update_summary, write_status_in_place

log = logging.getLogger("flossrepro")

# settings recorded as columns of every run's table (plus whatever the command line sets)
KEY_COLUMNS = ["experiment_name", "scale.name", "flossing.schedule", "task.name", "task.delay",
               "arch.name", "arch.n_hidden", "init.scheme", "init.g", "flossing.k", "flossing.target",
               "optim.name", "seed", "members", "epochs"]

# Hydra's own flags: handed to Hydra unchanged (no checks, no runs)
HYDRA_FLAGS = {"--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
               "--resolve", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
               "--config-dir", "-cd", "--experimental-rerun"}


# -- the job, in the process Hydra runs it in -----------------------------------------------------
def run_columns(cfg: DictConfig, hc) -> dict:
    """The run's settings as table columns: the key settings and every command-line override."""
    cols = {}
    keys = list(KEY_COLUMNS)
    for ov in hc.overrides.task:
        key = ov.split("=", 1)[0].lstrip("+~")
        if key.split(".")[0] not in RUN_NAME_EXCLUDE_KEYS and key not in RUN_NAME_EXCLUDE_KEYS and key not in keys:
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


def _write_hydra_record(run_dir: Path, cfg: DictConfig, overrides: list[str]) -> None:
    """``.hydra/config.yaml`` and ``overrides.yaml`` of a new run (an existing record is kept)."""
    d = run_dir / ".hydra"
    if (d / "config.yaml").exists():
        return
    d.mkdir(exist_ok=True)
    task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.save(task_cfg, d / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), d / "overrides.yaml")


_created_run_dir: str | None = None  # the run directory a single run's checks found missing (Hydra makes it)


def _remove_unstarted(run_dir: Path, ctrl: "SW.Control | None") -> None:
    """A job that never started leaves no directory behind when this command made it (a sweep's
    new directory, or a single run's directory that did not exist before its checks)."""
    made = ctrl.is_new(run_dir) if ctrl is not None else os.path.realpath(run_dir) == _created_run_dir
    if not made:
        return
    for name in (RD.LOCK_FILE, RD.RUN_RECORD, ".hydra/config.yaml", ".hydra/overrides.yaml"):
        p = run_dir / name
        if p.is_file():
            p.unlink()
    for d in (run_dir / ".hydra", run_dir):
        try:
            d.rmdir()
        except OSError:
            pass


_stop_seen: int | None = None


def _hold_stop_signals() -> None:
    """In a sweep worker: SIGTERM/SIGINT outside a running job only raise a flag (the job installs
    its own handlers, which checkpoint, while it runs)."""
    import signal

    def flag(signum, frame):
        global _stop_seen
        _stop_seen = signum

    from flossrepro.store.checkpoint import _is_submitit_bypass

    for s in (signal.SIGTERM, signal.SIGINT):
        if _is_submitit_bypass(signal.getsignal(s)):
            continue  # a SLURM job: submitit's handler stays (the job checkpoints on it and goes on)
        signal.signal(s, flag)


def task(cfg: DictConfig):
    """Hydra's task function: one job in its run directory (see the module docstring)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from flossrepro.engine import native
    from flossrepro.jobs.base import StopRequested, make_job

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    run_id = f"{cfg.experiment_name}/{cfg.scale.name}/{RD.leaf(hc.job.override_dirname)}"
    overrides = list(hc.overrides.task)
    ctrl = SW.Control.from_env() if multirun else None

    def refuse(msg: str, status: str | None = None):
        if not multirun:
            print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)
            sys.exit(2)
        log.error("%s: %s", run_id, msg)
        return {"status": status or "refused", "run_id": run_id, "error": msg}

    if ctrl is not None:
        _hold_stop_signals()  # a SIGTERM before the job's own handler is installed must not kill the worker
        SW.die_with_parent()  # a sweep killed with SIGKILL leaves no worker behind
        ctrl.register()
        if ctrl.stopped():
            ctrl.unregister()
            _remove_unstarted(run_dir, ctrl)
            return {"status": "not started", "run_id": run_id}
    lock = None
    try:
        try:
            lock = RD.RunLock(run_dir).acquire()
            ident = RD.identity_config(cfg)
            RD.check_identity(run_dir, ident, "hydra.sweep.dir=<another dir>" if multirun else
                              "hydra.run.dir=<another dir>")
        except RD.RunDirError as e:
            if not multirun and lock is not None:
                _remove_unstarted(run_dir, None)
            return refuse(str(e))
        done = RD.finished(run_dir)
        if done is not None and (run_dir / "checkpoint.pt").exists():
            print(f"[flossrepro] already complete, skipping: {run_id} ({run_dir}); "
                  f"to run it again, give it another directory (hydra.run.dir=...)", flush=True)
            return done
        if ctrl is not None and (ctrl.stopped() or _stop_seen):
            _remove_unstarted(run_dir, ctrl)
            return {"status": "not started", "run_id": run_id}
        try:  # validates the settings (the command line checked them too, before Hydra made anything)
            job = make_job(cfg, run_dir, run_id=run_id, columns=run_columns(cfg, hc))
        except ConfigError as e:
            if multirun:
                if RD.status(run_dir) is None:  # record it (a new run: nothing of another run is touched)
                    RD.write_record(run_dir, ident, overrides)
                    _write_hydra_record(run_dir, cfg, overrides)
                    update_summary(run_dir, status="invalid", run_id=run_id, error=str(e))
            else:
                _remove_unstarted(run_dir, None)
            return refuse(str(e), "invalid")
        if ctrl is not None and (ctrl.stopped() or _stop_seen):
            _remove_unstarted(run_dir, ctrl)
            return {"status": "not started", "run_id": run_id}
        try:
            RD.write_record(run_dir, ident, overrides)
            _write_hydra_record(run_dir, cfg, overrides)
        except OSError as e:
            if _disk_error(e) is None:
                raise
            return refuse(_disk_error(e), "failed")
        native.tune_allocator()  # reuse the epochs' large buffers instead of faulting them in again
        SW.JOB_BUSY.set()
        try:
            summary = job.run()
        except StopRequested:
            if not multirun:
                sys.exit(143)
            return {"status": "interrupted", "run_id": run_id}
        except FlossreproError as e:  # a corrupt checkpoint, an unreadable table: one line, the fix
            update_summary(run_dir, status="failed", run_id=run_id, error=str(e))
            return refuse(str(e), "failed")
        except OSError as e:  # a full or read-only filesystem: one line; the status says failed where it can
            msg = _disk_error(e)
            if msg is None:
                raise
            try:
                update_summary(run_dir, status="failed", run_id=run_id, error=msg)
            except OSError:
                write_status_in_place(run_dir / "summary.json", status="failed", run_id=run_id, error=msg)
            return refuse(msg, "failed")
        except Exception as e:  # a crashed run is recorded; in a sweep the other runs go on
            err = "".join(traceback.format_exception_only(type(e), e)).strip()
            update_summary(run_dir, status="failed", run_id=run_id, error=err, traceback=traceback.format_exc(),
                            columns=getattr(job, "columns", None),
                            slurm_job_id=os.environ.get("SLURM_JOB_ID"))
            log.error("run %s failed: %s", run_id, err)
            if multirun:
                return {"status": "failed", "run_id": run_id, "error": err}
            raise
        _print_summary(summary, run_dir)
        return summary
    finally:
        SW.JOB_BUSY.clear()
        if lock is not None:
            lock.release()
        if ctrl is not None:
            ctrl.unregister()


_DISK_ERRNOS = {errno.ENOSPC: "the filesystem is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the filesystem is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied"}


def _disk_error(e: OSError) -> str | None:
    """One line for an OSError of the filesystem the run writes to (None: another error)."""
    why = _DISK_ERRNOS.get(e.errno)
    if why is None:
        return None
    where = e.filename or "the run directory"
    return (f"cannot write {where}: {why}; free space or fix the permissions, then rerun the same command "
            f"(it resumes from the last checkpoint), or give the run another directory (hydra.run.dir=...)")


def _print_summary(s: dict, run_dir: Path) -> None:
    try:
        fm = " ".join(f"{k}={v:.4g}" for k, v in (s.get("final_mean") or {}).items())
        t = s.get("timings") or {}
        members = s.get("members") or []
        pr = s.get("progress") or {"unit": "ep", "done": s.get("epochs_done"), "total": s.get("epochs")}
        unit = "epochs" if pr.get("unit") == "ep" else ("flossing epochs" if pr.get("unit") == "floss-ep" else pr.get("unit"))
        print(f"[flossrepro] {s['status']}: {s['run_id']} {unit} {pr.get('done')}/{pr.get('total')} "
              f"members {len(members)} ({sum(m.get('status') == 'ok' for m in members)} ok) | "
              f"mean over members: {fm} | train {t.get('train_s', 0):.1f}s floss {t.get('floss_s', 0):.1f}s "
              f"total {t.get('total_s', 0):.1f}s | {run_dir}", flush=True)
    except Exception:
        print(f"[flossrepro] {s.get('status')}: {s.get('run_id')} | {run_dir}", flush=True)


# -- the command line --------------------------------------------------------------------------
def _run_hydra(argv: list[str]) -> None:
    # Hydra's public entry, @hydra.main, reads sys.argv; this command has parsed and checked its own
    # arguments first (flags, --dry-run, --plan) and hands Hydra exactly the rest, which only the
    # function behind @hydra.main takes (pinned by hydra-core>=1.3,<1.4; tests/test_pipeline.py runs it).
    from hydra._internal.utils import _run_hydra as run, get_args_parser

    from flossrepro.run.launcher import register_configs

    register_configs()
    parser = get_args_parser()
    run(args=parser.parse_args(argv), args_parser=parser, task_function=task, config_path="pkg://flossrepro.conf",
        config_name="config")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = {a for a in argv if a.startswith("-")}
    if flags & {"-h", "--help"}:
        print(help_text())
        return 0
    if flags & HYDRA_FLAGS:
        _run_hydra(argv)
        return 0
    multirun = bool(flags & {"-m", "--multirun"})
    dry = "--dry-run" in flags
    plan = "--plan" in flags
    unknown = flags - {"-m", "--multirun", "--dry-run", "--plan", "-r", "--run"}
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        if unknown:
            raise UsageError(f"unknown option {sorted(unknown)[0]}; see {PROG} --help")
        return _command(overrides, multirun, dry, plan)
    except FlossreproError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 2


def _command(overrides: list[str], multirun: bool, dry: bool, plan: bool = False) -> int:
    parse_check(overrides)
    if plan:
        return _plan(overrides, multirun)
    cmd = compose.job_configs(overrides, multirun)
    if not cmd.multirun:
        return _single(cmd.jobs[0], overrides, dry)
    return _multi(cmd, overrides, dry)


def _plan(overrides: list[str], multirun: bool) -> int:
    """``--plan``: every job's settings checked and its cost estimated; nothing is made or run."""
    from flossrepro.run.estimate import find_model, format_plan
    from flossrepro.run.plan import sweep_plans

    model = find_model()
    plans, n_jobs = sweep_plans(overrides, model, multirun, run_ids=False)
    print(format_plan(plans, model.source if model else "", n_jobs), flush=True)
    return 0


def _single(job: "compose.Job", overrides: list[str], dry: bool) -> int:
    cfg, run_dir = job.cfg, job.run_dir
    compose.job_dir(cfg, False)
    limits.check_dir(run_dir, "hydra.run.dir")
    limits.check(cfg)  # first: a job x arch pair that cannot run is named before the settings it would need
    C.validate(cfg, compose.choices(cfg))
    state = "new"
    if run_dir.exists():
        RD.probe_lock(run_dir)
        state = RD.check_identity(run_dir, RD.identity_config(cfg))
    done = RD.finished(run_dir) if state == "same" else None
    if done is not None and RD.tables_problem(run_dir, done):
        raise UsageError(RD.tables_problem(run_dir, done))
    if done is not None and (run_dir / "checkpoint.pt").exists():
        print(f"[flossrepro] already complete, skipping: {done.get('run_id')} ({run_dir}); "
              f"to run it again, give it another directory (hydra.run.dir=...)", flush=True)
        return 0
    if state == "same":
        _check_commit(cfg, run_dir, "hydra.run.dir=...")
    if dry:
        stale = state == "same" and RD.shown_status(run_dir, RD.status(run_dir)) == "interrupted"
        print(f"[flossrepro] dry run: settings valid; would {'resume' if state == 'same' else 'start'} "
              f"a run in {run_dir}" + (f" (interrupted: {RD.STALE_NOTE})" if stale else ""))
        return 0
    global _created_run_dir
    _created_run_dir = None if run_dir.exists() else os.path.realpath(run_dir)
    _run_hydra(overrides)
    return 0


def _check_commit(cfg, run_dir: Path, move: str, prefix: str = "") -> None:
    """A run that another git commit of the code started is not resumed unless allow_other_commit=true."""
    from flossrepro.store.summary import git_commit, last_commit, read_json

    was, now = last_commit(read_json(run_dir / "summary.json")), git_commit()
    if was and now and was != now and not bool(cfg.get("allow_other_commit", False)):
        raise UsageError(f"{prefix}{run_dir} was run by commit {was}, the code here is commit {now}; resuming it would "
                         f"mix two versions in one run: check out {was} to resume it, give it another directory "
                         f"({move}), or add allow_other_commit=true (recorded in its summary.json)")


def _multi(cmd: "compose.Command", overrides: list[str], dry: bool) -> int:
    extra, primary = cmd.extra, cmd.primary
    jobs = [j.overrides for j in cmd.jobs]
    limits.check_launcher(primary)
    seen: dict[Path, str] = {}
    run_dirs, sweep_dirs, new_dirs, invalid, stale = [], [], [], [], []
    counts = {"start": 0, "resume": 0, "skip": 0, "invalid": 0}
    for i, j in enumerate(cmd.jobs):
        cfg, run_dir, sweep_dir, name = j.cfg, j.run_dir, j.sweep_dir, j.name
        compose.job_dir(cfg, True)  # the Hydra config its interpolations read
        limits.check_dir(run_dir, "hydra.sweep.dir")
        if run_dir in seen:
            raise UsageError(f"sweep jobs '{seen[run_dir]}' and '{name}' would share the run directory {run_dir}; "
                             f"set hydra.sweep.subdir so that it names every swept setting")
        seen[run_dir] = name
        run_dirs.append(run_dir)
        sweep_dirs.append(sweep_dir)
        try:
            limits.check(cfg)
            C.validate(cfg, compose.choices(cfg))
            ok = None
        except FlossreproError as e:
            ok = str(e)
        state = "new"
        if run_dir.exists():
            RD.probe_lock(run_dir)
            try:
                state = RD.check_identity(run_dir, RD.identity_config(cfg), "hydra.sweep.dir=<another dir>")
            except RD.RunDirError as e:
                raise UsageError(f"sweep job {i} ({name}): {e}") from None
        if state == "new" and not (run_dir.exists() and any(run_dir.iterdir())):
            new_dirs.append(os.path.realpath(run_dir))
        if ok is not None:
            counts["invalid"] += 1
            invalid.append((name, ok))
        elif state == "same" and RD.finished(run_dir) is not None:
            if RD.tables_problem(run_dir, RD.finished(run_dir)):
                raise UsageError(f"sweep job {i} ({name}): {RD.tables_problem(run_dir, RD.finished(run_dir))}")
            counts["skip"] += 1
        else:
            counts["resume" if state == "same" else "start"] += 1
            if state == "same":
                _check_commit(cfg, run_dir, "hydra.sweep.dir=...", f"sweep job {i} ({name}): ")
            if state == "same" and RD.shown_status(run_dir, RD.status(run_dir)) == "interrupted":
                stale.append(run_dir)
    unsafe = [m for _, m in invalid if m.startswith("experiment_name=")]
    if unsafe:  # its run directory's name is not safe to make: refuse the sweep, make nothing
        raise UsageError(unsafe[0])
    if invalid and len(invalid) == len(jobs):  # nothing would run: refuse the sweep, make nothing
        msgs = sorted({m for _, m in invalid})
        raise UsageError(f"{msgs[0]}" + (f" (and {len(msgs) - 1} other problems)" if len(msgs) > 1 else "")
                         + f" [every job of the sweep: {len(jobs)}]")
    where = ", ".join(sorted({str(s) for s in sweep_dirs}))
    print(f"[flossrepro] sweep of {len(jobs)} jobs into {where}: {counts['start']} to start, "
          f"{counts['resume']} to resume, {counts['skip']} finished (skipped), {counts['invalid']} invalid"
          + (" (recorded as invalid, the others run)" if invalid and not dry else ""), flush=True)
    for name, msg in invalid:
        print(f"[flossrepro]   invalid: {name}: {msg}", flush=True)
    for d in stale:
        print(f"[flossrepro]   interrupted: {d}: {RD.STALE_NOTE}", flush=True)
    if dry:
        for name, d in zip([" ".join(j) for j in jobs], run_dirs):
            print(f"[flossrepro]   {d}")
        return 2 if invalid else 0
    ctrl = SW.Control.create(new_dirs)
    joblib = str(OmegaConf.select(primary, "hydra.launcher._target_", default="")).endswith("JoblibLauncher")
    fwd = SW.StopForwarder(ctrl).install() if joblib else None
    old_env = os.environ.get(SW.CTRL_ENV)
    os.environ[SW.CTRL_ENV] = str(ctrl.path)
    os.environ[SW.SWEEP_PID_ENV] = str(os.getpid())
    crashed = None
    try:
        _run_hydra(["-m", *overrides, *extra])
    except SystemExit as e:  # Hydra reported an error (a worker died, a launcher failed)
        crashed = e.code
    finally:
        if fwd is not None:
            fwd.uninstall()
        if old_env is None:
            os.environ.pop(SW.CTRL_ENV, None)
        else:
            os.environ[SW.CTRL_ENV] = old_env
    stopped = fwd is not None and fwd.signum is not None
    code = SW.finish(sweep_dirs, run_dirs, stopped, print_fn=lambda s: print(s, flush=True))
    if joblib:
        _shutdown_workers()
    ctrl.cleanup()
    if crashed not in (None, 0) and code == 0:
        code = 1
    return code


def _shutdown_workers() -> None:
    """Stop joblib's idle worker processes now (they would otherwise outlive the sweep for minutes)."""
    try:
        from joblib.externals.loky import reusable_executor as re_
        if re_._executor is not None:
            re_._executor.shutdown(wait=True)
    except Exception:
        pass
    SW.wait_children_gone(10.0)


def entry() -> None:
    """Console script ``flossrepro``."""
    sys.exit(main())


def help_text() -> str:
    """``flossrepro --help``: the config groups and their options, settings, experiments, usage."""
    top = C._top_level()
    groups = []
    for g in C.GROUPS + ("scale",):
        opts = C.options(g)
        default = _default_option(g)
        keys = sorted(k for k in C._reference(g, default) if k not in ("_target_",)) if g != "scale" else []
        groups.append(f"  {g:<12} {', '.join(o + ('*' if o == default else '') for o in opts)}"
                      + (f"\n  {'':<12}   keys: {', '.join(keys)}" if keys else ""))
    top, scaled = _composed_defaults(top)
    settings = ", ".join(f"{k}={C._fmt(v)}" for k, v in top.items())
    exps = ", ".join(C.options("experiment"))
    return f"""usage: {PROG} [-m] [--dry-run] [--plan] [key=value ...] [group=option ...] [+experiment=NAME]
       (also: python -m flossrepro ...)

Gradient flossing (Engelken, NeurIPS 2023): train and floss RNN ensembles, or run a figure's sweep.
Every setting is a Hydra override; bad settings stop before anything runs, with one line.

Config groups (group=option; * marks the default) and their keys (group.key=value):
{chr(10).join(groups)}

Top-level settings (what the default job runs, scale={_default_option('scale')}): {settings}
  set by the scale: {scaled}

Experiments (one figure's sweep each; note the +):  +experiment=<{'|'.join(C.options('experiment'))}>
  e.g. {PROG} +experiment=fig4 scale=smoke     ({exps})

Options:
  -m, --multirun     sweep over comma lists: {PROG} -m seed=1,2,3 task.delay=20,40
  --dry-run          check every job's settings and run directory, print them, run nothing
  --plan             check every job and estimate its cost (networks, epochs, core-hours) from
                     this machine's measured epochs (results/table1), run nothing
  --cfg job          print the composed config (--resolve to resolve it)
  --hydra-help       Hydra's own help (launchers, sweepers, --info)
  -h, --help         this text

Examples:
  {PROG}                                        the default job -> outputs/default/small/default/
  {PROG} scale=smoke logger=none                seconds, no W&B
  {PROG} task.delay=40 flossing=during flossing.k=24 init.g=1.5 seed=3
  {PROG} +experiment=fig1 scale=smoke           a figure's sweep -> multirun/fig1/smoke/
  {PROG} -m seed=1,2 hydra/launcher=submitit_slurm   one SLURM job per run (docs/slurm.md)

Run directories: outputs/<experiment_name>/<scale>/<overrides or 'default'>/ (sweeps: multirun/...).
A rerun of the same command skips a finished run and resumes an interrupted one; a directory
made with other settings, or in use by another process, is refused and left as it is.
Sweep exit status: 0 when every job finished, 1 when any failed, was invalid or lost, 143 when stopped.

Tab completion (bash), with the console script on PATH:  eval "$({PROG} -sc install=bash)"
"""


def _composed_defaults(top: dict) -> tuple[dict, str]:
    """The top-level settings of the composed default job (the scale's values included), and the
    group settings the default scale sets, as ``key=value`` text; the config file's values when
    the default job does not compose."""
    try:
        cfg = compose.job_configs([], False).jobs[0].cfg
        c = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    except Exception:  # noqa: BLE001 - the help still prints
        return top, "(see conf/scale/)"
    scale = OmegaConf.load(C.CONF_DIR / "scale" / f"{_default_option('scale')}.yaml")
    keys = []
    for k, v in OmegaConf.to_container(scale).items():
        if isinstance(v, dict) and k in C.GROUPS:
            keys += [f"{k}.{kk}" for kk in v]
    scaled = ", ".join(f"{k}={C._fmt(OmegaConf.select(OmegaConf.create(c), k))}" for k in keys)
    return {k: c.get(k, v) for k, v in top.items()}, scaled


def _default_option(group: str) -> str | None:
    for item in OmegaConf.load(C.CONF_DIR / "config.yaml").get("defaults", []):
        if isinstance(item, (dict, DictConfig)) and group in item:
            return str(item[group])
    return None
