"""Composing a command's job configs exactly as Hydra will, before Hydra runs anything.

One place composes: the command line's checks (``flossrepro ...``, ``--dry-run``), the
planner (``--plan``, ``python -m flossrepro.plan --check``) and the tests all call
:func:`job_configs`, which gives every job of a command (one run, or each job of a
``-m`` / ``+experiment=`` sweep, in the basic sweeper's order) with its composed config.

Hydra has no public API for composing a multirun's job configs outside its own run
(``hydra.compose`` composes one run-mode config and neither expands sweeps nor builds the
``hydra.job``/``hydra.runtime`` nodes the run directories are named from), so this module uses
Hydra's config loader (``hydra._internal.config_loader_impl.ConfigLoaderImpl``) and its
basic sweeper's argument splitting, pinned by ``hydra-core>=1.3,<1.4``;
``tests/test_pipeline.py`` composes sweeps through them on every run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from flossrepro.constants import RUN_NAME_EXCLUDE_KEYS
from flossrepro.errors import ConfigError, FlossreproError
from flossrepro.store import config as C

PROG = "flossrepro"
CONF_MODULE = "pkg://flossrepro.conf"


class UsageError(FlossreproError):
    pass


def loader():
    """Hydra's config loader over the package's config tree (see the module docstring)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.utils import setup_globals

    from flossrepro.run.launcher import register_configs

    setup_globals()
    register_configs()
    return ConfigLoaderImpl(config_search_path=create_automatic_config_search_path(None, None, CONF_MODULE))


def one_line(e: BaseException) -> str:
    """A Hydra/OmegaConf composition error as one line with the fix."""
    from hydra.errors import MissingConfigException

    msg = " ".join(str(e).split())
    if isinstance(e, MissingConfigException) and getattr(e, "options", None) is not None:
        missing = str(getattr(e, "missing_cfg_file", "") or "")
        group, _, opt = missing.rpartition("/")
        if group:
            extra = " (an experiment is added with +experiment=<name>)" if group == "experiment" else ""
            return f"{group}={opt} is not an option of {group}; allowed: {', '.join(e.options)}{extra}"
    low = msg.lower()
    if "could not override" in low and "to append to your config use" in low:
        key = msg.split("'")[1] if "'" in msg else "the key"
        group, _, name = key.rpartition(".")
        known = sorted(C._reference(group, None)) if group in C.GROUPS else []
        hint = C._suggest(name, known, group) if known else ""
        return (f"{key} is not a setting; {hint}check its spelling (see {PROG} --help, or {PROG} --cfg job "
                f"for every setting)")
    if "could not override 'experiment'" in low:
        return "experiment is added, not overridden: write +experiment=<name> (see flossrepro --help)"
    if "ambiguous value for argument" in low:
        arg = msg.split("'")[1] if "'" in msg else "the argument"
        key = arg.split("=", 1)[0]
        return f"{arg} is a comma list: add -m to sweep over it, or write {key}=[...] for a list value"
    if "multiple values for" in low:
        return f"{msg} (give each group once)"
    return f"{msg.rstrip('.')} (see {PROG} --help)"


def parse_check(overrides: list[str]) -> None:
    """Each override parses (one line naming the one that does not)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except Exception as e:
            why = " ".join(str(e).split()).split(" See https")[0]
            raise UsageError(f"{o} cannot be parsed ({why}); write key=value, quote values with special "
                             f"characters ('key=\"a b\"'), lists as key=[a,b]") from None


def compose(ld, overrides: list[str], multirun: bool) -> DictConfig:
    from hydra.types import RunMode

    try:
        return ld.load_configuration("config", list(overrides),
                                     run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN)
    except ConfigError:
        raise
    except Exception as e:
        raise UsageError(one_line(e)) from None


def job_dir(cfg: DictConfig, multirun: bool) -> tuple[Path, Path]:
    """``(run_dir, sweep_dir)`` of a composed job config (sweep_dir: the run dir's parent folder
    for a single run); makes ``cfg`` the Hydra config that interpolations read."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    try:
        if multirun:
            sweep = Path(str(OmegaConf.select(cfg, "hydra.sweep.dir")))
            return (sweep / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))).absolute(), sweep.absolute()
        run = Path(str(OmegaConf.select(cfg, "hydra.run.dir"))).absolute()
        return run, run.parent
    except ConfigError:
        raise
    except Exception as e:
        raise UsageError(one_line(e)) from None


