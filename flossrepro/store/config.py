"""Validation of a composed config and construction of the library objects it names.

Every check runs before any compute and raises :class:`ConfigError` with one line that
names the setting, what was given, and the fix.
"""
from __future__ import annotations

import difflib
import functools
import math
import os
import re
from pathlib import Path

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from flossrepro.store import rundir as _rundir  # noqa: F401  (registers the run_leaf / run_name_exclude_keys resolvers)
from flossrepro.engine.tangent import default_transients
from flossrepro.tasks.paper import Task

SCHEDULES = ("none", "pre", "during", "throughout")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPTIMIZERS = ("adam", "sgd", "sgdm")
FLOSS_INPUTS = ("task", "gaussian")
GATED = ("lstm", "gru")   # gated models: no nonlinearity argument
NONLINEARITY_NAMES = ("tanh", "relu", "identity") + GATED


from flossrepro.errors import ConfigError  # noqa: E402  (re-exported: flossrepro.store.config.ConfigError)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=cpu or device=auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                          f"use device=cuda:0 .. cuda:{torch.cuda.device_count() - 1}, or device=auto")
    return dev


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"dtype={name!r} is not supported; allowed: {list(DTYPES)}")
    return DTYPES[name]


def build_task(cfg: DictConfig) -> Task:
    t = cfg.task
    try:
        cls = get_class(t._target_)
        if hasattr(cls, "from_config"):  # tasks with their own settings (flossrepro.tasks.lowrank)
            return cls.from_config(t)
        return cls(delay=t.delay, seq_len=t.seq_len, batch_size=t.batch_size, amplitude=t.amplitude)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def build_model(cfg: DictConfig, task: Task, device=None, dtype=torch.float32):
    a = cfg.arch
    cls = get_class(a._target_)
    kw = dict(n_members=int(cfg.members), n_hidden=int(a.n_hidden), n_in=task.n_in, n_out=task.n_out,
              input_gain=a.input_gain, dtype=dtype, device=device)
    if a.nonlinearity not in GATED:
        kw["nonlinearity"] = a.nonlinearity
    if "dt" in a:  # the rate network's Euler step (arch=rate, rate_linear)
        kw["dt"] = float(a.dt)
    if "num_layers" in a:  # PyTorch's own modules (arch=torch_rnn, torch_gru, torch_lstm)
        kw["num_layers"] = int(a.num_layers)
    try:
        return cls(**kw)
    except ValueError as e:
        raise ConfigError(f"arch: {e}") from e


def episode_starts(cfg: DictConfig) -> list[int]:
    """Training epochs at which a flossing episode starts (sorted, unique)."""
    f = cfg.flossing
    if f.schedule == "none":
        return []
    if f.schedule == "pre":
        return [0]  # one episode before training, whatever episodes_at says
    if f.schedule == "throughout":
        every = f.every
        if every is None or int(every) < 1:
            raise ConfigError(f"flossing.every={every} must be a positive number of epochs for flossing=throughout; e.g. flossing.every=100")
        return list(range(0, int(cfg.epochs), int(every)))
    return sorted({int(e) for e in f.episodes_at})


