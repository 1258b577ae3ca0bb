"""Task generators for RNN training (paper appendix H), ensemble-first.

Every sample is laid out as ``[T, R, B, channels]``: T time steps, R independent
network "members" of an ensemble, B sequences per member.  Member ``r`` draws its
data ONLY from ``generators[r]`` (a CPU ``torch.Generator``), so member ``r`` of an
ensemble sees exactly the data a single-member run with that generator sees.

Each task draws an underlying signal ``x`` (float64, on CPU); the network is fed
``amplitude * x`` and the target is a function of ``x`` at fixed lags:

=================  ===============================================  ======  =======
name               target y_t                                       loss    chance
=================  ===============================================  ======  =======
``copy``           ``x_{t-d}``, x ~ U(0,1)                          mse     1/12
``temporal_xor``   ``|x_{t-d//2} - x_{t-d}|``, x ~ U(0,1)            mse     1/18
``binary_xor``     ``x_{t-d//2} XOR x_{t-d}``, x ~ Bernoulli(1/2)    bce     0.5 acc
``spatial_xor``    ``x1_{t-d} XOR x2_{t-d} XOR x3_{t-d}``            bce     0.5 acc
``lag_xor``        ``|x_{t-d} - x_{t-2d}|`` (reference-code variant)  mse     1/18
=================  ===============================================  ======  =======

The loss counts only on steps ``t >= task.max_lag`` (``Batch.mask``); targets are
zero elsewhere.  For mse tasks ``chance`` is the MSE of always predicting the
target mean (the target variance); for binary tasks it is accuracy 0.5.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from flossrepro.constants import CHANCE

__all__ = [
    "Batch",
    "Task",
    "CopyTask",
    "TemporalXORTask",
    "BinaryXORTask",
    "SpatialXORTask",
    "LagXORTask",
    "TASKS",
    "make_task",
    "member_generators",
]


@dataclass
class Batch:
    inputs: torch.Tensor  # [T, R, B, S]
    targets: torch.Tensor  # [T, R, B, O]; zeros where mask is False
    mask: torch.Tensor  # [T] bool, True on steps where the loss counts

    @property
    def n_members(self) -> int:
        return self.inputs.shape[1]


def _check_int(name: str, value, minimum: int, hint: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}; {hint}") from None
    if isinstance(value, bool) or v < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}; {hint}")
    return v


class Task:
    """Base class.  Subclasses set the class attributes and implement
    ``_draw`` (underlying signal) and ``_target`` (target on masked steps)."""

    name: str = "task"
    n_in: int = 1
    n_out: int = 1
    loss_kind: str = "mse"  # "mse" or "bce"
    chance: float = float("nan")
    metric_name: str = "mse"  # "mse" or "accuracy"
    min_delay: int = 1
    _lag_expr: str = "delay"  # how max_lag is written in error messages

    def __init__(self, delay: int, seq_len: int, batch_size: int, amplitude: float = 1.0):
        self.delay = _check_int(
            "task.delay", delay, self.min_delay,
            f"{self.name} needs delay >= {self.min_delay}; raise task.delay",
        )
        self.batch_size = _check_int(
            "task.batch_size", batch_size, 1, "use a positive batch size"
        )
        try:
            amp = float(amplitude)
        except (TypeError, ValueError):
            amp = float("nan")
        if not (amp > 0 and amp < float("inf")):
            raise ValueError(
                f"task.amplitude={amplitude!r} must be a finite number > 0; "
                "use a positive input amplitude (default 1.0)"
            )
        self.amplitude = amp
        self.seq_len = self._check_seq_len(seq_len)

    # ------------------------------------------------------------------ helpers
    @property
    def max_lag(self) -> int:
        """The largest lag the target depends on; loss counts for t >= max_lag."""
        return self.delay

    def _check_seq_len(self, seq_len) -> int:
        T = _check_int("task.seq_len", seq_len, 1, "use a positive sequence length")
        if T <= self.max_lag:
            raise ValueError(
                f"task.seq_len={T} is too short for task.delay={self.delay} "
                f"({self.name} needs seq_len > {self._lag_expr}={self.max_lag}); "
                "raise task.seq_len or lower task.delay"
            )
        return T

    def make_mask(self, seq_len: int | None = None, device=None) -> torch.Tensor:
        T = self.seq_len if seq_len is None else int(seq_len)
        return torch.arange(T, device=device) >= self.max_lag

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(delay={self.delay}, seq_len={self.seq_len}, "
            f"batch_size={self.batch_size}, amplitude={self.amplitude})"
        )

    # ------------------------------------------------------- subclass hooks
    def _draw(self, gen: torch.Generator, T: int, B: int) -> torch.Tensor:
        """Underlying signal x, float64 [T, B, n_in], drawn from ``gen`` only."""
        raise NotImplementedError

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        """Target for steps t >= max_lag, float64 [T - max_lag, B, n_out]."""
        raise NotImplementedError

    def _lagged(self, x: torch.Tensor, lag: int) -> torch.Tensor:
        """x_{t-lag} for t = max_lag .. T-1."""
        T = x.shape[0]
        return x[self.max_lag - lag : T - lag]

    # ------------------------------------------------------------- sampling
    @staticmethod
    def _check_generators(generators) -> list[torch.Generator]:
        if isinstance(generators, torch.Generator):
            generators = [generators]
        generators = list(generators)
        if not generators:
            raise ValueError(
                "generators=[] is empty; pass one torch.Generator per ensemble member "
                "(see member_generators)"
            )
        for i, g in enumerate(generators):
            if not isinstance(g, torch.Generator):
                raise ValueError(
                    f"generators[{i}] is a {type(g).__name__}, expected a CPU torch.Generator "
                    "(see member_generators)"
                )
            if g.device.type != "cpu":
                raise ValueError(
                    f"generators[{i}] lives on {g.device}; data is drawn on CPU, "
                    "pass CPU generators (see member_generators)"
                )
        return generators

    def sample(
        self,
        generators: list[torch.Generator],
        *,
        batch_size: int | None = None,
        seq_len: int | None = None,
        device=None,
        dtype=torch.float32,
    ) -> Batch:
        generators = self._check_generators(generators)
        B = self.batch_size if batch_size is None else _check_int(
            "batch_size", batch_size, 1, "use a positive batch size"
        )
        T = self.seq_len if seq_len is None else self._check_seq_len(seq_len)
        L = self.max_lag

        xs, ys = [], []
        for g in generators:
            x = self._draw(g, T, B)  # [T, B, S] float64
            y = torch.zeros(T, B, self.n_out, dtype=torch.float64)
            y[L:] = self._target(x)
            xs.append(x)
            ys.append(y)
        x = torch.stack(xs, dim=1)  # [T, R, B, S]
        y = torch.stack(ys, dim=1)  # [T, R, B, O]
        inputs = (self.amplitude * x).to(device=device, dtype=dtype)
        targets = y.to(device=device, dtype=dtype)
        return Batch(inputs=inputs, targets=targets, mask=self.make_mask(T, device=inputs.device))

    def sample_inputs(self, generators: list[torch.Generator], *, batch_size: int, seq_len: int,
                      device=None, dtype=torch.float32) -> torch.Tensor:
        """Inputs only, ``[T, R, B, S]``, of any length (no target, so no delay constraint).

        Used to drive the network while flossing and for Lyapunov diagnostics.
        """
        generators = self._check_generators(generators)
        B = _check_int("batch_size", batch_size, 1, "use a positive batch size")
        T = _check_int("seq_len", seq_len, 1, "use a positive sequence length")
        x = torch.stack([self._draw(g, T, B) for g in generators], dim=1)
        return (self.amplitude * x).to(device=device, dtype=dtype)

    # ------------------------------------------------------- loss / metric
    def _masked(self, outputs: torch.Tensor, batch: Batch):
        if outputs.dim() != 4 or outputs.shape != batch.targets.shape:
            raise ValueError(
                f"outputs have shape {tuple(outputs.shape)}, expected [T, R, B, O] = "
                f"{tuple(batch.targets.shape)} (the shape of batch.targets)"
            )
        targets = batch.targets.to(outputs.device, outputs.dtype)
        mask = batch.mask
        start = int(mask.to(torch.int8).argmax()) if mask.numel() else 0
        if bool(mask[start:].all()) and not bool(mask[:start].any()):  # t >= start: a view, no gather
            return outputs[start:], targets[start:]
        mask = mask.to(outputs.device)
        return outputs[mask], targets[mask]

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-member mean loss over masked steps, batch and outputs -> [R]."""
        out, tgt = self._masked(outputs, batch)  # [Tm, R, B, O]
        if self.loss_kind == "mse":
            per = (out - tgt).pow(2)
        elif self.loss_kind == "bce":
            per = F.binary_cross_entropy_with_logits(out, tgt, reduction="none")
        else:  # pragma: no cover - subclasses set a valid kind
            raise ValueError(f"loss_kind={self.loss_kind!r}; allowed: 'mse', 'bce'")
        return per.mean(dim=(0, 2, 3))

    @torch.no_grad()
    def metric(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-member metric -> [R]: accuracy (logit > 0 counts as 1) for binary
        tasks, mean squared error for continuous ones."""
        out, tgt = self._masked(outputs.detach(), batch)
        if self.metric_name == "accuracy":
            return ((out > 0) == (tgt > 0.5)).to(out.dtype).mean(dim=(0, 2, 3))
        return (out - tgt).pow(2).mean(dim=(0, 2, 3))


def _uniform(gen: torch.Generator, T: int, B: int, S: int) -> torch.Tensor:
    return torch.rand(T, B, S, generator=gen, dtype=torch.float64)


def _bits(gen: torch.Generator, T: int, B: int, S: int) -> torch.Tensor:
    return (torch.rand(T, B, S, generator=gen, dtype=torch.float64) < 0.5).to(torch.float64)


class CopyTask(Task):
    """y_t = x_{t-d}, x ~ U(0,1)."""

    name = "copy"
    n_in, n_out = 1, 1
    loss_kind, metric_name = "mse", "mse"
    chance = CHANCE["copy"]

    def _draw(self, gen, T, B):
        return _uniform(gen, T, B, 1)

    def _target(self, x):
        return self._lagged(x, self.delay).clone()


class TemporalXORTask(Task):
    """Continuous temporal XOR: y_t = |x_{t-d//2} - x_{t-d}|, x ~ U(0,1)."""

    name = "temporal_xor"
    n_in, n_out = 1, 1
    loss_kind, metric_name = "mse", "mse"
    chance = CHANCE["temporal_xor"]
    min_delay = 2

    def _draw(self, gen, T, B):
        return _uniform(gen, T, B, 1)

    def _target(self, x):
        return (self._lagged(x, self.delay // 2) - self._lagged(x, self.delay)).abs()


class BinaryXORTask(Task):
    """Binary temporal XOR: y_t = x_{t-d//2} XOR x_{t-d}, x ~ Bernoulli(1/2)."""

    name = "binary_xor"
    n_in, n_out = 1, 1
    loss_kind, metric_name = "bce", "accuracy"
    chance = CHANCE["binary_xor"]
    min_delay = 2

    def _draw(self, gen, T, B):
        return _bits(gen, T, B, 1)

    def _target(self, x):
        return (self._lagged(x, self.delay // 2) != self._lagged(x, self.delay)).to(x.dtype)


class SpatialXORTask(Task):
    """Spatial XOR: y_t = x1_{t-d} XOR x2_{t-d} XOR x3_{t-d}, three binary channels."""

    name = "spatial_xor"
    n_in, n_out = 3, 1
    loss_kind, metric_name = "bce", "accuracy"
    chance = CHANCE["spatial_xor"]

    def _draw(self, gen, T, B):
        return _bits(gen, T, B, 3)

    def _target(self, x):
        lagged = self._lagged(x, self.delay)
        return torch.remainder(lagged.sum(dim=-1, keepdim=True), 2.0)


class LagXORTask(Task):
    """The reference code's temporal XOR variant: y_t = |x_{t-d} - x_{t-2d}|, x ~ U(0,1)."""

    name = "lag_xor"
    n_in, n_out = 1, 1
    loss_kind, metric_name = "mse", "mse"
    chance = CHANCE["lag_xor"]
    _lag_expr = "2*delay"

    @property
    def max_lag(self) -> int:
        return 2 * self.delay

    def _draw(self, gen, T, B):
        return _uniform(gen, T, B, 1)

    def _target(self, x):
        return (self._lagged(x, self.delay) - self._lagged(x, 2 * self.delay)).abs()


TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (CopyTask, TemporalXORTask, BinaryXORTask, SpatialXORTask, LagXORTask)
}


def make_task(name: str, **kwargs) -> Task:
    """Build a task by registry name, e.g. ``make_task("copy", delay=10, seq_len=300, batch_size=16)``."""
    try:
        cls = TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"task.name={name!r} is unknown; allowed: {', '.join(sorted(TASKS))}"
        ) from None
    return cls(**kwargs)


def member_generators(seeds: list[int], stream: str) -> list[torch.Generator]:
    """One CPU generator per seed, seeded deterministically from (seed, stream).

    Uses a stable hash (SHA-256 of ``"<seed>/<stream>"``), so the result does not
    depend on PYTHONHASHSEED and different streams ("train", "test", "floss",
    "init", ...) of the same seed are independent.
    """
    if isinstance(stream, bytes) or not isinstance(stream, str):
        raise ValueError(f"stream={stream!r} must be a string such as 'train' or 'test'")
    gens = []
    for s in seeds:
        seed = _check_int("seed", s, -(2**63), "seeds must be integers")
        digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
        g = torch.Generator(device="cpu")
        g.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        gens.append(g)
    return gens