def choices(cfg: DictConfig) -> dict:
    return dict(OmegaConf.select(cfg, "hydra.runtime.choices") or {})


def _sweep_args(primary_cfg, overrides: list[str]) -> list[str]:
    params = primary_cfg.hydra.sweeper.get("params") or {}
    return [f"{k}={v}" for k, v in params.items()] + list(overrides)


def expand(ld, primary_cfg, overrides: list[str]) -> list[list[str]]:
    """The override lists of a multirun's jobs, in Hydra's basic-sweeper order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=ld)
    batches = BasicSweeper.split_arguments(parser.parse_overrides(_sweep_args(primary_cfg, overrides)), None)
    return [list(j) for batch in batches for j in batch]


def swept_keys(ld, primary_cfg, overrides: list[str]) -> set[str]:
    """Keys (or groups) that take more than one value in this multirun."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create(config_loader=ld).parse_overrides(_sweep_args(primary_cfg, overrides))
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


@dataclass
class Job:
    """One job of a command: its name (its overrides), its sweep overrides, its composed config,
    its run directory and sweep directory."""
    name: str
    overrides: list[str]
    cfg: DictConfig
    run_dir: Path
    sweep_dir: Path


@dataclass
class Command:
    """Every job a command means, composed once. ``extra``: overrides Hydra must get too (a swept
    key that the run names would otherwise leave out); ``primary``: the multirun's config."""
    multirun: bool
    jobs: list[Job]
    extra: list[str]
    primary: DictConfig | None

    @property
    def n_jobs(self) -> int:
        """The launcher's parallel jobs (1 for a single run)."""
        if self.primary is None:
            return 1
        return int(OmegaConf.select(self.primary, "hydra.launcher.n_jobs", default=1) or 1)


def job_configs(overrides: list[str], multirun: bool = False) -> Command:
    """Compose every job of ``flossrepro [-m] <overrides>`` as Hydra will run it."""
    from hydra.types import RunMode

    overrides = [o for o in overrides if o != "-m"] if "-m" in overrides else list(overrides)
    multirun = multirun or "-m" in overrides
    ld = loader()
    probe = compose(ld, overrides + ["hydra.mode=MULTIRUN"] if multirun else overrides, True)
    if not (multirun or probe.hydra.mode == RunMode.MULTIRUN):
        cfg = compose(ld, overrides, False)
        run_dir, sweep_dir = job_dir(cfg, False)
        return Command(False, [Job(" ".join(overrides) or "(default)", [], cfg, run_dir, sweep_dir)], [], None)
    swept = swept_keys(ld, probe, overrides)
    keep = [k for k in RUN_NAME_EXCLUDE_KEYS if k not in swept]
    extra = []
    if len(keep) != len(RUN_NAME_EXCLUDE_KEYS):  # a swept key stays in the run names
        extra = ["hydra.job.config.override_dirname.exclude_keys=[" + ",".join(f"'{k}'" for k in keep) + "]"]
    primary = compose(ld, overrides + extra + ["hydra.mode=MULTIRUN"], True)
    jobs = []
    for i, job in enumerate(expand(ld, probe, overrides)):
        name = " ".join(job) or "(no overrides)"
        try:
            cfg = ld.load_sweep_config(primary, list(job))
        except Exception as e:
            raise UsageError(f"sweep job {i} ({name}): {one_line(e)}") from None
        run_dir, sweep_dir = job_dir(cfg, True)
        jobs.append(Job(name, list(job), cfg, run_dir, sweep_dir))
    return Command(True, jobs, extra, primary)