def validate(cfg: DictConfig, choices: dict | None = None) -> None:
    """Raise :class:`ConfigError` for any setting that cannot work, before any compute.

    First the schema (:func:`check_settings`: unknown keys, types, ranges, finite values, known
    names), then the settings that depend on each other (k against the state dimension, the
    task's delay against its length, flossing episodes against the epochs, ...).
    ``choices``: the config group options picked (``hydra.runtime.choices``); taken from the
    running Hydra job when not given.
    """
    check_settings(cfg, choices)
    if int(cfg.members) < 1:
        raise ConfigError(f"members={cfg.members} must be >= 1; e.g. members=4")
    if int(cfg.epochs) < 0:
        raise ConfigError(f"epochs={cfg.epochs} must be >= 0; e.g. epochs=1000")
    resolve_dtype(cfg.dtype)
    resolve_device(cfg.device)
    task = build_task(cfg)
    n = int(cfg.arch.n_hidden) * (2 if cfg.arch.nonlinearity == "lstm" else 1)  # LSTM state (h, c); GRU h
    n *= int(cfg.arch.get("num_layers", 1))  # stacked layers (arch=torch_*)
    if int(cfg.arch.n_hidden) < 1:
        raise ConfigError(f"arch.n_hidden={cfg.arch.n_hidden} must be >= 1; e.g. arch.n_hidden=32")
    if cfg.arch.nonlinearity not in NONLINEARITY_NAMES:
        raise ConfigError(f"arch.nonlinearity={cfg.arch.nonlinearity!r} is not known; allowed: {', '.join(NONLINEARITY_NAMES)}")
    f = cfg.flossing
    if f.schedule not in SCHEDULES:
        raise ConfigError(f"flossing.schedule={f.schedule!r} is not known; allowed: {list(SCHEDULES)}")
    if f.schedule != "none":
        if not 1 <= int(f.k) <= n:
            raise ConfigError(f"flossing.k={f.k} but the state dimension is {n}; allowed: 1 <= flossing.k <= {n} "
                              f"(lower flossing.k or raise arch.n_hidden)")
        if int(f.epochs) < 1:
            raise ConfigError(f"flossing.epochs={f.epochs} must be >= 1 for flossing={f.schedule}; e.g. flossing.epochs=100, or flossing=none")
        starts = episode_starts(cfg)
        bad = [e for e in starts if not 0 <= e <= int(cfg.epochs)]
        if bad:
            raise ConfigError(f"flossing.episodes_at has {bad}, outside the training epochs 0..{cfg.epochs}; "
                              f"move the episodes or raise epochs")
        _check_transients("flossing", int(f.horizon), f.transient_h, f.transient_q)
        if f.input not in FLOSS_INPUTS:
            raise ConfigError(f"flossing.input={f.input!r} is not known; allowed: {list(FLOSS_INPUTS)}")
        if f.reduction not in ("sum", "mean"):
            raise ConfigError(f"flossing.reduction={f.reduction!r} is not known; allowed: sum, mean")
        if int(f.s_ons) < 1:
            raise ConfigError(f"flossing.s_ons={f.s_ons} must be >= 1; e.g. flossing.s_ons=1")
    d = cfg.diagnostics
    if d.lyap_every or f.schedule != "none":
        _check_transients("diagnostics", int(d.lyap_seq_len), 10, None, name="lyap_seq_len")
    if cfg.optim.name not in OPTIMIZERS:
        raise ConfigError(f"optim.name={cfg.optim.name!r} is not known; allowed: {list(OPTIMIZERS)}")
    if cfg.logger.name not in ("wandb", "none"):
        raise ConfigError(f"logger={cfg.logger.name!r} is not known; allowed: wandb, none")
    # a job kind's own settings (job.*): its class checks them (``check_config(cfg)``, if it has one)
    check = getattr(get_class(str(cfg.job._target_)), "check_config", None) if "job" in cfg else None
    if check is not None:
        check(cfg)
    del task


def _check_transients(group: str, T: int, th, tq, name: str = "horizon") -> None:
    dh, dq = default_transients(T)
    th = dh if th is None else int(th)
    tq = dq if tq is None else int(tq)
    if T - th - tq < 1:
        raise ConfigError(f"{group}.{name}={T} is too short for the Lyapunov transients ({th} state + {tq} Q steps); "
                          f"raise {group}.{name} above {th + tq}")


def lyap_transients(T: int, th, tq) -> tuple[int, int]:
    dh, dq = default_transients(T)
    return (dh if th is None else int(th)), (dq if tq is None else int(tq))


__all__ = ["ConfigError", "validate", "build_task", "build_model", "episode_starts",
           "resolve_device", "resolve_dtype", "lyap_transients"]


from flossrepro.store import resolvers as _resolvers  # noqa: E402,F401  (registers by_scale, lowrank_lr, linear_lr)


