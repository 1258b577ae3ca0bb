"""The tasks of the low-rank study (Schuessler et al. 2020), in :mod:`flossrepro.tasks.paper` style.

Times are in units of the rate network's time constant; a task of duration ``t`` has
``int(t / dt)`` Euler steps (their ``task_generators.py``). Targets and masks are per time step,
sequence and output channel (``TrialBatch.weights``), and the loss is theirs:
``0.5 * sum(mask * (z - zhat)^2) / sum(mask)`` per member.

=================  ======  ==========================================================================
name               in/out  trial (dt = 0.5)
=================  ======  ==========================================================================
``flipflop``       2/2     50 (100 steps): +-1 pulses of length 1 on a random channel, the first at
                           t=1, gaps U[5, 25] + 5; from 5 after a pulse until the next the pulsed
                           channel's target is sign * 0.5, the other's 0, mask on both
``mante``          4/1     fixation 3, stimulus 20, delay 5, decision 20 (96 steps); inputs
                           [context 1, context 2, sensory 1, sensory 2]: coherences from
                           {+-1/8, +-1/4, +-1/2, +-1} plus N(0, 0.05^2 / dt) noise per step (whole
                           trial), context one-hot during the stimulus; decision target
                           0.5 * sign(coherence of the cued channel); target 0 and masked until
                           the stimulus ends
``romo``           1/2     fixation 3, pulses of length 1 with gap U[2, 8], delay 5, decision 10
                           (56 steps); amplitudes U[0.5, 1.5] with |a1 - a2| >= 0.2; channel
                           argmax(a1, a2) is 0.5 during the decision; target 0 and masked until
                           the second pulse ends
``linear_fp``      1/1     101 (202 steps): input 1 from t = 1; target zhat over the last time unit only
=================  ======  ==========================================================================

Member ``r`` draws only from ``generators[r]`` (as every task). The network is fed the inputs as
drawn (``amplitude`` scales the sensory or pulse inputs, their ``input_amp``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from flossrepro.tasks.paper import Batch, Task, _check_int

__all__ = ["LOWRANK_TASKS", "TrialBatch", "TrialTask", "FlipFlopTask", "ManteTask", "RomoTask", "LinearFixedPointTask"]


@dataclass
class TrialBatch(Batch):
    """A batch whose loss mask is per step, sequence and channel: ``weights: [T, R, B, O]`` (0/1).
    ``mask: [T]`` is True on the steps where any weight is nonzero."""
    weights: torch.Tensor = None


def _steps(t: float, dt: float) -> int:
    """``int(t / dt)`` as their generators compute it (with a guard against 4.999... from floats)."""
    return int(t / dt + 1e-9)


class TrialTask(Task):
    """Base of the low-rank study's tasks: fixed trial structure, per-element masks, their loss.

    Subclasses set ``name, n_in, n_out``, ``trial_time`` (in time constants) and implement
    ``_trial(gen, T, B) -> (x [T, B, S], y [T, B, O], m [T, B, O])`` in float64.
    """

    loss_kind, metric_name = "mse", "mse"
    chance = float("nan")
    trial_time: float = 0.0
    free_length = False  # True: any seq_len works (flip-flop: the pulse train goes on)
    delay = 0

    def __init__(self, seq_len: int | None = None, batch_size: int = 32, amplitude: float = 1.0,
                 dt: float = 0.5, target_amp: float = 0.5):
        try:
            dt = float(dt)
        except (TypeError, ValueError):
            dt = float("nan")
        if not 0 < dt <= 1:
            raise ValueError(f"task.dt={dt} must be in (0, 1] (the rate network's Euler step, arch.dt)")
        self.dt = dt
        self.batch_size = _check_int("task.batch_size", batch_size, 1, "use a positive batch size")
        amp = float(amplitude) if isinstance(amplitude, (int, float)) and not isinstance(amplitude, bool) else math.nan
        if not (0 < amp < math.inf):
            raise ValueError(f"task.amplitude={amplitude!r} must be a finite number > 0; e.g. task.amplitude=1.0")
        self.amplitude = amp
        ta = float(target_amp) if isinstance(target_amp, (int, float)) and not isinstance(target_amp, bool) else math.nan
        if not (0 < ta < math.inf):
            raise ValueError(f"task.target_amp={target_amp!r} must be a finite number > 0; e.g. task.target_amp=0.5")
        self.target_amp = ta
        natural = _steps(self.trial_time, dt)
        if seq_len is None:
            self.seq_len = natural
        else:
            T = _check_int("task.seq_len", seq_len, 2, "or null for the task's own trial length")
            if T != natural and not self.free_length:
                raise ValueError(f"task.seq_len={T} but a {self.name} trial at dt={dt:g} has {natural} steps; "
                                 f"set task.seq_len=null (the trial length)")
            self.seq_len = T

    @classmethod
    def from_config(cls, t) -> "TrialTask":
        return cls(seq_len=t.seq_len, batch_size=t.batch_size, amplitude=t.amplitude, dt=t.dt,
                   target_amp=t.target_amp)

    @property
    def max_lag(self) -> int:
        return 0

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(seq_len={self.seq_len}, batch_size={self.batch_size}, "
                f"amplitude={self.amplitude}, dt={self.dt}, target_amp={self.target_amp})")

    def _trial(self, gen: torch.Generator, T: int, B: int):
        raise NotImplementedError

    def sample(self, generators, *, batch_size=None, seq_len=None, device=None, dtype=torch.float32) -> TrialBatch:
        gens = self._check_generators(generators)
        B = self.batch_size if batch_size is None else _check_int("batch_size", batch_size, 1, "use a positive batch size")
        T = self.seq_len if seq_len is None else int(seq_len)
        xs, ys, ms = zip(*(self._trial(g, T, B) for g in gens))
        x, y, m = (torch.stack(v, 1).to(device=device, dtype=dtype) for v in (xs, ys, ms))
        return TrialBatch(inputs=x, targets=y, mask=(m != 0).any(-1).any(-1).any(-1), weights=m)

    def sample_inputs(self, generators, *, batch_size: int, seq_len: int, device=None, dtype=torch.float32):
        """Inputs of any length ``[T, R, B, S]`` (trials one after another, cut at ``seq_len``)."""
        gens = self._check_generators(generators)
        B = _check_int("batch_size", batch_size, 1, "use a positive batch size")
        T = _check_int("seq_len", seq_len, 1, "use a positive sequence length")
        out = []
        for g in gens:
            if self.free_length:
                out.append(self._trial(g, T, B)[0])
                continue
            parts, n = [], 0
            while n < T:
                parts.append(self._trial(g, self.seq_len, B)[0])
                n += self.seq_len
            out.append(torch.cat(parts)[:T])
        return torch.stack(out, 1).to(device=device, dtype=dtype)

    def _check(self, outputs, batch):
        if outputs.dim() != 4 or outputs.shape != batch.targets.shape:
            raise ValueError(f"outputs have shape {tuple(outputs.shape)}, expected [T, R, B, O] = "
                             f"{tuple(batch.targets.shape)} (the shape of batch.targets)")
        w = batch.weights.to(outputs.device, outputs.dtype)
        return w, batch.targets.to(outputs.device, outputs.dtype)

    def loss(self, outputs, batch) -> torch.Tensor:
        """Their loss per member: ``0.5 * sum(mask (z - zhat)^2) / sum(mask)`` -> ``[R]``."""
        w, y = self._check(outputs, batch)
        return 0.5 * (w * (outputs - y).pow(2)).sum((0, 2, 3)) / w.sum((0, 2, 3)).clamp_min(1.0)

    @torch.no_grad()
    def metric(self, outputs, batch) -> torch.Tensor:
        """Masked mean squared error per member (twice the loss)."""
        return 2.0 * self.loss(outputs.detach(), batch)


def _uniform(gen, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


def _randint(gen, n: int) -> int:
    return int(torch.randint(n, (), generator=gen))


class FlipFlopTask(TrialTask):
    """Flip-flop (2 channels), their ``flipflop`` with ``fixate=False`` (see the module docstring)."""

    name, n_in, n_out = "flipflop", 2, 2
    trial_time = 50.0
    free_length = True
    fixation, pulse, decision_delay, gap_min, gap_max = 1.0, 1.0, 5.0, 5.0, 25.0

    def _trial(self, gen, T, B):
        dt = self.dt
        x = torch.zeros(T, B, 2, dtype=torch.float64)
        y = torch.zeros_like(x)
        m = torch.zeros_like(x)
        n_pulse, n_dec = _steps(self.pulse, dt), _steps(self.decision_delay, dt)
        for b in range(B):
            i = _steps(self.fixation, dt)
            while True:
                nxt = i + _steps(_uniform(gen, self.gap_min, self.gap_max) + self.decision_delay, dt)
                ch = _randint(gen, 2)
                sign = 1.0 if _randint(gen, 2) == 0 else -1.0
                x[i:i + n_pulse, b, ch] = sign * self.amplitude
                y[i + n_dec:nxt, b, ch] = sign * self.target_amp
                m[i + n_dec:nxt, b, :] = 1.0
                i = nxt
                if i > T:
                    break
        return x, y, m


class ManteTask(TrialTask):
    """Context-dependent integration, their ``mante`` with ``fixate=True`` (see the module docstring)."""

    name, n_in, n_out = "mante", 4, 1
    fixation, stimulus, delay_time, decision = 3.0, 20.0, 5.0, 20.0
    trial_time = fixation + stimulus + delay_time + decision
    coherences = (-1.0, -0.5, -0.25, -0.125, 0.125, 0.25, 0.5, 1.0)
    noise_std = 0.05
    context_amp = 1.0

    @property
    def epochs(self) -> tuple[int, int, int]:
        """``(stimulus begin, stimulus end, response begin)`` in steps."""
        dt = self.dt
        s0 = _steps(self.fixation, dt)
        s1 = s0 + _steps(self.stimulus, dt)
        return s0, s1, s1 + _steps(self.delay_time, dt)

    def _trial(self, gen, T, B):
        s0, s1, r0 = self.epochs
        coh = torch.tensor(self.coherences, dtype=torch.float64)
        sens = torch.randn(T, B, 2, generator=gen, dtype=torch.float64) * (self.noise_std / math.sqrt(self.dt))
        c = coh[torch.randint(len(coh), (B, 2), generator=gen)]          # [B, 2] coherence per sensory channel
        ctx = torch.randint(2, (B,), generator=gen)                       # cued channel
        sens[s0:s1] += c
        cont = torch.zeros(T, B, 2, dtype=torch.float64)
        cont[s0:s1, torch.arange(B), ctx] = self.context_amp
        x = torch.cat([cont, self.amplitude * sens], -1)
        y = torch.zeros(T, B, 1, dtype=torch.float64)
        y[r0:, :, 0] = self.target_amp * torch.sign(c[torch.arange(B), ctx])
        m = torch.zeros_like(y)
        m[r0:] = 1.0
        m[:s1] = 1.0
        return x, y, m


class RomoTask(TrialTask):
    """Parametric working memory, their ``romo`` (two outputs, ``fixate=True``; see the module docstring)."""

    name, n_in, n_out = "romo", 1, 2
    fixation, pulse, gap_min, gap_max, decision_delay, decision = 3.0, 1.0, 2.0, 8.0, 5.0, 10.0
    trial_time = fixation + 2 * pulse + gap_max + decision_delay + decision
    amp_min, amp_max, min_diff = 0.5, 1.5, 0.2

    def _trial(self, gen, T, B):
        dt = self.dt
        x = torch.zeros(T, B, 1, dtype=torch.float64)
        y = torch.zeros(T, B, 2, dtype=torch.float64)
        m = torch.zeros_like(y)
        p0 = _steps(self.fixation, dt)
        n_p = _steps(self.pulse, dt)
        for b in range(B):
            gap = _steps(_uniform(gen, self.gap_min, self.gap_max), dt)
            while True:
                a = self.amp_min + (self.amp_max - self.amp_min) * torch.rand(2, generator=gen, dtype=torch.float64)
                if abs(float(a[0] - a[1])) >= self.min_diff:
                    break
            p1 = p0 + n_p + gap
            r0 = p1 + n_p + _steps(self.decision_delay, dt)
            r1 = r0 + _steps(self.decision, dt)
            x[p0:p0 + n_p, b, 0] = self.amplitude * a[0]
            x[p1:p1 + n_p, b, 0] = self.amplitude * a[1]
            y[r0:r1, b, int(torch.argmax(a))] = self.target_amp
            m[r0:r1, b] = 1.0
            m[:p1 + n_p, b] = 1.0
        return x, y, m


class LinearFixedPointTask(TrialTask):
    """Input-driven fixed point for the linear study, their ``input_driven_fp`` with t_max = 101:
    input 1 from t = 1, target ``zhat = target_amp`` (0.5, 1 or 2) over the last time unit only."""

    name, n_in, n_out = "linear_fp", 1, 1
    trial_time = 101.0
    fixation, decision = 1.0, 1.0

    def _trial(self, gen, T, B):
        x = torch.zeros(T, B, 1, dtype=torch.float64)
        x[_steps(self.fixation, self.dt):] = self.amplitude
        y = torch.zeros_like(x)
        m = torch.zeros_like(x)
        d = _steps(self.decision, self.dt)
        y[T - d:] = self.target_amp
        m[T - d:] = 1.0
        return x, y, m


#: this module's tasks by name (the config names them by ``_target_``; :data:`flossrepro.tasks.paper.TASKS`
#: keeps the flossing paper's tasks)
LOWRANK_TASKS = {c.name: c for c in (FlipFlopTask, ManteTask, RomoTask, LinearFixedPointTask)}
