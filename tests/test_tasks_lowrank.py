"""The low-rank study's tasks: targets and masks exactly as specified (SPEC-lowrank, their generators)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flossrepro.tasks.paper import member_generators
from flossrepro.tasks.lowrank import FlipFlopTask, LinearFixedPointTask, ManteTask, RomoTask

SEEDS = st.integers(0, 10_000)


def _runs(v: torch.Tensor) -> list[tuple[int, int]]:
    """``[(start, end)]`` of the nonzero runs of a 1-d tensor."""
    nz = (v != 0).tolist() + [False]
    out, start = [], None
    for i, z in enumerate(nz):
        if z and start is None:
            start = i
        if not z and start is not None:
            out.append((start, i))
            start = None
    return out


@settings(max_examples=15, deadline=None)
@given(SEEDS)
def test_flipflop_targets_and_mask(seed):
    task = FlipFlopTask(batch_size=4)
    assert task.seq_len == 100
    b = task.sample(member_generators([seed], "t"), dtype=torch.float64)
    x, y, m = b.inputs[:, 0], b.targets[:, 0], b.weights[:, 0]
    T = x.shape[0]
    for j in range(4):
        pulses = sorted(p for ch in range(2) for p in _runs(x[:, j, ch]))
        assert pulses[0][0] == 2                                    # first pulse at t = 1
        want_y, want_m = torch.zeros(T, 2, dtype=x.dtype), torch.zeros(T, 2, dtype=x.dtype)
        for i, (p0, p1) in enumerate(pulses):
            assert p1 - p0 == 2 or p1 == T                          # length 1 = 2 steps
            ch = 0 if x[p0, j, 0] != 0 else 1
            assert x[p0, j, 1 - ch] == 0                            # one channel at a time
            sign = float(x[p0, j, ch])
            assert abs(sign) == 1.0
            nxt = pulses[i + 1][0] if i + 1 < len(pulses) else T
            if i + 1 < len(pulses):
                assert 20 <= nxt - p0 <= 60                         # gap U[5, 25] + 5 -> 20..60 steps
            want_y[p0 + 10:nxt, ch] = 0.5 * sign                    # from 5 after the pulse
            want_m[p0 + 10:nxt] = 1.0
        assert torch.equal(y[:, j], want_y)
        assert torch.equal(m[:, j], want_m)


@settings(max_examples=15, deadline=None)
@given(SEEDS)
def test_mante_targets_and_mask(seed):
    task = ManteTask(batch_size=6)
    assert task.seq_len == 96 and task.epochs == (6, 46, 56)
    b = task.sample(member_generators([seed], "t"), dtype=torch.float64)
    x, y, m = b.inputs[:, 0], b.targets[:, 0], b.weights[:, 0]
    cohs = torch.tensor(ManteTask.coherences, dtype=torch.float64)
    for j in range(6):
        ctx = x[:, j, :2]
        assert torch.all(ctx[:6] == 0) and torch.all(ctx[46:] == 0)
        on = ctx[6:46]
        assert torch.all(on.sum(-1) == 1) and torch.all((on == 0) | (on == 1))
        assert torch.all(on == on[0])                                # the same context throughout
        cue = int(on[0].argmax())
        mean = x[6:46, j, 2 + cue].mean()                           # coherence + noise of sd 0.0707/sqrt(40)
        coh = cohs[(cohs - mean).abs().argmin()]
        want = torch.zeros(96, 1, dtype=x.dtype)
        want[56:] = 0.5 * torch.sign(coh)
        assert torch.equal(y[:, j], want)
        wm = torch.ones(96, 1, dtype=x.dtype)
        wm[46:56] = 0.0                                             # masked until the stimulus ends, then decision
        assert torch.equal(m[:, j], wm)


def test_mante_noise_level():
    task = ManteTask(batch_size=256)
    x = task.sample(member_generators([0], "t"), dtype=torch.float64).inputs[:, 0]
    noise = torch.cat([x[:6, :, 2:], x[46:, :, 2:]]).flatten()
    assert abs(float(noise.std()) - 0.05 / 0.5 ** 0.5) < 0.003
    assert abs(float(noise.mean())) < 0.003


@settings(max_examples=15, deadline=None)
@given(SEEDS)
def test_romo_targets_and_mask(seed):
    task = RomoTask(batch_size=6)
    assert task.seq_len == 56
    b = task.sample(member_generators([seed], "t"), dtype=torch.float64)
    x, y, m = b.inputs[:, 0, :, 0], b.targets[:, 0], b.weights[:, 0]
    for j in range(6):
        runs = _runs(x[:, j])
        assert len(runs) == 2 and runs[0] == (6, 8) and runs[1][1] - runs[1][0] == 2
        a1, a2 = float(x[6, j]), float(x[runs[1][0], j])
        assert torch.all(x[6:8, j] == a1) and torch.all(x[runs[1][0]:runs[1][1], j] == a2)
        assert 0.5 <= a1 <= 1.5 and 0.5 <= a2 <= 1.5 and abs(a1 - a2) >= 0.2
        gap = runs[1][0] - 8
        assert 4 <= gap <= 16                                       # U[2, 8] time units
        p_end = runs[1][1]
        want_y = torch.zeros(56, 2, dtype=x.dtype)
        want_y[p_end + 10:p_end + 30, 0 if a1 > a2 else 1] = 0.5
        want_m = torch.zeros(56, 2, dtype=x.dtype)
        want_m[:p_end] = 1.0
        want_m[p_end + 10:p_end + 30] = 1.0
        assert torch.equal(y[:, j], want_y) and torch.equal(m[:, j], want_m)


@pytest.mark.parametrize("zhat", [0.5, 1.0, 2.0])
def test_linear_fixed_point(zhat):
    task = LinearFixedPointTask(batch_size=1, target_amp=zhat)
    assert task.seq_len == 202
    b = task.sample(member_generators([0, 1], "t"), dtype=torch.float64)
    assert torch.equal(b.inputs[:2], torch.zeros(2, 2, 1, 1, dtype=torch.float64))
    assert torch.all(b.inputs[2:] == 1.0)
    want = torch.zeros(202, 2, 1, 1, dtype=torch.float64)
    want[200:] = zhat
    assert torch.equal(b.targets, want)
    assert torch.equal(b.weights, (want != 0).to(want.dtype))
    assert b.mask.nonzero().flatten().tolist() == [200, 201]


def test_loss_is_theirs_and_ensemble_equals_single():
    task = RomoTask(batch_size=5)
    b = task.sample(member_generators([3, 4], "t"), dtype=torch.float64)
    z = torch.randn_like(b.targets)
    w, yv = b.weights, b.targets
    want = torch.stack([0.5 * (w[:, r] * (z[:, r] - yv[:, r]) ** 2).sum() / w[:, r].sum() for r in range(2)])
    torch.testing.assert_close(task.loss(z, b), want)
    single = task.sample(member_generators([4], "t"), dtype=torch.float64)
    assert torch.equal(single.inputs[:, 0], b.inputs[:, 1]) and torch.equal(single.weights[:, 0], b.weights[:, 1])


def test_sample_inputs_any_length():
    for task in (FlipFlopTask(), ManteTask(), RomoTask()):
        x = task.sample_inputs(member_generators([0], "l"), batch_size=1, seq_len=300)
        assert x.shape == (300, 1, 1, task.n_in)


def test_bad_settings():
    with pytest.raises(ValueError, match=r"task.seq_len=100 but a mante trial at dt=0.5 has 96 steps"):
        ManteTask(seq_len=100)
    with pytest.raises(ValueError, match=r"task.dt=2.0"):
        RomoTask(dt=2.0)
    with pytest.raises(ValueError, match=r"task.target_amp"):
        LinearFixedPointTask(target_amp=-1)
    assert FlipFlopTask(seq_len=300).seq_len == 300                 # flip-flop: any length
    assert ManteTask(dt=0.25).seq_len == 192