# -- the schema: every setting's type, range and allowed names --------------------------------
# The option files of each config group (conf/<group>/<option>.yaml) define which keys the
# group has and each key's type (the type of its value there); the rules below add ranges and
# allowed names. Anything else (a key added with ``+``, a string where a number belongs, a
# float where an integer belongs, inf/nan, a name no option has) is refused with one line.

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("job", "arch", "task", "init", "flossing", "optim", "logger", "diagnostics")
SCALES = ("paper", "small", "smoke")
PROGRESS = ("auto", "bar", "log", "none")
WANDB_MODES = ("online", "offline", "disabled")
INIT_SCHEMES = ("gaussian", "orthogonal")
# the key of each group that names its option (must match the option picked on the command line)
NAME_KEYS = {"job": "name", "arch": "name", "task": "name", "flossing": "schedule", "optim": "name",
             "logger": "name"}
_MISSING = object()


def options(group: str) -> list[str]:
    """The options of a config group (``conf/<group>/*.yaml``), sorted."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def _option_file(group: str, option: str) -> dict:
    p = CONF_DIR / group / f"{option}.yaml"
    if not p.exists():
        return {}
    d = OmegaConf.to_container(OmegaConf.load(p), resolve=False)
    d.pop("defaults", None)
    return d


@functools.lru_cache(maxsize=None)
def _top_level() -> dict:
    d = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"), resolve=False)
    d.pop("defaults", None)
    d.pop("hydra", None)
    return d


def _reference(group: str, choice: str | None) -> dict:
    """The keys (and reference values) of a group: its picked option, else every option's."""
    if choice is not None and (CONF_DIR / group / f"{choice}.yaml").exists():
        return _option_file(group, choice)
    ref: dict = {}
    for o in options(group):
        for k, v in _option_file(group, o).items():
            ref.setdefault(k, v)
    return ref


