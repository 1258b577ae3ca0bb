"""Validation of a composed config and construction of the library objects it names.

Every check runs before any compute and raises :class:`ConfigError` with one line that
names the setting, what was given, and the fix.
"""
from __future__ import annotations


import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from .lyapunov import default_transients
from .tasks import Task

SCHEDULES = ("none", "pre", "during", "throughout")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPTIMIZERS = ("adam", "sgd")
FLOSS_INPUTS = ("task", "gaussian")


from .errors import ConfigError  # noqa: E402  (re-exported: flossrepro.config.ConfigError)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=cpu or device=auto")
    return dev


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"dtype={name!r} is not supported; allowed: {list(DTYPES)}")
    return DTYPES[name]


def build_task(cfg: DictConfig) -> Task:
    t = cfg.task
    try:
        cls = get_class(t._target_)
        return cls(delay=t.delay, seq_len=t.seq_len, batch_size=t.batch_size, amplitude=t.amplitude)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def build_model(cfg: DictConfig, task: Task, device=None, dtype=torch.float32):
    a = cfg.arch
    cls = get_class(a._target_)
    kw = dict(n_members=int(cfg.members), n_hidden=int(a.n_hidden), n_in=task.n_in, n_out=task.n_out,
              input_gain=a.input_gain, dtype=dtype, device=device)
    if a.nonlinearity != "lstm":
        kw["nonlinearity"] = a.nonlinearity
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
            raise ConfigError(f"flossing.every={every} must be a positive number of epochs for flossing=throughout")
        return list(range(0, int(cfg.epochs), int(every)))
    return sorted({int(e) for e in f.episodes_at})


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for any setting that cannot work, before any compute."""
    if int(cfg.members) < 1:
        raise ConfigError(f"members={cfg.members} must be >= 1")
    if int(cfg.epochs) < 0:
        raise ConfigError(f"epochs={cfg.epochs} must be >= 0")
    resolve_dtype(cfg.dtype)
    resolve_device(cfg.device)
    task = build_task(cfg)
    n = int(cfg.arch.n_hidden) * (2 if cfg.arch.nonlinearity == "lstm" else 1)
    if int(cfg.arch.n_hidden) < 1:
        raise ConfigError(f"arch.n_hidden={cfg.arch.n_hidden} must be >= 1")
    if cfg.arch.nonlinearity not in ("tanh", "relu", "identity", "lstm"):
        raise ConfigError(f"arch.nonlinearity={cfg.arch.nonlinearity!r} is not known; allowed: tanh, relu, identity, lstm")
    f = cfg.flossing
    if f.schedule not in SCHEDULES:
        raise ConfigError(f"flossing.schedule={f.schedule!r} is not known; allowed: {list(SCHEDULES)}")
    if f.schedule != "none":
        if not 1 <= int(f.k) <= n:
            raise ConfigError(f"flossing.k={f.k} but the state dimension is {n}; allowed: 1 <= flossing.k <= {n} "
                              f"(lower flossing.k or raise arch.n_hidden)")
        if int(f.epochs) < 1:
            raise ConfigError(f"flossing.epochs={f.epochs} must be >= 1 for flossing={f.schedule}")
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
            raise ConfigError(f"flossing.s_ons={f.s_ons} must be >= 1")
    d = cfg.diagnostics
    if d.lyap_every or f.schedule != "none":
        _check_transients("diagnostics", int(d.lyap_seq_len), 10, None, name="lyap_seq_len")
    if cfg.optim.name not in OPTIMIZERS:
        raise ConfigError(f"optim.name={cfg.optim.name!r} is not known; allowed: {list(OPTIMIZERS)}")
    if cfg.logger.name not in ("wandb", "none"):
        raise ConfigError(f"logger={cfg.logger.name!r} is not known; allowed: wandb, none")
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


def _by_scale(paper, small, smoke, *, _root_):
    """``${by_scale:P,S,T}``: the value for the run's scale (paper, small, smoke)."""
    name = _root_.scale.name
    values = {"paper": paper, "small": small, "smoke": smoke}
    if name not in values:
        raise ConfigError(f"scale.name={name!r} has no value in by_scale; allowed: {list(values)}")
    v = values[name]
    return OmegaConf.create(list(v)) if isinstance(v, (list, tuple)) else v


if not OmegaConf.has_resolver("by_scale"):
    OmegaConf.register_new_resolver("by_scale", _by_scale)
