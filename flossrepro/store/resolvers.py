"""The config resolvers (registered when :mod:`flossrepro.store.config` loads).

- ``${by_scale:P,S,T}``: P at ``scale=paper``, S at small, T at smoke (the experiments' sizes).

The low-rank study's experiments:


- ``${lowrank_lr:<optim.name>,<N>}``: their learning rates for the nonlinear tasks (SPEC-lowrank,
  ``lr0 = 0.05``): Adam ``lr0 / N``; plain SGD ``lr0``; SGD with momentum ``m`` (``sgdm``)
  ``lr0 (1 - m)`` with their ``m = 0.9`` (the same step size for a constant gradient as plain SGD;
  our choice, their code has no momentum run).
- ``${lowrank_epochs:<task.name>}``: their training epochs per task (flip-flop 1000, Mante 2000,
  Romo 6000), for sweeps over tasks at paper scale; ``${lowrank_epochs:<task.name>,<scale.name>}``:
  the same at ``paper``, the g sweeps' reduced epochs at ``small`` (400 / 600 / 600) and 20 at
  ``smoke`` (the experiments' epochs for every task and scale in one place).
- ``${linear_lr:<zhat>,<g>}``: the linear study's ``lr = lr0 (1 - g^2)^2`` with
  ``lr0 = 0.015 / 0.009 / 0.003`` for ``zhat = 0.5 / 1 / 2`` (their ``generate_linear``).
"""
from __future__ import annotations

from omegaconf import OmegaConf

from flossrepro.errors import ConfigError


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


LR0 = 0.05
SGDM_MOMENTUM = 0.9
EPOCHS = {"flipflop": 1000, "mante": 2000, "romo": 6000}
EPOCHS_BY_SCALE = {"paper": EPOCHS, "small": {"flipflop": 400, "mante": 600, "romo": 600},
                   "smoke": {"flipflop": 20, "mante": 20, "romo": 20}}
LINEAR_LR0 = {0.5: 0.015, 1.0: 0.009, 2.0: 0.003}


def lowrank_lr(optim: str, n: int) -> float:
    if optim == "adam":
        return LR0 / int(n)
    if optim == "sgd":
        return LR0
    if optim == "sgdm":
        return LR0 * (1 - SGDM_MOMENTUM)
    raise ConfigError(f"optim.name={optim!r} has no low-rank learning rate (lowrank_lr); allowed: adam, sgd, sgdm")


def lowrank_epochs(task: str, scale: str = "paper") -> int:
    if scale not in EPOCHS_BY_SCALE:
        raise ConfigError(f"scale.name={scale!r} has no epoch counts in the low-rank study (lowrank_epochs); "
                          f"allowed: {', '.join(EPOCHS_BY_SCALE)}")
    if task not in EPOCHS:
        raise ConfigError(f"task.name={task!r} has no epoch count in the low-rank study (lowrank_epochs); "
                          f"allowed: {', '.join(EPOCHS)}")
    return EPOCHS_BY_SCALE[scale][task]


def linear_lr(zhat: float, g: float) -> float:
    lr0 = LINEAR_LR0.get(float(zhat))
    if lr0 is None:
        raise ConfigError(f"task.target_amp={zhat} has no lr0 in the linear study (linear_lr); "
                          f"allowed: {', '.join(f'{z:g}' for z in LINEAR_LR0)}")
    if not 0 <= float(g) < 1:
        raise ConfigError(f"init.g={g} is outside the linear study's range; use 0 <= init.g < 1")
    return lr0 * (1 - float(g) ** 2) ** 2


for _name, _fn in (("lowrank_lr", lowrank_lr), ("lowrank_epochs", lowrank_epochs), ("linear_lr", linear_lr)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