def _fmt(v) -> str:
    if isinstance(v, str):
        return v if v else "''"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def _bad(path: str, v, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}={_fmt(v)} {problem}; {fix}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _suggest(name: str, known, prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean {prefix + '.' if prefix else ''}{close[0]}? " if close else ""


def _check_types(path: str, v, ref) -> None:
    """``v`` has the type of the reference value ``ref`` (from the option files)."""
    if isinstance(ref, str) and "${" in ref:
        return  # an interpolation in the option file: its rule (if any) checks the value
    if _is_num(v) and isinstance(v, float) and not math.isfinite(v):
        raise _bad(path, v, "is not a finite number", f"give a finite value (default: {_fmt(ref)})")
    if ref is None or v is None and ref is not None and path in _NULLABLE:
        return
    if isinstance(ref, bool):
        if not isinstance(v, bool):
            raise _bad(path, v, "must be true or false", f"e.g. {path}={_fmt(ref).lower()}")
    elif _is_int(ref):
        if not _is_int(v):
            raise _bad(path, v, "must be an integer", f"e.g. {path}={ref}")
    elif isinstance(ref, float):
        if not _is_num(v):
            raise _bad(path, v, "must be a number", f"e.g. {path}={ref:g}")
    elif isinstance(ref, str):
        if not isinstance(v, str):
            raise _bad(path, v, "must be a string", f"e.g. {path}={ref}")
    elif isinstance(ref, list):
        if not isinstance(v, list):
            raise _bad(path, v, "must be a list", f"e.g. {path}={_fmt(ref)}")
        for i, x in enumerate(v):
            if isinstance(x, float) and not math.isfinite(x):
                raise _bad(path, v, f"has a non-finite entry {x}", "give finite values")
            if isinstance(x, (list, dict)):
                raise _bad(path, v, "must be a flat list", f"e.g. {path}={_fmt(ref)}")
    elif isinstance(ref, dict):
        if not isinstance(v, dict):
            raise _bad(path, v, "must be a mapping", f"e.g. {path}={{}}")


# settings that may be null although their option files give a value
_NULLABLE = {"optim.clip_grad_norm", "flossing.every", "flossing.transient_h", "flossing.transient_q",
             "arch.input_gain", "init.g_range", "task.seq_len", "logger.entity", "diagnostics.eval_every",
             "diagnostics.lyap_every", "diagnostics.grad_h0_every", "diagnostics.grad_sv_every",
             "diagnostics.dw_every", "diagnostics.grad_norm_every"}


def _walk_unknown(path: str, v, ref, group_desc: str) -> None:
    """Refuse keys of ``v`` (a mapping) that ``ref`` does not have."""
    if not isinstance(v, dict) or not isinstance(ref, dict) or not ref:
        return
    for k in v:
        if k not in ref:
            full = f"{path}.{k}" if path else k
            known = sorted(ref)
            raise ConfigError(
                f"{full} is not a setting of {group_desc}; {_suggest(str(k), known, path)}"
                f"known: {', '.join(map(str, known))} (remove +{full}=... or correct its name)")


def _settings(cfg) -> dict:
    if isinstance(cfg, dict):
        return cfg
    try:
        c = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    except Exception as e:  # an interpolation that cannot be resolved
        msg = " ".join(str(e).split())
        raise ConfigError(f"a setting cannot be resolved: {msg}; fix the ${{...}} reference it names") from None
    c.pop("hydra", None)
    return c


def check_settings(cfg, choices: dict | None = None) -> None:
    """The schema check: keys, types, ranges, finite values and names of every setting.

    ``cfg``: the composed config (DictConfig, or a resolved plain dict); ``choices``: the
    options picked per group (``hydra.runtime.choices``) or None (then every option's keys
    are allowed and names must be those of some option).
    """
    if choices is None:
        choices = _hydra_choices()
    c = _settings(cfg)
    top = _top_level()
    allowed_top = set(top) | set(GROUPS) | {"scale"}
    for k in c:
        if k not in allowed_top:
            raise ConfigError(f"{k} is not a setting; {_suggest(str(k), sorted(allowed_top))}"
                              f"top-level settings: {', '.join(sorted(allowed_top))} "
                              f"(remove +{k}=... or correct its name)")
    for g in GROUPS + ("scale",):
        if g not in c:
            raise ConfigError(f"the config has no {g} group; pick one with {g}=<option> "
                              f"(options: {', '.join(options(g))})")
        if not isinstance(c[g], dict):
            raise _bad(g, c[g], "is a config group, not a value", f"pick an option: {g}=<{'|'.join(options(g))}>")
    # unknown keys and types, group by group
    for k, ref in top.items():
        _check_types(k, c.get(k, _MISSING) if k in c else ref, ref)
    _walk_unknown("scale", c["scale"], {"name": "small"}, "scale")
    for g in GROUPS:
        choice = (choices or {}).get(g)
        ref = _reference(g, choice)
        _walk_unknown(g, c[g], ref, f"{g}={choice}" if choice else g)
        for k, v in c[g].items():
            _check_types(f"{g}.{k}", v, ref.get(k))
    _check_names(c, choices or {})
    _check_ranges(c)


def _hydra_choices() -> dict | None:
    try:
        from hydra.core.hydra_config import HydraConfig
        if HydraConfig.initialized():
            return dict(HydraConfig.get().runtime.choices)
    except Exception:
        pass
    return None


def _check_names(c: dict, choices: dict) -> None:
    for g, key in NAME_KEYS.items():
        v = c[g].get(key)
        opts = options(g)
        choice = choices.get(g)
        names = sorted({_option_file(g, o).get(key) for o in opts} - {None})
        if choice is not None and choice in opts:
            want = _option_file(g, choice).get(key)
            if want is not None and v != want:
                raise _bad(f"{g}.{key}", v, f"does not name the option picked ({g}={choice}); "
                           f"{g}.{key} labels the option and is not set by hand",
                           f"pick the option instead: {g}=<{'|'.join(opts)}>")
        elif v not in names:
            raise _bad(f"{g}.{key}", v, "is not known", f"allowed: {', '.join(names)} (pick with {g}=<option>)")
    s = c["scale"].get("name")
    if s not in SCALES:
        raise _bad("scale.name", s, "is not a scale", f"pick one with scale=<{'|'.join(SCALES)}>")
    if choices.get("scale") not in (None, s):
        raise _bad("scale.name", s, f"does not name the scale picked (scale={choices.get('scale')})",
                   "pick the scale with scale=<paper|small|smoke>, not scale.name")


def _need(cond: bool, path: str, v, problem: str, fix: str) -> None:
    if not cond:
        raise _bad(path, v, problem, fix)


def _int_at_least(c: dict, path: str, lo: int, fix: str = "", null: bool = False) -> None:
    v = _dig(c, path)
    if v is _MISSING or (null and v is None):
        return
    _need(_is_int(v) and v >= lo, path, v, f"must be an integer >= {lo}" + (" or null" if null else ""),
          fix or f"e.g. {path}={max(lo, 1)}")


def _num(c: dict, path: str, lo=None, hi=None, lo_open=False, hi_open=False, fix: str = "",
         null: bool = False) -> None:
    v = _dig(c, path)
    if v is _MISSING or (null and v is None):
        return
    ok = _is_num(v) and math.isfinite(v)
    ok = ok and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))
    rng = []
    if lo is not None:
        rng.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        rng.append(f"{'<' if hi_open else '<='} {hi:g}")
    _need(ok, path, v, "must be a finite number" + (f" {' and '.join(rng)}" if rng else "") + (" or null" if null else ""),
          fix or "see python -m flossrepro --help")


def _dig(c: dict, path: str):
    cur = c
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _param_names(target: str) -> list[str]:
    """Parameter names of the model class ``target`` (a 1-unit instance; nothing is computed)."""
    try:
        cls = get_class(target)
    except Exception:
        raise ConfigError(f"arch._target_={target} is not an importable model class; "
                          f"pick an architecture with arch=<{'|'.join(options('arch'))}>") from None
    kw = dict(n_members=1, n_hidden=1, n_in=1, n_out=1)
    if target.endswith("VanillaRNN"):
        kw["nonlinearity"] = "tanh"
    try:
        return sorted(n for n, _ in cls(**kw).named_parameters())
    except Exception:
        return []


def _check_ranges(c: dict) -> None:
    _int_at_least(c, "seed", 0, "seeds are integers >= 0, e.g. seed=3")
    _int_at_least(c, "members", 1, "e.g. members=4")
    _int_at_least(c, "epochs", 0, "e.g. epochs=1000")
    _int_at_least(c, "threads", 1, "e.g. threads=1")
    _int_at_least(c, "checkpoint_every", 1, "e.g. checkpoint_every=250")
    _int_at_least(c, "log_every", 1, "e.g. log_every=50")
    _need(c.get("progress") in PROGRESS, "progress", c.get("progress"), "is not known", f"allowed: {', '.join(PROGRESS)}")
    _need(c.get("dtype") in DTYPES, "dtype", c.get("dtype"), "is not supported", f"allowed: {', '.join(DTYPES)}")
    dev = c.get("device")
    _need(isinstance(dev, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", dev or "") is not None, "device", dev,
          "is not a device", "use device=auto, cpu, cuda or cuda:N")
    name = c.get("experiment_name")
    _need(isinstance(name, str) and bool(_NAME_RE.match(name)) and ".." not in name, "experiment_name", name,
          "must be a plain folder name (letters, digits, _ . + -; no path separators, no '..')",
          "e.g. experiment_name=my_sweep")
    # arch
    _int_at_least(c, "arch.n_hidden", 1, "e.g. arch.n_hidden=32")
    _num(c, "arch.input_gain", lo=0, lo_open=True, null=True, fix="null gives the reference code's 1/S")
    _num(c, "arch.dt", lo=0, hi=1, lo_open=True, fix="the rate network's Euler step is in (0, 1], e.g. arch.dt=0.5")
    _int_at_least(c, "arch.num_layers", 1, "e.g. arch.num_layers=2")
    nl = _dig(c, "arch.nonlinearity")
    _need(nl in NONLINEARITY_NAMES, "arch.nonlinearity", nl, "is not known",
          f"pick an architecture with arch=<{'|'.join(options('arch'))}>")
    if str(_dig(c, "arch._target_")).endswith("RateRNN"):
        ig = _dig(c, "arch.input_gain")
        _need(ig is None, "arch.input_gain", ig, "is not used by the rate network", "leave arch.input_gain=null")
        _need(nl in ("tanh", "identity"), "arch.nonlinearity", nl, "is not available for the rate network",
              "use arch=rate (tanh) or arch=rate_linear (identity)")
    # task
    for k in ("delay", "seq_len", "batch_size"):
        _int_at_least(c, f"task.{k}", 1, null=k == "seq_len")  # null: a trial task's own length
    _num(c, "task.dt", lo=0, hi=1, lo_open=True, fix="the Euler step of the task's time grid, e.g. task.dt=0.5")
    _num(c, "task.target_amp", lo=0, lo_open=True, fix="e.g. task.target_amp=0.5")
    tdt, adt = _dig(c, "task.dt"), _dig(c, "arch.dt")
    if tdt is not _MISSING and adt is not _MISSING:
        _need(tdt == adt, "task.dt", tdt, f"differs from arch.dt={adt} (the task's steps are time / dt)",
              "use the default task.dt=${arch.dt}")
    _num(c, "task.amplitude", lo=0, lo_open=True, fix="e.g. task.amplitude=1.0")
    # init
    _need(_dig(c, "init.scheme") in INIT_SCHEMES, "init.scheme", _dig(c, "init.scheme"), "is not known",
          f"allowed: {', '.join(INIT_SCHEMES)} (or pick init=<{'|'.join(options('init'))}>)")
    _num(c, "init.g", lo=0, fix="the gain g is >= 0, e.g. init.g=1.0")
    gr = _dig(c, "init.g_range")
    if gr is not None and gr is not _MISSING:
        _need(isinstance(gr, list) and len(gr) == 2 and all(_is_num(x) and math.isfinite(x) for x in gr)
              and 0 <= gr[0] <= gr[1], "init.g_range", gr, "must be [low, high] with 0 <= low <= high, or null",
              "e.g. init.g_range=[0.0,1.0]")
    for k in ("gbar", "mean", "readout_offset"):
        _num(c, f"init.{k}")
    for k in ("input_std", "readout_std", "bias_scale"):
        _num(c, f"init.{k}", lo=0, fix=f"a scale is >= 0, e.g. init.{k}=1.0")
    _int_at_least(c, "init.relax_steps", 0, "e.g. init.relax_steps=100")
    # flossing
    _int_at_least(c, "flossing.k", 0, "e.g. flossing.k=16")
    _num(c, "flossing.target", fix="e.g. flossing.target=0.0")
    _need(_dig(c, "flossing.reduction") in ("sum", "mean"), "flossing.reduction", _dig(c, "flossing.reduction"),
          "is not known", "allowed: sum, mean")
    _int_at_least(c, "flossing.epochs", 0, "e.g. flossing.epochs=100")
    ea = _dig(c, "flossing.episodes_at")
    if ea is not _MISSING:
        _need(isinstance(ea, list) and all(_is_int(e) and e >= 0 for e in ea), "flossing.episodes_at", ea,
              "must be a list of training epochs (integers >= 0)", "e.g. flossing.episodes_at=[0,100,200]")
    _int_at_least(c, "flossing.every", 1, "e.g. flossing.every=100", null=True)
    _int_at_least(c, "flossing.horizon", 2, "e.g. flossing.horizon=55")
    _int_at_least(c, "flossing.s_ons", 1, "e.g. flossing.s_ons=1")
    _int_at_least(c, "flossing.transient_h", 0, "e.g. flossing.transient_h=10", null=True)
    _int_at_least(c, "flossing.transient_q", 0, "null gives ceil(T_f / 10)", null=True)
    _num(c, "flossing.lr", lo=0, lo_open=True, fix="e.g. flossing.lr=1e-3")
    _need(_dig(c, "flossing.input") in FLOSS_INPUTS, "flossing.input", _dig(c, "flossing.input"), "is not known",
          f"allowed: {', '.join(FLOSS_INPUTS)}")
    # optim
    _num(c, "optim.lr", lo=0, lo_open=True, fix="e.g. optim.lr=1e-3")
    b = _dig(c, "optim.betas")
    _need(isinstance(b, list) and len(b) == 2 and all(_is_num(x) and 0 <= x < 1 for x in b), "optim.betas", b,
          "must be [beta1, beta2] with each in [0, 1)", "e.g. optim.betas=[0.9,0.999]")
    _num(c, "optim.eps", lo=0, lo_open=True, fix="e.g. optim.eps=1e-8")
    _num(c, "optim.momentum", lo=0, hi=1, hi_open=True, fix="SGD momentum is in [0, 1), e.g. optim.momentum=0.9")
    _num(c, "optim.clip_grad_norm", lo=0, lo_open=True, null=True,
         fix="a positive per-member norm (e.g. optim.clip_grad_norm=0.03), or null to disable clipping")
    names = _param_names(str(_dig(c, "arch._target_")))
    if names:
        flossable = sorted(set(names) | ({"W"} if "U" in names else set()))
        for path, allowed in (("optim.params", flossable), ("flossing.params", flossable)):
            ps = _dig(c, path)
            if ps is _MISSING:
                continue
            _need(isinstance(ps, list) and len(ps) >= 1 and all(isinstance(p, str) and p in allowed for p in ps)
                  and len(set(ps)) == len(ps), path, ps,
                  f"must name parameters of the {_dig(c, 'arch.name')} model, each once",
                  f"allowed: {', '.join(allowed)}")
    # logger
    if _dig(c, "logger.name") == "wandb":
        for k in ("project",):
            v = _dig(c, f"logger.{k}")
            _need(isinstance(v, str) and v.strip() != "", f"logger.{k}", v, "must be a non-empty name",
                  "e.g. logger.project=flossrepro")
        m = _dig(c, "logger.mode")
        _need(m in WANDB_MODES, "logger.mode", m, "is not a W&B mode", f"allowed: {', '.join(WANDB_MODES)}")
        env = os.environ.get("WANDB_MODE")
        if env is not None:
            _need(env in WANDB_MODES + ("dryrun",), "WANDB_MODE", env, "(environment) is not a W&B mode",
                  f"allowed: {', '.join(WANDB_MODES)}; unset it or fix it")
        tags = _dig(c, "logger.tags")
        if tags is not _MISSING:
            _need(isinstance(tags, list) and all(isinstance(t, str) and t for t in tags), "logger.tags", tags,
                  "must be a list of non-empty strings", "e.g. logger.tags=[mine]")
    # diagnostics
    for k in ("eval_every", "lyap_every", "grad_h0_every", "grad_sv_every", "dw_every", "grad_norm_every"):
        _int_at_least(c, f"diagnostics.{k}", 0, f"0 or null turns it off, e.g. diagnostics.{k}=100", null=True)
    _int_at_least(c, "diagnostics.eval_batch_size", 1)
    _int_at_least(c, "diagnostics.lyap_k", 1, "e.g. diagnostics.lyap_k=16")
    _int_at_least(c, "diagnostics.lyap_seq_len", 2, "e.g. diagnostics.lyap_seq_len=300")
    _int_at_least(c, "diagnostics.rank_max", 0, "0 turns the end-of-run low-rank measures off, e.g. diagnostics.rank_max=25")
    _num(c, "diagnostics.rank_threshold", lo=0, hi=1, lo_open=True, hi_open=True, fix="e.g. diagnostics.rank_threshold=0.05")
    # job
    for k in ("n_in", "n_out"):
        _int_at_least(c, f"job.{k}", 1)
